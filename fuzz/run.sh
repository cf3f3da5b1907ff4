#!/usr/bin/env bash
# Runs each fuzz target in turn for SECONDS, then prints per target the executions and
# whether it crashed. Exits non-zero if any target crashed (or failed to run).
#
#   fuzz/run.sh SECONDS [TARGET...]     (default: every target of fuzz/Cargo.toml)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz --locked`). Everything
# runs at the lowest priority (nice 19), one target at a time, each as one libFuzzer process
# with one thread (libFuzzer's default: no -jobs/-workers/-fork). Built with debug assertions
# (integer overflow panics) and AddressSanitizer. New inputs go into fuzz/corpus/<target>/
# (minimize them before committing: `cargo +nightly fuzz cmin <target> corpus/<target> --
# -set_cover_merge=1 -use_counters=0`, which keeps every edge reached); a crash's input goes to
# fuzz/artifacts/<target>/ and becomes a regression test in fuzz/regressions/<target>/.
#
# Limits that make a finding: a panic, a sanitizer report, an input running over 10 s, a single
# allocation over 256 MiB, or more than 2 GiB resident.
set -uo pipefail

if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
seconds=$1
shift
cd "$(dirname "$0")"

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

logs=$(mktemp -d "${TMPDIR:-/tmp}/cohort-fuzz.XXXXXX")
echo "building ${targets[*]} (logs in $logs)"
if ! nice -n 19 cargo +nightly fuzz build --debug-assertions >"$logs/build.log" 2>&1; then
    tail -n 30 "$logs/build.log" >&2
    echo "build failed" >&2
    exit 1
fi

failed=0
summary=()
for target in "${targets[@]}"; do
    log="$logs/$target.log"
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    nice -n 19 cargo +nightly fuzz run --debug-assertions "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -malloc_limit_mb=256 -rss_limit_mb=2048 >"$log" 2>&1
    rc=$?
    # libFuzzer's final statistics, or its "Done N runs" line (or, after a crash, the last
    # status line's count).
    runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
    [[ -z $runs ]] && runs=$(grep -oE '^Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -n 1)
    [[ -z $runs ]] && runs=$(grep -oE '^#[0-9]+' "$log" | tr -d '#' | tail -n 1)
    corpus=$(find "corpus/$target" -type f | wc -l)
    if [[ $rc -eq 0 ]]; then
        result="ok"
    else
        failed=1
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -n 1 | cut -d' ' -f5)
        result="CRASHED (exit $rc) ${artifact:-no artifact}; see $log"
        grep -m 5 -E "panicked|ERROR: (libFuzzer|AddressSanitizer)|SUMMARY" "$log" | sed 's/^/    /'
    fi
    summary+=("$(printf '%-16s %12s execs  %6s corpus files  %s' "$target" "${runs:-?}" "$corpus" "$result")")
done

echo
echo "fuzzed ${seconds}s per target:"
printf '%s\n' "${summary[@]}"
exit $failed
