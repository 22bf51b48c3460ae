"""Small cooperative games with known answers, batched with Numba.

Every game shares one batched interface (``B`` environments, ``n`` agents)::

    obs, state = env.reset(n_envs, seed=None)      # obs (B, n) int64, state (B,) int64
    obs, state, reward, terminated, truncated, final_state = env.step(actions)  # actions (B, n)

* ``reward`` (B,) float64 is the team reward; ``terminated`` / ``truncated`` (B,) bool.
* Finished environments reset automatically: ``obs`` and ``state`` of a finished env
  are already those of its next episode, and ``final_state`` holds the successor state
  s'_t of the transition just taken (for envs that did not finish, ``final_state ==
  state``).  A learner bootstraps with
  ``delta_t = r_t + gamma * (1 - terminated_t) * V(final_state_t) - V(s_t)``, which is
  correct for truncated steps too (E10 of the paper).  ``truncated`` is set only when
  ``terminated`` is not.
* Every agent observes the full state: ``obs[:, i] == state`` for every agent ``i``.
* Attributes: ``n_agents``, ``n_actions`` (tuple, one entry per agent), ``n_states``,
  ``n_obs``, ``episode_limit`` and ``optimum`` (best expected team return per episode).
* None of the games draws random numbers in ``reset`` or ``step`` (they are
  deterministic); ``seed`` is accepted and validated for API compatibility.  The only
  randomness is the layout of :class:`GridForaging` drawn from ``layout_seed``.

The step of every game is a Numba kernel over the batch; beside it, each game has a
plain-Python single-env reference, ``env.reference_reset() -> (state, t)`` and
``env.reference_step(state, t, actions) -> (state, t, reward, terminated, truncated,
final_state)`` (``t`` is the step count within the episode; auto-reset included), which
the tests compare against the kernel.

``env.tables()`` gives the whole game as transition tables (:class:`GameTables`: next
state, reward and termination per (state, joint action), observations per state, start
state and time limit) that reproduce ``step`` exactly, so a learner can run rollouts
inside jitted code.

:func:`to_parallel_env` wraps one environment in PettingZoo's Parallel API (gymnasium and
pettingzoo are imported lazily; the core needs only numpy and numba).
"""
from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "MatrixGame", "climbing", "penalty", "qtran", "TwoStepGame", "GridForaging",
    "GridSolution", "GameTables", "to_parallel_env",
]


# --------------------------------------------------------------------------- validation

def _check_int(value, name, low=None, high=None):
    """``int(value)`` if it is an int (numpy ints and 0-d int arrays too, not bools) with
    ``low <= value`` and, if ``high`` is given, ``value < high``."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if high is not None and not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _as_array(value, name, expected):
    """``np.asarray(value)``, or a ValueError naming ``name`` for a ragged nested list."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} must be {expected}, got a {type(value).__name__} numpy cannot "
                         f"make an array of ({e})") from None


def _check_sequence(value, name, length, many, one):
    """``list(value)`` of exactly ``length`` items: TypeError ("must be a sequence of
    {many}") if not a sequence, ValueError ("must hold one {one}") if the length is wrong."""
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {many}, got {type(value).__name__} "
                        f"{value!r}") from None
    if len(items) != length:
        raise ValueError(f"{name} must hold one {one}, got {len(items)}: {value!r}")
    return items


def _check_seed(seed):
    """None or the seed as a Python int >= 0."""
    return None if seed is None else _check_int(seed, "seed", 0)


@numba.njit(cache=True)
def _in_range(actions, n_actions):
    """0 <= actions[:, i] < n_actions[i] for every agent i (agent-major loops are fastest)."""
    B, n = actions.shape
    for i in range(n):
        low = 0
        high = 0
        for b in range(B):
            low = min(low, actions[b, i])
            high = max(high, actions[b, i])
        if low < 0 or high >= n_actions[i]:
            return False
    return True


# --------------------------------------------------------------------------- shared base

class GameTables(NamedTuple):
    """Transition tables of a game (see :meth:`_Game.tables`); ``J = prod(n_actions)``."""
    next_state: np.ndarray  #: (n_states, J) int64 successor s' (``final_state``, before any reset)
    reward: np.ndarray  #: (n_states, J) float64 team reward of the transition
    terminated: np.ndarray  #: (n_states, J) bool, the transition ends the game
    obs: np.ndarray  #: (n_states, n_agents) int64 observation id of every agent in each state
    start_state: int  #: the state every episode starts in
    time_limit: int  #: truncate when t + 1 >= time_limit and not terminated (= episode_limit)


class _Game:
    """Batched interface shared by all games; subclasses provide ``_kernel``."""

    n_agents: int
    n_actions: tuple
    n_states: int
    n_obs: int
    episode_limit: int
    start_state = 0
    _state = None  # (B,) int64 current state ids, set by reset
    _t = None  # (B,) int64 step count within the episode
    _tables = None  # GameTables, built by the first call of tables()

    def reset(self, n_envs, seed=None):
        """Start ``n_envs`` episodes; returns ``(obs (B, n) int64, state (B,) int64)``.

        ``seed`` (None or an int >= 0) is validated; the built-in games are deterministic,
        so it does not change their trajectories.
        """
        n_envs = _check_int(n_envs, "n_envs", 1)
        _check_seed(seed)
        self._state = np.full(n_envs, self.start_state, np.int64)
        self._t = np.zeros(n_envs, np.int64)
        return np.full((n_envs, self.n_agents), self.start_state, np.int64), self._state.copy()

    def step(self, actions):
        """Advance every env by one joint action; see the module docstring."""
        if self._state is None:
            raise RuntimeError("call reset(n_envs, seed) before step(actions)")
        actions = self._check_actions(actions)
        B, n = actions.shape
        obs = np.empty((B, n), np.int64)
        state = np.empty(B, np.int64)
        reward = np.empty(B, np.float64)
        terminated = np.empty(B, np.bool_)
        truncated = np.empty(B, np.bool_)
        final_state = np.empty(B, np.int64)
        if not self._kernel(self._state, self._t, actions,
                            obs, state, reward, terminated, truncated, final_state):
            raise self._range_error(actions)  # kernels check the range before changing anything
        return obs, state, reward, terminated, truncated, final_state

    def _check_actions(self, actions):
        a = _as_array(actions, "actions", f"an integer array of shape (n_envs, n_agents) = "
                      f"{(self._state.shape[0], self.n_agents)}")
        if a.dtype.kind not in "iu":
            raise TypeError(f"actions must be an integer array, got dtype {a.dtype}")
        expected = (self._state.shape[0], self.n_agents)
        if a.shape != expected:
            raise ValueError(
                f"actions must have shape (n_envs, n_agents) = {expected}, got shape {a.shape}")
        if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"actions has value {a.max()}, out of range")
        return np.ascontiguousarray(a, np.int64)

    def _range_error(self, actions):
        b, i = np.argwhere((actions < 0) | (actions >= self._n_actions_array))[0]
        return ValueError(f"actions[{b}, {i}] = {actions[b, i]} is out of range: agent {i} "
                          f"has actions 0..{self.n_actions[i] - 1}")

    def reference_reset(self):
        """Plain-Python reset of one env: ``(state, t)``."""
        return self.start_state, 0

    def _check_reference_args(self, state, t, actions):
        """Validated ``(state, t, actions)`` of ``reference_step``; actions as a tuple of ints."""
        if (type(state) is int and type(t) is int and type(actions) is tuple  # fast path
                and 0 <= state < self.n_states and 0 <= t < self.episode_limit
                and len(actions) == self.n_agents):
            for a, k in zip(actions, self.n_actions):
                if type(a) is not int or not 0 <= a < k:
                    break
            else:
                return state, t, actions
        state = _check_int(state, "state", 0, self.n_states)
        t = _check_int(t, "t", 0, self.episode_limit)
        acts = _check_sequence(actions, "actions", self.n_agents, f"n_agents={self.n_agents} ints",
                               f"action per agent (n_agents={self.n_agents})")
        checked = []
        for i, (a, k) in enumerate(zip(acts, self.n_actions)):
            if isinstance(a, np.ndarray) and a.ndim == 0 and a.dtype.kind in "iu":
                a = a.item()
            if isinstance(a, (bool, np.bool_)) or not isinstance(a, numbers.Integral):
                raise TypeError(f"actions[{i}] must be an int, got {type(a).__name__} {a!r}")
            if not 0 <= a < k:
                raise ValueError(f"actions[{i}] = {a} is out of range: agent {i} has actions 0..{k - 1}")
            checked.append(int(a))
        return state, t, tuple(checked)

    def tables(self):
        """The whole game as transition tables, a :class:`GameTables`, so that rollouts can
        run inside jitted code.

        With ``J = prod(n_actions)`` joint actions, numbered in C order (agent 0 most
        significant), ``j = np.ravel_multi_index(tuple(actions), n_actions)``:

        * ``next_state`` (n_states, J) int64: the successor s' of state s under joint
          action j (what ``step`` reports as ``final_state``: before any auto-reset);
        * ``reward`` (n_states, J) float64 and ``terminated`` (n_states, J) bool;
        * ``obs`` (n_states, n_agents) int64: observation id of every agent in state s
          (for the built-in games ``obs[s, i] == s``);
        * ``start_state`` (int): the state every episode starts in;
        * ``time_limit`` (int, == ``episode_limit``): the step budget of an episode.

        They reproduce :meth:`step` exactly: from state ``s`` at step count ``t`` (0 after
        a reset) with joint action ``j``::

            s2, r, term = next_state[s, j], reward[s, j], terminated[s, j]
            trunc = (not term) and t + 1 >= time_limit
            final_state = s2
            s, t = (start_state, 0) if term or trunc else (s2, t + 1)
            observations = obs[s]                       # of the new (s, t)

        The tables are built by running the game's own batched step kernel once over
        all ``n_states * J`` (state, joint action) pairs at ``t = 0`` (taking
        ``final_state`` and ``terminated``), not by a second implementation of the
        dynamics.  They are computed on the first call, cached on the instance and
        read-only.  Memory: about 17 bytes per (state, joint action) entry (8 + 8 + 1), so
        ``17 * n_states * J`` bytes (1.5 MB for the default :class:`GridForaging`: 2500
        states, 36 joint actions); building them needs about ``16 * n_agents + 33`` more
        bytes per entry for a moment.

        >>> tab = TwoStepGame().tables()
        >>> tab.next_state  # state 0: agent 0's action picks 2A (1) or 2B (2)
        array([[1, 1, 2, 2],
               [1, 1, 1, 1],
               [2, 2, 2, 2]])
        >>> tab.reward[2], tab.terminated[:, 0]
        (array([0., 1., 1., 8.]), array([False,  True,  True]))
        >>> tab.obs[:, 0], tab.start_state, tab.time_limit
        (array([0, 1, 2]), 0, 2)
        """
        if self._tables is None:
            n_states, n = self.n_states, self.n_agents
            n_joint = int(np.prod(self.n_actions))
            size = n_states * n_joint
            joint = np.stack(np.unravel_index(np.arange(n_joint), self.n_actions), axis=1)
            actions = np.ascontiguousarray(np.tile(joint.astype(np.int64), (n_states, 1)))
            state = np.repeat(np.arange(n_states, dtype=np.int64), n_joint)
            t = np.zeros(size, np.int64)
            next_state = np.empty(size, np.int64)
            reward = np.empty(size, np.float64)
            terminated = np.empty(size, np.bool_)
            scratch_obs = np.empty((size, n), np.int64)
            scratch_state = np.empty(size, np.int64)
            scratch_truncated = np.empty(size, np.bool_)
            if not self._kernel(state, t, actions, scratch_obs, scratch_state, reward,
                                terminated, scratch_truncated, next_state):
                raise AssertionError("joint actions out of range")  # unreachable
            del actions, state, t, scratch_obs, scratch_state, scratch_truncated
            obs = np.empty((n_states, n), np.int64)
            _fill_obs(np.arange(n_states, dtype=np.int64), obs)
            for a in (next_state, reward, terminated, obs):
                a.setflags(write=False)  # before reshaping, so the views cannot be unlocked
            arrays = [next_state.reshape(n_states, n_joint), reward.reshape(n_states, n_joint),
                      terminated.reshape(n_states, n_joint), obs.reshape(n_states, n)]
            self._tables = GameTables(*arrays, int(self.start_state), int(self.episode_limit))
        return self._tables

    def __repr__(self):
        return (f"{type(self).__name__}(n_agents={self.n_agents}, n_actions={self.n_actions}, "
                f"n_states={self.n_states}, episode_limit={self.episode_limit})")


# --------------------------------------------------------------------------- matrix games

@numba.njit(cache=True)
def _fill_obs(state, obs):
    """obs[b, i] = state[b] (full observability); agent-major loops vectorize."""
    B, n = obs.shape
    for i in range(n):
        for b in range(B):
            obs[b, i] = state[b]


@numba.njit(cache=True)
def _matrix_step(actions, n_actions, flat_payoff, radix, episode_len, state,
                 obs, state_out, reward, terminated, truncated, final_state):
    B, n = actions.shape
    joint = np.zeros(B, np.int64)  # flat index of the joint action into payoff
    for i in range(n):  # agent-major, checking the range before anything changes
        low = 0
        high = 0
        for b in range(B):
            a = actions[b, i]
            low = min(low, a)
            high = max(high, a)
            joint[b] += a * radix[i]
        if low < 0 or high >= n_actions[i]:
            return False
    for b in range(B):  # separate simple loops: LLVM vectorizes them, not a fused one
        reward[b] = flat_payoff[joint[b]]
    for b in range(B):
        t = state[b]  # the state of a repeated matrix game is the step index
        done = t + 1 == episode_len
        terminated[b] = done
        truncated[b] = False
        s = 0 if done else t + 1
        final_state[b] = t if done else s
        state[b] = s
        state_out[b] = s
    _fill_obs(state_out, obs)
    return True


class MatrixGame(_Game):
    """A cooperative matrix game repeated for ``episode_len`` steps.

    ``payoff`` is an n-dimensional array of shape (A_1, ..., A_n): ``payoff[a_1, ..., a_n]``
    is the team reward of the joint action.  The state (and every agent's observation) is
    the step index t in [0, episode_len); after ``episode_len`` steps the episode
    *terminates* (the game is over, nothing to bootstrap; ``final_state`` is then the
    last step index).  ``optimum = episode_len * payoff.max()``.

    >>> g = MatrixGame([[1, 0], [0, 2]], episode_len=3)
    >>> g.n_agents, g.n_actions, g.n_states, g.episode_limit, g.optimum
    (2, (2, 2), 3, 3, 6.0)
    >>> g.reset(2)
    (array([[0, 0],
           [0, 0]]), array([0, 0]))
    >>> g.step([[1, 1], [0, 1]])[:3]
    (array([[1, 1],
           [1, 1]]), array([1, 1]), array([2., 0.]))
    """

    def __init__(self, payoff, episode_len=1):
        p = _as_array(payoff, "payoff", "a rectangular array of shape (A_1, ..., A_n)")
        if p.dtype.kind not in "iuf":
            raise TypeError(f"payoff must be a real numeric array, got dtype {p.dtype}")
        if p.ndim < 2:
            raise ValueError(f"payoff must have one axis per agent (at least 2), "
                             f"got {p.ndim} axes with shape {p.shape}")
        if min(p.shape) < 1:
            raise ValueError(f"payoff needs at least one action per agent, got shape {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError("payoff must be finite (no NaN or inf)")
        self.episode_len = _check_int(episode_len, "episode_len", 1)
        self.payoff = np.array(p, dtype=np.float64, order="C")
        self.payoff.setflags(write=False)
        self.n_agents = p.ndim
        self.n_actions = tuple(int(k) for k in p.shape)
        self.n_states = self.n_obs = self.episode_limit = self.episode_len
        self.optimum = float(self.episode_len * self.payoff.max())
        self._flat = self.payoff.ravel()
        self._radix = np.array(self.payoff.strides, np.int64) // self.payoff.itemsize
        self._n_actions_array = np.array(self.n_actions, np.int64)
        self._payoff_list = self.payoff.tolist()

    def _kernel(self, state, t, actions, *out):
        # the state of a repeated matrix game is the step index, so t is not needed
        return _matrix_step(actions, self._n_actions_array, self._flat, self._radix,
                            self.episode_len, state, *out)

    def reference_step(self, state, t, actions):
        """Plain-Python step of one env (state == t == step index); auto-resets."""
        state, t, actions = self._check_reference_args(state, t, actions)
        if state != t:
            raise ValueError(f"state and t of a MatrixGame are both the step index, so they "
                             f"must be equal, got state={state}, t={t}")
        r = self._payoff_list
        for a in actions:
            r = r[a]
        if t + 1 == self.episode_len:
            return 0, 0, float(r), True, False, state
        return t + 1, t + 1, float(r), False, False, t + 1

    @classmethod
    def climbing(cls, episode_len=1):
        """Climbing game (Claus & Boutilier 1998): optimum 11 at (0, 0); (1, 1) = 7 is the trap.

        >>> g = MatrixGame.climbing()
        >>> g.payoff
        array([[ 11., -30.,   0.],
               [-30.,   7.,   6.],
               [  0.,   0.,   5.]])
        >>> g.optimum
        11.0
        """
        return cls([[11, -30, 0], [-30, 7, 6], [0, 0, 5]], episode_len)

    @classmethod
    def penalty(cls, k=-100, episode_len=1, *, n_agents=2):
        """Penalty game (Claus & Boutilier 1998), for ``n_agents`` agents with 3 actions each.

        Team reward: 10 when all agents choose 0 or all choose 2 (the two optima), 2 when
        all choose 1, ``k`` (the miscoordination penalty) when at least one agent chooses
        0 and another 2, and 0 otherwise.  With two agents this is the classic table
        ``[[10, 0, k], [0, 2, 0], [k, 0, 10]]``.  ``k`` must be a finite real number,
        ``n_agents`` an int >= 2 (the payoff has ``3**n_agents`` entries);
        ``episode_len`` as in :class:`MatrixGame`.  ``optimum = 10 * episode_len``.

        >>> g = MatrixGame.penalty()
        >>> g.payoff
        array([[  10.,    0., -100.],
               [   0.,    2.,    0.],
               [-100.,    0.,   10.]])
        >>> g.optimum
        10.0
        >>> g3 = MatrixGame.penalty(k=-50, n_agents=3)
        >>> g3.n_actions, g3.optimum
        ((3, 3, 3), 10.0)
        >>> [float(g3.payoff[a]) for a in [(2, 2, 2), (1, 1, 1), (0, 1, 2), (0, 0, 1), (1, 2, 1)]]
        [10.0, 2.0, -50.0, 0.0, 0.0]
        """
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Real):
            raise TypeError(f"k must be a real number, got {type(k).__name__} {k!r}")
        try:
            k_float = float(k)
        except OverflowError:
            k_float = math.inf
        if not math.isfinite(k_float):
            raise ValueError(f"k must be a finite real number (a float64), got {k!r}")
        n_agents = _check_int(n_agents, "n_agents", 2)
        if 3 ** n_agents > 2 ** 31 - 1:
            raise ValueError(f"n_agents={n_agents} gives 3**{n_agents} joint actions; at most "
                             f"2**31 - 1 are supported (n_agents <= 19)")
        a = np.indices((3,) * n_agents)  # a[i] = action of agent i at every joint action
        some_0, some_2 = (a == 0).any(axis=0), (a == 2).any(axis=0)
        all_same = (a == a[0]).all(axis=0)
        payoff = np.where(all_same & (a[0] != 1), 10.0, np.where(
            all_same, 2.0, np.where(some_0 & some_2, k_float, 0.0)))
        return cls(payoff, episode_len)

    @classmethod
    def qtran(cls, episode_len=1):
        """Non-monotonic matrix game of QTRAN (Son et al. 2019): optimum 8 at (0, 0).

        >>> g = MatrixGame.qtran()
        >>> g.payoff
        array([[  8., -12., -12.],
               [-12.,   0.,   0.],
               [-12.,   0.,   0.]])
        >>> g.optimum
        8.0
        """
        return cls([[8, -12, -12], [-12, 0, 0], [-12, 0, 0]], episode_len)


climbing = MatrixGame.climbing
penalty = MatrixGame.penalty
qtran = MatrixGame.qtran


# --------------------------------------------------------------------------- two-step game

@numba.njit(cache=True)
def _two_step_step(actions, n_actions, payoff_2a, payoff_2b, state,
                   obs, state_out, reward, terminated, truncated, final_state):
    if not _in_range(actions, n_actions):
        return False
    B, n = actions.shape
    for b in range(B):
        s = state[b]
        a0 = actions[b, 0]
        a1 = actions[b, 1]
        truncated[b] = False
        if s == 0:  # first step: agent 0 picks 2A (action 0) or 2B (action 1)
            reward[b] = 0.0
            terminated[b] = False
            s = 1 + a0
            final_state[b] = s
        else:
            if s == 1:
                reward[b] = payoff_2a[a0, a1]
            else:
                reward[b] = payoff_2b[a0, a1]
            terminated[b] = True
            final_state[b] = s
            s = 0
        state[b] = s
        state_out[b] = s
    _fill_obs(state_out, obs)
    return True


class TwoStepGame(_Game):
    """Two-step game of QMIX (Rashid et al. 2018); optimum return 8.

    Two agents with two actions each.  In state 0 the reward is 0 and agent 0's action
    picks the next state: 0 -> state 1 ("2A", every joint action pays 7), 1 -> state 2
    ("2B", payoff [[0, 1], [1, 8]]).  The episode terminates after the second step
    (``final_state`` of that step is 1 or 2).  The optimum is 8: go to 2B, then (1, 1).

    >>> g = TwoStepGame()
    >>> g.payoff_2a, g.payoff_2b
    (array([[7., 7.],
           [7., 7.]]), array([[0., 1.],
           [1., 8.]]))
    >>> g.n_states, g.episode_limit, g.optimum
    (3, 2, 8.0)
    """

    n_agents = 2
    n_actions = (2, 2)
    n_states = n_obs = 3
    episode_limit = 2
    optimum = 8.0

    def __init__(self):
        self.payoff_2a = np.full((2, 2), 7.0)
        self.payoff_2b = np.array([[0.0, 1.0], [1.0, 8.0]])
        for p in (self.payoff_2a, self.payoff_2b):
            p.setflags(write=False)
        self._n_actions_array = np.array(self.n_actions, np.int64)

    def _kernel(self, state, t, actions, *out):
        return _two_step_step(actions, self._n_actions_array, self.payoff_2a, self.payoff_2b,
                              state, *out)

    def reference_step(self, state, t, actions):
        """Plain-Python step of one env; auto-resets."""
        state, t, (a0, a1) = self._check_reference_args(state, t, actions)
        if t != min(state, 1):
            raise ValueError(f"state {state} of the TwoStepGame is only reached at step "
                             f"t={min(state, 1)}, got t={t}")
        if state == 0:
            s = 1 if a0 == 0 else 2
            return s, 1, 0.0, False, False, s
        r = 7.0 if state == 1 else [[0.0, 1.0], [1.0, 8.0]][a0][a1]
        return 0, 0, r, True, False, state


# --------------------------------------------------------------------------- grid foraging

STAY, UP, DOWN, LEFT, RIGHT, LOAD = range(6)


@numba.njit(cache=True)
def _grid_transition(s, acts, pos, size, food_cells, food_at):
    """One GridForaging transition of state id ``s`` under joint action ``acts``.

    Returns ``(next state id, reward)``; ``pos`` is scratch space of length n_agents.
    """
    n = acts.shape[0]
    n_food = food_cells.shape[0]
    n_cells = size * size
    mask = s & ((1 << n_food) - 1)
    rest = s >> n_food
    for i in range(n):
        pos[i] = rest % n_cells
        rest //= n_cells
    all_load = True
    for i in range(n):
        if acts[i] != 5:  # LOAD
            all_load = False
    reward = 0.0
    if all_load:  # nobody moves; collect every remaining food adjacent to all agents
        for f in range(n_food):
            if (mask >> f) & 1:
                fr = food_cells[f] // size
                fc = food_cells[f] % size
                adjacent = True
                for i in range(n):
                    if abs(pos[i] // size - fr) + abs(pos[i] % size - fc) != 1:
                        adjacent = False
                        break
                if adjacent:
                    mask ^= 1 << f
                    reward += 1.0
    else:  # loaders stay; others move unless blocked by the border or remaining food
        for i in range(n):
            r = pos[i] // size
            c = pos[i] % size
            a = acts[i]
            if a == 1:  # up
                r -= 1
            elif a == 2:  # down
                r += 1
            elif a == 3:  # left
                c -= 1
            elif a == 4:  # right
                c += 1
            if 0 <= r < size and 0 <= c < size:
                f = food_at[r * size + c]
                if f < 0 or ((mask >> f) & 1) == 0:
                    pos[i] = r * size + c
    s_next = 0
    for i in range(n - 1, -1, -1):
        s_next = s_next * n_cells + pos[i]
    return (s_next << n_food) | mask, reward


@numba.njit(cache=True)
def _grid_step(actions, n_actions, size, food_cells, food_at, max_steps, start, state, t,
               obs, state_out, reward, terminated, truncated, final_state):
    if not _in_range(actions, n_actions):
        return False
    B, n = actions.shape
    all_food = (1 << food_cells.shape[0]) - 1
    pos = np.empty(n, np.int64)
    for b in range(B):
        s, r = _grid_transition(state[b], actions[b], pos, size, food_cells, food_at)
        steps = t[b] + 1
        reward[b] = r
        final_state[b] = s
        term = (s & all_food) == 0
        trunc = (not term) and steps >= max_steps
        terminated[b] = term
        truncated[b] = trunc
        if term or trunc:
            s = start
            steps = 0
        state[b] = s
        t[b] = steps
        state_out[b] = s
    _fill_obs(state_out, obs)
    return True


@numba.njit(cache=True)
def _grid_bfs(start, n_states, n_agents, size, food_cells, food_at, max_steps):
    """Breadth-first search over joint states (at most max_steps deep, not past terminal
    states).  Returns ``(dist, parent, parent_joint)``; dist is -1 where unreachable."""
    n_food = food_cells.shape[0]
    all_food = (1 << n_food) - 1
    dist = np.full(n_states, -1, np.int32)
    parent = np.full(n_states, -1, np.int64)
    parent_joint = np.full(n_states, -1, np.int32)
    queue = np.empty(n_states, np.int64)
    acts = np.empty(n_agents, np.int64)
    pos = np.empty(n_agents, np.int64)
    dist[start] = 0
    queue[0] = start
    head, tail = 0, 1
    while head < tail:
        s = queue[head]
        head += 1
        if (s & all_food) == 0 or dist[s] >= max_steps:
            continue
        for joint in range(6 ** n_agents):
            rest = joint
            for i in range(n_agents):
                acts[i] = rest % 6
                rest //= 6
            s2, _ = _grid_transition(s, acts, pos, size, food_cells, food_at)
            if dist[s2] < 0:
                dist[s2] = dist[s] + 1
                parent[s2] = s
                parent_joint[s2] = joint
                queue[tail] = s2
                tail += 1
    return dist, parent, parent_joint


class GridSolution(NamedTuple):
    """Exact solution of a :class:`GridForaging` instance (see ``GridForaging.solve``)."""
    optimum: int  #: most food a joint policy can collect within max_steps
    min_steps: int  #: fewest steps in which ``optimum`` items can be collected
    plan: tuple  #: an optimal open-loop sequence of joint actions of length min_steps


class GridForaging(_Game):
    """Cooperative foraging on a ``size`` x ``size`` grid, where credit assignment matters.

    A simplified, fully cooperative level-based foraging (after Albrecht & Ramamoorthy
    2013, "lbforaging"; Papoudakis et al. 2021) in which every food item needs *all*
    agents: it is collected only when every agent is adjacent to it (4-neighbourhood,
    Manhattan distance 1) and all agents choose ``load`` in the same step.  One agent
    loading alone earns nothing, so the team reward says little about who did what.

    * Actions per agent: 0 stay, 1 up, 2 down, 3 left, 4 right, 5 load.  When everyone
      loads, nobody moves and every remaining food item adjacent to all agents is
      collected (team reward 1 per item).  Otherwise loaders stay and the others move;
      a move off the grid or into a cell holding remaining food leaves the agent in
      place.  Agents may share a cell (moves never conflict).
    * The episode *terminates* when all food is gone and is *truncated* after
      ``max_steps`` steps (time is not part of the state, so this is a genuine time limit
      and ``final_state`` is the state reached, to bootstrap from).
    * State id (mixed radix): ``mask + 2**n_food * (p_0 + C * (p_1 + C * (...)))`` with
      ``C = size**2``, ``p_i = row * size + col`` the cell of agent ``i`` and bit ``f`` of
      ``mask`` set while food ``f`` remains; ``n_states = 2**n_food * C**n_agents``.
      The observation of every agent is the state id (full observability; n_obs = n_states).
    * Layout: ``layout=(agent_cells, food_cells)``, sequences of (row, col).  Without it,
      ``layout_seed`` draws distinct cells for food and agents; with neither, the
      deterministic default places agents evenly down the left column and food evenly
      over the other columns in reading order.  Every episode starts from the layout,
      so reset is deterministic.
    * ``optimum`` (most food collectable within ``max_steps``, n_food when feasible) and
      the minimal number of steps are computed exactly by :meth:`solve`, a breadth-first
      search over the joint state space.

    The default layout (agents 0 and 1, food ``F``) is solved in 8 steps (6 moves and 2
    loads; agent 1 needs 4 moves to reach a cell next to either food and 2 more between
    them, so 8 is also a hand lower bound):

    >>> g = GridForaging()
    >>> print(g.render(g.start_state))
    0....
    ..F..
    .....
    ....F
    1....
    >>> g.n_states, g.optimum, g.solve().min_steps
    (2500, 2.0, 8)
    """

    def __init__(self, size=5, n_agents=2, n_food=2, max_steps=25, *,
                 layout=None, layout_seed=None):
        self.size = _check_int(size, "size", 2)
        self.n_agents = _check_int(n_agents, "n_agents", 1)
        self.n_food = _check_int(n_food, "n_food", 1)
        self.max_steps = self.episode_limit = _check_int(max_steps, "max_steps", 1)
        n_cells = self.size ** 2
        self.n_states = self.n_obs = 2 ** self.n_food * n_cells ** self.n_agents
        if self.n_states > 2 ** 31 - 1:
            raise ValueError(f"size={size}, n_agents={n_agents}, n_food={n_food} give "
                             f"{self.n_states} states; at most 2**31 - 1 are supported")
        if layout is not None and layout_seed is not None:
            raise ValueError(f"pass layout or layout_seed, not both (got layout={layout!r}, "
                             f"layout_seed={layout_seed!r})")
        if layout is not None:
            agents, food = self._check_layout(layout)
        elif layout_seed is not None:
            _check_int(layout_seed, "layout_seed", 0)
            if self.n_agents + self.n_food > n_cells:
                raise ValueError(f"{n_agents} agents and {n_food} food do not fit on {n_cells} cells")
            cells = np.random.default_rng(layout_seed).permutation(n_cells)
            food = [int(c) for c in cells[:self.n_food]]
            agents = [int(c) for c in cells[self.n_food:self.n_food + self.n_agents]]
        else:
            if self.n_food > n_cells - self.size:
                raise ValueError(f"n_food={n_food} does not fit the default layout; pass layout")
            rows = [(i * (self.size - 1)) // max(self.n_agents - 1, 1) for i in range(self.n_agents)]
            agents = [r * self.size for r in rows]
            others = [c for c in range(n_cells) if c % self.size != 0]
            food = [others[(2 * j + 1) * len(others) // (2 * self.n_food)] for j in range(self.n_food)]
        self.agent_cells = tuple(agents)
        self.food_cells = tuple(food)
        self.layout = (tuple(divmod(c, self.size) for c in agents),
                       tuple(divmod(c, self.size) for c in food))
        self.n_actions = (6,) * self.n_agents
        self._n_actions_array = np.full(self.n_agents, 6, np.int64)
        self._food = np.array(food, np.int64)
        self._food_at = np.full(n_cells, -1, np.int64)
        self._food_at[self._food] = np.arange(self.n_food)
        self.start_state = self._encode(self.layout[0], (True,) * self.n_food)
        self._solution = None

    def _check_layout(self, layout):
        try:
            agents, food = layout
            agents, food = [tuple(rc) for rc in agents], [tuple(rc) for rc in food]
        except (TypeError, ValueError):
            raise TypeError("layout must be a pair (agent_cells, food_cells) of (row, col) "
                            f"sequences, got {layout!r}") from None
        if len(agents) != self.n_agents or len(food) != self.n_food:
            raise ValueError(f"layout has {len(agents)} agents and {len(food)} food, expected "
                             f"n_agents={self.n_agents} and n_food={self.n_food}")
        agents = [self._check_cell(rc, "layout cell") for rc in agents]
        food = [self._check_cell(rc, "layout cell") for rc in food]
        cells = [r * self.size + c for r, c in agents], [r * self.size + c for r, c in food]
        if len(set(cells[1])) != self.n_food:
            raise ValueError(f"layout food cells must be distinct, got {food}")
        if set(cells[0]) & set(cells[1]):
            raise ValueError(f"layout agents may not start on food, got agents {agents}, food {food}")
        return cells

    def _check_cell(self, rc, name):
        """``(row, col)`` as ints inside the grid, or a ValueError/TypeError naming ``name``."""
        rc = tuple(rc) if isinstance(rc, (tuple, list, np.ndarray)) else rc
        if not isinstance(rc, tuple) or len(rc) != 2:
            raise ValueError(f"{name} {rc!r} is not a (row, col) pair")
        for x in rc:
            if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
                raise TypeError(f"{name} {rc!r} must hold int coordinates, got "
                                f"{type(x).__name__} {x!r}")
        if not all(0 <= x < self.size for x in rc):
            raise ValueError(f"{name} {rc!r} is not a (row, col) in a {self.size}x{self.size} grid")
        return int(rc[0]), int(rc[1])

    # -- state ids
    def encode(self, positions, food_remaining):
        """State id of agents at ``positions`` ((row, col) each) with food ``food_remaining`` (bools).

        Any cells in the grid are accepted (also unreachable states, like an agent on
        remaining food); ``decode`` is its inverse.

        >>> g = GridForaging()
        >>> g.encode([(0, 0), (4, 0)], [True, False])
        2001
        >>> g.decode(2001)
        (((0, 0), (4, 0)), (True, False))
        """
        positions = _check_sequence(positions, "positions", self.n_agents,
                                    f"n_agents={self.n_agents} (row, col) pairs",
                                    f"(row, col) per agent (n_agents={self.n_agents})")
        positions = [self._check_cell(rc, f"positions[{i}]") for i, rc in enumerate(positions)]
        flags = _check_sequence(food_remaining, "food_remaining", self.n_food,
                                f"n_food={self.n_food} bools", f"flag per food (n_food={self.n_food})")
        for f, left in enumerate(flags):
            if not isinstance(left, (bool, np.bool_)) and not (
                    isinstance(left, numbers.Integral) and left in (0, 1)):
                raise TypeError(f"food_remaining[{f}] must be a bool, got {type(left).__name__} {left!r}")
        return self._encode(positions, flags)

    def _encode(self, positions, food_remaining):
        mask = sum(1 << f for f, left in enumerate(food_remaining) if left)
        cells = 0
        for r, c in reversed(positions):
            cells = cells * self.size ** 2 + r * self.size + c
        return (cells << self.n_food) | mask

    def decode(self, state):
        """``(positions, food_remaining)`` of a state id: (row, col) per agent, bool per food."""
        return self._decode(_check_int(state, "state", 0, self.n_states))

    def _decode(self, state):
        food_remaining = tuple(bool(state >> f & 1) for f in range(self.n_food))
        rest = state >> self.n_food
        positions = []
        for _ in range(self.n_agents):
            rest, cell = divmod(rest, self.size ** 2)
            positions.append(divmod(cell, self.size))
        return tuple(positions), food_remaining

    def render(self, state):
        """ASCII picture of a state: agent digits (``*`` for several), ``F`` remaining food."""
        positions, food_remaining = self.decode(state)
        grid = [["."] * self.size for _ in range(self.size)]
        for f, left in enumerate(food_remaining):
            if left:
                r, c = divmod(self.food_cells[f], self.size)
                grid[r][c] = "F"
        for i, (r, c) in enumerate(positions):
            grid[r][c] = str(i) if grid[r][c] == "." and i < 10 else "*"
        return "\n".join("".join(row) for row in grid)

    # -- dynamics
    def _kernel(self, state, t, actions, *out):
        return _grid_step(actions, self._n_actions_array, self.size, self._food, self._food_at,
                          self.max_steps, self.start_state, state, t, *out)

    def reference_step(self, state, t, actions):
        """Plain-Python step of one env from state id ``state`` at step ``t``; auto-resets."""
        state, t, actions = self._check_reference_args(state, t, actions)
        positions, left = self._decode(state)
        left = list(left)
        food = [divmod(c, self.size) for c in self.food_cells]
        reward = 0.0
        if all(a == LOAD for a in actions):
            for f, (fr, fc) in enumerate(food):
                if left[f] and all(abs(r - fr) + abs(c - fc) == 1 for r, c in positions):
                    left[f] = False
                    reward += 1.0
        else:
            blocked = {food[f] for f in range(self.n_food) if left[f]}
            moves = {STAY: (0, 0), UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1), LOAD: (0, 0)}
            new_positions = []
            for (r, c), a in zip(positions, actions):
                dr, dc = moves[a]
                cell = (r + dr, c + dc)
                inside = 0 <= cell[0] < self.size and 0 <= cell[1] < self.size
                new_positions.append(cell if inside and cell not in blocked else (r, c))
            positions = new_positions
        s = self._encode(positions, left)
        terminated = not any(left)
        truncated = not terminated and t + 1 >= self.max_steps
        if terminated or truncated:
            return self.start_state, 0, reward, terminated, truncated, s
        return s, t + 1, reward, False, False, s

    # -- exact solution
    def solve(self):
        """Exact optimum, minimal steps and an optimal plan, by BFS over joint states.

        Every item is worth 1, so the return of an episode is the number of food items
        gone in the last state; BFS from the start state (never past ``max_steps`` or a
        terminal state) gives the fewest steps to every reachable state, hence the most
        food collectable within ``max_steps`` and the fewest steps to collect it.  Cost:
        O(reachable states * 6**n_agents) transitions and ~28 bytes per state id.
        """
        if self._solution is None:
            dist, parent, parent_joint = _grid_bfs(
                self.start_state, self.n_states, self.n_agents, self.size, self._food,
                self._food_at, self.max_steps)
            reached = np.flatnonzero(dist >= 0)
            masks = reached & ((1 << self.n_food) - 1)
            collected = self.n_food - np.array([bin(m).count("1") for m in range(2 ** self.n_food)])[masks]
            best = int(collected.max())
            candidates = reached[collected == best]
            s = int(candidates[np.argmin(dist[candidates])])
            plan = []
            while s != self.start_state:
                joint = int(parent_joint[s])
                plan.append(tuple((joint // 6 ** i) % 6 for i in range(self.n_agents)))
                s = int(parent[s])
            self._solution = GridSolution(best, len(plan), tuple(reversed(plan)))
        return self._solution

    @property
    def optimum(self):
        """Best team return per episode (exact, from :meth:`solve`)."""
        return float(self.solve().optimum)


# --------------------------------------------------------------------------- PettingZoo

_PARALLEL_CLASS = None


def _parallel_class():
    global _PARALLEL_CLASS
    if _PARALLEL_CLASS is not None:
        return _PARALLEL_CLASS
    try:
        from gymnasium import spaces
        from pettingzoo import ParallelEnv
    except ImportError as e:
        raise ModuleNotFoundError(
            f"to_parallel_env needs gymnasium and pettingzoo ({e}); install them with "
            "pip install -e '.[pettingzoo]' in a checkout of asae, or pip install 'asae[pettingzoo]'",
            name=e.name) from e

    class AsaeParallelEnv(ParallelEnv):
        """One env of an asae game in PettingZoo's Parallel API (see ``to_parallel_env``)."""

        metadata = {"name": "asae_game_v0", "render_modes": []}

        def __init__(self, game, seed=None):
            self.game = copy.deepcopy(game)
            self.possible_agents = [f"agent_{i}" for i in range(game.n_agents)]
            self.agents = []
            self.metadata = {**self.metadata, "name": f"asae_{type(game).__name__}_v0"}
            self._observation_spaces = {a: spaces.Discrete(game.n_obs) for a in self.possible_agents}
            self._action_spaces = {a: spaces.Discrete(k)
                                   for a, k in zip(self.possible_agents, game.n_actions)}
            self.state_space = spaces.Discrete(game.n_states)
            self._seed = seed
            self._state_id = None

        def _check_agent(self, agent):
            if agent not in self._action_spaces:
                raise ValueError(f"agent must be one of {self.possible_agents}, got {agent!r}")

        def observation_space(self, agent):
            self._check_agent(agent)
            return self._observation_spaces[agent]

        def action_space(self, agent):
            self._check_agent(agent)
            return self._action_spaces[agent]

        def reset(self, seed=None, options=None):
            seed = _check_seed(seed)  # a Python int: gymnasium's seeding rejects numpy ints
            if options is not None and not isinstance(options, Mapping):
                raise TypeError(f"options must be None or a dict, got {type(options).__name__} "
                                f"{options!r}")
            if seed is None:
                seed, self._seed = self._seed, None
            if seed is not None:
                for i, a in enumerate(self.possible_agents):
                    self._action_spaces[a].seed(seed + i)
            obs, state = self.game.reset(1, seed)
            self.agents = self.possible_agents[:]
            self._state_id = int(state[0])
            return ({a: int(obs[0, i]) for i, a in enumerate(self.agents)},
                    {a: {} for a in self.agents})

        def step(self, actions):
            if not self.agents:
                raise RuntimeError("episode is over; call reset()")
            if not isinstance(actions, Mapping):
                raise TypeError(f"actions must be a dict {{agent: action}}, got "
                                f"{type(actions).__name__} {actions!r}")
            unknown = [a for a in actions if a not in self.agents]
            if unknown:
                raise ValueError(f"actions has keys {unknown} that are not live agents "
                                 f"{self.agents}")
            missing = [a for a in self.agents if a not in actions]
            if missing:
                raise ValueError(f"actions is missing agents {missing}")
            joint = np.empty((1, len(self.possible_agents)), np.int64)
            for i, a in enumerate(self.possible_agents):
                joint[0, i] = _check_int(actions[a], f"actions[{a!r}]", 0, self.game.n_actions[i])
            _, state, reward, terminated, truncated, final_state = self.game.step(joint)
            done = bool(terminated[0] or truncated[0])
            self._state_id = int(final_state[0] if done else state[0])
            agents = self.agents
            if done:
                self.agents = []
            return ({a: self._state_id for a in agents},
                    {a: float(reward[0]) for a in agents},
                    {a: bool(terminated[0]) for a in agents},
                    {a: bool(truncated[0]) for a in agents},
                    {a: {} for a in agents})

        def state(self):
            if self._state_id is None:
                raise RuntimeError("call reset() before state()")
            return np.asarray(self._state_id, np.int64)

    _PARALLEL_CLASS = AsaeParallelEnv
    return AsaeParallelEnv


def to_parallel_env(game, seed=None):
    """Wrap one environment of ``game`` (on a private copy) in PettingZoo's Parallel API.

    Agents are ``"agent_0"``, ``"agent_1"``, ...; observations are ``Discrete(game.n_obs)``
    ids, actions ``Discrete(game.n_actions[i])``; ``state()`` is the global state id
    (``state_space = Discrete(game.n_states)``).  ``seed`` seeds the first ``reset`` (and
    the action spaces).  When the episode ends, the returned observations are those of
    the final state and ``agents`` becomes empty.  ``step`` takes a dict with exactly one
    int action per live agent (unknown or missing agents are a ValueError).  Requires
    gymnasium and pettingzoo (``pip install -e '.[pettingzoo]'`` in a checkout, or
    ``pip install 'asae[pettingzoo]'``); without them this raises ModuleNotFoundError.
    """
    if not isinstance(game, _Game):
        raise TypeError(f"game must be an asae game (MatrixGame, TwoStepGame, GridForaging), "
                        f"got {type(game).__name__}")
    return _parallel_class()(game, _check_seed(seed))
