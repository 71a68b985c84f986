"""The documentation site: its examples run, its API reference is complete, and it builds
with warnings as errors (the build is marked slow: ``pytest -m "not slow"`` skips it)."""

from __future__ import annotations

import doctest
import importlib
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

import emkit
import emkit.exceptions
import emkit.families
import emkit.io

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# the pages with examples (test_the_guide_has_pages_with_examples says which must have them)
PAGES = [
    page
    for page in sorted(DOCS.glob("*.rst")) + sorted((DOCS / "user_guide").glob("*.rst"))
    if ">>> " in page.read_text()
]
needs_docs = pytest.mark.skipif(not DOCS.is_dir(), reason="needs the source tree")


# -- every page's examples run and print what the page says -----------------------------


@needs_docs
def test_the_guide_has_pages_with_examples() -> None:
    names = {page.relative_to(DOCS).as_posix() for page in PAGES}
    expected = {
        "getting_started.rst",
        "user_guide/gaussian_mixtures.rst",
        "user_guide/exponential_families.rst",
        "user_guide/kmeans.rst",
        "user_guide/latent_factors.rst",
        "user_guide/incomplete_data.rst",
        "user_guide/exact_em.rst",
        "user_guide/map_em.rst",
        "user_guide/bayesian_mixture.rst",
        "user_guide/hard_em.rst",
        "user_guide/monte_carlo_em.rst",
        "user_guide/accelerated_em.rst",
        "user_guide/online_em.rst",
        "user_guide/variational_em.rst",
        "user_guide/scale.rst",
    }
    assert expected <= names, f"missing pages: {sorted(expected - names)}"
    for name in expected:
        assert ">>> " in (DOCS / name).read_text(), f"{name} has no runnable example"


@needs_docs
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_page_examples_run(page: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The ``>>>`` examples of every page, run as doctests in a temporary directory
    (warnings are errors here too)."""
    parser = doctest.DocTestParser()
    test = parser.get_doctest(page.read_text(), {}, page.name, str(page), 0)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report: list[str] = []
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        runner.run(test, out=report.append)
    finally:
        os.chdir(cwd)
    assert runner.failures == 0, "".join(report)


# -- the API reference lists every public name ------------------------------------------

PUBLIC_MODULES = [emkit, emkit.families, emkit.io, emkit.exceptions]
_DIRECTIVE = re.compile(r"^\.\. (\w+)::\s*(\S*)")


def _documented_names(api: str) -> set[str]:
    """The dotted names the API page documents: autosummary entries and ``data``
    directives, each under the ``currentmodule`` in force."""
    names = set()
    module = ""
    in_autosummary = False
    for line in api.splitlines():
        directive = _DIRECTIVE.match(line)
        if directive:
            kind, argument = directive.groups()
            in_autosummary = kind == "autosummary"
            if kind == "currentmodule":
                module = argument
            elif kind == "data":
                names.add(f"{module}.{argument}")
        elif in_autosummary and line.startswith("   "):
            if not line.strip().startswith(":"):  # an entry, not an option
                names.add(f"{module}.{line.strip()}")
        elif line.strip():
            in_autosummary = False
    return names


def _resolve(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


@needs_docs
def test_api_reference_lists_every_public_name() -> None:
    """Every name in the public modules' ``__all__`` has its page, under that module or
    (for a re-export such as ``emkit.InputError``) under the module that defines it."""
    api = (DOCS / "api.rst").read_text()
    documented = {id(_resolve(name)) for name in _documented_names(api)}
    missing = [
        f"{module.__name__}.{name}"
        for module in PUBLIC_MODULES
        for name in module.__all__
        if name != "__version__" and id(getattr(module, name)) not in documented
    ]
    assert not missing, f"add these to docs/api.rst (an autosummary entry each): {missing}"
    assert "emkit.__version__" in api


def test_documented_names_reads_autosummary_and_data() -> None:
    api = (
        ".. currentmodule:: pkg\n\n.. autosummary::\n   :toctree: generated\n\n   A\n   f\n\n"
        "Text\n\n.. data:: CONST\n\n   A constant.\n\n.. currentmodule:: pkg.sub\n\n"
        ".. autosummary::\n\n   B\n"
    )
    assert _documented_names(api) == {"pkg.A", "pkg.f", "pkg.CONST", "pkg.sub.B"}


# -- the site builds, warnings as errors ------------------------------------------------


@pytest.mark.slow
@needs_docs
def test_sphinx_build_has_no_warnings(tmp_path: pathlib.Path) -> None:
    for module in ("sphinx", "numpydoc", "sphinx_gallery", "myst_parser", "pydata_sphinx_theme"):
        pytest.importorskip(module)
    # the build writes the generated API pages and the gallery into its source folder:
    # build a copy (the changelog page includes ../CHANGELOG.md)
    source = tmp_path / "docs"
    outputs = shutil.ignore_patterns("_build", "generated", "auto_examples")
    shutil.copytree(DOCS, source, ignore=outputs)
    shutil.copy(ROOT / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    html = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", source, html],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # -q: only warnings would be printed
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    for name in ("index", "api", "design", "changelog", "user_guide/map_em"):
        assert f"{name}.html" in pages
    # one page per public name, and every gallery example ran and drew its plot
    assert "generated/emkit.GaussianMixture.html" in pages
    assert "generated/emkit.families.Product.html" in pages
    for example in (DOCS / "examples").glob("plot_*.py"):
        assert f"auto_examples/{example.stem}.html" in pages
        assert list((html / "_images").glob(f"sphx_glr_{example.stem}_*.png")), example.name
