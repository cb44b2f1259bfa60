#!/usr/bin/env python3
"""BFD failover benchmark (see bench/README.md): SIGSTOP the announcing
`ferrolb announce`, time until FRR's route to its prefix is gone.

Namespace A runs ferrolb (198.18.0.2), namespace B runs FRR zebra + bgpd +
bfdd (198.18.0.1); a veth joins them. The route leaving FRR is observed as
zebra removing it from B's kernel table, polled every 10 ms. Every process
started here is killed by PID and both namespaces are deleted at the end.
"""
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

FERROLB = os.environ["FERROLB"]
PID = os.getpid()
NS_A, NS_B = f"flb-bfdbench-a-{PID}", f"flb-bfdbench-b-{PID}"
A, B = "198.18.0.2", "198.18.0.1"
PREFIX = "172.17.254.1/32"
HOLD = 3
FRR = "/usr/lib/frr"

args = sys.argv[1:]
RUNS = int(args[args.index("--runs") + 1]) if "--runs" in args else 10
KEEP = "--keep" in args

work = tempfile.mkdtemp(prefix="ferrolb-bfdbench.")
os.chmod(work, 0o755)
procs = []


def sh(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True).stdout


def spawn(ns, argv, label):
    out = open(os.path.join(work, label + ".log"), "ab")
    p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=out,
                         stdin=subprocess.DEVNULL)
    procs.append(p)
    return p


def vtysh(cmd):
    return sh("ip", "netns", "exec", NS_B, "vtysh", "--vty_socket", run_dir, "-c", cmd,
              check=False)


def wait(pred, timeout, what, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise RuntimeError(f"timed out: {what}")


def route_in_kernel():
    return PREFIX.split("/")[0] in sh("ip", "-n", NS_B, "route", "show", PREFIX, check=False)


def bfd_up():
    try:
        peers = json.loads(vtysh("show bfd peers json") or "[]")
    except json.JSONDecodeError:
        return False
    return any(p.get("peer") == A and p.get("status") == "up" for p in peers)


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if KEEP:
        print(f"bfd-failover: kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


run_dir = os.path.join(work, "frr")
try:
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "flbbfd0", "netns", NS_A, "type", "veth", "peer", "name", "eth0",
       "netns", NS_B)
    sh("ip", "-n", NS_A, "link", "set", "flbbfd0", "name", "eth0")
    sh("ip", "-n", NS_A, "addr", "add", A + "/24", "dev", "eth0")
    sh("ip", "-n", NS_B, "addr", "add", B + "/24", "dev", "eth0")
    for ns in (NS_A, NS_B):
        sh("ip", "-n", ns, "link", "set", "eth0", "up")

    os.makedirs(run_dir)
    conf = {
        "zebra.conf": "hostname bench\n",
        "bfdd.conf": "hostname bench\nbfd\n profile fast\n  receive-interval 100\n"
                     "  transmit-interval 100\n  detect-multiplier 3\n !\n!\n",
        "bgpd.conf": f"hostname bench\nrouter bgp 64512\n bgp router-id {B}\n"
                     " no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n"
                     f" neighbor {A} remote-as 64522\n neighbor {A} timers 1 {HOLD}\n"
                     f" neighbor {A} timers connect 1\n"
                     f" address-family ipv4 unicast\n  neighbor {A} activate\n"
                     " exit-address-family\n!\n",
    }
    for name, text in conf.items():
        with open(os.path.join(run_dir, name), "w") as f:
            f.write(text)
    sh("chown", "-R", "frr:frr", run_dir)
    common = ["-u", "frr", "-g", "frr", "-P", "0", "-z", os.path.join(run_dir, "zserv.api"),
              "--vty_socket", run_dir]
    spawn(NS_B, [f"{FRR}/zebra", *common, "-f", os.path.join(run_dir, "zebra.conf"),
                 "-i", os.path.join(run_dir, "zebra.pid")], "zebra")
    wait(lambda: os.path.exists(os.path.join(run_dir, "zserv.api")), 10, "zebra")
    spawn(NS_B, [f"{FRR}/bfdd", *common, "-f", os.path.join(run_dir, "bfdd.conf"),
                 "-i", os.path.join(run_dir, "bfdd.pid"),
                 "--bfdctl", os.path.join(run_dir, "bfdd.sock")], "bfdd")
    spawn(NS_B, [f"{FRR}/bgpd", *common, "-f", os.path.join(run_dir, "bgpd.conf"),
                 "-i", os.path.join(run_dir, "bgpd.pid")], "bgpd")
    wait(lambda: "BGP" in vtysh("show bgp summary") or "No BGP" in vtysh("show bgp summary"),
         10, "bgpd")

    def one(bfd):
        argv = [FERROLB, "announce", "--peer", B, "--source", A, "--local-as", "64522",
                "--peer-as", "64512", "--hold-time", str(HOLD), "--connect-retry", "1",
                "--prefix", PREFIX]
        if bfd:
            argv += ["--bfd", "--bfd-rx-interval", "100", "--bfd-tx-interval", "100",
                     "--bfd-detect-multiplier", "3"]
        p = spawn(NS_A, argv, "ferrolb")
        try:
            wait(route_in_kernel, 30, "route installed", 0.02)
            if bfd:
                wait(bfd_up, 30, "BFD up")
                time.sleep(0.5)  # let the Poll Sequence settle the 100 ms timers
            else:
                time.sleep(0.2)
            t0 = time.monotonic()
            os.kill(p.pid, signal.SIGSTOP)
            wait(lambda: not route_in_kernel(), HOLD + 10, "route removed", 0.01)
            return time.monotonic() - t0
        finally:
            p.kill()
            p.wait()
            procs.remove(p)
            # FRR notices the dead process (RST) and drops the session.
            wait(lambda: not route_in_kernel(), 30, "route gone before the next run")

    results = {}
    for mode, bfd in (("bfd-100msx3", True), ("no-bfd-hold3s", False)):
        if bfd:
            vtysh_lines = ["conf t", "router bgp 64512", f"neighbor {A} bfd",
                           f"neighbor {A} bfd profile fast"]
        else:
            vtysh_lines = ["conf t", "router bgp 64512", f"no neighbor {A} bfd"]
        sh("ip", "netns", "exec", NS_B, "vtysh", "--vty_socket", run_dir,
           *sum((["-c", c] for c in vtysh_lines), []))
        times = []
        for i in range(RUNS):
            dt = one(bfd)
            times.append(dt)
            print(f"{mode} run {i + 1}: {dt * 1000:.0f} ms", file=sys.stderr)
        results[mode] = times
    print(f"{'mode':<16}{'runs':>5}{'median_ms':>11}{'max_ms':>8}{'min_ms':>8}")
    for mode, t in results.items():
        print(f"{mode:<16}{len(t):>5}{statistics.median(t) * 1000:>11.0f}"
              f"{max(t) * 1000:>8.0f}{min(t) * 1000:>8.0f}")
finally:
    cleanup()
