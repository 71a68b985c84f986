"""Every mixture estimator, not only GaussianMixture: bounded initialization (a sample
beyond INIT_ROWS rows), checkpoints keyed by the data's values, streamed tables."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from emkit import GaussianMixture, InputError
from emkit.estimators._rows import data_fingerprint

RNG = np.random.default_rng(0)
X = np.vstack([RNG.normal(0, 1, (300, 3)), RNG.normal(5, 2, (400, 3))])


def test_a_checkpoint_of_other_data_of_the_same_shape_is_refused(tmp_path: pathlib.Path) -> None:
    GaussianMixture(2, random_state=0).fit(X, checkpoint=tmp_path)
    other = X.copy()
    other[350, 1] += 1.0  # one value changed: same shape, same dtype
    with pytest.raises(InputError, match=r"belongs to another fit \(other estimator arguments"):
        GaussianMixture(2, random_state=0).fit(other, checkpoint=tmp_path)
    with pytest.raises(InputError, match=r"belongs to another fit"):
        GaussianMixture(2, random_state=0).fit(
            X, sample_weight=np.full(X.shape[0], 2.0), checkpoint=tmp_path
        )
    # the same data resumes (here: the finished run's model at once)
    again = GaussianMixture(2, random_state=0).fit(X.copy(), checkpoint=tmp_path)
    assert again.n_iter_ == GaussianMixture(2, random_state=0).fit(X).n_iter_


def test_the_fingerprint_reads_a_bounded_sample_and_the_dtype() -> None:
    big = np.zeros((20_000, 2))
    changed = big.copy()
    changed[1, 0] = 1.0  # between two sampled rows: not seen
    assert data_fingerprint(big) == data_fingerprint(changed)
    changed[0, 0] = 1.0  # the first row is always read
    assert data_fingerprint(big) != data_fingerprint(changed)
    assert data_fingerprint(big) != data_fingerprint(big.astype(np.float32))
    assert data_fingerprint(X) != data_fingerprint(X, labels=np.zeros(X.shape[0], np.intp))
