"""scikit-learn's sklearn/cluster/tests/test_k_means.py on emkit.KMeans.

Every test of ``KMeans`` runs on emkit's class (dense and sparse inputs, float32 and
float64, both ``algorithm`` values); the tests set aside below are those of what emkit
does not offer: ``MiniBatchKMeans``, the ``k_means`` and ``kmeans_plusplus`` functions
(emkit's KMeans calls scikit-learn's ``kmeans_plusplus`` for its starts), and
scikit-learn's private Cython helpers.
"""

from __future__ import annotations

from _sklearn_harness import adopt
from sklearn.cluster.tests import test_k_means as suite

import emkit

_MINIBATCH = "tests sklearn.cluster.MiniBatchKMeans, which emkit does not offer"
_PRIVATE = "tests a private helper of scikit-learn's Cython k-means ({})"

NOT_APPLICABLE: dict[str, str] = {
    # the MiniBatchKMeans cases of tests parametrized over both classes, and its own tests
    "*MiniBatchKMeans*": _MINIBATCH,
    "test_minibatch_*": _MINIBATCH,
    "test_relocate_empty_clusters*": _PRIVATE.format("_relocate_empty_clusters_dense/sparse"),
    "test_euclidean_distance*": _PRIVATE.format("_euclidean_dense/sparse_dense_wrapper"),
    "test_inertia*": _PRIVATE.format("_inertia_dense/sparse"),
    "test_is_same_clustering": _PRIVATE.format("_is_same_clustering"),
    "test_k_means_function*": "tests the function sklearn.cluster.k_means, which emkit does "
    "not offer (its estimator KMeans is tested throughout this file)",
    "test_kmeans_plusplus_*": "tests the function sklearn.cluster.kmeans_plusplus, which "
    "emkit does not offer (emkit's KMeans calls it for its k-means++ starts)",
}
WORDING: dict[str, str] = {}

globals().update(adopt(suite, {"KMeans": emkit.KMeans}))
