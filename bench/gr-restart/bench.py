#!/usr/bin/env python3
"""Graceful restart benchmark in the rt-01 lab (bench/README.md, "gr-restart").

The lab (lab/up) must be up. rt-01's gobgpd is restarted once as a graceful restart
helper (RFC 4724 + RFC 8538 notification) for every node. Then, per scenario and run:
the speakers' configuration gets `graceful-restart: true|false` (ConfigMap), client-01
requests the service in a loop (new connection per request, every 10 ms), and
k8s-node-01's speaker is stopped (SIGKILL, or SIGTERM) and started again after --gap s.
rt-01's RIB (gobgp) and kernel route are polled every ~50 ms.

Per run: requests, failed requests, how long node-01's path was stale at rt-01, how long
it was absent, how many times the kernel route's next-hop set changed.

  bench.py [--runs N] [--gap S]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
LAB = os.path.join(ROOT, "lab")
RUN = os.environ.get("FERROLB_LAB_RUN", os.path.join(ROOT, ".lab-run"))
RT, CLIENT, NODE, NODE_IP = "rt-01", "client-01", "k8s-node-01", "172.17.0.21"
SVC = "172.17.254.1"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def in_ns(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def record(name, pid):
    """As lab/up's start(): lab/down stops it by PID and start time."""
    with open(os.path.join(RUN, "pids"), "a") as f:
        f.write(f"{name} {pid} {start_time(pid)}\n")


def recorded(name):
    pid = None
    with open(os.path.join(RUN, "pids")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == name:
                pid = int(parts[1])
    return pid


def start(name, ns, argv):
    log = open(os.path.join(RUN, "log", f"{name}.log"), "a")
    p = subprocess.Popen(["ip", "netns", "exec", ns, "setsid", *argv],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    record(name, p.pid)
    return p


def wait(what, secs, cond):
    t0 = time.time()
    while time.time() - t0 < secs:
        if cond():
            return time.time() - t0
        time.sleep(0.05)
    sys.exit(f"gr-restart: timed out after {secs}s waiting for {what}")


def rib_paths():
    """{neighbor: stale} of the service prefix's paths at rt-01."""
    out = in_ns(RT, "gobgp", "-j", "global", "rib", "-a", "ipv4", check=False).stdout.strip()
    if not out or out == "null":
        return {}
    paths = json.loads(out).get(f"{SVC}/32", [])
    return {p.get("neighbor-ip"): bool(p.get("stale")) for p in paths}


def nexthops():
    out = sh("ip", "-n", RT, "-j", "route", "show", SVC, check=False).stdout.strip() or "[]"
    hops = set()
    for r in json.loads(out):
        for nh in r.get("nexthops", []):
            hops.add(nh.get("gateway"))
        if r.get("gateway"):
            hops.add(r["gateway"])
    return frozenset(hops)


def helper_gobgpd():
    """Restart rt-01's gobgpd with graceful restart (helper, notification) per neighbor."""
    conf = os.path.join(RUN, "gobgpd.toml")
    text = open(conf).read()
    if "graceful-restart" not in text:
        text = text.replace(
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n",
            "  [neighbors.graceful-restart.config]\n    enabled = true\n    helper-only = true\n"
            "    notification-enabled = true\n    restart-time = 120\n"
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n"
            "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n")
        open(conf, "w").write(text)
    old = recorded("gobgpd")
    if old:
        subprocess.run(["kill", "-TERM", str(old)], check=False)
        wait("the old gobgpd to exit", 10, lambda: not os.path.exists(f"/proc/{old}"))
    start("gobgpd", RT, ["gobgpd", "-f", conf, "-t", "toml", "-p", "--pprof-disable",
                         "--api-hosts=127.0.0.1:50051"])
    wait("gobgpd API", 10, lambda: in_ns(RT, "gobgp", "global", check=False).returncode == 0)


def set_graceful_restart(on):
    src = open(os.path.join(ROOT, "manifests/examples/config-lab.yaml")).read()
    text = src.replace("      my-asn: 64522\n",
                       f"      my-asn: 64522\n      graceful-restart: {'true' if on else 'false'}\n")
    assert text != src
    subprocess.run([os.path.join(LAB, "kapi"), "PUT",
                    "/api/v1/namespaces/metallb-system/configmaps/config", "-"],
                   input=text, text=True, check=True, capture_output=True)


def settled():
    """Every node's path present and fresh at rt-01, 3 next hops in the kernel."""
    p = rib_paths()
    return len(p) == 3 and not any(p.values()) and len(nexthops()) == 3


def speaker_cmd():
    pid = recorded(f"speaker-{NODE}")
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode() for a in f.read().split(b"\0") if a]
    return pid, argv


def one_run(gr, sig, gap, n):
    pid, argv = speaker_cmd()
    # `env RUST_LOG=info ferrolb speaker ...` as lab/up started it.
    client_secs = 25.0
    client = subprocess.Popen(
        ["ip", "netns", "exec", CLIENT, "python3", os.path.join(HERE, "client.py"),
         "--ip", SVC, "--seconds", str(client_secs)],
        stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)
    base = nexthops()
    t_stop = time.time()
    subprocess.run(["kill", f"-{sig}", str(pid)], check=True)
    wait("the speaker to exit", 15, lambda: not os.path.exists(f"/proc/{pid}")
         or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z")
    timeline = [(0.0, rib_paths().get(NODE_IP), base)]
    restarted = False
    t_end = None
    while True:
        now = time.time()
        if not restarted and now - t_stop >= gap:
            start(f"speaker-{NODE}", NODE, argv)
            restarted = True
            t_start = now
        timeline.append((now - t_stop, rib_paths().get(NODE_IP), nexthops()))
        if restarted and settled() and now - t_start > 1.0:
            t_end = now
            timeline.append((now - t_stop, rib_paths().get(NODE_IP), nexthops()))
            break
        if now - t_stop > 20:
            break
        time.sleep(0.03)
    out, _ = client.communicate(timeout=client_secs + 10)
    lines = [l.split(" ", 2) for l in out.splitlines() if l.strip()]
    window = [l for l in lines if t_stop - 1 <= float(l[0]) <= (t_end or time.time()) + 1]
    fails = [l for l in window if l[1] == "fail"]
    stale_ts = [t for t, s, _ in timeline if s is True]
    absent_ts = [t for t, s, _ in timeline if s is None]
    changes = sum(1 for a, b in zip(timeline, timeline[1:]) if a[2] != b[2])
    step = 0.08  # about one poll
    return {
        "run": n, "gr": gr, "signal": sig,
        "requests": len(window), "failed": len(fails),
        "fail_samples": [f[2] for f in fails[:3]],
        "stale_s": (max(stale_ts) - min(stale_ts) + step) if stale_ts else 0.0,
        "absent_s": (max(absent_ts) - min(absent_ts) + step) if absent_ts else 0.0,
        "nexthop_changes": changes,
        "min_nexthops": min(len(h) for _, _, h in timeline),
        "settled_s": (t_end - t_stop) if t_end else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--gap", type=float, default=1.0,
                    help="seconds between the old speaker's end and the new one's start")
    a = ap.parse_args()
    if not os.path.exists(os.path.join(RUN, "state")) or open(os.path.join(RUN, "state")).read().strip() != "up":
        sys.exit("gr-restart: the lab is not up (sudo lab/up)")
    helper_gobgpd()
    results = []
    for gr, sig in [(False, "KILL"), (True, "KILL"), (True, "TERM")]:
        set_graceful_restart(gr)
        # The config change replaces every session (6/6); wait for all three, fresh.
        time.sleep(1.0)
        wait("all sessions up and fresh", 60, settled)
        time.sleep(1.0)
        for n in range(1, a.runs + 1):
            r = one_run(gr, sig, a.gap, n)
            results.append(r)
            print(json.dumps(r), flush=True)
            wait("settled after the run", 60, settled)
            time.sleep(1.0)
    print("\nscenario            runs  requests  failed  stale s (median, max)  absent s (median, max)  nexthop changes  min nexthops")
    for gr, sig in [(False, "KILL"), (True, "KILL"), (True, "TERM")]:
        rs = [r for r in results if r["gr"] == gr and r["signal"] == sig]
        name = f"GR {'on ' if gr else 'off'} SIG{sig}"
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: E731
        mx = lambda k: max(r[k] for r in rs)  # noqa: E731
        print(f"{name:<19} {len(rs):>4}  {sum(r['requests'] for r in rs):>8}  {sum(r['failed'] for r in rs):>6}  "
              f"{med('stale_s'):>9.2f}, {mx('stale_s'):.2f}          {med('absent_s'):>9.2f}, {mx('absent_s'):.2f}          "
              f"{sum(r['nexthop_changes'] for r in rs):>6}           {min(r['min_nexthops'] for r in rs)}")


if __name__ == "__main__":
    main()
