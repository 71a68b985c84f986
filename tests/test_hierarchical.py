"""Model-based hierarchical clustering (mclust's hc) and the starts of EM built on it."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.metrics import adjusted_rand_score

from emkit import BernoulliMixture, GaussianMixture, MixtureModel
from emkit.exceptions import InputError
from emkit.inference import hierarchical
from emkit.inference.hierarchical import hc_partition, hc_tree, svd_transform
from emkit.inference.init import initial_responsibilities
from emkit.io import load_faithful

DATA = Path(__file__).parent / "data"


def _datasets() -> dict[str, np.ndarray]:
    iris = np.loadtxt(DATA / "mclust_iris.csv", delimiter=",", skiprows=1)
    faithful, _ = load_faithful()
    return {"iris": iris, "faithful": faithful}


def _reference() -> list[dict[str, str]]:
    # made by tests/data/make_mclust_hc.R with mclust 6.0.0
    with open(DATA / "mclust_hc.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("model", ["VVV", "EII"])
@pytest.mark.parametrize("name", ["iris", "faithful"])
def test_partitions_equal_mclust_hc(name: str, model: str) -> None:
    X = _datasets()[name]
    tree = hc_tree(X, model=model)
    rows = [r for r in _reference() if r["data"] == name and r["model"] == model]
    assert [int(r["G"]) for r in rows] == list(range(2, 10))
    for r in rows:
        theirs = np.array([int(c) for c in r["labels"]])
        mine = tree.labels(int(r["G"]))
        # the same partition: a one-to-one map between the labels
        pairs = set(zip(mine.tolist(), theirs.tolist(), strict=True))
        assert len(pairs) == int(r["G"]) == len(set(mine)), (name, model, r["G"])


def test_a_cut_read_again_is_the_same_and_the_callers_own() -> None:
    # (a tree caches its cuts: ModelBasedClustering reads each one hundreds of times)
    X, _ = load_faithful()
    tree = hc_tree(X)
    first = {k: tree.labels(k) for k in range(1, 10)}
    first[3][:] = -7  # a caller that changes its labels changes no later cut
    fresh = hc_tree(X)
    for k in range(1, 10):
        again = tree.labels(k)
        np.testing.assert_array_equal(again, fresh.labels(k))
        assert again is not tree.labels(k)


def test_a_small_tree_merges_compiled_once_numba_is_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # below COMPILED_FROM rows the compiled loop runs only when Numba is imported already
    # (here by importorskip, in a sweep by its M-steps): the same merges as NumPy's
    pytest.importorskip("numba")
    X, _ = load_faithful()
    loaded = hierarchical._kernels
    calls: list[int] = []

    def counted() -> object:
        calls.append(1)
        return loaded()

    monkeypatch.setattr(hierarchical, "_kernels", counted)
    compiled = hc_tree(X[:60])
    assert calls and 60 < hierarchical.COMPILED_FROM
    monkeypatch.setattr(hierarchical, "_kernels", lambda: None)
    plain = hc_tree(X[:60])
    np.testing.assert_array_equal(compiled.merges, plain.merges)
    np.testing.assert_allclose(compiled.cost, plain.cost, rtol=1e-12, atol=1e-9)


@pytest.fixture(params=["numpy", "compiled"])
def merge_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with the VVV merges in NumPy, then compiled (Numba) at every size."""
    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.setattr(hierarchical, "COMPILED_FROM", 0)
    else:
        monkeypatch.setattr(hierarchical, "_kernels", lambda: None)
    return str(request.param)


def test_vvv_merges_by_the_regularized_criterion(merge_loop: str) -> None:
    # brute force: at every level, the merge taken is the pair of least criterion increase
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(14, 2))
    tree = hc_tree(Z, transform=False)
    m, p = Z.shape
    alpha = ((Z - Z.mean(0)) ** 2).sum() / (m * p)

    def term(rows: list[int]) -> float:
        x = Z[rows]
        W = (x - x.mean(0)).T @ (x - x.mean(0))
        det = np.linalg.det(W / len(rows)) if len(rows) > p else 0.0
        return len(rows) * np.log(det + (np.trace(W) + alpha) / len(rows))

    clusters = {i: [i] for i in range(m)}
    for t, (a, b) in enumerate(tree.merges):
        keys = sorted(clusters)
        gains = {
            (i, j): term(clusters[i] + clusters[j]) - term(clusters[i]) - term(clusters[j])
            for i in keys
            for j in keys
            if i < j
        }
        assert gains[(int(a), int(b))] == pytest.approx(min(gains.values()), abs=1e-9)
        assert tree.cost[t] == pytest.approx(gains[(int(a), int(b))], abs=1e-9)
        clusters[m + t] = clusters.pop(int(a)) + clusters.pop(int(b))


@pytest.mark.parametrize(
    ("name", "p"), [("faithful", 2), ("iris", 4), ("ties", 1), ("ties", 3), ("ties", 6)]
)
def test_compiled_merges_equal_the_numpy_merges(
    name: str, p: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("numba")
    if name == "ties":  # rounded values: many duplicate rows, so many equal costs
        X = np.round(np.random.default_rng(p).normal(size=(150, p)), 1)
    else:
        X = _datasets()[name]
    monkeypatch.setattr(hierarchical, "_kernels", lambda: None)
    plain = hc_tree(X)
    monkeypatch.undo()
    monkeypatch.setattr(hierarchical, "COMPILED_FROM", 0)
    compiled = hc_tree(X)
    np.testing.assert_array_equal(compiled.merges, plain.merges)
    np.testing.assert_allclose(compiled.cost, plain.cost, rtol=1e-12, atol=1e-9)


def test_tree_levels_are_nested_and_numbered_by_first_row() -> None:
    X, _ = load_faithful()
    tree = hc_tree(X)
    for k in range(1, 9):
        fine, coarse = tree.labels(k + 1), tree.labels(k)
        # every cluster of the finer level lies in one cluster of the coarser
        assert len(set(zip(fine.tolist(), coarse.tolist(), strict=True))) == k + 1
        _, first = np.unique(coarse, return_index=True)
        assert np.all(np.diff(first) > 0)


def test_large_data_uses_a_subset_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (1500, 3)), rng.normal(6, 1, (1500, 3))])
    labels = hc_partition(X, 2, subset=400, rng=np.random.default_rng(1))
    again = hc_partition(X, 2, subset=400, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(labels, again)
    assert (labels >= 0).sum() == 400
    inside = labels >= 0
    truth = np.repeat([0, 1], 1500)
    assert adjusted_rand_score(truth[inside], labels[inside]) == 1.0


def test_svd_transform_whitens_on_the_singular_values() -> None:
    X = _datasets()["iris"]
    Z = svd_transform(X)
    scaled = (X - X.mean(0)) / X.std(0, ddof=1)
    s = np.linalg.svd(scaled, compute_uv=False)
    # Z^T Z = diag(s^2 / s) = diag(s)
    np.testing.assert_allclose(Z.T @ Z, np.diag(s), atol=1e-9)
    # a constant column is dropped, as mclust's dropCols does
    assert svd_transform(np.column_stack([X, np.ones(len(X))])).shape == (150, 4)


def test_bad_input_is_refused() -> None:
    X = _datasets()["iris"].copy()
    X[5, 2] = np.nan
    with pytest.raises(InputError, match=r"X\[5, 2\] is nan: hierarchical clustering needs"):
        hc_tree(X)
    with pytest.raises(InputError, match="model must be one of 'VVV', 'EII', got 'VVI'"):
        hc_tree(X[:5], model="VVI")
    with pytest.raises(InputError, match=r"n_components must be from 1 to 5 \(the rows"):
        hc_tree(X[:5]).labels(6)


def test_gaussian_mixture_hc_start() -> None:
    X = _datasets()["iris"]
    gm = GaussianMixture(3, init_params="hc", random_state=0, tol=1e-8).fit(X)
    again = GaussianMixture(3, init_params="hc", random_state=99, tol=1e-8).fit(X)
    # deterministic: the seed does not change the start on fewer than 2000 rows
    np.testing.assert_allclose(gm.means_, again.means_)
    # mclust 6.0.0's Mclust(iris[, 1:4], G = 3, modelNames = "VVV")$loglik
    assert gm.score(X) * len(X) == pytest.approx(-180.1858, abs=1e-3)
    # the start is the hc partition's M-step
    start = initial_responsibilities("hc", X, 3, np.random.default_rng(0))
    np.testing.assert_array_equal(start, hc_tree(X).labels(3))


def test_hc_start_fills_missing_values() -> None:
    X = _datasets()["faithful"][:120].copy()
    X[::17, 0] = np.nan
    filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
    start = GaussianMixture(2, init_params="hc", max_iter=0).fit(X)
    expected = GaussianMixture(2, init_params="hc", max_iter=0).fit(filled)
    # the partition of the mean-filled rows (fit orders rows by their missing values,
    # which changes the clusters' numbering only)
    np.testing.assert_allclose(np.sort(start.weights_), np.sort(expected.weights_))
    assert MixtureModel(n_components=2, init_params="hc").fit(X).converged_


def _bernoulli_sample(n: int, d: int, seed: int) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    P = rng.uniform(0.1, 0.9, size=(3, d))
    w = np.array([0.5, 0.3, 0.2])
    z = rng.choice(3, size=n, p=w)
    X = (rng.uniform(size=(n, d)) < P[z]).astype(float)
    log_prob = np.log(w) + X @ np.log(P).T + (1 - X) @ np.log1p(-P).T
    return X, float(logsumexp(log_prob, axis=1).sum())


def test_default_bernoulli_start_reaches_the_true_likelihood() -> None:
    # k-means starts end at probabilities 0 or 1, below the true parameters' likelihood
    X, true_log_likelihood = _bernoulli_sample(6000, 6, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the k-means run's degenerate components
        kmeans = BernoulliMixture(3, n_init=5, init_params="kmeans", random_state=0).fit(X)
    assert kmeans.score(X) * len(X) < true_log_likelihood - 10
    model = BernoulliMixture(3, n_init=5, random_state=0).fit(X)
    assert model.score(X) * len(X) >= true_log_likelihood
    assert model.probabilities_.min() > 0.05


def test_auto_start_is_kmeans_with_a_gaussian_block() -> None:
    X = _datasets()["faithful"]
    auto = MixtureModel(n_components=2, random_state=0).fit(X)
    kmeans = MixtureModel(n_components=2, init_params="kmeans", random_state=0).fit(X)
    np.testing.assert_array_equal(auto.lower_bounds_, kmeans.lower_bounds_)
    with pytest.raises(InputError, match=r"init_params must be one of .*'emEM', 'auto', got"):
        MixtureModel(n_components=2, init_params="smallEM").fit(X)
    with pytest.raises(InputError, match=r"init_params must be one of .*'hc', 'auto', got 'emEM'"):
        GaussianMixture(2, init_params="emEM").fit(X)
