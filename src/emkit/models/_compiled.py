"""The compiled loops of emkit's optional Numba kernels (``emkit[fast]``).

This module imports Numba. Only :func:`emkit.models._softmax_kernels.kernels` imports
it (the one loader of both kernels), on first use and when Numba is installed;
:mod:`emkit.models._softmax_kernels` and :mod:`emkit.models._fused_kernels` hold the
wrappers (argument checks, constants, tile sizes) and document the arithmetic. Each function here is
compiled at its first call with a given signature and cached on disk.

The exact EM softmax of a tile, :func:`exp_normalize`, is shared: the softmax kernel and
the one-pass E-step call it. A compiled function calls another through its module's
globals (a function built at run time and captured in a closure, or passed as an
argument, defeats Numba's disk cache), so the loops that share it live here together.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

# contract fuses multiply-adds; no reassoc: the exp's argument reduction, the order of
# the sums over components and the NaN and infinity semantics stay as written
_jit = numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
# reassoc too, for the second product's sums only: LLVM then splits a sum into vector
# lanes (the order of a sum of n terms changes, as in BLAS's blocks: round-off)
_jit_lanes = numba.njit(
    cache=True, nogil=True, fastmath={"contract", "reassoc"}, error_model="numpy"
)
# _jit's, compiled into each caller (Numba's IR inlining: the callers' constants decide
# its branches)
_inline = numba.njit(
    cache=True, nogil=True, fastmath={"contract"}, error_model="numpy", inline="always"
)

# The layouts of the one-pass E-step's second-order statistics, by index
# (emkit.models._fused_kernels.LAYOUTS): packed x x^T, x**2, ||x||^2.
_FULL, _DIAG, _SPHERICAL = 0, 1, 2
# The bytes of a block row of the centring intrinsics (_centred_block, _centred_rows):
# 512 bits, AVX-512's registers (8 float64 or 16 float32 values; LLVM splits a wider
# vector than the machine's into its own: on AVX2, 2.5x and 1.8x the scalar loops'
# speed on 500k-32d's rows)
_BLOCK_BYTES = 64


class _Lanes:
    """The code of the centring intrinsics (:func:`_centred_block`, :func:`_centred_rows`):
    vectors of ``lanes`` values, addresses in Numba's arrays, and the last step of both,
    a vector of x stored in a row of T and the reach raised to its largest ``|x|``."""

    def __init__(self, context: Any, builder: Any, lanes: int) -> None:
        self.context, self.builder, self.lanes = context, builder, lanes
        self.intp = context.get_value_type(types.intp)

    def vector(self, dtype: Any, lanes: int | None = None) -> Any:
        return ir.VectorType(self.context.get_value_type(dtype), lanes or self.lanes)

    def index(self, value: int) -> Any:
        return ir.Constant(self.intp, value)

    def pointer(self, ty: Any, value: Any, index: list[Any]) -> Any:
        """The address of ``value[index]`` (an array of Numba type ``ty``)."""
        array = self.context.make_array(ty)(self.context, self.builder, value)
        return cgutils.get_item_pointer(
            self.context, self.builder, ty, array, index, wraparound=False
        )

    def load(self, ty: Any, value: Any, index: list[Any], lanes: int | None = None) -> Any:
        """The vector of ``lanes`` values from ``value[index]`` on (contiguous)."""
        at = self.pointer(ty, value, index)
        vector = self.vector(ty.dtype, lanes)
        return self.builder.load(
            self.builder.bitcast(at, vector.as_pointer()), align=ty.dtype.bitwidth // 8
        )

    def convert(self, value: Any, source: Any, target: Any) -> Any:
        """A vector of ``source`` floats rounded (or widened) to ``target``."""
        if source.bitwidth == target.bitwidth:
            return value
        if source.bitwidth < target.bitwidth:
            return self.builder.fpext(value, self.vector(target))
        return self.builder.fptrunc(value, self.vector(target))

    def splat(self, ty: Any, value: Any, index: int, dtype: Any) -> Any:
        """The vector of ``value[index]`` (an array of Numba type ``ty``) in every lane,
        rounded (or widened) to ``dtype``."""
        builder = self.builder
        one = builder.load(self.pointer(ty, value, [self.index(index)]))
        target = self.context.get_value_type(dtype)
        if ty.dtype.bitwidth < dtype.bitwidth:
            one = builder.fpext(one, target)
        elif ty.dtype.bitwidth > dtype.bitwidth:
            one = builder.fptrunc(one, target)
        vector = self.vector(dtype)
        lane0 = builder.insert_element(
            ir.Constant(vector, ir.Undefined), one, ir.Constant(ir.IntType(32), 0)
        )
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), self.lanes), [0] * self.lanes)
        return builder.shuffle_vector(lane0, ir.Constant(vector, ir.Undefined), zeros)

    def store_reach(self, top: Any, ty: Any, value: Any, at: Any) -> None:
        at_r = self.pointer(ty, value, [at])
        self.builder.store(
            top, self.builder.bitcast(at_r, top.type.as_pointer()), align=ty.dtype.bitwidth // 8
        )

    def fabs(self, dtype: Any) -> Any:
        vector = self.vector(dtype)
        name = f"llvm.fabs.v{self.lanes}f{dtype.bitwidth}"
        return cgutils.get_or_insert_function(
            self.builder.module, ir.FunctionType(vector, [vector]), name
        )

    def store(self, x: Any, t_t: Any, t_v: Any, stat: Any, at: Any, top: Any) -> Any:
        """``x`` stored at ``T[stat, at:at + lanes]``; returns ``top`` raised lane by lane
        to ``|x|`` where larger (a NaN leaves it: a comparison, as the scalar loop's)."""
        builder = self.builder
        at_t = self.pointer(t_t, t_v, [stat, at])
        vector = self.vector(t_t.dtype)
        builder.store(x, builder.bitcast(at_t, vector.as_pointer()), align=t_t.dtype.bitwidth // 8)
        size = builder.call(self.fabs(t_t.dtype), [x])
        return builder.select(builder.fcmp_ordered(">", size, top), size, top)


def _centring(X: Any, shift: Any, T: Any, reach: Any) -> int | None:
    """The lanes of the centring intrinsics on these arrays (``_BLOCK_BYTES`` of T's
    dtype), or None where they do not apply."""
    if not all(isinstance(a, types.Array) for a in (X, shift, T, reach)):
        return None
    if reach.dtype != T.dtype:
        return None
    return _BLOCK_BYTES // (T.dtype.bitwidth // 8)


@intrinsic
def _centred_block(
    typingctx: Any, X: Any, row: Any, col: Any, shift: Any, T: Any, at: Any, reach: Any
) -> Any:
    """``T[1 + col + q, at + p] = X[row + p, col + q] - shift[col + q]`` for p, q < L,
    ``L = _BLOCK_BYTES / T.itemsize``, the difference in the wider of X's and shift's
    dtypes and rounded to T's, as the scalar loop's; ``reach[at + p]`` raised to the
    largest ``|T[1 + col + q, at + p]|`` (a NaN leaves it as it was). The block's L rows
    of X are L vector loads (their rows' L values must be contiguous), transposed in
    registers (log2 L rounds of L shuffles: each round swaps the off-diagonal halves of
    the blocks of the last) and stored as L vectors in T's rows (contiguous too). The
    scalar loop moves a value at a time, a store to each of L rows of T: 3.7x (float64)
    and 5x (float32) this loop's time on 500k-32d's rows (notes in statistics)."""
    lanes = _centring(X, shift, T, reach)
    if lanes is None:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        x_v, row_v, col_v, shift_v, t_v, at_v, reach_v = args
        x_t, _, _, shift_t, t_t, _, reach_t = signature.args
        code = _Lanes(context, builder, lanes)
        wide = max(x_t.dtype, shift_t.dtype, key=lambda ty: ty.bitwidth)
        centre = code.convert(code.load(shift_t, shift_v, [col_v]), shift_t.dtype, wide)
        rows = []
        for p in range(lanes):
            at_row = builder.add(row_v, code.index(p))
            values = code.convert(code.load(x_t, x_v, [at_row, col_v]), x_t.dtype, wide)
            rows.append(code.convert(builder.fsub(values, centre), wide, t_t.dtype))
        lane_index = ir.VectorType(ir.IntType(32), lanes)
        half = lanes // 2
        while half >= 1:
            # lane j of the pair (rows i, i + half): from the other row where j's bit
            # `half` says the value is across the diagonal
            low = [j if not j & half else lanes + j - half for j in range(lanes)]
            high = [j + half if not j & half else lanes + j for j in range(lanes)]
            swapped = list(rows)
            for i in range(lanes):
                if not i & half:
                    a, b = rows[i], rows[i + half]
                    swapped[i] = builder.shuffle_vector(a, b, ir.Constant(lane_index, low))
                    swapped[i + half] = builder.shuffle_vector(a, b, ir.Constant(lane_index, high))
            rows = swapped
            half //= 2
        top = code.load(reach_t, reach_v, [at_v])
        for q in range(lanes):
            stat = builder.add(col_v, code.index(q + 1))
            top = code.store(rows[q], t_t, t_v, stat, at_v, top)
        code.store_reach(top, reach_t, reach_v, at_v)
        return context.get_dummy_value()

    return types.void(X, row, col, shift, T, at, reach), codegen


@intrinsic
def _centred_rows(typingctx: Any, X: Any, row: Any, shift: Any, T: Any, at: Any, reach: Any) -> Any:
    """:func:`_centred_block` for X of fewer features d than its lanes L and adjacent
    rows (``X.strides == (d * itemsize, itemsize)``): ``T[1 + q, at + p] = X[row + p, q]
    - shift[q]`` for p < L and every q, the reach likewise. The L rows are one load of
    L d values; a shuffle takes each feature's L values out (the code is made for each
    d < L, chosen by a switch on X's columns: 2x to 4x the column loops' time, d = 1 to
    12 on 2 million values, either dtype)."""
    lanes = _centring(X, shift, T, reach)
    if lanes is None:
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        x_v, row_v, shift_v, t_v, at_v, reach_v = args
        x_t, _, shift_t, t_t, _, reach_t = signature.args
        code = _Lanes(context, builder, lanes)
        wide = max(x_t.dtype, shift_t.dtype, key=lambda ty: ty.bitwidth)
        array = context.make_array(x_t)(context, builder, x_v)
        features = cgutils.unpack_tuple(builder, array.shape, 2)[1]
        lane_index = ir.VectorType(ir.IntType(32), lanes)
        done = builder.append_basic_block("centred_rows_done")
        switch = builder.switch(features, done)
        for d in range(1, lanes):
            case = builder.append_basic_block(f"centred_rows_{d}")
            switch.add_case(code.index(d), case)
            builder.position_at_end(case)
            rows = code.load(x_t, x_v, [row_v, code.index(0)], lanes * d)
            top = code.load(reach_t, reach_v, [at_v])
            for q in range(d):
                x = rows
                if d > 1:  # lanes p * d + q: feature q of the L rows
                    gather = ir.Constant(lane_index, [p * d + q for p in range(lanes)])
                    x = builder.shuffle_vector(rows, ir.Constant(rows.type, ir.Undefined), gather)
                x = code.convert(x, x_t.dtype, wide)
                x = builder.fsub(x, code.splat(shift_t, shift_v, q, wide))
                x = code.convert(x, wide, t_t.dtype)
                top = code.store(x, t_t, t_v, code.index(q + 1), at_v, top)
            code.store_reach(top, reach_t, reach_v, at_v)
            builder.branch(done)
        builder.position_at_end(done)
        return context.get_dummy_value()

    return types.void(X, row, shift, T, at, reach), codegen


@_jit
def exp_normalize(
    a: Any,
    lo: int,
    hi: int,
    floor: Any,
    weights: Any,
    m: Any,
    total: Any,
    coef: Any,
    bits: Any,
    poly: Any,
    bias: Any,
    shift: Any,
) -> None:
    """Responsibilities of the columns ``lo:hi`` of ``a`` (K, n) C-contiguous, in place:
    ``w_j exp(a[k, j] - m_j) / total_j``, ``m_j = max_k a[k, j]``, the difference clipped
    to [``floor``, 0] first, ``total_j`` its sum over k in k order. ``m``, ``total``: the
    tile's (hi - lo,) outputs; ``weights``: the tile's (hi - lo,) float64 weights, or
    empty (all 1). ``coef``, ``bias``, ``shift``: from
    :func:`emkit.models._softmax_kernels.constants`; ``bits`` (at least hi - lo,)
    integers of the dtype's width (2^n is built in their exponent bits, read back as
    floats through a view of the same memory) and ``poly`` (at least hi - lo,) floats:
    scratch."""
    K = a.shape[0]
    width = hi - lo
    c13, c12, c11, c10, c9, c8, c7, c6, c5, c4, c3, c2, c1, c0 = coef[:14]
    log2e, ln2_hi, ln2_lo, half, zero = coef[14:]
    short = coef.itemsize == 4  # float32
    # 2^n as floats: a view taken here, so LLVM sees the store of the bits and the load
    # of the float at one address and keeps the exp one vector loop (1.4x in float32)
    pow2 = bits.view(a.dtype)
    row0 = a[0, lo:hi]
    for j in range(width):
        m[j] = row0[j]
        total[j] = zero
    for k in range(1, K):
        row = a[k, lo:hi]
        for j in range(width):
            if row[j] > m[j]:
                m[j] = row[j]
    for k in range(K):
        row = a[k, lo:hi]
        for j in range(width):
            x = row[j] - m[j]
            # comparisons, not min/max: a NaN stays NaN (and spreads to the row)
            if x < floor:
                x = floor
            if x > zero:
                x = zero
            nf = np.floor(x * log2e + half)
            r = (x - nf * ln2_hi) - nf * ln2_lo
            p = c7
            if not short:  # float64: to r^13 (float32: to r^7, truncation 7e-9)
                p = c13
                p = p * r + c12
                p = p * r + c11
                p = p * r + c10
                p = p * r + c9
                p = p * r + c8
                p = p * r + c7
            p = p * r + c6
            p = p * r + c5
            p = p * r + c4
            p = p * r + c3
            p = p * r + c2
            p = p * r + c1
            bits[j] = (np.int64(nf) + bias) << shift
            e = (p * r + c0) * pow2[j]
            row[j] = e
            total[j] += e
    if weights.shape[0] > 0:
        for j in range(width):
            poly[j] = weights[j] / total[j]
    else:
        for j in range(width):
            poly[j] = c0 / total[j]
    for k in range(K):
        row = a[k, lo:hi]
        for j in range(width):
            row[j] *= poly[j]


@_jit
def softmax_columns(
    a: Any,
    floor: Any,
    weights: Any,
    m: Any,
    total: Any,
    coef: Any,
    bits: Any,
    bias: Any,
    shift: Any,
) -> None:
    """The loop of :func:`emkit.models._softmax_kernels.softmax_columns`: the columns of
    ``a`` (K, n) in tiles of ``bits.shape[0]`` (K x tile values stay in L1 cache between
    the passes of :func:`exp_normalize`)."""
    n = a.shape[1]
    tile = bits.shape[0]
    poly = np.empty(tile, dtype=a.dtype)
    for lo in range(0, n, tile):
        hi = min(lo + tile, n)
        exp_normalize(
            a, lo, hi, floor, weights[lo:hi], m[lo:hi], total[lo:hi], coef, bits, poly, bias,
            shift,
        )  # fmt: skip


@_inline
def statistics(X: Any, shift: Any, lo: int, hi: int, layout: int, T: Any, reach: Any) -> None:
    """The statistics (1, x, s(x)) of the rows ``lo:hi`` of ``X`` (n, d), centred by
    ``shift`` in their own dtype then rounded to ``T``'s, into the first hi - lo
    columns of ``T`` (S, tile), statistic-major (a contiguous row each); ``s`` by
    ``layout``: packed x x^T (upper triangle row by row), x**2 or ||x||^2. ``reach``
    (tile,): raised to the largest ``|x|`` (centred) of each column position."""
    d = X.shape[1]
    width = hi - lo
    t = T[0]
    for b in range(width):
        t[b] = 1
    lanes = _BLOCK_BYTES // T.itemsize
    item = X.itemsize
    if (
        X.strides[1] == item
        and shift.strides[0] == shift.itemsize
        and (d >= lanes or X.strides[0] == d * item)
    ):
        # x in blocks transposed in registers (_centred_block, _centred_rows): 500k-32d's
        # rows 3.7x (float64) and 5x (float32) the speed of the loops below, 1m-2d's 2x
        # and 2.4x
        _centred_blocks(X, shift, lo, hi, T, reach, lanes)
    elif layout == _DIAG:
        _centred_by_rows(X, shift, lo, 0, width, T, reach)
    else:
        _centred_by_columns(X, shift, lo, width, 0, T, reach)
    if layout == _DIAG:
        # x**2 only where T has rows for it (BLAS's products read it); the compiled
        # products square x as they read it (axpy_squares, dot_squares), the same values,
        # and the tile's half the writes (1.5x this phase on 500k-32d, either dtype)
        if T.shape[0] > 1 + d:
            for i in range(d):
                xi, t = T[1 + i], T[1 + d + i]
                for b in range(width):
                    t[b] = xi[b] * xi[b]
        return
    if layout == _FULL:
        at = 1 + d
        for i in range(d):
            xi = T[1 + i]
            for j in range(i, d):
                xj = T[1 + j]
                t = T[at]
                for b in range(width):
                    t[b] = xi[b] * xj[b]
                at += 1
    else:  # spherical
        t = T[1 + d]
        for b in range(width):
            t[b] = 0
        for i in range(d):
            xi = T[1 + i]
            for b in range(width):
                t[b] += xi[b] * xi[b]


@_jit
def _centred_blocks(X: Any, shift: Any, lo: int, hi: int, T: Any, reach: Any, lanes: int) -> None:
    """x of :func:`statistics` (rows ``lo:hi`` of ``X``, whose rows are contiguous) in
    blocks of ``lanes`` rows: for d >= ``lanes``, by ``lanes`` features
    (:func:`_centred_block`), then the features past the last block by
    :func:`_centred_by_columns`; for fewer features, of all of them
    (:func:`_centred_rows`: the rows adjacent too); then the rows past the last block by
    :func:`_centred_by_rows`: the same values and reach as those scalar loops."""
    d = X.shape[1]
    width = hi - lo
    b = 0
    if d < lanes:
        while b + lanes <= width:
            _centred_rows(X, lo + b, shift, T, b, reach)  # type: ignore[call-arg]
            b += lanes
    else:
        full = d - d % lanes
        while b + lanes <= width:
            for i in range(0, full, lanes):
                _centred_block(X, lo + b, i, shift, T, b, reach)  # type: ignore[call-arg]
            b += lanes
        _centred_by_columns(X, shift, lo, b, full, T, reach)
    _centred_by_rows(X, shift, lo, b, width, T, reach)


@_jit
def _centred_by_rows(
    X: Any, shift: Any, lo: int, first: int, width: int, T: Any, reach: Any
) -> None:
    """x of :func:`statistics` for the tile's columns ``first:width`` (rows ``lo +
    first`` on of ``X``), every feature, row by row: a contiguous read of each row, 1.7x
    the column loops' speed in float64 at d = 32 on rows in cache (1.1x in float32)."""
    d = X.shape[1]
    for b in range(first, width):
        top = reach[b]
        for i in range(d):
            T[1 + i, b] = X[lo + b, i] - shift[i]
            v = abs(T[1 + i, b])  # rounded to T's dtype, as the square's factors
            if v > top:
                top = v
        reach[b] = top


@_jit
def _centred_by_columns(
    X: Any, shift: Any, lo: int, width: int, first: int, T: Any, reach: Any
) -> None:
    """x of :func:`statistics` for the features ``first:`` of the tile's columns
    ``0:width`` (rows ``lo`` on of ``X``), feature by feature: each a column of the rows
    as a 1-D view, 1.5x to 1.9x the speed of the 2-D index X[lo + b, i] (d = 2 and 8,
    either dtype), the same values."""
    rows = X[lo : lo + width]
    for i in range(first, X.shape[1]):
        t = T[1 + i]
        c = shift[i]
        column = rows[:, i]
        for b in range(width):
            t[b] = column[b] - c
        for b in range(width):
            a = abs(t[b])
            if a > reach[b]:
                reach[b] = a


@_jit
def axpy_wide(eta: Any, T: Any, out: Any) -> None:
    """:func:`axpy_product` eight components a loop (and its own loop for the rest): in
    float32 (16 lanes a vector, tiles of twice the rows) the four statistics' loads then
    feed 32 multiply-adds, 1.2x to 1.3x four components' speed (100k-8d, 200k-16d); in
    float64 (8 lanes) it is slower, and :func:`emkit.models._fused_kernels.tiling` leaves
    it out. Each sum's terms in the same order: the same bits as :func:`axpy_product`."""
    K = eta.shape[0]
    k = 0
    while k + 8 <= K:
        _axpy_eight(eta[k : k + 8], T, out[k : k + 8])
        k += 8
    if k < K:
        axpy_product(eta[k:], T, out[k:])


@_jit
def _axpy_eight(e: Any, T: Any, out: Any) -> None:
    """The eight components ``e`` (8, S) of :func:`axpy_wide` into ``out`` (8, n)."""
    S = e.shape[1]
    n = T.shape[1]
    o0, o1, o2, o3, o4, o5, o6, o7 = out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]
    t = T[0]
    for j in range(n):
        v = t[j]
        o0[j] = e[0, 0] * v
        o1[j] = e[1, 0] * v
        o2[j] = e[2, 0] * v
        o3[j] = e[3, 0] * v
        o4[j] = e[4, 0] * v
        o5[j] = e[5, 0] * v
        o6[j] = e[6, 0] * v
        o7[j] = e[7, 0] * v
    s = 1
    while s + 4 <= S:
        t0, t1, t2, t3 = T[s], T[s + 1], T[s + 2], T[s + 3]
        a0, a1, a2, a3 = e[0, s], e[0, s + 1], e[0, s + 2], e[0, s + 3]
        b0, b1, b2, b3 = e[1, s], e[1, s + 1], e[1, s + 2], e[1, s + 3]
        c0, c1, c2, c3 = e[2, s], e[2, s + 1], e[2, s + 2], e[2, s + 3]
        d0, d1, d2, d3 = e[3, s], e[3, s + 1], e[3, s + 2], e[3, s + 3]
        f0, f1, f2, f3 = e[4, s], e[4, s + 1], e[4, s + 2], e[4, s + 3]
        g0, g1, g2, g3 = e[5, s], e[5, s + 1], e[5, s + 2], e[5, s + 3]
        h0, h1, h2, h3 = e[6, s], e[6, s + 1], e[6, s + 2], e[6, s + 3]
        i0, i1, i2, i3 = e[7, s], e[7, s + 1], e[7, s + 2], e[7, s + 3]
        for j in range(n):
            v0, v1, v2, v3 = t0[j], t1[j], t2[j], t3[j]
            o0[j] = o0[j] + a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            o1[j] = o1[j] + b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
            o2[j] = o2[j] + c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
            o3[j] = o3[j] + d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3
            o4[j] = o4[j] + f0 * v0 + f1 * v1 + f2 * v2 + f3 * v3
            o5[j] = o5[j] + g0 * v0 + g1 * v1 + g2 * v2 + g3 * v3
            o6[j] = o6[j] + h0 * v0 + h1 * v1 + h2 * v2 + h3 * v3
            o7[j] = o7[j] + i0 * v0 + i1 * v1 + i2 * v2 + i3 * v3
        s += 4
    while s < S:
        t = T[s]
        a0, b0, c0, d0 = e[0, s], e[1, s], e[2, s], e[3, s]
        f0, g0, h0, i0 = e[4, s], e[5, s], e[6, s], e[7, s]
        for j in range(n):
            v = t[j]
            o0[j] += a0 * v
            o1[j] += b0 * v
            o2[j] += c0 * v
            o3[j] += d0 * v
            o4[j] += f0 * v
            o5[j] += g0 * v
            o6[j] += h0 * v
            o7[j] += i0 * v
        s += 1


@_jit
def axpy_product(eta: Any, T: Any, out: Any) -> None:
    """``out`` (K, n) = ``eta`` (K, S) @ ``T`` (S, n): for each k the sum over s of
    eta[k, s] T[s] as vector loops over the tile, in s order (a multiply-add a term).
    Four components and four statistics a loop (16 multiply-adds for four loads and four
    stores of ``out`` a vector), so the loop runs at the multiply-adds' speed, not the
    stores' (a component and a statistic a loop: a store a multiply-add, half of it)."""
    K, S = eta.shape
    n = T.shape[1]
    k = 0
    while k + 4 <= K:
        o0, o1, o2, o3 = out[k], out[k + 1], out[k + 2], out[k + 3]
        e = eta[k : k + 4]
        t = T[0]
        for j in range(n):
            v = t[j]
            o0[j] = e[0, 0] * v
            o1[j] = e[1, 0] * v
            o2[j] = e[2, 0] * v
            o3[j] = e[3, 0] * v
        s = 1
        while s + 4 <= S:
            t0, t1, t2, t3 = T[s], T[s + 1], T[s + 2], T[s + 3]
            a0, a1, a2, a3 = e[0, s], e[0, s + 1], e[0, s + 2], e[0, s + 3]
            b0, b1, b2, b3 = e[1, s], e[1, s + 1], e[1, s + 2], e[1, s + 3]
            c0, c1, c2, c3 = e[2, s], e[2, s + 1], e[2, s + 2], e[2, s + 3]
            d0, d1, d2, d3 = e[3, s], e[3, s + 1], e[3, s + 2], e[3, s + 3]
            for j in range(n):
                v0, v1, v2, v3 = t0[j], t1[j], t2[j], t3[j]
                o0[j] = o0[j] + a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                o1[j] = o1[j] + b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
                o2[j] = o2[j] + c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
                o3[j] = o3[j] + d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3
            s += 4
        while s < S:
            t = T[s]
            a0, b0, c0, d0 = e[0, s], e[1, s], e[2, s], e[3, s]
            for j in range(n):
                v = t[j]
                o0[j] += a0 * v
                o1[j] += b0 * v
                o2[j] += c0 * v
                o3[j] += d0 * v
            s += 1
        k += 4
    while k < K:
        row = out[k]
        a0 = eta[k, 0]
        t = T[0]
        for j in range(n):
            row[j] = a0 * t[j]
        for s in range(1, S):
            a0 = eta[k, s]
            t = T[s]
            for j in range(n):
                row[j] += a0 * t[j]
        k += 1


@_jit
def axpy_squares(eta: Any, T: Any, out: Any) -> None:
    """:func:`axpy_product` for the diagonal layout without the squares laid out:
    ``out`` (K, n) = ``eta`` (K, 1 + 2d) @ (1, x, x**2), ``T`` (at least 1 + d, n)
    holding (1, x), each feature's two terms in Horner's form,
    ``(eta_k,i + eta_k,d+i x_i) x_i``: two multiply-adds a feature and component as
    eta @ T takes, none to square x, and half the tile's rows read (the squares in the
    loop cost a multiply for four multiply-adds: 1.2x this phase on 500k-32d). The terms
    are added in feature order; the log-densities are eta @ T's to round-off (the
    tests: 1e-12 relative to the terms' sizes in float64)."""
    K, S = eta.shape
    d = (S - 1) // 2
    n = out.shape[1]
    k = 0
    while k + 4 <= K:
        o0, o1, o2, o3 = out[k], out[k + 1], out[k + 2], out[k + 3]
        e = eta[k : k + 4]
        t = T[0]
        for j in range(n):
            v = t[j]
            o0[j] = e[0, 0] * v
            o1[j] = e[1, 0] * v
            o2[j] = e[2, 0] * v
            o3[j] = e[3, 0] * v
        i = 1
        while i + 2 <= 1 + d:
            t0, t1 = T[i], T[i + 1]
            a0, a1, p0, p1 = e[0, i], e[0, i + 1], e[0, d + i], e[0, d + i + 1]
            b0, b1, q0, q1 = e[1, i], e[1, i + 1], e[1, d + i], e[1, d + i + 1]
            c0, c1, r0, r1 = e[2, i], e[2, i + 1], e[2, d + i], e[2, d + i + 1]
            d0, d1, s0, s1 = e[3, i], e[3, i + 1], e[3, d + i], e[3, d + i + 1]
            for j in range(n):
                v0, v1 = t0[j], t1[j]
                o0[j] = o0[j] + (a0 + p0 * v0) * v0 + (a1 + p1 * v1) * v1
                o1[j] = o1[j] + (b0 + q0 * v0) * v0 + (b1 + q1 * v1) * v1
                o2[j] = o2[j] + (c0 + r0 * v0) * v0 + (c1 + r1 * v1) * v1
                o3[j] = o3[j] + (d0 + s0 * v0) * v0 + (d1 + s1 * v1) * v1
            i += 2
        if i < 1 + d:
            t0 = T[i]
            a0, b0, c0, d0 = e[0, i], e[1, i], e[2, i], e[3, i]
            p0, q0, r0, s0 = e[0, d + i], e[1, d + i], e[2, d + i], e[3, d + i]
            for j in range(n):
                v0 = t0[j]
                o0[j] = o0[j] + (a0 + p0 * v0) * v0
                o1[j] = o1[j] + (b0 + q0 * v0) * v0
                o2[j] = o2[j] + (c0 + r0 * v0) * v0
                o3[j] = o3[j] + (d0 + s0 * v0) * v0
        k += 4
    while k < K:
        row = out[k]
        a0 = eta[k, 0]
        t = T[0]
        for j in range(n):
            row[j] = a0 * t[j]
        for i in range(1, 1 + d):
            a0, p0 = eta[k, i], eta[k, d + i]
            t = T[i]
            for j in range(n):
                row[j] += (a0 + p0 * t[j]) * t[j]
        k += 1


@_jit_lanes
def dots_wide(R: Any, T: Any, zero: Any, sums: Any) -> None:
    """:func:`dot_products` against four rows of T a loop (and its own loops for the
    rest): eight loads for 16 multiply-adds, in float32 1.15x to 1.2x the speed of two
    rows (100k-8d, 200k-16d); float64 keeps :func:`dot_products`, its sums' lanes and so
    its bits."""
    K = R.shape[0]
    S = T.shape[0]
    k = 0
    while k + 4 <= K:
        r0, r1, r2, r3 = R[k], R[k + 1], R[k + 2], R[k + 3]
        s = 0
        while s + 4 <= S:
            _dots_four(r0, r1, r2, r3, T[s : s + 4], zero, sums[k : k + 4, s : s + 4])
            s += 4
        if s < S:
            dot_products(R[k : k + 4], T[s:], zero, sums[k : k + 4, s:])
        k += 4
    if k < K:
        dot_products(R[k:], T, zero, sums[k:])


@_jit_lanes
def _dots_four(r0: Any, r1: Any, r2: Any, r3: Any, T: Any, zero: Any, sums: Any) -> None:
    """``sums`` (4, 4) += the rows ``r0`` to ``r3`` against the four rows of ``T``, each
    sum in vector lanes (a block of :func:`dot_products`)."""
    n = r0.shape[0]
    t, u, x, y = T[0], T[1], T[2], T[3]
    a0, a1, a2, a3 = zero, zero, zero, zero
    b0, b1, b2, b3 = zero, zero, zero, zero
    c0, c1, c2, c3 = zero, zero, zero, zero
    d0, d1, d2, d3 = zero, zero, zero, zero
    for j in range(n):
        p0, p1, p2, p3 = r0[j], r1[j], r2[j], r3[j]
        v, w = t[j], u[j]
        a0 += p0 * v
        a1 += p1 * v
        a2 += p2 * v
        a3 += p3 * v
        b0 += p0 * w
        b1 += p1 * w
        b2 += p2 * w
        b3 += p3 * w
        v, w = x[j], y[j]
        c0 += p0 * v
        c1 += p1 * v
        c2 += p2 * v
        c3 += p3 * v
        d0 += p0 * w
        d1 += p1 * w
        d2 += p2 * w
        d3 += p3 * w
    sums[0, 0] += a0
    sums[1, 0] += a1
    sums[2, 0] += a2
    sums[3, 0] += a3
    sums[0, 1] += b0
    sums[1, 1] += b1
    sums[2, 1] += b2
    sums[3, 1] += b3
    sums[0, 2] += c0
    sums[1, 2] += c1
    sums[2, 2] += c2
    sums[3, 2] += c3
    sums[0, 3] += d0
    sums[1, 3] += d1
    sums[2, 3] += d2
    sums[3, 3] += d3


@_jit_lanes
def dot_products(R: Any, T: Any, zero: Any, sums: Any) -> None:
    """``sums`` (K, S) float64 += ``R`` (K, n) @ ``T`` (S, n)^T, each of the K S sums
    over n in ``R``'s dtype in vector lanes (reassociated: partial sums a lane, added at
    the end), four rows of R at a time against two rows of T (six loads for eight
    multiply-adds a vector; against one row, five loads for four: the loads' speed, not
    the multiply-adds'). BLAS runs these short, wide products at a fraction of its peak
    (bench/profile_fused.py, the phase: 1.8x to 6x faster in float32, 1.6x to 3x in
    float64)."""
    K, n = R.shape
    S = T.shape[0]
    k = 0
    while k + 4 <= K:
        r0, r1, r2, r3 = R[k], R[k + 1], R[k + 2], R[k + 3]
        s = 0
        while s + 2 <= S:
            t, u = T[s], T[s + 1]
            a0, a1, a2, a3 = zero, zero, zero, zero
            b0, b1, b2, b3 = zero, zero, zero, zero
            for j in range(n):
                v, w = t[j], u[j]
                a0 += r0[j] * v
                a1 += r1[j] * v
                a2 += r2[j] * v
                a3 += r3[j] * v
                b0 += r0[j] * w
                b1 += r1[j] * w
                b2 += r2[j] * w
                b3 += r3[j] * w
            sums[k, s] += a0
            sums[k + 1, s] += a1
            sums[k + 2, s] += a2
            sums[k + 3, s] += a3
            sums[k, s + 1] += b0
            sums[k + 1, s + 1] += b1
            sums[k + 2, s + 1] += b2
            sums[k + 3, s + 1] += b3
            s += 2
        if s < S:
            t = T[s]
            a0, a1, a2, a3 = zero, zero, zero, zero
            for j in range(n):
                v = t[j]
                a0 += r0[j] * v
                a1 += r1[j] * v
                a2 += r2[j] * v
                a3 += r3[j] * v
            sums[k, s] += a0
            sums[k + 1, s] += a1
            sums[k + 2, s] += a2
            sums[k + 3, s] += a3
        k += 4
    while k < K:
        r0 = R[k]
        for s in range(S):
            t = T[s]
            a0 = zero
            for j in range(n):
                a0 += r0[j] * t[j]
            sums[k, s] += a0
        k += 1


@_jit_lanes
def dot_squares(R: Any, T: Any, zero: Any, sums: Any) -> None:
    """:func:`dot_products` for the diagonal layout without the squares laid out:
    ``sums`` (K, 1 + 2d) float64 += ``R`` (K, n) @ (1, x, x**2)^T, ``T`` (at least
    1 + d, n) holding (1, x). Eight rows of R (then four, then one) against one row of x
    and its square (nine loads and a multiply for 16 multiply-adds a vector, where
    dot_products' four rows against two of T take six loads for eight: 1.05-1.1x the
    four rows' speed on 500k-32d), each sum in R's dtype in vector lanes (reassociated,
    as dot_products')."""
    K, n = R.shape
    d = (sums.shape[1] - 1) // 2
    k = 0
    while k + 8 <= K:
        r0, r1, r2, r3 = R[k], R[k + 1], R[k + 2], R[k + 3]
        r4, r5, r6, r7 = R[k + 4], R[k + 5], R[k + 6], R[k + 7]
        for i in range(1 + d):
            t = T[i]
            a0, a1, a2, a3, a4, a5, a6, a7 = zero, zero, zero, zero, zero, zero, zero, zero
            b0, b1, b2, b3, b4, b5, b6, b7 = zero, zero, zero, zero, zero, zero, zero, zero
            for j in range(n):
                v = t[j]
                w = v * v  # i = 0: the constant 1, whose square is not used
                a0 += r0[j] * v
                a1 += r1[j] * v
                a2 += r2[j] * v
                a3 += r3[j] * v
                a4 += r4[j] * v
                a5 += r5[j] * v
                a6 += r6[j] * v
                a7 += r7[j] * v
                b0 += r0[j] * w
                b1 += r1[j] * w
                b2 += r2[j] * w
                b3 += r3[j] * w
                b4 += r4[j] * w
                b5 += r5[j] * w
                b6 += r6[j] * w
                b7 += r7[j] * w
            for q, (a, b_) in enumerate(
                ((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6), (a7, b7))
            ):
                sums[k + q, i] += a
                if i > 0:
                    sums[k + q, d + i] += b_
        k += 8
    if k + 4 <= K:
        r0, r1, r2, r3 = R[k], R[k + 1], R[k + 2], R[k + 3]
        for i in range(1 + d):
            t = T[i]
            a0, a1, a2, a3 = zero, zero, zero, zero
            b0, b1, b2, b3 = zero, zero, zero, zero
            for j in range(n):
                v = t[j]
                w = v * v
                a0 += r0[j] * v
                a1 += r1[j] * v
                a2 += r2[j] * v
                a3 += r3[j] * v
                b0 += r0[j] * w
                b1 += r1[j] * w
                b2 += r2[j] * w
                b3 += r3[j] * w
            for q, (a, b_) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3))):
                sums[k + q, i] += a
                if i > 0:
                    sums[k + q, d + i] += b_
        k += 4
    while k < K:
        r0 = R[k]
        t = T[0]
        a0 = zero
        for j in range(n):
            a0 += r0[j] * t[j]
        sums[k, 0] += a0
        for i in range(1, 1 + d):
            t = T[i]
            a0, b0 = zero, zero
            for j in range(n):
                v = t[j]
                a0 += r0[j] * v
                b0 += r0[j] * (v * v)
            sums[k, i] += a0
            sums[k, d + i] += b0
        k += 1


@_inline
def _tiles(
    X: Any,
    shift: Any,
    eta: Any,
    layout: int,
    floor: Any,
    weights: Any,
    coef: Any,
    bits: Any,
    bias: Any,
    shift_bits: Any,
    sums: Any,
    m: Any,
    total: Any,
    reach: Any,
    transposed: bool,
    axpy: bool,
    dots: bool,
    wide: bool,
    phases: int,
) -> None:
    """:func:`gaussian_e_step`'s loop, compiled into each function that calls it (Numba's
    inlining): where those give the layout and the products as constants, the branches
    they do not take and the loops only those call are left out of their machine code."""
    n = X.shape[0]
    K, S = eta.shape
    tile = bits.shape[0]
    poly = np.empty(tile, dtype=eta.dtype)
    # diag with both products compiled: T holds (1, x), the products square x
    squares = layout == _DIAG and axpy and dots
    stored = 1 + (S - 1) // 2 if squares else S
    whole = np.empty((stored, tile), dtype=eta.dtype)
    for lo in range(0, n, tile):
        hi = min(lo + tile, n)
        T = whole if hi - lo == tile else np.empty((stored, hi - lo), dtype=eta.dtype)
        statistics(X, shift, lo, hi, layout, T, reach)
        if phases < 2:
            continue
        if squares:
            lp = np.empty((K, hi - lo), dtype=eta.dtype)
            axpy_squares(eta, T, lp)
        elif axpy:
            lp = np.empty((K, hi - lo), dtype=eta.dtype)
            if wide:
                axpy_wide(eta, T, lp)
            else:
                axpy_product(eta, T, lp)
        else:
            lp = np.dot(eta, T)  # (K, width): log p(x, k)
        if phases < 3:
            continue
        exp_normalize(
            lp, 0, hi - lo, floor, weights[lo:hi], m[lo:hi], total[lo:hi], coef, bits, poly,
            bias, shift_bits,
        )  # fmt: skip
        if phases < 4:
            continue
        # sum_b r_kb T_b, in the rows' dtype
        if squares:
            dot_squares(lp, T, coef[18], sums)
        elif dots:
            if wide:
                dots_wide(lp, T, coef[18], sums)
            else:
                dot_products(lp, T, coef[18], sums)
        elif transposed:
            part_t = np.dot(T, lp.T)  # (S, K)
            for s in range(S):
                for k in range(K):
                    sums[k, s] += part_t[s, k]
        else:
            part = np.dot(lp, T.T)  # (K, S)
            for k in range(K):
                for s in range(S):
                    sums[k, s] += part[k, s]


@_jit
def gaussian_e_step(
    X: Any,
    shift: Any,
    eta: Any,
    layout: int,
    floor: Any,
    weights: Any,
    coef: Any,
    bits: Any,
    bias: Any,
    shift_bits: Any,
    sums: Any,
    m: Any,
    total: Any,
    reach: Any,
    transposed: bool,
    axpy: bool,
    dots: bool,
    wide: bool,
    phases: int,
) -> None:
    """The loop of :func:`emkit.models._fused_kernels.gaussian_e_step` over tiles of
    ``bits.shape[0]`` rows: (1) :func:`statistics`, (2) the first product, (3)
    :func:`exp_normalize`, (4) the second product and the tile's sums added to ``sums``
    (float64). ``shift_bits``: the exponent's position (``shift`` centres the rows).
    ``transposed``: the second product is T @ r^T (S, K) instead of r @ T^T (K, S) (the
    same sums; BLAS reads r^T as a transpose, no copy). ``axpy``: the first product by
    :func:`axpy_product` instead of BLAS. ``dots``: the second product by
    :func:`dot_products` instead of BLAS (its sums reassociated). ``wide``: the compiled
    products in their wider blocks (:func:`axpy_wide`, :func:`dots_wide`). ``phases``: 4
    runs the step; ``bench/profile_fused.py`` stops after 1, 2 and 3 to time each phase as
    a difference (a test per tile, nothing beside the step's work).

    Every plan runs here; the plans fits take (both products compiled) run the same loop
    through :data:`COMPILED_STEPS`, whose functions hold only their layout's code."""
    _tiles(
        X, shift, eta, layout, floor, weights, coef, bits, bias, shift_bits, sums, m, total,
        reach, transposed, axpy, dots, wide, phases,
    )  # fmt: skip


# :func:`gaussian_e_step` with both products compiled (the plans fits take), for one
# layout (and float32's wider blocks): the layout and the products are constants of each
# function's machine code, which holds about half of gaussian_e_step's (100k-8d's: 10k
# LLVM instructions of 19k), so that a process's first fit loads it from Numba's cache
# in half the time (the kernel line of bench/profile_fit.py --cold: 100k-8d 18.0 -> 8.6
# ms, 500k-32d diag 18.4 -> 9.0 ms). Four functions, not one of literal arguments
# (numba.literally): those are typed anew in every process (~0.3 s a first call)


@_jit
def _full_step(
    X: Any, shift: Any, eta: Any, floor: Any, weights: Any, coef: Any, bits: Any,
    bias: Any, shift_bits: Any, sums: Any, m: Any, total: Any, reach: Any,
) -> None:  # fmt: skip
    _tiles(
        X, shift, eta, _FULL, floor, weights, coef, bits, bias, shift_bits, sums, m, total,
        reach, False, True, True, False, 4,
    )  # fmt: skip


@_jit
def _full_wide_step(
    X: Any, shift: Any, eta: Any, floor: Any, weights: Any, coef: Any, bits: Any,
    bias: Any, shift_bits: Any, sums: Any, m: Any, total: Any, reach: Any,
) -> None:  # fmt: skip
    _tiles(
        X, shift, eta, _FULL, floor, weights, coef, bits, bias, shift_bits, sums, m, total,
        reach, False, True, True, True, 4,
    )  # fmt: skip


@_jit
def _diag_step(
    X: Any, shift: Any, eta: Any, floor: Any, weights: Any, coef: Any, bits: Any,
    bias: Any, shift_bits: Any, sums: Any, m: Any, total: Any, reach: Any,
) -> None:  # fmt: skip
    _tiles(
        X, shift, eta, _DIAG, floor, weights, coef, bits, bias, shift_bits, sums, m, total,
        reach, False, True, True, False, 4,
    )  # fmt: skip


@_jit
def _spherical_step(
    X: Any, shift: Any, eta: Any, floor: Any, weights: Any, coef: Any, bits: Any,
    bias: Any, shift_bits: Any, sums: Any, m: Any, total: Any, reach: Any,
) -> None:  # fmt: skip
    _tiles(
        X, shift, eta, _SPHERICAL, floor, weights, coef, bits, bias, shift_bits, sums, m, total,
        reach, False, True, True, False, 4,
    )  # fmt: skip


# (layout index, wide) -> its function
COMPILED_STEPS = {
    (_FULL, False): _full_step,
    (_FULL, True): _full_wide_step,
    (_DIAG, False): _diag_step,
    (_SPHERICAL, False): _spherical_step,
}
