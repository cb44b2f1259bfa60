#!/usr/bin/env python3
"""Reliability scenarios in the rt-01 lab (bench/README.md, "reliability"; issue 15).

The lab (lab/up: gobgpd on rt-01, etcd + kube-apiserver + controller on k8s-master-01,
three speakers) must be up. Every scenario first makes sure 200 extra LoadBalancer
Services (`rel-000`..`rel-199`, Endpoints on all three nodes) exist and that rt-01's
table is full: for every node, the set of /32s rt-01 holds from that neighbor (gobgp RIB,
not stale) EQUALS the set of BGP-pool IPs the API server shows on the Services.

  bench.py flaps     [--restarts N] [--resets M] [--gap S]    scenario 2: router restarts, session resets
  bench.py node-down [--runs N] [--hold S] [--bfd]         scenario 7: a node's link set down (hold time)
  bench.py api-outage [--outage S]                    scenario 1: etcd + kube-apiserver stopped
  bench.py churn [--minutes M] [--rate R] [--seed S] [--settle S]   scenario 4: churn soak

  common: --services N, --slices (the lab of `lab/up --slices`: every Service's endpoints are
  a discovery.k8s.io/v1 EndpointSlice, no Endpoints object; the speakers read slices)

Each prints what was injected, what was measured, what was lost, and one JSON line of figures.
"""
import argparse
import ipaddress
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RUN = os.environ.get("FERROLB_LAB_RUN", os.path.join(ROOT, ".lab-run"))
RT, MASTER = "rt-01", "k8s-master-01"
NODES = {"k8s-node-01": "172.17.0.21", "k8s-node-02": "172.17.0.22", "k8s-node-03": "172.17.0.23"}
POOL = ipaddress.ip_network("172.17.254.0/24")
PREFIX = "rel"
SVC_IP = "172.17.254.1"


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


def in_ns(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


def say(msg):
    print(time.strftime("%H:%M:%S ") + msg, flush=True)


# ------------------------------------------------------------------ processes (lab/up's records)
def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[19]


def record(name, pid):
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


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start(name, ns, argv, log=None):
    out = open(log or os.path.join(RUN, "log", f"{name}.log"), "a")
    p = subprocess.Popen(["ip", "netns", "exec", ns, "setsid", *argv],
                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return p


def stop(pid, what, secs=15):
    """SIGTERM, and SIGKILL after `secs` (kube-apiserver drains its watches for a minute)."""
    subprocess.run(["kill", "-TERM", str(pid)], check=False)
    try:
        wait(f"{what} to exit", secs, lambda: not alive(pid))
    except TimeoutError:
        say(f"{what} still running {secs} s after SIGTERM: SIGKILL")
        subprocess.run(["kill", "-KILL", str(pid)], check=False)
        wait(f"{what} to exit after SIGKILL", 10, lambda: not alive(pid))


def wait(what, secs, cond, step=0.05):
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        if cond():
            return time.monotonic() - t0
        time.sleep(step)
    raise TimeoutError(f"timed out after {secs}s waiting for {what}")


def mem(pid):
    """(VmRSS kB, open fds) of a live process."""
    rss = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def speakers():
    return {n: recorded(f"speaker-{n}") for n in NODES}


def snapshot(extra=()):
    out = {}
    for n, pid in list(speakers().items()) + [(e, recorded(e)) for e in extra]:
        if pid and alive(pid):
            rss, fds = mem(pid)
            out[n] = {"pid": pid, "rss_kB": rss, "fds": fds}
        else:
            out[n] = {"pid": pid, "dead": True}
    return out


# ------------------------------------------------------------------ the router's table
ROUTER = {"kind": "gobgp", "vty": None}


def rib_frr():
    """As rib(), from FRR's bgpd (`show bgp ipv4 unicast json`)."""
    r = in_ns(RT, "vtysh", "--vty_socket", ROUTER["vty"], "-c", "show bgp ipv4 unicast json",
              check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    try:
        routes = json.loads(r.stdout).get("routes", {})
    except json.JSONDecodeError:
        return None
    out = {ip: set() for ip in NODES.values()}
    for prefix, paths in routes.items():
        for p in paths:
            nb = p.get("peerId")
            if nb in out and p.get("valid"):
                out[nb].add(prefix)
    return out


def rib():
    """{neighbor: set(prefix)} of fresh paths at rt-01, or None when the router does not answer."""
    if ROUTER["kind"] == "frr":
        return rib_frr()
    r = in_ns(RT, "gobgp", "-j", "global", "rib", "-a", "ipv4", check=False)
    if r.returncode != 0:
        return None
    text = r.stdout.strip()
    out = {ip: set() for ip in NODES.values()}
    if not text or text == "null":
        return out
    for prefix, paths in json.loads(text).items():
        for p in paths:
            nb = p.get("neighbor-ip")
            if nb in out and not p.get("stale"):
                out[nb].add(prefix)
    return out


def fib_hops(prefix=SVC_IP):
    out = sh("ip", "-n", RT, "-j", "route", "show", prefix, check=False).stdout.strip() or "[]"
    hops = set()
    for r in json.loads(out):
        for nh in r.get("nexthops", []):
            hops.add(nh.get("gateway"))
        if r.get("gateway"):
            hops.add(r["gateway"])
    return hops


def neighbor_uptime(ip):
    r = in_ns(RT, "gobgp", "-j", "neighbor", ip, check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return None
    n = json.loads(r.stdout)
    return (n.get("timers", {}).get("state", {}) or {}).get("uptime")


def expected():
    """The BGP-pool IPs the API server shows: nginx's and the bench Services'."""
    ips = svc_ips()
    want = {f"{ip}/32" for ip in ips.values() if ip and ipaddress.ip_address(ip) in POOL}
    want.add(f"{SVC_IP}/32")
    return want


def full(want, nodes=None):
    t = rib()
    return t is not None and all(t[NODES[n]] == want for n in (nodes or NODES))


# ------------------------------------------------------------------ Kubernetes
KUBE_FLAGS = []  # ["--slices"] with --slices


def kube(*args, check=True):
    return in_ns(MASTER, "python3", os.path.join(HERE, "kube.py"), RUN, *KUBE_FLAGS, *args,
                 check=check)


SPEAKER_SAYS = {True: "reading endpoints from discovery.k8s.io/v1 EndpointSlices",
                False: "EndpointSlice v1 not served: reading core/v1 Endpoints"}


def endpoint_source(slices):
    """What each speaker logged about where it reads endpoints (speaker/src/sources.rs):
    ([speakers that do not say they read the API `slices` says], {node: [its endpoints
    watch's "watch error" lines]})."""
    wrong, errors = [], {}
    watch = 'watch="endpointslices"' if slices else 'watch="endpoints"'
    for n in NODES:
        text = open(os.path.join(RUN, "log", f"speaker-{n}.log"), errors="replace").read()
        if SPEAKER_SAYS[slices] not in text or SPEAKER_SAYS[not slices] in text:
            wrong.append(f"{n} does not say '{SPEAKER_SAYS[slices]}'")
        errors[n] = [x for x in text.splitlines() if watch in x and "watch error" in x]
    return wrong, errors


def svc_ips():
    return json.loads(kube("ips", PREFIX).stdout)


def ensure_services(n):
    kube("create", PREFIX, str(n), *[f"{ip}:{name}" for name, ip in NODES.items()])
    wait(f"{n} bench Services to get an IP", 120,
         lambda: sum(1 for v in svc_ips().values() if v) >= n, step=0.5)
    want = expected()
    say(f"{len(want)} BGP service IPs (nginx + {n}); waiting for rt-01's full table")
    wait("rt-01's full table", 120, lambda: full(want), step=0.2)
    return want


def stats(xs):
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median_s": round(statistics.median(xs), 3), "max_s": round(max(xs), 3),
            "min_s": round(min(xs), 3)}


def mem_delta(before, after):
    lines = []
    for k in before:
        b, a = before[k], after.get(k, {})
        if b.get("dead") or a.get("dead"):
            lines.append(f"  {k}: {'DEAD before' if b.get('dead') else 'DEAD after'}")
            continue
        same = "" if a["pid"] == b["pid"] else f" (RESTARTED: pid {b['pid']} -> {a['pid']})"
        lines.append(f"  {k}: RSS {b['rss_kB'] / 1024:.1f} -> {a['rss_kB'] / 1024:.1f} MB, "
                     f"fds {b['fds']} -> {a['fds']}{same}")
    return "\n".join(lines)


# ------------------------------------------------------------------ scenario 2: router restarts and resets
def restart_gobgpd():
    conf = os.path.join(RUN, "gobgpd.toml")
    old = recorded("gobgpd")
    if old and alive(old):
        stop(old, "gobgpd")
    p = start("gobgpd", RT, ["gobgpd", "-f", conf, "-t", "toml", "-p", "--pprof-disable",
                             "--api-hosts=127.0.0.1:50051"])
    record("gobgpd", p.pid)
    return p.pid


def flaps(a):
    want = ensure_services(a.services)
    before = snapshot()
    say(f"injected: gobgpd on rt-01 restarted {a.restarts} times (SIGTERM, start again); "
        f"{a.gap:g} s after each full table; then {a.resets} session resets from rt-01 (`gobgp neighbor X reset`, the 3 nodes at once)")
    restart_times, lost = [], []
    for i in range(a.restarts):
        t0 = time.monotonic()
        restart_gobgpd()
        try:
            wait("full table after a gobgpd restart", 120, lambda: full(want), step=0.05)
            restart_times.append(time.monotonic() - t0)
        except TimeoutError:
            t = rib() or {}
            lost.append(f"restart {i + 1}: not full after 120 s "
                        f"({ {n: len(t.get(ip, ())) for n, ip in NODES.items()} } of {len(want)})")
        time.sleep(a.gap)
        if (i + 1) % 10 == 0:
            say(f"restart {i + 1}/{a.restarts}: median {statistics.median(restart_times):.2f} s")
    mid = snapshot()
    reset_times = []
    done = 0
    while done < a.resets:
        # One round: every node's session reset at the same moment (gobgpd then holds each
        # peer idle for 30 s, its fixed idle-hold-time-after-reset: the rounds save time).
        round_nodes = list(NODES)[:a.resets - done]
        up0 = {n: neighbor_uptime(NODES[n]) for n in round_nodes}
        t0 = time.monotonic()
        for n in round_nodes:
            in_ns(RT, "gobgp", "neighbor", NODES[n], "reset")
        back = {}
        while time.monotonic() - t0 < 150 and len(back) < len(round_nodes):
            t = rib()
            for n in round_nodes:
                if n not in back and t is not None and t[NODES[n]] == want \
                        and neighbor_uptime(NODES[n]) not in (None, up0[n]):
                    back[n] = time.monotonic() - t0
            time.sleep(0.05)
        for n in round_nodes:
            if n in back:
                reset_times.append(back[n])
            else:
                lost.append(f"reset {done + 1} ({n}): session not back with the full table after 150 s")
            done += 1
        time.sleep(a.gap)
        say(f"resets {done}/{a.resets}: " + ", ".join(f"{n} {v:.1f} s" for n, v in sorted(back.items())))
    wait("full table at the end", 60, lambda: full(want))
    after = snapshot()
    print()
    print(f"measured: time from gobgpd's start (or the reset command) until rt-01 holds, from every")
    print(f"          node (one node for a reset), exactly the {len(want)} service /32s the API server shows")
    print(f"gobgpd restarts: {stats(restart_times)}")
    print(f"session resets:  {stats(reset_times)}")
    print("speakers before -> after the restarts:\n" + mem_delta(before, mid))
    print("speakers before -> after everything:\n" + mem_delta(before, after))
    print("lost: " + ("nothing" if not lost else "; ".join(lost)))
    print(json.dumps({"scenario": "flaps", "prefixes": len(want), "restarts": stats(restart_times),
                      "resets": stats(reset_times), "before": before, "after_restarts": mid,
                      "after": after, "lost": lost}))
    return 0 if not lost else 1


# ------------------------------------------------------------------ scenario 7: node link down
def set_hold(hold):
    conf = os.path.join(RUN, "gobgpd.toml")
    text = open(conf).read()
    text = re.sub(r"hold-time = \d+", f"hold-time = {hold}", text)
    text = re.sub(r"keepalive-interval = \d+", f"keepalive-interval = {max(1, hold // 3)}", text)
    open(conf, "w").write(text)
    restart_gobgpd()


def link(node, up):
    sh("ip", "-n", node, "link", "set", "eth0", "up" if up else "down")
    if up:
        # The default route went with the link.
        sh("ip", "-n", node, "route", "replace", "default", "via", "172.17.0.1")


def node_down(a):
    want = ensure_services(a.services)
    frr_dir = None
    try:
        return node_down_runs(a, want)
    finally:
        if ROUTER["kind"] == "frr":
            frr_dir = ROUTER["vty"]
            put_config()
            frr_down(frr_dir)


def node_down_runs(a, want):
    if a.bfd:
        frr_up(a.hold, 100, 100, 3)
        put_config("      bfd-profile: fast\n",
                   "    bfd-profiles:\n    - name: fast\n      receive-interval: 100\n"
                   "      transmit-interval: 100\n      detect-multiplier: 3\n")
        wait("full table at FRR", 120, lambda: full(want), step=0.2)
        wait("BFD up with every node", 60, bfd_peers_up, step=0.2)
        time.sleep(1.0)
    else:
        set_hold(a.hold)
        wait("full table after gobgpd's restart", 120, lambda: full(want), step=0.1)
    wait("3 next hops in rt-01's kernel", 30, lambda: len(fib_hops()) == 3)
    router = (f"FRR 8.4 bgpd + bfdd, BFD 100 ms x 3, hold {a.hold} s" if a.bfd
              else f"gobgpd, hold time {a.hold} s, no BFD")
    say(f"injected: a node's eth0 set down inside its namespace (no clean stop; rt-01: {router}), "
        f"{a.runs} times, nodes in turn; link up again after each")
    rib_t, fib_t, lost = [], [], []
    names = list(NODES)
    for i in range(a.runs):
        node = names[i % len(names)]
        ip = NODES[node]
        t0 = time.monotonic()
        link(node, False)
        t_rib = t_fib = None
        try:
            while time.monotonic() - t0 < a.hold + 20 and (t_rib is None or t_fib is None):
                now = time.monotonic()
                if t_rib is None:
                    t = rib()
                    if t is not None and not t[ip]:
                        t_rib = now - t0
                if t_fib is None and ip not in fib_hops():
                    t_fib = now - t0
                time.sleep(0.02)
        finally:
            link(node, True)
        if t_rib is None or t_fib is None:
            lost.append(f"run {i + 1} ({node}): rt-01 still had its path after {a.hold + 20} s "
                        f"(RIB: {'gone' if t_rib else 'still there'}, kernel: {'gone' if t_fib else 'still there'})")
        else:
            rib_t.append(t_rib)
            fib_t.append(t_fib)
            say(f"run {i + 1} {node}: path gone from rt-01's RIB after {t_rib:.2f} s, "
                f"from its kernel route after {t_fib:.2f} s")
        try:
            wait("full table after the link came back", 120, lambda: full(want), step=0.1)
            wait("3 next hops again", 30, lambda: len(fib_hops()) == 3)
            if a.bfd:
                wait("BFD up again", 60, bfd_peers_up, step=0.2)
                time.sleep(1.0)
        except TimeoutError as e:
            lost.append(f"run {i + 1} ({node}): {e}")
            break
    print()
    print("measured: from `ip link set eth0 down` in the node's namespace until rt-01 has no path")
    print("          from that node (gobgp or FRR RIB) and no next hop via it for 172.17.254.1 (kernel)")
    print(f"{router}, RIB:    {stats(rib_t)}")
    print(f"{router}, kernel: {stats(fib_t)}")
    print("lost: " + ("nothing" if not lost else "; ".join(lost)))
    print(json.dumps({"scenario": "node-down", "bfd": a.bfd, "hold_s": a.hold,
                      "rib": stats(rib_t), "kernel": stats(fib_t), "lost": lost}))
    return 0 if not lost else 1


# ------------------------------------------------------------------ FRR with bfdd on rt-01
FRR = "/usr/lib/frr"


def put_config(extra_peer_lines="", extra=""):
    src = open(os.path.join(ROOT, "manifests/examples/config-lab.yaml")).read()
    text = src.replace("      my-asn: 64522\n", "      my-asn: 64522\n" + extra_peer_lines)
    text = text.replace("    address-pools:\n", extra + "    address-pools:\n")
    subprocess.run([os.path.join(ROOT, "lab", "kapi"), "PUT",
                    "/api/v1/namespaces/metallb-system/configmaps/config", "-"],
                   input=text, text=True, check=True, capture_output=True)


def frr_up(hold, rx, tx, mult):
    """Replaces rt-01's gobgpd with FRR (zebra + bfdd + bgpd, BFD profile `fast`)."""
    import tempfile
    old = recorded("gobgpd")
    if old and alive(old):
        stop(old, "gobgpd")
    # lab/rib2fib's routes (it cannot reach gobgpd now, so it leaves the kernel alone): zebra
    # installs its own, and a leftover would still show the old next hops.
    sh("ip", "-n", RT, "route", "flush", "proto", "bgp", check=False)
    d = tempfile.mkdtemp(prefix="ferrolb-rel-frr.")
    os.chmod(d, 0o755)
    nbrs = "".join(f" neighbor {ip} remote-as 64522\n neighbor {ip} timers {max(1, hold // 3)} {hold}\n"
                   f" neighbor {ip} timers connect 1\n neighbor {ip} bfd\n"
                   f" neighbor {ip} bfd profile fast\n" for ip in NODES.values())
    act = "".join(f"  neighbor {ip} activate\n" for ip in NODES.values())
    conf = {
        "zebra.conf": "hostname rt-01\n",
        "bfdd.conf": f"hostname rt-01\nbfd\n profile fast\n  receive-interval {rx}\n"
                     f"  transmit-interval {tx}\n  detect-multiplier {mult}\n !\n!\n",
        "bgpd.conf": "hostname rt-01\nrouter bgp 64512\n bgp router-id 172.17.0.1\n"
                     " no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n" + nbrs +
                     " address-family ipv4 unicast\n  maximum-paths 8\n" + act +
                     " exit-address-family\n!\n",
    }
    for name, text in conf.items():
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    sh("chown", "-R", "frr:frr", d)
    common = ["-u", "frr", "-g", "frr", "-P", "0", "-z", os.path.join(d, "zserv.api"),
              "--vty_socket", d]
    p = start("frr-zebra", RT, [f"{FRR}/zebra", *common, "-f", f"{d}/zebra.conf", "-i", f"{d}/zebra.pid"])
    record("frr-zebra", p.pid)
    wait("zebra", 10, lambda: os.path.exists(os.path.join(d, "zserv.api")))
    p = start("frr-bfdd", RT, [f"{FRR}/bfdd", *common, "-f", f"{d}/bfdd.conf", "-i", f"{d}/bfdd.pid",
                               "--bfdctl", f"{d}/bfdd.sock"])
    record("frr-bfdd", p.pid)
    p = start("frr-bgpd", RT, [f"{FRR}/bgpd", *common, "-f", f"{d}/bgpd.conf", "-i", f"{d}/bgpd.pid"])
    record("frr-bgpd", p.pid)
    ROUTER.update(kind="frr", vty=d)
    return d


def frr_down(d):
    for name in ("frr-bgpd", "frr-bfdd", "frr-zebra"):
        pid = recorded(name)
        if pid and alive(pid):
            stop(pid, name)
    ROUTER.update(kind="gobgp", vty=None)
    subprocess.run(["rm", "-rf", d], check=False)
    restart_gobgpd()


def bfd_peers_up():
    r = in_ns(RT, "vtysh", "--vty_socket", ROUTER["vty"], "-c", "show bfd peers json", check=False)
    try:
        peers = json.loads(r.stdout or "[]")
    except json.JSONDecodeError:
        return False
    up = {p.get("peer") for p in peers if p.get("status") == "up"}
    return all(ip in up for ip in NODES.values())


# ------------------------------------------------------------------ scenario 1: API server outage
def kube_pids():
    out = {}
    with open(os.path.join(RUN, "kube", "pids")) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = int(parts[1])
    return out


def cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [x.decode() for x in f.read().split(b"\0") if x]


def api_outage(a):
    want = ensure_services(a.services)
    ips0 = svc_ips()
    rib0 = rib()
    before = snapshot(extra=("controller",))
    pids = kube_pids()
    argv = {name: cmdline(pid) for name, pid in pids.items() if name in ("etcd", "kube-apiserver")}
    say(f"injected: etcd and kube-apiserver stopped (SIGTERM) for {a.outage} s, then started "
        f"again with the same arguments and data (SIGKILL if still running 20 s after SIGTERM)")
    t_term = time.monotonic()
    for name in ("kube-apiserver", "etcd"):
        stop(pids[name], name, secs=20)
    # The outage is counted from the moment both are gone.
    t_stop = time.monotonic()
    say(f"both stopped {t_stop - t_term:.1f} s after SIGTERM")
    samples, changed = 0, []
    while time.monotonic() - t_stop < a.outage:
        t = rib()
        samples += 1
        if t != rib0:
            diff = {n: (len(rib0[ip] - (t or {}).get(ip, set())), len((t or {}).get(ip, set()) - rib0[ip]))
                    for n, ip in NODES.items()}
            changed.append((round(time.monotonic() - t_stop, 1), diff))
        time.sleep(1.0)
    during = snapshot(extra=("controller",))
    kdir = os.path.join(RUN, "kube")
    new = {}
    for name in ("etcd", "kube-apiserver"):
        p = start(name, MASTER, argv[name], log=os.path.join(kdir, f"{name}.log"))
        new[name] = p.pid
    with open(os.path.join(kdir, "pids"), "w") as f:
        f.write(f"kube-apiserver {new['kube-apiserver']}\netcd {new['etcd']}\n")
    t_start = time.monotonic()
    wait("kube-apiserver /readyz", 120, lambda: kube("ready", check=False).returncode == 0, step=0.2)
    t_ready = time.monotonic() - t_start
    # Full reconciliation: a Service created now gets an IP and reaches rt-01 from every node.
    kube("create", "relprobe", "1", *[f"{ip}:{name}" for name, ip in NODES.items()])
    probe = {}

    def probe_announced():
        ip = json.loads(kube("ips", "relprobe").stdout).get("relprobe-000")
        if not ip:
            return False
        probe.setdefault("ip", ip)
        probe.setdefault("ip_s", time.monotonic() - t_start)
        t = rib()
        return t is not None and all(f"{ip}/32" in t[n] for n in NODES.values())
    lost = []
    try:
        wait("a new Service's route from every node", 180, probe_announced, step=0.2)
    except TimeoutError as e:
        lost.append(str(e))
    t_recon = time.monotonic() - t_start
    ips1 = svc_ips()
    moved = {k: (ips0.get(k), v) for k, v in ips1.items() if ips0.get(k) != v}
    time.sleep(5.0)
    rib1 = rib()
    want1 = want | ({f"{probe['ip']}/32"} if "ip" in probe else set())
    table_ok = rib1 is not None and all(rib1[ip] == want1 for ip in NODES.values())
    after = snapshot(extra=("controller",))
    kube("delete", "relprobe-000")  # out of the next scenario's table
    if changed:
        lost.append(f"rt-01's table changed during the outage at {len(changed)} of {samples} samples "
                    f"(first: {changed[0]})")
    if moved:
        lost.append(f"{len(moved)} Service IPs moved: {dict(list(moved.items())[:5])}")
    if not table_ok:
        lost.append("rt-01's table after recovery differs from the Services' IPs")
    print()
    print(f"measured: rt-01's table sampled every 1 s during the outage ({samples} samples) against the")
    print(f"          table before it; Service IPs before vs after; from the servers' start: /readyz, then")
    print(f"          a new Service's IP announced by all 3 nodes (the whole loop working again)")
    print(f"outage {a.outage} s: table unchanged during it: {'yes' if not changed else 'NO'}; "
          f"IPs moved after: {len(moved)} of {len(ips1)}; table == Services after: {table_ok}")
    print(f"API ready {t_ready:.2f} s after the start; new Service got its IP {probe.get('ip_s', -1):.2f} s "
          f"and was announced by all 3 nodes {t_recon:.2f} s after the start")
    print("before -> end of the outage:\n" + mem_delta(before, during))
    print("before -> after recovery:\n" + mem_delta(before, after))
    print("lost: " + ("nothing" if not lost else "; ".join(lost)))
    print(json.dumps({"scenario": "api-outage", "outage_s": a.outage, "samples": samples,
                      "table_changes": changed[:10], "moved": moved, "table_ok": table_ok,
                      "api_ready_s": round(t_ready, 2), "reconciled_s": round(t_recon, 2),
                      "probe_ip_s": round(probe.get("ip_s", -1), 2),
                      "before": before, "during": during, "after": after, "lost": lost}))
    return 0 if not lost else 1


# ------------------------------------------------------------------ scenario 4: churn soak
CHURN = "churn"  # kube.py's churn Services: churn-0000.., label ferrolb-bench=churn


def all_services():
    """{name: (uid, ip)} of every Service in `default`."""
    return {k: tuple(v) for k, v in json.loads(kube("services").stdout).items()}


def events():
    return json.loads(kube("events").stdout)


def delete_churn():
    """Removes every churn Service (a previous run's too): the other scenarios' table has none."""
    return int(kube("cleanup", CHURN).stdout)


def explain(name):
    """`ferrolb explain -o json` of one Service in `default`: the speakers' and the
    controller's own functions on what the API server holds."""
    r = in_ns(MASTER, os.environ["FERROLB_BIN"], "explain", "-o", "json", "--kubeconfig",
              os.path.join(RUN, "kube", "kubeconfig"), name, check=False)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"ferrolb explain {name}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return json.loads(r.stdout)


def explained_table(names):
    """{node IP: set(prefix)} that `ferrolb explain` says each node announces over BGP,
    and the Services whose live status objects disagree with it."""
    want = {ip: set() for ip in NODES.values()}
    disagree = []
    for name in names:
        e = explain(name)
        for row in e["announcements"]:
            if row["protocol"] != "bgp":
                continue
            if row["announced"]:
                want[NODES[row["node"]]].update(row["prefixes"])
            if row.get("liveAgrees") is False:
                disagree.append(f"{name}@{row['node']}")
    return want, disagree


def table_diff(got, want):
    """Per node: (missing at rt-01, extra at rt-01) for the nodes that differ."""
    out = {}
    for n, ip in NODES.items():
        g, w = (got or {}).get(ip, set()), want[ip]
        if g != w:
            out[n] = (sorted(w - g), sorted(g - w))
    return out


def churn(a):
    want0 = ensure_services(a.services)
    removed = delete_churn()
    if removed:
        say(f"removed {removed} churn Services of an earlier run")
        wait("the table without them", 60, lambda: full(want0), step=0.2)
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "big")
    src_wrong, werr0 = endpoint_source(a.slices)
    if src_wrong:
        raise RuntimeError("speakers not on the expected endpoints API: " + "; ".join(src_wrong))
    say(f"every speaker says: {SPEAKER_SAYS[a.slices]}")
    ev0 = events()
    svc0 = all_services()
    pids = {**speakers(), "controller": recorded("controller")}
    say(f"injected: {a.rate:g} changes/s for {a.minutes:g} min on top of {len(svc0)} Services, seed {seed} "
        f"(creates, deletes, Endpoints moving between nodes / not-ready / back; Cluster and Local); "
        f"settle {a.settle:g} s after the last change")
    driver = subprocess.Popen(
        ["ip", "netns", "exec", MASTER, "python3", os.path.join(HERE, "kube.py"), RUN, *KUBE_FLAGS, "churn",
         str(seed), str(a.minutes * 60), str(a.rate), *[f"{ip}:{name}" for name, ip in NODES.items()]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import threading
    lines, errs = [], []
    threading.Thread(target=lambda: lines.extend(driver.stdout), daemon=True).start()
    threading.Thread(target=lambda: errs.extend(driver.stderr), daemon=True).start()
    series = []  # (minute, {proc: (rss kB, fds)})
    ip_changes = []
    seen = {(k, uid): ip for k, (uid, ip) in svc0.items() if ip}
    t0 = time.monotonic()
    minute = 0
    while True:
        snap = {}
        for k, pid in pids.items():
            snap[k] = mem(pid) if pid and alive(pid) else None
        series.append((minute, snap))
        try:
            # Every Service (same uid) keeps the first IP it was seen with.
            for k, (uid, ip) in all_services().items():
                if ip is None:
                    continue
                first = seen.setdefault((k, uid), ip)
                if first != ip:
                    ip_changes.append((minute, k, first, ip))
        except subprocess.CalledProcessError as e:
            ip_changes.append((minute, "(list failed)", str(e), None))
        if driver.poll() is not None:
            break
        minute += 1
        while time.monotonic() - t0 < minute * 60 and driver.poll() is None:
            time.sleep(0.5)
        if driver.poll() is not None:
            time.sleep(0.5)
    t_end = time.monotonic()
    time.sleep(0.2)
    ops = [json.loads(x) for x in lines if x.strip()]
    oplog = os.path.join(RUN, "log", f"churn-{seed}.jsonl")
    with open(oplog, "w") as f:
        f.writelines(lines)
    summary = ops[-1] if ops and ops[-1].get("done") else None
    if driver.returncode != 0 or summary is None:
        print("".join(errs[-20:]), file=sys.stderr)
        raise RuntimeError(f"churn driver failed (exit {driver.returncode})")
    say(f"{summary['changes']} changes in {summary['seconds']} s ({summary['stats']}, every one in {oplog}); "
        f"driver lag p50 {summary['lag_p50']} s, max {summary['lag_max']} s; errors {len(summary['errors'])}")
    time.sleep(max(0.0, a.settle - (time.monotonic() - t_end)))
    say(f"settled {a.settle:g} s; comparing rt-01's table with `ferrolb explain` of every Service")
    svc1 = all_services()
    t_x = time.monotonic()
    got = rib()
    explained, disagree = explained_table(sorted(svc1))
    got_after = rib()
    t_x = time.monotonic() - t_x
    # The driver's model (Python's reading of announce.rs `decide`), the same table again.
    model = {ip: {f"{SVC_IP}/32"} for ip in NODES.values()}
    for k, (uid, ip) in svc1.items():
        if k.startswith(PREFIX + "-") and ip:
            for nip in NODES.values():
                model[nip].add(f"{ip}/32")
        elif k in summary["model"] and ip:
            for n in summary["model"][k]["announcers"]:
                model[NODES[n]].add(f"{ip}/32")
    mism = table_diff(got, explained)
    mism2 = table_diff(got_after, explained)
    model_vs_explain = table_diff({k: v for k, v in model.items()}, explained)
    late = None
    if mism and mism2:
        # Not settled: does it get there later, or stay wrong?
        t_l = time.monotonic()
        while time.monotonic() - t_l < a.late:
            time.sleep(2.0)
            if not table_diff(rib(), explained):
                late = round(time.monotonic() - t_l + a.settle + t_x, 1)
                break
    ev1 = events()
    after = {k: (mem(pid) if pid and alive(pid) else None) for k, pid in pids.items()}
    objects = json.loads(kube("objects").stdout)
    lost = []
    # The API the speakers read: their own words, and (with --slices) no Endpoints object
    # behind the bench's Services at all, so the routes compared above followed the slices.
    src_wrong, werr1 = endpoint_source(a.slices)
    if src_wrong:
        lost.append("endpoints API: " + "; ".join(src_wrong))
    # Reported, not counted as lost: a watch error (a 410 Gone, say) is retried and relisted.
    werr = {n: werr1[n][len(werr0[n]):] for n in NODES if len(werr1[n]) > len(werr0[n])}
    if a.slices and objects["endpoints"]:
        lost.append(f"{objects['endpoints']} Endpoints objects exist for the bench Services")
    if mism and mism2:
        lost.append(f"rt-01's table != explain after {a.settle:g} s settle: "
                    + "; ".join(f"{n}: missing {m[:5]}{'...' if len(m) > 5 else ''} ({len(m)}), "
                                f"extra {x[:5]}{'...' if len(x) > 5 else ''} ({len(x)})"
                                for n, (m, x) in mism2.items())
                    + (f"; equal {late} s after the last change" if late else
                       f"; still different {a.late:g} s later"))
    if model_vs_explain:
        lost.append(f"the driver's model != explain: {model_vs_explain}")
    if disagree:
        lost.append(f"ServiceBGPStatus disagrees with explain: {disagree[:10]} ({len(disagree)})")
    if ip_changes:
        lost.append(f"IPs changed: {ip_changes[:10]}")
    if any(v is None for v in after.values()):
        lost.append(f"processes gone: {[k for k, v in after.items() if v is None]}")
    # Existed throughout: the bench Services, nginx and the initial churn Services never deleted.
    kept = [k for k in svc0 if k in svc1 and svc1[k][0] == svc0[k][0]]
    gone = [k for k in summary["initial_alive"] if k not in svc1]
    if gone:
        lost.append(f"Services the driver never deleted are gone: {gone[:5]} ({len(gone)})")
    kept += [k for k in summary["initial_alive"] if k in svc1]
    first0 = {k: ip for (k, uid), ip in seen.items() if svc1.get(k, (None,))[0] == uid}
    changed_end = [k for k in kept if svc1[k][1] != first0.get(k)]
    if changed_end:
        lost.append(f"{len(changed_end)} Services that existed throughout have another IP: {changed_end[:5]}")
    dev = {k: ev1.get(k, 0) - ev0.get(k, 0) for k in sorted(set(ev0) | set(ev1))}
    dev = {k: v for k, v in dev.items() if v}
    n_ev = sum(dev.values())
    n_ch = summary["changes"] + sum(1 for o in ops if o.get("initial"))
    creates = summary["stats"]["create"] + sum(1 for o in ops if o.get("initial"))
    print()
    print(f"measured: {n_ch} changes ({summary['stats']}, plus {creates - summary['stats']['create']} "
          f"initial creates), seed {seed}")
    print(f"          then {a.settle:g} s settle; rt-01's fresh /32s per node vs `ferrolb explain -o json` of all "
          f"{len(svc1)} Services (explain took {t_x:.1f} s)")
    for n, ip in NODES.items():
        print(f"  {n}: rt-01 {len((got or {}).get(ip, ()))}, explain {len(explained[ip])}, "
              f"model {len(model[ip])}: {'EQUAL' if n not in mism else 'DIFFERENT'}")
    print(f"endpoints: every speaker says '{SPEAKER_SAYS[a.slices]}'"
          f"{'' if not src_wrong else ' - NOT: ' + '; '.join(src_wrong)}; objects labelled "
          f"ferrolb-bench now: {objects['endpoints']} Endpoints, "
          f"{'not served' if objects['endpointslices'] is None else objects['endpointslices']} EndpointSlices v1; "
          f"endpoints watch errors during the run: "
          + ("none" if not werr else "; ".join(f"{n} {len(v)} (first: {v[0][-200:]})" for n, v in werr.items())))
    print(f"Events written during the run (reason/controller: count): {dev}")
    print(f"  {n_ev} Events for {n_ch} changes: {n_ev / max(1, n_ch):.2f} per change; "
          f"the model's starts (Service x node begins to be announced, MetalLB's nodeAssigned): "
          f"{summary['starts']}, creates: {creates}")
    print("RSS MB / fds every minute:")
    print("  min  " + "  ".join(f"{k:>18}" for k in pids))
    for m, snap in series:
        print(f"  {m:>3}  " + "  ".join(f"{v[0] / 1024:>10.1f} / {v[1]:>4}" if v else f"{'DEAD':>18}"
                                        for v in snap.values()))
    print(f"  end  " + "  ".join(f"{v[0] / 1024:>10.1f} / {v[1]:>4}" if v else f"{'DEAD':>18}"
                                  for v in after.values()))
    print(f"Services that existed throughout: {len(kept)}; IP changed: {len(changed_end)} at the end, "
          f"{len(ip_changes)} in the per-minute samples")
    print("lost: " + ("nothing" if not lost else "; ".join(lost)))
    print(json.dumps({"scenario": "churn", "slices": a.slices, "objects": objects,
                      "endpoints_watch_errors": {n: len(v) for n, v in werr.items()},
                      "seed": seed, "minutes": a.minutes, "rate": a.rate,
                      "settle_s": a.settle, "changes": n_ch, "stats": summary["stats"],
                      "driver_errors": summary["errors"], "lag_p50": summary["lag_p50"],
                      "lag_max": summary["lag_max"],
                      "table": {n: {"rib": len((got or {}).get(ip, ())), "explain": len(explained[ip])}
                                for n, ip in NODES.items()},
                      "mismatch": {n: [list(m), list(x)] for n, (m, x) in mism2.items()},
                      "late_equal_s": late, "events": dev, "events_per_change": round(n_ev / max(1, n_ch), 3),
                      "model_starts": summary["starts"], "creates": creates,
                      "series": [[m, snap] for m, snap in series], "after": after,
                      "ip_changes": ip_changes, "lost": lost}))
    removed = delete_churn()
    say(f"removed the {removed} churn Services")
    try:
        wait("rt-01's table back to the bench Services", 120, lambda: full(want0), step=0.5)
    except TimeoutError as e:
        print(f"after the cleanup: {e}; {table_diff(rib(), {ip: want0 for ip in NODES.values()})}")
        return 1
    return 0 if not lost else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["flaps", "node-down", "api-outage", "churn"])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--slices", action="store_true",
                    help="the lab serves EndpointSlices v1 (lab/up --slices): endpoints as slices")
    ap.add_argument("--restarts", type=int)
    ap.add_argument("--resets", type=int)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--hold", type=int, default=9)
    ap.add_argument("--bfd", action="store_true",
                    help="node-down: rt-01 runs FRR with bfdd, BFD profile 100 ms x 3")
    ap.add_argument("--outage", type=float)
    ap.add_argument("--gap", type=float, default=0.0,
                    help="flaps: seconds the table stays full before the next injection (the "
                         "speakers forgive their reconnect backoff after 30 s Established)")
    ap.add_argument("--minutes", type=float, help="churn: how long (default 30, --quick 3)")
    ap.add_argument("--rate", type=float, default=2.0, help="churn: changes per second")
    ap.add_argument("--seed", type=int, help="churn: the RNG's seed (default: random, printed)")
    ap.add_argument("--settle", type=float, default=20.0,
                    help="churn: seconds after the last change before the comparison")
    ap.add_argument("--late", type=float, default=120.0,
                    help="churn: if the table differs, how long to watch whether it converges")
    a = ap.parse_args()
    a.minutes = a.minutes if a.minutes is not None else (3 if a.quick else 30)
    a.restarts = a.restarts if a.restarts is not None else (10 if a.quick else 100)
    a.resets = a.resets if a.resets is not None else (30 if a.quick else 1000)
    a.outage = a.outage if a.outage is not None else (30 if a.quick else 300)
    if not os.path.exists(os.path.join(RUN, "state")) or open(os.path.join(RUN, "state")).read().strip() != "up":
        sys.exit("reliability: the lab is not up (sudo lab/up)")
    lab_slices = os.path.exists(os.path.join(RUN, "slices"))
    if a.slices != lab_slices:
        sys.exit("reliability: " + ("--slices, but the lab is up without EndpointSlices v1 (sudo lab/down; "
                                    "run then brings it up with lab/up --slices)" if a.slices else
                                    "the lab is up with EndpointSlices v1 (lab/up --slices): pass --slices, "
                                    "or sudo lab/down first"))
    if a.slices:
        KUBE_FLAGS.append("--slices")
    return {"flaps": flaps, "node-down": node_down, "api-outage": api_outage,
            "churn": churn}[a.scenario](a)


if __name__ == "__main__":
    sys.exit(main())
