"""The ``emkit`` command: argument parsing and the four subcommands.

The commands only read tables, build :class:`emkit.GaussianMixture` estimators, and print
and write results; the maths lives in the library. User errors (:class:`EmkitError`) end
as one line ``emkit: error: <message>`` on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import emkit
from emkit.cli._report import (
    CandidateResult,
    covariances_2d,
    plot_clusters,
    print_summary,
    write_csv,
    write_summary_csv,
)
from emkit.estimators import GaussianMixture
from emkit.exceptions import EmkitError, InputError
from emkit.families.gaussian import COVARIANCE_TYPES
from emkit.inference.init import INIT_METHODS
from emkit.io.model_file import atomic_write, load_model, save_model
from emkit.io.tables import SUPPORTED_EXTENSIONS, Header, load_faithful, read_table

__all__ = ["build_parser", "main", "parse_components", "parse_covariances"]

_HEADER_CHOICES: dict[str, Header] = {"auto": "auto", "yes": True, "no": False}


# -- argument types ------------------------------------------------------------------


def parse_components(text: str) -> list[int]:
    """Numbers of components from ``"3"``, ``"1-6"``, ``"2,4,8"`` or ``"1-3,8"``, sorted.

    Examples
    --------
    >>> parse_components("1-3,8")
    [1, 2, 3, 8]
    """
    usage = "write a number like 3, a range like 1-6, or a list like 2,4,8"
    found: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        low_text, dash, high_text = item.partition("-")
        try:
            low = int(low_text)
            high = int(high_text) if dash else low
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{item!r} is not a number of components: {usage}."
            ) from None
        if low < 1:
            raise argparse.ArgumentTypeError(
                f"{item!r}: a mixture needs at least 1 component; {usage}."
            )
        if high < low:
            raise argparse.ArgumentTypeError(
                f"the range {item!r} is empty: write the smaller number first, like {high}-{low}."
            )
        found.update(range(low, high + 1))
    return sorted(found)


def parse_covariances(text: str) -> list[str]:
    """Covariance types from a comma list of full, tied, diag, spherical, or ``all``.

    Examples
    --------
    >>> parse_covariances("diag, full,diag")
    ['diag', 'full']
    """
    chosen: list[str] = []
    for item in text.split(","):
        item = item.strip().lower()
        names = list(COVARIANCE_TYPES) if item == "all" else [item]
        for name in names:
            if name not in COVARIANCE_TYPES:
                raise argparse.ArgumentTypeError(
                    f"unknown covariance type {item!r}: choose from "
                    f"{', '.join(COVARIANCE_TYPES)}, or all."
                )
            if name not in chosen:
                chosen.append(name)
    return chosen


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}.")
    return value


def _column_list(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",")]
    if not all(columns):
        raise argparse.ArgumentTypeError(
            f"{text!r} has an empty column name: write names or 0-based positions "
            "separated by commas, like a,b or 0,2."
        )
    return columns


# -- the parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``emkit`` argument parser with its subcommands fit, demo, predict and sample."""
    parser = argparse.ArgumentParser(
        prog="emkit",
        description="Fit latent-variable models by Expectation-Maximization.",
    )
    parser.add_argument("--version", action="version", version=f"emkit {emkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "fit",
        help="fit Gaussian mixtures to a table and keep the best by BIC",
        description=(
            "Fit a Gaussian mixture for every combination of --components and --covariance, "
            "print a summary, and write the best model by BIC, its labels, the summary and "
            "a plot into --out."
        ),
    )
    fit.add_argument(
        "data", metavar="DATA", help=f"the table to fit ({', '.join(SUPPORTED_EXTENSIONS)})"
    )
    _add_model_options(fit)
    _add_table_options(fit)
    _add_output_options(fit)
    fit.set_defaults(handler=_cmd_fit)

    demo = commands.add_parser(
        "demo",
        help="fit the bundled Old Faithful data",
        description=(
            "Fit Gaussian mixtures with 1 to 6 components and every covariance type to the "
            "Old Faithful geyser data (272 eruptions) and write the results into --out."
        ),
    )
    _add_output_options(demo)
    demo.set_defaults(handler=_cmd_demo)

    predict = commands.add_parser(
        "predict",
        help="label the rows of a table with a saved model",
        description="Write the most likely component of each row (or all probabilities) as CSV.",
    )
    predict.add_argument("model", metavar="MODEL", help="a model file written by `emkit fit`")
    predict.add_argument("data", metavar="DATA", help="the table to label")
    predict.add_argument(
        "--proba", action="store_true", help="write each component's probability per row"
    )
    _add_table_options(predict)
    predict.add_argument(
        "--out", metavar="FILE", help="write the CSV to FILE instead of standard output"
    )
    predict.set_defaults(handler=_cmd_predict)

    sample = commands.add_parser(
        "sample",
        help="draw samples from a saved model",
        description="Write samples and the component each was drawn from as CSV.",
    )
    sample.add_argument("model", metavar="MODEL", help="a model file written by `emkit fit`")
    sample.add_argument(
        "-n", "--n-samples", type=_positive_int, required=True, metavar="N", help="how many"
    )
    sample.add_argument("--seed", type=int, help="random seed (default: the model's random_state)")
    sample.add_argument(
        "--out", metavar="FILE", help="write the CSV to FILE instead of standard output"
    )
    sample.set_defaults(handler=_cmd_sample)
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--components",
        type=parse_components,
        default=[1, 2, 3, 4, 5, 6],
        metavar="K",
        help="numbers of components: 3, 1-6 or 2,4,8 (default: 1-6)",
    )
    parser.add_argument(
        "--covariance",
        type=parse_covariances,
        default=["full", "diag"],
        metavar="TYPES",
        help="covariance types: a comma list of full, tied, diag, spherical, or all "
        "(default: full,diag)",
    )
    parser.add_argument(
        "--n-init", type=_positive_int, default=1, metavar="N", help="restarts (default: 1)"
    )
    parser.add_argument(
        "--max-iter",
        type=_positive_int,
        default=100,
        metavar="N",
        help="EM iterations at most (default: 100)",
    )
    parser.add_argument(
        "--tol", type=float, default=1e-3, help="convergence threshold (default: 1e-3)"
    )
    parser.add_argument(
        "--reg-covar",
        type=float,
        default=1e-6,
        metavar="R",
        help="added to covariance diagonals (default: 1e-6)",
    )
    parser.add_argument(
        "--init", choices=INIT_METHODS, default="kmeans", help="initialization (default: kmeans)"
    )
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="precision of the per-row work (default: float64)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def _add_table_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--header",
        choices=tuple(_HEADER_CHOICES),
        default="auto",
        help="whether the first line of a text table holds column names (default: auto)",
    )
    parser.add_argument(
        "--columns",
        type=_column_list,
        metavar="COLS",
        help="columns to use, by name or 0-based position: a,b or 0,2 (default: all)",
    )


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("emkit-out"),
        metavar="DIR",
        help="directory for the outputs (default: ./emkit-out)",
    )
    parser.add_argument("--no-plot", action="store_true", help="do not draw clusters.png")


# -- running -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``emkit`` command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, default=None
        The arguments without the program name; ``None`` reads ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 2 for a usage or input error (printed as ``emkit: error: ...``),
        1 when the system refuses a read or write.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    try:
        status: int = args.handler(args)
    except EmkitError as exc:
        print(f"emkit: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `emkit predict ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        print(f"emkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("emkit: interrupted", file=sys.stderr)
        return 130
    return status


@dataclass(frozen=True)
class _FitOptions:
    components: list[int]
    covariances: list[str]
    n_init: int
    max_iter: int
    tol: float
    reg_covar: float
    init: str
    dtype: str
    seed: int


def _cmd_fit(args: argparse.Namespace) -> int:
    X, names = read_table(args.data, header=_HEADER_CHOICES[args.header], columns=args.columns)
    options = _FitOptions(
        args.components,
        args.covariance,
        args.n_init,
        args.max_iter,
        args.tol,
        args.reg_covar,
        args.init,
        args.dtype,
        args.seed,
    )
    return _fit_and_report(X, names, str(args.data), options, args.out, plot=not args.no_plot)


def _cmd_demo(args: argparse.Namespace) -> int:
    X, names = load_faithful()
    print(
        f"Old Faithful geyser data: {X.shape[0]} eruptions, columns {names[0]} (minutes) and "
        f"{names[1]} (minutes to the next eruption)."
    )
    options = _FitOptions(
        components=[1, 2, 3, 4, 5, 6],
        covariances=list(COVARIANCE_TYPES),
        n_init=3,
        max_iter=100,
        tol=1e-3,
        reg_covar=1e-6,
        init="kmeans",
        dtype="float64",
        seed=0,
    )
    return _fit_and_report(X, names, "Old Faithful", options, args.out, plot=not args.no_plot)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _fit_and_report(
    X: NDArray[np.float64],
    names: list[str],
    source: str,
    options: _FitOptions,
    out: Path,
    *,
    plot: bool,
) -> int:
    n, d = X.shape
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory; choose a directory.")
    components = [k for k in options.components if k <= n]
    if len(components) < len(options.components):
        skipped = ", ".join(str(k) for k in options.components if k > n)
        _note(f"skipping {skipped} components: more than the {n} rows of the data.")
    if not components:
        raise InputError(
            f"The data has {n} rows, fewer than every number of components asked for "
            f"({', '.join(map(str, options.components))}); pass more data or fewer components."
        )
    results: list[CandidateResult] = []
    models: list[GaussianMixture] = []
    for k in components:
        for covariance in options.covariances:
            model = _fit_candidate(X, k, covariance, options)
            if model is None:
                continue
            models.append(model)
            results.append(
                CandidateResult(
                    k,
                    covariance,
                    float(model.score(X)) * n,
                    float(model.bic(X)),
                    float(model.aic(X)),
                    int(model.n_iter_),
                    bool(model.converged_),
                )
            )
    if not results:
        raise InputError(
            "Every candidate model failed to fit (see the notes above). Scale the data, "
            "increase --reg-covar, or ask for fewer components."
        )
    best = min(range(len(results)), key=lambda i: results[i].bic)
    title = f"Gaussian mixtures on {source}: {n} rows, {d} columns ({', '.join(names)})"
    print_summary(results, best, title, sys.stdout)
    chosen = results[best]
    model = models[best]
    print(
        f"best by BIC: {chosen.n_components} components, covariance {chosen.covariance_type} "
        f"(BIC {chosen.bic:.2f})"
    )

    out.mkdir(parents=True, exist_ok=True)
    written = [save_model(model, out / "model.npz")]
    labels = model.predict(X)
    with atomic_write(out / "labels.csv", text=True) as fh:
        write_csv(fh, ["label"], ([int(v)] for v in labels))
    written.append(out / "labels.csv")
    write_summary_csv(out / "summary.csv", results, best)
    written.append(out / "summary.csv")
    if plot:
        written.extend(_plot(out / "clusters.png", X, names, labels, model))
    for path in written:
        print(f"wrote {path}")
    return 0


def _fit_candidate(
    X: NDArray[np.float64], k: int, covariance: str, options: _FitOptions
) -> GaussianMixture | None:
    """Fit one candidate; numerical failures and warnings become notes on stderr."""
    model = GaussianMixture(
        n_components=k,
        covariance_type=covariance,
        n_init=options.n_init,
        max_iter=options.max_iter,
        tol=options.tol,
        reg_covar=options.reg_covar,
        init_params=options.init,
        dtype=options.dtype,
        random_state=options.seed,
    )
    where = f"{k} components, {covariance}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X)
        except InputError:
            raise  # the options or the data are wrong for every candidate
        except EmkitError as exc:
            _note(f"{where}: not fitted: {exc}")
            return None
    for warning in caught:
        _note(f"{where}: {warning.message}")
    return model


def _plot(
    path: Path,
    X: NDArray[np.float64],
    names: list[str],
    labels: NDArray[np.intp],
    model: GaussianMixture,
) -> list[Path]:
    if X.shape[1] < 2:
        _note("no plot: clusters.png shows the first two columns and the data has one.")
        return []
    means = np.asarray(model.means_, dtype=np.float64)
    covariances = covariances_2d(
        np.asarray(model.covariances_, dtype=np.float64),
        model.covariance_type,
        model.n_components,
    )
    if not plot_clusters(path, X, names, labels, means, covariances):
        _note('no plot: matplotlib is not installed (pip install "emkit[cli]").')
        return []
    return [path]


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(v) for v in names]


def _cmd_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    X, names = read_table(args.data, header=_HEADER_CHOICES[args.header], columns=args.columns)
    expected = _feature_names(model)
    n_features = int(model.n_features_in_)
    if expected is not None and args.columns is None and set(expected) <= set(names):
        keep = [names.index(name) for name in expected]  # the model's column order
        X, names = X[:, keep], expected
    if X.shape[1] != n_features:
        fitted_on = f" ({', '.join(expected)})" if expected is not None else ""
        raise InputError(
            f"{args.data!r} has {X.shape[1]} columns ({', '.join(names)}) but the model was "
            f"fitted on {n_features}{fitted_on}. Select the model's columns with --columns."
        )
    with warnings.catch_warnings():
        # the columns were matched by name above; the array passed on has no names
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        if args.proba:
            values = model.predict_proba(X)
            header = [f"p{k}" for k in range(values.shape[1])]
            rows: Any = values.tolist()
        else:
            header = ["label"]
            rows = ([int(v)] for v in model.predict(X))
    _write_output(args.out, header, rows)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    if args.seed is not None:
        model.set_params(random_state=args.seed)
    X, component = model.sample(args.n_samples)
    names = _feature_names(model) or [f"x{j}" for j in range(X.shape[1])]
    rows = ([*row, int(k)] for row, k in zip(X.tolist(), component, strict=True))
    _write_output(args.out, [*names, "component"], rows)
    return 0


def _write_output(out: str | None, header: Sequence[str], rows: Any) -> None:
    if out is None:
        write_csv(sys.stdout, header, rows)
        return
    with atomic_write(out, text=True) as fh:
        write_csv(fh, header, rows)
    print(f"wrote {out}")
