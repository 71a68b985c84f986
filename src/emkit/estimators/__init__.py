"""The scikit-learn shell: the only layer that holds mutable state."""

from emkit.estimators.gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture"]
