#!/usr/bin/env python3
"""Human-readable decode of messages.txt (independent of the ferrolb codec; for README.md)."""
import struct, sys, ipaddress
def pfx(b, afi):
    out = []; i = 0
    while i < len(b):
        l = b[i]; n = (l + 7) // 8; raw = b[i+1:i+1+n] + bytes((4 if afi == 1 else 16) - n)
        a = ipaddress.IPv4Address(raw) if afi == 1 else ipaddress.IPv6Address(raw)
        out.append(f"{a}/{l}"); i += 1 + n
    return out
def nh(b):
    if len(b) == 4: return str(ipaddress.IPv4Address(b))
    return " + ".join(str(ipaddress.IPv6Address(b[i:i+16])) for i in range(0, len(b), 16))
def attrs(b, as4=True):
    i = 0; out = []
    while i < len(b):
        fl, t = b[i], b[i+1]
        if fl & 0x10: l = struct.unpack(">H", b[i+2:i+4])[0]; v = b[i+4:i+4+l]; i += 4 + l
        else: l = b[i+2]; v = b[i+3:i+3+l]; i += 3 + l
        f = f"flags=0x{fl:02x}"
        if t == 1: out.append(f"ORIGIN={['IGP','EGP','INCOMPLETE'][v[0]]} ({f})")
        elif t == 2:
            segs = []; j = 0
            while j < len(v):
                st, n = v[j], v[j+1]; w = 4 if as4 else 2
                asns = [int.from_bytes(v[j+2+k*w:j+2+(k+1)*w], "big") for k in range(n)]
                segs.append(("SEQ" if st == 2 else "SET") + str(asns)); j += 2 + n * w
            out.append(f"AS_PATH={' '.join(segs) or 'empty'} ({f}, {'4' if as4 else '2'}-octet ASNs)")
        elif t == 3: out.append(f"NEXT_HOP={nh(v)} ({f})")
        elif t == 4: out.append(f"MED={struct.unpack('>I', v)[0]} ({f})")
        elif t == 5: out.append(f"LOCAL_PREF={struct.unpack('>I', v)[0]} ({f})")
        elif t == 8: out.append("COMMUNITIES=" + ",".join(f"{struct.unpack('>H',v[k:k+2])[0]}:{struct.unpack('>H',v[k+2:k+4])[0]}" for k in range(0, len(v), 4)) + f" ({f})")
        elif t == 32: out.append("LARGE_COMMUNITIES=" + ",".join(":".join(str(x) for x in struct.unpack('>III', v[k:k+12])) for k in range(0, len(v), 12)) + f" ({f})")
        elif t == 14:
            afi, safi, nl = struct.unpack(">HBB", v[:4]); n = v[4:4+nl]
            out.append(f"MP_REACH_NLRI afi={afi} safi={safi} nexthop({nl} bytes)={nh(n)} nlri={pfx(v[5+nl:], afi)} ({f})")
        elif t == 15:
            afi, safi = struct.unpack(">HB", v[:3])
            out.append(f"MP_UNREACH_NLRI afi={afi} safi={safi} withdrawn={pfx(v[3:], afi)} ({f})")
        else: out.append(f"attr{t} len={l} {v.hex()} ({f})")
    return out
CAPS = {1: "multiprotocol", 2: "route-refresh", 64: "graceful-restart", 65: "4-octet-AS", 69: "add-path", 70: "enhanced-route-refresh", 71: "long-lived-GR", 73: "FQDN", 128: "route-refresh(old Cisco)", 6: "extended-message", 5: "extended-nexthop-encoding"}
def open_(m):
    v, asn, hold = m[19], *struct.unpack(">HH", m[20:24])
    rid = ipaddress.IPv4Address(m[24:28]); ol = m[28]; p = m[29:29+ol]; caps = []; i = 0
    while i < len(p):
        pt, pl = p[i], p[i+1]; c = p[i+2:i+2+pl]; i += 2 + pl; j = 0
        while j < len(c):
            code, cl = c[j], c[j+1]; cv = c[j+2:j+2+cl]; j += 2 + cl; name = CAPS.get(code, str(code))
            if code == 1: name += f"(afi={struct.unpack('>H',cv[:2])[0]},safi={cv[3]})"
            elif code == 65: name += f"({struct.unpack('>I',cv)[0]})"
            elif code == 64: name += f"(flags+time=0x{cv[:2].hex()}, afis={cv[2:].hex() or 'none'})"
            elif code == 73: hl = cv[0]; name += f"(host={cv[1:1+hl].decode()!r}, domain={cv[2+hl:].decode()!r})"
            elif cv: name += f"({cv.hex()})"
            caps.append(name)
    return f"version={v} my_as={asn} hold={hold} router_id={rid} caps=[{', '.join(caps)}]"
for n, line in enumerate(open(sys.argv[1] if len(sys.argv) > 1 else "messages.txt"), 1):
    t, src, _, dst, typ, hx = line.split(); m = bytes.fromhex(hx)
    d = ""
    if typ == "OPEN": d = open_(m)
    elif typ == "UPDATE":
        wl = struct.unpack(">H", m[19:21])[0]; w = m[21:21+wl]; al = struct.unpack(">H", m[21+wl:23+wl])[0]
        a = m[23+wl:23+wl+al]; nl = m[23+wl+al:]
        parts = []
        if w: parts.append(f"withdrawn={pfx(w, 1)}")
        parts += attrs(a)
        if nl: parts.append(f"nlri={pfx(nl, 1)}")
        d = "; ".join(parts) or "End-of-RIB IPv4 unicast (empty UPDATE)"
    elif typ == "NOTIFICATION":
        d = f"code={m[19]} subcode={m[20]} data={m[21:].hex()}"
        if m[19] == 6 and m[20] in (2, 4) and len(m) > 21: d += f" shutdown-communication({m[21]} bytes)={m[22:22+m[21]].decode()!r}"
    print(f"{n:02d} {src} > {dst} {typ} len={len(m)}: {d}")
