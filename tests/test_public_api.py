"""The public surface is exactly what __all__ says, and the layers import downward only."""

from __future__ import annotations

import ast
import pathlib

import emkit

SRC = pathlib.Path(emkit.__file__).parent
LAYERS = [
    "_validation",
    "exceptions",
    "families",
    "models",
    "engines",
    "inference",
    "estimators",
    "io",
    "plot",
    "cli",
]
# a layer may import only from layers before it (DESIGN.md); the bottom two share a level
RANK = {name: i for i, name in enumerate(LAYERS)}
RANK["exceptions"] = RANK["_validation"]


def test_all_is_exact() -> None:
    assert sorted(emkit.__all__) == [
        "BayesianGaussianMixture",
        "BernoulliMixture",
        "CategoricalMixture",
        "ConvergenceWarning",
        "DegenerateComponentError",
        "DegenerateComponentWarning",
        "EmkitError",
        "FactorAnalysis",
        "GaussianMixture",
        "InputError",
        "InputTypeError",
        "KMeans",
        "MixtureModel",
        "MixtureOfFactorAnalyzers",
        "MixtureOfPPCA",
        "ModelBasedClustering",
        "ModelFileError",
        "MonotonicityError",
        "MonotonicityWarning",
        "NonFiniteObjectiveError",
        "PPCA",
        "PoissonMixture",
        "StudentTMixture",
        "__version__",
        "infer_family",
        "load_model",
        "save_model",
    ]
    public = {n for n in dir(emkit) if not n.startswith("_")} - {
        "estimators",
        "exceptions",
        "io",
        "families",
        "models",
        "engines",
        "inference",
        "cli",
        "plot",
    }
    assert public == set(emkit.__all__) - {"__version__"}


def test_subpackage_all_names_exist() -> None:
    import importlib

    for layer in ["families", "models", "engines", "inference", "estimators", "io"]:
        module = importlib.import_module(f"emkit.{layer}")
        for name in module.__all__:
            assert hasattr(module, name), f"emkit.{layer}.{name}"


def _layer(path: pathlib.Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def test_layers_import_only_from_layers_above() -> None:
    for path in SRC.rglob("*.py"):
        layer = _layer(path)
        if layer not in RANK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("emkit.")
            ):
                target = node.module.split(".")[1]
                if target in RANK:
                    assert RANK[target] <= RANK[layer], f"{path.name} imports emkit.{target}"
