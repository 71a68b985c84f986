"""scikit-learn's own estimator checks; each expected failure says why."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from emkit import (
    PPCA,
    BayesianGaussianMixture,
    BernoulliMixture,
    CategoricalMixture,
    FactorAnalysis,
    GaussianMixture,
    KMeans,
    MixtureModel,
    MixtureOfFactorAnalyzers,
    MixtureOfPPCA,
    PoissonMixture,
    StudentTMixture,
)
from emkit.families import Gaussian

_EXPECTED_FAILURES = {
    CategoricalMixture: {
        "check_sample_weight_equivalence_on_dense_data": (
            "feeds floats in [0, 1) as category codes, which are rejected, not truncated "
            "(weights = repeated rows: tests/test_mixture_model.py)"
        )
    },
    KMeans: {
        "check_sample_weight_equivalence_on_dense_data": (
            "k-means++ draws its start by row position, so the shuffled weighted rows start "
            "elsewhere than the repeated ones, as in scikit-learn's KMeans (which lists the "
            "same failure); from one start, weights = repeated rows: tests/test_kmeans.py"
        ),
        "check_sample_weight_equivalence_on_sparse_data": (
            "the same, on sparse data (which emkit's KMeans accepts, as scikit-learn's does, "
            "and which lists the same failure)"
        ),
    },
}


# KMeans: 3 clusters, as the default 8 exceed the distinct points of some checks' data
# (warned about, as scikit-learn's KMeans does; scikit-learn checks its own with 2)
@parametrize_with_checks(
    [
        GaussianMixture(),
        GaussianMixture(covariance_type="diag"),
        MixtureModel(),
        MixtureModel(Gaussian("spherical", prior="auto"), weight_concentration=2.0),
        PoissonMixture(),
        PoissonMixture(prior="auto"),
        BernoulliMixture(binarize=0.5),
        CategoricalMixture(),
        PPCA(),
        FactorAnalysis(),
        MixtureOfPPCA(),
        MixtureOfFactorAnalyzers(),
        KMeans(n_clusters=3),
        StudentTMixture(),
        StudentTMixture(covariance_type="tied", dof_type="shared"),
        BayesianGaussianMixture(),
        BayesianGaussianMixture(
            covariance_type="spherical", weight_concentration_prior_type="dirichlet_distribution"
        ),
    ],
    expected_failed_checks=lambda estimator: _EXPECTED_FAILURES.get(type(estimator), {}),
)
def test_sklearn_compatible_estimator(estimator, check) -> None:
    check(estimator)
