#!/usr/bin/env python3
"""Python side of the Prophet benchmark: Prophet 1.5 on the last 120 open days of every
Rossmann store.

Writes into --out:
  python_forecasts.csv  store,config,date,yhat,yhat_lower,yhat_upper (7 days after the last date)
  python_timings.csv    store,config,fit_ms,predict_ms
  python_summary.json   side, prophet_version, stores, cv_total_seconds, cv_workers,
                        cv_metrics_mean (+ informational extras, see README.md)

The work is described in bench/prophet/README.md; the Rust side (cargo bench --bench prophet)
does exactly the same.
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import collections
import datetime as dt
import json
import logging
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HISTORY = 120          # last open days per store (the reference stack's window)
HORIZON = 7            # calendar days predicted after the last date
CV_SPLITS = 5          # sklearn TimeSeriesSplit(n_splits=5)
CV_WORKERS = 2         # the machine has 2 cores
CONFIGS = ("yearly", "weekly", "default")
# storecast's `default` profile (config/default.toml): the last 1,000 open days with sales,
# log sales, yearly seasonality (order 10) only over at least 730 days, weekly (order 3), and
# the regressor columns of its features (additive, prior scale 10; a column that never
# changes in training is left out, as storecast does). `default_features` builds them as
# src/forecast/series.rs does.
DEFAULT_HISTORY = 1000
DEFAULT_YEARLY_MIN_DAYS = 730
MONTH_DAY_ORDER = 3
LONG_CLOSURE_DAYS = 5
REOPENING_DAYS = 14
PROGRESS_EVERY = 100

# ---------------------------------------------------------------------------------------
# Logging: Prophet logs at WARNING on every yearly fit of < 2 years of history, which would
# print thousands of identical lines. Keep the WARNING level, but count the messages and
# print each distinct one only the first time it is seen (per process).


class CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()
        self.echo = True  # print the first occurrence of each message

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # Collapse the variable parts so the same warning counts once per kind.
        key = f"{record.name}: {message}"
        first = key not in self.counts
        self.counts[key] += 1
        if first and self.echo:
            print(f"[first occurrence, counted from now on] {record.levelname} {key}",
                  file=sys.stderr, flush=True)


_handler: CountingHandler | None = None


def quiet_logging() -> CountingHandler:
    """Prophet at WARNING (counted), cmdstanpy disabled. Idempotent per process."""
    global _handler
    if _handler is None:
        _handler = CountingHandler()
        prophet_logger = logging.getLogger("prophet")
        prophet_logger.setLevel(logging.WARNING)
        prophet_logger.handlers.clear()
        prophet_logger.addHandler(_handler)
        prophet_logger.propagate = False
        cmdstanpy_logger = logging.getLogger("cmdstanpy")
        cmdstanpy_logger.disabled = True
        cmdstanpy_logger.propagate = False
    return _handler


quiet_logging()
from prophet import Prophet  # noqa: E402  (after the logging set-up)
import prophet  # noqa: E402

# prophet.forecaster sets its own logger to INFO on import; put it back to WARNING.
logging.getLogger("prophet").setLevel(logging.WARNING)
for _name in ("prophet.models", "prophet.plot"):
    logging.getLogger(_name).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------
# Data


def load_series(path: str, max_stores: int | None) -> dict[int, pd.DataFrame]:
    """store id -> DataFrame(ds, y): open days with sales, sorted by date, last 120 rows."""
    raw = pd.read_csv(
        path,
        usecols=["Store", "Date", "Sales", "Open"],
        dtype={"Store": "int64", "Sales": "int64", "Open": "int64"},
        parse_dates=["Date"],
    )
    stores = sorted(raw["Store"].unique().tolist())
    if max_stores is not None:
        stores = stores[:max_stores]
    raw = raw[raw["Store"].isin(stores) & (raw["Open"] == 1) & (raw["Sales"] > 0)]
    series: dict[int, pd.DataFrame] = {}
    for store, group in raw.groupby("Store", sort=True):
        group = group.sort_values("Date", kind="stable").tail(HISTORY)
        series[int(store)] = pd.DataFrame({
            "ds": group["Date"].to_numpy(),
            "y": group["Sales"].to_numpy(dtype=float),
        }).reset_index(drop=True)
    missing = [s for s in stores if s not in series]
    if missing:
        raise SystemExit(f"stores with no open day with sales: {missing}")
    return series


def easter_sunday(year: int) -> dt.date:
    """Meeus/Jones/Butcher, as src/dataset/calendar.rs."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l) // 451
    month = (h + l - 7 * m + 114) // 31
    day = (h + l - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)


def default_features(dates: list[dt.date], rows: dict, open_days: list[dt.date]) -> dict:
    """Regressor columns of the default profile's features for `dates`, from the store's
    rows (date -> (open, promo, state_holiday, school_holiday)); a date without a row has no
    promotion, holiday or school holiday. Mirrors Series::feature_value."""
    one = dt.timedelta(days=1)

    def row(date, field):
        values = rows.get(date)
        return float(values[field]) if values is not None else 0.0

    def reopened(date):
        # Open days up to `date`, newest first, each with the open day before it.
        end = bisect.bisect_right(open_days, date)
        later_index = end - 1
        while later_index >= 1:
            later, earlier = open_days[later_index], open_days[later_index - 1]
            if (date - later).days >= REOPENING_DAYS:
                return 0.0
            if (later - earlier).days > LONG_CLOSURE_DAYS:
                return 1.0
            later_index -= 1
        return 0.0

    columns: dict[str, list[float]] = collections.defaultdict(list)
    for date in dates:
        promo = row(date, 1)
        to_easter = (easter_sunday(date.year) - date).days
        month_length = calendar.monthrange(date.year, date.month)[1]
        position = (date.day - 1) / month_length
        values = {
            "promo": promo,
            "school_holiday": row(date, 3),
            "before_holiday": row(date + one, 2),
            "after_holiday": row(date - one, 2),
            "state_holiday": row(date, 2),
            "promo_mon": promo * (date.weekday() == 0),
            "promo_tue": promo * (date.weekday() == 1),
            "promo_wed": promo * (date.weekday() == 2),
            "promo_thu": promo * (date.weekday() == 3),
            "christmas_rush": float(date.month == 12 and 14 <= date.day <= 23),
            "christmas_eve": float(date.month == 12 and date.day == 24),
            "between_years": float(date.month == 12 and 27 <= date.day <= 31),
            "holy_week": float(4 <= to_easter <= 6),
            "easter_saturday": float(to_easter == 1),
            "weiberfastnacht": float(to_easter == 52),
            "rosenmontag": float(to_easter == 48),
            "shrove_tuesday": float(to_easter == 47),
            "after_closure": reopened(date),
        }
        for order in range(1, MONTH_DAY_ORDER + 1):
            angle = 2.0 * math.pi * order * position
            values[f"month_sin{order}"] = math.sin(angle)
            values[f"month_cos{order}"] = math.cos(angle)
        for name, value in values.items():
            columns[name].append(float(value))
    return columns


def load_default_frames(path: str, max_stores: int | None) -> dict[int, tuple]:
    """store id -> (training frame, future frame, yearly on?) for storecast's `default`
    profile, built as storecast builds them (src/forecast/series.rs): every row of the store
    is its calendar; the training days are its last 1,000 open days with sales; the features
    are `default_features`' (the 7 future days have no row: no promotion or holiday, while
    the calendar's own features, such as the day of the month, are known)."""
    raw = pd.read_csv(
        path,
        usecols=["Store", "Date", "Sales", "Open", "Promo", "StateHoliday", "SchoolHoliday"],
        dtype={"Store": "int64", "Sales": "int64", "Open": "int64", "Promo": "int64",
               "StateHoliday": "str", "SchoolHoliday": "int64"},
        parse_dates=["Date"],
    )
    stores = sorted(raw["Store"].unique().tolist())
    if max_stores is not None:
        stores = stores[:max_stores]
    frames: dict[int, tuple] = {}
    for store, group in raw[raw["Store"].isin(stores)].groupby("Store", sort=True):
        group = group.sort_values("Date", kind="stable").reset_index(drop=True)
        days = group["Date"].dt.date.tolist()
        rows = {
            day: (open_, promo, holiday != "0", school)
            for day, open_, promo, holiday, school in zip(
                days, group["Open"], group["Promo"], group["StateHoliday"],
                group["SchoolHoliday"])
        }
        open_days = [day for day, values in rows.items() if values[0]]
        trading = group[(group["Open"] == 1) & (group["Sales"] > 0)].tail(DEFAULT_HISTORY)
        train_dates = trading["Date"].dt.date.tolist()
        train = pd.DataFrame({
            "ds": trading["Date"].to_numpy(),
            "y": np.log(np.maximum(trading["Sales"].to_numpy(dtype=float), 1.0)),
        }).reset_index(drop=True)
        features = default_features(train_dates, rows, open_days)
        kept = [name for name, values in features.items() if len(set(values)) > 1]
        for name in kept:
            train[name] = features[name]
        future = future_frame(train["ds"].iloc[-1])
        future_features = default_features(future["ds"].dt.date.tolist(), rows, open_days)
        for name in kept:
            future[name] = future_features[name]
        yearly = (train["ds"].iloc[-1] - train["ds"].iloc[0]).days >= DEFAULT_YEARLY_MIN_DAYS
        frames[int(store)] = (train, future, yearly)
    return frames


def make_default_model(train: pd.DataFrame, yearly: bool) -> Prophet:
    m = Prophet(
        yearly_seasonality=10 if yearly else False,
        weekly_seasonality=3,
        daily_seasonality=False,
        interval_width=0.95,
    )
    for f in train.columns[2:]:
        # storecast standardizes no feature column (src/forecast/model.rs, `regressor`).
        m.add_regressor(f, prior_scale=10.0, mode="additive", standardize=False)
    return m


def make_model(config: str) -> Prophet:
    if config not in ("yearly", "weekly"):
        raise ValueError(f"unknown config {config!r}")
    return Prophet(
        yearly_seasonality=(config == "yearly"),
        weekly_seasonality=True,
        daily_seasonality=False,
        interval_width=0.95,
    )


def future_frame(last_ds: pd.Timestamp) -> pd.DataFrame:
    """The 7 calendar days after the last date (not make_future_dataframe, which infers the
    frequency from the last dates)."""
    return pd.DataFrame({"ds": [last_ds + pd.Timedelta(days=d) for d in range(1, HORIZON + 1)]})


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, CPU s used by the whole machine, CPU s used by this process and its reaped
    children: the cmdstan runs and the pool workers). Linux /proc/stat; the difference of two
    snapshots shows how much CPU other programs took while the benchmark ran."""
    machine = math.nan
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        ticks = [int(x) for x in fields]
        # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        machine = busy / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system
    return time.perf_counter(), machine, own


def cpu_report(start: tuple[float, float, float], end: tuple[float, float, float]) -> dict:
    wall = end[0] - start[0]
    machine = end[1] - start[1]
    own = end[2] - start[2]
    return {
        "wall_seconds": wall,
        "own_cpu_seconds": own,
        "other_cpu_seconds": machine - own,
        "other_cpu_share": (machine - own) / (wall * (os.cpu_count() or 1)) if wall > 0 else None,
    }


def algorithm_for(rows: int) -> str:
    """What Prophet 1.5's CmdStanPy backend asks Stan for (models.py: T < 100 -> Newton)."""
    return "Newton" if rows < 100 else "LBFGS"


# ---------------------------------------------------------------------------------------
# Timed fits and predictions


def run_timed(series: dict[int, pd.DataFrame], configs: list[str], out: Path,
              default_frames: dict[int, tuple]) -> dict:
    forecasts_path = out / "python_forecasts.csv"
    timings_path = out / "python_timings.csv"
    n = len(series)
    started = time.perf_counter()
    with open(forecasts_path, "w", newline="") as fc, open(timings_path, "w", newline="") as tc:
        fc.write("store,config,date,yhat,yhat_lower,yhat_upper\n")
        tc.write("store,config,fit_ms,predict_ms\n")
        for done, (store, df) in enumerate(series.items(), start=1):
            for config in configs:
                if config == "default":
                    train, future, yearly = default_frames[store]
                    m = make_default_model(train, yearly)
                else:
                    train, future = df, future_frame(df["ds"].iloc[-1])
                    m = make_model(config)
                t0 = time.perf_counter()
                m.fit(train)
                fit_ms = (time.perf_counter() - t0) * 1e3
                # Intervals are sampled from numpy's global RNG: seed it per store so a
                # re-run gives the same intervals (yhat itself does not depend on it).
                np.random.seed(store)
                t0 = time.perf_counter()
                fcst = m.predict(future)
                predict_ms = (time.perf_counter() - t0) * 1e3
                tc.write(f"{store},{config},{fit_ms!r},{predict_ms!r}\n")
                if config == "default":
                    # storecast's default profile forecasts exp() of the log-sales model.
                    fcst = fcst.assign(yhat=np.exp(fcst["yhat"]),
                                       yhat_lower=np.exp(fcst["yhat_lower"]),
                                       yhat_upper=np.exp(fcst["yhat_upper"]))
                for ds, yhat, lo, hi in zip(fcst["ds"], fcst["yhat"], fcst["yhat_lower"],
                                            fcst["yhat_upper"]):
                    fc.write(f"{store},{config},{ds:%Y-%m-%d},{float(yhat)!r},"
                             f"{float(lo)!r},{float(hi)!r}\n")
            if done % PROGRESS_EVERY == 0 or done == n:
                elapsed = time.perf_counter() - started
                print(f"timed fits: {done}/{n} stores ({elapsed:.1f} s)", flush=True)
    return {"timed_seconds": time.perf_counter() - started}


# ---------------------------------------------------------------------------------------
# Walk-forward CV (config `yearly`), 2 worker processes


def _cv_init() -> None:
    quiet_logging()
    # The handler's counts are inherited from the parent by fork: start from zero. The
    # parent prints the workers' counts at the end.
    assert _handler is not None
    _handler.counts.clear()
    _handler.echo = False


def cv_store(item: tuple[int, pd.DataFrame]) -> dict:
    """TimeSeriesSplit(n_splits=5) over the rows, then a final fit on all rows and a
    7-day predict. Returns the store's metrics averaged over the splits."""
    store, df = item
    assert _handler is not None
    before = collections.Counter(_handler.counts)
    n = len(df)
    test_size = n // (CV_SPLITS + 1)
    metrics = {"rmse": [], "mape": [], "mae": [], "median_ae": []}
    algorithms = collections.Counter()
    for i in range(CV_SPLITS):
        train_end = n - (CV_SPLITS - i) * test_size  # = 20 + 20*i for 120 rows
        train = df.iloc[:train_end]
        test = df.iloc[train_end:train_end + test_size]
        m = make_model("yearly")
        m.fit(train)
        algorithms[algorithm_for(len(train))] += 1
        yhat = m.predict(test[["ds"]])["yhat"].to_numpy()
        err = test["y"].to_numpy() - yhat
        abs_err = np.abs(err)
        metrics["rmse"].append(float(np.sqrt(np.mean(err ** 2))))
        metrics["mape"].append(float(np.mean(abs_err / np.abs(test["y"].to_numpy()))))
        metrics["mae"].append(float(np.mean(abs_err)))
        metrics["median_ae"].append(float(np.median(abs_err)))
    m = make_model("yearly")
    m.fit(df)
    algorithms[algorithm_for(n)] += 1
    m.predict(future_frame(df["ds"].iloc[-1]))
    warnings = _handler.counts - before
    return {
        "store": store,
        "metrics": {k: float(np.mean(v)) for k, v in metrics.items()},
        "algorithms": dict(algorithms),
        "warnings": dict(warnings),
    }


def run_cv(series: dict[int, pd.DataFrame]) -> dict:
    n = len(series)
    ctx = multiprocessing.get_context("fork")
    started = time.perf_counter()
    results = []
    with ctx.Pool(CV_WORKERS, initializer=_cv_init) as pool:
        for done, result in enumerate(pool.imap(cv_store, series.items(), chunksize=1), start=1):
            results.append(result)
            if done % PROGRESS_EVERY == 0 or done == n:
                elapsed = time.perf_counter() - started
                print(f"cv: {done}/{n} stores ({elapsed:.1f} s)", flush=True)
    total = time.perf_counter() - started
    means = {k: float(np.mean([r["metrics"][k] for r in results]))
             for k in ("rmse", "mape", "mae", "median_ae")}
    algorithms: collections.Counter[str] = collections.Counter()
    warnings: collections.Counter[str] = collections.Counter()
    for r in results:
        algorithms.update(r["algorithms"])
        warnings.update(r["warnings"])
    return {"total": total, "means": means, "algorithms": dict(algorithms),
            "warnings": dict(warnings)}


# ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="Rossmann train.csv.gz")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--stores", type=int, default=None,
                        help="only the first N store ids (quick runs)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="comma-separated subset of yearly,weekly,default (default all)")
    parser.add_argument("--skip-cv", action="store_true", help="skip the walk-forward CV")
    args = parser.parse_args()

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in CONFIGS:
            parser.error(f"unknown config {c!r} (expected some of {','.join(CONFIGS)})")
    if args.stores is not None and args.stores < 1:
        parser.error("--stores must be at least 1")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    run_started = time.perf_counter()
    load_at_start = os.getloadavg()
    t0 = time.perf_counter()
    series = load_series(args.data, args.stores)
    load_seconds = time.perf_counter() - t0
    lengths = {s: len(df) for s, df in series.items()}
    short = sorted(s for s, rows in lengths.items() if rows < HISTORY)
    newton = sorted(s for s, rows in lengths.items() if rows < 100)
    print(f"python side: prophet {prophet.__version__}, {len(series)} stores, "
          f"configs {','.join(configs)}, cv {'skipped' if args.skip_cv else 'on'}; "
          f"data loaded in {load_seconds:.1f} s", flush=True)
    if short:
        print(f"{len(short)} stores have fewer than {HISTORY} open days "
              f"(min {min(lengths.values())} rows); {len(newton)} of them fit with Newton "
              f"(< 100 rows)", flush=True)

    handler = quiet_logging()
    handler.counts.clear()
    snap = cpu_snapshot()
    default_frames = load_default_frames(args.data, args.stores) if "default" in configs else {}
    timed = run_timed(series, configs, out, default_frames)
    timed_cpu = cpu_report(snap, cpu_snapshot())
    timed_warnings = dict(handler.counts)

    cv = None
    cv_cpu = None
    if not args.skip_cv:
        snap = cpu_snapshot()
        cv = run_cv(series)
        cv_cpu = cpu_report(snap, cpu_snapshot())

    summary = {
        "side": "python",
        "prophet_version": prophet.__version__,
        "stores": len(series),
        "cv_total_seconds": None if cv is None else cv["total"],
        "cv_workers": CV_WORKERS,
        "cv_metrics_mean": None if cv is None else cv["means"],
        # Informational extras (compare.py does not need them).
        "configs": configs,
        "history_rows": HISTORY,
        "stores_with_fewer_rows": short,
        "rows_min": min(lengths.values()),
        "timed_fit_algorithms": {
            "LBFGS": sum(1 for r in lengths.values() if r >= 100) * len(configs),
            "Newton": sum(1 for r in lengths.values() if r < 100) * len(configs),
        },
        "cv_fit_algorithms": None if cv is None else cv["algorithms"],
        "warnings_timed": timed_warnings,
        "warnings_cv": None if cv is None else cv["warnings"],
        "timed_seconds": timed["timed_seconds"],
        # CPU taken by other programs while each part ran (a busy machine skews timings).
        "cpu_timed": timed_cpu,
        "cpu_cv": cv_cpu,
        "run_seconds": time.perf_counter() - run_started,
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "cmdstanpy": __import__("cmdstanpy").__version__,
        },
        "cpu_count": os.cpu_count(),
        # 1/5/15-minute load averages: other work on the 2 cores skews the timings.
        "loadavg_start": list(load_at_start),
        "loadavg_end": list(os.getloadavg()),
    }
    with open(out / "python_summary.json", "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")

    def short_key(k: str) -> str:
        return k if len(k) <= 100 else k[:97] + "..."

    def busy_note(cpu: dict) -> str:
        share = cpu["other_cpu_share"]
        if share is None or math.isnan(share):
            return ""
        note = f"; other programs used {share:.0%} of the machine's CPU meanwhile"
        if share > 0.05:
            note += " (timings skewed: re-run on an idle machine)"
        return note

    print(f"timed fits+predicts: {timed['timed_seconds']:.1f} s{busy_note(timed_cpu)}",
          flush=True)
    for k, v in sorted(timed_warnings.items()):
        print(f"  warning x{v} (timed): {short_key(k)}")
    if cv is not None:
        print(f"cv total: {cv['total']:.1f} s with {CV_WORKERS} workers; "
              f"fits by algorithm {cv['algorithms']}; metrics mean "
              + ", ".join(f"{k} {v:.4g}" for k, v in cv["means"].items())
              + busy_note(cv_cpu), flush=True)
        for k, v in sorted(cv["warnings"].items()):
            print(f"  warning x{v} (cv): {short_key(k)}")
    print(f"python side done in {summary['run_seconds']:.1f} s; wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
