"""Sphinx configuration of emkit's documentation site.

Build with ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (tests/test_docs.py
does so into a temporary copy, warnings as errors). The gallery runs the scripts in
``docs/examples`` at build time, with matplotlib's non-interactive backend.
"""

from __future__ import annotations

import os
import re

import matplotlib

import emkit

matplotlib.use("Agg")

project = "emkit"
author = "the emkit developers"
copyright = "the emkit developers"
release = emkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/GALLERY_HEADER.rst"]
templates_path = ["_templates"]

# API reference: one page per public name, generated from the docstrings
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections already give the types
autodoc_default_options = {"member-order": "groupwise"}
numpydoc_show_class_members = False  # the class template lists the methods itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# the design document is Markdown (MyST), headings become link targets
myst_heading_anchors = 3

sphinx_gallery_conf = {
    "examples_dirs": ["examples"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    # every example must run; a failure fails the build
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "plot_gallery": os.environ.get("EMKIT_DOCS_PLOT_GALLERY", "True"),
}

html_theme = "pydata_sphinx_theme"
html_title = f"emkit {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
html_show_sourcelink = False


def _skip_routing(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool:
    """scikit-learn's metadata-routing helpers (``set_fit_request``...) are not emkit's API."""
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return skip


# "name : type" lines of numpydoc sections, and a fitted attribute's name inside the type
_PARAM_LINE = re.compile(r"^(\s*[\w*][\w*, <>]* : )(.*)$")
_TRAILING_UNDERSCORE = re.compile(r"\b(\w+)_(?=[,)\s]|$)")


def _escape_types(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Types are written as text ("ndarray of shape (n_iter_,)"), and ``word_`` is
    reStructuredText's reference syntax: escape the underscore before numpydoc reads it."""
    for i, line in enumerate(lines):
        match = _PARAM_LINE.match(line)
        if match:
            lines[i] = match[1] + _TRAILING_UNDERSCORE.sub(r"\1\\_", match[2])


def setup(app: object) -> None:
    app.connect("autodoc-skip-member", _skip_routing)  # type: ignore[attr-defined]
    # before numpydoc's own handler (priority 500) turns the sections into reST
    app.connect("autodoc-process-docstring", _escape_types, priority=100)  # type: ignore[attr-defined]
