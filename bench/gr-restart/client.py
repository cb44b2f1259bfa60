#!/usr/bin/env python3
"""Runs in client-01: one new TCP connection and one HTTP GET to the service every
--every ms (1 s timeout each), until --seconds have passed. Prints one line per request:
`<unix time> ok <node>` or `<unix time> fail <error>`.
"""
import argparse
import socket
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--ip", required=True)
ap.add_argument("--port", type=int, default=80)
ap.add_argument("--seconds", type=float, required=True)
ap.add_argument("--every", type=float, default=10.0)
a = ap.parse_args()

end = time.time() + a.seconds
while time.time() < end:
    t = time.time()
    try:
        with socket.create_connection((a.ip, a.port), timeout=1.0) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: svc\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        body = data.split(b"\r\n\r\n", 1)[-1].decode().strip()
        if not data.startswith(b"HTTP/1.0 200") and not data.startswith(b"HTTP/1.1 200"):
            raise RuntimeError("status " + data[:20].decode(errors="replace"))
        print(f"{t:.3f} ok {body}", flush=True)
    except Exception as e:  # noqa: BLE001 (a failed request is the measurement)
        print(f"{t:.3f} fail {type(e).__name__}:{e}".replace("\n", " "), flush=True)
    rest = a.every / 1000 - (time.time() - t)
    if rest > 0:
        time.sleep(rest)
sys.exit(0)
