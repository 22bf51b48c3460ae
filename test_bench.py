"""Tests of bench.py and its modules (bench_stats, bench_plan, bench_run, bench_plot, the
sections): statistics, spec parsing, command line, strict JSON output, the docs page, the
study's pure functions, and the modules' import graph."""
import argparse
import ast
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import asae
import asae_learner as learner
import asae_neural as neural
import asae_tabular as tabular
from asae_tabular import TabularConfig
import bench
import bench_plan
import bench_plot
import bench_run
import bench_stats


def strict_json(path):
    """Parse like a strict JSON reader: NaN / Infinity / -Infinity are errors."""
    def bad(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    with open(path) as f:
        return json.loads(f.read(), parse_constant=bad)


# ---- statistics ------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n, lo, hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634),
                                          (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0)])
def test_wilson_known_values(k, n, lo, hi):
    got = bench_stats.wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=5e-5)


def test_wilson_is_symmetric_and_contains_the_estimate():
    for n in (1, 7, 40):
        for k in range(n + 1):
            lo, hi = bench_stats.wilson(k, n)
            assert 0 <= lo <= k / n <= hi <= 1
            mirror = bench_stats.wilson(n - k, n)[::-1]
            assert (lo, hi) == pytest.approx(tuple(1 - x for x in mirror))
    assert all(math.isnan(x) for x in bench_stats.wilson(0, 0))


def test_sign_test_known_values():
    assert bench_stats.sign_test(0, 6) == 0.03125
    assert bench_stats.sign_test(6, 0) == 0.03125
    assert bench_stats.sign_test(1, 9) == pytest.approx(2 * 11 / 1024)
    assert bench_stats.sign_test(0, 0) == 1.0            # no discordant pairs
    assert bench_stats.sign_test(3, 3) == 1.0            # capped at 1
    assert bench_stats.sign_test(25, 0) == pytest.approx(2 / 2 ** 25)
    for w in range(12):
        for lo in range(12):
            assert bench_stats.sign_test(w, lo) == bench_stats.sign_test(lo, w)


def _holm_rejects(ps, alpha):
    """Holm's procedure as the paper states it: order the tests by p; reject H_(1), H_(2), …
    while p_(j) ≤ α / (m − j + 1), stop at the first that is not."""
    live = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    out = set()
    for j, (p, i) in enumerate(live):
        if p > alpha / (len(live) - j):
            break
        out.add(i)
    return out


@settings(max_examples=300)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0.01, 0.02, 0.5])),
                max_size=8))
@example([0.01, 0.04, 0.03, 0.005])
def test_holm_adjusted_p_is_the_least_level_that_rejects(ps):
    """p̃_i ≤ α exactly when Holm's sequential procedure at level α rejects H_i, at every
    level between the adjusted values (no float ties at the boundaries); None stays None."""
    adj = bench_stats.holm(ps)
    assert [a is None for a in adj] == [p is None for p in ps]
    vals = sorted({a for a in adj if a is not None} | {0.0, 1.0})
    for lo, hi in zip(vals, vals[1:]):
        alpha = (lo + hi) / 2
        if alpha <= 0 or any(p is not None and (math.isclose(p * k, alpha, rel_tol=1e-9))
                             for p in ps for k in range(1, len(ps) + 1)):
            continue
        assert {i for i, a in enumerate(adj) if a is not None and a <= alpha} == \
            _holm_rejects(ps, alpha)
    assert all(a is None or p <= a <= 1 for p, a in zip(ps, adj))


def test_paired_difference_ci_known_values_and_properties():
    # Cavo et al. 2012 in Fagerland, Lydersen & Laake (2017), chapter 8: −0.0621 [−0.1186, −0.0046]
    assert bench_stats.paired_difference_ci(59, 6, 16, 80) == pytest.approx(
        (-0.1186, -0.0046), abs=5e-5)
    # no discordant pair: the interval is symmetric around 0 and shrinks with the seeds
    lo, hi = bench_stats.paired_difference_ci(30, 0, 0, 70)
    assert lo == pytest.approx(-hi) and 0 < hi < bench_stats.paired_difference_ci(3, 0, 0, 7)[1]
    for table in [(0, 10, 0, 0), (5, 3, 0, 2), (0, 3, 5, 92), (40, 1, 9, 50), (1, 1, 7, 12)]:
        both, w, l_, neither = table
        lo, hi = bench_stats.paired_difference_ci(*table)
        assert -1 <= lo <= (w - l_) / sum(table) <= hi <= 1
        assert bench_stats.paired_difference_ci(both, l_, w, neither) == pytest.approx((-hi, -lo))
    assert all(math.isnan(x) for x in bench_stats.paired_difference_ci(0, 0, 0, 0))
    d = bench_stats.paired([1, 1, 0, 0, 1], [1, 0, 1, 0, 0])
    assert (d["wins"], d["losses"], d["difference"]) == (2, 1, 0.2)
    assert d["ci95"] == list(bench_stats.paired_difference_ci(1, 2, 1, 1))
    with pytest.raises(ValueError, match="same seeds"):
        bench_stats.paired([1, 0], [1])
    assert bench_stats.fmt_pair(d).startswith("+0.20 [") and bench_stats.fmt_pair(None) == "—"


def test_mean_ci_t_interval_ignores_nan():
    mean, half = bench_stats.mean_ci([1.0, 2.0, 3.0, np.nan])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))
    mean, half = bench_stats.mean_ci([[1.0, np.nan], [3.0, 5.0]])
    assert mean.tolist()[0] == 2.0 and mean.tolist()[1] == 5.0
    assert half[0] == pytest.approx(12.706) and math.isnan(half[1])
    assert bench_stats.mean_ci(np.arange(100.0))[1] == pytest.approx(
        1.984 * np.std(np.arange(100.0), ddof=1) / 10, rel=1e-3)


# ---- strict JSON, written atomically --------------------------------------------------------

def test_write_json_is_strict_and_atomic(tmp_path):
    path = str(tmp_path / "out.json")
    data = {"a": np.float64("nan"), "b": [math.inf, -math.inf, 1.5], "c": np.arange(3),
            "d": {"e": np.array(2.5), "f": (np.int64(4), True, None, "x")},
            7: np.array([np.nan, 1.0])}
    bench_run.write_json(path, data)
    assert strict_json(path) == {"a": None, "b": [None, None, 1.5], "c": [0, 1, 2],
                                 "d": {"e": 2.5, "f": [4, True, None, "x"]}, "7": [None, 1.0]}
    assert os.listdir(tmp_path) == ["out.json"]
    bench_run.write_json(path, {"second": 1})            # replaced whole, never appended
    assert strict_json(path) == {"second": 1}


# ---- games, methods and Config flags ---------------------------------------------------------

def test_parse_game_specs():
    assert bench_plan.parse_spec("penalty:k=-50:n_agents=3", bench_plan.GAMES) == (
        "penalty", {"k": -50, "n_agents": 3})
    assert bench_plan.parse_spec(" grid : size=4 : n_food=1 ", bench_plan.GAMES) == (
        "grid", {"size": 4, "n_food": 1})
    assert bench_plan.parse_spec("penalty:k=-2.5e1", bench_plan.GAMES) == ("penalty", {"k": -25.0})
    assert bench_plan.make_game("penalty:k=-50").optimum == 10.0
    assert bench_plan.make_game("penalty:k=-50").payoff[0, 2] == -50


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown game 'nope'"), ("", "unknown game ''"),
    ("penalty:k", "'k' is not a new key=value"),
    ("penalty:k=", "'k=' is not a new key=value"), ("penalty:=3", "'=3' is not"),
    ("penalty:k=1:k=2", "'k=2' is not a new key=value"), ("penalty:z=1", "game 'penalty:z=1'"),
    ("penalty:k=nan", "game 'penalty:k=nan'"), ("grid:size=1", "game 'grid:size=1'")])
def test_bad_game_specs_are_clear_value_errors(spec, message):
    with pytest.raises(ValueError, match=None) as err:
        bench_plan.make_game(spec)
    assert message in str(err.value)


def test_commas_inside_a_value_do_not_split_the_list():
    from types import SimpleNamespace
    args = SimpleNamespace(games="climbing, grid:layout=(((0, 0), (4, 4)), ((2, 2), (3, 3)))",
                           methods="async", seeds=1, quick=True, overrides={})
    cells = bench_plan.plan(args, "learn")
    layout = (((0, 0), (4, 4)), ((2, 2), (3, 3)))
    assert [c.game for c in cells] == ["climbing", f"grid:layout={layout}"]
    assert bench_plan.make_game(cells[1].game).layout == layout


def test_method_specs_parse_config_fields():
    P = bench_plan.FIELD_PARSERS
    assert bench_plan.parse_spec("asae:sync_clip=none", asae.METHODS, "method", P) == (
        "asae", {"sync_clip": None})
    assert bench_plan.parse_spec("asae:epochs=8:lr_actor=3", asae.METHODS, "method", P) == (
        "asae", {"epochs": 8, "lr_actor": 3.0})
    for spec, message in [("asae:bogus=1", "settable Config field"),
                          ("asae:epochs=x", "epochs takes int"), ("bogus", "unknown method")]:
        with pytest.raises(ValueError, match=message):
            bench_plan.parse_spec(spec, asae.METHODS, "method",
                                  {k: v for k, v in P.items() if k != "seed"})


def test_every_config_field_has_a_flag_or_a_reason():
    import dataclasses
    for f in dataclasses.fields(TabularConfig):
        assert f.name in bench_plan.FIELD_PARSERS or f.name in bench_plan.SET_BY_BENCH[1:] \
            or bench_plan.field_parser(f) is None, f.name


def test_field_parsers_follow_the_annotation():
    import dataclasses

    @dataclasses.dataclass
    class Fake:
        flag: bool = False
        eps: "float | None" = 0.2
        name: str = "own"
        tables: "tuple | None" = None
    p = {f.name: bench_plan.field_parser(f) for f in dataclasses.fields(Fake)}
    assert p["tables"] is None
    assert (p["flag"]("true"), p["flag"]("False"), p["eps"]("none"), p["eps"]("0.5"),
            p["name"]("joint")) == (True, False, None, 0.5, "joint")
    assert (p["flag"].metavar, p["eps"].metavar, p["name"].metavar) == ("BOOL", "FLOAT|none", "STR")
    for key, text in (("flag", "yes"), ("flag", "none"), ("eps", "x")):
        with pytest.raises(argparse.ArgumentTypeError, match=key):
            p[key](text)


def test_command_line_flags(capsys):
    args = bench.parse_args(["learn", "--games", "climbing", "--lr-actor", "3", "--sync-clip",
                             "none", "--epochs", "8", "--seed", "5", "--quick"])
    assert args.sections == ["learn"] and args.quick
    assert args.overrides == {"lr_actor": 3.0, "sync_clip": None, "epochs": 8, "seed": 5}
    cells = bench_plan.plan(args, "learn")
    assert [c.method for c in cells] == list(asae.METHODS)           # async first
    assert [cfg.seed for cfg in cells[0].configs] == [5, 6, 7]
    assert {(cfg.lr_actor, cfg.sync_clip, cfg.epochs)
            for c in cells for cfg in c.configs} == {(3.0, None, 8)}
    assert cells[0].configs[0].reward_scale == 1 / 30                      # per-game default kept
    assert bench.parse_args(["--quick", "bias"]).quick              # before or after the section
    assert not bench.parse_args(["speed"]).quick
    for argv, message in [(["learn", "--epochs", "x"], "epochs takes int"),
                          (["learn", "--sync-clip", "big"], "sync_clip takes float or none"),
                          (["learn", "--games", "climbing,nope"], "unknown game 'nope'"),
                          (["learn", "--methods", "async,bogus"], "unknown method 'bogus'"),
                          (["learn", "--games", "grid", "--methods", "exact_sync"],
                           "needs a one-step matrix"),
                          (["bias", "--games", "two-step"], "bias needs one-step matrix games"),
                          (["learn", "--seeds", "0"], "at least 1"),
                          (["learn", "--methods", "asae:seed=3"], "settable Config field"),
                          (["learn", "--minibatches", "10000"], "minibatches")]:
        with pytest.raises(SystemExit) as exit_:
            bench.parse_args(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


# ---- every argument checked before any compute -------------------------------------------------

@pytest.fixture
def no_compute(monkeypatch):
    """Any training run, bias probe, kernel timing or grid search fails the test."""
    import bench_speed
    import envs

    def computed(*args, **kw):
        raise AssertionError("computed before refusing")
    import asae_probe
    for owner, name in ((tabular, "train"), (tabular, "_run"), (neural, "train"),
                        (asae_probe, "advantage_bias"), (asae_probe, "train_with_bias"),
                        (bench_speed, "timed"), (envs.GridForaging, "solve")):
        monkeypatch.setattr(owner, name, computed)


def refused(argv, capsys):
    """main(argv) exits with status 2 and one argparse-style line on stderr; that line."""
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("bench.py: error: "), err
    return err


@pytest.mark.parametrize("argv, message", [
    (["learn", "--games", ""], "--games '' names no game; choose from climbing"),
    (["learn", "--methods", ""], "--methods '' names no method; choose from async"),
    (["bias", "--games", ","], "--games ',' names no game"),
    (["learn", "--methods", ","], "--methods ',' names no method"),
    (["learn", "--games", "climbing,,qtran"], "has an empty item"),
    (["bias", "--methods", "async,"], "has an empty item"),
    (["learn", "--methods", "asae, async,asae"], "lists 'asae' twice"),
    (["learn", "--json", ""], "--json needs a file path; got ''"),
    (["learn", "--plot", ""], "--plot needs a folder path; got ''"),
    (["--docs", ""], "--docs needs a folder path; got ''"),
    (["learn", "--games", "grid:size=100"], "grid:size=100 / async: this run needs"),
    (["learn", "--iterations", str(10 ** 12)], "most of it for TabularConfig.iterations"),
    (["bias", "--epochs", str(10 ** 9)], "TabularConfig.iterations × epochs"),
    (["learn", "--seeds", str(10 ** 8)], "runs a section may plan (--seeds)"),
    (["study", "--seeds", str(10 ** 6)], "runs a section may plan (--seeds)"),
    (["learn", "--jobs", "100000"], "--jobs must be from 1 to"),
    (["speed", "--jobs", "0"], "--jobs must be from 1 to")])
def test_bad_arguments_are_refused_before_any_compute(argv, message, no_compute, capsys):
    assert message in refused(argv + ["--jobs", "1"] * ("--jobs" not in argv), capsys)


def test_a_game_whose_optimum_cannot_be_computed_is_refused_up_front(monkeypatch, capsys):
    import envs

    def too_big(self):
        raise MemoryError("Allocation failed")
    monkeypatch.setattr(envs.GridForaging, "solve", too_big)
    monkeypatch.setattr(tabular, "train", None)
    assert "game 'grid:size=3:n_food=1': its optimum cannot be computed (MemoryError" in refused(
        ["learn", "--games", "grid:size=3:n_food=1", "--jobs", "1"], capsys)


@pytest.mark.parametrize("section", ["speed", "learn", "bias", "study"])
def test_unwritable_outputs_are_refused_before_any_compute(section, tmp_path, no_compute, capsys):
    (tmp_path / "a_file").write_text("x")
    cases = [(["--json", str(tmp_path / "missing" / "out.json")], "does not exist"),
             (["--json", str(tmp_path)], "is a folder, not a file"),
             (["--plot", str(tmp_path / "a_file")], "is a file, not a folder"),
             (["--plot", str(tmp_path / "a_file" / "figs")], "a_file' is a file, not a"),
             (["--docs", str(tmp_path / "a_file")], "is a file, not a folder"),
             (["--docs", str(tmp_path / "a_file" / "sub")], "a_file' is a file, not a")]
    if os.path.isdir("/proc/self"):              # Linux: nothing can be created in /proc
        cases += [(["--json", "/proc/out.json"], "cannot be written"),
                  (["--plot", "/proc/figs"], "no file can be written there"),
                  (["--docs", "/proc"], "no file can be written there")]
    if os.path.exists("/dev/null"):
        cases.append((["--json", "/dev/null"], "exists and is not a regular file"))
    for flags, message in cases:
        if "--plot" in flags:
            pytest.importorskip("matplotlib")
        err = refused([section, "--quick", "--jobs", "1", *flags], capsys)
        assert flags[1] in err and message in err, (flags, err)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]          # no JSON, no temp file, no folder


def test_output_folders_are_made_only_once_the_run_is_checked(tmp_path, no_compute, capsys):
    pytest.importorskip("matplotlib")
    err = refused(["learn", "--games", "nope", "--plot", str(tmp_path / "figs"), "--docs",
                   str(tmp_path / "docs" / "page"), "--json", str(tmp_path / "out.json")], capsys)
    assert "unknown game 'nope'" in err and os.listdir(tmp_path) == []


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    def broken(f):
        f.write("half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        bench_run.replace_file(str(tmp_path / "out.json"), broken)
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        bench_run.write_json(str(tmp_path / "folder"), {"a": 1})
    assert sorted(os.listdir(tmp_path)) == ["folder"]


# ---- end to end --------------------------------------------------------------------------------

def run(tmp_path, *argv):
    path = str(tmp_path / "out.json")
    code = bench.main(["learn", "--games", "climbing,penalty:k=-50", "--methods", "async,asae",
                       "--seeds", "3", "--iterations", "4", "--quiet", "--json", path, *argv])
    return code, strict_json(path)


def test_learn_end_to_end_writes_strict_json(tmp_path, capsys):
    code, data = run(tmp_path, "--jobs", "1")
    assert code == 0
    out = capsys.readouterr().out
    assert "| climbing | asae |" in out and "penalty:k=-50" in out and "vs async (paired)" in out
    cells = data["learn"]["cells"]
    assert [(c["game"], c["method"]) for c in cells] == [
        ("climbing", "async"), ("climbing", "asae"), ("penalty:k=-50", "async"),
        ("penalty:k=-50", "asae")]
    assert cells[0]["vs_async"] is None
    assert set(cells[1]["vs_async"]) == {"wins", "losses", "p", "difference", "ci95"}
    assert cells[2]["config"]["reward_scale"] == 1 / 50 and cells[2]["config"]["iterations"] == 4
    assert len(cells[1]["per_seed"]) == 3 and len(cells[1]["curve_mean"]) == 5
    assert data["meta"]["argv"] is not None and "JSON" in data["notes"][0]


def test_results_do_not_depend_on_jobs(tmp_path):
    _, one = run(tmp_path, "--jobs", "1")
    _, two = run(tmp_path, "--jobs", "2")
    assert [c["per_seed"] for c in one["learn"]["cells"]] == [
        c["per_seed"] for c in two["learn"]["cells"]]


def test_a_failing_run_is_reported_and_exits_nonzero(tmp_path, monkeypatch, capsys):
    real = tabular.train

    def flaky(env, method, cfg):
        if method == "asae" and cfg.seed == 1:
            raise FloatingPointError("diverged")
        return real(env, method, cfg)
    monkeypatch.setattr(tabular, "train", flaky)
    code, data = run(tmp_path, "--jobs", "1")
    assert code == 1
    assert data["failures"] == ["learn climbing asae seed 1: FloatingPointError: diverged",
                                "learn penalty:k=-50 asae seed 1: FloatingPointError: diverged"]
    assert "FAILED" in capsys.readouterr().err


def test_bias_end_to_end(tmp_path):
    path = str(tmp_path / "bias.json")
    assert bench.main(["bias", "--games", "climbing", "--methods", "async,asae,asae:sync_clip=none",
                       "--seeds", "2", "--iterations", "3", "--quiet", "--jobs", "1",
                       "--json", path]) == 0
    cells = strict_json(path)["bias"]["cells"]
    assert [c["method"] for c in cells] == ["async", "asae", "asae:sync_clip=none"]
    assert cells[0]["ratio"] == pytest.approx(1.0) and cells[0]["lower"] == cells[0]["higher"] == 0
    assert cells[2]["config"]["sync_clip"] is None and cells[1]["config"]["sync_clip"] == 0.5


def test_figures(tmp_path):
    pytest.importorskip("matplotlib")
    code, data = run(tmp_path, "--jobs", "1", "--plot", str(tmp_path))
    assert code == 0 and os.path.getsize(tmp_path / "learning.png") > 10_000
    path = bench_plot.bias_bars([{"game": "g", "method": m, "seeds": 2, "mean_abs_bias": b,
                                  "bias_ci95": None, "async_same_path": 1.0, "grad_bias": b / 2,
                                  "grad_bias_ci95": 0.1, "grad_async_same_path": 0.5}
                                 for m, b in (("async", 1.0), ("asae", 0.4))], str(tmp_path))
    assert os.path.getsize(path) > 10_000


def test_an_interrupted_run_keeps_the_finished_cells(tmp_path, monkeypatch):
    real = tabular.train

    def interrupted(env, method, cfg):
        if method == "asae":
            raise KeyboardInterrupt
        return real(env, method, cfg)
    monkeypatch.setattr(tabular, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--jobs", "1")
    data = strict_json(tmp_path / "out.json")
    assert [(c["game"], c["method"]) for c in data["learn"]["cells"]] == [("climbing", "async")]


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["learn", "--plot", str(tmp_path)])
    assert exit_.value.code == 2 and "pip install -e '.[plot]'" in capsys.readouterr().err


def test_the_speed_section_shows_progress(monkeypatch, capsys):
    """A progress line after every timing (in place on a terminal), the last one final."""
    import sys

    import bench_speed
    monkeypatch.setattr(bench_speed, "timed", lambda fn, repeats, min_time: (1e-3, 1e-6))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert bench.main(["speed", "--quick", "--jobs", "1"]) == 0
    lines = capsys.readouterr().err.split("\r\033[K")[1:]
    per_game = [3 + sum(bench_plan.applicable(m, bench_plan.make_game(g)) for m in asae.METHODS)
                for g in ("climbing", "two-step", "grid")]   # env.step sizes and methods
    n = 19 + sum(per_game)                                   # kernels first
    assert per_game == [3 + 8, 3 + 6, 3 + 6]
    assert len(lines) == n and all(f"/{n} timings, " in line for line in lines)
    assert lines[0].startswith(f"speed gae (T=128, B=1): (1/{n} timings, ")
    assert lines[-1].startswith(f"speed grid: train('{asae.METHODS[-1]}'): ({n}/{n} timings, ")
    assert lines[-1].endswith(")\n") and not lines[-2].endswith("\n")


# ---- the study (bench_study) -------------------------------------------------------------------

def one_hot_policies(path):
    """TrainResult.policies for a path of greedy joint actions: per iteration, per agent, (1, 3)."""
    return [[np.eye(3)[a][None] * 0.6 + 0.4 / 3 for a in joint] for joint in path]


@pytest.mark.parametrize("path, expected", [
    ([[0, 2]] * 5, (0, None)),                                          # never switches
    ([[0, 2], [2, 0], [0, 2], [0, 2]], (2, True)),                   # swapping: both at once, twice
    ([[0, 2], [0, 0], [0, 0]], (0, False)),                             # one agent moves, then none
    ([[0, 2], [0, 0], [1, 1], [2, 2]], (2, False)),                  # first switch alone, two joint
    ([[0, 2], [1, 1], [1, 2], [2, 0]], (2, True)),                      # flight to (1, 1) first
    ([[0, 2, 1], [1, 0, 1], [2, 1, 0]], (1, False))])                # n = 3: all three must change
def test_switches_on_hand_made_paths(path, expected):
    import bench_study
    greedy = bench_study.greedy_path(one_hot_policies(path))
    assert greedy.tolist() == path
    assert bench_study.switches(greedy) == expected


def test_outcome_classification():
    import bench_study
    joints = ([0, 0], [2, 2], [1, 1], [0, 2], [2, 0], [1, 2], [0, 1])
    assert [bench_study.outcome(j) for j in joints] == [
        "(0, 0)", "(2, 2)", "(1, 1)", "other", "other", "other", "other"]
    assert set(bench_study.OUTCOMES) >= {bench_study.outcome(j) for j in np.ndindex(3, 3)}


def test_study_cell_formatting():
    import bench_study as st
    assert st.heat_cell(0.62, [
        ("asae", {"difference": 0.05, "wins": 7, "losses": 2, "p": 0.1797}),
        ("happo", {"difference": -0.125, "wins": 0, "losses": 1, "p": 1.0})]) == \
        "async 0.62<br>asae +0.05 (+7/−2, p=.18)<br>happo −0.12 (+0/−1, p=1)"
    assert [bench_stats.fmt_p(p) for p in (0.1797, 1.0, 0.05, 0.03125, 2 / 2 ** 25)] == [
        ".18", "1", ".05", ".031", "6e-08"]
    assert bench_stats.signed(0.0) == "+0.00" and bench_stats.signed(-0.5) == "−0.50"
    assert bench_stats.interval(0.25, 0.1, 0.4) == "0.25 [0.10, 0.40]"
    assert bench_stats.interval(math.nan, 0, 1) == "—"
    assert bench_stats.fmt_success({"successes": 3, "runs": 8, "wilson95": [0.1369, 0.6944]}) == \
        "3/8 = 0.38 [0.14, 0.69]"


def test_success_pairs_each_method_with_async_under_the_same_key():
    from types import SimpleNamespace as C
    ref, res = {}, lambda *ok: [{"optimal": x} for x in ok]
    reference = bench_stats.success(C(method="async", results=res(1, 0, 0, 1)), ref, "a")
    assert reference["vs_async"] is None
    s = bench_stats.success(C(method="asae", results=res(1, 1, 1, 0)), ref, "a")
    assert {k: v for k, v in s["vs_async"].items() if k != "ci95"} == {
        "wins": 2, "losses": 1, "p": 1.0, "difference": 0.25}
    assert s["successes"] == 3 and s["runs"] == 4
    unpaired = bench_stats.success(C(method="asae", results=res(1, 1, 1, 1)), ref, "b")
    assert unpaired["vs_async"] is None


def test_study_summary_of_the_miscoordinated_start():
    from types import SimpleNamespace as C
    import bench_study
    runs = [{"optimal": True, "final": [0, 0], "switches": 0, "first_simultaneous": None},
            {"optimal": False, "final": [1, 1], "switches": 1, "first_simultaneous": True},
            {"optimal": True, "final": [2, 2], "switches": 2, "first_simultaneous": False},
            {"error": "FloatingPointError: x"}]
    rec, _ = bench_study.summary({}, C(part="c", setting={"k": -10}, game="penalty:k=-10",
                                       method="async", results=runs), runs[:3])
    assert rec["successes"] == 2 and rec["runs"] == 4 and rec["vs_async"] is None
    assert rec["outcomes"] == {"(0, 0)": 1 / 3, "(2, 2)": 1 / 3, "(1, 1)": 1 / 3, "other": 0.0}
    assert rec["simultaneous_switches"]["mean"] == 1.0
    assert rec["simultaneous_switches"]["ci95"] == pytest.approx(4.303 / math.sqrt(3))
    assert rec["first_switch_simultaneous"]["runs"] == 1
    assert rec["first_switch_simultaneous"]["of"] == 2
    assert rec["per_seed"]["optimal"] == [1, 0, 1, 0]
    assert rec["per_seed"]["switches"] == [0, 1, 2, None]


def test_study_runs_each_distinct_setting_once():
    """The clip ablation runs the weight clip on asae alone and clip_ratio only under a PPO clip:
    elsewhere they change nothing (bit-identical runs), which is what lets it skip those runs."""
    env = bench_plan.make_game("penalty:k=-100:n_agents=3")

    def logits(method, **kw):
        cfg = TabularConfig(lr_actor=3.0, reward_scale=0.01, iterations=6, seed=2, **kw)
        return [z.tobytes() for z in tabular.train(env, method, cfg).logits]
    ppo_rows = [m for m in asae.METHODS if asae.METHOD_TABLE[m].clip == asae.PPO and m != "coma"]
    for m in ppo_rows:                             # coppo and a2po clip their own way
        assert (logits(m, sync_clip=None) == logits(m)) is (m != "asae"), m
        assert logits(m, clip_eps=None) == logits(m, clip_eps=None, clip_ratio="joint"), m
        assert logits(m, clip_ratio="joint") != logits(m), m


def test_study_cells_follow_the_design():
    import bench_study as st
    todo = st.cells(bench.parse_args(["study", "--quick", "--seeds", "2"]))
    parts = {p: [c for c in todo if c.part == p] for p in "abc"}
    assert len(parts["a"]) == 3 * 3 * 6 and len(parts["b"]) == 2 * 5 * 3 * 5
    assert len(parts["c"]) == 3 * 5
    firsts = {}
    for c in todo:
        firsts.setdefault((c.part, c.game, *c.setting.values()), c.method)
    assert set(firsts.values()) == {"async"}                    # async first in every setting
    assert len(firsts) == 9 + 30 + 3
    assert all(len(c.configs) == 2 and c.configs[0].seed == 0 for c in todo)
    a = {(c.setting["n"], c.setting["PPO clip"], c.method): c.configs[0] for c in parts["a"]}
    assert (a[4, "none", "asae:sync_clip=none"].clip_eps,
            a[4, "none", "asae:sync_clip=none"].sync_clip) == (None,) * 2
    assert a[2, "ε = 0.2, joint ratio", "happo"].clip_ratio == "joint"
    assert {(cfg.lr_actor, cfg.reward_scale, cfg.record_policies)
            for cfg in a.values()} == {(3.0, 0.01, False)}
    b = {(c.setting["n"], c.setting["lr_actor"], c.setting["epochs"]): c.configs[1]
         for c in parts["b"]}
    assert b[3, 30.0, 16].lr_actor == 30.0 and b[3, 30.0, 16].epochs == 16
    c = parts["c"][0].configs[1]
    assert [np.asarray(z).tolist() for z in c.init_logits] == [[[2, 0, 0]], [[0, 0, 2]]]
    assert c.record_policies and c.reward_scale == 0.1
    assert parts["c"][-1].configs[0].reward_scale == 0.01


def test_study_end_to_end_does_not_depend_on_jobs(tmp_path, capsys):
    out = {}
    for jobs in ("1", "2"):
        path = str(tmp_path / f"study{jobs}.json")
        assert bench.main(["study", "--quick", "--seeds", "1", "--quiet", "--jobs", jobs,
                           "--json", path]) == 0
        out[jobs] = strict_json(path)["study"]
        text = capsys.readouterr().out
        assert "Study a" in text and "Study b: step-size map, n = 3" in text
        assert "first switch simultaneous" in text
    assert [c["per_seed"] for c in out["1"]["cells"]] == [c["per_seed"] for c in out["2"]["cells"]]
    assert [t["rows"] for t in out["1"]["tables"]] == [t["rows"] for t in out["2"]["tables"]]
    assert [len(t["rows"]) for t in out["1"]["tables"]] == [54, 5, 5, 15]


def test_study_figures(tmp_path):
    pytest.importorskip("matplotlib")
    import bench_study
    assert bench.main(["study", "--quick", "--seeds", "1", "--quiet", "--jobs", "1",
                       "--plot", str(tmp_path)]) == 0
    for name in ("study_clips.png", "study_stepsize.png", "study_start.png"):
        assert os.path.getsize(tmp_path / name) > 10_000
    assert bench.SECTIONS["study"] is bench_study.study


# ---- the head-to-head study (bench_h2h) -------------------------------------------------------

def test_h2h_cells_follow_the_design():
    import bench_h2h as h
    todo, skipped = h.cells(bench.parse_args(["h2h", "--quick", "--agents", "2,7", "--seeds", "2"]))
    parts = {p: [c for c in todo if c.part == p] for p in "atrbg"}
    assert [c.method for c in parts["a"]] == [*h.METHODS, *h.METHODS[:-2]]     # exact up to n = 6
    assert set(skipped) == {("exact_sync", 7), ("exact_async", 7)}
    assert all("budget" in why for why in skipped.values())
    assert [c.method for c in parts["t"]] == ["async", "asae"] * 2
    assert [c.configs[0].iterations for c in parts["t"]] == [40, 40, 40, 40]
    assert parts["t"][0].key == ("a", "penalty:k=-100:n_agents=2", 2, 3.0) == parts["a"][0].key
    assert [c.method for c in parts["r"]] == list(h.SAMPLED) * 2
    assert all(c.configs[0].track_ratios for c in parts["r"])
    assert [c.setting["n"] for c in parts["b"]] == [2] * len(h.METHODS) \
        and parts["b"][0].outcome is h.h2h_bias_run
    g = {(c.game, c.method) for c in parts["g"]}
    assert ("grid", "exact_sync") not in g and ("climbing", "exact_sync") in g
    assert len(g) == 4 * len(h.METHODS) - 4
    cfgs = [c.configs[1] for c in todo]
    assert all(c.seed == 1 and not c.record_policies for c in cfgs)
    a = parts["a"][0].configs[0]
    assert (a.reward_scale, a.iterations, a.lr_actor, a.n_envs) == (0.01, 20, 3.0, 32)
    coppo = next(c for c in parts["a"] if c.method == "asae:clip_ratio=joint").configs[0]
    assert coppo.clip_ratio == "joint"
    assert not h.cells(bench.parse_args(["h2h", "--quick", "--agents", "3"]))[1]


def test_h2h_end_to_end_does_not_depend_on_jobs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = {}
    for jobs in ("1", "2"):
        path = str(tmp_path / f"h2h{jobs}.json")
        assert bench.main(["h2h", "--quick", "--seeds", "2", "--agents", "2", "--quiet", "--jobs",
                           jobs, "--json", path, "--docs", str(tmp_path)]) == 0
        out[jobs] = strict_json(path)["h2h"]
        assert "H2H a: n = 2 agents" in capsys.readouterr().out
    strip = lambda c: {k: v for k, v in c["per_seed"].items() if k != "cpu_s"}  # noqa: E731
    assert [strip(c) for c in out["1"]["cells"]] == [strip(c) for c in out["2"]["cells"]]
    titles = [t["title"] for t in out["1"]["tables"]]
    assert [t["rows"] for t in out["1"]["tables"] if "time" not in t["title"]] == [
        t["rows"] for t in out["2"]["tables"] if "time" not in t["title"]]
    assert len(titles) == 8 and (tmp_path / "h2h.png").stat().st_size > 10_000
    page = (tmp_path / "h2h.md").read_text()
    assert page.startswith("# Head to head") and "python bench.py h2h" in page
    cell = next(c for c in out["1"]["cells"] if c["part"] == "a" and c["method"] == "happo")
    assert set(cell["vs"]) == {"async", "asae"} and len(cell["vs"]["asae"]["ci95"]) == 2
    assert {"ppo_clip_binds", "ess_fraction"} <= set(
        next(c for c in out["1"]["cells"] if c["part"] == "r")["ratios"])
    assert "mean_abs_bias" in next(c for c in out["1"]["cells"] if c["part"] == "b")["bias"]


def test_h2h_summary_pairs_with_async_and_asae():
    from types import SimpleNamespace as C
    import bench_h2h
    refs, runs = {}, lambda *ok: [{"optimal": x, "cpu_s": 0.1, "wall_s": 0.2} for x in ok]
    key = ("a", "g", 2, 3.0)
    for m, ok in (("async", (1, 0, 0, 0)), ("asae", (1, 1, 0, 0))):
        rec, _ = bench_h2h.summary(refs, C(part="a", key=key, method=m, setting={},
                                           results=runs(*ok)), runs(*ok))
    assert set(rec["vs"]) == {"async"} and rec["vs"]["async"]["wins"] == 1
    rec, _ = bench_h2h.summary(refs, C(part="a", key=key, method="a2po", setting={},
                                       results=runs(0, 1, 1, 0)), runs(0, 1, 1, 0))
    assert (rec["vs"]["async"]["wins"], rec["vs"]["async"]["losses"]) == (2, 1)
    assert (rec["vs"]["asae"]["wins"], rec["vs"]["asae"]["losses"]) == (1, 1)
    rec, _ = bench_h2h.summary(refs, C(part="t", key=key, method="asae", setting={},
                                       results=runs(1, 1, 1, 1)), runs(1, 1, 1, 1))
    assert rec["vs"]["asae"]["wins"] == 2 and refs[key]["asae"] == [True, True, False, False]
    assert rec["median_cpu_s"] == 0.1
    with pytest.raises(SystemExit) as exit_:
        bench.parse_args(["h2h", "--agents", "1,2"])
    assert exit_.value.code == 2


# ---- the docs page ---------------------------------------------------------------------------

def test_docs_page_holds_every_table_and_figure(tmp_path):
    pytest.importorskip("matplotlib")
    docs, figs = tmp_path / "docs", tmp_path / "figs"
    code, data = run(tmp_path, "--jobs", "1", "--docs", str(docs), "--plot", str(figs))
    page = (docs / "results.md").read_text()
    assert code == 0 and page.startswith("# Bench results")
    for t in data["learn"]["tables"]:
        table = "\n".join("| " + " | ".join(map(str, r)) + " |" for r in t["rows"])
        assert table in page and f'<a id="{bench_run.anchor(t["title"])}"></a>' in page
    assert "](../figs/learning.png)" in page
    assert "| learn | 4 cells × 3 seeds = 12 training runs |" in page
    assert f"asae at git {data['meta']['git']}" in page and "Total wall time" in page


def test_docs_page_by_default_only_for_the_full_run():
    assert bench.parse_args([]).docs == os.path.join(bench.HERE, "docs")
    assert bench.parse_args(["h2h"]).docs == os.path.join(bench.HERE, "docs")   # docs/h2h.md
    assert bench.parse_args(["--docs", "none"]).docs is None
    for argv in (["--quick"], ["learn"], ["study"], ["h2h", "--quick"]):
        assert bench.parse_args(argv).docs is None, argv
    assert bench.parse_args([]).sections == ["speed", "learn", "bias", "study"]   # ≤ 10 minutes
    assert bench.parse_args(["--quick"]).sections == list(bench.SECTIONS)      # h2h too, quick


def test_docs_page_anchors_are_unique_and_short(capsys):
    from types import SimpleNamespace
    rep = bench_run.Report(SimpleNamespace(jobs=1, quick=True, quiet=True, json=None))
    for title in ("Study b: step-size map, n = 2, penalty k = −100", "Study b: step-size map, "
                  "n = 2, penalty k = −100", "Study b: step-size map, n = 3, penalty k = −100"):
        rep.table("study", title, ["h"], [[1]], None)
    assert [p.strip() for p in rep.page if "<a id=" in p] == [
        '<a id="study-b-step-size-map-n-2"></a>', '<a id="study-b-step-size-map-n-2-2"></a>',
        '<a id="study-b-step-size-map-n-3"></a>']


# ---- the modules ---------------------------------------------------------------------------

def project_imports(folder):
    """{module: project modules it imports anywhere (also inside functions)} over the
    non-test modules of ``folder``."""
    mods = {f[:-3] for f in os.listdir(folder) if f.endswith(".py") and not f.startswith("test_")
            and f != "conftest.py"}
    graph = {}
    for m in mods:
        tree = ast.parse(open(os.path.join(folder, m + ".py"), encoding="utf-8").read())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                 for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree)
                  if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        graph[m] = sorted(names & mods - {m})
    return graph


def cycle(graph):
    """A list of modules importing each other in a ring, or None."""
    state = {}

    def visit(m, path):
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n, path + [n])):
                return found
        state[m] = "done"
    return next((c for m in sorted(graph) if m not in state and (c := visit(m, [m]))), None)


def test_no_import_cycle_between_the_project_modules(tmp_path):
    graph = project_imports(bench.HERE)
    assert {"asae", "envs", "bench", "bench_run", "bench_study"} <= set(graph)
    assert cycle(graph) is None, cycle(graph)
    assert not [m for m, deps in graph.items() if "bench" in deps]   # bench.py is the entry only
    assert set(graph["asae"]) == set() and "asae" not in graph["envs"]
    assert cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    (tmp_path / "x.py").write_text("def f():\n    import y\n")
    (tmp_path / "y.py").write_text("from x import f\n")
    assert cycle(project_imports(tmp_path)) in (["x", "y", "x"], ["y", "x", "y"])


def test_bench_lines_fit_in_100_columns():
    for name in sorted(os.listdir(bench.HERE)):
        if name.startswith(("bench", "test_bench")) and name.endswith(".py"):
            with open(os.path.join(bench.HERE, name), encoding="utf-8") as f:
                long = [i for i, line in enumerate(f, 1) if len(line.rstrip("\n")) > 100]
            assert not long, f"{name}: lines {long} are longer than 100 columns"



# ---- the neural learners on Spread (bench_net) ---------------------------------------------
def test_spread_end_to_end_does_not_depend_on_jobs(tmp_path, capsys):
    """The same cells and numbers from one process and from two (speed tables aside)."""
    out = {}
    for jobs in ("1", "2"):
        path = str(tmp_path / f"spread{jobs}.json")
        assert bench.main(["spread", "--quick", "--seeds", "2", "--agents", "2", "--quiet",
                           "--jobs", jobs, "--json", path, "--docs", "none"]) == 0
        out[jobs] = strict_json(path)["spread"]
        assert "Spread m: every method with MLP actors, n = 2" in capsys.readouterr().out
    keys = ("part", "n", "method", "scores", "greedy_scores", "curves", "ratios")
    assert [{k: c[k] for k in keys} for c in out["1"]["cells"]] == [
        {k: c[k] for k in keys} for c in out["2"]["cells"]]
    import bench_net
    assert [c["method"] for c in out["1"]["cells"]] == ["async", *bench_net.METHODS]
    assert all(len(c["scores"]) == 2 and None not in c["scores"] for c in out["1"]["cells"])


def test_spread_paired_statistics_against_direct_computation():
    import bench_net
    a = [0.5, 0.2, None, 0.9, 0.4]
    b = [0.1, 0.3, 0.7, 0.9, 0.2]
    p = bench_net.paired_scores(a, b)
    diffs = [0.4, -0.1, 0.0, 0.2]                     # the seed without a score is dropped
    assert p["pairs"] == 4 and p["wins"] == 2 and p["losses"] == 1
    assert p["mean_diff"] == pytest.approx(np.mean(diffs))
    assert p["p_sign"] == pytest.approx(1.0)          # 2 wins, 1 loss: two-sided p = 1
    lo, hi = p["ci95"]
    assert min(diffs) <= lo <= np.mean(diffs) <= hi <= max(diffs)
    x = np.random.default_rng(5).normal(1.0, 1.0, 400)
    lo, hi = bench_net.bootstrap_mean_ci(x)
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.3 * se)
    assert hi == pytest.approx(x.mean() + 1.96 * se, abs=0.3 * se)


@pytest.mark.parametrize("method,kw", [("async", {}), ("happo", {}),
                                       ("asae", dict(share_actor=True, layers=1)),
                                       ("async", dict(layer_norm=False))])
def test_spread_flop_count_matches_the_matrix_products_of_an_update(monkeypatch, method, kw):
    """net_flops against the products the update really runs: every MLP forward counted
    with its rows and layer shapes (2 flops per multiply-add), every backward as twice its
    forward's."""
    import bench_net
    import envs_spread
    env = envs_spread.Spread(n_agents=3)
    cfg = neural.NetConfig(n_envs=4, rollout_len=5, epochs=2, minibatches=2, iterations=1,
                         eval_episodes=1, **kw)
    _, run, (n, n_actions, d, S) = neural._net_setup(env, method, cfg)
    hp = learner._hyper(cfg, method)
    T, B = cfg.rollout_len, cfg.n_envs
    batch = neural._NetBatch(np.zeros((T, B, n, d)), np.zeros((T, B, n), np.int64),
                           np.zeros((T, B)), np.zeros((T, B), bool), np.zeros((T, B), bool),
                           np.zeros((T, B, S)), np.zeros((T, B, S)))
    rng = learner._rng(0)
    carry = [*map(lambda x: np.asarray(x, float), env.reset(B, seed=0)), np.zeros(B)]
    neural._net_rollout(env, run, carry, rng, batch)
    count = [0]
    forward, backward = neural.MLP.forward, neural.MLP.backward

    def cost(net, rows):
        return 2 * rows * sum(a * b for a, b in (s for s in net.shapes if len(s) == 2))

    def fwd(self, theta, x, cache=None):
        count[0] += cost(self, x.shape[0])
        return forward(self, theta, x, cache)

    def bwd(self, theta, cache, dy, grad):         # without an input LayerNorm no dx at the
        first = self.shapes[0]                     # input (MLP.backward's last product)
        count[0] += 2 * cost(self, dy.shape[0]) - (
            0 if self.layer_norm else 2 * dy.shape[0] * first[0] * first[1])
        return backward(self, theta, cache, dy, grad)
    monkeypatch.setattr(neural.MLP, "forward", fwd)
    monkeypatch.setattr(neural.MLP, "backward", bwd)
    neural._net_update(hp, cfg, run, batch, rng, learner._Log(np.zeros(1), (), np.zeros(1)))
    update, _ = bench_net.net_flops(cfg, n, d, S, max(n_actions), method == "happo")
    assert count[0] == update


@pytest.mark.parametrize("kw", [dict(), dict(share_actor=True, layers=3, hidden=8),
                                dict(precision="float32", epochs=2, minibatches=3),
                                dict(layer_norm=False)])
def test_matmul_replay_runs_the_update_s_passes_at_their_shapes(monkeypatch, kw):
    """Part s's ceiling replays the update's network passes — the same rows per chunk, input
    widths and backward passes as the real update (every MLP call recorded), in any order —
    and exactly the products net_flops counts."""
    import bench_net
    import envs_spread
    env = envs_spread.Spread(n_agents=3)
    cfg = neural.NetConfig(n_envs=40, rollout_len=25, iterations=1, eval_episodes=1,
                           **kw)                                 # 1,000 rows: 2 chunks
    _, run, (n, n_actions, d, S) = neural._net_setup(env, "async", cfg)
    T, B = cfg.rollout_len, cfg.n_envs
    batch = neural._NetBatch(np.zeros((T, B, n, d)), np.zeros((T, B, n), np.int64),
                             np.zeros((T, B)), np.zeros((T, B), bool),
                             np.zeros((T, B), bool), np.zeros((T, B, S)), np.zeros((T, B, S)))
    rng = learner._rng(0)
    carry = [*map(lambda x: np.asarray(x, float), env.reset(B, seed=0)), np.zeros(B)]
    neural._net_rollout(env, run, carry, rng, batch)
    seen, forward = [], neural.MLP.forward

    def fwd(self, theta, x, cache=None):
        seen.append((x.shape[0], x.shape[1], cache is not None))
        return forward(self, theta, x, cache)
    monkeypatch.setattr(neural.MLP, "forward", fwd)
    neural._net_update(learner._hyper(cfg, "async"), cfg, run, batch, rng,
                       learner._Log(np.zeros(1), (), np.zeros(1)))
    seconds, flops, passes, dtypes = bench_net.matmul_replay(cfg, n, d, S, max(n_actions), 1)
    assert sorted(passes) == sorted(seen) and seconds > 0 and dtypes == {cfg.precision}
    assert flops == bench_net.net_flops(cfg, n, d, S, max(n_actions))[0]


def test_spread_speed_part_alone_writes_its_page(tmp_path, capsys):
    """--parts s with --docs: a page of timings (no cells) — once a raw ValueError; the
    replay's column is its median time and its share of the update's."""
    path = str(tmp_path / "s.json")
    assert bench.main(["spread", "--quick", "--parts", "s", "--agents", "2", "--quiet",
                       "--jobs", "1", "--docs", str(tmp_path), "--json", path]) == 0
    page = (tmp_path / "spread.md").read_text()
    assert "| spread | 2 rows of \"Spread s: the neural update's speed\" |" in page
    assert "its matmuls alone" in page
    out = capsys.readouterr().out
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 2 | float")]
    runs = strict_json(path)["spread"]["tables"][0]["records"]["runs"]
    assert [r[1] for r in rows] == [r["precision"] for r in runs] == ["float64", "float32"]
    for row, run in zip(rows, runs):
        assert row[7] == (f"{run['matmul_replay_s'] * 1e3:.0f} ms "
                          f"({100 * run['matmul_replay_s'] / run['update_s']:.0f} %)")


def test_spread_figure_draws_parts_p_and_a_beside_their_references(tmp_path, monkeypatch):
    """Panels: learning (part l and part p's curves), the budget study (part b's arms), their
    difference from async seed by seed (a trailing mean per seed, then the mean over seeds),
    and sharing (each shared arm beside its own-network run, dashed, in its colour)."""
    pytest.importorskip("matplotlib")
    import bench_net
    figures = []
    real = bench_plot.save_figure

    def keep(plt, fig, out_dir, name):
        figures.append([[(ln.get_label(), ln.get_linestyle(), ln.get_color(), ln.get_ydata())
                         for ln in ax.get_lines() if not ln.get_label().startswith("_")]
                        for ax in fig.axes])
        return real(plt, fig, out_dir, name)
    monkeypatch.setattr(bench_plot, "save_figure", keep)
    rng = np.random.default_rng(0)

    def rec(part, method):
        return {"part": part, "n": 3, "method": method,
                "curves": [list(rng.random(14)), None, list(rng.random(14))]}
    records = [rec("l", "async"), rec("p", bench_net.PRECISION_METHOD), rec("b", "async"),
               rec("b", "asae"), *(rec("a", m) for m in bench_net.SHARED_METHODS)]
    records[3]["curves"][1] = [0.5] * 14                        # async has no run there
    bench_plot.spread_figure(records, str(tmp_path))
    learning, budget, diff, sharing = figures[0]
    assert [x[0] for x in learning] == ["async n = 3", "async n = 3 float32"]
    assert [x[0] for x in budget] == ["async", "asae"]
    (label, _, _, y), = diff
    a, b = (np.array([r["curves"][0], r["curves"][2]]) for r in (records[3], records[2]))
    want = [np.mean((a - b)[:, max(0, t - bench_plot.SMOOTH + 1):t + 1]) for t in range(14)]
    assert label == "asae" and np.allclose(y, want, rtol=1e-12)
    assert [x[:2] for x in sharing] == [("async", "-"), ("async:share_actor=true", "--"),
                                        ("asae", "-"), ("asae:share_actor=true", "--")]
    assert sharing[0][2] == sharing[1][2] == budget[0][2] != sharing[2][2] == sharing[3][2]
    bench_plot.spread_figure(records[2:4], str(tmp_path))       # --parts b: no learning panel
    assert [[x[0] for x in ax] for ax in figures[1]] == [["async", "asae"], ["asae"]]


def test_spread_budget_flags_reach_the_configs(capsys):
    import bench_net
    args = bench.parse_args(["spread", "--seeds", "3", "--agents", "3,5",
                             "--study-iterations", "400", "--learn-iterations", "1000",
                             "--budget-iterations", "700"])
    todo = bench_net.cells(args)
    assert todo[0].part == "l" and {c.iterations for c in todo[0].configs} == {1000}
    assert [c.seed for c in todo[0].configs] == [0, 1, 2]
    study = [c for c in todo if c.part == "m"]
    assert len(study) == 2 * len(bench_net.METHODS) and {c.n for c in study} == {3, 5}
    assert {(x.iterations, x.n_envs, x.track_ratios) for c in study for x in c.configs} == {
        (400, 32, True)}
    budget = [c for c in todo if c.part == "b"]
    assert [c.method for c in budget] == list(bench_net.BUDGET_METHODS) * 2
    assert {(x.iterations, x.n_envs, x.rollout_len, x.track_ratios)
            for c in budget for x in c.configs} == {(700, 128, 25, True)}
    shared = [c for c in todo if c.part == "a"]
    assert [c.method for c in shared] == list(bench_net.SHARED_METHODS) * 2
    assert all(x.share_actor and x.iterations == 700 for c in shared for x in c.configs)
    precision = [c for c in todo if c.part == "p"]
    assert len(precision) == 1 and {x.precision for x in precision[0].configs} == {"float32"}
    assert {x.iterations for x in precision[0].configs} == {1000}
    assert len(todo) == 2 + len(study) + len(budget) + len(shared)
    default = bench_net.cells(bench.parse_args(["spread"]))
    assert {c.n for c in default if c.part == "b"} == {3}
    assert {x.iterations for c in default if c.part == "b" for x in c.configs} == {625}
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["spread", "--study-iterations", "0"])
    assert e.value.code == 2 and "--study-iterations" in capsys.readouterr().err


def test_spread_figure_with_the_learning_part_alone(tmp_path):
    """--parts l has no method panels: the figure is the learning panel (no empty legend)."""
    pytest.importorskip("matplotlib")
    import bench_plot
    rec = {"part": "l", "n": 3, "method": "async",
           "curves": [[0.1, 0.2, None, 0.4], [0.0, 0.3, 0.35, 0.5]]}
    path = bench_plot.spread_figure([rec], str(tmp_path))
    assert path.endswith("spread.png") and (tmp_path / "spread.png").stat().st_size > 5_000


# ---- the run cache (--cache): a stopped study resumes -----------------------------------------

def test_run_cache_resumes_a_stopped_study(tmp_path, monkeypatch, capsys):
    """A spread study with --cache, stopped after some runs (here: the runs that a first,
    smaller command made — 1 seed), then run in full: only the missing runs run, and every
    number equals a run without the cache; run again, nothing runs at all."""
    import bench_net
    import bench_run
    cache = str(tmp_path / "cache")
    common = ["spread", "--quick", "--agents", "2", "--parts", "m", "--quiet", "--jobs", "1",
              "--docs", "none"]
    assert bench.main([*common, "--seeds", "1", "--cache", cache,
                       "--json", str(tmp_path / "a.json")]) == 0
    first = len(os.listdir(cache))
    assert first == len(bench_net.METHODS)                      # one run per method, seed 0
    calls = []
    real = bench_net.spread_run

    def counted(env, method, cfg, **kw):
        calls.append((method, cfg.seed))
        return real(env, method, cfg, **kw)
    monkeypatch.setattr(bench_net, "spread_run", counted)
    counted.__wrapped__ = real
    assert bench.main([*common, "--seeds", "2", "--cache", cache,
                       "--json", str(tmp_path / "b.json")]) == 0
    assert sorted(calls) == sorted((m.split(":")[0], 1) for m in bench_net.METHODS)
    assert len(os.listdir(cache)) == 2 * first
    calls.clear()
    assert bench.main([*common, "--seeds", "2", "--cache", cache,
                       "--json", str(tmp_path / "c.json")]) == 0
    assert calls == []
    assert bench.main([*common, "--seeds", "2", "--json", str(tmp_path / "d.json")]) == 0
    keys = ("method", "scores", "greedy_scores", "curves", "ratios")
    cells = [[{k: c[k] for k in keys} for c in strict_json(str(tmp_path / f"{x}.json"))
              ["spread"]["cells"]] for x in "bcd"]
    assert cells[0] == cells[1] == cells[2]
    capsys.readouterr()


def test_run_key_names_code_config_seed_and_outcome(monkeypatch):
    import bench_net
    import bench_run
    cfg = neural.NetConfig(seed=0)
    task = (bench_net.spread_run, "spread:n_agents=2", "asae", cfg)
    key = bench_run.run_key(task)
    assert key == bench_run.run_key((bench_net.spread_run, "spread:n_agents=2", "asae",
                                     neural.NetConfig(seed=0)))
    others = [(bench_net.spread_run, "spread:n_agents=2", "asae", neural.NetConfig(seed=1)),
              (bench_net.spread_run, "spread:n_agents=3", "asae", cfg),
              (bench_net.spread_run, "spread:n_agents=2", "async", cfg),
              (bench_net.spread_run, "spread:n_agents=2", "asae",
               neural.NetConfig(seed=0, precision="float32")),
              (bench_net.summary, "spread:n_agents=2", "asae", cfg)]
    assert len({key, *(bench_run.run_key(t) for t in others)}) == 1 + len(others)
    bench_run.library_identity.cache_clear()
    monkeypatch.setattr(bench_run.platform, "python_version", lambda: "0.0.0")
    assert bench_run.run_key(task) != key                      # another Python: another key
    bench_run.library_identity.cache_clear()


def test_run_cache_ignores_torn_files_and_keeps_nan(tmp_path):
    import bench_run
    c = bench_run.RunCache(str(tmp_path))
    task = (bench_run.run_seed, "climbing", "async", tabular.TabularConfig(seed=2))
    assert c.get(task) is None
    c.put(task, {"score": float("nan"), "x": np.arange(2), "error": "kept out"})
    assert c.get(task) is None                                  # an error is never cached
    c.put(task, {"score": float("nan"), "x": np.arange(2)})
    got = c.get(task)
    assert math.isnan(got["score"]) and got["x"] == [0, 1]
    path = tmp_path / (bench_run.run_key(task) + ".json")
    path.write_text(path.read_text()[:10])                      # torn: read as absent
    assert c.get(task) is None


def test_status_reports_cached_missing_and_foreign_runs(tmp_path, monkeypatch, capsys):
    """--status runs nothing and reports, per cell, the runs the cache holds and lacks, the
    CPU-hours left at the cell's median cached CPU time, and (once) the folder's runs of
    other code (a changed version) or torn files; every cached run records its code and
    machine."""
    import bench_net
    import bench_run
    cache = tmp_path / "cache"
    common = ["spread", "--quick", "--agents", "2", "--parts", "m", "--quiet", "--jobs", "1",
              "--cache", str(cache)]
    assert bench.main([*common, "--seeds", "1", "--docs", "none"]) == 0
    files = sorted(cache.iterdir())
    recs = [json.loads(f.read_text()) for f in files]
    assert {(r["identity"], r["machine"]) for r in recs} == {
        (bench_run.library_identity(), bench_run.machine())}
    old = dict(recs[0], identity="0123 python 3.0 numpy 1.0 numba 0.1")
    (cache / ("f" * 32 + ".json")).write_text(json.dumps(old))
    (cache / ("e" * 32 + ".json")).write_text("{torn")
    (cache / ("d" * 32 + ".json")).write_text(json.dumps({"result": None}))
    (cache / ("c" * 32 + ".json")).write_text(json.dumps({"result": {}, "identity": [1]}))

    def refused(*a, **k):
        """Nothing may run under --status."""
        raise AssertionError("--status ran a run")
    refused.__wrapped__ = bench_net.spread_run                  # the same cache keys
    monkeypatch.setattr(bench_net, "spread_run", refused)
    monkeypatch.setattr(bench, "dask_client", refused)         # --dask: no cluster contacted
    capsys.readouterr()
    path = tmp_path / "s.json"
    assert bench.main([*common, "--seeds", "2", "--status", "--json", str(path), "--docs",
                       str(tmp_path / "page"), "--dask", "tcp://127.0.0.1:1"]) == 0
    out = capsys.readouterr().out
    table = strict_json(str(path))["spread"]["tables"][0]
    assert [r[2:4] for r in table["rows"]] == [[1, 1]] * len(bench_net.METHODS)
    cpu = {(r["method"]): r["result"]["cpu_s"] for r in recs}
    for row, rec, m in zip(table["rows"], table["records"], bench_net.METHODS):
        assert row[0].endswith(m + " n=2") and rec["method"] == m
        assert rec["cpu_hours_left"] == pytest.approx(cpu[m] / 3600, rel=1e-12)
    assert f"{len(recs)} of {2 * len(recs)} runs cached, {len(recs)} to run, ≈" in out
    assert out.count("that no run of this command reads") == 1
    assert ("by the code that wrote them: 3 × unreadable; 1 × 0123 python 3.0 numpy 1.0 "
            "numba 0.1. This code") in out
    assert not (tmp_path / "page").exists()                     # no page of a run that ran nothing
    for argv in (["speed"], ["spread", "--parts", "s"]):      # sections without cached runs
        monkeypatch.setitem(bench.SECTIONS, "speed", refused)
        monkeypatch.setattr(bench_net, "part_s", refused)
        assert bench.main([*argv, "--status", "--cache", str(cache)]) == 0
        assert "no runs to cache" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["spread", "--status"])
    assert e.value.code == 2 and "--status needs --cache" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["spread", "--status", "--cache", str(tmp_path / "typo")])
    assert e.value.code == 2 and "existing --cache folder" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_status_estimates_at_the_cell_median_else_stage_else_any_run(tmp_path, capsys):
    """A cell's missing runs cost its cached runs' median CPU time; a cell with none, its
    stage's median; a stage with none, every cached run's; no cached run at all: no estimate.
    Files that are not runs of ours (no result, a non-finite time) do not count."""
    import bench_run
    rep = bench_run.Report(SimpleNamespace(jobs=1, quick=True, quiet=True, json=None))

    def cell(method, stage, seeds=4):
        return SimpleNamespace(game="climbing", method=method, stage=stage,
                               configs=[TabularConfig(seed=s) for s in range(seeds)])
    cells = [cell("async", 0), cell("asae", 0), cell("happo", 1), cell("coppo", 1)]
    c = bench_run.RunCache(str(tmp_path))
    for s, cpu in enumerate((10.0, 20.0, 90.0)):                # median 20, mean 40
        c.put((bench_run.run_seed, "climbing", "async", cells[0].configs[s]), {"cpu_s": cpu})
    c.put((bench_run.run_seed, "climbing", "happo", cells[2].configs[0]), {"cpu_s": 7.0})
    c.put((bench_run.run_seed, "climbing", "coppo", cells[3].configs[0]), {"cpu_s": math.inf})
    keys = bench_run.cache_status(rep, "x", cells, c, bench_run.run_seed)
    assert len(keys) == 16
    recs = rep.data["x"]["tables"][-1]["records"]
    assert [(r["cached"], r["missing"]) for r in recs] == [(3, 1), (0, 4), (1, 3), (1, 3)]
    want = [20.0, 4 * 20.0, 3 * 7.0, 3 * 7.0]                 # cell; stage 0; cell; stage 1
    assert [r["cpu_hours_left"] * 3600 for r in recs] == pytest.approx(want, rel=1e-12)
    rep2 = bench_run.Report(SimpleNamespace(jobs=1, quick=True, quiet=True, json=None))
    bench_run.cache_status(rep2, "y", [cell("async", 0), cell("a2po", 5)], c,
                           bench_run.run_seed)
    recs = rep2.data["y"]["tables"][-1]["records"]
    assert recs[1]["cpu_hours_left"] * 3600 == pytest.approx(4 * 20.0)   # any run's median
    empty = bench_run.RunCache(str(tmp_path / "empty"))
    bench_run.cache_status(rep2, "z", [cell("async", 0)], empty, bench_run.run_seed)
    (rec,) = rep2.data["z"]["tables"][-1]["records"]
    assert rec["cpu_hours_left"] is None and rec["missing"] == 4
    assert "no estimate yet for 4" in capsys.readouterr().out


def test_spread_budget_part_runs_every_arm_paired(tmp_path, capsys):
    import bench_net
    path = str(tmp_path / "b.json")
    assert bench.main(["spread", "--quick", "--parts", "b", "--seeds", "2", "--agents", "2",
                       "--quiet", "--jobs", "1", "--json", path, "--docs", "none"]) == 0
    out = capsys.readouterr().out
    assert "Spread b: every method at 800 env steps" in out
    assert "Spread b: where in training" in out and "Spread b: ratio statistics" in out
    cells = strict_json(path)["spread"]["cells"]
    assert [c["method"] for c in cells] == list(bench_net.BUDGET_METHODS)
    assert all(c["part"] == "b" and len(c["curves"]) == 2 and len(c["curves"][0]) == 4
               for c in cells)
    assert cells[0]["config"]["iterations"] == 4 and cells[0]["config"]["track_ratios"]
    table = next(t for t in strict_json(path)["spread"]["tables"]
                 if t["title"].startswith("Spread b: every method"))
    assert table["records"]["holm"] == bench_net.holm_family(
        {(c["n"], c["method"]): c for c in cells}, [2], bench_net.BUDGET_METHODS)
    family = table["records"]["holm"][0]
    assert ("adjusted by Holm's step-down over the arms of each n — n = 2: final score "
            + ", ".join(f"{m} {bench_net.pfmt(p)}" for m, p in family["final"].items())
            + "; AUC " + ", ".join(f"{m} {bench_net.pfmt(p)}" for m, p in family["auc"].items())
            + " (the bootstrap") in out
    with pytest.raises(SystemExit):
        bench.main(["spread", "--parts", "x"])


def test_spread_budget_holm_family_on_synthetic_records():
    """Per n, each arm's sign-test p against async, Holm-adjusted over the arms: final score
    and AUC (the mean of the whole curve); seeds pair by index when runs failed on either
    side; an arm with < 2 paired seeds has no test and does not count."""
    import bench_net
    base = np.linspace(0.2, 0.6, 10)

    def shifted(wins):                        # ahead of async on the first ``wins`` seeds
        return [float(x + (0.1 if k < wins else -0.1)) for k, x in enumerate(base)]

    def cell(final_wins, auc_wins):           # curves: mean at the shifted value, not flat
        return {"scores": shifted(final_wins),
                "curves": [[x + 0.3, x + 0.3, x - 0.3, x - 0.3] for x in shifted(auc_wins)]}
    by = {(3, "async"): {"scores": list(base), "curves": [[x] * 4 for x in base]},
          (3, "asae"): cell(10, 5), (3, "happo"): cell(8, 10), (3, "a2po"): cell(5, 8),
          (3, "coppo"): {"scores": [0.5] + [None] * 9, "curves": [[0.5] * 4] + [None] * 9}}
    by[3, "async"]["scores"][9] = by[3, "async"]["curves"][9] = None     # failed runs
    by[3, "asae"]["scores"][0] = by[3, "asae"]["curves"][0] = None
    (fam,) = bench_net.holm_family(by, [3], bench_net.BUDGET_METHODS)

    def sign_p(a, b):                          # the slow way: seed by seed, both present
        w = sum(x is not None and y is not None and x > y for x, y in zip(a, b))
        lo = sum(x is not None and y is not None and x < y for x, y in zip(a, b))
        return bench_stats.sign_test(w, lo)
    auc = {m: [None if c is None else float(np.mean(c)) for c in by[3, m]["curves"]]
           for m in ("async", "asae", "happo", "a2po")}
    for what, get in (("final", lambda m: by[3, m]["scores"]), ("auc", lambda m: auc[m])):
        ps = {m: sign_p(get(m), get("async")) for m in ("asae", "happo", "a2po")}
        order = sorted(ps, key=ps.get)
        want, run = {"coppo": None}, 0.0
        for j, m in enumerate(order):
            run = max(run, min(1.0, (3 - j) * ps[m]))
            want[m] = run
        assert set(fam[what]) == set(want)
        for m, x in want.items():
            assert fam[what][m] == (None if x is None else pytest.approx(x, rel=1e-12))
    assert fam["final"]["asae"] == pytest.approx(3 * bench_stats.sign_test(8, 0))
    assert bench_net.holm_family({}, [3], bench_net.BUDGET_METHODS) == []


def test_spread_precision_and_sharing_parts_pair_with_their_reference_runs(tmp_path, capsys):
    """--parts pa runs what they pair with (part l's float64 runs; part b's async and asae),
    each arm's Configs equal to its reference's but for the one field; the tables' paired
    differences equal a direct computation from the JSON."""
    import bench_net
    path = str(tmp_path / "pa.json")
    assert bench.main(["spread", "--quick", "--parts", "pa", "--seeds", "3", "--agents", "2",
                       "--quiet", "--jobs", "1", "--json", path, "--docs", "none"]) == 0
    out = capsys.readouterr().out
    data = strict_json(path)["spread"]
    cells = {(c["part"], c["method"]): c for c in data["cells"]}
    assert sorted(cells) == sorted([("l", "async"), ("p", bench_net.PRECISION_METHOD),
                                    ("b", "async"), ("b", "asae"),
                                    *(("a", m) for m in bench_net.SHARED_METHODS)])

    def differ(a, b):
        return {k for k in a["config"] if a["config"][k] != b["config"][k]}
    assert differ(cells["p", bench_net.PRECISION_METHOD], cells["l", "async"]) == {"precision"}
    for m in bench_net.SHARED_METHODS:
        assert differ(cells["a", m], cells["b", m.split(":")[0]]) == {"share_actor"}
    assert "Spread p: float32 against float64" in out and "Spread a: parameter sharing" in out
    assert "Spread b: every method" not in out                 # b's runs, not its tables
    p32, p64 = cells["p", bench_net.PRECISION_METHOD]["scores"], cells["l", "async"]["scores"]
    diff = np.array(p32) - np.array(p64)
    want = bench_net.paired_scores(p32, p64)
    assert want["mean_diff"] == pytest.approx(diff.mean()) and want["pairs"] == 3
    assert bench_net.fmt_paired(want) in out
    own, shared = cells["b", "asae"]["scores"], cells["a", "asae:share_actor=true"]["scores"]
    assert bench_net.fmt_paired(bench_net.paired_scores(shared, own)) in out
    a_own, a_shared = cells["b", "async"]["scores"], cells["a", "async:share_actor=true"]["scores"]
    did = (np.array(shared) - np.array(a_shared)) - (np.array(own) - np.array(a_own))
    got = bench_net.paired_scores(list(np.array(shared) - np.array(a_shared)),
                                  list(np.array(own) - np.array(a_own)))
    assert got["mean_diff"] == pytest.approx(did.mean())
    assert f"shared − own, seed by seed: {bench_net.fmt_paired(got)}" in out


class _Tables:
    """A stand-in for bench_run.Report that keeps what the parts' tables receive."""

    def __init__(self):
        self.tables = []

    def table(self, section, title, headers, rows, data, notes):
        self.tables.append(SimpleNamespace(title=title, headers=headers, rows=rows, data=data,
                                           notes=notes))


def test_precision_table_against_direct_computation():
    """Part p's paired difference is float32 − float64 seed by seed (a failed run drops its
    pair, never shifts the seeds), its verdict against the margin, the AUC's sign and the
    CPU ratio float32/float64 (synthetic records)."""
    import bench_net
    f64 = {"part": "l", "n": 3, "scores": [0.50, 0.40, 0.60, None, 0.55],
           "cpu_s": [10, 10, 12, None, 8],
           "curves": [[0.1, 0.5], [0.2, 0.4], [0.3, 0.6], None, [0.1, 0.55]]}
    f32 = {"part": "p", "n": 3, "scores": [0.52, None, 0.61, 0.70, 0.58],
           "cpu_s": [6, None, 6, 7, 4],
           "curves": [[0.1, 0.6], None, [0.3, 0.61], [0.2, 0.7], [0.1, 0.58]]}
    rep = _Tables()
    bench_net.part_p(rep, [f64, f32], neural.NetConfig())
    t = rep.tables[0]
    assert t.data["paired"]["pairs"] == 3                      # seeds 0, 2, 4
    assert t.data["paired"]["mean_diff"] == pytest.approx(np.mean([0.02, 0.01, 0.03]))
    assert t.data["auc_paired"]["mean_diff"] == pytest.approx(np.mean([0.05, 0.005, 0.015]))
    assert t.data["cpu_ratio_median"] == pytest.approx(0.5)   # 0.6, 0.5, 0.5
    assert [r[0] for r in t.rows] == ["float64", "float32"] and t.rows[1][2] == "0.595"
    assert "inside ±0.05" in t.notes[0] and "not inside" not in t.notes[0]
    f32["scores"] = [0.40, None, 0.61, 0.70, 0.58]             # seed 0: −0.10
    rep = _Tables()
    bench_net.part_p(rep, [f64, f32], neural.NetConfig())
    assert "not inside ±0.05" in rep.tables[0].notes[0]
    f32["scores"] = [None, None, 0.61, None, None]            # one pair: no interval
    rep = _Tables()
    bench_net.part_p(rep, [f64, f32], neural.NetConfig())
    assert "undetermined (fewer than 2 paired seeds)" in rep.tables[0].notes[0]
    f32["scores"], f32["cpu_s"] = [None] * 5, [None] * 5       # a cell without a finished run
    rep = _Tables()
    bench_net.part_p(rep, [f64, f32], neural.NetConfig())
    assert rep.tables[0].rows[1] == ["float32", 0, "—", "—", "0/0 [0.00, 1.00]", "—"]
    assert "nan" not in repr(rep.tables[0].rows) + rep.tables[0].notes[0]


def test_sharing_table_against_direct_computation():
    """Part a's cells: shared − own, its AUC, shared asae − shared async, and the difference
    of the differences, each seed by seed with failed runs dropping their pair."""
    import bench_net
    sa, sx = bench_net.SHARED_METHODS

    def rec(part, method, scores, last):
        return {"part": part, "n": 3, "method": method, "scores": scores,
                "cpu_s": [1.0] * len(scores), "ratios": [None] * len(scores),
                "curves": [None if x is None else [0.0, x] for x in last]}
    records = [rec("b", "async", [0.5, 0.6, 0.7, 0.4], [0.5, 0.6, 0.7, 0.4]),
               rec("b", "asae", [0.6, 0.6, None, 0.5], [0.6, 0.6, None, 0.5]),
               rec("a", sa, [0.4, 0.7, 0.8, 0.4], [0.3, 0.7, 0.8, 0.4]),
               rec("a", sx, [0.7, 0.6, 0.9, 0.2], [0.7, 0.6, 0.9, 0.2])]
    rep = _Tables()
    bench_net.part_a(rep, records, SimpleNamespace(budget_agents=(3,), seeds=4),
                     neural.NetConfig())
    rows = {r[1]: r for r in rep.tables[0].rows}

    def paired(a, b):
        return bench_net.fmt_paired(bench_net.paired_scores(a, b))
    assert rows[sa][3] == paired([0.4, 0.7, 0.8, 0.4], [0.5, 0.6, 0.7, 0.4])
    assert rows[sa][4] == paired([0.15, 0.35, 0.4, 0.2], [0.25, 0.3, 0.35, 0.2])
    assert rows[sa][5] == "—" and rows[sx][5] == paired([0.7, 0.6, 0.9, 0.2],
                                                       [0.4, 0.7, 0.8, 0.4])
    got = rep.tables[0].data["asae_minus_async"][0]
    assert got["own"]["mean_diff"] == pytest.approx(np.mean([0.1, 0.0, 0.1]))
    assert got["shared"]["mean_diff"] == pytest.approx(np.mean([0.3, -0.1, 0.1, -0.2]))
    assert got["shared_minus_own"]["pairs"] == 3               # seed 2: asae own failed
    assert got["shared_minus_own"]["mean_diff"] == pytest.approx(
        np.mean([0.3 - 0.1, -0.1 - 0.0, -0.2 - 0.1]))
    assert bench_net.fmt_paired(got["shared_minus_own"]) in rep.tables[0].notes[0]


def test_cache_queues_the_cheap_parts_first_then_seed_by_seed(tmp_path, monkeypatch, capsys):
    """With --cache the runs go in stage order (bench_net.STAGES: l and p, then b, then a),
    seed by seed within a stage: a study stopped early holds whole paired seeds of the parts
    that come first."""
    import bench_net
    calls, real = [], bench_net.spread_run

    def counted(env, method, cfg, **kw):
        calls.append((kw.get("label", "").split()[1], cfg.seed))
        return {"score": 0.0, "greedy_score": 0.0, "curve": [0.0], "cpu_s": 0.0, "wall_s": 0.0}
    counted.__wrapped__ = real
    monkeypatch.setattr(bench_net, "spread_run", counted)
    assert bench.main(["spread", "--quick", "--parts", "apb", "--seeds", "2", "--agents", "2",
                       "--quiet", "--jobs", "1", "--docs", "none",
                       "--cache", str(tmp_path / "c")]) == 0
    arms = len(bench_net.BUDGET_METHODS)
    shared = len(bench_net.SHARED_METHODS)
    assert calls == ([("l", 0), ("p", 0), ("l", 1), ("p", 1)] + [("b", 0)] * arms
                     + [("b", 1)] * arms + [("a", 0)] * shared + [("a", 1)] * shared)
    capsys.readouterr()


def test_curve_windows_and_crossing_against_direct_computation():
    import bench_net
    curves = [[0.1, 0.2, None, 0.4], [0.3, None, 0.5, 0.7], None]
    whole = bench_net.curve_means(curves)
    assert whole[:2] == pytest.approx([0.7 / 3, 0.5]) and whole[2] is None
    got = bench_net.curve_means(curves, 0.5, 1.0)
    assert got[0] == pytest.approx(0.4) and got[1] == pytest.approx(0.6) and got[2] is None
    assert bench_net.curve_means([[None, None]]) == [None]
    rising = [[0.1 * k for k in range(12)]] * 3
    # medians 0, 0.1, …; their 3-update means pass 0.55 first over updates 6–8 (0.5, 0.6, 0.7)
    assert bench_net.crossing(rising, 0.55, smooth=3) == 8
    assert bench_net.crossing(rising, 5.0, smooth=3) is None


def test_h2h_variant_pairs_pool_the_seeds_of_each_n():
    import bench_h2h as h

    def cell(method, n, lr, ok):
        return {"part": "a", "method": method, "setting": {"n": n, "lr_actor": lr},
                "per_seed": {"optimal": ok}}
    records = [cell("coppo", 2, 3.0, [1, 1, 0]), cell("coppo:coppo_detach=true", 2, 3.0, [1, 0, 0]),
               cell("coppo", 3, 3.0, [0, 1]), cell("coppo:coppo_detach=true", 3, 3.0, [1, 1]),
               cell("coppo", 12, 3.0, [1]), cell("coppo:coppo_detach=true", 12, 3.0, [0])]
    rows = h.variant_pairs(records, [2, 3])
    assert rows == [["coppo", "coppo:coppo_detach=true", "3", 5,
                     bench_stats.fmt_pair(bench_stats.paired([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]))]]
    assert "(+1/−1, p=1)" in rows[0][4]


def test_cache_that_is_not_a_directory_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("")
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["learn", "--cache", str(path)])
    assert e.value.code == 2 and "--cache must be a directory" in capsys.readouterr().err
