"""Safe model files: JSON metadata plus arrays in one NumPy ``.npz``, never pickle.

A model file is a ZIP archive written by :func:`numpy.savez`. It holds every fitted
array and an entry ``metadata.json``: the JSON text as a 0-d unicode array, so the whole
file loads with ``allow_pickle=False``. The metadata names the format and its version,
the estimator class (from an allow-list), its constructor parameters and how to rebuild
each fitted attribute::

    {"format": "emkit-model", "format_version": 1, "emkit_version": "0.1.0",
     "estimator": "GaussianMixture", "params": {...},
     "attributes": {"weights_": {"kind": "array", "key": "attr.weights_", ...},
                    "converged_": {"kind": "scalar", "type": "bool", "value": true},
                    "trace_": {"kind": "tuple", "type": "emkit.inference.em.EMTrace",
                               "fields": {"objective": {...}, "seconds": {...}}}}}

Files are written atomically (a temporary file in the target directory, fsync, then
:func:`os.replace`), so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError, ModelFileError
from emkit.inference.em import EMTrace

__all__ = ["FORMAT", "FORMAT_VERSION", "SAVABLE", "atomic_write", "load_model", "save_model"]

# The estimators whose parameters are plain arrays the format describes (an allow-list);
# MixtureModel and its relatives hold family objects that it has no place for yet.
SAVABLE = (
    "FactorAnalysis",
    "GaussianMixture",
    "MixtureOfFactorAnalyzers",
    "MixtureOfPPCA",
    "PPCA",
)

FORMAT = "emkit-model"
FORMAT_VERSION = 1
METADATA_KEY = "metadata.json"

# NamedTuples of arrays a model file may rebuild, by the dotted name stored in the file.
_TUPLE_TYPES: dict[str, type[tuple[Any, ...]]] = {"emkit.inference.em.EMTrace": EMTrace}
_ARRAY_KINDS = "biufcU"  # bool, ints, floats, complex, unicode: all load without pickle
_JSON_SCALARS = (bool, int, float, str, type(None))

StrPath = str | os.PathLike[str]


# -- atomic writes -------------------------------------------------------------------


@overload
def atomic_write(
    path: StrPath, *, text: Literal[False] = ...
) -> contextlib.AbstractContextManager[IO[bytes]]: ...
@overload
def atomic_write(
    path: StrPath, *, text: Literal[True]
) -> contextlib.AbstractContextManager[IO[str]]: ...
@overload
def atomic_write(path: StrPath, *, text: bool) -> contextlib.AbstractContextManager[IO[Any]]: ...


def atomic_write(
    path: StrPath, *, text: bool = False
) -> contextlib.AbstractContextManager[IO[Any]]:
    """Open a temporary file that replaces ``path`` only if the ``with`` block succeeds.

    The temporary file lives in the directory of ``path`` (so :func:`os.replace` is atomic),
    is flushed and fsync'ed before the replace, and is removed on any error, leaving an
    existing ``path`` untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    text : bool, default=False
        Open in text mode (UTF-8, ``"\\n"`` line endings) instead of binary.

    Returns
    -------
    context manager yielding a writable file object

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
    >>> with atomic_write(target, text=True) as fh:
    ...     _ = fh.write("label\\n0\\n")
    >>> target.read_text()
    'label\\n0\\n'
    """
    return _atomic_write(Path(path), text)


@contextlib.contextmanager
def _atomic_write(path: Path, text: bool) -> Iterator[IO[Any]]:
    directory = path.parent
    if not directory.is_dir():
        raise InputError(
            f"Cannot write {str(path)!r}: the directory {str(directory)!r} does not exist. "
            "Create it first or choose another path."
        )
    if path.is_dir():
        raise InputError(f"Cannot write {str(path)!r}: it is a directory; give a file name.")
    mode = _target_mode(path)
    tmp: IO[Any] = tempfile.NamedTemporaryFile(
        mode="w" if text else "wb",
        delete=False,
        dir=directory,
        prefix=f".{path.name}.",
        suffix=".tmp",
        encoding="utf-8" if text else None,
        newline="" if text else None,
    )
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, mode)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    _fsync_directory(directory)


def _target_mode(path: Path) -> int:
    """Permissions for the new file: those of the file it replaces, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    umask = 0o022
    with contextlib.suppress(OSError, ValueError):
        # Linux reports the umask without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                umask = int(line.split()[1], 8)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- saving --------------------------------------------------------------------------


def save_model(estimator: Any, path: StrPath) -> Path:
    """Write a fitted estimator to one ``.npz`` model file, atomically and without pickle.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator of a class exported by :mod:`emkit.estimators`.
    path : str or os.PathLike
        The file to write, used as given (``.npz`` is not appended). An existing file is
        replaced only once the new one is completely written.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Raises
    ------
    InputError
        If the estimator is not fitted, not one of emkit's estimators, or holds a value
        a model file cannot store.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from emkit import GaussianMixture
    >>> X = np.array([[0.0, 0.1], [0.2, 0.0], [5.0, 5.1], [5.2, 5.0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "model.npz"
    >>> loaded = load_model(save_model(gm, target))
    >>> bool((loaded.predict(X) == gm.predict(X)).all())
    True
    """
    import emkit
    import emkit.estimators

    name = type(estimator).__name__
    if getattr(emkit.estimators, name, None) is not type(estimator) or name not in SAVABLE:
        raise InputError(
            f"save_model stores emkit's estimators ({', '.join(SAVABLE)}), got "
            f"{type(estimator).__module__}.{type(estimator).__qualname__}. The format has no "
            "place for other families' parameters yet."
        )
    fitted = _fitted_attributes(estimator)
    if not fitted:
        raise InputError(
            f"This {name} is not fitted yet: it has no fitted attributes to save. Call "
            "fit(X) before save_model."
        )
    arrays: dict[str, NDArray[Any]] = {}
    params = {
        key: _encode_param(key, value, arrays) for key, value in estimator.get_params().items()
    }
    attributes = {key: _encode_attribute(key, value, arrays) for key, value in fitted.items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "emkit_version": emkit.__version__,
        "estimator": name,
        "params": params,
        "attributes": attributes,
    }
    arrays[METADATA_KEY] = np.array(json.dumps(metadata, allow_nan=False, sort_keys=True))
    target = Path(path)
    # through a file object, so np.savez does not append ".npz" to the temporary name
    with atomic_write(target) as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    return target


def _fitted_attributes(estimator: Any) -> dict[str, Any]:
    """The scikit-learn convention: public names ending in exactly one underscore."""
    return {
        key: value
        for key, value in sorted(vars(estimator).items())
        if key.endswith("_") and not key.endswith("__") and not key.startswith("_")
    }


def _encode_float(value: float) -> float | str:
    """JSON has no inf or nan: those are stored as the strings "inf", "-inf", "nan"."""
    return value if math.isfinite(value) else repr(value)


def _decode_float(value: Any) -> float:
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"not a float: {value!r}")


def _encode_param(key: str, value: Any, arrays: dict[str, NDArray[Any]]) -> Any:
    if isinstance(value, np.random.Generator | np.random.RandomState):
        return None  # a generator's state is not part of the model
    if isinstance(value, np.ndarray):
        array_key = f"param.{key}"
        arrays[array_key] = _storable_array(f"parameter {key}", value)
        return {"array": array_key}
    try:
        return _encode_json_value(value)
    except TypeError:
        raise InputError(
            f"The parameter {key}={value!r} cannot be stored in a model file (it holds a "
            f"{type(value).__name__}); model files store numbers, strings, booleans, None, "
            "lists and arrays. Set it to one of those before saving."
        ) from None


def _encode_json_value(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return {"float": _encode_float(float(value))} if not math.isfinite(value) else float(value)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_encode_json_value(v) for v in value]
    raise TypeError(type(value).__name__)


def _decode_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return _decode_float(value["float"])
        raise ValueError(f"unexpected object {value!r}")
    if isinstance(value, list):
        return [_decode_json_value(v) for v in value]
    if not isinstance(value, _JSON_SCALARS):
        raise ValueError(f"unexpected value {value!r}")
    return value


def _storable_array(what: str, value: NDArray[Any]) -> NDArray[Any]:
    if value.dtype.kind == "O":
        if all(isinstance(v, str) for v in value.flat):
            return value.astype(str)
        raise InputError(
            f"The {what} is an object array that is not all strings; model files store "
            "numeric and string arrays only (never pickle)."
        )
    if value.dtype.kind not in _ARRAY_KINDS or value.dtype.names is not None:
        raise InputError(
            f"The {what} has dtype {value.dtype}, which a model file cannot store; model "
            "files store numeric and string arrays only."
        )
    return value


def _encode_array(key: str, value: NDArray[Any], arrays: dict[str, NDArray[Any]]) -> dict[str, Any]:
    arrays[key] = _storable_array(f"attribute {key.removeprefix('attr.')}", value)
    return {
        "kind": "array",
        "key": key,
        "dtype": "object" if value.dtype.kind == "O" else value.dtype.str,
    }


def _encode_attribute(name: str, value: Any, arrays: dict[str, NDArray[Any]]) -> dict[str, Any]:
    if isinstance(value, np.ndarray):
        return _encode_array(f"attr.{name}", value, arrays)
    if isinstance(value, bool | np.bool_):
        return {"kind": "scalar", "type": "bool", "value": bool(value)}
    if isinstance(value, int | np.integer):
        return {"kind": "scalar", "type": "int", "value": int(value)}
    if isinstance(value, float | np.floating):
        return {"kind": "scalar", "type": "float", "value": _encode_float(float(value))}
    type_name = f"{type(value).__module__}.{type(value).__qualname__}"
    if isinstance(value, tuple) and _TUPLE_TYPES.get(type_name) is type(value):
        fields: dict[str, Any] = {}
        for field, item in zip(value._fields, value, strict=True):  # type: ignore[attr-defined]
            if not isinstance(item, np.ndarray):
                raise InputError(
                    f"The attribute {name}.{field} is a {type(item).__name__}; model files "
                    "store NamedTuples of arrays only."
                )
            fields[field] = _encode_array(f"attr.{name}.{field}", item, arrays)
        return {"kind": "tuple", "type": type_name, "fields": fields}
    raise InputError(
        f"The fitted attribute {name} is a {type_name}, which a model file cannot store; "
        "model files store arrays, numbers, booleans and NamedTuples of arrays from "
        f"{', '.join(sorted(_TUPLE_TYPES))}."
    )


# -- loading -------------------------------------------------------------------------


def load_model(path: StrPath) -> Any:
    """Read an estimator written by :func:`save_model` (``allow_pickle=False``).

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    estimator
        A fitted estimator of the class named in the file, with its parameters and every
        fitted attribute restored.

    Raises
    ------
    ModelFileError
        If the file is missing, not an ``.npz`` archive, not an emkit model, written by a
        newer emkit, names an estimator emkit does not know, or lacks arrays it lists.
    """
    import emkit.estimators

    p = Path(path)
    where = str(p)
    if not p.exists():
        raise ModelFileError(f"Model file {where!r} does not exist. Check the path.")
    if p.is_dir():
        raise ModelFileError(f"Model file {where!r} is a directory, not a model file.")
    if not zipfile.is_zipfile(p):
        raise ModelFileError(
            f"{where!r} is not an emkit model file: it is not a NumPy .npz archive. Model "
            "files are written by emkit.save_model or `emkit fit`."
        )
    try:
        # our own handle: np.load leaks its own when the archive is damaged
        with p.open("rb") as fh, np.load(fh, allow_pickle=False) as data:
            metadata = _read_metadata(data, where)
            cls = getattr(emkit.estimators, metadata["estimator"])
            params = _decode_params(metadata["params"], data, where, cls)
            attributes = {
                name: _decode_attribute(name, spec, data, where)
                for name, spec in metadata["attributes"].items()
            }
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"Model file {where!r} is damaged and cannot be read: {exc}") from exc
    try:
        estimator = cls(**params)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(
            f"Model file {where!r} has parameters this emkit's {cls.__name__} does not accept "
            f"({exc}). It may come from another emkit version."
        ) from exc
    for name, value in attributes.items():
        setattr(estimator, name, value)
    return estimator


def _read_metadata(data: Any, where: str) -> dict[str, Any]:

    if METADATA_KEY not in data.files:
        raise ModelFileError(
            f"{where!r} is a NumPy .npz archive but not an emkit model file: it has no "
            f"{METADATA_KEY!r} entry. Model files are written by emkit.save_model."
        )
    raw = data[METADATA_KEY]
    if raw.shape != () or raw.dtype.kind != "U":
        raise ModelFileError(f"Model file {where!r} is damaged: {METADATA_KEY} is not text.")
    try:
        metadata = json.loads(str(raw[()]))
    except json.JSONDecodeError as exc:
        raise ModelFileError(
            f"Model file {where!r} is damaged: {METADATA_KEY} is not valid JSON ({exc})."
        ) from exc
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise ModelFileError(
            f"{where!r} is not an emkit model file: its format is {found!r}, expected {FORMAT!r}."
        )
    version = metadata.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelFileError(
            f"Model file {where!r} is damaged: format_version is {version!r}, expected a "
            "positive integer."
        )
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"Model file {where!r} has format_version {version} (written by emkit "
            f"{metadata.get('emkit_version', '?')}); this emkit reads format_version "
            f"{FORMAT_VERSION} and older. Upgrade emkit to load it."
        )
    name = metadata.get("estimator")
    if not isinstance(name, str) or name not in SAVABLE:
        raise ModelFileError(
            f"Model file {where!r} holds an estimator {name!r} that this emkit does not know; "
            f"known estimators: {', '.join(SAVABLE)}. Upgrade emkit to load it."
        )
    for key in ("params", "attributes"):
        if not isinstance(metadata.get(key), dict):
            raise ModelFileError(f"Model file {where!r} is damaged: its metadata has no {key!r}.")
    return metadata


def _array(data: Any, key: Any, where: str, what: str) -> NDArray[Any]:
    if not isinstance(key, str) or key not in data.files:
        raise ModelFileError(
            f"Model file {where!r} is damaged: the array {key!r} for {what} is missing."
        )
    return np.asarray(data[key])


def _decode_params(raw: dict[str, Any], data: Any, where: str, cls: type) -> dict[str, Any]:
    known = cls().get_params()
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ModelFileError(
                f"Model file {where!r} sets a parameter {key!r} that this emkit's "
                f"{cls.__name__} does not have. It may come from a newer emkit; upgrade emkit."
            )
        if isinstance(value, dict) and set(value) == {"array"}:
            params[key] = _array(data, value["array"], where, f"parameter {key}")
        else:
            params[key] = _decode_json_value(value)
    return params


def _decode_attribute(name: Any, spec: Any, data: Any, where: str) -> Any:
    if not (
        isinstance(name, str)
        and name.isidentifier()
        and name.endswith("_")
        and not name.endswith("__")
        and not name.startswith("_")
    ):
        raise ModelFileError(
            f"Model file {where!r} is damaged: {name!r} is not a fitted attribute name."
        )
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if kind == "array":
        return _decode_array(spec, data, where, f"attribute {name}")
    if kind == "scalar":
        kind_of = spec.get("type")
        value = spec.get("value")
        if kind_of == "bool" and isinstance(value, bool):
            return value
        if kind_of == "int" and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind_of == "float":
            return _decode_float(value)
    if kind == "tuple":
        type_name = spec.get("type")
        tuple_type = _TUPLE_TYPES.get(type_name) if isinstance(type_name, str) else None
        if tuple_type is None:
            raise ModelFileError(
                f"Model file {where!r} stores {name} as a {type_name!r}, which emkit does not "
                f"rebuild; allowed: {', '.join(sorted(_TUPLE_TYPES))}."
            )
        fields = spec.get("fields")
        expected: tuple[str, ...] = tuple_type._fields  # type: ignore[attr-defined]
        # fields with a default may be absent (files written before they were added)
        optional = set(tuple_type._field_defaults)  # type: ignore[attr-defined]
        if not isinstance(fields, dict) or not set(expected) - optional <= set(fields) <= set(
            expected
        ):
            raise ModelFileError(
                f"Model file {where!r} is damaged: {name} must have the fields {expected}."
            )
        return tuple_type(
            **{
                f: _decode_array(fields[f], data, where, f"attribute {name}.{f}")
                for f in expected
                if f in fields
            }
        )
    raise ModelFileError(
        f"Model file {where!r} is damaged: the attribute {name} has an unreadable entry {spec!r}."
    )


def _decode_array(spec: Any, data: Any, where: str, what: str) -> NDArray[Any]:
    if not isinstance(spec, dict):
        raise ModelFileError(f"Model file {where!r} is damaged: {what} has no array entry.")
    array = _array(data, spec.get("key"), where, what)
    return array.astype(object) if spec.get("dtype") == "object" else array
