"""Benchmark emkit's CSV reader against ``pandas.read_csv`` on the same file.

Issue 15's target: ``emkit fit`` on a 1,000,000 x 5 CSV reads the file within 2x
``pandas.read_csv``'s time. The script writes a CSV of random floats (with a header and
about 1% empty cells) into a temporary directory, then times, best of ``--repeats``:

- ``emkit``: :func:`emkit.io.tables.read_columns`, what ``emkit fit`` calls (pyarrow's
  reader when installed), including the conversion to float64 columns;
- ``emkit_numpy``: the same reader with pyarrow hidden (the NumPy fallback), unless
  ``--no-fallback``;
- ``pandas``: ``pandas.read_csv`` followed by ``to_numpy(float64)``.

    python bench/bench_csv.py             # 1,000,000 x 5 (about a minute)
    python bench/bench_csv.py --quick     # 20,000 x 5, a few seconds

Timings are wall clock: on a loaded machine the ratio is what to read, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TARGET = 2.0  # emkit / pandas seconds


def write_csv(path: Path, rows: int, columns: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 10.0, (rows, columns))
    text = np.char.mod("%.6f", X)
    text[rng.random(X.shape) < 0.01] = ""
    header = ",".join(f"x{j}" for j in range(columns))
    with path.open("w") as fh:
        fh.write(header + "\n")
        for start in range(0, rows, 100_000):
            block = text[start : start + 100_000]
            fh.write("\n".join(",".join(row) for row in block.tolist()) + "\n")


def best_time(read: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, value = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        value = read()
        best = min(best, time.perf_counter() - start)
    return best, value


def read_emkit(path: Path) -> np.ndarray:
    from emkit.io.tables import read_columns

    return np.column_stack(read_columns(path).columns)


def read_emkit_numpy(path: Path) -> np.ndarray:
    hidden = {name: sys.modules.get(name) for name in ("pyarrow.csv",)}
    sys.modules["pyarrow.csv"] = None  # type: ignore[assignment]
    try:
        return read_emkit(path)
    finally:
        for name, module in hidden.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def read_pandas(path: Path) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(path).to_numpy(dtype=np.float64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 1 repeat")
    parser.add_argument("--no-fallback", action="store_true", help="skip the NumPy fallback")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 20_000, 1

    try:
        import pyarrow  # noqa: F401

        engine = "pyarrow"
    except ImportError:
        engine = "numpy"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        write_csv(path, args.rows, args.columns)
        size_mb = path.stat().st_size / 2**20
        seconds: dict[str, float] = {}
        seconds["pandas"], expected = best_time(lambda: read_pandas(path), args.repeats)
        seconds["emkit"], got = best_time(lambda: read_emkit(path), args.repeats)
        np.testing.assert_array_equal(got, expected)
        if not args.no_fallback and engine == "pyarrow":
            seconds["emkit_numpy"], got = best_time(lambda: read_emkit_numpy(path), args.repeats)
            np.testing.assert_array_equal(got, expected)

    ratio = seconds["emkit"] / seconds["pandas"]
    met = ratio <= TARGET
    print(f"{args.rows:,} x {args.columns} CSV ({size_mb:.1f} MiB), best of {args.repeats}:")
    for name, value in seconds.items():
        print(f"  {name:12s} {value:8.3f} s   {value / seconds['pandas']:5.2f}x pandas")
    print(
        f"emkit's reader ({engine}) / pandas.read_csv = {ratio:.2f} (target <= {TARGET}): "
        f"{'met' if met else 'missed'}"
    )
    result = {
        "rows": args.rows,
        "columns": args.columns,
        "engine": engine,
        "seconds": seconds,
        "emkit_over_pandas": ratio,
        "target": TARGET,
        "target_met": met,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
