"""The scikit-learn shell: the only layer that holds mutable state."""

from emkit.estimators.gaussian_mixture import GaussianMixture
from emkit.estimators.mixture_model import (
    BernoulliMixture,
    CategoricalMixture,
    MixtureModel,
    PoissonMixture,
    infer_family,
)

__all__ = [
    "BernoulliMixture",
    "CategoricalMixture",
    "GaussianMixture",
    "MixtureModel",
    "PoissonMixture",
    "infer_family",
]
