"""Every mixture estimator, not only GaussianMixture: bounded initialization (a sample
beyond INIT_ROWS rows), checkpoints keyed by the data's values, streamed tables."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from emkit import GaussianMixture, InputError
from emkit.estimators._rows import data_fingerprint, pattern_order

RNG = np.random.default_rng(0)
X = np.vstack([RNG.normal(0, 1, (300, 3)), RNG.normal(5, 2, (400, 3))])


def test_a_checkpoint_of_other_data_of_the_same_shape_is_refused(tmp_path: pathlib.Path) -> None:
    GaussianMixture(2, random_state=0).fit(X, checkpoint=tmp_path)
    other = X.copy()
    other[350, 1] += 1.0  # one value changed: same shape, same dtype
    with pytest.raises(InputError, match=r"belongs to another fit \(other estimator arguments"):
        GaussianMixture(2, random_state=0).fit(other, checkpoint=tmp_path)
    with pytest.raises(InputError, match=r"belongs to another fit"):
        GaussianMixture(2, random_state=0).fit(
            X, sample_weight=np.full(X.shape[0], 2.0), checkpoint=tmp_path
        )
    # the same data resumes (here: the finished run's model at once)
    again = GaussianMixture(2, random_state=0).fit(X.copy(), checkpoint=tmp_path)
    assert again.n_iter_ == GaussianMixture(2, random_state=0).fit(X).n_iter_


def test_the_fingerprint_reads_a_bounded_sample_and_the_dtype() -> None:
    big = np.zeros((20_000, 2))
    changed = big.copy()
    changed[1, 0] = 1.0  # between two sampled rows: not seen
    assert data_fingerprint(big) == data_fingerprint(changed)
    changed[0, 0] = 1.0  # the first row is always read
    assert data_fingerprint(big) != data_fingerprint(changed)
    assert data_fingerprint(big) != data_fingerprint(big.astype(np.float32))
    assert data_fingerprint(X) != data_fingerprint(X, labels=np.zeros(X.shape[0], np.intp))


# -- streaming and the bounded start, estimator by estimator -------------------------------

import emkit.estimators._rows as rows_module  # noqa: E402
from emkit import (  # noqa: E402
    PPCA,
    FactorAnalysis,
    MixtureModel,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    StudentTMixture,
)
from emkit.io import open_table  # noqa: E402

X4 = np.vstack([RNG.normal(0, 1, (300, 4)), RNG.normal(4, 2, (400, 4))])
X4[:, 3] += 0.5 * X4[:, 0]

# estimators whose fit streams a table; the attributes that must agree
FIXED = {"tol": 0.0, "max_iter": 25}  # a fixed number of iterations, compared one to one
STREAMED = {
    "student-t": (
        lambda: StudentTMixture(2, random_state=0, **FIXED),
        ("means_", "covariances_", "degrees_of_freedom_"),
    ),
    "mppca": (
        lambda: MixtureOfPPCA(2, n_factors=1, random_state=0, **FIXED),
        ("means_", "covariances_"),
    ),
    "mfa": (
        lambda: MixtureOfFactorAnalyzers(2, n_factors=1, random_state=0, **FIXED),
        ("means_", "covariances_"),
    ),
    "ppca": (lambda: PPCA(2, random_state=0, **FIXED), ("components_", "mean_", "noise_variance_")),
    "fa": (
        lambda: FactorAnalysis(2, random_state=0, **FIXED),
        ("components_", "mean_", "noise_variance_"),
    ),
}
NO_CONVERGENCE = pytest.mark.filterwarnings("ignore::emkit.exceptions.ConvergenceWarning")


def _same(a: object, b: object, names: tuple[str, ...], tol: float) -> None:
    assert a.n_iter_ == b.n_iter_  # type: ignore[attr-defined]
    for name in names:
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=tol)


@NO_CONVERGENCE
@pytest.mark.parametrize("name", sorted(STREAMED))
@pytest.mark.parametrize("weighted", [False, True])
def test_every_estimator_streams_to_the_in_memory_model(
    tmp_path: pathlib.Path, name: str, weighted: bool
) -> None:
    make, names = STREAMED[name]
    np.save(tmp_path / "x.npy", X4)
    table = open_table(tmp_path / "x.npy", block_rows=128)
    w = RNG.uniform(0.5, 2.0, X4.shape[0]) if weighted else None
    memory = make().fit(X4, sample_weight=w)
    streamed = make().fit(table, sample_weight=w)
    _same(memory, streamed, names, 1e-10)
    np.testing.assert_allclose(streamed.score_samples(table), memory.score_samples(X4), atol=1e-10)
    if hasattr(memory, "predict_proba"):
        np.testing.assert_allclose(
            streamed.predict_proba(table), memory.predict_proba(X4), atol=1e-10
        )
        np.testing.assert_array_equal(streamed.predict(table), memory.predict(X4))
    else:
        np.testing.assert_allclose(streamed.transform(table), memory.transform(X4), atol=1e-10)
    assert streamed.score(table) == pytest.approx(memory.score(X4), abs=1e-10)


@NO_CONVERGENCE
def test_missing_values_stream_for_student_t_and_ppca(tmp_path: pathlib.Path) -> None:
    Xm = X4[::3].copy()
    Xm[RNG.uniform(size=Xm.shape) < 0.05] = np.nan
    # a streamed table keeps the file's row order, where in memory rows are grouped by
    # their missing pattern: a file in that order gives the same iterations
    Xm = Xm[pattern_order(Xm)]
    np.save(tmp_path / "x.npy", Xm)
    table = open_table(tmp_path / "x.npy", block_rows=50)
    # (Student-t iterations with missing values are slow: a few of them)
    few = {"tol": 0.0, "max_iter": 4, "random_state": 0}
    fits = (
        (lambda: StudentTMixture(2, **few), ("means_", "covariances_", "degrees_of_freedom_")),
        (lambda: PPCA(2, **few), ("components_", "mean_", "noise_variance_")),
    )
    for make, names in fits:
        _same(make().fit(Xm), make().fit(table), names, 1e-10)


def test_a_factor_mixture_refuses_missing_values_in_a_stream(tmp_path: pathlib.Path) -> None:
    Xm = X4.copy()
    Xm[5, 2] = np.nan
    np.save(tmp_path / "x.npy", Xm)
    with pytest.raises(InputError, match=r"MixtureOfPPCA takes no missing values \(NaN\)"):
        MixtureOfPPCA(2, n_factors=1).fit(open_table(tmp_path / "x.npy"))


CONVERGED = {"tol": 1e-6, "max_iter": 3000}
BOUNDED = {
    "student-t": lambda: StudentTMixture(
        2, dof_type="fixed", degrees_of_freedom=4.0, random_state=0, **CONVERGED
    ),
    "mppca": lambda: MixtureOfPPCA(2, n_factors=1, random_state=0, **CONVERGED),
    "mixture-model": lambda: MixtureModel(n_components=2, random_state=0, **CONVERGED),
}


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_beyond_init_rows_the_start_is_a_sample_and_reaches_the_same_optimum(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    make = BOUNDED[name]
    exact = make().fit(X4)
    monkeypatch.setattr(rows_module, "INIT_ROWS", 150)
    sampled = make().fit(X4)
    np.testing.assert_allclose(
        np.sort(sampled.means_, axis=0), np.sort(exact.means_, axis=0), atol=1e-3
    )
    if name != "mixture-model":  # (its table: fit in memory only)
        np.save(tmp_path / "x.npy", X4)
        streamed = make().fit(open_table(tmp_path / "x.npy", block_rows=64))
        np.testing.assert_allclose(streamed.means_, sampled.means_, rtol=0, atol=1e-10)


# -- partial_fit over a streamed table: each block a mini-batch ------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: GaussianMixture(2, random_state=0),
        lambda: __import__("emkit").PoissonMixture(2, random_state=0),
        lambda: PPCA(2, random_state=0),
        lambda: FactorAnalysis(2, random_state=0),
    ],
    ids=["gmm", "poisson", "ppca", "fa"],
)
def test_partial_fit_on_a_table_is_partial_fit_on_each_block(
    tmp_path: pathlib.Path, make: object
) -> None:
    data = np.abs(np.round(X4)) if "Poisson" in type(make()).__name__ else X4  # type: ignore[operator]
    np.save(tmp_path / "x.npy", data)
    table = open_table(tmp_path / "x.npy", block_rows=200)
    w = RNG.uniform(0.5, 2.0, data.shape[0])
    streamed = make().partial_fit(table, sample_weight=w)  # type: ignore[operator]
    batches = make()  # type: ignore[operator]
    for start in range(0, data.shape[0], 200):
        batches.partial_fit(data[start : start + 200], sample_weight=w[start : start + 200])
    assert streamed.lower_bounds_.shape == (4,)  # 700 rows: four blocks, four steps
    np.testing.assert_array_equal(streamed.lower_bounds_, batches.lower_bounds_)
    for name in ("means_", "covariances_", "rates_", "components_", "noise_variance_"):
        if hasattr(batches, name):
            np.testing.assert_array_equal(getattr(streamed, name), getattr(batches, name))
    with pytest.raises(InputError, match=r"sample_weight must have shape \(700,\): one weight"):
        make().partial_fit(table, sample_weight=w[:10])  # type: ignore[operator]


# -- emkit fit streams big files by itself ---------------------------------------------------


def test_emkit_fit_streams_a_file_beyond_the_threshold_unless_told_not_to(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import emkit.cli._main as cli
    from emkit.cli import main

    path = tmp_path / "x.npy"
    np.save(path, X)
    streamed: list[str] = []
    fit_streamed = cli._fit_streamed

    def recording(args: object, options: object) -> int:
        streamed.append(str(args.data))  # type: ignore[attr-defined]
        return fit_streamed(args, options)  # type: ignore[arg-type]

    monkeypatch.setattr(cli, "_fit_streamed", recording)
    common = ["fit", str(path), "--components", "2", "--covariance", "full", "--no-plot"]
    assert main([*common, "--out", str(tmp_path / "small")]) == 0
    assert streamed == []  # below the threshold: read whole
    monkeypatch.setattr(cli, "STREAM_BYTES", path.stat().st_size - 1)
    assert main([*common, "--out", str(tmp_path / "big")]) == 0
    assert streamed == [str(path)]
    assert main([*common, "--no-stream", "--out", str(tmp_path / "whole")]) == 0
    assert streamed == [str(path)]  # --no-stream: read whole whatever the size
    # every family streams: the counts' check runs on the stream, before any output
    assert main([*common, "--family", "poisson", "--out", str(tmp_path / "p")]) == 2
    assert streamed == [str(path)] * 2
    assert "the poisson family needs counts" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    summary = (tmp_path / "small" / "summary.csv").read_text()
    assert (tmp_path / "big" / "summary.csv").read_text() == summary
    assert (tmp_path / "whole" / "summary.csv").read_text() == summary
    capsys.readouterr()


# -- MixtureModel and its convenience estimators from a streamed table -----------------------


def _counts_binary_codes() -> np.ndarray:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 600)
    counts = rng.poisson(np.where(labels[:, None] == 0, [1.0, 6.0], [7.0, 2.0]))
    binary = (rng.uniform(size=(600, 2)) < np.where(labels[:, None] == 0, 0.8, 0.2)) * 1.0
    codes = np.where(labels[:, None] == 0, rng.choice(3, (600, 1)), 2 - rng.choice(2, (600, 1)))
    return np.hstack([counts, binary, codes]).astype(np.float64)


@NO_CONVERGENCE
@pytest.mark.parametrize(
    "name",
    ["gaussian", "poisson", "bernoulli", "categorical", "product", "poisson-auto-prior"],
)
def test_mixture_models_stream_to_the_in_memory_model(tmp_path: pathlib.Path, name: str) -> None:
    from emkit import BernoulliMixture, CategoricalMixture, PoissonMixture
    from emkit.families import Bernoulli, Categorical, Gaussian, Poisson, Product

    data = _counts_binary_codes()
    few: dict[str, object] = {"random_state": 0, "tol": 0.0, "max_iter": 15}
    make, cols = {
        "gaussian": (lambda: MixtureModel(Gaussian("diag"), 2, **few), [0, 1]),
        "poisson": (lambda: PoissonMixture(2, **few), [0, 1]),
        "poisson-auto-prior": (lambda: PoissonMixture(2, prior="auto", **few), [0, 1]),
        "bernoulli": (lambda: BernoulliMixture(2, **few), [2, 3]),
        "categorical": (lambda: CategoricalMixture(2, **few), [2, 3, 4]),
        "product": (
            lambda: MixtureModel(
                Product(
                    {
                        "counts": ([0, 1], Poisson()),
                        "binary": ([2, 3], Bernoulli()),
                        "codes": ([4], Categorical()),
                    }
                ),
                2,
                init_params="kmeans",  # (emEM's choice among near ties follows round-off)
                **few,
            ),
            [0, 1, 2, 3, 4],
        ),
    }[name]
    X = data[:, cols]
    X[7, 0] = np.nan  # a missing value (every family here leaves it out)
    if name == "categorical":
        X[7, 0] = 1.0  # (a categorical column takes no NaN unless told)
    w = np.random.default_rng(6).uniform(0.5, 2.0, X.shape[0])
    # (rows stay in their order in memory too: each chunk groups its missing patterns)
    np.save(tmp_path / "x.npy", X)
    table = open_table(tmp_path / "x.npy", block_rows=128)
    memory = make().fit(X, sample_weight=w)
    streamed = make().fit(table, sample_weight=w)
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(streamed.weights_, memory.weights_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(streamed.lower_bounds_, memory.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(streamed.predict_proba(table), memory.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(streamed.score_samples(table), memory.score_samples(X), atol=1e-10)


def test_a_streamed_mixture_model_checks_every_block_before_any_step(
    tmp_path: pathlib.Path,
) -> None:
    from emkit import CategoricalMixture

    np.save(tmp_path / "x.npy", np.abs(X4) + 0.1)
    table = open_table(tmp_path / "x.npy")
    with pytest.raises(InputError, match=r"In the block of rows 0\.\.699 .* row \d+"):
        CategoricalMixture(2).fit(table)  # codes must be integers


def _positive_unit_counts() -> np.ndarray:
    """Two clusters of rows: 2 positive columns, 2 in (0, 1), 3 multinomial counts."""
    rng = np.random.default_rng(8)
    z = rng.integers(0, 2, 500)
    positive = rng.gamma(np.where(z[:, None] == 0, 2.0, 9.0), 1.0, (500, 2))
    unit = rng.beta(np.where(z[:, None] == 0, 2.0, 8.0), 3.0, (500, 2))
    probs = np.where(z[:, None] == 0, [0.6, 0.3, 0.1], [0.1, 0.2, 0.7])
    counts = np.array([rng.multinomial(rng.integers(3, 12), p) for p in probs])
    return np.hstack([positive, unit, counts]).astype(np.float64)


@NO_CONVERGENCE
@pytest.mark.parametrize(
    "name",
    [
        "gamma",
        "gamma-auto",
        "beta",
        "exponential-auto",
        "lognormal",
        "multinomial-auto",
        "gaussian-prior",
        "gaussian-mclust",
        "categorical-auto",
        "categorical-n-categories",
        "binarize",
        "product",
    ],
)
def test_every_family_streams_to_the_in_memory_model(tmp_path: pathlib.Path, name: str) -> None:
    """Gamma, Beta, Exponential, LogNormal, Multinomial, Gaussian priors, Categorical with
    prior='auto' and binarize bind from one statistics pass over the blocks (their
    priors' defaults, category counts, row totals, thresholds) to the in-memory model."""
    from emkit import BernoulliMixture, CategoricalMixture
    from emkit.families import (
        Beta,
        Exponential,
        Gamma,
        Gaussian,
        GaussianPrior,
        LogNormal,
        Multinomial,
        Poisson,
        Product,
    )

    data = _positive_unit_counts()
    few: dict[str, object] = {"random_state": 0, "tol": 0.0, "max_iter": 12}
    kmeans = {"init_params": "kmeans", **few}  # (emEM's choice among near ties: round-off)
    codes = _counts_binary_codes()[:500, 4:5]
    make, X = {
        "gamma": (lambda: MixtureModel(Gamma(), 2, **few), data[:, :2]),
        "gamma-auto": (lambda: MixtureModel(Gamma(prior="auto"), 2, **few), data[:, :2]),
        "beta": (lambda: MixtureModel(Beta(), 2, **few), data[:, 2:4]),
        "exponential-auto": (
            lambda: MixtureModel(Exponential(prior="auto"), 2, **few),
            data[:, :2],
        ),
        "lognormal": (lambda: MixtureModel(LogNormal("full"), 2, **few), data[:, :2]),
        "multinomial-auto": (
            lambda: MixtureModel(Multinomial(prior="auto"), 2, **kmeans),
            data[:, 4:],
        ),
        "gaussian-prior": (
            lambda: MixtureModel(Gaussian("full", prior=GaussianPrior(shrinkage=0.1)), 2, **few),
            data[:, :4],
        ),
        "gaussian-mclust": (
            lambda: MixtureModel(Gaussian("diag", prior="mclust"), 2, **few),
            data[:, :4],
        ),
        "categorical-auto": (
            lambda: CategoricalMixture(2, prior="auto", **kmeans),
            _counts_binary_codes()[:500, 3:5],
        ),
        "categorical-n-categories": (
            lambda: CategoricalMixture(2, n_categories=4, prior="auto", **kmeans),
            codes,
        ),
        "binarize": (lambda: BernoulliMixture(2, binarize=0.5, **kmeans), data[:, 2:4]),
        "product": (
            lambda: MixtureModel(
                Product(
                    {
                        "sizes": ([0, 1], Gamma(prior="auto")),
                        "shares": ([2, 3], Beta()),
                        "counts": ([4, 5, 6], Poisson(prior="auto")),
                    }
                ),
                2,
                **kmeans,
            ),
            data,
        ),
    }[name]
    X = np.array(X)
    if name in ("gaussian-prior", "gaussian-mclust", "lognormal", "product", "gamma-auto"):
        X[[3, 40, 41], [0, 1, 0]] = np.nan  # missing values, left out in both
    if name in ("exponential-auto", "categorical-auto"):
        X[[3, 40], 0] = np.nan  # (the binding's pass fills them, the E-step leaves them out)
    w = np.random.default_rng(9).uniform(0.5, 2.0, X.shape[0])
    np.save(tmp_path / "x.npy", X)
    table = open_table(tmp_path / "x.npy", block_rows=96)
    memory = make().fit(X, sample_weight=w)
    streamed = make().fit(table, sample_weight=w)
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(streamed.weights_, memory.weights_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(streamed.lower_bounds_, memory.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(streamed.predict_proba(table), memory.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(streamed.score_samples(table), memory.score_samples(X), atol=1e-10)


# -- missing values in memory: chunks of few patterns, no reordered copy of X ----------------


@NO_CONVERGENCE
@pytest.mark.parametrize("estimator", ["gmm", "mixture-model"])
def test_missing_values_in_many_chunks_fit_what_one_chunk_fits(estimator: str) -> None:
    """With several chunks, EM reads rows with missing values in pattern order through an
    index (PatternOrdered: no reordered copy of X); the model is that of one chunk, and of
    the same rows streamed in their order."""
    from emkit.engines import InMemoryEngine
    from emkit.estimators._rows import PatternOrdered, ordered_for_chunks
    from emkit.families import Gaussian

    rng = np.random.default_rng(11)
    data = X4.copy()
    data[rng.uniform(size=data.shape) < 0.15] = np.nan
    data[np.isnan(data).all(axis=1), 0] = 1.0
    w = rng.uniform(0.5, 2.0, data.shape[0])

    def make(chunk_size: int | None) -> object:
        options: dict[str, object] = {"random_state": 0, "tol": 0.0, "max_iter": 10}
        if estimator == "gmm":
            return GaussianMixture(2, covariance_type="full", chunk_size=chunk_size, **options)
        return MixtureModel(Gaussian("full"), 2, chunk_size=chunk_size, **options)

    many = make(50).fit(data, sample_weight=w)  # type: ignore[attr-defined]
    one = make(None).fit(data, sample_weight=w)  # type: ignore[attr-defined]
    assert many.n_iter_ == one.n_iter_
    np.testing.assert_allclose(many.weights_, one.weights_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(many.lower_bounds_, one.lower_bounds_, rtol=1e-12)
    np.testing.assert_allclose(many.predict_proba(data), one.predict_proba(data), atol=1e-10)
    # (the rows EM's chunks read: in pattern order, through an index)
    rows, weights, _ = ordered_for_chunks(InMemoryEngine(chunk_size=50), data, w, None)
    assert isinstance(rows, PatternOrdered)
    order = pattern_order(data)
    np.testing.assert_array_equal(rows[0 : data.shape[0]], data[order])
    np.testing.assert_array_equal(weights, w[order])
