"""Checkpoints of an EM run: parameters and trace written atomically, a run resumed from them.

A :class:`Checkpoint` is a directory. Every ``every`` iterations (and when the run ends)
the driver writes the parameters (their arrays, in the order a walk of the parameter
value meets them) and the trace so far to ``checkpoint.npz`` there: written to a
temporary file in the same directory, flushed to disk, then renamed over the previous
one, so a kill at any moment leaves either the previous checkpoint or the new one, never
half of one. Temporary files that a killed write left behind are removed at the next
write.

A run started with a checkpoint that holds a state of the same fit (the same ``key``:
the estimator's arguments and the data: its shape, dtype and a hash of a bounded sample
of its rows, weights and labels) continues from it: the iterations after
it are those the uninterrupted run makes, since an EM step depends on the parameters
alone. A checkpoint of a finished run gives that run's result at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from emkit.exceptions import InputError

__all__ = ["Checkpoint", "Saved"]

_FILE = "checkpoint.npz"
_TEMP_PREFIX = ".checkpoint-"
_FORMAT = 1


class Saved(NamedTuple):
    """A run's state as the driver left it at a checkpoint."""

    params: Any
    objectives: list[float]
    seconds: list[float]
    restarts: list[int]
    slack: float
    done: bool


def _leaves(value: Any) -> Iterator[Any]:
    """The arrays and numbers of a parameter value, in a fixed order."""
    if value is None or isinstance(value, str):
        return
    if isinstance(value, np.ndarray | float | int | np.number | bool):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.init:
                yield from _leaves(getattr(value, f.name))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _leaves(value[key])
    else:
        raise TypeError(f"cannot checkpoint a parameter of type {type(value).__name__}")


def _rebuild(template: Any, leaves: Iterator[Any]) -> Any:
    """``template`` with its arrays and numbers replaced, in :func:`_leaves` order."""
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, np.ndarray):
        return np.asarray(next(leaves), dtype=template.dtype).reshape(template.shape)
    if isinstance(template, bool | np.bool_):
        return bool(next(leaves))
    if isinstance(template, float | int | np.number):
        return type(template)(next(leaves))
    if dataclasses.is_dataclass(template) and not isinstance(template, type):
        changes = {
            f.name: _rebuild(getattr(template, f.name), leaves)
            for f in dataclasses.fields(template)
            if f.init
        }
        return dataclasses.replace(template, **changes)
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(*(_rebuild(item, leaves) for item in template))
    if isinstance(template, tuple | list):
        return type(template)(_rebuild(item, leaves) for item in template)
    if isinstance(template, dict):
        return {key: _rebuild(template[key], leaves) for key in sorted(template)}
    raise TypeError(f"cannot checkpoint a parameter of type {type(template).__name__}")


class Checkpoint:
    """A directory that holds the state of one EM run.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing.
    key : str
        What identifies the fit (estimator arguments, the data's digest): a checkpoint written
        under another key is refused rather than resumed.
    every : int, default=5
        Iterations between two writes (the last iteration is always written).
    """

    def __init__(self, directory: str | os.PathLike[str], key: str, every: int = 5) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InputError(f"checkpoint_every must be a positive integer, got {every!r}.")
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise InputError(
                f"checkpoint must be a directory, got the file {str(self.directory)!r}. "
                "Pass a directory path (it is created if missing)."
            )
        self.key = key
        self.every = every

    @property
    def path(self) -> Path:
        return self.directory / _FILE

    def load(self, template: Any) -> Saved | None:
        """The saved state, its parameters shaped like ``template``; None if none."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                leaves = [data[f"leaf_{i}"] for i in range(int(meta["n_leaves"]))]
                trace = {name: data[name] for name in ("objectives", "seconds", "restarts")}
        except Exception as exc:
            raise InputError(
                f"Checkpoint {str(self.path)!r} could not be read ({exc}). Remove it to start "
                "the fit afresh."
            ) from exc
        if meta.get("format") != _FORMAT or meta.get("key") != self.key:
            raise InputError(
                f"Checkpoint {str(self.path)!r} belongs to another fit (other estimator "
                "arguments or data). Use another checkpoint directory, or remove this one "
                "to start afresh."
            )
        params = _rebuild(template, (leaf[()] if leaf.ndim == 0 else leaf for leaf in leaves))
        return Saved(
            params,
            trace["objectives"].tolist(),
            trace["seconds"].tolist(),
            trace["restarts"].astype(int).tolist(),
            float(meta["slack"]),
            bool(meta["done"]),
        )

    def save(self, state: Saved) -> None:
        """Write ``state`` atomically, removing what killed writes left behind."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f"{_TEMP_PREFIX}*"):
            stale.unlink(missing_ok=True)
        leaves = [np.asarray(leaf) for leaf in _leaves(state.params)]
        meta = {
            "format": _FORMAT,
            "key": self.key,
            "n_leaves": len(leaves),
            "slack": state.slack,
            "done": state.done,
        }
        payload: dict[str, Any] = {f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}
        payload["meta"] = np.asarray(json.dumps(meta))
        payload["objectives"] = np.asarray(state.objectives, dtype=np.float64)
        payload["seconds"] = np.asarray(state.seconds, dtype=np.float64)
        payload["restarts"] = np.asarray(state.restarts, dtype=np.int64)
        fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".npz", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            _replace(name, self.path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise


def _replace(source: str, target: Path) -> None:
    """The atomic step of a write (a seam for the kill tests)."""
    os.replace(source, target)
