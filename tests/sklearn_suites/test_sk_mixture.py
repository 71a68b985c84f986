"""scikit-learn's sklearn/mixture/tests/test_mixture.py on emkit.GaussianMixture and
emkit.BayesianGaussianMixture."""

from __future__ import annotations

import pytest
from _sklearn_harness import adopt
from sklearn.mixture.tests import test_mixture as suite

import emkit

# scikit-learn runs these tests with its ConvergenceWarning shown, not raised (its own
# estimator warns in some of them, e.g. max_iter=1): the same here
pytestmark = pytest.mark.filterwarnings("default::sklearn.exceptions.ConvergenceWarning")

NOT_APPLICABLE: dict[str, str] = {}
WORDING: dict[str, str] = {}

globals().update(
    adopt(
        suite,
        {
            "GaussianMixture": emkit.GaussianMixture,
            "BayesianGaussianMixture": emkit.BayesianGaussianMixture,
        },
    )
)
