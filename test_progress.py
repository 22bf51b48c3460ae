"""train(..., callback=...): progress and early stopping for both learners (issue: progress
while a run runs).

The tabular run is one jitted call; with a callback it runs one call per iteration, and
everything the kernel carries from one iteration to the next (logits, critics, the random
stream, the rollouts' env state and episode returns in progress, the probe's step log, the
ratio statistics, the recorded policies) must come through the chunking bit for bit: the
whole final state of a chunked run is compared with the one-call run's, array by array.
A run stopped after k iterations is the run of k iterations; a callback only reads.
"""
import copy
import io
from dataclasses import fields, replace

import numpy as np
import pytest

import asae_learner
import asae_neural as neural
import asae_tabular as tabular
import envs
from asae_learner import Progress, TrainResult, progress_printer
from asae_tabular import TabularConfig
from envs_spread import Spread
from test_tabular import NoTables


def _same(a, b, where="result"):
    """Recursive bit-for-bit equality: arrays (dtype, shape, bytes; NaN equal to NaN),
    named tuples, sequences, dicts, floats."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, tuple) and hasattr(a, "_fields"):
        assert type(a) is type(b), where
        for name in a._fields:
            _same(getattr(a, name), getattr(b, name), f"{where}.{name}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{k}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a):
        assert np.isnan(b), where
    else:
        assert a == b, where


def _same_result(a, b, skip=("wall_time",)):
    """Every TrainResult field but ``skip`` bit for bit (the neural policy by its parameters)."""
    for f in fields(TrainResult):
        if f.name in skip:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "policy" and x is not None:
            x, y = x.params, y.params
        _same(x, y, f.name)


def _noop(iteration, record):
    return None


def _state(run):
    """A tabular run's final state (asae_tabular._Learner) but the span of its last call."""
    return run._replace(rec=run.rec._replace(span=None))


#: (env, method, TabularConfig fields): simultaneous and sequential methods, episodes that
#: span rollouts (two-step game with T = 3; the grid; a repeated matrix game, whose returns in
#: progress are never 0), count tables, COMA's Q critic, an exact method, the ratio
#: statistics and the recorded policies.
TABULAR_CASES = {
    "climbing-happo": (envs.climbing, "happo", dict(track_ratios=True, record_policies=True)),
    "climbing-a2po": (envs.climbing, "a2po", dict(track_ratios=True)),
    "penalty3-asae": (lambda: envs.MatrixGame.penalty(n_agents=3), "asae",
                      dict(track_ratios=True, record_policies=True)),
    "count-a2po": (lambda: envs.penalty(-50, n_agents=3), "a2po", dict(track_ratios=True)),
    "twostep-coma": (envs.TwoStepGame, "coma", dict(rollout_len=3)),
    "twostep-a2po": (envs.TwoStepGame, "a2po", dict(rollout_len=3, track_ratios=True)),
    "grid-asae": (lambda: envs.GridForaging(size=3, n_food=1, max_steps=6), "asae",
                  dict(rollout_len=5, track_ratios=True)),
    "climbing-exact_sync": (envs.climbing, "exact_sync", dict(record_policies=True)),
    "repeated-happo": (lambda: envs.MatrixGame(envs.climbing().payoff, 3), "happo",
                       dict(rollout_len=4)),       # a reward every step, episodes across rollouts
}


def _cfg(**kw):
    base = dict(iterations=9, n_envs=8, rollout_len=4, reward_scale=1 / 30, seed=5,
                eval_episodes=8)
    return TabularConfig(**{**base, **kw})


# --------------------------------------------------------------------------------------
# The tabular learner
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(TABULAR_CASES))
def test_tabular_chunked_run_is_the_one_call_bit_for_bit(case):
    """A callback that never stops: one jitted call per iteration. Every output field and
    the whole final state (logits, critics V and Q, the random stream, the rollouts' env
    state, episode steps and returns in progress, the diagnostics, the ratio statistics,
    the recorded policies, the last rollout) equal the one-call run's, bit for bit."""
    make, method, kw = TABULAR_CASES[case]
    cfg = _cfg(**kw)
    one, run_one = tabular._run(make(), method, cfg)
    calls = []
    chunked, run_chunked = tabular._run(make(), method, cfg,
                                        callback=lambda i, r: calls.append(i) or False)
    assert calls == list(range(1, cfg.iterations + 1))
    _same_result(one, chunked)
    _same(_state(run_one), _state(run_chunked), "state")
    assert run_one.rec.span.tolist() == [0, 9] and run_chunked.rec.span.tolist() == [8, 9]
    assert chunked.stopped_at is None and one.stopped_at is None


@pytest.mark.parametrize("method", ["asae", "happo", "a2po"])
def test_tabular_chunked_run_keeps_the_probes_step_log(method):
    """With the bias probe's per-step log (record_steps): the same log, record for record,
    and the same run state with and without a callback."""
    cfg = _cfg(iterations=5, track_ratios=True)
    _, run_one = tabular._run(envs.climbing(), method, cfg, record_steps=True)
    _, run_chunked = tabular._run(envs.climbing(), method, cfg, record_steps=True,
                                  callback=_noop)
    assert run_one.log.steps.count[1] == 5
    _same(_state(run_one), _state(run_chunked), "state")


@pytest.mark.parametrize("step_path", [False, True], ids=["tables", "env.step"])
@pytest.mark.parametrize("case", ["climbing-happo", "twostep-a2po", "grid-asae",
                                  "repeated-happo"])
def test_tabular_stop_at_k_is_the_run_of_k_iterations(case, step_path):
    """Stopped after k iterations: the full run's first k curve points, and every field of
    the run of k iterations (the evaluation of the logits as they stand, its seed from the
    stream where it stands), but stopped_at = k."""
    make, method, kw = TABULAR_CASES[case]
    wrap = NoTables if step_path else (lambda env: env)
    cfg = _cfg(**kw)
    full = tabular.train(wrap(make()), method, cfg)
    for k in (1, 4, cfg.iterations - 1):
        got = tabular.train(wrap(make()), method, cfg, callback=lambda i, r, k=k: i == k)
        assert got.stopped_at == k
        assert np.array_equal(got.mean_return, full.mean_return[:k], equal_nan=True)
        assert got.iterations.tolist() == list(range(1, k + 1))
        assert got.env_steps.tolist() == [i * cfg.n_envs * cfg.rollout_len
                                          for i in range(1, k + 1)]
        short = tabular.train(wrap(make()), method, replace(cfg, iterations=k))
        _same_result(got, short, skip=("wall_time", "stopped_at"))
        assert short.stopped_at is None
    last = tabular.train(wrap(make()), method, cfg, callback=lambda i, r: True)
    assert last.stopped_at == 1
    at_end = tabular.train(wrap(make()), method, cfg,
                           callback=lambda i, r: i == cfg.iterations)
    assert at_end.stopped_at is None                   # it ran every iteration
    _same_result(at_end, full)


@pytest.mark.parametrize("step_path", [False, True], ids=["tables", "env.step"])
def test_tabular_record_is_the_run_as_it_stands(step_path):
    """The record after iteration k: k, the totals, this iteration's return, the curve so
    far (read-only), the logits as they stand (read-only, = the k-iteration run's), time."""
    cfg = _cfg(iterations=6, record_policies=True)
    make = (lambda: NoTables(envs.climbing())) if step_path else envs.climbing
    seen = []

    def look(iteration, record):
        assert isinstance(record, Progress) and record.iteration == iteration
        with pytest.raises(ValueError):
            record.curve[0] = 0.0
        with pytest.raises(ValueError):
            record.logits[0][0, 0] = 0.0
        seen.append((record, record.curve.copy(), [z.copy() for z in record.logits]))
    res = tabular.train(make(), "asae", cfg, callback=look)
    B, T = cfg.n_envs, cfg.rollout_len
    elapsed = [r.elapsed for r, _, _ in seen]
    assert elapsed == sorted(elapsed) and 0 < elapsed[-1] <= res.wall_time
    for k, (r, curve, logits) in enumerate(seen, 1):
        assert (r.iteration, r.iterations, r.env_steps, r.method) == (k, 6, k * B * T, "asae")
        assert r.policy is None
        assert np.array_equal(curve, res.mean_return[:k], equal_nan=True)
        assert np.array_equal([r.mean_return], res.mean_return[k - 1:k], equal_nan=True)
        short = tabular.train(make(), "asae", replace(cfg, iterations=k))
        _same(logits, short.logits, f"logits after {k}")
    _same(seen[-1][2], res.logits)
    assert res.mean_return.flags.writeable             # the result's curve is the caller's


# --------------------------------------------------------------------------------------
# The neural learner
# --------------------------------------------------------------------------------------

def _net_cfg(**kw):
    base = dict(iterations=5, n_envs=4, rollout_len=5, seed=2, epochs=2, minibatches=2,
                hidden=8, eval_episodes=8)
    return neural.NetConfig(**{**base, **kw})


def _spread():
    return Spread(n_agents=3, max_cycles=5)


@pytest.mark.parametrize("method, kw", [("async", {}), ("happo", {}),
                                        ("a2po", dict(track_ratios=True))])
def test_neural_stop_at_k_is_the_run_of_k_iterations(method, kw):
    """Stopped after k: the full run's first k curve points exactly, and the run of k
    iterations in every field (parameters, critic, ratios, evaluation) but stopped_at."""
    cfg = _net_cfg(**kw)
    full = neural.train(_spread(), method, cfg)
    for k in (1, 3):
        got = neural.train(_spread(), method, cfg, callback=lambda i, r, k=k: i == k)
        assert got.stopped_at == k and got.iterations.tolist() == list(range(1, k + 1))
        assert np.array_equal(got.mean_return, full.mean_return[:k], equal_nan=True)
        _same_result(got, neural.train(_spread(), method, replace(cfg, iterations=k)),
                     skip=("wall_time", "stopped_at"))


@pytest.mark.parametrize("method", ["asae", "happo"])
def test_neural_callback_that_evaluates_leaves_the_run_unchanged(method):
    """A callback evaluating the actors as they stand after every iteration, on a copy of
    the env: the run equals the run without a callback in every field; the last record's
    actors are the result's, and their evaluation is the result's own evaluation."""
    cfg = _net_cfg(track_ratios=True)
    plain = neural.train(_spread(), method, cfg)
    env = _spread()
    judge = copy.deepcopy(env)
    seen = []

    def look(iteration, record):
        assert record.policy is not None and record.logits == []
        with pytest.raises(ValueError):
            record.curve[-1] = 0.0
        assert record.mean_return == record.curve[-1] and record.curve.size == iteration
        seen.append((record.env_steps, neural.evaluate(judge, record.policy, 4, False, 1),
                     [p.copy() for p in record.policy.params], record.curve.copy()))
    res = neural.train(env, method, cfg, callback=look)
    _same_result(res, plain)
    for k, (_, _, _, curve) in enumerate(seen, 1):
        assert np.array_equal(curve, res.mean_return[:k])
    assert [s[0] for s in seen] == [k * 20 for k in range(1, 6)]
    _same(seen[-1][2], res.policy.params)
    assert not all(np.array_equal(a, b) for a, b in zip(seen[0][2], seen[-1][2]))


# --------------------------------------------------------------------------------------
# What a callback may be and return
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [5, "print", [print], True])
def test_a_callback_must_be_callable(bad):
    for call in (lambda: tabular.train(envs.climbing(), "asae", _cfg(), callback=bad),
                 lambda: neural.train(_spread(), "asae", _net_cfg(), callback=bad)):
        with pytest.raises(TypeError, match="callback must be None or a callable"):
            call()


@pytest.mark.parametrize("answer", [1, 0, "stop", 1.0, [True]])
def test_a_callback_answers_true_false_or_none(answer):
    for learner in ("tabular", "neural"):
        with pytest.raises(TypeError, match="callback must return True .* at iteration 1"):
            if learner == "tabular":
                tabular.train(envs.climbing(), "asae", _cfg(), callback=lambda i, r: answer)
            else:
                neural.train(_spread(), "asae", _net_cfg(), callback=lambda i, r: answer)


def test_numpy_booleans_stop_and_go_on():
    res = tabular.train(envs.climbing(), "asae", _cfg(),
                        callback=lambda i, r: np.bool_(r.iteration == 2))
    assert res.stopped_at == 2
    res = neural.train(_spread(), "asae", _net_cfg(), callback=lambda i, r: np.False_)
    assert res.stopped_at is None and res.iterations.size == 5


class Boom(Exception):
    pass


@pytest.mark.parametrize("step_path", [False, True])
def test_a_callbacks_exception_propagates(step_path):
    def boom(iteration, record):
        if iteration == 2:
            raise Boom("from the callback")
    env = NoTables(envs.climbing()) if step_path else envs.climbing()
    with pytest.raises(Boom, match="from the callback"):
        tabular.train(env, "happo", _cfg(), callback=boom)
    with pytest.raises(Boom, match="from the callback"):
        neural.train(_spread(), "happo", _net_cfg(), callback=boom)


# --------------------------------------------------------------------------------------
# progress_printer
# --------------------------------------------------------------------------------------

def _record(it, elapsed, curve, total=6, steps=100):
    curve = np.asarray(curve, float)
    return Progress(it, total, it * steps, float(curve[it - 1]), elapsed, curve[:it], "asae",
                    [], None)


def test_progress_printer_lines_by_time():
    """every_seconds = 10 over iterations at 1, 5, 11, 15, 22, 30 s: a line at 11 s, at 22 s,
    and a last one at the final iteration; the mean return of the iterations since the last
    line (NaN skipped), the rate over that span, the time left from the mean iteration time
    since the first callback."""
    out = io.StringIO()
    show = progress_printer(10, file=out, label="run: ")
    curve = [1.0, np.nan, 3.0, -4.0, 6.0, 8.0]
    for it, t in enumerate([1, 5, 11, 15, 22, 30], 1):
        assert show(it, _record(it, t, curve)) is None
    lines = out.getvalue().splitlines()
    assert lines == [
        "run: iteration 3/6 (50 %), 300 env steps, mean return 2 (its 1–3), 27 env steps/s, "
        "11 s elapsed, ~15 s left",
        "run: iteration 5/6 (83 %), 500 env steps, mean return 1 (its 4–5), 18 env steps/s, "
        "22 s elapsed, ~5.2 s left",
        "run: iteration 6/6 (100 %), 600 env steps, mean return 8 (it 6), 12 env steps/s, "
        "30 s elapsed"]


def test_progress_printer_short_run_prints_nothing_and_restarts(capsys):
    """A run shorter than every_seconds prints nothing (to stderr by default); one printer
    serves a second run from its start; a span where no episode ended shows —."""
    show = progress_printer(1e6)
    res = tabular.train(envs.climbing(), "asae", _cfg(), callback=show)
    assert res.stopped_at is None
    assert capsys.readouterr().err == ""
    out = io.StringIO()
    show = progress_printer(0, file=out)
    for run in range(2):
        for it in (1, 2):
            show(it, _record(it, it + 10 * run, [np.nan, np.nan], total=2))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all("mean return — (it " in ln for ln in lines)
    assert lines[2].startswith("iteration 1/2 (50 %), 100 env steps")


def test_progress_printer_clears_an_in_place_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    out = Tty()
    progress_printer(0, file=out)(1, _record(1, 2.0, [1.0]))
    assert out.getvalue().startswith("\r\033[Kiteration 1/6")


def test_progress_printer_through_train(capsys):
    """Every iteration with every_seconds = 0, both learners, on stderr."""
    tabular.train(envs.climbing(), "asae", _cfg(iterations=4),
                  callback=progress_printer(0, label="tab: "))
    neural.train(_spread(), "asae", _net_cfg(iterations=3),
                 callback=progress_printer(0, label="net: "))
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(",")[0] for ln in err] == [
        "tab: iteration 1/4 (25 %)", "tab: iteration 2/4 (50 %)", "tab: iteration 3/4 (75 %)",
        "tab: iteration 4/4 (100 %)", "net: iteration 1/3 (33 %)", "net: iteration 2/3 (67 %)",
        "net: iteration 3/3 (100 %)"]
    assert "32 env steps" in err[0] and "60 env steps" in err[-1]


@pytest.mark.parametrize("every, label, file, exc", [
    (-1, "", None, ValueError), ("5", "", None, TypeError), (np.inf, "", None, ValueError),
    (True, "", None, TypeError), (5, 3, None, TypeError), (5, "", "out.txt", TypeError)])
def test_progress_printer_bad_arguments(every, label, file, exc):
    with pytest.raises(exc):
        progress_printer(every, file=file, label=label)


def test_result_defaults_keep_old_code_working():
    """stopped_at has a default: a TrainResult built as before still is one."""
    r = TrainResult("asae", np.arange(1, 2), np.arange(1, 2), np.zeros(1), 0.0, 0.0, False,
                    0.0, [], np.zeros(0))
    assert r.stopped_at is None
    assert "stopped_at" in TrainResult.__doc__ and asae_learner.Progress._fields[:5] == (
        "iteration", "iterations", "env_steps", "mean_return", "elapsed")


# --------------------------------------------------------------------------------------
# The bench's spread runs
# --------------------------------------------------------------------------------------

def test_spread_cells_print_their_runs_progress_unless_quiet(capsys):
    import bench
    import bench_net
    cells = bench_net.cells(bench.parse_args(["spread", "--quick"]))
    assert {c.outcome.keywords["progress"] for c in cells} == {bench_net.PROGRESS_S}
    assert cells[0].outcome.func is bench_net.spread_run
    quiet = bench_net.cells(bench.parse_args(["spread", "--quick", "--quiet"]))
    assert {c.outcome.keywords["progress"] for c in quiet} == {None}
    c = [x for x in cells if x.part == "m"][-1]
    out = c.outcome.func(Spread(n_agents=c.n), "a2po", c.configs[1], progress=0,
                         label=c.outcome.keywords["label"])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == c.configs[1].iterations and out["curve"]
    assert err[0].startswith(f"spread m n={c.n} a2po seed 1: iteration 1/")
