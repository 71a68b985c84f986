"""Variational mixtures (e_step='variational'): one step checked by hand in closed form,
the ELBO as objective, agreement with maximum likelihood under a lot of data, sample
weights, missing entries left out exactly, and the combinations that are refused."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.special import digamma, gammaln, logsumexp
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score

from emkit import (
    BernoulliMixture,
    CategoricalMixture,
    GaussianMixture,
    MixtureModel,
    PoissonMixture,
    load_model,
    save_model,
)
from emkit.exceptions import InputError, ModelFileError
from emkit.families import (
    Bernoulli,
    Beta,
    BetaPrior,
    Categorical,
    DirichletPrior,
    Exponential,
    Gamma,
    GammaPrior,
    Gaussian,
    LogNormal,
    Multinomial,
    Poisson,
    Product,
)
from emkit.families.variational import variational
from emkit.models.mixing import VARIATIONAL, VariationalWeights
from emkit.models.mixture import Mixture, MixtureParams


def _codes(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """Two Categorical columns: mostly code 0 in cluster 0, code 2 in cluster 1."""
    noise = rng.integers(0, 3, (z.size, 2))
    return np.where(rng.random((z.size, 2)) < 0.8, 2 * z[:, None], noise)


def _two_poisson_clusters(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    return rng.poisson(np.where(z[:, None] == 1, [1.0, 8.0], [9.0, 2.0])).astype(float)


def test_one_step_by_hand_in_closed_form():
    """E-step: log q(z=k) = x E[log lam] - E[lam] - log x! + E[log pi]; ELBO = sum_n
    logsumexp - KL(q(lam) || p) - KL(q(pi) || p); M-step: Gamma(a0 + S_k, b0 + N_k),
    Dirichlet(alpha0 + N_k)."""
    x = np.array([0.0, 1.0, 3.0, 7.0, 8.0])
    a0, b0, alpha0 = 2.0, 0.5, 0.7
    family = variational(Poisson(prior=GammaPrior(a0, b0)).bind(x[:, None], None))
    model = Mixture(family, weights=VariationalWeights(alpha0), assign=VARIATIONAL)
    a, b = np.array([[2.5], [9.0]]), np.array([[1.5], [1.2]])
    alpha = np.array([2.0, 3.5])
    q = GammaPrior(a0, b0).posterior((a - a0, b - b0))
    stats_ = model.expectation(MixtureParams(alpha, q))(x[:, None], None)

    e_log_lam = digamma(a[:, 0]) - np.log(b[:, 0])
    e_log_pi = digamma(alpha) - digamma(alpha.sum())
    log_q = x[:, None] * e_log_lam - a[:, 0] / b[:, 0] - gammaln(x + 1)[:, None] + e_log_pi
    resp = np.exp(log_q - logsumexp(log_q, axis=1, keepdims=True))
    kl_gamma = sum(
        (ak - a0) * digamma(ak)
        - gammaln(ak)
        + gammaln(a0)
        + a0 * np.log(bk / b0)
        + ak * (b0 - bk) / bk
        for ak, bk in zip(a[:, 0], b[:, 0], strict=True)
    )
    kl_dir = (
        gammaln(alpha.sum())
        - gammaln(alpha).sum()
        - gammaln(2 * alpha0)
        + 2 * gammaln(alpha0)
        + ((alpha - alpha0) * (digamma(alpha) - digamma(alpha.sum()))).sum()
    )
    elbo = logsumexp(log_q, axis=1).sum() - kl_gamma - kl_dir
    params = MixtureParams(alpha, q)
    assert model.objective(params, stats_) == pytest.approx(elbo / 5, rel=1e-12)

    new = model.m_step(params, stats_)
    np.testing.assert_allclose(new.components.a[:, 0], a0 + resp.T @ x, rtol=1e-12)
    np.testing.assert_allclose(new.components.b[:, 0], b0 + resp.sum(0), rtol=1e-12)
    np.testing.assert_allclose(new.weights, alpha0 + resp.sum(0), rtol=1e-12)


def test_elbo_is_the_fits_lower_bound_and_never_decreases():
    X = _two_poisson_clusters(300)
    model = PoissonMixture(
        4,
        prior="auto",
        e_step="variational",
        random_state=0,
        monotonicity="raise",
        tol=1e-9,
        max_iter=3000,
    ).fit(X)
    assert model.converged_
    assert np.all(np.diff(model.lower_bounds_) >= -1e-12)
    assert model.lower_bound_ == model.lower_bounds_[-1]
    # the ELBO bounds the log marginal likelihood, below the MAP log-likelihood here
    exact = PoissonMixture(2, prior="auto", random_state=0).fit(X)
    assert model.lower_bound_ < exact.lower_bound_
    # the unneeded components are emptied: their weight is alpha_0 / (N + K alpha_0)
    assert np.sort(model.weights_)[:2] == pytest.approx(0.25 / 301, rel=1e-6)
    np.testing.assert_allclose(model.weight_concentration_.sum(), 300 + 4 * 0.25)
    np.testing.assert_allclose(model.rates_, model.posteriors_.mean())


@pytest.mark.parametrize(
    ("family", "make"),
    [
        (
            Poisson(prior=GammaPrior(1.5, 0.1)),
            lambda r, z: r.poisson((2.0 + 6.0 * z)[:, None] * [1, 2]),
        ),
        (Bernoulli(), lambda r, z: r.random((z.size, 3)) < 0.2 + 0.6 * z[:, None]),
        (Categorical(prior=DirichletPrior(1.5)), _codes),
        (Exponential(prior="auto"), lambda r, z: r.exponential((1.0 + 4.0 * z)[:, None])),
    ],
    ids=["poisson", "bernoulli", "categorical", "exponential"],
)
def test_with_a_lot_of_data_it_matches_maximum_likelihood(family, make):
    """Weights of 10^6 per row (the same as repeating the rows) overwhelm the priors:
    the posterior means are the ML estimates of exact EM from the same start."""
    rng = np.random.default_rng(1)
    z = rng.integers(0, 2, 200)
    X = np.asarray(make(rng, z), dtype=float)
    w = np.full(200, 1e6)
    opts = {"n_components": 2, "random_state": 0, "tol": 1e-9, "max_iter": 3000}
    vb = MixtureModel(family, e_step="variational", **opts).fit(X, sample_weight=w)
    ml = MixtureModel(type(family)(), **opts).fit(X, sample_weight=w)
    np.testing.assert_allclose(vb.weights_, ml.weights_, rtol=1e-5)
    for name, value in ml.component_params_.items():
        np.testing.assert_allclose(
            np.concatenate(vb.component_params_[name], axis=None),
            np.concatenate(value, axis=None),
            rtol=1e-4,
            atol=1e-6,  # a category absent from a cluster: 1e-260 by ML, ~prior / N by VB
        )


def test_integer_sample_weights_are_repeated_rows():
    X = _two_poisson_clusters(60, seed=3)
    w = np.random.default_rng(0).integers(1, 4, 60)
    opts = {"prior": "auto", "e_step": "variational", "random_state": 0, "tol": 1e-12}
    weighted = PoissonMixture(2, **opts).fit(X, sample_weight=w.astype(float))
    repeated = PoissonMixture(2, init_params="random_from_data", **opts)
    # the same start: initialize the repeated fit from the weighted one's posteriors
    start = PoissonMixture(2, max_iter=1000, **opts)
    start.fit(X, sample_weight=w.astype(float))
    np.testing.assert_allclose(weighted.rates_, start.rates_)
    repeated.fit(np.repeat(X, w, axis=0))
    order = np.argsort(weighted.rates_[:, 0])
    other = np.argsort(repeated.rates_[:, 0])
    np.testing.assert_allclose(weighted.rates_[order], repeated.rates_[other], rtol=1e-6)
    np.testing.assert_allclose(
        weighted.weight_concentration_[order], repeated.weight_concentration_[other], rtol=1e-6
    )
    assert weighted.lower_bound_ == pytest.approx(repeated.lower_bound_, rel=1e-8)


def test_missing_entries_are_left_out_of_the_update():
    """With one component q(z) is 1: the posterior is the prior updated with the
    observed entries alone, column by column."""
    rng = np.random.default_rng(4)
    X = rng.poisson(3.0, (40, 2)).astype(float)
    X[::3, 0] = np.nan
    X[2::6, 1] = np.nan
    prior = GammaPrior(2.0, 0.5)
    model = PoissonMixture(1, prior=prior, e_step="variational", random_state=0).fit(X)
    observed = ~np.isnan(X)
    np.testing.assert_allclose(model.posteriors_.a[0], 2.0 + np.nansum(X, axis=0), rtol=1e-12)
    np.testing.assert_allclose(model.posteriors_.b[0], 0.5 + observed.sum(0), rtol=1e-12)
    B = (rng.random((30, 3)) < 0.3).astype(float)
    B[::4, 2] = np.nan
    model = BernoulliMixture(1, prior=BetaPrior(2.0, 3.0), e_step="variational").fit(B)
    np.testing.assert_allclose(model.posteriors_.a[0], 2.0 + np.nansum(B, axis=0))
    np.testing.assert_allclose(model.posteriors_.b[0], 3.0 + np.nansum(1 - B, axis=0))


def test_categorical_product_and_multinomial_fit_and_predict():
    rng = np.random.default_rng(5)
    z = rng.integers(0, 2, 300)
    codes = _codes(rng, z)
    model = CategoricalMixture(3, e_step="variational", random_state=0, monotonicity="raise")
    labels = model.fit_predict(codes.astype(float))
    assert adjusted_rand_score(labels, z) > 0.6
    assert isinstance(model.posteriors_, DirichletPrior)
    assert [p.shape for p in model.probabilities_] == [(3, 3), (3, 3)]
    counts = np.array([rng.multinomial(10, [0.7, 0.2, 0.1] if zi else [0.1, 0.2, 0.7]) for zi in z])
    X = np.column_stack([counts, rng.poisson(1 + 5 * z)]).astype(float)
    family = Product({"m": ([0, 1, 2], Multinomial()), "p": ([3], Poisson(prior="auto"))})
    model = MixtureModel(family, 2, e_step="variational", random_state=0, monotonicity="raise")
    model.fit(X)
    assert set(model.posteriors_) == {"m", "p"}
    np.testing.assert_allclose(
        np.sort(model.component_params_["p"]["rates"][:, 0]), [1, 6], atol=0.3
    )
    assert model.sample(5)[0].shape == (5, 4)
    assert np.isfinite(model.score(X))


@pytest.mark.parametrize(
    ("family", "match"),
    [
        (Gamma(), "the Gamma family has none"),
        (Beta(), "the Beta family has none"),
        (LogNormal(), "the LogNormalFamily family has none"),
        (Gaussian(), "or emkit.BayesianGaussianMixture"),
        (Product({"a": ([0], Poisson(prior="auto")), "b": ([1], Gamma())}), "Gamma family"),
    ],
)
def test_families_without_a_conjugate_prior_are_refused(family, match):
    X = np.random.default_rng(0).gamma(2.0, 1.0, (20, 2)).round() + 1.0
    if isinstance(family, Beta):
        X = 1.0 / (1.0 + X)
    with pytest.raises(InputError, match=match) as info:
        MixtureModel(family, 2, e_step="variational").fit(X)
    assert "Poisson and Exponential (GammaPrior)" in str(info.value)


def test_a_proper_prior_is_required_where_none_means_an_improper_one():
    with pytest.raises(InputError, match=r"needs a proper prior on the Poisson.*prior='auto'"):
        PoissonMixture(2, e_step="variational").fit(_two_poisson_clusters(20))
    with pytest.raises(InputError, match="needs a proper prior on the Exponential"):
        MixtureModel(Exponential(), 2, e_step="variational").fit(np.ones((5, 1)))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"accelerate": "squarem"}, "does not take accelerate='squarem'"),
        ({"fixed": {"weights": [0.5, 0.5]}}, "does not take fixed="),
        ({"weight_concentration": 2.0}, "the weights' prior is weight_concentration_prior"),
        ({"weight_concentration_prior": 0.0}, "weight_concentration_prior must be > 0"),
    ],
)
def test_options_variational_em_does_not_take(options, match):
    model = PoissonMixture(2, prior="auto", e_step="variational", **options)
    with pytest.raises(InputError, match=match):
        model.fit(_two_poisson_clusters(20))


def test_refused_elsewhere_and_never_silently_ignored():
    X = _two_poisson_clusters(20)
    with pytest.raises(InputError, match=r"weight_concentration_prior=0\.5 is the Dirichlet prior"):
        PoissonMixture(2, weight_concentration_prior=0.5).fit(X)
    with pytest.raises(InputError, match="partial_fit runs online EM"):
        PoissonMixture(2, prior="auto", e_step="variational").partial_fit(X)
    with pytest.raises(InputError, match="'variational' is mean-field variational EM"):
        PoissonMixture(2, e_step="variationa").fit(X)
    with pytest.raises(InputError, match="e_step must be one of 'exact', 'hard'"):
        GaussianMixture(2, e_step="variational").fit(X)


def _variational_fits() -> dict[str, tuple[Any, np.ndarray]]:
    """A variational fit of each family with a conjugate prior, and a Product of them."""
    X = _two_poisson_clusters(60)
    binary = (X > 4).astype(float)
    codes = np.minimum(X, 4.0)
    both = np.column_stack([X[:, :1], binary[:, 1:]])
    product = Product(
        {
            "counts": ([0], Poisson(prior=GammaPrior(2.0, 0.5))),
            "flags": ([1], Bernoulli(prior=BetaPrior(2.0, 2.0))),
        }
    )
    options = {"e_step": "variational", "random_state": 0}
    return {
        "poisson": (PoissonMixture(2, prior="auto", **options), X),
        "bernoulli": (BernoulliMixture(2, prior="auto", **options), binary),
        "categorical": (CategoricalMixture(2, prior="auto", **options), codes),
        "product": (MixtureModel(product, 2, weight_concentration_prior=0.3, **options), both),
    }


def _posterior_state(posteriors: Any) -> list[tuple[str, Any]]:
    blocks = posteriors.items() if isinstance(posteriors, dict) else [("", posteriors)]
    return [(f"{name}.{k}", v) for name, post in blocks for k, v in sorted(vars(post).items())]


@pytest.mark.parametrize("case", ["poisson", "bernoulli", "categorical", "product"])
def test_a_saved_variational_fit_predicts_exactly_and_keeps_its_posteriors(case, tmp_path):
    model, X = _variational_fits()[case]
    model.fit(X)
    loaded = load_model(save_model(model, tmp_path / "model.npz"))
    assert type(loaded) is type(model) and loaded.get_params().keys() == model.get_params().keys()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.sample(7)[0], model.sample(7)[0])
    np.testing.assert_array_equal(loaded.weight_concentration_, model.weight_concentration_)
    assert loaded.weight_concentration_prior_ == model.weight_concentration_prior_
    got, expected = _posterior_state(loaded.posteriors_), _posterior_state(model.posteriors_)
    assert [k for k, _ in got] == [k for k, _ in expected]
    for (key, a), (_, b) in zip(got, expected, strict=True):
        assert type(a) is type(b), key
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg=key)


def _rewritten(path, change) -> None:
    """The model file at ``path`` with ``change(metadata, arrays)`` applied."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    metadata = json.loads(str(arrays.pop("metadata.json")[()]))
    change(metadata, arrays)
    with path.open("wb") as fh:
        np.savez(fh, **arrays, **{"metadata.json": np.array(json.dumps(metadata))})


def _scaled(key: str, factor: float):
    def change(metadata, arrays):
        arrays[key] = arrays[key] * factor

    return change


def _first_scaled(key: str, factor: float):
    def change(metadata, arrays):
        arrays[key] = arrays[key].copy()
        arrays[key][0] *= factor

    return change


def _dropped(name: str):
    def change(metadata, arrays):
        del metadata["attributes"][name]

    return change


def _retyped(metadata, arrays):
    metadata["params"]["e_step"] = "exact"


@pytest.mark.parametrize(
    ("case", "change", "match"),
    [
        (
            "poisson",
            _scaled("attr.posteriors_.shape", 1.5),
            r"the attribute posteriors_\.shape must be 1 \+ _excess",
        ),
        (
            "poisson",
            _scaled("attr.posteriors_.rate", 1.5),
            r"the attribute posteriors_ must give params_\.components\.rates as its posterior",
        ),
        (
            "poisson",
            _scaled("attr.posteriors_.rate", -1.0),
            r"the attribute posteriors_\.rate must be finite and > 0, got -",
        ),
        (
            "bernoulli",
            _scaled("attr.posteriors_._excess_b", 2.0),
            r"the attribute posteriors_\.b must be 1 \+ _excess_b",
        ),
        (
            "categorical",
            _scaled("attr.posteriors_._offsets", 2),
            r"the attribute posteriors_\._offsets must be the family's category offsets",
        ),
        (
            "product",
            _scaled("attr.posteriors_.1.a", 1.0 + 1e-6),
            r"the attribute posteriors_\['flags'\]\.a must be 1 \+ _excess_a",
        ),
        (
            "product",
            _first_scaled("attr.weight_concentration_", 3.0),
            r"the attribute weight_concentration_ must give params_\.weights as its mean",
        ),
        (
            "product",
            _first_scaled("attr.weight_concentration_", 1e-9),
            r"the attribute weight_concentration_ must be alpha_0 \+ N_k >= alpha_0 = 0\.3",
        ),
        (
            "poisson",
            _dropped("posteriors_"),
            r"the attribute posteriors_ is missing \(e_step='variational' stores it\)",
        ),
        (
            "poisson",
            _retyped,
            r"the attribute posteriors_ is a variational fit's, but e_step is 'exact'",
        ),
    ],
)
def test_a_tampered_posterior_is_refused_naming_the_entry(case, change, match, tmp_path):
    model, X = _variational_fits()[case]
    path = save_model(model.fit(X), tmp_path / "model.npz")
    _rewritten(path, change)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_warm_started_single_iterations_retrace_the_cold_elbo():
    """As GaussianMixture's warm start: max_iter=1 refits continue one ELBO trace from the
    fitted posteriors and converge at the cold fit's iteration, to its posteriors."""
    X = _two_poisson_clusters(80)
    options = {"prior": "auto", "e_step": "variational", "random_state": 0, "tol": 1e-8}
    options["init_params"] = "random"  # a start some iterations from the optimum
    cold = PoissonMixture(2, monotonicity="raise", **options).fit(X)
    assert cold.converged_ and cold.n_iter_ > 3
    warm = PoissonMixture(2, warm_start=True, max_iter=1, monotonicity="raise", **options)
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(cold.n_iter_ + 5):
            warm.fit(X)
            assert warm.n_iter_ == 1
            bounds.append(warm.lower_bound_)
            if warm.converged_:
                break
    assert warm.converged_
    np.testing.assert_allclose(bounds, cold.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(warm.weight_concentration_, cold.weight_concentration_, rtol=1e-10)
    np.testing.assert_allclose(warm.posteriors_.shape, cold.posteriors_.shape, rtol=1e-10)


@pytest.mark.parametrize("case", ["categorical", "product"])
def test_a_loaded_variational_fit_continues_as_the_original(case, tmp_path):
    """Warm-starting the loaded model continues from the stored posteriors exactly: the
    same ELBO trace as warm-starting the fitted object, never lower than the fit's."""
    model, X = _variational_fits()[case]
    model.set_params(max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X)
        loaded = load_model(save_model(model, tmp_path / "model.npz"))
        more = {"warm_start": True, "max_iter": 4, "monotonicity": "raise"}
        loaded.set_params(**more).fit(X)
        model.set_params(**more).fit(X)
    np.testing.assert_array_equal(loaded.lower_bounds_, model.lower_bounds_)
    assert loaded.lower_bounds_[0] >= loaded.lower_bound_ - 1.0  # sanity: a continuation
    for (key, a), (_, b) in zip(
        _posterior_state(loaded.posteriors_), _posterior_state(model.posteriors_), strict=True
    ):
        if b is not None:
            np.testing.assert_array_equal(a, b, err_msg=key)


def test_a_warm_start_with_another_e_step_does_not_continue_the_elbo():
    """The ELBO is not the log-likelihood: an exact warm start from a variational fit
    measures its first change from nothing, and so cannot stop at once."""
    X = _two_poisson_clusters(80)
    model = PoissonMixture(2, prior="auto", e_step="variational", random_state=0, tol=1e-8)
    model.fit(X)
    model.set_params(e_step="exact", warm_start=True, max_iter=1, tol=10.0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X)
    assert not model.converged_
    model.fit(X)  # now the same objective: a change below tol converges
    assert model.converged_


def test_a_variational_warm_start_needs_a_variational_fit():
    X = _two_poisson_clusters(40)
    model = PoissonMixture(2, prior="auto", random_state=0).fit(X)
    model.set_params(e_step="variational", warm_start=True)
    with pytest.raises(InputError, match="the previous fit was not variational"):
        model.fit(X)


def test_refit_without_variational_drops_the_posteriors():
    X = _two_poisson_clusters(40)
    model = PoissonMixture(2, prior="auto", e_step="variational", random_state=0).fit(X)
    assert hasattr(model, "posteriors_")
    model.set_params(e_step="exact").fit(X)
    assert not hasattr(model, "posteriors_") and not hasattr(model, "weight_concentration_")


def test_posterior_predictive_scores_are_finite_and_match_the_point_model():
    X = _two_poisson_clusters(100)
    model = PoissonMixture(2, prior="auto", e_step="variational", random_state=0).fit(X)
    expected = np.log(
        model.weights_ @ stats.poisson.pmf(X[:, None, :], model.rates_[None]).prod(axis=2).T
    )
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-10)
