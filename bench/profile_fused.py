"""Where the one-pass E-step's time goes, float64 against float32, phase by phase.

``profile_iteration.py`` times the NumPy route's phases and the compiled one-pass
E-step (:mod:`emkit.models._fused_kernels`) as a whole. This script opens the whole:
for each workload of ``bench_gmm.py`` with a layout the pass takes, from the parameters
after one EM iteration, it runs the pass's loop over every tile of every chunk (the
engine's chunks, one thread, BLAS held to one thread as the engine holds it) stopping
after each phase in turn, so each phase's time is the difference of two runs:

* ``stats``: the rows of a tile centred and laid out feature-major, and their statistics
  (1, x, s(x)) (``_compiled.statistics``);
* ``gemm1``: the first product, ``eta @ T`` (a compiled loop, or BLAS through Numba);
* ``softmax``: max, exp, sum and scaling of the tile (``_compiled.exp_normalize``);
* ``gemm2``: the second product, ``resp @ T^T``, and the tile's sums added in float64;
* ``call``: the production call per chunk (``gaussian_e_step``: its Python wrapper,
  buffers, the loop) minus the full run: what the wrapper adds;
* ``step``: the E-step of a chunk as the engine calls it (the far-row check, the
  log-likelihood, the shared statistics) minus ``call``.

in CPU time of this thread (robust to other processes' load), best of R, in ms per
iteration (all chunks) and ns per row; then float64 / float32 per phase, the float32
floor (the products at the float32 GEMM peak: 2x float64's where BLAS has twice the
lanes) and, with ``--tiles``, the same for other tile sizes (rows a tile). The tile
column ends in ``t`` where the second product takes the transposed layout (T @ r^T),
``d`` where it is the compiled loop of sums in vector lanes, ``a`` where the
first product is the compiled loop instead of BLAS; ``--layouts both`` times each tile in
the kernel's choice, then with the other BLAS second product, then with the other first
product, then with BLAS's second product instead of the compiled one.

    python bench/profile_fused.py [--quick] [--workloads 1,2,3,4] [--repeats 5]
                                  [--tiles 256,512,1024] [--layouts auto|both]
                                  [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gmm import WORKLOADS, Workload, gemm_peak, make_data, n_statistics, shrink
from bench_gmm import _best_seconds as best_cpu
from profile_iteration import fitted_plan

PHASES = ("stats", "gemm1", "softmax", "gemm2")
DTYPES = ("float64", "float32")


def profile(
    workload: Workload, index: int, dtype: str, repeats: int, seed: int, tiles: Any, both: bool
):
    """{tile (``t`` after it: transposed, ``d``: dots, ``a``: axpy): {phase: seconds over
    all chunks}} of one workload in ``dtype``."""
    from threadpoolctl import threadpool_limits

    from emkit.models import _fused_kernels as fk
    from emkit.models._softmax_kernels import constants
    from emkit.models.mixing import resp_floor

    X = make_data(workload, seed + index)
    if dtype == "float32":
        X = X.astype(np.float32)
    plan, params, engine_class = fitted_plan(workload, X, seed, dtype)
    model, family = plan.model, plan.model.family
    natural = family.natural(params.components, np.dtype(dtype))
    form = family.fused_natural(natural)
    if form is None:
        return None
    layout, eta = form[0], np.asarray(form[1], dtype=np.float64)
    eta[:, 0] += model.weights.expected_log(params.weights)
    eta = eta.astype(dtype)
    chunk_rows = engine_class()._rows_per_chunk(X.shape[0], plan.data.work_bytes)
    chunks = [X[s : s + chunk_rows] for s in range(0, len(X), chunk_rows)]
    centre = family.shift.astype(X.dtype)
    floor = np.dtype(dtype).type(resp_floor(dtype))
    coef, bias, shift_bits = constants(np.dtype(dtype))
    loop = fk.kernels().gaussian_e_step  # its last argument: the phases to run
    step = model._fused_step(params)
    index_of_layout = fk.LAYOUTS.index(layout)

    def run(plan: Any, upto: int) -> None:
        tile = plan.rows
        bits = np.empty(tile, dtype=bias.dtype)
        for chunk in chunks:
            n = chunk.shape[0]
            sums, m, total = np.zeros(eta.shape), np.empty(n, dtype), np.empty(n, dtype)
            loop(
                chunk, centre, eta, index_of_layout, floor, np.empty(0), coef, bits, bias,
                shift_bits, sums, m, total, np.zeros(tile, dtype),
                plan.transposed, plan.axpy, plan.dots, plan.wide, upto,
            )  # fmt: skip

    def call(plan: Any) -> None:
        for chunk in chunks:
            fk.gaussian_e_step(chunk, centre, eta, layout, floor, None, plan)

    def engine_step() -> None:
        assert step is not None
        for chunk in chunks:
            step(chunk, None, None)

    default = fk.default_plan(eta.shape[1], eta.shape[0], dtype, layout)
    t, a, d = default.transposed, default.axpy, default.dots
    layouts = [(t, a, d)]
    if both:  # the other second product, the other first one, BLAS's second one
        layouts += [(not t, a, False), (t, not a, d)] + ([(t, a, False)] if d else [])
    plans = [
        fk.Tiling(rows, transposed, axpy, dots)
        for rows in tiles or [default.rows]
        for transposed, axpy, dots in layouts
    ]
    out = {}
    with threadpool_limits(1, user_api="blas"):
        for plan in plans:
            run(plan, 4)  # compiled for this dtype
            call(plan)
            prefix = [0.0]
            prefix += [best_cpu(functools.partial(run, plan, u), repeats) for u in (1, 2, 3, 4)]
            seconds = {p: prefix[i + 1] - prefix[i] for i, p in enumerate(PHASES)}
            seconds["call"] = best_cpu(functools.partial(call, plan), repeats) - prefix[4]
            # the engine's call, where the pass takes the chunks (not below its size)
            if plan == default and step is not None and step(chunks[0], None, None) is not None:
                whole = best_cpu(engine_step, repeats)
                seconds["step"] = whole - prefix[4] - seconds["call"]
            key = f"{plan.rows}{'d' if plan.dots else 't' if plan.transposed else ''}"
            out[f"{key}{'a' if plan.axpy else ''}"] = seconds
    return {"chunk_rows": chunk_rows, "n": X.shape[0], "tiles": out}


def report(results: dict[str, Any], peak64: float, peak32: float) -> str:
    lines = [
        f"GEMM peak, one thread: float64 {peak64 / 1e9:.1f}, float32 {peak32 / 1e9:.1f} GFLOP/s",
        "CPU time of one thread over every chunk of an iteration (ms), ns a row in brackets",
    ]
    head = f"{'workload':<22}{'dtype':>8}{'tile':>7}" + "".join(
        f"{p:>16}" for p in (*PHASES, "call", "step", "total")
    )
    lines += [head, "-" * len(head)]
    for name, by_dtype in results.items():
        for dtype, res in by_dtype.items():
            if res is None:
                continue
            for tile, sec in res["tiles"].items():
                total = sum(sec.values())
                cells = [f"{name:<22}{dtype:>8}{tile:>7}"]
                for p in (*PHASES, "call", "step"):
                    v = sec.get(p)
                    cells.append(
                        f"{'-':>16}"
                        if v is None
                        else f"{1e3 * v:>8.2f} ({1e9 * v / res['n']:>5.1f})"
                    )
                cells.append(f"{1e3 * total:>8.2f} ({1e9 * total / res['n']:>5.1f})")
                lines.append("".join(cells))
    lines += ["", "float64 / float32 per phase (default tile; >= 2 is the target for the whole)"]
    for name, by_dtype in results.items():
        if by_dtype.get("float32") is None or by_dtype.get("float64") is None:
            continue
        s64 = next(iter(by_dtype["float64"]["tiles"].values()))
        s32 = next(iter(by_dtype["float32"]["tiles"].values()))
        ratios = [f"{p} {s64[p] / s32[p]:.2f}" for p in s64 if s32.get(p, 0) > 0]
        whole = sum(s64.values()) / sum(s32.values())
        lines.append(f"  {name}: " + ", ".join(ratios) + f"; whole {whole:.2f}")
    lines += [
        "",
        f"float32's GEMM peak over float64's: {peak32 / peak64:.2f} (the products' best ratio)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1%% of the rows, R=1")
    parser.add_argument("--workloads", default="1,2,3,4", help="bench_gmm workload indices")
    parser.add_argument("--repeats", type=int, default=None, help="best of R (5)")
    parser.add_argument("--tiles", default=None, help="comma list of rows a tile to compare")
    parser.add_argument(
        "--layouts", choices=("auto", "both"), default="auto", help="the products' layouts"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results to PATH")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 5)
    tiles = None if args.tiles is None else [int(t) for t in args.tiles.split(",")]
    try:
        indices = [int(t) for t in args.workloads.split(",")]
        chosen = [WORKLOADS[i] for i in indices]
    except (ValueError, IndexError):
        parser.error(f"--workloads takes indices 0-{len(WORKLOADS) - 1}, got {args.workloads!r}")
    peak64, peak32 = gemm_peak(), gemm_peak(dtype=np.float32)
    results: dict[str, Any] = {}
    for index, workload in zip(indices, chosen, strict=True):
        w = shrink(workload) if args.quick else workload
        print(f"profiling {w.name} (S = {n_statistics(w)}) ...", file=sys.stderr, flush=True)
        results[w.name] = {
            dtype: profile(w, index, dtype, repeats, args.seed, tiles, args.layouts == "both")
            for dtype in DTYPES
        }
    print(report(results, peak64, peak32))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"gemm_peak": [peak64, peak32], "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
