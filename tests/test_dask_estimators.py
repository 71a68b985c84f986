"""Every estimator fits and predicts Dask arrays and DataFrames through the one streamed
path (``check_streamed``, the Dask engine chosen by the input): the in-memory model and
predictions to 1e-10, on Dask's threaded scheduler; bad Dask input refused as
GaussianMixture refuses it. GaussianMixture itself: test_dask.py; a cluster:
test_dask_distributed.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")

import dask  # noqa: E402

from emkit import (  # noqa: E402
    PPCA,
    BayesianGaussianMixture,
    BernoulliMixture,
    CategoricalMixture,
    FactorAnalysis,
    InputError,
    KMeans,
    MixtureModel,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    ModelBasedClustering,
    PoissonMixture,
    StudentTMixture,
)

RNG = np.random.default_rng(3)
# two clusters along one direction, the other directions of clearly different spread
# (PPCA and factor analysis then have a well-separated principal subspace)
_Z = np.vstack([RNG.normal(0.0, 1.0, (250, 1)), RNG.normal(6.0, 1.0, (350, 1))])
GAUSS = _Z @ np.array([[1.0, 0.8, -0.6]]) + RNG.normal(0, [0.3, 0.6, 1.2], (600, 3))
COUNTS = RNG.poisson(np.where(_Z > 3, 6.0, 1.5), (600, 3)).astype(np.float64)
BINARY = (RNG.uniform(size=(600, 3)) < np.where(_Z > 3, 0.8, 0.2)).astype(np.float64)
CODES = np.where(_Z > 3, RNG.integers(0, 2, (600, 3)), RNG.integers(1, 3, (600, 3)))
CODES = CODES.astype(np.float64)

CASES: list[tuple[str, Callable[[], Any], np.ndarray]] = [
    ("student-t", lambda: StudentTMixture(2, random_state=0), GAUSS),
    ("mixture-model", lambda: MixtureModel(n_components=2, random_state=0), GAUSS),
    ("poisson", lambda: PoissonMixture(2, random_state=0), COUNTS),
    ("bernoulli", lambda: BernoulliMixture(2, random_state=0), BINARY),
    ("categorical", lambda: CategoricalMixture(2, random_state=0), CODES),
    ("bgm", lambda: BayesianGaussianMixture(n_components=2, random_state=0), GAUSS),
    ("ppca", lambda: PPCA(n_components=1, random_state=0), GAUSS),
    ("factor-analysis", lambda: FactorAnalysis(n_components=1, random_state=0), GAUSS),
    ("mppca", lambda: MixtureOfPPCA(2, n_factors=1, random_state=0), GAUSS),
    ("mfa", lambda: MixtureOfFactorAnalyzers(2, n_factors=1, random_state=0), GAUSS),
    ("kmeans", lambda: KMeans(2, random_state=0, n_init=1), GAUSS),
    ("selection", lambda: ModelBasedClustering(n_components=[1, 2], random_state=0), GAUSS),
    (
        "bernoulli-binarize",
        lambda: BernoulliMixture(2, binarize=0.5, random_state=0),
        BINARY * 0.9 + 0.05,
    ),
]
METHODS = ("predict", "predict_proba", "score_samples", "transform", "score")
# fitted values that are not numbers of the model
SKIPPED = {"trace_", "best_estimator_", "results_", "family_"}


@pytest.fixture(autouse=True)
def _threads() -> Any:
    with dask.config.set(scheduler="threads"):
        yield


def _assert_same_fit(memory: Any, fitted: Any, tol: float = 1e-10) -> None:
    names = [n for n in vars(memory) if n.endswith("_") and not n.startswith("_")]
    compared = 0
    for name in names:
        if name in SKIPPED:
            continue
        a, b = getattr(memory, name), getattr(fitted, name)
        if isinstance(a, int | np.integer | bool):
            assert a == b, name
        elif isinstance(a, float | np.ndarray) and np.asarray(a).dtype.kind in "fiub":
            b = b.compute() if hasattr(b, "compute") else b
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol, err_msg=name)
            compared += 1
    assert compared >= 2  # the parameters were compared, not only counts


@pytest.mark.parametrize(("name", "make", "data"), CASES, ids=[c[0] for c in CASES])
def test_every_estimator_fits_and_predicts_dask_rows(
    name: str, make: Callable[[], Any], data: np.ndarray
) -> None:
    Xd = da.from_array(data, chunks=(128, 3))
    memory = make().fit(data)
    fitted = make().fit(Xd)  # the Dask engine, chosen by the input
    _assert_same_fit(memory, fitted)
    for name in ("labels_", "uncertainty_"):  # fitted per-row values: in memory
        if hasattr(memory, name):
            assert isinstance(getattr(fitted, name), np.ndarray), name
    checked = 0
    for method in METHODS:
        if not hasattr(memory, method):
            continue
        expected = getattr(memory, method)(data)
        got = getattr(fitted, method)(Xd)
        if method == "score":
            assert got == pytest.approx(expected, rel=1e-10, abs=1e-10)
        else:
            # per-row results stay Dask arrays, block for block
            assert isinstance(got, da.Array), method
            assert got.chunks[0] == Xd.chunks[0], method
            np.testing.assert_allclose(got.compute(), expected, rtol=1e-10, atol=1e-10)
        checked += 1
    assert checked >= 2
    with pytest.raises(InputError, match=r"X has 2 features, but \w+ is expecting 3"):
        fitted.score(da.from_array(data[:, :2], chunks=(128, 2)))


@pytest.mark.parametrize("make", [CASES[0][1], CASES[6][1], CASES[10][1]])
def test_a_dask_dataframe_keeps_its_column_names(make: Callable[[], Any]) -> None:
    frame = pd.DataFrame(GAUSS, columns=["a", "b", "c"])
    memory = make().fit(frame)
    fitted = make().fit(dd.from_pandas(frame, npartitions=3))
    assert list(fitted.feature_names_in_) == ["a", "b", "c"]
    _assert_same_fit(memory, fitted)
    # the fitted model reads the same table in memory, and refuses other columns
    method = "score_samples" if hasattr(memory, "score_samples") else "transform"
    expected = getattr(memory, method)(frame)
    np.testing.assert_allclose(getattr(fitted, method)(frame), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_dask_input_is_refused_before_a_fit(make: Callable[[], Any]) -> None:
    Xd = da.from_array(GAUSS, chunks=(128, 3))
    unknown = Xd[Xd[:, 0] > -100]  # boolean indexing: unknown chunk sizes
    with pytest.raises(InputError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\)"):
        make().fit(unknown)
    frame = dd.from_pandas(
        pd.DataFrame({"a": GAUSS[:, 0], "b": GAUSS[:, 1], "name": ["x"] * len(GAUSS)}),
        npartitions=2,
    )
    with pytest.raises(InputError, match=r"non-numeric columns: 'name'.*select_dtypes"):
        make().fit(frame)


def test_a_bad_value_is_named_by_its_dask_block() -> None:
    """A family's check runs on each block where it lives, naming the block's rows."""
    bad = COUNTS.copy()
    bad[300, 1] = -1.0
    with pytest.raises(InputError, match=r"In the block of rows 256\.\.383 of DaskRows\(shape"):
        PoissonMixture(2, random_state=0).fit(da.from_array(bad, chunks=(128, 3)))
    fitted = PoissonMixture(2, random_state=0).fit(COUNTS)
    with pytest.raises(InputError, match=r"In the block of rows 256\.\.383 of DaskRows\(shape"):
        fitted.predict(da.from_array(bad, chunks=(128, 3)))
