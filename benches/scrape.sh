#!/usr/bin/env bash
# Scrape-path cost: CPU seconds per million scraped samples of the process
# that scrapes (fetch, parse, relabel, batch, send), side by side:
#   pharos    the `pharos scraper` process of `pharos cluster up --shards 1
#             --scrapers 1` (its ingester, querier and gateway not counted)
#   vmagent   vmagent -promscrape.config, remote-writing to a VictoriaMetrics
#             sink (the sink not counted)
#   prometheus  Prometheus in agent mode (--enable-feature=agent: scrape,
#             WAL, remote_write; no TSDB), writing to the same sink (not
#             counted)
# all scraping the same `pharos bench targets` fleet on loopback.
#
#   benches/scrape.sh [--targets N] [--series-per-target S] [--interval D]
#                     [--duration SECONDS] [--only pharos,vmagent,prometheus]
#
# Samples are counted by the targets themselves (`/-/stats`: scrapes served
# x series per target) over the measured window, which starts once every
# target has been scraped. Installs `prometheus` and `victoria-metrics`
# (Debian) if missing; builds the release binary into CARGO_TARGET_DIR
# (default $HOME/.cache/pharos/target-release) unless PHAROS_BIN names one
# (then PHAROS_LABEL names its commit in the table).
set -euo pipefail
targets=50 per_target=1000 interval=1s duration=60 only=pharos,vmagent,prometheus
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) targets=$2; shift 2 ;;
    --series-per-target) per_target=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--targets N] [--series-per-target S] [--interval D] [--duration SECONDS] [--only LIST]" >&2
       exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "scrape: $*" >&2; }
wants() { case ",$only," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

install_missing() { # binary package
  command -v "$1" >/dev/null && return 0
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  for _ in 1 2 3 4 5 6; do
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$2" >/dev/null 2>&1 && return 0
    sleep 10 # another dpkg run holds the lock
  done
  command -v "$1" >/dev/null
}
install_missing prometheus prometheus
install_missing vmagent victoria-metrics
if [ -z "${PHAROS_BIN:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pharos/target-release}
  (cd "$root" && cargo build --release --bin pharos >&2)
  PHAROS_BIN=$CARGO_TARGET_DIR/release/pharos
fi
pharos=$PHAROS_BIN

work=$(mktemp -d)
roots=()
cleanup() {
  for p in "${roots[@]}"; do kill -0 "$p" 2>/dev/null && stop "$p"; done
  rm -rf "$work"
}
trap cleanup EXIT

tree_pids() { # pid -> it and its descendants
  local kids; echo "$1"
  kids=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
  for k in $kids; do tree_pids "$k"; done
}
cpu_s() { # pid -> utime + stime seconds
  local tick; tick=$(getconf CLK_TCK)
  sed 's/.*) //' "/proc/$1/stat" | awk -v t="$tick" '{printf "%.2f\n", ($12 + $13) / t}'
}
stat_of() { # key -> value from the targets' /-/stats
  curl -sf "http://127.0.0.1:$TGT/-/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
wait_http() { # url seconds
  for _ in $(seq 1 $(($2 * 10))); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  log "$1 not ready after $2 s"; return 1
}
stop() { # pid: SIGTERM its tree, then SIGKILL what is left
  local left; left=$(tree_pids "$1")
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  for q in $left; do kill -9 "$q" 2>/dev/null || true; done
  wait "$1" 2>/dev/null || true
}

TGT=19600 GW=19590 SINK=19591 AGENT=19592 PROM=19593
"$pharos" bench targets --count "$targets" --series-per-target "$per_target" --listen-base 127.0.0.1:$TGT \
  --scrape-interval "$interval" --job scrape_bench --config-out "$work/targets.yml" --progress 1h \
  2>"$work/targets.log" &
roots+=("$!")
for _ in $(seq 1 100); do [ -s "$work/targets.yml" ] && break; sleep 0.1; done
[ -s "$work/targets.yml" ] || { log "pharos bench targets did not start"; cat "$work/targets.log" >&2; exit 1; }

sink_pid=""
start_sink() { # VictoriaMetrics, the remote_write sink of vmagent and Prometheus
  [ -n "$sink_pid" ] && return 0
  victoria-metrics -storageDataPath="$work/vm" -httpListenAddr=127.0.0.1:$SINK -retentionPeriod=100y \
    >"$work/vm.log" 2>&1 &
  sink_pid=$!; roots+=("$sink_pid")
  wait_http "http://127.0.0.1:$SINK/health" 60
}

# Each start_NAME sets pid (the measured process) and top (what to stop).
start_pharos() {
  "$pharos" cluster up --dir "$work/cluster" --listen 127.0.0.1:$GW --shards 1 --scrapers 1 \
    --config "$work/targets.yml" >"$work/cluster.log" 2>&1 &
  top=$!; roots+=("$top"); pid=""
  for _ in $(seq 1 600); do
    pid=$(pgrep -P "$top" -f ' scraper --id scraper-0' || true)
    [ -n "$pid" ] && return 0
    sleep 0.1
  done
  log "no pharos scraper process"; tail -20 "$work/cluster.log" >&2; return 1
}
start_vmagent() {
  start_sink
  vmagent -promscrape.config="$work/targets.yml" -remoteWrite.url="http://127.0.0.1:$SINK/api/v1/write" \
    -httpListenAddr=127.0.0.1:$AGENT -remoteWrite.tmpDataPath="$work/vmagent" >"$work/vmagent.log" 2>&1 &
  pid=$!; top=$pid; roots+=("$pid")
}
start_prometheus() {
  start_sink
  { cat "$work/targets.yml"; printf 'remote_write:\n  - url: http://127.0.0.1:%s/api/v1/write\n' "$SINK"; } \
    >"$work/prometheus.yml"
  prometheus --enable-feature=agent --config.file="$work/prometheus.yml" --storage.agent.path="$work/agent" \
    --web.listen-address=127.0.0.1:$PROM >"$work/prometheus.log" 2>&1 &
  pid=$!; top=$pid; roots+=("$pid")
}
label_of() {
  case "$1" in
    pharos) echo "pharos scraper (${PHAROS_LABEL:-$(cd "$root" && git rev-parse --short HEAD 2>/dev/null)})" ;;
    vmagent) echo "vmagent $(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null | sed 's/[+~].*//')" ;;
    prometheus) echo "prometheus $(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([^ +~]*\).*/\1/p') (agent mode)" ;;
  esac
}

rows=()
for sys in pharos vmagent prometheus; do
  wants "$sys" || continue
  name=$(label_of "$sys")
  "start_$sys"
  # The window starts when every target has been scraped at least once
  # since this system started (Prometheus applies its targets after ~5 s).
  base=$(stat_of scrapes)
  for _ in $(seq 1 300); do
    sleep 1
    now=$(stat_of scrapes)
    [ $((now - base)) -ge $((2 * targets)) ] && break
  done
  sleep 2
  s0=$(stat_of samples); c0=$(cpu_s "$pid"); t0=$(date +%s.%N)
  log "$name: $targets targets x $per_target series every $interval for $duration s"
  sleep "$duration"
  s1=$(stat_of samples); c1=$(cpu_s "$pid"); t1=$(date +%s.%N)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  stop "$top"
  rows+=("$(awk -v n="$name" -v c="$(awk -v a="$c1" -v b="$c0" 'BEGIN {print a - b}')" -v s="$((s1 - s0))" \
    -v t="$(awk -v a="$t1" -v b="$t0" 'BEGIN {print a - b}')" -v r="$rss" 'BEGIN {
      printf "| %s | %.3f | %d | %.0f | %.1f | %.0f |", n, (s > 0 ? c / s * 1e6 : 0), s, s / t, c, r / 1024 }')")
  sleep 2
done

echo
echo "$targets targets x $per_target series every $interval, ${duration} s window, $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "| scraper | CPU s / 1M samples | samples scraped | samples/s | CPU s | RSS MiB |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
