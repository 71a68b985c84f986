"""The ``emkit`` command: a thin layer that builds estimators and prints and plots results.

Run ``emkit --help``, or ``python -m emkit.cli --help``. The optional extras ``rich`` (the
summary table) and ``matplotlib`` (the cluster plot) are used when installed:
``pip install "emkit[cli]"``.
"""

from emkit.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
