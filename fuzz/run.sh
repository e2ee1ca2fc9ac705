#!/usr/bin/env bash
# Runs every fuzz target for a fixed time (default 60 s each) over its corpus in
# fuzz/corpus/<target>/ and exits non-zero when any target crashes (a panic, a failed
# invariant, a timeout or running out of memory). Crash inputs are written to
# fuzz/artifacts/<target>/; add them to the corpus once fixed.
#
#   fuzz/run.sh [seconds-per-target] [target...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`).
# Builds without a sanitizer (`-s none`): the code is safe Rust, so the fuzzers look
# for panics and broken invariants, and the build stays quick. New inputs the fuzzer
# finds go to fuzz/target/corpus-new/<target>/ (not committed); run
# `cargo +nightly fuzz cmin -s none <target>` to fold useful ones into the corpus.
set -euo pipefail

seconds="${1:-60}"
shift || true
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export CARGO_TARGET_DIR="$here/target"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build -s none

failed=()
for target in "${targets[@]}"; do
    scratch="$here/target/corpus-new/$target"
    mkdir -p "$scratch" "$here/corpus/$target"
    echo "== $target: ${seconds} s"
    log="$here/target/fuzz-$target.log"
    # -rss_limit_mb: a 10 MB record is fine, runaway allocation is not.
    if cargo +nightly fuzz run -s none "$target" "$scratch" "$here/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done)' "$log" | tr '\n' ' '
        echo
    else
        echo "CRASH in $target (log: $log):" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -20 "$log" >&2
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz targets with crashes: ${failed[*]}" >&2
    exit 1
fi
echo "all fuzz targets ran ${seconds} s each without a crash: ${targets[*]}"
