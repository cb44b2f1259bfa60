#!/usr/bin/env python3
"""Bulk Kubernetes calls for bench/reliability, run INSIDE k8s-master-01's namespace
(ip netns exec k8s-master-01 python3 kube.py RUN_DIR [--slices] CMD ...), where the lab's
kube-apiserver listens on 172.17.0.10:6443. One process for many requests, so
creating 200 Services does not cost 400 `ip netns exec curl` round trips.
With --slices (a lab of `lab/up --slices`) every Service's endpoints are written as one
discovery.k8s.io/v1 EndpointSlice `NAME-0` (label kubernetes.io/service-name) instead of
a core/v1 Endpoints object; the commands below say "Endpoints" for either.

  kube.py RUN create PREFIX N NODE_IP:NODE ...   Services PREFIX-000.. (+ Endpoints on the nodes)
  kube.py RUN ips PREFIX                         {name: ingress IP or null} as JSON
  kube.py RUN delete NAME                        Service + Endpoints NAME
  kube.py RUN objects                            {"endpoints": n, "endpointslices": n or null}
                                                 labelled ferrolb-bench (null: not served)
  kube.py RUN ready                              exit 0 when /readyz answers ok
  kube.py RUN services                           {name: [uid, ingress IP or null]} in default
  kube.py RUN events                             {"reason/controller": count} of every Event
  kube.py RUN cleanup PREFIX                     delete every Service/Endpoints labelled PREFIX
  kube.py RUN churn SEED SECONDS RATE NODE_IP:NODE ...
                                                 scenario 4's changes (churn(): one JSON line each)
"""
import json
import random
import ssl
import sys
import time
import urllib.error
import urllib.request

API = "https://172.17.0.10:6443"
SLICES = False  # --slices: endpoints as discovery.k8s.io/v1 EndpointSlices
SLICES_PATH = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
SERVICE_NAME = "kubernetes.io/service-name"


def client(run):
    ctx = ssl.create_default_context(cafile=f"{run}/kube/ca.crt")
    token = open(f"{run}/kube/token").read().strip()

    def call(method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(API + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            # A custom resource (the EndpointSlice v1 CRD) takes no strategic merge patch
            # and no PUT without a resourceVersion: endpoint changes are merge patches.
            req.add_header("Content-Type", "application/merge-patch+json" if method == "PATCH"
                           else "application/json")
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.read()
    return call


# ------------------------------------------------------------------ endpoints, either API
def slice_name(name):
    return f"{name}-0"


def endpoints_path(name=None):
    """The collection (or, with `name`, the object) holding Service `name`'s endpoints."""
    if SLICES:
        return SLICES_PATH + (f"/{slice_name(name)}" if name else "")
    return "/api/v1/namespaces/default/endpoints" + (f"/{name}" if name else "")


def endpoints_body(name, labels, ready, notready, port=80):
    """Service `name`'s endpoints: `ready` and `notready` are [(ip, node)]. Core/v1: one
    subset (addresses, notReadyAddresses; none at all: subsets []). Slices: one slice,
    each endpoint's conditions as the EndpointSlice controller writes them for a pod that
    is (not) ready and not terminating; none at all: endpoints []."""
    if SLICES:
        eps = [{"addresses": [ip], "nodeName": node,
                "conditions": {"ready": r, "serving": r, "terminating": False}}
               for (ip, node), r in [(x, True) for x in ready] + [(x, False) for x in notready]]
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name(name),
                             "labels": dict(labels, **{SERVICE_NAME: name,
                                                       "endpointslice.kubernetes.io/managed-by":
                                                       "bench.ferrolb"})},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}
    subset = {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": ip, "nodeName": n} for ip, n in ready]
    if notready:
        subset["notReadyAddresses"] = [{"ip": ip, "nodeName": n} for ip, n in notready]
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "labels": labels},
            "subsets": [subset] if len(subset) > 1 else []}


def write_endpoints(call, name, labels, ready, notready, create=False):
    body = endpoints_body(name, labels, ready, notready)
    if create:
        call("POST", endpoints_path(), body)
    elif SLICES:
        call("PATCH", endpoints_path(name), {"endpoints": body["endpoints"]})
    else:
        call("PUT", endpoints_path(name), body)


# ------------------------------------------------------------------ scenario 4: churn
CHURN = "churn"
CHURN_MIN, CHURN_START, CHURN_MAX = 10, 25, 40  # live churn Services (the /24 holds 256)


def announcers(svc, nodes):
    """Nodes that should announce `svc` by speaker/src/announce.rs `decide` (one BGP pool,
    every node peers with rt-01): Cluster: every node when any endpoint is ready; Local:
    the nodes with a ready endpoint. Core/v1 notReadyAddresses are neither ready nor serving."""
    if svc["policy"] == "Local":
        return set(svc["ready"])
    return set(nodes) if svc["ready"] else set()


def churn(call, seed, seconds, rate, nodes):
    """Scenario 4's changes at a fixed rate from random.Random(seed): Service creates and
    deletes (Cluster or Local), and endpoint changes (ready set moved to other nodes, ready
    addresses going not-ready, and back). One JSON line per change; the last line is the
    model: every churn Service's policy and endpoints, and what it expects announced."""
    rng = random.Random(seed)
    ips = {name: ip for ip, name in nodes}
    names = [name for _, name in nodes]
    live = {}  # name -> {"policy", "ready": [nodes], "notready": [nodes], "back": [nodes]}
    seq = [0]
    stats = {"create": 0, "delete": 0, "move": 0, "notready": 0, "back": 0, "empty": 0}
    starts = [0]  # (Service, node) pairs that start being announced: nodeAssigned Events

    def put_endpoints(name, svc, create=False):
        write_endpoints(call, name, {"app": name, "ferrolb-bench": CHURN},
                        [(ips[n], n) for n in svc["ready"]],
                        [(ips[n], n) for n in svc["notready"]], create=create)

    def create():
        name = f"{CHURN}-{seq[0]:04d}"
        seq[0] += 1
        policy = "Local" if rng.random() < 0.5 else "Cluster"
        k = rng.choice([1, 1, 2, 3])
        svc = {"policy": policy, "ready": sorted(rng.sample(names, k)), "notready": [], "back": []}
        meta = {"name": name, "labels": {"app": name, "ferrolb-bench": CHURN}}
        call("POST", "/api/v1/namespaces/default/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": policy,
                     "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]}})
        put_endpoints(name, svc, create=True)
        live[name] = svc
        starts[0] += len(announcers(svc, names))
        return name, "create", f"{policy} ready on {svc['ready']}"

    def delete():
        name = rng.choice(sorted(live))
        # Either order: a Service whose Endpoints go first, or the other way round.
        # (kube-apiserver 1.20 deletes a Service's Endpoints with it: then the second is a 404.
        # Not its EndpointSlice: no garbage collector runs in the lab, the driver deletes it.)
        kinds = ["services", "endpoints"] if rng.random() < 0.5 else ["endpoints", "services"]
        for kind in kinds:
            try:
                call("DELETE", f"/api/v1/namespaces/default/services/{name}" if kind == "services"
                     else endpoints_path(name))
            except urllib.error.HTTPError as e:
                if e.code != 404 or kind != "endpoints" or SLICES:
                    raise
        del live[name]
        return name, "delete", f"{kinds[0]} first"

    def endpoints():
        name = rng.choice(sorted(live))
        svc = live[name]
        before = announcers(svc, names)
        choices = ["move", "move"]
        if svc["ready"]:
            choices.append("notready")
        if svc["back"]:
            choices += ["back", "back"]
        if (svc["ready"] or svc["notready"]) and rng.random() < 0.3:
            choices.append("empty")  # no endpoints at all (subsets: [])
        kind = rng.choice(choices)
        if kind == "move":
            new = svc["ready"]
            while new == svc["ready"]:
                new = sorted(rng.sample(names, rng.choice([1, 1, 2, 3])))
            svc.update(ready=new, notready=[], back=[])
        elif kind == "notready":
            gone = sorted(rng.sample(svc["ready"], rng.randint(1, len(svc["ready"]))))
            svc["back"] = sorted(set(svc["back"]) | set(gone))
            svc["ready"] = [n for n in svc["ready"] if n not in gone]
            svc["notready"] = sorted(set(svc["notready"]) | set(gone))
        elif kind == "back":
            svc["ready"] = sorted(set(svc["ready"]) | set(svc["back"]))
            svc["notready"] = [n for n in svc["notready"] if n not in svc["back"]]
            svc["back"] = []
        else:
            svc.update(ready=[], notready=[], back=[])
        put_endpoints(name, svc)
        starts[0] += len(announcers(svc, names) - before)
        return name, kind, f"ready {svc['ready']} notready {svc['notready']}"

    def emit(**kw):
        print(json.dumps(kw), flush=True)

    for _ in range(CHURN_START):
        name, kind, what = create()
        emit(t=0.0, op=kind, svc=name, what=what, initial=True)
    initial = sorted(live)
    t0 = time.monotonic()
    i = 0
    lags = []
    errors = []
    while True:
        due = t0 + i / rate
        if due - t0 >= seconds:
            break
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        lags.append(max(0.0, time.monotonic() - due))
        r = rng.random()
        try:
            if (r < 0.2 and len(live) < CHURN_MAX) or len(live) <= CHURN_MIN:
                name, kind, what = create()
            elif r < 0.4:
                name, kind, what = delete()
            else:
                name, kind, what = endpoints()
            stats[kind] += 1
            emit(t=round(time.monotonic() - t0, 2), op=kind, svc=name, what=what)
        except (OSError, urllib.error.URLError) as e:
            body = e.read().decode(errors="replace")[:300] if isinstance(e, urllib.error.HTTPError) else ""
            errors.append(f"{round(time.monotonic() - t0, 1)} s: {e} {body}")
            emit(t=round(time.monotonic() - t0, 2), op="error", error=f"{e} {body}")
        i += 1
    lags.sort()
    emit(done=True, seed=seed, changes=i, stats=stats, errors=errors,
         seconds=round(time.monotonic() - t0, 1),
         lag_p50=round(lags[len(lags) // 2], 3) if lags else 0,
         lag_max=round(lags[-1], 3) if lags else 0,
         starts=starts[0], initial_alive=[n for n in initial if n in live],
         model={n: dict(v, announcers=sorted(announcers(v, names))) for n, v in live.items()})


def main():
    global SLICES
    args = sys.argv[1:]
    if len(args) > 1 and args[1] == "--slices":
        SLICES = True
        del args[1]
    run, cmd, *rest = args
    call = client(run)
    if cmd == "ready":
        try:
            sys.exit(0 if call("GET", "/readyz", timeout=2).strip() == b"ok" else 1)
        except (OSError, urllib.error.URLError):
            sys.exit(1)
    if cmd == "create":
        prefix, n, nodes = rest[0], int(rest[1]), [x.split(":") for x in rest[2:]]
        for i in range(n):
            name = f"{prefix}-{i:03d}"
            meta = {"name": name, "labels": {"app": name, "ferrolb-bench": prefix}}
            try:
                call("POST", "/api/v1/namespaces/default/services", {
                    "apiVersion": "v1", "kind": "Service", "metadata": meta,
                    "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                             "selector": {"app": name},
                             "ports": [{"name": "http", "port": 80, "targetPort": 80,
                                        "protocol": "TCP"}]}})
                write_endpoints(call, name, meta["labels"], [tuple(x) for x in nodes], [],
                                create=True)
            except urllib.error.HTTPError as e:
                if e.code != 409:  # already there (a rerun)
                    raise
        return
    if cmd == "delete":
        for path in ("/api/v1/namespaces/default/services/" + rest[0], endpoints_path(rest[0])):
            try:
                call("DELETE", path)
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
        return
    if cmd == "objects":
        out = {}
        for kind, path in (("endpoints", "/api/v1/namespaces/default/endpoints"),
                           ("endpointslices", SLICES_PATH)):
            try:
                out[kind] = len(json.loads(call("GET", path + "?labelSelector=ferrolb-bench"))["items"])
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
                out[kind] = None
        print(json.dumps(out))
        return
    if cmd == "services":
        items = json.loads(call("GET", "/api/v1/namespaces/default/services"))["items"]
        out = {}
        for s in items:
            ing = (s.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
            out[s["metadata"]["name"]] = [s["metadata"]["uid"], ing[0].get("ip") if ing else None]
        print(json.dumps(out))
        return
    if cmd == "events":
        # events.k8s.io/v1, which both binaries write; every Event is its own object
        # (ops/src/events.rs: a fresh Recorder each, no series).
        out = {}
        cont = ""
        while True:
            page = json.loads(call("GET", "/apis/events.k8s.io/v1/events?limit=500" + cont, timeout=30))
            for e in page["items"]:
                k = f"{e.get('reason')}/{e.get('reportingController')}"
                n = (e.get("series") or {}).get("count") or 1
                out[k] = out.get(k, 0) + n
            c = page.get("metadata", {}).get("continue")
            if not c:
                break
            cont = "&continue=" + c
        print(json.dumps(out))
        return
    if cmd == "cleanup":
        # Every Service and Endpoints labelled ferrolb-bench=PREFIX (orphans included).
        n = 0
        colls = {"services": "/api/v1/namespaces/default/services",
                 "endpoints": "/api/v1/namespaces/default/endpoints"}
        if SLICES:
            colls["endpointslices"] = SLICES_PATH
        for kind, coll in colls.items():
            items = json.loads(call("GET", f"{coll}?labelSelector=ferrolb-bench%3D{rest[0]}"))["items"]
            for it in items:
                try:
                    call("DELETE", f"{coll}/{it['metadata']['name']}")
                except urllib.error.HTTPError as e:
                    if e.code != 404:
                        raise
                n += kind == "services"
        print(n)
        return
    if cmd == "churn":
        return churn(call, int(rest[0]), float(rest[1]), float(rest[2]),
                     [x.split(":") for x in rest[3:]])
    if cmd == "ips":
        prefix = rest[0]
        items = json.loads(call("GET", f"/api/v1/namespaces/default/services?labelSelector=ferrolb-bench%3D{prefix}"))["items"]
        out = {}
        for s in items:
            ing = (s.get("status", {}).get("loadBalancer", {}) or {}).get("ingress") or []
            out[s["metadata"]["name"]] = ing[0].get("ip") if ing else None
        print(json.dumps(out))
        return
    sys.exit(f"kube.py: unknown command {cmd}")


if __name__ == "__main__":
    main()
