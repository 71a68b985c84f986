"""The scikit-learn shell: the only layer that holds mutable state."""

from emkit.estimators.factor_mixture import MixtureOfFactorAnalyzers, MixtureOfPPCA
from emkit.estimators.gaussian_mixture import GaussianMixture
from emkit.estimators.latent_factor import PPCA, FactorAnalysis

__all__ = [
    "PPCA",
    "FactorAnalysis",
    "GaussianMixture",
    "MixtureOfFactorAnalyzers",
    "MixtureOfPPCA",
]
