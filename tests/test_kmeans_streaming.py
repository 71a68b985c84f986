"""KMeans on a table streamed from a file (emkit.io.open_table): the in-memory fit's
iterations, centers, labels and inertia to 1e-10, with weights, both starts, and a start
drawn from a sample beyond INIT_ROWS; predict, transform and score of a table."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pytest

import emkit.estimators._rows as rows_module
from emkit import InputError, KMeans
from emkit.io import open_table

RNG = np.random.default_rng(7)
CENTERS = np.array([[0.0, 0.0, 0.0], [6.0, 1.0, -2.0], [-3.0, 5.0, 4.0]])
X = CENTERS[RNG.integers(0, 3, 900)] + RNG.normal(0.0, 1.5, (900, 3))


def _table(tmp_path: pathlib.Path, data: np.ndarray, block_rows: int = 128) -> Any:
    np.save(tmp_path / "x.npy", data)
    return open_table(tmp_path / "x.npy", block_rows=block_rows)


def _assert_same_fit(memory: KMeans, streamed: KMeans) -> None:
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_array_equal(streamed.labels_, memory.labels_)
    np.testing.assert_allclose(streamed.cluster_centers_, memory.cluster_centers_, atol=1e-10)
    assert streamed.inertia_ == pytest.approx(memory.inertia_, rel=1e-10)
    np.testing.assert_allclose(streamed.trace_.objective, memory.trace_.objective, rtol=1e-10)


@pytest.mark.parametrize("init", ["k-means++", "random"])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_streamed_kmeans_is_the_in_memory_kmeans(
    tmp_path: pathlib.Path, init: str, weighted: bool
) -> None:
    w = RNG.uniform(0.5, 2.0, X.shape[0]) if weighted else None
    table = _table(tmp_path, X)
    kw: dict[str, Any] = {"init": init, "random_state": 0, "tol": 0.0}
    memory = KMeans(3, **kw).fit(X, sample_weight=w)
    streamed = KMeans(3, **kw).fit(table, sample_weight=w)
    _assert_same_fit(memory, streamed)
    assert streamed.n_features_in_ == 3 and not hasattr(streamed, "feature_names_in_")
    np.testing.assert_array_equal(streamed.predict(table), memory.predict(X))
    np.testing.assert_allclose(streamed.transform(table), memory.transform(X), atol=1e-10)
    assert streamed.score(table, sample_weight=w) == pytest.approx(
        memory.score(X, sample_weight=w), rel=1e-10
    )


def test_beyond_the_sample_bound_the_start_reads_only_its_rows(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past INIT_ROWS rows, k-means++ runs on the same uniform sample in memory and
    on a table, and the table is never read whole."""
    monkeypatch.setattr(rows_module, "INIT_ROWS", 200)
    table = _table(tmp_path, X, block_rows=100)
    memory = KMeans(3, random_state=1).fit(X)

    def refuse(self: Any) -> Any:
        raise AssertionError("the whole table was read into memory")

    monkeypatch.setattr(type(table), "read", refuse)
    _assert_same_fit(memory, KMeans(3, random_state=1).fit(table))
    with pytest.raises(InputError, match=r"A callable init receives every row of X.*k-means\+\+"):
        KMeans(3, init=lambda X, k, random_state: X[:k]).fit(table)


def test_a_streamed_kmeans_refuses_bad_tables(tmp_path: pathlib.Path) -> None:
    bad = X.copy()
    bad[500, 1] = np.nan
    with pytest.raises(InputError, match=r"contains NaN or infinity; KMeans needs finite values"):
        KMeans(3).fit(_table(tmp_path, bad))
    fitted = KMeans(3, random_state=0).fit(X)
    np.save(tmp_path / "two.npy", X[:, :2])
    with pytest.raises(InputError, match=r"X has 2 features, but KMeans is expecting 3"):
        fitted.predict(open_table(tmp_path / "two.npy"))


def test_a_streamed_kmeans_keeps_its_distance_bounds(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The C-step's per-row labels and bounds are written through views of the blocks'
    slices, so a streamed fit skips rows with them as the in-memory fit does: after the
    fit they hold its last assignment and finite bounds."""
    import emkit.estimators.kmeans as kmeans_module

    states: list[tuple[np.ndarray, ...]] = []
    row_state = kmeans_module.row_state

    def spy(n: int) -> Any:
        states.append(row_state(n))
        return states[-1]

    monkeypatch.setattr(kmeans_module, "row_state", spy)
    memory = KMeans(3, random_state=0, tol=0.0).fit(X)
    streamed = KMeans(3, random_state=0, tol=0.0).fit(_table(tmp_path, X, block_rows=64))
    _assert_same_fit(memory, streamed)
    labels, upper, lower = states[-1]
    np.testing.assert_array_equal(labels, streamed.labels_)
    assert (upper > 0).all() and np.isfinite(lower).all()
