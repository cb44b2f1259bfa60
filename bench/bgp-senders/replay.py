"""Replay a captured BGP sender stream into a receiver, as fast as the socket takes it.

Pure python3 stdlib. A stream file (written by `bench.py` from a pcap with
`pcapbgp.sender_stream`) holds the sender's OPEN message followed by every
UPDATE it sent on the session, each a complete BGP message with its header.
This script connects from --source to --peer port 179, sends that OPEN
(the same capabilities, AS and hold time as the captured sender), answers
the peer's OPEN with a KEEPALIVE, waits for the peer's KEEPALIVE
(Established), then hands all UPDATE bytes to the socket in one `sendall`:
the receiver gets the captured bytes with no sender-side pacing, so the time
it takes to hold all routes is its own floor for those bytes.

Afterwards it keeps the session up (a KEEPALIVE every hold/3 s, everything
received is read and dropped) until the peer closes or SIGTERM/SIGINT.
One line on stdout: `established sent_bytes=B write_s=T` once the sendall
returned (T seconds after Established).
"""

import argparse
import select
import signal
import socket
import struct
import sys
import time

MARKER = b"\xff" * 16
KEEPALIVE = MARKER + struct.pack("!HB", 19, 4)


def split(data):
    """Split concatenated BGP messages: [(type, bytes of the whole message)]."""
    out, off = [], 0
    while off + 19 <= len(data):
        length, typ = struct.unpack("!HB", data[off + 16 : off + 19])
        if length < 19 or off + length > len(data):
            raise ValueError(f"truncated or bad message at offset {off}")
        out.append((typ, data[off : off + length]))
        off += length
    if off != len(data):
        raise ValueError(f"{len(data) - off} trailing bytes")
    return out


def read_msg(sock, buf):
    """One complete BGP message from sock (buf holds bytes read beyond it)."""
    while True:
        if len(buf) >= 19:
            length = struct.unpack("!H", buf[16:18])[0]
            if len(buf) >= length:
                m = bytes(buf[:length])
                del buf[:length]
                return m
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("peer closed the connection")
        buf += chunk


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--stream", required=True, help="OPEN + UPDATE messages, as bench.py writes them")
    args = ap.parse_args()

    msgs = split(open(args.stream, "rb").read())
    if not msgs or msgs[0][0] != 1:
        sys.exit("replay: the stream does not start with an OPEN")
    open_msg = msgs[0][1]
    updates = b"".join(m for t, m in msgs[1:] if t == 2)
    hold = struct.unpack("!H", open_msg[22:24])[0]

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((args.source, 0))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for _ in range(300):
        try:
            s.connect((args.peer, 179))
            break
        except (ConnectionRefusedError, OSError):
            if stop:
                return
            time.sleep(0.1)
            s.close()
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((args.source, 0))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        sys.exit("replay: could not connect")
    buf = bytearray()
    s.sendall(open_msg)
    peer_open = read_msg(s, buf)
    if peer_open[18] != 1:
        sys.exit(f"replay: expected OPEN, got type {peer_open[18]}: {peer_open.hex()}")
    peer_hold = struct.unpack("!H", peer_open[22:24])[0]
    hold = min(hold, peer_hold) if peer_hold and hold else (hold or peer_hold)
    s.sendall(KEEPALIVE)
    while True:
        m = read_msg(s, buf)
        if m[18] == 4:
            break
        if m[18] == 3:
            sys.exit(f"replay: NOTIFICATION {m[19:21].hex()}")
    t0 = time.monotonic()
    s.sendall(updates)
    print(f"established sent_bytes={len(updates)} write_s={time.monotonic() - t0:.6f}", flush=True)

    interval = max(1.0, hold / 3) if hold else 30.0
    last = time.monotonic()
    while not stop:
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            try:
                chunk = s.recv(65536)
            except InterruptedError:
                continue
            except OSError:
                return
            if not chunk:
                return
        if time.monotonic() - last >= interval:
            s.sendall(KEEPALIVE)
            last = time.monotonic()
    # Cease / Administrative Shutdown, then close.
    s.sendall(MARKER + struct.pack("!HBBB", 21, 3, 6, 2))
    s.close()


if __name__ == "__main__":
    main()
