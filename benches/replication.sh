#!/usr/bin/env bash
# Replication overhead: CPU seconds per million remote-written samples of a
# whole `pharos cluster up` (every gateway, distributor, querier, scraper and
# ingester process listed in DIR/cluster.json) at --replication-factor 1
# and 3, same workload from ../shared/conformance/ingest_bench.py, same run.
#
#   benches/replication.sh [--series N] [--points P] [--shards S] [--bin PATH]
#
# Without --bin, builds the release binary (CARGO_TARGET_DIR, default
# $HOME/.cache/pharos/target-release). The scrapers get no scrape jobs.
set -euo pipefail
series=20000 points=60 shards=1 bin=""
while [ $# -gt 0 ]; do
  case "$1" in
    --series) series=$2; shift 2 ;;
    --points) points=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    *) echo "usage: $0 [--series N] [--points P] [--shards S] [--bin PATH]" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
conf=${CONFORMANCE_DIR:-$root/../shared/conformance}
[ -f "$conf/ingest_bench.py" ] || { echo "replication: $conf/ingest_bench.py not found (set CONFORMANCE_DIR)" >&2; exit 1; }
if [ -z "$bin" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pharos/target-release}
  (cd "$root" && cargo build --release --bin pharos >&2)
  bin=$CARGO_TARGET_DIR/release/pharos
fi

work=$(mktemp -d)
sup=""
cleanup() {
  if [ -n "$sup" ]; then kill -TERM "$sup" 2>/dev/null || true; wait "$sup" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$work/empty.yml"

results=()
run() { # replication factor
  local rf=$1 dir="$work/rf$1" addr=127.0.0.1:19390 out pids=() cpu
  mkdir -p "$dir"
  "$bin" cluster up --dir "$dir" --shards "$shards" --replication-factor "$rf" --listen "$addr" \
    --config "$work/empty.yml" >"$work/sup-rf$rf.log" 2>&1 &
  sup=$!
  for _ in $(seq 1 1200); do [ -f "$dir/cluster.json" ] && break; sleep 0.1; done
  [ -f "$dir/cluster.json" ] || { echo "replication: cluster.json never written" >&2; cat "$work/sup-rf$rf.log" >&2; exit 1; }
  # Every shard has a leader before the clock starts.
  for _ in $(seq 1 600); do
    curl -sf "http://$addr/api/v1/status/cluster" | python3 -c '
import json, sys
s = json.load(sys.stdin)["data"]["shards"]
sys.exit(0 if s and all(x.get("leader") is not None for x in s) else 1)' && break
    sleep 0.1
  done
  mapfile -t pids < <(python3 -c 'import json, sys; [print(p["pid"]) for p in json.load(open(sys.argv[1]))["processes"]]' "$dir/cluster.json")
  local args=()
  for p in "${pids[@]}"; do args+=(--pid "$p"); done
  echo "replication: RF=$rf, $shards shard(s), ${#pids[@]} processes, $series series x $points points" >&2
  out=$(python3 "$conf/ingest_bench.py" "http://$addr/api/v1/write" "${args[@]}" --series "$series" --points "$points")
  echo "$out" >&2
  cpu=$(echo "$out" | sed -n 's/.*cpu-s per 1M samples \([0-9.]*\).*/\1/p')
  results+=("$rf|$cpu|$(echo "$out" | sed -n 's/.*wall \([0-9.]*\)s.*/\1/p')|$(echo "$out" | sed -n 's/.*errors \([0-9]*\).*/\1/p')")
  kill -TERM "$sup"; wait "$sup" 2>/dev/null || true; sup=""
}

run 1
run 3

echo
echo "$series series x $points points ($((series * points)) samples), $shards shard(s), $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| replication factor | CPU s / 1M samples (all processes) | wall (s) | errors | vs RF=1 |"
echo "|---|---|---|---|---|"
base=${results[0]#*|}; base=${base%%|*}
for r in "${results[@]}"; do
  IFS='|' read -r rf cpu wall errs <<<"$r"
  echo "| $rf | $cpu | $wall | $errs | $(awk "BEGIN { printf \"%.2fx\", $cpu / $base }") |"
done
