"""From a table file's typed columns to what an estimator is fitted on or predicts from.

The families themselves come from :func:`emkit.estimators.mixture_model.infer_family`
(the same inference as :class:`emkit.MixtureModel`); this module only gives each column
the pandas dtype that says what it is: float64 for measurements, integers for counts,
booleans for 0/1 and true/false columns, ``category`` for text. ``--family`` changes
those dtypes, so the inference then picks the family asked for.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import numpy as np

from emkit.exceptions import InputError
from emkit.io.tables import Table

__all__ = [
    "FAMILY_CHOICES",
    "StreamedColumns",
    "family_description",
    "parse_family",
    "streamed_columns",
    "typed_frame",
]

# The families --family accepts, each for all columns or for named ones.
FAMILY_CHOICES = ("auto", "gaussian", "poisson", "bernoulli", "categorical")


def parse_family(text: str) -> dict[str | None, str]:
    """``--family``: one family for every column, or ``COLUMN=FAMILY`` pairs.

    The key ``None`` holds the family of the columns not named.

    Examples
    --------
    >>> parse_family("poisson")
    {None: 'poisson'}
    >>> parse_family("n=categorical, ok=bernoulli")
    {None: 'auto', 'n': 'categorical', 'ok': 'bernoulli'}
    """
    usage = (
        f"write one of {', '.join(FAMILY_CHOICES)} for every column, or COLUMN=FAMILY pairs "
        "like count=categorical,flag=bernoulli"
    )
    spec: dict[str | None, str] = {None: "auto"}
    for item in text.split(","):
        name, equals, family = (part.strip() for part in item.strip().rpartition("="))
        family = family.lower()
        if family not in FAMILY_CHOICES:
            raise argparse.ArgumentTypeError(f"unknown family {family!r}: {usage}.")
        if not equals:
            if len(text.split(",")) > 1:
                raise argparse.ArgumentTypeError(
                    f"{text!r} mixes a family for every column with others: {usage}."
                )
            return {None: family}
        if not name:
            raise argparse.ArgumentTypeError(f"{item.strip()!r} names no column: {usage}.")
        spec[name] = family
    return spec


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:
        raise InputError(
            "Tables with count, 0/1 or text columns are fitted through pandas: pip install "
            '"emkit[cli]" (or pandas), or fit every column as Gaussian with --family gaussian.'
        ) from None
    return pd


def _whole(values: np.ndarray) -> bool:
    present = values[~np.isnan(values)]
    return bool(np.array_equal(present, np.round(present)))


def _column(pd: Any, values: np.ndarray, kind: str, family: str, name: str) -> Any:
    """One column as the pandas dtype that makes ``family`` (or the inference) apply."""
    if family == "categorical":
        return pd.Series(values, dtype="category")
    if kind == "text":
        if family == "auto":
            return pd.Series(values, dtype="category")
        first = next(v for v in values if v is not None)
        raise InputError(
            f"Column {name!r} holds text (e.g. {first!r}); the {family} family needs numbers. "
            f"Fit it as categorical (--family {name}=categorical) or drop it (--columns ^{name})."
        )
    numbers = values.astype(np.float64)
    missing = np.isnan(numbers)
    present = numbers[~missing]
    binary = bool(np.isin(present, (0.0, 1.0)).all())
    if family == "gaussian" or (family == "auto" and kind == "float"):
        return pd.Series(numbers, dtype="float64")
    if family == "bernoulli" or (family == "auto" and (kind == "bool" or binary)):
        if not binary:
            bad = present[~np.isin(present, (0.0, 1.0))][0]
            raise InputError(
                f"Column {name!r} holds {bad:g}; the bernoulli family needs 0/1 or true/false "
                f"values. Choose another family for it (--family {name}=poisson, ...)."
            )
        flags = (numbers > 0.5).astype(object)
        flags[missing] = None
        return pd.Series(pd.array(flags, dtype="boolean"))
    # counts: poisson asked for, or integers left to the inference (which takes negative
    # integers as measurements)
    if family == "poisson" and (not _whole(numbers) or (present < 0).any()):
        bad = present[(present != np.round(present)) | (present < 0)][0]
        raise InputError(
            f"Column {name!r} holds {bad:g}; the poisson family needs counts (whole numbers "
            f">= 0). Fit it as gaussian (--family {name}=gaussian) or categorical."
        )
    if missing.any():
        counts = numbers.astype(object)
        counts[missing] = None
        return pd.Series(pd.array(counts, dtype="Int64"))
    return pd.Series(numbers.astype(np.int64))


def typed_frame(table: Table, spec: dict[str | None, str]) -> Any:
    """The table as a DataFrame whose dtypes say which family each column gets."""
    pd = _pandas()
    unknown = [name for name in spec if name is not None and name not in table.names]
    if unknown:
        raise InputError(
            f"--family names column {unknown[0]!r}, which is not among the fitted columns "
            f"({', '.join(map(repr, table.names))})."
        )
    if len(set(table.names)) < len(table.names):
        twice = next(n for n in table.names if table.names.count(n) > 1)
        raise InputError(
            f"Two columns are named {twice!r}; rename one, or select one with --columns."
        )
    default = spec.get(None, "auto")
    columns = {
        name: _column(pd, values, kind, spec.get(name, default), name)
        for name, values, kind in zip(table.names, table.columns, table.kinds, strict=True)
    }
    return pd.DataFrame(columns)


def family_description(family: Any, names: list[str]) -> str:
    """Which family models which columns, e.g. ``gaussian (a, b); poisson (n)``."""
    blocks = getattr(family, "blocks", None)
    if blocks is None:
        return f"{_family_name(family)} ({', '.join(names)})"
    parts = []
    for _, (columns, block_family) in blocks.items():
        labels = [names[j] if isinstance(j, int | np.integer) else str(j) for j in columns]
        parts.append(f"{_family_name(block_family)} ({', '.join(labels)})")
    return "; ".join(parts)


def _family_name(family: Any) -> str:
    structure = getattr(family, "structure", None)
    if structure is not None:
        return f"gaussian {structure.name}"
    return type(family).__name__.lower()


# Distinct values a streamed categorical column may have (as Categorical counts them).
_MAX_STREAMED_CATEGORIES = 1 << 16


@dataclass(frozen=True)
class StreamedColumns:
    """What ``emkit fit --stream`` fits: each column's family, the family (a Product for
    mixed columns, as :func:`~emkit.estimators.mixture_model.infer_family` builds it), the
    table whose categorical columns read as codes 0..C-1, and their categories (the
    distinct numbers of a numeric column, the text of a text column)."""

    families: list[str]
    family: Any
    table: Any
    categories: dict[str, list[Any]]


def streamed_columns(table: Any, spec: dict[str | None, str]) -> StreamedColumns:
    """The families of a table streamed from a file (:func:`emkit.io.open_table`), from
    one pass over its blocks: per column, whether every observed value is 0 or 1, a whole
    number, negative, and the distinct values of categorical columns.

    ``auto`` picks bernoulli for 0/1 columns, poisson for whole numbers >= 0 and gaussian
    for the others (a file's numbers carry no type here: a whole-number column is a count)
    and categorical for text columns (read as the codes of their categories,
    ``table.categories``); a family asked for is checked against the values, as for a
    table read whole.
    """
    from emkit.estimators.mixture_model import infer_family

    names = list(table.names)
    unknown = [name for name in spec if name is not None and name not in names]
    if unknown:
        raise InputError(
            f"--family names column {unknown[0]!r}, which is not among the fitted columns "
            f"({', '.join(map(repr, names))})."
        )
    default = spec.get(None, "auto")
    coded = getattr(table, "categories", None) or {}  # text columns, read as codes
    asked = [spec.get(name, default) for name in names]
    _check_text_columns(table, names, asked, coded)
    asked = [
        "categorical" if name in coded else family
        for name, family in zip(names, asked, strict=True)
    ]
    d = len(names)
    binary, whole, negative = np.ones(d, bool), np.ones(d, bool), np.zeros(d, bool)
    first_bad: dict[int, float] = {}
    distinct: dict[int, Any] = {
        j: np.empty(0) for j in range(d) if asked[j] == "categorical" and names[j] not in coded
    }
    for _, rows in table.iter_chunks():
        observed = ~np.isnan(rows)
        values = np.where(observed, rows, 0.0)
        binary &= ((values == 0) | (values == 1)).all(axis=0)
        is_whole = values == np.round(values)
        whole &= is_whole.all(axis=0)
        negative |= (values < 0).any(axis=0)
        for j in range(d):
            if j not in first_bad and not (is_whole[:, j] & (values[:, j] >= 0)).all():
                first_bad[j] = float(values[~(is_whole[:, j] & (values[:, j] >= 0)), j][0])
        for j in distinct:
            distinct[j] = np.union1d(distinct[j], rows[observed[:, j], j])
            if distinct[j].size > _MAX_STREAMED_CATEGORIES:
                raise InputError(
                    f"Column {names[j]!r} has more than {_MAX_STREAMED_CATEGORIES} distinct "
                    "values, too many categories; fit it as gaussian or poisson "
                    f"(--family {names[j]}=poisson)."
                )
    families = []
    for j, (name, family) in enumerate(zip(names, asked, strict=True)):
        if family == "auto":
            family = (
                "bernoulli"
                if binary[j]
                else "poisson"
                if whole[j] and not negative[j]
                else "gaussian"
            )
        elif family == "poisson" and j in first_bad:
            raise InputError(
                f"Column {name!r} holds {first_bad[j]:g}; the poisson family needs counts "
                f"(whole numbers >= 0). Fit it as gaussian (--family {name}=gaussian) or "
                "categorical."
            )
        elif family == "bernoulli" and not binary[j]:
            raise InputError(
                f"Column {name!r} holds values other than 0 and 1; the bernoulli family "
                f"needs 0/1 values. Choose another family for it (--family {name}=poisson, "
                "...)."
            )
        families.append(family)
    pd = _pandas()
    dtypes = {"gaussian": "float64", "poisson": "int64", "bernoulli": "bool"}
    # an empty frame of the columns' dtypes: the families MixtureModel infers from them
    frame = pd.DataFrame(
        {
            name: pd.Series([], dtype=dtypes.get(family, "category"))
            for name, family in zip(names, families, strict=True)
        }
    )
    categories: dict[str, list[Any]] = {
        names[j]: [float(v) for v in values] for j, values in distinct.items()
    }
    categories.update({name: list(values) for name, values in coded.items()})
    mapped = coded_by_values(table, {j: np.asarray(v) for j, v in distinct.items()})
    return StreamedColumns(families, infer_family(frame), mapped, categories)


def coded_by_values(table: Any, lookup: dict[int, np.ndarray]) -> Any:
    """``table`` (streamed) with each column ``j`` of ``lookup`` read as its values'
    positions among ``lookup[j]`` (sorted distinct values: a categorical column of numbers
    as its codes), missing values kept; ``table`` itself when ``lookup`` is empty."""
    from emkit.estimators._rows import mapped_blocks

    if not lookup:
        return table

    def to_codes(rows: np.ndarray) -> np.ndarray:
        out = rows.copy()
        for j, values in lookup.items():
            present = ~np.isnan(rows[:, j])
            out[present, j] = np.searchsorted(values, rows[present, j])
        return out

    return mapped_blocks(table, to_codes)


def _check_text_columns(table: Any, names: list[str], asked: list[str], coded: Any) -> None:
    """A text column (read as codes) asked for as numbers is refused, naming its first
    value's row, before the pass over the file."""
    wrong = {j: family for j, family in enumerate(asked) if names[j] in coded}
    wrong = {j: family for j, family in wrong.items() if family not in ("auto", "categorical")}
    if not wrong:
        return
    j, family = next(iter(wrong.items()))
    name = names[j]
    for start, rows in table.iter_chunks():
        present = np.flatnonzero(~np.isnan(rows[:, j]))
        if present.size:
            value = coded[name][int(rows[present[0], j])]
            raise InputError(
                f"Column {name!r} of {str(table.path)!r} holds text ({value!r} at data row "
                f"{start + int(present[0]) + 1}); the {family} family needs numbers. Fit it "
                f"as categorical (--family {name}=categorical) or drop it (--columns ^{name})."
            )
