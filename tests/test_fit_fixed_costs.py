"""A fit's fixed costs: the binding pass (one pass over the rows, in chunks on the engine's
threads, giving the binding of the family's own ``bind`` on the whole data), the column
scale's median, and Numba's kernels loaded once."""

from __future__ import annotations

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
