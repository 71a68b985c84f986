"""The ``emkit`` command: a thin layer that builds estimators and prints and plots results.

Run ``emkit --help``, or ``python -m emkit.cli --help``. The optional extras ``rich`` (the
summary table and the ``--verbose`` progress bar), ``matplotlib`` (the cluster plot),
``pyarrow`` (fast CSV reading and writing) and ``pandas`` (tables with count, 0/1 or text
columns) are used when installed: ``pip install "emkit[cli]"``.
"""

from emkit.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
