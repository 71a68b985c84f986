"""The plots of :mod:`emkit.plot`; matplotlib is imported in the functions, when called."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.utils.validation import check_is_fitted

from emkit.exceptions import InputError

__all__ = ["bic", "classification", "density", "palette", "trace", "uncertainty"]

Color = tuple[float, float, float]

_EXTRA = 'pip install "emkit[plot]"'
# (1 + sqrt 5) / 2 - 1: successive hues a golden turn apart never repeat and stay spread
_GOLDEN = 0.6180339887498949
# saturation and value of the generated colours, in turn, so that neighbours in hue differ
# in lightness too
_SHADES = ((0.85, 0.75), (0.55, 0.95), (0.95, 0.5), (0.4, 0.7))
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "*", "p", "d", "8")


def _matplotlib() -> Any:
    """The matplotlib module, or an ImportError that says how to install it."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            f"emkit.plot draws with matplotlib, which is not installed: {_EXTRA}."
        ) from exc
    return matplotlib


def _new_axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _matplotlib()
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _new_figure(fig: Any, size: float) -> Any:
    if fig is not None:
        return fig
    _matplotlib()
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(size + 1.5, size), layout="constrained")


def palette(n_colors: int) -> list[Color]:
    """``n_colors`` distinct RGB colours: matplotlib's ``tab10`` up to 10, ``tab20`` up
    to 20, then colours a golden turn of hue apart (in four shades), each kept only if it
    differs from all before it.

    Parameters
    ----------
    n_colors : int
        How many colours, >= 0.

    Returns
    -------
    list of (r, g, b) tuples with values in [0, 1]

    Examples
    --------
    >>> colours = palette(25)
    >>> len(colours), len(set(colours))
    (25, 25)
    """
    if isinstance(n_colors, bool) or not isinstance(n_colors, int | np.integer) or n_colors < 0:
        raise InputError(f"n_colors must be an integer >= 0, got {n_colors!r}.")
    mpl = _matplotlib()
    base = "tab10" if n_colors <= 10 else "tab20"
    colours: list[Color] = [tuple(c[:3]) for c in mpl.colormaps[base].colors][:n_colors]
    separation, i, misses = 0.2, 0, 0
    while len(colours) < n_colors:
        s, v = _SHADES[i % len(_SHADES)]
        candidate = colorsys.hsv_to_rgb((i * _GOLDEN) % 1.0, s, v)
        i += 1
        nearest = min(float(np.linalg.norm(np.subtract(candidate, c))) for c in colours)
        if nearest >= separation:
            colours.append(candidate)
            misses = 0
        else:
            misses += 1
            if misses > 50:  # crowded: accept closer colours
                separation, misses = 0.8 * separation, 0
    return colours


def trace(model: Any, ax: Any = None) -> Any:
    """The EM trace of a fitted model: the objective and the lower bound per iteration,
    the gap between them shaded.

    The objective at iteration t is the log-likelihood (plus the log prior for MAP-EM)
    per sample of the parameters theta_t, where the E-step's bound L(q_t, theta_t)
    touches it; the M-step lifts the bound to L(q_t, theta_{t+1}), drawn at t + 1,
    below the next objective by KL(q_t || p(z | x, theta_{t+1})), the shaded gap the
    next E-step closes (see :class:`~emkit.inference.em.EMTrace`). Where the fit
    recorded no bound (SQUAREM, online updates) only the objective is drawn; for
    variational EM the objective is the bound (the ELBO). For Monte-Carlo EM the draws a
    row of each iteration (``trace_.draws``) are drawn as a step line on a second axis.

    Parameters
    ----------
    model : fitted estimator
        Any emkit estimator fitted by EM (it has ``trace_``).
    ax : matplotlib Axes, optional
        Where to draw; a new pyplot figure when None.

    Returns
    -------
    matplotlib Axes
    """
    _matplotlib()
    check_is_fitted(model)
    em_trace = getattr(model, "trace_", None)
    if em_trace is None:
        raise InputError(
            f"{type(model).__name__} has no trace_: emkit.plot.trace draws the EM trace of "
            "an emkit estimator fitted by EM."
        )
    ax = _new_axes(ax)
    objective = np.asarray(em_trace.objective, dtype=np.float64)
    bound = np.asarray(em_trace.bound, dtype=np.float64)
    T = objective.shape[0]
    iterations = np.arange(1, T + 1)
    has_bound = bound.shape[0] == T and bool(np.isfinite(bound).any())
    if has_bound and np.array_equal(bound, objective, equal_nan=True):
        ax.plot(iterations, objective, marker="o", markersize=3, color="C0", label="ELBO")
        has_bound = False
    else:
        ax.plot(iterations, objective, marker="o", markersize=3, color="C0", label="log-likelihood")
    if has_bound:
        # bound[t] = L(q_t, theta_{t+1}): drawn at the parameters it evaluates
        ax.plot(
            iterations + 1,
            bound,
            marker=".",
            markersize=4,
            linestyle="--",
            color="C1",
            label="lower bound L(q, theta) after the M-step",
        )
        ax.fill_between(
            iterations[1:],
            bound[:-1],
            objective[1:],
            color="C1",
            alpha=0.25,
            label="KL(q || p(z | x, theta))",
        )
    ax.set_xlabel("iteration")
    ax.set_ylabel("per-sample objective (nats)")
    ax.set_title("EM: the E-step closes the gap, the M-step lifts the bound")
    ax.legend(loc="lower right")
    draws = np.asarray(getattr(em_trace, "draws", np.zeros(0)))
    if draws.shape[0] == T and T:
        # Monte-Carlo EM: the draws a row each iteration, on an axis of their own
        counts = ax.twinx()
        counts.step(iterations, draws, where="mid", color="C2", alpha=0.6)
        counts.set_ylabel("Monte-Carlo draws a row", color="C2")
        counts.set_ylim(0, 1.1 * float(draws.max()))
    return ax


def _column(table: Any, key: str) -> NDArray[Any]:
    try:
        values = table[key]
    except (KeyError, IndexError, TypeError, ValueError):
        raise InputError(
            f"results has no {key!r}: emkit.plot.bic takes a mapping (or a fitted model "
            "with results_) with the keys 'n_components', 'covariance_type' and 'bic', "
            "one entry a fitted cell."
        ) from None
    return np.asarray(values)


def bic(results: Any, ax: Any = None, *, best: str | None = "max") -> Any:
    """BIC curves: one line a covariance model, BIC against the number of components.

    Parameters
    ----------
    results : mapping or fitted model
        Columns ``"n_components"``, ``"covariance_type"`` and ``"bic"`` of equal length,
        one entry a fitted cell (NaN where a cell failed: the line breaks there), as in
        the ``results_`` of a model-selection estimator, which can be passed itself; a
        pandas DataFrame with these columns works too.
    ax : matplotlib Axes, optional
        Where to draw; a new pyplot figure when None.
    best : {"max", "min"} or None, default="max"
        Which cell to mark as the best: the largest BIC for mclust's convention
        (2 log L - p log n, higher is better), the smallest for scikit-learn's
        ``bic()`` (-2 log L + p log n); None marks none.

    Returns
    -------
    matplotlib Axes
    """
    _matplotlib()
    if best not in ("max", "min", None):
        raise InputError(
            f"best must be 'max' (mclust's BIC, higher is better), 'min' (scikit-learn's "
            f"bic(), lower is better) or None, got {best!r}."
        )
    table = getattr(results, "results_", results)
    n_components = _column(table, "n_components").astype(np.float64)
    names = _column(table, "covariance_type").astype(str)
    values = _column(table, "bic").astype(np.float64)
    if not n_components.ndim == names.ndim == values.ndim == 1 or not (
        n_components.shape == names.shape == values.shape
    ):
        raise InputError(
            "results' 'n_components', 'covariance_type' and 'bic' must be 1-D of one length, "
            f"got shapes {n_components.shape}, {names.shape} and {values.shape}."
        )
    ax = _new_axes(ax)
    models = list(dict.fromkeys(names.tolist()))
    colours = palette(len(models))
    for i, name in enumerate(models):
        rows = np.flatnonzero(names == name)
        rows = rows[np.argsort(n_components[rows], kind="stable")]
        ax.plot(
            n_components[rows],
            values[rows],
            marker=_MARKERS[i % len(_MARKERS)],
            color=colours[i],
            label=name,
        )
    finite = np.isfinite(values)
    if best is not None and finite.any():
        pick = np.where(finite, values, -np.inf if best == "max" else np.inf)
        k = int(np.argmax(pick) if best == "max" else np.argmin(pick))
        ax.scatter(
            [n_components[k]],
            [values[k]],
            s=220,
            marker="*",
            color="black",
            zorder=3,
            label=f"best: {names[k]}, {int(n_components[k])}",
        )
    ax.set_xlabel("number of components")
    ax.set_ylabel("BIC")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(title="model", ncol=2 if len(models) > 7 else 1, fontsize="small")
    return ax


def _as_table(model: Any, X: Any) -> tuple[NDArray[np.float64], list[str]]:
    """X as float columns for drawing (categories as their codes) and the column names."""
    columns = getattr(X, "columns", None)
    if columns is not None:
        names = [str(c) for c in columns]
        parts = []
        for c in columns:
            col = X[c]
            if str(col.dtype) == "category":
                parts.append(np.where(col.isna(), np.nan, col.cat.codes).astype(np.float64))
            else:
                parts.append(np.asarray(col, dtype=np.float64))
        return np.column_stack(parts), names
    values = np.asarray(X, dtype=np.float64)
    if values.ndim != 2:
        raise InputError(f"X must be 2-D (n_samples, n_features), got shape {values.shape}.")
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None and len(fitted) == values.shape[1]:
        return values, [str(n) for n in fitted]
    return values, [f"x{j}" for j in range(values.shape[1])]


def _columns(columns: Any, names: Sequence[str], what: str = "columns") -> list[int]:
    """Column indices from indices (negative from the end) or names, checked."""
    d = len(names)
    if columns is None:
        return list(range(d))
    if isinstance(columns, str | int | np.integer):
        columns = [columns]
    picked: list[int] = []
    for i, c in enumerate(columns):
        if isinstance(c, str):
            if c not in names:
                raise InputError(
                    f"{what}[{i}] = {c!r} is not a column of X, whose columns are "
                    f"{list(names)}; pass names or indices of X's columns."
                )
            j = list(names).index(c)
        elif isinstance(c, int | np.integer) and not isinstance(c, bool) and -d <= c < d:
            j = int(c) % d
        else:
            raise InputError(
                f"{what}[{i}] = {c!r} is out of range: X has {d} columns (indices 0 to "
                f"{d - 1}, or their names); pass columns of X."
            )
        if j in picked:
            raise InputError(f"{what} names column {names[j]!r} twice; pass each once.")
        picked.append(j)
    if not picked:
        raise InputError(f"{what} is empty; pass at least one column of X (None: all).")
    return picked


def _n_clusters(model: Any, labels: NDArray[np.intp]) -> int:
    for name in ("n_components", "n_clusters"):
        value = getattr(model, name, None)
        if isinstance(value, int | np.integer):
            return int(value)
    return int(labels.max()) + 1 if labels.size else 0


def _pairs(fig: Any, columns: list[int], names: Sequence[str]) -> NDArray[Any]:
    """A p x p grid of axes in ``fig``, labelled with the columns' names on the edges."""
    p = len(columns)
    axes = np.asarray(fig.subplots(p, p, squeeze=False))
    for i in range(p):
        for j in range(p):
            ax = axes[i, j]
            if i == p - 1:
                ax.set_xlabel(names[columns[j]])
            else:
                ax.tick_params(labelbottom=False)
            if j == 0:
                ax.set_ylabel(names[columns[i]])
            else:
                ax.tick_params(labelleft=False)
    return axes


def classification(model: Any, X: Any, columns: Any = None, fig: Any = None) -> Any:
    """The fitted model's classification of ``X`` on a pairs plot of its columns.

    Off the diagonal, one column against another, each row coloured by its predicted
    component (:func:`palette`: distinct beyond ten); on the diagonal, each column's
    histogram stacked by component. A legend names the components.

    Parameters
    ----------
    model : fitted estimator
        Any emkit clustering estimator (it has ``predict``).
    X : array-like or DataFrame of shape (n_samples, n_features)
        The rows to classify, as the model was fitted on.
    columns : sequence of int or str, optional
        The columns to draw, by index or name (default: all).
    fig : matplotlib Figure, optional
        Where to draw; a new pyplot figure when None.

    Returns
    -------
    matplotlib Figure
    """
    _matplotlib()
    check_is_fitted(model)
    values, names = _as_table(model, X)
    picked = _columns(columns, names)
    labels = np.asarray(model.predict(X), dtype=np.intp)
    K = _n_clusters(model, labels)
    colours = palette(K)
    fig = _new_figure(fig, 2.2 * len(picked) + 1.0)
    axes = _pairs(fig, picked, names)
    present = [k for k in range(K) if np.any(labels == k)]
    handles = []
    for i, ci in enumerate(picked):
        for j, cj in enumerate(picked):
            ax = axes[i, j]
            if i == j:
                groups = [values[labels == k, ci] for k in present]
                groups = [g[np.isfinite(g)] for g in groups]
                ax.hist(groups, bins=20, stacked=True, color=[colours[k] for k in present])
                continue
            for k in present:
                rows = labels == k
                handle = ax.scatter(
                    values[rows, cj], values[rows, ci], s=8, color=colours[k], linewidths=0
                )
                if i == 0 and j == 1:
                    handles.append(handle)
    if not handles:  # one column: the histograms' patches name the components
        from matplotlib.patches import Patch

        handles = [Patch(color=colours[k]) for k in present]
    constrained = fig.get_layout_engine() is not None
    if not constrained:  # room on the right for the legend
        fig.subplots_adjust(right=0.75 if len(present) < 20 else 0.6)
    fig.legend(
        handles,
        [f"component {k}" for k in present],
        loc="outside right upper" if constrained else "upper right",
        title=f"{K} components",
        fontsize="small",
        ncol=1 + len(present) // 20,
    )
    fig.suptitle(f"Classification by {type(model).__name__}")
    return fig


def uncertainty(model: Any, X: Any, columns: Any = None, fig: Any = None) -> Any:
    """The uncertainty of the fitted model's classification of ``X``, 1 - max_k p(k | x),
    on a pairs plot of its columns: the more uncertain a row, the larger and brighter.

    Parameters
    ----------
    model : fitted estimator
        An emkit mixture (it has ``predict_proba``).
    X : array-like or DataFrame of shape (n_samples, n_features)
        The rows, as the model was fitted on.
    columns : sequence of int or str, optional
        The columns to draw, by index or name (default: all).
    fig : matplotlib Figure, optional
        Where to draw; a new pyplot figure when None.

    Returns
    -------
    matplotlib Figure
    """
    _matplotlib()
    check_is_fitted(model)
    if not hasattr(model, "predict_proba"):
        raise InputError(
            f"{type(model).__name__} has no predict_proba: the uncertainty of a "
            "classification needs posterior probabilities (a mixture). Use "
            "emkit.plot.classification for hard assignments."
        )
    values, names = _as_table(model, X)
    picked = _columns(columns, names)
    proba = np.asarray(model.predict_proba(X), dtype=np.float64)
    u = 1.0 - proba.max(axis=1)
    top = max(1.0 - 1.0 / max(proba.shape[1], 1), 1e-12)  # the largest uncertainty possible
    sizes = 4.0 + 60.0 * u / top
    fig = _new_figure(fig, 2.2 * len(picked) + 1.0)
    axes = _pairs(fig, picked, names)
    mappable = None
    for i, ci in enumerate(picked):
        for j, cj in enumerate(picked):
            ax = axes[i, j]
            if i == j:
                column = values[:, ci]
                ax.hist(column[np.isfinite(column)], bins=20, color="0.6")
                continue
            order = np.argsort(u, kind="stable")  # the uncertain rows drawn on top
            mappable = ax.scatter(
                values[order, cj],
                values[order, ci],
                s=sizes[order],
                c=u[order],
                cmap="viridis",
                vmin=0.0,
                vmax=top,
                linewidths=0,
            )
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), label="uncertainty 1 - max p(k | x)")
    fig.suptitle(f"Uncertainty of the classification by {type(model).__name__}")
    return fig


def density(
    model: Any,
    X: Any,
    columns: Any = (0, 1),
    ax: Any = None,
    *,
    levels: int = 10,
    grid: int = 100,
) -> Any:
    """Contours of the fitted density on two columns of ``X`` (a curve for one), over
    the data.

    With more columns in the model than drawn, the density is the marginal over the
    others: the grid's other columns are missing values (NaN), which the model's
    ``score_samples`` integrates out exactly (Gaussian and Student-t marginals,
    independent columns dropped).

    Parameters
    ----------
    model : fitted estimator
        An emkit density estimator (it has ``score_samples``).
    X : array-like or DataFrame of shape (n_samples, n_features)
        The data: drawn, and the range of the grid.
    columns : pair (or one) of int or str, default=(0, 1)
        The columns, by index or name.
    ax : matplotlib Axes, optional
        Where to draw; a new pyplot figure when None.
    levels : int, default=10
        Number of contour levels.
    grid : int, default=100
        Grid points along each axis.

    Returns
    -------
    matplotlib Axes
    """
    _matplotlib()
    check_is_fitted(model)
    if not hasattr(model, "score_samples"):
        raise InputError(
            f"{type(model).__name__} has no score_samples: emkit.plot.density draws a "
            "fitted density (a mixture, PPCA, factor analysis)."
        )
    for name, value in (("levels", levels), ("grid", grid)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 2:
            raise InputError(f"{name} must be an integer >= 2, got {value!r}.")
    values, names = _as_table(model, X)
    picked = _columns(columns, names)
    if len(picked) > 2:
        raise InputError(
            f"columns names {len(picked)} columns; emkit.plot.density draws one or two."
        )
    d = values.shape[1]
    axes_values = []
    for c in picked:
        column = values[:, c]
        column = column[np.isfinite(column)]
        lo, hi = (float(column.min()), float(column.max())) if column.size else (0.0, 1.0)
        pad = 0.05 * (hi - lo) if hi > lo else 1.0
        axes_values.append(np.linspace(lo - pad, hi + pad, int(grid)))
    mesh = np.meshgrid(*axes_values)
    rows = np.full((mesh[0].size, d), np.nan)
    for c, m in zip(picked, mesh, strict=True):
        rows[:, c] = m.ravel()
    log_density = np.asarray(model.score_samples(_like(X, rows, names)), dtype=np.float64)
    dens = np.exp(log_density).reshape(mesh[0].shape)
    ax = _new_axes(ax)
    if len(picked) == 1:
        column = values[:, picked[0]]
        ax.hist(column[np.isfinite(column)], bins=30, density=True, color="0.8")
        ax.plot(axes_values[0], dens.ravel(), color="C0")
        ax.set_xlabel(names[picked[0]])
        ax.set_ylabel("density")
    else:
        c0, c1 = picked
        ax.scatter(values[:, c0], values[:, c1], s=4, color="0.5", linewidths=0)
        ax.contour(mesh[0], mesh[1], dens, levels=int(levels), cmap="viridis")
        ax.set_xlabel(names[c0])
        ax.set_ylabel(names[c1])
    ax.set_title(f"Density of {type(model).__name__}")
    return ax


def _like(X: Any, rows: NDArray[np.float64], names: Sequence[str]) -> Any:
    """``rows`` in X's kind: a DataFrame with X's columns (and dtypes where they hold
    NaN) when X is one, else the array."""
    if getattr(X, "columns", None) is None:
        return rows
    import pandas as pd

    frame = pd.DataFrame(rows, columns=X.columns)
    for name in X.columns:
        if str(X[name].dtype) == "category":
            cats = X[name].cat.categories
            codes = np.rint(frame[name].to_numpy())
            valid = np.isfinite(codes) & (codes >= 0) & (codes < len(cats))
            frame[name] = pd.Categorical.from_codes(
                np.where(valid, codes, -1).astype(int), categories=cats
            )
    return frame
