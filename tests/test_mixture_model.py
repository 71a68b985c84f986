"""MixtureModel and the convenience mixtures: families from column types, tables, errors."""

from __future__ import annotations

import numpy as np
import pytest

from emkit import (
    BernoulliMixture,
    CategoricalMixture,
    GaussianMixture,
    MixtureModel,
    PoissonMixture,
    infer_family,
)
from emkit.engines import RowSource
from emkit.exceptions import InputError, InputTypeError
from emkit.families import Gaussian, Poisson, Product

pd = pytest.importorskip("pandas")


def _frame(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "height": rng.normal(170 + 15 * z, 5.0),
            "weight": rng.normal(60 + 20 * z, 6.0),
            "visits": rng.poisson(1 + 5 * z),
            "smoker": rng.random(n) < np.where(z == 1, 0.8, 0.1),
            "city": pd.Categorical(np.where(rng.random(n) < 0.8, z, 2).astype(str)),
        }
    ), z


def test_family_from_dataframe_dtypes_is_inspectable() -> None:
    frame, _ = _frame()
    family = infer_family(frame)
    assert {name: cols for name, (cols, _) in family.blocks.items()} == {
        "gaussian": [0, 1],
        "poisson": [2],
        "bernoulli": [3],
        "categorical": [4],
    }
    as_categories = infer_family(frame, integers="categorical")
    assert as_categories.blocks["categorical"][0] == [2, 4]
    assert "Poisson()" in repr(family) and "Gaussian('full')" in repr(family)
    # a table of one kind gets that family alone
    assert type(infer_family(frame[["visits"]])).__name__ == "Poisson"
    with pytest.raises(InputError, match="integers must be one of 'poisson', 'categorical'"):
        infer_family(frame, integers="binomial")


def test_mixed_dataframe_fit_recovers_the_clusters() -> None:
    frame, z = _frame()
    model = MixtureModel(n_components=2, random_state=0, monotonicity="raise").fit(frame)
    labels = model.predict(frame)
    agreement = max(np.mean(labels == z), np.mean(labels != z))
    assert agreement > 0.97
    assert set(model.component_params_) == {"gaussian", "poisson", "bernoulli", "categorical"}
    assert model.categories_ == {"city": ["0", "1", "2"]}
    rates = np.sort(model.component_params_["poisson"]["rates"].ravel())
    np.testing.assert_allclose(rates, [1.0, 6.0], atol=0.4)
    proba = model.predict_proba(frame)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert model.bic(frame) > -2 * model.score(frame) * len(frame)
    X, y = model.sample(50)
    assert X.shape == (50, 5) and y.shape == (50,)


def test_unseen_category_and_text_columns_are_errors() -> None:
    frame, _ = _frame()
    model = MixtureModel(n_components=2, random_state=0).fit(frame)
    new = frame.head(3).copy()
    new["city"] = pd.Categorical(["0", "9", "1"])
    with pytest.raises(
        InputError, match="Column 'city' has category '9' \\(row 1\\) that was not seen"
    ):
        model.predict(new)
    text = frame.assign(city=frame["city"].astype(str).astype(object))
    with pytest.raises(
        InputTypeError, match=r"Column 'city' has dtype object.*astype\('category'\)"
    ):
        MixtureModel(n_components=2).fit(text)


def test_gaussian_family_matches_gaussian_mixture() -> None:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (200, 2)), rng.normal(6, 1, (200, 2))])
    ours = MixtureModel(Gaussian("full"), 2, tol=1e-10, random_state=0).fit(X)
    reference = GaussianMixture(2, tol=1e-10, random_state=0).fit(X)
    order = np.argsort(ours.means_[:, 0])
    ref_order = np.argsort(reference.means_[:, 0])
    np.testing.assert_allclose(ours.means_[order], reference.means_[ref_order], rtol=1e-6)
    np.testing.assert_allclose(
        ours.covariances_[order], reference.covariances_[ref_order], rtol=1e-6
    )
    assert ours.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-9)
    assert ours._n_parameters() == reference._n_parameters()


def test_convenience_mixtures_expose_their_parameters() -> None:
    rng = np.random.default_rng(1)
    counts = np.vstack([rng.poisson([1, 8], (300, 2)), rng.poisson([9, 2], (300, 2))])
    poisson = PoissonMixture(2, random_state=0, monotonicity="raise").fit(counts)
    np.testing.assert_allclose(np.sort(poisson.rates_[:, 0]), [1, 9], atol=0.5)
    binary = rng.random((400, 3)) < np.repeat([[0.9, 0.1, 0.8], [0.1, 0.9, 0.3]], 200, axis=0)
    # k-means' start (the default is emEM since issue 14): on these 400 rows the
    # likelihood's maximum has probabilities_[:, 1] near (0.025, 0.908), which EM with
    # tol=1e-3 stops short of from either start
    bernoulli = BernoulliMixture(2, init_params="kmeans", random_state=0, monotonicity="raise")
    bernoulli.fit(binary.astype(float))
    np.testing.assert_allclose(np.sort(bernoulli.probabilities_[:, 1]), [0.1, 0.9], atol=0.06)
    graded = BernoulliMixture(2, binarize=0.5, init_params="kmeans", random_state=0)
    graded.fit(binary * 0.9 + 0.05)
    np.testing.assert_allclose(graded.probabilities_, bernoulli.probabilities_, atol=1e-9)
    codes = np.vstack(
        [rng.choice(3, (300, 6), p=[0.8, 0.1, 0.1]), rng.choice(3, (300, 6), p=[0.1, 0.1, 0.8])]
    )
    categorical = CategoricalMixture(2, random_state=0, monotonicity="raise").fit(codes)
    first = np.sort(categorical.probabilities_[0][:, 0])
    np.testing.assert_allclose(first, [0.1, 0.8], atol=0.07)


def test_binarize_keeps_missing_values_missing() -> None:
    rng = np.random.default_rng(3)
    binary = rng.random((400, 3)) < np.repeat([[0.9, 0.1, 0.8], [0.1, 0.9, 0.3]], 200, axis=0)
    binary = binary.astype(float)
    binary[:, 1:][rng.random((400, 2)) < 0.1] = np.nan
    kmeans = {"init_params": "kmeans", "random_state": 0}
    graded = BernoulliMixture(2, binarize=0.5, **kmeans).fit(binary * 0.9 + 0.05)
    reference = BernoulliMixture(2, **kmeans).fit(binary)
    # NaN > 0.5 is False: counted as 0, the fit would move P(x = 1) down by about 10%
    np.testing.assert_allclose(graded.probabilities_, reference.probabilities_, atol=1e-12)
    assert graded.lower_bound_ == pytest.approx(reference.lower_bound_, abs=1e-12)


def test_bad_input_names_the_problem() -> None:
    counts = np.array([[1.0, 2.0], [0.0, 3.0], [2.0, 1.0]])
    with pytest.raises(InputError, match="family must be an emkit family"):
        MixtureModel("poisson", 2).fit(counts)
    with pytest.raises(InputError, match="X has 3 samples but n_components=4"):
        PoissonMixture(4).fit(counts)
    with pytest.raises(InputError, match="column 1 has a negative count"):
        PoissonMixture(2).fit(counts - [0, 4])
    fitted = PoissonMixture(2, random_state=0).fit(counts)
    with pytest.raises(ValueError, match="X has 3 features, but PoissonMixture is expecting 2"):
        fitted.predict(np.ones((2, 3)))
    with pytest.raises(InputError, match="takes a prior of type GammaPrior"):
        PoissonMixture(2, prior="strong").fit(counts)


def test_product_and_family_repr_show_the_choice() -> None:
    family = Product({"a": ([0, 1], Gaussian("diag")), "b": ([2], Poisson())})
    assert repr(family) == "Product({'a': ([0, 1], Gaussian('diag')), 'b': ([2], Poisson())})"


def test_categorical_integer_weights_equal_repeated_rows() -> None:
    from emkit.engines.memory import InMemoryEngine
    from emkit.models.mixture import Mixture

    rng = np.random.default_rng(2)
    codes = rng.integers(0, 4, (120, 3)).astype(float)
    w = rng.integers(0, 4, 120)
    model = CategoricalMixture(3, random_state=0, max_iter=5, tol=0).fit(codes, sample_weight=w)
    one = Mixture(model.family_)
    with InMemoryEngine() as engine:
        weighted = engine.map_reduce(
            one.expectation(model.params_), RowSource(codes, w.astype(float))
        )
        repeated = engine.map_reduce(one.expectation(model.params_), np.repeat(codes, w, axis=0))
    np.testing.assert_allclose(weighted.sum_t, repeated.sum_t, rtol=1e-10)
    assert weighted.loglik == pytest.approx(repeated.loglik, rel=1e-12)


def test_float32_large_counts_fall_back_to_float64_and_never_decrease() -> None:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.poisson([5000, 3000], (500, 2)), rng.poisson([5200, 2900], (500, 2))])
    kw = dict(random_state=0, tol=1e-8, max_iter=200, monotonicity="raise")
    single = PoissonMixture(2, dtype="float32", **kw).fit(X.astype(np.float32))
    double = PoissonMixture(2, **kw).fit(X.astype(np.float64))
    np.testing.assert_allclose(single.rates_, double.rates_, rtol=1e-6)


def test_verbose_shows_the_family_and_the_iterations(capsys: pytest.CaptureFixture[str]) -> None:
    counts = np.random.default_rng(0).poisson([2.0, 7.0], (200, 2))
    MixtureModel(Poisson(), 2, verbose=1, verbose_interval=1, random_state=0).fit(counts)
    err = capsys.readouterr().err
    assert "Family: Poisson(" in err
    assert "Iteration 1" in err


def test_base_measure_computed_once_equals_the_per_chunk_one() -> None:
    from emkit.engines.memory import InMemoryEngine
    from emkit.models.mixture import Mixture

    counts = np.random.default_rng(3).poisson([2.0, 7.0], (300, 2)).astype(float)
    model = PoissonMixture(2, random_state=0).fit(counts)
    mixture = Mixture(model.family_)
    e_step = mixture.expectation(model.params_)
    with InMemoryEngine(chunk_size=64) as engine:
        log_h = engine.map_rows(mixture.base_measure, counts)
        given = engine.map_reduce(e_step, RowSource(counts, columns=(log_h,)))
        computed = engine.map_reduce(e_step, counts)
    assert given.loglik == pytest.approx(computed.loglik, rel=1e-13)
    assert model.score(counts) == pytest.approx(computed.loglik / 300, rel=1e-12)
