"""Latent-variable models as pure functions: e-step statistics and m-step from statistics."""

from emkit.models.mixture import Mixture, MixtureParams, MixtureStats

__all__ = ["Mixture", "MixtureParams", "MixtureStats"]
