#!/usr/bin/env python3
"""Write reference fixtures for storecast's native Prophet optimizer.

For each case in CASES this script
  * builds a synthetic, deterministic retail-like daily series (no real data),
  * lets Prophet 1.5's own Python code turn it into the Stan data block
    (`Prophet.preprocess`, `Prophet.calculate_initial_params` and
    `CmdStanPyBackend.prepare_data`, i.e. exactly what `Prophet.fit` hands to Stan),
  * fits it with Prophet itself (the "optimum"),
  * evaluates log density and gradient with Stan's compiled Prophet model (the
    `prophet_model.bin` shipped in the prophet wheel) through cmdstanpy's
    `CmdStanModel.log_prob(jacobian=False)` at several parameter points,
  * re-evaluates the log density with an independent numpy formula and checks it
    against Stan's value (and Stan's gradient against finite differences of it),
  * runs Stan's optimizer the way Prophet does (L-BFGS, iter 10000, jacobian off,
    CmdStan's default tolerances) and records where it stopped,
and writes one JSON file per case to tests/fixtures/prophet/.

Re-running regenerates byte-identical files (fixed seeds, no timestamps or paths).
Run with the venv made by bench/python/setup.sh:

    bench/python/setup.sh && bench/.venv/bin/python bench/python/make_fixtures.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cmdstanpy
import numpy as np
import pandas as pd
from prophet import Prophet
from prophet.models import CmdStanPyBackend

REPO = Path(__file__).resolve().parents[2]
OUT_DIR = REPO / "tests" / "fixtures" / "prophet"

SERIES_SEED = 20240501
PERTURB_SCALE = 0.05
STAN_SIG_FIGS = 18  # CmdStan's CSV output keeps 6 significant digits unless told otherwise

# Prophet's Stan call, as in prophet/models.py CmdStanPyBackend.fit (T >= 100 -> L-BFGS).
PROPHET_OPTIMIZE_ARGS = {"algorithm": "LBFGS", "iter": 10000, "jacobian": False}

CASES: list[dict[str, Any]] = [
    {
        "case": "linear_yearly_weekly",
        "prophet": {"growth": "linear", "yearly_seasonality": True,
                    "weekly_seasonality": True, "daily_seasonality": False},
        "regressors": [],
    },
    {
        "case": "linear_weekly_only",
        "prophet": {"growth": "linear", "yearly_seasonality": False,
                    "weekly_seasonality": True, "daily_seasonality": False},
        "regressors": [],
    },
    {
        "case": "flat_weekly",
        "prophet": {"growth": "flat", "yearly_seasonality": False,
                    "weekly_seasonality": True, "daily_seasonality": False},
        "regressors": [],
    },
    {
        "case": "linear_promo_regressor",
        "prophet": {"growth": "linear", "yearly_seasonality": True,
                    "weekly_seasonality": True, "daily_seasonality": False},
        "regressors": [{"name": "promo", "prior_scale": 10.0, "mode": "additive"}],
    },
    {
        "case": "multiplicative_weekly",
        "prophet": {"growth": "linear", "seasonality_mode": "multiplicative",
                    "yearly_seasonality": False, "weekly_seasonality": True,
                    "daily_seasonality": False},
        "regressors": [{"name": "promo", "prior_scale": 10.0, "mode": "multiplicative"}],
    },
    {
        "case": "logistic_weekly",
        "prophet": {"growth": "logistic", "yearly_seasonality": False,
                    "weekly_seasonality": True, "daily_seasonality": False},
        "regressors": [],
        "cap_factor": 1.2,
    },
]

LOG_PROB_NOTE = (
    "log_prob is Stan's own value (CmdStan method=log_prob via cmdstanpy "
    "CmdStanModel.log_prob(jacobian=False), sig_figs=18). The model uses only '~' "
    "statements, which Stan evaluates with propto=true: every term that does not "
    "depend on a parameter is dropped. What is left (and what numpy_log_prob "
    "recomputes independently) is "
    "lp = -k^2/50 - m^2/50 - sum_j |delta_j|/tau - 2*sigma_obs^2 "
    "- sum_j beta_j^2/(2*sigmas_j^2) - T*log(sigma_obs) - sum_i (y_i - mu_i)^2/(2*sigma_obs^2), "
    "with mu = (X.*s_a) beta + trend .* (1 + (X.*s_m) beta). "
    "The fully normalised log density (jacobian off, half-normal of sigma_obs not "
    "renormalised by log 2, as Stan never does) is lp + C with "
    "C = -(3 + K + T)/2*log(2*pi) - 2*log(5) - log(0.5) - S*log(2*tau) - sum_j log(sigmas_j) "
    "(terms: k and m normal(0,5), sigma_obs normal(0,0.5), beta normal(0,sigmas), "
    "delta double_exponential(0,tau), y normal); log_prob_constant holds C for this "
    "data and the difference measured at the init point. With jacobian=True Stan "
    "would add log(sigma_obs) (the log|d sigma/d log sigma| term). The optimizer's "
    "'Initial log joint probability' and the lp__ it reports use the same "
    "convention (constants dropped, no Jacobian)."
)

GRADIENT_NOTE = (
    "gradient = d log_prob / d theta_unconstrained from Stan, in Stan's unconstrained "
    "parameter order: k, m, delta[1..S], log(sigma_obs), beta[1..K] (length 3+S+K). "
    "The sigma_obs entry is with respect to u = log(sigma_obs), i.e. "
    "sigma_obs * d lp/d sigma_obs; with jacobian=False no +1 is added for the "
    "Jacobian."
)


# --------------------------------------------------------------------------- data


def make_series() -> pd.DataFrame:
    """Synthetic daily store sales: Sundays closed, weekly pattern, promo weeks, trend, noise."""
    rng = np.random.default_rng(SERIES_SEED)
    calendar = pd.date_range("2023-01-02", periods=140, freq="D")  # starts on a Monday
    ds = calendar[calendar.day_of_week != 6]  # closed on Sundays: 120 open days
    day = np.asarray((ds - calendar[0]).days, dtype=np.int64)
    dow = np.asarray(ds.day_of_week, dtype=np.int64)
    week = day // 7
    promo = ((week % 2 == 0) & (dow <= 4)).astype(np.int64)  # alternating weeks, Mon-Fri
    weekly = np.array([1.15, 1.00, 0.96, 0.98, 1.06, 0.84])[dow]  # Monday high, Saturday low
    level = 5000.0 + 5.0 * day
    noise = rng.normal(0.0, 0.03, size=len(ds))
    y = np.round(level * weekly * (1.0 + 0.25 * promo) * (1.0 + noise))
    return pd.DataFrame({"ds": ds, "y": y, "promo": promo})


# --------------------------------------------------------------------------- helpers


def py(obj: Any) -> Any:
    """Convert numpy/pandas containers and scalars to plain Python for json."""
    if isinstance(obj, dict):
        return {str(k): py(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [py(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return py(obj.tolist())
    if isinstance(obj, pd.Series):
        return py(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if not math.isfinite(value):
            raise ValueError(f"non-finite value {value!r} in fixture")
        return value
    return obj


def params_point(k: float, m: float, delta: Any, sigma_obs: float, beta: Any) -> dict[str, Any]:
    return {
        "k": float(k),
        "m": float(m),
        "delta": [float(v) for v in np.asarray(delta, dtype=float).reshape(-1)],
        "sigma_obs": float(sigma_obs),
        "beta": [float(v) for v in np.asarray(beta, dtype=float).reshape(-1)],
    }


def to_unconstrained(p: dict[str, Any]) -> np.ndarray:
    return np.concatenate([[p["k"], p["m"]], p["delta"], [math.log(p["sigma_obs"])], p["beta"]])


def from_unconstrained(u: np.ndarray, S: int, K: int) -> dict[str, Any]:
    return params_point(u[0], u[1], u[2:2 + S], math.exp(u[2 + S]), u[3 + S:3 + S + K])


def prophet_params(params: dict[str, np.ndarray]) -> dict[str, Any]:
    """Prophet's m.params (arrays of shape (1, n)) as one parameter point."""
    return params_point(
        np.asarray(params["k"]).reshape(-1)[0],
        np.asarray(params["m"]).reshape(-1)[0],
        params["delta"],
        np.asarray(params["sigma_obs"]).reshape(-1)[0],
        params["beta"],
    )


# --------------------------------------------------------------------------- numpy objective


def numpy_log_prob(data: dict[str, Any], p: dict[str, Any], normalised: bool = False,
                   laplace_prior: bool = True) -> float:
    """Prophet's Stan model density written out in numpy (jacobian off).

    normalised=False drops the constants exactly as Stan's '~' statements do.
    """
    T, S, K = data["T"], data["S"], data["K"]
    t = np.asarray(data["t"], dtype=float)
    y = np.asarray(data["y"], dtype=float)
    cap = np.asarray(data["cap"], dtype=float)
    t_change = np.asarray(data["t_change"], dtype=float)
    X = np.asarray(data["X"], dtype=float).reshape(T, K)
    sigmas = np.asarray(data["sigmas"], dtype=float)
    s_a = np.asarray(data["s_a"], dtype=float)
    s_m = np.asarray(data["s_m"], dtype=float)
    tau = float(data["tau"])
    k, m, sigma = p["k"], p["m"], p["sigma_obs"]
    delta = np.asarray(p["delta"], dtype=float)
    beta = np.asarray(p["beta"], dtype=float)

    A = (t[:, None] >= t_change[None, :]).astype(float)  # t and t_change are sorted
    if data["trend_indicator"] == 0:
        trend = (k + A @ delta) * t + (m + A @ (-t_change * delta))
    elif data["trend_indicator"] == 1:
        k_s = np.concatenate([[k], k + np.cumsum(delta)])
        gamma = np.empty(S)
        m_pr = m
        for i in range(S):
            gamma[i] = (t_change[i] - m_pr) * (1.0 - k_s[i] / k_s[i + 1])
            m_pr += gamma[i]
        z = (k + A @ delta) * (t - (m + A @ gamma))
        trend = cap / (1.0 + np.exp(-z))
    elif data["trend_indicator"] == 2:
        trend = np.full(T, m)
    else:
        raise ValueError(data["trend_indicator"])

    mu = (X * s_a) @ beta + trend * (1.0 + (X * s_m) @ beta)
    lp = (
        -k * k / 50.0
        - m * m / 50.0
        - (np.sum(np.abs(delta)) / tau if laplace_prior else 0.0)
        - 2.0 * sigma * sigma
        - np.sum(beta * beta / (2.0 * sigmas * sigmas))
        - T * math.log(sigma)
        - np.sum((y - mu) ** 2) / (2.0 * sigma * sigma)
    )
    if normalised:
        lp += normalising_constant(data)
    return float(lp)


def normalising_constant(data: dict[str, Any]) -> float:
    T, S, K = data["T"], data["S"], data["K"]
    sigmas = np.asarray(data["sigmas"], dtype=float)
    return float(
        -(3 + K + T) / 2.0 * math.log(2.0 * math.pi)
        - 2.0 * math.log(5.0)
        - math.log(0.5)
        - S * math.log(2.0 * float(data["tau"]))
        - np.sum(np.log(sigmas))
    )


def fd_gradient(data: dict[str, Any], p: dict[str, Any]) -> np.ndarray:
    """Gradient of numpy_log_prob in Stan's unconstrained space.

    Central finite differences of everything but the Laplace prior on delta, whose
    kink at 0 sits right where the optimum puts most deltas (|delta| ~ 1e-10); its
    derivative -sign(delta)/tau is added analytically (sign(0) = 0).
    """
    S, K = data["S"], data["K"]
    u = to_unconstrained(p)
    g = np.empty_like(u)
    for i in range(len(u)):
        h = 1e-6 * max(1.0, abs(u[i]))
        up, dn = u.copy(), u.copy()
        up[i] += h
        dn[i] -= h
        g[i] = (numpy_log_prob(data, from_unconstrained(up, S, K), laplace_prior=False)
                - numpy_log_prob(data, from_unconstrained(dn, S, K), laplace_prior=False)) / (2.0 * h)
    g[2:2 + S] -= np.sign(np.asarray(p["delta"], dtype=float)) / float(data["tau"])
    return g


# --------------------------------------------------------------------------- Stan


def stan_log_prob(model, data: dict[str, Any], p: dict[str, Any], jacobian: bool = False):
    df = model.log_prob(params=p, data=data, jacobian=jacobian, sig_figs=STAN_SIG_FIGS)
    S, K = data["S"], data["K"]
    expected = (["lp__", "g_k", "g_m"] + [f"g_delta.{j}" for j in range(1, S + 1)]
                + ["g_sigma_obs"] + [f"g_beta.{j}" for j in range(1, K + 1)])
    if list(df.columns) != expected:
        raise RuntimeError(f"unexpected log_prob columns {list(df.columns)}")
    row = df.iloc[0].to_numpy(dtype=float)
    return float(row[0]), row[1:]


ITER_LINE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)(.*)$")


def stan_optimize(model, data: dict[str, Any], init: dict[str, Any]) -> dict[str, Any]:
    args = dict(PROPHET_OPTIMIZE_ARGS)
    fit = model.optimize(data=data, inits=init, sig_figs=STAN_SIG_FIGS,
                         save_iterations=True, refresh=1, **args)
    names = fit.column_names
    values = fit.optimized_params_np
    params = CmdStanPyBackend.stan_to_dict_numpy(names[1:], values[1:])
    point = prophet_params(params)
    stdout = Path(fit.runset.stdout_files[0]).read_text()
    iters = [ITER_LINE.match(line) for line in stdout.splitlines()]
    iters = [mt for mt in iters if mt]
    last = iters[-1] if iters else None
    message = []
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Optimization terminated"):
            message = [line.strip()] + [ln.strip() for ln in lines[i + 1:i + 3] if ln.strip()]
            break
    initial = re.search(r"Initial log joint probability = (\S+)", stdout)
    trajectory = fit.optimized_iterations_np[:, 0]
    result = {
        "args": {**args, "inits": "the 'init' point", "tolerances": "CmdStan defaults "
                 "(init_alpha 1e-3, tol_obj 1e-12, tol_rel_obj 1e4, tol_grad 1e-8, "
                 "tol_rel_grad 1e7, tol_param 1e-8, history_size 5)"},
        "params": point,
        "log_prob": float(values[0]),
        "iterations": int(last.group(1)) if last else None,
        "log_prob_evaluations": int(last.group(7)) if last else None,
        "termination": " ".join(message),
        "initial_log_prob_printed": float(initial.group(1)) if initial else None,
        "lp_trajectory": [float(v) for v in trajectory],
    }
    return result


# --------------------------------------------------------------------------- per case


def build_model(spec: dict[str, Any]) -> Prophet:
    m = Prophet(**spec["prophet"])
    for reg in spec["regressors"]:
        m.add_regressor(reg["name"], prior_scale=reg["prior_scale"], mode=reg["mode"])
    return m


def case_frame(spec: dict[str, Any], series: pd.DataFrame) -> pd.DataFrame:
    df = series[["ds", "y"] + [r["name"] for r in spec["regressors"]]].copy()
    if spec["prophet"].get("growth") == "logistic":
        df["cap"] = spec["cap_factor"] * float(series["y"].max())
    return df


def make_case(index: int, spec: dict[str, Any], series: pd.DataFrame, stan_model,
              versions: dict[str, Any]) -> dict[str, Any]:
    name = spec["case"]
    df = case_frame(spec, series)

    # 1. The Stan data block and init, exactly as Prophet.fit builds them.
    m = build_model(spec)
    model_inputs = m.preprocess(df.copy())
    initial = m.calculate_initial_params(model_inputs.K)
    init_dict, data = CmdStanPyBackend.prepare_data(
        dataclasses.asdict(initial), dataclasses.asdict(model_inputs))
    data = py(data)
    init = params_point(init_dict["k"], init_dict["m"], init_dict["delta"],
                        init_dict["sigma_obs"], init_dict["beta"])
    S, K = data["S"], data["K"]

    # 2. Prophet's own fit. sig_figs=18 only changes how many digits CmdStan prints
    #    (default 6); the optimization itself is the same call.
    m_full = build_model(spec).fit(df.copy(), sig_figs=STAN_SIG_FIGS)
    optimum = prophet_params(m_full.params)
    m_default = build_model(spec).fit(df.copy())
    optimum_sig6 = prophet_params(m_default.params)
    u_full, u_sig6 = to_unconstrained(optimum), to_unconstrained(optimum_sig6)
    if not np.allclose(u_full, u_sig6, rtol=1e-5, atol=1e-9):
        raise RuntimeError(f"{name}: default-precision fit differs from sig_figs=18 fit")

    # 3. Stan's optimizer run the way Prophet runs it, from the same init.
    optimize = stan_optimize(stan_model, data, init)
    if to_unconstrained(optimize["params"]).tolist() != u_full.tolist():
        raise RuntimeError(f"{name}: direct Stan optimize differs from Prophet's fit")

    # 4. Points: init, optimum, Prophet's 6-digit optimum, two perturbations.
    points_in = [("init", init), ("optimum", optimum), ("optimum_sig6", optimum_sig6)]
    for j in (1, 2):
        rng = np.random.default_rng([SERIES_SEED, index, j])
        u = u_full + PERTURB_SCALE * rng.standard_normal(len(u_full))
        points_in.append((f"perturbed_{j}", from_unconstrained(u, S, K)))

    points = []
    checks = {"max_abs_lp_diff_stan_vs_numpy": 0.0,
              "max_rel_gradient_diff_stan_vs_numpy_finite_differences": 0.0}
    for label, p in points_in:
        lp, grad = stan_log_prob(stan_model, data, p)
        lp_np = numpy_log_prob(data, p)
        fd = fd_gradient(data, p)
        lp_diff = abs(lp - lp_np)
        g_diff = float(np.max(np.abs(fd - grad) / np.maximum(1.0, np.abs(grad))))
        if lp_diff > 1e-8 * max(1.0, abs(lp)):
            raise RuntimeError(f"{name}/{label}: Stan lp {lp!r} vs numpy {lp_np!r}")
        if g_diff > 1e-5:
            raise RuntimeError(f"{name}/{label}: gradient vs finite differences off by {g_diff}")
        checks["max_abs_lp_diff_stan_vs_numpy"] = max(checks["max_abs_lp_diff_stan_vs_numpy"], lp_diff)
        checks["max_rel_gradient_diff_stan_vs_numpy_finite_differences"] = max(
            checks["max_rel_gradient_diff_stan_vs_numpy_finite_differences"], g_diff)
        points.append({"label": label, **p, "log_prob": lp, "gradient": grad,
                       "numpy_log_prob": lp_np})

    # 5. Constants and the Jacobian, measured.
    lp_init = points[0]["log_prob"]
    full_init = numpy_log_prob(data, init, normalised=True)
    lp_jac, _ = stan_log_prob(stan_model, data, optimum, jacobian=True)
    constant = {
        "C": normalising_constant(data),
        "numpy_normalised_minus_stan_at_init": full_init - lp_init,
        "stan_jacobian_true_minus_false_at_optimum": lp_jac - points[1]["log_prob"],
        "log_sigma_obs_at_optimum": math.log(optimum["sigma_obs"]),
    }
    if abs(constant["C"] - constant["numpy_normalised_minus_stan_at_init"]) > 1e-8 * abs(constant["C"]):
        raise RuntimeError(f"{name}: normalising constant mismatch {constant}")
    if abs(constant["stan_jacobian_true_minus_false_at_optimum"]
           - constant["log_sigma_obs_at_optimum"]) > 1e-9:
        raise RuntimeError(f"{name}: jacobian term mismatch {constant}")
    if optimize["initial_log_prob_printed"] is not None and \
            abs(optimize["initial_log_prob_printed"] - lp_init) > 1e-5 * max(1.0, abs(lp_init)):
        raise RuntimeError(f"{name}: optimizer's initial lp {optimize['initial_log_prob_printed']} "
                           f"!= log_prob {lp_init}")
    if abs(optimize["log_prob"] - points[1]["log_prob"]) > 1e-9 * max(1.0, abs(optimize["log_prob"])):
        raise RuntimeError(f"{name}: optimizer lp__ {optimize['log_prob']} != log_prob at optimum")

    history = m.history
    cfg = dict(spec["prophet"])
    cfg["regressors"] = spec["regressors"]
    return py({
        "case": name,
        "versions": versions,
        "prophet_config": cfg,
        "input": {
            "description": "synthetic series made by bench/python/make_fixtures.py (seed "
                           f"{SERIES_SEED}); Sundays closed, so dates are not consecutive",
            "ds": [d.strftime("%Y-%m-%d") for d in df["ds"]],
            "y": df["y"],
            **{r["name"]: df[r["name"]] for r in spec["regressors"]},
            **({"cap": df["cap"]} if "cap" in df else {}),
        },
        "scales": {
            "y_scale": m.y_scale,
            "y_min": m.y_min,
            "start": m.start.strftime("%Y-%m-%d"),
            "t_scale_days": m.t_scale / pd.Timedelta(days=1),
            "changepoints": [d.strftime("%Y-%m-%d") for d in m.changepoints],
            "extra_regressors": {n: {"mu": r["mu"], "std": r["std"], "mode": r["mode"],
                                     "prior_scale": r["prior_scale"]}
                                 for n, r in m.extra_regressors.items()},
        },
        "columns": list(m.make_all_seasonality_features(history)[0].columns),
        "data": data,
        "log_prob_note": LOG_PROB_NOTE,
        "gradient_note": GRADIENT_NOTE,
        "log_prob_constant": constant,
        "checks": checks,
        "points": points,
        "stan_optimize": optimize,
    })


def main() -> int:
    cmdstanpy.utils.get_logger().setLevel(logging.WARNING)  # installs its handler first
    logging.getLogger("prophet").setLevel(logging.ERROR)
    backend = CmdStanPyBackend()  # sets cmdstanpy's CmdStan path to the wheel's copy
    stan_model = backend.model
    exe = Path(stan_model.exe_file)
    info = stan_model.exe_info()
    cmdstan = Path(cmdstanpy.cmdstan_path())
    stanc = subprocess.run([str(cmdstan / "bin" / "stanc"), "--version"],
                           capture_output=True, text=True, check=False).stdout.strip()
    versions = {
        "prophet": importlib.metadata.version("prophet"),
        "cmdstanpy": importlib.metadata.version("cmdstanpy"),
        "cmdstan": cmdstan.name.removeprefix("cmdstan-"),
        "stan_model": ".".join(info[f"stan_version_{p}"] for p in ("major", "minor", "patch")),
        "stanc": stanc,
        "prophet_model_bin_sha256": hashlib.sha256(exe.read_bytes()).hexdigest(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": ".".join(map(str, sys.version_info[:3])),
    }
    series = make_series()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for index, spec in enumerate(CASES):
        fixture = make_case(index, spec, series, stan_model, versions)
        path = OUT_DIR / f"{spec['case']}.json"
        path.write_text(json.dumps(fixture, indent=1, allow_nan=False) + "\n")
        opt = fixture["stan_optimize"]
        print(f"{path.relative_to(REPO)}: {path.stat().st_size / 1024:.0f} KiB, "
              f"T={fixture['data']['T']} S={fixture['data']['S']} K={fixture['data']['K']}, "
              f"lp init {fixture['points'][0]['log_prob']:.6f} -> optimum {opt['log_prob']:.6f} "
              f"in {opt['iterations']} iterations ({opt['termination']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
