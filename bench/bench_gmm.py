"""Benchmark ``emkit.GaussianMixture`` against ``sklearn.mixture.GaussianMixture``.

Both libraries fit the same data from the same starting parameters (``weights_init``,
``means_init``, ``precisions_init`` from a few k-means iterations on a subsample) for a
fixed number of EM iterations (``tol=0``), in the same run of this script. Per workload:

* seconds per EM iteration, float64, scikit-learn vs emkit: ``(t(a + m) - t(a)) / m``
  where ``t(i)`` is the best-of-R wall time of a whole fit with ``max_iter=i``; the
  difference cancels both libraries' one-off costs (validation, initialization,
  scikit-learn's final E-step). emkit's own median ``trace_.seconds`` is a cross-check;
* the same for emkit float32 (float32 input, ``dtype="float32"``), its speed-up over
  float64 and the relative difference of the two lower bounds after the same iterations;
* the relative difference of ``lower_bound_`` between emkit float64 and scikit-learn;
* the peak memory a fit allocates beyond its input (``tracemalloc``, which NumPy reports
  its allocations to), in MiB and as a percentage of the input array's size.

Each workload runs in its own child process (memory isolation) unless ``--in-process``
(implied by ``--quick``). Run ``python bench/bench_gmm.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
MIB = float(1 << 20)

# Targets the numbers are checked against (printed as PASS / MISS after the table).
LARGE_N = 100_000  # workloads with at least this many rows are "large"
SPEEDUP_TARGET_LARGE = 5.0  # scikit-learn / emkit float64, seconds per iteration
SPEEDUP_TARGET_SMALL = 1.0  # ... on the small workloads: not slower
FLOAT32_SPEEDUP_TARGET = 2.0  # emkit float64 / emkit float32 on large workloads (issue 17)
FLOOR_TARGET = 3.0  # emkit float64 / the floor on large full-covariance workloads (issue 17)
FLOAT32_LOWER_BOUND_TARGET = 1e-4  # relative |lb32 - lb64|
AGREEMENT_TARGET = 1e-9  # relative |lb(emkit 64) - lb(sklearn)|
MEMORY_FRACTION = 0.25  # memory limit: max(25% of the input, 256 MiB)
MEMORY_FLOOR = 256 * (1 << 20)
BUSY_CORES = 0.2  # other processes' CPU use above which timings are flagged as suspect


@dataclass(frozen=True)
class Workload:
    """One benchmark case: data shape, number of components and covariance type."""

    name: str
    n: int
    d: int
    k: int
    covariance_type: str
    source: str = "synthetic"  # "synthetic" or "iris"
    full_n: int | None = None  # rows of the full-size workload this one was shrunk from

    @property
    def small(self) -> bool:
        """Whether the (full-size) workload has fewer than ``LARGE_N`` rows."""
        return (self.full_n or self.n) < LARGE_N


WORKLOADS: tuple[Workload, ...] = (
    Workload("iris", 150, 4, 3, "full", source="iris"),
    Workload("100k-8d-8k-full", 100_000, 8, 8, "full"),
    Workload("200k-16d-16k-full", 200_000, 16, 16, "full"),
    Workload("1m-2d-8k-full", 1_000_000, 2, 8, "full"),
    Workload("500k-32d-32k-diag", 500_000, 32, 32, "diag"),
)


def shrink(workload: Workload) -> Workload:
    """The ``--quick`` version of a workload: 1% of the rows (iris unchanged)."""
    if workload.source == "iris":
        return workload
    n = max(workload.n // 100, 50 * workload.k)
    return replace(workload, name=f"{workload.name}/quick", n=n, full_n=workload.n)


@dataclass(frozen=True)
class Settings:
    """How every workload is measured (shared by the parent and the child processes)."""

    iters: int = 10
    small_iters: int = 200
    base_iters: int = 2
    repeats: int = 3
    seed: int = 0
    quick: bool = False

    def iterations(self, workload: Workload) -> int:
        return self.small_iters if workload.small else self.iters


@dataclass
class Config:
    """One estimator set-up: library and floating-point precision."""

    label: str
    library: str  # "sklearn" or "emkit"
    dtype: str  # "float64" or "float32"


# Seconds to wait after a scikit-learn fit: OpenBLAS's threads spin on for a while after
# its multi-threaded calls, and the next fit timed shares the cores with them (measured:
# 100k-8d's emkit float64 iteration 1.8 ms alone, 2.6 ms right after 2-thread BLAS
# calls, 2.0 ms 0.3 s after them). Without the wait, emkit float64 (timed right after
# scikit-learn in each repeat) was slowed and emkit32's speed-up over it inflated.
BLAS_SETTLE = 0.5

CONFIGS = (
    Config("sklearn", "sklearn", "float64"),
    Config("emkit64", "emkit", "float64"),
    Config("emkit32", "emkit", "float32"),
)


@dataclass
class ConfigResult:
    """Measurements of one configuration on one workload (times in seconds)."""

    per_iter: float = float("nan")
    best_short: float = float("nan")
    best_long: float = float("nan")
    trace_median: float | None = None  # emkit only: min over repeats of median(trace_.seconds)
    lower_bound: float = float("nan")
    n_iter: int = 0
    peak_bytes: int = 0
    input_bytes: int = 0

    @property
    def peak_percent(self) -> float:
        return 100.0 * self.peak_bytes / self.input_bytes

    @property
    def memory_limit(self) -> int:
        return max(int(MEMORY_FRACTION * self.input_bytes), MEMORY_FLOOR)


@dataclass
class WorkloadResult:
    """Everything measured on one workload."""

    index: int
    workload: Workload
    iters: int
    base_iters: int
    repeats: int
    configs: dict[str, ConfigResult] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    other_cpu: float | None = None  # cores busy with other processes while timing
    floor: float | None = None  # seconds per iteration at the GEMM / bandwidth floor

    def floor_ratio(self, label: str) -> float:
        if self.floor is None or self.error is not None:
            return float("nan")
        return self.configs[label].per_iter / self.floor

    def ratio(self, slow: str, fast: str) -> float:
        a, b = self.configs[slow].per_iter, self.configs[fast].per_iter
        return a / b if b > 0 else float("nan")

    def lower_bound_rel(self, a: str, b: str) -> float:
        lb_a, lb_b = self.configs[a].lower_bound, self.configs[b].lower_bound
        return abs(lb_a - lb_b) / abs(lb_b)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for label, res in self.configs.items():
            out["configs"][label].update(
                peak_mib=res.peak_bytes / MIB,
                peak_percent_of_input=res.peak_percent,
                memory_limit_mib=res.memory_limit / MIB,
            )
        if self.error is None:
            out["sklearn_over_emkit64"] = self.ratio("sklearn", "emkit64")
            out["emkit64_over_emkit32"] = self.ratio("emkit64", "emkit32")
            out["lower_bound_rel_emkit64_sklearn"] = self.lower_bound_rel("emkit64", "sklearn")
            out["lower_bound_rel_emkit32_emkit64"] = self.lower_bound_rel("emkit32", "emkit64")
            out["sklearn_over_floor"] = self.floor_ratio("sklearn")
            out["emkit64_over_floor"] = self.floor_ratio("emkit64")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkloadResult:
        known = set(ConfigResult.__dataclass_fields__)
        configs = {
            label: ConfigResult(**{k: v for k, v in res.items() if k in known})
            for label, res in data["configs"].items()
        }
        return cls(
            index=data["index"],
            workload=Workload(**data["workload"]),
            iters=data["iters"],
            base_iters=data["base_iters"],
            repeats=data["repeats"],
            configs=configs,
            warnings=list(data["warnings"]),
            error=data["error"],
            other_cpu=data.get("other_cpu"),
            floor=data.get("floor"),
        )


# -- data and starting parameters ------------------------------------------------------


def make_data(workload: Workload, seed: int) -> Array:
    """The workload's data, float64 and C-contiguous.

    Synthetic data come from a Gaussian mixture with Dirichlet(5) weights, means drawn
    from N(0, 5^2 I) and random covariances: a random rotation of standard deviations in
    [0.3, 2] (``full``) or independent standard deviations in [0.3, 2] (``diag``).
    """
    if workload.source == "iris":
        from sklearn.datasets import load_iris

        return np.ascontiguousarray(load_iris().data, dtype=np.float64)
    n, d, k = workload.n, workload.d, workload.k
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(0.0, 5.0, size=(k, d))
    counts = rng.multinomial(n, weights)
    X = np.empty((n, d))
    start = 0
    for j, count in enumerate(counts):
        std = rng.uniform(0.3, 2.0, size=d)
        if workload.covariance_type == "full":
            Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
            root = Q * std  # covariance Q diag(std^2) Q^T = root root^T
        else:
            root = np.diag(std)
        X[start : start + count] = rng.standard_normal((count, d)) @ root.T + means[j]
        start += count
    rng.shuffle(X)  # rows in random order
    return X


def starting_parameters(
    X: Array, k: int, covariance_type: str, seed: int, subsample: int = 20_000
) -> dict[str, Array]:
    """``weights_init``, ``means_init`` and ``precisions_init`` from 5 k-means iterations.

    k-means runs on a random subsample of at most ``subsample`` rows; each cluster's
    empirical covariance (diagonal for ``diag``), slightly shrunk towards its diagonal
    and regularized, gives the precision.
    """
    from sklearn.cluster import KMeans

    n, d = X.shape
    rng = np.random.default_rng(seed + 1)
    sub = X[np.sort(rng.choice(n, size=min(n, subsample), replace=False))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KMeans(n_clusters=k, n_init=1, max_iter=5, random_state=seed).fit(sub)
    labels = km.labels_
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    weights = (counts + 1.0) / (counts.sum() + k)
    means = np.asarray(km.cluster_centers_, dtype=np.float64)
    pooled = np.cov(sub, rowvar=False, bias=True).reshape(d, d)
    precisions = np.empty((k, d, d) if covariance_type == "full" else (k, d))
    for j in range(k):
        pts = sub[labels == j]
        cov = np.cov(pts, rowvar=False, bias=True).reshape(d, d) if len(pts) > d else pooled
        cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov)) + 1e-6 * np.eye(d)
        if covariance_type == "full":
            prec = np.linalg.inv(cov)
            precisions[j] = 0.5 * (prec + prec.T)
        else:
            precisions[j] = 1.0 / np.diag(cov)
    return {"weights_init": weights, "means_init": means, "precisions_init": precisions}


# -- measuring -------------------------------------------------------------------------


def make_estimator(
    config: Config, workload: Workload, init: dict[str, Array], max_iter: int
) -> Any:
    """A fresh estimator of ``config`` for ``max_iter`` EM iterations from ``init``."""
    common: dict[str, Any] = {
        "n_components": workload.k,
        "covariance_type": workload.covariance_type,
        "tol": 0.0,
        "max_iter": max_iter,
        "reg_covar": 1e-6,
        # every parameter is given, so this only decides what is computed and discarded
        "init_params": "random_from_data",
        "random_state": 0,
        **init,
    }
    if config.library == "sklearn":
        from sklearn.mixture import GaussianMixture

        return GaussianMixture(**common)
    from emkit import GaussianMixture as EmkitGaussianMixture

    return EmkitGaussianMixture(**common, dtype=config.dtype)


def timed_fit(estimator: Any, X: NDArray[Any], notes: list[str]) -> float:
    """Fit and return the wall seconds; scikit-learn's ConvergenceWarning is silenced.
    After a scikit-learn fit, waits ``BLAS_SETTLE`` seconds (untimed) for its BLAS
    threads to stop."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        estimator.fit(X)
        seconds = time.perf_counter() - start
    if type(estimator).__module__.startswith("sklearn"):
        time.sleep(BLAS_SETTLE)
    for w in caught:
        message = f"{type(estimator).__module__.split('.')[0]}: {w.category.__name__}: {w.message}"
        if message not in notes:
            notes.append(message)
    return seconds


def peak_fit_memory(estimator: Any, X: NDArray[Any], notes: list[str]) -> int:
    """Peak bytes traced by ``tracemalloc`` during a fit (tracing starts after the data)."""
    gc.collect()
    tracemalloc.start()
    try:
        timed_fit(estimator, X, notes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return int(peak)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_snapshot() -> tuple[float, float, float] | None:
    """(wall, machine busy CPU seconds, this process's CPU seconds), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = (sum(fields[:8]) - idle) / tick  # user .. steal, without guest (counted in user)
    own = os.times()
    return time.perf_counter(), busy, own.user + own.system


def other_cpu_load(
    start: tuple[float, float, float] | None, end: tuple[float, float, float] | None
) -> float | None:
    """Average number of cores other processes kept busy between two snapshots."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    others = (end[1] - start[1]) - (end[2] - start[2])
    return max(others, 0.0) / (end[0] - start[0])


# -- the floor: the two matrix products at the GEMM peak, passes at memory bandwidth -----

# Passes over the N x K responsibilities an iteration cannot avoid: write log_prob, read
# it for the max and exp (in place), read it for the sums, scale it, read it in gemm2.
FLOOR_PASSES = 5


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Best CPU seconds of this thread over ``repeats`` calls of ``fn`` (one BLAS thread
    runs in the calling one): on a shared machine, wall time would count other
    processes' turns and lower the floor's rates."""
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return min(times)


def gemm_peak(repeats: int = 5, n: int = 1024, dtype: Any = np.float64) -> float:
    """Flops per second of one BLAS thread on an ``n x n`` product in ``dtype``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype=dtype)
    with threadpool_limits(1, user_api="blas"):
        seconds = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * n**3 / seconds


def memory_bandwidth(repeats: int = 5, n_bytes: int = 256 << 20) -> float:
    """Bytes per second of one thread copying a large array (read and write counted)."""
    a = np.ones(n_bytes // 8)
    out = np.empty_like(a)
    seconds = _best_seconds(lambda: np.copyto(out, a), repeats)
    return 2.0 * n_bytes / seconds


def n_statistics(workload: Workload) -> int:
    """Sufficient statistics per row: x and packed x x^T (full), x and x^2 (diag),
    x (tied: x x^T is summed once), x and |x|^2 (spherical)."""
    d = workload.d
    return {
        "full": d + d * (d + 1) // 2,
        "diag": 2 * d,
        "tied": d,
        "spherical": d + 1,
    }[workload.covariance_type]


def floor_seconds(workload: Workload, gemm_flops: float, bandwidth: float, cores: int) -> float:
    """The floor of one EM iteration: the two products, ``4 N K S`` flops (S statistics a
    row) at ``gemm_flops`` a core on ``cores`` cores, plus ``FLOOR_PASSES`` passes over the
    N x K float64 responsibilities at ``bandwidth`` bytes a second (shared by the cores)."""
    n, k = workload.n, workload.k
    gemm = 4.0 * n * k * n_statistics(workload) / (gemm_flops * cores)
    return gemm + FLOOR_PASSES * n * k * 8.0 / bandwidth


def run_workload(index: int, workload: Workload, settings: Settings) -> WorkloadResult:
    """Measure every configuration on one workload."""
    m, a = settings.iterations(workload), settings.base_iters
    result = WorkloadResult(index, workload, m, a, settings.repeats)
    tag = f"[{index}] {workload.name}"
    t0 = time.perf_counter()
    X64 = make_data(workload, settings.seed + index)
    init = starting_parameters(X64, workload.k, workload.covariance_type, settings.seed)
    X32 = X64.astype(np.float32)
    inputs = {"float64": X64, "float32": X32}
    log(f"{tag}: data {X64.shape} and start ready in {time.perf_counter() - t0:.1f} s")

    def make(config: Config, max_iter: int) -> Any:
        return make_estimator(config, workload, init, max_iter)

    shorts: dict[str, list[float]] = {c.label: [] for c in CONFIGS}
    longs: dict[str, list[float]] = {c.label: [] for c in CONFIGS}
    medians: dict[str, list[float]] = {c.label: [] for c in CONFIGS}
    final: dict[str, Any] = {}
    for config in CONFIGS:  # warm-up: imports, thread pools, caches
        timed_fit(make(config, 1), inputs[config.dtype], result.warnings)
    cpu_start = cpu_snapshot()
    # Repeats outer, configurations inner: a burst of load elsewhere hits all alike.
    for rep in range(settings.repeats):
        for config in CONFIGS:
            X = inputs[config.dtype]
            shorts[config.label].append(timed_fit(make(config, a), X, result.warnings))
            estimator = make(config, a + m)
            longs[config.label].append(timed_fit(estimator, X, result.warnings))
            if hasattr(estimator, "trace_"):
                medians[config.label].append(float(np.median(estimator.trace_.seconds)))
            final[config.label] = estimator
        log(f"{tag}: repeat {rep + 1}/{settings.repeats} done")
    result.other_cpu = other_cpu_load(cpu_start, cpu_snapshot())

    for config in CONFIGS:
        short, long = min(shorts[config.label]), min(longs[config.label])
        estimator = final[config.label]
        result.configs[config.label] = ConfigResult(
            per_iter=(long - short) / m,
            best_short=short,
            best_long=long,
            trace_median=min(medians[config.label]) if medians[config.label] else None,
            lower_bound=float(estimator.lower_bound_),
            n_iter=int(estimator.n_iter_),
            input_bytes=int(inputs[config.dtype].nbytes),
        )
    final.clear()

    mem_iters = min(a + m, 3)
    for config in CONFIGS:
        estimator = make(config, mem_iters)
        peak = peak_fit_memory(estimator, inputs[config.dtype], result.warnings)
        result.configs[config.label].peak_bytes = peak
        del estimator
    log(f"{tag}: done in {time.perf_counter() - t0:.1f} s")
    return result


def run_in_child(index: int, workload: Workload, settings: Settings) -> WorkloadResult:
    """Run one workload in a fresh Python process and read its result back."""
    with tempfile.TemporaryDirectory(prefix="bench_gmm_") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            str(index),
            "--child-out",
            str(out),
            "--iters",
            str(settings.iters),
            "--small-iters",
            str(settings.small_iters),
            "--base-iters",
            str(settings.base_iters),
            "--repeats",
            str(settings.repeats),
            "--seed",
            str(settings.seed),
        ]
        if settings.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, check=False)
        if proc.returncode != 0 or not out.exists():
            result = WorkloadResult(index, workload, settings.iterations(workload), 0, 0)
            result.error = f"child process exited with status {proc.returncode}"
            return result
        return WorkloadResult.from_dict(json.loads(out.read_text()))


# -- reporting -------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Core count, library versions and the BLAS / OpenMP libraries in use."""
    import sklearn
    from threadpoolctl import threadpool_info

    import emkit

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "emkit": emkit.__version__,
        "threadpools": [
            {
                key: info.get(key)
                for key in ("user_api", "internal_api", "version", "num_threads", "prefix")
            }
            | {"architecture": info.get("architecture")}
            for info in threadpool_info()
        ],
    }


def _fmt(value: float | None, spec: str) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return format(value, spec)


def _memory_ok(result: WorkloadResult) -> bool:
    return all(
        result.configs[c].peak_bytes <= result.configs[c].memory_limit
        for c in ("emkit64", "emkit32")
    )


def _mem(res: ConfigResult) -> str:
    return f"{res.peak_bytes / MIB:.1f} ({res.peak_percent:.0f}%)"


def _trace_ratio(result: WorkloadResult) -> float:
    """emkit64's median ``trace_.seconds`` over emkit32's."""
    t64, t32 = (result.configs[label].trace_median for label in ("emkit64", "emkit32"))
    return t64 / t32 if t64 and t32 else float("nan")


COLUMNS: tuple[tuple[str, Callable[[WorkloadResult], str]], ...] = (
    ("#", lambda r: str(r.index)),
    ("workload", lambda r: r.workload.name),
    ("N", lambda r: str(r.workload.n)),
    ("D", lambda r: str(r.workload.d)),
    ("K", lambda r: str(r.workload.k)),
    ("cov", lambda r: r.workload.covariance_type),
    ("m", lambda r: str(r.iters)),
    ("sk ms/it", lambda r: _fmt(1e3 * r.configs["sklearn"].per_iter, ".3f")),
    ("em64 ms/it", lambda r: _fmt(1e3 * r.configs["emkit64"].per_iter, ".3f")),
    ("sk/em64", lambda r: _fmt(r.ratio("sklearn", "emkit64"), ".2f")),
    ("floor ms", lambda r: _fmt(1e3 * (r.floor if r.floor is not None else np.nan), ".3f")),
    ("sk/floor", lambda r: _fmt(r.floor_ratio("sklearn"), ".1f")),
    ("em64/floor", lambda r: _fmt(r.floor_ratio("emkit64"), ".1f")),
    ("em64 trace", lambda r: _fmt(1e3 * (r.configs["emkit64"].trace_median or np.nan), ".3f")),
    ("em32 ms/it", lambda r: _fmt(1e3 * r.configs["emkit32"].per_iter, ".3f")),
    ("em64/em32", lambda r: _fmt(r.ratio("emkit64", "emkit32"), ".2f")),
    ("trace 64/32", lambda r: _fmt(_trace_ratio(r), ".2f")),
    ("lb em64~sk", lambda r: _fmt(r.lower_bound_rel("emkit64", "sklearn"), ".1e")),
    ("lb em32~64", lambda r: _fmt(r.lower_bound_rel("emkit32", "emkit64"), ".1e")),
    ("mem sk MiB", lambda r: _mem(r.configs["sklearn"])),
    ("mem em64 MiB", lambda r: _mem(r.configs["emkit64"])),
    ("mem em32 MiB", lambda r: _mem(r.configs["emkit32"])),
    ("limit MiB", lambda r: f"{r.configs['emkit64'].memory_limit / MIB:.0f}"),
    ("em mem ok", lambda r: "yes" if _memory_ok(r) else "NO"),
    ("other cpu", lambda r: _fmt(r.other_cpu, ".2f")),
)

LEGEND = """\
m: timed EM iterations; ms/it: (t(a+m) - t(a)) / m, best of R fits each, in milliseconds
em64 trace: emkit's median trace_.seconds (ms), a cross-check of em64 ms/it
sk/em64, em64/em32: speed-up (ratio of ms/it)
trace 64/32: em64 trace over em32's (float32's speed-up from the median iteration, steadier
     than em64/em32 where an iteration takes ~1 ms and t(a+m) - t(a) is a few of them)
floor ms: 4 N K S flops (S statistics a row) at the measured one-thread GEMM peak x usable
     cores, plus {passes} passes over N x K float64 at the measured copy bandwidth (both in
     CPU time of one thread);
     sk/floor, em64/floor: ms/it over the floor (1 = at the floor)
lb x~y: |lower_bound_x - lower_bound_y| / |lower_bound_y| after the same a+m iterations
mem: peak tracemalloc bytes during a fit beyond the input, MiB (% of the input array: float64
     for sk and em64, float32 for em32); limit: max(25% of the input, 256 MiB)
other cpu: cores kept busy by other processes while timing (> 0.2: timings are suspect)"""


def format_table(results: Sequence[WorkloadResult]) -> str:
    """One aligned table: a row per workload, numbers right-aligned."""
    ok = [r for r in results if r.error is None]
    rows = [[name for name, _ in COLUMNS]] + [[cell(r) for _, cell in COLUMNS] for r in ok]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    left = {"workload", "cov"}
    lines = []
    for row in rows:
        cells = [
            c.ljust(w) if name in left else c.rjust(w)
            for c, w, (name, _) in zip(row, widths, COLUMNS, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * len(lines[0]))
    for r in results:
        if r.error is not None:
            lines.append(f"[{r.index}] {r.workload.name}: FAILED ({r.error})")
    return "\n".join(lines)


def target_checks(result: WorkloadResult) -> list[tuple[str, bool, str]]:
    """(name, passed, detail) for every target that applies to the workload."""
    checks: list[tuple[str, bool, str]] = []
    speed = result.ratio("sklearn", "emkit64")
    goal = SPEEDUP_TARGET_SMALL if result.workload.small else SPEEDUP_TARGET_LARGE
    checks.append(
        ("float64 speed-up", speed >= goal, f"{_fmt(speed, '.2f')}x (target >= {goal:g}x)")
    )
    agree = result.lower_bound_rel("emkit64", "sklearn")
    checks.append(
        (
            "agreement",
            agree <= AGREEMENT_TARGET,
            f"{_fmt(agree, '.1e')} (target <= {AGREEMENT_TARGET:g})",
        )
    )
    if not result.workload.small:
        f32 = result.ratio("emkit64", "emkit32")
        checks.append(
            (
                "float32 speed-up",
                f32 >= FLOAT32_SPEEDUP_TARGET,
                f"{_fmt(f32, '.2f')}x (target >= {FLOAT32_SPEEDUP_TARGET:g}x)",
            )
        )
        if result.workload.covariance_type == "full" and result.floor is not None:
            over = result.floor_ratio("emkit64")
            checks.append(
                (
                    "floor",
                    over <= FLOOR_TARGET,
                    f"{_fmt(over, '.1f')}x the floor (target <= {FLOOR_TARGET:g}x)",
                )
            )
        lb = result.lower_bound_rel("emkit32", "emkit64")
        checks.append(
            (
                "float32 lower bound",
                lb <= FLOAT32_LOWER_BOUND_TARGET,
                f"{_fmt(lb, '.1e')} (target <= {FLOAT32_LOWER_BOUND_TARGET:g})",
            )
        )
    for label in ("emkit64", "emkit32"):
        res = result.configs[label]
        checks.append(
            (
                f"{label} memory",
                res.peak_bytes <= res.memory_limit,
                f"{res.peak_bytes / MIB:.1f} MiB (limit {res.memory_limit / MIB:.0f} MiB)",
            )
        )
    return checks


def report(results: Sequence[WorkloadResult], env: dict[str, Any], quick: bool = False) -> str:
    """The final report: table, legend, target checks, warnings and the environment."""
    parts = [format_table(results), "", LEGEND.format(passes=FLOOR_PASSES), ""]
    if quick:
        parts.append("Targets (--quick: shrunk sizes, so the checks below mean little):")
    else:
        parts.append("Targets:")
    for r in results:
        if r.error is not None:
            continue
        misses = [f"{name} {detail}" for name, ok, detail in target_checks(r) if not ok]
        status = "all met" if not misses else "MISSED: " + "; ".join(misses)
        parts.append(f"  [{r.index}] {r.workload.name}: {status}")
    busy = [r for r in results if r.other_cpu is not None and r.other_cpu > BUSY_CORES]
    if busy:
        parts.append(
            "  Other processes used the CPU during: "
            + ", ".join(f"[{r.index}] ({r.other_cpu:.2f} cores)" for r in busy)
            + "; re-run these workloads on an idle machine."
        )
    notes = [f"  [{r.index}] {w}" for r in results for w in r.warnings]
    if notes:
        parts += ["", "Warnings raised during fits:", *notes]
    blas = ", ".join(
        " ".join(filter(None, (p["internal_api"], p["version"])))
        + f" ({p['user_api']}, {p['num_threads']} threads"
        + (f", {p['architecture']}" if p.get("architecture") else "")
        + f", {p['prefix']})"
        for p in env["threadpools"]
    )
    parts += [
        "",
        f"Machine: {env['cpu_count']} cores ({env['usable_cores']} usable), {env['machine']}; "
        f"Python {env['python']}, numpy {env['numpy']}, scikit-learn {env['sklearn']}, "
        f"emkit {env['emkit']}",
        f"Thread pools: {blas}",
        f"Floor inputs (measured at the start of this run, one thread, CPU time): GEMM peak "
        f"{env['gemm_flops'] / 1e9:.1f} GFLOP/s float64, copy bandwidth "
        f"{env['bandwidth'] / 1e9:.1f} GB/s",
    ]
    return "\n".join(parts)


# -- command line ----------------------------------------------------------------------


def select_workloads(spec: str) -> list[int]:
    """Indices from ``all``, ``small``, ``large``, or a comma list of indices and names."""
    names = {w.name: i for i, w in enumerate(WORKLOADS)}
    chosen: list[int] = []
    for token in (t.strip() for t in spec.split(",")):
        if token == "all":
            picked = list(range(len(WORKLOADS)))
        elif token == "small":
            picked = [i for i, w in enumerate(WORKLOADS) if w.small]
        elif token == "large":
            picked = [i for i, w in enumerate(WORKLOADS) if not w.small]
        elif token.isdigit() and int(token) < len(WORKLOADS):
            picked = [int(token)]
        elif token in names:
            picked = [names[token]]
        else:
            raise argparse.ArgumentTypeError(
                f"unknown workload {token!r}: use all, small, large, an index 0-"
                f"{len(WORKLOADS) - 1} or one of {', '.join(names)}"
            )
        chosen += [i for i in picked if i not in chosen]
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    workloads = "\n".join(
        f"  {i}: {w.name} (N={w.n}, D={w.d}, K={w.k}, {w.covariance_type})"
        for i, w in enumerate(WORKLOADS)
    )
    parser = argparse.ArgumentParser(
        description="Benchmark emkit.GaussianMixture against sklearn.mixture.GaussianMixture.",
        epilog=f"workloads:\n{workloads}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workloads",
        type=select_workloads,
        default="all",
        help="comma list of indices, names, 'small' or 'large' (default: all)",
    )
    parser.add_argument("--iters", type=int, default=None, help="timed EM iterations m (10)")
    parser.add_argument(
        "--small-iters",
        type=int,
        default=None,
        help=f"timed EM iterations on workloads with N < {LARGE_N} (200)",
    )
    parser.add_argument(
        "--base-iters", type=int, default=2, help="iterations a of the baseline fit (2)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="best of R fits (3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (0)")
    parser.add_argument("--json", type=Path, default=None, help="also write results to PATH")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1%% of the rows, m=3 (20 small), R=1, in one process",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run every workload in this process instead of one child process each",
    )
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.in_process = True
    defaults = (3, 20, 1) if args.quick else (10, 200, 3)
    for name, default in zip(("iters", "small_iters", "repeats"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.base_iters < 1:
        parser.error("--base-iters must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected workloads and print the table; return the exit status."""
    args = parse_args(argv)
    settings = Settings(
        iters=args.iters,
        small_iters=args.small_iters,
        base_iters=args.base_iters,
        repeats=args.repeats,
        seed=args.seed,
        quick=args.quick,
    )

    def workload(index: int) -> Workload:
        return shrink(WORKLOADS[index]) if settings.quick else WORKLOADS[index]

    if args.child is not None:  # one workload, on behalf of a parent process
        result = run_workload(args.child, workload(args.child), settings)
        args.child_out.write_text(json.dumps(result.to_dict()))
        return 0

    env = environment()
    env["gemm_flops"], env["bandwidth"] = gemm_peak(), memory_bandwidth()
    log(
        f"bench_gmm: {len(args.workloads)} workload(s), m={settings.iters} "
        f"({settings.small_iters} small), a={settings.base_iters}, R={settings.repeats}, "
        f"{'in process' if args.in_process else 'one child process each'}"
    )
    results = []
    for index in args.workloads:
        run = run_workload if args.in_process else run_in_child
        result = run(index, workload(index), settings)
        result.floor = floor_seconds(
            result.workload, env["gemm_flops"], env["bandwidth"], env["usable_cores"]
        )
        results.append(result)
    print(report(results, env, settings.quick), flush=True)
    if args.json is not None:
        payload = {
            "environment": env,
            "settings": asdict(settings),
            "results": [r.to_dict() for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=2))
        log(f"results written to {args.json}")
    return 1 if any(r.error is not None for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
