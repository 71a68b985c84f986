"""Benchmark the Dask engine against the in-memory engine, in the same run.

Issue 13's target: ``GaussianMixture(8, covariance_type="full")`` on 4,000,000 x 16 rows,
on a ``distributed.LocalCluster`` of 2 worker processes x 1 thread, within 1.5x of the
in-memory engine's seconds per EM iteration (the in-memory engine on as many threads as
the cluster has, 2 by default).

Both fits start from the same parameters (``weights_init``, ``means_init``,
``precisions_init``: a short fit on a subsample), run a fixed number of iterations
(``tol=0``) and report the median of ``trace_.seconds`` (one EM iteration each: for
Dask, building the iteration's graph, the E-step and statistics on the workers, the
tree reduction and the M-step on the client). The rows are made block by block from
seeded generators: in this process for the in-memory fit, on the workers for the Dask
fit (the same values; no transfer), and persisted there before the clock starts. The
parameters of the two fits are compared as well.

The cluster is measured as ``distributed`` starts it (``default``), with its workers'
``MALLOC_TRIM_THRESHOLD_=65536`` left out of ``distributed.nanny.pre-spawn-environ``
(``glibc``: glibc's own, dynamic malloc thresholds), and as ``distributed`` starts it with
emkit's answer to that setting turned off on the workers (``default-unheld``). The
setting, which ``distributed`` applies to keep workers' unmanaged memory low, makes every
temporary array of more than 128 KiB a fresh ``mmap`` whose pages are faulted in again,
and the E-step's cache-sized chunks allocate several such arrays; emkit's block tasks
hold glibc's own thresholds while they run (``emkit.engines.dask.reused_heap``), so
``default`` should match ``glibc``, and ``default-unheld`` shows what that is worth.

Run ``python bench/bench_dask.py --help`` for the options; ``--rows 200000`` for a
smaller run, ``--local`` for Dask's threaded scheduler in this process (no cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

TARGET = 1.5  # Dask seconds per iteration / in-memory seconds per iteration


def make_block(seed: int, index: int, n_rows: int, d: int, k: int) -> np.ndarray:
    """Rows of block ``index``: a Gaussian mixture whose parameters depend on ``seed``
    only, the draws on (seed, index)."""
    params = np.random.default_rng(seed)
    means = params.normal(0.0, 4.0, (k, d))
    scales = params.uniform(0.5, 1.5, (k, d))
    rng = np.random.default_rng([seed, index])
    labels = rng.integers(0, k, n_rows)
    return means[labels] + scales[labels] * rng.standard_normal((n_rows, d))


def block_sizes(n: int, block_rows: int) -> list[int]:
    return [min(block_rows, n - start) for start in range(0, n, block_rows)]


def start_parameters(X: np.ndarray, k: int, seed: int) -> dict[str, Any]:
    """Initial parameters from a short fit on a subsample (the same for both engines)."""
    from emkit import GaussianMixture

    sample = X[np.random.default_rng(seed).choice(X.shape[0], min(20_000, X.shape[0]))]
    start = GaussianMixture(k, random_state=seed, max_iter=3, tol=0).fit(sample)
    return {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--iters", type=int, default=6, help="EM iterations a fit")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument(
        "--block-rows", type=int, default=250_000, help="rows of a Dask block (default 250000)"
    )
    parser.add_argument("--local", action="store_true", help="Dask's threaded scheduler")
    parser.add_argument(
        "--malloc",
        default="default,glibc,default-unheld",
        help="cluster configurations to measure, comma-separated: 'default' (distributed's "
        "worker environment), 'glibc' (without MALLOC_TRIM_THRESHOLD_), 'default-unheld' "
        "(distributed's environment, emkit's reused_heap turned off on the workers)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)

    import dask
    import dask.array as da

    from emkit import GaussianMixture

    n, d, k = args.rows, args.features, args.components
    sizes = block_sizes(n, args.block_rows)
    threads = args.workers * args.threads_per_worker
    X = np.concatenate([make_block(args.seed, i, size, d, k) for i, size in enumerate(sizes)])
    kw: dict[str, Any] = {
        "covariance_type": "full",
        "tol": 0.0,
        "max_iter": args.iters,
        **start_parameters(X, k, args.seed),
    }

    t0 = time.perf_counter()
    memory = GaussianMixture(k, n_threads=threads, **kw).fit(X)
    memory_fit = time.perf_counter() - t0
    del X

    blocks = [
        da.from_delayed(
            dask.delayed(make_block, pure=True)(args.seed, i, size, d, k),
            shape=(size, d),
            dtype=np.float64,
        )
        for i, size in enumerate(sizes)
    ]
    memory_it = float(np.median(memory.trace_.seconds))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{n} x {d}, K={k}, full, {len(sizes)} blocks, {args.iters} iterations "
        f"(load average {load:.1f} on {os.cpu_count()} cores)"
    )
    print(f"  in memory, {threads} threads: {memory_it:8.3f} s/iteration")
    runs = []
    for variant in ["local"] if args.local else args.malloc.split(","):
        fitted, where, dask_fit = _fit_on_dask(args, variant, da.concatenate(blocks), k, kw)
        dask_it = float(np.median(fitted.trace_.seconds))
        ratio = dask_it / memory_it
        difference = float(np.abs(fitted.means_ - memory.means_).max())
        runs.append(
            {
                "where": where,
                "dask_s_per_iter": dask_it,
                "ratio": ratio,
                "dask_fit_s": dask_fit,
                "max_abs_mean_difference": difference,
                "same_n_iter": memory.n_iter_ == fitted.n_iter_,
            }
        )
        verdict = "PASS" if ratio <= TARGET else "MISS"
        print(f"  {where}: {dask_it:8.3f} s/iteration")
        print(
            f"    ratio {ratio:.2f} (target <= {TARGET}): {verdict}; "
            f"max |means difference| {difference:.2e}"
        )
    result = {
        "rows": n,
        "features": d,
        "components": k,
        "blocks": len(sizes),
        "iters": args.iters,
        "memory_threads": threads,
        "memory_s_per_iter": memory_it,
        "memory_fit_s": memory_fit,
        "target": TARGET,
        "dask": runs,
        "load_average": load,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return result


def _fit_on_dask(
    args: argparse.Namespace, variant: str, Xd: Any, k: int, kw: dict[str, Any]
) -> tuple[Any, str, float]:
    """The fit on Dask (``variant``: 'local', 'default' or 'glibc'), its description and
    its wall time; the rows persisted before the clock starts."""
    import dask

    from emkit import GaussianMixture
    from emkit.engines import DaskEngine

    if variant == "local":
        engine = DaskEngine(persist=False)
        Xd = Xd.persist(scheduler="threads")
        t0 = time.perf_counter()
        fitted = GaussianMixture(k, engine=engine, **kw).fit(Xd)
        return (
            fitted,
            f"Dask threaded scheduler, {os.cpu_count()} threads",
            (time.perf_counter() - t0),
        )
    if variant not in ("default", "glibc", "default-unheld"):
        raise SystemExit(f"--malloc takes 'default', 'glibc' and 'default-unheld', got {variant!r}")
    from distributed import Client, LocalCluster, wait

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    if variant == "glibc":
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            processes=True,
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        if variant == "default-unheld":
            client.run(_unhold)
        Xd = client.persist(Xd)
        wait(Xd)
        t0 = time.perf_counter()
        fitted = GaussianMixture(k, engine=DaskEngine(client), **kw).fit(Xd)
        elapsed = time.perf_counter() - t0
    where = (
        f"LocalCluster {args.workers} workers x {args.threads_per_worker} thread(s), "
        f"{variant} malloc"
    )
    return fitted, where, elapsed


def _unhold() -> None:
    """On a worker: emkit's block tasks run without holding glibc's thresholds."""
    import contextlib

    import emkit.engines.dask

    emkit.engines.dask.reused_heap = contextlib.nullcontext  # type: ignore[assignment]


if __name__ == "__main__":
    main(sys.argv[1:])
