"""Exponential-family component distributions, written for the sufficient-statistics E-step.

Build a family unbound (``Poisson()``, ``Gaussian("diag")``, a :class:`Product` of them over
column blocks) and hand it to :class:`emkit.MixtureModel`; priors for MAP-EM are in
:mod:`emkit.families.priors`.
"""

from emkit.families._base import ComponentFamily, Natural
from emkit.families.gaussian import (
    COVARIANCE_TYPES,
    CovarianceStructure,
    Diag,
    Full,
    Gaussian,
    GaussianFamily,
    GaussianParams,
    Spherical,
    Tied,
    covariance_structure,
)
from emkit.families.poisson import Poisson, PoissonParams
from emkit.families.priors import (
    BetaPrior,
    ConjugatePrior,
    DirichletPrior,
    GammaPrior,
    GaussianPrior,
)
from emkit.families.product import Product

__all__ = [
    "COVARIANCE_TYPES",
    "BetaPrior",
    "ComponentFamily",
    "ConjugatePrior",
    "CovarianceStructure",
    "Diag",
    "DirichletPrior",
    "Full",
    "GammaPrior",
    "Gaussian",
    "GaussianFamily",
    "GaussianParams",
    "GaussianPrior",
    "Natural",
    "Poisson",
    "PoissonParams",
    "Product",
    "Spherical",
    "Tied",
    "covariance_structure",
]
