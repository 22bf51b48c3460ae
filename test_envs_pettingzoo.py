"""Tests of envs_pettingzoo.py: the PettingZoo Parallel API wrapper (to_parallel_env) over
the games of envs.py (its Spread tests against mpe2's own wrapper: test_envs_spread.py)."""
import sys
import warnings

import numpy as np
import pytest

import envs_pettingzoo
from envs import GridForaging, TwoStepGame, climbing, penalty, qtran
from envs_pettingzoo import to_parallel_env


ALL_GAMES = [climbing(), penalty(), qtran(), climbing(episode_len=3), TwoStepGame(),
             GridForaging(), GridForaging(3, 3, 2, 10, layout_seed=4)]


@pytest.mark.parametrize("game", ALL_GAMES, ids=repr)
def test_pettingzoo_parallel_api(game):
    pytest.importorskip("gymnasium")
    test = pytest.importorskip("pettingzoo.test")
    env = to_parallel_env(game, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test.parallel_api_test(env, num_cycles=100)


def test_pettingzoo_episode():
    pytest.importorskip("pettingzoo")
    game = TwoStepGame()
    game.reset(4)
    env = to_parallel_env(game, seed=1)
    assert env.possible_agents == ["agent_0", "agent_1"]
    assert env.observation_space("agent_0").n == 3 and env.action_space("agent_1").n == 2
    obs, infos = env.reset()
    assert obs == {"agent_0": 0, "agent_1": 0} and env.agents == env.possible_agents
    obs, rewards, terminated, truncated, _ = env.step({"agent_0": 1, "agent_1": 0})
    assert obs["agent_0"] == 2 and rewards["agent_1"] == 0 and not any(terminated.values())
    obs, rewards, terminated, truncated, _ = env.step({"agent_0": 1, "agent_1": 1})
    assert rewards == {"agent_0": 8.0, "agent_1": 8.0} and all(terminated.values())
    assert obs["agent_0"] == 2 and env.agents == [] and int(env.state()) == 2
    assert game._state.shape == (4,)  # the wrapper works on a copy
    with pytest.raises(ValueError, match="missing agents"):
        env.reset()
        env.step({"agent_0": 0})
    with pytest.raises(TypeError, match="game must be an asae game"):
        to_parallel_env("climbing")


def test_pettingzoo_bad_input():
    pytest.importorskip("pettingzoo")
    env = to_parallel_env(climbing(episode_len=3), seed=0)
    with pytest.raises(RuntimeError, match="call reset"):
        env.state()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step({"agent_0": 0, "agent_1": 0})
    for kwargs, error, match in [
        (dict(seed="x"), TypeError, "seed must be an int, got str 'x'"),
        (dict(seed=1.5), TypeError, "seed must be an int, got float"),
        (dict(seed=-1), ValueError, "seed must be >= 0, got -1"),
        (dict(options=3), TypeError, "options must be None or a dict, got int 3"),
    ]:
        with pytest.raises(error, match=match):
            env.reset(**kwargs)
    env.reset(seed=np.int64(2), options={"anything": 1})
    for actions, error, match in [
        ({"agent_0": 0, "agent_1": 0, "agent_9": 1}, ValueError,
         r"actions has keys \['agent_9'\] that are not live agents \['agent_0', 'agent_1'\]"),
        ({"agent_0": 0, "agent_1": 0, 1: 1}, ValueError, r"actions has keys \[1\]"),
        ({"agent_0": 0}, ValueError, r"actions is missing agents \['agent_1'\]"),
        ({}, ValueError, r"actions is missing agents \['agent_0', 'agent_1'\]"),
        ([0, 0], TypeError, r"actions must be a dict \{agent: action\}, got list"),
        ({"agent_0": 3, "agent_1": 0}, ValueError,
         r"actions\['agent_0'\] must be in \[0, 3\), got 3"),
        ({"agent_0": 0, "agent_1": -1}, ValueError,
         r"actions\['agent_1'\] must be in \[0, 3\), got -1"),
        ({"agent_0": 1.0, "agent_1": 0}, TypeError,
         r"actions\['agent_0'\] must be an int, got float"),
        ({"agent_0": None, "agent_1": 0}, TypeError,
         r"actions\['agent_0'\] must be an int, got NoneType"),
    ]:
        with pytest.raises(error, match=match):
            env.step(actions)
    assert int(env.state()) == 0 and env.agents == ["agent_0", "agent_1"]  # nothing changed
    assert to_parallel_env(TwoStepGame(), seed=np.int64(3)).reset()[0] == {
        "agent_0": 0, "agent_1": 0}
    obs, rewards, *_ = env.step({"agent_0": np.int64(1), "agent_1": np.array(1)})
    assert rewards == {"agent_0": 7.0, "agent_1": 7.0} and int(env.state()) == 1
    for method in (env.observation_space, env.action_space):
        assert method("agent_1").n in (3,)
        with pytest.raises(ValueError, match=r"agent must be one of \['agent_0', 'agent_1'\], "
                                             r"got 'agent_2'"):
            method("agent_2")


@pytest.mark.parametrize("module", ["gymnasium", "pettingzoo"])
def test_to_parallel_env_without_optional_dependencies(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    monkeypatch.setattr(envs_pettingzoo, "_PARALLEL_CLASS", None)  # forget the cached wrapper class
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[pettingzoo\]'") as info:
        to_parallel_env(climbing())
    assert "asae[pettingzoo]" in str(info.value)
    # the first import that fails is named: the blocked one, or gymnasium when it is absent
    assert info.value.name in (module, "gymnasium")
