"""The parts every mixture shares (models/mixing.py): hard EM's sparse assignments, used by
the mixtures, the factor mixtures and k-means alike."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_array

from emkit import GaussianMixture, MixtureOfPPCA
from emkit.engines import InMemoryEngine, RowSource
from emkit.exceptions import InputError
from emkit.models.mixing import Hard, Labels, MixingWeights, as_dense, mass, weighted_sums
from emkit.models.mixture import Mixture


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 40),
    K=st.integers(1, 5),
    s=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
    weighted=st.booleans(),
)
def test_labels_are_the_one_hot_matrix_in_sparse_form(
    n: int, K: int, s: int, seed: int, weighted: bool
) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, n)
    weights = rng.exponential(size=n) if weighted else None
    weights_or_1 = np.ones(n) if weights is None else weights
    T = rng.normal(size=(n, s))
    T[rng.random((n, s)) < 0.5] = 0.0
    q = Labels(labels, weights, K)
    Z = np.zeros((n, K))
    Z[np.arange(n), labels] = weights_or_1
    np.testing.assert_array_equal(q.dense(), Z)
    np.testing.assert_allclose(q.mass(), Z.sum(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.sums(T), Z.T @ T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(q.sums(csr_array(T)), Z.T @ T, rtol=1e-12, atol=1e-12)
    # statistic-major rows, summed in a buffer the caller gives up
    statistic_major = np.ascontiguousarray(T.T).T
    np.testing.assert_allclose(
        q.sums(statistic_major, np.full((n, K), np.nan)), Z.T @ T, rtol=1e-12, atol=1e-12
    )
    assert q.row_counts().tolist() == np.bincount(labels, minlength=K).tolist()
    # the helpers take dense responsibilities and labels alike
    for form in (q, Z):
        np.testing.assert_allclose(mass(form), Z.sum(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(weighted_sums(form, T), Z.T @ T, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(as_dense(form), Z)


def test_hard_policy_ties_known_labels_and_objective() -> None:
    log_prob = np.log(np.array([[0.45, 0.45, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    known = np.array([-1, 0, -1])
    w = np.array([1.0, 2.0, 3.0])
    q, objective = Hard().labels(log_prob.copy(), None, w, None, known)
    assert q.labels.tolist() == [0, 0, 0]  # a tie goes to the first; a known label stays
    expected = w @ np.log([0.45, 0.1, 0.6])
    assert objective == pytest.approx(expected, rel=1e-14)
    dense, again = Hard()(log_prob.copy(), None, w, None, known)
    np.testing.assert_array_equal(dense, q.dense())
    assert again == objective
    # the nearest-component query gives the same assignment as the arg-max
    chosen = Hard().choose(np.array([0, 2, 0]), w, known, 3)
    assert chosen.labels.tolist() == [0, 0, 0]


def _no_dense_hard(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("hard EM built the dense (n, K) responsibility matrix")

    monkeypatch.setattr(Hard, "__call__", refuse)
    monkeypatch.setattr(Labels, "dense", refuse)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical", "tied"])
def test_hard_e_step_of_a_mixture_is_sparse_and_equals_the_dense_one(
    covariance_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(200, 2)), rng.normal(4.0, 1.0, size=(150, 2))])
    w = rng.exponential(size=X.shape[0])
    gm = GaussianMixture(
        2, covariance_type=covariance_type, e_step="hard", random_state=0, max_iter=5
    ).fit(X, sample_weight=w)
    family = gm._family()
    model, params = Mixture(family, assign=Hard()), gm._mixture_params(family)
    engine = InMemoryEngine()
    dense_stats = engine.map_reduce(model.expectation(params), RowSource(X, w))
    # the same E-step with the policy's dense matrix, by hand
    log_prob = model.weighted_log_prob(params)(X)
    resp, _ = Hard()(log_prob.copy(), None, w, None, None)
    _no_dense_hard(monkeypatch)
    stats = engine.map_reduce(model.expectation(params), RowSource(X, w))
    np.testing.assert_allclose(stats.nk, resp.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.sum_t, dense_stats.sum_t, rtol=1e-12)
    assert stats.loglik == pytest.approx(dense_stats.loglik, rel=1e-12)


def test_hard_e_step_of_a_factor_mixture_is_sparse(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(size=(120, 4)), rng.normal(3.0, 1.0, size=(80, 4))])
    fit = MixtureOfPPCA(2, n_factors=1, e_step="hard", random_state=0, max_iter=3).fit(X)
    _no_dense_hard(monkeypatch)
    again = MixtureOfPPCA(2, n_factors=1, e_step="hard", random_state=0, max_iter=3).fit(X)
    np.testing.assert_allclose(again.means_, fit.means_, rtol=1e-12)
    labels = fit.predict(X)
    np.testing.assert_allclose(fit.weights_, np.bincount(labels, minlength=2) / 200, atol=0.05)


# -- k-means: classification EM of equal-weight, shared-spherical Gaussians ----------------


def _blobs(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [4.0, 0.5], [1.0, 4.0]])
    return centers[rng.integers(0, 3, n)] + rng.normal(size=(n, 2))


def test_kmeans_is_one_hard_em_step_of_a_spherical_gaussian_mixture() -> None:
    """From the same centers, one C-step and M-step of k-means is one iteration of hard
    EM for a Gaussian mixture with equal weights and one shared spherical variance (EII)."""
    import warnings

    from emkit import KMeans
    from emkit.exceptions import ConvergenceWarning

    X = _blobs()
    start = X[[0, 1, 2]]
    km = KMeans(3, init=start, n_init=1, max_iter=1).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm = GaussianMixture(
            3,
            covariance_type="EII",
            e_step="hard",
            means_init=start,
            weights_init=np.full(3, 1 / 3),
            precisions_init=np.full(3, 1.0),
            max_iter=1,
        ).fit(X)
    np.testing.assert_allclose(gm.means_, km.cluster_centers_, rtol=1e-12, atol=1e-12)


def test_kmeans_model_shares_the_weights_the_policy_and_the_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from emkit.models.kmeans import (
        KMeansModel,
        KMeansParams,
        SphericalCenters,
        design_matrix,
        equal_weights,
    )

    X = _blobs(300)
    A = design_matrix(X, X.mean(axis=0))
    params = KMeansParams(X[:3] - X.mean(axis=0))
    chosen: list[int] = []
    original = Hard.choose

    def counting(self: Hard, *args: object) -> Labels:
        chosen.append(1)
        return original(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Hard, "choose", counting)
    _no_dense_hard(monkeypatch)  # the policy's sparse form only
    model = KMeansModel()
    stats = model.expectation(params)(A, None)
    assert chosen  # the C-step's labels go through the shared policy
    labels = SphericalCenters.nearest(A, np.zeros((4, 3)) + 0.0)  # all ties: first center
    assert labels.tolist() == [0] * 300
    new = model.m_step(params, stats)
    np.testing.assert_array_equal(new.weights, np.full(3, 1 / 3))  # fixed and equal
    explicit = KMeansModel(weights=equal_weights(3)).m_step(params, stats)
    np.testing.assert_array_equal(explicit.centers, new.centers)
    unequal = MixingWeights()
    with pytest.raises(InputError, match=r"must be the 3 equal weights that k-means assumes"):
        KMeansModel(weights=unequal).expectation(params)
    with pytest.raises(InputError, match=r"must be the 2 equal weights"):
        KMeansModel(weights=equal_weights(3)).expectation(KMeansParams(params.centers[:2]))
