#!/usr/bin/env bash
# Installs the peers the tests run Pharos against, once, before the tests
# (scripts/test.sh calls this; tests never install anything themselves and
# fail naming this script when a peer is missing):
#   prometheus                 Prometheus 2.42: the conformance reference, the scrape comparison
#   victoria-metrics           VictoriaMetrics 1.79 and vmagent: benches/compare
#   prometheus-node-exporter   a real exporter for the scrape comparison
#   prometheus-alertmanager    the alert receiver of the rules work
#   chromium, chromium-driver  a browser for the UI tests
# The conformance tools (../shared/conformance/*.py) need only python3 and
# its standard library (installed by scripts/setup.sh), so no PyPI package.
# When every package is present this costs one dpkg-query.
set -euo pipefail

packages=(prometheus victoria-metrics prometheus-node-exporter prometheus-alertmanager chromium chromium-driver)

installed() { # package: whether dpkg has it installed
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "peers: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt="$sudo apt-get -o DPkg::Lock::Timeout=600 -y -qq"
# --no-install-recommends: the packages' daemons are started by the tests,
# not by the system; recommends would pull in much more.
if ! $apt install --no-install-recommends "${missing[@]}" >/dev/null; then
  $apt update
  $apt install --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${missing[@]}"; do
  installed "$p" || { echo "peers: $p did not install" >&2; exit 1; }
done
