"""Split the BGP messages out of a pcap of loopback traffic, with timestamps.

Pure python3 stdlib. Reads classic pcap (micro- or nanosecond, either byte
order) with link types Ethernet (lo), Linux cooked v1/v2, raw IP or BSD
null; IPv4 and IPv6; reassembles each TCP direction in sequence order
(retransmissions dropped, out-of-order segments held back) and splits BGP
messages. A message's timestamp is the capture time of the segment that
carried its last byte: when it was completely on the wire.
"""

import struct
import sys
from dataclasses import dataclass, field

BGP_TYPES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}


@dataclass
class Msg:
    ts: float
    src: tuple  # (ip, port)
    dst: tuple
    type: int
    length: int
    body: bytes

    @property
    def name(self):
        return BGP_TYPES.get(self.type, str(self.type))


@dataclass
class Direction:
    isn: int = None
    next: int = 0  # relative sequence number of the next byte expected
    data: bytearray = field(default_factory=bytearray)
    chunks: list = field(default_factory=list)  # (end offset in data, ts)
    pending: dict = field(default_factory=dict)  # rel seq -> (payload, ts)

    def segment(self, seq, payload, ts, syn):
        if syn:
            self.isn = (seq + 1) & 0xFFFFFFFF
            return
        if self.isn is None:
            # Capture started mid-connection: take the first seen byte as start.
            self.isn = seq
        if not payload:
            return
        rel = (seq - self.isn) & 0xFFFFFFFF
        self.pending.setdefault(rel, (payload, ts))
        while True:
            progressed = False
            for rel in sorted(self.pending):
                payload, ts = self.pending[rel]
                end = rel + len(payload)
                if end <= self.next:
                    del self.pending[rel]  # retransmission
                    progressed = True
                elif rel <= self.next:
                    del self.pending[rel]
                    self.data += payload[self.next - rel :]
                    self.next = end
                    self.chunks.append((end, ts))
                    progressed = True
                break
            if not progressed:
                return


def _packets(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            return
        magic = hdr[:4]
        if magic == b"\xd4\xc3\xb2\xa1":
            endian, scale = "<", 1e-6
        elif magic == b"\xa1\xb2\xc3\xd4":
            endian, scale = ">", 1e-6
        elif magic == b"\x4d\x3c\xb2\xa1":
            endian, scale = "<", 1e-9
        elif magic == b"\xa1\xb2\x3c\x4d":
            endian, scale = ">", 1e-9
        else:
            raise ValueError(f"{path}: not a classic pcap file (pcapng is not supported)")
        linktype = struct.unpack(endian + "I", hdr[20:24])[0] & 0xFFFF
        rec = struct.Struct(endian + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, _orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl:
                return
            yield sec + frac * scale, linktype, data


def _ip_payload(linktype, frame):
    """(ethertype-ish version, ip bytes) or None."""
    if linktype == 1:  # Ethernet
        off, et = 14, struct.unpack("!H", frame[12:14])[0]
        while et == 0x8100 and len(frame) >= off + 4:
            et = struct.unpack("!H", frame[off + 2 : off + 4])[0]
            off += 4
        return frame[off:]
    if linktype == 113:  # Linux cooked v1
        return frame[16:]
    if linktype == 276:  # Linux cooked v2
        return frame[20:]
    if linktype in (101, 12, 14):  # raw IP
        return frame
    if linktype == 0:  # BSD null
        return frame[4:]
    return None


def tcp_segments(path):
    """Yield (ts, (src ip, port), (dst ip, port), seq, flags, payload, window field)."""
    import ipaddress

    for ts, lt, frame in _packets(path):
        ip = _ip_payload(lt, frame)
        if not ip:
            continue
        ver = ip[0] >> 4
        if ver == 4:
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            src = ipaddress.IPv4Address(ip[12:16])
            dst = ipaddress.IPv4Address(ip[16:20])
            # Segmentation offload on lo can leave total length 0: trust the capture then.
            tcp = ip[ihl:total] if total else ip[ihl:]
        elif ver == 6:
            if ip[6] != 6:
                continue  # extension headers: not on our loopback
            plen = struct.unpack("!H", ip[4:6])[0]
            src = ipaddress.IPv6Address(ip[8:24])
            dst = ipaddress.IPv6Address(ip[24:40])
            tcp = ip[40 : 40 + plen] if plen else ip[40:]
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        flags = tcp[13]
        win = struct.unpack("!H", tcp[14:16])[0]
        yield ts, (str(src), sport), (str(dst), dport), seq, flags, bytes(tcp[doff:]), win


def messages(path, port=179):
    """All BGP messages in the capture, per connection, sorted by time.

    Returns {connection key (sorted endpoints): [Msg, ...]}.
    """
    dirs = {}
    for ts, src, dst, seq, flags, payload, _win in tcp_segments(path):
        if src[1] != port and dst[1] != port:
            continue
        d = dirs.setdefault((src, dst), Direction())
        d.segment(seq, payload, ts, syn=bool(flags & 0x02))
    conns = {}
    for (src, dst), d in dirs.items():
        out = conns.setdefault(tuple(sorted([src, dst])), [])
        off, ci = 0, 0
        data = d.data
        while off + 19 <= len(data):
            length, typ = struct.unpack("!HB", data[off + 16 : off + 19])
            if length < 19 or off + length > len(data):
                break
            end = off + length
            while d.chunks[ci][0] < end:
                ci += 1
            out.append(Msg(d.chunks[ci][1], src, dst, typ, length, bytes(data[off + 19 : end])))
            off = end
    for msgs in conns.values():
        msgs.sort(key=lambda m: m.ts)
    return conns


def update_counts(body):
    """(IPv4 NLRI prefixes, IPv4 withdrawn prefixes, end-of-RIB?) of one UPDATE body."""

    def count(buf):
        n, i = 0, 0
        while i < len(buf):
            i += 1 + (buf[i] + 7) // 8
            n += 1
        return n

    wlen = struct.unpack("!H", body[:2])[0]
    withdrawn = count(body[2 : 2 + wlen])
    alen = struct.unpack("!H", body[2 + wlen : 4 + wlen])[0]
    nlri = count(body[4 + wlen + alen :])
    eor = wlen == 0 and alen == 0
    return nlri, withdrawn, eor


def sender_stats(path, sender_ip, port=179):
    """Timing of the BGP session in `path` whose one end is `sender_ip`.

    Established = the first KEEPALIVE (either direction) after both OPENs.
    Picks the connection that carried the most UPDATE bytes from the sender.
    """
    best = None
    for msgs in messages(path, port).values():
        opens, est = set(), None
        st = dict(updates=0, bytes=0, prefixes=0, withdrawn=0, eor=0, first=None, last=None)
        for m in msgs:
            if m.type == 1:
                opens.add(m.src)
            elif m.type == 4 and est is None and len(opens) == 2:
                est = m.ts
            if m.src[0] != sender_ip or m.type != 2:
                continue
            n, w, eor = update_counts(m.body)
            st["updates"] += 1
            st["bytes"] += m.length
            st["prefixes"] += n
            st["withdrawn"] += w
            st["eor"] += int(eor)
            if n:
                st["first"] = st["first"] if st["first"] is not None else m.ts
                st["last"] = m.ts
        st["established"] = est
        if best is None or st["bytes"] > best["bytes"]:
            best = st
    return best


def sender_messages(path, sender_ip, port=179):
    """The messages of the connection that carried the most UPDATE bytes from `sender_ip`."""
    best, best_bytes = [], -1
    for msgs in messages(path, port).values():
        b = sum(m.length for m in msgs if m.src[0] == sender_ip and m.type == 2)
        if b > best_bytes:
            best, best_bytes = msgs, b
    return best


def sender_stream(path, sender_ip, port=179):
    """The sender's OPEN and all its UPDATEs on that connection, as wire bytes (headers included)."""
    out = bytearray()
    for m in sender_messages(path, sender_ip, port):
        if m.src[0] != sender_ip or m.type not in (1, 2):
            continue
        if m.type == 1 and out:
            continue  # one OPEN, first
        out += b"\xff" * 16 + struct.pack("!HB", m.length, m.type) + m.body
    return bytes(out)


def attr_codes(body):
    """Path attribute (flags, type code, value length) triples of one UPDATE body, in wire order."""
    wlen = struct.unpack("!H", body[:2])[0]
    alen = struct.unpack("!H", body[2 + wlen : 4 + wlen])[0]
    a, end, out = 4 + wlen, 4 + wlen + alen, []
    while a + 3 <= end:
        flags, code = body[a], body[a + 1]
        if flags & 0x10:
            vlen = struct.unpack("!H", body[a + 2 : a + 4])[0]
            a += 4
        else:
            vlen = body[a + 2]
            a += 3
        out.append((flags, code, vlen))
        a += vlen
    return out


def shape(path, sender_ip, port=179):
    """How the sender's bytes went out and were taken: TCP segments carrying its
    payload (count, median and max size), zero windows the receiver advertised,
    UPDATE sizes (min, median, max), and the attribute layout of its first
    UPDATE with NLRI as "flags:type/len" items."""
    msgs = sender_messages(path, sender_ip, port)
    if not msgs:
        return None
    ends = {msgs[0].src, msgs[0].dst}
    sizes, zero = [], 0
    for _ts, src, dst, _seq, _flags, payload, win in tcp_segments(path):
        if {src, dst} != ends:
            continue
        if src[0] == sender_ip:
            if payload:
                sizes.append(len(payload))
        elif win == 0:
            zero += 1
    ups = [m for m in msgs if m.src[0] == sender_ip and m.type == 2]
    lens = sorted(m.length for m in ups)
    layout = ""
    for m in ups:
        if update_counts(m.body)[0]:
            layout = " ".join(f"{f:02x}:{c}/{v}" for f, c, v in attr_codes(m.body))
            break
    sizes.sort()
    return dict(
        segments=len(sizes),
        seg_median=sizes[len(sizes) // 2] if sizes else 0,
        seg_max=sizes[-1] if sizes else 0,
        zero_windows=zero,
        upd_min=lens[0] if lens else 0,
        upd_median=lens[len(lens) // 2] if lens else 0,
        upd_max=lens[-1] if lens else 0,
        layout=layout,
    )


if __name__ == "__main__":
    # Debug aid: pcapbgp.py FILE SENDER_IP
    s = sender_stats(sys.argv[1], sys.argv[2])
    print(s)
    if s and s["established"] and s["last"]:
        print(f"wire {s['last'] - s['established']:.4f} s")
    print(shape(sys.argv[1], sys.argv[2]))
