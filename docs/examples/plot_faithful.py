"""
Clustering Old Faithful's eruptions
===================================

Two kinds of eruption, short ones followed by short waits and long ones by long waits:
fit Gaussian mixtures with every covariance structure and one to four components, pick
the lowest BIC, and draw the clusters with each component's 2-sigma ellipse.
"""

import matplotlib.pyplot as plt
import numpy as np

from emkit import GaussianMixture
from emkit.io import load_faithful

X, names = load_faithful()

bic = {}
for kind in ("full", "tied", "diag", "spherical"):
    for k in range(1, 5):
        bic[kind, k] = GaussianMixture(k, covariance_type=kind, random_state=0).fit(X).bic(X)
best_kind, best_k = min(bic, key=bic.get)
print(f"lowest BIC: {best_k} components, {best_kind} covariances")

gm = GaussianMixture(best_k, covariance_type=best_kind, random_state=0).fit(X)
labels = gm.predict(X)

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
for kind in ("full", "tied", "diag", "spherical"):
    left.plot(range(1, 5), [bic[kind, k] for k in range(1, 5)], marker="o", label=kind)
left.set_xlabel("components")
left.set_ylabel("BIC (lower is better)")
left.legend()

right.scatter(X[:, 0], X[:, 1], c=labels, s=12, cmap="viridis")
angles = np.linspace(0, 2 * np.pi, 100)
circle = np.stack([np.cos(angles), np.sin(angles)])
for mean, cov in zip(gm.means_, gm.covariances_, strict=True):
    # the 2-sigma ellipse: mean + 2 L u for unit vectors u, with cov = L L^T
    ellipse = mean[:, None] + 2 * np.linalg.cholesky(cov) @ circle
    right.plot(ellipse[0], ellipse[1], color="black")
right.set_xlabel(f"{names[0]} (minutes)")
right.set_ylabel(f"{names[1]} (minutes)")
fig.tight_layout()

# %%
# The objective at every iteration, per sample: EM never decreases it.

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(np.arange(1, gm.n_iter_ + 1), gm.lower_bounds_, marker="o")
ax.set_xlabel("iteration")
ax.set_ylabel("log-likelihood per sample")
fig.tight_layout()
plt.show()
