#!/usr/bin/env python3
"""Split a pcap of BGP sessions into BGP messages: one line per message,
`<time> <src>:<sport> > <dst>:<dport> <TYPE> <hex>`. Reassembles each TCP
direction by sequence number (drops retransmitted bytes)."""
import struct, sys, ipaddress
TYPES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}
def packets(path):
    d = open(path, "rb").read()
    magic = struct.unpack("<I", d[:4])[0]
    e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
    linktype = struct.unpack(e + "I", d[20:24])[0]
    off = 24
    while off + 16 <= len(d):
        ts, tf, incl, orig = struct.unpack(e + "IIII", d[off:off + 16]); off += 16
        yield ts + tf / (1e9 if nano else 1e6), linktype, d[off:off + incl]; off += incl
def tcp_segments(path):
    for t, lt, p in packets(path):
        if lt == 1: eth_type = struct.unpack(">H", p[12:14])[0]; p = p[14:]
        elif lt == 113: eth_type = struct.unpack(">H", p[14:16])[0]; p = p[16:]
        elif lt == 276: eth_type = struct.unpack(">H", p[0:2])[0]; p = p[20:]
        else: raise SystemExit(f"linktype {lt}")
        if eth_type == 0x0800:
            ihl = (p[0] & 15) * 4; tot = struct.unpack(">H", p[2:4])[0]
            if p[9] != 6: continue
            src, dst = str(ipaddress.IPv4Address(p[12:16])), str(ipaddress.IPv4Address(p[16:20]))
            seg = p[ihl:tot]
        elif eth_type == 0x86dd:
            plen = struct.unpack(">H", p[4:6])[0]
            if p[6] != 6: continue
            src, dst = "[%s]" % ipaddress.IPv6Address(p[8:24]), "[%s]" % ipaddress.IPv6Address(p[24:40])
            seg = p[40:40 + plen]
        else: continue
        sport, dport, seq = struct.unpack(">HHI", seg[:8]); doff = (seg[12] >> 4) * 4; flags = seg[13]
        yield t, f"{src}:{sport}", f"{dst}:{dport}", seq, flags, seg[doff:]
streams = {}
out = []
for t, s, dd, seq, flags, payload in tcp_segments(sys.argv[1]):
    k = (s, dd)
    st = streams.get(k)
    if flags & 0x02:  # SYN
        streams[k] = st = {"next": (seq + 1) & 0xffffffff, "buf": b""}
        continue
    if st is None or not payload: continue
    rel = (seq - st["next"]) & 0xffffffff
    if rel >= 0x80000000:  # old data (retransmission), maybe partial overlap
        skip = (st["next"] - seq) & 0xffffffff
        if skip >= len(payload): continue
        payload = payload[skip:]; rel = 0
    if rel != 0:
        print(f"# gap in {k}", file=sys.stderr); continue
    st["next"] = (st["next"] + len(payload)) & 0xffffffff
    st["buf"] += payload
    b = st["buf"]
    while len(b) >= 19:
        ln = struct.unpack(">H", b[16:18])[0]
        if len(b) < ln: break
        m = b[:ln]; b = b[ln:]
        out.append(f"{t:.6f} {s} > {dd} {TYPES.get(m[18], m[18])} {m.hex()}")
    st["buf"] = b
print("\n".join(out))
