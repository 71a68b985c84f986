"""The loader of emkit's modules of compiled loops (optional: Numba, ``emkit[fast]``).

Each such module imports Numba and defines its jitted functions at module level (no
closures, so Numba's disk cache finds them in a new process); it is imported on first
use, so that fits which never reach its loops do not import Numba. Loops built at run
time (``numba.njit`` of a module's functions) import Numba through :func:`numba_module`.

Python's cyclic garbage collector is held off while Numba is loaded. Its import and
the set-up of its CPU target make ~75,000 objects that live as long as the process and
form no garbage, and the collector, which counts allocations, runs full collections in
the middle of them: each walks every object of the process (~60-100 ms of a first fit's
main thread here, holding the GIL, so the engine's threads wait for it too) and frees
nothing. When the load ends, what it made goes to the oldest generation at once
(``gc.freeze`` then ``gc.unfreeze``: as if it had survived a full collection, without
counting among the newly long-lived objects whose number sets off the next full
collection), so that no collection walks it until the process's own allocations call
for a full one; it stays collectable (``bench/profile_fit.py --cold``: full collections
in a first diag fit, before and after). After scikit-learn's fit in the same process
(``peers.py``), the one full collection the load still set off later in a first diag
fit took ~115 ms; now none does."""

from __future__ import annotations

import functools
import gc
import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["collector_paused", "compiled_module", "numba_loaded", "numba_module"]


def numba_loaded() -> bool:
    """Whether the process has imported Numba already (a fit, or another library): where
    a loop compiled by Numba pays off only once its import is paid."""
    return "numba" in sys.modules


@functools.cache
def compiled_module(name: str) -> Any:
    """The module ``name`` of compiled loops (compiled on first use and cached on disk),
    or None when Numba is not installed."""
    with collector_paused():
        if numba_module() is None:
            return None
        return importlib.import_module(name)


def numba_module() -> Any:
    """Numba, imported and its CPU target set up (once per process, so that a first
    compiled call only loads its machine code) with the collector held off; None when it
    is not installed. Every loader of compiled loops imports Numba through this."""
    with collector_paused():
        try:
            import numba
        except ImportError:  # (optional: a missing or broken install means None)
            return None
        _set_up_target()
    return numba


@functools.cache
def _set_up_target() -> None:
    """Numba's CPU target: its typing and lowering registries (~60-90 ms, mostly Numba's
    own modules imported), which the first compiled call of the process builds where
    this has not (``numba.core.registry.cpu_target``; a Numba laid out otherwise sets
    it up at that first call, as before). Under Numba's compiler lock, as its dispatchers
    refresh the target: another thread may be compiling meanwhile."""
    try:
        from numba.core.compiler_lock import global_compiler_lock
        from numba.core.registry import cpu_target

        refresh = cpu_target.target_context.refresh
    except (ImportError, AttributeError):  # pragma: no cover (another Numba's layout)
        return
    with global_compiler_lock:
        refresh()


_pause_lock = threading.Lock()
# objects made inside the paused blocks beyond which they go to the oldest generation
# (collector_paused; Numba's load: ~75,000)
_MANY_OBJECTS = 10_000
# (blocks inside collector_paused, whether the collector was on at the first of them)
_paused: list[Any] = [0, False]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's garbage collector held off for the block, and turned back on after it
    (after the last of several blocks, on any thread, where they overlap) when it was
    on before the first; a collector already off stays off."""
    with _pause_lock:
        if _paused[0] == 0:
            _paused[1] = gc.isenabled()
            gc.disable()
        _paused[0] += 1
    try:
        yield
    finally:
        with _pause_lock:
            _paused[0] -= 1
            if _paused[0] == 0 and _paused[1]:
                if gc.get_count()[0] > _MANY_OBJECTS:
                    # what the blocks made goes to the oldest generation at once, as if
                    # it had survived a full collection but without counting as newly
                    # long-lived, which would set off a full collection for it later
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
