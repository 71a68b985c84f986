"""Online (stepwise) EM on the statistics: exactly batch EM with step 1 on the whole data,
close to the batch fit over a stream of mini-batches."""

from __future__ import annotations

import numpy as np
import pytest

from emkit import GaussianMixture, MixtureModel, PoissonMixture
from emkit.engines import InMemoryEngine, RowSource
from emkit.exceptions import InputError
from emkit.families import Gaussian, Poisson
from emkit.inference import fit_em, initial_responsibilities
from emkit.inference.online import OnlineState, check_schedule, online_update, step_size
from emkit.models.mixture import Mixture, MixtureParams


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])
    labels = rng.integers(0, 3, n)
    return means[labels] + rng.standard_normal((n, 2)) * np.array([1.0, 0.7, 1.3])[labels, None]


def _start(model: Mixture, X: np.ndarray, K: int) -> MixtureParams:
    """The estimators' default start: k-means labels, then an M-step."""
    labels = initial_responsibilities("kmeans", X, K, np.random.default_rng(0), None)
    stats = model.statistics_from_resp(X, None, np.eye(K)[labels])
    return model.m_step(MixtureParams(np.full(K, 1.0 / K), model.family.default_params(K)), stats)


@pytest.mark.parametrize("family", [Gaussian("full"), Gaussian("diag"), Poisson()], ids=str)
def test_step_one_on_the_whole_data_is_batch_em(family) -> None:
    X = _data(2000, 1)
    if isinstance(family, Poisson):
        X = np.random.default_rng(2).poisson(np.exp(np.abs(X) / 3.0)).astype(float)
    model = Mixture(family.bind(X, None))
    start = _start(model, X, 3)
    w = np.random.default_rng(3).uniform(0.5, 2.0, X.shape[0])
    with InMemoryEngine() as engine:
        batch = fit_em(model, engine, RowSource(X, w), start, tol=0.0, max_iter=12)
        state = OnlineState(model, start)
        for _ in range(12):
            state = online_update(state, engine, RowSource(X, w), 10.0, 0.0)
    np.testing.assert_allclose(state.params.weights, batch.params.weights, rtol=1e-10)
    for ours, theirs in zip(state.params.components, batch.params.components, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert state.updates == 12 and state.seen == pytest.approx(12 * w.sum())
    # the last batch's objective is that of the parameters before its step: batch EM's
    assert state.objective == pytest.approx(batch.trace.objective[-1], rel=1e-12)


def test_a_stream_of_mini_batches_ends_near_the_batch_fit() -> None:
    # 1,000,000 rows in batches of 10,000, one pass from the first batch's k-means start:
    # within 5e-3 nats per sample (about 1e-5 here)
    X = _data(1_000_000, 4)
    model = Mixture(Gaussian("full").bind(X[:10_000], None))
    start = _start(model, X[:10_000], 3)
    with InMemoryEngine() as engine:
        batch = fit_em(model, engine, RowSource(X), start, tol=1e-8, max_iter=500)
        state = OnlineState(model, start)
        for rows in np.array_split(np.arange(X.shape[0]), 100):
            state = online_update(state, engine, RowSource(X[rows]), 10.0, 0.7)
        final = engine.map_reduce(model.expectation(state.params), X)
        best = engine.map_reduce(model.expectation(batch.params), X)
    online_nats, batch_nats = final.loglik / final.weight, best.loglik / best.weight
    assert batch.converged
    assert abs(online_nats - batch_nats) < 5e-3


def test_step_sizes_follow_the_schedule_and_bad_arguments_are_named() -> None:
    assert step_size(0, 10.0, 0.7) == 1.0
    assert step_size(1, 10.0, 0.7) == pytest.approx(12.0**-0.7)
    assert step_size(5, 0.0, 0.0) == 1.0
    with pytest.raises(InputError, match=r"learning_decay must be a number in \[0, 1\], got 2"):
        check_schedule(10.0, 2)
    with pytest.raises(InputError, match="learning_offset must be a finite number >= 0"):
        check_schedule(-1.0, 0.7)


# -- the estimators' partial_fit ------------------------------------------------------


def _poisson_counts(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.array([[1.0, 6.0], [7.0, 2.0]])
    return rng.poisson(rates[rng.integers(0, 2, n)]).astype(float)


PARTIAL = {
    "gaussian-full": (lambda **kw: GaussianMixture(3, random_state=0, **kw), _data),
    "gaussian-diag": (
        lambda **kw: GaussianMixture(3, covariance_type="diag", random_state=0, **kw),
        _data,
    ),
    "poisson": (lambda **kw: PoissonMixture(2, random_state=0, **kw), _poisson_counts),
    "mixture-model": (
        lambda **kw: MixtureModel(Gaussian("spherical"), 3, random_state=0, **kw),
        _data,
    ),
}


@pytest.mark.parametrize("name", sorted(PARTIAL))
def test_partial_fit_with_step_one_on_the_whole_data_is_fit(name: str) -> None:
    build, data = PARTIAL[name]
    X = data(3000, 5)
    batch = build(tol=0.0, max_iter=8).fit(X)
    online = build(learning_decay=0.0)
    for _ in range(8):
        online.partial_fit(X)
    np.testing.assert_allclose(online.weights_, batch.weights_, rtol=1e-9)
    np.testing.assert_allclose(online.score_samples(X), batch.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(online.lower_bounds_, batch.lower_bounds_, rtol=1e-10)
    assert online.n_iter_ == 8 and not online.converged_


@pytest.mark.parametrize("name", sorted(PARTIAL))
def test_partial_fit_over_mini_batches_nears_the_batch_fit(name: str) -> None:
    # one pass over a stream in batches of 10,000 rows, from partial_fit's own start on the
    # first batch: within 5e-3 nats per sample of the batch fit (1,000,000 rows for
    # the Gaussian mixtures, 200,000 for the others)
    build, data = PARTIAL[name]
    X = data(1_000_000 if name.startswith("gaussian") else 200_000, 6)
    batch = build().fit(X)
    online = build()
    for rows in np.array_split(np.arange(X.shape[0]), X.shape[0] // 10_000):
        online.partial_fit(X[rows])
    assert abs(online.score(X) - batch.score(X)) < 5e-3
    # fit starts afresh; a partial_fit after it continues from its parameters
    online.fit(X)
    before = online.score(X)
    online.partial_fit(X[:2000])
    assert abs(online.score(X) - before) < 5e-3 and online.n_iter_ == 1


def test_partial_fit_refuses_another_number_of_features_and_a_bad_schedule() -> None:
    X = _data(500, 7)
    model = GaussianMixture(3, random_state=0).partial_fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        model.partial_fit(np.hstack([X, X[:, :1]]))
    with pytest.raises(InputError, match=r"learning_decay must be a number in \[0, 1\]"):
        GaussianMixture(3, learning_decay=1.5).partial_fit(X)
