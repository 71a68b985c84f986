"""Peak memory of a default mixture fit beyond its input, measured in a child process.

For each workload (those of ``bench_gmm.py``: iris-sized, then synthetic mixtures up to
500,000 x 32), a child process makes the data, then fits a default estimator
(``GaussianMixture(K, covariance_type=...)``, default k-means initialization; with
``--estimator``, any mixture estimator's default fit: ``mixture-model``, ``bgm``,
``student-t``, ``mppca``, ``mfa``, ``kmeans``, and ``poisson``, ``bernoulli``,
``categorical`` on counts, 0/1 values or codes of the same n x d) and reports:

* **RSS growth**: the process's peak resident set size during the fit minus its resident
  size just before it (Linux: the peak is reset through ``/proc/self/clear_refs`` after the
  data exist), in MiB and as a percentage of the input array;
* **tracemalloc peak**: the peak bytes NumPy and Python allocated during the fit (a second
  child, as tracing slows the fit);
* the median seconds per EM iteration (``trace_.seconds``; noisy on a loaded machine);
* with ``--stream``, the same fit from the data written to a ``.npy`` file and opened with
  :func:`emkit.io.open_table` (the input then is not in memory; the growth is compared with
  the array's size all the same).

The limit checked is the issue's: at most max(25% of the input, 256 MiB) beyond the input.
``max_iter`` is 10 by default: the iterations' memory does not grow with their number.

    python bench/bench_memory.py                      # every workload
    python bench/bench_memory.py --workloads 4 --stream
    python bench/bench_memory.py --quick              # 1% of the rows, a smoke run
    python bench/bench_memory.py --workloads 5 --stream --format parquet   # 4M x 16
    python bench/bench_memory.py --estimator all --no-tracemalloc   # every estimator
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIB = float(1 << 20)
MEMORY_FRACTION = 0.25
MEMORY_FLOOR = 256 * (1 << 20)


@dataclass(frozen=True)
class Workload:
    name: str
    n: int
    d: int
    k: int
    covariance: str


WORKLOADS = [
    Workload("iris-like", 150, 4, 3, "full"),
    Workload("100k-8d-8k-full", 100_000, 8, 8, "full"),
    Workload("200k-16d-16k-full", 200_000, 16, 16, "full"),
    Workload("1M-2d-8k-full", 1_000_000, 2, 8, "full"),
    Workload("500k-32d-32k-diag", 500_000, 32, 32, "diag"),
]
# the streaming target (4,000,000 x 16, K = 8, full): by index, not in "all"
STREAM_TARGET = Workload("4M-16d-8k-full", 4_000_000, 16, 8, "full")


# --estimator: what a default fit of each mixture estimator is, and the data it reads
# (discrete families: counts, 0/1 or codes of the workload's n x d, as float64)
ESTIMATORS = (
    "gmm",
    "mixture-model",
    "poisson",
    "bernoulli",
    "categorical",
    "bgm",
    "student-t",
    "mppca",
    "mfa",
    "kmeans",
)
DISCRETE = ("poisson", "bernoulli", "categorical")


def make_data(w: Workload, seed: int = 0, estimator: str = "gmm") -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, w.k, w.n)
    if estimator == "poisson":
        rates = rng.uniform(0.5, 10.0, (w.k, w.d))
        return rng.poisson(rates[labels]).astype(np.float64)
    if estimator in ("bernoulli", "categorical"):
        levels = 2 if estimator == "bernoulli" else 4
        p = rng.dirichlet(np.ones(levels), (w.k, w.d))  # (k, d, levels)
        cumulative = p.cumsum(axis=2)[labels]  # (n, d, levels): rows of every cluster
        draws = (rng.uniform(size=(w.n, w.d, 1)) > cumulative).sum(axis=2)
        del cumulative
        return np.minimum(draws, levels - 1).astype(np.float64)
    centers = rng.normal(0, 5, (w.k, w.d))
    X = rng.standard_normal((w.n, w.d))
    X += centers[labels]
    return X


def make_estimator(estimator: str, w: Workload, max_iter: int) -> Any:
    """The default fit of ``estimator`` on workload ``w`` (a fixed number of iterations)."""
    import emkit

    common: dict[str, Any] = {"max_iter": max_iter, "tol": 0.0, "random_state": 0}
    if estimator == "gmm":
        return emkit.GaussianMixture(w.k, covariance_type=w.covariance, **common)
    if estimator == "mixture-model":
        from emkit.families import Gaussian

        return emkit.MixtureModel(Gaussian(w.covariance), w.k, **common)
    if estimator == "poisson":
        return emkit.PoissonMixture(w.k, **common)
    if estimator == "bernoulli":
        return emkit.BernoulliMixture(w.k, **common)
    if estimator == "categorical":
        return emkit.CategoricalMixture(w.k, **common)
    if estimator == "bgm":
        return emkit.BayesianGaussianMixture(
            n_components=w.k, covariance_type=w.covariance, **common
        )
    if estimator == "student-t":
        return emkit.StudentTMixture(w.k, covariance_type=w.covariance, **common)
    if estimator in ("mppca", "mfa"):
        kind = emkit.MixtureOfPPCA if estimator == "mppca" else emkit.MixtureOfFactorAnalyzers
        return kind(w.k, n_factors=max(1, min(2, w.d - 1)), **common)
    return emkit.KMeans(w.k, max_iter=max_iter, tol=0.0, random_state=0)


def rss() -> int:
    """This process's resident set size in bytes (Linux; 0 elsewhere)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_rss() -> int:
    """This process's peak resident set size in bytes since the last :func:`reset_peak`."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> bool:
    """The process's peak RSS set to its current RSS (Linux); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def child(
    w: Workload, max_iter: int, mode: str, stream: bool, fmt: str, estimator: str = "gmm"
) -> dict[str, Any]:
    """Run in the child: one fit, its memory."""
    X = make_data(w, estimator=estimator)
    source: Any = X
    tmp = None
    if stream:
        from emkit.io import open_table

        tmp = Path(tempfile.mkdtemp()) / f"data.{fmt}"
        if fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            columns = {f"x{j}": X[:, j] for j in range(X.shape[1])}
            pq.write_table(pa.table(columns), tmp, row_group_size=1 << 16)
        else:
            np.save(tmp, X)
        del X
        gc.collect()
        source = open_table(tmp)
    gm = make_estimator(estimator, w, max_iter)
    gc.collect()
    start = time.perf_counter()
    if mode == "rss":
        reset_peak()
        before = rss()
        gm.fit(source)
        grown = peak_rss() - before
    else:
        tracemalloc.start()
        gm.fit(source)
        grown = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    if tmp is not None:
        tmp.unlink()
    per_iteration = float(np.median(gm.trace_.seconds)) if gm.n_iter_ else float("nan")
    objective = getattr(gm, "lower_bound_", None)
    return {
        "bytes": int(grown),
        "seconds": seconds,
        "seconds_per_iteration": per_iteration,
        "lower_bound": float(-gm.inertia_ if objective is None else objective),
    }


def run_child(
    w: Workload, max_iter: int, mode: str, stream: bool, fmt: str, estimator: str = "gmm"
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps(asdict(w)),
        "--max-iter",
        str(max_iter),
        "--mode",
        mode,
        "--format",
        fmt,
        "--estimator",
        estimator,
    ] + (["--stream"] if stream else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"the child for {w.name} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default="all", help="indices, e.g. 0,4 (default all)")
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1%% of the rows")
    parser.add_argument("--stream", action="store_true", help="also fit from a .npy file")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--format", choices=("npy", "parquet"), default="npy")
    parser.add_argument(
        "--estimator",
        default="gmm",
        help=f"comma-separated, or 'all': {', '.join(ESTIMATORS)} (default gmm)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="rss", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        w = Workload(**json.loads(args.child))
        print(
            json.dumps(child(w, args.max_iter, args.mode, args.stream, args.format, args.estimator))
        )
        return 0
    estimators = ESTIMATORS if args.estimator == "all" else tuple(args.estimator.split(","))
    for name in estimators:
        if name not in ESTIMATORS:
            parser.error(f"--estimator {name!r}: choose among {', '.join(ESTIMATORS)} or 'all'")
    every = [*WORKLOADS, STREAM_TARGET]
    chosen = (
        WORKLOADS if args.workloads == "all" else [every[int(i)] for i in args.workloads.split(",")]
    )
    if args.quick:
        chosen = [
            Workload(w.name, max(w.n // 100, 10 * w.k), w.d, w.k, w.covariance) for w in chosen
        ]
    rows = []
    header = f"{'estimator':14s} {'workload':22s} {'input MiB':>9s} {'how':>7s} "
    header += f"{'RSS +MiB':>9s} {'% input':>8s} "
    header += f"{'traced MiB':>10s} {'limit MiB':>9s} {'ok':>4s} {'s/iter':>7s}"
    print(header)
    for estimator, w, stream in (
        (e, w, s)
        for e in estimators
        for w in chosen
        for s in ([False, True] if args.stream else [False])
    ):
        size = w.n * w.d * 8
        limit = max(MEMORY_FRACTION * size, MEMORY_FLOOR)
        rss = run_child(w, args.max_iter, "rss", stream, args.format, estimator)
        traced = (
            None
            if args.no_tracemalloc
            else run_child(w, args.max_iter, "trace", stream, args.format, estimator)
        )
        how = "stream" if stream else "memory"
        row = {
            "estimator": estimator,
            "workload": w.name,
            "how": how,
            "input_bytes": size,
            "rss_growth_bytes": rss["bytes"],
            "traced_peak_bytes": None if traced is None else traced["bytes"],
            "limit_bytes": limit,
            "seconds": rss["seconds"],
            "seconds_per_iteration": rss["seconds_per_iteration"],
            "lower_bound": rss["lower_bound"],
            "within_limit": rss["bytes"] <= limit,
        }
        rows.append(row)
        traced_text = "-" if traced is None else f"{traced['bytes'] / MIB:10.1f}"
        print(
            f"{estimator:14s} {w.name:22s} {size / MIB:9.1f} {how:>7s} {rss['bytes'] / MIB:9.1f} "
            f"{100 * rss['bytes'] / size:8.1f} {traced_text:>10s} {limit / MIB:9.1f} "
            f"{'PASS' if row['within_limit'] else 'MISS':>4s} "
            f"{rss['seconds_per_iteration']:7.3f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
