"""The EM driver on its own, with toy models whose objective we control."""

from __future__ import annotations

import numpy as np
import pytest

from emkit import ConvergenceWarning, MonotonicityError, MonotonicityWarning
from emkit.engines import InMemoryEngine, RowSource
from emkit.inference import fit_em, fit_em_restarts


class Scripted:
    """A 'model' whose objective follows a script; params count iterations."""

    def __init__(self, objectives: list[float], gap: float = 0.0) -> None:
        self.objectives = objectives
        self.gap = gap

    def expectation(self, params: int):
        return lambda X, _w: np.zeros(1)

    def m_step(self, params: int, stats: object) -> int:
        return params + 1

    def objective(self, params: int, stats: object) -> float:
        return self.objectives[min(params, len(self.objectives) - 1)]

    def m_step_gap(self, params: int, stats: object) -> float:
        return self.gap


DATA = RowSource(np.zeros((4, 1)))


def run(model: Scripted, **kw: object):
    kw = {"tol": 1e-3, "max_iter": 50, **kw}
    return fit_em(model, InMemoryEngine(), DATA, 0, **kw)  # type: ignore[arg-type]


def test_converges_when_the_gain_drops_below_tol() -> None:
    result = run(Scripted([-10.0, -5.0, -4.0, -3.9995, -3.9994]))
    assert result.converged and result.n_iter == 4
    np.testing.assert_array_equal(result.trace.objective, [-10.0, -5.0, -4.0, -3.9995])
    assert result.trace.seconds.shape == (4,) and np.all(result.trace.seconds >= 0)


def test_a_decrease_is_never_convergence() -> None:
    script = [-10.0, -5.0, -6.0, -5.5]
    with pytest.raises(MonotonicityError, match=r"decreased at iteration 3, from -5\.0 to -6\.0"):
        run(Scripted(script), monotonicity="raise")
    with pytest.warns(MonotonicityWarning, match="decreased at iteration 3"):
        result = run(Scripted(script), monotonicity="warn", max_iter=4)
    assert not result.converged and result.n_iter == 4
    off = run(Scripted(script), monotonicity="off", max_iter=4)
    assert not off.converged


def test_decrease_within_the_m_step_gap_is_allowed() -> None:
    script = [-10.0, -5.0, -5.01, -5.0]
    run(Scripted(script, gap=0.02), monotonicity="raise", max_iter=4, tol=0)
    with pytest.raises(MonotonicityError):
        run(Scripted(script, gap=0.005), monotonicity="raise", max_iter=4, tol=0)


def test_round_off_decrease_at_a_fixed_point_counts_as_no_change() -> None:
    result = run(Scripted([-10.0, -5.0, -5.0 - 1e-15]), monotonicity="raise")
    assert result.converged and result.n_iter == 3


def test_tol_zero_runs_max_iter() -> None:
    result = run(Scripted([-1.0] * 3), tol=0, max_iter=7)
    assert not result.converged and result.n_iter == 7


def test_a_models_own_stopping_rule_ends_the_run() -> None:
    # tol=0 leaves the objective out; the rule sees the parameters before and after the M-step
    seen: list[tuple[int, int]] = []

    def settled(previous: int, params: int) -> bool:
        seen.append((previous, params))
        return params == 3

    class Settling(Scripted):
        def converged(self, previous: int, params: int) -> bool:
            return settled(previous, params)

    result = run(Settling([-3.0, -2.0, -1.0, -0.5, -0.25]), tol=0)
    assert result.converged and result.n_iter == 3 and result.params == 3
    assert seen == [(0, 1), (1, 2), (2, 3)]

    # and it adds to the objective test rather than replacing it
    class Never(Scripted):
        def converged(self, previous: int, params: int) -> bool:
            return False

    result = run(Never([-3.0, -2.0, -2.0]))
    assert result.converged and result.n_iter == 3


def test_non_finite_objective_is_an_error() -> None:
    with pytest.raises(MonotonicityError, match=r"became nan .*scale the input data"):
        run(Scripted([-1.0, float("nan")]))


def test_bad_policy() -> None:
    with pytest.raises(ValueError, match="monotonicity must be one of"):
        run(Scripted([-1.0]), monotonicity="maybe")


def test_restarts_keep_the_best_and_warn_when_it_did_not_converge() -> None:
    scripts = {0: [-3.0, -2.0, -1.0], 1: [-9.0, -8.0, -0.5], 2: [-4.0]}
    starts = iter(range(3))

    class Restart(Scripted):
        def objective(self, params: int, stats: object) -> float:  # params = (run, it)
            run_id, it = params
            seq = scripts[run_id]
            return seq[min(it, len(seq) - 1)]

        def m_step(self, params, stats):
            return (params[0], params[1] + 1)

    with pytest.warns(ConvergenceWarning, match="did not converge in max_iter=3"):
        best = fit_em_restarts(
            Restart([]),
            InMemoryEngine(),
            DATA,
            lambda rng: (next(starts), 0),  # type: ignore[arg-type]
            n_init=3,
            rng=np.random.default_rng(0),
            tol=1e-6,
            max_iter=3,
        )
    assert best.params[0] == 1 and best.objective == -0.5


def test_restarts_may_be_compared_by_a_score_of_their_final_parameters() -> None:
    starts = iter(range(3))

    class Restart(Scripted):
        def m_step(self, params, stats):
            return (params[0], params[1] + 1)

        def objective(self, params, stats) -> float:
            return -1.0 - params[1]  # decreasing: monotonicity off

    final_scores = {0: 1.0, 1: 3.0, 2: 3.0 + 1e-15}  # a tie within round-off keeps the earlier
    best = fit_em_restarts(
        Restart([]),
        InMemoryEngine(),
        DATA,
        lambda rng: (next(starts), 0),  # type: ignore[arg-type]
        n_init=3,
        rng=np.random.default_rng(0),
        tol=0,
        max_iter=2,
        monotonicity="off",
        score=lambda params: final_scores[params[0]],
    )
    assert best.params == (1, 2)


def test_a_supplement_adds_a_second_pass_only_when_asked() -> None:
    # the E-step sums the rows; every other iteration, a second pass adds their count
    X = np.arange(6.0).reshape(3, 2)
    seen = []

    class Summing:
        def expectation(self, params: int):
            return lambda rows, _w: rows.sum()

        def m_step(self, params: int, stats: float) -> int:
            seen.append(stats)
            return params + 1

        def objective(self, params: int, stats: float) -> float:
            return float(params)

        def m_step_gap(self, params: int, stats: float) -> float:
            return 0.0

        def supplement(self, params: int, stats: float):
            return (lambda rows, _w: float(rows.shape[0])) if params % 2 else None

    fit_em(Summing(), InMemoryEngine(chunk_size=2), RowSource(X), 0, tol=0, max_iter=4)
    assert seen == [15.0, 18.0, 15.0, 18.0]


@pytest.mark.parametrize("chunk_size, n_threads", [(1, 1), (3, 2), (None, 2)])
def test_the_e_step_may_keep_per_row_state_in_the_data_arrays(chunk_size, n_threads) -> None:
    # each E-step reads what the last one left in `visits` and writes it back in place:
    # the chunks are views, each row written by its own chunk only
    X = np.arange(20.0).reshape(10, 2)
    visits = np.zeros(10)

    class Counting:
        def expectation(self, params: int):
            def e_step(rows, _w, seen):
                assert (seen == params).all()  # the state the previous E-step left
                seen += 1
                return rows.sum()

            return e_step

        def m_step(self, params: int, stats: float) -> int:
            return params + 1

        def objective(self, params: int, stats: float) -> float:
            return float(params)

        def m_step_gap(self, params: int, stats: float) -> float:
            return 0.0

    with InMemoryEngine(chunk_size, n_threads) as engine:
        result = fit_em(Counting(), engine, RowSource(X, columns=(visits,)), 0, tol=0, max_iter=5)
    assert result.n_iter == 5
    np.testing.assert_array_equal(visits, np.full(10, 5.0))


def test_a_step_wraps_the_plain_iteration_and_carries_state() -> None:
    # a variant sees each iteration's result and threads its own state through the run
    from emkit.inference import StepResult, em_step

    model = Scripted([-4.0, -3.0, -2.0, -1.5, -1.25])
    plain = em_step(model, InMemoryEngine(), DATA)
    calls: list[int] = []

    def counting(params: int, state: int) -> StepResult[int]:
        calls.append(state)
        result = plain(params, state)
        return result._replace(state=state + 1)

    result = fit_em(model, InMemoryEngine(), DATA, 0, tol=0, max_iter=4, step=counting, state=10)
    assert calls == [10, 11, 12, 13]
    np.testing.assert_array_equal(result.trace.objective, [-4.0, -3.0, -2.0, -1.5])
    assert result.params == 4
