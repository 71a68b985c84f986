"""Plots of fitted models: the EM trace and its bound, BIC curves, classification,
uncertainty and density on pairs plots, and a palette that stays distinct beyond ten
clusters.

matplotlib is an optional extra (``pip install "emkit[plot]"``): this package imports
without it, and each function imports it when called, raising an :class:`ImportError`
that names the extra when it is missing. Every function draws into the ``ax`` (or
``fig``) it is given, or into a new pyplot figure, and returns what it drew into.
"""

from emkit.plot._plots import bic, classification, density, palette, trace, uncertainty

__all__ = ["bic", "classification", "density", "palette", "trace", "uncertainty"]
