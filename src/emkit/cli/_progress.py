"""``--verbose``: the progress of each fit, from the estimators' own progress log.

Every EM estimator logs ``iteration, objective, change`` on the ``emkit`` logger after
each iteration when fitted with ``verbose=1, verbose_interval=1`` (its driver callback,
:func:`emkit.estimators._mixture_base.progress_callback`). :class:`FitProgress` listens
to that logger during a fit and shows the iteration, the objective and the rows per
second: a live line drawn by ``rich`` when it is installed and standard error is a
terminal, else one plain line per iteration. The library itself prints nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import IO, Any

__all__ = ["FitProgress"]

_LOGGER = "emkit"


class FitProgress(logging.Handler):
    """Context manager showing one fit's progress from the ``emkit`` logger.

    Parameters
    ----------
    label : str
        What is fitted, e.g. ``"3 components, full"``.
    n_rows : int
        Rows per iteration, for the rate.
    max_iter : int
        The iteration limit, the length of the progress bar.
    stream : file, default=sys.stderr
        Where to show the progress.
    """

    def __init__(self, label: str, n_rows: int, max_iter: int, stream: IO[str] | None = None):
        super().__init__(level=logging.INFO)
        self.label = label
        self.n_rows = n_rows
        self.max_iter = max_iter
        self.stream = sys.stderr if stream is None else stream
        self._last = 0.0
        self._level = logging.NOTSET
        self._live: Any = None
        self._task: Any = None

    def __enter__(self) -> FitProgress:
        logger = logging.getLogger(_LOGGER)
        self._level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        self._last = time.perf_counter()
        if self.stream.isatty():
            try:
                from rich.console import Console
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                return self
            self._live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._live.start()
            self._task = self._live.add_task(self.label, total=self.max_iter, status="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        logger = logging.getLogger(_LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self._level)
        if self._live is not None:
            self._live.stop()

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 3 and "Iteration" in str(record.msg):
            iteration, objective, _ = args
            now = time.perf_counter()
            rate = self.n_rows / max(now - self._last, 1e-9)
            self._last = now
            status = f"iteration {iteration}, objective {objective:.6g}, {rate:,.0f} rows/s"
            if self._live is not None:
                self._live.update(self._task, completed=iteration, status=status)
                return
            message = f"{self.label}: {status}"
        else:
            if self._live is not None:
                return  # the bar shows the progress; the other INFO lines would break it
            message = f"{self.label}: {record.getMessage().strip()}"
        print(message, file=self.stream, flush=True)
