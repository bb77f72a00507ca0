# Sourced by the benchmark scripts (after they set `root`, the repository): sets DATA to
# Kaggle's train set, $STORECAST_ROSSMANN_DIR/train.csv.gz if the variable is set, else
# ../shared/datasets/rossmann/train.csv.gz next to the repository; exits when it is missing.
if [[ -n "${STORECAST_ROSSMANN_DIR:-}" ]]; then
    DATA="$STORECAST_ROSSMANN_DIR/train.csv.gz"
else
    DATA="$root/../shared/datasets/rossmann/train.csv.gz"
fi
if [[ ! -f "$DATA" ]]; then
    echo "$(basename "$0"): no Rossmann data at $DATA (set STORECAST_ROSSMANN_DIR to the folder holding train.csv.gz)" >&2
    exit 1
fi
