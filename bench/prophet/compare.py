#!/usr/bin/env python3
"""Compare the Python and Rust sides of the Prophet benchmark.

Reads DIR/python_{forecasts,timings}.csv, DIR/python_summary.json and the same three rust_*
files, prints a Markdown report and writes it to DIR/report.md. Standard library only.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

SIDES = ("python", "rust")
FORECAST_COLUMNS = ["store", "config", "date", "yhat", "yhat_lower", "yhat_upper"]
TIMING_COLUMNS = ["store", "config", "fit_ms", "predict_ms"]
# Keys the report's numbers need (missing -> error) and descriptive keys (missing -> noted).
SUMMARY_KEYS = ["stores", "cv_total_seconds", "cv_workers", "cv_metrics_mean"]
SUMMARY_INFO_KEYS = ["side", "prophet_version"]
METRICS = ("rmse", "mape", "mae", "median_ae")
AGREEMENT_THRESHOLD = 0.01


class InputError(Exception):
    pass


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def read_csv(path: Path, columns: list[str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(f"{path}: missing column(s) {', '.join(missing)} "
                             f"(header: {','.join(header)}; expected {','.join(columns)})")
        return list(reader)


def number(row: dict[str, str], key: str, path: Path) -> float:
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise InputError(f"{path}: {key}={row.get(key)!r} is not a number in row {row}")


def load_side(directory: Path, side: str) -> dict:
    paths = {kind: directory / f"{side}_{kind}" for kind in
             ("forecasts.csv", "timings.csv", "summary.json")}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        hint = {
            "rust": "run the Rust side first: cargo bench --bench prophet -- --data "
                    "PATH/train.csv.gz --out DIR (or bench/prophet/run.sh)",
            "python": "run the Python side first: bench/.venv/bin/python "
                      "bench/prophet/python_side.py --data PATH/train.csv.gz --out DIR "
                      "(or bench/prophet/run.sh)",
        }[side]
        raise InputError(f"the {side} side's results are missing from {directory}: "
                         f"{', '.join(missing)}; {hint}")

    forecasts: dict[tuple[int, str, str], float] = {}
    path = paths["forecasts.csv"]
    for row in read_csv(path, FORECAST_COLUMNS):
        key = (int(row["store"]), row["config"], row["date"])
        if key in forecasts:
            raise InputError(f"{path}: duplicate row for store {key[0]}, config {key[1]}, "
                             f"date {key[2]}")
        forecasts[key] = number(row, "yhat", path)

    timings: dict[tuple[int, str], tuple[float, float]] = {}
    path = paths["timings.csv"]
    for row in read_csv(path, TIMING_COLUMNS):
        key = (int(row["store"]), row["config"])
        if key in timings:
            raise InputError(f"{path}: duplicate row for store {key[0]}, config {key[1]}")
        timings[key] = (number(row, "fit_ms", path), number(row, "predict_ms", path))

    path = paths["summary.json"]
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})")
    missing_keys = [k for k in SUMMARY_KEYS if k not in summary]
    if missing_keys:
        raise InputError(f"{path}: missing key(s) {', '.join(missing_keys)}")
    notes = [f"`{path.name}` has no `{k}`" for k in SUMMARY_INFO_KEYS if k not in summary]
    return {"forecasts": forecasts, "timings": timings, "summary": summary, "notes": notes}


def ms(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"


def ratio(py: float, rs: float) -> str:
    if math.isnan(py) or math.isnan(rs) or rs <= 0:
        return "-"
    r = py / rs
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


def pct(x: float) -> str:
    if math.isnan(x):
        return "-"
    p = x * 100
    if p == 0:
        return "0%"
    if p >= 100:
        return f"{p:,.0f}%"
    return f"{p:.3g}%"


def config_order(configs: set[str]) -> list[str]:
    known = [c for c in ("yearly", "weekly") if c in configs]
    return known + sorted(configs - set(known))


def report(directory: Path) -> str:
    data = {side: load_side(directory, side) for side in SIDES}
    py, rs = data["python"], data["rust"]
    lines: list[str] = []
    out = lines.append

    ps, rsum = py["summary"], rs["summary"]
    out("# Prophet: Python vs Rust")
    out("")
    out(f"Results in `{directory}`. Python: prophet {ps.get('prophet_version', '-')}, "
        f"{ps.get('stores')} stores; Rust: {rsum.get('prophet_version', '-')}, "
        f"{rsum.get('stores')} stores. For `yearly` and `weekly` each series is the last 120 "
        f"open days (Sales > 0) of a Rossmann store; `default` is storecast's own model (the "
        f"last 1,000 open days, log sales, its regressors: bench/prophet/README.md); fits "
        f"and predictions are sequential in one process; the 7-day predict draws 1,000 "
        f"uncertainty samples.")
    out("")
    notes = py["notes"] + rs["notes"]
    if notes:
        out("Incomplete summaries: " + "; ".join(notes) + ".")
        out("")

    # --- timings -------------------------------------------------------------------------
    out("## Fit and predict time per store")
    out("")
    configs = config_order({c for _, c in py["timings"]} | {c for _, c in rs["timings"]})
    for config in configs:
        py_keys = {k for k in py["timings"] if k[1] == config}
        rs_keys = {k for k in rs["timings"] if k[1] == config}
        common = sorted(py_keys & rs_keys)
        out(f"### `{config}`")
        out("")
        if not common:
            out(f"No store has timings on both sides (Python {len(py_keys)}, "
                f"Rust {len(rs_keys)}).")
            out("")
            continue
        note = f"{len(common)} stores timed on both sides"
        if len(common) != len(py_keys) or len(common) != len(rs_keys):
            note += (f" (Python timed {len(py_keys)}, Rust {len(rs_keys)}; only the common "
                     f"stores are compared)")
        out(note + ".")
        out("")
        out("| measure | Python | Rust | speed-up (Python / Rust) |")
        out("| --- | ---: | ---: | ---: |")
        rows = [
            ("fit median (ms)", 0, lambda v: quantile(v, 0.5)),
            ("fit p90 (ms)", 0, lambda v: quantile(v, 0.9)),
            ("predict median (ms)", 1, lambda v: quantile(v, 0.5)),
            ("predict p90 (ms)", 1, lambda v: quantile(v, 0.9)),
        ]
        for label, idx, stat in rows:
            a = stat([py["timings"][k][idx] for k in common])
            b = stat([rs["timings"][k][idx] for k in common])
            out(f"| {label} | {ms(a)} | {ms(b)} | {ratio(a, b)} |")
        # Per store, fit and predict together: what one weekly retrain of a store costs.
        a = quantile([sum(py["timings"][k]) for k in common], 0.5)
        b = quantile([sum(rs["timings"][k]) for k in common], 0.5)
        out(f"| fit + predict per store, median (ms) | {ms(a)} | {ms(b)} | {ratio(a, b)} |")
        a = sum(sum(py["timings"][k]) for k in common) / 1e3
        b = sum(sum(rs["timings"][k]) for k in common) / 1e3
        out(f"| fit + predict, all {len(common)} stores (s) | {a:.2f} | {b:.2f} | "
            f"{ratio(a, b)} |")
        out("")

    # --- CV --------------------------------------------------------------------------------
    out("## Walk-forward CV, config `yearly`, all stores")
    out("")
    out("Per store: TimeSeriesSplit(n_splits=5) over the 120 rows (train on the first "
        "20, 40, ..., 100 rows, predict the next 20), then a final fit on all rows and a "
        "7-day predict; stores spread over a pool of workers.")
    out("")
    pt, rt = ps.get("cv_total_seconds"), rsum.get("cv_total_seconds")
    if pt is None and rt is None:
        out("Skipped on both sides (`--skip-cv`).")
    else:
        def secs(x):
            return "skipped" if x is None else f"{x:.1f}"
        sp = ratio(pt, rt) if pt is not None and rt is not None else "-"
        out("| measure | Python | Rust | speed-up (Python / Rust) |")
        out("| --- | ---: | ---: | ---: |")
        out(f"| stores | {ps.get('stores')} | {rsum.get('stores')} | |")
        out(f"| workers | {ps.get('cv_workers')} | {rsum.get('cv_workers')} | |")
        out(f"| total wall time (s) | {secs(pt)} | {secs(rt)} | {sp} |")
        pm = ps.get("cv_metrics_mean") or {}
        rm = rsum.get("cv_metrics_mean") or {}
        for k in METRICS:
            a, b = pm.get(k), rm.get(k)
            fa = "-" if a is None else f"{a:.4g}"
            fb = "-" if b is None else f"{b:.4g}"
            out(f"| mean {k} (over stores) | {fa} | {fb} | |")
        if ps.get("stores") != rsum.get("stores"):
            out("")
            out("**Warning:** the two sides ran CV on different numbers of stores.")
    out("")

    # --- agreement --------------------------------------------------------------------------
    out("## Agreement of the 7-day `yhat`")
    out("")
    out("For every (store, config, date) present on both sides: "
        "rel = |rust - python| / max(|python|, 1).")
    out("")
    out("| config | pairs | median | p90 | max (store, date) | share above 1% |")
    out("| --- | ---: | ---: | ---: | --- | ---: |")
    fconfigs = config_order({k[1] for k in py["forecasts"]} | {k[1] for k in rs["forecasts"]})
    unmatched = []
    for config in fconfigs:
        pk = {k for k in py["forecasts"] if k[1] == config}
        rk = {k for k in rs["forecasts"] if k[1] == config}
        common = sorted(pk & rk)
        if len(pk) != len(common) or len(rk) != len(common):
            unmatched.append(f"`{config}`: {len(pk - rk)} Python rows without a Rust row, "
                             f"{len(rk - pk)} Rust rows without a Python row")
        if not common:
            out(f"| {config} | 0 | - | - | - | - |")
            continue
        rels = []
        for k in common:
            p, r = py["forecasts"][k], rs["forecasts"][k]
            rels.append((abs(r - p) / max(abs(p), 1.0), k))
        values = [v for v, _ in rels]
        worst, wk = max(rels)
        above = sum(1 for v in values if v > AGREEMENT_THRESHOLD) / len(values)
        out(f"| {config} | {len(common)} | {pct(quantile(values, 0.5))} | "
            f"{pct(quantile(values, 0.9))} | {pct(worst)} (store {wk[0]}, {wk[2]}) | "
            f"{pct(above)} |")
    if unmatched:
        out("")
        out("Rows present on one side only: " + "; ".join(unmatched) + ".")
    out("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True,
                        help="folder holding python_* and rust_* results")
    args = parser.parse_args()
    directory = Path(args.dir)
    if not directory.is_dir():
        print(f"compare.py: {directory} is not a folder", file=sys.stderr)
        return 2
    try:
        text = report(directory)
    except InputError as e:
        print(f"compare.py: {e}", file=sys.stderr)
        return 2
    print(text)
    (directory / "report.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
