#!/usr/bin/env bash
# PromQL side by side with Prometheus 2.42: the shared conformance data set
# is loaded into a reference Prometheus (../shared/conformance/reference.sh)
# and, over remote_write, into `pharos up` and into `pharos cluster up
# --shards 3`; `promql_diff.py compare` then runs queries.promql and
# compliance-queries.promql against both and prints each system's total
# query time and whether every answer matches.
#
#   benches/promql.sh [--only up|cluster]
#
# Builds Pharos in release mode (CARGO_TARGET_DIR, default
# $HOME/.cache/pharos/target-release); PHAROS_BIN overrides the binary.
set -euo pipefail
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--only up|cluster]" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
conf=${CONFORMANCE_DIR:-$root/../shared/conformance}
[ -f "$conf/promql_diff.py" ] || { echo "promql: $conf/promql_diff.py not found (set CONFORMANCE_DIR)" >&2; exit 1; }
command -v prometheus >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq prometheus >/dev/null
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pharos/target-release}
if [ -z "${PHAROS_BIN:-}" ]; then
  (cd "$root" && cargo build --release --bin pharos >&2)
  PHAROS_BIN=$CARGO_TARGET_DIR/release/pharos
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # the cluster supervisor stops its processes before it exits
  for _ in $(seq 1 150); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.1
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 1200); do curl -sf -o /dev/null "$1/-/ready" && return 0; sleep 0.1; done
  echo "promql: $1 never became ready" >&2; return 1
}

end=$(( ($(date +%s) / 3600 - 1) * 3600 ))
ref_port=$(free_port)
pids+=("$(bash "$conf/reference.sh" "$work/ref" "$ref_port" "$end")")
ref=http://127.0.0.1:$ref_port
wait_ready "$ref"

run() { # name base-url
  python3 "$conf/promql_diff.py" --end "$end" remote-write "$2/api/v1/write" >/dev/null
  for q in queries.promql compliance-queries.promql; do
    echo "### $1, $q"
    python3 "$conf/promql_diff.py" --end "$end" compare --ref "$ref" --sut "$2" --queries "$conf/$q" | tail -n 4
  done
}

if [ "$only" != cluster ]; then
  port=$(free_port)
  "$PHAROS_BIN" up --data-dir "$work/up" --listen "127.0.0.1:$port" >"$work/up.log" 2>&1 &
  pids+=("$!")
  wait_ready "http://127.0.0.1:$port"
  run "pharos up" "http://127.0.0.1:$port"
fi
if [ "$only" != up ]; then
  port=$(free_port)
  "$PHAROS_BIN" cluster up --dir "$work/cluster" --shards 3 --replication-factor 1 --listen "127.0.0.1:$port" >"$work/cluster.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 1 900); do [ -f "$work/cluster/cluster.json" ] && break; sleep 0.2; done
  wait_ready "http://127.0.0.1:$port"
  run "pharos cluster up --shards 3" "http://127.0.0.1:$port"
fi
