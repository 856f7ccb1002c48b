#!/usr/bin/env bash
# A highly available Corral control plane on this machine: a 3-member etcd cluster
# (scripts/etcd-cluster.sh) and two `corral server`s on it, each with its API, its
# cluster DNS and a controller manager (one of the two leads, the other waits on its
# Lease). For trying failover as a user would: kill a server, an etcd member.
#
#   scripts/ha-cluster.sh start DIR [BASE_PORT]   everything under DIR; prints the servers
#                                                 and the CLI configuration naming both
#   scripts/ha-cluster.sh stop DIR                stops what start started in DIR
#
# Ports (BASE_PORT: 23790): etcd clients BASE..BASE+2, peers BASE+10..+12; API servers
# BASE+20, +21; their DNS (UDP and TCP) BASE+30, +31. The corral executable: $CORRAL,
# else target/release/corral (`make build`), else `corral` on PATH.
set -euo pipefail
. "$(dirname "$0")/pidfiles.sh"

here=$(cd "$(dirname "$0")" && pwd)

usage() {
  echo "usage: $0 start DIR [BASE_PORT] | stop DIR" >&2
  exit 2
}

corral_exe() {
  if [ -n "${CORRAL:-}" ]; then
    echo "$CORRAL"
  elif [ -x "$here/../target/release/corral" ]; then
    echo "$here/../target/release/corral"
  elif command -v corral >/dev/null; then
    command -v corral
  else
    echo "ha-cluster: no corral executable: run \`make build\` or set CORRAL" >&2
    exit 1
  fi
}

cmd=${1:-}
dir=${2:-}
[ -n "$dir" ] || usage

case "$cmd" in
  start)
    base=${3:-23790}
    corral=$(corral_exe)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for i in 0 1; do
      if [ -f "$dir/api$i.pid" ] && kill -0 "$(cat "$dir/api$i.pid")" 2>/dev/null; then
        echo "ha-cluster: api$i is already running in $dir (stop it first)" >&2
        exit 1
      fi
    done
    store=$("$here/etcd-cluster.sh" start "$dir/etcd" "$base")
    servers=""
    for i in 0 1; do
      addr="127.0.0.1:$((base + 20 + i))"
      "$corral" server --store "$store" --listen "$addr" --data-dir "$dir/api$i" \
        --dns-listen "127.0.0.1:$((base + 30 + i))" >"$dir/api$i.log" 2>&1 &
      echo $! >"$dir/api$i.pid"
      servers+="http://$addr,"
    done
    servers=${servers%,}
    # Bounded: a server on a healthy etcd answers within seconds.
    for i in 0 1; do
      for _ in $(seq 1 300); do
        if curl -sf "http://127.0.0.1:$((base + 20 + i))/healthz" >/dev/null; then
          continue 2
        fi
        if ! kill -0 "$(cat "$dir/api$i.pid")" 2>/dev/null; then
          echo "ha-cluster: api$i exited; see $dir/api$i.log, which ends:" >&2
          tail -n 20 "$dir/api$i.log" >&2
          exit 1
        fi
        sleep 0.1
      done
      echo "ha-cluster: api$i did not become healthy; see $dir/api$i.log, which ends:" >&2
      tail -n 20 "$dir/api$i.log" >&2
      exit 1
    done
    # The administrator's credential, naming both servers: the CLI fails over.
    sed "s|^\(\s*server:\).*|\1 $servers|" "$dir/api0/admin.conf" >"$dir/admin.conf"
    chmod 600 "$dir/admin.conf"
    echo "etcd:    $store"
    echo "servers: $servers"
    echo "config:  $dir/admin.conf   (export CORRAL_CONFIG=$dir/admin.conf)"
    ;;
  stop)
    stop_pidfiles "$dir"/api*.pid
    "$here/etcd-cluster.sh" stop "$dir/etcd"
    ;;
  *) usage ;;
esac
