"""What of an EM iteration float32 speeds up, and so how far its speed-up can go.

Issue 17 asks float32 for at least 2x float64's speed per iteration. Float32 halves the
bytes and doubles the vector lanes of the E-step's arithmetic, which is most of an
iteration on large data; the rest (the M-step, the bound, the natural parameters, the
driver, the engine's hand-over of the chunks to its threads) depends on K and d, not on
N, and takes about as long in both dtypes. With ``t = e + r`` (E-step, rest), float32's
speed-up is ``(e64 + r) / (e32 + r)``: below ``e64 / e32`` by as much as ``r`` weighs.

For each workload of ``bench_gmm.py`` (same data, seed and start), fits of ``--iters``
iterations in float64 and float32, interleaved, ``--rounds`` times; per dtype, medians:

* ``iter``: an iteration (``trace_.seconds``, the first two left out);
* ``map``: the engine's map of the E-step alone over all rows, on every core, at the
  parameters after one EM iteration, its function made once (as a fit's is each
  iteration, less the natural parameters it prepares at its first chunk);
* ``kernel``: the one-pass E-step (:func:`emkit.models._fused_kernels.gaussian_e_step`)
  of one of the engine's chunks, on one thread, in that thread's CPU time (0 where the
  pass does not apply);
* ``rest``: ``iter - map``.

Then float64 / float32 of each: ``iter`` is what a user gets, ``map`` the most float32
could reach if the rest took no time at all, ``kernel`` the arithmetic's own speed-up.

    python bench/profile_float32.py [--workloads large] [--rounds 4] [--iters 40] [--json P]
    python bench/profile_float32.py --quick --workloads 3   # smoke run: 1% of the rows
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
from bench_gmm import WORKLOADS, Workload, make_data, select_workloads, shrink, starting_parameters
from profile_iteration import fitted_plan

DTYPES = ("float64", "float32")
COLUMNS = ("iter", "map", "kernel", "rest")


def median_seconds(fn: Callable[[], Any], repeats: int, clock: Callable[[], float]) -> float:
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return float(np.median(times))


def measure_e_step(workload: Workload, X: np.ndarray, dtype: str, maps: int) -> dict[str, float]:
    """``map`` and ``kernel`` (see the module's docstring), in seconds, at the parameters
    after one EM iteration (``profile_iteration.fitted_plan``)."""
    from emkit.engines.memory import _row_bytes
    from emkit.models import _fused_kernels
    from emkit.models.mixing import resp_floor

    plan, params, engine_class = fitted_plan(workload, X, 0, dtype)
    model, data = plan.model, plan.data
    e_step = model.expectation(params, model.derive(params))
    with engine_class() as engine:
        engine.map_reduce(e_step, data)  # (its first chunk prepares the natural parameters)
        out = {
            "map": median_seconds(lambda: engine.map_reduce(e_step, data), maps, time.perf_counter)
        }
        chunk_rows = engine._rows_per_chunk(X.shape[0], _row_bytes(data))
        cores = engine.n_threads
    out["kernel"] = 0.0
    family = model.family
    working, natural, log_weights = model._working(params)()
    form = getattr(family, "fused_natural", lambda _: None)(natural)
    if form is not None and _fused_kernels.kernels() is not None:
        layout, eta = form[0], np.asarray(form[1], dtype=np.float64)
        eta[:, 0] += log_weights.astype(np.float64)
        eta = eta.astype(working)
        chunk = data.rows[:chunk_rows]

        def kernel() -> None:
            _fused_kernels.gaussian_e_step(
                chunk, family.shift, eta, layout, resp_floor(working), None
            )

        kernel()
        # per iteration: the chunks' CPU time shared by the cores
        chunks = -(-X.shape[0] // chunk_rows)
        out["kernel"] = median_seconds(kernel, maps, time.thread_time) * chunks / cores
    return out


def iteration(
    workload: Workload, X: np.ndarray, start: dict[str, Any], dtype: str, iters: int
) -> float:
    """The median iteration (seconds) of a fit of ``iters`` iterations in ``dtype``."""
    from emkit import GaussianMixture

    fit = GaussianMixture(
        workload.k,
        covariance_type=workload.covariance_type,
        tol=0.0,
        max_iter=iters,
        reg_covar=1e-6,
        dtype=dtype,
        **start,
    ).fit(X)
    return float(np.median(fit.trace_.seconds[2:]))


def profile(workload: Workload, index: int, rounds: int, iters: int) -> dict[str, Any]:
    X64 = make_data(workload, index)
    start = starting_parameters(X64, workload.k, workload.covariance_type, 0)
    data: dict[str, np.ndarray] = {"float64": X64, "float32": X64.astype(np.float32)}
    seen: dict[str, list[dict[str, float]]] = {dtype: [] for dtype in DTYPES}
    for _ in range(rounds):
        for dtype in DTYPES:
            X = data[dtype]
            measured = measure_e_step(workload, X, dtype, 2 * iters)
            measured["iter"] = iteration(workload, X, start, dtype, iters)
            seen[dtype].append(measured)
    out: dict[str, Any] = {"workload": workload.name}
    for dtype in DTYPES:
        ms = {c: 1e3 * float(np.median([m[c] for m in seen[dtype]])) for c in COLUMNS[:3]}
        ms["rest"] = ms["iter"] - ms["map"]
        out[dtype] = ms
    out["ratio"] = {
        c: out["float64"][c] / out["float32"][c] if out["float32"][c] > 0 else float("nan")
        for c in COLUMNS[:3]
    }
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="large", help="large, indices or names")
    parser.add_argument("--rounds", type=int, default=4, help="fits per dtype, interleaved")
    parser.add_argument("--iters", type=int, default=40, help="iterations a fit")
    parser.add_argument("--quick", action="store_true", help="1%% of the rows, 1 round, 6 its")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.iters = 1, 6
    cells = "".join(f"{c + ' ' + d[5:]:>11s}" for d in DTYPES for c in COLUMNS)
    head = "workload".ljust(20) + cells
    print(head + "".join(f"{c + ' 64/32':>13s}" for c in COLUMNS[:3]))
    results = []
    for index in select_workloads(args.workloads):
        workload = WORKLOADS[index]
        row = profile(shrink(workload) if args.quick else workload, index, args.rounds, args.iters)
        results.append(row)
        cells = "".join(f"{row[d][c]:11.3f}" for d in DTYPES for c in COLUMNS)
        ratios = "".join(f"{row['ratio'][c]:13.2f}" for c in COLUMNS[:3])
        print(f"{row['workload']:20s}{cells}{ratios}", flush=True)
    print(
        "(ms an iteration, medians; map: the E-step's map alone on every core; kernel: the "
        "one-pass E-step's CPU time of all chunks over the cores; rest = iter - map: the "
        "M-step, bound, natural parameters and driver, the same work in both dtypes)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
