"""Small fits: what one EM iteration computes once (the natural parameters, the far rows),
and mclust's relative convergence rule in ModelBasedClustering."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import emkit.models._small_block as small_block
from emkit import GaussianMixture, ModelBasedClustering
from emkit.estimators._mixture_base import fit_engine
from emkit.exceptions import InputError
from emkit.families.gaussian import GaussianFamily
from emkit.inference.em import fit_em
from emkit.io import load_faithful
from emkit.models.mixing import MixingWeights


class _WithoutDerive:
    """A model as the driver sees it, without ``derive``: every step recomputes the
    natural parameters where it needs them."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        if name == "derive":
            raise AttributeError(name)
        return getattr(self._model, name)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_carrying_the_natural_parameters_changes_no_bit(covariance_type: str, dtype: str) -> None:
    X, _ = load_faithful()
    est = GaussianMixture(3, covariance_type=covariance_type, dtype=dtype, random_state=0)
    est._check_parameters()
    data = X.astype(dtype)
    with fit_engine(est, data) as engine:
        plan = est._plan(data, None, None, engine, warm=False)
        start = plan.initialize(plan.rng)
        runs = [
            fit_em(model, engine, plan.data, start, tol=0.0, max_iter=8, monotonicity="raise")
            for model in (plan.model, _WithoutDerive(plan.model))
        ]
    carried, recomputed = runs
    np.testing.assert_array_equal(carried.trace.objective, recomputed.trace.objective)
    np.testing.assert_array_equal(carried.trace.bound, recomputed.trace.bound)
    for a, b in zip(carried.params.components, recomputed.params.components, strict=False):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(carried.params.weights, recomputed.params.weights)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag"])
def test_log_joint_is_log_prob_and_row_term_far_rows_included(covariance_type: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    est = GaussianMixture(2, covariance_type=covariance_type, random_state=0)
    est._check_parameters()
    with fit_engine(est, X) as engine:
        plan = est._plan(X, None, None, engine, warm=False)
    family = plan.model.family
    assert isinstance(family, GaussianFamily)
    params = plan.initialize(plan.rng)
    rows = np.vstack([X[:5], [[1e200, 0.0, 0.0]], [[0.0, -3e160, 1.0]]])
    Xp = family.prepare(rows, np.float64)
    T = family.statistics(Xp)
    natural = family.natural(params.components, np.float64)
    offset = np.log(params.weights)
    log_prob, row = family.log_joint(Xp, T, params.components, natural, offset)
    expected = family.log_prob(Xp, T, params.components, natural, offset)
    np.testing.assert_array_equal(log_prob, expected)
    expected_row = family.row_term(Xp, params.components, natural)
    assert expected_row is not None and row is not None  # the far rows' nearest distance
    np.testing.assert_array_equal(row, expected_row)
    # a far row keeps its nearest component (the others fall off float64's range)
    assert np.isfinite(log_prob).any(axis=1).all()


def test_mixing_weights_check_their_prior_when_built() -> None:
    with pytest.raises(InputError, match=r"DirichletPrior concentration must be finite and >= 1"):
        MixingWeights(0.5)
    # (N_k + alpha - 1) / (N + K (alpha - 1))
    assert MixingWeights(2.0).m_step(np.array([1.0, 3.0])) == pytest.approx([1 / 3, 2 / 3])


def test_relative_tol_rule_stops_as_mclust_does() -> None:
    X, _ = load_faithful()
    n, tol = X.shape[0], 1e-5
    fits = {
        rule: ModelBasedClustering(
            n_components=[3], covariance_types=["EEE"], tol=tol, tol_rule=rule
        ).fit(X)
        for rule in ("absolute", "relative")
    }
    trace = np.asarray(fits["relative"].best_estimator_.lower_bounds_)
    change = np.diff(trace)
    # mclust: |L_t - L_(t-1)| < tol (1 + |L_t|) on the total log-likelihood L = n l
    below = (change >= 0) & (n * change < tol * (1.0 + n * np.abs(trace[1:])))
    assert below[-1] and not below[:-1].any()
    n_iter = {rule: int(fit.results_["n_iter"][0]) for rule, fit in fits.items()}
    assert n_iter["relative"] < n_iter["absolute"]
    # the relative rule is looser here (|l| ~ 4 nats a row): the same optimum to 1e-2 nats in all
    ll = {rule: float(fit.results_["log_likelihood"][0]) for rule, fit in fits.items()}
    assert ll["relative"] == pytest.approx(ll["absolute"], abs=1e-2)


def test_tol_rule_is_checked() -> None:
    X, _ = load_faithful()
    with pytest.raises(InputError, match=r"tol_rule must be one of 'absolute', 'relative'"):
        ModelBasedClustering(n_components=[1], tol_rule="mclust").fit(X)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEV"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("e_step", ["exact", "hard"])
def test_the_row_cache_changes_no_bit(
    covariance_type: str, dtype: str, e_step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the Python step's cache: the compiled blocks (tests/test_small_em.py) prepare none
    monkeypatch.setattr(small_block, "_SMALL_EM", False)
    X, _ = load_faithful()
    data = X.astype(dtype)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=X.shape[0]).astype(dtype)
    est = GaussianMixture(
        3, covariance_type=covariance_type, dtype=dtype, e_step=e_step, random_state=0
    )
    est._check_parameters()
    with fit_engine(est, data) as engine:
        plan = est._plan(data, None, weights, engine, warm=False)
        start = plan.initialize(plan.rng)
        cached = plan.model.with_row_cache()
        runs = [
            fit_em(model, engine, plan.data, start, tol=0.0, max_iter=6, monotonicity="raise")
            for model in (plan.model, cached)
        ]
    assert cached.row_cache is not None and cached.row_cache._rows  # it was used
    plain, memo = runs
    np.testing.assert_array_equal(plain.trace.objective, memo.trace.objective)
    np.testing.assert_array_equal(plain.trace.bound, memo.trace.bound)
    np.testing.assert_array_equal(plain.params.weights, memo.params.weights)
    for a, b in zip(plain.params.components, memo.params.components, strict=False):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)


def test_the_row_cache_keeps_small_blocks_read_only_and_only_for_one_fit() -> None:
    from emkit.models.mixture import RowCache

    X, _ = load_faithful()
    est = GaussianMixture(2, covariance_type="tied", max_iter=3, tol=0.0, random_state=0)
    est._check_parameters()
    with fit_engine(est, X) as engine:
        family = est._plan(X, None, None, engine, warm=False).model.family
    cache = RowCache()
    rows = cache.rows(family, X, np.dtype(np.float64))
    assert rows is not None and cache.rows(family, X, np.dtype(np.float64)) is rows
    assert not rows.Xp.flags.writeable and not rows.T.flags.writeable
    assert rows.reach == family.row_reach(rows.Xp)
    # another array with the same values is another block; a large one is not kept
    assert cache.rows(family, X.copy(), np.dtype(np.float64)) is not rows
    large = np.repeat(X, 16, axis=0)
    assert cache.rows(family, large, np.dtype(np.float64)) is None
    shared, total = cache.sums(family, X, rows.Xp, None)
    assert cache.sums(family, X, rows.Xp, None)[0] is shared and total == X.shape[0]
    # the fit's cache is emptied when it ends: rows changed in place are read afresh
    plan, _ = est._run_plan(X, None, None, warm=False)
    assert plan.model.row_cache is not None and not plan.model.row_cache._rows
    # only data the engine maps as one block gets a cache; a pickled cache holds nothing
    assert (
        est.set_params(chunk_size=50)._run_plan(X, None, None, warm=False)[0].model.row_cache
        is None
    )
    est.set_params(chunk_size=None)
    large = np.random.default_rng(0).normal(size=(4096, 2))
    assert est._run_plan(large, None, None, warm=False)[0].model.row_cache is None
    import pickle

    assert not pickle.loads(pickle.dumps(cache))._rows
    Z = X.copy()
    est.fit(Z)
    Z *= 2.0
    np.testing.assert_array_equal(est.fit(Z).means_, est.fit(X * 2.0).means_)


def test_array_rows_set_n_features_in_and_forget_a_dataframes_names() -> None:
    pd = pytest.importorskip("pandas")
    X, _ = load_faithful()
    frame = pd.DataFrame(X, columns=["eruptions", "waiting"])
    est = GaussianMixture(2, random_state=0).fit(frame)
    assert list(est.feature_names_in_) == ["eruptions", "waiting"]
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        est.predict(X)
    est.fit(X)
    assert est.n_features_in_ == 2 and not hasattr(est, "feature_names_in_")
    est.predict(X)  # (no warning: warnings are errors)
    with pytest.raises(ValueError, match="X has 1 features"):
        est.predict(X[:, :1])


def test_given_starts_draw_nothing_and_factor_precisions_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import emkit.estimators.gaussian_mixture as gm

    X, _ = load_faithful()
    fitted = GaussianMixture(2, random_state=0).fit(X)
    given = dict(
        weights_init=fitted.weights_,
        means_init=fitted.means_,
        precisions_init=fitted.precisions_,
        max_iter=5,
        tol=0.0,
    )
    calls = {"random": 0, "cholesky": 0, "eigvalsh": 0}
    random_source, cholesky, eigvalsh = (
        gm.init_random_source,
        np.linalg.cholesky,
        np.linalg.eigvalsh,
    )

    def counted_source(state: Any) -> Any:
        calls["random"] += 1
        return random_source(state)

    def counted_cholesky(a: Any) -> Any:
        calls["cholesky"] += 1
        return cholesky(a)

    def counted_eigvalsh(a: Any) -> Any:
        calls["eigvalsh"] += 1
        return eigvalsh(a)

    monkeypatch.setattr(gm, "init_random_source", counted_source)
    monkeypatch.setattr(np.linalg, "cholesky", counted_cholesky)
    monkeypatch.setattr(np.linalg, "eigvalsh", counted_eigvalsh)
    start = GaussianMixture(2, **{**given, "max_iter": 0}).fit(X)
    assert calls["random"] == 0
    # the start's factors from the check's one Cholesky: those of the given precisions
    assert calls["cholesky"] == 1 and calls["eigvalsh"] == 0
    np.testing.assert_allclose(start.precisions_, fitted.precisions_, rtol=1e-12)
    assert GaussianMixture(2, **given).fit(X).n_iter_ == 5 and calls["random"] == 0
    GaussianMixture(2, means_init=fitted.means_).fit(X)
    assert calls["random"] == 1  # a start that draws gets its random source
