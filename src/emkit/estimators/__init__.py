"""The scikit-learn shell: the only layer that holds mutable state."""

from emkit.estimators.bayesian_mixture import BayesianGaussianMixture
from emkit.estimators.factor_mixture import MixtureOfFactorAnalyzers, MixtureOfPPCA
from emkit.estimators.gaussian_mixture import GaussianMixture
from emkit.estimators.kmeans import KMeans
from emkit.estimators.latent_factor import PPCA, FactorAnalysis
from emkit.estimators.mixture_model import (
    BernoulliMixture,
    CategoricalMixture,
    MixtureModel,
    PoissonMixture,
    infer_family,
)
from emkit.estimators.selection import ModelBasedClustering
from emkit.estimators.student_t import StudentTMixture

__all__ = [
    "PPCA",
    "BayesianGaussianMixture",
    "BernoulliMixture",
    "CategoricalMixture",
    "FactorAnalysis",
    "GaussianMixture",
    "KMeans",
    "MixtureModel",
    "MixtureOfFactorAnalyzers",
    "MixtureOfPPCA",
    "ModelBasedClustering",
    "PoissonMixture",
    "StudentTMixture",
    "infer_family",
]
