"""Re-pack a captured sender stream into larger UPDATEs (an experiment on UPDATE size).

Usage: repack.py IN OUT [--max 65535]

IN is a stream file as bench.py writes it (the sender's OPEN, then its
UPDATEs, each a whole BGP message). OUT gets the same OPEN with the Extended
Message capability (RFC 8654, code 6) added, and the same UPDATEs with
consecutive announcements that carry identical path attributes (and no
withdrawals) merged into messages of at most --max bytes; other UPDATEs
(End-of-RIB, withdrawals) are copied. Prefixes, their order and their
attributes are unchanged: only the UPDATE boundaries move. Replaying OUT
into a receiver that supports extended messages (bench.py sender
replay-<name> with --streams) shows what UPDATE size alone costs it.
"""

import argparse
import struct
import sys

import replay

MARKER = b"\xff" * 16


def with_extended_message(open_msg):
    """The OPEN with one more Capabilities optional parameter holding capability 6."""
    body = bytearray(open_msg[19:])
    # version, my AS, hold time, BGP identifier, opt param length, params
    plen = body[9]
    if plen == 255:
        sys.exit("repack: extended optional parameters (RFC 9072) are not handled")
    body += bytes([2, 2, 6, 0])
    body[9] = plen + 4
    return MARKER + struct.pack("!HB", 19 + len(body), 1) + bytes(body)


def parts(msg):
    """(withdrawn bytes, attribute bytes, NLRI bytes) of one UPDATE message."""
    body = msg[19:]
    wlen = struct.unpack("!H", body[:2])[0]
    alen = struct.unpack("!H", body[2 + wlen : 4 + wlen])[0]
    return body[2 : 2 + wlen], body[4 + wlen : 4 + wlen + alen], body[4 + wlen + alen :]


def nlri_items(nlri):
    i = 0
    while i < len(nlri):
        n = 1 + (nlri[i] + 7) // 8
        yield nlri[i : i + n]
        i += n


def update(attrs, nlri):
    body = struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri
    return MARKER + struct.pack("!HB", 19 + len(body), 2) + body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--max", type=int, default=65535)
    a = ap.parse_args()
    msgs = replay.split(open(a.inp, "rb").read())
    out = [with_extended_message(msgs[0][1])]
    cur_attrs, cur = None, bytearray()

    def flush():
        nonlocal cur_attrs, cur
        if cur:
            out.append(update(cur_attrs, bytes(cur)))
        cur_attrs, cur = None, bytearray()

    before = after = 0
    for typ, m in msgs[1:]:
        if typ != 2:
            continue
        before += 1
        w, attrs, nlri = parts(m)
        if w or not nlri:
            flush()
            out.append(m)
            continue
        if attrs != cur_attrs:
            flush()
            cur_attrs = attrs
        for item in nlri_items(nlri):
            if 19 + 4 + len(attrs) + len(cur) + len(item) > a.max:
                flush()
                cur_attrs = attrs
            cur += item
    flush()
    after = len(out) - 1
    with open(a.out, "wb") as f:
        f.write(b"".join(out))
    print(f"repack: {before} UPDATEs -> {after} (max {a.max} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
