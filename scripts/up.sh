#!/usr/bin/env bash
# Sets up what is missing, builds the release binary and runs `pharos up`
# (arguments are passed on, e.g. --listen 127.0.0.1:9091).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release --bin pharos -- up "$@"
