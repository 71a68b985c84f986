"""Monte-Carlo EM and stochastic EM: draws keyed by row position, the draw schedule and
stopping rule, and fits that end where exact EM does from the same start."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from emkit import (
    PPCA,
    FactorAnalysis,
    GaussianMixture,
    MixtureModel,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    PoissonMixture,
    StudentTMixture,
    load_model,
    save_model,
)
from emkit.engines import InMemoryEngine, RowSource
from emkit.exceptions import EmkitError, InputError
from emkit.inference import STOCHASTIC, MonteCarlo, fit_em
from emkit.inference.monte_carlo import MonteCarloStep, row_positions
from emkit.models.mixing import EXACT, Sampled, assignment, label_counts
from emkit.models.sampling import BLOCK_ROWS, Draws, factor_draws, row_draws


def _mixture_data(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.array([[0.0, 0.0], [3.0, 1.0], [0.5, 3.5]])
    labels = rng.integers(0, 3, n)
    return means[labels] + rng.standard_normal((n, 2)) * np.array([1.0, 0.7, 0.9])[labels, None]


def _factor_data(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(5, 2))
    return rng.normal(size=(n, 2)) @ W.T + rng.normal(size=(n, 5)) * [1.0, 2.0, 1.0, 2.0, 1.0]


def _counts(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = np.array([[1.0, 8.0], [6.0, 2.0]])[rng.integers(0, 2, n)]
    return rng.poisson(rates).astype(float)


# -- the draws ---------------------------------------------------------------------------


def test_draws_depend_on_position_not_on_the_block_of_rows() -> None:
    index = np.arange(3 * BLOCK_ROWS + 17)
    whole = row_draws((7, 2), index, lambda g, n: g.random((n, 3)))
    rows = np.random.default_rng(0).choice(index, 500, replace=False)  # any subset, any order
    assert np.array_equal(row_draws((7, 2), rows, lambda g, n: g.random((n, 3))), whole[rows])
    other = row_draws((7, 3), index, lambda g, n: g.random((n, 3)))  # the next iteration
    assert not np.array_equal(whole, other)


def test_label_counts_follow_the_probabilities() -> None:
    p = np.array([[0.2, 0.5, 0.3], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    u = np.random.default_rng(1).random((3, 20000))
    counts = label_counts(p, u)
    assert counts.sum(axis=1).tolist() == [20000.0] * 3
    assert counts[1].tolist() == [0.0, 20000.0, 0.0] and counts[2].tolist() == [0.0, 0.0, 20000.0]
    assert scipy_stats.chisquare(counts[0], 20000 * p[0]).pvalue > 1e-3


def test_sampled_policy_keeps_the_exact_objective_and_the_weights() -> None:
    rng = np.random.default_rng(2)
    log_prob = rng.normal(size=(50, 3))
    weights = rng.uniform(0.5, 2.0, 50)
    labels = np.full(50, -1)
    labels[:5] = 2
    resp, exact = EXACT(log_prob.copy(), None, weights, None, labels)
    m = 4000
    policy = Sampled(Draws(MonteCarlo(n_draws=m, max_draws=m))).at((0, 1), m)
    policy = policy.for_rows(np.arange(50))
    sampled, objective = policy(log_prob.copy(), None, weights, None, labels)
    assert objective == pytest.approx(exact, rel=1e-12)
    np.testing.assert_allclose(sampled.sum(axis=1), weights, rtol=1e-12)
    assert np.all(sampled[:5, 2] == pytest.approx(weights[:5]))  # known labels stay
    counts = sampled * m / weights[:, None]  # whole numbers of draws
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-8)
    # an average over many draws is near the responsibilities (4 standard errors)
    assert np.all(np.abs(sampled - resp) <= 4 * weights[:, None] * np.sqrt(0.25 / m))
    # one draw: stochastic EM, a one-hot row per sample
    sem = Sampled(Draws(STOCHASTIC)).at((0, 1), 1).for_rows(np.arange(50))
    one, _ = sem(log_prob.copy(), None, None, None, None)
    assert set(np.unique(one)) == {0.0, 1.0} and one.sum(axis=1).tolist() == [1.0] * 50


def test_a_policy_not_bound_to_its_rows_refuses_to_draw() -> None:
    policy = assignment("monte-carlo")
    with pytest.raises(EmkitError, match="ran without its iteration's key"):
        policy(np.zeros((3, 2)), None, None, None, None)


# -- the schedule and the stopping rule ------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Scripted:
    """A model whose objective at iteration t is ``values[t]``, recording the draw counts."""

    draws: Draws
    values: tuple[float, ...]
    seen: list[int]

    def expectation(self, params: int) -> Any:
        def e_step(X: np.ndarray, weights: Any, index: np.ndarray) -> int:
            self.seen.append(self.draws.n_draws)
            return 0

        return e_step

    def objective(self, params: int, stats: Any) -> float:
        return self.values[params]

    def m_step(self, params: int, stats: Any) -> int:
        return params + 1

    def m_step_gap(self, params: int, stats: Any) -> float:
        return 0.0


def test_draws_grow_after_a_fall_and_several_small_changes_stop_the_run() -> None:
    # a rise, a fall (then draws x2), a small rise, a fall (x2, capped at 25), small falls
    values = (-5.0, -4.0, -4.5, -4.4995, -4.6, -4.6001, -4.6002, -4.6003, -4.6004, -9.0)
    seen: list[int] = []
    model = _Scripted(Draws(MonteCarlo(n_draws=10, growth=2.0, max_draws=25)), values, seen)
    X = np.zeros((4, 1))
    with InMemoryEngine() as engine:
        step = MonteCarloStep(model, engine, row_positions(RowSource(X)), seed=0, tol=1e-3)
        result = fit_em(
            model, engine, (), 0, tol=1e-3, max_iter=20, monotonicity="raise", step=step
        )
    # the falls raise no MonotonicityError; the small change at iteration 4 is no stop
    assert seen == [10, 10, 10, 20, 20, 25, 25, 25]
    assert result.converged and result.n_iter == 8
    assert result.trace.objective.tolist() == list(values[:8])


def test_monte_carlo_options_are_checked() -> None:
    for options, message in [
        (MonteCarlo(n_draws=0), r"MonteCarlo\(n_draws=...\) must be an integer >= 1, got 0"),
        (MonteCarlo(n_draws=2.5), r"n_draws=...\) must be an integer >= 1, got 2.5"),  # type: ignore[arg-type]
        (MonteCarlo(growth=0.5), r"growth=...\) must be a finite number >= 1 .*got 0.5"),
        (MonteCarlo(growth="2"), r"growth=...\) must be a number >= 1, got '2'"),  # type: ignore[arg-type]
        (MonteCarlo(n_draws=50, max_draws=20), r"max_draws=...\) must be at least n_draws=50"),
        (MonteCarlo(n_stable=0), r"n_stable=...\) must be an integer >= 1, got 0"),
    ]:
        with pytest.raises(InputError, match=message):
            GaussianMixture(2, e_step=options).fit(_mixture_data(20))
        with pytest.raises(InputError, match=message):
            factor_draws(options)


# -- fits -------------------------------------------------------------------------------

MIXTURES = {
    "GaussianMixture": (lambda **kw: GaussianMixture(3, **kw), _mixture_data),
    "MixtureModel": (lambda **kw: MixtureModel(n_components=3, **kw), _mixture_data),
    "PoissonMixture": (lambda **kw: PoissonMixture(n_components=2, **kw), _counts),
    "MixtureOfPPCA": (lambda **kw: MixtureOfPPCA(2, n_factors=1, **kw), _factor_data),
    "MixtureOfFactorAnalyzers": (
        lambda **kw: MixtureOfFactorAnalyzers(2, n_factors=1, **kw),
        _factor_data,
    ),
    "StudentTMixture": (lambda **kw: StudentTMixture(3, **kw), _mixture_data),
    "PPCA": (lambda **kw: PPCA(2, **kw), _factor_data),
    "FactorAnalysis": (lambda **kw: FactorAnalysis(2, **kw), _factor_data),
}


@pytest.mark.parametrize("name", sorted(MIXTURES))
def test_monte_carlo_em_ends_where_exact_em_does(name: str) -> None:
    make, data = MIXTURES[name]
    X = data()
    settings = {"tol": 1e-5, "max_iter": 400, "random_state": 0}
    exact = make(**settings).fit(X)
    mc = make(e_step=MonteCarlo(n_draws=10, max_draws=200), **settings).fit(X)
    assert mc.converged_
    assert abs(mc.score(X) - exact.score(X)) < 1e-3
    # the trace holds the exact log-likelihood of each iterate: the last entry is within
    # Monte-Carlo noise of the final fit's
    assert abs(mc.lower_bounds_[-1] - mc.score(X)) < 1e-3


@pytest.mark.parametrize("name", ["GaussianMixture", "PPCA"])
def test_stochastic_em_is_one_draw_a_row(name: str) -> None:
    make, data = MIXTURES[name]
    X = data()
    exact = make(tol=1e-5, random_state=0).fit(X)
    sem = make(e_step="stochastic", tol=1e-3, max_iter=200, random_state=0).fit(X)
    assert sem.converged_
    assert abs(sem.score(X) - exact.score(X)) < 1e-2  # one noisy draw: a looser bound


def test_draws_do_not_depend_on_chunking_or_threads() -> None:
    X = _mixture_data(1500, 3)
    X[::7, 1] = np.nan  # missing values: rows reordered and split by pattern, still equal
    options = MonteCarlo(n_draws=3, max_draws=20)
    fits = [
        GaussianMixture(
            3, e_step=options, random_state=4, tol=0.0, max_iter=8, chunk_size=c, n_threads=t
        ).fit(X)
        for c, t in [(None, 1), (300, 1), (300, 2), (1111, 3)]
    ]
    for other in fits[1:]:
        assert other.n_iter_ == fits[0].n_iter_
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(other.lower_bounds_, fits[0].lower_bounds_, rtol=1e-12)
    assert np.array_equal(fits[1].means_, fits[2].means_)  # same chunks, any threads
    Y = _factor_data(1500)
    a, b = (
        PPCA(2, e_step=options, tol=0.0, max_iter=8, random_state=1, **chunks).fit(Y)
        for chunks in ({"chunk_size": 250, "n_threads": 2}, {})
    )
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-9, atol=1e-12)


def test_the_seed_sets_the_draws() -> None:
    X = _mixture_data(400, 5)
    fit = [
        GaussianMixture(3, e_step="stochastic", random_state=s, max_iter=5, tol=0.0) for s in (0, 0)
    ]
    a, b = (f.fit(X) for f in fit)
    assert np.array_equal(a.means_, b.means_)
    c = GaussianMixture(3, e_step="stochastic", random_state=1, max_iter=5, tol=0.0).fit(X)
    d = GaussianMixture(3, e_step="exact", random_state=1, max_iter=5, tol=0.0).fit(X)
    assert not np.allclose(c.means_, d.means_)  # the start is the same; the draws are not


def test_a_model_file_keeps_the_monte_carlo_options(tmp_path) -> None:
    X = _mixture_data(200)
    options = MonteCarlo(n_draws=4, growth=1.5, max_draws=64, n_stable=2)
    gm = GaussianMixture(3, e_step=options, random_state=0).fit(X)
    loaded = load_model(save_model(gm, tmp_path / "gm.npz"))
    assert loaded.get_params()["e_step"] == options
    np.testing.assert_array_equal(loaded.predict_proba(X), gm.predict_proba(X))
    ppca = PPCA(1, e_step="stochastic", random_state=0, tol=1e-3).fit(X)
    assert load_model(save_model(ppca, tmp_path / "p.npz")).e_step == "stochastic"


# -- bad input ---------------------------------------------------------------------------


def test_unsupported_e_steps_and_combinations_are_refused() -> None:
    X = _mixture_data(40)
    with pytest.raises(InputError, match=r"e_step must be one of 'exact', 'hard', 'monte-carlo'"):
        GaussianMixture(2, e_step="mcem").fit(X)
    with pytest.raises(InputError, match=r"e_step must be one of 'exact', 'monte-carlo', 'stoc"):
        PPCA(1, e_step="hard").fit(X)
    with pytest.raises(InputError, match=r"accelerate='squarem' cannot be combined with e_step"):
        GaussianMixture(2, e_step="monte-carlo", accelerate="squarem").fit(X)
    with pytest.raises(InputError, match=r"monotonicity='raise' cannot hold for e_step='stoch"):
        FactorAnalysis(1, e_step="stochastic", monotonicity="raise").fit(X)
    with pytest.raises(InputError, match=r"partial_fit takes e_step='exact' or 'hard'"):
        MixtureModel(n_components=2, e_step="stochastic").partial_fit(X)


# -- factor mixtures: the factors are drawn too ---------------------------------------------


def _factor_mixture_setup(n: int = 60):
    from emkit.models.factor_mixture import FactorMixture, FactorMixtureParams
    from emkit.models.latent_factor import noise_structure

    rng = np.random.default_rng(3)
    Y = np.concatenate([rng.normal(size=(n // 2, 4)), rng.normal(2.0, 1.5, size=(n // 2, 4))])
    W = rng.normal(size=(2, 4, 2))
    params = FactorMixtureParams(
        np.array([0.4, 0.6]), W, np.array([[0.0] * 4, [2.0] * 4]), np.full((2, 4), 0.8)
    )
    model = FactorMixture(noise_structure("diagonal"), np.zeros(4), 1e-6)
    return Y, params, model, FactorMixtureParams


def test_factor_mixture_draws_average_to_the_exact_complete_data_statistics() -> None:
    from emkit.models.factor_mixture import SampledFactorStats
    from emkit.models.latent_factor import principal_frame

    Y, params, model, _ = _factor_mixture_setup()
    n = Y.shape[0]
    w = np.random.default_rng(0).uniform(0.5, 2.0, n)
    M = 4000
    sampled = replace(model, assign=assignment(MonteCarlo(n_draws=M, max_draws=M)).at((7, 1), M))
    stats = sampled.expectation(params)(Y, w, np.arange(n))
    assert isinstance(stats, SampledFactorStats)
    # the exact expectations: responsibilities r, and given k, z ~ N(E[z], diag(g_k)) in
    # the principal frame of W_k
    log_prob = model.weighted_log_prob(params)(Y)
    r = np.exp(log_prob - np.logaddexp.reduce(log_prob, axis=1, keepdims=True)) * w[:, None]
    Wf, s2, _ = principal_frame(params.components, params.noise)
    g = 1.0 / (1.0 + s2)
    for k in range(2):
        Ez = ((Y - params.means[k]) @ (Wf[k] / params.noise[k][:, None])) * g[k]
        zt = np.column_stack([Ez, np.ones(n)])
        Szz = zt.T @ (zt * r[:, k, None])
        Szz[:2, :2] += r[:, k].sum() * np.diag(g[k])
        np.testing.assert_allclose(stats.nk[k], r[:, k].sum(), rtol=2e-2)
        np.testing.assert_allclose(stats.sum_xz[k], Y.T @ (zt * r[:, k, None]), rtol=0.05, atol=0.5)
        np.testing.assert_allclose(stats.sum_zz[k], Szz, rtol=0.05, atol=0.5)
        # the factors' own spread about E[z | x, k]: drawn, not only their means
        spread = stats.sum_zz[k, :2, :2] - Ez.T @ (Ez * r[:, k, None])
        np.testing.assert_allclose(spread, r[:, k].sum() * np.diag(g[k]), rtol=0.1, atol=0.3)
        assert np.diag(spread).min() > 0.5 * (r[:, k].sum() * g[k]).min()
        np.testing.assert_allclose(stats.sum_xx[k], r[:, k] @ (Y * Y), rtol=2e-2)
        # z~'s last entry is 1 in every draw: its moment is the mass itself
        assert stats.sum_zz[k, 2, 2] == pytest.approx(stats.nk[k], rel=1e-12)
    assert stats.nk.sum() == pytest.approx(w.sum(), rel=1e-12)
    # the log-likelihood is exact, whatever was drawn
    assert stats.loglik == pytest.approx(w @ np.logaddexp.reduce(log_prob, axis=1), rel=1e-12)


def test_factor_mixture_draws_do_not_depend_on_chunking_or_threads() -> None:
    Y, params, model, _ = _factor_mixture_setup(3000)
    sampled = replace(model, assign=assignment(MonteCarlo(n_draws=3, max_draws=3)).at((1, 2), 3))
    e_step = sampled.expectation(params)
    whole = e_step(Y, None, np.arange(3000))
    cut = [e_step(Y[a:b], None, np.arange(a, b)) for a, b in [(0, 700), (700, 2049), (2049, 3000)]]
    parts = cut[0] + cut[1] + cut[2]
    np.testing.assert_allclose(parts.sum_zz, whole.sum_zz, rtol=1e-12)
    np.testing.assert_allclose(parts.sum_xz, whole.sum_xz, rtol=1e-12)
    np.testing.assert_allclose(parts.nk, whole.nk, rtol=1e-12)
    X = _factor_data(1500)
    fits = [
        MixtureOfFactorAnalyzers(
            2,
            n_factors=1,
            e_step=MonteCarlo(n_draws=2, max_draws=8),
            random_state=1,
            tol=0.0,
            max_iter=6,
            **chunks,
        ).fit(X)
        for chunks in ({}, {"chunk_size": 200, "n_threads": 2}, {"chunk_size": 333, "n_threads": 1})
    ]
    for other in fits[1:]:
        np.testing.assert_allclose(other.means_, fits[0].means_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(other.lower_bounds_, fits[0].lower_bounds_, rtol=1e-12)


def test_an_unbound_factor_mixture_draw_is_refused() -> None:
    Y, params, model, _ = _factor_mixture_setup()
    sampled = replace(model, assign=assignment("monte-carlo"))
    with pytest.raises(EmkitError, match=r"without its iteration's key or its rows' positions"):
        sampled.expectation(params)(Y, None)


# -- the draw count in the trace -------------------------------------------------------------


@pytest.mark.parametrize("name", ["GaussianMixture", "MixtureOfPPCA", "PPCA"])
def test_the_trace_keeps_the_draw_count_of_every_iteration(name: str, tmp_path) -> None:
    make, data = MIXTURES[name]
    X = data()
    options = MonteCarlo(n_draws=2, growth=3.0, max_draws=50)
    fit = make(e_step=options, tol=1e-4, max_iter=400, random_state=0).fit(X)
    draws, objective = fit.trace_.draws, fit.trace_.objective
    assert draws.shape == objective.shape and draws[0] == 2
    for t in range(1, draws.shape[0]):  # the schedule: grown after a fall, else kept
        change = objective[t - 1] - (objective[t - 2] if t >= 2 else -np.inf)
        assert draws[t] == options.next_draws(int(draws[t - 1]), change)
    assert draws.max() > 2  # the log-likelihood fell at least once: the count grew
    assert make(tol=1e-3, random_state=0).fit(X).trace_.draws.shape == (0,)  # exact EM: none
    loaded = load_model(save_model(fit, tmp_path / "m.npz"))
    np.testing.assert_array_equal(loaded.trace_.draws, draws)
