"""Model files (round trips, every refusal, atomic writes) and table reading."""

from __future__ import annotations

import json
import os
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import emkit
from emkit import GaussianMixture, InputError, ModelFileError
from emkit.inference.em import EMTrace
from emkit.io import load_faithful, load_model, read_table, save_model
from emkit.io.model_file import FORMAT_VERSION, atomic_write

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _data(n: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(6.0, 1.5, (n - n // 2, 2))])


def _fitted(covariance_type: str = "full", **params: Any) -> GaussianMixture:
    return GaussianMixture(2, covariance_type=covariance_type, random_state=0, **params).fit(
        _data()
    )


def _assert_same_attributes(a: Any, b: Any) -> None:
    fitted = sorted(k for k in vars(a) if k.endswith("_") and not k.startswith("_"))
    assert fitted == sorted(k for k in vars(b) if k.endswith("_") and not k.startswith("_"))
    for key in fitted:
        va, vb = getattr(a, key), getattr(b, key)
        assert type(va) is type(vb), key
        if isinstance(va, EMTrace):
            for fa, fb in zip(va, vb, strict=True):
                np.testing.assert_array_equal(fa, fb)
                assert fa.dtype == fb.dtype
        elif isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb)
            assert va.dtype == vb.dtype, key
        else:
            assert va == vb or (np.isnan(va) and np.isnan(vb)), key


# -- model files: round trips ------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_gives_the_same_model(covariance_type: str, tmp_path: Path) -> None:
    model = _fitted(covariance_type)
    X = _data(seed=1)
    loaded = load_model(save_model(model, tmp_path / "model.npz"))
    assert type(loaded) is GaussianMixture
    assert loaded.get_params() == model.get_params()
    _assert_same_attributes(model, loaded)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), model.score_samples(X))
    np.testing.assert_array_equal(loaded.sample(5)[0], model.sample(5)[0])


def test_model_file_is_an_npz_with_json_metadata(tmp_path: Path) -> None:
    path = save_model(_fitted(), tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as data:
        metadata = json.loads(str(data["metadata.json"][()]))
        assert data["metadata.json"].shape == ()
    assert metadata["format"] == "emkit-model"
    assert metadata["format_version"] == FORMAT_VERSION
    assert metadata["emkit_version"] == emkit.__version__
    assert metadata["estimator"] == "GaussianMixture"
    assert metadata["params"]["n_components"] == 2
    assert metadata["attributes"]["converged_"] == {"kind": "scalar", "type": "bool", "value": True}
    trace = metadata["attributes"]["trace_"]
    assert trace["kind"] == "tuple" and trace["type"] == "emkit.inference.em.EMTrace"
    assert metadata["attributes"]["means_"]["kind"] == "array"


def test_path_without_npz_suffix_is_used_as_given(tmp_path: Path) -> None:
    path = save_model(_fitted(), tmp_path / "model")
    assert path == tmp_path / "model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert isinstance(load_model(str(path)), GaussianMixture)


def test_round_trip_keeps_feature_names_as_object_strings(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_data(), columns=["height", "width"])
    model = GaussianMixture(2, random_state=0).fit(frame)
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.feature_names_in_.dtype == object
    assert loaded.feature_names_in_.tolist() == ["height", "width"]
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))


def test_round_trip_of_array_params_generator_and_non_finite_scalars(tmp_path: Path) -> None:
    means = np.array([[0.0, 0.0], [6.0, 6.0]])
    model = GaussianMixture(
        2, means_init=means, random_state=np.random.default_rng(0), max_iter=0
    ).fit(_data())
    assert model.lower_bound_ == -np.inf
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.random_state is None  # a generator's state is not stored
    np.testing.assert_array_equal(loaded.means_init, means)
    assert loaded.lower_bound_ == -np.inf
    assert loaded.trace_.objective.shape == (0,)
    _assert_same_attributes(model, loaded)


def test_list_params_round_trip(tmp_path: Path) -> None:
    model = _fitted(weights_init=[0.5, 0.5])
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.weights_init == [0.5, 0.5]


# -- model files: refusals when saving -----------------------------------------------------


def test_save_refuses_an_unfitted_estimator(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"not fitted yet.*Call fit\(X\) before save_model"):
        save_model(GaussianMixture(2), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_other_estimators(tmp_path: Path) -> None:
    other = SklearnGaussianMixture(1).fit(_data())
    with pytest.raises(
        InputError,
        match=r"save_model stores emkit's estimators \(.*GaussianMixture.*\), got sklearn",
    ):
        save_model(other, tmp_path / "m.npz")


def test_save_refuses_subclasses(tmp_path: Path) -> None:
    class Mine(GaussianMixture):
        pass

    with pytest.raises(InputError, match=r"stores emkit's estimators.*got .*Mine"):
        save_model(Mine(1).fit(_data()), tmp_path / "m.npz")


def test_save_refuses_an_attribute_it_cannot_store(tmp_path: Path) -> None:
    model = _fitted()
    model.extra_ = {"a": 1}
    with pytest.raises(InputError, match=r"the attribute extra_ is not one a GaussianMixture has"):
        save_model(model, tmp_path / "m.npz")
    model.extra_ = object()
    with pytest.raises(InputError, match=r"fitted attribute extra_ is a builtins.object, which"):
        save_model(model, tmp_path / "m.npz")
    model.extra_ = np.array([object()], dtype=object)
    with pytest.raises(InputError, match=r"attribute extra_ is an object array that is not all"):
        save_model(model, tmp_path / "m.npz")
    model.extra_ = np.zeros(2, dtype=[("a", "f8")])
    with pytest.raises(InputError, match=r"attribute extra_ has dtype .* cannot store"):
        save_model(model, tmp_path / "m.npz")
    model.extra_ = EMTrace(np.zeros(1), [1.0])  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"extra_.seconds is a list; model files store Named"):
        save_model(model, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_a_param_it_cannot_store(tmp_path: Path) -> None:
    model = _fitted()
    model.set_params(chunk_size=object())
    with pytest.raises(InputError, match=r"parameter chunk_size=.* cannot be stored"):
        save_model(model, tmp_path / "m.npz")


# -- model files: atomic writes -----------------------------------------------------------


def test_failed_write_leaves_no_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(_fitted(), tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_an_existing_file_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_model(_fitted(), tmp_path / "m.npz")
    before = path.read_bytes()

    def half_then_boom(file: Any, *args: Any, **kwargs: Any) -> None:
        file.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(np, "savez", half_then_boom)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_model(_fitted("diag"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_atomic_write_keeps_the_permissions_of_the_file_it_replaces(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    path.write_text("old")
    path.chmod(0o640)
    with atomic_write(path, text=True) as fh:
        fh.write("new\n")
    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_atomic_write_new_file_gets_the_usual_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "new.bin") as fh:
            fh.write(b"x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_atomic_write_refuses_missing_directory_and_directories(tmp_path: Path) -> None:
    with (
        pytest.raises(InputError, match=r"the directory .*nope.* does not exist"),
        atomic_write(tmp_path / "nope" / "f.txt"),
    ):
        pass
    with (
        pytest.raises(InputError, match=r"it is a directory; give a file name"),
        atomic_write(tmp_path),
    ):
        pass


# -- model files: refusals when loading --------------------------------------------------


def _contents(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("metadata.json")[()])), arrays


def _rewrite(path: Path, metadata: dict[str, Any] | None, arrays: dict[str, np.ndarray]) -> None:
    entries = dict(arrays)
    if metadata is not None:
        entries["metadata.json"] = np.array(json.dumps(metadata))
    with path.open("wb") as fh:
        np.savez(fh, **entries)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return save_model(_fitted(), tmp_path / "model.npz")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"'.*absent.npz' does not exist. Check the path"):
        load_model(tmp_path / "absent.npz")


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"is a directory, not a model file"):
        load_model(tmp_path)


@pytest.mark.parametrize("content", [b"", b"eruptions,waiting\n3.6,79\n", b"\x93NUMPY"])
def test_load_not_an_npz(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=r"is not an emkit model file: it is not a NumPy .npz"):
        load_model(path)


def test_load_a_truncated_archive(model_file: Path) -> None:
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2] + data[-22:])  # keep the end record only
    with pytest.raises(ModelFileError, match=r"(damaged|not a NumPy .npz)"):
        load_model(model_file)


def test_load_an_npz_without_metadata(model_file: Path) -> None:
    _, arrays = _contents(model_file)
    _rewrite(model_file, None, arrays)
    with pytest.raises(ModelFileError, match=r"not an emkit model file: it has no 'metadata.json'"):
        load_model(model_file)


def test_load_metadata_that_is_not_json(model_file: Path) -> None:
    _, arrays = _contents(model_file)
    _rewrite(model_file, None, {**arrays, "metadata.json": np.array("{not json")})
    with pytest.raises(ModelFileError, match=r"damaged: metadata.json is not valid JSON"):
        load_model(model_file)


def test_load_metadata_that_is_not_text(model_file: Path) -> None:
    _, arrays = _contents(model_file)
    _rewrite(model_file, None, {**arrays, "metadata.json": np.zeros(3)})
    with pytest.raises(ModelFileError, match=r"damaged: metadata.json is not text"):
        load_model(model_file)


def test_load_wrong_format(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    _rewrite(model_file, {**metadata, "format": "joblib"}, arrays)
    with pytest.raises(ModelFileError, match=r"its format is 'joblib', expected 'emkit-model'"):
        load_model(model_file)


def test_load_newer_format_version(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    _rewrite(
        model_file,
        {**metadata, "format_version": FORMAT_VERSION + 1, "emkit_version": "9.0"},
        arrays,
    )
    with pytest.raises(
        ModelFileError, match=r"format_version 2 \(written by emkit 9.0\).*Upgrade emkit"
    ):
        load_model(model_file)


@pytest.mark.parametrize("version", ["1", 0, True, None])
def test_load_bad_format_version(model_file: Path, version: Any) -> None:
    metadata, arrays = _contents(model_file)
    _rewrite(model_file, {**metadata, "format_version": version}, arrays)
    with pytest.raises(ModelFileError, match=r"damaged: format_version is .* positive integer"):
        load_model(model_file)


@pytest.mark.parametrize("name", ["Pipeline", "os.system", None])
def test_load_unknown_estimator(model_file: Path, name: Any) -> None:
    metadata, arrays = _contents(model_file)
    _rewrite(model_file, {**metadata, "estimator": name}, arrays)
    with pytest.raises(ModelFileError, match=r"estimator .* that this emkit does not know; known"):
        load_model(model_file)


def test_load_missing_array(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    del arrays["attr.means_"]
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"the array 'attr.means_' for attribute means_ is"):
        load_model(model_file)


def test_load_missing_trace_field_array(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    del arrays["attr.trace_.seconds"]
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"for attribute trace_.seconds is missing"):
        load_model(model_file)


def test_load_missing_params_section(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    del metadata["params"]
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"its metadata has no 'params'"):
        load_model(model_file)


def test_load_unknown_param(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    metadata["params"]["n_clusters"] = 3
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"sets a parameter 'n_clusters' that this emkit's"):
        load_model(model_file)


def test_load_unreadable_param_value(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    metadata["params"]["tol"] = {"callable": "os.system"}
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"is damaged and cannot be read: unexpected object"):
        load_model(model_file)


@pytest.mark.parametrize("name", ["__class__", "_private_", "fit", "means__"])
def test_load_refuses_attribute_names_that_are_not_fitted_attributes(
    model_file: Path, name: str
) -> None:
    metadata, arrays = _contents(model_file)
    metadata["attributes"][name] = metadata["attributes"]["n_iter_"]
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"is not a fitted attribute name"):
        load_model(model_file)


def test_load_refuses_tuple_types_outside_the_allow_list(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    metadata["attributes"]["trace_"]["type"] = "subprocess.Popen"
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"'subprocess.Popen', which emkit does not rebuild"):
        load_model(model_file)


def test_load_tuple_with_wrong_fields(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    del metadata["attributes"]["trace_"]["fields"]["seconds"]
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"trace_ must have the fields"):
        load_model(model_file)


def test_load_refuses_a_trace_with_restarts_outside_its_iterations(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    arrays[metadata["attributes"]["trace_"]["fields"]["restarts"]["key"]] = np.array([999])
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"trace_\.restarts must be a 1-D integer array"):
        load_model(model_file)


def test_load_refuses_a_trace_with_draw_counts_of_another_length(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    fields = metadata["attributes"]["trace_"]["fields"]
    n_iter = arrays[fields["objective"]["key"]].shape[0]
    arrays[fields["draws"]["key"]] = np.full(n_iter + 1, 10)
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(
        ModelFileError,
        match=rf"trace_\.draws must be an integer array >= 1 of length 0 or {n_iter}",
    ):
        load_model(model_file)


def test_load_a_trace_without_the_fields_added_later(model_file: Path) -> None:
    # EMTrace's restarts and degenerate have defaults: files written before them load
    metadata, arrays = _contents(model_file)
    fields = metadata["attributes"]["trace_"]["fields"]
    for name in ("restarts", "degenerate", "draws"):
        del arrays[fields.pop(name)["key"]]
    _rewrite(model_file, metadata, arrays)
    trace = load_model(model_file).trace_
    assert trace.restarts.size == 0 and trace.degenerate.size == 0 and trace.draws.size == 0
    assert trace.objective.shape == trace.seconds.shape


@pytest.mark.parametrize(
    "entry",
    [
        {"kind": "pickle", "value": "..."},
        {"kind": "scalar", "type": "int", "value": "3"},
        {"kind": "scalar", "type": "bool", "value": 1},
        "n_iter_",
    ],
)
def test_load_unreadable_attribute_entry(model_file: Path, entry: Any) -> None:
    metadata, arrays = _contents(model_file)
    metadata["attributes"]["n_iter_"] = entry
    _rewrite(model_file, metadata, arrays)
    with pytest.raises(ModelFileError, match=r"the attribute n_iter_ has an unreadable entry"):
        load_model(model_file)


def test_load_refuses_pickled_arrays(model_file: Path) -> None:
    metadata, arrays = _contents(model_file)
    arrays["attr.means_"] = np.array([{"evil": 1}], dtype=object)
    entries = {**arrays, "metadata.json": np.array(json.dumps(metadata))}
    with model_file.open("wb") as fh:
        np.savez(fh, allow_pickle=True, **entries)
    with pytest.raises(ModelFileError, match=r"damaged and cannot be read: Object arrays cannot"):
        load_model(model_file)


def test_model_file_holds_no_pickle(model_file: Path) -> None:
    with zipfile.ZipFile(model_file) as archive:
        names = archive.namelist()
    assert "metadata.json.npy" in names
    assert all(name.endswith(".npy") for name in names)


# -- tables -----------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header(tmp_path: Path) -> None:
    X, names = read_table(_write(tmp_path, "d.csv", "a,b\n1,2\n3,4.5\n"))
    assert X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, [[1, 2], [3, 4.5]])
    assert names == ["a", "b"]


def test_csv_without_header(tmp_path: Path) -> None:
    X, names = read_table(_write(tmp_path, "d.csv", "1,2\n3,4\n"))
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert names == ["x0", "x1"]


def test_header_forced(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "1,2\n3,4\n")
    X, names = read_table(path, header=True)
    np.testing.assert_array_equal(X, [[3, 4]])
    assert names == ["1", "2"]
    with pytest.raises(InputError, match=r"non-numeric value 'a' at line 1 \(data row 1\)"):
        read_table(_write(tmp_path, "h.csv", "a,b\n1,2\n"), header=False)


def test_header_must_be_auto_true_or_false(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"header must be 'auto', True or False, got 'yes'"):
        read_table(_write(tmp_path, "d.csv", "1\n"), header="yes")  # type: ignore[arg-type]


def test_quoted_csv_with_bom_blank_lines_and_one_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes('\ufeff"size"\n\n"1.5"\n2\n\n'.encode())
    X, names = read_table(path)
    assert names == ["size"]
    np.testing.assert_array_equal(X, [[1.5], [2.0]])


def test_tsv_and_txt(tmp_path: Path) -> None:
    X, names = read_table(_write(tmp_path, "d.tsv", "a\tb\n1\t2\n"))
    assert names == ["a", "b"] and X.tolist() == [[1, 2]]
    X, names = read_table(_write(tmp_path, "w.txt", "1  2\n3 4\n"))
    assert names == ["x0", "x1"] and X.tolist() == [[1, 2], [3, 4]]
    X, names = read_table(_write(tmp_path, "c.txt", "p,q\n1,2\n"))
    assert names == ["p", "q"] and X.tolist() == [[1, 2]]


def test_select_columns_by_name_index_and_digit_string(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "a,species,b\n1,setosa,2\n3,virginica,4\n")
    X, names = read_table(path, columns=["b", "a"])
    assert names == ["b", "a"] and X.tolist() == [[2, 1], [4, 3]]
    X, names = read_table(path, columns=[0, -1])
    assert names == ["a", "b"] and X.tolist() == [[1, 2], [3, 4]]
    X, names = read_table(path, columns=["2"])
    assert names == ["b"]
    X, names = read_table(path, columns="a")
    assert names == ["a"]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["c"], r"has no column 'c'; its columns are 'a', 'species', 'b'"),
        ([3], r"Column position 3 is out of range: .* has 3 columns"),
        (["a", 0], r"Column 'a' is selected twice"),
        ([], r"columns is empty"),
    ],
)
def test_bad_column_selection(tmp_path: Path, columns: Any, message: str) -> None:
    path = _write(tmp_path, "d.csv", "a,species,b\n1,setosa,2\n")
    with pytest.raises(InputError, match=message):
        read_table(path, columns=columns)


def test_duplicate_column_names_are_selected_by_position(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "a,a\n1,2\n")
    with pytest.raises(InputError, match=r"has 2 columns named 'a'; select them by position"):
        read_table(path, columns=["a"])
    assert read_table(path, columns=[1])[0].tolist() == [[2]]


def test_non_numeric_cell_names_row_and_column(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "a,species\n1,2\n3,setosa\n")
    with pytest.raises(
        InputError,
        match=r"non-numeric value 'setosa' at line 3 \(data row 2\), column 'species' "
        r"\(position 1\).*encode that column as numbers or drop it",
    ):
        read_table(path)


@pytest.mark.parametrize("cell", ["nan", "", "NA", " NaN ", "null", "n/a"])
def test_missing_values_are_read_as_nan(tmp_path: Path, cell: str) -> None:
    path = _write(tmp_path, "d.csv", f"a,b\n1,2\n3,{cell}\n")
    X, names = read_table(path)
    assert names == ["a", "b"]
    np.testing.assert_array_equal(X, [[1, 2], [3, np.nan]])


@pytest.mark.parametrize(
    "text", ["a,b\n1,2\n3,4,5\n", "a,b\n1,2\n3\n", "a,b,c\n1,2\n3,4\n", "1,2\n3,4,5\n"]
)
def test_ragged_rows(tmp_path: Path, text: str) -> None:
    with pytest.raises(InputError, match=r"rows of different lengths: line \d \(data row \d\)"):
        read_table(_write(tmp_path, "d.csv", text))


def test_ragged_rows_with_selected_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "a,b\n1,2\n3,4,5\n")
    with pytest.raises(InputError, match=r"line 3 \(data row 2\) has 3 fields, but the header"):
        read_table(path, columns=["a"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"is empty; pass a file with data"),
        ("\n  \n", r"is empty; pass a file with data"),
        ("a,b\n", r"has a header line but no data rows"),
    ],
)
def test_empty_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_table(_write(tmp_path, "d.csv", text))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(b"caf\xe9,b\n1,2\n")
    with pytest.raises(InputError, match=r"is not UTF-8 text .* Save it as UTF-8"):
        read_table(path)


def test_missing_file_directory_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'.*absent.csv' does not exist. Check the path"):
        read_table(tmp_path / "absent.csv")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InputError, match=r"dir.csv' is a directory"):
        read_table(tmp_path / "dir.csv")
    with pytest.raises(InputError, match=r"unknown file type '.xlsx'. Supported: .csv, .tsv"):
        read_table(tmp_path / "d.xlsx")
    with pytest.raises(InputError, match=r"unknown file type '\(no extension\)'"):
        read_table(tmp_path / "data")


def test_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.arange(6, dtype=np.int32).reshape(3, 2))
    X, names = read_table(tmp_path / "d.npy")
    assert X.dtype == np.float64 and X.tolist() == [[0, 1], [2, 3], [4, 5]]
    assert names == ["x0", "x1"]
    X, names = read_table(tmp_path / "d.npy", columns=["x1"])
    assert names == ["x1"] and X.ravel().tolist() == [1, 3, 5]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.arange(3.0), r"1-D array \(shape \(3,\)\).*X.reshape\(-1, 1\) for one feature"),
        (np.zeros((2, 2, 2)), r"3-D array .* expects a 2-D array"),
        (np.array([["a", "b"]]), r"dtype <U1; emkit reads numeric"),
        (np.zeros(2, dtype=[("a", "f8")]), r"dtype .* emkit reads numeric"),
        (np.zeros((0, 2)), r"is empty \(shape \(0, 2\)\)"),
    ],
)
def test_bad_npy(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "d.npy", array)
    with pytest.raises(InputError, match=message):
        read_table(tmp_path / "d.npy")


def test_pickled_npy_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match=r"not a numeric .npy array .* never pickled objects"):
        read_table(tmp_path / "d.npy")


def test_damaged_npy(tmp_path: Path) -> None:
    (tmp_path / "d.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match=r"(not a readable .npy file|not a numeric .npy)"):
        read_table(tmp_path / "d.npy")


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "d.parquet").write_bytes(b"PAR1")
    with pytest.raises(InputError, match=r'needs pyarrow: pip install "emkit\[parquet\]"'):
        read_table(tmp_path / "d.parquet")


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"a": [1, 2], "label": ["x", "y"], "b": [0.5, None]})
    pq.write_table(table, tmp_path / "d.parquet")
    X, names = read_table(tmp_path / "d.parquet", columns=["a"])
    assert names == ["a"] and X.tolist() == [[1.0], [2.0]]
    with pytest.raises(
        InputError, match=r"non-numeric value 'x' at data row 1, column 'label' \(position 1"
    ):
        read_table(tmp_path / "d.parquet", columns=["a", "label"])
    X, names = read_table(tmp_path / "d.parquet", columns=["b"])
    np.testing.assert_array_equal(X, [[0.5], [np.nan]])


def test_load_faithful() -> None:
    X, names = load_faithful()
    assert X.shape == (272, 2) and X.dtype == np.float64
    assert names == ["eruptions", "waiting"]
    assert X[0].tolist() == [3.6, 79.0]
