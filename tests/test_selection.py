"""ModelBasedClustering: the grid of Gaussian mixtures and the choice by BIC / ICL."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import mclust_data

from emkit import GaussianMixture, ModelBasedClustering
from emkit.estimators.selection import RESULT_KEYS, all_covariance_types
from emkit.exceptions import InputError
from emkit.families.covariance import covariance_types

DATA = Path(__file__).parent / "data"


def _mclust_bic(name: str) -> dict[tuple[int, str], float]:
    # made by tests/data/make_mclust_bic.R with mclust 6.0.0 (mclust's sign: higher is better)
    # (an empty cell: a model mclust could not fit)
    with open(DATA / "mclust_bic.csv", newline="") as fh:
        table = {
            (int(r["G"]), r["covariance_type"]): float(r["bic"] or "nan")
            for r in csv.DictReader(fh)
            if r["data"] == name
        }
    for alias, model in SKLEARN_NAMES.items():
        table.update({(k, alias): bic for (k, m), bic in list(table.items()) if m == model})
    return table


SKLEARN_NAMES = {"spherical": "VII", "diag": "VVI", "tied": "EEE", "full": "VVV"}


@pytest.mark.parametrize(
    ("name", "sizes", "best"),
    [
        ("faithful", range(1, 10), (3, "EEE")),  # mclust's best: EEE,3
        ("iris", range(1, 5), (2, "VEV")),  # mclust's best: VEV,2
        ("diabetes", range(1, 6), (3, "VVV")),  # mclust's best: VVV,3
    ],
)
def test_bic_table_and_choice_agree_with_mclust(
    name: str, sizes: range, best: tuple[int, str]
) -> None:
    X = mclust_data(name)
    mbc = ModelBasedClustering(n_components=sizes).fit(X)
    reference = _mclust_bic(name)
    results = mbc.results_
    assert len(results["bic"]) == len(sizes) * len(all_covariance_types())
    for k, kind, bic in zip(
        results["n_components"], results["covariance_type"], results["bic"], strict=True
    ):
        # the same optimum as mclust's EM from the same start, or a better one (a cell
        # mclust could not fit may be fitted here, or be missing too)
        expected = reference[(int(k), kind)]
        if np.isfinite(expected):
            assert bic >= expected - 1e-3, (k, kind)
    assert (mbc.n_components_, mbc.covariance_type_) == best


def test_wreath_with_its_components_in_range_is_mclusts_choice() -> None:
    """wreath is simulated from 14 components: with G to 20 (mclust's table
    "wreath_g20"), mclust picks EEV,14; here too, each cell at least mclust's. (At G <=
    9 the choice is the larger G whose fit is better, and VVV,9 here is 242 nats above
    mclust's, which is below its own VVV,8: the two disagree there.)"""
    X = mclust_data("wreath")
    reference = _mclust_bic("wreath_g20")
    assert max((v, k) for k, v in reference.items() if np.isfinite(v))[1] == (14, "EEV")
    kinds = ["EEE", "EEV", "VEV", "VVV"]
    mbc = ModelBasedClustering(n_components=[13, 14, 15], covariance_types=kinds).fit(X)
    results = mbc.results_
    for k, kind, bic in zip(
        results["n_components"], results["covariance_type"], results["bic"], strict=True
    ):
        assert bic >= reference[(int(k), kind)] - 1e-3, (k, kind)
    assert (mbc.n_components_, mbc.covariance_type_) == (14, "EEV")


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        # the cells where one start per cell ended below mclust (by 17, 25 and 0.4 nats):
        # their shared starts reach mclust's log-likelihood or more
        ("iris", [5]),
        ("thyroid", [2]),
        ("banknote", [5]),
    ],
)
def test_shared_starts_reach_mclust_on_every_cell(name: str, sizes: list[int]) -> None:
    X = mclust_data(name)
    shared = ModelBasedClustering(n_components=sizes).fit(X).results_
    single = ModelBasedClustering(n_components=sizes, share_starts=False).fit(X).results_
    reference = _mclust_bic(name)
    below = []
    for i, (k, kind) in enumerate(
        zip(shared["n_components"], shared["covariance_type"], strict=True)
    ):
        expected = reference[(int(k), kind)]
        if np.isfinite(expected) and not shared["bic"][i] >= expected - 1e-3:
            below.append((int(k), kind))
        # a shared start is kept only where it is better: never below the single start
        if np.isfinite(single["bic"][i]):
            assert shared["log_likelihood"][i] >= single["log_likelihood"][i] - 1e-9
    assert below == []
    # without them, at least one cell is below mclust's (what the shared starts fix)
    assert any(
        single["bic"][i] < reference[(int(k), kind)] - 1e-3
        for i, (k, kind) in enumerate(
            zip(single["n_components"], single["covariance_type"], strict=True)
        )
        if np.isfinite(reference[(int(k), kind)]) and np.isfinite(single["bic"][i])
    )


def test_the_next_shared_start_runs_where_the_best_one_ends_lower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from emkit.estimators import selection

    # wreath's EEE,3: the best short run (from EEI's partition) converges below the cell's
    # own run; the next one (from EII's, behind after SHORT_RUN iterations) reaches mclust's
    X = mclust_data("wreath")
    grid = {"n_components": [3], "covariance_types": ["EII", "EEI", "EEE"]}
    expected = _mclust_bic("wreath")[(3, "EEE")]
    results = ModelBasedClustering(**grid).fit(X).results_
    assert results["covariance_type"][2] == "EEE"
    assert results["bic"][2] >= expected - 1e-3
    # with the best short run alone continued, the cell is 16 nats below mclust's
    monkeypatch.setattr(selection, "CONTINUED", 1)
    single = ModelBasedClustering(**grid).fit(X).results_
    assert single["bic"][2] < expected - 2 * 10


def test_shared_starts_come_from_nested_structures() -> None:
    from emkit.estimators.selection import MCLUST_MODELS, _nested

    inside = {outer: [m for m in MCLUST_MODELS if _nested(m, outer)] for outer in MCLUST_MODELS}
    assert inside["EII"] == []
    assert inside["VII"] == ["EII"]
    assert inside["VVV"] == [m for m in MCLUST_MODELS if m != "VVV"]
    assert inside["VVE"] == ["EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE"]
    # equal volumes are never a special case of a variable-volume model's complement
    assert "VII" not in inside["EVV"] and "VEE" not in inside["EVV"]
    assert _nested("E", "V") and not _nested("V", "E")
    assert _nested("spherical", "full") and _nested("tied", "VVV") and not _nested("full", "VVV")
    X = mclust_data("iris")
    # the kept fit is the cell's model, deterministic
    one = ModelBasedClustering(n_components=[5], covariance_types=["EII", "VVE"]).fit(X)
    two = ModelBasedClustering(n_components=[5], covariance_types=["EII", "VVE"]).fit(X)
    np.testing.assert_array_equal(one.results_["log_likelihood"], two.results_["log_likelihood"])
    vve = one.results_["covariance_type"].index("VVE")
    alone = ModelBasedClustering(n_components=[5], covariance_types=["VVE"]).fit(X)
    # VVE,5 from its own hierarchical start is 17 nats below mclust's; from EII's partition
    # it is above it (mclust 6.0.0: BIC -632.2056)
    assert one.results_["log_likelihood"][vve] > alone.results_["log_likelihood"][0] + 10
    assert one.results_["bic"][vve] >= _mclust_bic("iris")[(5, "VVE")] - 1e-3


def test_results_table_conventions() -> None:
    X = mclust_data("faithful")
    mbc = ModelBasedClustering(n_components=[1, 2, 3], covariance_types=["full", "tied"])
    mbc.fit(X)
    results = mbc.results_
    assert tuple(results) == RESULT_KEYS
    pd = pytest.importorskip("pandas")
    table = pd.DataFrame(results)
    assert table.shape == (6, len(RESULT_KEYS))
    assert list(table["covariance_type"]) == ["full"] * 3 + ["tied"] * 3
    i = mbc.best_index_
    model = mbc.best_estimator_
    n = len(X)
    # mclust's BIC (higher is better) is minus scikit-learn's (lower is better)
    assert results["bic"][i] == pytest.approx(-model.bic(X))
    assert mbc.bic(X) == pytest.approx(model.bic(X))
    assert results["log_likelihood"][i] == pytest.approx(model.score(X) * n)
    # full on 2 columns: 1 component, 2 means + 3 covariance entries; 3 components,
    # 2 weights + 6 means + 9 covariance entries
    assert results["n_parameters"][0] == 5 and results["n_parameters"][2] == 17
    proba = model.predict_proba(X)
    icl = results["bic"][i] + 2 * np.log(proba.max(axis=1)).sum()
    assert results["icl"][i] == pytest.approx(icl)
    assert np.all(results["icl"] <= results["bic"] + 1e-9)
    assert results["reason"] == [""] * 6 and results["converged"].all()


def test_delegates_to_the_kept_model() -> None:
    X = mclust_data("faithful")
    mbc = ModelBasedClustering(n_components=[2, 3], covariance_types="full", random_state=0)
    mbc.fit(X)
    model = mbc.best_estimator_
    assert isinstance(model, GaussianMixture)
    assert mbc.n_components_ == model.n_components == len(model.weights_)
    np.testing.assert_array_equal(mbc.predict(X), model.predict(X))
    np.testing.assert_array_equal(mbc.labels_, model.predict(X))
    np.testing.assert_allclose(mbc.predict_proba(X), model.predict_proba(X))
    np.testing.assert_allclose(mbc.uncertainty_, 1 - model.predict_proba(X).max(axis=1))
    assert mbc.score(X) == model.score(X)
    np.testing.assert_allclose(mbc.score_samples(X), model.score_samples(X))
    assert mbc.aic(X) == model.aic(X)
    sample, labels = mbc.sample(50)
    assert sample.shape == (50, 2) and labels.max() < mbc.n_components_
    np.testing.assert_array_equal(mbc.fit_predict(X), mbc.labels_)


def test_icl_criterion_keeps_the_best_icl() -> None:
    X = mclust_data("faithful")
    mbc = ModelBasedClustering(n_components=range(1, 5), covariance_types="tied")
    mbc.fit(X)
    by_icl = ModelBasedClustering(range(1, 5), covariance_types="tied", criterion="icl").fit(X)
    assert by_icl.best_index_ == int(np.argmax(by_icl.results_["icl"]))
    np.testing.assert_allclose(by_icl.results_["icl"], mbc.results_["icl"])
    # faithful's third component overlaps the others: BIC keeps it, ICL does not
    assert (mbc.n_components_, by_icl.n_components_) == (3, 2)


def test_a_collapsed_cell_is_missing_and_never_chosen() -> None:
    rng = np.random.default_rng(0)
    # six copies of one point: a component on them has a singular covariance
    X = np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(8, 1, (60, 2)), np.full((6, 2), 30.0)])
    mbc = ModelBasedClustering(n_components=[2, 3], covariance_types=["full", "spherical"])
    mbc.fit(X)
    results = mbc.results_
    full3 = results["covariance_type"].index("full") + 1
    assert results["n_components"][full3] == 3
    assert np.isnan(results["bic"][full3]) and np.isnan(results["icl"][full3])
    assert "collapsed" in results["reason"][full3]
    assert np.isfinite(results["log_likelihood"][full3])  # known, but not comparable
    assert results["reason"][mbc.best_index_] == ""
    assert not mbc.best_estimator_.trace_.degenerate.any()


def test_more_components_than_rows() -> None:
    X = mclust_data("faithful")[:5]
    mbc = ModelBasedClustering(n_components=[1, 2, 6], covariance_types="spherical").fit(X)
    assert mbc.results_["reason"][2] == "more components than the 5 rows"
    assert np.isnan(mbc.results_["bic"][2])
    with pytest.raises(InputError, match=r"X has 5 rows, fewer than every n_components .*\(6, 7\)"):
        ModelBasedClustering(n_components=[6, 7]).fit(X)


def test_bad_arguments_are_refused() -> None:
    X = mclust_data("faithful")
    allowed = re.escape(", ".join(map(repr, covariance_types())))
    with pytest.raises(
        InputError,
        match=f"has 'XYZ', which is not a covariance type: choose from {allowed}, or 'all'",
    ):
        ModelBasedClustering(covariance_types=["full", "XYZ"]).fit(X)
    with pytest.raises(InputError, match="criterion must be one of 'bic', 'icl', got 'aic'"):
        ModelBasedClustering(criterion="aic").fit(X)
    with pytest.raises(InputError, match="n_components must be an integer >= 1, got 0"):
        ModelBasedClustering(n_components=[0, 1]).fit(X)
    with pytest.raises(InputError, match=r"n_components is empty; pass numbers of components"):
        ModelBasedClustering(n_components=[]).fit(X)
    with pytest.raises(InputError, match=r"reg_covar must be a finite number >= 0.0, got -1.0"):
        ModelBasedClustering(reg_covar=-1.0).fit(X)


def test_parallel_cells_give_the_sequential_results() -> None:
    X = mclust_data("iris")
    grid = {"n_components": [1, 2, 3], "covariance_types": ["diag", "full"]}
    one = ModelBasedClustering(**grid).fit(X).results_
    two = ModelBasedClustering(**grid, n_jobs=2).fit(X).results_
    np.testing.assert_allclose(one["bic"], two["bic"])


def test_missing_values_are_fitted() -> None:
    X = mclust_data("iris").copy()
    X[::11, 1] = np.nan
    mbc = ModelBasedClustering(n_components=[2, 3], covariance_types="full").fit(X)
    assert np.isfinite(mbc.results_["bic"]).all()
    assert np.isfinite(mbc.predict_proba(X)).all()


# -- every cell takes the estimator's engine, E-step, acceleration and checkpoint ----------


@pytest.mark.parametrize(("e_step", "accelerate"), [("hard", None), ("exact", "squarem")])
def test_each_cell_is_the_gaussian_mixture_of_its_variant(
    e_step: str, accelerate: str | None
) -> None:
    X = mclust_data("faithful")
    mbc = ModelBasedClustering(
        [2, 3], covariance_types="tied", e_step=e_step, accelerate=accelerate, random_state=0
    ).fit(X)
    model = mbc.best_estimator_
    assert (model.e_step, model.accelerate) == (e_step, accelerate)
    alone = GaussianMixture(
        mbc.n_components_,
        covariance_type="tied",
        init_params="hc",
        tol=1e-5,
        max_iter=1000,
        e_step=e_step,
        accelerate=accelerate,
        random_state=0,
    ).fit(X)
    np.testing.assert_array_equal(model.means_, alone.means_)
    assert model.n_iter_ == alone.n_iter_


class _CountingEngine:
    """The in-memory engine, counting the maps it runs."""

    def __init__(self) -> None:
        from emkit.engines import InMemoryEngine

        self.inner = InMemoryEngine()
        self.maps = 0

    def map_reduce(self, fn: Any, source: Any) -> Any:
        self.maps += 1
        return self.inner.map_reduce(fn, source)

    def map_rows(self, fn: Any, source: Any) -> Any:
        self.maps += 1
        return self.inner.map_rows(fn, source)


def test_the_engine_runs_every_cell() -> None:
    X = mclust_data("faithful")
    engine = _CountingEngine()
    mbc = ModelBasedClustering([1, 2], covariance_types="full", engine=engine).fit(X)
    plain = ModelBasedClustering([1, 2], covariance_types="full").fit(X)
    np.testing.assert_allclose(mbc.results_["bic"], plain.results_["bic"], rtol=1e-12)
    # every EM iteration of both cells is a map of the engine
    assert engine.maps >= int(mbc.results_["n_iter"].sum())
    # cells at once: on threads, so that this process's engine object runs them all
    shared = _CountingEngine()
    both = ModelBasedClustering([1, 2], covariance_types="full", engine=shared, n_jobs=2)
    np.testing.assert_allclose(both.fit(X).results_["bic"], plain.results_["bic"], rtol=1e-12)
    assert shared.maps == engine.maps


def test_a_streamed_table_gives_the_in_memory_results(tmp_path: Path) -> None:
    from emkit.io import open_table

    X = mclust_data("faithful")
    np.save(tmp_path / "x.npy", X)
    grid = {"n_components": [1, 2, 3], "covariance_types": ["EEE", "VVI"]}
    streamed = ModelBasedClustering(**grid).fit(open_table(tmp_path / "x.npy", block_rows=100))
    memory = ModelBasedClustering(**grid).fit(X)
    np.testing.assert_allclose(streamed.results_["bic"], memory.results_["bic"], rtol=1e-9)
    assert streamed.best_index_ == memory.best_index_
    np.testing.assert_allclose(streamed.uncertainty_, memory.uncertainty_, atol=1e-9)
    assert streamed.n_features_in_ == 2


def test_a_checkpoint_per_cell_resumes_the_sweep(tmp_path: Path) -> None:
    X = mclust_data("faithful")
    grid = {"n_components": [2, 3], "covariance_types": ["full", "VEI"]}
    first = ModelBasedClustering(**grid).fit(X, checkpoint=tmp_path / "ck")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "k2-VEI",
        "k2-full",
        "k3-VEI",
        "k3-full",
    ]
    again = ModelBasedClustering(**grid).fit(X, checkpoint=tmp_path / "ck")
    plain = ModelBasedClustering(**grid).fit(X)
    for result in (first, again):
        np.testing.assert_allclose(result.results_["bic"], plain.results_["bic"], rtol=1e-12)
        np.testing.assert_array_equal(result.results_["n_iter"], plain.results_["n_iter"])
    for bad in ({"n_init": 2}, {"accelerate": "squarem"}):
        with pytest.raises(InputError, match=r"checkpoint resumes one plain EM run per cell"):
            ModelBasedClustering(**grid, **bad).fit(X, checkpoint=tmp_path / "other")
    assert not (tmp_path / "other").exists()
