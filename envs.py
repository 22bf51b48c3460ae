"""Small cooperative games with known answers, batched with Numba.

This module holds the games with known answers (:class:`MatrixGame` and its instances,
:class:`CountGame`, :class:`TwoStepGame`, :class:`GridForaging`), the batched interface of
every env, and the checks and limits all envs use.  :mod:`envs_spread` holds cooperative
navigation (MPE's simple_spread, :class:`envs_spread.Spread`) and its reference returns;
:mod:`envs_pettingzoo` wraps one env of any of them in PettingZoo's Parallel API
(:func:`envs_pettingzoo.to_parallel_env`; gymnasium and pettingzoo are imported lazily, the
envs need only numpy and numba).  Both import this module, never the other way round.

Every game shares one batched interface (``B`` environments, ``n`` agents), in one of two
forms.  The *integer-id form* (MatrixGame, TwoStepGame, GridForaging)::

    obs, state = env.reset(n_envs, seed=None)      # obs (B, n) int64, state (B,) int64
    obs, state, reward, terminated, truncated, final_state = env.step(actions)  # actions (B, n)

The *feature-observation form* (:class:`envs_spread.Spread`; its module's docstring shows
it) has the same calls, flags and auto-reset, with float vectors in place of ids.

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
  an ``obs_dim`` attribute*.
* The integer-id games draw no random numbers in ``reset`` or ``step`` (they are
  deterministic; ``seed`` is accepted and validated for API compatibility, and the only
  randomness is the layout of :class:`GridForaging` drawn from ``layout_seed``).

The step of every game is a Numba kernel over the batch; beside it, each game has a
plain-Python single-env reference, ``env.reference_reset() -> (state, t)`` and
``env.reference_step(state, t, actions) -> (state, t, reward, terminated, truncated,
final_state)`` (``t`` is the step count within the episode; auto-reset included), which
the tests compare against the kernel.

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

**Limits.**  Every argument is checked before anything is computed, and too large a request
is a ValueError naming the argument(s) and the estimate, never a MemoryError, an overflow or
a search that does not end:

* :data:`MAX_ALLOC_BYTES` (1 GiB): the memory of everything whose size an argument sets is
  estimated first: ``reset(n_envs)`` (with the outputs of one ``step``, so ``step`` never
  needs a check of its own), the game constructors (``MatrixGame``'s payoff,
  ``penalty(n_agents)``, ``GridForaging``'s grid), ``tables()``, ``GridForaging.solve()`` /
  ``optimum``, and those of :mod:`envs_spread`.  It is read at each call: assign
  ``envs.MAX_ALLOC_BYTES`` to allow more.
* :data:`MAX_SEARCH_TRANSITIONS` (10**9, about a minute): the most transitions
  ``GridForaging.solve()`` may examine.
* :data:`MAX_COUNT` (2**31 - 1): the largest episode length (``episode_len``,
  ``max_steps``, ``max_cycles``) and number of states.
* :data:`MAX_ABS_RETURN` (the largest float64): no episode return of a game can exceed it in
  magnitude (``MatrixGame`` refuses a payoff for which ``max |payoff| * episode_len`` could)."""
from __future__ import annotations

import itertools
import math
import numbers
from typing import NamedTuple

import numba
import numpy as np

__all__ = [
    "MAX_ALLOC_BYTES", "MAX_SEARCH_TRANSITIONS", "MAX_COUNT", "MAX_ABS_RETURN",
    "MatrixGame", "climbing", "penalty", "qtran", "CountGame", "CountTables",
    "COUNT_GAME_MAX_BYTES", "COUNT_GAME_MAX_JOINT", "TwoStepGame", "GridForaging",
    "GridSolution", "GameTables",
]


# --------------------------------------------------------------------------- limits

#: Memory limit in bytes: every allocation whose size an argument sets (``reset``'s n_envs
#: with one ``step``, the game constructors, ``tables()``, ``GridForaging.solve()``, and those
#: of envs_spread) is estimated first and refused above this with a ValueError naming the
#: argument and the estimate.  Read at every call.
MAX_ALLOC_BYTES = 2 ** 30
#: Most transitions ``GridForaging.solve()`` may examine (about a minute at 20-60 ns each).
MAX_SEARCH_TRANSITIONS = 10 ** 9
#: Largest episode length (``episode_len``, ``max_steps``, ``max_cycles``) and state count.
MAX_COUNT = 2 ** 31 - 1
#: Largest magnitude of an episode return (the largest float64): ``MatrixGame`` refuses a
#: payoff for which ``max |payoff| * episode_len`` (plus a rounding margin) exceeds it.
MAX_ABS_RETURN = float(np.finfo(np.float64).max)


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
    if a.shape != (n_envs, n_agents):
        raise ValueError(f"actions must have shape (n_envs, n_agents) = {(n_envs, n_agents)}, "
                         f"got shape {a.shape}")
    if a.dtype == np.uint64 and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"actions has value {a.max()}, out of range")
    return np.ascontiguousarray(a, np.int64)


@numba.njit(cache=True)
def _in_range(actions, n_actions):
    """0 <= actions[:, i] < n_actions[i] for every agent i (agent-major loops are fastest)."""
    B, n = actions.shape
    for i in range(n):
        low = high = 0
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


class _StepArrays(NamedTuple):
    """The arrays one batched step kernel of a game reads and writes: the batch's state ids
    and step counts, advanced in place, and the outputs of ``step`` it fills."""
    state: np.ndarray        # (B,) int64 state ids, advanced in place (auto-reset included)
    t: np.ndarray            # (B,) int64 step counts within the episode, advanced in place
    obs: np.ndarray          # (B, n) int64 observation ids after the step (output)
    state_out: np.ndarray    # (B,) int64 state ids after the step (output)
    reward: np.ndarray       # (B,) float64 team reward (output)
    terminated: np.ndarray   # (B,) bool (output)
    truncated: np.ndarray    # (B,) bool (output)
    final_state: np.ndarray  # (B,) int64 successor s' before any reset (output)


_TABLE_CHUNK = 2 ** 16  # (state, joint action) pairs per kernel call of tables()


class _Game:
    """Batched interface shared by all games; subclasses provide ``_kernel(actions, arrays)``
    (a step of the :class:`_StepArrays` ``arrays``; False if an action is out of range)."""

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
        :data:`MAX_ALLOC_BYTES` is refused with a ValueError."""
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
        arrays = _StepArrays(self._state, self._t, np.empty((B, n), np.int64),
                             np.empty(B, np.int64), np.empty(B, np.float64),
                             np.empty(B, np.bool_), np.empty(B, np.bool_), np.empty(B, np.int64))
        if not self._kernel(actions, arrays):
            raise self._range_error(actions)  # kernels check the range before changing anything
        return arrays[2:]  # (obs, state, reward, terminated, truncated, final_state), a tuple

    def get_state(self):
        """Copies of the batch's state ids and step counts after ``reset`` (a checkpoint's)."""
        return {"state": self._state.copy(), "t": self._t.copy()}

    def set_state(self, state):
        """Put back what :meth:`get_state` gave: (B,) int64 state ids and step counts."""
        self._state, self._t = (np.array(state[k], np.int64) for k in ("state", "t"))

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
                raise ValueError(f"actions[{i}] = {a} is out of range: agent {i} has actions "
                                 f"0..{k - 1}")
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
                state = np.repeat(np.arange(first, first + m // n_joint, dtype=np.int64), n_joint)
                if not self._kernel(actions, _StepArrays(  # scratch dies before the next chunk
                        state, np.zeros(m, np.int64), np.empty((m, n), np.int64),
                        np.empty(m, np.int64), reward[part], terminated[part],
                        np.empty(m, np.bool_), next_state[part])):
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
def _matrix_step(actions, n_actions, flat_payoff, radix, episode_len, arrays):
    """One step of every env of a :class:`MatrixGame`; ``arrays``: a :class:`_StepArrays`."""
    state, _, obs, state_out, reward, terminated, truncated, final_state = arrays
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

    def _kernel(self, actions, arrays):
        # the state of a repeated matrix game is the step index, so arrays.t is not read
        return _matrix_step(actions, self._n_actions_array, self._flat, self._radix,
                            self.episode_len, arrays)

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
def _count_step(actions, n_actions, weight, count_reward, episode_len, arrays):
    """A repeated count game: the count index of env b is ``sum_i weight[actions[b, i]]``
    (O(n) per env), its reward ``count_reward`` there; the clock as in ``_matrix_step``."""
    state, _, obs, state_out, reward, terminated, truncated, final_state = arrays
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

    def _kernel(self, actions, arrays):
        return _count_step(actions, self._n_actions_array, self._weight, self.count_reward,
                           self.episode_len, arrays)

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
def _two_step_step(actions, n_actions, payoff_2a, payoff_2b, arrays):
    """One step of every env of the :class:`TwoStepGame`; ``arrays``: a :class:`_StepArrays`."""
    state, _, obs, state_out, reward, terminated, truncated, final_state = arrays
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

    def _kernel(self, actions, arrays):
        return _two_step_step(actions, self._n_actions_array, self.payoff_2a, self.payoff_2b,
                              arrays)

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

    Returns ``(next state id, reward)``; ``pos`` is scratch space of length n_agents."""
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
def _grid_step(actions, n_actions, size, food_cells, food_at, max_steps, start, arrays):
    """One step of every env of a :class:`GridForaging`; ``arrays``: a :class:`_StepArrays`."""
    state, t, obs, state_out, reward, terminated, truncated, final_state = arrays
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


class _GridReach(NamedTuple):
    """The cells within max_steps moves of each agent's start, row by row (Manhattan diamonds
    cut by the grid; ``GridForaging._reach_cells``): they number :func:`_grid_bfs`'s states."""
    row_lo: np.ndarray     # (n,) int64 first row agent i can reach
    first_col: np.ndarray  # (n, rows) int64 first column agent i can reach in row row_lo[i] + k
    last_col: np.ndarray   # (n, rows) int64 its last column there (-1: no such row)
    offset: np.ndarray     # (n, rows) int64 number of agent i's first reachable cell in that row
    count: np.ndarray      # (n,) int64 cells agent i can reach


@numba.njit(cache=True)
def _grid_compact(s, pos, size, n_food, reach):
    """Compact id (see :func:`_grid_bfs`) of state ``s`` whose agents are in cells ``pos``."""
    row_lo, first_col, last_col, offset, count = reach
    c = 0
    for i in range(pos.shape[0] - 1, -1, -1):
        k = pos[i] // size - row_lo[i]
        col = pos[i] % size
        if k < 0 or k >= first_col.shape[1] or col < first_col[i, k] or col > last_col[i, k]:
            raise AssertionError("GridForaging BFS left the reachable cells")
        c = c * count[i] + offset[i, k] + col - first_col[i, k]
    return (c << n_food) | (s & ((1 << n_food) - 1))


@numba.njit(cache=True)
def _grid_bfs(start, n_agents, size, food_cells, food_at, max_steps, reach, n_reach):
    """Breadth-first search over joint states (at most max_steps deep, not past terminal
    states).

    Every reachable state lies in a set of ``n_reach`` compact ids: its food mask plus
    ``2**n_food`` times the mixed-radix number (radices ``count``) of each agent's cell
    among the cells within max_steps moves of its start (``reach``, a :class:`_GridReach`:
    rows ``row_lo[i]`` on, row k from column ``first_col[i, k]`` to ``last_col[i, k]``,
    numbered from ``offset[i, k]``).
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
    seen[_grid_compact(start, pos, size, n_food, reach)] = True
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
            c = _grid_compact(s2, pos, size, n_food, reach)
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
                raise ValueError(f"{n_agents} agents and {n_food} food do not fit on {n_cells} "
                                 f"cells")
            cells = np.random.default_rng(layout_seed).permutation(n_cells)
            food = [int(c) for c in cells[:self.n_food]]
            agents = [int(c) for c in cells[self.n_food:self.n_food + self.n_agents]]
        else:
            if self.n_food > n_cells - self.size:
                raise ValueError(f"n_food={n_food} does not fit the default layout; pass layout")
            rows = [(i * (self.size - 1)) // max(self.n_agents - 1, 1)
                    for i in range(self.n_agents)]
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
            raise ValueError(f"layout agents may not start on food, got agents {agents}, "
                             f"food {food}")
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
        """State id of agents at ``positions`` ((row, col) each) with food ``food_remaining``
        (bools).

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
                                f"n_food={self.n_food} bools",
                                f"flag per food (n_food={self.n_food})")
        for f, left in enumerate(flags):
            if not isinstance(left, (bool, np.bool_)) and not (
                    isinstance(left, numbers.Integral) and left in (0, 1)):
                raise TypeError(f"food_remaining[{f}] must be a bool, got "
                                f"{type(left).__name__} {left!r}")
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
    def _kernel(self, actions, arrays):
        return _grid_step(actions, self._n_actions_array, self.size, self._food, self._food_at,
                          self.max_steps, self.start_state, arrays)

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
            moves = {STAY: (0, 0), UP: (-1, 0), DOWN: (1, 0), LEFT: (0, -1), RIGHT: (0, 1),
                     LOAD: (0, 0)}
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
            reach_cells = _GridReach(row_lo, first_col, last_col, offset, np.array(count, np.int64))
            states, dist, parent, parent_joint = _grid_bfs(
                self.start_state, self.n_agents, self.size, self._food, self._food_at,
                self.max_steps, reach_cells, reach)
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
