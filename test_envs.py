"""Tests of envs.py: batched Numba kernels against the plain-Python references, exact
payoffs and optima, flags, determinism and input validation (the PettingZoo wrapper:
test_envs_pettingzoo.py; Spread: test_envs_spread.py)."""
import math
from collections import Counter, deque

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import envs
from envs import (LOAD, CountGame, CountTables, GameTables, GridForaging, MatrixGame,
                  TwoStepGame, climbing, penalty, qtran)


# --------------------------------------------------------------------------- strategies

@st.composite
def matrix_games(draw):
    kind = draw(st.sampled_from(["climbing", "penalty", "qtran", "random"]))
    episode_len = draw(st.integers(1, 4))
    if kind == "climbing":
        return climbing(episode_len)
    if kind == "qtran":
        return qtran(episode_len)
    if kind == "penalty":
        return penalty(draw(st.integers(-100, 0)), episode_len, n_agents=draw(st.integers(2, 3)))
    shape = draw(st.lists(st.integers(1, 4), min_size=2, max_size=3))
    values = draw(st.lists(st.integers(-20, 20), min_size=int(np.prod(shape)),
                           max_size=int(np.prod(shape))))
    return MatrixGame(np.reshape(values, shape), episode_len)


@st.composite
def grid_games(draw, max_size=4, max_agents=3):
    size = draw(st.integers(2, max_size))
    n_agents = draw(st.integers(1, max_agents))
    n_food = draw(st.integers(1, min(3, size * size - n_agents)))
    max_steps = draw(st.integers(1, 12))
    if draw(st.booleans()):
        return GridForaging(size, n_agents, n_food, max_steps,
                            layout_seed=draw(st.integers(0, 10**6)))
    cells = draw(st.permutations(range(size * size)))
    food = [divmod(c, size) for c in cells[:n_food]]
    agents = [divmod(c, size) for c in draw(st.lists(st.sampled_from(cells[n_food:]),
                                                        min_size=n_agents, max_size=n_agents))]
    return GridForaging(size, n_agents, n_food, max_steps, layout=(agents, food))


class RandomCountReward:
    """A reward of the action counts drawn per count vector from ``seed`` (distinct values,
    so that a wrong count index shows); a plain class, so a game's repr is stable."""

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, counts):
        return float(np.random.default_rng([self.seed, *counts]).integers(-20, 21)) / 4

    def __repr__(self):
        return f"RandomCountReward({self.seed})"


@st.composite
def count_games(draw, max_agents=4):
    return CountGame(RandomCountReward(draw(st.integers(0, 10 ** 6))),
                     draw(st.integers(2, max_agents)), draw(st.integers(2, 4)),
                     draw(st.integers(1, 3)))


games = st.one_of(matrix_games(), count_games(), st.just(TwoStepGame()), grid_games())


@st.composite
def rollouts(draw, game_strategy=games):
    """A game, a batch size and a (T, B, n) action sequence (load-heavy for the grid)."""
    game = draw(game_strategy)
    n_envs = draw(st.integers(1, 5))
    T = draw(st.integers(1, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    actions = np.stack([rng.integers(0, k, (T, n_envs)) for k in game.n_actions], axis=-1)
    if isinstance(game, GridForaging):
        actions[rng.random(actions.shape) < draw(st.floats(0, 0.9))] = LOAD
    return game, actions


def rollout(game, actions, seed=None):
    """Run the batched env on a (T, B, n) action sequence; list of step outputs."""
    game.reset(actions.shape[1], seed)
    return [game.step(a) for a in actions]


# --------------------------------------------------------------------------- kernel == reference

@pytest.mark.parametrize("family", [matrix_games(), count_games(), st.just(TwoStepGame()),
                                    grid_games()], ids=["matrix", "count", "two_step", "grid"])
@given(data=st.data())
def test_batched_step_equals_reference(family, data):
    game, actions = data.draw(rollouts(family))
    T, B, n = actions.shape
    obs, state = game.reset(B, seed=0)
    assert obs.shape == (B, n) and obs.dtype == np.int64 and state.dtype == np.int64
    ref = [game.reference_reset() for _ in range(B)]
    assert state.tolist() == [s for s, _ in ref]
    for a in actions:
        obs, state, reward, terminated, truncated, final_state = game.step(a)
        for b in range(B):
            s, t, r, term, trunc, final = game.reference_step(*ref[b], a[b].tolist())
            ref[b] = (s, t)
            assert (state[b], reward[b], terminated[b], truncated[b], final_state[b]) == (
                s, r, term, trunc, final)
        assert (obs == state[:, None]).all()
        assert ((0 <= state) & (state < game.n_states)).all()
        assert ((0 <= final_state) & (final_state < game.n_states)).all()
        assert not (terminated & truncated).any()
        assert (final_state[~(terminated | truncated)] == state[~(terminated | truncated)]).all()
        assert (state[terminated | truncated] == game.reference_reset()[0]).all()
        for name, flag in [("terminated", terminated), ("truncated", truncated)]:
            if flag.any():
                event(f"{type(game).__name__} {name}")
        if isinstance(game, GridForaging) and reward.any():
            event("GridForaging food collected")


@settings(max_examples=40)
@given(rollouts(grid_games()))
def test_grid_rewards_only_joint_adjacent_loads(case):
    game, actions = case
    _, state = game.reset(actions.shape[1])
    for a in actions:
        _, next_state, reward, _, _, final_state = game.step(a)
        for b in range(len(a)):
            positions, before = game.decode(state[b])
            new_positions, after = game.decode(final_state[b])
            collected = [f for f in range(game.n_food) if before[f] and not after[f]]
            assert reward[b] == len(collected)
            assert all(not after[f] for f in range(game.n_food) if not before[f])
            if collected:
                assert (a[b] == LOAD).all() and new_positions == positions
                for f in collected:
                    fr, fc = game.layout[1][f]
                    assert all(abs(r - fr) + abs(c - fc) == 1 for r, c in positions)
            for (r, c), left in zip(game.layout[1], after):
                assert not left or (r, c) not in new_positions  # nobody stands on food
        state = next_state


# --------------------------------------------------------------------------- payoffs and optima

def test_payoff_tables_exact():
    assert climbing().payoff.tolist() == [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
    assert penalty().payoff.tolist() == [[10, 0, -100], [0, 2, 0], [-100, 0, 10]]
    assert penalty(-7).payoff.tolist() == [[10, 0, -7], [0, 2, 0], [-7, 0, 10]]
    assert qtran().payoff.tolist() == [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]
    assert TwoStepGame().payoff_2a.tolist() == [[7, 7], [7, 7]]
    assert TwoStepGame().payoff_2b.tolist() == [[0, 1], [1, 8]]
    assert (climbing().optimum, penalty().optimum, qtran().optimum) == (11, 10, 8)
    assert climbing(episode_len=3).optimum == 33
    assert MatrixGame.climbing is not None and climbing().payoff[1, 1] == 7  # the trap
    assert not climbing().payoff.flags.writeable


def penalty_rule(actions, k):
    """The n-agent penalty game's team reward, written out case by case."""
    if all(a == 0 for a in actions) or all(a == 2 for a in actions):
        return 10.0
    if all(a == 1 for a in actions):
        return 2.0
    if 0 in actions and 2 in actions:
        return float(k)
    return 0.0


def test_penalty_two_agents_is_the_classic_table():
    for k in (-100, -7, 0, -0.5, 3):
        classic = [[10, 0, k], [0, 2, 0], [k, 0, 10]]
        for game in (penalty(k), penalty(k, n_agents=2), MatrixGame.penalty(k=k, n_agents=2)):
            assert game.payoff.tolist() == classic and game.payoff.dtype == np.float64
            assert game.n_agents == 2 and game.optimum == 10.0
    game = penalty(-3, 4)  # positional episode_len still works
    assert game.episode_len == 4 and game.optimum == 40.0 and game.payoff[0, 2] == -3


@pytest.mark.parametrize("n_agents", [3, 4])
@pytest.mark.parametrize("k", [-100, -1.5])
def test_penalty_n_agents_every_entry(n_agents, k):
    game = penalty(k, episode_len=2, n_agents=n_agents)
    assert game.n_agents == n_agents and game.n_actions == (3,) * n_agents
    assert game.episode_len == 2 and game.optimum == 20.0
    values = Counter()
    for actions in np.ndindex(*game.n_actions):
        assert game.payoff[actions] == penalty_rule(actions, k), actions
        values[float(game.payoff[actions])] += 1
    # 2 optima, 1 all-ones, 3**n - 2**n - 2**n + 1 joint actions with both a 0 and a 2
    assert values == {10.0: 2, 2.0: 1, float(k): 3**n_agents - 2 * 2**n_agents + 1,
                      0.0: 2 * 2**n_agents - 4}


def test_attribute_types():
    for game in (climbing(), TwoStepGame(), GridForaging()):
        assert isinstance(game.n_actions, tuple) and len(game.n_actions) == game.n_agents
        assert all(type(k) is int for k in game.n_actions)
        assert all(type(v) is int for v in (game.n_agents, game.n_states, game.n_obs,
                                            game.episode_limit))
        assert type(game.optimum) is float


def episode_returns(game, policy, n_envs=1, seed=0):
    """Return of the first episode of each env; ``policy(t, obs) -> actions``."""
    obs, _ = game.reset(n_envs, seed)
    returns = np.zeros(n_envs)
    running = np.ones(n_envs, bool)
    for t in range(game.episode_limit):
        obs, _, reward, terminated, truncated, _ = game.step(policy(t, obs))
        returns += np.where(running, reward, 0.0)
        running &= ~(terminated | truncated)
    assert not running.any()
    return returns


@pytest.mark.parametrize("game", [climbing(), penalty(), qtran(), climbing(episode_len=3),
                                  MatrixGame(np.arange(24).reshape(2, 3, 4) % 7, 2)])
def test_matrix_optimal_and_random_policies(game):
    best = np.unravel_index(np.argmax(game.payoff), game.payoff.shape)
    assert episode_returns(game, lambda t, obs: np.array([best])) == [game.optimum]
    assert game.payoff.mean() * game.episode_len < game.optimum  # random policy, exactly
    rng = np.random.default_rng(0)
    random = episode_returns(game, lambda t, obs: np.stack(
        [rng.integers(0, k, len(obs)) for k in game.n_actions], axis=1), n_envs=4000)
    assert random.mean() < game.optimum - 1


def test_two_step_optimal_and_random_policies():
    game = TwoStepGame()
    assert episode_returns(game, lambda t, obs: np.array([[1, 0] if t == 0 else [1, 1]])) == [8.0]
    assert episode_returns(game, lambda t, obs: np.array([[0, 1]])) == [7.0]  # the safe 2A
    rng = np.random.default_rng(0)
    random = episode_returns(game, lambda t, obs: rng.integers(0, 2, (len(obs), 2)), n_envs=4000)
    assert abs(random.mean() - 4.75) < 0.2  # 0.5 * 7 + 0.5 * (0 + 1 + 1 + 8) / 4


def python_bfs(game):
    """Independent exact solution through the plain-Python reference step."""
    start, _ = game.reference_reset()
    dist, queue, best = {start: 0}, deque([start]), (0, 0)
    joint_actions = np.stack(np.meshgrid(*[range(6)] * game.n_agents), -1).reshape(
        -1, game.n_agents)
    while queue:
        s = queue.popleft()
        collected = game.n_food - sum(game.decode(s)[1])
        best = max(best, (collected, -dist[s]))
        if collected == game.n_food or dist[s] == game.max_steps:
            continue
        for a in joint_actions.tolist():
            *_, final = game.reference_step(s, 0, a)
            if final not in dist:
                dist[final] = dist[s] + 1
                queue.append(final)
    return best[0], -best[1]


def test_default_grid_solution():
    game = GridForaging()
    assert game.layout == (((0, 0), (4, 0)), ((1, 2), (3, 4)))
    solution = game.solve()
    assert (solution.optimum, solution.min_steps) == (2, 8) == python_bfs(game)
    assert game.optimum == 2.0


@settings(max_examples=15)
@given(grid_games(max_size=3, max_agents=2))
def test_grid_optimum_by_bfs_and_plan(game):
    solution = game.solve()
    assert (solution.optimum, solution.min_steps) == python_bfs(game)
    assert len(solution.plan) == solution.min_steps <= game.max_steps
    obs, _ = game.reset(1)
    total, done = 0.0, solution.optimum == 0
    for k, joint in enumerate(solution.plan):
        assert not done
        obs, _, reward, terminated, truncated, _ = game.step([joint])
        total += reward[0]
        done = terminated[0] or truncated[0]
    assert total == game.optimum
    if solution.optimum == game.n_food:
        assert terminated[0]


@pytest.mark.parametrize("game", [GridForaging(), GridForaging(4, 3, 2, 20, layout_seed=1)])
def test_grid_optimal_plan_and_random_policy(game):
    plan = game.solve().plan
    returns = episode_returns(game, lambda t, obs: np.array([plan[min(t, len(plan) - 1)]]))
    assert returns == [game.optimum] and game.optimum == game.n_food
    rng = np.random.default_rng(0)
    random = episode_returns(game, lambda t, obs: rng.integers(0, 6, obs.shape), n_envs=2000)
    assert random.mean() < 0.1 * game.optimum


# --------------------------------------------------------------------------- flags, resets

def test_matrix_flags_and_auto_reset():
    game = climbing(episode_len=3)
    obs, state = game.reset(2)
    assert state.tolist() == [0, 0] and obs.tolist() == [[0, 0], [0, 0]]
    seen = []
    for _ in range(6):
        obs, state, reward, terminated, truncated, final = game.step([[0, 0], [1, 1]])
        assert reward.tolist() == [11, 7] and not truncated.any()
        seen.append((state[0], bool(terminated[0]), final[0]))
    assert seen == [(1, False, 1), (2, False, 2), (0, True, 2)] * 2


def test_two_step_flags():
    game = TwoStepGame()
    game.reset(2)
    obs, state, reward, terminated, _, final = game.step([[0, 1], [1, 0]])
    assert state.tolist() == [1, 2] and final.tolist() == [1, 2] and not terminated.any()
    obs, state, reward, terminated, _, final = game.step([[1, 1], [1, 1]])
    assert reward.tolist() == [7, 8] and terminated.all() and state.tolist() == [0, 0]
    assert final.tolist() == [1, 2] and obs.tolist() == [[0, 0], [0, 0]]


def test_grid_truncation_keeps_final_state():
    game = GridForaging(3, 1, 1, max_steps=2, layout=([(0, 0)], [(2, 2)]))
    game.reset(1)
    for t, expected in enumerate([False, True]):
        obs, state, reward, terminated, truncated, final = game.step([[4]])  # right
        assert truncated[0] == expected and not terminated[0] and reward[0] == 0
    assert game.decode(final[0]) == (((0, 2),), (True,))  # where the episode was cut
    assert state[0] == game.start_state and obs[0, 0] == game.start_state


def test_grid_termination_and_blocking():
    game = GridForaging(3, 2, 1, max_steps=9, layout=([(0, 1), (2, 1)], [(1, 1)]))
    game.reset(1)
    out = game.step([[2, 1]])  # both try to walk onto the food: blocked
    assert out[1][0] == game.start_state and out[2][0] == 0
    out = game.step([[LOAD, 0]])  # one loader alone: nothing
    assert out[2][0] == 0 and not out[3][0]
    obs, state, reward, terminated, truncated, final = game.step([[LOAD, LOAD]])
    assert reward[0] == 1 and terminated[0] and not truncated[0]
    assert game.decode(final[0]) == (((0, 1), (2, 1)), (False,)) and state[0] == game.start_state


# --------------------------------------------------------------------------- transition tables

def joint_index(actions, n_actions):
    """C-order joint action number, agent 0 most significant (written out by hand)."""
    j = 0
    for a, k in zip(actions, n_actions):
        j = j * k + int(a)
    return j


def table_step(tab, n_actions, s, t, actions):
    """The documented table semantics, in plain Python: ``(s, t, obs, reward, terminated,
    truncated, final_state)`` after one step of one env."""
    j = joint_index(actions, n_actions)
    s2, r, term = int(tab.next_state[s, j]), float(tab.reward[s, j]), bool(tab.terminated[s, j])
    trunc = (not term) and t + 1 >= tab.time_limit
    s, t = (tab.start_state, 0) if term or trunc else (s2, t + 1)
    return s, t, tab.obs[s].tolist(), r, term, trunc, s2


def check_tables_reproduce_step(game, actions, plan=()):
    """Roll the batched env and the tables side by side on (T, B, n) ``actions`` and compare
    every output exactly; env 0 follows ``plan`` (joint actions by step count) while it
    lasts.  Returns a Counter of the flags seen."""
    tab = game.tables()
    T, B, n = actions.shape
    obs, state = game.reset(B)
    ref = [(tab.start_state, 0)] * B
    assert state.tolist() == [s for s, _ in ref]
    assert obs.tolist() == [tab.obs[s].tolist() for s, _ in ref]
    seen = Counter()
    for a in actions:
        a = a.copy()
        if ref[0][1] < len(plan):
            a[0] = plan[ref[0][1]]
        obs, state, reward, terminated, truncated, final_state = game.step(a)
        for b in range(B):
            s, t, o, r, term, trunc, final = table_step(tab, game.n_actions, *ref[b], a[b])
            ref[b] = (s, t)
            assert (obs[b].tolist(), int(state[b]), float(reward[b]), bool(terminated[b]),
                    bool(truncated[b]), int(final_state[b])) == (o, s, r, term, trunc, final)
            seen.update(terminated=term, truncated=trunc, rewarded=r != 0)
    return seen


TABLE_GAMES = [
    (climbing(), {"terminated"}), (penalty(), {"terminated"}), (qtran(), {"terminated"}),
    (climbing(episode_len=3), {"terminated"}),
    (MatrixGame(np.arange(24).reshape(2, 3, 4) % 7 - 3, episode_len=2), {"terminated"}),
    (TwoStepGame(), {"terminated"}),
    (GridForaging(), {"terminated", "truncated", "rewarded"}),
    (GridForaging(3, 2, 2, 10, layout_seed=5), {"terminated", "truncated", "rewarded"}),
    (GridForaging(3, 3, 2, 12, layout_seed=4), {"terminated", "truncated", "rewarded"}),
    (GridForaging(max_steps=1), {"truncated"}),
]


@pytest.mark.parametrize("game, flags", TABLE_GAMES, ids=[repr(g) for g, _ in TABLE_GAMES])
def test_tables_reproduce_step(game, flags):
    rng = np.random.default_rng(0)
    T, B = 300, 6
    actions = np.stack([rng.integers(0, k, (T, B)) for k in game.n_actions], axis=-1)
    plan = ()
    if isinstance(game, GridForaging):
        actions[rng.random((T, B)) < 0.3] = LOAD  # everyone loads: food gets collected
        plan = game.solve().plan
    seen = check_tables_reproduce_step(game, actions, plan)
    assert {k for k, v in seen.items() if v} >= flags  # the interesting paths ran
    if "truncated" not in flags:
        assert seen["truncated"] == 0


@settings(max_examples=30)
@given(rollouts(st.one_of(matrix_games(), count_games(), st.just(TwoStepGame()),
                          grid_games(max_size=3, max_agents=2))))
def test_tables_reproduce_step_property(case):
    game, actions = case
    seen = check_tables_reproduce_step(game, actions)
    for name, count in seen.items():
        if count:
            event(f"{type(game).__name__} {name}")


@pytest.mark.parametrize("game", [climbing(episode_len=2), TwoStepGame(), GridForaging(),
                                  MatrixGame(np.zeros((2, 3, 4)))], ids=repr)
def test_tables_shapes_dtypes_read_only_cached(game):
    tab = game.tables()
    assert isinstance(tab, GameTables)
    J = int(np.prod(game.n_actions))
    for name, shape, dtype in [("next_state", (game.n_states, J), np.int64),
                               ("reward", (game.n_states, J), np.float64),
                               ("terminated", (game.n_states, J), np.bool_),
                               ("obs", (game.n_states, game.n_agents), np.int64)]:
        array = getattr(tab, name)
        assert array.shape == shape and array.dtype == dtype, name
        assert not array.flags.writeable, name
        with pytest.raises(ValueError):
            array.setflags(write=True)
        with pytest.raises(ValueError):
            array[0, 0] = 0
    assert type(tab.start_state) is int and tab.start_state == game.reference_reset()[0]
    assert type(tab.time_limit) is int and tab.time_limit == game.episode_limit
    assert ((0 <= tab.next_state) & (tab.next_state < game.n_states)).all()
    assert (tab.obs == np.arange(game.n_states)[:, None]).all()
    assert game.tables() is tab  # computed once


def test_tables_matrix_and_grid_entries():
    game = MatrixGame(np.arange(24).reshape(2, 3, 4), episode_len=3)
    tab = game.tables()
    for s in range(3):
        assert tab.reward[s].tolist() == list(range(24))  # C order: agent 0 most significant
        assert tab.terminated[s].tolist() == [s == 2] * 24
        assert tab.next_state[s].tolist() == [min(s + 1, 2)] * 24
    game = GridForaging(3, 2, 1, 9, layout=([(0, 1), (2, 1)], [(1, 1)]))
    tab = game.tables()
    s = game.start_state
    j = joint_index([LOAD, LOAD], game.n_actions)
    assert (tab.reward[s, j], tab.terminated[s, j]) == (1.0, True)
    assert game.decode(tab.next_state[s, j]) == (((0, 1), (2, 1)), (False,))
    j = joint_index([4, LOAD], game.n_actions)  # agent 0 right, agent 1 loads alone
    assert game.decode(tab.next_state[s, j]) == (((0, 2), (2, 1)), (True,))
    assert (tab.reward[s, j], tab.terminated[s, j]) == (0.0, False)


def test_tables_leave_running_envs_alone():
    game = GridForaging()
    game.reset(3)
    game.step([[4, 1], [2, 2], [LOAD, LOAD]])
    state, t = game._state.copy(), game._t.copy()
    game.tables()
    np.testing.assert_array_equal(game._state, state)
    np.testing.assert_array_equal(game._t, t)


# --------------------------------------------------------------------------- determinism

@settings(max_examples=20)
@given(rollouts())
def test_same_seed_same_trajectory(case):
    game, actions = case
    first, second = rollout(game, actions, seed=3), rollout(game, actions, seed=3)
    for x, y in zip(first, second):
        for u, v in zip(x, y):
            np.testing.assert_array_equal(u, v)


def test_layout_seed():
    layouts = {GridForaging(layout_seed=s).layout for s in range(10)}
    assert len(layouts) > 5  # different seeds differ
    assert GridForaging(layout_seed=7).layout == GridForaging(layout_seed=7).layout
    assert GridForaging().layout == GridForaging().layout


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("actions, error, match", [
    (np.zeros((2, 3), int), ValueError, r"actions must have shape .*\(2, 2\).*\(2, 3\)"),
    (np.zeros(2, int), ValueError, "actions must have shape"),
    (np.zeros((3, 2), int), ValueError, "actions must have shape"),
    (np.zeros((2, 2)), TypeError, "actions must be an integer array.*float64"),
    (np.zeros((2, 2), bool), TypeError, "actions must be an integer array.*bool"),
    ([["a", "b"], ["c", "d"]], TypeError, "actions must be an integer array"),
    ([[0, 3], [0, 0]], ValueError, r"actions\[0, 1\] = 3 is out of range"),
    ([[0, 0], [-1, 0]], ValueError, r"actions\[1, 0\] = -1 is out of range"),
    (np.full((2, 2), 2**64 - 1, np.uint64), ValueError, "actions has value 18446744073709551615"),
    ([[0, 0], [0]], ValueError, r"actions must be an integer array of shape .*\(2, 2\)"),
    (None, TypeError, "actions must be an integer array, got dtype object"),
])
@pytest.mark.parametrize("game", [climbing(), TwoStepGame(), GridForaging()],
                         ids=lambda g: type(g).__name__)
def test_bad_actions(game, actions, error, match):
    if isinstance(game, TwoStepGame) and "3 is out" in match:
        actions = [[0, 2], [0, 0]]
        match = r"actions\[0, 1\] = 2 is out of range"
    if isinstance(game, GridForaging) and "3 is out" in match:
        actions = [[0, 6], [0, 0]]
        match = r"actions\[0, 1\] = 6 is out of range"
    _, state = game.reset(2)
    with pytest.raises(error, match=match):
        game.step(actions)
    assert (game.step(np.zeros((2, game.n_agents), int))[1] != -1).all()  # still usable
    game.reset(2)
    with pytest.raises(error):
        game.step(actions)
    np.testing.assert_array_equal(game._state, state)  # nothing changed


def test_bad_reset_and_step_order():
    game = climbing()
    with pytest.raises(RuntimeError, match="reset"):
        game.step([[0, 0]])
    with pytest.raises(ValueError, match="n_envs must be >= 1, got 0"):
        game.reset(0)
    with pytest.raises(TypeError, match="n_envs must be an int, got float"):
        game.reset(1.5)
    with pytest.raises(TypeError, match="n_envs must be an int, got bool"):
        game.reset(True)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        game.reset(1, seed=-1)
    with pytest.raises(TypeError, match="seed must be an int"):
        game.reset(1, seed="x")
    assert game.reset(np.int32(3))[1].shape == (3,)


@pytest.mark.parametrize("payoff, episode_len, error, match", [
    ([[1.0, np.nan], [0, 0]], 1, ValueError, "payoff must be finite"),
    ([[1.0, np.inf], [0, 0]], 1, ValueError, "payoff must be finite"),
    ([1.0, 2.0], 1, ValueError, "payoff must have one axis per agent.*1 axes"),
    (3.0, 1, ValueError, "payoff must have one axis per agent.*0 axes"),
    (np.zeros((2, 0)), 1, ValueError, "payoff needs at least one action"),
    ([["a", "b"], ["c", "d"]], 1, TypeError, "payoff must be a real numeric array"),
    ([[1, 2], [3]], 1, ValueError, "payoff must be a rectangular array"),
    ([[1, 2], [3, None]], 1, TypeError, "payoff must be a real numeric array, got dtype object"),
    (np.zeros((2, 2), complex), 1, TypeError, "payoff must be a real numeric array"),
    (np.zeros((2, 2)), 0, ValueError, "episode_len must be >= 1"),
    (np.zeros((2, 2)), 1.0, TypeError, "episode_len must be an int"),
    (np.zeros((2, 2)), 10**30, ValueError, r"episode_len must be in \[1, 2147483647\], got 10{30}"),
    ([[1e308, 0], [0, 0]], 2, ValueError, "payoff: an episode return can overflow float64"),
    (np.broadcast_to(0.0, (10**5, 10**5)), 1, ValueError,
     r"payoff of shape \(100000, 100000\) needs about 93.1 GiB of memory"),
])
def test_bad_payoff(payoff, episode_len, error, match):
    with pytest.raises(error, match=match):
        MatrixGame(payoff, episode_len)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(k="x"), TypeError, "k must be a real number, got str 'x'"),
    (dict(k=None), TypeError, "k must be a real number, got NoneType"),
    (dict(k=True), TypeError, "k must be a real number, got bool"),
    (dict(k=float("nan")), ValueError, "k must be a finite real number.*got nan"),
    (dict(k=float("inf")), ValueError, "k must be a finite real number.*got inf"),
    (dict(k=-np.inf), ValueError, "k must be a finite real number.*got -inf"),
    (dict(k=-10**400), ValueError, "k must be a finite real number"),
    (dict(n_agents=1), ValueError, "n_agents must be >= 2, got 1"),
    (dict(n_agents=0), ValueError, "n_agents must be >= 2, got 0"),
    (dict(n_agents=2.0), TypeError, "n_agents must be an int, got float 2.0"),
    (dict(n_agents="3"), TypeError, "n_agents must be an int, got str '3'"),
    (dict(n_agents=True), TypeError, "n_agents must be an int, got bool"),
    (dict(n_agents=40), ValueError,
     r"n_agents=40 gives 3\*\*40 joint actions, .*n_agents must be in \[2, 39\] for 3 actions"),
    (dict(n_agents=10 ** 6), ValueError, "n_agents=1000000 gives"),
    (dict(episode_len=0), ValueError, "episode_len must be >= 1"),
    (dict(n_agents=10**30), ValueError, "n_agents=10{30} gives"),
    (dict(k=-1e308, episode_len=2), ValueError, r"k=-1e\+308: an episode return can overflow"),
])
def test_bad_penalty_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        penalty(**kwargs)


def test_bad_grid_arguments():
    for kwargs, error, match in [
        (dict(size=1), ValueError, "size must be >= 2"),
        (dict(n_agents=0), ValueError, "n_agents must be >= 1"),
        (dict(n_food=0), ValueError, "n_food must be >= 1"),
        (dict(max_steps=2.5), TypeError, "max_steps must be an int"),
        (dict(layout_seed=-1), ValueError, "layout_seed must be >= 0"),
        (dict(size=2, n_agents=3, n_food=2, layout_seed=0), ValueError, "do not fit"),
        (dict(size=20, n_agents=4), ValueError, "states"),
        (dict(n_agents=10**9), ValueError, r"2\*\*2 \* 5\*\*2000000000 states; at most 2\*\*31"),
        (dict(n_food=10**12), ValueError, r"n_food=1000000000000 give 2\*\*1000000000000 \*"),
        (dict(size=30000, n_agents=1, n_food=1), ValueError,
         r"GridForaging\(size=30000\) \(900000000 cells\) needs about 13.4 GiB"),
        (dict(max_steps=2**31), ValueError,
         r"max_steps must be in \[1, 2147483647\], got 2147483648"),
        (dict(layout=([(0, 0)], [(1, 1), (2, 2)])), ValueError, "layout has 1 agents"),
        (dict(layout=([(0, 0), (0, 5)], [(1, 1), (2, 2)])), ValueError, r"layout cell \(0, 5\)"),
        (dict(layout=([(0, 0), (1, 1)], [(1, 1), (2, 2)])), ValueError, "may not start on food"),
        (dict(layout=([(0, 0), (0, 0)], [(1, 1), (1, 1)])), ValueError,
         "food cells must be distinct"),
        (dict(layout="nonsense"), TypeError, "layout must be a pair"),
        (dict(layout=([0, 1], [(1, 1), (2, 2)])), TypeError, "layout must be a pair"),
        (dict(layout=([(0.5, 0), (1, 0)], [(1, 1), (2, 2)])), TypeError,
         r"layout cell \(0.5, 0\) must hold int coordinates, got float 0.5"),
        (dict(layout=([(0, 0), (1, 0)], [(1, 1), (2, 2.0)])), TypeError,
         r"layout cell \(2, 2.0\) must hold int coordinates, got float"),
        (dict(layout=([(0, 0), (True, 0)], [(1, 1), (2, 2)])), TypeError,
         r"layout cell \(True, 0\) must hold int coordinates, got bool"),
        (dict(layout=([(0, 0), ("1", 0)], [(1, 1), (2, 2)])), TypeError,
         r"layout cell \('1', 0\) must hold int coordinates, got str"),
        (dict(layout=([(0, 0), (1, 0, 0)], [(1, 1), (2, 2)])), ValueError,
         r"layout cell \(1, 0, 0\) is not a \(row, col\) pair"),
        (dict(layout=([(0, 0), (-1, 0)], [(1, 1), (2, 2)])), ValueError,
         r"layout cell \(-1, 0\) is not a \(row, col\) in a 5x5 grid"),
        (dict(layout=([(0, 0), (1, 0)], [(1, 1), (2, 2)]), layout_seed=3), ValueError,
         "pass layout or layout_seed, not both"),
    ]:
        with pytest.raises(error, match=match):
            GridForaging(**kwargs)


@pytest.mark.parametrize("state, error, match", [
    (-1, ValueError, r"state must be in \[0, 2500\), got -1"),
    (2500, ValueError, r"state must be in \[0, 2500\), got 2500"),
    (10**9, ValueError, r"state must be in \[0, 2500\), got 1000000000"),
    (1.7, TypeError, "state must be an int, got float 1.7"),
    (3.0, TypeError, "state must be an int, got float 3.0"),
    (True, TypeError, "state must be an int, got bool True"),
    ("3", TypeError, "state must be an int, got str '3'"),
    (None, TypeError, "state must be an int, got NoneType"),
    (np.array([3]), TypeError, "state must be an int, got ndarray"),
])
@pytest.mark.parametrize("method", ["decode", "render"])
def test_grid_bad_state(method, state, error, match):
    game = GridForaging()
    with pytest.raises(error, match=match):
        getattr(game, method)(state)


def test_grid_encode_decode_round_trip():
    game = GridForaging(3, 2, 2, 5, layout_seed=0)
    for s in range(game.n_states):
        positions, food = game.decode(s)
        assert game.encode(positions, food) == s
        assert game.encode(np.array(positions), np.array(food, int)) == s  # numpy, 0/1 flags
    assert game.decode(np.int64(7)) == game.decode(np.array(7)) == game.decode(7)
    assert game.render(np.uint8(7)) == game.render(7)


@pytest.mark.parametrize("positions, food, error, match", [
    ([(0, 0), (5, 0)], [True, True], ValueError,
     r"positions\[1\] \(5, 0\) is not a \(row, col\) in a 5x5 grid"),
    ([(0, -1), (1, 0)], [True, True], ValueError,
     r"positions\[0\] \(0, -1\) is not a \(row, col\)"),
    ([(0, 0)], [True, True], ValueError,
     r"positions must hold one \(row, col\) per agent \(n_agents=2\), got 1"),
    ([(0, 0), (1, 1), (2, 2)], [True, True], ValueError, "positions must hold one .* got 3"),
    ([(0, 0), (1.5, 0)], [True, True], TypeError,
     r"positions\[1\] \(1.5, 0\) must hold int coordinates, got float 1.5"),
    ([(0, 0), (1, 0.0)], [True, True], TypeError, r"positions\[1\] .* got float 0.0"),
    ([(0, 0), (1,)], [True, True], ValueError, r"positions\[1\] \(1,\) is not a \(row, col\) pair"),
    ([(0, 0), 7], [True, True], ValueError, r"positions\[1\] 7 is not a \(row, col\) pair"),
    (5, [True, True], TypeError, "positions must be a sequence of n_agents=2"),
    ([(0, 0), (1, 1)], [True], ValueError,
     r"food_remaining must hold one flag per food \(n_food=2\), got 1"),
    ([(0, 0), (1, 1)], [True, False, True], ValueError,
     "food_remaining must hold one flag .* got 3"),
    ([(0, 0), (1, 1)], [True, 0.5], TypeError,
     r"food_remaining\[1\] must be a bool, got float 0.5"),
    ([(0, 0), (1, 1)], [2, True], TypeError, r"food_remaining\[0\] must be a bool, got int 2"),
    ([(0, 0), (1, 1)], [True, "no"], TypeError, r"food_remaining\[1\] must be a bool, got str"),
    ([(0, 0), (1, 1)], None, TypeError, "food_remaining must be a sequence of n_food=2 bools"),
])
def test_grid_bad_encode(positions, food, error, match):
    with pytest.raises(error, match=match):
        GridForaging().encode(positions, food)


REFERENCE_GAMES = [climbing(), penalty(n_agents=3), MatrixGame(np.zeros((2, 3, 4)), 2),
                   TwoStepGame(), GridForaging()]


@pytest.mark.parametrize("game", REFERENCE_GAMES, ids=repr)
def test_reference_step_bad_input(game):
    n, k = game.n_agents, game.n_actions
    s, t = game.reference_reset()
    ok = [0] * n
    for actions, error, match in [
        (ok[:-1] + [k[-1]], ValueError,
         rf"actions\[{n - 1}\] = {k[-1]} is out of range: agent {n - 1} has actions "
         rf"0..{k[-1] - 1}"),
        ([-1] + ok[1:], ValueError, r"actions\[0\] = -1 is out of range"),
        (ok + [0], ValueError,
         rf"actions must hold one action per agent \(n_agents={n}\), got {n + 1}"),
        (ok[:-1], ValueError, rf"actions must hold one action per agent .* got {n - 1}"),
        ([0.0] + ok[1:], TypeError, r"actions\[0\] must be an int, got float 0.0"),
        (ok[:-1] + [True], TypeError, rf"actions\[{n - 1}\] must be an int, got bool"),
        (ok[:-1] + ["1"], TypeError, rf"actions\[{n - 1}\] must be an int, got str"),
        (None, TypeError, f"actions must be a sequence of n_agents={n} ints, got NoneType"),
        (3, TypeError, "actions must be a sequence"),
    ]:
        for wrap in (list, tuple):  # tuples of ints take the fast path
            with pytest.raises(error, match=match):
                game.reference_step(s, t, wrap(actions) if isinstance(actions, list) else actions)
    for state, t_, error, match in [
        (-1, 0, ValueError, rf"state must be in \[0, {game.n_states}\), got -1"),
        (game.n_states, 0, ValueError,
         rf"state must be in \[0, {game.n_states}\), got {game.n_states}"),
        (0.0, 0, TypeError, "state must be an int, got float"),
        (s, -1, ValueError, rf"t must be in \[0, {game.episode_limit}\), got -1"),
        (s, game.episode_limit, ValueError, rf"t must be in \[0, {game.episode_limit}\)"),
        (s, 0.5, TypeError, "t must be an int, got float"),
    ]:
        for wrap in (list, tuple):
            with pytest.raises(error, match=match):
                game.reference_step(state, t_, wrap(ok))
    # numpy scalars, 0-d arrays and arrays are fine and give the same answer
    expected = game.reference_step(s, t, ok)
    assert game.reference_step(np.int64(s), np.array(t), np.zeros(n, np.int32)) == expected
    assert game.reference_step(s, t, tuple(np.zeros(n, np.uint8))) == expected


def test_reference_step_inconsistent_state_and_t():
    with pytest.raises(ValueError, match="must be equal, got state=1, t=2"):
        climbing(episode_len=3).reference_step(1, 2, [0, 0])
    with pytest.raises(ValueError, match="state 1 of the TwoStepGame is only reached at step t=1"):
        TwoStepGame().reference_step(1, 0, [0, 0])
    with pytest.raises(ValueError, match="state 0 .* at step t=0, got t=1"):
        TwoStepGame().reference_step(0, 1, [0, 0])


# --------------------------------------------------------------------------- count games

def counts_of(actions, n_actions):
    """How many agents chose each action, written out by hand."""
    return tuple(sum(1 for a in actions if a == k) for k in range(n_actions))


def count_index(actions, n_actions, n_agents):
    """The documented count index c = sum_{k < A-1} count_k * (n + 1)**k, by hand."""
    counts = counts_of(actions, n_actions)
    return sum(counts[k] * (n_agents + 1) ** k for k in range(n_actions - 1))


COUNT_GAMES = [penalty(), penalty(-7, 3, n_agents=3), penalty(-1.5, 2, n_agents=4),
               CountGame(RandomCountReward(1), 3, 3, 2), CountGame(RandomCountReward(2), 4, 2),
               CountGame(RandomCountReward(3), 3, 4, 3), CountGame(RandomCountReward(4), 2, 3)]


@pytest.mark.parametrize("game", COUNT_GAMES, ids=repr)
def test_count_game_equals_its_matrix_game(game):
    """Step for step, the count game is the MatrixGame of its payoff (and so are its
    tables, optimum and sizes); its payoff is reward_of_counts of every joint action."""
    A, n = game.n_actions[0], game.n_agents
    for actions in np.ndindex(*game.n_actions):
        assert game.payoff[actions] == game.reward_of_counts(counts_of(actions, A)), actions
    matrix = MatrixGame(game.payoff, game.episode_len)
    assert (game.n_agents, game.n_actions, game.n_states, game.n_obs, game.episode_limit,
            game.optimum) == (matrix.n_agents, matrix.n_actions, matrix.n_states,
                              matrix.n_obs, matrix.episode_limit, matrix.optimum)
    assert type(game.optimum) is float
    for mine, theirs in zip(game.tables(), matrix.tables()):
        np.testing.assert_array_equal(mine, theirs)
    rng = np.random.default_rng(0)
    T, B = 40, 5
    actions = rng.integers(0, A, (T, B, n))
    for mine, theirs in zip(rollout(game, actions), rollout(matrix, actions)):
        for x, y in zip(mine, theirs):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("game", COUNT_GAMES + [penalty(n_agents=32), penalty(3, 4, n_agents=39),
                                                CountGame(RandomCountReward(5), 20, 4, 2)],
                         ids=repr)
def test_count_tables_reproduce_step(game):
    """count_tables() with the count index written out by hand reproduce step and the
    plain-Python reference_step, every output, also where A**n is far too big for tables()."""
    tab = game.count_tables()
    A, n, L = game.n_actions[0], game.n_agents, game.n_states
    assert isinstance(tab, CountTables) and tab.count_base == n + 1
    for name, dtype in [("next_state", np.int64), ("reward", np.float64),
                        ("terminated", np.bool_)]:
        array = getattr(tab, name)
        assert array.shape == (L, (n + 1) ** (A - 1)) and array.dtype == dtype, name
        assert not array.flags.writeable, name
    assert tab.obs.shape == (L, n) and (tab.obs == np.arange(L)[:, None]).all()
    assert (tab.start_state, tab.time_limit) == (0, game.episode_limit)
    assert game.count_tables() is tab  # computed once
    rng = np.random.default_rng(1)
    T, B = 30, 40
    # each env draws its actions from its own mix, so that lopsided counts show up too
    mix = rng.dirichlet(np.full(A, 0.3), B)
    actions = np.array([[rng.choice(A, n, p=mix[b]) for b in range(B)] for _ in range(T)])
    obs, state = game.reset(B)
    ref = [game.reference_reset() for _ in range(B)]
    seen = set()
    for a in actions:
        obs, state, reward, terminated, truncated, final_state = game.step(a)
        for b in range(B):
            s, t = ref[b]
            c = count_index(a[b], A, n)
            seen.add(c)
            s2, term = int(tab.next_state[s, c]), bool(tab.terminated[s, c])
            s_next = tab.start_state if term else s2
            expected = (s_next, float(tab.reward[s, c]), term, False, s2)
            assert (int(state[b]), float(reward[b]), bool(terminated[b]), bool(truncated[b]),
                    int(final_state[b])) == expected
            assert game.reference_step(s, t, a[b].tolist()) == (s_next, s_next) + expected[1:]
            ref[b] = (s_next, 0 if term else t + 1)
        assert (obs == state[:, None]).all()
    assert len(seen) > 20 or len(seen) == math.comb(n + A - 1, A - 1)


def test_count_index_for_three_actions_enumerated():
    """A = 3: the count index of every joint action, from the kernel's reward and from the
    joint tables, is count_0 + count_1 * (n + 1) (direct formula), for n = 2..5."""
    for n in range(2, 6):
        game = CountGame(lambda counts: float(counts[0] + 100 * counts[1]), n, 3, 2)
        joint = np.array(list(np.ndindex(*game.n_actions)))
        direct = [int((a == 0).sum()) + int((a == 1).sum()) * (n + 1) for a in joint]
        assert game.count_reward[direct].tolist() == [
            float((a == 0).sum() + 100 * (a == 1).sum()) for a in joint]
        game.reset(len(joint))
        reward = game.step(joint)[2]
        assert reward.tolist() == game.count_reward[direct].tolist()
        np.testing.assert_array_equal(game.tables().reward, game.count_tables().reward[:, direct])
        np.testing.assert_array_equal(game.tables().next_state,
                                      game.count_tables().next_state[:, direct])
        assert direct == [count_index(a, 3, n) for a in joint]
        assert len(set(direct)) == math.comb(n + 2, 2)  # every count vector has its own index


def test_penalty_many_agents():
    """penalty(n_agents=32): rule-by-rule rewards from the O(n) step, no joint table."""
    game = penalty(-100, n_agents=32)
    assert isinstance(game, CountGame) and game.n_actions == (3,) * 32 and game.optimum == 10.0
    rng = np.random.default_rng(2)
    cases = [np.zeros(32, int), np.full(32, 2), np.ones(32, int), np.r_[0, np.ones(30, int), 2],
             np.r_[np.zeros(31, int), 1], np.r_[np.full(31, 2), 1]]
    cases += [rng.choice(3, 32, p=rng.dirichlet([0.2] * 3)) for _ in range(200)]
    game.reset(len(cases))
    reward = game.step(np.array(cases))[2]
    assert reward.tolist() == [penalty_rule(a, -100) for a in cases]
    assert set(reward[:6].tolist()) == {10.0, 2.0, -100.0, 0.0}
    assert game._payoff is None and game._tables is None  # nothing of size 3**32


def test_count_game_joint_arrays_refused_beyond_the_limit(monkeypatch):
    """payoff and tables() exist while they fit COUNT_GAME_MAX_BYTES (read at every call)
    and are refused beyond, naming n_agents and the estimate; count_tables() always work."""
    with pytest.raises(ValueError, match=r"payoff of CountGame\(penalty_rule\(k=-100.0\), "
                       r"n_agents=32.* covers 3\*\*32 = 1,853,020,188,851,841 joint actions and "
                       r"needs about .* GiB, more than envs.COUNT_GAME_MAX_BYTES = 1 GiB; it fits "
                       r"for n_agents <= 16, got n_agents=32"):
        penalty(n_agents=32).payoff
    with pytest.raises(ValueError, match=r"tables\(\) \(1 states\) of .* it fits for "
                       r"n_agents <= 15, got n_agents=16"):
        penalty(n_agents=16).tables()
    assert penalty(n_agents=16).count_tables().reward.shape == (1, 17 ** 2)
    monkeypatch.setattr(envs, "COUNT_GAME_MAX_BYTES", 20 * 3 ** 5)
    assert penalty(n_agents=5).payoff.shape == (3,) * 5
    with pytest.raises(ValueError, match=r"it fits for n_agents <= 5, got n_agents=6"):
        penalty(n_agents=6).payoff
    with pytest.raises(ValueError, match=r"tables\(\) \(2 states\) .* n_agents <= 4, got "
                       r"n_agents=5"):
        penalty(episode_len=2, n_agents=5).tables()
    with pytest.raises(ValueError, match=r"count_tables\(\) of .* \(1000 states x 16 count "
                       r"indices\) needs about .* MiB, more than envs.COUNT_GAME_MAX_BYTES"):
        penalty(episode_len=1000, n_agents=3).count_tables()
    monkeypatch.setattr(envs, "COUNT_GAME_MAX_BYTES", 2 ** 30)
    with pytest.raises(ValueError, match=r"n_agents=22, n_actions=7 give 23\*\*6 = 148,035,889 "
                       r"count indices, needing about 1.1\d* GiB, more than envs."):
        CountGame(RandomCountReward(0), 22, 7)  # 7**22 < 2**62, but 23**6 columns


@pytest.mark.parametrize("args, error, match", [
    ((None, 2, 2), TypeError, "reward_of_counts must be callable"),
    ((sum, 2, 1), ValueError, "n_actions must be >= 2, got 1"),
    ((sum, 2, 2.0), TypeError, "n_actions must be an int, got float"),
    ((sum, 1, 2), ValueError, "n_agents must be >= 2, got 1"),
    ((sum, True, 2), TypeError, "n_agents must be an int, got bool"),
    ((sum, 63, 2), ValueError, r"n_agents=63 gives 2\*\*63 joint actions, .* \[2, 62\] for 2"),
    ((sum, 32, 4), ValueError, r"n_agents=32 gives 4\*\*32 joint actions, .* \[2, 31\] for 4"),
    ((sum, 2, 2, 0), ValueError, "episode_len must be >= 1, got 0"),
    ((lambda c: "x", 2, 2), TypeError, r"reward_of_counts\(0, 2\) must return a real number, "
                                       r"got str 'x'"),
    ((lambda c: True, 2, 2), TypeError, "must return a real number, got bool"),
    ((lambda c: np.nan, 2, 2), ValueError, r"reward_of_counts\(0, 2\) must be finite, got nan"),
    ((lambda c: 10 ** 400, 2, 2), ValueError, "must be finite"),
    ((lambda c: np.array([1.0]), 2, 2), TypeError, "must return a real number, got ndarray"),
])
def test_bad_count_game_arguments(args, error, match):
    with pytest.raises(error, match=match):
        CountGame(*args)


def test_count_game_accepts_numpy_numbers_and_checks_reference_args():
    game = CountGame(lambda c: np.float32(c[0]) + np.int64(1) + np.array(0.5), 3, 2, 2)
    assert game.count_reward.tolist() == [1.5, 2.5, 3.5, 4.5] and game.optimum == 9.0
    assert game.reference_step(0, 0, [0, 0, 1]) == (1, 1, 3.5, False, False, 1)
    assert game.reference_step(1, 1, (1, 1, 1)) == (0, 0, 1.5, True, False, 1)
    with pytest.raises(ValueError, match="state and t of a CountGame .* got state=1, t=0"):
        game.reference_step(1, 0, [0, 0, 0])
    with pytest.raises(ValueError, match=r"actions\[2\] = 2 is out of range"):
        game.reference_step(0, 0, [0, 0, 2])
    game.reset(2)
    with pytest.raises(ValueError, match=r"actions\[1, 2\] = 2 is out of range"):
        game.step([[0, 0, 0], [0, 1, 2]])
    assert not game.count_reward.flags.writeable and not game.payoff.flags.writeable
