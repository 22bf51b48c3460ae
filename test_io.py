"""asae_io (issue 25): a trained policy saved and loaded (NumPy + JSON, no pickle, a checksum),
and checkpoints from which a run resumes bit for bit.

A run checkpointed after k iterations and resumed (in a new env object, from the file alone)
must equal the uninterrupted run in every TrainResult field but wall_time: the tabular
learner with simultaneous and sequential methods, on tables and through env.step, and the
neural learner on Spread. Each part of the state is shown to matter: a checkpoint with one
part changed (the random stream, Adam's step count, the env's generators, the returns in
progress, ...) resumes into a different run, so the comparisons can fail.
"""
import json
import os
import zipfile
from dataclasses import fields, replace

import numpy as np
import pytest

import asae_io
import asae_neural as neural
import asae_tabular as tabular
import envs
from asae_io import FormatError
from asae_learner import Snapshot
from envs_spread import Spread
from test_progress import _same_result
from test_tabular import NoTables


class Stepped(NoTables):
    """A game whose tables are hidden (train steps it through env.step) and which gives its
    state back (the game's get_state / set_state)."""

    def get_state(self):
        return self.env.get_state()

    def set_state(self, state):
        self.env.set_state(state)

    def __repr__(self):
        return f"Stepped({self.env!r})"


class NoState:
    """A feature env without get_state / set_state (a checkpoint cannot hold its episodes)."""

    def __init__(self, env):
        self.env = env
        for a in ("n_agents", "n_actions", "obs_dim", "state_dim", "episode_limit"):
            setattr(self, a, getattr(env, a))

    def reset(self, n_envs, seed=None):
        return self.env.reset(n_envs, seed)

    def step(self, actions):
        return self.env.step(actions)


def _tab_cfg(**kw):
    base = dict(iterations=9, n_envs=8, rollout_len=4, reward_scale=1 / 30, seed=5,
                eval_episodes=8)
    return tabular.TabularConfig(**{**base, **kw})


def _net_cfg(**kw):
    base = dict(iterations=5, n_envs=4, rollout_len=3, seed=2, epochs=2, minibatches=2,
                hidden=8, eval_episodes=8)
    return neural.NetConfig(**{**base, **kw})


def _spread(**kw):
    return Spread(n_agents=3, max_cycles=5, **kw)


def _stop_at(k):
    return lambda i, r: i == k


def _members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _rewrite(path, members):
    """Write ``members`` as an .npz archive, bypassing asae_io (a foreign or edited file)."""
    with open(path, "wb") as f:
        np.savez(f, **members)


def _reseal(path, meta=None, drop=(), change=None):
    """Rewrite an asae file with its metadata replaced, members dropped or changed, and a
    *valid* checksum (a file written so by a newer or a broken writer)."""
    m = _members(path)
    text = json.dumps(meta) if meta is not None else m["meta"].item()
    arrays = {k: v for k, v in m.items() if k not in ("meta", "sha256") and k not in drop}
    if change:
        arrays.update(change(arrays))
    _rewrite(path, {**arrays, "meta": np.array(text),
                    "sha256": np.array(asae_io._checksum(arrays, text))})


# --------------------------------------------------------------------------------------
# Save and load a trained policy
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, method", [(envs.climbing, "asae"),
                                          (lambda: Stepped(envs.TwoStepGame()), "happo"),
                                          (lambda: envs.penalty(-50, n_agents=3), "a2po")])
def test_tabular_policy_round_trip(tmp_path, make, method):
    """Saved and loaded: the same logits and values, and evaluate gives the same returns,
    greedy and sampled; the file is plain .npz (no pickle) with the documented metadata."""
    cfg = _tab_cfg()
    res = tabular.train(make(), method, cfg)
    path = str(tmp_path / "policy.npz")
    assert asae_io.save(path, res, make(), cfg) == path
    got = asae_io.load(path, env=make())
    for a, b in zip(got.policy, res.logits):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert np.array_equal(got.critic, res.values)
    for greedy in (True, False):
        assert (tabular.evaluate(make(), got.policy, 16, greedy, 7)
                == tabular.evaluate(make(), res.logits, 16, greedy, 7))
    m = _members(path)                               # loads without pickle
    meta = json.loads(m["meta"].item())
    assert meta["format"] == "asae" and meta["format_version"] == asae_io.FORMAT_VERSION
    assert meta["kind"] == "policy" and meta["learner"] == "tabular" and meta["method"] == method
    assert set(meta["config"]["fields"]) == {f.name for f in fields(tabular.TabularConfig)}
    assert asae_io._config_from(meta) == cfg
    assert set(meta["versions"]) == {"asae", "numpy", "numba", "python"}
    assert meta["env"]["n_agents"] == make().n_agents and "repr" in meta["env"]
    assert meta["result"]["greedy_return"] == res.greedy_return
    assert np.array_equal(m["result.mean_return"], res.mean_return, equal_nan=True)
    assert m["sha256"].item() == asae_io._checksum(
        {k: v for k, v in m.items() if k not in ("meta", "sha256")}, m["meta"].item())


@pytest.mark.parametrize("method, kw", [("async", {}), ("asae", dict(share_actor=True)),
                                        ("a2po", dict(layer_norm=False, layers=1))])
def test_neural_policy_round_trip(tmp_path, method, kw):
    """An MLPPolicy saved and loaded: every network's parameters and shapes, the critic with
    its ValueNorm statistics; evaluate of the loaded policy equals the original's exactly."""
    cfg = _net_cfg(**kw)
    res = neural.train(_spread(), method, cfg)
    path = tmp_path / "policy.npz"
    asae_io.save(path, res, _spread(), cfg)
    got = asae_io.load(path, env=_spread())
    pol = got.policy
    assert isinstance(pol, neural.MLPPolicy) and pol.shared == res.policy.shared
    assert pol.net.shapes == res.policy.net.shapes and pol.n_actions == res.policy.n_actions
    assert len(pol.params) == len(res.policy.params)
    for a, b in zip(pol.params, res.policy.params):
        assert np.array_equal(a, b)
    assert np.array_equal(got.critic.params, res.critic)
    assert np.array_equal(got.critic.value_norm, res.critic_norm) and res.critic_norm[2] > 0
    assert got.critic.net.shapes[0] == ((54,) if cfg.layer_norm else (54, 8))
    for greedy in (True, False):
        assert (neural.evaluate(_spread(), pol, 16, greedy, 3)
                == neural.evaluate(_spread(), res.policy, 16, greedy, 3))
    meta = json.loads(_members(path)["meta"].item())
    assert meta["policy"]["net"]["shapes"] == [list(s) for s in res.policy.net.shapes]
    assert meta["env"]["obs_dim"] == 18 and meta["env"]["obs_dtype"] == "float32"


def test_load_checks_the_env(tmp_path):
    """load(path, env=...) names every size in which the env differs."""
    cfg = _tab_cfg(iterations=2)
    asae_io.save(tmp_path / "t.npz", tabular.train(envs.climbing(), "async", cfg),
                 envs.climbing(), cfg)
    with pytest.raises(ValueError, match="tables_sha256"):        # same sizes, another game
        asae_io.load(tmp_path / "t.npz", env=envs.penalty())
    asae_io.load(tmp_path / "t.npz", env=envs.penalty(), strict=False)     # sizes only: fine
    asae_io.load(tmp_path / "t.npz", env=envs.climbing())
    with pytest.raises(TypeError, match="strict"):
        asae_io.load(tmp_path / "t.npz", env=envs.climbing(), strict="no")
    with pytest.raises(ValueError, match=r"n_agents \(file: 2, this env: 3\).*n_actions"):
        asae_io.load(tmp_path / "t.npz", env=envs.MatrixGame.penalty(n_agents=3))
    with pytest.raises(ValueError, match="n_obs .*obs_dim"):
        asae_io.load(tmp_path / "t.npz", env=_spread())
    ncfg = _net_cfg(iterations=1)
    asae_io.save(tmp_path / "n.npz", neural.train(_spread(), "async", ncfg), _spread(), ncfg)
    with pytest.raises(ValueError, match=r"n_agents \(file: 3, this env: 2\).*obs_dim"):
        asae_io.load(tmp_path / "n.npz", env=Spread(n_agents=2))
    with pytest.raises(ValueError, match="repr"):
        asae_io.load(tmp_path / "n.npz", env=Spread(n_agents=3, local_ratio=0.0))
    asae_io.load(tmp_path / "n.npz", env=Spread(n_agents=3, local_ratio=0.0), strict=False)


def test_save_refuses_a_result_of_another_env_or_learner(tmp_path):
    cfg = _tab_cfg(iterations=2)
    res = tabular.train(envs.climbing(), "async", cfg)
    with pytest.raises(ValueError, match="one table per agent"):
        asae_io.save(tmp_path / "x.npz", res, envs.MatrixGame.penalty(n_agents=3), cfg)
    with pytest.raises(TypeError, match="TabularConfig or an asae_neural.NetConfig"):
        asae_io.save(tmp_path / "x.npz", res, envs.climbing(), {"seed": 0})
    with pytest.raises(ValueError, match="neural run"):
        asae_io.save(tmp_path / "x.npz", res, _spread(), _net_cfg())
    with pytest.raises(ValueError, match="integer observation ids"):
        asae_io.save(tmp_path / "x.npz", res, _spread(), cfg)
    with pytest.raises(ValueError, match="feature observations"):
        asae_io.save(tmp_path / "x.npz", res, envs.climbing(), _net_cfg())
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------
# Damaged, foreign, newer files: a clear error, never a different policy
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cfg = _net_cfg(iterations=1)
    path = str(tmp_path_factory.mktemp("saved") / "policy.npz")
    asae_io.save(path, neural.train(_spread(), "async", cfg), _spread(), cfg)
    with open(path, "rb") as f:
        return f.read()


def _copy(saved, tmp_path):
    path = str(tmp_path / "p.npz")
    with open(path, "wb") as f:
        f.write(saved)
    return path


def test_an_edited_array_fails_the_checksum(saved, tmp_path):
    path = _copy(saved, tmp_path)
    m = _members(path)
    m["policy.params.0"][3] += 1e-12                # rewritten with a valid zip: CRC passes
    _rewrite(path, m)
    with pytest.raises(FormatError, match="checksum"):
        asae_io.load(path)


def test_edited_metadata_fails_the_checksum(saved, tmp_path):
    path = _copy(saved, tmp_path)
    m = _members(path)
    meta = json.loads(m["meta"].item())
    meta["method"] = "asae"
    m["meta"] = np.array(json.dumps(meta))
    _rewrite(path, m)
    with pytest.raises(FormatError, match="checksum"):
        asae_io.load(path)


def test_flipped_bytes_and_truncation_are_refused(saved, tmp_path):
    """A bit flipped anywhere (at 600 places over the file, low and high bits): a
    FormatError, or — where the bit is one the zip ignores (a version or date field) — the
    very same policy, its checksum verified; never another exception or another policy."""
    want = asae_io.load(_copy(saved, tmp_path))
    ignored = 0
    places = range(0, len(saved), max(1, len(saved) // 600))
    for at in places:
        bad = bytearray(saved)
        bad[at] ^= 0x01 if at % 2 else 0x80
        path = _copy(bytes(bad), tmp_path)
        try:
            got = asae_io.load(path)
        except FormatError:
            continue
        ignored += 1
        assert all(np.array_equal(a, b) for a, b in zip(got.policy.params, want.policy.params))
        assert got.meta == want.meta
    assert ignored < len(places) // 10
    for keep in (0, 10, len(saved) // 2, len(saved) - 1):
        path = _copy(saved[:keep], tmp_path)
        with pytest.raises(FormatError, match="not an asae file|damaged|truncated"):
            asae_io.load(path)


def test_foreign_files_are_refused(tmp_path):
    path = str(tmp_path / "f")
    _rewrite(path, {"a": np.arange(3)})
    with pytest.raises(FormatError, match="no member 'meta'"):
        asae_io.load(path)
    np.save(path + ".npy", np.arange(3))
    with pytest.raises(FormatError, match="lone .npy"):
        asae_io.load(path + ".npy")
    with open(path, "w") as f:
        f.write("hello")
    with pytest.raises(FormatError, match="not an asae file"):
        asae_io.load(path)
    _rewrite(path, {"meta": np.array(json.dumps({"format": "other"})), "sha256": np.array("0")})
    with pytest.raises(FormatError, match="format 'other'"):
        asae_io.load(path)
    _rewrite(path, {"meta": np.array("{not json"), "sha256": np.array("0")})
    with pytest.raises(FormatError, match="damaged"):
        asae_io.load(path)
    with zipfile.ZipFile(path, "w") as z:              # a pickled member: never unpickled
        z.writestr("meta.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, "
                   b"'shape': (), }" + b" " * 70 + b"\n" + b"\x80\x04N.")
        z.writestr("sha256.npy", b"")
    with pytest.raises(FormatError):
        asae_io.load(path)
    with pytest.raises(FileNotFoundError):
        asae_io.load(tmp_path / "absent.npz")


def test_a_newer_format_version_is_refused(saved, tmp_path):
    path = _copy(saved, tmp_path)
    meta = json.loads(_members(path)["meta"].item())
    _reseal(path, meta={**meta, "format_version": asae_io.FORMAT_VERSION + 1})
    with pytest.raises(FormatError, match=f"format version {asae_io.FORMAT_VERSION + 1}.*upgrade"):
        asae_io.load(path)


@pytest.mark.parametrize("drop", ["policy.params.1", "critic.value_norm"])
def test_a_missing_member_is_refused(saved, tmp_path, drop):
    path = _copy(saved, tmp_path)
    _reseal(path, drop=(drop,))
    with pytest.raises(FormatError, match=f"lacks the member '{drop}'"):
        asae_io.load(path)


def test_a_member_of_another_shape_or_key_missing_is_refused(saved, tmp_path):
    path = _copy(saved, tmp_path)
    _reseal(path, change=lambda a: {"policy.params.0": a["policy.params.0"][:-1]})
    with pytest.raises(FormatError, match="policy.params.0"):
        asae_io.load(path)
    path = _copy(saved, tmp_path)
    meta = json.loads(_members(path)["meta"].item())
    del meta["env"]
    _reseal(path, meta=meta)
    with pytest.raises(FormatError, match="lacks or mangles a key"):
        asae_io.load(path)


# --------------------------------------------------------------------------------------
# The envs' state
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [envs.climbing, envs.TwoStepGame,
                                  lambda: envs.GridForaging(size=3, n_food=1, max_steps=6),
                                  _spread])
def test_env_state_round_trip(make):
    """get_state after some steps, set into a fresh env (after reset): the same steps after,
    output for output; the state is copies (stepping on does not change it)."""
    env, other = make(), make()
    rng = np.random.default_rng(0)
    env.reset(5, seed=1)
    for _ in range(3):
        env.step(rng.integers(0, min(env.n_actions), (5, env.n_agents)))
    state = env.get_state()
    acts = [rng.integers(0, min(env.n_actions), (5, env.n_agents)) for _ in range(7)]
    want = [env.step(a) for a in acts]
    other.reset(5, seed=9)
    other.set_state(state)
    for a, w in zip(acts, want):
        for x, y in zip(other.step(a), w):
            assert np.array_equal(x, y)
    assert all(np.array_equal(a, b) for a, b in zip(env.get_state().values(),
                                                     other.get_state().values()))


def test_spread_set_state_checks_what_it_gets():
    env = _spread()
    env.reset(2, seed=0)
    state = env.get_state()
    with pytest.raises(ValueError, match="keys"):
        env.set_state({k: v for k, v in state.items() if k != "rng"})
    with pytest.raises(ValueError, match="uint64"):
        env.set_state({**state, "rng": state["rng"].astype(np.int64)})
    with pytest.raises(ValueError, match="agent_pos"):
        env.set_state({**state, "agent_pos": state["agent_pos"][:1]})
    with pytest.raises(ValueError, match="t must be in"):
        env.set_state({**state, "t": state["t"] + 5})
    with pytest.raises(RuntimeError, match="reset"):
        _spread().get_state()


# --------------------------------------------------------------------------------------
# Checkpoints resume exactly
# --------------------------------------------------------------------------------------

#: (env, method, TabularConfig fields): sequential and simultaneous methods, tables and
#: env.step, episodes across rollouts (two-step with T = 3; the repeated matrix game, whose
#: returns in progress are never 0), count tables, COMA's Q, an exact method, the ratio
#: statistics and the recorded policies.
TABULAR = {
    "climbing-happo": (envs.climbing, "happo", dict(track_ratios=True, record_policies=True)),
    "climbing-exact_sync": (envs.climbing, "exact_sync", dict(record_policies=True)),
    "count-a2po": (lambda: envs.penalty(-50, n_agents=3), "a2po", dict(track_ratios=True)),
    "twostep-coma": (envs.TwoStepGame, "coma", dict(rollout_len=3)),
    "twostep-a2po": (envs.TwoStepGame, "a2po", dict(rollout_len=3, track_ratios=True)),
    "grid-asae": (lambda: envs.GridForaging(size=3, n_food=1, max_steps=6), "asae",
                  dict(rollout_len=5)),
    "repeated-happo-step": (lambda: Stepped(envs.MatrixGame(envs.climbing().payoff, 3)),
                            "happo", dict(rollout_len=4, track_ratios=True)),
    "twostep-a2po-step": (lambda: Stepped(envs.TwoStepGame()), "a2po",
                          dict(rollout_len=3, record_policies=True)),
}


class Crash(Exception):
    """The process running the run dies."""


def _checkpoint(tmp_path, train, env, method, cfg, k, name="ck.npz"):
    """Train with a checkpointer writing every k iterations; the run dies after iteration
    k + 1 (before its checkpoint), so the file holds the state after iteration k."""
    path = str(tmp_path / name)
    ck = asae_io.checkpointer(path, every=k)

    def callback(i, r):
        if i > k:
            raise Crash
        return ck(i, r)
    with pytest.raises(Crash):
        train(env, method, cfg, callback=callback)
    return path


@pytest.mark.parametrize("case", sorted(TABULAR))
def test_tabular_resume_is_the_uninterrupted_run(tmp_path, case):
    """Checkpointed after k, resumed in a new env object (with and without a callback):
    every TrainResult field but wall_time equals the uninterrupted run's."""
    make, method, kw = TABULAR[case]
    cfg = _tab_cfg(**kw)
    full = tabular.train(make(), method, cfg)
    for k in (1, 4, cfg.iterations - 1):
        path = _checkpoint(tmp_path, tabular.train, make(), method, cfg, k)
        assert asae_io.load(path).meta["iteration"] == k
        _same_result(asae_io.resume(path, make()), full)
        seen = []
        again = asae_io.resume(path, make(), method, cfg,
                               callback=lambda i, r: seen.append(i) or False)
        assert seen == list(range(k + 1, cfg.iterations + 1))
        _same_result(again, full)


@pytest.mark.parametrize("method, kw", [("async", dict(track_ratios=True)),
                                        ("a2po", dict(track_ratios=True)),
                                        ("happo", dict(value_clip=None, huber_delta=None)),
                                        ("asae", dict(share_actor=True))])
def test_neural_resume_is_the_uninterrupted_run(tmp_path, method, kw):
    """Spread, float64: the run resumed after k equals the uninterrupted one in every field
    (parameters, critic and its ValueNorm, curve, ratios, diagnostics, the evaluation with
    its seed from the stream where it stands)."""
    cfg = _net_cfg(**kw)
    full = neural.train(_spread(), method, cfg)
    for k in (1, 3):
        path = _checkpoint(tmp_path, neural.train, _spread(), method, cfg, k)
        _same_result(asae_io.resume(path, _spread()), full)


def test_resume_chained_and_after_the_end(tmp_path):
    """A resumed run checkpointed again and resumed again; a checkpoint of the last
    iteration resumes into the evaluation alone; every one the uninterrupted run."""
    cfg = _net_cfg(iterations=6)
    full = neural.train(_spread(), "a2po", cfg)
    first = _checkpoint(tmp_path, neural.train, _spread(), "a2po", cfg, 2, name="a.npz")
    second = str(tmp_path / "b.npz")
    asae_io.resume(first, _spread(), callback=asae_io.checkpointer(
        second, every=2, callback=_stop_at(4)))
    assert asae_io.load(second).meta["iteration"] == 4
    _same_result(asae_io.resume(second, _spread()), full)
    last = str(tmp_path / "c.npz")
    neural.train(_spread(), "a2po", cfg, callback=asae_io.checkpointer(last, every=100))
    assert asae_io.load(last).meta["iteration"] == 6          # the last iteration's
    _same_result(asae_io.resume(last, _spread()), full)


def test_a_stopped_run_keeps_where_it_stopped(tmp_path):
    """Stopped by the callback between checkpoints: the checkpointer writes that state."""
    cfg = _tab_cfg()
    path = str(tmp_path / "ck.npz")
    tabular.train(envs.climbing(), "happo", cfg,
                  callback=asae_io.checkpointer(path, every=4, callback=_stop_at(6)))
    assert asae_io.load(path).meta["iteration"] == 6
    _same_result(asae_io.resume(path, envs.climbing()), tabular.train(envs.climbing(), "happo",
                                                                      cfg))


def test_a_checkpoint_loads_as_the_policy_as_it_stood(tmp_path):
    """load() of a checkpoint: the policy and critic of the run of k iterations."""
    cfg = _tab_cfg()
    path = _checkpoint(tmp_path, tabular.train, envs.climbing(), "happo", cfg, 4)
    short = tabular.train(envs.climbing(), "happo", replace(cfg, iterations=4))
    got = asae_io.load(path, env=envs.climbing())
    assert all(np.array_equal(a, b) for a, b in zip(got.policy, short.logits))
    assert np.array_equal(got.critic, short.values)
    ncfg = _net_cfg()
    path = _checkpoint(tmp_path, neural.train, _spread(), "happo", ncfg, 3)
    short = neural.train(_spread(), "happo", replace(ncfg, iterations=3))
    got = asae_io.load(path)
    assert all(np.array_equal(a, b) for a, b in zip(got.policy.params, short.policy.params))
    assert np.array_equal(got.critic.params, short.critic)
    assert np.array_equal(got.critic.value_norm, short.critic_norm)
    assert (neural.evaluate(_spread(), got.policy, 8, False, 1)
            == neural.evaluate(_spread(), short.policy, 8, False, 1))


#: A part of the state, changed in the checkpoint (with a valid checksum): the resumed run
#: must differ from the uninterrupted one — each part is restored and each one matters.
def _bump(name, delta, at=0):
    def change(arrays):
        a = arrays[name].copy()
        a.reshape(-1)[at] += np.asarray(delta).astype(a.dtype)
        return {name: a}
    return change


#: name → (delta, flat index): ratios at their last slot (the count of the ESS fraction).
TABULAR_PARTS = {"run.rng": (1, 0), "run.pol.logits": (0.5, 0), "run.critic.V": (0.5, 0),
                 "run.rec.env.ep_ret": (1.0, 0), "run.rec.env.state": (1, 0),
                 "run.rec.env.t_ep": (1, 0), "run.log.diag": (1.0, 0),
                 "run.log.ratios": (1.0, -1), "run.rec.curve": (1.0, 0),
                 "run.rec.policy_log": (0.5, 0)}
NEURAL_PARTS = {"rng": (1, 0), "run.opt_pi.0.t": (1, 0), "run.opt_pi.1.m": (1e-3, 0),
                "run.opt_v.v": (1e-3, 0), "run.opt_v.t": (1, 0), "run.vnorm.stats": (0.1, 0),
                "run.theta_v": (1e-3, 0), "run.policy.params.2": (1e-3, 0),
                "carry.ep_ret": (1.0, 0), "carry.obs": (1e-3, 0), "carry.state": (1e-3, 0),
                "env.rng": (1, 0), "env.agent_pos": (1e-3, 0), "env.t": (1, 0),
                "log.ratios": (1.0, -1), "log.diag": (1.0, 0), "curve": (1.0, 1)}


@pytest.mark.parametrize("name", sorted(TABULAR_PARTS))
def test_each_part_of_a_tabular_checkpoint_matters(tmp_path, name):
    cfg = _tab_cfg(rollout_len=4, track_ratios=True, record_policies=True)
    make = lambda: envs.MatrixGame(envs.climbing().payoff, 3)      # noqa: E731
    full = tabular.train(make(), "happo", cfg)
    path = _checkpoint(tmp_path, tabular.train, make(), "happo", cfg, 3)
    _reseal(path, change=_bump(name, *TABULAR_PARTS[name]))
    with pytest.raises(AssertionError):
        _same_result(asae_io.resume(path, make()), full)


@pytest.mark.parametrize("name", sorted(NEURAL_PARTS))
def test_each_part_of_a_neural_checkpoint_matters(tmp_path, name):
    cfg = _net_cfg(rollout_len=4, track_ratios=True)       # episodes across rollouts
    full = neural.train(_spread(), "a2po", cfg)
    path = _checkpoint(tmp_path, neural.train, _spread(), "a2po", cfg, 2)
    _reseal(path, change=_bump(name, *NEURAL_PARTS[name]))
    with pytest.raises(AssertionError):
        _same_result(asae_io.resume(path, _spread()), full)


def test_the_stepped_envs_state_matters(tmp_path):
    """Through env.step the episodes in progress live in the env: its state is restored."""
    cfg = _tab_cfg(rollout_len=4)
    make = lambda: Stepped(envs.MatrixGame(envs.climbing().payoff, 3))      # noqa: E731
    full = tabular.train(make(), "happo", cfg)
    path = _checkpoint(tmp_path, tabular.train, make(), "happo", cfg, 3)
    _reseal(path, change=_bump("env.state", 1))
    with pytest.raises(AssertionError):
        _same_result(asae_io.resume(path, make()), full)


# --------------------------------------------------------------------------------------
# What resume and the checkpointer refuse
# --------------------------------------------------------------------------------------

def test_resume_refuses_another_env_method_or_config(tmp_path):
    cfg = _tab_cfg()
    path = _checkpoint(tmp_path, tabular.train, envs.climbing(), "happo", cfg, 3)
    with pytest.raises(ValueError, match="tables_sha256"):          # same sizes, other game
        asae_io.resume(path, envs.penalty())
    with pytest.raises(ValueError, match="n_agents"):
        asae_io.resume(path, envs.MatrixGame.penalty(n_agents=3))
    with pytest.raises(ValueError, match=r"class \(file: 'MatrixGame', this env: 'Stepped'\)"):
        asae_io.resume(path, Stepped(envs.climbing()))
    with pytest.raises(ValueError, match="trains 'happo', not 'asae'"):
        asae_io.resume(path, envs.climbing(), "asae")
    with pytest.raises(ValueError, match=r"lr_actor \(file: 1.0, given: 0.5\)"):
        asae_io.resume(path, envs.climbing(), config=replace(cfg, lr_actor=0.5))
    with pytest.raises(ValueError, match="its class"):
        asae_io.resume(path, envs.climbing(), config=_net_cfg())
    ncfg = _net_cfg()
    npath = _checkpoint(tmp_path, neural.train, _spread(), "async", ncfg, 2, name="n.npz")
    with pytest.raises(ValueError, match="repr"):
        asae_io.resume(npath, _spread(local_ratio=0.25))
    with pytest.raises(ValueError, match="obs_dtype"):
        asae_io.resume(npath, _spread(obs_dtype=np.float64))
    with pytest.raises(ValueError, match="seed"):
        asae_io.resume(npath, _spread(), config=replace(ncfg, seed=3))
    asae_io.save(tmp_path / "p.npz", neural.train(_spread(), "async", ncfg), _spread(), ncfg)
    with pytest.raises(ValueError, match="not a checkpoint"):
        asae_io.resume(tmp_path / "p.npz", _spread())


def test_a_checkpoint_of_another_state_layout_is_refused(tmp_path):
    path = _checkpoint(tmp_path, tabular.train, envs.climbing(), "happo", _tab_cfg(), 3)
    with open(path, "rb") as f:
        good = f.read()
    _reseal(path, drop=("run.rng",))
    with pytest.raises(ValueError, match="missing run.rng"):
        asae_io.resume(path, envs.climbing())
    with open(path, "wb") as f:
        f.write(good)
    _reseal(path, change=lambda a: {"run.critic.V": np.zeros(3)})
    with pytest.raises(ValueError, match="run.critic.V"):
        asae_io.resume(path, envs.climbing())


def test_checkpointing_an_env_without_state_is_refused_at_once(tmp_path):
    """A run stepping an env that cannot give its state back is refused at its first
    iteration, naming the env's type; a tabular run on tables needs no env state."""
    calls = []
    with pytest.raises(TypeError, match="NoState has no get_state"):
        neural.train(NoState(_spread()), "async", _net_cfg(),
                     callback=asae_io.checkpointer(tmp_path / "a.npz", every=3,
                                                   callback=lambda i, r: calls.append(i)))
    assert calls == [] and not os.listdir(tmp_path)
    with pytest.raises(TypeError, match="NoTables has no get_state"):
        tabular.train(NoTables(envs.climbing()), "async", _tab_cfg(),
                      callback=asae_io.checkpointer(tmp_path / "b.npz"))
    tabular.train(envs.climbing(), "async", _tab_cfg(iterations=2),
                  callback=asae_io.checkpointer(tmp_path / "c.npz"))
    assert os.listdir(tmp_path) == ["c.npz"]


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous checkpoint whole and no stray file."""
    path = str(tmp_path / "ck.npz")
    cfg = _tab_cfg()
    tabular.train(envs.climbing(), "happo", cfg,
                  callback=asae_io.checkpointer(path, every=2, callback=_stop_at(2)))
    before = open(path, "rb").read()
    calls = []

    def broken(*args, **kw):
        calls.append(1)
        if len(calls) > 3:
            raise OSError("disk full")
        return write_array(*args, **kw)
    write_array = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        tabular.train(envs.climbing(), "happo", cfg, callback=asae_io.checkpointer(path, 4))
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["ck.npz"]
    assert asae_io.load(path).meta["iteration"] == 2


def test_snapshot_and_checkpointer_arguments():
    snaps = []
    tabular.train(envs.climbing(), "async", _tab_cfg(iterations=2),
                  callback=lambda i, r: snaps.append(r.snapshot()))
    assert [s.iteration for s in snaps] == [1, 2] and isinstance(snaps[0], Snapshot)
    assert snaps[0].learner == "tabular" and snaps[0].method == "async"
    assert not np.array_equal(snaps[0].arrays["run.pol.logits"], snaps[1].arrays["run.pol.logits"])
    with pytest.raises(ValueError, match="every"):
        asae_io.checkpointer("x.npz", every=0)
    with pytest.raises(TypeError, match="callback"):
        asae_io.checkpointer("x.npz", callback=3)
    with pytest.raises(TypeError, match="snapshot"):
        asae_io.checkpointer("x.npz")(1, object())


def test_a_pettingzoo_adapter_saves_its_policy_but_cannot_be_checkpointed(tmp_path):
    """envs_pz_in's adapter keeps its episodes in PettingZoo envs it cannot copy: a
    checkpoint is refused, naming it; the trained policy saves and loads as any other."""
    pytest.importorskip("pettingzoo")
    simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3")
    from envs_pz_in import from_parallel_env

    def make():
        return from_parallel_env(lambda: simple_spread_v3.parallel_env(max_cycles=5))
    with pytest.raises(TypeError, match="ParallelEnvAdapter has no get_state"):
        neural.train(make(), "async", _net_cfg(iterations=2),
                     callback=asae_io.checkpointer(tmp_path / "a.npz"))
    cfg = _net_cfg(iterations=1)
    res = neural.train(make(), "async", cfg)
    asae_io.save(tmp_path / "p.npz", res, make(), cfg)
    got = asae_io.load(tmp_path / "p.npz", env=make())
    assert got.meta["env"]["obs_dims"] == [18, 18, 18]
    assert (neural.evaluate(make(), got.policy, 4, False, 1)
            == neural.evaluate(make(), res.policy, 4, False, 1))


# ---- from the audit of issue 25 -------------------------------------------------------------

def test_the_documented_checksum_recipe_reproduces_the_files_digest(saved, tmp_path):
    """docs/learners.md's recipe, written here independently of asae_io._checksum; a member
    re-typed with the same bytes (another dtype.str) must fail the file's checksum."""
    import hashlib
    path = _copy(saved, tmp_path)
    with np.load(path, allow_pickle=False) as z:
        h = hashlib.sha256()
        for name in sorted(set(z.files) - {"meta", "sha256"}):
            a = z[name]
            h.update(f"{name}\n{a.dtype.str}\n{','.join(map(str, a.shape))}\n".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(z["meta"].item().encode("utf-8"))
        assert h.hexdigest() == z["sha256"].item()
        members = {k: z[k] for k in z.files}
    name = next(k for k in members if k.startswith("policy.params"))
    members[name] = members[name].view(np.int64)                  # same bytes, another dtype
    _rewrite(path, members)
    with pytest.raises(FormatError, match="checksum"):
        asae_io.load(path)


def test_a_tabular_checkpoint_of_uneven_actions_loads_each_agents_table(tmp_path):
    """A checkpoint stores the logits padded to the largest action count; load cuts each
    agent's table back to its own A_i."""
    env = envs.MatrixGame(np.arange(6.0).reshape(2, 3))
    cfg = _tab_cfg(iterations=3)
    res = tabular.train(env, "asae", cfg, callback=asae_io.checkpointer(tmp_path / "c.npz",
                                                                        every=3))
    got = asae_io.load(tmp_path / "c.npz", env=env).policy
    assert [z.shape for z in got] == [(1, 2), (1, 3)]
    for z, want in zip(got, res.logits):
        np.testing.assert_array_equal(z, want)


def test_a_saved_results_metadata_round_trips(tmp_path):
    cfg = _tab_cfg(iterations=4)
    res = tabular.train(envs.climbing(), "async", cfg, callback=_stop_at(3))
    asae_io.save(tmp_path / "s.npz", res, envs.climbing(), cfg)
    meta = asae_io.load(tmp_path / "s.npz").meta
    assert meta["result"]["stopped_at"] == res.stopped_at == 3
    assert meta["method"] == "async" and meta["config"]["fields"]["iterations"] == 4


def test_a_text_file_is_refused_without_a_hint_to_unpickle(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(FormatError, match="never pickles") as e:
        asae_io.load(path)
    assert "pickle.load" not in str(e.value) and "allow_pickle" not in str(e.value)


def test_resume_warns_when_the_versions_differ(tmp_path, monkeypatch):
    env, cfg = envs.climbing(), _tab_cfg(iterations=4)
    tabular.train(env, "async", cfg, callback=asae_io.checkpointer(tmp_path / "c.npz", every=2))
    real = asae_io._versions()
    monkeypatch.setattr(asae_io, "_versions", lambda: {**real, "numpy": "0.0"})
    with pytest.warns(RuntimeWarning, match="exact only with the same versions"):
        asae_io.resume(tmp_path / "c.npz", envs.climbing())


def test_tabular_evaluate_names_a_neural_policy():
    res = neural.train(_spread(), "async", _net_cfg(iterations=1))
    with pytest.raises(TypeError, match="asae_neural.evaluate"):
        tabular.evaluate(envs.climbing(), res.policy)
