#!/usr/bin/env python3
"""Asks who has IP on IFACE every INTERVAL seconds (broadcast ARP requests from
IFACE's MAC and first IPv4 address) and prints every ARP reply for IP as
`<monotonic seconds> <sender MAC>`, one line each, flushed. For
bench/l2-failover (run inside rt-01's namespace). Needs CAP_NET_RAW.

  arpwatch.py IFACE IP [INTERVAL]      (default 0.02)
"""
import fcntl
import select
import socket
import struct
import sys
import time

iface, ip = sys.argv[1], sys.argv[2]
interval = float(sys.argv[3]) if len(sys.argv) > 3 else 0.02
ETH_P_ARP = 0x0806
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
s.bind((iface, ETH_P_ARP))
mac = s.getsockname()[4]
probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# SIOCGIFADDR: the interface's IPv4 address, the requests' sender address.
src = fcntl.ioctl(probe.fileno(), 0x8915, struct.pack("256s", iface.encode()[:15]))[20:24]
target = socket.inet_aton(ip)
request = (
    b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + src + b"\x00" * 6 + target
)
next_send = 0.0
while True:
    now = time.monotonic()
    if now >= next_send:
        s.send(request)
        next_send = now + interval
    r, _, _ = select.select([s], [], [], max(0.0, next_send - time.monotonic()))
    if not r:
        continue
    frame = s.recv(2048)
    if len(frame) < 42:
        continue
    op, sha, spa = struct.unpack("!H", frame[20:22])[0], frame[22:28], frame[28:32]
    if op == 2 and spa == target:
        print(f"{time.monotonic():.6f} {sha.hex(':')}", flush=True)
