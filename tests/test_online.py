"""Online (stepwise) EM on the statistics: exactly batch EM with step 1 on the whole data,
close to the batch fit over a stream of mini-batches."""

from __future__ import annotations

import numpy as np
import pytest

from emkit import PPCA, FactorAnalysis, GaussianMixture, MixtureModel, PoissonMixture
from emkit.engines import InMemoryEngine, RowSource
from emkit.exceptions import InputError
from emkit.families import Gaussian, Poisson
from emkit.inference import fit_em, initial_responsibilities
from emkit.inference.online import OnlineState, check_schedule, online_update, step_size
from emkit.models.latent_factor import FactorParams, LatentFactor, noise_structure
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


# -- PPCA and factor analysis ----------------------------------------------------------

_LOADINGS = np.random.default_rng(8).normal(size=(6, 2))


def _factor_rows(n: int, seed: int) -> np.ndarray:
    """Two factors in six features, noise variances 1 and 0.25 alternating."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, 6)) * np.array([1.0, 0.5, 1.0, 0.5, 1.0, 0.5])
    return rng.standard_normal((n, 2)) @ _LOADINGS.T + noise + 3.0


@pytest.mark.parametrize("missing", [False, True], ids=["complete", "missing-weighted"])
@pytest.mark.parametrize("cls", [PPCA, FactorAnalysis])
def test_latent_factor_partial_fit_with_step_one_on_the_whole_data_is_fit(cls, missing) -> None:
    X = _factor_rows(3000, 9)
    w = None
    if missing:
        X[np.random.default_rng(10).random(X.shape) < 0.1] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 1.0
        w = np.random.default_rng(11).uniform(0.5, 2.0, X.shape[0])
    batch = cls(2, tol=0.0, max_iter=8, random_state=0).fit(X, sample_weight=w)
    online = cls(2, learning_decay=0.0, random_state=0)
    for _ in range(8):
        online.partial_fit(X, sample_weight=w)
    np.testing.assert_allclose(online.components_, batch.components_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(online.noise_variance_, batch.noise_variance_, rtol=1e-9)
    np.testing.assert_allclose(online.mean_, batch.mean_, rtol=1e-9)
    np.testing.assert_allclose(online.lower_bounds_, batch.lower_bounds_, rtol=1e-10)
    assert online.n_iter_ == 8 and not online.converged_
    if cls is FactorAnalysis:  # a batch's log-likelihood before its step: fit's one step later
        np.testing.assert_allclose(online.loglike_[1:], batch.loglike_[:-1], rtol=1e-10)


@pytest.mark.parametrize("cls", [PPCA, FactorAnalysis])
def test_latent_factor_partial_fit_over_a_stream_nears_the_batch_fit(cls) -> None:
    # 1,000,000 rows drawn and fed in batches of 2,000 (one pass, the default schedule):
    # within 5e-3 nats per sample of the batch fit (about 1e-5 for PPCA, 1e-3 for factor
    # analysis, whose batch EM needs a hundred iterations)
    batches = [_factor_rows(2000, 100 + i) for i in range(500)]
    online = cls(2, random_state=0)
    for rows in batches:
        online.partial_fit(rows)
    X = np.vstack(batches)
    batch = cls(2, random_state=0).fit(X)
    assert abs(online.score(X) - batch.score(X)) < 5e-3
    # fit starts afresh; a partial_fit after it continues from its parameters
    online.fit(X)
    before = online.score(X)
    online.partial_fit(batches[0])
    assert abs(online.score(X) - before) < 5e-3 and online.n_iter_ == 1


def test_reframed_statistics_give_the_same_parameters() -> None:
    # online EM blends statistics of successive E-steps, each in the principal frame of its
    # parameters: the M-step's statistics, moved into the frame of the parameters they
    # gave, must give those parameters again (up to the rotation of W)
    X = _factor_rows(500, 12)
    X[::7, 2] = np.nan
    model = LatentFactor(noise_structure("diagonal"), np.nanmean(X, axis=0), 1e-6)
    rng = np.random.default_rng(13)
    params = FactorParams(rng.normal(size=(6, 2)), np.zeros(6), np.ones(6))
    stats = model.expectation(params)(X, None)
    new = model.m_step(params, stats)
    again = model.m_step(new, model.reframe(stats, new))
    np.testing.assert_allclose(
        again.components @ again.components.T, new.components @ new.components.T, rtol=1e-10
    )
    np.testing.assert_allclose(again.mean, new.mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(again.noise, new.noise, rtol=1e-10)
    # and in that frame the factors are standard: mean 0, covariance I
    moments = model.reframe(stats, new).sum_zz_all / stats.weight
    np.testing.assert_allclose(moments, np.eye(3), atol=1e-10)


@pytest.mark.parametrize("cls", [PPCA, FactorAnalysis])
def test_latent_factor_partial_fit_refuses_bad_input(cls) -> None:
    X = _factor_rows(200, 14)
    model = cls(2, random_state=0).partial_fit(X)
    name = cls.__name__
    with pytest.raises(ValueError, match=f"X has 7 features, but {name} is expecting 6"):
        model.partial_fit(np.hstack([X, X[:, :1]]))
    with pytest.raises(InputError, match="learning_offset must be a finite number >= 0"):
        cls(2, learning_offset=-1.0).partial_fit(X)
    with pytest.raises(InputError, match=f"fitting {name} needs at least 2 samples"):
        cls(2).partial_fit(X[:1])


@pytest.mark.parametrize("init_params", ["random", "random_from_data", "k-means++"])
def test_the_first_partial_fit_starts_from_fits_first_initialization(init_params: str) -> None:
    # one initialization step for fit and partial_fit: the first batch's start is fit's
    # first draw (n_init draws are for fit's restarts), then one step
    X = _data(600, 15)
    kwargs = {"init_params": init_params, "random_state": 3}
    online = GaussianMixture(3, n_init=3, learning_decay=0.0, **kwargs).partial_fit(X)
    batch = GaussianMixture(3, n_init=1, tol=0.0, max_iter=1, **kwargs).fit(X)
    np.testing.assert_allclose(online.means_, batch.means_, rtol=1e-10)
    np.testing.assert_allclose(online.lower_bounds_, batch.lower_bounds_, rtol=1e-12)
    assert online.get_params()["n_init"] == 3 and online.max_iter == 100
