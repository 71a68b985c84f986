"""Peak memory of a mixture fit on data with missing values (NaN), in a child process.

In memory, rows with missing values used to be reordered by pattern in a copy of the
whole X, with a second, mean-filled copy for the binding and the start; now EM reads them
in pattern order through an index (one integer a row), the binding comes from statistics
passes and the start from a bounded sample, each chunk filled as it is read. This
measures the peak RSS growth beyond the input array, with ``bench_memory.py``'s
child-process measurement, of default fits with diagonal covariances on n x d data with a
fraction of the values missing: ``GaussianMixture``, ``MixtureModel`` (a diag Gaussian),
``BayesianGaussianMixture`` and ``StudentTMixture``, and ``ModelBasedClustering`` (its
hierarchical start and one diag cell, VVI, on ``--mbc-n`` rows). The limit is the
issue's: max(25% of the input, 256 MiB). Run it once per code base to compare
(``PYTHONPATH`` selects which emkit the children import):

    python bench/bench_missing_memory.py                          # 500k x 32, 10% NaN
    PYTHONPATH=/path/to/other/src python bench/bench_missing_memory.py
    python bench/bench_missing_memory.py --n 5000 --d 8 --mbc-n 3000   # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_memory import MEMORY_FLOOR, MEMORY_FRACTION, MIB, peak_rss, reset_peak, rss

ESTIMATORS = ("gmm", "mixture-model", "bgm", "student-t", "mbc")


def make_data(n: int, d: int, k: int, missing: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    X = rng.standard_normal((n, d))
    X += rng.normal(0, 5, (k, d))[labels]
    X[rng.uniform(size=(n, d)) < missing] = np.nan
    X[np.isnan(X).all(axis=1), 0] = 0.0  # (a row with nothing observed is refused)
    return X


def child(args: argparse.Namespace) -> dict[str, Any]:
    import emkit
    from emkit.families import Gaussian

    n = args.mbc_n if args.estimator == "mbc" else args.n
    X = make_data(n, args.d, args.k, args.missing)
    common: dict[str, Any] = {"max_iter": args.max_iter, "tol": 0.0, "random_state": 0}
    model: Any
    if args.estimator == "gmm":
        model = emkit.GaussianMixture(args.k, covariance_type="diag", **common)
    elif args.estimator == "mixture-model":
        model = emkit.MixtureModel(Gaussian("diag"), args.k, **common)
    elif args.estimator == "bgm":
        model = emkit.BayesianGaussianMixture(n_components=args.k, covariance_type="diag", **common)
    elif args.estimator == "student-t":
        model = emkit.StudentTMixture(args.k, covariance_type="diag", **common)
    else:
        model = emkit.ModelBasedClustering(
            n_components=[args.k], covariance_types=["VVI"], max_iter=args.max_iter, tol=0.0
        )
    gc.collect()
    reset_peak()
    before = rss()
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    grown = peak_rss() - before
    if args.estimator == "mbc":
        model = model.best_estimator_
    return {
        "estimator": args.estimator,
        "n": n,
        "input_mib": X.nbytes / MIB,
        "limit_mib": max(MEMORY_FRACTION * X.nbytes, MEMORY_FLOOR) / MIB,
        "rss_growth_mib": grown / MIB,
        "percent_of_input": 100.0 * grown / X.nbytes,
        "seconds": seconds,
        "seconds_per_iteration": float(np.median(model.trace_.seconds)),
        "lower_bound": float(model.lower_bound_),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500_000)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--missing", type=float, default=0.1)
    parser.add_argument("--max-iter", type=int, default=3)
    parser.add_argument("--mbc-n", type=int, default=100_000, help="ModelBasedClustering's rows")
    parser.add_argument("--estimator", choices=(*ESTIMATORS, "all"), default="all")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    estimators = ESTIMATORS if args.estimator == "all" else (args.estimator,)
    for estimator in estimators:
        cmd = [sys.executable, __file__, "--child", "--estimator", estimator]
        for name in ("n", "d", "k", "missing", "max_iter", "mbc_n"):
            cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        within = result["rss_growth_mib"] <= result["limit_mib"]
        print(
            f"{estimator:14s} {result['n']} x {args.d}, {100 * args.missing:.0f}% NaN, "
            f"K={args.k}: input {result['input_mib']:.0f} MiB, RSS growth "
            f"{result['rss_growth_mib']:.0f} MiB ({result['percent_of_input']:.0f}%; limit "
            f"{result['limit_mib']:.0f} MiB: {'within' if within else 'OVER'}), "
            f"{result['seconds']:.1f} s, {result['seconds_per_iteration']:.2f} s/iter, "
            f"lower bound {result['lower_bound']:.6f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
