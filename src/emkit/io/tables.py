"""Reading numeric tables from CSV/TSV/text, NumPy ``.npy`` and Parquet files.

Every reader returns the same thing: a C-contiguous float64 array of shape
(n_samples, n_features) and the column names. Problems are reported as
:class:`~emkit.exceptions.InputError` naming the file, the row and the column, and saying
what to do.
"""

from __future__ import annotations

import csv
import importlib.resources
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError

__all__ = ["SUPPORTED_EXTENSIONS", "load_faithful", "read_table"]

Header = bool | Literal["auto"]
Columns = Sequence[str | int] | str | int | None

_TEXT_DELIMITERS: dict[str, str | None] = {".csv": ",", ".tsv": "\t", ".txt": None}
SUPPORTED_EXTENSIONS = (*_TEXT_DELIMITERS, ".npy", ".parquet")
# Cells read as missing values: NumPy parses "nan" itself, the others are CSV habits.
_MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-"})


def read_table(
    path: str | os.PathLike[str],
    *,
    header: Header = "auto",
    columns: Columns = None,
) -> tuple[NDArray[np.float64], list[str]]:
    """Read a numeric table into a float64 array and its column names.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` (comma), ``.tsv`` (tab), ``.txt`` (comma, tab or whitespace, from the
        first line), ``.npy`` (a 2-D numeric array) or ``.parquet`` file (needs pyarrow).
    header : {'auto', True, False}, default='auto'
        Whether the first line of a text file holds column names. ``'auto'`` takes it as a
        header when its fields are not all numbers. Ignored for ``.npy`` and ``.parquet``
        (a ``.npy`` file has no names; a Parquet file always has them).
    columns : sequence of str or int, default=None
        The columns to keep, in this order, by name or by 0-based position (a string of
        digits that is not a column name counts as a position). ``None`` keeps all.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
        The data as float64.
    column_names : list of str
        Names of the columns of ``X``: from the header, else ``x0``, ``x1``, ...

    Raises
    ------
    InputError
        If the file is missing, empty, of an unknown type, has rows of different lengths,
        non-numeric or missing cells, or ``columns`` names no column of it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.csv"
    >>> _ = path.write_text("a,b\\n1,2\\n3,4\\n")
    >>> X, names = read_table(path, columns=["b"])
    >>> X.tolist(), names
    ([[2.0], [4.0]], ['b'])
    """
    p = Path(path)
    if header not in ("auto", True, False):
        raise InputError(f"header must be 'auto', True or False, got {header!r}.")
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
        X, names = _read_npy(p, columns)
    elif suffix == ".parquet":
        X, names = _read_parquet(p, columns)
    else:
        X, names = _read_text(p, header, columns)
    if X.shape[0] == 0:
        raise InputError(f"Data file {str(p)!r} has no data rows; pass a file with data.")
    _check_missing(X, names, p)
    return np.ascontiguousarray(X, dtype=np.float64), names


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


# -- text ----------------------------------------------------------------------------


def _sniff_delimiter(line: str) -> str | None:
    for delimiter in (",", "\t"):
        if delimiter in line:
            return delimiter
    return None  # runs of whitespace


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader([line], delimiter=delimiter))


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
                if any(f.strip() for f in fields):
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


def _read_text(
    path: Path, header: Header, columns: Columns
) -> tuple[NDArray[np.float64], list[str]]:
    where = str(path)
    try:
        first_line = _first_line(path)
        if first_line is None:
            raise InputError(f"Data file {where!r} is empty; pass a file with data.")
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
    has_header = not all(_is_number(f) for f in first_fields) if header == "auto" else bool(header)
    if has_header:
        names = [f.strip() or f"x{j}" for j, f in enumerate(first_fields)]
    else:
        names = [f"x{j}" for j in range(len(first_fields))]
    indices = _resolve_columns(columns, names, where)
    if has_header and second is None:
        raise InputError(
            f"Data file {where!r} has a header line but no data rows; pass a file with data."
        )
    try:
        X = np.loadtxt(
            path,
            delimiter=delimiter,
            skiprows=first_number if has_header else first_number - 1,
            usecols=None if columns is None else indices,
            ndmin=2,
            dtype=np.float64,
            comments=None,
            quotechar='"' if delimiter is not None else None,
            encoding="utf-8-sig",
        )
    except ValueError as exc:
        _diagnose(path, delimiter, has_header, names, indices)
        raise InputError(f"Data file {where!r} could not be read as numbers: {exc}") from exc
    if columns is not None or X.shape[1] != len(names):
        # usecols makes loadtxt ignore extra fields, and a header may be longer than the
        # rows: the table must still be rectangular
        _diagnose(path, delimiter, has_header, names, indices, values=False)
    return X, [names[j] for j in indices]


def _diagnose(
    path: Path,
    delimiter: str | None,
    has_header: bool,
    names: list[str],
    indices: list[int],
    *,
    values: bool = True,
) -> None:
    """Find the first ragged row, or non-numeric or missing cell, and raise about it."""
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
        if not values:
            continue
        for j in indices:
            cell = fields[j].strip()
            if cell.lower() in _MISSING:
                _raise_missing(where, f"line {number} (data row {row})", names[j], j)
            try:
                float(cell)
            except ValueError:
                raise InputError(
                    f"Data file {where!r} has a non-numeric value {cell!r} at line {number} "
                    f"(data row {row}), column {names[j]!r} (position {j}). emkit fits "
                    "numeric data: encode that column as numbers or drop it (select the "
                    "numeric columns with columns=... or --columns)."
                ) from None


def _raise_missing(where: str, at: str, name: str, j: int) -> None:
    raise InputError(
        f"Data file {where!r} has a missing value (NaN or empty cell) at {at}, column "
        f"{name!r} (position {j}). Missing values are not yet supported: drop or impute "
        "those rows first."
    )


def _check_missing(X: NDArray[np.float64], names: list[str], path: Path) -> None:
    if X.size and np.isnan(X.min()):  # NaN shows in the minimum, without a temporary
        i, j = np.argwhere(np.isnan(X))[0]
        _raise_missing(str(path), f"data row {i + 1}", names[j], int(j))


def _resolve_columns(columns: Columns, names: list[str], where: str) -> list[int]:
    """0-based positions of the selected columns, in the order asked for."""
    if columns is None:
        return list(range(len(names)))
    selected = [columns] if isinstance(columns, str | int) else list(columns)
    if not selected:
        raise InputError("columns is empty; pass at least one column name or position.")
    indices: list[int] = []
    for column in selected:
        if isinstance(column, str) and column in names:
            if names.count(column) > 1:
                raise InputError(
                    f"Data file {where!r} has {names.count(column)} columns named {column!r}; "
                    "select them by position instead."
                )
            j = names.index(column)
        elif (isinstance(column, int | np.integer) and not isinstance(column, bool)) or (
            isinstance(column, str) and column.strip().lstrip("-").isdigit()
        ):
            j = int(column)
            if not -len(names) <= j < len(names):
                raise InputError(
                    f"Column position {j} is out of range: data file {where!r} has "
                    f"{len(names)} columns (positions 0 to {len(names) - 1})."
                )
            j %= len(names)
        else:
            raise InputError(
                f"Data file {where!r} has no column {column!r}; its columns are "
                f"{', '.join(map(repr, names))}. Pass names or 0-based positions."
            )
        if j in indices:
            raise InputError(f"Column {names[j]!r} is selected twice; select each column once.")
        indices.append(j)
    return indices


# -- binary formats --------------------------------------------------------------------


def _read_npy(path: Path, columns: Columns) -> tuple[NDArray[np.float64], list[str]]:
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
    indices = _resolve_columns(columns, names, where)
    return arr[:, indices].astype(np.float64), [names[j] for j in indices]


def _read_parquet(path: Path, columns: Columns) -> tuple[NDArray[np.float64], list[str]]:
    where = str(path)
    try:
        import pyarrow.parquet as pq
        import pyarrow.types as pat
    except ImportError:
        raise InputError(
            f'Reading Parquet files ({where!r}) needs pyarrow: pip install "emkit[parquet]".'
        ) from None
    try:
        names = list(pq.read_schema(path).names)
        indices = _resolve_columns(columns, names, where)
        table = pq.read_table(path, columns=[names[j] for j in indices])
    except InputError:
        raise
    except Exception as exc:  # pyarrow raises its own types for damaged files
        raise InputError(f"Data file {where!r} is not a readable Parquet file: {exc}") from exc
    data: list[Any] = []
    for position, j in enumerate(indices):
        column = table.column(position)
        if not (
            pat.is_integer(column.type)
            or pat.is_floating(column.type)
            or pat.is_boolean(column.type)
        ):
            raise InputError(
                f"Data file {where!r} has a non-numeric column {names[j]!r} (position {j}, "
                f"type {column.type}). emkit fits numeric data: encode that column as "
                "numbers or drop it (select the numeric columns with columns=... or --columns)."
            )
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy())[0])
            _raise_missing(where, f"data row {row + 1}", names[j], j)
        data.append(column.to_numpy().astype(np.float64))
    if not data or table.num_rows == 0:
        return np.empty((0, len(indices))), [names[j] for j in indices]
    return np.column_stack(data), [names[j] for j in indices]
