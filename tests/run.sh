#!/usr/bin/env bash
# Runs every test program in BUILD/tests and adds up their "N passed, M failed, K skipped"
# lines. Usage: tests/run.sh [--cpu-only|--gpu] BUILD
set -u
mode=$1; build=$2
total_p=0; total_f=0; total_s=0; broken=()
# model tests read the references made by tests/models/make-refs.sh
export CDZ_HTDEMUCS_TINY_WEIGHTS=${CDZ_HTDEMUCS_TINY_WEIGHTS:-$build/ref/htdemucs-tiny.safetensors}
export CDZ_HTDEMUCS_TINY_REF=${CDZ_HTDEMUCS_TINY_REF:-$build/ref/htdemucs-tiny.ref.safetensors}
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    echo "=== $name"
    out=$("$t" "$mode" 2>&1); rc=$?
    echo "$out" | grep -vE '^  ok ' | grep -vE '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$'
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n1)
    if [ -z "$line" ]; then
        echo "  $name exited with $rc without a summary line: counted as 1 failure"
        broken+=("$name"); total_f=$((total_f + 1)); continue
    fi
    read -r p _ f _ s _ <<<"$(echo "$line" | tr -d ',')"
    echo "  $name: $line"
    total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "  $name exited with $rc: counted as 1 failure"; total_f=$((total_f + 1)); broken+=("$name")
    fi
done
# Python-side tests (converters, reference makers): CPU suite only. They count their checks
# as skipped, with the reason, when torch or demucs is missing (weights-tools/setup-python.sh).
if [ "$mode" = "--cpu-only" ]; then
    for py in tests/models/test_*.py; do
        [ -f "$py" ] || continue
        name=$(basename "$py")
        echo "=== $name"
        out=$(python3 "$py" 2>&1); rc=$?
        echo "$out" | grep -E 'FAIL|Traceback' | head -20
        line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n1)
        if [ -z "$line" ]; then
            echo "$out" | tail -20
            echo "  $name exited with $rc without a summary line: counted as 1 failure"
            broken+=("$name"); total_f=$((total_f + 1)); continue
        fi
        read -r p _ f _ s _ <<<"$(echo "$line" | tr -d ',')"
        echo "  $name: $line"
        total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + s))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            echo "  $name exited with $rc: counted as 1 failure"; total_f=$((total_f + 1)); broken+=("$name")
        fi
    done
fi
echo
[ ${#broken[@]} -gt 0 ] && echo "broken programs: ${broken[*]}"
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]
