#!/usr/bin/env bash
# End-to-end ingest benchmark: `pharos up` against Prometheus 2.42 on this
# machine, in one run, with the same remote_write workload from
# ../shared/conformance/ingest_bench.py. Reports, for each system:
#   CPU seconds per million samples, bytes per sample on disk (Pharos after
#   POST /api/v1/admin/flush; Prometheus as it stands, WAL plus head),
#   resident memory per active series, and the time from start to /-/ready
#   after a clean stop and after kill -9.
#
#   benches/ingest.sh [--series N] [--points P] [--concurrency C] [--only pharos|prometheus]
#                     [--pharos 'NAME|BINARY|EXTRA ARGS' ...]
#
# Each --pharos adds one Pharos to the run (e.g. the binary before and after a
# change, or one binary with and without --no-wal-sync); without any, Pharos
# is built in release mode (CARGO_TARGET_DIR, default
# $HOME/.cache/pharos/target-release) and run as `pharos`. --concurrency is
# the number of concurrent remote_write senders (ingest_bench.py's default
# when not given). Installs Prometheus (Debian package) if missing.
set -euo pipefail
series=20000 points=240 only="" concurrency="" variants=()
usage="usage: $0 [--series N] [--points P] [--concurrency C] [--only pharos|prometheus] [--pharos 'NAME|BINARY|ARGS' ...]"
while [ $# -gt 0 ]; do
  case "$1" in
    --series) series=$2; shift 2 ;;
    --points) points=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --pharos) variants+=("$2"); shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
conf=${CONFORMANCE_DIR:-$root/../shared/conformance}
[ -f "$conf/ingest_bench.py" ] || { echo "ingest: $conf/ingest_bench.py not found (set CONFORMANCE_DIR)" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pharos/target-release}
if ! command -v prometheus >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
fi
if [ ${#variants[@]} -eq 0 ] && [ "$only" != prometheus ]; then
  (cd "$root" && cargo build --release --bin pharos >&2)
  variants=("pharos|$CARGO_TARGET_DIR/release/pharos|")
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
printf 'global:\n  scrape_interval: 15s\nscrape_configs: []\n' > "$work/empty.yml"

wait_ready() { # url -> seconds until it answers 200
  local t0 t1
  t0=$(date +%s.%N)
  for _ in $(seq 1 6000); do
    if curl -sf -o /dev/null "$1/-/ready"; then
      t1=$(date +%s.%N); awk "BEGIN { print $t1 - $t0 }"; return 0
    fi
    sleep 0.05
  done
  echo "ingest: $1 never became ready" >&2; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

pharos="" pharos_args=""
start_pharos() {
  # shellcheck disable=SC2086 # the variant's extra arguments are words
  "$pharos" up --data-dir "$work/pharos" --listen 127.0.0.1:19290 --config "$work/empty.yml" $pharos_args \
    >>"$work/pharos.log" 2>&1 &
  pid=$!; pids+=("$pid")
}
start_prometheus() {
  prometheus --config.file="$work/empty.yml" --storage.tsdb.path="$work/prometheus" \
    --web.listen-address=127.0.0.1:19291 --web.enable-remote-write-receiver \
    >>"$work/prometheus.log" 2>&1 &
  pid=$!; pids+=("$pid")
}

results=()
run() { # name url flush-url start-fn data-dir
  local name=$1 url=$2 flush=$3 start=$4 dir=$5 out rss ready_term ready_kill
  $start; wait_ready "$url" >/dev/null
  echo "ingest: $name: $series series x $points points" >&2
  local args=("$conf/ingest_bench.py" "$url/api/v1/write" --pid "$pid" --series "$series" --points "$points" --data-dir "$dir")
  [ -n "$flush" ] && args+=(--flush-url "$url$flush")
  [ -n "$concurrency" ] && args+=(--concurrency "$concurrency")
  out=$(python3 "${args[@]}")
  echo "$out" >&2
  rss=$(rss_kib "$pid")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  $start; ready_term=$(wait_ready "$url")
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  $start; ready_kill=$(wait_ready "$url")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local cpu bps
  cpu=$(echo "$out" | sed -n 's/.*cpu-s per 1M samples \([0-9.]*\).*/\1/p')
  bps=$(echo "$out" | sed -n 's/.*bytes\/sample \([0-9.]*\).*/\1/p')
  results+=("| $name | $cpu | $bps | $((rss * 1024 / series)) | $(printf %.1f "$ready_term") | $(printf %.1f "$ready_kill") |")
}

if [ "$only" != prometheus ]; then
  for v in "${variants[@]}"; do
    IFS='|' read -r name pharos pharos_args <<<"$v"
    [ -x "$pharos" ] || { echo "ingest: $pharos is not an executable (--pharos '$v')" >&2; exit 2; }
    rm -rf "$work/pharos"
    run "$name" http://127.0.0.1:19290 /api/v1/admin/flush start_pharos "$work/pharos"
  done
fi
[ "$only" = pharos ] || run "prometheus $(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([^ ]*\).*/\1/p')" \
  http://127.0.0.1:19291 "" start_prometheus "$work/prometheus"

echo
echo "$series series x $points points ($((series * points)) samples), ${concurrency:-default} senders, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| system | CPU s / 1M samples | bytes / sample on disk | RSS bytes / series | ready after stop (s) | ready after kill -9 (s) |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
