"""Checkpoint and resume: a fit killed with SIGKILL and run again ends with the model the
uninterrupted fit gives; writes are atomic and what a killed write leaves is cleaned."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emkit import GaussianMixture, InputError
from emkit.inference.checkpoint import Checkpoint, Saved

SRC = pathlib.Path(__file__).resolve().parents[1] / "src"

# The child builds the estimator ``argv[4]`` names, fits it with a checkpoint and saves
# the attributes ``argv[5]`` lists (and n_iter_); EMKIT_KILL_AT=k kills it with SIGKILL in
# its k-th checkpoint write, after the temporary file is written and before it is renamed.
CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import emkit
    import emkit.inference.checkpoint as checkpoint

    kill_at = int(os.environ.get("EMKIT_KILL_AT", "0"))
    writes = []
    replace = checkpoint._replace

    def dying_replace(source, target):
        writes.append(source)
        if len(writes) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        replace(source, target)

    checkpoint._replace = dying_replace
    X = np.load(sys.argv[1])
    model = eval(sys.argv[4], vars(emkit)).fit(X, checkpoint=sys.argv[2])
    names = sys.argv[5].split(",")
    np.savez(sys.argv[3], n_iter=model.n_iter_, **{n: getattr(model, n) for n in names})
    """
)

GAUSSIAN = (
    "GaussianMixture(3, covariance_type='full', random_state=0, tol=1e-5, max_iter=500)",
    "means_,covariances_,weights_,lower_bounds_",
)


def _data() -> np.ndarray:
    rng = np.random.default_rng(3)
    # overlapping components: EM takes tens of iterations
    return np.vstack(
        [rng.normal(0, 1, (200, 2)), rng.normal(1.5, 1, (200, 2)), rng.normal(3, 1, (200, 2))]
    )


def _run_child(
    tmp: pathlib.Path,
    directory: pathlib.Path,
    kill_at: int,
    estimator: tuple[str, str] = GAUSSIAN,
) -> subprocess.CompletedProcess[str]:
    script = tmp / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(SRC), "EMKIT_KILL_AT": str(kill_at)}
    outputs = [str(tmp / "out.npz"), *estimator]
    return subprocess.run(
        [sys.executable, str(script), str(tmp / "x.npy"), str(directory), *outputs],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_fit_killed_by_sigkill_resumes_to_the_uninterrupted_model(tmp_path: pathlib.Path) -> None:
    X = _data()
    np.save(tmp_path / "x.npy", X)
    whole = GaussianMixture(3, random_state=0, tol=1e-5, max_iter=500).fit(X)
    assert whole.n_iter_ > 15  # the kill below lands in the middle of the run
    directory = tmp_path / "ckpt"
    killed = _run_child(tmp_path, directory, kill_at=3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (tmp_path / "out.npz").exists()
    left = sorted(p.name for p in directory.iterdir())
    assert "checkpoint.npz" in left and any(n.startswith(".checkpoint-") for n in left)
    saved = Checkpoint(directory, "").path
    assert saved.exists()
    resumed = _run_child(tmp_path, directory, kill_at=0)
    assert resumed.returncode == 0, resumed.stderr
    # the killed write's temporary file was cleaned by the next write
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint.npz"]
    out = np.load(tmp_path / "out.npz")
    assert int(out["n_iter"]) == whole.n_iter_
    for name in ("means", "covariances", "weights"):
        np.testing.assert_allclose(out[f"{name}_"], getattr(whole, f"{name}_"), rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["lower_bounds_"], whole.lower_bounds_, rtol=0, atol=1e-12)


KILLED = {
    "PoissonMixture": (
        "PoissonMixture(3, random_state=0, tol=1e-9, max_iter=500)",
        "weights_,rates_,lower_bounds_",
    ),
    "StudentTMixture": (
        "StudentTMixture(3, dof_type='fixed', degrees_of_freedom=4.0, random_state=0, tol=1e-7)",
        "weights_,means_,covariances_,degrees_of_freedom_,lower_bounds_",
    ),
    "MixtureOfPPCA": (
        "MixtureOfPPCA(3, n_factors=1, random_state=0, tol=1e-7, max_iter=500)",
        "weights_,means_,covariances_,lower_bounds_",
    ),
    "KMeans": ("KMeans(3, random_state=0, tol=0.0, max_iter=500)", "cluster_centers_,inertia_"),
    "FactorAnalysis": (
        "FactorAnalysis(1, random_state=0, tol=1e-4, max_iter=500)",
        "components_,mean_,noise_variance_,lower_bounds_",
    ),
}


def _overlapping(name: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    # overlapping clusters: EM (and Lloyd) take more than 5 iterations
    X = np.vstack([rng.normal(c, 1.0, (150, 3)) for c in (0.0, 1.2, 2.4)])
    X[:, 2] += X[:, 0]
    return np.round(np.abs(X) * 3) if name == "PoissonMixture" else X


@pytest.mark.parametrize("name", sorted(KILLED))
def test_every_estimator_killed_mid_fit_resumes_to_the_uninterrupted_model(
    tmp_path: pathlib.Path, name: str
) -> None:
    import emkit

    expression, names = KILLED[name]
    X = _overlapping(name)
    np.save(tmp_path / "x.npy", X)
    whole = eval(expression, vars(emkit)).fit(X)
    assert whole.n_iter_ > 5, whole.n_iter_  # the kill at the first write is mid-run
    directory = tmp_path / "ckpt"

    def run(kill_at: int) -> subprocess.CompletedProcess[str]:
        return _run_child(tmp_path, directory, kill_at, (expression, names))

    killed = run(kill_at=2 if whole.n_iter_ > 10 else 1)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (directory / "checkpoint.npz").exists() and not (tmp_path / "out.npz").exists()
    resumed = run(kill_at=0)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint.npz"]
    out = np.load(tmp_path / "out.npz")
    assert int(out["n_iter"]) == whole.n_iter_
    for attr in names.split(","):
        np.testing.assert_allclose(out[attr], getattr(whole, attr), rtol=0, atol=1e-12)


def test_a_finished_checkpoint_gives_its_model_and_other_fits_are_refused(
    tmp_path: pathlib.Path,
) -> None:
    X = _data()
    first = GaussianMixture(2, random_state=0).fit(X, checkpoint=tmp_path)
    again = GaussianMixture(2, random_state=0).fit(X, checkpoint=tmp_path)
    assert again.n_iter_ == first.n_iter_
    np.testing.assert_array_equal(again.means_, first.means_)
    with pytest.raises(InputError, match=r"belongs to another fit .*Use another checkpoint"):
        GaussianMixture(3, random_state=0).fit(X, checkpoint=tmp_path)
    with pytest.raises(InputError, match=r"belongs to another fit"):
        GaussianMixture(2, random_state=0).fit(X[:100], checkpoint=tmp_path)


def test_checkpoint_refuses_what_it_cannot_resume(tmp_path: pathlib.Path) -> None:
    X = _data()
    with pytest.raises(InputError, match=r"checkpoint resumes one EM run; n_init=2 asks for 2"):
        GaussianMixture(2, n_init=2).fit(X, checkpoint=tmp_path / "a")
    with pytest.raises(InputError, match=r"accelerate='squarem' carries state"):
        GaussianMixture(2, accelerate="squarem").fit(X, checkpoint=tmp_path / "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"checkpoint must be a directory, got the file"):
        GaussianMixture(2).fit(X, checkpoint=tmp_path / "file")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"could not be read .*Remove it to start"):
        GaussianMixture(2).fit(X, checkpoint=tmp_path / "bad")


def test_a_save_is_atomic_and_cleans_what_killed_writes_left(tmp_path: pathlib.Path) -> None:
    store = Checkpoint(tmp_path, "k", every=2)
    (tmp_path / ".checkpoint-stale.npz").write_bytes(b"half")
    params = (np.arange(3.0), {"b": np.eye(2), "a": 1.5})
    store.save(Saved(params, [-1.0, -0.5], [0.1, 0.1], [], 0.0, False))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz"]
    loaded = store.load((np.zeros(3), {"b": np.zeros((2, 2)), "a": 0.0}))
    assert loaded is not None
    np.testing.assert_array_equal(loaded.params[0], params[0])
    np.testing.assert_array_equal(loaded.params[1]["b"], np.eye(2))
    assert loaded.params[1]["a"] == 1.5 and loaded.objectives == [-1.0, -0.5]
    with pytest.raises(InputError, match=r"checkpoint_every must be a positive integer, got 0"):
        Checkpoint(tmp_path, "k", every=0)


def test_emkit_fit_checkpoint_resumes_each_candidate(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emkit.cli import main

    np.save(tmp_path / "x.npy", _data())
    args = ["fit", str(tmp_path / "x.npy"), "--components", "2-3", "--no-plot"]
    checkpoint = ["--checkpoint", str(tmp_path / "ck")]
    assert main([*args, *checkpoint, "--out", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "k2-diag",
        "k2-full",
        "k3-diag",
        "k3-full",
    ]
    # the same command again: every candidate resumes from its finished checkpoint
    assert main([*args, *checkpoint, "--out", str(tmp_path / "b")]) == 0
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    summary = (tmp_path / "c" / "summary.csv").read_text()
    assert (tmp_path / "a" / "summary.csv").read_text() == summary
    assert (tmp_path / "b" / "summary.csv").read_text() == summary
    capsys.readouterr()
    assert main([*args, *checkpoint, "--n-init", "2", "--out", str(tmp_path / "d")]) == 2
    assert "--checkpoint resumes one EM run per candidate; --n-init 2" in capsys.readouterr().err
