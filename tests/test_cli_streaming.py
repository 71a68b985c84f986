"""``emkit fit --stream`` for every family, --checkpoint for every family, and --prior:
the same outputs as the table read whole, and clear errors before anything is written."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pandas as pd
import pytest

from emkit.cli import main


def _mixed(path: pathlib.Path) -> pathlib.Path:
    """A Parquet table of two clusters: a measurement, a count, a 0/1 flag and a coded
    column whose codes are not consecutive (3, 7, 9)."""
    rng = np.random.default_rng(3)
    z = rng.integers(0, 2, 400)
    frame = pd.DataFrame(
        {
            "size": rng.normal(np.where(z == 0, 0.0, 4.0), 1.0),
            "visits": rng.poisson(np.where(z == 0, 1.0, 6.0)),
            "flag": (rng.uniform(size=400) < np.where(z == 0, 0.2, 0.8)).astype(np.int64),
            "code": np.where(z == 0, rng.choice([3, 7], 400), rng.choice([7, 9], 400)),
        }
    )
    frame.to_parquet(path)
    return path


def _outputs(out: pathlib.Path) -> tuple[str, pd.DataFrame]:
    return (out / "summary.csv").read_text(), pd.read_csv(out / "labels.csv")


def test_every_family_streams_to_what_the_table_read_whole_gives(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mixed(tmp_path / "mixed.parquet")
    common = ["fit", str(path), "--components", "1-2", "--family", "code=categorical"]
    common += ["--no-plot", "--init", "kmeans"]
    assert main([*common, "--stream", "--out", str(tmp_path / "s")]) == 0
    streamed_text = capsys.readouterr().out
    assert main([*common, "--no-stream", "--out", str(tmp_path / "m")]) == 0
    memory_text = capsys.readouterr().out
    # the same families: gaussian (size); poisson (visits); bernoulli (flag); categorical
    for family in ("gaussian full (size)", "poisson (visits)", "bernoulli (flag)"):
        assert family in streamed_text and family in memory_text
    assert "categorical (code)" in streamed_text
    summary, labels = _outputs(tmp_path / "s")
    memory_summary, memory_labels = _outputs(tmp_path / "m")
    assert summary == memory_summary
    np.testing.assert_array_equal(labels["label"], memory_labels["label"])
    np.testing.assert_allclose(labels["uncertainty"], memory_labels["uncertainty"], atol=1e-9)
    # the streamed model keeps the categories behind its codes: it labels the file as the
    # in-memory one does
    capsys.readouterr()
    for name in ("s", "m"):
        assert main(["predict", str(tmp_path / name / "model.npz"), str(path)]) == 0
    predicted, memory_predicted = capsys.readouterr().out.split("row,label,uncertainty")[1:]
    assert predicted == memory_predicted


def test_a_streamed_family_checks_its_values_before_any_output(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mixed(tmp_path / "mixed.parquet")
    out = tmp_path / "o"
    for spec, message in [
        ("size=poisson", r"Column 'size' holds -?\d.*the poisson family needs counts"),
        ("visits=bernoulli", r"Column 'visits' holds values other than 0 and 1"),
        ("nope=poisson", r"--family names column 'nope', which is not among"),
    ]:
        argv = ["fit", str(path), "--stream", "--family", spec, "--out", str(out)]
        assert main(argv) == 2
        assert re.search(message, capsys.readouterr().err)
        assert not out.exists()


def test_checkpoint_works_for_every_family_and_resumes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _mixed(tmp_path / "mixed.parquet")
    argv = ["fit", str(path), "--components", "2", "--no-plot", "--stream"]
    argv += ["--family", "code=categorical", "--checkpoint", str(tmp_path / "ck")]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert [p.name for p in sorted((tmp_path / "ck").iterdir())] == ["2-full"]
    # run again: resumed from the finished checkpoint, the same model
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert _outputs(tmp_path / "a")[0] == _outputs(tmp_path / "b")[0]
    capsys.readouterr()
    counts = tmp_path / "counts.npy"
    np.save(counts, np.random.default_rng(1).poisson(3.0, (200, 2)).astype(np.float64))
    ck = ["--checkpoint", str(tmp_path / "ck2"), "--components", "2", "--no-plot"]
    ck += ["--family", "poisson"]  # (in memory: a float file is gaussian by default)
    assert main(["fit", str(counts), *ck, "--out", str(tmp_path / "c")]) == 0
    assert (tmp_path / "ck2" / "2-none").is_dir()


def test_prior_mclust_is_mclusts_prior_for_gaussian_columns(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from emkit import ModelBasedClustering

    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(0, 1, (150, 2)), rng.normal(4, 1, (150, 2))])
    path = tmp_path / "x.npy"
    np.save(path, X)
    argv = ["fit", str(path), "--components", "2", "--covariance", "VVV", "--no-plot"]
    for stream in ("--stream", "--no-stream"):
        out = tmp_path / stream
        assert main([*argv, stream, "--prior", "mclust", "--out", str(out)]) == 0
        bic = float(pd.read_csv(out / "summary.csv")["bic"].iloc[0])
        expected = ModelBasedClustering(
            [2], covariance_types=["VVV"], prior="mclust", random_state=0
        ).fit(X)
        # (the summary has scikit-learn's sign and mclust's BIC at the posterior mode)
        assert bic == pytest.approx(-float(expected.results_["bic"][0]), rel=1e-6)
    plain = tmp_path / "plain"
    assert main([*argv, "--out", str(plain)]) == 0
    assert float(pd.read_csv(plain / "summary.csv")["bic"].iloc[0]) != pytest.approx(bic)
    capsys.readouterr()
    counts = tmp_path / "counts.npy"
    np.save(counts, rng.poisson(3.0, (100, 2)))  # integers: poisson columns
    out = tmp_path / "o"
    assert main(["fit", str(counts), "--prior", "mclust", "--out", str(out)]) == 2
    assert "--prior applies to Gaussian columns, and this table has none" in (
        capsys.readouterr().err
    )
    assert not out.exists()
