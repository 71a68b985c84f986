"""Products of families over column blocks: one E-step product equals the blocks' sum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emkit import MixtureModel
from emkit.engines import RowSource
from emkit.engines.memory import InMemoryEngine
from emkit.exceptions import InputError
from emkit.families import Gaussian, Poisson, Product
from emkit.inference.em import fit_em
from emkit.models.mixture import Mixture, MixtureParams


def _mixed(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    X = np.column_stack(
        [rng.normal(3 * z, 1.0), rng.poisson(1 + 3 * z), rng.normal(-z, 2.0), rng.poisson(5 - z)]
    ).astype(np.float64)
    return X, z


def _fitted(
    family: Product, X: np.ndarray, z: np.ndarray
) -> tuple[Product, Mixture, MixtureParams]:
    bound = family.bind(X, None)
    model = Mixture(bound)
    stats = model.statistics_from_resp(X, None, np.eye(3)[z])
    return (
        bound,
        model,
        model.m_step(MixtureParams(np.full(3, 1 / 3), bound.default_params(3)), stats),
    )


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("exact_form", [False, True])
def test_one_product_equals_the_sum_of_block_densities(
    covariance_type: str, exact_form: bool
) -> None:
    X, z = _mixed()
    family = Product({"g": ([0, 2], Gaussian(covariance_type)), "p": ([1, 3], Poisson())})
    bound, _, params = _fitted(family, X, z)
    natural = bound.natural(params.components, np.float64)._replace(exact_form=exact_form)
    Xp = bound.prepare(X, np.float64)
    T = bound.statistics(Xp)
    assert T.shape == (600, bound.n_stats)
    joint = bound.log_prob(Xp, T, params.components, natural)
    row = bound.row_term(Xp, params.components, natural)
    base = bound.log_base_measure(Xp)  # the Poisson blocks' -log x!
    got = joint + (0.0 if row is None else row[:, None]) + base[:, None]
    expected = 0.0
    for (cols, block), p in zip(bound.blocks.values(), params.components, strict=True):
        single = Mixture(block).weighted_log_prob(MixtureParams(params.weights, p))
        expected = expected + single(X[:, list(cols)]) - np.log(params.weights)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-10)


def test_a_product_of_one_block_is_that_family() -> None:
    X, _ = _mixed()
    G = X[:, [0, 2]]
    single = MixtureModel(Gaussian("diag"), 3, random_state=0, monotonicity="raise").fit(G)
    product = MixtureModel(
        Product({"g": ([0, 1], Gaussian("diag"))}), 3, random_state=0, monotonicity="raise"
    ).fit(G)
    np.testing.assert_allclose(product.component_params_["g"]["means"], single.means_, rtol=1e-10)
    assert product.lower_bound_ == pytest.approx(single.lower_bound_, rel=1e-12)


def test_statistics_are_the_blocks_statistics_side_by_side() -> None:
    X, _ = _mixed(50)
    bound = Product({"p": ([1, 3], Poisson()), "g": ([0, 2], Gaussian("diag"))}).bind(X, None)
    T = bound.statistics(bound.prepare(X, np.float64))
    # Poisson block first (as listed): its statistics are the counts themselves
    np.testing.assert_array_equal(T[:, :2], X[:, [1, 3]])
    centred = X[:, [0, 2]] - X[:, [0, 2]].mean(axis=0)
    np.testing.assert_allclose(T[:, 2:], np.column_stack([centred, centred**2]), rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), chunk=st.sampled_from([1, 7, 1000]))
def test_mixed_em_never_decreases_and_chunks_agree(seed: int, chunk: int) -> None:
    X, z = _mixed(120, seed)
    family = Product({"g": ([0, 2], Gaussian("full")), "p": ([1, 3], Poisson())})
    _, model, start = _fitted(family, X, (z + 1) % 3)  # a deliberately poor start
    results = []
    for size in (chunk, None):
        with InMemoryEngine(chunk_size=size) as engine:
            results.append(
                fit_em(model, engine, RowSource(X), start, tol=0, max_iter=15, monotonicity="raise")
            )
    np.testing.assert_allclose(results[0].trace.objective, results[1].trace.objective, rtol=1e-10)


def test_integer_weights_equal_repeated_rows() -> None:
    X, _ = _mixed(200)
    w = np.random.default_rng(1).integers(0, 3, 200)
    family = Product({"g": ([0, 2], Gaussian("diag")), "p": ([1, 3], Poisson())})
    kw = dict(n_components=3, tol=0, max_iter=10, init_params="random_from_data", random_state=0)
    weighted = MixtureModel(family, **kw).fit(X, sample_weight=w)
    # an E-step from the same parameters gives the same statistics either way
    one = Mixture(weighted.family_)
    with InMemoryEngine() as engine:
        s_w = engine.map_reduce(one.expectation(weighted.params_), RowSource(X, w.astype(float)))
        s_r = engine.map_reduce(one.expectation(weighted.params_), np.repeat(X, w, axis=0))
    np.testing.assert_allclose(s_w.sum_t, s_r.sum_t, rtol=1e-10)
    assert s_w.loglik == pytest.approx(s_r.loglik, rel=1e-12)


def test_columns_by_name_from_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    X, _ = _mixed(300)
    frame = pd.DataFrame(X, columns=["height", "visits", "score", "calls"])
    family = Product(
        {"g": (["height", "score"], Gaussian()), "p": (["visits", "calls"], Poisson())}
    )
    model = MixtureModel(family, 3, random_state=0).fit(frame)
    assert model.family_.blocks["g"][0] == (0, 2)
    assert model.predict(frame).shape == (300,)


def test_bad_products_say_what_is_wrong() -> None:
    X, _ = _mixed(20)
    with pytest.raises(InputError, match="non-empty mapping of block name"):
        Product({})
    with pytest.raises(InputError, match=r"must be a \(columns, family\) pair"):
        Product({"g": Gaussian()})
    with pytest.raises(InputError, match="is in two Product blocks"):
        Product({"a": ([0, 1, 2], Gaussian()), "b": ([2, 3], Poisson())}).bind(X, None)
    with pytest.raises(InputError, match="are in no Product block"):
        Product({"a": ([0, 1], Gaussian())}).bind(X, None)
    with pytest.raises(InputError, match="integer positions in"):
        Product({"a": ([0, 9], Gaussian())}).bind(X, None)
    with pytest.raises(InputError, match="no column names"):
        Product({"a": (["x"], Gaussian())}).resolve(None, 4)
    with pytest.raises(InputError, match="nest the blocks in one Product"):
        Product({"a": ([0], Product({"b": ([0], Gaussian())}))})
    negative = X.copy()
    negative[3, 1] = -1
    with pytest.raises(InputError, match="column 1 has a negative count"):
        MixtureModel(Product({"g": ([0, 2], Gaussian()), "p": ([1, 3], Poisson())}), 2).fit(
            negative
        )
