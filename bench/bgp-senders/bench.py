"""BGP sender benchmark: ferrolb announce vs GoBGP, ExaBGP, FRR bgpd, BIRD 2.

Run through ./run (which checks root, installs prerequisites, builds ferrolb,
creates the network namespace and cleans up). This file does the work inside
that namespace: one gobgpd receiver on 198.18.0.1, one sender at a time on
198.18.0.2, tcpdump on the namespace's lo, and the figures.
"""

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pcapbgp  # noqa: E402

RECV_IP, SEND_IP = "198.18.0.1", "198.18.0.2"
RECV_AS, SEND_AS = 64512, 64522
RECV_API = 50051
SEND_API = 50052
FIRST = "10.0.0.0"

ARGS = None
STARTED = []  # (pid, Popen) of everything we started, for cleanup


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


def record_pid(pid):
    with open(os.path.join(ARGS.work, "pids"), "a") as f:
        f.write(f"{pid}\n")


def start(name, argv, cwd=None, stdout=None, env=None):
    """Start argv inside the namespace; its PID is recorded for cleanup."""
    logf = open(os.path.join(ARGS.work, f"{name}.log"), "ab")
    p = subprocess.Popen(
        ["ip", "netns", "exec", ARGS.ns] + argv,
        stdout=stdout if stdout is not None else logf,
        stderr=logf,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )
    # `ip netns exec` execs the command: the PID is the daemon's own.
    STARTED.append((p.pid, p))
    record_pid(p.pid)
    return p


def stop(p, sig=signal.SIGTERM, timeout=15):
    if p.poll() is None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    STARTED[:] = [(pid, q) for pid, q in STARTED if q is not p]


def stop_all():
    for _, p in list(reversed(STARTED)):
        stop(p, timeout=5)


def nsrun(argv, **kw):
    return subprocess.run(["ip", "netns", "exec", ARGS.ns] + argv, **kw)


def vmhwm_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def prefixes(n):
    base = struct.unpack("!I", bytes(int(x) for x in FIRST.split(".")))[0]
    for i in range(n):
        a = base + i
        yield f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


# ---------------------------------------------------------------- receiver


def gobgp_conf(path, asn, rid, listen, neighbor, peer_as, passive, admin_down=False):
    with open(path, "w") as f:
        f.write(
            f"""[global.config]
  as = {asn}
  router-id = "{rid}"
  port = {179 if listen else -1}
  local-address-list = ["{rid}"]
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{neighbor}"
    peer-as = {peer_as}
    admin-down = {str(admin_down).lower()}
  [neighbors.timers.config]
    idle-hold-time-after-reset = 1
    connect-retry = 1
  [neighbors.transport.config]
    local-address = "{rid}"
    passive-mode = {str(passive).lower()}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
"""
        )


def receiver_neighbor():
    r = nsrun(
        ["gobgp", "-p", str(RECV_API), "-j", "neighbor", SEND_IP],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode != 0:
        return None, 0
    try:
        j = json.loads(r.stdout)
    except ValueError:
        return None, 0
    if isinstance(j, list):
        j = j[0] if j else {}
    state = j.get("state", {}).get("session_state")
    accepted = 0
    for af in j.get("afi_safis") or []:
        accepted += (af.get("state") or {}).get("accepted", 0) or 0
    return state, accepted


def is_established(state):
    return str(state).lower() in ("6", "established", "bgp_fsm_established", "session_state_established")


def is_active(state):
    return str(state).lower() in ("3", "active", "bgp_fsm_active", "session_state_active")


def wait_receiver_idle(timeout=120):
    """Wait until the receiver holds nothing from the sender and is back listening."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        state, acc = receiver_neighbor()
        if state is not None and is_active(state) and acc == 0:
            return True
        time.sleep(0.2)
    log(f"receiver did not go back to Active within {timeout}s (state {state!r}, {acc} routes)")
    return False


# ---------------------------------------------------------------- senders


def sender_ferrolb(n, d):
    return start(
        "ferrolb",
        [
            ARGS.ferrolb,
            "announce",
            "--peer",
            RECV_IP,
            "--source",
            SEND_IP,
            "--local-as",
            str(SEND_AS),
            "--peer-as",
            str(RECV_AS),
            "--count",
            str(n),
            "--first",
            FIRST,
        ],
        env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")),
    )


def write_mrt(path, pfx):
    """A TABLE_DUMP_V2 file (RFC 6396) gobgp mrt inject reads: ORIGIN IGP, empty AS_PATH, NEXT_HOP."""
    with open(path, "wb") as f:
        peer = struct.pack("!B4s4sI", 0x02, bytes(4), bytes(4), 0)
        body = struct.pack("!4sH", bytes([198, 18, 0, 2]), 0) + struct.pack("!H", 1) + peer
        f.write(struct.pack("!IHHI", 0, 13, 1, len(body)) + body)
        attrs = (
            bytes([0x40, 1, 1, 0])
            + bytes([0x40, 2, 0])
            + bytes([0x40, 3, 4, 198, 18, 0, 2])
        )
        entry = struct.pack("!HIH", 0, 0, len(attrs)) + attrs
        for seq, p in enumerate(pfx):
            a = bytes(int(x) for x in p.split("."))
            body = struct.pack("!IB", seq, 32) + a + struct.pack("!H", 1) + entry
            f.write(struct.pack("!IHHI", 0, 13, 2, len(body)) + body)


def gobgp_count(port):
    r = nsrun(
        ["gobgp", "-p", str(port), "-j", "global", "rib", "summary", "-a", "ipv4"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    try:
        j = json.loads(r.stdout)
        return int(j.get("num_destination", j.get("num_path", 0)))
    except (ValueError, AttributeError):
        # Text form: "Table ipv4-unicast\nDestination: N, Path: N"
        for tok in r.stdout.replace(",", " ").split():
            if tok.isdigit():
                return int(tok)
    return 0


def sender_gobgp(n, d):
    conf = os.path.join(d, "gobgpd-sender.toml")
    gobgp_conf(conf, SEND_AS, SEND_IP, False, RECV_IP, RECV_AS, passive=False, admin_down=True)
    p = start(
        "gobgpd-sender",
        ["gobgpd", "-f", conf, "--api-hosts", f"127.0.0.1:{SEND_API}", "-l", "warn", "--pprof-disable"],
    )
    wait_api(SEND_API)
    # Debian's `gobgp mrt inject` drops the tail of its stream: pad the file
    # with the first prefixes again (re-adding a path changes nothing), then
    # check that all N are in the RIB before enabling the neighbor.
    pfx = list(prefixes(n))
    pad = pfx[: min(n, 5000)]
    mrt = os.path.join(d, "routes.mrt")
    write_mrt(mrt, pfx + pad)
    t0 = time.time()
    nsrun(["gobgp", "-p", str(SEND_API), "mrt", "inject", "global", mrt], check=True, timeout=1800,
          stdout=subprocess.DEVNULL)
    for _ in range(100):
        have = gobgp_count(SEND_API)
        if have >= n:
            break
        time.sleep(0.2)
    log(f"gobgp: {have} routes in the sender's RIB after inject ({time.time() - t0:.1f}s)")
    if have != n:
        raise RuntimeError(f"gobgp sender holds {have} routes, wanted {n}")
    nsrun(["gobgp", "-p", str(SEND_API), "neighbor", RECV_IP, "enable"], check=True, timeout=30,
          stdout=subprocess.DEVNULL)
    return p


def wait_api(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        r = nsrun(["gobgp", "-p", str(port), "global"], capture_output=True, timeout=10)
        if r.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"gobgpd API on port {port} did not come up")


def sender_exabgp(n, d):
    conf = os.path.join(d, "exabgp.conf")
    with open(conf, "w") as f:
        f.write(
            f"neighbor {RECV_IP} {{\n  router-id {SEND_IP};\n  local-address {SEND_IP};\n"
            f"  local-as {SEND_AS};\n  peer-as {RECV_AS};\n  hold-time 90;\n"
            "  family {\n    ipv4 unicast;\n  }\n  static {\n"
        )
        for p in prefixes(n):
            f.write(f"    route {p}/32 next-hop {SEND_IP};\n")
        f.write("  }\n}\n")
    env = dict(
        os.environ,
        exabgp_daemon_user="root",
        exabgp_daemon_drop="false",
        exabgp_daemon_daemonize="false",
        exabgp_log_level="INFO",
        exabgp_log_destination="stderr",
        exabgp_api_cli="false",
        exabgp_tcp_bind="",
    )
    return start("exabgp", ["exabgp", conf], cwd=d, env=env)


def sender_frr(n, d):
    run = os.path.join(d, "frr")
    os.makedirs(run, exist_ok=True)
    conf = os.path.join(run, "bgpd.conf")
    with open(conf, "w") as f:
        f.write(
            f"hostname bench-sender\nrouter bgp {SEND_AS}\n bgp router-id {SEND_IP}\n"
            " no bgp ebgp-requires-policy\n no bgp network import-check\n"
            f" neighbor {RECV_IP} remote-as {RECV_AS}\n neighbor {RECV_IP} update-source {SEND_IP}\n"
            f" neighbor {RECV_IP} timers connect 1\n"
            " address-family ipv4 unicast\n"
        )
        for p in prefixes(n):
            f.write(f"  network {p}/32\n")
        f.write(" exit-address-family\n!\n")
    shutil.chown(run, "frr", "frr")
    shutil.chown(conf, "frr", "frr")
    return start(
        "bgpd",
        [
            "/usr/lib/frr/bgpd",
            "-u", "frr", "-g", "frr",
            "-f", conf,
            "-i", os.path.join(run, "bgpd.pid"),
            "-z", os.path.join(run, "zserv.api"),
            "--vty_socket", run,
            "-P", "0",
            "-p", "0",
            "-Z",
            "-n",
            "--log", "stdout",
        ],
    )


def sender_bird(n, d):
    conf = os.path.join(d, "bird.conf")
    with open(conf, "w") as f:
        f.write(f"log stderr all;\nrouter id {SEND_IP};\nprotocol device {{}}\nprotocol static s4 {{\n  ipv4;\n")
        for p in prefixes(n):
            f.write(f"  route {p}/32 blackhole;\n")
        f.write(
            "}\n"
            f"protocol bgp recv {{\n  local {SEND_IP} as {SEND_AS};\n  neighbor {RECV_IP} as {RECV_AS};\n"
            "  multihop;\n  strict bind yes;\n  error wait time 1, 10;\n  connect delay time 1;\n  connect retry time 1;\n"
            "  ipv4 { import none; export all; next hop self; };\n}\n"
        )
    return start(
        "bird",
        ["bird", "-f", "-c", conf, "-s", os.path.join(d, "bird.ctl"), "-P", os.path.join(d, "bird.pid")],
    )


SENDERS = {
    "ferrolb": sender_ferrolb,
    "gobgp": sender_gobgp,
    "exabgp": sender_exabgp,
    "frr": sender_frr,
    "bird": sender_bird,
}


# ---------------------------------------------------------------- one run


def start_receiver(d):
    rconf = os.path.join(d, "gobgpd-receiver.toml")
    gobgp_conf(rconf, RECV_AS, RECV_IP, True, SEND_IP, SEND_AS, passive=True)
    p = start("gobgpd-receiver", ["gobgpd", "-f", rconf, "--api-hosts", f"127.0.0.1:{RECV_API}",
                                  "-l", "warn", "--pprof-disable"])
    wait_api(RECV_API)
    return p


def measure(name, n):
    d = os.path.join(ARGS.work, f"{name}-{n}")
    os.makedirs(d, exist_ok=True)
    pcap = os.path.join(d, "lo.pcap")
    # A fresh receiver per sender run: no leftover routes to withdraw, same start for all.
    receiver = start_receiver(d)
    if not wait_receiver_idle():
        stop(receiver)
        return dict(sender=name, n=n, error="receiver not listening")
    tcpdump = start(
        f"tcpdump-{name}-{n}",
        ["tcpdump", "-i", "lo", "-n", "-s", "0", "-B", "131072", "-U", "--immediate-mode", "-w", pcap, "tcp", "port", "179"],
    )
    tlog = os.path.join(ARGS.work, f"tcpdump-{name}-{n}.log")
    t0 = time.time()
    while b"listening on" not in open(tlog, "rb").read():
        if time.time() - t0 > 10 or tcpdump.poll() is not None:
            raise RuntimeError("tcpdump did not start: see " + tlog)
        time.sleep(0.05)

    res = dict(sender=name, n=n)
    t_start = time.time()
    sender = None
    recv_all = None
    try:
        sender = SENDERS[name](n, d)
        log(f"{name} n={n}: sender pid {sender.pid} started ({time.time() - t_start:.1f}s)")
        deadline = time.time() + ARGS.timeout
        on_wire = None  # when all N were seen on the wire
        last_parse = 0.0
        acc = 0
        while time.time() < deadline:
            state, acc = receiver_neighbor()
            if acc >= n:
                recv_all = time.time()
                break
            if sender.poll() is not None:
                raise RuntimeError(f"{name} exited with {sender.returncode}")
            now = time.time()
            if on_wire is None and now - last_parse > 2:
                st = pcapbgp.sender_stats(pcap, SEND_IP)
                last_parse = time.time()
                if st and st["prefixes"] >= n:
                    on_wire = now
                    log(f"{name} n={n}: all {n} prefixes on the wire; receiver holds {acc}")
            if on_wire is not None and now - on_wire > ARGS.recv_wait:
                res["note"] = f"receiver held {acc}/{n} {ARGS.recv_wait:.0f}s after the wire"
                break
            time.sleep(0.25)
        else:
            res["error"] = f"receiver held {acc}/{n} after {ARGS.timeout}s"
        # Let a sender that holds back its last message (BIRD) finish.
        time.sleep(0.5)
        res["rss_kb"] = vmhwm_kb(sender.pid)
    except Exception as e:  # noqa: BLE001 - report and go on to the next sender
        res["error"] = str(e)
    finally:
        if sender is not None:
            stop(sender)
        time.sleep(0.3)
        stop(tcpdump, sig=signal.SIGINT)
        stop(receiver)
    tl = open(tlog, errors="replace").read()
    for line in tl.splitlines():
        if "dropped by kernel" in line and not line.startswith("0 "):
            res["error"] = "tcpdump: " + line.strip()
    st = pcapbgp.sender_stats(pcap, SEND_IP)
    if st and st["established"]:
        est = st["established"]
        res.update(
            updates=st["updates"],
            bytes=st["bytes"],
            wire_prefixes=st["prefixes"],
            first_s=(st["first"] - est) if st["first"] else None,
            wire_s=(st["last"] - est) if st["last"] else None,
            recv_s=(recv_all - est) if recv_all else None,
            startup_s=est - t_start,
        )
        if st["prefixes"] != n and "error" not in res:
            res["error"] = f"{st['prefixes']} prefixes on the wire, wanted {n}"
    elif "error" not in res:
        res["error"] = "no established session in the capture"
    if not ARGS.keep:
        try:
            os.remove(pcap)
        except OSError:
            pass
    log(f"{name} n={n}: {res}")
    return res


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(results):
    print()
    print(
        f"{'N':>8} {'sender':<8} {'wire_s':>8} {'first_s':>8} {'recv_s':>8} {'updates':>8} "
        f"{'bytes':>10} {'pfx/upd':>7} {'rss_MB':>7} {'start_s':>7}  note"
    )
    for r in results:
        ppu = r["wire_prefixes"] / r["updates"] if r.get("updates") else None
        rss = r["rss_kb"] / 1024 if r.get("rss_kb") else None
        print(
            f"{r['n']:>8} {r['sender']:<8} {fmt(r.get('wire_s'), '.3f'):>8} "
            f"{fmt(r.get('first_s'), '.3f'):>8} {fmt(r.get('recv_s'), '.3f'):>8} "
            f"{fmt(r.get('updates'), 'd'):>8} {fmt(r.get('bytes'), 'd'):>10} {fmt(ppu, '.0f'):>7} "
            f"{fmt(rss, '.1f'):>7} {fmt(r.get('startup_s'), '.1f'):>7}  {r.get('error', r.get('note', ''))}"
        )
    print()
    print("wire_s: Established (first KEEPALIVE after both OPENs) -> last UPDATE carrying NLRI, from the pcap")
    print("first_s: Established -> first UPDATE with NLRI; recv_s: Established -> receiver gobgpd accepted all N")
    print("rss_MB: sender's VmHWM; start_s: sender start -> Established (config load etc.)")
    print()
    ok = True
    for n in sorted({r["n"] for r in results}):
        rows = {r["sender"]: r for r in results if r["n"] == n}
        f = rows.get("ferrolb", {})
        others = [(r["wire_s"], s) for s, r in rows.items() if s != "ferrolb" and r.get("wire_s")]
        if not f.get("wire_s"):
            print(f"N={n}: ferrolb has no wire time")
            ok = False
            continue
        line = f"N={n}: ferrolb wire {f['wire_s']:.3f}s"
        if others:
            best, who = min(others)
            ratio = f["wire_s"] / best
            line += f", fastest other {who} {best:.3f}s, ratio {ratio:.3f} (target <= 0.333)"
            ok &= ratio <= 1 / 3
        if n == 100_000:
            line += f"; target wire <= 0.15s: {'met' if f['wire_s'] <= 0.15 else 'MISSED'}"
            ok &= f["wire_s"] <= 0.15
            if f.get("rss_kb"):
                line += f"; RSS {f['rss_kb'] / 1024:.1f} MB (target <= 30): {'met' if f['rss_kb'] <= 30 * 1024 else 'MISSED'}"
                ok &= f["rss_kb"] <= 30 * 1024
        print(line)
    print("targets:", "all met" if ok else "NOT all met")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ferrolb", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--default-buffers", action="store_true",
                    help="keep the kernel's default TCP receive buffers (handled by ./run)")
    ap.add_argument("--keep", action="store_true", help="keep pcaps and configs in the work dir")
    ap.add_argument("--sizes", default=None, help="comma-separated N values (default 100000,1000000)")
    ap.add_argument("--senders", default=None, help="comma-separated subset of " + ",".join(SENDERS))
    ap.add_argument("--timeout", type=float, default=900, help="seconds per sender run")
    ap.add_argument("--recv-wait", type=float, default=30,
                    help="once all N are on the wire, wait at most this long for the receiver to hold them")
    ARGS = ap.parse_args()
    sizes = [10_000] if ARGS.quick else [100_000, 1_000_000]
    senders = ["ferrolb", "gobgp"] if ARGS.quick else list(SENDERS)
    if ARGS.sizes:
        sizes = [int(x) for x in ARGS.sizes.split(",")]
    if ARGS.senders:
        senders = ARGS.senders.split(",")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = []
    try:
        for n in sizes:
            for s in senders:
                results.append(measure(s, n))
    finally:
        stop_all()
    report(results)


if __name__ == "__main__":
    main()
