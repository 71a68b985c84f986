"""The M-step of each covariance model, NumPy against compiled, in microseconds a call.

For each of mclust's 14 models (and the one-dimensional E), on faithful (272 x 2) and
iris (150 x 4) with K components: the statistics of random responsibilities, a previous
covariance of the model from other responsibilities (what EM hands the M-step), then
``structure.maximize`` with the compiled loops (:mod:`emkit.families._covariance_compiled`,
Numba) and ``structure.maximize_numpy``, CPU time of this thread per call (best of
``--repeats`` batches; robust to other processes' load). scikit-learn's four structures
(VII, VVI, EEE, VVV) have no compiled path: they divide in NumPy, listed for scale.
The first run compiles the loops (seconds, once per environment: Numba's disk cache).

    python bench/profile_mstep.py [--k 3] [--repeats 5] [--calls 300] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from emkit.families.covariance import MCLUST_MODELS
from emkit.families.gaussian import GaussianFamily, covariance_structure
from emkit.io import load_faithful

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def load(name: str) -> np.ndarray:
    if name == "faithful":
        return load_faithful()[0]
    return np.loadtxt(DATA / f"mclust_{name}.csv", delimiter=",", skiprows=1, ndmin=2)


def m_step_inputs(model: str, X: np.ndarray, K: int, seed: int = 0) -> tuple[Any, ...]:
    """(structure, scatter, mass, previous covariances) as an EM iteration makes them."""
    structure = covariance_structure(model)
    family = GaussianFamily(structure, reg_covar=1e-6).bind(X, None)
    Xc = X - family.shift
    stats = structure.statistics(Xc.copy())
    shared = structure.shared_statistics(Xc, None)
    rng = np.random.default_rng(seed)

    def posterior() -> Any:
        z = rng.dirichlet(np.ones(K), len(X))
        return family.attached_prior(K).posterior((z.sum(0), z.T @ stats, shared))

    first, post = posterior(), posterior()
    previous = structure.maximize(first.scatter, first.mass, 1e-6, None)[0]
    return structure, post.scatter, post.mass, previous


def per_call(fn: Any, args: tuple[Any, ...], calls: int, repeats: int) -> float:
    """CPU seconds of this thread per call, best of ``repeats`` batches."""
    fn(*args)  # (compiles on the first call)
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        for _ in range(calls):
            fn(*args)
        best = min(best, (time.thread_time() - start) / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=3, help="components")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many batches")
    parser.add_argument("--calls", type=int, default=300, help="calls a batch")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    results: dict[str, dict[str, dict[str, float | None]]] = {}
    print(f"{'data':<9}{'model':<6}{'numpy us':>10}{'compiled us':>13}{'ratio':>8}")
    for data in ("faithful", "iris"):
        X = load(data)
        results[data] = {}
        for model in (*MCLUST_MODELS, "E"):
            x = X[:, :1] if model == "E" else X
            structure, scatter, mass, previous = m_step_inputs(model, x, args.k)
            call = (scatter, mass, 1e-6, previous)
            compiled = None
            if structure.compiled_m_step:
                numpy = per_call(structure.maximize_numpy, call, args.calls, args.repeats)
                if structure._maximize_compiled(*call) is not None:
                    compiled = per_call(structure.maximize, call, args.calls, args.repeats)
            else:
                numpy = per_call(structure.maximize, call, args.calls, args.repeats)
            results[data][model] = {
                "numpy_us": 1e6 * numpy,
                "compiled_us": None if compiled is None else 1e6 * compiled,
            }
            shown = "-" if compiled is None else f"{1e6 * compiled:.1f}"
            ratio = "-" if compiled is None else f"{numpy / compiled:.1f}x"
            print(f"{data:<9}{model:<6}{1e6 * numpy:>10.1f}{shown:>13}{ratio:>8}")
    if args.json is not None:
        args.json.write_text(json.dumps({"k": args.k, "results": results}, indent=2))


if __name__ == "__main__":
    main()
