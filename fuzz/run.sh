#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for N executions each and
# prints, per target: executions, coverage (libFuzzer's `cov` edges and
# `ft` features), corpus size, execs/s and findings.
#
#   fuzz/run.sh N [TARGET...]        e.g. fuzz/run.sh 10000000
#   MAX_TIME=S fuzz/run.sh N ...     also stop each target after S seconds
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). Builds on the stable
# toolchain with RUSTC_BOOTSTRAP=1 and `--sanitizer none` (see README,
# "Reliability"). Seeds are read from fuzz/seeds/<target>; what the fuzzer
# learns goes to fuzz/corpus/<target> (not committed), crashes to
# fuzz/artifacts/<target>. Exit status 1 when any target found something.
set -uo pipefail
cd "$(dirname "$0")"
runs=${1:?usage: fuzz/run.sh N [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
flags=(--sanitizer none -O --debug-assertions)
cargo fuzz build "${flags[@]}" || exit 2
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
mkdir -p logs
extra=()
[ -n "${MAX_TIME:-}" ] && extra+=(-max_total_time="$MAX_TIME")
found=0
printf '%-22s %12s %8s %8s %6s %9s %s\n' target executions cov ft corpus execs/s findings
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    before=$(ls "artifacts/$target" | wc -l)
    start=$(date +%s)
    # -timeout: an input running longer than 30 s of wall time is a hang
    # (finding). Generous because the machine may be shared: inside, every
    # input also has a 5 s limit on its async work (harness TIME_LIMIT).
    cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -runs="$runs" -timeout=30 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 "${extra[@]}" >"logs/$target.log" 2>&1
    status=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$' | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "logs/$target.log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*')
    new=$(( $(ls "artifacts/$target" | wc -l) - before ))
    if [ "$status" -ne 0 ] || [ "$new" -gt 0 ]; then
        found=1
        findings="$new (exit $status, see fuzz/logs/$target.log)"
    else
        findings=0
    fi
    printf '%-22s %12s %8s %8s %6s %9s %s\n' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
        "${corp:-?}" "$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))" "$findings"
done
exit "$found"
