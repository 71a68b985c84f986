"""A fit's fixed costs: the binding pass (one pass over the rows, in chunks on the engine's
threads, giving the binding of the family's own ``bind`` on the whole data), the column
scale's median, and Numba's kernels loaded once."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emkit import GaussianMixture
from emkit.engines import InMemoryEngine
from emkit.engines._source import RowSource
from emkit.estimators._rows import bind_pass, column_summary
from emkit.exceptions import InputError
from emkit.families._summary import column_reduce
from emkit.families.gaussian import (
    GaussianFamily,
    _row_medians,
    centred_column_scale,
    covariance_structure,
)

finite = st.floats(-1e6, 1e6, allow_nan=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 700), st.integers(1, 40)),
        elements=st.one_of(finite, st.just(np.nan)),
    ),
    st.sampled_from(["fmin", "fmax", "add"]),
)
def test_column_reduce_is_the_reduction_over_rows(X: np.ndarray, name: str) -> None:
    op = getattr(np, name)
    expected = op.reduce(X, axis=0, dtype=np.float64)
    got = column_reduce(op, X, np.float64)
    assert got.shape == (X.shape[1],)
    if name == "add":  # another order of the same sum
        size = np.nansum(np.abs(X))
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * size)
    else:  # extremes are exact, NaN skipped as fmin and fmax skip it
        np.testing.assert_array_equal(got, expected)


def test_column_reduce_of_float32_sums_in_float64_and_takes_strided_rows() -> None:
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(5000, 3)) * 1e4).astype(np.float32)
    exact = X.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(column_reduce(np.add, X, np.float64), exact, rtol=1e-13)
    strided = X[::3]  # not C-contiguous: reduced as it is
    np.testing.assert_array_equal(column_reduce(np.fmax, strided), strided.max(axis=0))


def _gaussian(covariance_type: str = "full") -> GaussianFamily:
    return GaussianFamily(covariance_structure(covariance_type))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_rows", [3000, 140_000])
def test_chunked_binding_equals_the_whole_data_binding(weighted: bool, n_rows: int) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n_rows, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 1e3]
    w = rng.uniform(0.0, 2.0, n_rows) if weighted else None
    whole = _gaussian().bind(X, w)
    with InMemoryEngine(n_threads=2) as engine:
        chunked, missing, fill = bind_pass(_gaussian(), engine, X, w, refuse_invalid=True)
    assert not missing and fill is None
    np.testing.assert_allclose(chunked.shift, whole.shift, rtol=1e-13)
    assert chunked.scale == pytest.approx(whole.scale, rel=1e-13)
    # the same evenly spaced rows, the same median (up to the shift's round-off: its
    # column 2 is 1e3 +- 0.1)
    np.testing.assert_allclose(chunked.column_scale, whole.column_scale, rtol=1e-9)
    np.testing.assert_array_equal(chunked.column_scale, centred_column_scale(X, chunked.shift))


def test_column_scale_is_the_median_of_the_spaced_rows() -> None:
    rng = np.random.default_rng(2)
    X = rng.standard_t(3, size=(200_001, 4))
    X[5, 1] = np.nan  # skipped in its column
    shift = np.nanmean(X, axis=0)
    step = 200_001 // 65536
    expected = np.nanmedian(np.abs(X[::step] - shift), axis=0)
    np.testing.assert_array_equal(centred_column_scale(X, shift), expected)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.inf, r"X contains infinity \(first at row 70000, column 1\)"),
        (-np.inf, r"X contains infinity \(first at row 70000, column 1\)"),
    ],
)
def test_an_infinity_in_a_late_chunk_is_refused_with_its_row(value: float, match: str) -> None:
    X = np.random.default_rng(3).normal(size=(90_000, 2))
    X[70_000, 1] = value
    X[80_000, 0] = value
    with pytest.raises(InputError, match=match):
        GaussianMixture(2, max_iter=2).fit(X)


def test_rows_with_nothing_observed_are_counted_over_every_chunk() -> None:
    X = np.random.default_rng(4).normal(size=(90_000, 2))
    X[[5, 40_000, 89_999]] = np.nan
    with pytest.raises(InputError, match=r"3 row\(s\) with every value missing \(first at row 5\)"):
        GaussianMixture(2, max_iter=2).fit(X)


def test_a_column_sum_that_overflows_is_no_missing_value() -> None:
    # finite values whose column sum overflows: the exact route, which finds none missing
    X = np.random.default_rng(5).uniform(-1.0, 1.0, size=(5000, 2))
    X[:, 0] = 1e308
    with InMemoryEngine() as engine:
        summary = column_summary(engine, RowSource(X))
    assert not summary.missing
    np.testing.assert_array_equal(summary.count, [5000.0, 5000.0])
    assert summary.high[0] == 1e308 and summary.low[0] == 1e308


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(4090, 9000),
    st.sampled_from(["normal", "sorted", "ties", "periodic"]),
    st.sampled_from([np.float64, np.float32]),
    st.integers(0, 2**32 - 1),
)
def test_row_medians_are_numpys_medians(d: int, m: int, kind: str, dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        rows = np.abs(rng.standard_normal((d, m)))
    elif kind == "sorted":  # the evenly spaced sample is then a stratified one
        rows = np.sort(np.abs(rng.standard_normal((d, m))), axis=1)
    elif kind == "ties":
        rows = rng.integers(0, 3, (d, m)).astype(np.float64)
    else:  # every 32nd value far out: the sample misses the band, the whole row is used
        rows = np.tile(np.r_[50.0, rng.random(31)], (d, m // 32 + 1))[:, :m]
    rows = np.ascontiguousarray(rows, dtype=dtype)
    expected = np.median(rows, axis=1)
    got = _row_medians(rows.copy())
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_the_threads_first_blocks_load_numbas_kernels_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from emkit.models import mixture

    if mixture.fused_kernels() is None:
        pytest.skip("needs Numba")
    calls = []
    loaded = mixture.fused_kernels

    def slow_load() -> object:
        calls.append(1)
        time.sleep(0.05)  # a first load: the other thread's first block arrives meanwhile
        return loaded()

    monkeypatch.setattr(mixture, "fused_kernels", slow_load)
    X = np.random.default_rng(6).normal(size=(40_000, 2))
    # two chunks of 20,000 rows x 4 components, each above the fused path's minimum
    gm = GaussianMixture(4, max_iter=3, tol=0.0, chunk_size=20_000, n_threads=2)
    gm.fit(X)
    # one load a step (each iteration builds its step), not one a thread
    assert len(calls) == gm.n_iter_ == 3


class _ColumnsFirst(GaussianFamily):
    """A Gaussian family bound in the generic order: every chunk's column summary first."""

    summary_columns = False


def _bind_both_orders(X: np.ndarray, w: np.ndarray | None, refuse: bool) -> list[object]:
    """bind_pass's outcome (the binding, missing, the fill of X; or the error message)
    for the Gaussian family's order and the generic one."""
    outcomes: list[object] = []
    for family in (_gaussian("diag"), _ColumnsFirst(covariance_structure("diag"))):
        try:
            with InMemoryEngine(n_threads=2) as engine:
                bound, missing, fill = bind_pass(family, engine, X, w, refuse_invalid=refuse)
        except InputError as exc:
            outcomes.append(str(exc))
            continue
        filled = None if fill is None else fill(X)
        outcomes.append((bound.shift, bound.scale, bound.column_scale, missing, filled))
    return outcomes


@pytest.mark.parametrize("refuse", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("case", ["complete", "nan", "inf", "-inf", "overflow", "empty_row"])
def test_the_gaussian_binding_order_gives_the_generic_orders_results(
    case: str, weighted: bool, refuse: bool
) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(150_000, 3)) * [1.0, 10.0, 0.1] + [5.0, -2.0, 1e3]
    if case == "nan":
        X[[3, 80_000, 149_000], [0, 2, 1]] = np.nan
    elif case in ("inf", "-inf"):
        X[120_000, 1] = float(case)
    elif case == "overflow":  # finite values whose column sum overflows
        X[::2, 0] = 1.7e308
    elif case == "empty_row":
        X[100_000] = np.nan
    w = rng.uniform(0.0, 2.0, X.shape[0]) if weighted else None
    ours, generic = _bind_both_orders(X, w, refuse)
    if isinstance(generic, str):
        assert ours == generic
        return
    assert isinstance(ours, tuple) and isinstance(generic, tuple)
    for a, b in zip(ours, generic, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("inf", r"X contains infinity \(first at row 120000, column 1\)"),
        ("overflow", r"would exceed float64's range .* X / 8\.98847e\+307, before"),
    ],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_invalid_values_keep_their_messages(case: str, match: str, weighted: bool) -> None:
    X = np.random.default_rng(8).normal(size=(150_000, 2))
    if case == "inf":
        X[120_000, 1] = -np.inf
    else:
        X[::2, 0] = 1.7e308
    w = np.full(X.shape[0], 0.5) if weighted else None
    with pytest.raises(InputError, match=match):
        GaussianMixture(2, max_iter=2).fit(X, sample_weight=w)


def test_an_infinity_is_refused_without_refuse_invalid() -> None:
    # (it reached the binding's spread as inf - inf, a RuntimeWarning)
    X = np.random.default_rng(9).normal(size=(5000, 3))
    X[10, 2] = np.inf
    with (
        InMemoryEngine() as engine,
        pytest.raises(InputError, match=r"infinity \(first in column 2\)"),
    ):
        bind_pass(_gaussian(), engine, X, None)


def test_the_suggested_divisor_of_a_spread_near_float64s_max_is_finite() -> None:
    from emkit._validation import check_fit_range

    with pytest.raises(InputError, match=r"e\.g\. X / 8\.98847e\+307, before") as info:
        check_fit_range(1.7e308, (10, 2), "a fit")
    assert "inf" not in str(info.value)


def test_complete_unweighted_chunks_take_no_column_summary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from emkit.estimators import _rows

    calls: list[int] = []
    generic = _rows._summarize_columns

    def counted(X: np.ndarray, *args: object, **kwargs: object) -> object:
        calls.append(X.shape[0])
        return generic(X, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_rows, "_summarize_columns", counted)
    X = np.random.default_rng(10).normal(size=(150_000, 3))
    with InMemoryEngine(n_threads=2) as engine:
        bind_pass(_gaussian(), engine, X, None)
        assert calls == []
        X[140_000, 0] = np.nan  # only its chunk is summarized column by column
        bind_pass(_gaussian(), engine, X, None)
        assert len(calls) == 1 and calls[0] < X.shape[0]
        bind_pass(_gaussian(), engine, X[:1000], np.ones(1000))  # weighted: every chunk
        assert len(calls) == 2


PROFILE_FIT = pathlib.Path(__file__).resolve().parents[1] / "bench" / "profile_fit.py"


@pytest.mark.skipif(not PROFILE_FIT.exists(), reason="needs the source tree")
def test_profile_fit_cold_splits_a_fresh_processs_loads(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "cold.json"
    command = [sys.executable, str(PROFILE_FIT), "--cold", "--workloads", "small"]
    result = subprocess.run(
        [*command, "--repeats", "1", "--iters", "2", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "small split cpu" in result.stdout and "small whole" in result.stdout
    (workload,) = json.loads(out.read_text())["cold"]
    (split,), (whole,) = workload["split"], workload["whole"]
    for unit in ("", " cpu"):
        loads = sum(split[f"{k}{unit}"] for k in ("blas", "numba", "kernel"))
        assert split[f"cold{unit}"] == pytest.approx(loads + split[f"total{unit}"])
        assert split[f"numba{unit}"] >= 0 and split[f"bind{unit}"] > 0
    # the full garbage collections from the first load to the fit's end: wall time, count
    for run in (split, whole):
        assert run["gc"] >= 0 and run["gc runs"] >= 0 and (run["gc"] > 0) == (run["gc runs"] > 0)
    # a process that loads nothing first: the loads fall in its fit
    assert "numba" not in whole and "cold" not in whole and whole["total"] > 0
