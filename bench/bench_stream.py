"""Streaming a large table from a file: peak memory and time per EM iteration, next to the
in-memory fit of the same rows (issue 13's streaming target).

The parent writes the data once (a Gaussian mixture, made a block of rows at a time from a
fixed seed) to a temporary directory, as Parquet (pyarrow's default writer settings:
snappy, row groups of up to 1,048,576 rows), ``.npy`` and/or CSV, then runs one child
process per measurement. Each child imports emkit and fits a small table of the same
format first (20,000 rows: lazily imported modules, the compiled softmax that chunks of
4,096 rows use, and thread pools exist), gives the memory it freed back to the system,
takes its baseline resident size, then opens the file (a CSV or Parquet file is spilled
then: ``open_table``'s default ``spill="auto"``; its time and memory count) and fits
``GaussianMixture(K, covariance_type="full")`` (default
arguments, default initialization included; ``max_iter`` and ``tol=0`` fixed so every run
does the same iterations) from:

* **memory**: the rows made in the child (the input array, ``N x D`` float64, exists
  before the baseline, so the growth is what the fit adds beyond it);
* **parquet** / **parquet-small-pages** / **npy** / **csv**: ``emkit.io.open_table(path)``,
  the default call.

Reported per child: peak RSS growth (the peak resident size during the fit, VmHWM, reset
at the baseline through ``/proc/self/clear_refs``, minus the size at the baseline;
``ru_maxrss`` would carry the parent's peak through ``exec``), the same as a percentage of
the rows' in-memory size (the target: at most 10% for a stream), the tracemalloc peak (a
second child: tracing slows the fit) and milliseconds per EM iteration (median of
``trace_.seconds``; the target: at most 2x the in-memory fit's), the seconds to open the
file and in all (open and fit), with the streamed fits' largest difference from the
in-memory parameters. ``parquet-small-pages`` is a Parquet
file written without dictionary and with 64 KiB pages: pyarrow's reader holds about a
data page and a dictionary page a column (1 MiB each by default).

    python bench/bench_stream.py                          # 4,000,000 x 16, K = 8: minutes
    python bench/bench_stream.py --formats parquet,npy,csv --max-iter 5
    python bench/bench_stream.py --quick                  # 40,000 rows, a smoke run
    python bench/bench_stream.py --block-rows 32768 --json /tmp/stream.json

Timings and RSS are those of a shared machine unless it is idle: run it on a quiet one
(``nice`` slows every child alike, so ratios measured in one run stay comparable).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import peak_rss, reset_peak, rss

MIB = float(1 << 20)
STREAM_FRACTION = 0.10  # the target: RSS growth of a stream at most 10% of the rows' size
SPEED_RATIO = 2.0  # the target: a streamed iteration at most 2x an in-memory one
MAKE_ROWS = 1 << 20  # rows made (and written) at a time
FORMATS = ("parquet", "parquet-small-pages", "npy", "csv")


def make_rows(n: int, d: int, k: int, start: int, stop: int, seed: int = 0) -> np.ndarray:
    """Rows ``start:stop`` of the benchmark's mixture (``start`` a multiple of MAKE_ROWS)."""
    centers = np.random.default_rng(seed).normal(0, 5, (k, d))
    rng = np.random.default_rng([seed, start // MAKE_ROWS])
    labels = rng.integers(0, k, stop - start)
    X = rng.standard_normal((stop - start, d))
    X += centers[labels]
    return X


def blocks(n: int, d: int, k: int) -> Any:
    for start in range(0, n, MAKE_ROWS):
        yield make_rows(n, d, k, start, min(start + MAKE_ROWS, n))


def write(fmt: str, path: Path, n: int, d: int, k: int) -> None:
    """The benchmark's rows written to ``path``, a block at a time."""
    names = [f"x{j}" for j in range(d)]
    if fmt == "npy":
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, d))
        for start, X in zip(range(0, n, MAKE_ROWS), blocks(n, d, k), strict=True):
            out[start : start + X.shape[0]] = X
        out.flush()
        del out
        return
    import pyarrow as pa

    if fmt in ("parquet", "parquet-small-pages"):
        import pyarrow.parquet as pq

        # pyarrow's defaults: dictionary pages, 1 MiB data pages, a reader holds both for
        # every column; small pages without a dictionary: 64 KiB a column
        options = (
            {"use_dictionary": False, "data_page_size": 1 << 16}
            if fmt == "parquet-small-pages"
            else {}
        )
        writer = None
        for X in blocks(n, d, k):
            table = pa.table({name: X[:, j] for j, name in enumerate(names)})
            writer = writer or pq.ParquetWriter(path, table.schema, **options)
            writer.write_table(table)  # pyarrow's default row groups (<= 1,048,576 rows)
        assert writer is not None
        writer.close()
        return
    from pyarrow import csv

    with csv.CSVWriter(path, pa.schema([(name, pa.float64()) for name in names])) as out:
        for X in blocks(n, d, k):
            out.write_table(pa.table({name: X[:, j] for j, name in enumerate(names)}))


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One fit in this process, measured."""
    import emkit
    from emkit.io import open_table

    n, d, k = args.rows, args.features, args.components
    how, path = args.child, args.path
    from emkit.engines.streaming import release_freed_memory

    # a small fit first: lazily imported modules (pyarrow, the k-means, the compiled
    # softmax, which chunks of 4,096 rows use), thread pools
    fmt = "npy" if how == "memory" else how
    warm = Path(tempfile.mkdtemp()) / f"warm.{fmt.split('-')[0]}"
    write(fmt, warm, 20_000, d, k)
    with open_table(warm) as table:
        emkit.GaussianMixture(k, covariance_type="full", max_iter=2).fit(table)
        emkit.GaussianMixture(k, covariance_type="full", max_iter=2).fit(table.read())
    warm.unlink()
    if how == "memory":
        X: Any = np.empty((n, d))
        for start in range(0, n, MAKE_ROWS):
            X[start : start + MAKE_ROWS] = make_rows(n, d, k, start, min(start + MAKE_ROWS, n))
    gm = emkit.GaussianMixture(
        k, covariance_type="full", max_iter=args.max_iter, tol=0.0, random_state=0
    )
    gc.collect()
    release_freed_memory()  # what the warm-up freed: not counted as the fit's
    traced = args.mode == "trace"
    exact = reset_peak()
    before = rss()
    if traced:
        tracemalloc.start()
    start = time.perf_counter()
    # opening counts: a spilled file is converted when it is opened
    source = X if how == "memory" else open_table(path, block_rows=args.block_rows)
    opened = time.perf_counter() - start
    gm.fit(source)
    seconds = time.perf_counter() - start
    if traced:
        grown = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        # ru_maxrss carries the parent's peak through exec (subprocess may vfork): the
        # peak since the reset (VmHWM) is the child's own; ru_maxrss where it cannot be reset
        peak = peak_rss() if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        grown = peak - before
    return {
        "how": how,
        "mode": args.mode,
        "bytes": int(grown),
        "peak_reset": exact,
        "seconds": seconds,
        "open_seconds": opened,
        "ms_per_iteration": 1e3 * float(np.median(gm.trace_.seconds)),
        "n_iter": int(gm.n_iter_),
        "lower_bound": float(gm.lower_bound_),
        "means": gm.means_.tolist(),
        "covariances": gm.covariances_.tolist(),
        "weights": gm.weights_.tolist(),
    }


def run_child(args: argparse.Namespace, how: str, mode: str, path: Path | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        how,
        "--mode",
        mode,
        "--path",
        str(path),
        "--rows",
        str(args.rows),
        "--features",
        str(args.features),
        "--components",
        str(args.components),
        "--max-iter",
        str(args.max_iter),
    ]
    if args.block_rows is not None:
        cmd += ["--block-rows", str(args.block_rows)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"the {how} child failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _largest_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    return max(
        float(np.max(np.abs(np.asarray(a[key]) - np.asarray(b[key]))))
        for key in ("means", "covariances", "weights")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--max-iter", type=int, default=5)
    parser.add_argument(
        "--formats", default="parquet", help=f"of {','.join(FORMATS)} (default parquet)"
    )
    parser.add_argument("--block-rows", type=int, default=None, help="open_table's block_rows")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--quick", action="store_true", help="40,000 rows, 2 iterations")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default /tmp)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="rss", help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args)))
        return 0
    if args.quick:
        args.rows, args.max_iter = 40_000, 2
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    for fmt in formats:
        if fmt not in FORMATS:
            parser.error(f"--formats: unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    n, d, k = args.rows, args.features, args.components
    size = n * d * 8
    print(
        f"{n:,} x {d} float64 rows ({size / MIB:.1f} MiB in memory), K = {k}, full, "
        f"{args.max_iter} iterations; stream target: RSS growth <= {STREAM_FRACTION:.0%} "
        f"({STREAM_FRACTION * size / MIB:.1f} MiB), ms/iteration <= {SPEED_RATIO:g}x memory"
    )
    rows: list[dict[str, Any]] = []
    modes = ["rss"] if args.no_tracemalloc else ["rss", "trace"]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        paths: dict[str, Path | None] = {"memory": None}
        for fmt in formats:
            path = Path(tmp) / f"{fmt}.{fmt.split('-')[0]}"
            start = time.perf_counter()
            write(fmt, path, n, d, k)
            paths[fmt] = path
            print(
                f"wrote {path.name}: {path.stat().st_size / MIB:.1f} MiB "
                f"in {time.perf_counter() - start:.1f} s"
            )
        header = (
            f"{'source':20s} {'RSS +MiB':>9s} {'% rows':>7s} {'traced MiB':>10s} "
            f"{'ms/iter':>8s} {'x memory':>8s} {'open s':>7s} {'total s':>7s} {'|diff|':>8s} "
            f"{'target':>6s}"
        )
        print(header)
        memory: dict[str, Any] = {}
        for how, path in paths.items():
            measured = {mode: run_child(args, how, mode, path) for mode in modes}
            rss = measured["rss"]
            if how == "memory":
                memory = rss
            ratio = rss["ms_per_iteration"] / memory["ms_per_iteration"]
            difference = _largest_difference(rss, memory)
            row = {
                "source": how,
                "rows_bytes": size,
                "rss_growth_bytes": rss["bytes"],
                "rss_growth_fraction": rss["bytes"] / size,
                "traced_peak_bytes": measured["trace"]["bytes"] if "trace" in measured else None,
                "ms_per_iteration": rss["ms_per_iteration"],
                "open_seconds": rss["open_seconds"],
                "seconds": rss["seconds"],
                "time_over_memory": ratio,
                "largest_difference": difference,
                "lower_bound": rss["lower_bound"],
                "n_iter": rss["n_iter"],
                "peak_reset": rss["peak_reset"],
            }
            met = how == "memory" or (
                row["rss_growth_fraction"] <= STREAM_FRACTION and ratio <= SPEED_RATIO
            )
            row["target_met"] = met if how != "memory" else None
            rows.append(row)
            traced = row["traced_peak_bytes"]
            traced_text = "-" if traced is None else f"{traced / MIB:10.1f}"
            print(
                f"{how:20s} {rss['bytes'] / MIB:9.1f} {100 * row['rss_growth_fraction']:7.1f} "
                f"{traced_text:>10s} {rss['ms_per_iteration']:8.1f} {ratio:8.2f} "
                f"{rss['open_seconds']:7.1f} {rss['seconds']:7.1f} {difference:8.1e} "
                f"{'-' if how == 'memory' else 'met' if met else 'MISSED':>6s}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "cores": os.cpu_count()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
