"""``python -m emkit.cli``: the same as the ``emkit`` command."""

from emkit.cli._main import main

raise SystemExit(main())
