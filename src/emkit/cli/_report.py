"""What the command line shows and writes: the summary table, CSV files and the plots.

``rich`` and ``matplotlib`` are optional and imported only here, when used.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from emkit.families.gaussian import covariance_structure
from emkit.io.model_file import atomic_write

__all__ = [
    "SUMMARY_HEADER",
    "CandidateResult",
    "covariances_2d",
    "format_table",
    "plot_clusters",
    "plot_model",
    "print_summary",
    "write_columns",
    "write_csv",
    "write_summary_csv",
]

# Column titles of the printed table and of summary.csv, in the same order.
SUMMARY_HEADER = (
    "components",
    "covariance",
    "log-likelihood",
    "BIC",
    "AIC",
    "iterations",
    "converged",
)
_SUMMARY_CSV_HEADER = (
    "components",
    "covariance",
    "log_likelihood",
    "bic",
    "aic",
    "iterations",
    "converged",
    "best",
)


@dataclass(frozen=True)
class CandidateResult:
    """One fitted candidate: its settings and how well it fits (log-likelihood in total)."""

    n_components: int
    covariance_type: str
    log_likelihood: float
    bic: float
    aic: float
    n_iter: int
    converged: bool

    def cells(self) -> tuple[str, ...]:
        """The row as the printed table shows it."""
        return (
            str(self.n_components),
            self.covariance_type,
            f"{self.log_likelihood:.2f}",
            f"{self.bic:.2f}",
            f"{self.aic:.2f}",
            str(self.n_iter),
            "yes" if self.converged else "no",
        )


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain text table: text left-aligned, numbers right-aligned, one space-padded line each.

    Examples
    --------
    >>> print(format_table(["k", "type"], [["1", "full"], ["10", "diag"]]))
     k  type
    --  ----
     1  full
    10  diag
    """
    body = [list(map(str, row)) for row in rows]
    widths = [max([len(h)] + [len(r[j]) for r in body]) for j, h in enumerate(header)]
    numeric = [all(_is_number(r[j]) for r in body) and bool(body) for j in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    rules = ["-" * w for w in widths]
    return "\n".join([line(header), line(rules), *(line(r) for r in body)])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def print_summary(
    results: Sequence[CandidateResult], best: int, title: str, stream: IO[str]
) -> None:
    """Print the candidates' table, marking the best by BIC; with ``rich`` when installed."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        rows = [(*r.cells(), "<- best" if i == best else "") for i, r in enumerate(results)]
        print(title, file=stream)
        print(format_table((*SUMMARY_HEADER, ""), rows), file=stream)
        print("best: the lowest BIC", file=stream)
        return
    table = Table(title=title, caption="* best: the lowest BIC")
    for j, name in enumerate(SUMMARY_HEADER):
        table.add_column(name, justify="left" if j in (1, 6) else "right")
    table.add_column("")
    for i, r in enumerate(results):
        table.add_row(*r.cells(), "*" if i == best else "", style="bold" if i == best else None)
    console = Console(file=stream)
    if not console.is_terminal:  # a file or a pipe: no reason to cut columns to 80 characters
        needed = Console(file=stream, width=1000).measure(table).maximum
        console = Console(file=stream, width=max(console.width, needed))
    console.print(table)


def _float_cell(value: float | np.floating[Any]) -> str:
    """Shortest text that reads back as the same float."""
    return repr(float(value))


def write_summary_csv(path: Path, results: Sequence[CandidateResult], best: int) -> None:
    """Write the summary table as CSV (atomically), one row per candidate."""
    rows = (
        (
            r.n_components,
            r.covariance_type,
            _float_cell(r.log_likelihood),
            _float_cell(r.bic),
            _float_cell(r.aic),
            r.n_iter,
            str(r.converged).lower(),
            str(i == best).lower(),
        )
        for i, r in enumerate(results)
    )
    with atomic_write(path, text=True) as fh:
        write_csv(fh, _SUMMARY_CSV_HEADER, rows)


def write_csv(stream: IO[str], header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a header and rows as CSV with ``"\\n"`` line endings; floats in full precision."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(
        [_float_cell(float(v)) if isinstance(v, float | np.floating) else v for v in row]
        for row in rows
    )


def write_columns(stream: IO[str], header: Sequence[str], columns: Sequence[Any]) -> None:
    """Write a header and equal-length columns as CSV, floats in full precision.

    pyarrow's CSV writer writes the rows when it is installed (a million rows in a
    fraction of a second); else :func:`write_csv` does, one row at a time.

    Examples
    --------
    >>> import io
    >>> buffer = io.StringIO()
    >>> write_columns(buffer, ["row", "p"], [np.array([1, 2]), np.array([0.25, 1 / 3])])
    >>> buffer.getvalue().splitlines()
    ['row,p', '1,0.25', '2,0.3333333333333333']
    """
    arrays = [np.asarray(c) for c in columns]
    try:
        import pyarrow as pa
        import pyarrow.csv as pa_csv
    except ImportError:
        write_csv(stream, header, zip(*(a.tolist() for a in arrays), strict=True))
        return
    csv.writer(stream, lineterminator="\n").writerow(header)
    table = pa.table({f"c{j}": a for j, a in enumerate(arrays)})
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink, pa_csv.WriteOptions(include_header=False))
    stream.write(sink.getvalue().to_pybytes().decode("utf-8"))


def covariances_2d(
    covariances: NDArray[np.float64],
    covariance_type: str,
    n_components: int,
    n_features: int = 2,
) -> NDArray[np.float64]:
    """Each component's covariance of the first two features, shape (n_components, 2, 2).

    The covariance structure named ``covariance_type`` turns its fitted parameters into
    each component's dense matrix of ``n_features`` rows, so a new structure needs no
    change here.

    Examples
    --------
    >>> covariances_2d(np.array([1.0, 4.0]), "spherical", 2)[1].tolist()
    [[4.0, 0.0], [0.0, 4.0]]
    """
    structure = covariance_structure(covariance_type)
    cov = np.asarray(covariances, dtype=np.float64)
    return np.stack(
        [
            np.asarray(structure.component_covariance(cov, k, n_features), dtype=np.float64)[:2, :2]
            for k in range(n_components)
        ]
    )


def plot_clusters(
    path: Path,
    X: NDArray[np.float64],
    names: Sequence[str],
    labels: NDArray[np.intp],
    means: NDArray[np.float64],
    covariances: NDArray[np.float64],
) -> bool:
    """Scatter the first two columns coloured by label, with means and 2-sigma ellipses.

    ``covariances`` has shape (n_components, 2, 2) (see :func:`covariances_2d`). The PNG is
    drawn with the Agg backend, without touching pyplot's global state, and written
    atomically. Returns False, writing nothing, when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Ellipse
    except ImportError:
        return False
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = [f"C{k % 10}" for k in range(means.shape[0])]
    ax.scatter(X[:, 0], X[:, 1], c=[colours[k] for k in labels], s=12, alpha=0.7, linewidths=0)
    for k, (mean, cov) in enumerate(zip(means[:, :2], covariances, strict=True)):
        # cov = V diag(lam) V^T: the 2-sigma ellipse has semi-axes 2 sqrt(lam) along V
        lam, vecs = np.linalg.eigh(cov)
        angle = math.degrees(math.atan2(vecs[1, -1], vecs[0, -1]))
        width, height = 4.0 * np.sqrt(np.maximum(lam[::-1], 0.0))
        ax.add_patch(
            Ellipse(
                (float(mean[0]), float(mean[1])),
                float(width),
                float(height),
                angle=angle,
                fill=False,
                edgecolor=colours[k],
                linewidth=1.5,
            )
        )
        ax.plot(mean[0], mean[1], marker="X", markersize=10, color="black", linestyle="none")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.set_title(f"{means.shape[0]} components: means (x) and 2-sigma ellipses")
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png")
    return True


# Columns drawn on the pairs plots at most: beyond, the grid's panels get too small to read.
PAIRS_COLUMNS = 6


def plot_model(
    out: Path,
    model: Any,
    X: Any,
    results: Sequence[CandidateResult],
    density: bool,
) -> list[Path]:
    """The chosen model's plots (:mod:`emkit.plot`) as PNG files in ``out``: its EM trace
    (``trace.png``), the candidates' BIC curves (``bic.png``, scikit-learn's sign: lower is
    better), the classification and its uncertainty on pairs plots of the first
    :data:`PAIRS_COLUMNS` columns (``classification.png``, ``uncertainty.png``) and, when
    ``density``, the density on the first two columns (``density.png``).

    Drawn with the Agg backend, without touching pyplot's global state, each written
    atomically. Returns the paths written; none when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return []
    from emkit import plot

    columns = list(range(min(PAIRS_COLUMNS, int(X.shape[1]))))
    side = 2.2 * len(columns) + 1.0
    table = {
        "n_components": [r.n_components for r in results],
        "covariance_type": [r.covariance_type for r in results],
        "bic": [r.bic for r in results],
    }
    drawings: list[tuple[str, tuple[float, float], Any]] = [
        ("trace.png", (6.4, 4.8), lambda fig: plot.trace(model, ax=fig.add_subplot())),
        ("bic.png", (6.4, 4.8), lambda fig: plot.bic(table, ax=fig.add_subplot(), best="min")),
        (
            "classification.png",
            (side + 1.5, side),
            lambda fig: plot.classification(model, X, columns, fig=fig),
        ),
        (
            "uncertainty.png",
            (side + 1.5, side),
            lambda fig: plot.uncertainty(model, X, columns, fig=fig),
        ),
    ]
    if density and len(columns) >= 2:
        drawings.append(
            ("density.png", (6.4, 4.8), lambda fig: plot.density(model, X, ax=fig.add_subplot()))
        )
    written = []
    for name, size, draw in drawings:
        fig = Figure(figsize=size, dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig)
        with atomic_write(out / name) as fh:
            fig.savefig(fh, format="png")
        written.append(out / name)
    return written
