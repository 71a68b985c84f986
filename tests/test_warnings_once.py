"""A fit raises each kind of warning once, with how many times it happened."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import emkit
from emkit._warnings import SummarizedWarnings, warnings_once
from emkit.exceptions import ConvergenceWarning, DegenerateComponentWarning


def _collapsing_data() -> np.ndarray:
    # 10 rows within 2e-7 of each other: a component that takes them has a variance below
    # the degeneracy floor at every iteration (held there, with a warning); exactly equal
    # rows would be singular to round-off, which reg_covar=0 refuses with an error
    rng = np.random.default_rng(0)
    return np.vstack([rng.normal(size=(50, 2)), _near_ties()])


def _near_ties() -> np.ndarray:
    return 5.0 + 2e-7 * np.array([[1.0, -1.0]] * 5 + [[-1.0, 1.0]] * 5)


def _caught(fit: Any) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit()
    return caught


def test_repeated_warnings_are_counted_once() -> None:
    def body() -> None:
        with SummarizedWarnings():
            for k in range(4):
                warnings.warn(
                    f"component {k} raised to {k * 1.5e-3:.3g}", RuntimeWarning, stacklevel=1
                )
            warnings.warn("another kind", UserWarning, stacklevel=1)
            warnings.warn("another kind", RuntimeWarning, stacklevel=1)  # same text, other category

    caught = _caught(body)
    assert [(w.category, str(w.message)) for w in caught] == [
        (RuntimeWarning, "component 0 raised to 0 (4 times in this fit; the first is shown)"),
        (UserWarning, "another kind"),
        (RuntimeWarning, "another kind"),
    ]


def test_warnings_point_at_the_caller_of_fit() -> None:
    class Model:
        @warnings_once
        def fit(self) -> Model:
            warnings.warn("twice", UserWarning, stacklevel=1)
            warnings.warn("twice", UserWarning, stacklevel=1)
            return self

    caught = _caught(lambda: Model().fit())
    assert len(caught) == 1
    assert caught[0].filename == __file__
    assert Model.fit.__name__ == "fit"


def test_warnings_of_a_failed_body_are_kept_and_the_error_propagates() -> None:
    def body() -> None:
        with SummarizedWarnings():
            warnings.warn("first", UserWarning, stacklevel=1)
            raise ValueError("the fit failed")

    with pytest.raises(ValueError, match="the fit failed"):
        with pytest.warns(UserWarning, match="first"):
            body()


def test_the_callers_error_filter_still_applies() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match=r"again \(3 times in this fit"):
            with SummarizedWarnings():
                for _ in range(3):
                    warnings.warn("again", UserWarning, stacklevel=1)


def test_gaussian_mixture_collapse_warns_once_per_fit() -> None:
    X = _collapsing_data()
    model = emkit.GaussianMixture(3, covariance_type="diag", reg_covar=0.0, random_state=0)
    caught = _caught(lambda: model.fit(X))
    assert len(caught) == 1
    assert caught[0].category is DegenerateComponentWarning
    assert "zero variance" in str(caught[0].message)
    assert "times in this fit" in str(caught[0].message)


ESTIMATORS = [
    lambda: emkit.GaussianMixture(2, max_iter=1, random_state=0),
    lambda: emkit.MixtureModel(emkit.families.Gaussian("diag"), 2, max_iter=1, random_state=0),
    lambda: emkit.PPCA(1, max_iter=1, random_state=0),
    lambda: emkit.FactorAnalysis(1, max_iter=1, random_state=0),
    lambda: emkit.MixtureOfPPCA(2, n_factors=1, max_iter=1, random_state=0),
    lambda: emkit.MixtureOfFactorAnalyzers(2, n_factors=1, max_iter=1, random_state=0),
]


@pytest.mark.parametrize("make", ESTIMATORS)
def test_every_estimator_reports_each_warning_once(make: Any) -> None:
    # n_init=3 restarts that stop after one iteration: each warns "did not converge"
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(4, 1, (40, 3))])
    model = make().set_params(n_init=3) if "n_init" in make().get_params() else make()
    caught = _caught(lambda: model.fit(X))
    kinds = [(w.category, str(w.message).split(" (")[0]) for w in caught]
    assert len(kinds) == len(set(kinds)) >= 1
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_kmeans_warns_once() -> None:
    X = np.vstack([np.zeros((5, 2)), np.ones((5, 2))])
    caught = _caught(lambda: emkit.KMeans(3, n_init=3, random_state=0).fit(X))
    assert len(caught) == 1
    assert "distinct clusters" in str(caught[0].message)
