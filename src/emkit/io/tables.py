"""Reading tables from CSV/TSV/text, NumPy ``.npy`` and Parquet files.

:func:`read_columns` returns every column with its kind (float, integer, bool or text),
missing cells as NaN (numbers) or ``None`` (text), and the row ids of an index column.
:func:`read_table` returns the numeric matrix alone. Text files are parsed by pyarrow's
multi-threaded CSV reader when pyarrow is installed (``pip install "emkit[parquet]"``), else
by :func:`numpy.loadtxt`; in both cases the cells are converted column by column, never one
cell at a time in Python. Problems are reported as :class:`~emkit.exceptions.InputError`
naming the file, the line and the column, and saying what to do.

Column selections (``columns=``) take names, 0-based positions, inclusive ranges of either
(``"2:5"``, ``"a:d"``, open ends ``"3:"``, ``":d"``) and exclusions (``"^id"``, ``"^0:2"``).
A name written exactly as in the file always wins over these readings.

Blank lines are skipped; a line of delimiters alone (``",,"``) is a row of missing cells.
In a one-column file write a missing cell as ``NA`` (an empty line is a blank line).
"""

from __future__ import annotations

import csv
import importlib.resources
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError

__all__ = ["SUPPORTED_EXTENSIONS", "Table", "load_faithful", "read_columns", "read_table"]

Header = bool | Literal["auto"]
Columns = Sequence[str | int] | str | int | None
Kind = Literal["float", "integer", "bool", "text"]

_TEXT_DELIMITERS: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".txt": None}
SUPPORTED_EXTENSIONS = (*_TEXT_DELIMITERS, ".npy", ".parquet")
# Cells read as missing values (after stripping spaces, in any letter case).
_MISSING = ("", "na", "n/a", "nan", "null", "none", "-")
_TRUE, _FALSE = ("true", "yes"), ("false", "no")


@dataclass(frozen=True)
class Table:
    """The columns of a table file and what is known about them.

    Attributes
    ----------
    columns : list of ndarray of shape (n_rows,)
        float64 (NaN for a missing cell) for kinds 'float' and 'integer', bool for 'bool'
        (a bool column with missing cells is float64 0/1/NaN), object arrays of str (None
        for a missing cell) for 'text'.
    names : list of str
        The column names: from the header, else ``x0``, ``x1``, ... (positions in the file).
    kinds : list of {'float', 'integer', 'bool', 'text'}
        What the cells of each column are: 'integer' when every present cell is a whole
        number written without a decimal point.
    row_ids : ndarray of shape (n_rows,) or None
        The values of the file's index column (see ``index_note``), else None.
    index_note : str or None
        What was taken as the index column and why, e.g. "the unnamed first column
        (0, 1, 2, ... as pandas writes it)"; it is not among ``columns``.
    n_rows : int
        The number of data rows.
    positions : list of int
        The 0-based position of each column in the file.
    locate : callable or None
        ``locate(row)`` says where a 0-based data row is in a text file, as "line 3 (data
        row 2)".
    """

    columns: list[NDArray[Any]]
    names: list[str]
    kinds: list[Kind]
    row_ids: NDArray[Any] | None = None
    index_note: str | None = None
    n_rows: int = 0
    positions: list[int] = field(default_factory=list)
    locate: Callable[[int], str] | None = None

    def numeric(self, where: str) -> NDArray[np.float64]:
        """The columns as one C-contiguous float64 matrix; text columns are refused."""
        for j, kind in enumerate(self.kinds):
            if kind == "text":
                values = self.columns[j]
                row = next(i for i, v in enumerate(values.tolist()) if not _is_number(v or ""))
                at = self.locate(row) if self.locate is not None else f"data row {row + 1}"
                raise InputError(
                    f"Data file {where!r} has a non-numeric value {values[row]!r} at {at}, "
                    f"column {self.names[j]!r} (position {self.positions[j]}). emkit fits "
                    "numeric data here: encode that column as numbers or drop it (select the "
                    "numeric columns with columns=... or --columns)."
                )
        X = np.empty((self.n_rows, len(self.columns)), dtype=np.float64)
        for j, values in enumerate(self.columns):
            X[:, j] = values
        return X


def read_table(
    path: str | os.PathLike[str],
    *,
    header: Header = "auto",
    columns: Columns = None,
    delimiter: str | None = None,
) -> tuple[NDArray[np.float64], list[str]]:
    """Read a numeric table into a float64 array and its column names.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (comma), ``.tsv`` (tab), ``.txt`` (comma, semicolon, tab or whitespace,
        from the first line), ``.npy`` (a 2-D numeric array) or ``.parquet`` file (needs
        pyarrow).
    header : {'auto', True, False}, default='auto'
        Whether the first line of a text file holds column names. ``'auto'`` takes it as a
        header when its fields are not all numbers. Ignored for ``.npy`` and ``.parquet``
        (a ``.npy`` file has no names; a Parquet file always has them).
    columns : sequence of str or int, default=None
        The columns to keep, in this order: names, 0-based positions, inclusive ranges
        (``"2:5"``, ``"a:d"``) and exclusions (``"^id"``); see the module docstring.
        ``None`` keeps all.
    delimiter : str, default=None
        The field separator of a text file; ``None`` takes it from the extension, or for
        ``.txt`` from the first line.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The data as float64; NaN where a cell is missing (empty, ``NA``, ``nan``, ...).
    column_names : list of str
        Names of the columns of ``X``: from the header, else ``x0``, ``x1``, ...

    Raises
    ------
    InputError
        If the file is missing, empty, of an unknown type, has rows of different lengths,
        non-numeric cells, or ``columns`` names no column of it.

    Notes
    -----
    An index column written by pandas or R (an unnamed first column holding 0..n-1,
    1..n or distinct row names) is not data: it is left out. :func:`read_columns` returns
    its values.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = path.write_text("a,b\\n1,2\\n3,\\n")
    >>> X, names = read_table(path, columns=["b"])
    >>> X.tolist(), names
    ([[2.0], [nan]], ['b'])
    """
    table = read_columns(path, header=header, columns=columns, delimiter=delimiter)
    return table.numeric(str(path)), table.names


def read_columns(
    path: str | os.PathLike[str],
    *,
    header: Header = "auto",
    columns: Columns = None,
    delimiter: str | None = None,
) -> Table:
    """Read a table file's columns, each with its kind, and its index column if any.

    Parameters are those of :func:`read_table`.

    Returns
    -------
    table : Table
        The selected columns, their names and kinds, and the row ids.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = path.write_text(",size,colour,n\\n0,1.5,red,3\\n1,2.5,,0\\n")
    >>> table = read_columns(path)
    >>> table.names, table.kinds, table.columns[1].tolist(), table.row_ids.tolist()
    (['size', 'colour', 'n'], ['float', 'text', 'integer'], ['red', None], [0, 1])
    """
    p = Path(path)
    if header not in ("auto", True, False):
        raise InputError(f"header must be 'auto', True or False, got {header!r}.")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise InputError(
            f"delimiter must be one character, like ',' or ';' or '\\t', got {delimiter!r}."
        )
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        raise InputError(
            f"Cannot read {str(p)!r}: unknown file type {p.suffix or '(no extension)'!r}. "
            f"Supported: {', '.join(SUPPORTED_EXTENSIONS)}. Rename the file or convert it."
        )
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise InputError(f"Data file {str(p)!r} {what}. Check the path.")
    if suffix == ".npy":
        table = _read_npy(p, columns)
    elif suffix == ".parquet":
        table = _read_parquet(p, columns)
    else:
        table = _read_text(p, header, columns, delimiter)
    if table.n_rows == 0:
        raise InputError(f"Data file {str(p)!r} has no data rows; pass a file with data.")
    return table


def load_faithful() -> tuple[NDArray[np.float64], list[str]]:
    """The Old Faithful geyser data: 272 eruptions of the geyser in Yellowstone.

    Returns
    -------
    X : ndarray of shape (272, 2)
        ``eruptions`` (duration in minutes) and ``waiting`` (minutes to the next eruption).
    column_names : list of str
        ``['eruptions', 'waiting']``.

    Examples
    --------
    >>> X, names = load_faithful()
    >>> X.shape, names
    ((272, 2), ['eruptions', 'waiting'])
    """
    resource = importlib.resources.files("emkit") / "data" / "faithful.csv"
    with importlib.resources.as_file(resource) as path:
        return read_table(path, header=True)


# -- column selections ---------------------------------------------------------------


def _position(text: str, names: list[str], where: str, default: int) -> int:
    """One end of a range or a single column: a name, a position, or empty (``default``)."""
    if text == "":
        return default
    if text in names:
        if names.count(text) > 1:
            raise InputError(
                f"Data file {where!r} has {names.count(text)} columns named {text!r}; "
                "select them by position instead."
            )
        return names.index(text)
    if text.strip().lstrip("-").isdigit():
        j = int(text)
        if not -len(names) <= j < len(names):
            raise InputError(
                f"Column position {j} is out of range: data file {where!r} has "
                f"{len(names)} columns (positions 0 to {len(names) - 1})."
            )
        return j % len(names)
    raise InputError(
        f"Data file {where!r} has no column {text!r}; its columns are "
        f"{', '.join(map(repr, names))}. Pass names, 0-based positions, ranges like 2:5 or "
        "a:d, or exclusions like ^id."
    )


def _expand(item: str | int, names: list[str], where: str) -> list[int]:
    """The positions one selection item names: a column, or an inclusive range."""
    if not isinstance(item, str):
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise InputError(
                f"columns holds {item!r} ({type(item).__name__}); pass names or positions."
            )
        return [_position(str(int(item)), names, where, 0)]
    if item in names or ":" not in item:
        return [_position(item, names, where, 0)]
    low_text, _, high_text = item.partition(":")
    low = _position(low_text.strip(), names, where, 0)
    high = _position(high_text.strip(), names, where, len(names) - 1)
    if high < low:
        raise InputError(
            f"The column range {item!r} is empty: {names[low]!r} (position {low}) comes after "
            f"{names[high]!r} (position {high}). Write the earlier column first."
        )
    return list(range(low, high + 1))


def resolve_columns(columns: Columns, names: list[str], where: str) -> list[int]:
    """0-based positions of the selected columns, in the order asked for.

    Examples
    --------
    >>> resolve_columns(["^id"], ["id", "a", "b", "c"], "f.csv")
    [1, 2, 3]
    >>> resolve_columns(["b:c", "0"], ["id", "a", "b", "c"], "f.csv")
    [2, 3, 0]
    >>> resolve_columns(["1:", "^c"], ["id", "a", "b", "c"], "f.csv")
    [1, 2]
    """
    if columns is None:
        return list(range(len(names)))
    selected = [columns] if isinstance(columns, str | int) else list(columns)
    if not selected:
        raise InputError("columns is empty; pass at least one column name or position.")
    kept: list[int] = []
    dropped: set[int] = set()
    for item in selected:
        if isinstance(item, str) and item.startswith("^") and item not in names:
            if not item[1:]:
                raise InputError("'^' excludes a column: write it before a name, like ^id.")
            dropped.update(_expand(item[1:], names, where))
            continue
        for j in _expand(item, names, where):
            if j in kept:
                raise InputError(f"Column {names[j]!r} is selected twice; select each column once.")
            kept.append(j)
    if not kept and len(kept) < len(selected):  # exclusions alone: from every column
        kept = list(range(len(names)))
    indices = [j for j in kept if j not in dropped]
    if not indices:
        raise InputError(
            f"The column selection {', '.join(map(str, selected))} leaves no column of data "
            f"file {where!r}; its columns are {', '.join(map(repr, names))}."
        )
    return indices


# -- text ----------------------------------------------------------------------------


def _sniff_delimiter(line: str) -> str | None:
    for delimiter in (",", ";", "\t"):
        if delimiter in line:
            return delimiter
    return None  # runs of whitespace


def _data_lines(path: Path, delimiter: str | None) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, fields) of every non-blank line."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        if delimiter is None:
            for number, line in enumerate(fh, start=1):
                if line.strip():
                    yield number, line.split()
        else:
            reader = csv.reader(fh, delimiter=delimiter)
            for fields in reader:
                # a line of delimiters alone is a row of missing cells, as the readers see it
                if len(fields) > 1 or (fields and fields[0].strip()):
                    yield reader.line_num, fields


def _is_number(field: str) -> bool:
    text = field.strip()
    if text.lower() in _MISSING:
        return True  # a missing cell does not make a line a header
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_line(path: Path) -> str | None:
    with path.open(encoding="utf-8-sig") as fh:
        return next((line for line in fh if line.strip()), None)


def _read_text(path: Path, header: Header, columns: Columns, delimiter: str | None) -> Table:
    where = str(path)
    try:
        first_line = _first_line(path)
        if first_line is None:
            raise InputError(f"Data file {where!r} is empty; pass a file with data.")
        if delimiter is None:
            delimiter = _TEXT_DELIMITERS[path.suffix.lower()] or _sniff_delimiter(first_line)
        lines = _data_lines(path, delimiter)
        first_number, first_fields = next(lines)
        second = next(lines, None)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"Data file {where!r} is not UTF-8 text ({exc.reason} at byte {exc.start}). "
            "Save it as UTF-8 or convert it to .npy."
        ) from exc
    except csv.Error as exc:
        raise InputError(f"Data file {where!r} is not a readable table: {exc}.") from exc
    if len(first_fields) == 1 and second is not None and delimiter is not None:
        if len(second[1]) == 1 and any(d in first_line for d in ";,\t" if d != delimiter):
            _one_column_hint(where, delimiter, first_line)
    has_header = not all(_is_number(f) for f in first_fields) if header == "auto" else bool(header)
    n_fields = len(first_fields)
    row_names = False
    if has_header:
        names = [f.strip() or f"x{j}" for j, f in enumerate(first_fields)]
        unnamed_first = not first_fields[0].strip()
        if second is not None and len(second[1]) == n_fields + 1:
            # R's write.table: the header has no field above the row names
            names, unnamed_first, row_names = ["x0", *names], True, True
            n_fields += 1
        if second is None:
            raise InputError(
                f"Data file {where!r} has a header line but no data rows; pass a file with data."
            )
    else:
        names = [f"x{j}" for j in range(n_fields)]
        unnamed_first = False
    skip = first_number if has_header else first_number - 1
    first_row = second[1] if has_header and second is not None else first_fields
    if row_names:
        first_row = ["", *first_row]
    raw = _parse_text(path, delimiter, skip, n_fields, has_header, names, first_row)

    def locate(row: int) -> str:
        lines = _data_lines(path, delimiter)
        for number, _ in itertools.islice(lines, row + has_header, None):
            return f"line {number} (data row {row + 1})"
        return f"data row {row + 1}"

    return _assemble(raw, names, columns, where, unnamed_first, row_names, locate)


def _one_column_hint(where: str, delimiter: str, line: str) -> None:
    for other in (";", "\t", ","):
        if other != delimiter and other in line:
            shown = {"\t": "\\t"}.get(other, other)
            raise InputError(
                f"Data file {where!r} reads as a single column with the delimiter "
                f"{delimiter!r}, but its first line holds {other!r}: pass --delimiter "
                f"'{shown}' (delimiter={other!r} in Python)."
            )


def _parse_text(
    path: Path,
    delimiter: str | None,
    skip: int,
    n_fields: int,
    has_header: bool,
    names: list[str],
    first_row: list[str],
) -> list[Any]:
    """Every column of the file as pyarrow arrays or NumPy string arrays."""
    if delimiter is not None:
        try:
            import pyarrow.csv as pa_csv
        except ImportError:
            pass
        else:
            try:
                table = pa_csv.read_csv(
                    path,
                    read_options=pa_csv.ReadOptions(
                        column_names=[f"c{j}" for j in range(n_fields)], skip_rows=skip
                    ),
                    parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                    convert_options=pa_csv.ConvertOptions(
                        strings_can_be_null=True,
                        quoted_strings_can_be_null=True,
                        null_values=[v for m in _MISSING for v in {m, m.upper(), m.title()}],
                        true_values=[v for t in _TRUE for v in (t, t.upper(), t.title())],
                        false_values=[v for f in _FALSE for v in (f, f.upper(), f.title())],
                    ),
                )
            except Exception as exc:  # pyarrow's ArrowInvalid: find the row in Python
                _diagnose(path, delimiter, has_header, names)
                raise InputError(f"Data file {str(path)!r} is not a readable table: {exc}") from exc
            return [table.column(j) for j in range(table.num_columns)]
    options: dict[str, Any] = {
        "delimiter": delimiter,
        "skiprows": skip,
        "ndmin": 2,
        "comments": None,
        "quotechar": '"' if delimiter is not None else None,
        "encoding": "utf-8-sig",
    }
    try:  # numbers alone: NumPy's float parser, no text in between
        numbers = np.loadtxt(path, dtype=np.float64, **options)
    except ValueError:
        pass
    else:
        if numbers.shape[1] == n_fields or not numbers.shape[0]:
            # whole numbers are counts when the first row writes them without a point
            # or an exponent, as pyarrow reads a column's type from its cells
            return [
                _Numbers(numbers[:, j], written_whole=_is_whole(first_row[j]))
                for j in range(numbers.shape[1])
            ]
    try:
        cells = np.loadtxt(
            path,
            delimiter=delimiter,
            skiprows=skip,
            ndmin=2,
            dtype=str,
            comments=None,
            quotechar='"' if delimiter is not None else None,
            encoding="utf-8-sig",
        )
    except ValueError as exc:
        _diagnose(path, delimiter, has_header, names)
        raise InputError(f"Data file {str(path)!r} is not a readable table: {exc}") from exc
    if cells.shape[1] != n_fields and cells.shape[0]:
        _diagnose(path, delimiter, has_header, names)
    return [cells[:, j] for j in range(cells.shape[1])] if cells.shape[0] else []


def _diagnose(path: Path, delimiter: str | None, has_header: bool, names: list[str]) -> None:
    """Find the first ragged row and raise about it (an error path: a loop in Python)."""
    where = str(path)
    lines = _data_lines(path, delimiter)
    if has_header:
        next(lines)
    for row, (number, fields) in enumerate(lines, start=1):
        if len(fields) != len(names):
            raise InputError(
                f"Data file {where!r} has rows of different lengths: line {number} (data "
                f"row {row}) has {len(fields)} fields, but the "
                f"{'header' if has_header else 'first line'} has {len(names)}. Every row "
                "needs one value per column; fix or remove that line."
            )


# -- cells to typed columns ----------------------------------------------------------


class _Numbers(np.ndarray):
    """A column NumPy parsed as float64 (a view) and whether its first cell was written as
    a whole number."""

    written_whole: bool

    def __new__(cls, values: NDArray[np.float64], *, written_whole: bool) -> _Numbers:
        view = values.view(cls)
        view.written_whole = written_whole
        return view


def _is_whole(cell: str) -> bool:
    text = cell.strip().lower()
    return bool(text) and text.lstrip("+-").isdigit()


def _convert(values: Any) -> tuple[NDArray[Any], Kind]:
    """One column (a pyarrow array or NumPy strings) as a NumPy array and its kind."""
    if isinstance(values, _Numbers):
        column = np.asarray(values, dtype=np.float64)
        finite = column[np.isfinite(column)]
        whole = values.written_whole and np.array_equal(finite, np.round(finite))
        return column, "integer" if whole else "float"
    if isinstance(values, np.ndarray):
        return _convert_strings(values)
    import pyarrow as pa
    import pyarrow.types as pat

    kind = values.type
    if pat.is_null(kind):
        return np.full(len(values), np.nan), "float"
    if pat.is_integer(kind):
        return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), "integer"
    if pat.is_floating(kind):
        return values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False), "float"
    if pat.is_boolean(kind):
        if values.null_count:
            return values.cast(pa.float64()).to_numpy(zero_copy_only=False), "bool"
        return values.to_numpy(zero_copy_only=False).astype(bool), "bool"
    if pat.is_string(kind) or pat.is_large_string(kind):
        return _convert_strings(values.to_numpy(zero_copy_only=False))
    # dates and times: kept as their text, i.e. as categories
    return _convert_strings(values.cast(pa.string()).to_numpy(zero_copy_only=False))


def _convert_strings(cells: NDArray[Any]) -> tuple[NDArray[Any], Kind]:
    """Text cells, with None or missing markers, as numbers when they all are numbers."""
    present = cells != None  # noqa: E711 (elementwise)
    text = np.where(present, cells, "").astype(str)
    text = np.char.strip(text)
    lowered = np.char.lower(text)
    missing = np.isin(lowered, _MISSING)
    filled = np.where(missing, "nan", text)
    try:
        numbers = filled.astype(np.float64)
    except ValueError:
        pass
    else:
        whole = ~np.char.count(filled, ".").astype(bool) & ~np.char.count(lowered, "e").astype(bool)
        is_integer = bool(whole[~missing].all()) and not np.isinf(numbers).any()
        return numbers, "integer" if is_integer and (~missing).any() else "float"
    truth = np.isin(lowered, _TRUE)
    if (truth | np.isin(lowered, _FALSE) | missing).all():
        if missing.any():
            return np.where(missing, np.nan, truth.astype(np.float64)), "bool"
        return truth, "bool"
    out = text.astype(object)
    out[missing] = None
    return out, "text"


def _index_ids(values: NDArray[Any], kind: Kind, row_names: bool) -> str | None:
    """Why an unnamed first column is an index, or None when it is data."""
    n = values.shape[0]
    if row_names:
        return "row names: the header has one field fewer than the rows, as R writes them"
    if kind == "integer" and not np.isnan(values).any():
        for start in (0, 1):
            if np.array_equal(values, np.arange(start, start + n)):
                writer = "pandas" if start == 0 else "R"
                return f"{start}, {start + 1}, {start + 2}, ... as {writer} writes row ids"
    if kind == "text" and (values != None).all() and len(set(values.tolist())) == n:  # noqa: E711
        return "distinct row names"
    return None


def _assemble(
    raw: list[Any],
    names: list[str],
    columns: Columns,
    where: str,
    unnamed_first: bool,
    row_names: bool,
    locate: Callable[[int], str],
) -> Table:
    if not raw:
        return Table([], names, [], n_rows=0)
    n_rows = len(raw[0])
    row_ids: NDArray[Any] | None = None
    note: str | None = None
    index = None
    if unnamed_first and len(raw) > 1:
        first, kind = _convert(raw[0])
        why = _index_ids(first, kind, row_names)
        if why is not None:
            index = 0
            row_ids = first.astype(np.int64) if kind == "integer" else first
            note = f"the unnamed first column is the row ids ({why}); it is not fitted"
    indices = resolve_columns(columns, names, where)
    indices = [j for j in indices if j != index]
    if not indices:
        raise InputError(
            f"The column selection leaves only the index column of data file {where!r}; "
            "select data columns."
        )
    converted = [_convert(raw[j]) for j in indices]
    return Table(
        [values for values, _ in converted],
        [names[j] for j in indices],
        [kind for _, kind in converted],
        row_ids=row_ids,
        index_note=note,
        n_rows=n_rows,
        positions=indices,
        locate=locate,
    )


# -- binary formats --------------------------------------------------------------------


def _read_npy(path: Path, columns: Columns) -> Table:
    where = str(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(
            f"Data file {where!r} is not a numeric .npy array ({exc}). emkit loads numeric "
            "arrays only, never pickled objects."
        ) from exc
    except (OSError, EOFError) as exc:
        raise InputError(f"Data file {where!r} is not a readable .npy file: {exc}") from exc
    if arr.size == 0 and arr.ndim == 2:
        raise InputError(f"Data file {where!r} is empty (shape {arr.shape}); pass data.")
    if arr.dtype.names is not None or arr.dtype.kind not in "biuf":
        raise InputError(
            f"Data file {where!r} holds an array of dtype {arr.dtype}; emkit reads numeric "
            "(bool, integer or float) arrays. Encode other values as numbers."
        )
    if arr.ndim == 1:
        raise InputError(
            f"Data file {where!r} holds a 1-D array (shape {arr.shape}); emkit expects "
            "a 2-D array of shape (n_samples, n_features). Save it reshaped: "
            "X.reshape(-1, 1) for one feature, X.reshape(1, -1) for one sample."
        )
    if arr.ndim != 2:
        raise InputError(
            f"Data file {where!r} holds a {arr.ndim}-D array (shape {arr.shape}); emkit "
            "expects a 2-D array of shape (n_samples, n_features)."
        )
    names = [f"x{j}" for j in range(arr.shape[1])]
    indices = resolve_columns(columns, names, where)
    kind: Kind = {"b": "bool", "i": "integer", "u": "integer"}.get(arr.dtype.kind, "float")  # type: ignore[assignment]
    data = [arr[:, j] if kind == "bool" else arr[:, j].astype(np.float64) for j in indices]
    return Table(
        data,
        [names[j] for j in indices],
        [kind] * len(indices),
        n_rows=arr.shape[0],
        positions=indices,
    )


def _read_parquet(path: Path, columns: Columns) -> Table:
    where = str(path)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(
            f'Reading Parquet files ({where!r}) needs pyarrow: pip install "emkit[parquet]".'
        ) from None
    try:
        names = list(pq.read_schema(path).names)
        indices = resolve_columns(columns, names, where)
        table = pq.read_table(path, columns=[names[j] for j in indices])
    except InputError:
        raise
    except Exception as exc:  # pyarrow raises its own types for damaged files
        raise InputError(f"Data file {where!r} is not a readable Parquet file: {exc}") from exc
    converted = [_convert(table.column(position)) for position in range(len(indices))]
    return Table(
        [values for values, _ in converted],
        [names[j] for j in indices],
        [kind for _, kind in converted],
        n_rows=table.num_rows,
        positions=indices,
    )
