"""scikit-learn's sklearn/mixture/tests/test_bayesian_mixture.py on
emkit.BayesianGaussianMixture."""

from __future__ import annotations

import pytest
from _sklearn_harness import adopt
from sklearn.mixture.tests import test_bayesian_mixture as suite

import emkit

pytestmark = [pytest.mark.filterwarnings("default::sklearn.exceptions.ConvergenceWarning")]

_PRIVATE = "tests scikit-learn's private function {} alone, not the estimator"
NOT_APPLICABLE: dict[str, str] = {
    "test_log_dirichlet_norm": _PRIVATE.format("_log_dirichlet_norm"),
    "test_log_wishart_norm": _PRIVATE.format("_log_wishart_norm"),
    "test_compare_covar_type": (
        "calls scikit-learn's private BayesianGaussianMixture._check_parameters(X) and "
        "_initialize_parameters(X, random_state); the same comparison of the four "
        "structures' first posteriors is in tests/test_bayesian_mixture.py"
    ),
}

globals().update(adopt(suite, {"BayesianGaussianMixture": emkit.BayesianGaussianMixture}))
