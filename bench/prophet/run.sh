#!/usr/bin/env bash
# Prophet benchmark, Python vs Rust, on the last 120 open days of all 1,115 Rossmann stores.
# Usage: bench/prophet/run.sh [--stores N] [--configs yearly,weekly,default] [--skip-cv]
# The flags go to both sides unchanged. Data: $STORECAST_ROSSMANN_DIR/train.csv.gz, else
# ../shared/datasets/rossmann/train.csv.gz next to the repository. Results and report.md go to
# $STORECAST_PROPHET_OUT, else target/bench-prophet. See bench/prophet/README.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

# shellcheck source=bench/rossmann.sh
source "$root/bench/rossmann.sh"
OUT="${STORECAST_PROPHET_OUT:-$root/target/bench-prophet}"
mkdir -p "$OUT"
# Only this benchmark's own result files: a failed step must not leave an older run's
# results to be compared with new ones.
for side in python rust; do
    rm -f "$OUT/${side}_forecasts.csv" "$OUT/${side}_timings.csv" "$OUT/${side}_summary.json"
done
rm -f "$OUT/report.md"

started=$SECONDS
step() { echo; echo "==> $* ($(( SECONDS - started )) s since start)"; }

step "Python venv (bench/python/setup.sh)"
"$root/bench/python/setup.sh"
python="$root/bench/.venv/bin/python"

step "Rust side: cargo bench --bench prophet"
cargo bench --bench prophet -- --data "$DATA" --out "$OUT" "$@"

step "Python side: bench/prophet/python_side.py"
"$python" "$here/python_side.py" --data "$DATA" --out "$OUT" "$@"

step "Comparison: bench/prophet/compare.py"
"$python" "$here/compare.py" --dir "$OUT"

echo
echo "run.sh: done in $(( SECONDS - started )) s; report at $OUT/report.md"
