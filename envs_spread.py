"""Cooperative navigation, MPE's ``simple_spread``, batched with Numba: :class:`Spread`.

:class:`Spread` is equal, step for step, to mpe2's ``simple_spread_v3`` (positions,
velocities, observations, global state and rewards; test_envs_spread.py checks them against
mpe2).  It is the *feature-observation form* of the batched interface described in the
docstring of :mod:`envs`: the calls, flags, ``final_state`` and auto-reset of the
integer-id games there, with float vectors (``obs_dim``, ``state_dim``, ``obs_dtype``) in
place of ids::

    obs, state = env.reset(n_envs, seed=None)      # obs (B, n, obs_dim), state (B, state_dim)
    obs, state, reward, terminated, truncated, final_state = env.step(actions)  # actions (B, n)
    # final_state (B, state_dim); obs, state and final_state of dtype env.obs_dtype (float)

Unlike those deterministic games, it draws its start states from one generator per env,
keyed by ``seed``.  Its B envs step in one Numba kernel; beside it, a plain-Python
single-env twin over :class:`SpreadState` tuples (``reference_reset``, which takes the
env's generator key, ``reference_step``, ``reference_agent_rewards``, ...) is what the
tests compare the kernel with, and ``world()`` / ``set_world`` give direct access to the
batched worlds (:class:`SpreadWorld`).

Its optimum is unknown, so this module also holds *reference returns* in its place: the
uniformly random policy (the floor) and a scripted controller
(:meth:`Spread.scripted_actions`, the ceiling), measured by :func:`spread_references` (a
:class:`SpreadReferences` of two :class:`ReturnEstimate`), stored for the common
configurations in :data:`SPREAD_REFERENCES` (``Spread.reference_returns``);
:meth:`Spread.normalized_score` maps a return to 0 (random) .. 1 (scripted).

**Limits.**  Every argument is checked before anything is computed, with the checks and
limits of :mod:`envs`: :data:`envs.MAX_ALLOC_BYTES` bounds the memory of
``Spread(n_agents)``, ``reset(n_envs)`` (with one ``step``), ``Spread.seed_keys`` and
:func:`spread_references` (read at each call: assign ``envs.MAX_ALLOC_BYTES`` to allow
more), :data:`envs.MAX_COUNT` the episode length ``max_cycles``.  Beside them,
:data:`SPREAD_MAX_ABS` (1e30) is the largest coordinate or velocity component
``Spread.set_world`` and the reference functions accept, so that every reward and (also
float32) observation stays finite.

The games with known answers (matrix, count, two-step and grid games) are in :mod:`envs`;
:func:`envs_pettingzoo.to_parallel_env` wraps one env of a Spread (or of any game) in
PettingZoo's Parallel API.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numba
import numpy as np

from envs import (_as_array, _check_batch_actions, _check_bytes, _check_count, _check_int,
                  _check_seed, _check_sequence)

__all__ = [
    "SPREAD_MAX_ABS", "Spread", "SpreadState", "SpreadWorld", "ReturnEstimate",
    "SpreadReferences", "SPREAD_REFERENCES", "spread_references",
]


#: Largest |coordinate| and |velocity component| of a :class:`Spread` world accepted by
#: ``set_world`` and the reference functions (rewards and float32 observations stay finite).
SPREAD_MAX_ABS = 1e30


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


class _SpreadArrays(NamedTuple):
    """The arrays one step kernel of a :class:`Spread` reads and writes: the B worlds and
    their generators (the env's ``_pos``, ``_vel``, ``_lm``, ``_t`` and ``_rng``), advanced in
    place, and the outputs of ``step`` it fills."""
    pos: np.ndarray           # (B, n, 2) float64 agent positions
    vel: np.ndarray           # (B, n, 2) float64 agent velocities
    lm: np.ndarray            # (B, n, 2) float64 landmark positions
    t: np.ndarray             # (B,) int64 step counts within the episode
    rng: np.ndarray           # (B,) uint64 SplitMix64 state of each env's generator
    obs: np.ndarray           # (B, n, obs_dim) observations after the step (output)
    state: np.ndarray         # (B, state_dim) global states after the step (output)
    reward: np.ndarray        # (B,) float64 team reward (output)
    agent_reward: np.ndarray  # (B, n) float64 reward of each agent (output)
    terminated: np.ndarray    # (B,) bool, never set (output)
    truncated: np.ndarray     # (B,) bool (output)
    final_state: np.ndarray   # (B, state_dim) global state before any reset (output)


@numba.njit(cache=True)
def _spread_step(actions, local_ratio, max_cycles, arrays):
    """One step of every env (see :class:`Spread`) of ``arrays``, a :class:`_SpreadArrays`;
    False, changing nothing, if an action is outside 0..4."""
    (pos, vel, lm, t, rng, obs, state, reward, agent_reward, terminated, truncated,
     final_state) = arrays
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
#: test_envs_spread.py checks them against a fresh, smaller measurement with another seed.
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
    are mpe2's; test_envs_spread.py checks positions, velocities, observations, global
    state and rewards to 1e-10), batched over B envs in one Numba kernel.  This is a
    *feature env* (see the docstring of :mod:`envs`): observations are float vectors of
    ``obs_dim = 6 n`` and the global state has ``state_dim = 6 n**2``.

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
    steps and never terminates.  Finished envs reset automatically (:mod:`envs`' docstring).
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
        :data:`envs.MAX_ALLOC_BYTES` is refused with a ValueError."""
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
        state, reward, terminated, truncated, final_state)`` (:mod:`envs`' docstring) and sets
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
        arrays = _SpreadArrays(self._pos, self._vel, self._lm, self._t, self._rng, obs, state,
                               reward, agent_rewards, terminated, truncated, final_state)
        if not _spread_step(actions, self.local_ratio, self.max_cycles, arrays):
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

    def get_state(self):
        """Copies of the batch's whole state after ``reset`` (what a checkpoint keeps, see
        asae_io): ``agent_pos``, ``agent_vel``, ``landmark_pos`` (B, n, 2) float64, the step
        counts ``t`` (B,) int64 and the generators ``rng`` (B,) uint64. :meth:`set_state` puts
        it back; ``agent_rewards`` (the last step's output) is not part of it."""
        self._check_reset()
        return {"agent_pos": self._pos.copy(), "agent_vel": self._vel.copy(),
                "landmark_pos": self._lm.copy(), "t": self._t.copy(), "rng": self._rng.copy()}

    def set_state(self, state):
        """Put back a state of :meth:`get_state` (after a ``reset`` of the same batch size):
        the worlds are checked as by :meth:`set_world`, the generators must be (B,) uint64;
        ``agent_rewards`` is cleared, as by ``reset``."""
        self._check_reset()
        keys = {"agent_pos", "agent_vel", "landmark_pos", "t", "rng"}
        if not isinstance(state, dict) or set(state) != keys:
            raise ValueError(f"state must be a dict with keys {sorted(keys)} (Spread.get_state); "
                             f"got {sorted(state) if isinstance(state, dict) else state!r}")
        rng = np.asarray(state["rng"])
        if rng.dtype != np.uint64 or rng.shape != self._rng.shape:
            raise ValueError(f"state['rng'] must be a {self._rng.shape} uint64 array; got "
                             f"{rng.dtype} {rng.shape}")
        self.set_world(state["agent_pos"], state["agent_vel"], state["landmark_pos"], state["t"])
        self._rng = rng.copy()
        self.agent_rewards = None

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
    about ``24 * n_episodes`` bytes plus a batch of ``n_envs`` (:data:`envs.MAX_ALLOC_BYTES`).
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
