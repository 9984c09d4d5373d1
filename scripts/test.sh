#!/usr/bin/env bash
# The one gate, for developers and CI alike: formatting, clippy on every
# target with warnings as errors, then every test. The build cache lives
# outside the clone so repeated runs are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pharos/target}"
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
