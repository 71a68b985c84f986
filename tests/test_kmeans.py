"""emkit.KMeans: scikit-learn's Lloyd from the same start, invariants, equivalences, errors."""

from __future__ import annotations

import dataclasses
import logging
import re
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import DATASETS, blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.cluster import KMeans as SkKMeans
from sklearn.metrics.pairwise import euclidean_distances

from emkit import ConvergenceWarning, InputError, KMeans
from emkit.engines import InMemoryEngine, RowSource
from emkit.inference import fit_em
from emkit.models.kmeans import (
    KMeansModel,
    KMeansParams,
    KMeansStats,
    SparseRows,
    design_matrix,
    row_state,
)


def _start(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k distinct rows of X, as initial centers."""
    return X[np.random.default_rng(seed).choice(X.shape[0], k, replace=False)].copy()


def _both(X, init, sample_weight=None, **kw):
    """emkit's and scikit-learn's Lloyd fitted from the same centers."""
    kw = {"n_init": 1, "tol": 1e-4, "max_iter": 300, **kw}
    ours = KMeans(init.shape[0], init=init, monotonicity="raise", **kw)
    ours.fit(X, sample_weight=sample_weight)
    ref = SkKMeans(init.shape[0], init=init, algorithm="lloyd", **kw)
    ref.fit(X, sample_weight=sample_weight)
    return ours, ref


def _assert_same(ours, ref, rtol: float = 1e-10) -> None:
    scale = np.abs(ref.cluster_centers_).max()
    np.testing.assert_allclose(
        ours.cluster_centers_, ref.cluster_centers_, rtol=rtol, atol=rtol * scale
    )
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=rtol)
    assert ours.n_iter_ == ref.n_iter_


# -- scikit-learn's Lloyd from the same centers ------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_same_centers_labels_and_inertia_as_sklearn(dataset: np.ndarray, k: int) -> None:
    ours, ref = _both(dataset, _start(dataset, k, seed=k))
    _assert_same(ours, ref)
    assert ours.converged_


def test_same_as_sklearn_with_sample_weights(dataset: np.ndarray) -> None:
    w = np.random.default_rng(1).uniform(0.1, 3.0, dataset.shape[0])
    ours, ref = _both(dataset, _start(dataset, 4), sample_weight=w)
    _assert_same(ours, ref)


def test_same_as_sklearn_with_many_clusters_in_several_blocks_of_rows() -> None:
    X = blobs(4000, 3, 12, seed=8, spread=3.0)  # K = 60: distances in blocks of 1092 rows
    ours, ref = _both(X, _start(X, 60), max_iter=30)
    _assert_same(ours, ref)


def test_tol_zero_runs_both_to_the_same_fixed_point() -> None:
    X = DATASETS["overlapping2d"]()
    ours, ref = _both(X, _start(X, 6), tol=0.0)
    _assert_same(ours, ref)
    # the last iteration moved nothing: the centers are the means of their rows
    means = np.array([X[ours.labels_ == k].mean(axis=0) for k in range(6)])
    np.testing.assert_allclose(ours.cluster_centers_, means, rtol=1e-12)


def test_max_iter_stops_both_at_the_same_place() -> None:
    X = DATASETS["overlapping2d"]()
    ours, ref = _both(X, _start(X, 8, seed=3), tol=0.0, max_iter=3)
    _assert_same(ours, ref)
    assert ours.n_iter_ == 3 and not ours.converged_


def test_float32_data_are_fitted_in_float32_close_to_sklearn() -> None:
    X = blobs(2000, 4, 5, seed=7).astype(np.float32)
    ours, ref = _both(X, _start(X, 5))
    assert ours.cluster_centers_.dtype == np.float32
    assert ours.transform(X[:3]).dtype == np.float32
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert (ours.labels_ == ref.labels_).mean() > 0.999
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)
    # and float32 ends where float64 does
    ours64, _ = _both(X.astype(np.float64), _start(X, 5).astype(np.float64))
    np.testing.assert_allclose(ours.cluster_centers_, ours64.cluster_centers_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_same_random_state_draws_the_same_starts_as_sklearn(init: str) -> None:
    X = blobs(600, 3, 4, seed=11)
    w = np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0])
    for sample_weight in (None, w):
        ours = KMeans(5, init=init, random_state=42).fit(X, sample_weight=sample_weight)
        ref = SkKMeans(5, init=init, random_state=42).fit(X, sample_weight=sample_weight)
        _assert_same(ours, ref)


def test_one_empty_cluster_takes_the_farthest_row_as_in_sklearn() -> None:
    X = DATASETS["blobs3d"]()
    init = _start(X, 4)
    init[2] = X.max(axis=0) + 100.0  # no row is nearest to it at the start
    ours, ref = _both(X, init)
    _assert_same(ours, ref)
    assert np.unique(ours.labels_).shape[0] == 4


def test_two_empty_clusters_take_the_two_farthest_rows_as_in_sklearn() -> None:
    X = DATASETS["blobs3d"]()
    init = _start(X, 5)
    init[1] = X.max(axis=0) + 100.0
    init[3] = X.min(axis=0) - 200.0
    ours, ref = _both(X, init, tol=0.0)
    _assert_same(ours, ref)


def test_an_empty_cluster_keeps_its_center_when_every_row_is_on_its_center() -> None:
    X = np.repeat([[0.0, 0.0], [1.0, 1.0]], 5, axis=0)
    init = np.array([[0.0, 0.0], [1.0, 1.0], [9.0, 9.0]])
    with pytest.warns(ConvergenceWarning, match=r"distinct clusters \(2\) found smaller than"):
        km = KMeans(3, init=init, monotonicity="raise").fit(X)
    np.testing.assert_array_equal(km.cluster_centers_, init)
    assert km.inertia_ == 0.0


# -- invariants ----------------------------------------------------------------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(10, 300),
    d=st.integers(1, 5),
    k=st.integers(1, 8),
    spread=st.sampled_from([0.1, 3.0, 100.0]),
    offset=st.sampled_from([0.0, 1e4]),
    weighted=st.booleans(),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_objective_never_decreases(seed, n, d, k, spread, offset, weighted, dtype) -> None:
    rng = np.random.default_rng(seed)
    X = (rng.normal(0, spread, (k, d))[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(
        dtype
    ) + dtype(offset)
    w = rng.uniform(0.0, 2.0, n) if weighted else None
    km = KMeans(k, init="random", n_init=1, tol=0.0, max_iter=50, random_state=seed)
    km.set_params(monotonicity="raise", chunk_size=int(rng.integers(1, n + 1)))
    km.fit(X, sample_weight=w)  # raises MonotonicityError on a decrease
    objective = km.trace_.objective
    assert objective.shape == (km.n_iter_,)
    # the inertia that ends the fit is no worse than the last iteration's
    # up to round-off in the rows' squared norms (float32: eps32 of the total variance),
    # and in the final centres: each is the mean rounded to the working dtype, which
    # moves it by up to |c| eps / 2 per coordinate and so adds up to d (|c| eps / 2)^2 per
    # unit of weight (data at 1e4 in float32: rounding steps of 1e-3)
    weights = np.ones(n) if w is None else w
    centred = X.astype(np.float64) - X.astype(np.float64).mean(axis=0)
    variance = weights @ (centred**2).sum(axis=1) / weights.sum()
    slack = (1e-12 if dtype == np.float64 else 1e-6) * variance
    slack += d * (float(np.abs(X).max()) * np.finfo(dtype).eps / 2) ** 2
    assert -km.inertia_ / weights.sum() >= objective[-1] - slack


def test_integer_weights_are_repeated_rows() -> None:
    X = DATASETS["blobs3d"]()
    w = np.random.default_rng(2).integers(0, 4, X.shape[0])
    init = _start(X[w > 0], 4)
    weighted = KMeans(4, init=init, tol=0.0).fit(X, sample_weight=w)
    repeated = KMeans(4, init=init, tol=0.0).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-12)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-12)
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_array_equal(np.repeat(weighted.labels_, w), repeated.labels_)


@pytest.mark.parametrize("chunk_size, n_threads", [(1, 1), (7, 2), (64, 3), (None, 1)])
def test_chunks_and_threads_do_not_change_the_result(chunk_size, n_threads) -> None:
    X = blobs(900, 4, 6, seed=5, spread=2.0)
    init = _start(X, 6)
    whole = KMeans(6, init=init, chunk_size=10_000, n_threads=1).fit(X)
    chunked = KMeans(6, init=init, chunk_size=chunk_size, n_threads=n_threads).fit(X)
    np.testing.assert_allclose(chunked.cluster_centers_, whole.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(chunked.labels_, whole.labels_)
    assert chunked.n_iter_ == whole.n_iter_
    assert chunked.inertia_ == pytest.approx(whole.inertia_, rel=1e-12)


def test_row_order_does_not_matter() -> None:
    X = DATASETS["overlapping2d"]()
    order = np.random.default_rng(0).permutation(X.shape[0])
    init = _start(X, 5)
    a = KMeans(5, init=init).fit(X)
    b = KMeans(5, init=init).fit(X[order])
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-12)
    np.testing.assert_array_equal(a.labels_[order], b.labels_)


def test_statistics_add_over_blocks_and_give_the_inertia() -> None:
    X = blobs(5000, 3, 4, seed=9)
    w = np.random.default_rng(1).uniform(0, 2, X.shape[0])
    A = design_matrix(X, X.mean(axis=0))
    centers = _start(A[:, :3], 4)
    model = KMeansModel()
    e_step = model.expectation(KMeansParams(centers))
    whole = e_step(A, w)
    parts = e_step(A[:2345], w[:2345]) + e_step(A[2345:], w[2345:])
    for field in ("nk", "sum_x", "sum_xx"):
        np.testing.assert_allclose(getattr(parts, field), getattr(whole, field), rtol=1e-12)
    # the inertia from the statistics is the direct sum of squared distances
    labels = ((A[:, None, :3] - centers) ** 2).sum(axis=2).argmin(axis=1)
    distances = ((A[:, :3] - centers[labels]) ** 2).sum(axis=1)
    assert whole.inertia(centers) == pytest.approx(w @ distances, rel=1e-12)
    np.testing.assert_allclose(whole.nk, np.bincount(labels, w, minlength=4), rtol=1e-12)
    # no far rows unless a cluster is empty; then the K farthest rows, farthest first
    assert whole.far is None and model.supplement(KMeansParams(centers), whole) is None
    empty = whole + KMeansStats(-whole.nk * np.array([0, 1, 0, 0]), whole.sum_x, whole.sum_xx)
    far_rows = model.supplement(KMeansParams(centers), empty)
    far = (far_rows(A[:2345], w[:2345]) + far_rows(A[2345:], w[2345:])).far
    order = np.argsort(-distances, kind="stable")[:4]
    np.testing.assert_allclose(far.distance, distances[order], rtol=1e-12)
    np.testing.assert_array_equal(far.label, labels[order])
    np.testing.assert_array_equal(far.x, A[order, :3])
    np.testing.assert_array_equal(far.weight, w[order])


# -- the fitted estimator ------------------------------------------------------------------


def test_predict_transform_score_and_the_fit_shortcuts_agree() -> None:
    X = blobs(400, 3, 3, seed=4) + 1e3  # far from the origin: distances are expanded about it
    km = KMeans(3, random_state=0).fit(X)
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    np.testing.assert_array_equal(KMeans(3, random_state=0).fit_predict(X), km.labels_)
    distances = km.transform(X)
    direct = np.sqrt(((X[:, None, :] - km.cluster_centers_) ** 2).sum(axis=2))
    np.testing.assert_allclose(distances, direct, rtol=1e-9)
    # scikit-learn expands about the origin, 1e3 away: it loses digits that emkit keeps
    np.testing.assert_allclose(distances, euclidean_distances(X, km.cluster_centers_), rtol=1e-5)
    np.testing.assert_allclose(KMeans(3, random_state=0).fit_transform(X), distances)
    np.testing.assert_array_equal(distances.argmin(axis=1), km.labels_)
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-12)
    assert km.inertia_ == pytest.approx((distances.min(axis=1) ** 2).sum(), rel=1e-9)
    w = np.random.default_rng(0).uniform(0, 2, X.shape[0])
    assert km.score(X, sample_weight=w) == pytest.approx(
        -(w @ distances.min(axis=1) ** 2), rel=1e-9
    )
    assert km.trace_.objective[-1] <= -km.inertia_ / X.shape[0] + 1e-9
    assert km.get_feature_names_out().tolist() == ["kmeans0", "kmeans1", "kmeans2"]


def test_n_init_keeps_the_best_run() -> None:
    X = blobs(500, 2, 6, seed=12, spread=2.0)
    runs = [KMeans(6, init="random", n_init=1, random_state=s).fit(X).inertia_ for s in range(5)]
    best = KMeans(6, init="random", n_init=10, random_state=0).fit(X)
    assert best.inertia_ <= min(runs) + 1e-9
    assert KMeans(6, init="random", random_state=0).fit(X).inertia_ == best.inertia_  # auto: 10


def test_callable_init_gets_centred_data_and_a_random_state() -> None:
    X = blobs(300, 2, 3, seed=1) + 50.0
    seen = {}

    def init(data, n_clusters, random_state):
        seen.update(mean=data.mean(axis=0), random_state=random_state)
        return data[:n_clusters]

    km = KMeans(3, init=init, n_init=1, random_state=0).fit(X)
    np.testing.assert_allclose(seen["mean"], 0.0, atol=1e-9)
    assert isinstance(seen["random_state"], np.random.RandomState)
    ref = SkKMeans(3, init=X[:3], n_init=1).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10)


def test_given_centers_with_n_init_warn_and_run_once() -> None:
    X = blobs(100, 2, 2, seed=0)
    with pytest.warns(
        RuntimeWarning, match="performing only one init in KMeans instead of n_init=3"
    ):
        km = KMeans(2, init=X[:2], n_init=3).fit(X)
    assert km.n_iter_ >= 1


def test_duplicate_points_warn_of_fewer_distinct_clusters() -> None:
    X = np.repeat([[0.0], [1.0]], 4, axis=0)
    with pytest.warns(
        ConvergenceWarning, match=r"distinct clusters \(2\) found smaller than n_clusters \(3\)"
    ):
        KMeans(3, random_state=0).fit(X)


def test_verbose_logs_each_iteration(caplog: pytest.LogCaptureFixture) -> None:
    X = blobs(100, 2, 2, seed=0)
    with caplog.at_level(logging.INFO, logger="emkit"):
        km = KMeans(2, random_state=0, verbose=1).fit(X)
    text = caplog.text
    assert text.count("Initialization complete") == 1
    assert text.count("Iteration") == km.n_iter_
    # scikit-learn's lines: iterations from 0, the inertia of each assignment
    first = float(re.search(r"Iteration 0, inertia ([0-9.e+-]+)\.", text).group(1))
    assert first == pytest.approx(-km.trace_.objective[0] * X.shape[0], rel=1e-12)
    assert f"Converged at iteration {km.n_iter_ - 1}: strict convergence." in text


def test_verbose_prints_on_stdout_as_sklearn_does(capsys: pytest.CaptureFixture[str]) -> None:
    X = blobs(300, 2, 3, seed=1)
    km = KMeans(3, init="random", n_init=2, tol=10.0, random_state=0, verbose=True).fit(X)
    out = capsys.readouterr().out
    assert out.count("Initialization complete") == 2
    assert re.search(r"Converged at iteration \d+: center shift .* within tolerance .*\.", out)
    assert "Iteration" in out and km.n_iter_ >= 1
    # silent otherwise, and the logger is left as it was
    KMeans(3, random_state=0).fit(X)
    assert capsys.readouterr().out == ""
    assert not logging.getLogger("emkit").handlers


def test_kmeans_plusplus_is_close_to_sklearns_best_on_large_k() -> None:
    X = blobs(3000, 5, 20, seed=3, spread=6.0)
    ours = KMeans(20, n_init=3, random_state=1).fit(X)
    ref = SkKMeans(20, n_init=3, random_state=1).fit(X)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-9)


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_clusters": 0}, r"n_clusters must be an integer >= 1, got 0"),
        ({"n_clusters": 2.5}, r"n_clusters must be an integer >= 1, got 2\.5"),
        ({"init": "kmeans"}, r"init must be one of 'k-means\+\+', 'random', got 'kmeans'"),
        ({"n_init": 0}, r"n_init must be an integer >= 1, got 0"),
        ({"n_init": "many"}, r"n_init must be 'auto' or an integer >= 1, got 'many'"),
        ({"max_iter": 0}, r"max_iter must be an integer >= 1, got 0"),
        ({"tol": -1.0}, r"tol must be a finite number >= 0\.0, got -1\.0"),
        ({"verbose": -1}, r"verbose must be an integer >= 0, got -1"),
        ({"monotonicity": "never"}, r"monotonicity must be one of 'raise', 'warn', 'off'"),
        ({"algorithm": "auto"}, r"algorithm must be one of 'lloyd', 'elkan', got 'auto'"),
        ({"copy_x": "yes"}, r"copy_x must be True or False, got 'yes'"),
        (
            {"init": np.zeros((3, 4))},
            r"The shape of the initial centers \(3, 4\) does not match the number of "
            r"features of the data 2: init must have shape \(n_clusters, n_features\)",
        ),
        ({"random_state": "seed"}, r"random_state must be None, an int"),
        ({"chunk_size": 0}, r"chunk_size must be a positive integer or None, got 0"),
        ({"n_threads": 0}, r"n_threads must be a positive integer or None, got 0"),
        (
            {"init": np.zeros((2, 2))},
            r"init must have shape \(n_clusters, n_features\) = \(3, 2\), got \(2, 2\)",
        ),
        ({"init": np.full((3, 2), np.nan)}, r"init contains NaN or infinity; pass finite centers"),
        ({"init": [["a", "b"]] * 3}, r"init must be numeric centers"),
        ({"init": lambda X, k, random_state: X[:2]}, r"init\(X\) must have shape .* got \(2, 2\)"),
    ],
)
def test_bad_parameters_are_named_with_the_fix(params, match) -> None:
    X = blobs(50, 2, 2, seed=0)
    with pytest.raises(InputError, match=match):
        KMeans(**{"n_clusters": 3, **params}).fit(X)


def test_bad_data_are_named_with_the_fix() -> None:
    X = blobs(50, 2, 2, seed=0)
    with pytest.raises(
        InputError, match=r"X has 2 samples but n_clusters=3: .* Decrease n_clusters"
    ):
        KMeans(3).fit(X[:2])
    with pytest.raises(InputError, match=r"X has 1 sample but n_clusters=3"):
        KMeans(3).fit(X[:1])
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(InputError, match=r"X contains NaN \(first at row 4, column 1\)"):
        KMeans(3).fit(bad)
    with pytest.raises(InputError, match=r"sample_weight must have shape \(50,\) to match X"):
        KMeans(3).fit(X, sample_weight=np.ones(3))
    w = np.zeros(50)
    w[:2] = 1.0
    with pytest.raises(InputError, match=r"init='random' draws 3 distinct rows .* only 2 positive"):
        KMeans(3, init="random").fit(X, sample_weight=w)
    km = KMeans(3, random_state=0).fit(X)
    for method in (km.predict, km.transform, km.score):
        with pytest.raises(
            InputError, match=r"X has 3 features, but KMeans is expecting 2 features"
        ):
            method(np.ones((4, 3)))


# -- the bounds (Hamerly's acceleration): Lloyd's iterates, every one ---------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _Recording(KMeansModel):
    """KMeansModel that checks the rows' bounds and records, at every M-step, the C-step's
    plan and labels, the statistics of its assignment and the new centers."""

    rows: tuple = ()  # (A, labels, upper, lower)
    seen: list = dataclasses.field(default_factory=list)

    def m_step(self, params, stats):
        A, labels, upper, lower = self.rows
        plan = self.plan(params)
        new = super().m_step(params, stats)
        if self.bounds and plan[1]:
            # the bounds hold for the centers the rows were assigned to, up to round-off
            d = A.shape[1] - 2
            x = A[:, :d].astype(np.float64)
            dist = np.sqrt(((x[:, None, :] - params.centers) ** 2).sum(axis=2))
            at = np.arange(x.shape[0])
            slack = 1e-9 * (1.0 + np.sqrt((x**2).sum(axis=1)))
            assert (upper >= dist[at, labels] - slack).all()
            dist[at, labels] = np.inf
            assert (lower <= dist.min(axis=1) + slack).all()
        self.seen.append((plan, labels.copy(), new.last.stats, new.centers))
        return new


def _lloyd_steps(X, init, w=None, *, bounds, max_iter=15, chunk_size=None, n_threads=1):
    """Every iteration of emkit's Lloyd from ``init``, with or without the bounds."""
    A = design_matrix(X, X.mean(axis=0))
    state = row_state(X.shape[0])
    model = _Recording(0.0, X.dtype.type, bounds, (A, *state))
    with InMemoryEngine(chunk_size, n_threads) as engine:
        fit_em(
            model,
            engine,
            RowSource(A, w, columns=state, work_bytes=model.row_bytes(X.shape[1])),
            KMeansParams(np.asarray(init, np.float64) - X.mean(axis=0)),
            tol=0.0,
            max_iter=max_iter,
            monotonicity="raise",
            dtype=X.dtype.type,
        )
    return model.seen


def _near_ties(seed: int = 0) -> np.ndarray:
    """Overlapping clusters on a lattice: duplicated rows, rows equidistant from two
    centers, and rows a round-off away from such ties."""
    rng = np.random.default_rng(seed)
    X = rng.integers(-4, 5, (1500, 2)).astype(np.float64)
    X[::7] += rng.choice([-1.0, 1.0], (X[::7].shape[0], 2)) * 1e-15 * rng.integers(1, 4, (1, 2))
    return X


_STEP_DATA = {
    "overlapping2d": lambda: DATASETS["overlapping2d"](),
    "near_ties": _near_ties,
    "blobs8d_k12": lambda: blobs(3000, 8, 12, seed=6, spread=2.0),
}


@pytest.mark.parametrize("name", sorted(_STEP_DATA))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bounds_give_lloyds_labels_and_centers_at_every_iteration(name, weighted, dtype) -> None:
    X = _STEP_DATA[name]().astype(dtype)
    k = 12 if name == "blobs8d_k12" else 6
    init = _start(X, k, seed=3)
    w = np.random.default_rng(4).uniform(0.2, 3.0, X.shape[0]) if weighted else None
    w = None if w is None else w.astype(dtype)
    plain = _lloyd_steps(X, init, w, bounds=False, max_iter=40)
    fast = _lloyd_steps(X, init, w, bounds=True, max_iter=40)
    assert len(fast) == len(plain)
    for (_, labels, stats, centers), (_, labels0, stats0, centers0) in zip(
        fast, plain, strict=True
    ):
        np.testing.assert_array_equal(labels, labels0)
        assert stats.moved == stats0.moved
        np.testing.assert_array_equal(stats.count, stats0.count)
        # the sums of the rows that moved, added to the last totals, are the full sums
        scale = np.abs(stats0.sum_x).max()
        np.testing.assert_allclose(stats.nk, stats0.nk, rtol=1e-12, atol=1e-12 * stats0.nk.max())
        np.testing.assert_allclose(stats.sum_x, stats0.sum_x, rtol=1e-12, atol=1e-12 * scale)
        np.testing.assert_allclose(stats.sum_xx, stats0.sum_xx, rtol=1e-12)
        np.testing.assert_allclose(centers, centers0, rtol=1e-12, atol=1e-12 * np.abs(X).max())
    # and the bounds did skip rows and sum only the moved ones
    plans = [step[0] for step in fast]
    assert (False, True, False) in plans


@pytest.mark.parametrize("chunk_size, n_threads", [(1, 1), (7, 2), (256, 2), (None, 2)])
def test_bounds_do_not_depend_on_the_chunks_or_threads(chunk_size, n_threads) -> None:
    X = blobs(1200, 3, 6, seed=5, spread=1.5)
    init = _start(X, 7)
    whole = _lloyd_steps(X, init, bounds=False, max_iter=30, chunk_size=10_000)
    chunked = _lloyd_steps(
        X, init, bounds=True, max_iter=30, chunk_size=chunk_size, n_threads=n_threads
    )
    assert len(chunked) == len(whole)
    for (_, labels, _, centers), (_, labels0, _, centers0) in zip(chunked, whole, strict=True):
        np.testing.assert_array_equal(labels, labels0)
        np.testing.assert_allclose(centers, centers0, rtol=1e-12, atol=1e-12)


def test_every_max_iter_gives_sklearns_labels_and_centers() -> None:
    X = DATASETS["overlapping2d"]()
    init = _start(X, 8, seed=5)
    for max_iter in range(1, 16):
        ours, ref = _both(X, init, tol=0.0, max_iter=max_iter)
        _assert_same(ours, ref)
    w = np.random.default_rng(6).uniform(0.1, 2.0, X.shape[0])
    for max_iter in range(1, 16):
        ours, ref = _both(X, init, sample_weight=w, tol=0.0, max_iter=max_iter)
        _assert_same(ours, ref)


def test_bounds_after_an_empty_cluster_moved_are_measured_anew() -> None:
    X = DATASETS["blobs3d"]()
    init = _start(X, 5)
    init[1] = X.max(axis=0) + 100.0
    plain = _lloyd_steps(X, init, bounds=False, max_iter=30)
    fast = _lloyd_steps(X, init, bounds=True, max_iter=30)
    for (_, labels, _, centers), (_, labels0, _, centers0) in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(labels, labels0)
        np.testing.assert_allclose(centers, centers0, rtol=1e-12, atol=1e-10)
    assert np.unique(fast[-1][1]).shape[0] == 5


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(20, 400),
    d=st.integers(1, 4),
    k=st.integers(1, 9),
    lattice=st.booleans(),
    offset=st.sampled_from([0.0, 1e4]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_bounds_follow_plain_lloyd_on_random_data(seed, n, d, k, lattice, offset, dtype) -> None:
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 2.0, (k, d))[rng.integers(0, k, n)] + rng.normal(size=(n, d))
    if lattice:  # duplicated rows and exact ties
        X = np.round(X)
    X = (X + offset).astype(dtype)
    init = X[rng.choice(n, k, replace=False)].astype(np.float64)
    # the same chunks for both: with empty clusters moved onto rows a round-off away from
    # their centers, which rows those are depends on the order of the sums (in plain
    # Lloyd too, and in scikit-learn)
    chunk_size = int(rng.integers(1, n + 1))
    plain = _lloyd_steps(X, init, bounds=False, max_iter=25, chunk_size=chunk_size)
    fast = _lloyd_steps(X, init, bounds=True, max_iter=25, chunk_size=chunk_size, n_threads=2)
    assert len(fast) == len(plain)
    for (_, labels, _, centers), (_, labels0, _, centers0) in zip(fast, plain, strict=True):
        np.testing.assert_array_equal(labels, labels0)
        np.testing.assert_allclose(centers, centers0, rtol=1e-9, atol=1e-9 * (1 + np.abs(X).max()))


# -- sparse rows ---------------------------------------------------------------------------


def _documents(n: int = 600, d: int = 60, k: int = 4, seed: int = 0) -> sp.csr_array:
    """TF-IDF-like rows: word counts drawn from k topics, normalized to unit length."""
    rng = np.random.default_rng(seed)
    topics = rng.gamma(0.3, 1.0, (k, d))
    counts = rng.poisson(topics[rng.integers(0, k, n)] * 1.5).astype(np.float64)
    counts[counts.sum(axis=1) == 0, 0] = 1.0
    rows = counts / np.linalg.norm(counts, axis=1, keepdims=True)
    return sp.csr_array(rows)


@pytest.mark.parametrize("container", [sp.csr_array, sp.csr_matrix])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_rows_give_sklearns_sparse_results(container, weighted) -> None:
    X = container(_documents())
    assert X.nnz < 0.5 * X.shape[0] * X.shape[1]
    w = np.random.default_rng(2).uniform(0.2, 3.0, X.shape[0]) if weighted else None
    init = _start(X.toarray(), 5, seed=4)
    ours, ref = _both(X, init, sample_weight=w)
    _assert_same(ours, ref)
    # and the dense rows (centred) give the same clustering
    dense = KMeans(5, init=init, n_init=1).fit(X.toarray(), sample_weight=w)
    np.testing.assert_array_equal(dense.labels_, ours.labels_)
    np.testing.assert_allclose(dense.cluster_centers_, ours.cluster_centers_, atol=1e-12)
    assert dense.n_iter_ == ours.n_iter_
    # predictions on sparse and dense rows agree, whichever the model was fitted on
    for model in (ours, dense):
        for rows in (X, X.toarray()):
            np.testing.assert_array_equal(model.predict(rows), ours.labels_)
            np.testing.assert_allclose(
                model.transform(rows), euclidean_distances(X, ours.cluster_centers_), atol=1e-12
            )
            assert model.score(rows, sample_weight=w) == pytest.approx(-ours.inertia_, rel=1e-12)


def test_sparse_rows_with_empty_clusters_random_starts_and_float32() -> None:
    X = _documents(seed=3)
    init = _start(X.toarray(), 4, seed=1)
    init[1] = 50.0  # far from every row: empty at the first C-step
    ours, ref = _both(X, init, tol=0.0)
    _assert_same(ours, ref)
    for start in ("k-means++", "random"):
        ours = KMeans(4, init=start, n_init=3, random_state=3).fit(X)
        ref = SkKMeans(4, init=start, n_init=3, random_state=3).fit(X)
        _assert_same(ours, ref)
    single = KMeans(4, init=start, n_init=3, random_state=3).fit(X.astype(np.float32))
    assert single.cluster_centers_.dtype == np.float32
    assert single.transform(X[:2].astype(np.float32)).dtype == np.float32
    np.testing.assert_array_equal(single.labels_, ours.labels_)
    np.testing.assert_allclose(single.cluster_centers_, ours.cluster_centers_, atol=1e-5)


def test_sparse_rows_are_never_made_dense() -> None:
    # 2,000 x 100,000: 1.6 GB dense, 0.3 MB sparse
    n, d = 2000, 100_000
    rng = np.random.default_rng(0)
    X = sp.random_array((n, d), density=1e-4, format="csr", rng=rng) + sp.csr_array(
        (np.ones(n), (np.arange(n), rng.integers(0, 2, n))), shape=(n, d)
    )
    tracemalloc.start()
    try:
        km = KMeans(2, random_state=0).fit(X)
        km.predict(X), km.transform(X), km.score(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6  # centers and products of shape (2, d), chunks of (rows, 2)
    assert km.cluster_centers_.shape == (2, d)
    # sum_n ||x_n||^2 - 2 x_n . c_k + ||c_k||^2 over each cluster, sparse
    inertia = 0.0
    for k, c in enumerate(km.cluster_centers_):
        Xk = X[km.labels_ == k]
        inertia += Xk.multiply(Xk).sum() - 2.0 * (Xk @ c).sum() + Xk.shape[0] * (c @ c)
    assert km.inertia_ == pytest.approx(inertia, rel=1e-10)


def test_sparse_chunks_are_views_and_do_not_change_the_result() -> None:
    X = _documents(300, 30, 3, seed=6)
    A = design_matrix(X, np.zeros(30))
    np.testing.assert_array_equal(A[:, :30].toarray(), X.toarray())
    np.testing.assert_array_equal(A[:, 30].toarray(), 1.0)
    np.testing.assert_allclose(A[:, 31].toarray(), (X.toarray() ** 2).sum(axis=1), rtol=1e-15)
    rows = SparseRows(A)
    for start, stop in [(0, 64), (64, 300), (290, 400), (5, 5)]:
        chunk = rows[start:stop]
        np.testing.assert_array_equal(chunk.toarray(), A[start:stop].toarray())
        assert chunk.nnz == 0 or np.shares_memory(chunk.data, A.data)
    init = _start(X.toarray(), 3)
    whole = KMeans(3, init=init, n_init=1).fit(X)
    for chunk_size, n_threads in [(7, 1), (50, 2)]:
        km = KMeans(3, init=init, n_init=1, chunk_size=chunk_size, n_threads=n_threads).fit(X)
        _assert_same(km, whole, rtol=1e-13)


def test_other_sparse_formats_and_duplicate_entries_are_read_as_csr_without_change() -> None:
    X = _documents(200, 20, 3, seed=5)
    init = _start(X.toarray(), 3)
    ref = KMeans(3, init=init, n_init=1).fit(X)
    # every entry stored as two halves: the same matrix, not in canonical form
    dup = sp.csr_array(
        (np.repeat(X.data / 2, 2), np.repeat(X.indices, 2), 2 * X.indptr), shape=X.shape
    )
    assert not dup.has_canonical_format
    for rows in (X.tocsc(), X.tocoo(), sp.lil_array(X), sp.csr_matrix(dup), dup):
        km = KMeans(3, init=init, n_init=1).fit(rows)
        np.testing.assert_array_equal(km.labels_, ref.labels_)
        np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-12)
        np.testing.assert_array_equal(km.predict(rows), ref.labels_)
    assert dup.nnz == 2 * X.nnz  # the caller's matrix is left as it was


def test_bad_sparse_data_are_named_with_the_fix() -> None:
    X = _documents(50, 10, 2).tolil()
    X[7, 3] = np.nan
    with pytest.raises(InputError, match=r"X contains NaN \(first at row 7, column 3\)"):
        KMeans(2).fit(X)
    X[7, 3] = np.inf
    with pytest.raises(InputError, match=r"X contains infinity \(first at row 7, column 3\)"):
        KMeans(2).fit(X)
    with pytest.raises(InputError, match=r"X has non-numeric or complex values \(dtype complex"):
        KMeans(2).fit(sp.csr_array(np.eye(3) * 1j))
    with pytest.raises(InputError, match=r"X is empty \(shape=\(0, 4\)\)"):
        KMeans(2).fit(sp.csr_array((0, 4)))
    km = KMeans(2, random_state=0).fit(_documents(50, 10, 2))
    with pytest.raises(InputError, match=r"X has 3 features, but KMeans is expecting 10"):
        km.predict(sp.csr_array(np.ones((4, 3))))


# -- scikit-learn's other arguments ---------------------------------------------------------


def test_copy_x_and_algorithm_change_nothing_and_x_is_never_modified() -> None:
    X = DATASETS["blobs5d_shifted"]()
    before = X.copy()
    init = _start(X, 4)
    runs = [
        KMeans(4, init=init, n_init=1, copy_x=copy_x, algorithm=algorithm).fit(X)
        for copy_x in (True, False)
        for algorithm in ("lloyd", "elkan")
    ]
    np.testing.assert_array_equal(X, before)
    for km in runs[1:]:
        _assert_same(km, runs[0], rtol=0.0)
    Xs = _documents()
    data = Xs.data.copy()
    KMeans(3, copy_x=False, random_state=0).fit(Xs)
    np.testing.assert_array_equal(Xs.data, data)


def test_elkan_for_one_cluster_warns_as_sklearn_and_runs_lloyd() -> None:
    X = blobs(60, 2, 2, seed=0)
    with pytest.warns(RuntimeWarning, match=r"algorithm='elkan' doesn't make sense for a single"):
        km = KMeans(1, algorithm="elkan").fit(X)
    np.testing.assert_allclose(km.cluster_centers_, X.mean(axis=0, keepdims=True))
