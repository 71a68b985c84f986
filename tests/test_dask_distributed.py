"""The Dask engine on a real cluster: a ``distributed.LocalCluster`` of two worker
processes gives the in-memory model, also when a worker is killed in the middle of the fit
(Dask computes the lost blocks again), and a closed client is refused before any work."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import emkit.estimators._mixture_base as mixture_base  # noqa: E402
from emkit import GaussianMixture, InputError, KMeans, PoissonMixture  # noqa: E402
from emkit.engines import DaskEngine  # noqa: E402

RNG = np.random.default_rng(3)
X = np.vstack([RNG.normal(0, 1, (1500, 3)), RNG.normal(4, 1.5, (2000, 3))])
KW: dict[str, Any] = {"random_state": 0, "tol": 1e-10, "max_iter": 40}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=60)
        yield client


def test_a_fit_survives_a_worker_killed_mid_fit(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = GaussianMixture(2, **KW).fit(X)
    killed: list[str] = []

    def kill_a_worker(iteration: int, objective: float, change: float) -> None:
        if iteration == 2 and not killed:  # the rows are persisted on both workers by now
            address, pid = sorted(client.run(os.getpid).items())[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(address)

    monkeypatch.setattr(mixture_base, "progress_callback", lambda estimator: kill_a_worker)
    Xd = da.from_array(X, chunks=(900, 3))
    fitted = GaussianMixture(2, engine="dask", **KW).fit(Xd)  # the current client
    assert killed, "no worker was killed"
    assert memory.n_iter_ == fitted.n_iter_ > 3
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(fitted, name), getattr(memory, name), atol=1e-10)
    np.testing.assert_allclose(fitted.lower_bounds_, memory.lower_bounds_, rtol=1e-10)
    monkeypatch.undo()
    labels = fitted.predict(Xd)
    np.testing.assert_array_equal(client.compute(labels).result(), memory.predict(X))


def test_a_closed_client_is_refused_before_any_work(client: Any) -> None:
    other = distributed.Client(client.scheduler.address, set_as_default=False)
    other.close()
    gm = GaussianMixture(2, engine=DaskEngine(client=other))
    with pytest.raises(InputError, match=r"given to DaskEngine is closed .*Connect a new one"):
        gm.fit(da.from_array(X, chunks=(900, 3)))
    assert not hasattr(gm, "weights_")


@pytest.mark.parametrize("kind", ["poisson", "kmeans"])
def test_other_estimators_fit_on_the_cluster(client: Any, kind: str) -> None:
    """A family mixture, and k-means (whose C-step keeps no per-row state on workers):
    the in-memory model, computed by the workers."""
    if kind == "poisson":
        data = RNG.poisson(np.where(X > 2, 5.0, 1.0)).astype(np.float64)
        make: Any = lambda: PoissonMixture(2, random_state=0, tol=1e-10, max_iter=40)  # noqa: E731
    else:
        data = X
        make = lambda: KMeans(2, random_state=0, tol=0.0)  # noqa: E731
    memory = make().fit(data)
    Xd = client.persist(da.from_array(data, chunks=(900, 3)))
    fitted = make().fit(Xd)  # the Dask engine on the current client
    assert fitted.n_iter_ == memory.n_iter_
    names = ("weights_", "rates_") if kind == "poisson" else ("cluster_centers_",)
    for name in names:
        np.testing.assert_allclose(getattr(fitted, name), getattr(memory, name), atol=1e-10)
    labels = fitted.predict(Xd)
    assert isinstance(labels, da.Array)
    np.testing.assert_array_equal(client.compute(labels).result(), memory.predict(data))
