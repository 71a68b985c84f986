"""scikit-learn's sklearn/decomposition/tests/test_factor_analysis.py on emkit.FactorAnalysis."""

from __future__ import annotations

from _sklearn_harness import adopt
from sklearn.decomposition.tests import test_factor_analysis as suite

import emkit

NOT_APPLICABLE: dict[str, str] = {}
WORDING: dict[str, str] = {}

globals().update(adopt(suite, {"FactorAnalysis": emkit.FactorAnalysis}))
