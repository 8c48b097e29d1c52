#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD/fuzz for SECONDS each, starting from its seed corpus
# tests/fuzz/corpus/<target without fuzz_>/ (copied to BUILD/fuzz-work/<name>/ so the repo
# stays clean; new inputs and crash artifacts land there). Prints executions and crashes
# per target and exits non-zero on any crash, leak, timeout or out-of-memory.
# Usage: tests/fuzz/run.sh BUILD SECONDS      (make fuzz calls it)
set -u
build=${1:?usage: tests/fuzz/run.sh BUILD SECONDS}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
shopt -s nullglob
targets=("$build"/fuzz/fuzz_*)
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets in $build/fuzz (build them with make fuzz)"
    exit 1
fi
failed=()
for t in "${targets[@]}"; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    target=$(basename "$t")
    name=${target#fuzz_}
    work="$build/fuzz-work/$name"
    rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    seeds=("$root/tests/fuzz/corpus/$name"/*)
    [ ${#seeds[@]} -gt 0 ] && cp "${seeds[@]}" "$work/corpus/"
    echo "=== $target: ${#seeds[@]} seeds, $seconds s"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: bounded memory is a
    # requirement of every parser, so 2 GiB is already a failure.
    "$t" -max_len=65536 -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" \
        >"$work/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/log" | tail -n1)
    artifacts=("$work"/artifacts/*)
    corpus=("$work"/corpus/*)
    echo "  $target: ${execs:-?} executions, corpus ${#seeds[@]} -> ${#corpus[@]} inputs," \
         "${#artifacts[@]} crashes (exit $rc)"
    if [ "$rc" -ne 0 ] || [ ${#artifacts[@]} -gt 0 ] || [ -z "$execs" ]; then
        failed+=("$target")
        grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|Test unit written' "$work/log" | head -n 20
        for a in "${artifacts[@]}"; do echo "  reproduce: $t $a"; done
        echo "  full log: $work/log"
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s), no crashes"
