#!/usr/bin/env bash
# A 3-member etcd cluster on this machine: to run several `corral server --store
# etcd://...` against, and to kill members of.
#
#   scripts/etcd-cluster.sh start DIR [BASE_PORT]   members m0 m1 m2, data and logs in DIR;
#                                                   prints the --store value once all answer
#   scripts/etcd-cluster.sh stop DIR                stops the members started in DIR
#
# Clients on BASE_PORT, +1, +2; peers on BASE_PORT+10, +11, +12 (BASE_PORT: 23790).
# Started again on the same DIR, the members keep their data. Transactions may hold up
# to 4096 keys and 10 MiB (etcd's defaults, 128 and 1.5 MiB, are below what one
# scheduler offer's accept writes).
set -euo pipefail
. "$(dirname "$0")/pidfiles.sh"

usage() {
  echo "usage: $0 start DIR [BASE_PORT] | stop DIR" >&2
  exit 2
}

cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] || usage

case "$cmd" in
  start)
    base=${3:-23790}
    mkdir -p "$dir"
    cluster=""
    for i in 0 1 2; do cluster+="m$i=http://127.0.0.1:$((base + 10 + i)),"; done
    cluster=${cluster%,}
    for i in 0 1 2; do
      if [ -f "$dir/m$i.pid" ] && kill -0 "$(cat "$dir/m$i.pid")" 2>/dev/null; then
        echo "etcd-cluster: m$i is already running in $dir (stop it first)" >&2
        exit 1
      fi
      client="http://127.0.0.1:$((base + i))"
      peer="http://127.0.0.1:$((base + 10 + i))"
      etcd --name "m$i" --data-dir "$dir/m$i" \
        --listen-client-urls "$client" --advertise-client-urls "$client" \
        --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token corral \
        --max-txn-ops 4096 --max-request-bytes 10485760 \
        --logger zap --log-level warn >"$dir/m$i.log" 2>&1 &
      echo $! >"$dir/m$i.pid"
    done
    # Bounded: a healthy cluster elects a leader within a few seconds.
    for i in 0 1 2; do
      for _ in $(seq 1 200); do
        if curl -sf "http://127.0.0.1:$((base + i))/health" | grep -q '"health":"true"'; then
          continue 2
        fi
        sleep 0.1
      done
      echo "etcd-cluster: m$i did not become healthy; see $dir/m$i.log, which ends:" >&2
      tail -n 20 "$dir/m$i.log" >&2
      exit 1
    done
    echo "etcd://127.0.0.1:$base,127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2))"
    ;;
  stop)
    stop_pidfiles "$dir"/m*.pid
    ;;
  *) usage ;;
esac
