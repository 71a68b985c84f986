"""Where one EM iteration of ``emkit.GaussianMixture`` spends its time, against a floor.

For each workload of ``bench_gmm.py`` (issue 17's table), from the parameters after one
EM iteration, this script times the phases of the E-step chunk by chunk on one thread
(BLAS held to one thread, as the engine holds it), in CPU time of that thread, which
other processes' load on a shared machine disturbs far less than wall time:

* ``prepare``: centring the rows and laying them out feature-major;
* ``stats``: the statistics build, T(x) (for full covariances, x and packed x x^T);
* ``gemm1``: the first matrix product, ``log_prob = T @ eta.T`` (minus log_norm);
* ``softmax``: max, exp, sum and scaling of the responsibilities (log-sum-exp), compiled
  when Numba is installed (:mod:`emkit.models._softmax_kernels`); ``np smax`` times
  NumPy's path on a copy of the same block in the same run (not part of the sum);
* ``gemm2``: the second matrix product, ``S = resp.T @ T``, and ``N_k``;
* ``other``: the far-row check and the float64 sums;
* ``fused``: the same E-step in one compiled pass where it applies (full covariances,
  Numba installed: :mod:`emkit.models._fused_kernels`, the statistics, both products and
  the softmax on tiles of rows in cache), which the engine then runs instead of the
  phases above (not part of their sum; 0 where it does not apply);

then the whole E-step through the engine on one thread (the difference from the sum of
the phases is the chunk overhead: slicing, Python calls, combining) and on every core
(``threads``: its ideal is the one-thread time divided by the cores; the rest is thread
idle, GIL waits and memory-bandwidth contention), and the M-step.

The floor of an iteration: the two products, ``4 N K S`` flops (``S`` statistics per row,
``D + D (D + 1) / 2`` for full covariances, ``2 D`` for diagonal ones) at the measured
one-thread GEMM peak divided over the cores, plus ``FLOOR_PASSES`` passes over the ``N x K``
responsibilities at the measured memory bandwidth. Both are measured here, in the same
run. Timings are wall clock: on a loaded machine every number is noisy, ratios in one run
less so. ``--quick`` runs 1% of the rows for a smoke test.

    python bench/profile_iteration.py [--quick] [--workloads 1,2] [--repeats 3] [--json P]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gmm import (
    FLOOR_PASSES,
    WORKLOADS,
    Workload,
    floor_seconds,
    gemm_peak,
    make_data,
    memory_bandwidth,
    n_statistics,
    shrink,
    starting_parameters,
)

PHASES = ("prepare", "stats", "gemm1", "softmax", "gemm2", "other")


def best(
    fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Best seconds (by ``clock``) of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return min(times)


def fitted_plan(workload: Workload, X: np.ndarray, seed: int, dtype: str) -> tuple[Any, Any, Any]:
    """(plan, parameters after one EM iteration, engine class) for ``X``."""
    from emkit import GaussianMixture
    from emkit.engines.memory import InMemoryEngine

    init = starting_parameters(X, workload.k, workload.covariance_type, seed)
    gm = GaussianMixture(
        workload.k,
        covariance_type=workload.covariance_type,
        max_iter=1,
        tol=0.0,
        reg_covar=1e-6,
        dtype=dtype,
        **init,
    )
    with InMemoryEngine(n_threads=1) as engine:
        plan = gm._plan(X, None, None, engine, warm=False)
        params = plan.initialize(plan.rng)
        stats = engine.map_reduce(plan.model.expectation(params), plan.data)
        params = plan.model.m_step(params, stats)
    return plan, params, InMemoryEngine


def profile_phases(plan: Any, params: Any, chunk_rows: int) -> dict[str, float]:
    """Seconds of each phase of the E-step over all chunks, on this thread, and of
    NumPy's softmax on the same blocks (``np_softmax``)."""
    from emkit.models import mixing
    from emkit.models.mixing import EXACT

    model = plan.model
    family = model.family
    X = plan.data.rows
    dtype = np.dtype(model.dtype)
    natural = family.natural(params.components, dtype)
    if natural.exact_form and dtype != np.float64:
        dtype = np.dtype(np.float64)
        natural = family.natural(params.components, dtype)
    log_weights = model.weights.expected_log(params.weights).astype(dtype)
    seconds = dict.fromkeys((*PHASES, "np_softmax", "fused"), 0.0)
    clock = time.thread_time  # CPU time of this thread: robust to other processes' load
    fused = model._fused_step(params)
    for start in range(0, X.shape[0], chunk_rows):
        Xc = X[start : start + chunk_rows]
        if fused is not None:
            f0 = clock()
            done = fused(Xc, None, None) is not None
            seconds["fused"] += clock() - f0 if done else 0.0
        t0 = clock()
        Xp = family.prepare(Xc, dtype)
        t1 = clock()
        T = family.statistics(Xp)
        t2 = clock()
        log_prob = (natural.eta @ T.T).T
        log_prob -= natural.log_norm - log_weights
        t3 = clock()
        family.far_rows(Xp, params.components)
        row = family.row_term(Xp, params.components, natural)
        t4 = clock()
        resp, _ = EXACT(log_prob, row, None, None, None)
        t5 = clock()
        nk = resp.sum(axis=0).astype(np.float64)
        S = (T.T @ resp).T.astype(np.float64)
        t6 = clock()
        # NumPy's softmax on the same block, fresh from the same product as above
        block = (natural.eta @ T.T).T
        block -= natural.log_norm - log_weights
        compiled = mixing._COMPILED
        try:
            mixing._COMPILED = False
            s0 = clock()
            EXACT(block, row, None, None, None)
            seconds["np_softmax"] += clock() - s0
        finally:
            mixing._COMPILED = compiled
        seconds["prepare"] += t1 - t0
        seconds["stats"] += t2 - t1
        seconds["gemm1"] += t3 - t2
        seconds["other"] += t4 - t3
        seconds["softmax"] += t5 - t4
        seconds["gemm2"] += t6 - t5
        del nk, S
    return seconds


def profile_workload(
    index: int, workload: Workload, repeats: int, seed: int, dtype: str, machine: dict[str, float]
) -> dict[str, Any]:
    """Phases, engine times (one thread, all cores), M-step and floor of one workload."""
    from threadpoolctl import threadpool_limits

    from emkit.engines.memory import _available_cores

    X = make_data(workload, seed + index)
    if dtype == "float32":
        X = X.astype(np.float32)
    plan, params, engine_class = fitted_plan(workload, X, seed, dtype)
    model = plan.model
    e_step = model.expectation(params)
    cores = _available_cores()
    probe = engine_class()
    chunk_rows = probe._rows_per_chunk(X.shape[0], plan.data.work_bytes)

    with threadpool_limits(1, user_api="blas"):
        phase_runs = [profile_phases(plan, params, chunk_rows) for _ in range(repeats)]
    phases = {p: min(run[p] for run in phase_runs) for p in (*PHASES, "np_softmax")}
    fused = min(run["fused"] for run in phase_runs)

    def engine_time(n_threads: int) -> float:
        # one thread runs the chunks in this thread: CPU time, comparable to the phases;
        # on every core, wall time (what a user waits)
        clock = time.thread_time if n_threads == 1 else time.perf_counter
        with engine_class(n_threads=n_threads) as engine:
            engine.map_reduce(e_step, plan.data)  # warm-up
            return best(
                lambda: engine.map_reduce(e_step, plan.data),
                repeats,
                clock,
            )

    one = engine_time(1)
    many = engine_time(cores)
    with engine_class(n_threads=cores) as engine:
        stats = engine.map_reduce(e_step, plan.data)
    m_step = best(lambda: model.m_step(params, stats), repeats, time.thread_time)
    floor = floor_seconds(workload, machine["gemm_flops"], machine["bandwidth"], cores)
    return {
        "index": index,
        "workload": workload.name,
        "n": workload.n,
        "d": workload.d,
        "k": workload.k,
        "cov": workload.covariance_type,
        "dtype": dtype,
        "chunk_rows": chunk_rows,
        "cores": cores,
        "phases": phases,
        "phase_sum": sum(phases[p] for p in PHASES),
        "fused": fused,
        "engine_1_thread": one,
        # the engine runs the fused pass where it applies, else the phases
        "chunk_overhead": one - (fused or sum(phases[p] for p in PHASES)),
        "engine_all_cores": many,
        "thread_idle": many - one / cores,
        "m_step": m_step,
        "iteration": many + m_step,
        "n_stats": n_statistics(workload),
        "floor": floor,
    }


def format_report(results: Sequence[dict[str, Any]], machine: dict[str, float]) -> str:
    ms = 1e3
    head = (
        f"{'workload':<22}{'dtype':>8}{'chunk':>7}"
        + "".join(f"{p:>9}" for p in PHASES)
        + f"{'np smax':>9}{'fused':>9}"
        + f"{'sum':>9}{'1 thr':>9}{'overhd':>9}{'all thr':>9}{'idle':>9}{'m-step':>9}"
        + f"{'iter':>9}{'floor':>9}{'x floor':>8}"
    )
    lines = [
        f"GEMM peak (1 thread, float64): {machine['gemm_flops'] / 1e9:.1f} GFLOP/s; "
        f"bandwidth (1 thread, copy): {machine['bandwidth'] / 1e9:.1f} GB/s",
        "ms per iteration, best of R; CPU time of one thread: the phases (over all chunks),"
        " 1 thr, m-step; wall time: all thr, idle, iter",
        head,
        "-" * len(head),
    ]
    for r in results:
        cells = [f"{r['workload']:<22}{r['dtype']:>8}{r['chunk_rows']:>7}"]
        cells += [f"{ms * r['phases'][p]:>9.1f}" for p in (*PHASES, "np_softmax")]
        cells.append(f"{ms * r['fused']:>9.1f}")
        cells += [
            f"{ms * r[key]:>9.1f}"
            for key in (
                "phase_sum",
                "engine_1_thread",
                "chunk_overhead",
                "engine_all_cores",
                "thread_idle",
                "m_step",
                "iteration",
            )
        ]
        cells.append(f"{ms * r['floor']:>9.1f}")
        cells.append(f"{r['iteration'] / r['floor']:>8.1f}")
        lines.append("".join(cells))
    lines += [
        "",
        "np smax: NumPy's softmax on the same blocks (the compiled one is 'softmax' when Numba"
        " is installed; not in the sum); fused: the E-step in one compiled pass (full",
        "covariances with Numba; not in the sum), which '1 thr' and 'all thr' then run",
        "overhd: 1-thread engine minus the phases or fused (chunking, calls, sums); idle: all-core",
        "engine minus 1-thread / cores (thread idle, GIL, shared bandwidth); iter: all-core",
        f"E-step + M-step; floor: 4 N K S flops at the GEMM peak x cores + {FLOOR_PASSES} passes",
        "over N x K float64 at the bandwidth (both CPU time). Wall times are noisy on a loaded"
        " machine: idle then counts other processes' turns too.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1%% of the rows, R=1")
    parser.add_argument(
        "--workloads", default="1,2,3,4", help="comma list of bench_gmm workload indices"
    )
    parser.add_argument("--repeats", type=int, default=None, help="best of R (3)")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results to PATH")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    try:
        indices = [int(t) for t in args.workloads.split(",")]
        chosen = [WORKLOADS[i] for i in indices]
    except (ValueError, IndexError):
        parser.error(f"--workloads takes indices 0-{len(WORKLOADS) - 1}, got {args.workloads!r}")
    machine = {"gemm_flops": gemm_peak(), "bandwidth": memory_bandwidth()}
    results = []
    for index, workload in zip(indices, chosen, strict=True):
        w = shrink(workload) if args.quick else workload
        print(f"profiling {w.name} ...", file=sys.stderr, flush=True)
        results.append(profile_workload(index, w, repeats, args.seed, args.dtype, machine))
    print(format_report(results, machine))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
