#!/usr/bin/env python3
"""Seed the fuzz corpora from the repository's own data (bench/fuzz/run calls it).

Usage: seed.py ROOT CORPUS_DIR TARGET...

Writes `seed-<source>-<n>` files into CORPUS_DIR/<target>/; the names are
fixed, so running it again rewrites the same files (idempotent). Sources:
  decode    bgp/tests/data/captured/*.hex (BGP messages captured from FRR, GoBGP, BIRD)
  configmap manifests/examples/*.yaml, config/tests/crs/**, and the YAML string
            literals of config/tests/{valid,invalid,strands,...}.rs
  crs       the same files and literals (custom resources first)
  bfd       the hex test vectors of bgp/src/bfd/packet.rs
  arpndp    the captured frames of l2/src/arp.rs and l2/src/ndp.rs
"""
import glob
import hashlib
import os
import re
import sys

ROOT, CORPUS = sys.argv[1], sys.argv[2]
TARGETS = sys.argv[3:]

STRING = re.compile(r'(?<![A-Za-z0-9_#])"((?:[^"\\]|\\.)*)"', re.S)
RAW = re.compile(r'r(#+)"(.*?)"\1', re.S)


def unescape(body):
    """A Rust (non-raw) string literal's value."""
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        n = body[i + 1]
        if n == "\n":  # line continuation: skip the newline and leading blanks
            i += 2
            while i < len(body) and body[i] in " \t\n\r":
                i += 1
            continue
        if n == "x":
            out.append(chr(int(body[i + 2 : i + 4], 16)))
            i += 4
            continue
        if n == "u":
            j = body.index("}", i)
            out.append(chr(int(body[i + 3 : j], 16)))
            i = j + 1
            continue
        out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}.get(n, n))
        i += 2
    return "".join(out)


def yaml_literals(path):
    """String literals of a Rust file that look like YAML documents."""
    src = open(path, encoding="utf-8").read()
    found = [m.group(2) for m in RAW.finditer(src)]
    src = RAW.sub("", src)
    for m in STRING.finditer(src):
        try:
            found.append(unescape(m.group(1)))
        except (ValueError, IndexError):
            pass
    return [s for s in found if ":" in s and ("\n" in s or "{" in s) and len(s) > 8]


def hex_literals(path, pattern):
    src = open(path, encoding="utf-8").read()
    return [bytes.fromhex(re.sub(r"[^0-9a-fA-F]", "", s)) for s in re.findall(pattern, src, re.S)]


def files(*patterns):
    out = []
    for p in patterns:
        out += sorted(glob.glob(os.path.join(ROOT, p), recursive=True))
    return out


def seeds(target):
    if target == "decode":
        for f in files("bgp/tests/data/captured/*.hex"):
            yield os.path.basename(f)[:-4], bytes.fromhex(re.sub(r"\s", "", open(f).read()))
        return
    if target in ("configmap", "crs"):
        docs = files("manifests/examples/*.yaml", "config/tests/crs/**/*.yaml")
        if target == "crs":
            docs.sort(key=lambda f: "crs" not in os.path.basename(f))
        for f in docs:
            yield "file-" + os.path.basename(f)[:-5], open(f, "rb").read()
        for rs in files("config/tests/*.rs"):
            for n, s in enumerate(yaml_literals(rs)):
                yield f"{os.path.basename(rs)[:-3]}-{n}", s.encode()
        return
    if target == "bfd":
        for n, b in enumerate(hex_literals(os.path.join(ROOT, "bgp/src/bfd/packet.rs"), r'hex\("([0-9a-fA-F ]+)"\)')):
            yield f"packet-{n}", b
        return
    if target == "arpndp":
        for rs in ("l2/src/arp.rs", "l2/src/ndp.rs"):
            pat = r'const [A-Z0-9_]+: &str = "([0-9a-fA-F \n]+)";'
            for n, b in enumerate(hex_literals(os.path.join(ROOT, rs), pat)):
                yield f"{os.path.basename(rs)[:-3]}-{n}", b
        return
    raise SystemExit(f"seed.py: no seeds for target {target!r}")


for t in TARGETS:
    d = os.path.join(CORPUS, t)
    os.makedirs(d, exist_ok=True)
    n = 0
    seen = set()
    for name, data in seeds(t):
        h = hashlib.sha1(data).hexdigest()
        if h in seen:
            continue
        seen.add(h)
        with open(os.path.join(d, f"seed-{name}"), "wb") as out:
            out.write(data)
        n += 1
    print(f"{t}: {n} seeds")
