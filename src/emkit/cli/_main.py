"""The ``emkit`` command: argument parsing and the four subcommands.

The commands only read tables, build estimators (:class:`emkit.ModelBasedClustering` for
all-Gaussian tables, in memory or streamed, :class:`emkit.MixtureModel` for the others),
and print and write
results; the maths lives in the library. User errors (:class:`EmkitError`) end as one
line ``emkit: error: <message>`` on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import emkit
from emkit.cli._data import (
    coded_by_values,
    family_description,
    parse_family,
    streamed_columns,
    typed_frame,
)
from emkit.cli._progress import FitProgress
from emkit.cli._report import (
    CandidateResult,
    covariances_2d,
    plot_clusters,
    plot_model,
    print_summary,
    write_columns,
    write_summary_csv,
)
from emkit.estimators import GaussianMixture, MixtureModel, ModelBasedClustering
from emkit.estimators.mixture_model import MIXTURE_INIT_METHODS, infer_family
from emkit.exceptions import EmkitError, InputError
from emkit.families import (
    Bernoulli,
    Categorical,
    Gaussian,
    Multinomial,
    Poisson,
    Product,
)
from emkit.families.covariance import MCLUST_MODELS, covariance_types
from emkit.families.gaussian import COVARIANCE_TYPES
from emkit.io.model_file import atomic_write, load_model, save_model
from emkit.io.open_table import open_table
from emkit.io.tables import SUPPORTED_EXTENSIONS, Header, Table, load_faithful, read_columns

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
    """Covariance types from a comma list of the names ``covariance_type`` takes (any
    case for mclust's), ``all`` (full, tied, diag, spherical) or ``mclust`` (its 14).

    Examples
    --------
    >>> parse_covariances("diag, full,diag")
    ['diag', 'full']
    >>> parse_covariances("vev,EII")
    ['VEV', 'EII']
    """
    names_by_key = {name.lower(): name for name in covariance_types()}
    groups = {"all": list(COVARIANCE_TYPES), "mclust": list(MCLUST_MODELS)}
    chosen: list[str] = []
    for item in text.split(","):
        item = item.strip()
        key = item.lower()
        names = groups.get(key, [names_by_key.get(key, "")])
        for name in names:
            if not name:
                raise argparse.ArgumentTypeError(
                    f"unknown covariance type {item!r}: choose from "
                    f"{', '.join(covariance_types())}, all (the first four) or mclust "
                    "(its 14 models)."
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


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}.") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**32 - 1, got {value}. Pick another seed."
        )
    return value


def _column_list(text: str) -> list[str]:
    columns = [c.strip() for c in text.split(",")]
    if not all(columns):
        raise argparse.ArgumentTypeError(
            f"{text!r} has an empty column name: write names, 0-based positions, ranges or "
            "exclusions separated by commas, like a,b or 0,2 or 1:4,^id."
        )
    return columns


def _delimiter(text: str) -> str:
    value = {"\\t": "\t", "tab": "\t", "\t": "\t"}.get(text.lower(), text)
    if len(value) != 1:
        raise argparse.ArgumentTypeError(
            f"expected one character like ';' or ',' or '\\t' (or tab), got {text!r}."
        )
    return value


# -- the parser ----------------------------------------------------------------------

_FAMILY_HELP = (
    "the family of the columns: auto (default: from the column types, as MixtureModel "
    "does: text -> categorical, whole numbers >= 0 -> poisson, 0/1 and true/false -> "
    "bernoulli, other numbers -> gaussian), or one of gaussian, poisson, bernoulli, "
    "categorical for every column, or COLUMN=FAMILY pairs for some columns (the others "
    "auto), like n=categorical,flag=bernoulli"
)


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
        help="fit mixtures to a table and keep the best by BIC",
        description=(
            "Fit a mixture for every number of --components (and --covariance type of the "
            "Gaussian columns), print a summary, and write the best model by BIC, its labels, "
            "the summary and a plot into --out. Every family fits missing cells (empty, NA, "
            "nan) exactly."
        ),
    )
    fit.add_argument(
        "data", metavar="DATA", help=f"the table to fit ({', '.join(SUPPORTED_EXTENSIONS)})"
    )
    fit.add_argument(
        "--family", type=parse_family, default={None: "auto"}, metavar="SPEC", help=_FAMILY_HELP
    )
    _add_model_options(fit)
    _add_table_options(fit)
    _add_output_options(fit)
    fit.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show each fit's progress: iteration, objective, rows per second",
    )
    fit.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read DATA a block of rows at a time in every EM pass (.npy, .parquet, .csv, "
        ".tsv; every family): for files larger than memory. The column families come from "
        "one pass over the file (auto: text columns categorical, 0/1 columns bernoulli, "
        "whole numbers >= 0 poisson, others gaussian; a categorical column's categories are "
        "its distinct values, at most 65536). A CSV column is text when its first value is "
        "(or when --family names it categorical); one that starts with numbers and holds "
        "text further down is refused, naming the row. Default: streamed when the file is "
        "larger than "
        f"{STREAM_BYTES >> 20} MiB with the default --header and --delimiter; --no-stream "
        "reads it whole",
    )
    fit.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        metavar="DIR",
        help="save each fit's state in DIR every few iterations (one directory per "
        "candidate); run the same command again after an interruption to resume (every "
        "family, --n-init 1, without --accelerate)",
    )
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
        description=(
            "Write each row's id, most likely component and uncertainty (1 - its largest "
            "probability), or with --proba every component's probability, as CSV. For "
            "KMeans, the nearest center; for PPCA and FactorAnalysis, the factor scores."
        ),
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
    predict.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="read DATA a block of rows at a time (.npy, .parquet, .csv, .tsv): for files "
        "larger than memory. Text columns are coded by the model's categories (a value the "
        "model has not seen is an error naming it, its row and its column, as when the "
        "table is read whole). Default: streamed when the file is larger than "
        f"{STREAM_BYTES >> 20} MiB with the default --header and --delimiter",
    )
    predict.set_defaults(handler=_cmd_predict)

    sample = commands.add_parser(
        "sample",
        help="draw samples from a saved model",
        description="Write samples (and the component each was drawn from) as CSV.",
    )
    sample.add_argument("model", metavar="MODEL", help="a model file written by `emkit fit`")
    sample.add_argument(
        "-n", "--n-samples", type=_positive_int, required=True, metavar="N", help="how many"
    )
    sample.add_argument(
        "--seed", type=_seed, help="random seed >= 0 (default: the model's random_state)"
    )
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
        default=None,
        metavar="TYPES",
        help="covariance types of the Gaussian columns: a comma list of full, tied, diag, "
        "spherical, mclust's models (EII, VII, ..., VVV; E or V for one column), all (the "
        "first four) or mclust (its 14) (default: full,diag; full for the Gaussian block of "
        "a mixed table). Gaussian tables are fitted by emkit.ModelBasedClustering: a "
        "candidate with a collapsed component is a note, never the best",
    )
    parser.add_argument(
        "--n-init", type=_positive_int, default=1, metavar="N", help="restarts (default: 1)"
    )
    parser.add_argument(
        "--max-iter",
        type=_positive_int,
        default=None,
        metavar="N",
        help="EM iterations at most (default: 1000 for Gaussian tables, as mclust; 100 else)",
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=None,
        help="convergence threshold on the per-row log-likelihood (default: 1e-5 for Gaussian "
        "tables, near mclust's; 1e-3 else)",
    )
    parser.add_argument(
        "--reg-covar",
        type=float,
        default=1e-6,
        metavar="R",
        help="added to covariance diagonals (default: 1e-6)",
    )
    parser.add_argument(
        "--init",
        choices=MIXTURE_INIT_METHODS,
        default=None,
        help="initialization (default: hc, mclust's hierarchical start, for Gaussian tables; "
        "auto for mixed ones)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="precision of the per-row work (default: float64)",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="random seed >= 0 (default: 0)")
    parser.add_argument(
        "--e-step",
        choices=_E_STEPS,
        default="exact",
        help="the E-step: exact (EM), hard (classification EM), variational (variational "
        "Bayes, for Poisson, Bernoulli and categorical columns, each with a weak prior "
        "from the data), monte-carlo (averages over drawn labels), stochastic (one drawn "
        "label a row) (default: exact)",
    )
    parser.add_argument(
        "--prior",
        choices=("none", "mclust"),
        default="none",
        help="mclust: R mclust's conjugate prior on the Gaussian columns (priorControl(): "
        "shrinkage to the data mean, a scale from the data covariance; MAP-EM, the BIC at "
        "the posterior mode, as Mclust(prior = priorControl())); none: maximum likelihood "
        "(default: none)",
    )
    parser.add_argument(
        "--accelerate",
        choices=("squarem",),
        default=None,
        help="squarem: extrapolate EM's steps (Varadhan & Roland 2008), falling back to the "
        "plain step whenever the objective would drop; with --e-step exact or hard "
        "(default: plain EM)",
    )


# Files larger than this are streamed by ``emkit fit`` unless --no-stream is given.
STREAM_BYTES = 1 << 30

_E_STEPS = ("exact", "hard", "variational", "monte-carlo", "stochastic")
# the E-steps whose steps are random or a posterior's: SQUAREM extrapolates a
# deterministic EM map
_NOT_ACCELERATED = ("variational", "monte-carlo", "stochastic")


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
        help="columns to use, comma-separated: names or 0-based positions (a,b or 0,2), "
        "inclusive ranges (2:5, a:d, 3:), exclusions (^id, ^0:2; alone they drop from all "
        "columns) (default: all)",
    )
    parser.add_argument(
        "--delimiter",
        type=_delimiter,
        metavar="CHAR",
        help="field separator of a text table, like ';' or tab (default: from the extension, "
        "for .txt from the first line)",
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
    covariances: list[str] | None
    n_init: int
    max_iter: int | None  # None (and for tol, init): each estimator's default
    tol: float | None
    reg_covar: float
    init: str | None
    dtype: str
    seed: int
    verbose: bool = False
    checkpoint: Path | None = None
    e_step: str = "exact"
    accelerate: str | None = None
    prior: str | None = None  # of the Gaussian columns

    def estimator_options(self) -> dict[str, Any]:
        """The arguments every fitted mixture takes from the command line."""
        given = {"max_iter": self.max_iter, "tol": self.tol, "init_params": self.init}
        return {
            "e_step": self.e_step,
            "accelerate": self.accelerate,
            "n_init": self.n_init,
            **{name: value for name, value in given.items() if value is not None},
            "dtype": self.dtype,
            "random_state": self.seed,
            "verbose": int(self.verbose),
            "verbose_interval": 1,  # every iteration reaches the progress display
        }


def _read(args: argparse.Namespace) -> Table:
    table = read_columns(
        args.data,
        header=_HEADER_CHOICES[args.header],
        columns=args.columns,
        delimiter=args.delimiter,
    )
    if table.index_note is not None:
        _note(f"{args.data}: {table.index_note}.")
    return table


def _cmd_fit(args: argparse.Namespace) -> int:
    _check_out_dir(args.out)
    if args.checkpoint is not None and args.n_init != 1:
        raise InputError(
            f"--checkpoint resumes one EM run per candidate; --n-init {args.n_init} asks for "
            f"{args.n_init}. Use --n-init 1 with --checkpoint."
        )
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
        args.verbose,
        args.checkpoint,
        args.e_step,
        args.accelerate,
        None if args.prior == "none" else args.prior,
    )
    _check_variant(options)
    if args.stream or (args.stream is None and _stream_by_size(args)):
        return _fit_streamed(args, options)
    table = _read(args)
    return _fit_and_report(table, args.family, str(args.data), options, args.out, args.no_plot)


def _gaussian_only(table: Table, family_spec: dict[str | None, str]) -> bool:
    return family_spec == {None: "gaussian"} or (
        set(family_spec.values()) <= {"auto", "gaussian"} and set(table.kinds) == {"float"}
    )


def _stream_by_size(args: argparse.Namespace) -> bool:
    """Whether ``emkit fit`` streams DATA without being told: a file larger than
    ``STREAM_BYTES`` that a streamed fit takes (Gaussian mixtures, the header detected and
    the delimiter from the extension)."""
    path = Path(args.data)
    return (
        path.is_file()
        and path.stat().st_size > STREAM_BYTES
        and args.header == "auto"
        and args.delimiter is None
    )


def _fit_streamed(args: argparse.Namespace, options: _FitOptions) -> int:
    """``emkit fit --stream``: mixtures fitted from the file a block at a time, the
    columns' families from one pass over it (:func:`streamed_columns`)."""
    if args.header != "auto" or args.delimiter is not None:
        raise InputError(
            "--stream detects a text file's header and takes the delimiter from its "
            "extension (.csv, .tsv); drop --header and --delimiter, or --stream."
        )
    text: Any = None
    if Path(args.data).suffix.lower() in (".csv", ".tsv"):
        # columns asked categorical are read as text from their first row (a column whose
        # first value is text is, whatever is asked)
        default = args.family.get(None, "auto")
        named = [name for name, fam in args.family.items() if name and fam == "categorical"]
        if default == "categorical":
            text = args.columns if args.columns is not None else ":"
        elif named:
            text = named
    try:
        data = open_table(args.data, args.columns, text=text)
    except InputError as exc:
        if "non-numeric" not in str(exc):
            raise
        raise InputError(
            f"{exc} Or read the table into memory with --no-stream (a column is then typed "
            "from all its values)."
        ) from exc
    n, names = data.shape[0], data.names
    columns = streamed_columns(data, args.family)
    kinds: list[Any] = ["float" if fam == "gaussian" else "integer" for fam in columns.families]
    # only the plotted columns and the labels are held in memory
    table = Table([], names, kinds, n_rows=n)
    spec: dict[str | None, str] = dict(zip(names, columns.families, strict=True))
    return _fit_and_report(
        table, spec, str(args.data), options, args.out, args.no_plot, columns.table, columns
    )


def _check_variant(options: _FitOptions) -> None:
    """Refuse an --accelerate that the --e-step does not take, before reading any rows."""
    if options.accelerate is not None and options.e_step in _NOT_ACCELERATED:
        raise InputError(
            f"--accelerate {options.accelerate} cannot be combined with --e-step "
            f"{options.e_step}: SQUAREM extrapolates a deterministic EM step, and "
            f"{options.e_step} steps are not one. Drop --accelerate, or use --e-step exact "
            "or hard."
        )


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_out_dir(args.out)
    X, names = load_faithful()
    print(
        f"Old Faithful geyser data: {X.shape[0]} eruptions, columns {names[0]} (minutes) and "
        f"{names[1]} (minutes to the next eruption)."
    )
    options = _FitOptions(
        components=[1, 2, 3, 4, 5, 6],
        covariances=list(COVARIANCE_TYPES),
        n_init=1,
        max_iter=None,
        tol=None,
        reg_covar=1e-6,
        init=None,
        dtype="float64",
        seed=0,
    )
    table = Table(list(X.T), names, ["float", "float"], n_rows=X.shape[0])
    return _fit_and_report(
        table, {None: "gaussian"}, "Old Faithful", options, args.out, args.no_plot
    )


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _check_out_dir(out: Path) -> None:
    """Refuse an --out that cannot be written, before any fitting.

    Missing directories are created for the check (a file is written and removed in the
    innermost) and removed again: the outputs create them once there is something to write.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {str(out)!r} exists and is not a directory; choose a directory.")
    missing = []
    parent = out.absolute()
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(
            f"--out {str(out)!r} cannot be created: {str(parent)!r} is not a directory. "
            "Choose another directory."
        )
    created: list[Path] = []
    try:
        for directory in reversed(missing):
            directory.mkdir()
            created.append(directory)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        what = "cannot be created" if missing else "is not writable"
        raise InputError(
            f"--out {str(out)!r} {what} ({reason}); choose another directory or change "
            "its permissions."
        ) from None
    finally:
        for directory in reversed(created):
            directory.rmdir()


@dataclass
class _Candidate:
    """One fitted candidate and what the summary shows of it."""

    model: Any
    result: CandidateResult


def _fit_and_report(
    table: Table,
    family_spec: dict[str | None, str],
    source: str,
    options: _FitOptions,
    out: Path,
    no_plot: bool,
    streamed: Any = None,
    columns: Any = None,
) -> int:
    """Fit the candidates, print the summary and write the outputs. ``streamed``: the
    table read a block at a time (:func:`emkit.io.open_table`), with ``columns`` its
    families (:func:`~emkit.cli._data.streamed_columns`); ``table`` then holds no rows."""
    n, d = table.n_rows, len(table.names)
    components = [k for k in options.components if k <= n]
    if len(components) < len(options.components):
        skipped = ", ".join(str(k) for k in options.components if k > n)
        _note(f"skipping {skipped} components: more than the {n} rows of the data.")
    if not components:
        raise InputError(
            f"The data has {n} rows, fewer than every number of components asked for "
            f"({', '.join(map(str, options.components))}); pass more data or fewer components."
        )
    gaussian_only = _gaussian_only(table, family_spec)
    if gaussian_only:
        data: Any = table.numeric(source) if streamed is None else streamed
        covariances = options.covariances or ["full", "diag"]
        family_text = f"gaussian ({', '.join(table.names)})"
    else:
        if columns is None:
            data = typed_frame(table, family_spec)
            family = infer_family(data)
        else:
            data, family = streamed, columns.family
        has_gaussian = _gaussian_block(family) is not None
        for option, given in (
            ("--covariance", options.covariances is not None),
            ("--prior", options.prior is not None),
        ):
            if given and not has_gaussian:
                raise InputError(
                    f"{option} applies to Gaussian columns, and this table has none ("
                    f"{family_description(family, table.names)}). Drop {option}."
                )
        covariances = options.covariances or (["full"] if has_gaussian else ["-"])
        family_text = family_description(family, table.names)
    if options.e_step == "variational":
        _check_variational_columns(table, None if gaussian_only else family)
    if gaussian_only:
        results, best, model = _select_gaussian(data, n, components, covariances, options)
    else:
        candidates: list[_Candidate] = []
        for k in components:
            for covariance in covariances:
                candidate_model = _mixture_model(family, k, covariance, options)
                candidate = _fit_candidate(candidate_model, data, n, k, covariance, options)
                if candidate is not None:
                    candidates.append(candidate)
        if not candidates:
            raise InputError(
                "Every candidate model failed to fit (see the notes above). Scale the data, "
                "increase --reg-covar, or ask for fewer components."
            )
        results = [c.result for c in candidates]
        best = min(range(len(results)), key=lambda i: results[i].bic)
        model = candidates[best].model
    kind = "Gaussian mixtures" if gaussian_only else "Mixtures"
    title = f"{kind} on {source}: {n} rows, {d} columns: {family_text}"
    print_summary(results, best, title, sys.stdout)
    chosen = results[best]
    structure = "" if chosen.covariance_type == "-" else f", covariance {chosen.covariance_type}"
    print(f"best by BIC: {chosen.n_components} components{structure} (BIC {chosen.bic:.2f})")
    _keep_feature_names(model, table.names)
    if columns is not None and columns.categories:
        # the streamed codes' categories: the distinct numbers or text of those columns
        model.categories_ = dict(columns.categories)

    out.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        written.append(save_model(model, out / "model.npz"))
    except InputError as exc:  # a model type the file format cannot hold yet
        _note(f"model.npz not written: {exc}")
    proba = _quiet(lambda: model.predict_proba(data))
    labels = proba.argmax(axis=1)
    with atomic_write(out / "labels.csv", text=True) as fh:
        write_columns(fh, *_label_columns(table, proba))
    written.append(out / "labels.csv")
    write_summary_csv(out / "summary.csv", results, best)
    written.append(out / "summary.csv")
    if not no_plot:
        if streamed is not None and d >= 2:  # the plotted columns, read once
            plotted = open_table(streamed.path, streamed.names[:2]).read()
            table = Table(list(plotted.T), table.names, table.kinds, n_rows=n)
        written.extend(_plot(out / "clusters.png", table, labels, model, gaussian_only))
        written.extend(_quiet(lambda: plot_model(out, model, data, results, gaussian_only)))
    for path in written:
        print(f"wrote {path}")
    return 0


def _check_variational_columns(table: Table, family: Any) -> None:
    """--e-step variational fits the families with a conjugate prior, not Gaussians
    (``family`` None: every column is Gaussian)."""
    if family is None:
        gaussian = list(table.names)
    else:
        block = _gaussian_block(family)
        blocks = getattr(family, "blocks", {})
        columns = next((cols for cols, fam in blocks.values() if fam is block), ())
        gaussian = [table.names[j] for j in columns] if block is not None else []
    if gaussian:
        raise InputError(
            "--e-step variational fits Poisson, Bernoulli and categorical columns (their "
            "families have conjugate priors), but the Gaussian columns "
            f"{', '.join(gaussian)} have no variational update here. Use --e-step exact, "
            "or choose other families for them with --family, like --family "
            f"{gaussian[0]}=poisson."
        )


def _select_gaussian(
    X: Any, n: int, components: list[int], covariances: list[str], options: _FitOptions
) -> tuple[list[CandidateResult], int, GaussianMixture]:
    """The Gaussian candidates fitted and compared by :class:`ModelBasedClustering`
    (a collapsed or failed candidate is a note, never the best): (their summary rows,
    k-major, the best's position, the best model)."""
    estimator = options.estimator_options()
    del estimator["verbose_interval"]  # every iteration of every cell, when verbose
    selector = ModelBasedClustering(
        components,
        covariance_types=covariances,
        reg_covar=options.reg_covar,
        prior=options.prior,
        **estimator,
    )
    if options.verbose:
        label = f"{len(components) * len(covariances)} models"
        with FitProgress(label, n, selector.max_iter):
            selector.fit(X, checkpoint=options.checkpoint)
    else:
        selector.fit(X, checkpoint=options.checkpoint)
    table = selector.results_
    order = sorted(
        range(len(table["bic"])),
        key=lambda i: (table["n_components"][i], covariances.index(table["covariance_type"][i])),
    )
    results: list[CandidateResult] = []
    best = 0
    for i in order:
        k, covariance = int(table["n_components"][i]), str(table["covariance_type"][i])
        where = f"{k} components, {covariance}"
        for message in table["warnings"][i]:
            _note(f"{where}: {message}")
        reason = table["reason"][i]
        if reason:
            _note(f"{where}: {reason if reason.startswith('not ') else 'not used: ' + reason}")
            continue
        log_likelihood = float(table["log_likelihood"][i])
        if i == selector.best_index_:
            best = len(results)
        results.append(
            CandidateResult(
                k,
                covariance,
                log_likelihood,
                -float(table["bic"][i]),  # scikit-learn's sign, as the summary's
                -2.0 * log_likelihood + 2.0 * float(table["n_parameters"][i]),
                int(table["n_iter"][i]),
                bool(table["converged"][i]),
            )
        )
    return results, best, selector.best_estimator_


def _gaussian_block(family: Any) -> Any:
    blocks = getattr(family, "blocks", None)
    if blocks is None:
        return family if hasattr(family, "structure") else None
    return next((fam for _, fam in blocks.values() if hasattr(fam, "structure")), None)


def _mixture_model(family: Any, k: int, covariance: str, options: _FitOptions) -> MixtureModel:
    def gaussian(fam: Any) -> Any:
        if not hasattr(fam, "structure"):
            return fam
        return Gaussian(covariance, reg_covar=options.reg_covar, prior=options.prior)

    def block(fam: Any) -> Any:
        fam = gaussian(fam)
        if options.e_step == "variational" and getattr(fam, "prior", "auto") is None:
            # variational Bayes needs a proper prior: the family's weak one from the data
            fam = dataclasses.replace(fam, prior="auto")
        return fam

    if isinstance(family, Product):
        family = Product({name: (cols, block(fam)) for name, (cols, fam) in family.blocks.items()})
    else:
        family = block(family)
    return MixtureModel(family, n_components=k, **options.estimator_options())


def _fit_candidate(
    model: Any, data: Any, n: int, k: int, covariance: str, options: _FitOptions
) -> _Candidate | None:
    """Fit one candidate; numerical failures and warnings become notes on stderr."""
    where = f"{k} components" + ("" if covariance == "-" else f", {covariance}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # one checkpoint directory per candidate, as ModelBasedClustering keeps per cell
            checkpoint = (
                None
                if options.checkpoint is None
                else options.checkpoint / f"{k}-{covariance.replace('-', 'none')}"
            )
            if options.verbose:
                with FitProgress(where, n, model.max_iter):
                    model.fit(data, checkpoint=checkpoint)
            else:
                model.fit(data, checkpoint=checkpoint)
        except InputError:
            raise  # the options or the data are wrong for every candidate
        except EmkitError as exc:
            _note(f"{where}: not fitted: {exc}")
            return None
        # the fit raised each kind of warning once, with its count
        log_likelihood = float(model.score(data)) * n
        bic = float(model.bic(data))
        # AIC from the same log-likelihood: BIC = -2 ll + p log n gives p, without the
        # third pass over the rows that model.aic would make
        n_parameters = round((bic + 2.0 * log_likelihood) / np.log(n))
        result = CandidateResult(
            k,
            covariance,
            log_likelihood,
            bic,
            -2.0 * log_likelihood + 2.0 * n_parameters,
            int(model.n_iter_),
            bool(model.converged_),
        )
    for warning in caught:
        _note(f"{where}: {warning.message}")
    return _Candidate(model, result)


def _quiet(compute: Any) -> Any:
    with warnings.catch_warnings():
        # the CLI matched columns by name; the arrays passed on have none
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        return compute()


def _keep_feature_names(model: Any, names: list[str]) -> None:
    """Give a model fitted on an array the table's column names, for its model file."""
    if getattr(model, "feature_names_in_", None) is None:
        model.feature_names_in_ = np.asarray(names, dtype=object)


def _row_ids(table: Table) -> NDArray[Any]:
    if table.row_ids is not None:
        return table.row_ids
    return np.arange(1, table.n_rows + 1)


def _label_columns(table: Table, proba: NDArray[Any]) -> tuple[list[str], list[NDArray[Any]]]:
    """``row, label, uncertainty``: the most likely component and 1 - its probability."""
    labels = proba.argmax(axis=1)
    uncertainty = 1.0 - proba.max(axis=1)
    return ["row", "label", "uncertainty"], [_row_ids(table), labels, uncertainty]


def _plot(
    path: Path, table: Table, labels: NDArray[np.intp], model: Any, gaussian_only: bool
) -> list[Path]:
    if not gaussian_only:
        _note(
            "no plot: clusters.png shows Gaussian mixtures of numeric tables; this table "
            "is fitted with other families too (--no-plot skips this note)."
        )
        return []
    if len(table.names) < 2:
        _note("no plot: clusters.png shows the first two columns and the data has one.")
        return []
    X = np.column_stack(table.columns[:2]).astype(np.float64)
    means = np.asarray(model.means_, dtype=np.float64)
    covariances = covariances_2d(
        np.asarray(model.covariances_, dtype=np.float64),
        model.covariance_type,
        model.n_components,
        len(table.names),
    )
    if not plot_clusters(path, X, table.names[:2], labels, means, covariances):
        _note('no plot: matplotlib is not installed (pip install "emkit[cli]").')
        return []
    return [path]


# -- predict and sample ------------------------------------------------------------------


def _feature_names(model: Any) -> list[str] | None:
    names = getattr(model, "feature_names_in_", None)
    return None if names is None else [str(v) for v in names]


def _model_kind(model: Any) -> str:
    if not hasattr(model, "predict"):
        return "factor"  # PPCA, FactorAnalysis: a transform, no components
    if not hasattr(model, "predict_proba"):
        return "kmeans"
    return "mixture"


def _model_input(model: Any, table: Table, source: str, selected: bool) -> Any:
    """The table's columns in the model's order, as the model was fitted on them."""
    expected = _feature_names(model)
    n_features = int(model.n_features_in_)
    names = table.names
    order = list(range(len(names)))
    if expected is not None and not selected and set(expected) <= set(names):
        order = [names.index(name) for name in expected]  # the model's column order
    if len(order) != n_features:
        fitted_on = f" ({', '.join(expected)})" if expected is not None else ""
        raise InputError(
            f"{source!r} has {len(names)} columns ({', '.join(names)}) but the model was "
            f"fitted on {n_features}{fitted_on}. Select the model's columns with --columns."
        )
    picked = Table(
        [table.columns[j] for j in order],
        [names[j] for j in order],
        [table.kinds[j] for j in order],
        n_rows=table.n_rows,
        positions=[table.positions[j] for j in order] if table.positions else [],
        locate=table.locate,
    )
    categories = getattr(model, "categories_", None)
    if isinstance(model, MixtureModel):
        # the fitted column names, so that the model's category maps apply
        fitted = expected or picked.names
        spec: dict[str | None, str] = {None: "gaussian"}
        spec.update({name: "categorical" for name in (categories or {})})
        frame = typed_frame(Table(picked.columns, fitted, picked.kinds, n_rows=picked.n_rows), spec)
        return frame if expected is not None else frame.to_numpy(dtype=np.float64)
    return picked.numeric(source)


def _cmd_predict(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    kind = _model_kind(model)
    name = type(model).__name__
    if args.proba and kind != "mixture":
        what = (
            "assigns each row to its nearest center"
            if kind == "kmeans"
            else ("has factors, not components")
        )
        raise InputError(f"--proba needs a mixture; a {name} {what}. Drop --proba.")
    if args.stream or (args.stream is None and _stream_by_size(args)):
        table, X = _streamed_model_input(model, args)
    else:
        table = _read(args)
        X = _model_input(model, table, str(args.data), args.columns is not None)
    ids = _row_ids(table)
    if kind == "factor":
        scores = _quiet(lambda: model.transform(X))
        header = ["row", *(f"factor{j}" for j in range(scores.shape[1]))]
        columns = [ids, *scores.T]
    elif kind == "kmeans":
        header, columns = ["row", "label"], [ids, _quiet(lambda: model.predict(X))]
    else:
        proba = _quiet(lambda: model.predict_proba(X))
        if args.proba:
            header = ["row", *(f"p{k}" for k in range(proba.shape[1]))]
            columns = [ids, *proba.T]
        else:
            header, columns = _label_columns(table, proba)
    _write_output(args.out, header, columns)
    return 0


def _streamed_model_input(model: Any, args: argparse.Namespace) -> tuple[Table, Any]:
    """``emkit predict --stream``: the file opened a block at a time, the model's columns
    (by name, unless --columns says which), text columns coded by the model's categories
    and numeric categorical columns mapped to their codes (a value the model has not seen
    is an error naming its row). Returns an empty Table of the rows (for their ids) and
    the streamed table."""
    if args.header != "auto" or args.delimiter is not None:
        raise InputError(
            "--stream detects a text file's header and takes the delimiter from its "
            "extension (.csv, .tsv); drop --header and --delimiter, or --stream."
        )
    expected = _feature_names(model)
    columns = args.columns if args.columns is not None or expected is None else expected
    known = (getattr(model, "categories_", None) or {}) if isinstance(model, MixtureModel) else {}
    text = {name: list(v) for name, v in known.items() if all(isinstance(c, str) for c in v)}
    data = open_table(args.data, columns, categories=text or None)
    numbers = {
        data.names.index(name): np.asarray(v, dtype=np.float64)
        for name, v in known.items()
        if name not in text and name in data.names
    }
    if numbers:
        for start, rows in data.iter_chunks():  # every value among the model's categories
            for j, values in numbers.items():
                present = rows[:, j][~np.isnan(rows[:, j])]
                unseen = ~np.isin(present, values)
                if unseen.any():
                    row = start + int(np.flatnonzero(~np.isnan(rows[:, j]))[np.argmax(unseen)])
                    raise InputError(
                        f"Column {data.names[j]!r} of {str(args.data)!r} has category "
                        f"{present[np.argmax(unseen)]:g} at data row {row + 1} that was not "
                        f"seen in fit (categories: {[f'{v:g}' for v in values]}). Refit with "
                        "it, or map it to a known category."
                    )
        data = coded_by_values(data, numbers)
    kinds: list[Any] = ["float"] * len(data.names)
    return Table([], list(data.names), kinds, n_rows=data.shape[0]), data


def _cmd_sample(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    name = type(model).__name__
    if _model_kind(model) == "kmeans" or not hasattr(model, "sample"):
        raise InputError(
            f"A {name} model cannot draw samples: it has centers but no distribution of the "
            "rows around them. Fit a mixture (emkit fit) to sample from it."
        )
    if args.seed is not None:
        model.set_params(random_state=args.seed)
    drawn = model.sample(args.n_samples)
    X, component = drawn if isinstance(drawn, tuple) else (drawn, None)
    names = _feature_names(model) or [f"x{j}" for j in range(X.shape[1])]
    columns: list[Any] = list(X.T)
    discrete = _discrete_columns(model)
    for j, column_name in enumerate(names):
        known = (getattr(model, "categories_", None) or {}).get(column_name)
        if known is not None:  # category codes back to the values of the table
            columns[j] = np.asarray(known, dtype=object)[X[:, j].astype(np.intp)]
        elif j in discrete:  # counts and 0/1 flags, written as the integers they are
            columns[j] = X[:, j].astype(np.int64)
    if component is None:
        _write_output(args.out, names, columns)
    else:
        _write_output(args.out, [*names, "component"], [*columns, component])
    return 0


def _discrete_columns(model: Any) -> set[int]:
    """Positions of a MixtureModel's columns whose family draws whole numbers."""
    family = getattr(model, "family_", None)
    if family is None:
        return set()
    blocks = getattr(family, "blocks", None)
    parts = blocks.values() if blocks is not None else [(range(model.n_features_in_), family)]
    return {
        int(j)
        for columns, block in parts
        if isinstance(block, Poisson | Bernoulli | Categorical | Multinomial)
        for j in columns
    }


def _write_output(out: str | None, header: Sequence[str], columns: Sequence[Any]) -> None:
    if out is None:
        write_columns(sys.stdout, header, columns)
        return
    with atomic_write(out, text=True) as fh:
        write_columns(fh, header, columns)
    print(f"wrote {out}")
