"""Small cooperative games with known answers, and cooperative navigation, batched with Numba.

Every game shares one batched interface (``B`` environments, ``n`` agents), in one of two
forms.  The *integer-id form* (MatrixGame, TwoStepGame, GridForaging)::

    obs, state = env.reset(n_envs, seed=None)      # obs (B, n) int64, state (B,) int64
    obs, state, reward, terminated, truncated, final_state = env.step(actions)  # actions (B, n)

The *feature-observation form* (:class:`Spread`) has the same calls, flags and auto-reset,
with float vectors in place of ids::

    obs, state = env.reset(n_envs, seed=None)      # obs (B, n, obs_dim), state (B, state_dim)
    obs, state, reward, terminated, truncated, final_state = env.step(actions)  # actions (B, n)
    # final_state (B, state_dim); obs, state and final_state of dtype env.obs_dtype (float)

* ``actions`` are ints, ``0 <= actions[:, i] < n_actions[i]``.
* ``reward`` (B,) float64 is the team reward; ``terminated`` / ``truncated`` (B,) bool.
* Finished environments reset automatically: ``obs`` and ``state`` of a finished env
  are already those of its next episode, and ``final_state`` holds the successor state
  s'_t of the transition just taken (for envs that did not finish, ``final_state ==
  state``).  A learner bootstraps with
  ``delta_t = r_t + gamma * (1 - terminated_t) * V(final_state_t) - V(s_t)``, which is
  correct for truncated steps too (E10 of the paper).  ``truncated`` is set only when
  ``terminated`` is not.
* Attributes of both forms: ``n_agents``, ``n_actions`` (tuple, one entry per agent) and
  ``episode_limit``.  The integer-id form adds ``n_states``, ``n_obs`` (ids lie in
  ``[0, n_states)`` and ``[0, n_obs)``), ``optimum`` (best expected team return per
  episode) and ``tables()``; every agent observes the full state, ``obs[:, i] == state``.
  The feature form has ``obs_dim`` and ``state_dim`` (ints) and ``obs_dtype`` instead, and
  no ``n_states``, ``n_obs`` or ``tables()``: *an env is a feature env exactly when it has
  an ``obs_dim`` attribute*.  Its optimum is unknown; :class:`Spread` has measured
  reference returns (``reference_returns``, ``normalized_score``) in its place.
* The integer-id games draw no random numbers in ``reset`` or ``step`` (they are
  deterministic; ``seed`` is accepted and validated for API compatibility, and the only
  randomness is the layout of :class:`GridForaging` drawn from ``layout_seed``).
  :class:`Spread` draws its start states from one generator per env, keyed by ``seed``.

The step of every game is a Numba kernel over the batch; beside it, each game has a
plain-Python single-env reference, ``env.reference_reset() -> (state, t)`` and
``env.reference_step(state, t, actions) -> (state, t, reward, terminated, truncated,
final_state)`` (``t`` is the step count within the episode; auto-reset included), which
the tests compare against the kernel.  (:class:`Spread`'s states are :class:`SpreadState`
tuples and its ``reference_reset`` takes the env's generator key.)

``env.tables()`` gives a whole integer-id game as transition tables (:class:`GameTables`:
next state, reward and termination per (state, joint action), observations per state,
start state and time limit) that reproduce ``step`` exactly, so a learner can run
rollouts inside jitted code.

*Count games* (:class:`CountGame`; :func:`penalty` is one) are games in which every agent
has the same ``A`` actions and the transitions and rewards depend only on the action
counts (``count_k`` = how many agents chose action k).  They offer ``env.count_tables()``
too, a :class:`CountTables`: the fields of :class:`GameTables` plus ``count_base =
n_agents + 1``, with columns indexed by the *count index*
``c = sum_{k < A-1} count_k * count_base**k`` (the last count is implied) instead of the
joint action ``j``, so they are (n_states, (n_agents + 1)**(A - 1)): 1089 columns for the
penalty game with 32 agents, where ``tables()`` would need 3**32.  Their semantics are
those of ``tables()`` with ``j`` replaced by ``c``, which a learner computes in O(n_agents)
per step, as the game's own ``step`` does.  A count game's ``tables()`` and ``payoff``
(A**n_agents entries) are available only while they fit :data:`COUNT_GAME_MAX_BYTES`.

:func:`envs_pettingzoo.to_parallel_env` (module :mod:`envs_pettingzoo`) wraps one
environment in PettingZoo's Parallel API (gymnasium and pettingzoo are imported lazily; the
envs need only numpy and numba).

**Limits.**  Every argument is checked before anything is computed, and too large a request
is a ValueError naming the argument(s) and the estimate, never a MemoryError, an overflow or
a search that does not end:

* :data:`MAX_ALLOC_BYTES` (1 GiB): the memory of everything whose size an argument sets is
  estimated first: ``reset(n_envs)`` (with the outputs of one ``step``, so ``step`` never
  needs a check of its own), the game constructors (``MatrixGame``'s payoff,
  ``penalty(n_agents)``, ``GridForaging``'s grid, ``Spread(n_agents)``), ``tables()``,
  ``GridForaging.solve()`` / ``optimum``, ``Spread.seed_keys`` and :func:`spread_references`.
  It is read at each call: assign ``envs.MAX_ALLOC_BYTES`` to allow more.
* :data:`MAX_SEARCH_TRANSITIONS` (10**9, about a minute): the most transitions
  ``GridForaging.solve()`` may examine.
* :data:`MAX_COUNT` (2**31 - 1): the largest episode length (``episode_len``,
  ``max_steps``, ``max_cycles``) and number of states.
* :data:`MAX_ABS_RETURN` (the largest float64): no episode return of a game can exceed it in
  magnitude (``MatrixGame`` refuses a payoff for which ``max |payoff| * episode_len`` could).
* :data:`SPREAD_MAX_ABS` (1e30): the largest coordinate or velocity component
  ``Spread.set_world`` and the reference functions accept, so that every reward and (also
  float32) observation stays finite.
"""
from __future__ import annotations

import itertools
import math
import numbers
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "MAX_ALLOC_BYTES", "MAX_SEARCH_TRANSITIONS", "MAX_COUNT", "MAX_ABS_RETURN", "SPREAD_MAX_ABS",
    "MatrixGame", "climbing", "penalty", "qtran", "CountGame", "CountTables",
    "COUNT_GAME_MAX_BYTES", "COUNT_GAME_MAX_JOINT", "TwoStepGame", "GridForaging",
    "GridSolution", "GameTables", "Spread", "SpreadState", "SpreadWorld", "ReturnEstimate",
    "SpreadReferences", "SPREAD_REFERENCES", "spread_references",
]


# --------------------------------------------------------------------------- limits

#: Memory limit in bytes: every allocation whose size an argument sets (``reset``'s n_envs
#: with one ``step``, the game constructors, ``tables()``, ``GridForaging.solve()``,
#: ``Spread.seed_keys``, :func:`spread_references`) is estimated first and refused above this
#: with a ValueError naming the argument and the estimate.  Read at every call.
MAX_ALLOC_BYTES = 2 ** 30
#: Most transitions ``GridForaging.solve()`` may examine (about a minute at 20-60 ns each).
MAX_SEARCH_TRANSITIONS = 10 ** 9
#: Largest episode length (``episode_len``, ``max_steps``, ``max_cycles``) and state count.
MAX_COUNT = 2 ** 31 - 1
#: Largest magnitude of an episode return (the largest float64): ``MatrixGame`` refuses a
#: payoff for which ``max |payoff| * episode_len`` (plus a rounding margin) exceeds it.
MAX_ABS_RETURN = float(np.finfo(np.float64).max)
#: Largest |coordinate| and |velocity component| of a :class:`Spread` world accepted by
#: ``set_world`` and the reference functions (rewards and float32 observations stay finite).
SPREAD_MAX_ABS = 1e30


def _gib(n_bytes):
    """``n_bytes`` for a message, in GiB (or MiB below 0.1 GiB)."""
    if n_bytes < 2 ** 30 / 10:
        return f"{n_bytes / 2 ** 20:.3g} MiB"
    gib = n_bytes / 2 ** 30
    return f"{gib:.3g} GiB" if gib < 1000 else f"{gib:.0f} GiB"


def _check_bytes(need, what):
    """ValueError if ``need`` bytes exceed :data:`MAX_ALLOC_BYTES`; ``what`` names the
    arguments that set the size (e.g. ``"n_envs=10**9"``)."""
    if need > MAX_ALLOC_BYTES:
        raise ValueError(f"{what} needs about {_gib(need)} of memory, more than "
                         f"envs.MAX_ALLOC_BYTES = {_gib(MAX_ALLOC_BYTES)}; use a smaller value "
                         f"(or raise envs.MAX_ALLOC_BYTES on a machine with more memory)")


def _check_return_bound(max_abs, episode_len, what):
    """ValueError if ``episode_len`` rewards of magnitude up to ``max_abs`` can sum to more than
    :data:`MAX_ABS_RETURN` (with a margin for the rounding of a sum of episode_len terms)."""
    bound = max_abs * episode_len * (1.0 + episode_len * 2.0 ** -52)
    if not bound <= MAX_ABS_RETURN:
        raise ValueError(f"{what}: an episode return can overflow float64, since max |payoff| "
                         f"* episode_len = {max_abs:.4g} * {episode_len} exceeds MAX_ABS_RETURN "
                         f"= {MAX_ABS_RETURN:.4g} (with a rounding margin); scale the payoff "
                         f"down or shorten the episode")


# --------------------------------------------------------------------------- validation

def _check_int(value, name, low=None, high=None, most=None):
    """``int(value)`` if it is an int (numpy ints and 0-d int arrays too, not bools) with
    ``low <= value`` and, if ``high`` is given, ``value < high``; if ``most`` is given,
    ``value <= most``."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if high is not None and not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if most is not None and value > most:
        raise ValueError(f"{name} must be in [{low}, {most}], got {value}")
    return int(value)


def _check_count(value, name):
    """An episode length: an int in [1, MAX_COUNT]."""
    return _check_int(value, name, 1, most=MAX_COUNT)


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
        items = list(itertools.islice(value, length + 1))  # an endless iterator ends here
    except TypeError:
        raise TypeError(f"{name} must be a sequence of {many}, got {type(value).__name__} "
                        f"{value!r}") from None
    if len(items) != length:
        got = len(value) if hasattr(value, "__len__") else (
            len(items) if len(items) <= length else f"more than {length}")
        raise ValueError(f"{name} must hold one {one}, got {got}: {value!r}")
    return items


def _check_seed(seed):
    """None or the seed as a Python int >= 0."""
    return None if seed is None else _check_int(seed, "seed", 0)


def _check_batch_actions(actions, n_envs, n_agents):
    """``actions`` as a C-contiguous (n_envs, n_agents) int64 array (the range is checked by
    the kernels), or a ValueError/TypeError naming ``actions``."""
    a = _as_array(actions, "actions", f"an integer array of shape (n_envs, n_agents) = "
                  f"{(n_envs, n_agents)}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"actions must be an integer array, got dtype {a.dtype}")
    expected = (n_envs, n_agents)
    if a.shape != expected:
        raise ValueError(
            f"actions must have shape (n_envs, n_agents) = {expected}, got shape {a.shape}")
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"actions has value {a.max()}, out of range")
    return np.ascontiguousarray(a, np.int64)


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


_TABLE_CHUNK = 2 ** 16  # (state, joint action) pairs per kernel call of tables()


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
        so it does not change their trajectories.  A batch whose arrays (of reset and of one
        ``step``, about ``24 * n_agents + 64`` bytes per env) would exceed
        :data:`MAX_ALLOC_BYTES` is refused with a ValueError.
        """
        n_envs = _check_int(n_envs, "n_envs", 1)
        _check_seed(seed)
        # reset's arrays and one step's outputs: 8 (state, t, its copy) + 8n (obs), then the
        # actions as int64, obs, state, reward, final_state and the two flags (and scratch)
        _check_bytes(n_envs * (24 * self.n_agents + 64),
                     f"reset(n_envs={n_envs}) of {self._sizes()}")
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
        return _check_batch_actions(actions, self._state.shape[0], self.n_agents)

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
        states, 36 joint actions); the kernel runs over chunks of about 2**16 entries, which
        need ``16 * n_agents + 50`` more bytes each for a moment.  Tables needing more than
        :data:`MAX_ALLOC_BYTES` are refused (a ValueError with the estimate) before any is
        built.

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
            n_joint = math.prod(self.n_actions)
            size = n_states * n_joint
            rows = max(1, min(n_states, _TABLE_CHUNK // n_joint))  # states per kernel call
            _check_bytes(17 * size + 8 * n * n_states + (16 * n + 50) * rows * n_joint,
                         f"tables() of {self._sizes()} ({n_states} states x {n_joint} joint "
                         f"actions)")
            joint = np.stack(np.unravel_index(np.arange(n_joint), self.n_actions), axis=1)
            joint = joint.astype(np.int64)
            next_state = np.empty(size, np.int64)
            reward = np.empty(size, np.float64)
            terminated = np.empty(size, np.bool_)
            for first in range(0, n_states, rows):  # in chunks: little scratch memory
                m = min(rows, n_states - first) * n_joint
                part = slice(first * n_joint, first * n_joint + m)
                actions = np.ascontiguousarray(np.tile(joint, (m // n_joint, 1)))
                state = np.repeat(np.arange(first, first + m // n_joint, dtype=np.int64),
                                  n_joint)
                if not self._kernel(state, np.zeros(m, np.int64), actions,
                                    np.empty((m, n), np.int64), np.empty(m, np.int64),
                                    reward[part], terminated[part], np.empty(m, np.bool_),
                                    next_state[part]):
                    raise AssertionError("joint actions out of range")  # unreachable
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

    def _sizes(self):
        """The game and the arguments that set its size, for messages."""
        return repr(self)


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


def _payoff_bytes(shape):
    """``(bytes, lists)``: what MatrixGame allocates for a payoff of ``shape`` (a float64
    copy, a finite mask and, if ``lists``, the payoff as nested lists, made when they take
    at most 4 MiB: 32 bytes per entry and 80 per list)."""
    size = math.prod(shape)
    list_bytes = 32 * size + 80 * sum(math.prod(shape[:d]) for d in range(len(shape)))
    lists = list_bytes <= 2 ** 22
    return 10 * size + (list_bytes if lists else 0), lists


class MatrixGame(_Game):
    """A cooperative matrix game repeated for ``episode_len`` steps.

    ``payoff`` is an n-dimensional array of shape (A_1, ..., A_n): ``payoff[a_1, ..., a_n]``
    is the team reward of the joint action.  The state (and every agent's observation) is
    the step index t in [0, episode_len); after ``episode_len`` steps the episode
    *terminates* (the game is over, nothing to bootstrap; ``final_state`` is then the
    last step index).  ``optimum = episode_len * payoff.max()``.

    The payoff must be finite as float64 and small enough that no episode return can
    overflow: ``max |payoff| * episode_len`` at most :data:`MAX_ABS_RETURN` (less a rounding
    margin of ``episode_len * 2**-52``); ``episode_len`` is an int in [1, :data:`MAX_COUNT`].
    A ValueError names the offending argument.

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
        self.episode_len = _check_count(episode_len, "episode_len")
        need, lists = _payoff_bytes(p.shape)
        _check_bytes(need, f"payoff of shape {p.shape}")
        with np.errstate(over="ignore"):  # e.g. a longdouble beyond float64: inf, refused
            payoff = np.array(p, dtype=np.float64, order="C")
        low, high = float(payoff.min()), float(payoff.max())  # NaN if any is NaN
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("payoff must be finite (no NaN or inf) as float64 numbers, "
                             "|payoff| <= 1.8e308")
        _check_return_bound(max(-low, high), self.episode_len, "payoff")
        self.payoff = payoff
        self.payoff.setflags(write=False)
        self.n_agents = p.ndim
        self.n_actions = tuple(int(k) for k in p.shape)
        self.n_states = self.n_obs = self.episode_limit = self.episode_len
        self.optimum = float(self.episode_len * self.payoff.max())
        self._flat = self.payoff.ravel()
        self._radix = np.array(self.payoff.strides, np.int64) // self.payoff.itemsize
        self._n_actions_array = np.array(self.n_actions, np.int64)
        # nested lists index faster in reference_step (when small)
        self._payoff_list = self.payoff.tolist() if lists else None

    def _sizes(self):
        return f"MatrixGame(payoff of shape {self.payoff.shape}, episode_len={self.episode_len})"

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
        if self._payoff_list is None:
            r = self.payoff[actions]
        else:
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
        ``[[10, 0, k], [0, 2, 0], [k, 0, 10]]``.  ``k`` must be a finite real number (with
        ``max(10, |k|) * episode_len`` within :data:`MAX_ABS_RETURN`), ``n_agents`` an int in
        [2, 39]; ``episode_len`` as in :class:`MatrixGame`.  ``optimum = 10 * episode_len``.

        The reward depends only on how many agents chose each action, so the game is a
        :class:`CountGame` (for every n_agents): ``step`` costs O(n_agents) per env and
        ``count_tables()`` has ``(n_agents + 1)**2`` columns; ``payoff`` (``3**n_agents``
        entries, n_agents <= 16) and ``tables()`` (n_agents <= 15 for one step) are built on
        first use.

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
        episode_len = _check_count(episode_len, "episode_len")
        _check_return_bound(max(10.0, abs(k_float)), episode_len, f"k={k!r}")
        return CountGame(_PenaltyRule(k_float), n_agents, 3, episode_len)

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


# --------------------------------------------------------------------------- count games

#: Memory limit in bytes of each array a :class:`CountGame` builds on request
#: (``count_tables()``, ``tables()``, ``payoff``), estimated first and refused above this with
#: a ValueError naming n_agents and the estimate (1 GiB, as ``asae.MAX_TABLE_BYTES``).
#: Read at every call: assign ``envs.COUNT_GAME_MAX_BYTES`` to allow more.
COUNT_GAME_MAX_BYTES = 2 ** 30


def _size_text(n_bytes):
    """``n_bytes`` for a message, in GiB (or MiB below 0.1 GiB)."""
    if n_bytes < 2 ** 30 / 10:
        return f"{n_bytes / 2 ** 20:.4g} MiB"
    return f"{n_bytes / 2 ** 30:.4g} GiB"

#: Largest joint action count A**n_agents of a :class:`CountGame`: asae's COMA critic, exact
#: methods and bias probe number joint actions with int64 (3**39 < 2**62 < 3**40).
COUNT_GAME_MAX_JOINT = 2 ** 62


class CountTables(NamedTuple):
    """Transition tables of a count game (see :meth:`CountGame.count_tables`): the fields of
    :class:`GameTables`, with columns indexed by the count index ``c`` instead of the joint
    action, ``C = count_base ** (A - 1)`` columns."""
    next_state: np.ndarray  #: (n_states, C) int64 successor s' (``final_state``)
    reward: np.ndarray  #: (n_states, C) float64 team reward
    terminated: np.ndarray  #: (n_states, C) bool
    obs: np.ndarray  #: (n_states, n_agents) int64 observation id of every agent in each state
    start_state: int  #: the state every episode starts in
    time_limit: int  #: as in :class:`GameTables` (= episode_limit)
    count_base: int  #: n_agents + 1, the radix of the count index


def _count_vectors(n, n_actions):
    """Every ``(count_0, ..., count_{A-1})`` of ints >= 0 summing to ``n``."""
    if n_actions == 1:
        yield (n,)
        return
    for c in range(n + 1):
        for rest in _count_vectors(n - c, n_actions - 1):
            yield (c,) + rest


def _count_index(counts, base):
    """``c = sum_{k < A-1} counts[k] * base**k`` (the last count is implied)."""
    return sum(c * base ** k for k, c in enumerate(counts[:-1]))


@numba.njit(cache=True)
def _count_step(actions, n_actions, weight, count_reward, episode_len, state,
                obs, state_out, reward, terminated, truncated, final_state):
    """A repeated count game: the count index of env b is ``sum_i weight[actions[b, i]]``
    (O(n) per env), its reward ``count_reward`` there; the clock as in ``_matrix_step``."""
    if not _in_range(actions, n_actions):  # before anything changes
        return False
    B, n = actions.shape
    column = np.zeros(B, np.int64)
    for i in range(n):  # agent-major
        for b in range(B):
            column[b] += weight[actions[b, i]]
    for b in range(B):
        reward[b] = count_reward[column[b]]
    for b in range(B):
        t = state[b]  # the state is the step index
        done = t + 1 == episode_len
        terminated[b] = done
        truncated[b] = False
        s = 0 if done else t + 1
        final_state[b] = t if done else s
        state[b] = s
        state_out[b] = s
    _fill_obs(state_out, obs)
    return True


class _PenaltyRule:
    """The penalty game's team reward as a function of the action counts (c0, c1, c2)."""

    def __init__(self, k):
        self.k = k

    def __call__(self, counts):
        c0, c1, c2 = counts
        n = c0 + c1 + c2
        if c0 == n or c2 == n:
            return 10.0
        if c1 == n:
            return 2.0
        return self.k if c0 and c2 else 0.0

    def __repr__(self):
        return f"penalty_rule(k={self.k!r})"


class CountGame(_Game):
    """A cooperative game of ``n_agents`` agents with ``n_actions`` actions each, repeated for
    ``episode_len`` steps, whose team reward depends only on how many agents chose each
    action: ``reward_of_counts(counts)``, ``counts = (count_0, ..., count_{A-1})`` (ints
    summing to n_agents; ``count_k`` agents chose action k), returns a finite real number.

    States, observations, flags and ``optimum`` are those of :class:`MatrixGame` with the
    payoff ``payoff[a] = reward_of_counts(counts of a)``, but nothing has ``A**n_agents``
    entries unless asked for: ``step`` costs O(n_agents) per env (the count index, then one
    table look-up) and :meth:`count_tables` has ``(n_agents + 1)**(A - 1)`` columns (1089 for
    the penalty game at n_agents = 32).  ``reward_of_counts`` is called once per count
    vector (``math.comb(n_agents + A - 1, A - 1)`` times) when the game is built; the results
    are ``count_reward``, a read-only (count_base ** (A - 1),) float64 array indexed by the
    count index (0 at indices whose counts sum to more than n_agents, which no joint action
    reaches).  ``reference_step`` calls ``reward_of_counts`` itself.

    ``tables()`` and ``payoff`` (the A**n_agents joint table, as :class:`MatrixGame`'s) are
    built on first use and cached, and refused with a ValueError naming n_agents when they
    need more than :data:`COUNT_GAME_MAX_BYTES`.  ``A**n_agents`` must be at most
    :data:`COUNT_GAME_MAX_JOINT` (2**62: n_agents <= 39 for 3 actions), so that asae's
    joint-action methods can still number the joint actions.

    >>> g = CountGame(lambda c: float(c[1] == 2), n_agents=2, n_actions=2)  # both choose 1
    >>> g.payoff, g.optimum, g.count_base
    (array([[0., 0.],
           [0., 1.]]), 1.0, 3)
    >>> g.count_tables().reward  # column c = count_0: 0, 1 or 2 agents chose action 0
    array([[1., 0., 0.]])
    """

    def __init__(self, reward_of_counts, n_agents, n_actions, episode_len=1):
        if not callable(reward_of_counts):
            raise TypeError(f"reward_of_counts must be callable (counts tuple -> float), got "
                            f"{type(reward_of_counts).__name__} {reward_of_counts!r}")
        A = _check_int(n_actions, "n_actions", 2)
        n = _check_int(n_agents, "n_agents", 2)
        n_max = 2
        while A ** (n_max + 1) <= COUNT_GAME_MAX_JOINT:
            n_max += 1
        if n > n_max:
            raise ValueError(f"n_agents={n} gives {A}**{n} joint actions, more than "
                             f"COUNT_GAME_MAX_JOINT = 2**62 (asae numbers joint actions with "
                             f"int64); n_agents must be in [2, {n_max}] for {A} actions")
        self.episode_len = _check_int(episode_len, "episode_len", 1)
        self.count_base = n + 1
        columns = self.count_base ** (A - 1)
        need = 8 * columns + 24 * math.comb(n + A - 1, A - 1)
        if need > COUNT_GAME_MAX_BYTES:
            raise ValueError(f"n_agents={n}, n_actions={A} give {self.count_base}**{A - 1} = "
                             f"{columns:,} count indices, needing about {_size_text(need)}, "
                             f"more than envs.COUNT_GAME_MAX_BYTES = "
                             f"{_size_text(COUNT_GAME_MAX_BYTES)}")
        self.reward_of_counts = reward_of_counts
        self.n_agents = n
        self.n_actions = (A,) * n
        self.n_states = self.n_obs = self.episode_limit = self.episode_len
        count_reward = np.zeros(columns)
        best = -math.inf
        for counts in _count_vectors(n, A):
            r = count_reward[_count_index(counts, self.count_base)] = self._reward(counts)
            best = max(best, r)
        self.optimum = float(self.episode_len * best)
        count_reward.setflags(write=False)
        self.count_reward = count_reward
        weight = [self.count_base ** k for k in range(A - 1)] + [0]  # column = sum weight[a]
        self._weight = np.array(weight, np.int64)
        self._n_actions_array = np.full(n, A, np.int64)
        self._count_tables = self._payoff = None

    def _reward(self, counts):
        r = self.reward_of_counts(counts)
        if isinstance(r, np.ndarray) and r.ndim == 0:
            r = r.item()
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real):
            raise TypeError(f"reward_of_counts{counts} must return a real number, got "
                            f"{type(r).__name__} {r!r}")
        try:
            r = float(r)
        except OverflowError:  # an int beyond float64
            r = math.inf
        if not math.isfinite(r):
            raise ValueError(f"reward_of_counts{counts} must be finite, got {r!r}")
        return r

    def __repr__(self):
        return (f"CountGame({self.reward_of_counts!r}, n_agents={self.n_agents}, "
                f"n_actions={self.n_actions[0]}, episode_len={self.episode_len})")

    def _kernel(self, state, t, actions, *out):
        return _count_step(actions, self._n_actions_array, self._weight, self.count_reward,
                           self.episode_len, state, *out)

    def reference_step(self, state, t, actions):
        """Plain-Python step of one env (state == t == step index); auto-resets."""
        state, t, actions = self._check_reference_args(state, t, actions)
        if state != t:
            raise ValueError(f"state and t of a CountGame are both the step index, so they "
                             f"must be equal, got state={state}, t={t}")
        counts = [0] * self.n_actions[0]
        for a in actions:
            counts[a] += 1
        r = self._reward(tuple(counts))
        if t + 1 == self.episode_len:
            return 0, 0, r, True, False, state
        return t + 1, t + 1, r, False, False, t + 1

    def _check_joint(self, what, bytes_per_joint):
        """ValueError naming n_agents if ``what``, ``bytes_per_joint`` bytes for each of the
        A**n joint actions, needs more than COUNT_GAME_MAX_BYTES."""
        A, n = self.n_actions[0], self.n_agents
        need = bytes_per_joint * A ** n
        if need > COUNT_GAME_MAX_BYTES:
            fits = 0
            while bytes_per_joint * A ** (fits + 1) <= COUNT_GAME_MAX_BYTES:
                fits += 1
            raise ValueError(
                f"{what} of {self!r} covers {A}**{n} = {A ** n:,} joint actions and needs "
                f"about {_size_text(need)}, more than envs.COUNT_GAME_MAX_BYTES = "
                f"{_size_text(COUNT_GAME_MAX_BYTES)}; it fits for n_agents <= {fits}, got "
                f"n_agents={n} (count_tables() and count_reward hold the game by action counts)")

    def _joint_columns(self):
        """(A**n,) int64 count index of every joint action, C order (agent 0 most significant)."""
        column = np.zeros(1, np.int64)
        for _ in range(self.n_agents):
            column = (column[:, None] + self._weight[None, :]).ravel()
        return column

    @property
    def payoff(self):
        """The (A,) * n_agents joint payoff table (read-only, cached); a ValueError naming
        n_agents if it needs more than :data:`COUNT_GAME_MAX_BYTES` (about 20 bytes per entry
        while it is built: n_agents <= 16 for 3 actions)."""
        if self._payoff is None:
            self._check_joint("payoff", 20)
            payoff = self.count_reward[self._joint_columns()].reshape(self.n_actions)
            payoff.setflags(write=False)
            self._payoff = payoff
        return self._payoff

    def count_tables(self):
        """The game as transition tables over count indices, a :class:`CountTables`: the
        :class:`GameTables` of :meth:`tables` with column ``c`` for every joint action whose
        action counts have count index ``c = sum_{k < A-1} count_k * count_base**k``, so
        ``next_state[s, c]`` etc. are those of any joint action with these counts, and
        ``count_base = n_agents + 1``.  Columns no joint action reaches (counts summing to
        more than n_agents) hold reward 0 and the same transition as column 0.  Computed on
        the first call, cached and read-only; 17 bytes per entry.

        >>> tab = penalty(n_agents=32).count_tables()
        >>> tab.reward.shape, tab.count_base
        ((1, 1089), 33)
        >>> tab.reward[0, [32, 31, 32 * 33, 0]]  # all on 0; 31 on 0 and 1 on 2; all on 1; all on 2
        array([  10., -100.,    2.,   10.])
        """
        if self._count_tables is None:
            L, n, C = self.n_states, self.n_agents, self.count_reward.size
            need = 17 * L * C + 8 * L * n
            if need > COUNT_GAME_MAX_BYTES:
                raise ValueError(f"count_tables() of {self!r} ({L} states x {C:,} count "
                                 f"indices) needs about {_size_text(need)}, more than "
                                 f"envs.COUNT_GAME_MAX_BYTES = {_size_text(COUNT_GAME_MAX_BYTES)}; "
                                 f"use a shorter episode_len or fewer n_agents")
            s = np.arange(L, dtype=np.int64)
            last = s + 1 == L
            next_state = np.repeat(np.where(last, s, s + 1)[:, None], C, axis=1)
            reward = np.repeat(self.count_reward[None, :], L, axis=0)
            terminated = np.repeat(last[:, None], C, axis=1)
            obs = np.repeat(s[:, None], n, axis=1)
            for a in (next_state, reward, terminated, obs):
                a.setflags(write=False)
            self._count_tables = CountTables(next_state, reward, terminated, obs,
                                             int(self.start_state), int(self.episode_limit),
                                             int(self.count_base))
        return self._count_tables

    def tables(self):
        """The joint-action :class:`GameTables` (see :meth:`_Game.tables`), taken from
        :meth:`count_tables` at every joint action's count index; refused with a ValueError
        naming n_agents when ``17 * n_states * A**n_agents`` bytes (and 8 per joint action to
        build them) exceed :data:`COUNT_GAME_MAX_BYTES` (n_agents <= 15 for the one-step
        penalty game)."""
        if self._tables is None:
            self._check_joint(f"tables() ({self.n_states} states)", 17 * self.n_states + 8)
            tab = self.count_tables()
            column = self._joint_columns()
            arrays = [np.ascontiguousarray(x[:, column])
                      for x in (tab.next_state, tab.reward, tab.terminated)]
            for a in arrays:
                a.setflags(write=False)
            self._tables = GameTables(*arrays, tab.obs, tab.start_state, tab.time_limit)
        return self._tables


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
def _grid_compact(s, pos, size, n_food, row_lo, first_col, last_col, offset, count):
    """Compact id (see :func:`_grid_bfs`) of state ``s`` whose agents are in cells ``pos``."""
    c = 0
    for i in range(pos.shape[0] - 1, -1, -1):
        k = pos[i] // size - row_lo[i]
        col = pos[i] % size
        if k < 0 or k >= first_col.shape[1] or col < first_col[i, k] or col > last_col[i, k]:
            raise AssertionError("GridForaging BFS left the reachable cells")
        c = c * count[i] + offset[i, k] + col - first_col[i, k]
    return (c << n_food) | (s & ((1 << n_food) - 1))


@numba.njit(cache=True)
def _grid_bfs(start, n_agents, size, food_cells, food_at, max_steps,
              row_lo, first_col, last_col, offset, count, n_reach):
    """Breadth-first search over joint states (at most max_steps deep, not past terminal
    states).

    Every reachable state lies in a set of ``n_reach`` compact ids: its food mask plus
    ``2**n_food`` times the mixed-radix number (radices ``count``) of each agent's cell
    among the cells within max_steps moves of its start (rows ``row_lo[i]`` on, row k
    from column ``first_col[i, k]`` to ``last_col[i, k]``, numbered from ``offset[i, k]``).
    Returns ``(queue, dist, parent, joint)`` of the states reached, in BFS order: state
    ids, steps from the start, position in the queue of the predecessor and the joint
    action from it.  int32 suffices for dist <= max_steps <= MAX_COUNT and for the joint
    action (< 6**n_agents, which MAX_SEARCH_TRANSITIONS keeps below 2**31)."""
    n_food = food_cells.shape[0]
    all_food = (1 << n_food) - 1
    seen = np.zeros(n_reach, np.bool_)
    queue = np.empty(n_reach, np.int64)
    dist = np.empty(n_reach, np.int32)
    parent = np.empty(n_reach, np.int64)
    parent_joint = np.empty(n_reach, np.int32)
    acts = np.empty(n_agents, np.int64)
    pos = np.empty(n_agents, np.int64)
    rest = start >> n_food  # the start's cells, for its compact id
    for i in range(n_agents):
        pos[i] = rest % (size * size)
        rest //= size * size
    seen[_grid_compact(start, pos, size, n_food, row_lo, first_col, last_col, offset,
                       count)] = True
    queue[0] = start
    dist[0] = 0
    parent[0] = -1
    parent_joint[0] = -1
    head, tail = 0, 1
    while head < tail:
        s = queue[head]
        if (s & all_food) == 0 or dist[head] >= max_steps:
            head += 1
            continue
        for joint in range(6 ** n_agents):
            rest = joint
            for i in range(n_agents):
                acts[i] = rest % 6
                rest //= 6
            s2, _ = _grid_transition(s, acts, pos, size, food_cells, food_at)  # pos: of s2
            c = _grid_compact(s2, pos, size, n_food, row_lo, first_col, last_col, offset, count)
            if not seen[c]:
                seen[c] = True
                if tail == n_reach:  # cannot happen: n_reach bounds the reachable states
                    raise AssertionError("GridForaging BFS queue overflow")
                queue[tail] = s2
                dist[tail] = dist[head] + 1
                parent[tail] = head
                parent_joint[tail] = joint
                tail += 1
        head += 1
    return queue[:tail], dist[:tail], parent[:tail], parent_joint[:tail]


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
      search over the joint state space (refused, with a ValueError, when too large).
    * Limits: ``n_states`` at most :data:`MAX_COUNT` (2**31 - 1), ``max_steps`` in
      [1, MAX_COUNT], and the grid's lookup tables (16 bytes per cell, 24 with
      ``layout_seed``) within :data:`MAX_ALLOC_BYTES`.

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
        self.max_steps = self.episode_limit = _check_count(max_steps, "max_steps")
        # 2**n_food * (size**2)**n_agents >= 2**(n_food + 2 * n_agents): refuse a huge one
        # before computing it
        if self.n_food + 2 * self.n_agents > 31 or self.size > 2 ** 16:
            raise ValueError(f"size={size}, n_agents={n_agents}, n_food={n_food} give "
                             f"2**{n_food} * {size}**{2 * self.n_agents} states; at most "
                             f"2**31 - 1 are supported")
        n_cells = self.size ** 2
        self.n_states = self.n_obs = 2 ** self.n_food * n_cells ** self.n_agents
        if self.n_states > MAX_COUNT:
            raise ValueError(f"size={size}, n_agents={n_agents}, n_food={n_food} give "
                             f"{self.n_states} states; at most 2**31 - 1 are supported")
        # the food lookup (8 bytes per cell), render (~9) and layout_seed's permutation (8)
        _check_bytes((24 if layout_seed is not None else 16) * n_cells,
                     f"GridForaging(size={size}) ({n_cells} cells)")
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
            # others[k]: the k-th cell, in reading order, outside the left column
            n_others, width = n_cells - self.size, self.size - 1
            picks = [(2 * j + 1) * n_others // (2 * self.n_food) for j in range(self.n_food)]
            food = [k // width * self.size + 1 + k % width for k in picks]
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
            # at most one item too many of each (an endless iterator ends here)
            agents, food = [[tuple(itertools.islice(rc, 3)) for rc in itertools.islice(x, k + 1)]
                            for x, k in [(agents, self.n_agents), (food, self.n_food)]]
        except (TypeError, ValueError):
            raise TypeError("layout must be a pair (agent_cells, food_cells) of (row, col) "
                            f"sequences, got {layout!r}") from None
        if len(agents) != self.n_agents or len(food) != self.n_food:
            counts = [len(x) if len(x) <= k else f"more than {k}"
                      for x, k in [(agents, self.n_agents), (food, self.n_food)]]
            raise ValueError(f"layout has {counts[0]} agents and {counts[1]} food, expected "
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
        food collectable within ``max_steps`` and the fewest steps to collect it.

        Cost: up to ``R * 6**n_agents`` transitions and about ``49 * R`` bytes, where
        ``R = 2**n_food * prod_i c_i`` bounds the reachable states (``c_i``: the cells within
        ``max_steps`` moves of agent i's start; the search indexes only those).  A game whose
        search would exceed :data:`MAX_SEARCH_TRANSITIONS` or :data:`MAX_ALLOC_BYTES` is
        refused before it starts, with a ValueError giving both estimates:

        >>> GridForaging(size=100).optimum  # food 2 is out of reach within 25 steps
        0.0
        >>> GridForaging(size=100, max_steps=200).solve()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: GridForaging(size=100, ...) is too large to solve: the search ... 18.3 GiB ...
        """
        if self._solution is None:
            row_lo, first_col, last_col, offset, count = self._reach_cells()
            reach = 2 ** self.n_food * math.prod(count)
            need = 49 * reach + 24 * first_col.size
            work = reach * 6 ** self.n_agents
            if need > MAX_ALLOC_BYTES or work > MAX_SEARCH_TRANSITIONS:
                raise ValueError(
                    f"{self._sizes()} is too large to solve: the search over up to {reach} "
                    f"states needs about {_gib(need)} of memory (envs.MAX_ALLOC_BYTES = "
                    f"{_gib(MAX_ALLOC_BYTES)}) and up to {work:.3g} transitions "
                    f"(envs.MAX_SEARCH_TRANSITIONS = {MAX_SEARCH_TRANSITIONS:.3g}); its optimum "
                    f"is at most n_food = {self.n_food}")
            states, dist, parent, parent_joint = _grid_bfs(
                self.start_state, self.n_agents, self.size, self._food, self._food_at,
                self.max_steps, row_lo, first_col, last_col, offset, np.array(count, np.int64),
                reach)
            collected = np.full(states.shape, self.n_food, np.int64)
            for f in range(self.n_food):  # minus the food left (bit f of the state id)
                collected -= (states >> f) & 1
            best = int(collected.max())
            fewest = dist[collected == best].min()
            # the smallest state id of those reached in the fewest steps
            candidates = np.flatnonzero((collected == best) & (dist == fewest))
            k = int(candidates[np.argmin(states[candidates])])
            plan = []
            while k != 0:
                joint = int(parent_joint[k])
                plan.append(tuple((joint // 6 ** i) % 6 for i in range(self.n_agents)))
                k = int(parent[k])
            self._solution = GridSolution(best, len(plan), tuple(reversed(plan)))
        return self._solution

    def _reach_cells(self):
        """The cells within max_steps moves of each agent's start (Manhattan diamonds cut by
        the grid), for :func:`_grid_bfs`: ``(row_lo, first_col, last_col, offset, count)``."""
        m, size, n = self.max_steps, self.size, self.n_agents
        rows = min(size, 2 * m + 1)
        row_lo = np.empty(n, np.int64)
        first_col = np.zeros((n, rows), np.int64)
        last_col = np.full((n, rows), -1, np.int64)  # -1: no such row
        offset = np.zeros((n, rows), np.int64)
        count = []
        for i, cell in enumerate(self.agent_cells):
            r0, c0 = divmod(cell, size)
            row_lo[i] = max(0, r0 - m)
            total = 0
            for k, r in enumerate(range(row_lo[i], min(size, r0 + m + 1))):
                w = m - abs(r - r0)
                first_col[i, k] = max(0, c0 - w)
                last_col[i, k] = min(size - 1, c0 + w)
                offset[i, k] = total
                total += last_col[i, k] - first_col[i, k] + 1
            count.append(total)
        return row_lo, first_col, last_col, offset, count

    def _sizes(self):
        return (f"GridForaging(size={self.size}, n_agents={self.n_agents}, n_food={self.n_food}, "
                f"max_steps={self.max_steps})")

    @property
    def optimum(self):
        """Best team return per episode (exact, from :meth:`solve`; a ValueError for a game
        too large to search)."""
        return float(self.solve().optimum)


# --------------------------------------------------------------------------- cooperative navigation

# Constants of mpe2's simple_spread_v3 (World, Agent and SimpleEnv defaults).
SPREAD_AGENT_SIZE = 0.15  #: agent radius; agents collide when closer than 2 * 0.15
SPREAD_DT = 0.1  #: integration time step
SPREAD_DAMPING = 0.25  #: velocity damping per step
SPREAD_CONTACT_FORCE = 100.0  #: contact force scale
SPREAD_CONTACT_MARGIN = 1e-3  #: softness of the contact penetration
SPREAD_ACCEL = 5.0  #: force of a move action (mpe2's "sensitivity")
SPREAD_MASS = 1.0  #: agent mass
SPREAD_ACTIONS = ("no_op", "left", "right", "down", "up")  #: action a of every agent
_SPREAD_DIST_MIN = SPREAD_AGENT_SIZE + SPREAD_AGENT_SIZE
_SPREAD_KEEP = 1 - SPREAD_DAMPING
_SPREAD_COAST = SPREAD_DT / SPREAD_DAMPING  # dt * (1 + k + k^2 + ...) with k = 1 - damping

# SplitMix64 (Steele, Lea & Flood 2014), one generator per env, for resets inside the kernel.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_M53 = 2.0 ** -53
_M64 = 2 ** 64 - 1


@numba.njit(cache=True)
def _mix64(z):
    """SplitMix64's output function (a bijection of uint64)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _uniform_pm1(rng, b):
    """Advance env b's generator ``rng[b]`` and return a uniform float64 on [-1, 1)."""
    z = rng[b] + _GOLDEN
    rng[b] = z
    return -1.0 + 2.0 * (float(_mix64(z) >> np.uint64(11)) * _TWO_M53)


def _py_uniform_pm1(key):
    """Plain-Python twin of :func:`_uniform_pm1`: ``(next key, uniform on [-1, 1))``."""
    key = (key + 0x9E3779B97F4A7C15) & _M64
    z = key
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return key, -1.0 + 2.0 * ((z >> 11) * _TWO_M53)


@numba.njit(cache=True)
def _spread_keys(base, n_envs):
    """Generator key of env b: ``base XOR mix64((b + 1) * golden)`` (distinct for every b)."""
    keys = np.empty(n_envs, np.uint64)
    for b in range(n_envs):
        keys[b] = base ^ _mix64(np.uint64(b + 1) * _GOLDEN)
    return keys


@numba.njit(cache=True)
def _softplus(x):
    """log(1 + e^x) evaluated as numpy's ``logaddexp(0, x)``."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def _py_softplus(x):
    return x + math.log1p(math.exp(-x)) if x > 0.0 else math.log1p(math.exp(x))


@numba.njit(cache=True)
def _spread_reset_env(pos, vel, lm, rng, b):
    """New episode in env b: agents' (x, y), then landmarks' (x, y), from U[-1, 1); v = 0."""
    n = pos.shape[1]
    for i in range(n):
        pos[b, i, 0] = _uniform_pm1(rng, b)
        pos[b, i, 1] = _uniform_pm1(rng, b)
        vel[b, i, 0] = 0.0
        vel[b, i, 1] = 0.0
    for k in range(lm.shape[1]):
        lm[b, k, 0] = _uniform_pm1(rng, b)
        lm[b, k, 1] = _uniform_pm1(rng, b)


@numba.njit(cache=True)
def _spread_observe_env(pos, vel, lm, b, obs, state):
    """obs[b, i] = [v_i, p_i, q_l - p_i (l = 0..n-1), p_j - p_i (j != i), zeros]; state[b] is
    the concatenation obs[b, 0], obs[b, 1], ... (cast to the dtype of obs and state)."""
    n = pos.shape[1]
    d = obs.shape[2]
    for i in range(n):
        px = pos[b, i, 0]
        py = pos[b, i, 1]
        obs[b, i, 0] = vel[b, i, 0]
        obs[b, i, 1] = vel[b, i, 1]
        obs[b, i, 2] = px
        obs[b, i, 3] = py
        k = 4
        for q in range(lm.shape[1]):
            obs[b, i, k] = lm[b, q, 0] - px
            obs[b, i, k + 1] = lm[b, q, 1] - py
            k += 2
        for j in range(n):
            if j != i:
                obs[b, i, k] = pos[b, j, 0] - px
                obs[b, i, k + 1] = pos[b, j, 1] - py
                k += 2
        for k in range(k, d):  # communication of the (silent) other agents
            obs[b, i, k] = 0.0
    for i in range(n):
        for k in range(d):
            state[b, i * d + k] = obs[b, i, k]


@numba.njit(cache=True)
def _spread_reset(pos, vel, lm, rng, obs, state):
    for b in range(pos.shape[0]):
        _spread_reset_env(pos, vel, lm, rng, b)
        _spread_observe_env(pos, vel, lm, b, obs, state)


@numba.njit(cache=True)
def _spread_observe(pos, vel, lm, obs, state):
    for b in range(pos.shape[0]):
        _spread_observe_env(pos, vel, lm, b, obs, state)


@numba.njit(cache=True)
def _spread_step(actions, pos, vel, lm, t, rng, local_ratio, max_cycles,
                 obs, state, reward, agent_reward, terminated, truncated, final_state):
    """One step of every env (see :class:`Spread`); False, changing nothing, if an action is
    outside 0..4."""
    B, n = actions.shape
    for i in range(n):  # the range first, agent-major
        low = 0
        high = 0
        for b in range(B):
            low = min(low, actions[b, i])
            high = max(high, actions[b, i])
        if low < 0 or high > 4:
            return False
    fx = np.empty(n)
    fy = np.empty(n)
    count = np.empty(n)
    w_global = 1.0 - local_ratio
    for b in range(B):
        for i in range(n):  # action forces u_i
            a = actions[b, i]
            fx[i] = 0.0
            fy[i] = 0.0
            if a == 1:
                fx[i] = -SPREAD_ACCEL
            elif a == 2:
                fx[i] = SPREAD_ACCEL
            elif a == 3:
                fy[i] = -SPREAD_ACCEL
            elif a == 4:
                fy[i] = SPREAD_ACCEL
        for i in range(n):  # contact forces of every pair, in mpe2's order
            for j in range(i + 1, n):
                dx = pos[b, i, 0] - pos[b, j, 0]
                dy = pos[b, i, 1] - pos[b, j, 1]
                dist = math.sqrt(dx * dx + dy * dy)
                x = -(dist - _SPREAD_DIST_MIN) / SPREAD_CONTACT_MARGIN
                if dist > 0.0 and x > -750.0:  # below, e^x underflows: no force, bit for bit
                    pen = _softplus(x) * SPREAD_CONTACT_MARGIN
                    gx = SPREAD_CONTACT_FORCE * dx / dist * pen
                    gy = SPREAD_CONTACT_FORCE * dy / dist * pen
                    fx[i] += gx
                    fy[i] += gy
                    fx[j] -= gx
                    fy[j] -= gy
        for i in range(n):  # integrate: position with the old velocity, then velocity
            vx = vel[b, i, 0]
            vy = vel[b, i, 1]
            pos[b, i, 0] += vx * SPREAD_DT
            pos[b, i, 1] += vy * SPREAD_DT
            vel[b, i, 0] = vx * _SPREAD_KEEP + fx[i] / SPREAD_MASS * SPREAD_DT
            vel[b, i, 1] = vy * _SPREAD_KEEP + fy[i] / SPREAD_MASS * SPREAD_DT
        g = 0.0  # global reward: minus the sum over landmarks of the nearest agent's distance
        for q in range(lm.shape[1]):
            best = math.inf
            for i in range(n):
                dx = pos[b, i, 0] - lm[b, q, 0]
                dy = pos[b, i, 1] - lm[b, q, 1]
                d = math.sqrt(dx * dx + dy * dy)
                if d < best:
                    best = d
            g -= best
        for i in range(n):
            count[i] = 0.0
        for i in range(n):  # collisions at the new positions
            for j in range(i + 1, n):
                dx = pos[b, i, 0] - pos[b, j, 0]
                dy = pos[b, i, 1] - pos[b, j, 1]
                if math.sqrt(dx * dx + dy * dy) < _SPREAD_DIST_MIN:
                    count[i] += 1.0
                    count[j] += 1.0
        total = 0.0
        for i in range(n):
            r = g * w_global + (-count[i]) * local_ratio
            agent_reward[b, i] = r
            total += r
        reward[b] = total
        steps = t[b] + 1
        trunc = steps >= max_cycles
        terminated[b] = False
        truncated[b] = trunc
        _spread_observe_env(pos, vel, lm, b, obs, final_state)
        if trunc:
            _spread_reset_env(pos, vel, lm, rng, b)
            steps = 0
        _spread_observe_env(pos, vel, lm, b, obs, state)
        t[b] = steps
    return True


@numba.njit(cache=True)
def _min_cost_assignment_kernel(cost, out, u, v, p, way, minv, used):
    """Exact min-cost perfect assignment of rows to columns of the square ``cost`` (the
    Hungarian method with potentials, O(n^3)); writes the column of row i to ``out[i]``.
    Work arrays have length n + 1."""
    n = cost.shape[0]
    for j in range(n + 1):
        u[j] = 0.0
        v[j] = 0.0
        p[j] = 0
        way[j] = 0
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        for j in range(n + 1):
            minv[j] = math.inf
            used[j] = False
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = math.inf
            j1 = 0
            for j in range(1, n + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(n + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    for j in range(1, n + 1):
        out[p[j] - 1] = j - 1


def _min_cost_assignment(cost):
    """Column assigned to each row by :func:`_min_cost_assignment_kernel` (finite square cost)."""
    cost = np.ascontiguousarray(cost, np.float64)
    n = cost.shape[0]
    out = np.empty(n, np.int64)
    _min_cost_assignment_kernel(cost, out, np.empty(n + 1), np.empty(n + 1),
                                np.empty(n + 1, np.int64), np.empty(n + 1, np.int64),
                                np.empty(n + 1), np.empty(n + 1, np.bool_))
    return out


@numba.njit(cache=True)
def _spread_scripted(pos, vel, lm, out):
    """The scripted controller of :meth:`Spread.scripted_actions` for every env."""
    B, n = pos.shape[0], pos.shape[1]
    cost = np.empty((n, n))
    target = np.empty(n, np.int64)
    u = np.empty(n + 1)
    v = np.empty(n + 1)
    p = np.empty(n + 1, np.int64)
    way = np.empty(n + 1, np.int64)
    minv = np.empty(n + 1)
    used = np.empty(n + 1, np.bool_)
    ux = (0.0, -SPREAD_ACCEL, SPREAD_ACCEL, 0.0, 0.0)
    uy = (0.0, 0.0, 0.0, -SPREAD_ACCEL, SPREAD_ACCEL)
    for b in range(B):
        for i in range(n):
            for q in range(n):
                dx = pos[b, i, 0] - lm[b, q, 0]
                dy = pos[b, i, 1] - lm[b, q, 1]
                cost[i, q] = math.sqrt(dx * dx + dy * dy)
        _min_cost_assignment_kernel(cost, target, u, v, p, way, minv, used)
        for i in range(n):
            # where the agent would come to rest if it stopped pushing after this step
            x1 = pos[b, i, 0] + vel[b, i, 0] * SPREAD_DT - lm[b, target[i], 0]
            y1 = pos[b, i, 1] + vel[b, i, 1] * SPREAD_DT - lm[b, target[i], 1]
            best = math.inf
            choice = 0
            for a in range(5):
                sx = x1 + _SPREAD_COAST * (vel[b, i, 0] * _SPREAD_KEEP + ux[a] * SPREAD_DT)
                sy = y1 + _SPREAD_COAST * (vel[b, i, 1] * _SPREAD_KEEP + uy[a] * SPREAD_DT)
                d2 = sx * sx + sy * sy
                if d2 < best:
                    best = d2
                    choice = a
            out[b, i] = choice


class SpreadState(NamedTuple):
    """One env of :class:`Spread` in plain Python (the state of its reference twin)."""
    agent_pos: tuple  #: ((x, y), ...) float positions of the n agents
    agent_vel: tuple  #: ((vx, vy), ...) float velocities of the n agents
    landmark_pos: tuple  #: ((x, y), ...) float positions of the n landmarks (never move)
    rng: int  #: the env's SplitMix64 state in [0, 2**64), drawn from at every reset


class SpreadWorld(NamedTuple):
    """Copies of the batched physical state of a :class:`Spread` (see ``Spread.world``)."""
    agent_pos: np.ndarray  #: (B, n, 2) float64
    agent_vel: np.ndarray  #: (B, n, 2) float64
    landmark_pos: np.ndarray  #: (B, n, 2) float64
    t: np.ndarray  #: (B,) int64 step count within the episode


class ReturnEstimate(NamedTuple):
    """Mean episode team return of a policy with its 95% confidence half-width."""
    mean: float
    ci95: float  #: 1.96 * sample std / sqrt(n_episodes)
    n_episodes: int

    def __str__(self):
        return f"{self.mean:.3f} ± {self.ci95:.3f} (n={self.n_episodes})"


class SpreadReferences(NamedTuple):
    """Reference returns of a :class:`Spread` configuration (see :func:`spread_references`)."""
    random: ReturnEstimate  #: uniformly random actions: the floor (normalised score 0)
    scripted: ReturnEstimate  #: :meth:`Spread.scripted_actions`: the ceiling (score 1)
    seed: int  #: the seed of the measurement


#: Stored reference returns keyed by ``(n_agents, local_ratio, max_cycles)``, measured by
#: ``spread_references(n_agents, local_ratio, max_cycles, n_episodes=20000, seed=0)``.
#: test_spread.py checks them against a fresh, smaller measurement with another seed.
SPREAD_REFERENCES = {
    (2, 0.5, 25): SpreadReferences(
        ReturnEstimate(-42.3601, 0.2105, 20000),
        ReturnEstimate(-13.5113, 0.0797, 20000), 0),
    (3, 0.5, 25): SpreadReferences(
        ReturnEstimate(-79.4990, 0.3268, 20000),
        ReturnEstimate(-26.3743, 0.1283, 20000), 0),
    (4, 0.5, 25): SpreadReferences(
        ReturnEstimate(-124.7790, 0.4480, 20000),
        ReturnEstimate(-42.8287, 0.1818, 20000), 0),
    (5, 0.5, 25): SpreadReferences(
        ReturnEstimate(-176.9005, 0.5667, 20000),
        ReturnEstimate(-63.1701, 0.2396, 20000), 0),
    (6, 0.5, 25): SpreadReferences(
        ReturnEstimate(-236.2701, 0.6746, 20000),
        ReturnEstimate(-87.8637, 0.3064, 20000), 0),
    (8, 0.5, 25): SpreadReferences(
        ReturnEstimate(-377.9860, 0.9425, 20000),
        ReturnEstimate(-150.6864, 0.4614, 20000), 0),
    (12, 0.5, 25): SpreadReferences(
        ReturnEstimate(-751.4740, 1.5162, 20000),
        ReturnEstimate(-344.1256, 0.8429, 20000), 0),
}


def _check_local_ratio(local_ratio):
    if isinstance(local_ratio, (bool, np.bool_)) or not isinstance(local_ratio, numbers.Real):
        raise TypeError(f"local_ratio must be a real number in [0, 1], got "
                        f"{type(local_ratio).__name__} {local_ratio!r}")
    try:
        value = float(local_ratio)
    except OverflowError:  # an int beyond float64
        value = math.inf
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"local_ratio must be in [0, 1], got {local_ratio!r}")
    return value


def _check_coordinates(a, name):
    """ValueError unless every entry of the real array ``a`` is finite with magnitude at
    most :data:`SPREAD_MAX_ABS` (so that rewards and float32 observations stay finite)."""
    with np.errstate(over="ignore", invalid="ignore"):  # longdouble beyond float64: inf
        largest = float(np.abs(np.asarray(a, np.float64)).max(initial=0.0))  # NaN if any is
    if not math.isfinite(largest):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if largest > SPREAD_MAX_ABS:
        raise ValueError(f"{name} must be at most SPREAD_MAX_ABS = {SPREAD_MAX_ABS:g} in "
                         f"magnitude, got {largest!r}")


class Spread:
    """Cooperative navigation, MPE's ``simple_spread``: n agents cover n landmarks.

    Equal, step for step, to mpe2's ``simple_spread_v3`` (mpe2 1.1.1, the extra ``mpe``)
    with discrete actions (``N=n_agents``, ``local_ratio``, ``max_cycles``; the defaults
    are mpe2's; test_spread.py checks positions,
    velocities, observations, global state and rewards to 1e-10), batched over B envs in
    one Numba kernel.  This is a *feature env* (see the module docstring): observations are
    float vectors of ``obs_dim = 6 n`` and the global state has ``state_dim = 6 n**2``.

    **World.**  Agents i = 0..n-1 (discs of radius 0.15, mass 1) at p_i with velocity v_i,
    and n fixed landmarks at q_l, all in the plane (no walls).  Action a_i of agent i:
    0 no-op, 1 left, 2 right, 3 down, 4 up, i.e. u_i = 5 * (0, 0), (-1, 0), (1, 0),
    (0, -1), (0, 1).  For every pair of agents (landmarks do not collide), with
    d_ij = p_i - p_j::

        pen_ij = m * softplus((2 * 0.15 - |d_ij|) / m),   softplus(x) = log(1 + e^x), m = 1e-3
        f_ij   = 100 * d_ij / |d_ij| * pen_ij = -f_ji      (0 when p_i == p_j)
        F_i    = u_i + sum_{j != i} f_ij                   (j ascending)
        p_i'   = p_i + dt * v_i                            (dt = 0.1, the old velocity)
        v_i'   = (1 - 0.25) * v_i + dt * F_i / 1           (damping 0.25, no speed limit)

    mpe2 divides by |d_ij| also when it is 0 (a NaN); here such a pair exerts no force.

    **Rewards** (of the new positions p')::

        G   = -sum_l min_i |p_i' - q_l|                    global: cover every landmark
        C_i = #{j != i : |p_i' - p_j'| < 0.3}              collisions of agent i
        r_i = (1 - local_ratio) * G + local_ratio * (-C_i)   agent i's reward (as mpe2)
        R   = r_0 + r_1 + ... + r_{n-1}                    the team reward

    ``step`` returns the team reward R, the sum of the agents' rewards (summed in agent
    order): it is what the learners maximise, and an episode's team return is the sum of R
    over its ``max_cycles`` steps.  The per-agent rewards r_i of the same step are in
    :attr:`agent_rewards`, a (B, n) float64 array replaced by every ``step`` (None after
    ``reset``).

    **Observation** of agent i (``obs_dim = 6 n`` floats; 18 for n = 3)::

        [v_i, p_i, q_0 - p_i, ..., q_{n-1} - p_i, p_j - p_i for j != i ascending, 0 * 2(n-1)]

    the last 2(n - 1) zeros being the communication of the silent other agents.  The
    global state is mpe2's ``state()``: the concatenation [o_0, ..., o_{n-1}]
    (``state_dim = 6 n**2``), so ``final_state[b].reshape(n, obs_dim)`` are the agents'
    observations of the final state.  Observations and states are computed in float64
    and stored as ``obs_dtype`` (float32 by default, as mpe2's API; float64 on request).

    **Episodes.**  Every episode starts with agents and landmarks drawn independently and
    uniformly from [-1, 1)^2 and zero velocities; it is *truncated* after ``max_cycles``
    steps and never terminates.  Finished envs reset automatically (module docstring).
    The draws come from one SplitMix64 generator per env (Steele et al. 2014): env b's
    generator starts at ``Spread.seed_keys(seed, B)[b]`` and every reset draws, in order,
    x and y of agent 0, 1, ..., then of landmark 0, 1, ... as ``-1 + 2 * (z >> 11) * 2**-53``
    from successive outputs z; so env b's episodes depend only on ``(seed, b)`` and its
    actions, never on B.

    **Reference returns**: :attr:`reference_returns` (random floor, scripted ceiling, from
    :data:`SPREAD_REFERENCES`), :meth:`normalized_score` and :meth:`scripted_actions`.

    >>> env = Spread(n_agents=3)
    >>> env.obs_dim, env.state_dim, env.n_actions, env.episode_limit
    (18, 54, (5, 5, 5), 25)
    >>> obs, state = env.reset(4, seed=0)
    >>> obs.shape, obs.dtype, state.shape
    ((4, 3, 18), dtype('float32'), (4, 54))
    >>> obs, state, reward, terminated, truncated, final_state = env.step(np.zeros((4, 3), int))
    >>> reward.shape, env.agent_rewards.shape, bool(terminated.any() or truncated.any())
    ((4,), (4, 3), False)
    >>> bool(np.allclose(reward, env.agent_rewards.sum(axis=1)))
    True
    """

    #: Class attributes: the constants of the dynamics (module-level ``SPREAD_*``).
    agent_size = SPREAD_AGENT_SIZE
    dt = SPREAD_DT
    damping = SPREAD_DAMPING
    contact_force = SPREAD_CONTACT_FORCE
    contact_margin = SPREAD_CONTACT_MARGIN
    accel = SPREAD_ACCEL
    mass = SPREAD_MASS

    def __init__(self, n_agents=3, local_ratio=0.5, max_cycles=25, *, obs_dtype=np.float32):
        self.n_agents = _check_int(n_agents, "n_agents", 1)
        self.n_landmarks = self.n_agents
        self.local_ratio = _check_local_ratio(local_ratio)
        self.max_cycles = self.episode_limit = _check_count(max_cycles, "max_cycles")
        try:
            dtype = np.dtype(obs_dtype)
        except TypeError:
            raise TypeError(f"obs_dtype must be float32 or float64, got {obs_dtype!r}") from None
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"obs_dtype must be float32 or float64, got {dtype}")
        self.obs_dtype = dtype
        _check_bytes(self._env_bytes(), f"Spread(n_agents={n_agents}) (one env of reset and step)")
        self.n_actions = (5,) * self.n_agents
        self.obs_dim = 6 * self.n_agents
        self.state_dim = self.n_agents * self.obs_dim
        self.agent_rewards = None
        self._pos = self._vel = self._lm = self._t = self._rng = None

    def __repr__(self):
        return (f"Spread(n_agents={self.n_agents}, local_ratio={self.local_ratio}, "
                f"max_cycles={self.max_cycles})")

    def _env_bytes(self):
        """Bytes per env of ``reset`` and one ``step``: obs and state of reset, obs, state and
        final_state of step (6 n**2 floats each), positions, velocities, landmarks, actions,
        agent_rewards, and the scalars."""
        n = self.n_agents
        return 30 * np.dtype(self.obs_dtype).itemsize * n * n + 72 * n + 48

    # -- batched interface
    @staticmethod
    def seed_keys(seed, n_envs):
        """(n_envs,) uint64 initial generator states of ``reset(n_envs, seed)``:
        ``key_b = base XOR mix64((b + 1) * 0x9E3779B97F4A7C15)`` with ``base`` the first
        uint64 word of ``np.random.SeedSequence(seed)`` (fresh OS entropy when seed is None)
        and mix64 SplitMix64's output function.

        >>> [int(k) for k in Spread.seed_keys(0, 2)] == [int(k) for k in Spread.seed_keys(0, 3)[:2]]
        True
        """
        n_envs = _check_int(n_envs, "n_envs", 1)
        _check_bytes(8 * n_envs, f"seed_keys(n_envs={n_envs})")
        base = np.random.SeedSequence(_check_seed(seed)).generate_state(1, np.uint64)[0]
        return _spread_keys(np.uint64(base), n_envs)

    def _outputs(self, B):
        n = self.n_agents
        return (np.empty((B, n, self.obs_dim), self.obs_dtype),
                np.empty((B, self.state_dim), self.obs_dtype))

    def reset(self, n_envs, seed=None):
        """Start ``n_envs`` episodes; returns ``(obs (B, n, obs_dim), state (B, state_dim))``
        of ``obs_dtype``.  ``seed`` (None or an int >= 0) fixes every env's generator (see
        :meth:`seed_keys`); None draws fresh entropy.  A batch whose arrays (of reset and of
        one ``step``, about ``30 * itemsize * n**2`` bytes per env) would exceed
        :data:`MAX_ALLOC_BYTES` is refused with a ValueError."""
        n_envs = _check_int(n_envs, "n_envs", 1)
        _check_bytes(n_envs * self._env_bytes(), f"reset(n_envs={n_envs}) of {self!r}")
        keys = self.seed_keys(seed, n_envs)
        shape = (n_envs, self.n_agents, 2)
        self._pos, self._vel, self._lm = np.empty(shape), np.empty(shape), np.empty(shape)
        self._t = np.zeros(n_envs, np.int64)
        self._rng = keys
        self.agent_rewards = None
        obs, state = self._outputs(n_envs)
        _spread_reset(self._pos, self._vel, self._lm, self._rng, obs, state)
        return obs, state

    def step(self, actions):
        """Advance every env by one joint action ((B, n) ints in 0..4); returns ``(obs,
        state, reward, terminated, truncated, final_state)`` (module docstring) and sets
        :attr:`agent_rewards`."""
        if self._pos is None:
            raise RuntimeError("call reset(n_envs, seed) before step(actions)")
        B = self._pos.shape[0]
        actions = _check_batch_actions(actions, B, self.n_agents)
        obs, state = self._outputs(B)
        final_state = np.empty_like(state)
        reward = np.empty(B)
        agent_rewards = np.empty((B, self.n_agents))
        terminated = np.empty(B, np.bool_)
        truncated = np.empty(B, np.bool_)
        if not _spread_step(actions, self._pos, self._vel, self._lm, self._t, self._rng,
                            self.local_ratio, self.max_cycles, obs, state, reward,
                            agent_rewards, terminated, truncated, final_state):
            b, i = np.argwhere((actions < 0) | (actions > 4))[0]
            raise ValueError(f"actions[{b}, {i}] = {actions[b, i]} is out of range: agent {i} "
                             f"has actions 0..4")
        self.agent_rewards = agent_rewards
        return obs, state, reward, terminated, truncated, final_state

    # -- direct access to the worlds
    def world(self):
        """Copies of the current worlds, a :class:`SpreadWorld` (agent_pos, agent_vel,
        landmark_pos (B, n, 2) float64 and the step count t (B,))."""
        self._check_reset()
        return SpreadWorld(self._pos.copy(), self._vel.copy(), self._lm.copy(), self._t.copy())

    def set_world(self, agent_pos, agent_vel, landmark_pos, t=None):
        """Put every env (after ``reset``) into the given world: positions and velocities of
        shape (B, n, 2) (finite reals of magnitude at most :data:`SPREAD_MAX_ABS`, so that
        rewards and observations stay finite), step counts ``t`` (B,) in [0, max_cycles)
        (default 0).  The generators are kept.  Returns ``(obs, state)`` of the new worlds."""
        self._check_reset()
        B, n = self._pos.shape[:2]
        arrays = []
        for name, value in [("agent_pos", agent_pos), ("agent_vel", agent_vel),
                            ("landmark_pos", landmark_pos)]:
            a = _as_array(value, name, f"a real array of shape (n_envs, n, 2) = {(B, n, 2)}")
            if a.dtype.kind not in "iuf" or a.dtype == np.bool_:
                raise TypeError(f"{name} must be a real array, got dtype {a.dtype}")
            if a.shape != (B, n, 2):
                raise ValueError(f"{name} must have shape (n_envs, n, 2) = {(B, n, 2)}, "
                                 f"got shape {a.shape}")
            _check_coordinates(a, name)
            arrays.append(np.array(a, np.float64, order="C"))
        if t is None:
            steps = np.zeros(B, np.int64)
        else:
            steps = _as_array(t, "t", f"an integer array of shape (n_envs,) = ({B},)")
            if steps.dtype.kind not in "iu":
                raise TypeError(f"t must be an integer array, got dtype {steps.dtype}")
            if steps.shape != (B,):
                raise ValueError(f"t must have shape (n_envs,) = ({B},), got shape {steps.shape}")
            if ((steps < 0) | (steps >= self.max_cycles)).any():
                raise ValueError(f"t must be in [0, max_cycles={self.max_cycles}), got "
                                 f"{steps[(steps < 0) | (steps >= self.max_cycles)][0]}")
            steps = steps.astype(np.int64)
        self._pos, self._vel, self._lm = arrays
        self._t = steps
        obs, state = self._outputs(B)
        _spread_observe(self._pos, self._vel, self._lm, obs, state)
        return obs, state

    def _check_reset(self):
        if self._pos is None:
            raise RuntimeError("call reset(n_envs, seed) first")

    # -- reference points
    def scripted_actions(self):
        """(B, n) int64 actions of the scripted controller for the current worlds.

        Each step, agents are assigned to landmarks by an exact minimum-total-distance
        assignment (Hungarian method), and each agent takes the action whose coasting
        point, ``p_i + dt v_i + dt v_i' / damping`` (where it would come to rest if it
        stopped pushing after this step; contacts ignored), is nearest its landmark (ties:
        the lowest action).  It is the reference ceiling, not an optimal policy.

        Why the coasting point: after a step it is ``S' = S + dt**2 F / damping = S + 0.04 F``
        (``S = p + dt v / damping``), so each push moves it by exactly 0.2 along one axis,
        whatever the velocity; the controller moves S to the point of that 0.2 lattice
        nearest the landmark in the fewest pushes.  No discrete-action policy can bring an
        agent to rest off that lattice, so resting agents stay up to 0.1 per axis from
        their landmark (0.077 on average).
        """
        self._check_reset()
        out = np.empty((self._pos.shape[0], self.n_agents), np.int64)
        _spread_scripted(self._pos, self._vel, self._lm, out)
        return out

    @property
    def reference_returns(self):
        """The stored :class:`SpreadReferences` of this configuration, or None (then measure
        them with :func:`spread_references`)."""
        return SPREAD_REFERENCES.get((self.n_agents, self.local_ratio, self.max_cycles))

    def normalized_score(self, returns, references=None):
        """``(returns - random.mean) / (scripted.mean - random.mean)``: 0 for the random
        policy, 1 for the scripted controller.  ``references`` (a :class:`SpreadReferences`)
        defaults to :attr:`reference_returns`; ``returns`` is a mean episode team return
        (or an array of them), finite, and so are the scores (else a ValueError)."""
        refs = self.reference_returns if references is None else references
        if refs is None:
            raise ValueError(f"no stored reference returns for {self!r}; pass references="
                             f"spread_references({self.n_agents}, {self.local_ratio}, "
                             f"{self.max_cycles})")
        if not isinstance(refs, SpreadReferences):
            raise TypeError(f"references must be a SpreadReferences, got {type(refs).__name__}")
        means = []
        for name in ("random", "scripted"):
            est = getattr(refs, name)
            mean = getattr(est, "mean", None)
            if isinstance(mean, (bool, np.bool_)) or not isinstance(mean, numbers.Real):
                raise TypeError(f"references.{name} must be a ReturnEstimate with a real mean, "
                                f"got {est!r}")
            if not math.isfinite(mean):
                raise ValueError(f"references.{name}.mean must be finite, got {mean!r}")
            means.append(float(mean))
        low, high = means
        if low == high:
            raise ValueError(f"references must have distinct means, got random.mean = "
                             f"scripted.mean = {low!r}")
        r = _as_array(returns, "returns", "a real number or array")
        if r.dtype.kind not in "iuf" or r.dtype == np.bool_:
            raise TypeError(f"returns must be real, got dtype {r.dtype}")
        with np.errstate(over="ignore", invalid="ignore"):
            r = r.astype(np.float64)
            if not np.isfinite(r).all():
                raise ValueError("returns must be finite (no NaN or inf)")
            diff = r - low
            if math.isfinite(high - low) and np.isfinite(diff).all():
                score = diff / (high - low)
            else:  # a difference overflows float64: halve everything
                score = (0.5 * r - 0.5 * low) / (0.5 * high - 0.5 * low)
        if not np.isfinite(score).all():
            raise ValueError(f"returns up to {np.abs(r).max():.4g} overflow the normalized score "
                             f"(random.mean = {low!r}, scripted.mean = {high!r})")
        return float(score) if score.ndim == 0 else score

    # -- plain-Python reference
    def reference_reset(self, key):
        """Plain-Python reset of one env from generator state ``key`` (an int in
        [0, 2**64), e.g. ``int(Spread.seed_keys(seed, B)[b])``): ``(SpreadState, 0)``."""
        key = _check_int(key, "key", 0, 2 ** 64)
        draws = []
        for _ in range(4 * self.n_agents):
            key, x = _py_uniform_pm1(key)
            draws.append(x)
        n = self.n_agents
        pos = tuple((draws[2 * i], draws[2 * i + 1]) for i in range(n))
        lm = tuple((draws[2 * (n + q)], draws[2 * (n + q) + 1]) for q in range(n))
        return SpreadState(pos, ((0.0, 0.0),) * n, lm, key), 0

    def reference_state(self, b):
        """``(SpreadState, t)`` of env ``b`` of the batch, for :meth:`reference_step`."""
        self._check_reset()
        b = _check_int(b, "b", 0, self._pos.shape[0])
        return (SpreadState(tuple(map(tuple, self._pos[b].tolist())),
                            tuple(map(tuple, self._vel[b].tolist())),
                            tuple(map(tuple, self._lm[b].tolist())), int(self._rng[b])),
                int(self._t[b]))

    def _check_state(self, state):
        try:
            pos, vel, lm, key = state
        except (TypeError, ValueError):
            raise TypeError(f"state must be a SpreadState (agent_pos, agent_vel, landmark_pos, "
                            f"rng), got {type(state).__name__}") from None
        out = []
        for name, value in [("agent_pos", pos), ("agent_vel", vel), ("landmark_pos", lm)]:
            a = _as_array(value, f"state.{name}", f"{self.n_agents} (x, y) pairs")
            if a.shape != (self.n_agents, 2) or a.dtype.kind not in "iuf" or a.dtype == np.bool_:
                raise ValueError(f"state.{name} must be {self.n_agents} (x, y) pairs of reals, "
                                 f"got shape {a.shape} and dtype {a.dtype}")
            _check_coordinates(a, f"state.{name}")
            out.append(tuple(map(tuple, a.astype(np.float64).tolist())))
        return SpreadState(*out, _check_int(key, "state.rng", 0, 2 ** 64))

    def reference_step(self, state, t, actions):
        """Plain-Python step of one env: ``(state, t, reward, terminated, truncated,
        final_state)`` with SpreadStates (``final_state`` before any reset) and the team
        reward; auto-resets after ``max_cycles`` steps."""
        state = self._check_state(state)
        t = _check_int(t, "t", 0, self.max_cycles)
        acts = _check_sequence(actions, "actions", self.n_agents,
                               f"n_agents={self.n_agents} ints",
                               f"action per agent (n_agents={self.n_agents})")
        acts = [_check_int(a, f"actions[{i}]", 0, 5) for i, a in enumerate(acts)]
        n = self.n_agents
        unit = {0: (0.0, 0.0), 1: (-1.0, 0.0), 2: (1.0, 0.0), 3: (0.0, -1.0), 4: (0.0, 1.0)}
        force = [[unit[a][0] * SPREAD_ACCEL, unit[a][1] * SPREAD_ACCEL] for a in acts]
        pos, vel = state.agent_pos, state.agent_vel
        for i in range(n):
            for j in range(i + 1, n):
                dx, dy = pos[i][0] - pos[j][0], pos[i][1] - pos[j][1]
                dist = math.sqrt(dx * dx + dy * dy)
                if dist > 0.0:
                    pen = _py_softplus(-(dist - _SPREAD_DIST_MIN) / SPREAD_CONTACT_MARGIN) \
                        * SPREAD_CONTACT_MARGIN
                    g = (SPREAD_CONTACT_FORCE * dx / dist * pen,
                         SPREAD_CONTACT_FORCE * dy / dist * pen)
                    for k in range(2):
                        force[i][k] += g[k]
                        force[j][k] -= g[k]
        new_pos = tuple((p[0] + v[0] * SPREAD_DT, p[1] + v[1] * SPREAD_DT)
                        for p, v in zip(pos, vel))
        new_vel = tuple((v[0] * _SPREAD_KEEP + f[0] / SPREAD_MASS * SPREAD_DT,
                         v[1] * _SPREAD_KEEP + f[1] / SPREAD_MASS * SPREAD_DT)
                        for v, f in zip(vel, force))
        final = SpreadState(new_pos, new_vel, state.landmark_pos, state.rng)
        reward = 0.0
        for r in self.reference_agent_rewards(final):
            reward += r
        if t + 1 >= self.max_cycles:
            return (*self.reference_reset(state.rng), reward, False, True, final)
        return final, t + 1, reward, False, False, final

    def reference_agent_rewards(self, state):
        """Per-agent rewards (r_0, ..., r_{n-1}) paid by a step that ends in ``state``."""
        state = self._check_state(state)
        pos = state.agent_pos
        g = 0.0
        for q in state.landmark_pos:
            g -= min(math.sqrt((p[0] - q[0]) * (p[0] - q[0]) + (p[1] - q[1]) * (p[1] - q[1]))
                     for p in pos)
        rewards = []
        for i, p in enumerate(pos):
            c = sum(1.0 for j, o in enumerate(pos) if j != i and math.sqrt(
                (p[0] - o[0]) * (p[0] - o[0]) + (p[1] - o[1]) * (p[1] - o[1])) < _SPREAD_DIST_MIN)
            rewards.append(g * (1.0 - self.local_ratio) + (-c) * self.local_ratio)
        return tuple(rewards)

    def reference_observations(self, state):
        """The agents' observations of ``state``: n tuples of ``obs_dim`` floats (float64)."""
        state = self._check_state(state)
        out = []
        for i, (p, v) in enumerate(zip(state.agent_pos, state.agent_vel)):
            o = [v[0], v[1], p[0], p[1]]
            for q in state.landmark_pos:
                o += [q[0] - p[0], q[1] - p[1]]
            for j, other in enumerate(state.agent_pos):
                if j != i:
                    o += [other[0] - p[0], other[1] - p[1]]
            out.append(tuple(o + [0.0] * (2 * (self.n_agents - 1))))
        return tuple(out)

    def reference_global_state(self, state):
        """The global state of ``state``: the concatenated observations (``state_dim`` floats)."""
        return tuple(x for o in self.reference_observations(state) for x in o)


def spread_references(n_agents=3, local_ratio=0.5, max_cycles=25, *, n_episodes=20000,
                      seed=0, n_envs=1000):
    """Measure the reference returns of ``Spread(n_agents, local_ratio, max_cycles)``.

    Runs ``n_episodes`` episodes (in batches of ``n_envs`` envs, reset with ``seed``; the
    two policies see the same start states) of the uniformly random policy (actions from
    ``np.random.default_rng([seed, 1])``) and of :meth:`Spread.scripted_actions`, and
    returns a :class:`SpreadReferences` with each policy's mean episode team return and
    95% confidence half-width ``1.96 * std / sqrt(n_episodes)`` (episodes are independent).
    :data:`SPREAD_REFERENCES` holds the results of ``n_episodes=20000, seed=0``.  Memory:
    about ``24 * n_episodes`` bytes plus a batch of ``n_envs`` (:data:`MAX_ALLOC_BYTES`).
    """
    env = Spread(n_agents, local_ratio, max_cycles)
    n_episodes = _check_int(n_episodes, "n_episodes", 2)
    seed = _check_int(seed, "seed", 0)
    n_envs = min(_check_int(n_envs, "n_envs", 1), n_episodes)
    rounds = -(-n_episodes // n_envs)
    _check_bytes(24 * rounds * n_envs + n_envs * env._env_bytes(),  # returns, std's scratch
                 f"spread_references(n_episodes={n_episodes}, n_envs={n_envs})")
    rng = np.random.default_rng([seed, 1])
    estimates = []
    for scripted in (False, True):
        env.reset(n_envs, seed)
        returns = np.zeros((rounds, n_envs))
        for k in range(rounds):
            for _ in range(env.max_cycles):
                if scripted:
                    actions = env.scripted_actions()
                else:
                    actions = rng.integers(0, 5, (n_envs, env.n_agents))
                returns[k] += env.step(actions)[2]
        r = returns.ravel()[:n_episodes]
        estimates.append(ReturnEstimate(float(r.mean()),
                                        float(1.96 * r.std(ddof=1) / math.sqrt(n_episodes)),
                                        n_episodes))
    return SpreadReferences(*estimates, seed)
