#!/usr/bin/env bash
# Regenerates messages.txt: runs gobgpd 3.10 and FRR 8.4 bgpd as BGP senders toward
# gobgpd receivers in two private network namespaces (flb-capS, flb-capR) joined by a
# veth pair, captures TCP port 179 with tcpdump and splits the streams into BGP messages.
# Needs root. Nothing is configured in the root namespace. See README.md.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/flb-capture.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for f in "$W"/frr/*.pid; do [ -e "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 0.5
  ip netns del flb-capS 2>/dev/null || true
  ip netns del flb-capR 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add flb-capS; ip netns add flb-capR
ip -n flb-capS link set lo up; ip -n flb-capR link set lo up
ip link add flbcapS netns flb-capS type veth peer name flbcapR netns flb-capR
ip -n flb-capS addr add 198.18.0.1/24 dev flbcapS
ip -n flb-capS addr add 198.18.0.3/24 dev flbcapS
ip -n flb-capS addr add 2001:db8:ff::1/64 dev flbcapS nodad
ip -n flb-capS addr add 2001:db8:ff::3/64 dev flbcapS nodad
ip -n flb-capR addr add 198.18.0.2/24 dev flbcapR
ip -n flb-capR addr add 198.18.0.4/24 dev flbcapR
ip -n flb-capR addr add 2001:db8:ff::2/64 dev flbcapR nodad
ip -n flb-capS link set flbcapS up; ip -n flb-capR link set flbcapR up
sleep 1
S="ip netns exec flb-capS"; R="ip netns exec flb-capR"
$R tcpdump -i flbcapR -s 0 -U -w "$W/cap.pcap" 'tcp port 179' >"$W/tcpdump.log" 2>&1 & PIDS+=($!)
sleep 1
$R gobgpd -f "$HERE/config/gobgpd-receiver.toml" --api-hosts 127.0.0.1:50061 --pprof-disable -p >"$W/R.log" 2>&1 & PIDS+=($!)
$R gobgpd -f "$HERE/config/gobgpd-receiver-ibgp.toml" --api-hosts 127.0.0.1:50062 --pprof-disable -p >"$W/R2.log" 2>&1 & PIDS+=($!)
$S gobgpd -f "$HERE/config/gobgpd-sender.toml" --api-hosts 127.0.0.1:50060 --pprof-disable -p >"$W/S.log" 2>&1 & PIDS+=($!)
mkdir "$W/frr"; cp "$HERE/config/frr-bgpd.conf" "$W/frr/bgpd.conf"; touch "$W/frr/zebra.conf"; chown -R frr:frr "$W/frr"
FRRARGS=(-u frr -g frr -P 0 -z "$W/frr/zserv.api" --vty_socket "$W/frr")
$S /usr/lib/frr/zebra "${FRRARGS[@]}" -i "$W/frr/zebra.pid" -f "$W/frr/zebra.conf" >"$W/zebra.log" 2>&1 & PIDS+=($!)
sleep 1
$S /usr/lib/frr/bgpd "${FRRARGS[@]}" -i "$W/frr/bgpd.pid" -f "$W/frr/bgpd.conf" -l 198.18.0.3 -l 2001:db8:ff::3 >"$W/bgpd.log" 2>&1 & PIDS+=($!)
sleep 2
G="$S gobgp -p 50060"
# Routes with identical attributes so gobgpd packs them into one UPDATE.
for i in 1 2 3; do
  $G global rib add -a ipv4 172.17.254.$i/32 nexthop 198.18.0.1 origin igp community 64512:100,64512:200 large-community 4200000001:1:1 local-pref 200 med 10
done
$G global rib add -a ipv4 172.17.254.4/32 nexthop 198.18.0.1 origin incomplete community 65535:65281 large-community 4200000001:4:4
for i in 1 2; do
  $G global rib add -a ipv6 2001:db8:254::$i/128 nexthop 2001:db8:ff::1 origin igp community 64512:100 large-community 4200000001:6:1
done
wait_established() { # $1 = gobgp command prefix, $2 = neighbor
  for _ in $(seq 300); do
    $1 neighbor "$2" 2>/dev/null | grep -qi "BGP state = ESTABLISHED" && return 0; sleep 0.2
  done
  echo "neighbor $2 not established" >&2; return 1
}
echo "== eBGP gobgpd 4200000001 -> gobgpd 64512"
$G neighbor 198.18.0.2 enable
wait_established "$G" 198.18.0.2
sleep 2
echo "== withdrawals"
$G global rib del -a ipv4 172.17.254.3/32
sleep 0.5
$G global rib del -a ipv6 2001:db8:254::2/128
sleep 1
echo "== iBGP gobgpd 4200000001 -> gobgpd 4200000001"
$G neighbor 198.18.0.4 enable
wait_established "$G" 198.18.0.4
sleep 2
echo "== FRR 64513 -> gobgpd 64512 (IPv4 session and IPv6 session)"
V="$S vtysh --vty_socket $W/frr"
$V -c 'conf t' -c 'router bgp 64513' -c 'no neighbor 198.18.0.2 shutdown' -c 'no neighbor 2001:db8:ff::2 shutdown'
sleep 5
$R gobgp -p 50061 global rib -a ipv4
$R gobgp -p 50061 global rib -a ipv6
$R gobgp -p 50062 global rib -a ipv4
echo "== FRR administrative shutdown with message"
$V -c 'conf t' -c 'router bgp 64513' -c 'neighbor 198.18.0.2 shutdown message "ferrolb capture: maintenance"'
sleep 1
kill "${PIDS[0]}"; sleep 0.5
python3 "$HERE/pcap2bgp.py" "$W/cap.pcap" > "$HERE/messages.txt"
cp "$W/cap.pcap" "$HERE/capture.pcap"
echo "wrote $HERE/messages.txt ($(wc -l < "$HERE/messages.txt") messages)"
