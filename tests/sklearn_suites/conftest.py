"""Marks for scikit-learn's own tests run on emkit's classes (see _sklearn_harness.py)."""

from __future__ import annotations

import os
from fnmatch import fnmatch

import pytest

# emkit keeps float32 as scikit-learn does: run the suites' float32 cases too (read when
# sklearn.conftest is imported, below).
os.environ.setdefault("SKLEARN_RUN_FLOAT32_TESTS", "1")

from sklearn.conftest import global_dtype  # noqa: F401  (a fixture the suites use)


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
