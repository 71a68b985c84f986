"""Latent-variable models as pure functions: e-step statistics and m-step from statistics."""

from emkit.models.factor_mixture import FactorMixture, FactorMixtureParams, FactorMixtureStats
from emkit.models.kmeans import FarRows, KMeansModel, KMeansParams, KMeansStats, LastStep
from emkit.models.latent_factor import (
    NOISE_TYPES,
    FactorParams,
    FactorStats,
    LatentFactor,
    LatentFactorMoments,
    Moments,
    noise_structure,
)
from emkit.models.mixture import Mixture, MixtureParams, MixtureStats

__all__ = [
    "NOISE_TYPES",
    "FactorMixture",
    "FactorMixtureParams",
    "FactorMixtureStats",
    "FactorParams",
    "FactorStats",
    "FarRows",
    "KMeansModel",
    "KMeansParams",
    "KMeansStats",
    "LastStep",
    "LatentFactor",
    "LatentFactorMoments",
    "Mixture",
    "MixtureParams",
    "MixtureStats",
    "Moments",
    "noise_structure",
]
