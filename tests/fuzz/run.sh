#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 30 s each; first argument overrides).
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on a stable toolchain.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET="${1:-30}"
export RUSTC_BOOTSTRAP=1
for target in request stream config budget; do
    mkdir -p "tests/fuzz/corpus/$target"
    echo "== $target (${SECONDS_PER_TARGET}s)"
    cargo fuzz run --fuzz-dir tests/fuzz -s none --debug-assertions "$target" \
        "tests/fuzz/corpus/$target" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048
done
