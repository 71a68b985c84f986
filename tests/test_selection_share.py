"""ModelBasedClustering's shared starts: a short run continued where it stopped."""

from __future__ import annotations

import pytest

from emkit import GaussianMixture
from emkit.exceptions import InputError
from emkit.io import load_faithful


@pytest.mark.parametrize("name", ["tied", "EEE"])
def test_a_tied_fit_with_as_many_components_as_features_warm_starts(name: str) -> None:
    X = load_faithful()[0]  # 2 columns, 2 components: tied and diag arrays are (2, 2)
    gm = GaussianMixture(2, covariance_type=name, init_params="hc", max_iter=3)
    gm.fit(X)
    # (the factor is upper triangular but for rounding below the diagonal)
    first = gm.lower_bounds_.copy()
    gm.set_params(warm_start=True, max_iter=1000).fit(X)
    assert gm.converged_ and gm.lower_bounds_[0] >= first[-1]
    # a diag fit of the same shape is still told apart
    diag = GaussianMixture(2, covariance_type="diag", init_params="hc", max_iter=3).fit(X)
    with pytest.raises(InputError, match="covariance_type='diag', but covariance_type is now"):
        diag.set_params(warm_start=True, covariance_type=name).fit(X)
    with pytest.raises(InputError, match="covariance_type='tied', but covariance_type is now"):
        gm.set_params(covariance_type="diag").fit(X)
