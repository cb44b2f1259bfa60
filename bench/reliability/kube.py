#!/usr/bin/env python3
"""Bulk Kubernetes calls for bench/reliability, run INSIDE k8s-master-01's namespace
(ip netns exec k8s-master-01 python3 kube.py RUN_DIR CMD ...), where the lab's
kube-apiserver listens on 172.17.0.10:6443. One process for many requests, so
creating 200 Services does not cost 400 `ip netns exec curl` round trips.

  kube.py RUN create PREFIX N NODE_IP:NODE ...   Services PREFIX-000.. (+ Endpoints on the nodes)
  kube.py RUN ips PREFIX                         {name: ingress IP or null} as JSON
  kube.py RUN delete NAME                        Service + Endpoints NAME
  kube.py RUN ready                              exit 0 when /readyz answers ok
"""
import json
import ssl
import sys
import urllib.error
import urllib.request

API = "https://172.17.0.10:6443"


def client(run):
    ctx = ssl.create_default_context(cafile=f"{run}/kube/ca.crt")
    token = open(f"{run}/kube/token").read().strip()

    def call(method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(API + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.read()
    return call


def main():
    run, cmd, *rest = sys.argv[1:]
    call = client(run)
    if cmd == "ready":
        try:
            sys.exit(0 if call("GET", "/readyz", timeout=2).strip() == b"ok" else 1)
        except (OSError, urllib.error.URLError):
            sys.exit(1)
    if cmd == "create":
        prefix, n, nodes = rest[0], int(rest[1]), [x.split(":") for x in rest[2:]]
        addrs = [{"ip": ip, "nodeName": name} for ip, name in nodes]
        for i in range(n):
            name = f"{prefix}-{i:03d}"
            meta = {"name": name, "labels": {"app": name, "ferrolb-bench": prefix}}
            ports = [{"name": "http", "port": 80, "protocol": "TCP"}]
            try:
                call("POST", "/api/v1/namespaces/default/services", {
                    "apiVersion": "v1", "kind": "Service", "metadata": meta,
                    "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                             "selector": {"app": name},
                             "ports": [dict(ports[0], targetPort=80)]}})
                call("POST", "/api/v1/namespaces/default/endpoints", {
                    "apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
                    "subsets": [{"addresses": addrs, "ports": ports}]})
            except urllib.error.HTTPError as e:
                if e.code != 409:  # already there (a rerun)
                    raise
        return
    if cmd == "delete":
        for kind in ("services", "endpoints"):
            try:
                call("DELETE", f"/api/v1/namespaces/default/{kind}/{rest[0]}")
            except urllib.error.HTTPError as e:
                if e.code != 404:
                    raise
        return
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
