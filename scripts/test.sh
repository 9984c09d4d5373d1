#!/usr/bin/env bash
# The one gate, for developers and CI alike: formatting, clippy on every
# target with warnings as errors, then every test. The build cache lives
# outside the clone so repeated runs are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/peers.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pharos/target}"
export CARGO_TERM_COLOR=never

# RocksDB's bundled C++ build is the slow part, and cargo would run it once
# for clippy and once more for the tests. Build it once per RocksDB version,
# keep the static library beside the cache, and link that from then on.
ver=$(grep -A1 '^name = "librocksdb-sys"$' Cargo.lock | sed -n 's/^version = "\(.*\)"$/\1/p')
rocks="$HOME/.cache/pharos/rocksdb-$ver"
if [ ! -f "$rocks/librocksdb.a" ]; then
  echo "test: building the bundled RocksDB $ver once (about 10-15 minutes on 2 cores)" >&2
  env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC cargo build -p pharos-tsdb
  lib=$( (ls -t "$CARGO_TARGET_DIR"/debug/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null || true) | head -n 1)
  [ -n "$lib" ] || { echo "test: the RocksDB build left no librocksdb.a" >&2; exit 1; }
  mkdir -p "$rocks"
  cp "$lib" "$rocks/librocksdb.a.tmp" && mv "$rocks/librocksdb.a.tmp" "$rocks/librocksdb.a"
fi
export ROCKSDB_LIB_DIR="$rocks" ROCKSDB_STATIC=1

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
