"""The loader of the compiled-loop modules: the garbage collector held off while it runs."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from collections.abc import Iterator

import pytest

from emkit import _compiled_modules
from emkit._compiled_modules import collector_paused, compiled_module


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    try:
        yield
    finally:
        if not was:
            gc.disable()


def test_the_collector_is_off_in_the_block_and_back_on_after(collector_on: None) -> None:
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: still off, and off after the inner block
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="inside"), collector_paused():
        raise RuntimeError("inside")
    assert gc.isenabled()


class _Cycle:
    """A tracked object that is garbage only for the cyclic collector."""

    def __init__(self) -> None:
        self.me = self


def test_what_a_block_makes_goes_to_the_oldest_generation_and_stays_collectable(
    collector_on: None,
) -> None:
    # many objects (a load of Numba's size): no young collection walks them, and they
    # do not count as newly long-lived (which sets off a full collection)
    with collector_paused():
        many = [_Cycle() for _ in range(2 * _compiled_modules._MANY_OBJECTS)]
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(o) in oldest for o in many)
    # a few: left to the collector as ever
    with collector_paused():
        few = [_Cycle() for _ in range(10)]
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(o) in oldest for o in few)
    # still garbage the collector frees
    gone = weakref.ref(many[0])
    del many
    gc.collect()
    assert gone() is None


def test_a_collector_that_was_off_stays_off(collector_on: None) -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_overlapping_blocks_on_threads_turn_it_on_after_the_last(collector_on: None) -> None:
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with collector_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other)
    with collector_paused():
        thread.start()
        assert inside.wait(10)
    # this thread's block ended first: the other one still holds the collector off
    assert not gc.isenabled()
    release.set()
    thread.join(10)
    assert gc.isenabled()


def test_the_loader_imports_with_the_collector_off(
    collector_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("numba")
    seen: list[bool] = []
    real = _compiled_modules.importlib.import_module

    def import_module(name: str, package: str | None = None) -> object:
        if name == "emkit.models._compiled":  # (Numba imports through it too)
            seen.append(gc.isenabled())
        return real(name, package)

    monkeypatch.setattr(_compiled_modules.importlib, "import_module", import_module)
    compiled_module.cache_clear()
    try:
        module = compiled_module("emkit.models._compiled")
    finally:
        compiled_module.cache_clear()
    assert module is sys.modules["emkit.models._compiled"]
    assert seen == [False] and gc.isenabled()


def test_without_numba_the_loader_gives_none_and_the_collector_back(
    collector_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "numba", None)  # import fails
    compiled_module.cache_clear()
    try:
        assert compiled_module("emkit.models._compiled") is None
    finally:
        compiled_module.cache_clear()
    assert gc.isenabled()


def test_numba_comes_with_its_target_set_up_and_the_collector_back(
    collector_on: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    numba = pytest.importorskip("numba")
    assert _compiled_modules.numba_module() is numba and gc.isenabled()
    monkeypatch.setitem(sys.modules, "numba", None)
    assert _compiled_modules.numba_module() is None and gc.isenabled()


def test_every_loader_of_compiled_loops_goes_through_numba_module() -> None:
    """A loader importing Numba itself would run its load with the collector on."""
    import pathlib
    import re

    import emkit

    root = pathlib.Path(emkit.__file__).parent
    imports = re.compile(r"^\s*(import numba\b|from numba\b)", re.MULTILINE)
    loaders = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if imports.search(path.read_text()) and path.name != "_compiled_modules.py"
    ]
    # the modules of compiled loops themselves, imported by compiled_module
    assert sorted(loaders) == [
        "families/_covariance_compiled.py",
        "models/_compiled.py",
        "models/_small_em.py",
        "models/_small_pass.py",
    ]
