"""Time ``emkit.save_model`` / ``emkit.load_model`` (with validation) against pickle.

For each estimator, fitted on synthetic data, the script times (best of R repeats, in the
same process) writing its model file and loading it back (the load includes the whole
schema validation: Cholesky factors of every covariance, the relations between derived
attributes), and, as the reference, ``pickle.dump`` to a file and ``pickle.load`` of it.
Reported: milliseconds of each, the ratios model file / pickle and the file sizes.

Models: GaussianMixture (full, K=32 components, d=64 features), a MixtureModel over a
Product of a full Gaussian block, Poisson counts and a categorical column (K=16),
KMeans (K=64, d=32, 100,000 training rows, so ``labels_`` is large), PPCA (d=256,
q=32) and MixtureOfFactorAnalyzers (K=16, d=64, q=8).

``--quick`` shrinks the models and takes one repeat (a smoke run).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import emkit
from emkit.families import Categorical, Gaussian, Poisson, Product


def _models(scale: float, seed: int = 0) -> dict[str, Callable[[], Any]]:
    rng = np.random.default_rng(seed)

    def n(x: int) -> int:
        return max(int(x * scale), 4)

    def gmm() -> Any:
        K, d = n(32), n(64)
        X = rng.normal(size=(20 * K * 2, d)) + np.repeat(rng.normal(0, 5, (K, d)), 40, axis=0)
        return emkit.GaussianMixture(K, max_iter=3, random_state=0).fit(X)

    def mixture() -> Any:
        K, d = n(16), n(16)
        rows = 40 * K
        frame = np.column_stack(
            [rng.normal(size=(rows, d)), rng.poisson(3.0, (rows, 2)), rng.integers(0, 5, rows)]
        )
        family = Product(
            {
                "x": (list(range(d)), Gaussian()),
                "counts": ([d, d + 1], Poisson()),
                "kind": ([d + 2], Categorical()),
            }
        )
        return emkit.MixtureModel(family, K, max_iter=3, random_state=0).fit(frame)

    def kmeans() -> Any:
        K, d = n(64), n(32)
        X = rng.normal(size=(max(int(100_000 * scale), 4 * K), d))
        return emkit.KMeans(K, n_init=1, max_iter=3, random_state=0).fit(X)

    def ppca() -> Any:
        d, q = n(256), n(32)
        X = rng.normal(size=(4 * d, q)) @ rng.normal(size=(q, d)) + rng.normal(size=(4 * d, d))
        return emkit.PPCA(q, max_iter=3, random_state=0).fit(X)

    def mfa() -> Any:
        K, d, q = n(16), n(64), n(8)
        X = rng.normal(size=(20 * K * 2, d)) + np.repeat(rng.normal(0, 5, (K, d)), 40, axis=0)
        return emkit.MixtureOfFactorAnalyzers(K, n_factors=q, max_iter=3, random_state=0).fit(X)

    return {
        "GaussianMixture": gmm,
        "MixtureModel": mixture,
        "KMeans": kmeans,
        "PPCA": ppca,
        "MixtureOfFactorAnalyzers": mfa,
    }


def _best(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
    """Time every model; one dict of results per model."""
    rows = []
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 EM iterations do not converge
        path, pickled = Path(folder) / "model.npz", Path(folder) / "model.pkl"
        for name, make in _models(0.1 if quick else 1.0).items():
            model = make()

            def dump(model: Any = model) -> None:
                with pickled.open("wb") as fh:
                    pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)

            def undump() -> Any:
                with pickled.open("rb") as fh:
                    return pickle.load(fh)  # our own file: the reference timing

            save = _best(lambda model=model: emkit.save_model(model, path), repeats)
            load = _best(lambda: emkit.load_model(path), repeats)
            dump_s, load_pickle = _best(dump, repeats), _best(undump, repeats)
            rows.append(
                {
                    "model": name,
                    "save_ms": 1e3 * save,
                    "load_ms": 1e3 * load,
                    "pickle_dump_ms": 1e3 * dump_s,
                    "pickle_load_ms": 1e3 * load_pickle,
                    "save_ratio": save / dump_s,
                    "load_ratio": load / load_pickle,
                    "file_kib": path.stat().st_size / 1024,
                    "pickle_kib": pickled.stat().st_size / 1024,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = run(args.quick, 1 if args.quick else args.repeats)
    header = (
        f"{'model':<26}{'save ms':>9}{'load ms':>9}{'pickle':>8}{'unpick':>8}"
        f"{'save/pk':>9}{'load/pk':>9}{'KiB':>9}{'pk KiB':>9}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['model']:<26}{r['save_ms']:>9.2f}{r['load_ms']:>9.2f}{r['pickle_dump_ms']:>8.2f}"
            f"{r['pickle_load_ms']:>8.2f}{r['save_ratio']:>9.1f}{r['load_ratio']:>9.1f}"
            f"{r['file_kib']:>9.0f}{r['pickle_kib']:>9.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
