"""Bad input gets a clear error that names the problem and the fix."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import blobs
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning

from emkit import (
    DegenerateComponentError,
    DegenerateComponentWarning,
    GaussianMixture,
    InputError,
    InputTypeError,
)

X = blobs(60, 2, 2, seed=0)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            np.array([[1.0, 2.0], [np.nan, np.nan], [4.0, 5.0]]),
            r"1 row\(s\) with every value missing \(first at row 1\)",
        ),
        (np.array([[1.0, 2.0], [np.inf, 3.0], [4.0, 5.0]]), r"contains infinity .*row 1, column 0"),
        (np.empty((0, 3)), r"empty: 0 sample"),
        (np.empty((5, 0)), r"0 feature\(s\)"),
        (np.arange(10.0), r"1-D .*reshape\(-1, 1\)"),
        (np.zeros((2, 2, 2)), r"must be 2-D"),
        (np.array([["a", "b"], ["c", "d"]]), r"non-numeric values .*Encode categorical"),
        (np.array([[1 + 2j, 1.0], [1.0, 1.0]]), r"Complex data not supported"),
        (sp.csr_matrix(np.eye(3)), r"sparse matrix .*toarray"),
    ],
)
def test_bad_data(data: object, match: str) -> None:
    with pytest.raises(InputError, match=match):
        GaussianMixture(1).fit(data)


def test_object_columns() -> None:
    with pytest.raises(InputTypeError, match="non-numeric"):
        GaussianMixture(1).fit(np.array([[1.0, {"a": 1}], [2.0, 3.0]], dtype=object))
    with pytest.raises(InputError, match="could not convert string to float: 'x'"):
        GaussianMixture(1).fit(np.array([[1.0, "x"], [2.0, 3.0]], dtype=object))


def test_too_few_samples() -> None:
    with pytest.raises(InputError, match=r"X has 1 sample; .*at least 2"):
        GaussianMixture(1).fit(X[:1])
    with pytest.raises(InputError, match=r"5 samples but n_components=6.*Decrease n_components"):
        GaussianMixture(6).fit(X[:5])


def test_wrong_number_of_features_at_predict_time() -> None:
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianMixture is expecting 2"):
        gm.predict(np.ones((4, 3)))


def test_not_fitted() -> None:
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).predict(X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weights_init": [0.5, 0.5, 0.0]}, r"weights_init must have shape \(2,\)"),
        ({"weights_init": [0.7, 0.7]}, r"weights_init must be non-negative and sum to 1"),
        ({"weights_init": [1.5, -0.5]}, r"non-negative and sum to 1"),
        ({"means_init": np.zeros((3, 2))}, r"means_init must have shape \(2, 2\)"),
        ({"means_init": [[0, np.nan], [1, 1]]}, r"means_init contains NaN"),
        ({"precisions_init": np.zeros((2, 2))}, r"precisions_init must have shape \(2, 2, 2\)"),
        (
            {"precisions_init": np.array([np.eye(2), -np.eye(2)])},
            r"precisions_init\[1\] is not symmetric positive-definite",
        ),
        (
            {"precisions_init": np.array([[[1, 2], [0, 1]]] * 2)},
            r"precisions_init\[0\] is not symmetric",
        ),
        ({"covariance_type": "diag", "precisions_init": [[1, 1], [1, 0]]}, r"must be positive"),
        ({"n_components": 0}, r"n_components must be an integer >= 1, got 0"),
        ({"covariance_type": "ful"}, r"covariance_type must be one of 'full'"),
        ({"init_params": "kmeans+"}, r"init_params must be one of"),
        ({"tol": -1}, r"tol must be a finite number >= 0"),
        ({"reg_covar": float("nan")}, r"reg_covar must be a finite number"),
        ({"max_iter": 1.5}, r"max_iter must be an integer >= 0"),
        ({"n_init": 0}, r"n_init must be an integer >= 1"),
        ({"dtype": "float16"}, r"dtype must be 'float64' or 'float32'"),
        ({"monotonicity": "loud"}, r"monotonicity must be one of"),
        ({"random_state": "seed"}, r"random_state must be None, an int"),
        ({"chunk_size": 0}, r"chunk_size must be a positive integer"),
        ({"n_threads": -2}, r"n_threads must be a positive integer"),
        ({"warm_start": "yes"}, r"warm_start must be True or False"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(InputError, match=match):
        GaussianMixture(**kwargs).fit(X)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (-np.ones(60), r"negative values .*index 0.*>= 0"),
        (np.zeros(60), r"zero for every sample"),
        (np.ones(59), r"shape \(60,\)"),
        (np.r_[np.ones(59), np.nan], r"NaN or infinity"),
        (np.array(["a"] * 60), r"must be numeric"),
    ],
)
def test_bad_sample_weight(weights: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        GaussianMixture(2).fit(X, sample_weight=weights)


def test_sample_needs_a_positive_count() -> None:
    gm = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(InputError, match="n_samples must be an integer >= 1, got 0"):
        gm.sample(0)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_with_reg_covar_0_a_component_on_one_repeated_point_fails_the_fit(
    covariance_type: str,
) -> None:
    # Three distinct points and a start that puts a component on one repeated point with
    # no regularization: its covariance is exactly singular, no maximum exists, and the
    # fit fails as scikit-learn's and mclust's do. (A covariance that is positive but below
    # the degeneracy floor is held there instead: test_monotonicity.)
    Xd = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]])
    gm = GaussianMixture(
        3,
        covariance_type=covariance_type,
        reg_covar=0.0,
        init_params="random_from_data",
        random_state=0,
        max_iter=5,
    )
    with pytest.raises(DegenerateComponentError, match=r"Increase reg_covar \(the default"):
        gm.fit(Xd)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        gm.set_params(reg_covar=1e-6).fit(Xd)  # the default regularization fits it
    assert np.all(np.isfinite(gm.means_)) and np.all(np.isfinite(gm.score_samples(Xd)))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_two_points_and_ten_components_without_regularization_fail_clearly(
    covariance_type: str,
) -> None:
    # each component ends on one of two repeated points: exactly zero covariances. The
    # error is the fit's, not one of the warnings the fit collected on the way (with
    # warnings as errors, they must not replace it).
    X = np.vstack([np.ones((5, 5)), np.zeros((5, 5))])
    gm = GaussianMixture(10, covariance_type=covariance_type, reg_covar=0.0, random_state=0)
    with pytest.raises(DegenerateComponentError, match=r"with reg_covar=0, .* became singular"):
        gm.fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        # scikit-learn's k-means start says it found 2 distinct points for 10 clusters
        warnings.simplefilter("ignore", SklearnConvergenceWarning)
        gm.set_params(reg_covar=1e-6).fit(X)
    assert np.all(np.isfinite(gm.covariances_))


def test_component_with_no_mass_keeps_its_parameters() -> None:
    Xd = np.r_[np.zeros((30, 1)), np.ones((30, 1))] + np.linspace(0, 0.01, 60)[:, None]
    gm = GaussianMixture(
        3,
        means_init=[[0.0], [1.0], [1e6]],
        weights_init=[0.5, 0.5, 0.0],
        precisions_init=[[[1e4]]] * 3,
        max_iter=10,
    )
    with pytest.warns(DegenerateComponentWarning, match="collapsed"):
        gm.fit(Xd)
    assert gm.weights_[2] < 1e-12 and gm.means_[2, 0] == pytest.approx(1e6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(gm.score(Xd))
