# shellcheck shell=bash
# The high-availability variant of the lab (lab/up --ha), sourced by lab/up, lab/down and
# lab/demo; names and addresses come from lab/topology.env (LAB_HA_*).
#
#   [lan-k8s] --- k8s-master-01 172.17.0.10  etcd (serves the other masters too) + kube-apiserver
#             --- k8s-master-02 172.17.0.11  kube-apiserver
#             --- k8s-master-03 172.17.0.12  kube-apiserver
#
# The three API servers share etcd, the CA, the service-account keys and the admin token
# (scripts/kube-apiserver with FERROLB_KUBE_CREDS_FROM / FERROLB_KUBE_ETCD_SERVERS); each
# serving certificate also names the VIP. In each master namespace `ferrolb vip --mode bgp`
# announces the VIP 172.17.0.100/32 to rt-01 while its local /readyz answers (rt-01's gobgpd
# config is lab/gobgpd-rt01-ha.toml), so rt-01 has one path per healthy master. The
# controller and the speakers use $RUN/kube/kubeconfig-vip, whose server is the VIP.
#
# The VIP lies inside the cluster LAN, so the nodes get a /32 route to it via rt-01 (which
# sends no ICMP redirects), and the masters answer ARP only for their interface's own
# address (the VIP is on their lo).
#
# lab/up --ha=layer2 (FERROLB_LAB_HA=layer2): `ferrolb vip --mode layer2` instead; one
# master, the holder of the Lease kube-system/ferrolb-vip taken through its own API server,
# has the VIP on eth0 and answers ARP for it; rt-01 reaches it over the LAN.

# Namespaces lab/up --ha adds to the plain lab's (k8s-master-01 is the plain lab's master).
HA_MORE_NS=("${LAB_HA_MASTERS[@]:1}")
# What `ferrolb vip` checks (ms): the path of an unhealthy master leaves within
# about HA_HEALTH_INTERVAL * HA_FALL after its API server stops answering.
HA_HEALTH_INTERVAL=${FERROLB_LAB_HA_HEALTH_INTERVAL:-500}
HA_FALL=3
# bgp or layer2 (lab/up's --ha=MODE; lab/down and lab/demo read it from $RUN/ha).
HA_MODE=bgp
if [ -f "${RUN:-}/ha" ]; then HA_MODE=$(cat "$RUN/ha"); fi

# Masters whose eth0 MAC answers rt-01's ARP request for the VIP (one per line).
ha_l2_holders() {
  local rt_if="" spec ifname lan out m mac
  for spec in "${LAB_RT_IFS[@]}"; do
    IFS=: read -r ifname _ lan <<<"$spec"
    [ "$lan" = "$LAB_NS_LAN_CLUSTER" ] && rt_if=$ifname
  done
  out=$(ip netns exec "$LAB_RT" arping -b -c 2 -w 1 -I "$rt_if" "$LAB_HA_VIP" 2>/dev/null | tr 'A-F' 'a-f' || true)
  for m in "${LAB_HA_MASTERS[@]}"; do
    mac=$(ip -n "$m" -br link show eth0 | awk '{print tolower($3)}')
    if grep -q "\[$mac\]" <<<"$out"; then echo "$m"; fi
  done
}

# The run dir of the API server in master $1 (k8s-master-01's is the plain lab's $RUN/kube).
ha_kube_dir() {
  if [ "$1" = "$LAB_MASTER" ]; then echo "$RUN/kube"; else echo "$RUN/kube-$1"; fi
}

# lab/up: veths and sysctls of the HA part (after the namespaces exist and are attached).
ha_topology() {
  local i m
  for i in "${!LAB_HA_MASTERS[@]}"; do
    m=${LAB_HA_MASTERS[$i]}
    if [ "$m" != "$LAB_MASTER" ]; then
      attach "$m" eth0 "$LAB_NS_LAN_CLUSTER" "${LAB_HA_MASTER_IPS[$i]}/$LAB_NODE_PLEN"
      ip -n "$m" route add default via "$LAB_MASTER_GW"
    fi
    # The VIP sits on lo: answer ARP for eth0's own address only.
    ip netns exec "$m" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
  done
  for m in "${LAB_NODES[@]}"; do
    ip -n "$m" route add "$LAB_HA_VIP/32" via "$LAB_NODE_GW"
  done
  # rt-01 forwards the nodes' VIP traffic back onto the same LAN: no redirects, or the
  # nodes would bypass the ECMP route (and keep using a master after it was withdrawn).
  local spec ifname
  ip netns exec "$LAB_RT" sysctl -qw net.ipv4.conf.all.send_redirects=0
  for spec in "${LAB_RT_IFS[@]}"; do
    IFS=: read -r ifname _ _ <<<"$spec"
    ip netns exec "$LAB_RT" sysctl -qw "net.ipv4.conf.$ifname.send_redirects=0"
  done
}

# lab/up: the environment of k8s-master-01's scripts/kube-apiserver start (etcd for all).
ha_first_apiserver_env() {
  echo "FERROLB_KUBE_BIND_ADDRESS=0.0.0.0"
  echo "FERROLB_KUBE_SANS=$LAB_HA_VIP"
  echo "FERROLB_KUBE_ETCD_LISTEN=$LAB_MASTER_IP"
}

# lab/up: the other masters' API servers, on k8s-master-01's etcd and credentials.
ha_more_apiservers() {
  local i m dir etcd starters=() names=()
  etcd=$(cat "$RUN/kube/etcd-servers")
  for i in "${!LAB_HA_MASTERS[@]}"; do
    m=${LAB_HA_MASTERS[$i]}
    [ "$m" != "$LAB_MASTER" ] || continue
    dir=$(ha_kube_dir "$m")
    FERROLB_KUBE_BIND=${LAB_HA_MASTER_IPS[$i]} FERROLB_KUBE_PORT=$LAB_APISERVER_PORT \
      FERROLB_KUBE_BIND_ADDRESS=0.0.0.0 FERROLB_KUBE_SANS=$LAB_HA_VIP \
      FERROLB_KUBE_CREDS_FROM=$RUN/kube FERROLB_KUBE_ETCD_SERVERS=$etcd \
      ip netns exec "$m" "$REPO/scripts/kube-apiserver" start "$dir" \
      >"$RUN/log/kube-apiserver-start-$m.log" 2>&1 &
    starters+=($!)
    names+=("$m")
  done
  for i in "${!starters[@]}"; do
    if ! wait "${starters[$i]}"; then
      cat "$RUN/log/kube-apiserver-start-${names[$i]}.log" >&2
      die "kube-apiserver on ${names[$i]} did not start"
    fi
  done
}

# Next hops of rt-01's kernel route to the VIP.
ha_vip_nexthops() {
  ip -n "$LAB_RT" -j route show "$LAB_HA_VIP" proto bgp | grep -o '"gateway":"[^"]*"' | cut -d'"' -f4 | sort
}

# lab/up: `ferrolb vip` in every master, its health the local API server's /readyz; waits
# for rt-01's route to the VIP with one nexthop per master. Writes the VIP's kubeconfig.
ha_vip_agents() {
  local i m
  [ "$HA_MODE" = bgp ] || { ha_vip_agents_layer2; return; }
  for i in "${!LAB_HA_MASTERS[@]}"; do
    m=${LAB_HA_MASTERS[$i]}
    start "vip-$m" "$m" env RUST_LOG=info "$BIN" vip --mode bgp --address "$LAB_HA_VIP" \
      --health-url "https://127.0.0.1:$LAB_APISERVER_PORT/readyz" --health-ca "$(ha_kube_dir "$m")/ca.crt" \
      --health-interval "$HA_HEALTH_INTERVAL" --health-timeout $((HA_HEALTH_INTERVAL * 4 / 5)) --fall "$HA_FALL" --rise 2 \
      --peer "$LAB_RT_ID" --local-as "$LAB_HA_ASN" --peer-as "$LAB_RT_ASN" --source "${LAB_HA_MASTER_IPS[$i]}" \
      --hold-time "$LAB_RT_HOLD" --connect-retry 1
  done
  local want
  want=$(printf '%s\n' "${LAB_HA_MASTER_IPS[@]}" | sort)
  ha_all_paths() { [ "$(ha_vip_nexthops)" = "$want" ]; }
  wait_for 60 "rt-01's route to the VIP $LAB_HA_VIP via ${LAB_HA_MASTER_IPS[*]}" ha_all_paths
  ha_write_vip_kubeconfig
}

ha_write_vip_kubeconfig() {
  sed "s#^\(    server: \).*#\1https://$LAB_HA_VIP:$LAB_APISERVER_PORT#" "$RUN/kube/kubeconfig" >"$RUN/kube/kubeconfig-vip"
  chmod 600 "$RUN/kube/kubeconfig-vip"
  grep -q "server: https://$LAB_HA_VIP:" "$RUN/kube/kubeconfig-vip" || die "kubeconfig-vip has no VIP server"
  echo "$HA_MODE" >"$RUN/ha"
}

# Layer 2: every master competes for the Lease through its own API server; the holder
# puts the VIP on eth0. Waits until exactly one master answers ARP for it.
ha_vip_agents_layer2() {
  local i m
  for i in "${!LAB_HA_MASTERS[@]}"; do
    m=${LAB_HA_MASTERS[$i]}
    start "vip-$m" "$m" env RUST_LOG=info "$BIN" vip --mode layer2 --address "$LAB_HA_VIP" --interface eth0 \
      --health-url "https://127.0.0.1:$LAB_APISERVER_PORT/readyz" --health-ca "$(ha_kube_dir "$m")/ca.crt" \
      --health-interval "$HA_HEALTH_INTERVAL" --health-timeout $((HA_HEALTH_INTERVAL * 4 / 5)) --fall "$HA_FALL" --rise 2 \
      --kubeconfig "$RUN/kube/kubeconfig" --api-server "https://${LAB_HA_MASTER_IPS[$i]}:$LAB_APISERVER_PORT" \
      --node-name "$m"
  done
  ha_one_holder() { [ "$(ha_l2_holders | wc -l)" -eq 1 ]; }
  wait_for 60 "one master answering ARP for the VIP $LAB_HA_VIP" ha_one_holder
  ha_write_vip_kubeconfig
}

# lab/down: the other masters' API servers (before k8s-master-01's, which runs etcd).
ha_down_apiservers() {
  local m dir name pid
  # An API server SIGSTOPped to try the failover would ignore SIGTERM until KILLed 10 s
  # later: wake the lab's own (PIDs from the run dir, checked by name) first.
  for dir in "$RUN/kube" "$RUN"/kube-*; do
    [ -f "$dir/pids" ] || continue
    while read -r name pid; do
      [ "$name" = kube-apiserver ] || continue
      { grep -qa -- kube-apiserver "/proc/$pid/cmdline" 2>/dev/null && kill -CONT "$pid" 2>/dev/null; } || true
    done <"$dir/pids"
  done
  # In parallel: an API server that lost the layer 2 VIP keeps its clients' orphaned
  # connections and waits for them until KILLed (10 s).
  local stoppers=()
  for m in "${HA_MORE_NS[@]}"; do
    dir=$(ha_kube_dir "$m")
    [ -f "$dir/pids" ] || continue
    "$REPO/scripts/kube-apiserver" stop "$dir" &
    stoppers+=($!)
  done
  for m in "${stoppers[@]}"; do wait "$m" || true; done
  return 0
}

# lab/demo: rt-01's paths for the VIP and kubectl through it from client-01.
# Returns 0 when there are three paths and kubectl lists the nodes.
ha_demo() {
  local ok=1
  [ "$HA_MODE" = bgp ] || { ha_demo_layer2; return; }
  echo
  echo "== $LAB_RT\$ gobgp global rib -a ipv4 $LAB_HA_VIP/32   (control-plane VIP, lab/up --ha)"
  ip netns exec "$LAB_RT" gobgp global rib -a ipv4 "$LAB_HA_VIP/32" || ok=0
  echo
  echo "== $LAB_RT\$ ip route show $LAB_HA_VIP"
  ip -n "$LAB_RT" route show "$LAB_HA_VIP"
  local n
  n=$(ha_vip_nexthops | wc -l)
  echo "  $n paths (masters: ${LAB_HA_MASTER_IPS[*]})"
  [ "$n" -eq "${#LAB_HA_MASTERS[@]}" ] || ok=0
  echo
  ha_kubectl_demo || ok=0
  [ "$ok" -eq 1 ]
}

# lab/demo --ha=layer2: who answers ARP for the VIP, and kubectl through it.
ha_demo_layer2() {
  local ok=1 holders
  echo
  echo "== $LAB_RT\$ arping for the control-plane VIP $LAB_HA_VIP   (lab/up --ha=layer2)"
  mapfile -t holders < <(ha_l2_holders)
  echo "  masters answering: ${#holders[@]} (${holders[*]:-none})"
  [ "${#holders[@]}" -eq 1 ] || ok=0
  echo
  ha_kubectl_demo || ok=0
  [ "$ok" -eq 1 ]
}

ha_kubectl_demo() {
  local out
  echo "== $LAB_CLIENT\$ kubectl --server https://$LAB_HA_VIP:$LAB_APISERVER_PORT get nodes"
  if out=$(ip netns exec "$LAB_CLIENT" kubectl --kubeconfig "$RUN/kube/kubeconfig" \
    --server "https://$LAB_HA_VIP:$LAB_APISERVER_PORT" --request-timeout 5s get nodes 2>&1); then
    printf '%s\n' "$out" | sed 's/^/  /'
  else
    printf '%s\n' "$out" | sed 's/^/  /'
    return 1
  fi
}
