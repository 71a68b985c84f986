"""Run scikit-learn's own test files on emkit's classes, without copying them.

A suite module imports a test module from the installed scikit-learn, and :func:`adopt`
swaps the class under test for emkit's in that module's namespace (so its test functions,
which read their globals there, build emkit's estimators), rewrites the
``pytest.mark.parametrize`` arguments that hold scikit-learn's classes or instances, and
returns the test functions to place in the suite module's namespace, where pytest collects
them. The suite lists the tests that do not apply to emkit (``NOT_APPLICABLE``, each with
its reason: tests of scikit-learn's private helpers, of classes emkit does not have) and
those that fail only on the wording of an error message (``WORDING``); the hooks below,
which tests/conftest.py imports (a conftest.py here would shadow that one's ``conftest``
module), mark them by ``fnmatch`` pattern on the test's name with its parameters.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from fnmatch import fnmatch
from types import ModuleType
from typing import Any

import pytest

# emkit keeps float32 as scikit-learn does: run the suites' float32 cases too (read when
# sklearn.conftest is imported, below).
os.environ.setdefault("SKLEARN_RUN_FLOAT32_TESTS", "1")

from sklearn.conftest import global_dtype  # a fixture the suites use

__all__ = ["adopt", "global_dtype", "pytest_collection_modifyitems", "pytest_generate_tests"]


def _swap(value: Any, classes: Mapping[type, type]) -> Any:
    """A parametrize value with scikit-learn's classes and instances made emkit's."""
    if isinstance(value, type) and value in classes:
        return classes[value]
    for old, new in classes.items():
        if type(value) is old:
            return new(**value.get_params(deep=False))
    if isinstance(value, tuple):
        return tuple(_swap(v, classes) for v in value)
    if isinstance(value, list):
        return [_swap(v, classes) for v in value]
    return value


def _swap_marks(function: Callable[..., Any], classes: Mapping[type, type]) -> None:
    marks = getattr(function, "pytestmark", [])
    swapped = []
    for mark in marks:
        if mark.name == "parametrize" and len(mark.args) >= 2:
            names, values = mark.args[0], mark.args[1]
            new_values = [
                pytest.param(*_swap(v.values, classes), marks=v.marks, id=v.id)
                if isinstance(v, type(pytest.param(None)))
                else _swap(v, classes)
                for v in values
            ]
            mark = pytest.mark.parametrize(names, new_values, *mark.args[2:], **mark.kwargs).mark
        swapped.append(mark)
    if marks:
        function.pytestmark = swapped  # type: ignore[attr-defined]


def adopt(suite: ModuleType, replacements: Mapping[str, type]) -> dict[str, Callable[..., Any]]:
    """Make ``suite`` test emkit's classes: ``replacements`` maps the names the suite
    imported (``"GaussianMixture"``) to emkit's classes. Returns the suite's tests."""
    classes = {getattr(suite, name): new for name, new in replacements.items()}
    for name, new in replacements.items():
        setattr(suite, name, new)
    tests = {}
    for name, value in vars(suite).items():
        if name.startswith("test_") and callable(value):
            _swap_marks(value, classes)
            tests[name] = value
    return tests


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # scikit-learn's default for its global_random_seed fixture
    if "global_random_seed" in metafunc.fixturenames:
        metafunc.parametrize("global_random_seed", [42])


def _reason(table: dict[str, str], name: str) -> str | None:
    return next((why for pattern, why in table.items() if fnmatch(name, pattern)), None)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        if module is None or not hasattr(module, "NOT_APPLICABLE"):
            continue
        why = _reason(module.NOT_APPLICABLE, item.name)
        if why is not None:
            item.add_marker(pytest.mark.skip(reason=f"not applicable: {why}"))
            continue
        why = _reason(getattr(module, "WORDING", {}), item.name)
        if why is not None:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"message wording: {why}"))
