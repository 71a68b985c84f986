"""ModelBasedClustering's shared starts: a short run continued where it stopped."""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import mclust_data
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp

from emkit import GaussianMixture, ModelBasedClustering
from emkit.estimators import selection
from emkit.estimators.selection import (
    _SINGULAR,
    SHORT_RUN,
    _canonical,
    _cell_values,
    _column_scale,
    _continue_cell,
    _fit_cell,
    _held_by_reg_covar,
    _joined,
    _log_sum_exp_rows,
    _short_run,
    _Start,
    all_covariance_types,
)
from emkit.exceptions import ConvergenceWarning, InputError
from emkit.families.gaussian import covariance_structure
from emkit.inference.em import EMTrace
from emkit.io import load_faithful


def _from_other_structure(X: np.ndarray, k: int, name: str, other: str) -> _Start:
    """The start a shared start gives cell (k, name): the partition ``other`` reached."""
    labels = GaussianMixture(k, covariance_type=other, init_params="hc").fit(X).predict(X)
    return _Start(k, name, _canonical(labels), SHORT_RUN)


@pytest.mark.parametrize(
    ("name", "k", "structure", "other"),
    [("iris", 3, "VVV", "EII"), ("wreath", 3, "EEE", "EEI"), ("faithful", 4, "VVE", "EEI")],
)
def test_a_continued_short_run_is_the_run_from_its_start(
    name: str, k: int, structure: str, other: str
) -> None:
    X = mclust_data(name)
    n, scale = X.shape[0], _column_scale(X)
    start = _from_other_structure(X, k, structure, other)
    mbc = ModelBasedClustering()
    short = mbc._cell(k, structure, None)
    short.max_iter = SHORT_RUN
    value, model = _short_run(short, X, scale, start)
    assert model is not None and model.n_iter_ == SHORT_RUN
    row, continued = _continue_cell(model, X, n, scale, mbc.max_iter)
    # the same cell run from the start to convergence in one go
    refit_row, refit = _fit_cell(
        mbc._cell(k, structure, None), X, n, scale, _Start(k, structure, start.partition, 1000)
    )
    assert continued is not None and refit is not None
    assert row["log_likelihood"] >= refit_row["log_likelihood"] - 1e-9
    assert row["n_iter"] == refit_row["n_iter"] == continued.n_iter_
    assert row["converged"] and continued.converged_
    # the joined trace is the one run's: its first SHORT_RUN iterations the short run's
    assert continued.lower_bounds_[SHORT_RUN - 1] == value
    np.testing.assert_allclose(continued.lower_bounds_, refit.lower_bounds_, rtol=0, atol=1e-9)
    assert continued.trace_.seconds.shape == continued.lower_bounds_.shape
    assert continued.lower_bound_ == continued.lower_bounds_[-1]
    # the kept model fits from scratch again, with the sweep's max_iter
    assert not continued.warm_start and continued.max_iter == mbc.max_iter


def test_a_short_run_that_used_every_iteration_is_not_run_further() -> None:
    X = mclust_data("iris")
    n, scale = X.shape[0], _column_scale(X)
    start = _from_other_structure(X, 3, "VVV", "EII")
    short = ModelBasedClustering()._cell(3, "VVV", None)
    short.max_iter = 3
    _, model = _short_run(short, X, scale, start)
    assert model is not None
    objective = model.lower_bounds_.copy()
    row, continued = _continue_cell(model, X, n, scale, 3)
    assert continued is not None and row["n_iter"] == 3
    np.testing.assert_array_equal(continued.lower_bounds_, objective)


def test_a_short_run_is_the_decorated_fit_and_lets_no_warning_out() -> None:
    # _short_run fits without warnings_once (its warnings are ignored): the same model as
    # fit, and none of its ConvergenceWarnings reaches a caller whose warnings are errors
    X = mclust_data("iris")
    scale = _column_scale(X)
    start = _from_other_structure(X, 3, "VEV", "EII")
    short = ModelBasedClustering()._cell(3, "VEV", None)
    short.max_iter = SHORT_RUN
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value, model = _short_run(short, X, scale, start)
    assert model is not None and not model.converged_
    decorated = ModelBasedClustering()._cell(3, "VEV", None)
    decorated.max_iter = SHORT_RUN
    decorated._hc_tree = start
    with pytest.warns(ConvergenceWarning):
        decorated.fit(X)
    assert value == decorated.lower_bounds_[-1]
    np.testing.assert_array_equal(model.lower_bounds_, decorated.lower_bounds_)
    np.testing.assert_array_equal(model.covariances_, decorated.covariances_)
    np.testing.assert_array_equal(model.means_, decorated.means_)


def test_a_sweep_with_few_iterations_keeps_max_iter_on_continued_cells() -> None:
    X = mclust_data("iris")
    mbc = ModelBasedClustering([3, 4], max_iter=SHORT_RUN + 2).fit(X)
    assert mbc._phases["continued"][0] > 0  # (cells were continued)
    assert mbc.results_["n_iter"].max() <= SHORT_RUN + 2


def test_the_sweep_counts_each_phase_once() -> None:
    X = load_faithful()[0]
    mbc = ModelBasedClustering(range(2, 5)).fit(X)
    phases = mbc._phases
    assert set(phases) == {"cells", "short", "continued"}
    assert phases["cells"][0] == 3 * 14
    short_fits, short_steps = phases["short"]
    assert 0 < short_steps <= SHORT_RUN * short_fits
    # a continued cell's iterations beyond its short run's, which counted those
    fits, steps = phases["continued"]
    assert 0 < fits <= selection.CONTINUED * 3 * 14 and steps > 0


def test_joined_traces_shift_the_second_run() -> None:
    first = EMTrace(
        objective=np.array([-3.0, -2.0]),
        seconds=np.array([0.1, 0.1]),
        restarts=np.array([2], dtype=np.intp),
        degenerate=np.array([False, False]),
        bound=np.array([-2.5, -1.9]),
    )
    then = EMTrace(
        objective=np.array([-1.5, -1.4, -1.39]),
        seconds=np.array([0.2, 0.2, 0.2]),
        restarts=np.array([1], dtype=np.intp),
        degenerate=np.array([True, False]),
        bound=np.array([-1.45, -1.395, -1.389]),
    )
    trace = _joined(first, then)
    np.testing.assert_array_equal(trace.objective, [-3.0, -2.0, -1.5, -1.4, -1.39])
    np.testing.assert_array_equal(trace.seconds, [0.1, 0.1, 0.2, 0.2, 0.2])
    np.testing.assert_array_equal(trace.restarts, [2, 3])
    np.testing.assert_array_equal(trace.degenerate, [True, False])
    np.testing.assert_array_equal(trace.bound, [-2.5, -1.9, -1.45, -1.395, -1.389])
    assert trace.draws.shape == (0,)
    # a field one run did not record is recorded for neither
    assert _joined(first._replace(bound=np.zeros(0)), then).bound.shape == (0,)


@pytest.mark.parametrize("name", ["tied", "EEE"])
def test_a_tied_fit_with_as_many_components_as_features_warm_starts(name: str) -> None:
    X = load_faithful()[0]  # 2 columns, 2 components: tied and diag arrays are (2, 2)
    gm = GaussianMixture(2, covariance_type=name, init_params="hc", max_iter=3)
    gm.fit(X)
    # (the factor is upper triangular but for rounding below the diagonal)
    first = gm.lower_bounds_.copy()
    gm.set_params(warm_start=True, max_iter=1000).fit(X)
    assert gm.converged_ and gm.lower_bounds_[0] >= first[-1]
    # a diag fit of the same shape is still told apart
    diag = GaussianMixture(2, covariance_type="diag", init_params="hc", max_iter=3).fit(X)
    with pytest.raises(InputError, match="covariance_type='diag', but covariance_type is now"):
        diag.set_params(warm_start=True, covariance_type=name).fit(X)
    with pytest.raises(InputError, match="covariance_type='tied', but covariance_type is now"):
        gm.set_params(covariance_type="diag").fit(X)


# -- the sweep's shared work (one binding a structure, one cut a size) is the same maths --


_CELL_KEYS = ("log_likelihood", "bic", "icl", "n_iter", "converged", "reason")


def _cells(mbc: ModelBasedClustering) -> dict[tuple[int, str], tuple[Any, ...]]:
    table = mbc.results_
    return {
        (int(k), str(name)): tuple(
            table[key][i] if key == "reason" else table[key][i].item() for key in _CELL_KEYS
        )
        for i, (k, name) in enumerate(
            zip(table["n_components"], table["covariance_type"], strict=True)
        )
    }


@pytest.mark.parametrize("name", ["faithful", "iris"])
def test_each_cell_of_the_sweep_is_its_gaussian_mixture_fitted_alone(name: str) -> None:
    # one start a cell (no shared starts): every cell of every structure, for one size,
    # is GaussianMixture's own hc fit, bit for bit (the sweep binds its rows once a
    # structure and cuts its tree once a size, which must change no number)
    X = mclust_data(name)
    n, k = X.shape[0], 3
    mbc = ModelBasedClustering([k], share_starts=False).fit(X)
    for i, structure in enumerate(mbc.results_["covariance_type"]):
        alone = GaussianMixture(
            k, covariance_type=structure, init_params="hc", tol=1e-5, max_iter=1000
        ).fit(X)
        assert mbc.results_["log_likelihood"][i] == alone.score(X) * n, structure
        assert mbc.results_["n_iter"][i] == alone.n_iter_, structure
    kept = GaussianMixture(
        k, covariance_type=mbc.covariance_type_, init_params="hc", tol=1e-5, max_iter=1000
    ).fit(X)
    np.testing.assert_array_equal(mbc.best_estimator_.means_, kept.means_)
    np.testing.assert_array_equal(mbc.best_estimator_.covariances_, kept.covariances_)


def test_a_cell_of_the_whole_sweep_is_the_cell_of_a_sweep_of_its_size_alone() -> None:
    # with shared starts: the cells of one size are those of a sweep of that size alone
    # (its bindings and tree cuts shared with the other sizes' fits change nothing)
    X = mclust_data("faithful")
    whole = _cells(ModelBasedClustering(range(1, 6)).fit(X))
    for k in (2, 4):
        alone = _cells(ModelBasedClustering([k]).fit(X))
        assert alone == {cell: row for cell, row in whole.items() if cell[0] == k}


def test_a_sweep_from_another_start_draws_it_in_every_fit() -> None:
    # only an hc start from the sweep's tree or partition draws nothing: k-means starts
    # (the cells' and the shared starts' short runs) still get their random source
    X = mclust_data("faithful")
    grid: dict[str, Any] = {
        "n_components": [2, 3],
        "covariance_types": ["EII", "EEI", "VVV"],  # (nested: shared starts run)
        "init_params": "kmeans",
        "random_state": 0,
    }
    shared = ModelBasedClustering(**grid).fit(X).results_["log_likelihood"]
    alone = ModelBasedClustering(**grid, share_starts=False).fit(X).results_["log_likelihood"]
    # (a shared start only ever keeps a better fit)
    assert (shared >= alone).all()


# entries a row of log-probabilities may hold: finite ones (repeated, for ties), -inf
# (a component a row cannot be in), and the inf and NaN of a failed fit
_ENTRIES = st.one_of(
    st.sampled_from([0.0, -1.5, 700.0, -750.0, -np.inf]),
    st.floats(-1e6, 1e6),
    st.sampled_from([np.inf, np.nan]),
)


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 9)),
        elements=_ENTRIES,
    )
)
def test_the_final_pass_log_sum_exp_is_scipys_to_the_bit(a: np.ndarray) -> None:
    np.testing.assert_array_equal(_log_sum_exp_rows(a), logsumexp(a, axis=1))


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        st.sampled_from([np.float64, np.float32]),
        st.tuples(st.integers(1, 6), st.integers(1, 9)),
        elements=_ENTRIES,
    )
)
def test_the_final_pass_values_are_the_log_probabilities_argmax_and_entry(a: np.ndarray) -> None:
    # each row's log-density, the log of its largest posterior (the entry argmax points
    # at, less the density) and its label, as take_along_axis gives them, bit for bit
    total = _log_sum_exp_rows(a)
    top = a.argmax(axis=1)
    with np.errstate(invalid="ignore"):
        expected = np.column_stack(
            [total, np.take_along_axis(a, top[:, None], 1)[:, 0] - total, top]
        )
        values = _cell_values(a)
    assert values.dtype == expected.dtype
    np.testing.assert_array_equal(values, expected)


def _held_by_reg_covar_one_by_one(model: Any, scale: np.ndarray) -> np.ndarray:
    # the check as it was: every component's matrix, less reg_covar, scaled, eigvalsh
    structure = covariance_structure(model.covariance_type)
    K, d = model.n_components, scale.shape[0]
    cov = np.asarray(model.covariances_, dtype=np.float64)
    S = np.stack([structure.component_covariance(cov, k, d) for k in range(K)])
    S -= model.reg_covar * np.eye(d)
    return np.asarray(np.linalg.eigvalsh(S / np.outer(scale, scale))[:, 0] <= _SINGULAR)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(all_covariance_types()),
    st.integers(1, 4),
    st.integers(1, 4),
    st.data(),
)
def test_the_collapse_check_decides_as_each_components_eigvalsh(
    name: str, K: int, d: int, data: st.DataObject
) -> None:
    # diagonal structures read their variances, tied factors once: every decision (and
    # every eigenvalue it compares) is the component-by-component eigvalsh's, also at
    # the threshold (variances of reg_covar and just above it, scales far apart)
    structure = covariance_structure(name)
    shape = structure.shape(K, d)
    reg_covar = data.draw(st.sampled_from([0.0, 1e-6, 1e-3]))
    near = st.sampled_from([reg_covar, reg_covar * (1 + 1e-9), reg_covar + 1e-9, 1.0])
    values = data.draw(arrays(np.float64, shape, elements=st.floats(1e-12, 1e3) | near))
    if structure.dense:
        # dense: symmetric positive semi-definite, A A^T + the drawn diagonal
        A = data.draw(arrays(np.float64, (*shape[:-1], d), elements=st.floats(-3, 3)))
        values = A @ np.swapaxes(A, -1, -2) + values * np.eye(d)
    scale = data.draw(arrays(np.float64, (d,), elements=st.floats(1e-3, 1e3)))
    model = SimpleNamespace(
        covariance_type=name, n_components=K, covariances_=values, reg_covar=reg_covar
    )
    np.testing.assert_array_equal(
        _held_by_reg_covar(model, scale),  # type: ignore[arg-type]
        _held_by_reg_covar_one_by_one(model, scale),
    )
