"""BayesianGaussianMixture: scikit-learn as the oracle, the ELBO's monotonicity, sample
weights, warm starts, bad input, and the Normal-Wishart's four operations.

scikit-learn's own test module runs on emkit in tests/sklearn_suites/.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import warnings

import numpy as np
import pytest
import sklearn.mixture
from conftest import blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from emkit import BayesianGaussianMixture, InputError, load_model, save_model
from emkit.families.gaussian import covariance_structure
from emkit.families.normal_wishart import NormalWishart
from emkit.families.priors import DirichletPrior, GaussianPrior
from emkit.models.mixing import NK_FLOOR
from emkit.models.variational_gaussian import expected_log_weights

X = blobs(240, 3, 3, seed=5, spread=3.0)
PRIORS = ["dirichlet_process", "dirichlet_distribution"]
TYPES = ["full", "tied", "diag", "spherical"]


def _both(**kwargs: object) -> tuple[object, BayesianGaussianMixture]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        # (a RandomState is consumed by a fit: each estimator gets its own copy)
        theirs = sklearn.mixture.BayesianGaussianMixture(**copy.deepcopy(kwargs)).fit(X)
        ours = BayesianGaussianMixture(monotonicity="raise", **copy.deepcopy(kwargs)).fit(X)
    return theirs, ours


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_reaches_scikit_learns_elbo_from_the_same_seed(
    prior_type: str, covariance_type: str
) -> None:
    theirs, ours = _both(
        n_components=5,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        random_state=2,
        tol=1e-5,
        max_iter=80,
    )
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    np.testing.assert_allclose(ours.lower_bound_, np.ravel(theirs.lower_bound_)[0], rtol=1e-9)
    np.testing.assert_allclose(ours.lower_bounds_, np.ravel(theirs.lower_bounds_), rtol=1e-9)
    for name in (
        "weights_",
        "means_",
        "covariances_",
        "precisions_",
        "precisions_cholesky_",
        "mean_precision_",
        "degrees_of_freedom_",
        "mean_prior_",
        "covariance_prior_",
    ):
        np.testing.assert_allclose(
            getattr(ours, name), getattr(theirs, name), rtol=1e-7, atol=1e-9, err_msg=name
        )
    np.testing.assert_allclose(
        np.ravel(ours.weight_concentration_), np.ravel(theirs.weight_concentration_), rtol=1e-9
    )
    np.testing.assert_allclose(ours.score_samples(X), theirs.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-9)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("init_params", ["k-means++", "random", "random_from_data"])
def test_every_init_and_given_priors_match_scikit_learn(init_params: str) -> None:
    theirs, ours = _both(
        n_components=4,
        init_params=init_params,
        weight_concentration_prior=0.3,
        mean_precision_prior=0.5,
        mean_prior=[0.0, 1.0, -1.0],
        degrees_of_freedom_prior=4.5,
        covariance_prior=2.0 * np.eye(3),
        random_state=np.random.RandomState(4),
        n_init=2,
        max_iter=50,
    )
    np.testing.assert_allclose(ours.lower_bound_, theirs.lower_bound_, rtol=1e-9)
    np.testing.assert_allclose(ours.means_, theirs.means_, rtol=1e-7, atol=1e-9)


def test_first_posteriors_of_the_four_structures_agree() -> None:
    """From one start (max_iter=0), the tied scale is the mean of the full ones, the
    diagonal ones their diagonals and the spherical ones their mean variance."""

    def scale(covariance_type: str) -> np.ndarray:
        bgm = BayesianGaussianMixture(
            n_components=4, covariance_type=covariance_type, max_iter=0, random_state=0
        ).fit(X)
        dof = np.asarray(bgm.degrees_of_freedom_)
        return bgm.covariances_ * (
            dof if dof.ndim == 0 else dof.reshape(-1, *[1] * (bgm.covariances_.ndim - 1))
        )

    full = scale("full")
    diag = scale("diag")
    np.testing.assert_allclose(scale("tied"), full.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(diag, np.diagonal(full, axis1=1, axis2=2), rtol=1e-10)
    np.testing.assert_allclose(scale("spherical"), diag.mean(axis=1), rtol=1e-10)


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_elbo_never_decreases(prior_type: str, covariance_type: str) -> None:
    bgm = BayesianGaussianMixture(
        n_components=6,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        init_params="random",
        random_state=0,
        tol=0.0,
        max_iter=60,
        monotonicity="raise",  # the driver checks every iteration
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        bgm.fit(X)
    steps = np.diff(bgm.lower_bounds_)
    assert (steps >= -1e-9 * np.abs(bgm.lower_bounds_[1:])).all()
    assert steps[0] > 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    n_components=st.integers(1, 5),
    covariance_type=st.sampled_from(TYPES),
    prior_type=st.sampled_from(PRIORS),
    concentration=st.floats(1e-3, 1e3),
    weighted=st.booleans(),
)
def test_the_elbo_never_decreases_property(
    seed: int,
    n_components: int,
    covariance_type: str,
    prior_type: str,
    concentration: float,
    weighted: bool,
) -> None:
    rng = np.random.default_rng(seed)
    data = blobs(60, 2, 3, seed=seed, spread=2.0)
    w = rng.uniform(0.5, 3.0, len(data)) if weighted else None
    bgm = BayesianGaussianMixture(
        n_components=n_components,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        weight_concentration_prior=concentration,
        init_params="random",
        random_state=seed,
        tol=0.0,
        max_iter=25,
        monotonicity="raise",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        bgm.fit(data, sample_weight=w)
    assert np.isfinite(bgm.lower_bounds_).all()
    np.testing.assert_allclose(bgm.predict_proba(data).sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_integer_weights_are_repeated_rows(covariance_type: str) -> None:
    counts = np.random.default_rng(1).integers(0, 4, len(X))
    kwargs = {"n_components": 3, "covariance_type": covariance_type, "random_state": 0}
    kwargs |= {"init_params": "random_from_data", "max_iter": 0}
    # the same start: the repeated rows' fitted start, given to both as a warm start
    start = BayesianGaussianMixture(**kwargs).fit(np.repeat(X, counts, axis=0))
    repeated = BayesianGaussianMixture(**kwargs).fit(np.repeat(X, counts, axis=0))
    weighted = BayesianGaussianMixture(**kwargs).fit(X, sample_weight=counts)
    np.testing.assert_allclose(weighted.mean_prior_, repeated.mean_prior_, rtol=1e-12)
    np.testing.assert_allclose(weighted.covariance_prior_, repeated.covariance_prior_, rtol=1e-12)
    for bgm in (repeated, weighted):
        for name in (
            "weight_concentration_",
            "mean_precision_",
            "means_",
            "covariances_",
            "degrees_of_freedom_",
        ):
            setattr(bgm, name, getattr(start, name))
        bgm.set_params(warm_start=True, max_iter=30, tol=0.0, monotonicity="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        repeated.fit(np.repeat(X, counts, axis=0))
        weighted.fit(X, sample_weight=counts)
    np.testing.assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-9)
    np.testing.assert_allclose(weighted.means_, repeated.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(weighted.covariances_, repeated.covariances_, rtol=1e-8)


def test_warm_started_single_iterations_retrace_the_cold_fit() -> None:
    cold = BayesianGaussianMixture(n_components=4, random_state=0, tol=1e-6).fit(X)
    assert cold.converged_
    warm = BayesianGaussianMixture(
        n_components=4, random_state=0, tol=1e-6, warm_start=True, max_iter=1
    )
    bounds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        for _ in range(cold.n_iter_ + 3):
            warm.fit(X)
            bounds.append(warm.lower_bound_)
            if warm.converged_:
                break
    assert warm.converged_
    np.testing.assert_allclose(bounds, cold.lower_bounds_, rtol=1e-10)
    np.testing.assert_allclose(warm.means_, cold.means_, rtol=1e-10)


def test_warm_start_refuses_another_structure() -> None:
    bgm = BayesianGaussianMixture(n_components=2, warm_start=True, random_state=0).fit(X)
    bgm.set_params(covariance_type="diag")
    with pytest.raises(InputError, match="covariance_type"):
        bgm.fit(X)


def test_the_dirichlet_process_switches_off_unneeded_components() -> None:
    bgm = BayesianGaussianMixture(
        n_components=10, weight_concentration_prior=1e-3, random_state=0, max_iter=500
    ).fit(X)
    assert np.sort(bgm.weights_)[::-1][:3].sum() > 0.98
    assert len(np.unique(bgm.predict(X))) == 3


def test_fit_predict_sample_and_float32() -> None:
    bgm = BayesianGaussianMixture(n_components=3, random_state=0)
    labels = bgm.fit_predict(X)
    np.testing.assert_array_equal(labels, bgm.predict(X))
    draws, components = bgm.sample(20000)
    np.testing.assert_allclose(
        np.bincount(components, minlength=3) / 20000, bgm.weights_, atol=0.02
    )
    for k in range(3):
        np.testing.assert_allclose(draws[components == k].mean(axis=0), bgm.means_[k], atol=0.1)
    single = BayesianGaussianMixture(n_components=3, random_state=0).fit(X.astype(np.float32))
    assert single.means_.dtype == np.float32
    assert single.predict_proba(X.astype(np.float32)).dtype == np.float32
    np.testing.assert_allclose(single.means_, bgm.means_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight_concentration_prior_type": "dirichlet"}, "weight_concentration_prior_type"),
        ({"weight_concentration_prior": -1.0}, "'weight_concentration_prior' parameter"),
        ({"mean_precision_prior": 0.0}, "'mean_precision_prior' parameter"),
        ({"covariance_type": "banded"}, "covariance_type must be one of"),
        ({"mean_prior": [0.0, 1.0]}, r"'means' should have the shape of \(3,\)"),
        ({"degrees_of_freedom_prior": 1.5}, "should be greater than 2, but got 1.500"),
        ({"covariance_prior": np.eye(2)}, r"'full covariance prior' should have the shape"),
        ({"covariance_prior": [[1.0, 2.0, 0], [0, 1, 0], [0, 0, 1]]}, "should be symmetric"),
        ({"covariance_prior": -np.eye(3)}, "positive-definite"),
        ({"covariance_type": "diag", "covariance_prior": [1.0, -1.0, 1.0]}, "should be positive"),
        ({"covariance_type": "spherical", "covariance_prior": [1.0]}, "must be a float"),
        ({"n_components": 0}, "n_components"),
        ({"monotonicity": "maybe"}, "monotonicity"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        BayesianGaussianMixture(**kwargs).fit(X)  # type: ignore[arg-type]


def test_bad_data_is_named() -> None:
    bad = X.copy()
    bad[3, 1] = np.inf  # (NaN marks a missing value: tests/test_bayesian_mixture_missing.py)
    with pytest.raises(InputError, match=r"infinity \(first at row 3, column 1\)"):
        BayesianGaussianMixture().fit(bad)
    with pytest.raises(InputError, match="at least as many samples as components"):
        BayesianGaussianMixture(n_components=5).fit(X[:3])
    with pytest.raises(InputError, match=r"sample_weight sums to 0.5 <= 1"):
        BayesianGaussianMixture().fit(X, sample_weight=np.full(len(X), 0.5 / len(X)))
    fitted = BayesianGaussianMixture(n_components=2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:, :2])


# -- the Normal-Wishart's operations ------------------------------------------------------


def _normal_wishart(d: int = 2, seed: int = 0) -> NormalWishart:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    return NormalWishart(
        "full",
        rng.normal(size=(1, d)),
        np.array([rng.uniform(0.5, 3.0)]),
        np.array([d + rng.uniform(1.0, 4.0)]),
        (A @ A.T + np.eye(d))[None],
    )


def _draws(nw: NormalWishart, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(means, precisions) drawn from a one-component full Normal-Wishart."""
    W = np.linalg.inv(nw.scale[0])
    lam = stats.wishart(df=nw.dof[0], scale=W).rvs(n, random_state=rng)
    cov = np.linalg.inv(lam * nw.shrinkage[0])
    mu = nw.mean[0] + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.standard_normal((n, 2)))
    return mu, lam


def _log_density(nw: NormalWishart, mu: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """log NW(mu, Lambda): log N(mu | m, (beta Lambda)^-1) + log Wishart(Lambda | W, nu)."""
    W = np.linalg.inv(nw.scale[0])
    beta, delta = nw.shrinkage[0], mu - nw.mean[0]
    normal = (
        0.5 * mu.shape[1] * np.log(beta / (2 * np.pi))
        + 0.5 * np.linalg.slogdet(lam)[1]
        - 0.5 * beta * np.einsum("ni,nij,nj->n", delta, lam, delta)
    )
    return normal + stats.wishart(df=nw.dof[0], scale=W).logpdf(lam.T)


def test_normal_wishart_kl_is_the_expected_log_ratio() -> None:
    q, p = _normal_wishart(seed=1), _normal_wishart(seed=2)
    assert q.kl(q) == pytest.approx(0.0, abs=1e-12)
    mu, lam = _draws(q, 4000, np.random.default_rng(3))
    ratio = _log_density(q, mu, lam) - _log_density(p, mu, lam)
    assert q.kl(p) == pytest.approx(ratio.mean(), abs=4 * ratio.std() / np.sqrt(len(ratio)))
    assert q.kl(p) > 0


def test_normal_wishart_expected_natural_gives_the_expected_log_density() -> None:
    q = _normal_wishart(seed=4)
    x = np.array([0.3, -1.2])
    (lam_mu, lam), expected_a = q.expected_natural()
    exact = x @ lam_mu[0] - 0.5 * x @ lam[0] @ x - expected_a[0]
    mu, lams = _draws(q, 4000, np.random.default_rng(5))
    delta = x - mu
    # log N(x | mu, Lambda^-1) for each draw
    logpdf = (
        -np.log(2 * np.pi)
        + 0.5 * np.linalg.slogdet(lams)[1]
        - 0.5 * np.einsum("ni,nij,nj->n", delta, lams, delta)
    )
    assert exact == pytest.approx(logpdf.mean(), abs=4 * logpdf.std() / np.sqrt(len(logpdf)))


def _statistics(structure, rows: np.ndarray, resp: np.ndarray):
    """(nk, sum_t, shared) of ``rows`` with responsibilities ``resp`` (centred at 0)."""
    T = structure.statistics(rows.copy())
    return resp.sum(axis=0), resp.T @ T, structure.shared_statistics(rows, None)


def _as_prior(nw: NormalWishart) -> GaussianPrior:
    """A one-component full Normal-Wishart as the GaussianPrior it is."""
    return GaussianPrior(
        mean=nw.mean[0], shrinkage=nw.shrinkage[0], dof=nw.dof[0], scale=nw.scale[0]
    )


def test_normal_wishart_posterior_is_bayes_rule_and_mode_is_map() -> None:
    """Updating by one batch equals updating by its two halves (conjugacy), and the mode
    maximizes the posterior density."""
    prior = _normal_wishart(seed=6)
    rows = np.random.default_rng(7).normal(size=(30, 2))
    full = covariance_structure("full")
    origin = np.zeros(2)

    def update(nw: NormalWishart, part: np.ndarray) -> NormalWishart:
        bound = _as_prior(nw).attach(full, 1, origin)
        return bound.posterior(_statistics(full, part, np.ones((len(part), 1)))).normal_wishart()

    once = update(prior, rows)
    twice = update(update(prior, rows[:12]), rows[12:])
    for a, b in zip(
        (once.mean, once.shrinkage, once.dof, once.scale),
        (twice.mean, twice.shrinkage, twice.dof, twice.scale),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    mean, cov = once.mode()

    def log_density(m: np.ndarray, c: np.ndarray) -> float:
        lam = np.linalg.inv(c)
        # the density of (mu, Sigma): the Wishart's of Lambda times |Sigma|^-(d+1)
        jac = -(2 + 1) * np.linalg.slogdet(c)[1]
        return float(_log_density(once, m[None], lam[None])[0] + jac)

    best = log_density(mean[0], cov[0])
    rng = np.random.default_rng(8)
    for _ in range(20):
        step = rng.normal(scale=0.05, size=(2, 2))
        assert log_density(mean[0] + rng.normal(scale=0.05, size=2), cov[0] + step @ step.T) < best


@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_bound_prior_is_the_one_component_normal_wishart(covariance_type: str) -> None:
    """GaussianPrior bound to a structure is a one-component Normal-Wishart of that form,
    and its posteriors are scikit-learn's readings of the structures: from one partition,
    tied is the mean of the full updates' scales, diag their diagonals, spherical the
    diagonals' means."""
    prior = GaussianPrior(mean=[0.5, -1.0], shrinkage=0.7, dof=3.5, scale=[[2.0, 0.3], [0.3, 1.0]])
    other = GaussianPrior(mean=[0.0, 0.0], shrinkage=1.0, dof=4.0, scale=[1.5, 0.5])
    structure = covariance_structure(covariance_type)
    origin = np.zeros(2)
    bound, bound_other = prior.attach(structure, 3, origin), other.attach(structure, 3, origin)
    nw = bound.normal_wishart()
    assert nw.covariance_type == covariance_type
    assert nw.kl(nw) == pytest.approx(0.0, abs=1e-12)
    assert nw.kl(bound_other.normal_wishart()) > 0
    labels = np.arange(len(X)) % 3
    resp = np.eye(3)[labels]
    rows = X[:, :2]
    post = bound.posterior(_statistics(structure, rows, resp))
    assert post.kl(bound) > 0
    assert post.kl(post) == pytest.approx(0.0, abs=1e-9)
    full = prior.attach(covariance_structure("full"), 3, origin)
    full_post = full.posterior(_statistics(covariance_structure("full"), rows, resp))
    scales = full_post.normal_wishart().scale
    diag = np.diagonal(scales, axis1=1, axis2=2)
    prior_scale = np.asarray(bound.scale)
    expected = {
        "full": scales,
        # one Wishart, each component's share: W_0^-1 + (sum_k (W_k^-1 - W_0^-1)) / K
        "tied": prior_scale + (scales - prior_scale).mean(axis=0),
        "diag": diag,
        "spherical": diag.mean(axis=1),
    }[covariance_type]
    np.testing.assert_allclose(post.normal_wishart().scale, expected, rtol=1e-12)
    counts = resp.sum(axis=0)
    means = resp.T @ rows / counts[:, None]
    np.testing.assert_allclose(
        post.mean()[0],
        (0.7 * np.asarray(prior.mean) + counts[:, None] * means) / (0.7 + counts[:, None]),
    )


def test_only_conjugate_posteriors_are_normal_wisharts() -> None:
    origin = np.zeros(2)
    rows = X[:, :2]
    resp = np.eye(2)[np.arange(len(X)) % 2]
    cases = [
        (GaussianPrior(mean=[0.0, 0.0], dof=3.0, scale=1.0), "VEV", r"the 'VEV' structure"),
        (GaussianPrior(mean=[0.0, 0.0], dof=3.0, scale=1.0), "EII", r"the 'EII' structure"),
        (GaussianPrior(mean=[0.0, 0.0], shrinkage=0.0, dof=3.0, scale=1.0), "full", "shrinkage=0"),
        (
            GaussianPrior(mean=[0.0, 0.0], dof=3.0, scale=1.0, convention="mclust"),
            "diag",
            "convention='mclust'",
        ),
    ]
    for prior, name, why in cases:
        structure = covariance_structure(name)
        bound = prior.attach(structure, 2, origin)
        post = bound.posterior(_statistics(structure, rows, resp))
        assert np.all(np.isfinite(post.mode()[1]))  # MAP-EM works everywhere
        for call in (
            post.mean,
            post.expected_natural,
            functools.partial(post.kl, bound),
            bound.normal_wishart,
        ):
            with pytest.raises(InputError, match=f"need a conjugate one.*got {why}.*mode"):
                call()
    prior = GaussianPrior(mean=[0.0], shrinkage=1.0, dof=2.0, scale=1.0)
    full = prior.attach(covariance_structure("full"), 1, np.zeros(1)).normal_wishart()
    diag = prior.attach(covariance_structure("diag"), 1, np.zeros(1)).normal_wishart()
    with pytest.raises(InputError, match="same covariance_type"):
        full.kl(diag)


@pytest.mark.parametrize("prior_type", PRIORS)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_model_files_round_trip(prior_type: str, covariance_type: str, tmp_path) -> None:
    bgm = BayesianGaussianMixture(
        n_components=3,
        covariance_type=covariance_type,
        weight_concentration_prior_type=prior_type,
        random_state=0,
    ).fit(X)
    loaded = load_model(save_model(bgm, tmp_path / "bgm.npz"))
    assert type(loaded) is BayesianGaussianMixture
    np.testing.assert_array_equal(loaded.score_samples(X), bgm.score_samples(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), bgm.predict_proba(X))
    np.testing.assert_array_equal(loaded.weight_concentration_, bgm.weight_concentration_)
    assert loaded.lower_bound_ == bgm.lower_bound_
    # a warm start continues from the loaded posteriors
    loaded.set_params(warm_start=True, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        loaded.fit(X)
    assert loaded.lower_bound_ >= bgm.lower_bound_ - 1e-9 * abs(bgm.lower_bound_)


def test_a_damaged_model_file_is_refused(tmp_path) -> None:
    bgm = BayesianGaussianMixture(n_components=2, random_state=0).fit(X)
    bgm.mean_precision_ = -bgm.mean_precision_
    with pytest.raises(InputError, match="mean_precision_"):
        save_model(bgm, tmp_path / "bgm.npz")


def _variational_model(covariance_type: str):
    """The fitted model of one iteration (reg_covar=0) and its first posteriors, with the
    fit's own bound prior."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        bgm = BayesianGaussianMixture(
            n_components=3,
            covariance_type=covariance_type,
            weight_concentration_prior_type="dirichlet_distribution",
            reg_covar=0.0,
            max_iter=1,
            random_state=0,
        ).fit(X)
    model, params = bgm._fitted_model(X)
    prior = GaussianPrior(
        mean=bgm.mean_prior_,
        shrinkage=bgm.mean_precision_prior_,
        dof=bgm.degrees_of_freedom_prior_,
        scale=bgm.covariance_prior_,
    ).attach(model.family.structure, 3, model.family.shift)
    family = dataclasses.replace(model.family, reg_covar=0.0)
    model = dataclasses.replace(
        model, family=family, prior=prior, weight_concentration=bgm.weight_concentration_prior_
    )
    return model, params


def _as_matrices(covariance_type: str, lam: np.ndarray, K: int, d: int) -> np.ndarray:
    """E_q[Lambda_k] in the structure's shape as (K, d, d) matrices."""
    if covariance_type == "full":
        return lam
    if covariance_type == "tied":
        return np.broadcast_to(lam, (K, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in lam])
    return np.stack([np.eye(d) * v for v in lam])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_the_lower_bound_is_the_elbo_of_the_bound_objects(covariance_type: str) -> None:
    """log rho is E_q[log pi] + <t(x), E_q[eta]> - E_q[A(eta)] of the posterior's
    expected_natural(), and the lower bound is E_q[log p(X, Z | theta, pi)] + H[q(z)]
    - KL(q(theta) || prior) - KL(q(pi) || prior) up to the constant terms scikit-learn
    drops, iteration after iteration. Not for tied: scikit-learn's tied posterior (each
    component's 1/K share of one Wishart) is not the optimum of an ELBO, and its bound
    drifts from one."""
    model, params = _variational_model(covariance_type)
    Xc = X - model.family.shift
    K, d = 3, X.shape[1]
    gaps = []
    for _ in range(5):
        stats = model.expectation(params)(X, None)
        new = model.m_step(params, stats)
        # the E-step that made ``stats`` (q(z) of ``params``) and the posteriors it made
        (lam_mu, lam), expected_a = params.components.expected_natural()
        full = _as_matrices(covariance_type, lam, K, d)
        e_log_pi = expected_log_weights(params.concentration, "dirichlet_distribution")
        log_rho = (
            e_log_pi + Xc @ lam_mu.T - 0.5 * np.einsum("ni,kij,nj->nk", Xc, full, Xc) - expected_a
        )
        np.testing.assert_allclose(model.weighted_log_prob(params)(X), log_rho, rtol=1e-10)
        log_resp = model.log_resp(params)(X)
        resp = np.exp(log_resp)
        (lam_mu, lam), expected_a = new.components.expected_natural()
        full = _as_matrices(covariance_type, lam, K, d)
        e_log_pi = expected_log_weights(new.concentration, "dirichlet_distribution")
        e_log_p = e_log_pi + Xc @ lam_mu.T - 0.5 * np.einsum("ni,kij,nj->nk", Xc, full, Xc)
        data = float(np.sum(resp * (e_log_p - expected_a - log_resp)))
        weights_kl = DirichletPrior.packed(new.concentration, check=False).kl(
            DirichletPrior.packed(np.full(K, model.weight_concentration), check=False)
        )
        posterior = model.prior.posterior((stats.nk + NK_FLOOR, stats.sum_t, stats.shared))
        elbo = data - posterior.kl(model.prior) - float(weights_kl)
        gaps.append(elbo - model.bound(new, stats.loglik))
        params = new
    drift = np.ptp(gaps)
    if covariance_type == "tied":
        assert drift > 1e-4
    else:
        assert drift < 1e-9 * abs(gaps[0])
