"""Exponential-family component distributions, written for the sufficient-statistics E-step.

Build a family unbound (``Poisson()``, ``Gaussian("diag")``, a :class:`Product` of them over
column blocks) and hand it to :class:`emkit.MixtureModel`; priors for MAP-EM are in
:mod:`emkit.families.priors`.
"""

from emkit.families._base import ComponentFamily, Natural
from emkit.families.bernoulli import Bernoulli, BernoulliParams
from emkit.families.beta import Beta, BetaParams
from emkit.families.categorical import Categorical, CategoricalParams
from emkit.families.covariance import (
    EEI,
    EEV,
    EII,
    EVE,
    EVI,
    EVV,
    MCLUST_MODELS,
    VEE,
    VEI,
    VEV,
    VVE,
    Composed,
    E,
    PriorShares,
    V,
    mclust_prior_shares,
)
from emkit.families.exponential import Exponential, ExponentialParams
from emkit.families.gamma import Gamma, GammaParams
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
from emkit.families.lognormal import LogNormal, LogNormalFamily
from emkit.families.multinomial import Multinomial, MultinomialParams
from emkit.families.poisson import Poisson, PoissonParams
from emkit.families.priors import (
    AttachedGaussianPrior,
    BetaPrior,
    ConjugatePrior,
    DirichletPrior,
    GammaPrior,
    GaussianPosterior,
    GaussianPrior,
)
from emkit.families.product import Product

__all__ = [
    "COVARIANCE_TYPES",
    "EEI",
    "EEV",
    "EII",
    "EVE",
    "EVI",
    "EVV",
    "MCLUST_MODELS",
    "VEE",
    "VEI",
    "VEV",
    "VVE",
    "AttachedGaussianPrior",
    "Bernoulli",
    "BernoulliParams",
    "Beta",
    "BetaParams",
    "BetaPrior",
    "Categorical",
    "CategoricalParams",
    "ComponentFamily",
    "Composed",
    "ConjugatePrior",
    "CovarianceStructure",
    "Diag",
    "DirichletPrior",
    "E",
    "Exponential",
    "ExponentialParams",
    "Full",
    "Gamma",
    "GammaParams",
    "GammaPrior",
    "Gaussian",
    "GaussianFamily",
    "GaussianParams",
    "GaussianPosterior",
    "GaussianPrior",
    "LogNormal",
    "LogNormalFamily",
    "Multinomial",
    "MultinomialParams",
    "Natural",
    "Poisson",
    "PoissonParams",
    "PriorShares",
    "Product",
    "Spherical",
    "Tied",
    "V",
    "covariance_structure",
    "mclust_prior_shares",
]
