"""Model files of every estimator: exact round trips, validation on load, safe writes."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import emkit
from emkit import InputError, ModelFileError, load_model, save_model
from emkit.families import (
    Beta,
    Categorical,
    Exponential,
    Gamma,
    GammaPrior,
    Gaussian,
    GaussianPrior,
    LogNormal,
    Multinomial,
    Poisson,
    Product,
)
from emkit.io.model_file import FORMAT_VERSION, SAVABLE, SCHEMAS, atomic_write, check_writable

# -- the estimators, fitted -------------------------------------------------------------


def _blobs(n: int = 80, d: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(0.0, 1.0, (n // 2, d)), rng.normal(5.0, 1.5, (n - n // 2, d))])


def _frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    z = np.repeat([0, 1], 40)
    return pd.DataFrame(
        {
            "age": rng.normal(30 + 20 * z, 3.0),
            "bp": rng.normal(120 + 10 * z, 5.0),
            "visits": rng.poisson(1 + 5 * z),
            "smoker": rng.random(80) < 0.2 + 0.6 * z,
            "blood": pd.Categorical(rng.choice(["A", "B", "O"], 80)),
        }
    )


def _positive(seed: int = 0) -> np.ndarray:
    return np.abs(_blobs(seed=seed)[:, :2]) + 0.1


def _unit(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.beta(2, 5, (40, 2)), rng.beta(5, 2, (40, 2))])


def _counts(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.poisson([1, 6], (40, 2)), rng.poisson([7, 1], (40, 2))]).astype(float)


def _product() -> Any:
    return Product(
        {
            "vitals": (["age", "bp"], Gaussian("diag", prior=GaussianPrior(shrinkage=0.05))),
            "visits": (["visits"], Poisson(prior=GammaPrior(shape=2.0, rate=0.5))),
            "smoker": (["smoker"], emkit.families.Bernoulli()),
            "blood": (["blood"], Categorical()),
        }
    )


# id -> (estimator, training data, whether it has weights/components/covariances)
CASES: dict[str, Callable[[], tuple[Any, Any]]] = {
    "gmm-full": lambda: (emkit.GaussianMixture(2, random_state=0), _frame()[["age", "bp"]]),
    "gmm-tied": lambda: (
        emkit.GaussianMixture(2, covariance_type="tied", random_state=0),
        _blobs(),
    ),
    "gmm-diag": lambda: (
        emkit.GaussianMixture(2, covariance_type="diag", random_state=0),
        _blobs(),
    ),
    "gmm-spherical": lambda: (
        emkit.GaussianMixture(2, covariance_type="spherical", random_state=0),
        _blobs(),
    ),
    "mixture-inferred": lambda: (emkit.MixtureModel(n_components=2, random_state=0), _frame()),
    "mixture-product-priors-fixed": lambda: (
        emkit.MixtureModel(
            _product(),
            2,
            weight_concentration=2.0,
            fixed={"weights": [0.5, 0.5], "visits": {"rates": {0: [1.5]}}},
            random_state=0,
        ),
        _frame(),
    ),
    "mixture-gaussian-tied-fixed": lambda: (
        emkit.MixtureModel(
            Gaussian("tied"), 2, fixed={"means": {1: [5.0, 5.0, 5.0]}}, random_state=0
        ),
        _blobs(),
    ),
    "mixture-gaussian-full-auto-prior": lambda: (
        emkit.MixtureModel(Gaussian("full", prior="auto"), 2, random_state=0),
        _blobs(),
    ),
    "mixture-exponential": lambda: (
        emkit.MixtureModel(Exponential(), 2, random_state=0),
        _positive(),
    ),
    "mixture-gamma": lambda: (emkit.MixtureModel(Gamma(), 2, random_state=0), _positive()),
    "mixture-lognormal": lambda: (emkit.MixtureModel(LogNormal(), 2, random_state=0), _positive()),
    "mixture-beta": lambda: (emkit.MixtureModel(Beta(), 2, random_state=0), _unit()),
    "mixture-multinomial": lambda: (
        emkit.MixtureModel(Multinomial(), 2, random_state=0),
        _counts(),
    ),
    "poisson": lambda: (emkit.PoissonMixture(2, prior="auto", random_state=0), _counts()),
    "bernoulli": lambda: (emkit.BernoulliMixture(2, binarize=2.5, random_state=0), _blobs()),
    "categorical": lambda: (
        emkit.CategoricalMixture(2, n_categories=[8, 9], random_state=0),
        _counts().clip(0, 7),
    ),
    "kmeans": lambda: (emkit.KMeans(3, n_init=2, random_state=0), _frame()[["age", "bp"]]),
    "ppca": lambda: (emkit.PPCA(2, random_state=0), _blobs()),
    "factor-analysis": lambda: (emkit.FactorAnalysis(1, random_state=0), _frame()[["age", "bp"]]),
    "mppca": lambda: (emkit.MixtureOfPPCA(2, n_factors=1, random_state=0), _blobs()),
    "mfa": lambda: (emkit.MixtureOfFactorAnalyzers(2, n_factors=1, random_state=0), _blobs()),
    "student-t": lambda: (emkit.StudentTMixture(2, random_state=0), _blobs()),
    "student-t-tied": lambda: (
        emkit.StudentTMixture(2, covariance_type="tied", dof_type="shared", random_state=0),
        _blobs(),
    ),
    "bayesian": lambda: (
        emkit.BayesianGaussianMixture(n_components=3, random_state=0),
        _frame()[["age", "bp"]],
    ),
    "bayesian-tied-dirichlet": lambda: (
        emkit.BayesianGaussianMixture(
            n_components=3,
            covariance_type="tied",
            weight_concentration_prior_type="dirichlet_distribution",
            random_state=0,
        ),
        _blobs(),
    ),
}


def _fit(case: str) -> tuple[Any, Any]:
    estimator, X = CASES[case]()
    return estimator.fit(X), X


def test_every_exported_estimator_has_a_schema_and_a_case() -> None:
    exported = {
        name
        for name in emkit.__all__
        if isinstance(getattr(emkit, name), type) and hasattr(getattr(emkit, name), "fit")
    }
    # a selector has no file of its own: save_model(selector.best_estimator_) saves the
    # model it kept (issue 14's ModelBasedClustering)
    exported -= {"ModelBasedClustering"}
    assert exported == set(SCHEMAS) == set(SAVABLE)
    covered = {type(CASES[case]()[0]).__name__ for case in CASES}
    assert covered == exported


@pytest.mark.parametrize("case", CASES)
def test_schema_names_every_fitted_attribute(case: str) -> None:
    """A new fitted attribute must get a line in the schema (else save_model refuses it)."""
    model, _ = _fit(case)
    schema = SCHEMAS[type(model).__name__]
    derived = {"weights_", "component_params_"} | {
        f"{n}_" for n in getattr(model, "component_params_", {})
    }
    fitted = {k for k in vars(model) if k.endswith("_") and not k.startswith("_")}
    assert fitted - derived <= set(schema.fields)


# -- round trips ------------------------------------------------------------------------


def _same(a: Any, b: Any, where: str = "") -> None:
    """Deep equality of parameters and fitted state: arrays exactly, with their dtypes."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind == "O":
            assert a.tolist() == b.tolist(), where
        else:
            np.testing.assert_array_equal(a, b, err_msg=where)
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    elif hasattr(a, "__dict__") and not isinstance(a, type):
        _same(vars(a), vars(b), where)
    else:
        assert a == b, where


def _close(a: Any, b: Any) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_round_trip_predicts_scores_and_samples_exactly(case: str, tmp_path: Path) -> None:
    model, X = _fit(case)
    loaded = load_model(save_model(model, tmp_path / "model.npz"))
    assert type(loaded) is type(model)
    _same(model.get_params(), loaded.get_params(), "params")
    state = {k: v for k, v in vars(model).items() if k.endswith("_") or k == "_fixed_weights"}
    _same(state, {k: getattr(loaded, k) for k in state}, "state")
    if hasattr(model, "feature_names_in_"):
        assert loaded.feature_names_in_.tolist() == model.feature_names_in_.tolist()
    if hasattr(model, "categories_"):
        assert loaded.categories_ == model.categories_
    for method in ("predict", "predict_proba", "score_samples", "transform"):
        if hasattr(model, method):
            _close(getattr(loaded, method)(X), getattr(model, method)(X))
    assert loaded.score(X) == pytest.approx(model.score(X), rel=1e-12)
    if hasattr(model, "bic"):
        assert loaded.bic(X) == pytest.approx(model.bic(X), rel=1e-12)
    if hasattr(model, "sample"):
        drawn, again = model.sample(7), loaded.sample(7)
        for a, b in zip(
            drawn if isinstance(drawn, tuple) else (drawn,),
            again if isinstance(again, tuple) else (again,),
            strict=True,
        ):
            _close(a, b)
    if hasattr(model, "get_feature_names_out"):
        assert list(loaded.get_feature_names_out()) == list(model.get_feature_names_out())


def test_known_parameters_and_priors_round_trip_into_the_parameter_count(tmp_path: Path) -> None:
    model, X = _fit("mixture-product-priors-fixed")
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    free = emkit.MixtureModel(_product(), 2, weight_concentration=2.0, random_state=0).fit(X)
    assert loaded._n_parameters() == model._n_parameters() == free._n_parameters() - 2
    assert loaded.family_.blocks["visits"][1].prior.a == 2.0
    assert loaded.weights_.tolist() == [0.5, 0.5]
    # the loaded model warm-starts with its known values still held
    refit = loaded.set_params(warm_start=True, max_iter=3).fit(X)
    assert refit.weights_.tolist() == [0.5, 0.5]
    assert refit.component_params_["visits"]["rates"][0, 0] == 1.5


def test_category_maps_round_trip_and_still_refuse_unseen_categories(tmp_path: Path) -> None:
    model, X = _fit("mixture-inferred")
    loaded = load_model(save_model(model, tmp_path / "m.npz"))
    assert loaded.categories_ == {"blood": ["A", "B", "O"]}
    bad = X.assign(blood=pd.Categorical(["AB"] * len(X)))
    with pytest.raises(InputError, match=r"Column 'blood' has category 'AB' \(row 0\)"):
        loaded.predict(bad)


# -- the tampering catalogue ------------------------------------------------------------


def _contents(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return json.loads(str(arrays.pop("metadata.json")[()])), arrays


def _rewrite(path: Path, metadata: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    with path.open("wb") as fh:
        np.savez(fh, **{**arrays, "metadata.json": np.array(json.dumps(metadata))})


# For each estimator: its main parameter array, its weights (or another vector), a
# variance-like entry that must be positive-definite or positive, and the parameter
# that sets the number of components. Entries are archive keys without "attr.".
TARGETS: dict[str, dict[str, Any]] = {
    "gmm-full": {"main": "means_", "vector": "weights_", "cov": "covariances_", "pd": True},
    "gmm-diag": {"main": "means_", "vector": "weights_", "cov": "covariances_", "pd": False},
    "mixture-inferred": {
        "main": "params_.components.1.rates",
        "name": r"params_.components\['poisson'\].rates",
        "vector": "params_.weights",
        "cov": "params_.components.0.covariances",
        "cov_name": r"params_.components\['gaussian'\].covariances",
        "pd": True,
    },
    "poisson": {
        "main": "params_.components.rates",
        "vector": "params_.weights",
        "cov": "params_.components.rates",
        "pd": False,
    },
    "kmeans": {"main": "cluster_centers_", "vector": "cluster_centers_", "param": "n_clusters"},
    "ppca": {"main": "components_", "vector": "mean_", "cov": None},
    "factor-analysis": {
        "main": "components_",
        "vector": "noise_variance_",
        "cov": "noise_variance_",
    },
    "mppca": {"main": "means_", "vector": "weights_", "cov": "covariances_", "pd": True},
    "mfa": {"main": "components_", "vector": "weights_", "cov": "noise_variance_", "pd": False},
}


def _name(target: dict[str, Any], key: str) -> str:
    return target.get(f"{key}_name" if key != "main" else "name", target[key].replace(".", r"\."))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {case: save_model(_fit(case)[0], folder / f"{case}.npz") for case in TARGETS}


def _tampered(files: dict[str, Path], case: str, tmp_path: Path) -> tuple[Path, Any, Any]:
    path = tmp_path / "model.npz"
    path.write_bytes(files[case].read_bytes())
    metadata, arrays = _contents(path)
    return path, metadata, arrays


def _refused(path: Path, match: str) -> None:
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert str(path) in str(info.value)


def _array_tamper(kind: str, a: np.ndarray) -> np.ndarray:
    if kind == "wrong-shape":
        return np.concatenate([a, a[..., :1]], axis=-1)
    if kind == "wrong-length":
        return a[:-1]
    if kind == "strings":
        return a.astype(str)
    b = a.astype(np.float64).copy()
    b.flat[0] = {"nan": np.nan, "inf": np.inf}[kind]
    return b


ARRAY_TAMPERS = {
    "wrong-shape": ("main", r"must have shape .* got shape"),
    "wrong-length": ("vector", r"must have shape .* got shape"),
    "strings": ("vector", r"must be (a float|an integer) array, got dtype <U"),
    "nan": ("main", r"must be finite( \(no NaN or infinity\)| and > 0), got nan"),
    "inf": ("main", r"must be finite( \(no NaN or infinity\)| and > 0), got inf"),
}


@pytest.mark.parametrize("kind", ARRAY_TAMPERS)
@pytest.mark.parametrize("case", TARGETS)
def test_tampered_arrays_are_refused_naming_the_entry(
    files: dict[str, Path], case: str, kind: str, tmp_path: Path
) -> None:
    target = TARGETS[case]
    which, problem = ARRAY_TAMPERS[kind]
    if case == "kmeans" and kind in ("nan", "inf"):
        which = "main"
    path, metadata, arrays = _tampered(files, case, tmp_path)
    key = f"attr.{target[which]}"
    arrays[key] = _array_tamper(kind, arrays[key])
    _rewrite(path, metadata, arrays)
    _refused(path, rf"is not a valid \w+: the attribute {_name(target, which)} {problem}")


@pytest.mark.parametrize("case", [c for c in TARGETS if TARGETS[c].get("cov")])
def test_non_positive_definite_or_negative_variances_are_refused(
    files: dict[str, Path], case: str, tmp_path: Path
) -> None:
    target = TARGETS[case]
    path, metadata, arrays = _tampered(files, case, tmp_path)
    key = f"attr.{target['cov']}"
    cov = arrays[key].copy()
    if target.get("pd"):
        d = cov.shape[-1]
        cov[..., d - 1, d - 1] = -1.0  # symmetric, with a negative eigenvalue
        problem = r"must be positive-definite.*smallest eigenvalue of -"
    else:
        cov.flat[0] = -1.0
        problem = r"must be finite and > 0, got -1.0"
    arrays[key] = cov
    _rewrite(path, metadata, arrays)
    _refused(path, rf"the attribute {_name(target, 'cov')} {problem}")


@pytest.mark.parametrize("case", [c for c in TARGETS if "weights" in TARGETS[c]["vector"]])
def test_weights_off_the_simplex_are_refused(
    files: dict[str, Path], case: str, tmp_path: Path
) -> None:
    target = TARGETS[case]
    path, metadata, arrays = _tampered(files, case, tmp_path)
    key = f"attr.{target['vector']}"
    arrays[key] = arrays[key] * 1.5
    _rewrite(path, metadata, arrays)
    _refused(path, rf"the attribute {_name(target, 'vector')} must sum to 1 .*got a sum of 1.5")
    arrays[key] = np.array([1.5, -0.5])
    _rewrite(path, metadata, arrays)
    _refused(path, r"must be probabilities \(finite and >= 0\), got -0.5")


@pytest.mark.parametrize("case", TARGETS)
def test_missing_and_extra_attributes_are_refused(
    files: dict[str, Path], case: str, tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, case, tmp_path)
    first = TARGETS[case]["main"].split(".")[0]
    entry = metadata["attributes"].pop(first)
    _rewrite(path, metadata, arrays)
    _refused(path, rf"the attribute {first} is missing")
    metadata["attributes"][first] = entry
    metadata["attributes"]["labels_count_"] = {"kind": "scalar", "type": "int", "value": 3}
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute labels_count_ is not one a \w+ has \(expected: ")


@pytest.mark.parametrize("value", ["abc", 0, -2, 2.5, True, None])
@pytest.mark.parametrize("case", TARGETS)
def test_bad_integer_hyper_parameters_are_refused(
    files: dict[str, Path], case: str, value: Any, tmp_path: Path
) -> None:
    param = TARGETS[case].get("param", "n_components")
    if case == "factor-analysis" and value is None:
        return  # None is FactorAnalysis's "every feature"; the arrays then set q
    path, metadata, arrays = _tampered(files, case, tmp_path)
    metadata["params"][param] = value
    _rewrite(path, metadata, arrays)
    _refused(path, rf"the parameter {param} must be an integer >= 1, got {value!r}")


@pytest.mark.parametrize("case", TARGETS)
def test_other_hyper_parameters_go_through_the_estimators_checks(
    files: dict[str, Path], case: str, tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, case, tmp_path)
    metadata["params"]["max_iter"] = "many"
    _rewrite(path, metadata, arrays)
    _refused(path, r"parameters this emkit's \w+ does not accept \(max_iter must be an integer")


def test_an_unknown_covariance_type_and_deeply_nested_metadata_are_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, "gmm-full", tmp_path)
    metadata["params"]["covariance_type"] = "banana"
    _rewrite(path, metadata, arrays)
    _refused(path, r"does not accept \(covariance_type must be one of 'full', .* got 'banana'")
    path, metadata, arrays = _tampered(files, "gmm-full", tmp_path)
    with path.open("wb") as fh:  # json.dumps itself cannot write it: build the text
        assert '"means_init": null' in json.dumps(metadata)
        text = json.dumps(metadata).replace('"means_init": null', '"means_init": ' + "[" * 100_000)
        np.savez(fh, **{**arrays, "metadata.json": np.array(text + "]" * 100_000)})
    _refused(path, r"(damaged|cannot be read)")


def test_a_component_count_that_disagrees_with_the_arrays_is_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, "gmm-full", tmp_path)
    metadata["params"]["n_components"] = 3
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute weights_ must have shape \(K,\) = \(3,\), got shape \(2,\)")


@pytest.mark.parametrize("case", TARGETS)
def test_truncated_files_and_other_versions_are_refused(
    files: dict[str, Path], case: str, tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, case, tmp_path)
    data = files[case].read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        path.write_bytes(data[:cut])
        _refused(path, r"(damaged|not a NumPy \.npz archive)")
    _rewrite(path, {**metadata, "format_version": FORMAT_VERSION + 1}, arrays)
    _refused(path, rf"has format_version {FORMAT_VERSION + 1} .* Upgrade emkit")
    _rewrite(path, {**metadata, "estimator": "Pipeline"}, arrays)
    _refused(path, r"an estimator 'Pipeline' that this emkit does not know")


def test_derived_attributes_must_agree_with_their_source(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, "gmm-full", tmp_path)
    arrays["attr.precisions_"] = arrays["attr.precisions_"] * 2.0
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute precisions_ must equal U U\^T for U = precisions_cholesky_")
    path, metadata, arrays = _tampered(files, "gmm-full", tmp_path)
    arrays["attr.covariances_"] = arrays["attr.covariances_"] * 2.0
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute covariances_ must be the inverse of the precisions")
    path, metadata, arrays = _tampered(files, "gmm-full", tmp_path)
    factor = arrays["attr.precisions_cholesky_"]
    factor[0, 1, 0] = 0.5  # below the diagonal
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute precisions_cholesky_ must be upper triangular")
    path, metadata, arrays = _tampered(files, "mppca", tmp_path)
    arrays["attr.components_"] = arrays["attr.components_"] * 2.0
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute covariances_ must equal W W\^T \+ diag\(noise_variance_\)")


def test_labels_out_of_range_and_mismatched_feature_names_are_refused(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, "kmeans", tmp_path)
    arrays["attr.labels_"] = arrays["attr.labels_"] + 3
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute labels_ must be labels in 0..2, got [345] at index \(0,\)")
    path, metadata, arrays = _tampered(files, "kmeans", tmp_path)
    arrays["attr.labels_"] = arrays["attr.labels_"].astype(float)
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute labels_ must be an integer array, got dtype float64")
    path, metadata, arrays = _tampered(files, "kmeans", tmp_path)
    arrays["attr.feature_names_in_"] = np.array(["age", "age"])
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute feature_names_in_ must be distinct column names")
    arrays["attr.feature_names_in_"] = np.array(["age", "bp", "extra"])
    _rewrite(path, metadata, arrays)
    _refused(path, r"feature_names_in_ must have shape \(d,\) = \(2,\), got shape \(3,\)")


def test_mixture_model_family_and_categories_are_checked(
    files: dict[str, Path], tmp_path: Path
) -> None:
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    blocks = metadata["attributes"]["family_"]["value"]["fields"]["blocks"]["dict"]
    blocks[1][1]["tuple"][1]["object"] = "subprocess.Popen"
    _rewrite(path, metadata, arrays)
    _refused(
        path, r"stores attribute family_.blocks\['poisson'\]\[1\] as a 'subprocess.Popen', which"
    )
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    blocks = metadata["attributes"]["family_"]["value"]["fields"]["blocks"]["dict"]
    blocks[1][1]["tuple"][0] = {"tuple": [3]}  # two blocks claim column 3
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute family_ must cover the columns 0..4 once each")
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    arrays["attr.family_.blocks.0.1.shift"] = np.array([np.nan, 1.0])
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute family_.blocks\['gaussian'\].shift must be finite")
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    arrays["attr.family_.blocks.1.1.log_factorial"][2] += 0.5
    _rewrite(path, metadata, arrays)
    _refused(path, r"family_.blocks\['poisson'\].log_factorial must be the table log\(x!\)")
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    metadata["attributes"]["categories_"]["value"]["dict"][0][0] = "bloood"
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute categories_\['bloood'\] must name a column of feature_names")
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    metadata["attributes"]["categories_"]["value"]["dict"][0][1] = ["A", "A", "O"]
    _rewrite(path, metadata, arrays)
    _refused(path, r"categories_\['blood'\] must be distinct categories")
    path, metadata, arrays = _tampered(files, "mixture-inferred", tmp_path)
    key = "attr.params_.components.3.probabilities"
    arrays[key] = arrays[key] * 0.5
    _rewrite(path, metadata, arrays)
    _refused(path, r"params_.components\['categorical'\].probabilities must sum to 1")


def test_parameters_must_give_the_family_finite_natural_parameters(tmp_path: Path) -> None:
    path = save_model(_fit("mixture-gamma")[0], tmp_path / "m.npz")
    metadata, arrays = _contents(path)
    arrays["attr.params_.components.shapes"][0, 0] = 1e308  # positive, finite: log Gamma = inf
    _rewrite(path, metadata, arrays)
    _refused(path, r"the attribute params_ must give finite natural parameters under family_")


def test_known_parameters_in_a_tampered_file_go_through_the_fit_checks(tmp_path: Path) -> None:
    model, _ = _fit("mixture-product-priors-fixed")
    path = save_model(model, tmp_path / "m.npz")
    metadata, arrays = _contents(path)
    metadata["params"]["fixed"]["dict"][0][1] = [0.9, 0.9]
    _rewrite(path, metadata, arrays)
    _refused(path, r"do not fit its family \(fixed 'weights' .*sum")


# -- saving refuses what it cannot store or what its schema refuses -----------------------


def test_save_refuses_values_the_schema_refuses(tmp_path: Path) -> None:
    model, _ = _fit("gmm-full")
    model.weights_ = model.weights_ * 2
    with pytest.raises(
        InputError,
        match=r"Cannot save this GaussianMixture: the attribute "
        r"weights_ must sum to 1",
    ):
        save_model(model, tmp_path / "m.npz")
    model, _ = _fit("ppca")
    model.extra_ = 3
    with pytest.raises(InputError, match=r"the attribute extra_ is not one a PPCA has"):
        save_model(model, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_refuses_objects_outside_the_allow_list(tmp_path: Path) -> None:
    model, _ = _fit("poisson")
    model.set_params(prior=object())
    with pytest.raises(InputError, match=r"parameter prior=<object .*> cannot be stored"):
        save_model(model, tmp_path / "m.npz")


# -- writes: stale temporaries, unwritable targets ------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_write_leaves_a_temporary_that_the_next_write_removes(tmp_path: Path) -> None:
    target = tmp_path / "m.npz"
    script = (
        "import os, sys\n"
        "from emkit.io.model_file import atomic_write\n"
        "with atomic_write(sys.argv[1]) as fh:\n"
        "    fh.write(b'half a model')\n"
        "    os._exit(9)  # killed mid-write\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(emkit.__file__).parents[1])}
    subprocess.run([sys.executable, "-c", script, str(target)], env=env, check=False)
    first = [p.name for p in tmp_path.iterdir()]
    assert len(first) == 1 and first[0].startswith(".m.npz.") and first[0].endswith(".tmp")
    # a second killed write removes the first one's temporary: they do not pile up
    subprocess.run([sys.executable, "-c", script, str(target)], env=env, check=False)
    second = [p.name for p in tmp_path.iterdir()]
    assert len(second) == 1 and second != first
    assert not target.exists()
    model, _ = _fit("ppca")
    save_model(model, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_only_stale_temporaries_of_the_same_target_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "m.npz"
    dead = tmp_path / f".m.npz.{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".m.npz.{os.getppid()}.abc123.tmp"  # a running process's write
    mine = tmp_path / f".m.npz.{os.getpid()}.xyz.tmp"  # another thread of this process
    old = tmp_path / ".m.npz.k3j4h5.tmp"  # an older emkit's name: no process id
    recent = tmp_path / ".m.npz.q1w2e3.tmp"
    other = tmp_path / f".other.npz.{_dead_pid()}.abc.tmp"
    for p in (dead, live, mine, old, recent, other):
        p.write_bytes(b"x")
    an_hour_ago = time.time() - 3700
    os.utime(old, (an_hour_ago, an_hour_ago))
    with atomic_write(target) as fh:
        fh.write(b"new")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"m.npz", live.name, mine.name, recent.name, other.name}


def test_unwritable_targets_are_named_not_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = _fit("ppca")
    missing = tmp_path / "nope" / "m.npz"
    with pytest.raises(InputError, match=rf"Cannot write '{missing}': the directory .* not exist"):
        save_model(model, missing)
    with pytest.raises(InputError, match=rf"Cannot write '{tmp_path}': it is a directory"):
        save_model(model, tmp_path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(tmp_path / ".m.npz.1.x.tmp"))

    monkeypatch.setattr("tempfile.NamedTemporaryFile", refuse)
    target = tmp_path / "m.npz"
    for call in (lambda: save_model(model, target), lambda: check_writable(target)):
        with pytest.raises(InputError, match=r"Cannot write '.*m.npz': Permission denied") as info:
            call()
        assert ".tmp" not in str(info.value)
        assert "Choose a writable directory" in str(info.value)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes to read-only folders"
)
def test_read_only_directory_is_named(tmp_path: Path) -> None:  # pragma: no cover - not as root
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InputError, match=r"Cannot write '.*ro/m.npz': Permission denied"):
            save_model(_fit("ppca")[0], folder / "m.npz")
    finally:
        folder.chmod(0o700)


def test_a_failing_replace_names_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(src: Any, dst: Any) -> None:
        raise OSError(30, "Read-only file system", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError, match=r"Cannot write '.*m.npz': Read-only file system") as info:
        save_model(_fit("ppca")[0], tmp_path / "m.npz")
    assert ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_check_writable_leaves_nothing_behind(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "m.npz") == tmp_path / "m.npz"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match=r"Cannot write .*: the directory .* does not exist"):
        check_writable(tmp_path / "no" / "m.npz")


def test_the_benchmark_runs_on_small_models() -> None:
    """bench/bench_model_files.py keeps working (a smoke run; no timing is asserted)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_model_files.py"
    spec = importlib.util.spec_from_file_location("bench_model_files", script)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.run(quick=True, repeats=1)
    assert [r["model"] for r in rows] == [
        "GaussianMixture",
        "MixtureModel",
        "KMeans",
        "PPCA",
        "MixtureOfFactorAnalyzers",
    ]
    assert all(r["save_ms"] > 0 and r["load_ms"] > 0 and r["file_kib"] > 0 for r in rows)
