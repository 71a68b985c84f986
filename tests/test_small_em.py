"""The compiled blocks of EM iterations of a small Gaussian mixture
(emkit.models._small_em): the same fit as the Python step, iteration by iteration, to
round-off, for every covariance structure; the hand-over to the Python step and back."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import emkit.models._small_block as small_block
from emkit import GaussianMixture
from emkit.estimators._mixture_base import fit_engine
from emkit.exceptions import ConvergenceWarning, DegenerateComponentWarning
from emkit.families.covariance import covariance_types
from emkit.inference.em import EMResult, fit_em
from emkit.inference.steps import em_step
from emkit.io import load_faithful

pytestmark = pytest.mark.skipif(
    small_block.compiled_module("emkit.models._small_em") is None, reason="needs Numba"
)

TYPES = [t for t in covariance_types() if t not in ("E", "V")]  # the 18 of 2-d data
RTOL = 1e-10


def _plan(
    X: Any, covariance_type: str, n_components: int, sample_weight: Any = None, **kwargs: Any
) -> Any:
    est = GaussianMixture(n_components, covariance_type=covariance_type, **kwargs)
    est._check_parameters()
    engine_context = fit_engine(est, X)
    engine = engine_context.__enter__()
    plan = est._plan(X, None, sample_weight, engine, warm=False)
    return plan, engine, engine_context


def _fit(
    plan: Any, engine: Any, params: Any, compiled: bool, monkeypatch: Any, **kwargs: Any
) -> tuple[EMResult[Any], list[tuple[int, float, float]]]:
    monkeypatch.setattr(small_block, "_SMALL_EM", compiled)
    calls: list[tuple[int, float, float]] = []
    result = fit_em(
        plan.model,
        engine,
        plan.data,
        params,
        monotonicity="raise",
        callback=lambda i, objective, change: calls.append((i, objective, change)),
        **kwargs,
    )
    return result, calls


def _assert_close(a: EMResult[Any], b: EMResult[Any]) -> None:
    assert a.n_iter == b.n_iter and a.converged == b.converged
    np.testing.assert_allclose(a.trace.objective, b.trace.objective, rtol=RTOL)
    np.testing.assert_allclose(a.trace.bound, b.trace.bound, rtol=RTOL)
    np.testing.assert_array_equal(a.trace.restarts, b.trace.restarts)
    np.testing.assert_array_equal(a.trace.degenerate, b.trace.degenerate)
    np.testing.assert_allclose(a.params.weights, b.params.weights, rtol=RTOL)
    ga, gb = a.params.components, b.params.components
    scale = np.abs(ga.covariances).max()
    # (centred means: near 0 for one component; the data's spread is their scale)
    spread = np.abs(ga.means).max() + np.sqrt(scale)
    np.testing.assert_allclose(ga.means, gb.means, rtol=RTOL, atol=RTOL * spread)
    np.testing.assert_allclose(ga.covariances, gb.covariances, rtol=RTOL, atol=RTOL * scale)
    np.testing.assert_allclose(
        ga.precisions_cholesky,
        gb.precisions_cholesky,
        rtol=RTOL,
        atol=RTOL * np.abs(ga.precisions_cholesky).max(),
    )


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("n_components", [1, 3, 6])
def test_block_is_the_python_step_to_round_off(
    covariance_type: str, n_components: int, monkeypatch: Any
) -> None:
    X, _ = load_faithful()
    plan, engine, context = _plan(X, covariance_type, n_components, random_state=0)
    with context:
        start = plan.initialize(plan.rng)
        assert hasattr(em_step(plan.model, engine, plan.data), "block")
        python, python_calls = _fit(plan, engine, start, False, monkeypatch, tol=1e-8, max_iter=300)
        compiled, compiled_calls = _fit(
            plan, engine, start, True, monkeypatch, tol=1e-8, max_iter=300
        )
    _assert_close(compiled, python)
    # the callback sees every iteration of a block, as the step's
    assert [c[0] for c in compiled_calls] == [c[0] for c in python_calls]
    np.testing.assert_allclose(
        [c[1] for c in compiled_calls], [c[1] for c in python_calls], rtol=RTOL
    )
    assert compiled.trace.seconds.shape == compiled.trace.objective.shape


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied"])
def test_a_long_tables_statistics_in_tiles_are_the_python_steps(
    covariance_type: str, monkeypatch: Any
) -> None:
    # 3000 rows x 3, K = 6: the loop holds its terms' factors for a tile of rows at a
    # time (12 a row of a full model: 2730 rows, two tiles), each sum continuing from the
    # last tile's in the rows' order
    n_rows, n_padded = 3000, (1 + 3 + 6 + 3) // 4 * 4
    assert n_rows * n_padded > small_block.compiled_module("emkit.models._small_em")._FACTORS
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=5.0, size=(6, 3))
    X = centres[rng.integers(0, 6, n_rows)] + rng.normal(size=(n_rows, 3))
    w = rng.uniform(0.5, 2.0, size=n_rows)
    plan, engine, context = _plan(X, covariance_type, 6, random_state=3, sample_weight=w)
    with context:
        start = plan.initialize(plan.rng)
        assert hasattr(em_step(plan.model, engine, plan.data), "block")
        runs = [
            _fit(plan, engine, start, on, monkeypatch, tol=0.0, max_iter=15)[0]
            for on in (False, True)
        ]
    _assert_close(runs[1], runs[0])


@pytest.mark.parametrize("covariance_type", ["full", "VEV", "spherical", "EEI"])
def test_relative_tol_weights_and_max_iter(covariance_type: str, monkeypatch: Any) -> None:
    rng = np.random.default_rng(1)
    X, _ = load_faithful()
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    plan, engine, context = _plan(X, covariance_type, 4, random_state=1, sample_weight=w)
    with context:
        start = plan.initialize(plan.rng)
        relative = {"tol": 1e-5, "max_iter": 500, "relative_to": float(w.sum())}
        runs = [_fit(plan, engine, start, on, monkeypatch, **relative)[0] for on in (False, True)]
        _assert_close(runs[1], runs[0])
        # tol=0 never converges: max_iter iterations, both ways
        capped = [
            _fit(plan, engine, start, on, monkeypatch, tol=0.0, max_iter=7)[0]
            for on in (False, True)
        ]
    assert capped[1].n_iter == 7 and not capped[1].converged
    _assert_close(capped[1], capped[0])


def test_warm_start_continues_the_trace(monkeypatch: Any) -> None:
    X, _ = load_faithful()
    plan, engine, context = _plan(X, "VVV", 3, random_state=2)
    with context:
        first, _ = _fit(plan, engine, plan.initialize(plan.rng), True, monkeypatch, tol=0.0,
                        max_iter=4)  # fmt: skip
        warm = {"tol": 1e-8, "max_iter": 200, "start_objective": first.objective}
        runs = [_fit(plan, engine, first.params, on, monkeypatch, **warm)[0] for on in (0, 1)]
    _assert_close(runs[1], runs[0])


def _count_block_iterations(monkeypatch: Any) -> list[int]:
    """The number of iterations each compiled block runs, from now on."""
    produced: list[int] = []
    make = small_block.gaussian_block

    def counting(*args: Any) -> Any:
        run = make(*args)
        if run is None:
            return None

        def counted(*a: Any) -> Any:
            out = run(*a)
            produced.append(len(out[0]))  # (its objectives)
            return out

        return counted

    monkeypatch.setattr(small_block, "gaussian_block", counting)
    return produced


def _collapsing() -> np.ndarray:
    # a cloud and three copies of one point: a component on them collapses
    rng = np.random.default_rng(3)
    return np.vstack([rng.normal(size=(60, 2)), np.tile([[6.0, 6.0]], (3, 1))])


@pytest.mark.parametrize("covariance_type", ["full", "diag", "VVI", "spherical"])
def test_a_collapse_is_handed_over_and_the_block_resumes(
    covariance_type: str, monkeypatch: Any
) -> None:
    X = _collapsing()
    means = np.array([[0.0, 0.0], [6.0, 6.0]])
    plan, engine, context = _plan(
        X, covariance_type, 2, means_init=means, reg_covar=1e-30, random_state=0
    )
    runs = []
    produced = _count_block_iterations(monkeypatch)
    with context, warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        start = plan.initialize(plan.rng)
        for on in (False, True):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                runs.append(_fit(plan, engine, start, on, monkeypatch, tol=1e-10, max_iter=50)[0])
            assert any(issubclass(c.category, DegenerateComponentWarning) for c in caught)
    python, compiled = runs
    assert python.trace.degenerate.any()
    assert produced and sum(produced) < compiled.n_iter  # blocks ran, and the step too
    _assert_close(compiled, python)


def test_a_fall_of_the_objective_is_the_python_steps(monkeypatch: Any) -> None:
    X, _ = load_faithful()
    plan, engine, context = _plan(X, "full", 2, random_state=0)
    with context:
        step: Any = em_step(plan.model, engine, plan.data)
        start = plan.initialize(plan.rng)
        # any objective is below +inf: the first iteration is handed over, none is run
        assert len(step.block(start, np.inf, 0.0, 10, 0.0, None)) == 0
        ran = step.block(start, -np.inf, 0.0, 3, 0.0, None)
    assert len(ran) == 3
    assert all(b >= o for b, o in zip(ran.bounds, ran.objectives, strict=True))
    assert ran.objectives == sorted(ran.objectives)


def test_without_numba_the_python_step_runs(monkeypatch: Any) -> None:
    X, _ = load_faithful()
    plan, engine, context = _plan(X, "VEV", 3, random_state=0)
    with context:
        start = plan.initialize(plan.rng)
        reference, _ = _fit(plan, engine, start, False, monkeypatch, tol=1e-8, max_iter=100)
        monkeypatch.setattr(small_block, "compiled_module", lambda name: None)
        assert not hasattr(em_step(plan.model, engine, plan.data), "block")
        result, _ = _fit(plan, engine, start, True, monkeypatch, tol=1e-8, max_iter=100)
    np.testing.assert_array_equal(result.trace.objective, reference.trace.objective)
    np.testing.assert_array_equal(result.params.components.covariances,
                                  reference.params.components.covariances)  # fmt: skip


def test_estimator_results_equal_either_way(monkeypatch: Any) -> None:
    X, _ = load_faithful()
    fitted = []
    for on in (False, True):
        monkeypatch.setattr(small_block, "_SMALL_EM", on)
        fitted.append(GaussianMixture(4, covariance_type="EVE", random_state=0).fit(X))
    python, compiled = fitted
    assert python.n_iter_ == compiled.n_iter_
    np.testing.assert_allclose(compiled.means_, python.means_, rtol=RTOL)
    np.testing.assert_allclose(compiled.lower_bound_, python.lower_bound_, rtol=RTOL)
    np.testing.assert_array_equal(compiled.predict(X), python.predict(X))


@pytest.mark.parametrize("covariance_type", ["spherical", "VVV", "EVE"])
def test_round_off_falls_at_a_fixed_point_stay_in_the_block(
    covariance_type: str, monkeypatch: Any
) -> None:
    # tol=0 past convergence: the objective moves by round-off either way, which the
    # driver's tolerance (and the block's, the same) takes as no change
    X, _ = load_faithful()
    plan, engine, context = _plan(X, covariance_type, 2, random_state=0)
    with context:
        start = plan.initialize(plan.rng)
        python, _ = _fit(plan, engine, start, False, monkeypatch, tol=0.0, max_iter=150)
        produced = _count_block_iterations(monkeypatch)
        compiled, _ = _fit(plan, engine, start, True, monkeypatch, tol=0.0, max_iter=150)
    assert compiled.n_iter == python.n_iter == 150
    np.testing.assert_allclose(compiled.trace.objective, python.trace.objective, rtol=RTOL)
    np.testing.assert_allclose(compiled.params.weights, python.params.weights, rtol=1e-8)
    assert sum(produced) >= 140  # (a fall beyond the tolerance is the Python step's)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    covariance_type=st.sampled_from(TYPES),
    n_components=st.integers(1, 4),
    n_features=st.integers(2, 3),
    n_rows=st.integers(12, 90),
    weighted=st.booleans(),
)
def test_any_small_fit_is_the_python_steps(
    seed: int,
    covariance_type: str,
    n_components: int,
    n_features: int,
    n_rows: int,
    weighted: bool,
) -> None:
    """For any data, structure and start: the block's fit is the Python step's, to
    round-off (a stop moved by one iteration at most, where round-off decides it)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, n_features))
    X = centres[rng.integers(0, 3, n_rows)] + rng.normal(size=(n_rows, n_features))
    X *= rng.uniform(0.1, 10.0, size=n_features)
    w = rng.uniform(0.2, 3.0, size=n_rows) if weighted else None
    runs = []
    with pytest.MonkeyPatch.context() as monkeypatch, warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateComponentWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        plan, engine, context = _plan(
            X, covariance_type, n_components, sample_weight=w, random_state=seed
        )
        with context:
            start = plan.initialize(plan.rng)
            for on in (False, True):
                monkeypatch.setattr(small_block, "_SMALL_EM", on)
                runs.append(
                    fit_em(
                        plan.model,
                        engine,
                        plan.data,
                        start,
                        tol=1e-7,
                        max_iter=200,
                        monotonicity="off",
                    )
                )
    python, compiled = runs
    assert abs(python.n_iter - compiled.n_iter) <= 1
    n = min(python.n_iter, compiled.n_iter)
    # round-off: a scatter about the shift carries ~eps |x|^2 in each entry (both paths
    # form it from second moments, summed in another order), which a component held
    # near reg_covar (collapsed onto a line) sees relative to its smallest eigenvalue
    family = plan.model.family
    structure = family.structure
    reach = max(
        float(
            np.sum(
                r.params.weights / _smallest_variance(structure, r.params.components.covariances)
            )
        )
        for r in runs
    )
    atol = 1e-9 + 10 * np.finfo(np.float64).eps * n_features * family.scale**2 * reach
    np.testing.assert_allclose(
        compiled.trace.objective[:n], python.trace.objective[:n], rtol=1e-9, atol=atol
    )
    if python.n_iter == compiled.n_iter:
        np.testing.assert_allclose(compiled.trace.bound, python.trace.bound, rtol=1e-9, atol=atol)
        np.testing.assert_array_equal(compiled.trace.degenerate, python.trace.degenerate)


def _smallest_variance(structure: Any, cov: np.ndarray) -> np.ndarray:
    """(K,) (or () tied) the smallest eigenvalue of each covariance of ``structure``."""
    if structure.dense:
        return np.linalg.eigvalsh(cov).min(axis=-1)
    return cov if cov.ndim == 1 else cov.min(axis=-1)


def test_the_loops_exp_is_the_libraries_to_an_ulp() -> None:
    kernels = small_block.compiled_module("emkit.models._small_em")
    rng = np.random.default_rng(4)
    x = np.concatenate([-rng.uniform(0.0, 600.0, 10_000), [0.0, -1e-300, -600.0, -0.5, np.nan]])
    out = x.copy()
    kernels._exp(out)
    finite = ~np.isnan(x)
    ulps = np.abs(out[finite] - np.exp(x[finite])) / np.exp(x[finite]) / np.finfo(float).eps
    assert ulps.max() <= 2.0 and np.isnan(out[-1])


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=2.3e-308, max_value=1.7e308))
def test_the_loops_log_is_the_libraries_to_an_ulp(value: float) -> None:
    # the row totals' log (values in [1, K] there; any positive normal here), around the
    # value too: the mantissa's halves on either side of sqrt(2), exact powers of 2
    kernels = small_block.compiled_module("emkit.models._small_em")
    x = np.array([value, 1.0, 2.0, np.sqrt(2.0), np.nextafter(np.sqrt(2.0), 3.0)])
    x = np.concatenate([x, min(value, 1e307) * np.random.default_rng(5).uniform(1.0, 9.0, 200)])
    x = x[np.isfinite(x) & (x >= np.finfo(float).tiny)]
    out = x.copy()
    kernels._log(out)
    reference = np.log(x)
    ulps = np.abs(out - reference) / np.spacing(np.maximum(np.abs(reference), 1e-300))
    assert np.all((ulps <= 1.0) | (out == reference))
    nan = np.array([np.nan])
    kernels._log(nan)
    assert np.isnan(nan[0])


def test_a_checkpointed_fit_is_the_plain_fit_bit_for_bit(tmp_path: Any, monkeypatch: Any) -> None:
    from emkit.inference.checkpoint import Checkpoint

    X, _ = load_faithful()
    plan, engine, context = _plan(X, "EVE", 3, random_state=0)
    produced = _count_block_iterations(monkeypatch)
    with context:
        start = plan.initialize(plan.rng)
        plain, _ = _fit(plan, engine, start, True, monkeypatch, tol=1e-10, max_iter=40)
        checkpoint = Checkpoint(tmp_path, "run", every=7)
        saved, _ = _fit(plan, engine, start, True, monkeypatch, tol=1e-10, max_iter=40,
                        checkpoint=checkpoint)  # fmt: skip
        # a run stopped after 10 iterations (saved at 7 and 10), then resumed
        cut = Checkpoint(tmp_path / "cut", "cut", every=7)
        _fit(plan, engine, start, True, monkeypatch, tol=1e-10, max_iter=10, checkpoint=cut)
        again, _ = _fit(plan, engine, start, True, monkeypatch, tol=1e-10, max_iter=40,
                        checkpoint=cut)  # fmt: skip
    assert sum(produced) >= plain.n_iter + saved.n_iter
    np.testing.assert_array_equal(saved.trace.bound, plain.trace.bound)
    for run in (saved, again):  # (a checkpoint keeps no bounds: the resumed run's are its own)
        np.testing.assert_array_equal(run.trace.objective, plain.trace.objective)
        np.testing.assert_array_equal(run.params.components.covariances,
                                      plain.params.components.covariances)  # fmt: skip


def test_a_blocks_parameters_are_made_where_the_driver_reads_them(
    tmp_path: Any, monkeypatch: Any
) -> None:
    # the driver makes the parameters of a block's last iteration it takes and of those
    # it checkpoints, no others, and each checkpoint holds its own iteration's (the
    # Python step's, to round-off)
    from emkit.inference.checkpoint import Checkpoint

    made: list[list[int]] = []
    make = small_block.gaussian_block

    def recording(*args: Any) -> Any:
        run = make(*args)
        if run is None:
            return None

        def recorded(*a: Any) -> Any:
            objectives, bounds, slacks, params = run(*a)
            asked: list[int] = []
            made.append(asked)
            return objectives, bounds, slacks, lambda i: asked.append(i) or params(i)

        return recorded

    monkeypatch.setattr(small_block, "gaussian_block", recording)

    class Recording(Checkpoint):
        def save(self, state: Any) -> None:
            saves.append((len(state.objectives), state.params))
            super().save(state)

    X, _ = load_faithful()
    plan, engine, context = _plan(X, "VEV", 3, random_state=0)
    runs = []
    with context:
        start = plan.initialize(plan.rng)
        for on in (False, True):
            saves: list[tuple[int, Any]] = []
            checkpoint = Recording(tmp_path / str(on), "run", every=7)
            result, calls = _fit(plan, engine, start, on, monkeypatch, tol=1e-10, max_iter=60,
                                 checkpoint=checkpoint)  # fmt: skip
            runs.append((result, calls, saves))
    (python, python_calls, python_saves), (compiled, calls, saves) = runs
    _assert_close(compiled, python)
    iterations = list(range(1, compiled.n_iter + 1))
    assert [c[0] for c in calls] == [c[0] for c in python_calls] == iterations
    assert made and compiled.n_iter > 14  # blocks ran, through checkpoints
    # one block from the start here: its parameters made at each save and at its end
    assert [i + 1 for i in made[0]] == [n for n, _ in saves] + [compiled.n_iter]
    assert [n for n, _ in saves] == [n for n, _ in python_saves]
    for (_, ours), (_, theirs) in zip(saves, python_saves, strict=True):
        np.testing.assert_allclose(ours.components.covariances, theirs.components.covariances,
                                   rtol=RTOL)  # fmt: skip
