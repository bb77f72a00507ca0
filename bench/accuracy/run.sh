#!/usr/bin/env bash
# Forecast accuracy of the model profiles on Kaggle's Rossmann train set: backtests at fixed
# origins, scored with Kaggle's RMSPE and the 95% interval's coverage. See BENCHMARKS.md.
#
# Usage: bench/accuracy/run.sh [--profiles reference,default] [--sets tune,test]
#                              [--name NAME] [-- storecast flags, e.g. --set KEY=VALUE]
#
# Origin sets (the last day each model sees; every origin a Friday):
#   tune-7   10 weekly origins 2015-01-09 .. 2015-03-13, 7 days ahead    (settings chosen here)
#   tune-42  2015-01-09, 2015-01-23, 2015-02-06, 42 days ahead
#   spring-7 13 weekly origins 2014-03-21 .. 2014-06-13, 7 days ahead    (a year before the test:
#   spring-42 2014-03-28, 2014-04-18, 2014-05-09, 42 days ahead           the same holidays)
#   test-7   13 weekly origins 2015-03-20 .. 2015-06-12, 7 days ahead    (the last 3 months,
#   test-42  2015-03-27, 2015-04-17, 2015-05-08, 42 days ahead            reported, not tuned on)
# --sets takes tune (tune + spring), test, or any of the names above.
#
# Data: $STORECAST_ROSSMANN_DIR/train.csv.gz, else ../shared/datasets/rossmann/train.csv.gz
# next to the repository. Forecast files and report.md go to $STORECAST_ACCURACY_OUT, else
# target/bench-accuracy.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

# shellcheck source=bench/rossmann.sh
source "$root/bench/rossmann.sh"
OUT="${STORECAST_ACCURACY_OUT:-$root/target/bench-accuracy}"

profiles="reference,default"
sets="tune,test"
name="run"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --profiles) profiles="$2"; shift 2 ;;
        --sets) sets="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "run.sh: unknown argument $1 (see the usage at the top of $0)" >&2; exit 2 ;;
    esac
done

weekly() { # weekly() FIRST COUNT: COUNT Fridays from FIRST, comma-separated
    local first="$1" count="$2" out=() i
    for ((i = 0; i < count; i++)); do out+=("$(date -d "$first + $((7 * i)) days" +%F)"); done
    local IFS=,; echo "${out[*]}"
}
declare -A ORIGINS=(
    [tune-7]="$(weekly 2015-01-09 10)"
    [tune-42]="2015-01-09,2015-01-23,2015-02-06"
    [spring-7]="$(weekly 2014-03-21 13)"
    [spring-42]="2014-03-28,2014-04-18,2014-05-09"
    [test-7]="$(weekly 2015-03-20 13)"
    [test-42]="2015-03-27,2015-04-17,2015-05-08"
)
chosen=()
IFS=, read -r -a asked <<< "$sets"
for set in "${asked[@]}"; do
    case "$set" in
        tune) chosen+=(tune-7 tune-42 spring-7 spring-42) ;;
        test) chosen+=(test-7 test-42) ;;
        *)
            [[ -n "${ORIGINS[$set]:-}" ]] || { echo "run.sh: unknown origin set $set" >&2; exit 2; }
            chosen+=("$set")
            ;;
    esac
done

cargo build --release --quiet
mkdir -p "$OUT"
report="$OUT/report.md"
log="$OUT/$name.log"
: > "$log"
{
    echo "# Accuracy: $name ($(date -u +%F), $(nproc) cores)"
    echo
    echo "| profile | origins | horizon | RMSPE | 95% coverage | forecast days | wall |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
} > "$report"
IFS=, read -r -a profile_list <<< "$profiles"
for profile in "${profile_list[@]}"; do
    for set in "${chosen[@]}"; do
        horizon="${set##*-}"
        csv="$OUT/$name.$profile.$set.csv"
        # Progress and warnings go to the log; a failure prints its end.
        if ! printed="$(target/release/storecast --log-level warn "$@" backtest --data "$DATA" \
            --origin "${ORIGINS[$set]}" --horizon "$horizon" --profile "$profile" --out "$csv" \
            2>> "$log")"; then
            tail -n 20 "$log" >&2
            exit 1
        fi
        summary="$(grep '^all origins' <<< "$printed")"
        written="$(grep '^backtest of' <<< "$printed")"
        rmspe="$(sed -E 's/.*RMSPE ([0-9.]+).*/\1/' <<< "$summary")"
        coverage="$(sed -E 's/.*coverage ([0-9.]+).*/\1/' <<< "$summary")"
        days="$(sed -E 's/.*: ([0-9,]+) forecast days.*/\1/' <<< "$written")"
        wall="$(sed -E 's/.* in ([0-9.]+ s).*/\1/' <<< "$written")"
        count="$(tr ',' '\n' <<< "${ORIGINS[$set]}" | wc -l)"
        echo "| $profile | $set ($count) | $horizon | $rmspe | $coverage | $days | $wall |" | tee -a "$report"
    done
done
echo
echo "run.sh: report at $report"
