"""
Probabilistic PCA with missing values
=====================================

Ten correlated columns driven by two latent factors, a fifth of the values missing.
:class:`emkit.PPCA` fits the factors by EM, conditioning each row on its observed values;
the plot shows the rows' posterior factor means (coloured by a hidden group) and how well
the factors fill the missing values.
"""

import matplotlib.pyplot as plt
import numpy as np

from emkit import PPCA

rng = np.random.default_rng(0)
n, d = 600, 10
group = rng.integers(0, 3, n)
factors = rng.normal(size=(n, 2)) * 0.5 + np.array([[-2, 0], [2, 0], [0, 2.5]])[group]
loadings = rng.normal(size=(2, d))
X = factors @ loadings + 0.3 * rng.normal(size=(n, d))

holes = X.copy()
missing = rng.uniform(size=X.shape) < 0.2
holes[missing] = np.nan

ppca = PPCA(n_components=2, random_state=0).fit(holes)
Z = ppca.transform(holes)
filled = np.where(missing, ppca.inverse_transform(Z), holes)
print(f"noise variance {ppca.noise_variance_:.3f} (true 0.09), {ppca.n_iter_} iterations")

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
left.scatter(Z[:, 0], Z[:, 1], c=group, s=10, cmap="viridis")
left.set_title("E[z | observed values]")
left.set_xlabel("factor 1")
left.set_ylabel("factor 2")
right.scatter(X[missing], filled[missing], s=4, alpha=0.5)
lims = [X.min(), X.max()]
right.plot(lims, lims, color="black")
right.set_title("missing values: imputed against true")
right.set_xlabel("true value")
right.set_ylabel("imputed from the factors")
fig.tight_layout()
plt.show()
