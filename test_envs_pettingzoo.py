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


# =======================================================================================
# PettingZoo in: envs_pz_in.from_parallel_env (a user's ParallelEnv as a batched env)
# =======================================================================================

try:                                       # the toy env below needs them; its tests skip
    from gymnasium import spaces
    from pettingzoo import ParallelEnv
except ImportError:                        # pragma: no cover
    spaces, ParallelEnv = None, object

import envs_pz_in                                                        # noqa: E402
from envs_pz_in import (ParallelEnvAdapter, ParallelEnvIdAdapter,        # noqa: E402
                        from_parallel_env, seed_for)


class Toy(ParallelEnv):
    """A small ParallelEnv whose every output depends on the seed, the step and the
    actions, with knobs for what the adapter must support or refuse.

    Hidden state x in 0..9 (drawn at reset), step count t, the agents' last actions.
    Agent i's reward: (i + 1) * a_i + x / 10; then x ← (3x + Σ (i + 1) a_i + 1) mod 10.
    Terminates at a step drawn at reset in [2, max_cycles + 1] (if ``terminate``; a draw
    beyond max_cycles means truncation), truncates at ``max_cycles``. Box observations of
    agent i: the first sizes[i] entries of [x, t, i, last a_i, x + 0, x + 1, ...];
    Discrete: (x + t + i) mod sizes[i] (+ obs_start). State: Box [x, t, last actions],
    Discrete x, or none. ``masks``: "info" puts an action mask (action x mod A_i
    forbidden) in the infos. ``fault``: a misbehaviour at step 2 (or at reset)."""

    metadata = {"name": "toy_v0", "render_modes": []}

    def __init__(self, obs="box", sizes=(2, 4), n_actions=(3, 2), max_cycles=6,
                 terminate=True, state="box", masks=None, fault=None, act_start=0,
                 obs_start=0, spaces_override=None):
        self.possible_agents = [f"a_{i}" for i in range(len(sizes))]
        self.agents = []
        self.sizes, self.A, self.kind, self.fault = sizes, n_actions, obs, fault
        self.limit, self.terminate, self.masks = max_cycles, terminate, masks
        self.act_start, self.obs_start = act_start, obs_start
        if max_cycles is not None:
            self.max_cycles = max_cycles
        n = len(sizes)
        self._obs, self._act = {}, {}
        for i, a in enumerate(self.possible_agents):
            o = (spaces.Discrete(sizes[i], start=obs_start) if obs == "discrete" else
                 spaces.Box(-np.inf, np.inf, (sizes[i],), np.float32))
            if obs == "dictmask":
                o = spaces.Dict({"observation": o, "action_mask": spaces.MultiBinary(n_actions[i])})
            self._obs[a], self._act[a] = o, spaces.Discrete(n_actions[i], start=act_start)
        for a, (o, act) in (spaces_override or {}).items():
            self._obs[a], self._act[a] = o or self._obs[a], act or self._act[a]
        if state == "box":
            self.state_space = spaces.Box(-np.inf, np.inf, (2 + n,), np.float32)
        elif state == "discrete":
            self.state_space = spaces.Discrete(10)
        self._state_kind = state

    def observation_space(self, agent):
        return self._obs[agent]

    def action_space(self, agent):
        return self._act[agent]

    def _observe(self):
        out = {}
        for i, a in enumerate(self.possible_agents):
            if self.kind == "discrete":
                o = (self.x + self.t + i) % self.sizes[i] + self.obs_start
            else:
                full = [self.x, self.t, i, self.last[i]] + [self.x + k
                                                            for k in range(self.sizes[i])]
                o = np.array(full[:self.sizes[i]], np.float32)
                if self.fault == "nan" and self.t == 2:
                    o[0] = np.nan
                if self.fault == "shape" and self.t == 2:
                    o = np.zeros(self.sizes[i] + 1, np.float32)
            if self.kind == "dictmask":
                o = {"observation": o, "action_mask": self._mask(i)}
            out[a] = o
        return out

    def _mask(self, i):
        m = np.ones(self.A[i], np.int8)
        m[self.x % self.A[i]] = 0
        return m

    def _infos(self):
        if self.masks == "info":
            return {a: {"action_mask": self._mask(i)} for i, a in enumerate(self.possible_agents)}
        return {a: {} for a in self.possible_agents}

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.x, self.t = int(self.rng.integers(10)), 0
        self.end = int(self.rng.integers(2, self.limit + 2)) if self.terminate else 2 ** 40
        self.last = [0] * len(self.sizes)
        self.agents = self.possible_agents[:]
        if self.fault == "reset_agents":
            self.agents = self.agents[:-1]
        return self._observe(), self._infos()

    def step(self, actions):
        acts = [actions[a] - self.act_start for a in self.agents]
        assert all(0 <= u < k for u, k in zip(acts, self.A)), acts
        rewards = {a: float((i + 1) * u + self.x / 10) for i, (a, u) in
                   enumerate(zip(self.agents, acts))}
        self.x = (3 * self.x + sum((i + 1) * u for i, u in enumerate(acts)) + 1) % 10
        self.t += 1
        self.last = acts
        term = {a: self.t >= self.end for a in self.agents}
        trunc = {a: self.t >= self.limit for a in self.agents}
        obs, infos = self._observe(), self._infos()
        if self.fault == "leave" and self.t == 2:
            gone = self.agents[-1]
            for d in (obs, rewards, term, trunc, infos):
                d.pop(gone)
        if self.fault == "mixed" and (term[self.agents[0]] or trunc[self.agents[0]]):
            term = {a: i == 0 for i, a in enumerate(self.agents)}
            trunc = {a: True for a in self.agents}
        if self.fault == "finish_one" and self.t == 2:
            term[self.agents[0]] = True
        if self.fault == "reward" and self.t == 2:
            rewards[self.agents[0]] = "high"
        if self.fault == "join" and self.t == 2:
            self.agents = self.agents + ["ghost"]
        if all(term[a] or trunc[a] for a in term):
            self.agents = []
        return obs, rewards, term, trunc, infos

    def state(self):
        if self._state_kind == "box":
            return np.array([self.x, self.t, *self.last], np.float32)
        if self._state_kind == "discrete":
            return self.x
        raise NotImplementedError


def _needs_pettingzoo():
    pytest.importorskip("gymnasium")
    pytest.importorskip("pettingzoo")


def _mpe2(name):
    mpe2 = pytest.importorskip(
        "mpe2", reason="mpe2 is not installed (pip install -e '.[mpe]'): cannot compare with it")
    assert mpe2.__version__ == "1.1.1", "pyproject.toml pins mpe2==1.1.1; update both together"
    import importlib
    return importlib.import_module(f"mpe2.{name}")


def _expected(adapter, raw, observations):
    """(obs row, state) the adapter should give for one raw env's observations."""
    agents = adapter.agents
    if isinstance(adapter, ParallelEnvIdAdapter):
        row = np.array([observations[a] - adapter._obs_start[i] for i, a in enumerate(agents)])
        if adapter.critic_input == "state":
            return row, raw.state() - adapter._state_start
        j = 0
        for o, k in zip(row, adapter.obs_sizes):
            j = j * k + o
        return row, j
    vecs = []
    for a in agents:
        x = observations[a]
        vecs.append(np.asarray(x["observation"] if isinstance(x, dict) else x,
                               np.float64).reshape(-1))
    row = np.zeros((len(agents), adapter.obs_dim))
    for i, v in enumerate(vecs):
        row[i, :v.size] = v
    if adapter.critic_input == "state":
        return row, np.asarray(raw.state(), np.float64).reshape(-1)
    return row, np.concatenate(vecs)


def compare_with_raw(factory, adapter, B, seed, steps, rng, before_step=None):
    """Step the adapter and B raw envs (copy b seeded as the adapter seeds it) with the same
    actions, asserting every output equal; returns (#terminated, #truncated) steps."""
    raws = [factory() for _ in range(B)]
    episode = [0] * B
    obs, state = adapter.reset(B, seed=seed)
    for b, raw in enumerate(raws):
        row, s = _expected(adapter, raw, raw.reset(seed=seed_for(seed, b, 0))[0])
        np.testing.assert_array_equal(obs[b], row)
        np.testing.assert_array_equal(state[b], s)
    agents, counts, t_ep = adapter.agents, [0, 0], [0] * B
    for t in range(steps):
        if before_step is not None:
            before_step(t, adapter, raws)
        act = np.stack([rng.integers(0, k, B) for k in adapter.n_actions], axis=1)
        obs, state, reward, terminated, truncated, final = adapter.step(act)
        assert obs.dtype == state.dtype == final.dtype == (
            np.int64 if isinstance(adapter, ParallelEnvIdAdapter) else np.float64)
        assert not (terminated & truncated).any()
        for b, raw in enumerate(raws):
            ro, rr, rte, rtr, _ = raw.step({a: int(act[b, i]) + adapter._spec.act_start[i]
                                            for i, a in enumerate(agents)})
            t_ep[b] += 1
            row, s = _expected(adapter, raw, ro)
            np.testing.assert_array_equal(adapter.final_obs[b], row)
            np.testing.assert_array_equal(final[b], s)
            np.testing.assert_array_equal(adapter.agent_rewards[b], [rr[a] for a in agents])
            assert reward[b] == sum(rr[a] for a in agents)
            ended = all(rte[a] or rtr[a] for a in agents) or t_ep[b] >= adapter.episode_limit
            assert terminated[b] == all(rte[a] for a in agents)
            assert truncated[b] == (ended and not terminated[b])
            if ended:
                counts[0 if terminated[b] else 1] += 1
                episode[b] += 1
                t_ep[b] = 0
                ro = raw.reset(seed=seed_for(seed, b, episode[b]))[0]
                row, s = _expected(adapter, raw, ro)
            else:
                np.testing.assert_array_equal(final[b], state[b])
            np.testing.assert_array_equal(obs[b], row)
            np.testing.assert_array_equal(state[b], s)
    return tuple(counts)


TOY_CASES = {
    "box": dict(),
    "box, no state": dict(state=None),
    "box, action start 1": dict(act_start=1, n_actions=(4, 2, 3), sizes=(1, 3, 5)),
    "discrete": dict(obs="discrete", sizes=(3, 5), state="discrete"),
    "discrete, joint obs": dict(obs="discrete", sizes=(3, 5), state=None, obs_start=2),
    "no termination": dict(terminate=False, max_cycles=4),
}


@pytest.mark.parametrize("case", TOY_CASES, ids=str)
def test_adapter_equals_raw_toy_step_for_step(case):
    _needs_pettingzoo()
    factory = lambda: Toy(**TOY_CASES[case])                             # noqa: E731
    env = from_parallel_env(factory)
    kind = ParallelEnvIdAdapter if "discrete" in case else ParallelEnvAdapter
    assert type(env) is kind and env.episode_limit == TOY_CASES[case].get("max_cycles", 6)
    assert env.critic_input == ("observations" if "state" in TOY_CASES[case] and
                                TOY_CASES[case]["state"] is None else "state")
    term, trunc = compare_with_raw(factory, env, 5, 3, 40, np.random.default_rng(0))
    assert trunc > 0 and (term > 0) == TOY_CASES[case].get("terminate", True)


def test_adapter_truncates_at_its_episode_limit():
    _needs_pettingzoo()
    factory = lambda: Toy(terminate=False, max_cycles=50)                # noqa: E731
    env = from_parallel_env(factory, episode_limit=3)
    assert env.episode_limit == 3
    term, trunc = compare_with_raw(factory, env, 2, 0, 7, np.random.default_rng(1))
    assert (term, trunc) == (0, 4)             # each copy at steps 3 and 6
    assert env._episode.tolist() == [2, 2] and env._t.tolist() == [1, 1]


def test_adapter_equals_raw_mpe2_step_for_step():
    spread = _mpe2("simple_spread_v3")
    listener = _mpe2("simple_speaker_listener_v4")
    for factory, steps in ((spread.parallel_env, 55), (listener.parallel_env, 30)):
        env = from_parallel_env(factory)
        assert env.episode_limit == 25 and env.critic_input == "state"
        assert compare_with_raw(factory, env, 3, 11, steps, np.random.default_rng(2)) == (
            0, 3 * (steps // 25))


def _world(penv):
    w = penv.unwrapped.world
    return (np.array([a.state.p_pos for a in w.agents]),
            np.array([a.state.p_vel for a in w.agents]),
            np.array([q.state.p_pos for q in w.landmarks]))


def _put_world(penv, pos, vel, lm):
    w = penv.unwrapped.world
    for i, a in enumerate(w.agents):
        a.state.p_pos, a.state.p_vel = pos[i].copy(), vel[i].copy()
    for q, landmark in enumerate(w.landmarks):
        landmark.state.p_pos = lm[q].copy()


def test_termination_apart_from_truncation_on_mpe2():
    """mpe2's simple_spread with terminate_on_success (simple_spread.py, Scenario.is_terminal:
    every landmark within 0.1 of an agent): agents put on the landmarks of copies 0 and 2 end
    those episodes as terminated at the next step; the others run to truncation."""
    spread = _mpe2("simple_spread_v3")
    factory = lambda: spread.parallel_env(terminate_on_success=True)     # noqa: E731
    env = from_parallel_env(factory)

    def cover(t, adapter, raws):
        if t == 3:
            for b in (0, 2):
                for penv in (adapter.envs[b], raws[b]):
                    pos, vel, lm = _world(penv)
                    _put_world(penv, lm + 0.01, 0 * vel, lm)   # p' = p + dt v: still covered
    term, trunc = compare_with_raw(factory, env, 4, 5, 26, np.random.default_rng(3), cover)
    assert (term, trunc) == (2, 2)             # copies 0, 2 at step 4; 1, 3 at step 25
    assert env._episode.tolist() == [1, 1, 1, 1] and env._t.tolist() == [22, 1, 22, 1]


def test_adapter_equals_project_spread():
    """Through the adapter, mpe2's simple_spread_v3 (N=3, local_ratio 0.5, max_cycles 25)
    gives the observations, global state, rewards and flags of envs_spread.Spread under the
    same actions and worlds (Spread's worlds set to mpe2's after every reset)."""
    spread = _mpe2("simple_spread_v3")
    from envs_spread import Spread
    env = from_parallel_env(lambda: spread.parallel_env(N=3, local_ratio=0.5, max_cycles=25))
    ours = Spread(3, 0.5, 25)
    assert (env.obs_dim, env.state_dim, env.n_actions, env.episode_limit) == (
        ours.obs_dim, ours.state_dim, ours.n_actions, ours.episode_limit)
    B = 6
    obs, state = env.reset(B, seed=4)
    ours.reset(B, seed=0)

    def sync():
        worlds = [_world(penv) for penv in env.envs]
        return ours.set_world(*(np.array([w[k] for w in worlds]) for k in range(3)))
    o2, s2 = sync()
    assert float32_close(obs, o2) and float32_close(state, s2)
    rng = np.random.default_rng(5)
    for t in range(60):
        act = rng.integers(0, 5, (B, 3))
        obs, state, reward, terminated, truncated, final = env.step(act)
        o2, s2, r2, te2, tr2, f2 = ours.step(act)
        np.testing.assert_allclose(env.agent_rewards, ours.agent_rewards, rtol=0, atol=1e-10)
        np.testing.assert_allclose(reward, r2, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(terminated, te2)
        np.testing.assert_array_equal(truncated, tr2)
        assert truncated.all() == ((t + 1) % 25 == 0) and not terminated.any()
        assert float32_close(final, f2)
        assert float32_close(env.final_obs, f2.reshape(B, 3, 18))
        if truncated.any():                    # our Spread drew its own new worlds: set mpe2's
            o2, s2 = sync()
        assert float32_close(obs, o2) and float32_close(state, s2)


def float32_close(a, b):
    """a and b differ by at most one float32 rounding of values near them."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return bool((np.abs(a - b) <= np.spacing(np.maximum(np.abs(a), np.abs(b)))).all())


def test_uneven_spaces_padded_speaker_listener():
    listener = _mpe2("simple_speaker_listener_v4")
    env = from_parallel_env(listener.parallel_env)
    assert env.agents == ("speaker_0", "listener_0")
    assert env.obs_dims == (3, 11) and env.obs_dim == 11 and env.n_actions == (3, 5)
    assert env.state_dim == 14 and env.critic_input == "state"
    obs, state = env.reset(3, seed=1)
    raw = listener.parallel_env()
    o = raw.reset(seed=seed_for(1, 2, 0))[0]
    np.testing.assert_array_equal(obs[2, 0, :3], o["speaker_0"])
    np.testing.assert_array_equal(obs[2, 1], o["listener_0"])
    assert (obs[:, 0, 3:] == 0).all() and (obs[:, 0, :3] != 0).any()
    np.testing.assert_array_equal(state[2], raw.state())
    with pytest.raises(ValueError, match=r"actions\[1, 0\] = 3 is out of range: agent "
                                         r"'speaker_0' has actions 0\.\.2"):
        env.step(np.array([[0, 0], [3, 4], [0, 0]]))
    obs, *_ = env.step(np.array([[2, 4], [1, 3], [0, 0]]))
    assert (obs[:, 0, 3:] == 0).all()


def test_same_seed_same_outputs():
    listener = _mpe2("simple_speaker_listener_v4")

    def run(env, seed):
        out = list(env.reset(4, seed=seed))
        rng = np.random.default_rng(0)
        for _ in range(30):
            out += env.step(np.stack([rng.integers(0, k, 4) for k in env.n_actions], 1))
        return out
    a, b = from_parallel_env(listener.parallel_env), from_parallel_env(listener.parallel_env)
    first = run(a, 7)
    for again in (run(b, 7), run(a, 7)):       # a fresh adapter; the same one again
        assert all(np.array_equal(x, y) for x, y in zip(first, again))
    other = run(b, 8)
    assert not np.array_equal(first[0], other[0])
    assert [seed_for(7, b, 0) for b in range(3)] == [seed_for(7, b, 0) for b in range(3)]
    assert len({seed_for(7, b, k) for b in range(4) for k in range(4)}) == 16
    for args, error, match in [((-1, 0, 0), ValueError, "seed must be >= 0"),
                               ((0, 1.0, 0), TypeError, "b must be an int"),
                               ((0, 0, -2), ValueError, "episode must be >= 0")]:
        with pytest.raises(error, match=match):
            seed_for(*args)


def _box(n=2):
    return spaces.Box(-1, 1, (n,), np.float32)


@pytest.mark.parametrize("override, match", [
    ({"a_1": (None, "box")}, r"agent 'a_1''s action space is Box\(-1\.0, 1\.0, \(2,\)"),
    ({"a_0": (None, "multidiscrete")}, r"agent 'a_0''s action space is MultiDiscrete"),
    ({"a_1": (None, "tuple")}, r"agent 'a_1''s action space is Tuple"),
    ({"a_1": ("dict", None)}, r"agent 'a_1''s observation space is Dict\('x'"),
    ({"a_0": ("tuple", None)}, r"agent 'a_0''s observation space is Tuple"),
    ({"a_0": ("multibinary", None)}, r"agent 'a_0''s observation space is MultiBinary"),
    ({"a_1": ("discrete", None)}, r"agent 'a_0' observes a Box but agent 'a_1' a Discrete"),
])
def test_bad_spaces_named(override, match):
    _needs_pettingzoo()
    make = {"box": lambda: _box(), "multidiscrete": lambda: spaces.MultiDiscrete([2, 3]),
            "tuple": lambda: spaces.Tuple((spaces.Discrete(2), spaces.Discrete(2))),
            "dict": lambda: spaces.Dict({"x": _box()}), "discrete": lambda: spaces.Discrete(3),
            "multibinary": lambda: spaces.MultiBinary(3), None: lambda: None}
    spec = {a: (make[o](), make[u]()) for a, (o, u) in override.items()}
    with pytest.raises(TypeError, match=match):
        from_parallel_env(lambda: Toy(spaces_override=spec))


def test_bad_factories_and_arguments():
    _needs_pettingzoo()
    toy = Toy()
    for factory, error, match in [
        (toy, TypeError, r"factory must be a zero-argument callable .* not an env \(Toy\)"),
        (3, TypeError, r"factory must be a zero-argument callable .*; got int 3"),
        (lambda n: Toy(), TypeError, r"factory must be callable with no arguments; .* \(n\)"),
        (lambda: 3, TypeError, r"factory must return a PettingZoo ParallelEnv; it returned "
                               r"int, which has no possible_agents, reset, step"),
        (lambda: Toy(sizes=()), ValueError, r"possible_agents must be a non-empty list"),
        (lambda: Toy(max_cycles=None), ValueError, r"episode_limit: the env has no max_cycles"),
    ]:
        with pytest.raises(error, match=match):
            from_parallel_env(factory)
    for kwargs, error, match in [
        (dict(episode_limit=0), ValueError, r"episode_limit must be >= 1, got 0"),
        (dict(episode_limit=2.5), TypeError, r"episode_limit must be an int, got float"),
        (dict(critic_input="critic"), ValueError, r"critic_input must be one of \('auto', "
                                                  r"'state', 'observations'\); got 'critic'"),
        (dict(action_masks=True), ValueError, r"action_masks must be one of \('refuse', "
                                              r"'ignore'\); got True"),
        (dict(max_envs=0), ValueError, r"max_envs must be >= 1, got 0"),
        (dict(max_envs=2 ** 17), ValueError, r"max_envs must be in \[1, 65536\], got 131072"),
    ]:
        with pytest.raises(error, match=match):
            from_parallel_env(Toy, **kwargs)
    with pytest.raises(ValueError, match=r"critic_input='state' needs the env's state\(\) with "
                                         r"a Box state_space; the env has no state_space"):
        from_parallel_env(lambda: Toy(state=None), critic_input="state")
    with pytest.raises(ValueError, match=r"needs the env's state\(\) with a Discrete "
                                         r"state_space; the env has state_space Box"):
        from_parallel_env(lambda: Toy(obs="discrete"), critic_input="state")
    with pytest.raises(TypeError, match=r"observations are Discrete .* ParallelEnvAdapter "
                                        r"takes the other kind: use ParallelEnvIdAdapter"):
        ParallelEnvAdapter(lambda: Toy(obs="discrete"))
    with pytest.raises(TypeError, match=r"observations are Box .* use ParallelEnvAdapter"):
        ParallelEnvIdAdapter(Toy)
    mpe2 = pytest.importorskip("mpe2")
    from mpe2 import simple_spread_v3
    with pytest.raises(TypeError, match=r"factory returned an AEC env .* pass the Parallel form"):
        from_parallel_env(simple_spread_v3.env)
    env = from_parallel_env(lambda: toy)       # the same env at every call
    with pytest.raises(ValueError, match=r"factory returned an env it had returned before"):
        env.reset(2)
    sizes = iter([(2, 4), (2, 5)])
    env = from_parallel_env(lambda: Toy(sizes=next(sizes)))
    with pytest.raises(ValueError, match=r"copy 1 made by the factory gives agent 'a_1' the "
                                         r"spaces Box\(-inf, inf, \(5,\)"):
        env.reset(2)
    env = from_parallel_env(Toy, max_envs=3)
    with pytest.raises(RuntimeError, match=r"call reset\(n_envs, seed\) before step"):
        env.step(np.zeros((1, 2), int))
    for args, error, match in [((4,), ValueError, r"n_envs must be in \[1, max_envs = 3\], "
                                                   r"got 4: .* raise the adapter's max_envs"),
                               ((0,), ValueError, r"n_envs must be >= 1, got 0"),
                               ((2, -1), ValueError, r"seed must be >= 0, got -1"),
                               ((2, "s"), TypeError, r"seed must be an int, got str")]:
        with pytest.raises(error, match=match):
            env.reset(*args)
    env.reset(2, seed=0)
    for actions, error, match in [
        (np.zeros((3, 2), int), ValueError, r"actions must have shape \(n_envs, n_agents\) = "
                                            r"\(2, 2\), got shape \(3, 2\)"),
        (np.zeros((2, 2)), TypeError, r"actions must be an integer array, got dtype float64"),
        (np.array([[0, 2], [0, 0]]), ValueError, r"actions\[0, 1\] = 2 is out of range: agent "
                                                 r"'a_1' has actions 0\.\.1"),
    ]:
        with pytest.raises(error, match=match):
            env.step(actions)
    assert env._t.tolist() == [0, 0]           # nothing was stepped


@pytest.mark.parametrize("fault, match", [
    ("leave", r"copy 0's step gave no reward for agent 'a_1' .* agents that leave mid-episode"),
    ("finish_one", r"in copy 0, agent 'a_0' finished .* at step 2 and agent 'a_1' did not"),
    ("mixed", r"agent 'a_0' terminated and agent 'a_1' was only truncated"),
    ("reset_agents", r"copy 0's live agents after reset are \['a_0'\], not possible_agents "
                     r"\['a_0', 'a_1'\] \(missing \['a_1'\]"),
    ("join", r"copy 0's live agents after step are .*unknown \['ghost'\]\)"),
    ("nan", r"copy 0's step gave agent 'a_0' a non-finite observation"),
    ("shape", r"copy 0's step gave agent 'a_0' an observation of shape \(3,\); its space is a "
              r"Box of shape \(2,\)"),
    ("reward", r"copy 0's step gave agent 'a_0' the reward str 'high'"),
])
def test_misbehaving_envs_refused(fault, match):
    _needs_pettingzoo()
    env = from_parallel_env(lambda: Toy(fault=fault, terminate=fault != "mixed"))
    with pytest.raises((ValueError, TypeError), match=match):
        env.reset(1, seed=0)
        for _ in range(6):
            env.step(np.zeros((1, 2), int))


def test_action_masks():
    _needs_pettingzoo()
    with pytest.raises(ValueError, match=r"agent 'a_0' gives an action mask \(an 'action_mask' "
                                         r"in its info dict\); the learners .* cannot apply"):
        from_parallel_env(lambda: Toy(masks="info")).reset(2, seed=0)
    with pytest.raises(ValueError, match=r"agent 'a_0' gives an action mask \(its observation "
                                         r"space is a Dict with an 'action_mask'\)"):
        from_parallel_env(lambda: Toy(obs="dictmask"))
    for kind in ("info", "dictmask"):
        factory = lambda: Toy(masks="info" if kind == "info" else None,          # noqa: E731
                              obs="dictmask" if kind == "dictmask" else "box")
        env = from_parallel_env(factory, action_masks="ignore")
        assert env.obs_dims == (2, 4)
        compare_with_raw(factory, env, 3, 0, 8, np.random.default_rng(4))   # obs unwrapped
        raws = [factory() for _ in range(3)]
        env.reset(3, seed=1)
        for b, raw in enumerate(raws):
            raw.reset(seed=seed_for(1, b, 0))
        rng = np.random.default_rng(5)
        forbidden = 0
        for t in range(12):
            for b, raw in enumerate(raws):
                for i in range(2):
                    expected = raw._mask(i).astype(bool)
                    np.testing.assert_array_equal(env.action_mask[b, i, :raw.A[i]], expected)
                assert env.action_mask[b, 1, 2:].all()          # beyond agent 1's 2 actions
            act = np.stack([rng.integers(0, 3, 3), rng.integers(0, 2, 3)], 1)
            forbidden += sum(not raw._mask(i)[act[b, i]] for b, raw in enumerate(raws)
                             for i in range(2))
            *_, te, tr, _ = env.step(act)
            for b, raw in enumerate(raws):
                _, _, rte, rtr, _ = raw.step({a: int(act[b, i]) for i, a in
                                              enumerate(raw.agents)})
                if te[b] or tr[b]:
                    raw.reset(seed=seed_for(1, b, env._episode[b]))
        assert env.masked_actions == forbidden > 0


def test_critic_input_choices():
    _needs_pettingzoo()
    env = from_parallel_env(Toy, critic_input="observations")
    assert env.critic_input == "observations" and env.state_dim == 6
    obs, state = env.reset(2, seed=0)
    np.testing.assert_array_equal(state, np.concatenate([obs[:, 0, :2], obs[:, 1, :4]], 1))
    env = from_parallel_env(Toy)
    assert env.critic_input == "state" and env.state_dim == 4
    ids = from_parallel_env(lambda: Toy(obs="discrete", sizes=(3, 5), state=None))
    assert ids.critic_input == "observations" and ids.n_states == 15 and ids.n_obs == 5
    obs, state = ids.reset(4, seed=2)
    np.testing.assert_array_equal(state, obs[:, 0] * 5 + obs[:, 1])
    ids = from_parallel_env(lambda: Toy(obs="discrete", sizes=(3, 5), state="discrete"),
                            critic_input="observations")
    assert ids.critic_input == "observations" and ids.n_states == 15
    with pytest.raises(ValueError, match=r"joint observation of the 2 agents has 4\.29e\+09 "
                                         r"values"):
        from_parallel_env(lambda: Toy(obs="discrete", sizes=(2 ** 16, 2 ** 16), state=None))


def test_copies_made_on_demand_and_closed():
    _needs_pettingzoo()
    made = []

    class Closing(Toy):
        closed = False

        def close(self):
            self.closed = True

    def factory():
        made.append(Closing())
        return made[-1]
    env = from_parallel_env(factory)
    assert len(made) == 1 and env.envs == ()              # copy 0, made to read the spaces
    env.reset(3, seed=0)
    assert env.envs == tuple(made) and len(made) == 3
    env.reset(2, seed=0)
    assert env.envs == tuple(made[:2]) and len(made) == 3  # kept, not remade
    env.close()
    assert all(e.closed for e in made) and env.envs == ()
    env.reset(1, seed=0)
    assert len(made) == 4 and env.envs == (made[3],)


def test_from_parallel_env_without_optional_dependencies(monkeypatch):
    monkeypatch.setitem(sys.modules, "pettingzoo", None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install -e '\.\[pettingzoo\]'"):
        from_parallel_env(lambda: None)
    assert envs_pz_in.seed_for(1, 2, 3) > 0            # the module itself needs only numpy


def test_toy_is_a_parallel_env():
    """The test env itself passes PettingZoo's API test (so the adapter is tested on a
    valid ParallelEnv)."""
    _needs_pettingzoo()
    test = pytest.importorskip("pettingzoo.test")
    for kwargs in (dict(), dict(obs="discrete", state="discrete"), dict(masks="info")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test.parallel_api_test(Toy(**kwargs), num_cycles=30)


# --------------------------------------------------------------------------- the learners

@pytest.mark.parametrize("name", ["simple_speaker_listener_v4", "simple_reference_v3"])
def test_neural_train_through_the_adapter(name):
    """asae_neural.train through the front door on an mpe2 env it has never seen: the curve
    is finite, every network has the env's sizes, and the same seed gives the same run."""
    module = _mpe2(name)
    from asae_neural import NetConfig, evaluate, train
    env = from_parallel_env(module.parallel_env)
    cfg = NetConfig(iterations=2, n_envs=4, eval_episodes=4, epochs=2, seed=3)
    res = train(env, "async", cfg)
    assert res.mean_return.shape == (2,) and np.isfinite(res.mean_return).all()
    assert res.env_steps.tolist() == [100, 200]          # 4 envs × 25 steps per iteration
    assert np.isfinite([res.greedy_return, res.stochastic_return]).all()
    assert (res.mean_return < 0).all()                   # MPE's rewards are distances: < 0
    assert res.policy.n_actions == env.n_actions and len(res.policy.params) == env.n_agents
    assert res.policy.net.d_in == env.obs_dim and res.policy.net.d_out == max(env.n_actions)
    again = train(env, "async", cfg)
    np.testing.assert_array_equal(res.mean_return, again.mean_return)
    assert (res.greedy_return, res.stochastic_return) == (again.greedy_return,
                                                          again.stochastic_return)
    assert all(np.array_equal(p, q) for p, q in zip(res.policy.params, again.policy.params))
    other = train(env, "async", NetConfig(iterations=2, n_envs=4, eval_episodes=4, epochs=2,
                                          seed=4))
    assert not np.array_equal(res.mean_return, other.mean_return)
    assert evaluate(env, res.policy, episodes=4, seed=0) == evaluate(env, res.policy,
                                                                     episodes=4, seed=0)


def test_tabular_train_through_the_id_adapter():
    """asae_tabular.train on a Discrete-observation ParallelEnv, through env.step: it learns
    (Toy pays (i + 1) a_i, so the largest actions are best) and repeats itself."""
    _needs_pettingzoo()
    from asae_tabular import TabularConfig, evaluate, train
    env = from_parallel_env(lambda: Toy(obs="discrete", sizes=(3, 5), state="discrete",
                                        terminate=False, max_cycles=4))
    cfg = TabularConfig(iterations=60, n_envs=8, rollout_len=4, seed=0, reward_scale=0.1)
    res = train(env, "async", cfg)
    assert [z.shape for z in res.logits] == [(5, 3), (5, 2)] and res.values.shape == (10,)
    uniform = [np.zeros((5, 3)), np.zeros((5, 2))]
    random_return = evaluate(env, uniform, episodes=64, greedy=False, seed=1)
    best = 4 * (1 * 2 + 2 * 1) + 4 * 2 * 0.9             # the x / 10 terms are at most 0.9
    assert random_return + 3 < res.greedy_return <= best      # 11.5, 16.5 (19.75 at the top)
    again = train(env, "async", cfg)
    np.testing.assert_array_equal(res.mean_return, again.mean_return)
    assert all(np.array_equal(p, q) for p, q in zip(res.logits, again.logits))


# ---- from the audit of issue 25 -------------------------------------------------------------

@pytest.mark.parametrize("bad", ["1", True, np.array([1.0, 2.0]), None])
def test_rewards_that_are_not_real_numbers_are_refused(monkeypatch, bad):
    """float() accepts '1' and True; the adapter takes real numbers (or 0-d numeric arrays)."""
    _needs_pettingzoo()
    real = Toy.step

    def step(self, actions):
        obs, rewards, term, trunc, infos = real(self, actions)
        rewards[self.possible_agents[0]] = bad
        return obs, rewards, term, trunc, infos
    monkeypatch.setattr(Toy, "step", step)
    env = from_parallel_env(lambda: Toy(terminate=False))
    env.reset(1, seed=0)
    with pytest.raises(TypeError, match="rewards must be real numbers"):
        env.step(np.zeros((1, 2), int))


def test_a_zero_d_numeric_reward_is_accepted(monkeypatch):
    _needs_pettingzoo()
    real = Toy.step

    def step(self, actions):
        obs, rewards, term, trunc, infos = real(self, actions)
        return obs, {a: np.float32(r) for a, r in rewards.items()}, term, trunc, infos
    monkeypatch.setattr(Toy, "step", step)
    env = from_parallel_env(lambda: Toy(terminate=False))
    env.reset(1, seed=0)
    assert np.isfinite(env.step(np.zeros((1, 2), int))[2]).all()


def test_spaces_given_as_attributes_are_refused():
    _needs_pettingzoo()
    toy = Toy()
    toy.observation_space = None
    with pytest.raises(TypeError, match=r"observation_space\(agent\) and action_space\(agent\)"):
        from_parallel_env(lambda: toy)


@pytest.mark.parametrize("field", ["n_envs", "eval_episodes"])
def test_a_run_larger_than_max_envs_is_refused_before_training(field):
    """eval_episodes beyond the adapter's max_envs would fail at the evaluation, after the
    whole run: both learners refuse it before the first iteration, naming the field."""
    _needs_pettingzoo()
    import asae_neural
    import asae_tabular
    calls = []
    env = from_parallel_env(lambda: Toy(), max_envs=4)
    kw = {"n_envs": 2, "eval_episodes": 2, field: 8}
    with pytest.raises(ValueError, match=rf"NetConfig.{field} = 8 exceeds env.max_envs = 4"):
        asae_neural.train(env, "async", asae_neural.NetConfig(iterations=1, hidden=4, **kw),
                          callback=lambda *a: calls.append(a))
    ids = from_parallel_env(lambda: Toy(obs="discrete", state="discrete"), max_envs=4)
    with pytest.raises(ValueError, match=rf"TabularConfig.{field} = 8 exceeds env.max_envs"):
        asae_tabular.train(ids, "async", asae_tabular.TabularConfig(iterations=1, **kw),
                           callback=lambda *a: calls.append(a))
    assert calls == []
