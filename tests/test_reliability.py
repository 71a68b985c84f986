"""Reliability at the edges, one class of input at a time, for every estimator it applies to.

Each test holds a class of input (values far beyond the training data, data whose squares
overflow, float32 beyond its range, priors on degenerate data, odd but valid tables, bad
arguments) for all estimators at once: the answer is right where it is representable, and
otherwise a clear error that is a ``ValueError`` (never a silent NaN, a raw NumPy message,
an ``OverflowError`` or a ``RuntimeError``).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import blobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emkit
from emkit import (
    PPCA,
    BayesianGaussianMixture,
    BernoulliMixture,
    CategoricalMixture,
    FactorAnalysis,
    GaussianMixture,
    InputError,
    InputTypeError,
    KMeans,
    MixtureModel,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    ModelBasedClustering,
    PoissonMixture,
    StudentTMixture,
)
from emkit.engines import RowSource
from emkit.families import (
    Bernoulli,
    Beta,
    BetaPrior,
    Categorical,
    ConjugatePrior,
    DirichletPrior,
    Exponential,
    Gamma,
    GammaPrior,
    Gaussian,
    GaussianPrior,
    LogNormal,
    Multinomial,
    Poisson,
    Product,
)
from emkit.families.gaussian import _far_log_prob, covariance_structure

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
RNG = np.random.default_rng(7)
X2 = blobs(90, 2, 3, seed=3, spread=3.0)  # three groups in two columns
COUNTS = RNG.poisson([2.0, 9.0], size=(90, 2)).astype(float)


def _data(name: str) -> np.ndarray:
    """Training rows each estimator accepts."""
    if name == "BernoulliMixture":
        return (X2 > X2.mean(axis=0)).astype(float)
    if name in ("CategoricalMixture", "PoissonMixture"):
        return COUNTS
    return X2


# Every estimator emkit exports, with a small configuration and rows it accepts.
ESTIMATORS: dict[str, Callable[..., Any]] = {
    "GaussianMixture": lambda **kw: GaussianMixture(3, max_iter=20, **kw),
    "MixtureModel": lambda **kw: MixtureModel(Gaussian("diag"), 3, max_iter=20, **kw),
    "KMeans": lambda **kw: KMeans(3, n_init=1, max_iter=20, **kw),
    "PPCA": lambda **kw: PPCA(1, max_iter=20, **kw),
    "FactorAnalysis": lambda **kw: FactorAnalysis(1, max_iter=20, **kw),
    "MixtureOfPPCA": lambda **kw: MixtureOfPPCA(2, n_factors=1, max_iter=20, **kw),
    "MixtureOfFactorAnalyzers": lambda **kw: MixtureOfFactorAnalyzers(
        2, n_factors=1, max_iter=20, **kw
    ),
    "PoissonMixture": lambda **kw: PoissonMixture(2, max_iter=20, **kw),
    "BernoulliMixture": lambda **kw: BernoulliMixture(2, max_iter=20, **kw),
    "CategoricalMixture": lambda **kw: CategoricalMixture(2, max_iter=20, **kw),
    "StudentTMixture": lambda **kw: StudentTMixture(2, max_iter=20, **kw),
    "BayesianGaussianMixture": lambda **kw: BayesianGaussianMixture(
        n_components=3, max_iter=20, **kw
    ),
    "ModelBasedClustering": lambda **kw: ModelBasedClustering(
        [1, 2], covariance_types=["full", "diag"], max_iter=20, **kw
    ),
}


def test_every_exported_estimator_is_held_here() -> None:
    exported = {
        name
        for name in emkit.__all__
        if isinstance(getattr(emkit, name), type) and hasattr(getattr(emkit, name), "fit")
    }
    assert exported == set(ESTIMATORS)


# -- 1. values far beyond the training data ---------------------------------------------

# Mixtures whose posterior must survive rows whose log-densities are below float64's
# range; the Gaussian structures, a Gaussian inside MixtureModel, and a product with one.
FAR_MODELS: dict[str, Callable[[], Any]] = {
    **{
        f"GaussianMixture-{ct}": (lambda ct=ct: GaussianMixture(3, covariance_type=ct))
        for ct in COVARIANCE_TYPES
    },
    "MixtureModel-full": lambda: MixtureModel(Gaussian("full"), 3),
    "MixtureModel-product": lambda: MixtureModel(
        Product({"x": ([0], Gaussian("full")), "y": ([1], Gaussian("spherical"))}), 3
    ),
}
FAR_VALUES = [1e155, -1e200, 1e300]


def _far_rows() -> np.ndarray:
    rows = []
    for v in FAR_VALUES:
        for j in range(2):
            row = X2[0].copy()
            row[j] = v
            rows.append(row)
    return np.array(rows)


def _gaussians(model: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weights, means, dense covariances) of a fitted Gaussian mixture, a product of
    Gaussian blocks being one block-diagonal Gaussian."""
    if isinstance(model, GaussianMixture):
        structure = covariance_structure(model.covariance_type)
        d = model.means_.shape[1]
        covs = [structure.component_covariance(model.covariances_, k, d) for k in range(3)]
        return model.weights_, model.means_, np.array(covs)
    params = model.component_params_
    blocks = params.values() if "means" not in params else [params]
    columns = model.family_.blocks.values() if len(blocks) > 1 else [([0, 1], None)]
    means, covs = np.zeros((3, 2)), np.zeros((3, 2, 2))
    for (cols, _), block in zip(columns, blocks, strict=True):
        cols = list(cols)
        means[:, cols] = block["means"]
        for k in range(3):
            cov = np.asarray(block["covariances"][k])
            covs[k][np.ix_(cols, cols)] = cov if cov.ndim == 2 else cov * np.eye(len(cols))
    return model.weights_, means, covs


def _exact_posterior(model: Any, x: np.ndarray) -> np.ndarray:
    """p(k | x_obs) with the squared distances in exact rational arithmetic (from the
    marginal precisions over the observed coordinates): the differences of log-densities
    are finite where the log-densities are not."""
    weights, means, covs = _gaussians(model)
    o = np.flatnonzero(~np.isnan(x))
    quad, const = [], []
    for k in range(len(weights)):
        P = np.linalg.inv(covs[k][np.ix_(o, o)])
        diff = [Fraction(float(x[i])) - Fraction(float(means[k, i])) for i in o]
        quad.append(
            sum(
                diff[i] * Fraction(float(P[i, j])) * diff[j]
                for i in range(o.size)
                for j in range(o.size)
            )
        )
        const.append(math.log(weights[k]) + 0.5 * np.linalg.slogdet(P)[1])
    m = min(range(len(quad)), key=lambda k: quad[k])
    # a difference beyond float64 is a posterior of exactly 0
    gaps = [(quad[k] - quad[m]) / 2 for k in range(len(quad))]
    rel = np.array([-float(g) if g < 1e300 else -np.inf for g in gaps]) + np.array(const)
    rel -= rel.max()
    p = np.exp(rel)
    return p / p.sum()


@pytest.mark.parametrize("name", sorted(FAR_MODELS))
def test_far_rows_keep_their_posterior(name: str) -> None:
    model = FAR_MODELS[name]().set_params(random_state=0, max_iter=30).fit(X2)
    far = _far_rows()
    # far in both columns (in both blocks of the product), and far with the other missing
    far = np.r_[far, [[1e160, -3e159], [-1e250, -1e250], [1e155, np.nan], [np.nan, -1e300]]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning either
        proba = model.predict_proba(far)
        labels = model.predict(far)
        scores = model.score_samples(far)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    assert not np.isnan(scores).any() and (scores < -1e300).all()  # -inf: not representable
    expected = np.array([_exact_posterior(model, x) for x in far])
    np.testing.assert_allclose(proba, expected, atol=1e-9)
    imputed = model.impute(far)
    assert np.isfinite(imputed).all()
    np.testing.assert_array_equal(imputed[~np.isnan(far)], far[~np.isnan(far)])


_FITTED: dict[str, GaussianMixture] = {}


def _fitted(covariance_type: str) -> GaussianMixture:
    """One fit per structure for the property test (fits are not what it varies)."""
    if covariance_type not in _FITTED:
        _FITTED[covariance_type] = GaussianMixture(
            3, covariance_type=covariance_type, random_state=0
        ).fit(X2)
    return _FITTED[covariance_type]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    covariance_type=st.sampled_from(COVARIANCE_TYPES),
    exponents=st.lists(st.integers(-2, 307), min_size=2, max_size=2),
    signs=st.lists(st.sampled_from([-1.0, 1.0]), min_size=2, max_size=2),
    mantissas=st.lists(st.floats(1.0, 9.99), min_size=2, max_size=2),
    missing=st.sampled_from([None, 0, 1]),
)
def test_any_row_gets_the_exact_posterior(
    covariance_type: str,
    exponents: list[int],
    signs: list[float],
    mantissas: list[float],
    missing: int | None,
) -> None:
    """Rows from 0.01 to 1e307 in each coordinate (one possibly missing): the posterior is
    the one exact arithmetic gives, and nothing warns."""
    gm = _fitted(covariance_type)
    x = np.array([s * m * 10.0**e for s, m, e in zip(signs, mantissas, exponents, strict=True)])
    if missing is not None:
        x[missing] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = gm.predict_proba(x[None, :])[0]
        imputed = gm.impute(x[None, :])[0]
    np.testing.assert_allclose(proba, _exact_posterior(gm, x), atol=1e-6)
    assert proba.sum() == pytest.approx(1.0)
    assert np.isfinite(imputed).all()


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_route_is_the_whitened_form_where_both_hold(covariance_type: str) -> None:
    gm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X2)
    family = gm._family()
    params = gm._mixture_params(family).components
    Xc = family.prepare(np.r_[X2[:5], X2[:5] * 1e3], np.float64)
    structure = covariance_structure(covariance_type)
    maha = structure.mahalanobis(Xc, params.means, params.precisions_cholesky)
    rel, row = _far_log_prob(structure, Xc, params)
    np.testing.assert_allclose(rel + row[:, None], -0.5 * maha, rtol=1e-12)


def test_kmeans_far_rows_distances_and_labels() -> None:
    for dtype in (np.float64, np.float32):
        km = KMeans(3, n_init=1, random_state=0).fit(X2.astype(dtype))
        far = np.array([[3e38, 0.0], [0.0, -3e37], [1e30, 1e30]], dtype=dtype)
        if dtype == np.float64:
            far = np.r_[far, [[1e155, 2.0], [-1e300, 1e299]]]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            D = km.transform(far)
            labels = km.predict(far)
        expected = np.array(
            [
                [math.hypot(*(x.astype(float) - c.astype(float))) for c in km.cluster_centers_]
                for x in far
            ]
        )
        np.testing.assert_allclose(D, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)
        # the nearest center by exact arithmetic on the (representable) differences
        exact = [
            min(
                range(3),
                key=lambda k, x=x: sum(
                    (Fraction(float(a)) - Fraction(float(b))) ** 2
                    for a, b in zip(x, km.cluster_centers_[k], strict=True)
                ),
            )
            for x in far
        ]
        np.testing.assert_array_equal(labels, exact)


# -- 1b. data whose squares overflow: a clear error, never NaN or a raw traceback ------

SCALED_FITS: dict[str, Callable[[], Any]] = {
    **{
        f"GaussianMixture-{ct}": (lambda ct=ct: GaussianMixture(2, covariance_type=ct))
        for ct in COVARIANCE_TYPES
    },
    "MixtureModel-diag": lambda: MixtureModel(Gaussian("diag"), 2),
    "MixtureModel-product": lambda: MixtureModel(
        Product({"x": ([0], Gaussian("full")), "y": ([1], Exponential())}), 2
    ),
    "KMeans": lambda: KMeans(2, n_init=1),
}


@pytest.mark.parametrize("scale", [1e160, 1e200, 1e300])
@pytest.mark.parametrize("name", sorted(SCALED_FITS))
def test_fit_beyond_the_range_of_squares_says_how_to_rescale(name: str, scale: float) -> None:
    X = np.abs(X2) * scale if "product" in name else X2 * scale
    with pytest.raises(InputError, match=r"their squares.*would exceed float64's range.*Divide X"):
        SCALED_FITS[name]().set_params(random_state=0).fit(X)


@pytest.mark.parametrize("name", sorted(SCALED_FITS))
def test_fit_at_a_large_but_representable_scale_works(name: str) -> None:
    X = np.abs(X2) * 1e100 if "product" in name else X2 * 1e100
    model = SCALED_FITS[name]().set_params(random_state=0).fit(X)
    labels = model.predict(X)
    reference = SCALED_FITS[name]().set_params(random_state=0).fit(X / 1e100).predict(X / 1e100)
    np.testing.assert_array_equal(labels, reference)


POSITIVE = np.abs(X2) + 0.1
FAMILIES: dict[str, tuple[Callable[[], Any], np.ndarray]] = {
    "Exponential": (Exponential, POSITIVE),
    "Gamma": (Gamma, POSITIVE),
    "LogNormal": (lambda: LogNormal("full"), POSITIVE),
    "Poisson": (Poisson, COUNTS),
    "Gaussian": (lambda: Gaussian("diag"), POSITIVE),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [1e-300, 1e300])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_at_extreme_magnitudes_fits_or_says_why(
    name: str, scale: float, dtype: str
) -> None:
    family, data = FAMILIES[name]
    X = data * scale
    model = MixtureModel(family(), 2, random_state=0, max_iter=20, dtype=dtype)
    model.set_params(monotonicity="raise")
    if name == "Gaussian" and scale > 1:
        with pytest.raises(InputError, match=r"would exceed float64's range.*Divide X"):
            model.fit(X)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # k-means on the standardized rows sees 2 clusters
        model.fit(X)
        proba = model.predict_proba(X)
    assert np.isfinite(model.lower_bounds_).all()
    assert np.isfinite(proba).all()


# -- 2. float32 beyond its range switches to float64 by itself -------------------------

FLOAT32_FITS: dict[str, tuple[Callable[..., Any], Callable[[], np.ndarray]]] = {
    **{
        f"Gaussian-{ct}": (
            lambda ct=ct, **kw: GaussianMixture(2, covariance_type=ct, **kw),
            lambda: X2 * 1e38,
        )
        for ct in COVARIANCE_TYPES
    },
    "Exponential": (
        lambda **kw: MixtureModel(Exponential(), 2, **kw),
        lambda: np.random.default_rng(1).exponential([1.0, 5.0], size=(90, 2)) * 1e38,
    ),
    "Poisson": (lambda **kw: PoissonMixture(2, **kw), lambda: COUNTS * 1e38),
    "Beta-near-1": (
        lambda **kw: MixtureModel(Beta(), 2, **kw),
        lambda: np.r_[
            np.random.default_rng(2).uniform(0.05, 0.95, (80, 2)), np.full((10, 2), 1 - 1e-10)
        ],
    ),
    "Beta-near-0": (
        lambda **kw: MixtureModel(Beta(), 2, **kw),
        lambda: np.r_[
            np.random.default_rng(3).uniform(0.05, 0.95, (80, 2)), np.full((10, 2), 1e-40)
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_FITS))
def test_float32_beyond_its_range_fits_as_float64(name: str) -> None:
    make, data = FLOAT32_FITS[name]
    X = data()
    kw = dict(random_state=0, max_iter=15, tol=0.0, monotonicity="raise")
    f64 = make(**kw).fit(X)
    f32 = make(dtype="float32", **kw).fit(X)
    assert np.isfinite(f32.lower_bounds_).all()
    assert f32.lower_bound_ == pytest.approx(f64.lower_bound_, rel=1e-6)
    assert np.isfinite(f32.predict_proba(X)).all()


@pytest.mark.parametrize("name", [n for n in sorted(FLOAT32_FITS) if "Beta" not in n])
def test_float32_data_near_its_range_fits_as_float64(name: str) -> None:
    make, data = FLOAT32_FITS[name]
    X32 = (data() / 100.0).astype(np.float32)  # held by float32, its squares are not
    kw = dict(random_state=0, max_iter=15, tol=0.0, monotonicity="raise")
    f32 = make(dtype="float32", **kw).fit(X32)
    f64 = make(**kw).fit(X32.astype(np.float64))
    assert f32.lower_bound_ == pytest.approx(f64.lower_bound_, rel=1e-6)
    assert np.isfinite(f32.predict_proba(X32)).all()


def test_kmeans_on_float32_beyond_its_squares_says_float64() -> None:
    with pytest.raises(InputError, match=r"exceed float32's range.*or pass X as float64"):
        KMeans(2).fit((X2 * 1e20).astype(np.float32))
    km = KMeans(2, n_init=1, random_state=0).fit(X2 * 1e20)
    assert np.isfinite(km.inertia_) and np.isfinite(km.transform(X2 * 1e20)).all()


# -- 3. priors rescue fits that have no maximum likelihood -----------------------------

x = RNG.normal(size=40)
DEGENERATE = {
    "collinear": np.c_[x, 2 * x + 1],
    "two-rows": X2[:2],
    "fewer-rows-than-columns": RNG.normal(size=(3, 4)) * 1e3 + 1e4,
}


@pytest.mark.parametrize("data", sorted(DEGENERATE))
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_auto_prior_keeps_degenerate_fits_finite(covariance_type: str, data: str) -> None:
    X = DEGENERATE[data]
    model = MixtureModel(
        Gaussian(covariance_type, prior="auto"), 2, random_state=0, monotonicity="raise"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mending of a singular covariance either
        model.fit(X)
    assert np.isfinite(model.lower_bounds_).all()
    assert np.isfinite(model.score_samples(X)).all()


# -- 4. odd but valid input, bad arguments ---------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**32, np.int64(-5)])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_random_state_out_of_range_is_named(name: str, seed: Any) -> None:
    with pytest.raises(InputError, match=r"random_state must be an int between 0 and 2\*\*32 - 1"):
        ESTIMATORS[name](random_state=seed).fit(_data(name))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_pandas_nullable_columns_read_pd_na_as_missing(name: str) -> None:
    """A frame of nullable columns with pd.NA is the array with NaN there, for every
    estimator: the same fit where NaN is a missing value, the same error where it is not."""
    X = _data(name).copy()
    X[[3, 10], [0, 1]] = np.nan
    kind = (
        "Int64"
        if name in ("PoissonMixture", "CategoricalMixture", "BernoulliMixture")
        else "Float64"
    )
    frame = pd.DataFrame({c: pd.array(X[:, j].tolist(), dtype=kind) for j, c in enumerate("ab")})
    assert frame.isna().to_numpy().sum() == 2  # pd.NA, not NaN, in nullable columns
    try:
        from_array = ESTIMATORS[name](random_state=0).fit(X)
    except InputError as exc:
        assert name in (
            "KMeans",
            "MixtureOfPPCA",
            "MixtureOfFactorAnalyzers",
            "BayesianGaussianMixture",
        )
        with pytest.raises(InputError, match=re.escape(str(exc))):
            ESTIMATORS[name](random_state=0).fit(frame)
        return
    from_frame = ESTIMATORS[name](random_state=0).fit(frame)
    np.testing.assert_allclose(from_frame.score_samples(frame), from_array.score_samples(X))


@pytest.mark.parametrize(
    ("family", "match"),
    [
        (Poisson, r"family must be a family instance such as Poisson\(\), got the class Poisson"),
        (Gaussian, r"such as Gaussian\(\), got the function Gaussian itself; call it"),
        ("poisson", r"family must be an emkit family .*got str"),
    ],
)
def test_family_passed_uncalled_is_named(family: Any, match: str) -> None:
    with pytest.raises(InputTypeError, match=match):
        MixtureModel(family, 2).fit(COUNTS)
    with pytest.raises(InputTypeError, match=r"Product block 'c'.s family must be"):
        Product({"c": ([0, 1], family)})


CATEGORIES = RNG.integers(0, 3, size=(60, 2)).astype(float)
WRONG_LENGTH = "values but the data has 2 columns; pass a scalar or one value per column"


@pytest.mark.parametrize(
    ("family", "data", "match"),
    [
        (
            Poisson(prior=GammaPrior([1.0, 2.0, 3.0], 1.0)),
            COUNTS,
            "GammaPrior shape has 3 " + WRONG_LENGTH,
        ),
        (
            Exponential(prior=GammaPrior(2.0, [1.0, 2.0, 3.0])),
            COUNTS + 1,
            "GammaPrior rate has 3 " + WRONG_LENGTH,
        ),
        (
            Bernoulli(prior=BetaPrior([2.0] * 3, 2.0)),
            _data("BernoulliMixture"),
            "BetaPrior a has 3 " + WRONG_LENGTH,
        ),
        (
            Categorical(prior=DirichletPrior([2.0] * 5)),
            CATEGORIES,
            r"DirichletPrior concentration has 5 values but the columns have \[3, 3\] categories",
        ),
        (
            Multinomial(prior=DirichletPrior([2.0] * 5)),
            CATEGORIES,
            r"DirichletPrior concentration has 5 values but the data has 2 categories",
        ),
        (
            Gamma(prior=ConjugatePrior([1.0] * 3, 1.0)),
            COUNTS + 1,
            r"needs 2 \* n_features = 4 pseudo_observations .*got 3",
        ),
        (
            Gaussian(prior=GaussianPrior(mean=[0.0] * 3)),
            X2,
            r"GaussianPrior mean must have shape \(2,\) for 2 columns, got \(3,\)",
        ),
    ],
)
def test_prior_of_the_wrong_length_is_named(family: Any, data: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        MixtureModel(family, 2, random_state=0).fit(data)


@pytest.mark.parametrize(
    ("make", "change", "match"),
    [
        (
            lambda: GaussianMixture(3),
            {"n_components": 2},
            r"n_components=3, but n_components is now 2",
        ),
        (
            lambda: GaussianMixture(2),
            {"covariance_type": "diag"},
            r"covariance_type='full', but covariance_type is now 'diag'",
        ),
        (
            lambda: GaussianMixture(2, covariance_type="spherical"),
            {"covariance_type": "tied"},
            r"covariance_type='spherical', but covariance_type is now 'tied'",
        ),
        (  # n_components == n_features: diag and tied covariances have one shape
            lambda: GaussianMixture(2, covariance_type="diag"),
            {"covariance_type": "tied"},
            r"covariance_type='diag', but covariance_type is now 'tied'",
        ),
        (
            lambda: GaussianMixture(2, covariance_type="tied"),
            {"covariance_type": "diag"},
            r"covariance_type='tied', but covariance_type is now 'diag'",
        ),
        (
            lambda: MixtureModel(Gaussian("diag"), 3),
            {"n_components": 2},
            r"n_components=3, but n_components is now 2",
        ),
    ],
)
def test_warm_start_after_a_change_of_shape_is_refused(
    make: Callable[[], Any], change: dict[str, Any], match: str
) -> None:
    model = make().set_params(warm_start=True, random_state=0, max_iter=500).fit(X2)
    model.set_params(**change)
    with pytest.raises(InputError, match=r"warm_start=True continues the previous fit.*" + match):
        model.fit(X2)
    # without warm_start the new setting fits from scratch, and bic counts its parameters
    model.set_params(warm_start=False).fit(X2)
    assert len(model.weights_) == model.n_components
    assert np.isfinite(model.bic(X2))


def test_a_warm_start_with_another_family_is_refused_not_silently_ignored() -> None:
    model = MixtureModel(Gaussian("diag"), 2, warm_start=True, random_state=0).fit(X2)
    model.fit(X2)  # the same family argument: continues
    model.set_params(family=Gaussian("spherical"))
    with pytest.raises(InputError, match=r"warm_start=True continues the previous fit, whose "):
        model.fit(X2)
    model.set_params(warm_start=False).fit(X2)  # from scratch: fine
    assert model.family_.structure.name == "spherical"


def test_a_non_finite_objective_is_a_value_error_naming_the_fix() -> None:
    from emkit import MonotonicityError, NonFiniteObjectiveError
    from emkit.engines import InMemoryEngine
    from emkit.inference import fit_em

    class Nan:
        def expectation(self, params: int) -> Callable[..., float]:
            return lambda X, _w: 0.0

        def m_step(self, params: int, stats: float) -> int:
            return params + 1

        def objective(self, params: int, stats: float) -> float:
            return float("nan")

        def m_step_gap(self, params: int, stats: float) -> float:
            return 0.0

    with pytest.raises(NonFiniteObjectiveError, match=r"became nan .*increase reg_covar") as info:
        fit_em(Nan(), InMemoryEngine(), RowSource(np.zeros((3, 1))), 0, tol=0.0, max_iter=2)
    assert isinstance(info.value, ValueError) and isinstance(info.value, MonotonicityError)
