"""Tests of the limits of envs.py and envs_spread.py: memory estimated before it is spent
(MAX_ALLOC_BYTES), searches refused before they start (MAX_SEARCH_TRANSITIONS), episode
lengths in range (MAX_COUNT), returns that cannot overflow (MAX_ABS_RETURN, SPREAD_MAX_ABS),
and endless arguments."""
import itertools
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc
from collections import deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import envs
import envs_spread
from envs import MAX_ABS_RETURN, MAX_COUNT, GridForaging, MatrixGame, TwoStepGame, climbing, penalty
from envs_pettingzoo import to_parallel_env
from envs_spread import SPREAD_MAX_ABS, ReturnEstimate, Spread, SpreadReferences

HERE = os.path.dirname(os.path.abspath(__file__))  # the child imports this envs.py
LIMIT_MESSAGE = r"needs about .* of memory, more than envs\.MAX_ALLOC_BYTES = 1 GiB"


# --------------------------------------------------------------------------- refused in a child

# Each request is refused by a ValueError naming the argument; before the checks they raised
# MemoryError or OverflowError, failed inside Numba, or ran for hours.  The child has a 3 GB
# address-space cap and the whole list a time budget, so a request that tries to allocate,
# crashes or runs away fails the test instead of the machine.
REFUSED = [
    ("climbing().reset(10**12)", "n_envs=1000000000000"),
    ("TwoStepGame().reset(2**63)", "n_envs=9223372036854775808"),
    ("GridForaging().reset(10**9)", "n_envs=1000000000"),
    ("Spread().reset(10**7)", "n_envs=10000000"),
    ("Spread.seed_keys(0, 10**12)", "n_envs=1000000000000"),
    ("MatrixGame(np.broadcast_to(0.0, (10**5, 10**5)))", "payoff of shape (100000, 100000)"),
    ("climbing(episode_len=10**8).tables()", "episode_len=100000000"),
    ("GridForaging(size=3, n_agents=7, n_food=1).tables()", "n_agents=7"),
    ("GridForaging(size=100, max_steps=200).optimum", "size=100"),
    ("GridForaging(size=4, n_agents=5, n_food=1).optimum", "n_agents=5"),
    ("GridForaging(size=2, n_agents=10, n_food=1).solve()", "n_agents=10"),
    ("GridForaging(n_agents=10**9)", "n_agents=1000000000"),
    ("GridForaging(n_food=10**12)", "n_food=1000000000000"),
    ("GridForaging(size=10**30)", "size=1000000000000000000000000000000"),
    ("GridForaging(size=32767, n_agents=1, n_food=1)", "size=32767"),
    ("GridForaging(size=20000, n_agents=1, n_food=1, layout_seed=0)", "size=20000"),
    ("penalty(n_agents=19).payoff", "n_agents=19"),
    ("penalty(n_agents=17).payoff", "n_agents=17"),
    ("penalty(n_agents=10**30)", "n_agents=1000000000000000000000000000000 gives"),
    ("Spread(n_agents=10**5)", "n_agents=100000"),
    ("Spread(n_agents=10**30)", "n_agents=1000000000000000000000000000000"),
    ("spread_references(n_episodes=10**12)", "n_episodes=1000000000000"),
    ("spread_references(n_episodes=10**9, n_envs=10)", "n_episodes=1000000000"),
    ("climbing(10**30).reset(2)", "episode_len must be in [1, 2147483647]"),
    ("GridForaging(max_steps=2**63)", "max_steps must be in [1, 2147483647]"),
    ("Spread(max_cycles=10**30)", "max_cycles must be in [1, 2147483647]"),
    ("Spread(local_ratio=10**400)", "local_ratio must be in [0, 1]"),
    ("GridForaging().reference_step(0, 0, itertools.count())",
     "actions must hold one action per agent (n_agents=2), got more than 2"),
    ("GridForaging().encode(itertools.repeat((0, 0)), [True, True])",
     "positions must hold one (row, col) per agent (n_agents=2), got more than 2"),
    ("GridForaging().encode([(0, 0), (1, 1)], itertools.repeat(True))",
     "food_remaining must hold one flag per food (n_food=2), got more than 2"),
    ("GridForaging(layout=(itertools.repeat((0, 0)), [(1, 1), (2, 2)]))",
     "layout has more than 2 agents"),
    ("GridForaging(layout=([(0, 0), itertools.count()], [(1, 1), (2, 2)]))",
     "layout cell (0, 1, 2) is not a (row, col) pair"),
    ("Spread(2).reference_step(Spread(2).reference_reset(0)[0], 0, itertools.count())",
     "actions must hold one action per agent (n_agents=2), got more than 2"),
]

CHILD = """
import itertools, json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 * 10**9, 3 * 10**9))
import numpy as np
from envs import *
from envs_spread import *
out = []
for code in json.loads(sys.argv[1]):
    try:
        eval(code)
        out.append(["no error", ""])
    except BaseException as e:
        out.append([type(e).__name__, str(e)])
print(json.dumps(out))
"""


def test_huge_requests_are_refused_before_anything_is_spent():
    codes = [code for code, _ in REFUSED]
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), json.dumps(codes)],
                           capture_output=True, text=True, timeout=600, cwd=HERE)
    assert child.returncode == 0, child.stderr[-2000:]  # no crash, no MemoryError escaping
    for (code, named), (kind, message) in zip(REFUSED, json.loads(child.stdout)):
        assert kind == "ValueError" and named in message, (code, kind, message)


# --------------------------------------------------------------------------- memory estimates

def traced_peak(call):
    """Peak bytes numpy and Python allocate during ``call()`` (Numba's own scratch aside)."""
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused_below(monkeypatch, peak, call):
    """``call()`` is refused when the limit is just below the measured ``peak``: the estimate
    covers what the call really allocates."""
    monkeypatch.setattr(envs, "MAX_ALLOC_BYTES", peak - 1)
    with pytest.raises(ValueError, match="more than envs.MAX_ALLOC_BYTES"):
        call()


BATCH_GAMES = [climbing, TwoStepGame, GridForaging, lambda: penalty(n_agents=5),
               lambda: Spread(3), lambda: Spread(5, obs_dtype=np.float64)]


@pytest.mark.parametrize("make", BATCH_GAMES, ids=range(len(BATCH_GAMES)))
def test_reset_estimate_covers_reset_and_a_step(make, monkeypatch):
    game, B = make(), 3000
    actions = np.ones((B, game.n_agents), np.int64)
    game.reset(1)
    game.step(actions[:1])  # compiled before measuring
    kept = []
    peak = traced_peak(lambda: kept.extend([game.reset(B), game.step(actions)]))
    refused_below(monkeypatch, peak, lambda: game.reset(B))
    monkeypatch.setattr(envs, "MAX_ALLOC_BYTES", 2 ** 30)
    with pytest.raises(ValueError, match=rf"reset\(n_envs=10000000000\) .*{LIMIT_MESSAGE}"):
        game.reset(10 ** 10)


@pytest.mark.parametrize("make", [lambda: climbing(episode_len=3000), GridForaging,
                                  lambda: MatrixGame(np.zeros((2, 3, 4)), 500),
                                  lambda: GridForaging(3, 3, 2, 10, layout_seed=4)],
                         ids=range(4))
def test_tables_estimate_covers_tables(make, monkeypatch):
    make().tables()  # compiled
    peak = traced_peak(lambda: make().tables())
    refused_below(monkeypatch, peak, lambda: make().tables())


PAYOFFS = [np.ones((300, 300)), np.ones((100, 100, 3), np.float32), np.ones((400, 1, 1)),
           np.ones((600, 600))]  # nested lists for reference_step, or (the last) none


@pytest.mark.parametrize("make", [lambda p=p: MatrixGame(p) for p in PAYOFFS]
                         + [lambda: GridForaging(300, 1, 1), lambda: GridForaging(
                             300, 1, 1, layout_seed=0), lambda: spread_references_small(),
                            lambda: Spread(40).reset(20)],
                         ids=range(8))
def test_construction_estimates_cover_construction(make, monkeypatch):
    make()
    peak = traced_peak(make)
    refused_below(monkeypatch, peak, make)


def spread_references_small():
    return envs_spread.spread_references(2, max_cycles=3, n_episodes=4000, n_envs=1000)


def test_grid_estimate_covers_render(monkeypatch):
    game = GridForaging(400, 1, 1, layout_seed=1)
    peak = traced_peak(lambda: game.render(game.start_state))
    refused_below(monkeypatch, peak, lambda: GridForaging(400, 1, 1, layout_seed=1))
    refused_below(monkeypatch, peak, lambda: GridForaging(400, 1, 1))


def test_limits_are_read_at_every_call(monkeypatch):
    monkeypatch.setattr(envs, "MAX_ALLOC_BYTES", 10_000)
    climbing().reset(50)
    with pytest.raises(ValueError, match=r"reset\(n_envs=500\) of MatrixGame\(payoff of shape "
                                         r"\(3, 3\), episode_len=1\) needs about 0.0534 MiB"):
        climbing().reset(500)
    monkeypatch.setattr(envs, "MAX_ALLOC_BYTES", 2 ** 30)
    monkeypatch.setattr(envs, "MAX_SEARCH_TRANSITIONS", 1000)
    with pytest.raises(ValueError, match=r"GridForaging\(size=5, n_agents=2, n_food=2, max_steps"
                                         r"=25\) is too large to solve: the search over up to "
                                         r"2500 states .* up to 9e\+04 "
                                         r"transitions \(envs.MAX_SEARCH_TRANSITIONS = 1e\+03\)"):
        GridForaging().solve()
    with pytest.raises(ValueError, match="too large to solve"):
        GridForaging().optimum


# --------------------------------------------------------------------------- transition tables

@pytest.mark.parametrize("make", [lambda: climbing(episode_len=7), TwoStepGame, GridForaging,
                                  lambda: GridForaging(3, 3, 2, 10, layout_seed=4),
                                  lambda: MatrixGame(np.arange(24.0).reshape(2, 3, 4), 5)],
                         ids=range(5))
def test_tables_in_chunks_equal_tables_at_once(make, monkeypatch):
    monkeypatch.setattr(envs, "_TABLE_CHUNK", 10 ** 9)
    whole = make().tables()
    for chunk in (1, 7, 100):
        monkeypatch.setattr(envs, "_TABLE_CHUNK", chunk)
        parts = make().tables()
        for a, b in zip(whole, parts):
            np.testing.assert_array_equal(a, b)


def test_reference_step_of_a_payoff_too_large_for_nested_lists():
    payoff = np.random.default_rng(0).normal(size=(300, 300))  # 9e4 > 2**16 entries
    game = MatrixGame(payoff, 2)
    rng = np.random.default_rng(1)
    actions = rng.integers(0, 300, (50, 2))
    game.reset(50)
    reward = game.step(actions)[2]
    for b, (a0, a1) in enumerate(actions.tolist()):
        assert game.reference_step(0, 0, (a0, a1)) == (1, 1, payoff[a0, a1], False, False, 1)
        assert reward[b] == payoff[a0, a1]


# --------------------------------------------------------------------------- GridForaging.solve

def python_bfs(game):
    """(most food, fewest steps) by a plain-Python search through reference_step."""
    start, _ = game.reference_reset()
    dist, queue, best = {start: 0}, deque([start]), (0, 0)
    joints = list(itertools.product(range(6), repeat=game.n_agents))
    while queue:
        s = queue.popleft()
        collected = game.n_food - sum(game.decode(s)[1])
        best = max(best, (collected, -dist[s]))
        if collected == game.n_food or dist[s] == game.max_steps:
            continue
        for a in joints:
            final = game.reference_step(s, 0, a)[-1]
            if final not in dist:
                dist[final] = dist[s] + 1
                queue.append(final)
    return best[0], -best[1]


def replay(game, plan):
    game.reset(1)
    return sum(float(game.step([joint])[2][0]) for joint in plan)


# agents whose reachable cells are whole diamonds, diamonds cut by one or two borders, and
# one where the whole grid is reachable
SEARCH_GAMES = [
    GridForaging(9, 2, 2, 3, layout=([(4, 4), (0, 8)], [(4, 6), (2, 8)])),
    GridForaging(7, 1, 3, 4, layout=([(3, 3)], [(3, 5), (0, 3), (6, 6)])),
    GridForaging(8, 3, 1, 2, layout=([(1, 1), (6, 6), (7, 0)], [(4, 4)])),
    GridForaging(6, 2, 2, 5, layout=([(2, 2), (2, 4)], [(2, 3), (5, 5)])),
    GridForaging(4, 2, 2, 30, layout_seed=3),
]


@pytest.mark.parametrize("game", SEARCH_GAMES, ids=repr)
def test_solve_over_the_reachable_cells_is_exact(game):
    solution = game.solve()
    assert (solution.optimum, solution.min_steps) == python_bfs(game)
    assert replay(game, solution.plan) == solution.optimum


def test_solve_a_large_grid_whose_reachable_part_is_small():
    assert GridForaging(size=100).optimum == 0.0  # the food is out of reach in 25 steps
    game = GridForaging(100, layout=([(50, 50), (50, 52)], [(50, 51), (60, 60)]))
    solution = game.solve()
    # load at once, then agent 0 needs 19 moves to a neighbour of (60, 60), then load
    assert (solution.optimum, solution.min_steps) == (2, 21)
    assert replay(game, solution.plan) == 2.0


# --------------------------------------------------------------------------- episode lengths

LENGTHS = [(lambda v: climbing(v), "episode_len"),
           (lambda v: MatrixGame([[1.0]], v), "episode_len"),
           (lambda v: penalty(episode_len=v), "episode_len"),
           (lambda v: GridForaging(max_steps=v), "max_steps"),
           (lambda v: Spread(max_cycles=v), "max_cycles")]


@pytest.mark.parametrize("make, name", LENGTHS, ids=[name for _, name in LENGTHS])
@pytest.mark.parametrize("value", [MAX_COUNT + 1, 2 ** 63, 10 ** 30, np.uint64(2 ** 64 - 1)],
                         ids=str)
def test_episode_lengths_beyond_max_count_are_refused(make, name, value):
    with pytest.raises(ValueError, match=rf"{name} must be in \[1, 2147483647\], got {int(value)}"):
        make(value)


def test_episode_length_max_count_runs_in_the_kernels():
    for game in (climbing(MAX_COUNT), GridForaging(max_steps=MAX_COUNT),
                 Spread(max_cycles=MAX_COUNT)):
        game.reset(2, seed=0)
        out = game.step(np.zeros((2, game.n_agents), int))
        assert not (out[3] | out[4]).any()
    # the last step of such an episode is truncated (Spread) or terminates (the matrix game)
    env = Spread(2, max_cycles=MAX_COUNT)
    env.reset(2, seed=0)
    env.set_world(*env.world()[:3], t=[MAX_COUNT - 1, 0])
    assert env.step(np.zeros((2, 2), int))[4].tolist() == [True, False]
    game = climbing(MAX_COUNT)
    assert game.reference_step(MAX_COUNT - 1, MAX_COUNT - 1, (0, 0)) == (
        0, 0, 11.0, True, False, MAX_COUNT - 1)
    grid = GridForaging(max_steps=MAX_COUNT)
    s = grid.start_state
    assert grid.reference_step(s, MAX_COUNT - 1, (0, 0))[:5] == (s, 0, 0.0, False, True)


# --------------------------------------------------------------------------- finite returns

@pytest.mark.parametrize("payoff, episode_len", [
    ([[1e308, 0.0]], 2), ([[0.0, -1e308]], 2), ([[9e307, 1.0]], 2),
    ([[1e300, 0.0]], MAX_COUNT), ([[np.finfo(float).max, 0.0]], 1),
])
def test_payoff_whose_episode_return_can_overflow_is_refused(payoff, episode_len):
    with pytest.raises(ValueError, match=r"payoff: an episode return can overflow float64, "
                                         r"since max \|payoff\| \* episode_len = .* exceeds "
                                         r"MAX_ABS_RETURN = 1.798e\+308"):
        MatrixGame(payoff, episode_len)


def test_payoffs_beyond_float64_are_refused():
    for value in (np.longdouble("1e400"), -np.longdouble("1e400")):
        if not np.isfinite(value):
            pytest.skip("longdouble is float64 here")
        with pytest.raises(ValueError, match=r"payoff must be finite .* as float64"):
            MatrixGame(np.full((2, 2), value))
    with pytest.raises(ValueError, match=r"k=-1e\+308: an episode return can overflow"):
        penalty(k=-1e308, episode_len=2)
    assert penalty(k=-1e308).payoff[0, 2] == -1e308  # one step cannot overflow


@given(st.integers(1, 40), st.floats(0.5, 1.5), st.booleans())
def test_accepted_payoffs_have_finite_returns(episode_len, fraction, negative):
    m = fraction * MAX_ABS_RETURN / episode_len
    sign = -1.0 if negative else 1.0
    try:
        game = MatrixGame([[sign * m, 0.0]], episode_len)
    except ValueError:
        assert m * episode_len > MAX_ABS_RETURN * (1 - 1e-9)  # refused only near the edge
        return
    game.reset(1)
    total = 0.0
    for _ in range(episode_len):
        total += game.step([[0, 0]])[2][0]
    assert math.isfinite(total) and math.isfinite(game.optimum)
    assert np.isfinite(game.tables().reward).all()


def test_spread_worlds_at_the_bound_stay_finite():
    B, n = 4, 3
    for dtype in (np.float32, np.float64):
        env = Spread(n, obs_dtype=dtype)
        env.reset(B, seed=0)
        x = SPREAD_MAX_ABS
        corners = np.array([[x, x], [-x, -x], [x, -x]])
        pos = np.broadcast_to(corners, (B, n, 2))
        outs = [env.set_world(pos, -pos, -pos, t=[0, 1, 2, 24])]
        rng = np.random.default_rng(0)
        for _ in range(30):
            outs.append(env.step(rng.integers(0, 5, (B, n))))
            outs.append((env.agent_rewards, env.scripted_actions()))
        for out in outs:
            for a in out:
                assert np.isfinite(a).all()
        state = envs_spread.SpreadState(tuple(map(tuple, corners)), tuple(map(tuple, -corners)),
                                        tuple(map(tuple, -corners)), 0)
        new_state, _, reward, _, _, final = env.reference_step(state, 0, (1, 2, 3))
        assert math.isfinite(reward)
        for s in (new_state, final):
            assert np.isfinite(np.array(s.agent_pos + s.agent_vel + s.landmark_pos)).all()
        assert np.isfinite(np.array(env.reference_observations(state))).all()
        assert all(math.isfinite(r) for r in env.reference_agent_rewards(state))
        assert all(math.isfinite(v) for v in env.reference_global_state(state))


@pytest.mark.parametrize("value", [1.0000001e30, -1e31, 1e308])
@pytest.mark.parametrize("field", [0, 1, 2])
def test_spread_coordinates_beyond_the_bound_are_refused(value, field):
    names = ["agent_pos", "agent_vel", "landmark_pos"]
    env = Spread(2)
    env.reset(3, seed=0)
    world = [np.zeros((3, 2, 2)) for _ in range(3)]
    world[field][1, 1, 0] = value
    expected = re.escape(f"{names[field]} must be at most SPREAD_MAX_ABS = 1e+30 in magnitude, "
                         f"got {abs(value)!r}")
    with pytest.raises(ValueError, match=expected):
        env.set_world(*world)
    state = env.reference_reset(0)[0]
    state = state._replace(**{names[field]: ((0.0, 0.0), (value, 0.0))})
    for call in (lambda: env.reference_step(state, 0, (0, 0)), lambda: env.reference_agent_rewards(
            state), lambda: env.reference_observations(state)):
        with pytest.raises(ValueError, match=rf"state.{names[field]} must be at most "):
            call()


def test_normalized_score_is_finite_or_refused():
    env = Spread()
    R = ReturnEstimate
    for returns in (np.inf, [np.nan, 0.0], -np.inf):
        with pytest.raises(ValueError, match=r"returns must be finite \(no NaN or inf\)"):
            env.normalized_score(returns)
    refs = SpreadReferences(R(1.0, 0, 2), R(1.0, 0, 2), 0)
    with pytest.raises(ValueError, match="references must have distinct means, got random.mean "
                                         "= scripted.mean = 1.0"):
        env.normalized_score(0.0, refs)
    # differences beyond float64 still give the (finite) score
    refs = SpreadReferences(R(-1e308, 0, 2), R(1e308, 0, 2), 0)
    assert env.normalized_score([1e308, 0.0, -1e308, 1.0], refs).tolist() == [1.0, 0.5, 0.0, 0.5]
    assert env.normalized_score(1.0, refs) == 0.5
    refs = SpreadReferences(R(0.0, 0, 2), R(1e-300, 0, 2), 0)
    with pytest.raises(ValueError, match=r"returns up to 1e\+10 overflow the normalized score"):
        env.normalized_score([0.0, 1e10], refs)
    for refs, error, match in [
        (SpreadReferences(R(np.nan, 0, 2), R(1.0, 0, 2), 0), ValueError,
         "references.random.mean must be finite, got nan"),
        (SpreadReferences(1, 2, 0), TypeError,
         "references.random must be a ReturnEstimate with a real mean, got 1"),
        (SpreadReferences(R(0.0, 0, 2), R("1", 0, 2), 0), TypeError,
         "references.scripted must be a ReturnEstimate with a real mean"),
    ]:
        with pytest.raises(error, match=match):
            env.normalized_score(0.0, refs)
    refs = SpreadReferences(R(-1e308, 0, 2), R(0.0, 0, 2), 0)
    assert env.normalized_score([-1e308, 0.0, 5e307, 1.5e308], refs).tolist() == [
        0.0, 1.0, 1.5, 2.5]


# --------------------------------------------------------------------------- PettingZoo

def test_to_parallel_env_copies_no_batch_and_shares_read_only_caches():
    pytest.importorskip("pettingzoo")
    game = GridForaging()
    game.reset(1000)
    tables, solution = game.tables(), game.solve()
    env = to_parallel_env(game, seed=0)
    assert env.game is not game and env.game._state is None and env.game._t is None
    assert env.game._tables is tables and env.game._solution is solution
    env.reset()
    env.step({"agent_0": 4, "agent_1": 4})
    assert game._state.shape == (1000,) and (game._state == game.start_state).all()
    spread = Spread(2)
    spread.reset(1000, seed=0)
    world = spread.world()
    env = to_parallel_env(spread, seed=0)
    assert env.game._pos is None and env.game.agent_rewards is None
    env.reset()
    env.step({"agent_0": 1, "agent_1": 2})
    for a, b in zip(world, spread.world()):
        np.testing.assert_array_equal(a, b)
