"""emkit: latent-variable models fitted by Expectation-Maximization.

EM for exponential-family components is two matrix products over sufficient statistics
per iteration; the M-step sees only statistics. The design is described in
``docs/design.md`` in the repository, and the documentation site is built from ``docs/``.
"""

from emkit.estimators import (
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
    ModelBasedClustering,
    PoissonMixture,
    infer_family,
)
from emkit.estimators.student_t import StudentTMixture
from emkit.exceptions import (
    ConvergenceWarning,
    DegenerateComponentError,
    DegenerateComponentWarning,
    EmkitError,
    InputError,
    InputTypeError,
    ModelFileError,
    MonotonicityError,
    MonotonicityWarning,
    NonFiniteObjectiveError,
)
from emkit.io.model_file import load_model, save_model

__version__ = "0.1.0"

__all__ = [
    "PPCA",
    "BayesianGaussianMixture",
    "BernoulliMixture",
    "CategoricalMixture",
    "ConvergenceWarning",
    "DegenerateComponentError",
    "DegenerateComponentWarning",
    "EmkitError",
    "FactorAnalysis",
    "GaussianMixture",
    "InputError",
    "InputTypeError",
    "KMeans",
    "MixtureModel",
    "MixtureOfFactorAnalyzers",
    "MixtureOfPPCA",
    "ModelBasedClustering",
    "ModelFileError",
    "MonotonicityError",
    "MonotonicityWarning",
    "NonFiniteObjectiveError",
    "PoissonMixture",
    "StudentTMixture",
    "__version__",
    "infer_family",
    "load_model",
    "save_model",
]
