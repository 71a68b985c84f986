"""scikit-learn's own estimator checks, with no expected failures."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from emkit import PPCA, FactorAnalysis, GaussianMixture, MixtureOfFactorAnalyzers, MixtureOfPPCA


@parametrize_with_checks(
    [
        GaussianMixture(),
        GaussianMixture(covariance_type="diag"),
        PPCA(),
        FactorAnalysis(),
        MixtureOfPPCA(),
        MixtureOfFactorAnalyzers(),
    ]
)
def test_sklearn_compatible_estimator(estimator, check) -> None:
    check(estimator)
