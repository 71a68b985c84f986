"""scikit-learn's sklearn/mixture/tests/test_gaussian_mixture.py on emkit.GaussianMixture."""

from __future__ import annotations

import pytest
from _sklearn_harness import adopt
from sklearn.mixture.tests import test_gaussian_mixture as suite

import emkit

# scikit-learn runs its tests with warnings shown, deprecations aside (its
# sklearn.utils._testing warning filters): the same here for how the estimators report a run
# that did not converge (scikit-learn's own estimator warns in some of these tests, e.g.
# max_iter=1) and a component that emkit mended where scikit-learn's fit carries on silently
pytestmark = [
    pytest.mark.filterwarnings("default::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("default::emkit.exceptions.DegenerateComponentWarning"),
]

_PRIVATE = "tests scikit-learn's private function {} alone, not the estimator"
NOT_APPLICABLE: dict[str, str] = {
    "test_suffstat_sk_full": _PRIVATE.format("_estimate_gaussian_covariances_full"),
    "test_suffstat_sk_tied": _PRIVATE.format("_estimate_gaussian_covariances_tied"),
    "test_suffstat_sk_diag": _PRIVATE.format("_estimate_gaussian_covariances_diag"),
    "test_gaussian_suffstat_sk_spherical*": _PRIVATE.format(
        "_estimate_gaussian_covariances_spherical"
    ),
    "test_compute_log_det_cholesky*": _PRIVATE.format("_compute_log_det_cholesky"),
    "test_gaussian_mixture_log_probabilities": _PRIVATE.format("_estimate_log_gaussian_prob"),
    "test_gaussian_mixture_precisions_init[[]*": (
        "calls scikit-learn's private GaussianMixture._set_parameters and "
        "GaussianMixture._initialize(X, resp)"
    ),
    "test_gaussian_mixture_all_init_does_not_estimate_gaussian_parameters*": (
        "monkeypatches scikit-learn's private _estimate_gaussian_parameters and counts its calls"
    ),
}
_NAMES = "emkit names the argument ({}) where scikit-learn says 'The parameter '{}' should ...'"
WORDING: dict[str, str] = {
    "test_check_weights": _NAMES.format("weights_init", "weights"),
    "test_check_means": _NAMES.format("means_init", "means"),
    "test_check_precisions": _NAMES.format("precisions_init", "full precision"),
    "test_regularisation": (
        "with reg_covar=0 a collapsed component raises emkit's DegenerateComponentError "
        "(a ValueError) in emkit's own words, naming the components and the fixes"
    ),
    "test_gaussian_mixture_fit_convergence_warning": (
        "emkit's ConvergenceWarning (a subclass of scikit-learn's) says 'EM did not converge "
        "in max_iter=1 iterations ...' where scikit-learn's says 'Best performing "
        "initialization did not converge ...'"
    ),
}

globals().update(adopt(suite, {"GaussianMixture": emkit.GaussianMixture}))
