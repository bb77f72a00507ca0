#!/usr/bin/env bash
# Create bench/.venv (if missing) and install the pinned Python reference stack used by
# bench/python/make_fixtures.py: prophet (ships Prophet's compiled Stan model and a minimal
# CmdStan), cmdstanpy, numpy, pandas. Idempotent: re-running only installs what is missing
# or at the wrong version.
set -euo pipefail

PROPHET_VERSION="1.5.0"     # newest on PyPI when written
CMDSTANPY_VERSION="1.3.2"   # prophet 1.5.0 requires cmdstanpy>=1.0.4; newest release
NUMPY_VERSION="2.4.6"
PANDAS_VERSION="3.1.1"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$(cd "$here/.." && pwd)/.venv"
python="${PYTHON:-python3}"

if [[ -x "$venv/bin/python" ]]; then
    echo "setup.sh: venv exists at $venv"
else
    echo "setup.sh: creating venv at $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
fi

want=(
    "prophet==$PROPHET_VERSION"
    "cmdstanpy==$CMDSTANPY_VERSION"
    "numpy==$NUMPY_VERSION"
    "pandas==$PANDAS_VERSION"
)

# Decide whether anything needs installing: compare installed versions to the pins.
missing=()
for spec in "${want[@]}"; do
    name="${spec%%==*}"
    version="${spec##*==}"
    have="$("$venv/bin/python" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)"
    if [[ "$have" != "$version" ]]; then
        missing+=("$spec")
        echo "setup.sh: $name: have '${have:-none}', want $version"
    else
        echo "setup.sh: $name $version already installed"
    fi
done

if (( ${#missing[@]} > 0 )); then
    echo "setup.sh: installing ${missing[*]} (with their dependencies)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${want[@]}"
else
    echo "setup.sh: nothing to install"
fi

"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import importlib.util
import pathlib
spec = importlib.util.find_spec("prophet")  # locate without importing (no plotly warning)
model_dir = pathlib.Path(spec.origin).parent / "stan_model"
print("setup.sh: installed:", ", ".join(f"{p} {md.version(p)}" for p in ("prophet", "cmdstanpy", "numpy", "pandas")))
print("setup.sh: Stan model:", model_dir / "prophet_model.bin")
print("setup.sh: CmdStan:", ", ".join(sorted(d.name for d in model_dir.glob("cmdstan-*"))))
PY
echo "setup.sh: done"
