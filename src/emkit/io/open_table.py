"""Tables too large for memory, opened as sources that are read a block of rows at a time.

:func:`open_table` checks what it can without reading the data (the file exists, its
type, columns and, for ``.npy`` and Parquet, its size and column types), and for text
files reads it once to count and check every row, so that a bad cell is reported when the
file is opened, before a fit starts or anything is written. A fit then reads the file
once per EM pass through :meth:`ChunkedTable.iter_chunks`, a block of rows at a time:
``.npy`` files are read by plain file reads into each block (no mapping: the file's pages
never count in the process's memory), Parquet files are decoded a few pages of each column
at a time (pyarrow, buffered reads, no read-ahead of whole row groups), text files by
pyarrow's streaming CSV reader. An engine reads the next block while its threads map the
current one: memory holds at most those two blocks, plus the reader's own buffers (for
Parquet, about one data page and one dictionary page a column, as the file was written:
1 MiB each with pyarrow's defaults).

By default (``spill="auto"``) a CSV, TSV or Parquet file is converted once, when it is
opened, into a temporary file of float64 rows (a *spill*), which every pass then reads as
a ``.npy`` file is read: a CSV file is parsed once instead of once per EM pass, and a
Parquet file is decoded a column at a time (pyarrow holds one column's pages, not every
column's at once). The spill takes ``n_rows x n_columns x 8`` bytes in the temporary
directory and is removed when the table is closed (:meth:`ChunkedTable.close`, or the
table used as a context manager), garbage-collected, or at interpreter exit, and when
opening fails or is interrupted; a process that is killed leaves it in the temporary
directory (a directory named ``emkit-spill-*``).

Text columns (strings in a Parquet file; in a CSV file, a column whose first value is not
a number, or one named in ``text=``) read as the codes of their categories: their
distinct values, found in the pass that opening makes, in sorted order. While the file is
read each value gets a code in the order it is first seen (what the spill holds), and
every block read is then mapped to the sorted codes, so that the codes do not depend on
how the file is cut into blocks.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError
from emkit.io.tables import (
    _MISSING,
    Columns,
    _convert_strings,
    _data_lines,
    _first_line,
    _is_number,
    _sniff_delimiter,
    resolve_columns,
)

__all__ = ["ChunkedTable", "open_table"]

_T = TypeVar("_T")

# Bytes of float64 rows a block holds: large enough that reading costs little per row and
# that the engine's threads share a block's cache-sized chunks evenly, small next to the
# data (two blocks are held at once: the one mapped and the one read ahead).
_BLOCK_BYTES = 4 << 20
# Bytes of float64 rows pyarrow decodes at a time (copied into the block as they come):
# its own buffers for a batch come on top of the pages it holds.
_DECODE_BYTES = 1 << 20
# Bytes a Parquet column's buffered reader holds (pages are read from it, not whole
# column chunks).
_READ_BUFFER = 1 << 16
_TEXT_DELIMITERS = {".csv": ",", ".tsv": "\t"}
# Bytes of text pyarrow parses at a time (at least 8 lines): its streaming CSV reader reads
# up to 32 such blocks ahead (into Python bytes, from a file object), whatever
# use_threads says: 4 MiB blocks held 124 MiB of text at once, 256 KiB blocks 9 MiB.
_TEXT_BLOCK = 1 << 18
# Values of one Parquet column decoded at a time while it is spilled.
_SPILL_BATCH = 1 << 16

# The most distinct values a text column may hold (open_table's max_categories).
MAX_CATEGORIES = 1 << 16

_log = logging.getLogger(__name__)


class _Spill:
    """A temporary directory holding a table's rows as raw float64 values, removed by
    :meth:`remove`, when this object is collected, or at interpreter exit."""

    def __init__(self, parent: str | os.PathLike[str] | None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="emkit-spill-", dir=parent))
        self.file = self.directory / "rows.f64"
        self._removal = weakref.finalize(
            self, shutil.rmtree, str(self.directory), ignore_errors=True
        )

    @property
    def removed(self) -> bool:
        return not self._removal.alive

    def remove(self) -> None:
        self._removal()


@dataclass(frozen=True, eq=False)
class ChunkedTable:
    """A table in a file, read a block of rows at a time as float64 (text columns as the
    codes of their categories; see :func:`open_table`).

    Attributes
    ----------
    path : pathlib.Path
    names : list of str
        The selected columns' names (``x0``, ``x1``, ... where the file has none).
    shape : tuple of (int, int)
        (number of data rows, number of selected columns).
    block_rows : int
        Rows per block read (the last block may be shorter; text files' blocks vary).
    spill : pathlib.Path or None
        The temporary file of float64 rows that passes read instead of ``path`` (see
        :func:`open_table`'s ``spill``), or None when ``path`` itself is read.
    categories : dict of str to list of str
        For each text column, its categories (its distinct values, sorted, or those given
        to :func:`open_table`): the column reads as their codes 0, 1, ... (NaN for a
        missing cell).
    """

    path: Path
    names: list[str]
    shape: tuple[int, int]
    block_rows: int
    _read: Callable[[int], Iterator[NDArray[np.float64]]]
    _spill: _Spill | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)

    ndim = 2
    itemsize = 8
    dtype = np.dtype(np.float64)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def spill(self) -> Path | None:
        return None if self._spill is None else self._spill.file

    def close(self) -> None:
        """Remove the table's spill file (nothing to do without one); the table cannot
        be read afterwards."""
        if self._spill is not None:
            self._spill.remove()

    def __enter__(self) -> ChunkedTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_chunks(self) -> Iterator[tuple[int, NDArray[np.float64]]]:
        """(index of the first row, rows as float64 with NaN for a missing cell) for
        every block of the file, in order (a block is not held once the next is asked
        for)."""
        if self._spill is not None and self._spill.removed:
            raise InputError(
                f"{self!r} was closed: its spill file is removed. Open the file again "
                "with emkit.io.open_table."
            )
        start = 0
        for rows in self._read(self.block_rows):
            if start + rows.shape[0] > self.shape[0]:
                raise self._changed(f"more than {start} now")
            if rows.shape[0]:
                yield start, rows
                start += rows.shape[0]
            del rows
        if start != self.shape[0]:
            raise self._changed(f"{start} now")

    def _changed(self, now: str) -> InputError:
        return InputError(
            f"Data file {str(self.path)!r} changed while it was read: it had "
            f"{self.shape[0]} data rows when opened and {now}. Do not modify a file while "
            "a fit reads it."
        )

    def read(self) -> NDArray[np.float64]:
        """Every row in one array (only for a table that fits in memory)."""
        X = np.empty(self.shape)
        for start, rows in self.iter_chunks():
            X[start : start + rows.shape[0]] = rows
        return X

    def __repr__(self) -> str:
        return f"ChunkedTable({str(self.path)!r}, shape={self.shape})"


def open_table(
    path: str | os.PathLike[str],
    columns: Columns = None,
    *,
    block_rows: int | None = None,
    spill: bool | str = "auto",
    spill_dir: str | os.PathLike[str] | None = None,
    text: Columns = None,
    categories: Mapping[str, Sequence[str]] | None = None,
    max_categories: int = MAX_CATEGORIES,
) -> ChunkedTable:
    """Open a table file as a source that a fit reads a block of rows at a time.

    Every estimator's ``fit``, ``predict``, ``score`` and ``score_samples`` accept the
    result as ``X``; each EM pass streams the file, so a file larger than memory can be
    fitted with memory bounded by the block size (plus one value per row for the outputs
    of ``predict``).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` (2-D numeric, memory-mapped), ``.parquet`` (needs pyarrow), ``.csv`` or
        ``.tsv`` file (needs pyarrow; a header line is detected as :func:`read_table`
        does, cells such as ``NA`` or empty are missing values).
    columns : sequence of str or int, default=None
        The columns to keep (names, positions, ranges, exclusions; see
        :func:`emkit.io.read_table`); ``None`` keeps all.
    block_rows : int, default=None
        Rows per block; ``None`` reads about 4 MiB of float64 rows a block. A fit holds
        two blocks at once (the one mapped and the next, read meanwhile), so this bounds
        the memory that streaming a file adds.
    spill : {"auto", True, False}, default="auto"
        Whether a ``.csv``, ``.tsv`` or ``.parquet`` file is converted once, now, into a
        temporary file of float64 rows that every pass reads (``n_rows x n_columns x 8``
        bytes on disk; a CSV file is then parsed once, not once per EM pass, and a
        Parquet file is decoded a column at a time, so that pyarrow does not hold every
        column's pages at once). ``"auto"`` spills when the rows take at most half the
        free space of ``spill_dir`` and reads the file itself otherwise (also when
        writing fails, e.g. the disk fills up; logged at INFO level); ``True`` spills or
        raises; ``False`` reads the file itself on every pass. The spill is removed by
        :meth:`ChunkedTable.close` (or leaving ``with open_table(...) as table:``), when
        the table is garbage-collected, at interpreter exit, and when opening fails or is
        interrupted; a killed process leaves it behind (``emkit-spill-*`` in
        ``spill_dir``). Passes read the rows as they were when the file was opened.
        ``.npy`` files are read directly (``True`` is refused for them).
    spill_dir : str or os.PathLike, default=None
        Where the spill is written (``None``: :func:`tempfile.gettempdir`, which the
        ``TMPDIR`` environment variable sets).
    text : sequence of str or int, default=None
        Columns of a ``.csv`` or ``.tsv`` file to read as text from their first row (the
        same selections as ``columns``, among the columns kept). Without it, a column of a
        text file is read as text when its first value (its first cell that is not
        missing) is not a number, and as numbers otherwise; a column that starts with
        numbers and holds text further down is refused, naming the row, with this fix.
        A column read as text whose values all turn out to be numbers (or all
        true/false) reads as those numbers (1/0), as :func:`read_table` reads it.
        Parquet columns of type string (or dictionary of strings) are text.
    categories : dict of str to list of str, default=None
        The categories of text columns (e.g. a fitted model's ``categories_``): those
        columns are coded against them, and a value that is not among them is an error
        naming it, its row and its column. Columns not named get their own categories.
    max_categories : int, default=65536
        The most distinct values a text column may hold. Each category adds one parameter
        per mixture component, and a column with that many values is most likely an
        identifier or free text (names, ids, comments) that says nothing about clusters;
        their distinct values are also held in memory while the file is read.

    Returns
    -------
    ChunkedTable
        Text columns read as the codes 0, 1, ... of their categories (``categories``
        attribute, by column name), which are their distinct values (stripped of
        surrounding spaces) in sorted order whatever the block size, as pandas orders a
        ``category`` column's; a missing cell (empty, ``NA``, ...) reads as NaN. The
        codes are those of the table read whole (:func:`emkit.io.read_table`'s text
        columns made ``category`` columns).

    Raises
    ------
    InputError
        If the file is missing, of an unknown type, truncated or damaged, has a column of
        another type than numbers or text, a cell of text in a column read as numbers, a
        text column with more than ``max_categories`` distinct values or a value not
        among the ``categories`` given, or a row with another number of fields (naming
        the file, the column and the row); with ``spill=True``, if the spill cannot be
        written.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from emkit import GaussianMixture
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.npy"
    >>> rng = np.random.default_rng(0)
    >>> np.save(path, np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(8, 1, (50, 2))]))
    >>> table = open_table(path)
    >>> table.shape
    (100, 2)
    >>> gm = GaussianMixture(2, random_state=0).fit(table)
    >>> np.sort(gm.means_[:, 0]).round().astype(int).tolist()
    [0, 8]
    """
    p = Path(path)
    where = str(p)
    if block_rows is not None and (
        isinstance(block_rows, bool) or not isinstance(block_rows, int) or block_rows < 1
    ):
        raise InputError(f"block_rows must be a positive integer or None, got {block_rows!r}.")
    if not (spill is True or spill is False or spill == "auto"):
        raise InputError(f'spill must be "auto", True or False, got {spill!r}.')
    if (
        isinstance(max_categories, bool)
        or not isinstance(max_categories, int)
        or max_categories < 1
    ):
        raise InputError(f"max_categories must be a positive integer, got {max_categories!r}.")
    known = _check_categories(categories)
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".parquet", *_TEXT_DELIMITERS):
        raise InputError(
            f"Cannot stream {where!r}: unknown file type {p.suffix or '(no extension)'!r}. "
            "open_table reads .npy, .parquet, .csv and .tsv files; convert the file, or "
            "load a small one with emkit.io.read_table."
        )
    if not p.is_file():
        what = "is a directory" if p.is_dir() else "does not exist"
        raise InputError(f"Data file {where!r} {what}. Check the path.")
    if text is not None and suffix not in _TEXT_DELIMITERS:
        raise InputError(
            f"text= applies to .csv and .tsv files, whose cells carry no type; {where!r} "
            "stores its columns' types (Parquet string columns are text, .npy files hold "
            "numbers). Drop text=."
        )
    spilled: _Spill | None = None
    coded: dict[str, list[str]] = {}
    if suffix == ".npy":
        if spill is True:
            raise InputError(
                f"spill=True applies to .csv, .tsv and .parquet files; {where!r} is a .npy "
                'file, read directly. Pass spill="auto" or False.'
            )
        if known:
            raise InputError(
                f"categories= codes text columns; {where!r} is a .npy file of numbers. Drop "
                "categories=."
            )
        names, n_rows, read = _open_npy(p, columns)
    else:
        options = _TextOptions(text, known, max_categories)
        if suffix == ".parquet":
            names, n_rows, read, spilled, coded = _open_parquet(
                p, columns, spill, spill_dir, options
            )
        else:
            names, n_rows, read, spilled, coded = _open_text(
                p, columns, _TEXT_DELIMITERS[suffix], spill, spill_dir, options
            )
    if n_rows == 0:
        if spilled is not None:
            spilled.remove()
        raise InputError(f"Data file {where!r} has no data rows; pass a file with data.")
    rows = block_rows or max(1, _BLOCK_BYTES // (8 * max(len(names), 1)))
    return ChunkedTable(p, names, (n_rows, len(names)), rows, read, spilled, coded)


def _check_categories(categories: Any) -> dict[str, list[str]]:
    """``open_table``'s ``categories``, checked: a mapping of column names to lists of
    distinct strings."""
    if categories is None:
        return {}
    if not isinstance(categories, Mapping):
        raise InputError(
            "categories must be a dict of column names to their categories (lists of "
            f"strings), like a fitted model's categories_; got {type(categories).__name__}."
        )
    known: dict[str, list[str]] = {}
    for name, values in categories.items():
        values = list(values) if isinstance(values, Sequence | np.ndarray) else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise InputError(
                f"categories[{name!r}] must be a list of strings (a text column's "
                f"categories), got {values!r}. Name only text columns in categories=."
            )
        if len(set(values)) < len(values):
            twice = next(v for v in values if values.count(v) > 1)
            raise InputError(
                f"categories[{name!r}] lists {twice!r} twice; each category once, please."
            )
        known[str(name)] = values
    return known


@dataclass(frozen=True)
class _TextOptions:
    """What ``open_table`` was told about text columns."""

    text: Columns
    categories: dict[str, list[str]]
    max_categories: int


class _Coder:
    """The distinct values of one text column, each given a code in the order first seen
    as the file is read (what the spill holds), and after the whole file, the values
    those codes read as (:meth:`finish`): the codes of the sorted categories, or the
    numbers (1/0 for true/false) that every value turned out to be."""

    def __init__(self, where: str, name: str, limit: int) -> None:
        self.where, self.name, self.limit = where, name, limit
        self.index: dict[str, int] = {}
        self.first_rows: list[int] = []  # the 0-based data row where each value first is
        self.lookup: NDArray[np.float64] | None = None  # after finish: code -> value
        self.categories: list[str] | None = None

    def encode(self, column: Any, start: int) -> NDArray[np.float64]:
        """The first-seen codes of a block of the column (a pyarrow array of strings,
        whose first row is data row ``start``), -1 for a missing cell; once the file
        was read whole (:meth:`finish`), the values they read as."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_dictionary(column.type):  # only the values that occur
            column = column.cast(column.type.value_type)
        encoded = pc.dictionary_encode(column)
        indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        values = encoded.dictionary.to_pylist()
        new = [k for k, value in enumerate(values) if value not in self.index]
        if new:
            if self.lookup is not None:
                raise InputError(
                    f"Data file {self.where!r} changed while it was read: column "
                    f"{self.name!r} holds {values[new[0]]!r} (data row "
                    f"{start + int(np.argmax(indices == new[0])) + 1}), which it did not "
                    "hold when opened. Do not modify a file while a fit reads it."
                )
            _, first = np.unique(indices, return_index=True)
            positions = dict(zip(np.unique(indices).tolist(), first.tolist(), strict=True))
            for k in new:
                self.index[values[k]] = len(self.index)
                self.first_rows.append(start + positions[k])
            if len(self.index) > self.limit:
                raise InputError(
                    f"Data file {self.where!r}: column {self.name!r} holds more than "
                    f"{self.limit} distinct values (the {self.limit + 1}th, "
                    f"{list(self.index)[self.limit]!r}, at data row "
                    f"{self.first_rows[self.limit] + 1}). "
                    "A text column with that many categories is most likely an identifier "
                    "or free text, which says nothing about clusters, and each category "
                    "costs one parameter per component. Drop it (columns=['^"
                    f"{self.name}'], emkit fit --columns ^{self.name}), or pass a larger "
                    "max_categories= if it truly holds that many categories."
                )
        codes = np.array([self.index[value] for value in values] + [-1], dtype=np.float64)
        out = codes[indices]
        return out if self.lookup is None else self.lookup[out.astype(np.intp)]

    def finish(self, given: list[str] | None) -> None:
        """The values the codes read as, once every value was seen: the codes of the
        sorted categories (or of ``given``), else the numbers the values all are."""
        # text cells as read_table reads them: stripped, missing markers missing, numbers
        # or true/false when every value is one
        raw = list(self.index)
        values, kind = _convert_strings(np.array(raw, dtype=object))
        if kind != "text" and given is None:
            self.lookup = np.append(np.asarray(values, dtype=np.float64), np.nan)
            return
        stripped = _strip_missing(raw)
        categories = sorted({v for v in stripped if v is not None}) if given is None else given
        position = {category: j for j, category in enumerate(categories)}
        lookup = np.empty(len(stripped) + 1)
        for code, value in enumerate(stripped):
            if value is None:
                lookup[code] = np.nan
            elif value in position:
                lookup[code] = position[value]
            else:
                shown = categories if len(categories) <= 20 else [*categories[:20], "..."]
                raise InputError(
                    f"Data file {self.where!r}, column {self.name!r} has category {value!r} "
                    f"at data row {self.first_rows[code] + 1} that is not among the "
                    f"categories given (the model's: {shown}). Refit with it, or map it to a "
                    "known category."
                )
        lookup[-1] = np.nan
        self.lookup, self.categories = lookup, list(categories)


def _strip_missing(cells: list[str]) -> list[str | None]:
    """Text cells stripped of surrounding spaces, None for a missing marker (``NA``,
    empty, ...), as :func:`read_table` reads a text column's cells."""
    out: list[str | None] = []
    for cell in cells:
        value = cell.strip()
        out.append(None if value.lower() in _MISSING else value)
    return out


def _finish(coders: dict[int, _Coder], known: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every coder finished (:meth:`_Coder.finish`); the categories of the text columns."""
    for coder in coders.values():
        coder.finish(known.get(coder.name))
    return {
        coder.name: coder.categories for coder in coders.values() if coder.categories is not None
    }


def _decoded(read: _Read, coders: dict[int, _Coder]) -> _Read:
    """Blocks of ``read`` whose text columns (first-seen codes, as spilled) read as their
    finished values."""
    if not coders:
        return read

    def decoded(block: int) -> Iterator[NDArray[np.float64]]:
        for rows in read(block):
            for j, coder in coders.items():
                assert coder.lookup is not None
                rows[:, j] = coder.lookup[rows[:, j].astype(np.intp)]
            yield rows
            del rows

    return decoded


_Read = Callable[[int], Iterator[NDArray[np.float64]]]
_Opened = tuple[list[str], int, _Read]


def _start_spill(
    spill: bool | str, spill_dir: str | os.PathLike[str] | None, size: int, where: str
) -> _Spill | None:
    """A new spill for ``size`` bytes of rows of the file ``where``, or None (``spill``
    False, or ``"auto"`` without room for it)."""
    if spill is False:
        return None
    try:
        made = _Spill(spill_dir)
    except OSError as exc:
        _no_spill(spill, where, f"its temporary directory cannot be made ({exc})")
        return None
    free = shutil.disk_usage(made.directory).free
    if size > (free if spill is True else free // 2):
        made.remove()
        _no_spill(
            spill,
            where,
            f"its float64 rows ({size / 2**20:.1f} MiB) need more than "
            f"{'the' if spill is True else 'half the'} free space in "
            f"{str(made.directory.parent)!r} ({free / 2**20:.1f} MiB)",
        )
        return None
    return made


def _no_spill(spill: bool | str, where: str, why: str) -> None:
    """For ``spill="auto"``, logs that the file is read on every pass; for
    ``spill=True``, raises."""
    if spill is True:
        raise InputError(
            f"Cannot spill {where!r}: {why}. Pass spill_dir= (or set TMPDIR) to a directory "
            'with room, or spill="auto" / False to read the file on every pass.'
        )
    _log.info("Reading %s on every pass, not spilling it: %s.", where, why)
    return None


def _write_spill(
    spill: bool | str, made: _Spill, where: str, write: Callable[[], _T]
) -> tuple[_Spill | None, _T | None]:
    """``(made, write())``: the spill ``made`` written by ``write``. Where writing fails
    (an ``OSError``: a full disk...), ``(None, None)``: the spill removed, then as
    :func:`_no_spill`. A bad file or an interrupt removes it and raises: no spill is
    left behind."""
    try:
        return made, write()
    except OSError as exc:
        made.remove()
        _no_spill(spill, where, f"writing {str(made.file)!r} failed ({exc})")
        return None, None
    except BaseException:
        made.remove()
        raise


def _spilled_rows(made: _Spill, n_rows: int, n_columns: int, by_columns: bool) -> _Read:
    """Blocks of float64 rows read from the spill ``made``: its values stored row after
    row, or column after column (``by_columns``: each column's ``n_rows`` values in
    turn), read a column's slice of the block at a time."""

    def read(block: int) -> Iterator[NDArray[np.float64]]:
        with open(made.file, "rb", buffering=0) as fh:
            column = np.empty(min(block, n_rows)) if by_columns else None
            for start in range(0, n_rows, block):
                rows = min(block, n_rows - start)
                out = np.empty((rows, n_columns))
                if column is None:
                    fh.seek(start * n_columns * 8)
                    got = fh.readinto(out.data.cast("B"))
                    out = out[: (got or 0) // (8 * n_columns)]
                else:
                    for j in range(n_columns):
                        fh.seek((j * n_rows + start) * 8)
                        got = fh.readinto(column[:rows].data.cast("B"))
                        if got != rows * 8:
                            out = out[: (got or 0) // 8]
                            break
                        out[:, j] = column[:rows]
                yield out
                if out.shape[0] < rows:
                    return
                del out

    return read


def _open_npy(path: Path, columns: Columns) -> _Opened:
    where = str(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(
            f"Data file {where!r} is not a complete numeric .npy array ({exc}): it may be "
            "truncated (a copy or download cut short) or hold pickled objects. Write it "
            "again with numpy.save."
        ) from exc
    except OSError as exc:
        raise InputError(f"Data file {where!r} is not a readable .npy file: {exc}") from exc
    if arr.dtype.names is not None or arr.dtype.kind not in "biuf" or arr.ndim != 2:
        raise InputError(
            f"Data file {where!r} holds an array of dtype {arr.dtype} and shape {arr.shape}; "
            "open_table streams 2-D numeric arrays of shape (n_samples, n_features)."
        )
    names = [f"x{j}" for j in range(arr.shape[1])]
    indices = resolve_columns(columns, names, where)
    every = indices == list(range(arr.shape[1]))
    n_rows = int(arr.shape[0])
    del arr  # unmapped: each pass reads the file afresh

    def read(block: int) -> Iterator[NDArray[np.float64]]:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        shape, dtype, offset = mapped.shape, mapped.dtype, int(mapped.offset)
        by_rows = mapped.flags.c_contiguous and shape[1:] == (len(names),)
        del mapped
        if not by_rows:  # Fortran order, or a file rewritten with another shape
            yield from _mapped_blocks(path, block, indices, every)
            return
        row_bytes = dtype.itemsize * len(names)
        with open(path, "rb", buffering=0) as fh:
            fh.seek(offset)
            for start in range(0, int(shape[0]), block):
                rows = min(block, int(shape[0]) - start)
                # read in place when the file holds float64 rows (the block itself)
                raw = np.empty((rows, len(names)), dtype=dtype)
                got = fh.readinto(raw.data.cast("B"))
                if got != rows * row_bytes:  # truncated while read: the row count says so
                    raw = raw[: (got or 0) // row_bytes]
                if every and dtype == np.float64:
                    out = raw
                else:
                    out = np.array(raw if every else raw[:, indices], dtype=np.float64)
                del raw
                yield out
                if out.shape[0] < rows:
                    return
                del out

    return [names[j] for j in indices], n_rows, read


def _mapped_blocks(
    path: Path, block: int, indices: list[int], every: bool
) -> Iterator[NDArray[np.float64]]:
    """Blocks of a ``.npy`` file whose rows are not contiguous (Fortran order), copied
    from a mapping of the file made for each block only (its pages leave the process)."""
    n_rows = int(np.load(path, mmap_mode="r", allow_pickle=False).shape[0])
    for start in range(0, n_rows, block):
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
        rows = mapped[start : start + block]
        out = np.array(rows if every else rows[:, indices], dtype=np.float64)
        del rows, mapped
        yield out


def _pyarrow(where: str) -> Any:
    try:
        import pyarrow
    except ImportError:
        raise InputError(
            f'Streaming {where!r} needs pyarrow: pip install "emkit[parquet]".'
        ) from None
    return pyarrow


def _as_float(
    batch: Any, coders: dict[int, _Coder] | None = None, start: int = 0
) -> NDArray[np.float64]:
    """A pyarrow record batch as a float64 matrix, nulls as NaN: numeric columns as
    their values, text columns (``coders``, by position) as their codes; the batch's
    first row is data row ``start``."""
    X = np.empty((batch.num_rows, batch.num_columns), dtype=np.float64)
    _copy_columns(batch, X, coders, start)
    return X


def _copy_columns(
    batch: Any, out: NDArray[np.float64], coders: dict[int, _Coder] | None = None, start: int = 0
) -> None:
    """The columns of a pyarrow record batch (or table) written into ``out``'s columns as
    float64, nulls as NaN, text columns as their codes (see :func:`_as_float`)."""
    for j in range(batch.num_columns):
        coder = None if coders is None else coders.get(j)
        if coder is None:
            out[:, j] = batch.column(j).to_numpy(zero_copy_only=False)
        else:
            out[:, j] = coder.encode(batch.column(j), start)


def _blocks_from_batches(
    batches: Iterator[Any],
    n_rows: int,
    block: int,
    n_columns: int,
    coders: dict[int, _Coder] | None = None,
) -> Iterator[NDArray[np.float64]]:
    """Blocks of ``block`` rows (the last one shorter) filled from record batches of any
    size, each batch copied in as it comes (so that only the block and one batch are
    held); text columns (``coders``) as their finished values."""
    start = 0
    out = np.empty((min(block, n_rows), n_columns))
    filled = 0
    for batch in batches:
        taken = 0
        while taken < batch.num_rows:
            size = min(out.shape[0] - filled, batch.num_rows - taken)
            _copy_columns(
                batch.slice(taken, size), out[filled : filled + size], coders, start + filled
            )
            filled += size
            taken += size
            if filled == out.shape[0]:
                start += filled
                yield out
                # beyond the rows counted at open, blocks go on: the caller reports it
                out = np.empty((min(block, n_rows - start) if start < n_rows else block, n_columns))
                filled = 0
        del batch
    if filled:  # the file had fewer rows than when opened: the caller reports it
        yield out[:filled]


def _is_text_type(pa: Any, kind: Any) -> bool:
    """Whether a pyarrow type is text: strings, or a dictionary of strings."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _text_positions(
    options: _TextOptions, names: list[str], indices: list[int], where: str
) -> list[int]:
    """The positions (among the selected columns) that ``text=`` and ``categories=``
    name: each must be among the selected columns."""
    selected = [names[j] for j in indices]
    asked = resolve_columns(options.text, names, where) if options.text is not None else []
    for j in asked:
        if j not in indices:
            raise InputError(
                f"text= names column {names[j]!r} of {where!r}, which is not among the "
                f"selected columns ({', '.join(map(repr, selected))}). Select it (columns=) "
                "or drop it from text=."
            )
    for name in options.categories:
        if name not in selected:
            raise InputError(
                f"categories= names column {name!r}, which is not among the selected "
                f"columns of {where!r} ({', '.join(map(repr, selected))}). Select it "
                "(columns=) or drop it from categories=."
            )
    positions = {indices.index(j) for j in asked}
    positions |= {selected.index(name) for name in options.categories}
    return sorted(positions)


def _open_parquet(
    path: Path,
    columns: Columns,
    spill: bool | str,
    spill_dir: str | os.PathLike[str] | None,
    options: _TextOptions,
) -> tuple[list[str], int, _Read, _Spill | None, dict[str, list[str]]]:
    where = str(path)
    pa = _pyarrow(where)
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's own types for damaged or truncated files
        raise InputError(
            f"Data file {where!r} is not a readable Parquet file ({exc}); it may be "
            "truncated or damaged. Write it again."
        ) from exc
    schema = handle.schema_arrow
    names = list(schema.names)
    indices = resolve_columns(columns, names, where)
    text: list[int] = []
    for k, j in enumerate(indices):
        kind = schema.field(j).type
        if _is_text_type(pa, kind):
            text.append(k)
        elif not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
            raise InputError(
                f"Data file {where!r} has a column {names[j]!r} (position {j}) of type "
                f"{kind}. Streaming reads numbers and text (strings, as categories): select "
                "the other columns with columns=... (or --columns) or write that column as "
                "numbers or strings."
            )
    selected = [names[j] for j in indices]
    for k in _text_positions(options, names, indices, where):
        if k not in text:
            raise InputError(
                f"categories= names column {selected[k]!r} of {where!r}, which holds "
                f"numbers (type {schema.field(indices[k]).type}), not text. Name only text "
                "columns in categories=."
            )

    n_rows = int(handle.metadata.num_rows)
    handle.close()

    def coders() -> dict[int, _Coder]:
        return {k: _Coder(where, selected[k], options.max_categories) for k in text}

    coded = coders()
    made = _start_spill(spill, spill_dir, 8 * n_rows * len(selected), where) if n_rows else None
    if made is not None:
        target = made.file

        def write() -> dict[str, list[str]]:
            _spill_parquet(path, selected, n_rows, target, coded)
            return _finish(coded, options.categories)

        made, categories = _write_spill(spill, made, where, write)
        if made is not None and categories is not None:
            spilled = _spilled_rows(made, n_rows, len(selected), True)
            return selected, n_rows, _decoded(spilled, coded), made, categories
    coded = coders()
    if coded:  # the text columns' values, a column at a time
        _spill_parquet(path, selected, n_rows, None, coded)
    categories = _finish(coded, options.categories)

    def read(block: int) -> Iterator[NDArray[np.float64]]:
        # pages read through a small buffer, not whole column chunks (pre_buffer reads
        # each row group whole), decoded on this thread (pyarrow's own threads would
        # decode several columns' pages at once)
        try:
            parquet = pq.ParquetFile(path, buffer_size=_READ_BUFFER, pre_buffer=False)
        except Exception as exc:  # rewritten since it was opened
            raise InputError(
                f"Data file {where!r} is no longer a readable Parquet file ({exc}). Do not "
                "modify a file while a fit reads it."
            ) from exc
        try:
            step = min(block, max(1, _DECODE_BYTES // (8 * len(selected))))
            batches = parquet.iter_batches(batch_size=step, columns=selected, use_threads=False)
            yield from _blocks_from_batches(
                _checked(batches, where), n_rows, block, len(selected), coded
            )
        finally:
            parquet.close()
            # pages and dictionaries freed in pyarrow's pool go back to the system, not
            # kept beside the memory that the work between passes needs
            pa.default_memory_pool().release_unused()

    return selected, n_rows, read, None, categories


def _spill_parquet(
    path: Path,
    selected: list[str],
    n_rows: int,
    spill: Path | None,
    coders: dict[int, _Coder] | None = None,
) -> None:
    """The columns ``selected`` of the Parquet file ``path`` written to ``spill`` as
    float64, one column's ``n_rows`` values after another, each decoded a batch at a
    time (pyarrow holds one column's pages, not every column's); text columns
    (``coders``, by position) as their first-seen codes. ``spill`` None: only the text
    columns are read, for their values."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(path)
    coders = coders or {}
    try:
        parquet = pq.ParquetFile(path, buffer_size=_READ_BUFFER, pre_buffer=False)
    except Exception as exc:  # rewritten since it was opened
        raise InputError(
            f"Data file {where!r} is no longer a readable Parquet file ({exc}). Do not "
            "modify a file while it is opened."
        ) from exc
    try:
        with open(os.devnull if spill is None else spill, "wb") as out:
            for k, name in enumerate(selected):
                coder = coders.get(k)
                if spill is None and coder is None:
                    continue
                written = 0
                batches = parquet.iter_batches(
                    batch_size=_SPILL_BATCH, columns=[name], use_threads=False
                )
                for batch in _checked(batches, where):
                    if coder is None:
                        values = batch.column(0).to_numpy(zero_copy_only=False)
                    else:
                        values = coder.encode(batch.column(0), written)
                    if spill is not None:
                        out.write(np.ascontiguousarray(values, dtype=np.float64).data)
                    written += batch.num_rows
                    del batch, values
                if written != n_rows:
                    raise InputError(
                        f"Data file {where!r} changed while it was opened: it had {n_rows} "
                        f"data rows and column {name!r} now has {written}. Do not modify a "
                        "file while it is opened."
                    )
    finally:
        parquet.close()
        pa.default_memory_pool().release_unused()


def _checked(batches: Iterator[Any], where: str) -> Iterator[Any]:
    """The batches pyarrow reads from a Parquet file, its errors as an InputError that
    names the file and the row."""
    start = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise InputError(
                f"Data file {where!r} could not be read after data row {start}: {exc}. "
                "The file may be truncated or damaged; write it again."
            ) from exc
        start += batch.num_rows
        yield batch
        del batch


def _open_text(
    path: Path,
    columns: Columns,
    delimiter: str,
    spill: bool | str,
    spill_dir: str | os.PathLike[str] | None,
    options: _TextOptions,
) -> tuple[list[str], int, _Read, _Spill | None, dict[str, list[str]]]:
    where = str(path)
    pa = _pyarrow(where)
    from pyarrow import csv

    first = _first_line(path)
    if first is None:
        raise InputError(f"Data file {where!r} is empty; pass a file with data.")
    fields = first.rstrip("\r\n").split(_sniff_delimiter(first) or delimiter)
    header = not all(_is_number(f) for f in fields)
    names = [f.strip() for f in fields] if header else [f"x{j}" for j in range(len(fields))]
    indices = resolve_columns(columns, names, where)
    selected = [names[j] for j in indices]
    asked = _text_positions(options, names, indices, where)
    # the column names pyarrow sees: unique, whatever the header holds
    keys = [f"c{j}" for j in range(len(names))]
    missing = sorted({m for s in _MISSING for m in (s, s.upper(), s.capitalize())})
    read_options = csv.ReadOptions(
        column_names=keys,
        skip_rows=1 if header else 0,
        block_size=max(_TEXT_BLOCK, 8 * len(first)),
        use_threads=False,
    )
    parse = csv.ParseOptions(delimiter=delimiter)

    def convert(text: list[int]) -> Any:
        return csv.ConvertOptions(
            column_types={
                keys[j]: pa.string() if k in text else pa.float64() for k, j in enumerate(indices)
            },
            include_columns=[keys[j] for j in indices],
            null_values=missing,
            strings_can_be_null=True,
        )

    def parsed(text: list[int]) -> Iterator[Any]:
        try:
            # parsed on the calling thread (pyarrow's threads would parse several blocks
            # of text ahead at once); the text read ahead is bounded by the block size
            with open(path, "rb") as handle:
                yield from csv.open_csv(handle, read_options, parse, convert(text))
        except Exception as exc:  # pyarrow's parse and conversion errors
            raise _locate(path, delimiter, header, names, indices, text) from exc

    # text columns: those asked for, and those whose first value in the first block of
    # the file is not a number (the others are read as numbers, as the in-memory reader
    # reads a column whose every value is one)
    batch = next(parsed(list(range(len(indices)))), None)
    text = sorted(set(asked) | _starts_with_text(batch))
    del batch

    def coders() -> dict[int, _Coder]:
        return {k: _Coder(where, selected[k], options.max_categories) for k in text}

    def batches() -> Iterator[Any]:
        return parsed(text)

    coded = coders()
    # about one float64 row per line the size of the first
    size = 8 * len(selected) * (path.stat().st_size // max(len(first), 1) + 1)
    made = _start_spill(spill, spill_dir, size, where)
    if made is not None:
        target = made.file

        def write() -> tuple[int, dict[str, list[str]]]:
            # parsed once: checked, counted and written as float64 rows
            return _spill_text(batches(), target, coded), _finish(coded, options.categories)

        made, written = _write_spill(spill, made, where, write)
        if made is not None and written is not None:
            n_rows, categories = written
            spilled = _spilled_rows(made, n_rows, len(selected), False)
            return selected, n_rows, _decoded(spilled, coded), made, categories
    coded = coders()
    n_rows = 0
    for batch in batches():  # checks every row, once; the text columns' values
        for k, coder in coded.items():
            coder.encode(batch.column(k), n_rows)
        n_rows += batch.num_rows
    categories = _finish(coded, options.categories)

    def read(block: int) -> Iterator[NDArray[np.float64]]:
        yield from _blocks_from_batches(batches(), n_rows, block, len(selected), coded)

    return selected, n_rows, read, None, categories


def _starts_with_text(batch: Any) -> set[int]:
    """The columns of a record batch of strings whose first value (not missing) is not a
    number."""
    if batch is None:
        return set()
    text = set()
    for k in range(batch.num_columns):
        for cell in batch.column(k).drop_null().to_pylist():
            if cell.strip().lower() not in _MISSING:
                if not _is_number(cell):
                    text.add(k)
                break
    return text


def _spill_text(batches: Iterator[Any], spill: Path, coders: dict[int, _Coder]) -> int:
    """The record batches of a text file written to ``spill`` as float64 rows, one after
    another (text columns as their first-seen codes); returns their number of rows."""
    n_rows = 0
    with open(spill, "wb") as out:
        for batch in batches:
            out.write(_as_float(batch, coders, n_rows).data)
            n_rows += batch.num_rows
            del batch
    return n_rows


def _locate(
    path: Path,
    delimiter: str,
    header: bool,
    names: list[str],
    indices: list[int],
    text: list[int],
) -> InputError:
    """The first row of a text file that does not parse, as a clear error (``text``: the
    positions among ``indices`` of the columns read as text)."""
    where = str(path)
    lines = _data_lines(path, delimiter)
    numeric = [j for k, j in enumerate(indices) if k not in text]
    if header:
        next(lines, None)
    for row, (line, fields) in enumerate(lines):
        if len(fields) != len(names):
            return InputError(
                f"Data file {where!r} has {len(fields)} fields at line {line} (data row "
                f"{row + 1}) where its first line has {len(names)}. Every row needs the "
                "same number of fields: fix that line (a truncated file ends this way)."
            )
        for j in numeric:
            if not _is_number(fields[j]):
                return InputError(
                    f"Data file {where!r} has a non-numeric value {fields[j]!r} at line "
                    f"{line} (data row {row + 1}), column {names[j]!r} (position {j}), "
                    "which is read as numbers: its first rows hold no text. If the column "
                    f"holds categories, read it as text from its first row (text=['{names[j]}'] "
                    f"in open_table; emkit fit: --family {names[j]}=categorical); otherwise "
                    "fix that cell, or drop the column (columns=... or --columns)."
                )
    return InputError(f"Data file {where!r} could not be read as {delimiter!r}-separated text.")
