"""Exponential-family component distributions, written for the sufficient-statistics E-step."""

from emkit.families._base import ComponentFamily, Natural
from emkit.families.gaussian import (
    COVARIANCE_TYPES,
    CovarianceStructure,
    Diag,
    Full,
    GaussianFamily,
    GaussianParams,
    Spherical,
    Tied,
    covariance_structure,
)

__all__ = [
    "COVARIANCE_TYPES",
    "ComponentFamily",
    "CovarianceStructure",
    "Diag",
    "Full",
    "GaussianFamily",
    "GaussianParams",
    "Natural",
    "Spherical",
    "Tied",
    "covariance_structure",
]
