"""Tests of envs_spread.Spread (cooperative navigation): equal to mpe2's simple_spread_v3
step for step, kernel == plain-Python reference, physical properties, reset distribution and
seeding, reference returns, the PettingZoo wrapper and input validation."""
import copy
import itertools
import math
import warnings

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import envs_spread
from envs_spread import SPREAD_REFERENCES, Spread, SpreadReferences
from envs_pettingzoo import to_parallel_env

MOVES = np.array([(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)], float)  # unit force of action a


# --------------------------------------------------------------------------- worlds

def random_worlds(rng, B, n, kind):
    """(agent_pos, agent_vel, landmark_pos) of B envs, each (B, n, 2).

    kind: "reset" (the reset distribution), "corners" (the boundaries of the reset
    distribution: agent 0 and landmark 0 exactly on a corner of [-1, 1)^2, i.e. at -1 or
    the float below +1, the other agents within 0.1 of a corner), "cluster" (agents within
    0.2 of each other: collisions), "touching" (agents 1e-9..1e-3 apart, deep penetration),
    "far" (outside the box, fast)."""
    lm = rng.uniform(-1, 1, (B, n, 2))
    vel = rng.normal(0, 0.5, (B, n, 2))
    if kind == "reset":
        pos = rng.uniform(-1, 1, (B, n, 2))
        vel[:] = 0
    elif kind == "corners":
        top = np.nextafter(1.0, 0.0)
        pos = rng.choice([-1.0, top], (B, n, 2))
        inward = rng.uniform(0, 0.1, (B, n, 2))
        pos += np.where(pos < 0, inward, -inward)
        pos[:, 0] = rng.choice([-1.0, top], (B, 2))  # agent 0 exactly on a corner
        lm[:, 0] = rng.choice([-1.0, top], (B, 2))
    elif kind == "cluster":
        pos = rng.uniform(-1, 1, (B, 1, 2)) + rng.uniform(-0.1, 0.1, (B, n, 2))
    elif kind == "touching":
        pos = rng.uniform(-1, 1, (B, 1, 2)) + np.cumsum(
            rng.uniform(1e-9, 1e-3, (B, n, 2)), axis=1)
    else:
        pos = rng.uniform(-3, 3, (B, n, 2))
        vel = rng.normal(0, 3, (B, n, 2))
    return pos, vel, lm


def toward_centroid(pos):
    """Actions (B, n) that push each agent toward the agents' centroid (many collisions)."""
    d = pos.mean(axis=1, keepdims=True) - pos
    horizontal = np.abs(d[..., 0]) >= np.abs(d[..., 1])
    return np.where(horizontal, np.where(d[..., 0] < 0, 1, 2), np.where(d[..., 1] < 0, 3, 4))


@st.composite
def spread_cases(draw, max_agents=5):
    n = draw(st.integers(1, max_agents))
    local_ratio = draw(st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1))
    max_cycles = draw(st.integers(1, 8))
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 20))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["none", "reset", "corners", "cluster", "touching", "far"]))
    return Spread(n, local_ratio, max_cycles, obs_dtype=np.float64), B, T, seed, kind


def start(env, B, seed, kind):
    """reset(B, seed), then (unless kind == "none") a random world of that kind."""
    obs, state = env.reset(B, seed=seed)
    if kind != "none":
        rng = np.random.default_rng(seed)
        obs, state = env.set_world(*random_worlds(rng, B, env.n_agents, kind),
                                   t=rng.integers(0, env.max_cycles, B))
    return obs, state


# --------------------------------------------------------------------------- equal to mpe2

def mpe2_env(n, local_ratio, max_cycles):
    mpe2 = pytest.importorskip(
        "mpe2", reason="mpe2 is not installed (pip install -e '.[mpe]'): cannot compare with it")
    from mpe2 import simple_spread_v3
    assert mpe2.__version__ == "1.1.1", "pyproject.toml pins mpe2==1.1.1; update both together"
    return simple_spread_v3.parallel_env(N=n, local_ratio=local_ratio, max_cycles=max_cycles)


def put_world(penv, pos, vel, lm):
    world = penv.unwrapped.world
    for i, agent in enumerate(world.agents):
        agent.state.p_pos = pos[i].copy()
        agent.state.p_vel = vel[i].copy()
    for q, landmark in enumerate(world.landmarks):
        landmark.state.p_pos = lm[q].copy()


def float32_close(a, b):
    """a and b (float32) differ by at most one float32 rounding of values near them."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return bool((np.abs(a - b) <= np.spacing(np.maximum(np.abs(a), np.abs(b)))).all())


@pytest.mark.parametrize("n, local_ratio, max_cycles", [
    (3, 0.5, 25), (1, 0.5, 25), (2, 0.0, 25), (4, 1.0, 12), (6, 0.3, 25)])
def test_equal_to_mpe2_step_for_step(n, local_ratio, max_cycles):
    B = 12  # one mpe2 env per env of the batch, all stepped together
    penvs = [mpe2_env(n, local_ratio, max_cycles) for _ in range(B)]
    names = [f"agent_{i}" for i in range(n)]
    env64 = Spread(n, local_ratio, max_cycles, obs_dtype=np.float64)
    env32 = Spread(n, local_ratio, max_cycles)
    rng = np.random.default_rng(n)
    collisions = contacts = 0
    for kind in ["reset", "corners", "cluster", "touching", "far"]:
        worlds = random_worlds(np.random.default_rng([n, len(kind)]), B, n, kind)
        for env in (env64, env32):
            env.reset(B, seed=7)
            env.set_world(*worlds)
        for b, penv in enumerate(penvs):
            penv.reset(seed=b)
            put_world(penv, *(x[b] for x in worlds))
        for t in range(max_cycles):
            before = env64.world().agent_pos
            actions = rng.integers(0, 5, (B, n))
            actions[1::3] = toward_centroid(before[1::3])  # every third env pushes together
            obs, state, reward, terminated, truncated, final64 = env64.step(actions)
            final32 = env32.step(actions)[5]
            assert not terminated.any() and truncated.all() == (t + 1 == max_cycles)
            for b, penv in enumerate(penvs):
                pobs, prew, pterm, ptrunc, _ = penv.step(dict(zip(names, actions[b].tolist())))
                scenario, world = penv.unwrapped.scenario, penv.unwrapped.world
                f = final64[b].reshape(n, 6 * n)  # the successor, also when the env has reset
                # positions and velocities (observation slots 2:4 and 0:2 of each agent)
                np.testing.assert_allclose(f[:, 2:4], [a.state.p_pos for a in world.agents],
                                           rtol=0, atol=1e-10)
                np.testing.assert_allclose(f[:, 0:2], [a.state.p_vel for a in world.agents],
                                           rtol=0, atol=1e-10)
                np.testing.assert_array_equal([q.state.p_pos for q in world.landmarks],
                                              worlds[2][b])  # mpe2's landmarks did not move
                # the scenario's own float64 observations, and the global state
                own = np.array([scenario.observation(a, world) for a in world.agents])
                np.testing.assert_allclose(f, own, rtol=0, atol=1e-10)
                np.testing.assert_allclose(final64[b], own.ravel(), rtol=0, atol=1e-10)
                # rewards: per agent, and the team reward is their sum
                np.testing.assert_allclose(env64.agent_rewards[b], [prew[a] for a in names],
                                           rtol=0, atol=1e-10)
                assert reward[b] == pytest.approx(sum(prew.values()), abs=1e-10)
                # flags
                assert not any(pterm.values())
                assert all(ptrunc.values()) == (t + 1 == max_cycles) == truncated[b]
                # mpe2's API casts to float32: observations and state()
                assert float32_close(final32[b].reshape(n, 6 * n), [pobs[a] for a in names])
                assert float32_close(final32[b], penv.unwrapped.state())
                d_before = np.linalg.norm(before[b][:, None] - before[b][None], axis=-1)
                d_after = np.linalg.norm(f[:, None, 2:4] - f[None, :, 2:4], axis=-1)
                contacts += int((d_before[np.triu_indices(n, 1)] < 0.3).any())
                collisions += int((d_after[np.triu_indices(n, 1)] < 0.3).any())
    if n > 1:  # the comparison covered contact forces and collision penalties
        assert contacts > 0 and collisions > 0


def test_parallel_env_equals_mpe2():
    penv = mpe2_env(3, 0.5, 25)
    ours = to_parallel_env(Spread(3), seed=11)
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs, _ = ours.reset(seed=episode) if episode else ours.reset()
        penv.reset(seed=episode)
        w = ours.game.world()
        put_world(penv, w.agent_pos[0], w.agent_vel[0], w.landmark_pos[0])
        assert all(float32_close(obs[a], penv.unwrapped.observe(a)) for a in obs)
        while ours.agents:
            actions = {a: int(rng.integers(5)) for a in ours.agents}
            o1, r1, term1, trunc1, _ = ours.step(actions)
            o2, r2, term2, trunc2, _ = penv.step(actions)
            assert o1.keys() == o2.keys() and all(float32_close(o1[a], o2[a]) for a in o1)
            assert r1.keys() == r2.keys()
            assert all(r1[a] == pytest.approx(r2[a], abs=1e-10) for a in r1)
            assert term1 == term2 and trunc1 == trunc2
            assert float32_close(ours.state(), penv.state())
        assert not penv.agents


# --------------------------------------------------------------------------- kernel == reference

@given(spread_cases())
def test_batched_step_equals_reference(case):
    env, B, T, seed, kind = case
    n = env.n_agents
    obs, state = start(env, B, seed, kind)
    refs = [env.reference_state(b) for b in range(B)]
    if kind == "none":
        keys = Spread.seed_keys(seed, B)
        assert refs == [env.reference_reset(int(k)) for k in keys]
    for b in range(B):
        assert obs[b].tolist() == [list(o) for o in env.reference_observations(refs[b][0])]
        assert state[b].tolist() == list(env.reference_global_state(refs[b][0]))
    actions = np.random.default_rng(seed).integers(0, 5, (T, B, n))
    for a in actions:
        obs, state, reward, terminated, truncated, final_state = env.step(a)
        for b in range(B):
            s, t, r, term, trunc, final = env.reference_step(*refs[b], a[b].tolist())
            refs[b] = (s, t)
            assert env.reference_state(b) == (s, t)
            assert (reward[b], terminated[b], truncated[b]) == (r, term, trunc)
            assert env.agent_rewards[b].tolist() == list(env.reference_agent_rewards(final))
            assert obs[b].tolist() == [list(o) for o in env.reference_observations(s)]
            assert state[b].tolist() == list(env.reference_global_state(s))
            assert final_state[b].tolist() == list(env.reference_global_state(final))
            if trunc:
                event("truncated")
            if min(env.agent_rewards[b]) < max(env.agent_rewards[b]):
                event("collision")
        assert not terminated.any()
        assert (final_state[~truncated] == state[~truncated]).all()


def test_reference_reset_and_generator():
    # SplitMix64's published test vector (seed 1234567), through both implementations
    key, expected = 1234567, [6457827717110365317, 3203168211198807973, 9817491932198370423]
    rng = np.array([key], np.uint64)
    for z in expected:
        key, x = envs_spread._py_uniform_pm1(key)
        assert x == envs_spread._uniform_pm1(rng, 0) == -1.0 + 2.0 * ((z >> 11) * 2.0**-53)
        assert key == int(rng[0])
    env = Spread(2)
    state, t = env.reference_reset(0)
    assert t == 0 and state.agent_vel == ((0.0, 0.0), (0.0, 0.0))
    draws, k = [], 0
    for _ in range(8):
        k, x = envs_spread._py_uniform_pm1(k)
        draws.append(x)
    assert state.agent_pos == ((draws[0], draws[1]), (draws[2], draws[3]))
    assert state.landmark_pos == ((draws[4], draws[5]), (draws[6], draws[7])) and state.rng == k


# --------------------------------------------------------------------------- properties

@st.composite
def separated_worlds(draw):
    """A world whose agents are at least 0.35 apart (no contact force above 1e-19)."""
    n = draw(st.integers(1, 5))
    cells = draw(st.permutations(range(16)))[:n]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pos = np.array([divmod(c, 4) for c in cells], float) * 0.5 - 1
    pos += rng.uniform(-0.07, 0.07, (n, 2))
    vel = rng.normal(0, 1, (n, 2))
    lm = rng.uniform(-1, 1, (n, 2))
    return pos, vel, lm, rng.integers(0, 5, n)


@given(separated_worlds())
def test_collision_free_step_is_the_documented_integration(world):
    pos, vel, lm, a = world
    env = Spread(len(a), obs_dtype=np.float64)
    env.reset(1)
    env.set_world(pos[None], vel[None], lm[None])
    env.step(a[None])
    w = env.world()
    np.testing.assert_array_equal(w.agent_pos[0], pos + vel * 0.1)  # p' = p + dt v
    np.testing.assert_allclose(w.agent_vel[0], 0.75 * vel + 0.1 * 5.0 * MOVES[a],
                               rtol=0, atol=1e-15)  # v' = (1 - 0.25) v + dt * 5 * e(a)
    np.testing.assert_array_equal(w.landmark_pos[0], lm)


@settings(max_examples=40)
@given(st.integers(2, 5), st.floats(0, 1), st.integers(0, 2**32 - 1),
       st.sampled_from(["reset", "cluster", "touching", "corners"]))
def test_rewards_invariant_to_relabelling(n, local_ratio, seed, kind):
    rng = np.random.default_rng(seed)
    pos, vel, lm = random_worlds(rng, 1, n, kind)
    actions = rng.integers(0, 5, (3, 1, n))
    sigma, tau = rng.permutation(n), rng.permutation(n)  # relabel agents and landmarks
    runs = []
    for p, v, q, acts in [(pos, vel, lm, actions),
                          (pos[:, sigma], vel[:, sigma], lm[:, tau], actions[:, :, sigma])]:
        env = Spread(n, local_ratio, obs_dtype=np.float64)
        env.reset(1)
        env.set_world(p, v, q)
        runs.append([(env.step(a)[2][0], env.agent_rewards[0].copy()) for a in acts])
    for (r1, per1), (r2, per2) in zip(*runs):
        assert r1 == pytest.approx(r2, abs=1e-12)
        np.testing.assert_allclose(per1[sigma], per2, rtol=0, atol=1e-12)


@given(spread_cases())
def test_landmarks_never_move_and_momentum(case):
    env, B, T, seed, kind = case
    start(env, B, seed, kind)
    rng = np.random.default_rng(seed)
    for _ in range(T):
        w = env.world()
        *_, truncated, final_state = env.step(np.zeros((B, env.n_agents), int))
        w2 = env.world()
        going = ~truncated
        np.testing.assert_array_equal(w2.landmark_pos[going], w.landmark_pos[going])
        # no-op actions: contact forces are equal and opposite, so sum v' = 0.75 sum v
        v_final = final_state.reshape(B, env.n_agents, -1)[..., 0:2]
        np.testing.assert_allclose(v_final.sum(axis=1), 0.75 * w.agent_vel.sum(axis=1),
                                   rtol=0, atol=1e-12)
        env.step(rng.integers(0, 5, (B, env.n_agents)))


def test_observation_layout():
    env = Spread(3, obs_dtype=np.float64)
    env.reset(2, seed=0)
    pos = np.array([[[0.1, 0.2], [0.5, -0.3], [-0.4, 0.9]]] * 2)
    vel = np.array([[[1.0, -1.0], [0.0, 2.0], [3.0, 0.5]]] * 2)
    lm = np.array([[[0.0, 0.0], [1.0, 1.0], [-1.0, 0.5]]] * 2)
    obs, state = env.set_world(pos, vel, lm)
    o = obs[0, 1]  # agent 1: [v_1, p_1, q_l - p_1, p_0 - p_1, p_2 - p_1, zeros(4)]
    np.testing.assert_array_equal(o[:4], [0.0, 2.0, 0.5, -0.3])
    np.testing.assert_allclose(o[4:10], (lm[0] - pos[0, 1]).ravel())
    np.testing.assert_allclose(o[10:14], np.r_[pos[0, 0] - pos[0, 1], pos[0, 2] - pos[0, 1]])
    np.testing.assert_array_equal(o[14:], 0.0)
    np.testing.assert_array_equal(state, obs.reshape(2, 54))
    assert (env.obs_dim, env.state_dim) == (18, 54)
    for n in (1, 2, 5):
        assert Spread(n).reset(1)[0].shape == (1, n, 6 * n)


def test_reset_distribution():
    env = Spread(3, obs_dtype=np.float64)
    B = 20000
    env.reset(B, seed=123)
    w = env.world()
    x = np.concatenate([w.agent_pos.reshape(B, -1), w.landmark_pos.reshape(B, -1)], axis=1)
    assert (x >= -1).all() and (x < 1).all() and (w.agent_vel == 0).all() and (w.t == 0).all()
    # each of the 12 coordinates is U[-1, 1): means, variances and deciles (within ~5 sigma)
    assert np.abs(x.mean(axis=0)).max() < 5 * math.sqrt(1 / 3 / B)
    assert np.abs(x.var(axis=0) - 1 / 3).max() < 5 * math.sqrt(4 / 45 / B)
    counts = np.stack([np.histogram(c, bins=10, range=(-1, 1))[0] for c in x.T]) / B
    assert np.abs(counts - 0.1).max() < 5 * math.sqrt(0.09 / B)
    corr = np.corrcoef(x.T) - np.eye(12)  # independent coordinates
    assert np.abs(corr).max() < 5 / math.sqrt(B)
    # after truncation, envs restart from the same distribution with zero velocity
    env = Spread(2, max_cycles=3, obs_dtype=np.float64)
    env.reset(500, seed=1)
    for t in range(6):
        obs, state, reward, terminated, truncated, final_state = env.step(np.full((500, 2), 2))
        assert truncated.all() == (t % 3 == 2) and not terminated.any()
        assert (env.world().t == (t + 1) % 3).all()
        if truncated.all():
            assert (obs[:, :, 0:2] == 0).all() and (final_state[:, 0] != 0).all()
            assert np.abs(obs[:, :, 2:4]).max() <= 1


def test_seeding():
    env = Spread(3)
    runs = []
    for B, seed in [(5, 42), (3, 42), (5, 42), (5, 43)]:
        env.reset(B, seed=seed)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(30):  # past one auto-reset
            o, s, r, *_ = env.step(rng.integers(0, 5, (5, 3))[:B])
            out.append((o[:3].copy(), r[:3].copy()))
        runs.append(out)
    same = [all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(runs[0], r))
            for r in runs[1:]]
    assert same == [True, True, False]  # env b depends on (seed, b), never on B
    starts = [Spread(3).reset(2)[1] for _ in range(2)]  # seed=None: fresh entropy
    assert not np.array_equal(*starts)
    keys = Spread.seed_keys(42, 4)
    assert keys.dtype == np.uint64 and len(set(keys.tolist())) == 4
    np.testing.assert_array_equal(keys[:2], Spread.seed_keys(np.int64(42), 2))


# --------------------------------------------------------------------------- reference points

@given(st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_min_cost_assignment_is_exact(n, seed, integer_costs):
    rng = np.random.default_rng(seed)
    cost = rng.integers(0, 4, (n, n)).astype(float) if integer_costs else rng.uniform(0, 3, (n, n))
    assign = envs_spread._min_cost_assignment(cost)
    assert sorted(assign.tolist()) == list(range(n))
    best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
    assert cost[np.arange(n), assign].sum() == pytest.approx(best, abs=1e-9)


def test_scripted_controller():
    env = Spread(3, local_ratio=0.0, obs_dtype=np.float64)
    env.reset(200, seed=3)
    w = env.world()
    actions = env.scripted_actions()
    assert actions.shape == (200, 3) and actions.dtype == np.int64
    assert ((0 <= actions) & (actions < 5)).all()
    np.testing.assert_array_equal(actions, env.scripted_actions())  # does not change the env
    # agents start at rest and push toward their landmark along the larger axis
    for b in range(20):
        cost = np.linalg.norm(w.agent_pos[b][:, None] - w.landmark_pos[b][None], axis=-1)
        target = w.landmark_pos[b][envs_spread._min_cost_assignment(cost)]
        d = target - w.agent_pos[b]
        for i in range(3):
            if max(abs(d[i])) > 0.1:
                expect = (2 if d[i, 0] > 0 else 1) if abs(d[i, 0]) >= abs(d[i, 1]) else (
                    4 if d[i, 1] > 0 else 3)
                assert actions[b, i] == expect
    # after 24 steps (before the episode ends) agents rest on the 0.2 coasting grid
    for _ in range(24):
        env.step(env.scripted_actions())
    w = env.world()
    d = np.linalg.norm(w.agent_pos[:, :, None] - w.landmark_pos[:, None], axis=-1).min(axis=1)
    assert np.median(d) < 0.1


def test_stored_references_agree_with_a_fresh_measurement():
    assert {k[0] for k in SPREAD_REFERENCES} >= {2, 3, 6, 12}
    for (n, local_ratio, max_cycles), stored in SPREAD_REFERENCES.items():
        assert isinstance(stored, SpreadReferences) and stored.seed == 0
        assert stored.random.n_episodes == stored.scripted.n_episodes == 20000
        assert stored.scripted.mean > stored.random.mean
        if n > 6:
            continue  # the largest configuration takes long; the smaller ones cover the code
        fresh = envs_spread.spread_references(n, local_ratio, max_cycles, n_episodes=2000, seed=1)
        for a, b in [(stored.random, fresh.random), (stored.scripted, fresh.scripted)]:
            # both are means of independent episodes: agree within 4 combined standard errors
            se = math.hypot(a.ci95, b.ci95) / 1.96
            assert abs(a.mean - b.mean) < 4 * se, (n, a, b)
            assert 0.5 < (b.ci95 / a.ci95) / math.sqrt(10) < 2  # the uncertainty is right too


def test_stored_references_are_reproducible():
    stored = SPREAD_REFERENCES[(2, 0.5, 25)]
    again = envs_spread.spread_references(2, 0.5, 25, n_episodes=20000, seed=0)
    for a, b in [(stored.random, again.random), (stored.scripted, again.scripted)]:
        assert abs(a.mean - b.mean) < 1e-4 and abs(a.ci95 - b.ci95) < 1e-4
        assert a.n_episodes == b.n_episodes


def test_normalized_score():
    env = Spread(3)
    refs = env.reference_returns
    assert refs is SPREAD_REFERENCES[(3, 0.5, 25)]
    assert env.normalized_score(refs.random.mean) == pytest.approx(0)
    assert env.normalized_score(refs.scripted.mean) == pytest.approx(1)
    np.testing.assert_allclose(env.normalized_score([refs.random.mean, refs.scripted.mean]), [0, 1])
    mine = SpreadReferences(envs_spread.ReturnEstimate(-10.0, 1, 5),
                            envs_spread.ReturnEstimate(-2.0, 1, 5), 0)
    assert Spread(7).reference_returns is None
    assert Spread(7).normalized_score(-6.0, mine) == 0.5
    with pytest.raises(ValueError, match=r"no stored reference returns for Spread\(n_agents=7"):
        Spread(7).normalized_score(-6.0)
    with pytest.raises(TypeError, match="references must be a SpreadReferences"):
        env.normalized_score(-6.0, (1, 2, 3))
    with pytest.raises(TypeError, match="returns must be real"):
        env.normalized_score("x")


# --------------------------------------------------------------------------- PettingZoo

@pytest.mark.parametrize("game", [Spread(), Spread(1), Spread(4, 0.0, 5, obs_dtype=np.float64)],
                         ids=repr)
def test_pettingzoo_parallel_api(game):
    pytest.importorskip("gymnasium")
    test = pytest.importorskip("pettingzoo.test")
    env = to_parallel_env(game, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        test.parallel_api_test(env, num_cycles=100)


def test_pettingzoo_spaces_rewards_and_final_observations():
    pytest.importorskip("pettingzoo")
    env = to_parallel_env(Spread(3, max_cycles=2), seed=5)
    space = env.observation_space("agent_2")
    assert space.shape == (18,) and space.dtype == np.float32 and env.state_space.shape == (54,)
    obs, _ = env.reset()
    mirror = copy.deepcopy(env.game)  # the same env, stepped in the batched API
    for t, a in enumerate([(1, 2, 3), (4, 4, 0)]):
        obs, rewards, term, trunc, _ = env.step(dict(zip(env.agents, a)))
        _, state, reward, _, _, final_state = mirror.step(np.array([a]))
        assert rewards == dict(zip(env.possible_agents, mirror.agent_rewards[0].tolist()))
        assert sum(rewards.values()) == pytest.approx(reward[0], abs=1e-12)
        assert not any(term.values()) and all(trunc.values()) == (t == 1)
    assert env.agents == []
    # the final observations are those of the final state, not of the next episode
    np.testing.assert_array_equal(np.concatenate([obs[a] for a in env.possible_agents]),
                                  final_state[0])
    np.testing.assert_array_equal(env.state(), final_state[0])
    assert (final_state[0] != state[0]).any()


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n_agents=0), ValueError, "n_agents must be >= 1, got 0"),
    (dict(n_agents=1.5), TypeError, "n_agents must be an int, got float"),
    (dict(n_agents=True), TypeError, "n_agents must be an int, got bool"),
    (dict(n_agents="3"), TypeError, "n_agents must be an int, got str"),
    (dict(local_ratio=-0.1), ValueError, r"local_ratio must be in \[0, 1\], got -0.1"),
    (dict(local_ratio=1.5), ValueError, r"local_ratio must be in \[0, 1\], got 1.5"),
    (dict(local_ratio=float("nan")), ValueError, r"local_ratio must be in \[0, 1\], got nan"),
    (dict(local_ratio="0.5"), TypeError, "local_ratio must be a real number in .*got str"),
    (dict(local_ratio=None), TypeError, "local_ratio must be a real number in .*got NoneType"),
    (dict(local_ratio=True), TypeError, "local_ratio must be a real number in .*got bool"),
    (dict(max_cycles=0), ValueError, "max_cycles must be >= 1, got 0"),
    (dict(max_cycles=10**30), ValueError, r"max_cycles must be in \[1, 2147483647\], got 10{30}"),
    (dict(local_ratio=10**400), ValueError, r"local_ratio must be in \[0, 1\], got 10{400}"),
    (dict(n_agents=10**5), ValueError, r"Spread\(n_agents=100000\) \(one env of reset and step\) "
                                       r"needs about 1118 GiB of memory"),
    (dict(max_cycles=2.5), TypeError, "max_cycles must be an int, got float"),
    (dict(obs_dtype=np.int32), ValueError, "obs_dtype must be float32 or float64, got int32"),
    (dict(obs_dtype="nonsense"), TypeError, "obs_dtype must be float32 or float64"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Spread(**kwargs)


def test_good_arguments():
    env = Spread(np.int64(2), local_ratio=1, max_cycles=np.int32(3), obs_dtype="float64")
    assert (env.n_agents, env.local_ratio, env.max_cycles, env.obs_dtype) == (2, 1.0, 3, np.float64)
    assert type(env.local_ratio) is float and repr(env) == (
        "Spread(n_agents=2, local_ratio=1.0, max_cycles=3)")


@pytest.mark.parametrize("actions, error, match", [
    (np.zeros(3, int), ValueError, r"actions must have shape \(n_envs, n_agents\) = \(2, 3\)"),
    (np.zeros((3, 3), int), ValueError, "actions must have shape"),
    (np.zeros((2, 3)), TypeError, "actions must be an integer array.*float64"),
    (np.zeros((2, 3), bool), TypeError, "actions must be an integer array.*bool"),
    ([[0, 5, 0], [0, 0, 0]], ValueError, r"actions\[0, 1\] = 5 is out of range: agent 1 has "
                                         r"actions 0..4"),
    ([[0, 0, 0], [0, 0, -1]], ValueError, r"actions\[1, 2\] = -1 is out of range"),
    (np.full((2, 3), 2**64 - 1, np.uint64), ValueError, "actions has value 18446744073709551615"),
    ([[0, 0], [0]], ValueError, r"actions must be an integer array of shape .*\(2, 3\)"),
    (None, TypeError, "actions must be an integer array, got dtype object"),
])
def test_bad_actions(actions, error, match):
    env = Spread(3)
    env.reset(2, seed=0)
    before = env.world()
    with pytest.raises(error, match=match):
        env.step(actions)
    after = env.world()
    for x, y in zip(before, after):  # nothing changed
        np.testing.assert_array_equal(x, y)
    assert env.agent_rewards is None
    env.step(np.full((2, 3), 4, np.uint8))  # still usable; any integer dtype


def test_bad_reset_and_order():
    env = Spread()
    for call in (lambda: env.step([[0, 0, 0]]), env.world, env.scripted_actions,
                 lambda: env.reference_state(0), lambda: env.set_world(0, 0, 0)):
        with pytest.raises(RuntimeError, match="call reset"):
            call()
    for kwargs, error, match in [
        (dict(n_envs=0), ValueError, "n_envs must be >= 1, got 0"),
        (dict(n_envs=2.0), TypeError, "n_envs must be an int, got float"),
        (dict(n_envs=2, seed=-1), ValueError, "seed must be >= 0, got -1"),
        (dict(n_envs=2, seed="x"), TypeError, "seed must be an int, got str"),
    ]:
        with pytest.raises(error, match=match):
            env.reset(**kwargs)
    with pytest.raises(ValueError, match="n_envs must be >= 1"):
        Spread.seed_keys(0, 0)


def test_bad_set_world():
    env = Spread(2)
    env.reset(3, seed=0)
    good = [np.zeros((3, 2, 2))] * 3
    for k, name in enumerate(["agent_pos", "agent_vel", "landmark_pos"]):
        for value, error, match in [
            (np.zeros((3, 3, 2)), ValueError, rf"{name} must have shape \(n_envs, n, 2\) = "
                                              rf"\(3, 2, 2\), got shape \(3, 3, 2\)"),
            (np.full((3, 2, 2), np.nan), ValueError, f"{name} must be finite"),
            (np.full((3, 2, 2), np.inf), ValueError, f"{name} must be finite"),
            (np.full((3, 2, 2), "a"), TypeError, f"{name} must be a real array, got dtype <U1"),
            (np.zeros((3, 2, 2), bool), TypeError, f"{name} must be a real array, got dtype bool"),
            ([[[0, 0]], [0]], ValueError, f"{name} must be a real array of shape"),
        ]:
            args = list(good)
            args[k] = value
            with pytest.raises(error, match=match):
                env.set_world(*args)
    for t, error, match in [
        ([0, 0, 25], ValueError, r"t must be in \[0, max_cycles=25\), got 25"),
        ([0, -1, 0], ValueError, r"t must be in \[0, max_cycles=25\), got -1"),
        ([0, 0], ValueError, r"t must have shape \(n_envs,\) = \(3,\), got shape \(2,\)"),
        ([0.0, 0, 0], TypeError, "t must be an integer array, got dtype float64"),
    ]:
        with pytest.raises(error, match=match):
            env.set_world(*good, t=t)
    obs, state = env.set_world(*good, t=np.array([1, 2, 24], np.int32))
    assert (env.world().t == [1, 2, 24]).all() and (obs == 0).all()
    assert env.step(np.zeros((3, 2), int))[4].tolist() == [False, False, True]


def test_reference_bad_input():
    env = Spread(2)
    state, t = env.reference_reset(5)
    for args, error, match in [
        ((state, 25, [0, 0]), ValueError, r"t must be in \[0, 25\), got 25"),
        ((state, -1, [0, 0]), ValueError, r"t must be in \[0, 25\), got -1"),
        ((state, 0, [0, 5]), ValueError, r"actions\[1\] must be in \[0, 5\), got 5"),
        ((state, 0, [0, 1.0]), TypeError, r"actions\[1\] must be an int, got float"),
        ((state, 0, [0]), ValueError, r"actions must hold one action per agent \(n_agents=2\)"),
        ((state, 0, 3), TypeError, "actions must be a sequence of n_agents=2 ints"),
        ((None, 0, [0, 0]), TypeError, "state must be a SpreadState"),
        ((state._replace(agent_pos=((0.0, 0.0),)), 0, [0, 0]), ValueError,
         r"state.agent_pos must be 2 \(x, y\) pairs of reals, got shape \(1, 2\)"),
        ((state._replace(agent_vel=((0.0, math.nan), (0.0, 0.0))), 0, [0, 0]), ValueError,
         "state.agent_vel must be finite"),
        ((state._replace(rng=-1), 0, [0, 0]), ValueError,
         r"state.rng must be in \[0, 18446744073709551616\), got -1"),
    ]:
        with pytest.raises(error, match=match):
            env.reference_step(*args)
    for key, error, match in [(-1, ValueError, "key must be in"),
                              (2**64, ValueError, "key must be in"),
                              (1.0, TypeError, "key must be an int")]:
        with pytest.raises(error, match=match):
            env.reference_reset(key)
    env.reset(2, seed=0)
    with pytest.raises(ValueError, match=r"b must be in \[0, 2\), got 2"):
        env.reference_state(2)


def test_spread_references_bad_input():
    for kwargs, error, match in [
        (dict(n_agents=0), ValueError, "n_agents must be >= 1"),
        (dict(local_ratio=2), ValueError, r"local_ratio must be in \[0, 1\]"),
        (dict(n_episodes=1), ValueError, "n_episodes must be >= 2, got 1"),
        (dict(seed=-3), ValueError, "seed must be >= 0, got -3"),
        (dict(n_envs=0), ValueError, "n_envs must be >= 1, got 0"),
    ]:
        with pytest.raises(error, match=match):
            envs_spread.spread_references(**kwargs)
    small = envs_spread.spread_references(2, n_episodes=5, n_envs=2)  # rounds of 2, first 5 kept
    assert small.random.n_episodes == small.scripted.n_episodes == 5


def test_pettingzoo_bad_input():
    pytest.importorskip("pettingzoo")
    env = to_parallel_env(Spread(2), seed=0)
    env.reset()
    for actions, error, match in [
        ({"agent_0": 5, "agent_1": 0}, ValueError,
         r"actions\['agent_0'\] must be in \[0, 5\), got 5"),
        ({"agent_0": 0}, ValueError, r"actions is missing agents \['agent_1'\]"),
        ({"agent_0": 0.0, "agent_1": 0}, TypeError, r"actions\['agent_0'\] must be an int"),
    ]:
        with pytest.raises(error, match=match):
            env.step(actions)
    with pytest.raises(ValueError, match=r"agent must be one of"):
        env.observation_space("agent_2")
