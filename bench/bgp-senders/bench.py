"""BGP sender benchmark: ferrolb announce vs GoBGP, ExaBGP, FRR bgpd, BIRD 2.

Run through ./run (which checks root, installs prerequisites, builds ferrolb,
creates the network namespace and cleans up). This file does the work inside
that namespace: one receiver (gobgpd, FRR bgpd or BIRD 2) on 198.18.0.1, one
sender at a time on 198.18.0.2, tcpdump on the namespace's lo, and the
figures. A `replay-<sender>` sender writes the UPDATE bytes captured from
<sender> earlier in the same run (replay.py) as fast as the socket takes
them: the receiver's own floor for exactly those bytes.
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


def cpu_s(pid):
    """CPU seconds (user + system) process `pid` has used, all its threads; None once gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
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


def sender_ferrolb(n, d, binary=None, extra=()):
    return start(
        "ferrolb",
        [
            binary or ARGS.ferrolb,
            "announce",
            *extra,
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


def sender_ferrolb_base(n, d):
    """A second ferrolb build (--ferrolb-base / FERROLB_BASE), for before/after comparisons."""
    if not ARGS.ferrolb_base:
        raise RuntimeError("sender ferrolb-base needs FERROLB_BASE (--ferrolb-base)")
    return sender_ferrolb(n, d, ARGS.ferrolb_base)


def sender_ferrolb_ext(n, d):
    """ferrolb announce --extended-message (RFC 8654): 65535-byte UPDATEs with a receiver that offers it."""
    return sender_ferrolb(n, d, extra=("--extended-message",))


SENDERS = {
    "ferrolb": sender_ferrolb,
    "ferrolb-ext": sender_ferrolb_ext,
    "ferrolb-base": sender_ferrolb_base,
    "gobgp": sender_gobgp,
    "exabgp": sender_exabgp,
    "frr": sender_frr,
    "bird": sender_bird,
}


# ---------------------------------------------------------------- one run


def start_receiver(kind, d):
    """Start receiver `kind` (gobgp, frr, bird) on RECV_IP, passive towards SEND_IP."""
    return RECEIVERS[kind][0](d)


def recv_gobgp(d):
    rconf = os.path.join(d, "gobgpd-receiver.toml")
    gobgp_conf(rconf, RECV_AS, RECV_IP, True, SEND_IP, SEND_AS, passive=True)
    p = start("gobgpd-receiver", ["gobgpd", "-f", rconf, "--api-hosts", f"127.0.0.1:{RECV_API}",
                                  "-l", "warn", "--pprof-disable"])
    wait_api(RECV_API)
    return p


def count_gobgp(d):
    return gobgp_count(RECV_API)


def idle_gobgp(d):
    return wait_receiver_idle()


def recv_frr(d):
    """FRR bgpd alone (no zebra), as sender_frr starts it, listening on RECV_IP only."""
    run = os.path.join(d, "frr-recv")
    os.makedirs(run, exist_ok=True)
    conf = os.path.join(run, "bgpd.conf")
    with open(conf, "w") as f:
        f.write(
            f"hostname bench-receiver\nrouter bgp {RECV_AS}\n bgp router-id {RECV_IP}\n"
            " no bgp ebgp-requires-policy\n"
            f" neighbor {SEND_IP} remote-as {SEND_AS}\n neighbor {SEND_IP} passive\n!\n"
        )
    shutil.chown(run, "frr", "frr")
    shutil.chown(conf, "frr", "frr")
    return start(
        "bgpd-receiver",
        [
            "/usr/lib/frr/bgpd",
            "-u", "frr", "-g", "frr",
            "-f", conf,
            "-i", os.path.join(run, "bgpd.pid"),
            "-z", os.path.join(run, "zserv.api"),
            "--vty_socket", run,
            "-l", RECV_IP,
            "-p", "179",
            "-P", "0",
            "-Z",
            "-n",
            "--log", "stdout",
        ],
    )


def frr_summary(d):
    r = nsrun(
        ["vtysh", "--vty_socket", os.path.join(d, "frr-recv"), "-d", "bgpd", "-c",
         "show bgp ipv4 unicast summary json"],
        capture_output=True, text=True, timeout=30,
    )
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def count_frr(d):
    """Prefixes the receiving bgpd accepted from the sender (pfxRcd; its RIB count is the same here)."""
    j = frr_summary(d) or {}
    peer = (j.get("peers") or {}).get(SEND_IP) or {}
    return int(peer.get("pfxRcd", 0) or 0)


def idle_frr(d, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = frr_summary(d)
        if j and SEND_IP in (j.get("peers") or {}):
            return True
        time.sleep(0.2)
    log("receiving bgpd did not answer on its vty")
    return False


def recv_bird(d):
    """BIRD 2, passive, multihop (the session runs between two /32 on lo), next hops
    resolved through `protocol direct` on lo so every route is valid."""
    conf = os.path.join(d, "bird-recv.conf")
    with open(conf, "w") as f:
        f.write(
            f"log stderr {{ warning, error, fatal }};\nrouter id {RECV_IP};\nprotocol device {{}}\n"
            'protocol direct { ipv4; interface "lo"; }\n'
            f"protocol bgp snd {{\n  local {RECV_IP} as {RECV_AS};\n  neighbor {SEND_IP} as {SEND_AS};\n"
            "  multihop;\n  passive;\n  strict bind yes;\n  error wait time 1, 10;\n"
            "  ipv4 { import all; export none; };\n}\n"
        )
    return start(
        "bird-receiver",
        ["bird", "-f", "-c", conf, "-s", os.path.join(d, "bird-recv.ctl"),
         "-P", os.path.join(d, "bird-recv.pid")],
    )


def birdc(d, cmd):
    return nsrun(["birdc", "-s", os.path.join(d, "bird-recv.ctl"), cmd],
                 capture_output=True, text=True, timeout=60)


def count_bird(d):
    """Routes imported from the sender (the channel's counter: O(1), where `show route
    count` walks the table and would stall single-threaded BIRD while it absorbs)."""
    out = birdc(d, "show protocols all snd").stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Routes:"):
            return int(line.split()[1])
    return 0


def idle_bird(d, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if "snd" in birdc(d, "show protocols snd").stdout:
            return True
        time.sleep(0.2)
    log("receiving BIRD did not answer on its control socket")
    return False


def final_bird(d):
    """Routes in BIRD's table from the sender, counted by walking it (`show route count`)."""
    out = birdc(d, "show route count protocol snd").stdout
    for line in out.splitlines():
        toks = line.split()
        if len(toks) > 2 and toks[1] == "of" and toks[0].isdigit():
            return int(toks[0])
    return None


# name -> (start, count, wait until listening and empty, final count or None)
RECEIVERS = {
    "gobgp": (recv_gobgp, count_gobgp, idle_gobgp, None),
    "frr": (recv_frr, count_frr, idle_frr, None),
    "bird": (recv_bird, count_bird, idle_bird, final_bird),
}


def stream_path(sender, receiver, n):
    return os.path.join(ARGS.streams or os.path.join(ARGS.work, "streams"), f"{sender}-{receiver}-{n}.bgp")


def sender_replay(of, n, d):
    """Replay the stream captured from sender `of` into this cell's receiver (replay.py)."""
    path = stream_path(of, CELL["receiver"], n)
    if not os.path.exists(path):
        raise RuntimeError(f"no captured {of} stream for receiver {CELL['receiver']}, N={n}: "
                           f"run sender {of} first (or give --streams DIR)")
    return start(
        "replay",
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay.py"),
         "--peer", RECV_IP, "--source", SEND_IP, "--stream", path],
        stdout=open(os.path.join(d, "replay.out"), "wb"),
    )


def set_buffers(kind):
    value = DEFAULT_RMEM if kind == "default" else LARGE_RMEM
    nsrun(["sysctl", "-q", "-w", f"net.ipv4.tcp_rmem={value}"], check=True)


def measure(name, n, receiver="gobgp", buffers="large", run=1):
    CELL.update(receiver=receiver, buffers=buffers, run=run)
    d = os.path.join(ARGS.work, f"{name}-{receiver}-{buffers}-{n}-{run}")
    os.makedirs(d, exist_ok=True)
    pcap = os.path.join(d, "lo.pcap")
    set_buffers(buffers)
    _start, count, idle, final = RECEIVERS[receiver]
    res = dict(sender=name, receiver=receiver, buffers=buffers, run=run, n=n)
    # A fresh receiver per run: no leftover routes to withdraw, same start for all.
    recv = start_receiver(receiver, d)
    if not idle(d):
        stop(recv)
        res["error"] = "receiver not listening"
        return res
    tcpdump = start(
        f"tcpdump-{os.path.basename(d)}",
        ["tcpdump", "-i", "lo", "-n", "-s", "0", "-B", "131072", "-U", "--immediate-mode", "-w", pcap, "tcp", "port", "179"],
    )
    tlog = os.path.join(ARGS.work, f"tcpdump-{os.path.basename(d)}.log")
    t0 = time.time()
    while b"listening on" not in open(tlog, "rb").read():
        if time.time() - t0 > 10 or tcpdump.poll() is not None:
            raise RuntimeError("tcpdump did not start: see " + tlog)
        time.sleep(0.05)

    t_start = time.time()
    sender = None
    recv_all = None
    cpu0 = cpu_s(recv.pid)
    try:
        if name.startswith("replay-"):
            sender = sender_replay(name[len("replay-"):], n, d)
        else:
            sender = SENDERS[name](n, d)
        log(f"{name} -> {receiver} ({buffers} buffers) n={n} run {run}: sender pid {sender.pid} "
            f"started ({time.time() - t_start:.1f}s)")
        deadline = time.time() + ARGS.timeout
        on_wire = None  # when all N were seen on the wire
        last_parse = 0.0
        acc = 0
        while time.time() < deadline:
            acc = count(d)
            if acc >= n:
                recv_all = time.time()
                cpu1 = cpu_s(recv.pid)
                if cpu0 is not None and cpu1 is not None:
                    res["recv_cpu_s"] = cpu1 - cpu0
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
            time.sleep(ARGS.poll)
        else:
            res["error"] = f"receiver held {acc}/{n} after {ARGS.timeout}s"
        if recv_all is not None and final is not None:
            held = final(d)
            if held != n:
                res["error"] = f"receiver's table holds {held}, its counter said {acc}"
        # Let a sender that holds back its last message (BIRD) finish.
        time.sleep(0.5)
        res["rss_kb"] = vmhwm_kb(sender.pid)
        res["recv_rss_kb"] = vmhwm_kb(recv.pid)
    except Exception as e:  # noqa: BLE001 - report and go on to the next sender
        res["error"] = str(e)
    finally:
        if sender is not None:
            stop(sender)
        time.sleep(0.3)
        stop(tcpdump, sig=signal.SIGINT)
        stop(recv)
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
            absorb_s=(recv_all - st["first"]) if recv_all and st["first"] else None,
            startup_s=est - t_start,
        )
        if st["prefixes"] != n and "error" not in res:
            res["error"] = f"{st['prefixes']} prefixes on the wire, wanted {n}"
        sh = pcapbgp.shape(pcap, SEND_IP)
        if sh:
            res.update(sh)
        keep = stream_path(name, receiver, n)
        if "error" not in res and not name.startswith("replay-") and not os.path.exists(keep):
            os.makedirs(os.path.dirname(keep), exist_ok=True)
            with open(keep, "wb") as f:
                f.write(pcapbgp.sender_stream(pcap, SEND_IP))
    elif "error" not in res:
        res["error"] = "no established session in the capture"
    if not ARGS.keep:
        try:
            os.remove(pcap)
        except OSError:
            pass
    log(f"{name} -> {receiver} n={n}: {res}")
    if ARGS.json:
        with open(ARGS.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    return res


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def median(xs):
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def report(results):
    print()
    print(
        f"{'N':>8} {'recv':<5} {'buf':<7} {'sender':<14} {'run':>3} {'wire_s':>7} {'first_s':>7} "
        f"{'recv_s':>7} {'absorb':>7} {'upd':>5} {'bytes':>9} {'pfx/upd':>7} {'segs':>6} "
        f"{'seg_med':>7} {'zwin':>5} {'rss_MB':>6}  note"
    )
    for r in results:
        ppu = r["wire_prefixes"] / r["updates"] if r.get("updates") else None
        rss = r["rss_kb"] / 1024 if r.get("rss_kb") else None
        print(
            f"{r['n']:>8} {r['receiver']:<5} {r['buffers']:<7} {r['sender']:<14} {r['run']:>3} "
            f"{fmt(r.get('wire_s'), '.3f'):>7} {fmt(r.get('first_s'), '.3f'):>7} "
            f"{fmt(r.get('recv_s'), '.3f'):>7} {fmt(r.get('absorb_s'), '.3f'):>7} "
            f"{fmt(r.get('updates'), 'd'):>5} {fmt(r.get('bytes'), 'd'):>9} {fmt(ppu, '.0f'):>7} "
            f"{fmt(r.get('segments'), 'd'):>6} {fmt(r.get('seg_median'), 'd'):>7} "
            f"{fmt(r.get('zero_windows'), 'd'):>5} {fmt(rss, '.1f'):>6}  {r.get('error', r.get('note', ''))}"
        )
    print()
    print("wire_s: Established (first KEEPALIVE after both OPENs) -> last UPDATE carrying NLRI, from the pcap")
    print("first_s: Established -> first UPDATE with NLRI; recv_s: Established -> the receiver's RIB holds all N")
    print("absorb: first UPDATE with NLRI -> the receiver's RIB holds all N (recv_s - first_s)")
    print("segs, seg_med: TCP segments carrying the sender's bytes and their median payload;")
    print("zwin: segments from the receiver advertising a zero window; rss_MB: sender's VmHWM")
    print("recv_cpu: CPU seconds the receiver used from the sender's start until it held all N")
    layouts = {}
    for r in results:
        if r.get("layout"):
            layouts.setdefault(r["sender"], r["layout"])
    if layouts:
        print()
        print("attribute layout of the first UPDATE with NLRI (flags:type/value length):")
        for k, v in layouts.items():
            print(f"  {k:<14} {v}")

    # Medians and ranges over runs, per cell.
    cells = {}
    for r in results:
        cells.setdefault((r["n"], r["receiver"], r["buffers"], r["sender"]), []).append(r)
    print()
    print(f"{'N':>8} {'recv':<5} {'buf':<7} {'sender':<14} {'runs':>4} {'recv_s median [range]':>26} "
          f"{'absorb median [range]':>26} {'recv_cpu median [range]':>26}")
    for (n, rc, bf, sn), rs in cells.items():
        def col(key):
            v = [r[key] for r in rs if r.get(key) is not None and "error" not in r]
            if not v:
                return "-"
            return f"{median(v):.3f} [{min(v):.3f}-{max(v):.3f}]"

        ok = sum(1 for r in rs if r.get("recv_s") is not None and "error" not in r)
        print(f"{n:>8} {rc:<5} {bf:<7} {sn:<14} {ok:>2}/{len(rs)} {col('recv_s'):>26} {col('absorb_s'):>26} {col('recv_cpu_s'):>26}")
    print()

    # The sender targets: wire time against the gobgpd receiver with large buffers.
    ok, any_target = True, False
    for n in sorted({r["n"] for r in results}):
        rows = {}
        for r in results:
            if r["n"] == n and r["receiver"] == "gobgp" and r["buffers"] == "large" and r.get("wire_s"):
                rows.setdefault(r["sender"], []).append(r)
        if "ferrolb" not in rows:
            continue
        any_target = True
        fw = median([r["wire_s"] for r in rows["ferrolb"]])
        others = [(median([r["wire_s"] for r in v]), s) for s, v in rows.items()
                  if not s.startswith("ferrolb") and not s.startswith("replay-")]
        line = f"N={n}: ferrolb wire {fw:.3f}s"
        if others:
            best, who = min(others)
            ratio = fw / best
            line += f", fastest other {who} {best:.3f}s, ratio {ratio:.3f} (target <= 0.333)"
            ok &= ratio <= 1 / 3
        if n == 100_000:
            line += f"; target wire <= 0.15s: {'met' if fw <= 0.15 else 'MISSED'}"
            ok &= fw <= 0.15
            rss = [r["rss_kb"] for r in rows["ferrolb"] if r.get("rss_kb")]
            if rss:
                m = max(rss)
                line += f"; RSS {m / 1024:.1f} MB (target <= 30): {'met' if m <= 30 * 1024 else 'MISSED'}"
                ok &= m <= 30 * 1024
        print(line)
    if any_target:
        print("targets (gobgpd receiver, large buffers):", "all met" if ok else "NOT all met")


DEFAULT_RMEM = None  # the namespace's own tcp_rmem, read at start
LARGE_RMEM = "4096 16777216 33554432"
CELL = {}


def main():
    global ARGS, DEFAULT_RMEM
    ap = argparse.ArgumentParser()
    ap.add_argument("--ns", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--ferrolb", required=True)
    ap.add_argument("--ferrolb-base", default=os.environ.get("FERROLB_BASE"),
                    help="another ferrolb binary, run as sender ferrolb-base")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--default-buffers", action="store_true",
                    help="keep the kernel's default TCP receive buffers (= --buffers default)")
    ap.add_argument("--buffers", default=None,
                    help="comma-separated: large (16 MiB initial receive buffer, the default), default (kernel's)")
    ap.add_argument("--keep", action="store_true", help="keep pcaps and configs in the work dir")
    ap.add_argument("--sizes", default=None, help="comma-separated N values (default 100000,1000000)")
    ap.add_argument("--senders", default=None,
                    help="comma-separated subset of " + ",".join(SENDERS)
                    + ", and replay-<sender> (that sender's captured stream, replayed at once)")
    ap.add_argument("--receivers", default="gobgp", help="comma-separated subset of " + ",".join(RECEIVERS))
    ap.add_argument("--runs", type=int, default=1, help="runs per cell")
    ap.add_argument("--streams", default=None,
                    help="directory of captured streams (<sender>-<receiver>-<N>.bgp): the first good run of "
                    "each sender writes its stream there, replay-<name> reads it (default: the work dir)")
    ap.add_argument("--json", default=None, help="append each run's result as a JSON line to this file")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between receiver polls")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per sender run")
    ap.add_argument("--recv-wait", type=float, default=30,
                    help="once all N are on the wire, wait at most this long for the receiver to hold them")
    ARGS = ap.parse_args()
    sizes = [10_000] if ARGS.quick else [100_000, 1_000_000]
    senders = ["ferrolb", "gobgp"] if ARGS.quick else [x for x in SENDERS if x not in ("ferrolb-base", "ferrolb-ext")]
    if ARGS.sizes:
        sizes = [int(x) for x in ARGS.sizes.split(",")]
    if ARGS.senders:
        senders = ARGS.senders.split(",")
    receivers = ARGS.receivers.split(",")
    for rc in receivers:
        if rc not in RECEIVERS:
            ap.error(f"unknown receiver {rc}")
    for sn in senders:
        if sn not in SENDERS and not (sn.startswith("replay-") and (sn[len("replay-"):] in SENDERS or ARGS.streams)):
            ap.error(f"unknown sender {sn}")
    buffers = (ARGS.buffers or ("default" if ARGS.default_buffers else "large")).split(",")
    DEFAULT_RMEM = nsrun(["sysctl", "-n", "net.ipv4.tcp_rmem"], capture_output=True, text=True,
                         check=True).stdout.split()
    DEFAULT_RMEM = " ".join(DEFAULT_RMEM)
    log(f"namespace tcp_rmem: default '{DEFAULT_RMEM}', large '{LARGE_RMEM}'")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = []
    try:
        # Runs outermost, so load drifting over the session spreads over every cell;
        # within a run real senders before replays (whose streams they capture).
        order = [x for x in senders if not x.startswith("replay-")] + [x for x in senders if x.startswith("replay-")]
        for n in sizes:
            for run in range(1, ARGS.runs + 1):
                for rc in receivers:
                    for bf in buffers:
                        for sn in order:
                            results.append(measure(sn, n, rc, bf, run))
    finally:
        stop_all()
    report(results)


if __name__ == "__main__":
    main()
