"""Where a whole large fit's time goes beyond its EM iterations: the fixed costs of a fit.

``../shared/bench/peers.py --iters 10`` times a whole ``GaussianMixture.fit`` of 10
iterations from given ``weights_init``, ``means_init`` and ``precisions_init`` (tol=0)
and divides by 10, so that a fit's fixed costs (input checks, the binding pass, the start,
the thread pool, Numba's kernels) count in its per-iteration figure. This script fits the
same workloads the same way (the same data generator, seed and start as peers.py) and
times each phase of one fit in wall time, by wrapping the functions that do them:

* ``validate``: the input checks of ``_validate_X`` (array conversion, scikit-learn's
  feature bookkeeping) and of the given start (``_check_initial_parameters``);
* ``finite``: the check for infinities and missing values (``has_missing_values``);
* ``bind``: the binding pass (centre, scale, the column scale's median), of which
  ``median`` is the column scale's median;
* ``start``: the start from the given parameters (``_initialize``);
* ``iterations``: the EM iterations (the sum of ``trace_.seconds``);
* ``rest``: everything else (the engine's thread pool, the driver's set-up, the fitted
  attributes);
* ``fixed``: the whole fit's time minus the iterations.

Before the timed fits, a fit of 20,000 rows loads Numba's compiled kernels; the first
line says how long that took. Every fit after it is timed ``--repeats`` times (the best
kept).

``--cold`` times instead a workload's first fit in a fresh process (each repeat its own
process, as ``peers.py --workloads diag`` meets it), its loads one by one before the fit:

* ``emkit``: its import (not in peers.py's timing; shown for scale);
* ``blas``: threadpoolctl's scan of the loaded libraries, which the in-memory engine's
  BLAS limit makes at a fit's first pass;
* ``numba``: Numba's import and the kernels' module (:mod:`emkit.models._compiled`);
* ``kernel``: the first call of the one-pass E-step with the workload's layout and dtype
  (the compiled kernel loaded from Numba's disk cache, compiled if not cached);
* then the fit's phases as above, and ``cold`` the sum of ``blas`` to the fit's total;
* ``gc``: the wall time of Python's full garbage collections (generation 2) from the
  first load to the fit's end (``gc runs`` in the JSON: how many), which hold the GIL
  and so stall the engine's threads too.

Another fresh process per repeat fits with nothing loaded first (``whole``): its total
should be close to ``cold``.

Run ``python bench/profile_fit.py [--workloads medium,diag] [--repeats 3] [--iters 10]
[--cold] [--cprofile]`` (``--cprofile``: cProfile's table of one fit per workload, by
cumulative time, the main thread only).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import pstats
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

# name: (N, D, K, covariance_type), as in ../shared/bench/peers.py
WORKLOADS = {
    "small": (150, 4, 3, "full"),
    "medium": (100_000, 8, 8, "full"),
    "wide": (200_000, 16, 16, "full"),
    "tall": (1_000_000, 2, 8, "full"),
    "diag": (500_000, 32, 32, "diag"),
}
PHASES = ("validate", "finite", "bind", "median", "start", "iterations", "rest", "fixed")
# a fresh process's loads before its first fit (--cold), in the order a fit meets them
LOADS = ("emkit", "blas", "numba", "kernel")


def make_data(N: int, D: int, K: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """peers.py's data: K Gaussian blobs, and K of its rows as the start's means."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, (K, D))
    labels = rng.integers(0, K, N)
    scales = rng.uniform(0.5, 1.5, (K, D))
    X = centers[labels] + rng.standard_normal((N, D)) * scales[labels]
    return X, X[rng.choice(N, K, replace=False)]


def estimator(X: np.ndarray, means: np.ndarray, cov: str, iters: int) -> Any:
    """peers.py's emkit call: equal weights, the rows as means, each covariance the
    data's per-column variances (their inverses as precisions), tol=0."""
    from emkit import GaussianMixture

    K = means.shape[0]
    var = X.var(0)
    prec = np.stack([np.diag(1.0 / var)] * K) if cov == "full" else np.stack([1.0 / var] * K)
    return GaussianMixture(
        K,
        covariance_type=cov,
        max_iter=iters,
        tol=0.0,
        weights_init=np.full(K, 1.0 / K),
        means_init=means,
        precisions_init=prec,
        reg_covar=1e-6,
    )


@contextmanager
def timed_phases(times: dict[str, float]) -> Iterator[None]:
    """Wrap the functions of each phase so that their wall time adds into ``times``."""
    from emkit.estimators import gaussian_mixture
    from emkit.families import gaussian
    from emkit.inference import em

    targets: list[tuple[Any, str, str]] = [
        (gaussian_mixture.GaussianMixture, "_validate_X", "validate"),
        (gaussian_mixture.GaussianMixture, "_check_initial_parameters", "validate"),
        (gaussian_mixture, "has_missing_values", "finite"),
        (gaussian_mixture, "bind_pass", "bind"),
        (gaussian, "_column_median", "median"),
        (gaussian_mixture.GaussianMixture, "_initialize", "start"),
        (em, "fit_em_restarts", "em"),
    ]

    def wrap(fn: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                times[phase] += time.perf_counter() - start
                times[f"{phase} cpu"] += time.process_time() - cpu

        return timed

    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in targets]
    try:
        for owner, name, phase in targets:
            setattr(owner, name, wrap(getattr(owner, name), phase))
        yield
    finally:
        for owner, name, fn in saved:
            setattr(owner, name, fn)


def fit_phases(X: np.ndarray, means: np.ndarray, cov: str, iters: int) -> dict[str, float]:
    """Seconds of each phase of one fit (PHASES; ``total`` the whole fit)."""
    times: dict[str, float] = defaultdict(float)
    gm = estimator(X, means, cov, iters)
    with timed_phases(times), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        gm.fit(X)
        total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    times["iterations"] = float(np.sum(gm.trace_.seconds))
    # (the driver's CPU time less the start's: the iterations')
    times["iterations cpu"] = times.pop("em cpu") - times["start cpu"]
    times["total"], times["total cpu"] = total, total_cpu
    for unit in ("", " cpu"):
        times[f"fixed{unit}"] = times[f"total{unit}"] - times[f"iterations{unit}"]
        named = sum(times[f"{p}{unit}"] for p in ("validate", "finite", "bind", "start"))
        times[f"rest{unit}"] = times[f"fixed{unit}"] - named
    return dict(times)


def warm_up() -> float:
    """Seconds of a 20,000-row fit: Numba's import and its kernels' loading (from the
    on-disk cache, or compiled)."""
    import emkit  # noqa: F401  (its own import is not the warm-up's)

    X, means = make_data(20_000, 4, 4, seed=1)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator(X, means, "full", 2).fit(X)
    return time.perf_counter() - start


def cold_child(name: str, iters: int, split: bool) -> dict[str, float]:
    """In a fresh process: seconds of each load (LOADS, CPU time as ``<load> cpu``) when
    ``split``, then of the phases of the workload's first fit."""
    times: dict[str, float] = {}
    clock = [time.perf_counter(), time.process_time()]

    def lap(load: str) -> None:
        now = [time.perf_counter(), time.process_time()]
        times[load], times[f"{load} cpu"] = now[0] - clock[0], now[1] - clock[1]
        clock[:] = now

    __import__("emkit")
    lap("emkit")
    N, D, K, cov = WORKLOADS[name]
    X, means = make_data(N, D, K)
    full: list[float] = []  # each full collection: -(its start), then its end

    def collection(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            full.append(-time.perf_counter() if phase == "start" else time.perf_counter())

    gc.callbacks.append(collection)
    if split:
        from emkit.engines.memory import _blas_controller
        from emkit.models import _fused_kernels

        clock[:] = [time.perf_counter(), time.process_time()]
        _blas_controller()
        lap("blas")
        loaded = _fused_kernels.kernels() is not None  # (None: no Numba)
        lap("numba")
        if loaded:  # the first E-step's call: a chunk of the rows (C-ordered), the layout
            rows = np.ascontiguousarray(X[:256])
            n_stats = D * (D + 3) // 2 if cov == "full" else 2 * D if cov == "diag" else D + 1
            eta = np.zeros((K, 1 + n_stats))
            _fused_kernels.gaussian_e_step(rows, np.zeros(D), eta, cov, -600.0, None)
        lap("kernel")
    times.update(fit_phases(X, means, cov, iters))
    gc.callbacks.remove(collection)
    # (starts negative, ends positive: a collection's wall time is their sum)
    times["gc"], times["gc runs"] = sum(full[: len(full) // 2 * 2]), len(full) // 2
    if split:
        times["cold"] = sum(times[k] for k in ("blas", "numba", "kernel", "total"))
        times["cold cpu"] = sum(times[f"{k} cpu"] for k in ("blas", "numba", "kernel", "total"))
    return times


def cold(names: Sequence[str], iters: int, repeats: int) -> list[dict[str, Any]]:
    """``--cold``: each workload's first fit in fresh processes, ``repeats`` of each kind
    (loads split, and whole) interleaved; the best of each phase printed."""
    env = dict(os.environ)
    columns = (*LOADS, "bind", "median", "iterations", "fixed", "total", "cold", "gc")
    print(f"{'workload':16s} " + " ".join(f"{c:>10s}" for c in columns))
    results = []
    for name in names:
        runs: dict[str, list[dict[str, float]]] = {"split": [], "whole": []}
        for _ in range(repeats):
            for kind in runs:
                command = [sys.executable, __file__, "--child", f"{name}:{iters}:{kind}"]
                out = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
                runs[kind].append(json.loads(out.stdout.splitlines()[-1]))
        results.append({"workload": name, **runs})
        for kind, kind_runs in runs.items():
            for unit in ("", " cpu"):
                cells = []
                for c in columns:
                    values = [r[c + unit] for r in kind_runs if c + unit in r]
                    cells.append(f"{min(values) * 1e3:10.1f}" if values else f"{'':10s}")
                print(f"{f'{name} {kind}{unit}':16s} " + " ".join(cells), flush=True)
    print(
        "(ms, the best of each phase over the repeats, each a fresh process; wall time, and"
        " the process's CPU time on the 'cpu' lines; cold = blas + numba + kernel + total;"
        " gc = full garbage collections from the first load on)"
    )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="medium,diag")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cold", action="store_true", help="first fits in fresh processes, loads split"
    )
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--json", help="also write every run's phases (seconds) to JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # WORKLOAD:ITERS:split|whole
    args = parser.parse_args(argv)
    if args.child:
        name, iters, kind = args.child.split(":")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            print(json.dumps(cold_child(name, int(iters), kind == "split")))
        return 0
    names = args.workloads.split(",")
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")
    if args.cold:
        if args.cprofile:
            parser.error("--cprofile profiles warm fits in this process; drop --cold")
        results = cold(names, args.iters, args.repeats)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump({"iters": args.iters, "cold": results}, fh, indent=1)
        return 0
    warm = warm_up()
    print(f"warm-up fit (Numba's import and kernels): {warm * 1e3:.1f} ms")
    header = f"{'workload':12s} " + " ".join(f"{p:>10s}" for p in (*PHASES, "total", "ms/it"))
    print(header)
    profiles = []
    report: dict[str, Any] = {"warm_up": warm, "iters": args.iters, "results": []}
    for name in names:
        N, D, K, cov = WORKLOADS[name]
        X, means = make_data(N, D, K)
        runs = [fit_phases(X, means, cov, args.iters) for _ in range(args.repeats)]
        report["results"].append({"workload": name, "runs": runs})
        for unit in ("", " cpu"):
            best = min(runs, key=lambda r: r[f"fixed{unit}"])
            per_it = min(r[f"total{unit}"] for r in runs) / args.iters
            cells = " ".join(f"{best.get(p + unit, 0.0) * 1e3:10.1f}" for p in (*PHASES, "total"))
            print(f"{name + unit:12s} {cells} {per_it * 1e3:10.1f}", flush=True)
        if args.cprofile:
            profiler = cProfile.Profile()
            gm = estimator(X, means, cov, args.iters)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                profiler.runcall(gm.fit, X)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
            profiles.append(f"--- {name}\n{out.getvalue()}")
    print(
        "(ms of wall time, and of the process's CPU time (every thread) on the 'cpu' lines;"
        " fixed = total - iterations; ms/it = best total / iters)"
    )
    for text in profiles:
        print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
