"""asae_tabular — decentralised tabular softmax actors and centralised tabular critics.

The learner of the matrix games, the two-step game and the grid (any env with integer
observation and state ids, :class:`BatchedEnv`): ``train(env, method, TabularConfig(...))``
runs one row of ``asae.METHOD_TABLE`` and returns an ``asae_learner.TrainResult``;
:func:`evaluate` scores logits tables. With the env's transition tables the whole run is one
jitted call. For feature observations (``env.obs_dim``) use ``asae_neural``; for the exact
bias of a method's advantage, ``asae_probe`` (which reads this learner's per-step log).

One training run = ``iterations`` × (rollout of T steps in B envs → one update). The update
(:func:`_update`, jitted) reads top to bottom, the same for every row of METHOD_TABLE:

    E10     Â_t, R_t = GAE(r · reward_scale, V(s), V(s'))           with V as it stands
    base    Â_t | COMA's A^i_C from the Q critic (E7) | the exact table (E3; E6 per step)
    actors  K epochs × minibatches of one SGD step per moving agent on its clipped
            sub-problem (E8) with Â^i = weight × base, the weight from the log-ratios at
            that step; the schedule decides who moves (everyone, or one agent per turn, E9);
            each row's logit gradient from ``asae._row_slope`` and ``asae._policy_grad_row``
    critics K epochs × minibatches of SGD on ½(R − V(s))² (and ½(R − Q(s, a))², COMA)

State travels in a few named tuples: ``_Hyper`` (the method's rule and the learner's
scalars), :class:`_Policy` (the actors' logits and the joint-action encoding),
:class:`_Critic` (V, Q), :class:`_Samples` (the rollout, flat), :class:`_Exact` (a matrix
game's exact quantities), ``_Log`` (diagnostics, the per-step log).
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Sequence

import numpy as np
from numba import njit

from asae import (COUNTERFACTUAL, EXACT_CURRENT, EXACT_OLD, MAX_LOG_RATIO, METHOD_TABLE,
                  SEQUENTIAL, TRACED, JointIndex, _array, _base_row, _clip_bounds, _describe,
                  _finite, _gae_kernel, _integer, _log_softmax_row, _marginals_kernel,
                  _policy_grad_row, _radix, _row_slope, _scalar, _td_error, _trace_base,
                  _weighted_advantages, softmax)
from asae_learner import (_agent_order, _check_batch_limit, _check_callback, _check_flag,
                          _check_memory,
                          _check_optimum, _doc, _document_fields, _env_state, _greedy_optimal,
                          _Hyper, _hyper, LearnerConfig, _Log, _minibatches, _new_cdf, Progress,
                          RATIO_SLOTS, _ratio_summary, _read_only, _record_ratios,
                          _restore_state, _rng, _rng_next, _sample_actions, _set_env_state,
                          Snapshot, _state_arrays, _stops, TrainResult)


class _Policy(NamedTuple):
    """The decentralised actors: agent i's logits z^i(o, ·) and the joint-action encoding."""
    logits: np.ndarray       # (n, n_obs, A_max); columns ≥ A_i are padding, never read
    joint: JointIndex        # (n,) A_i and the strides of the flat joint action index


class _Critic(NamedTuple):
    V: np.ndarray            # (n_states,) V(s)
    Q: np.ndarray            # (n_states, J) Q(s, a) for COMA; (1, 1) otherwise


class _Batch(NamedTuple):
    """One rollout, (T, B[, n]) arrays in time-major order."""
    obs: np.ndarray          # (T, B, n) int64 observation ids
    act: np.ndarray          # (T, B, n) int64 actions
    rew: np.ndarray          # (T, B) team rewards (unscaled)
    term: np.ndarray         # (T, B) bool
    trunc: np.ndarray        # (T, B) bool
    states: np.ndarray       # (T, B) int64 s_t
    next_states: np.ndarray  # (T, B) int64 s'_t (the true successor, E10)


class _Samples(NamedTuple):
    """The rollout as N = T·B rows, what the actor steps read."""
    obs: np.ndarray          # (N, n) o^i_t
    act: np.ndarray          # (N, n) a^i_t
    joint: np.ndarray        # (N,) flat joint action index of a_t
    old_lp: np.ndarray       # (N, n) log π_old^i(a^i_t | o^i_t)


class _Exact(NamedTuple):
    """A one-step matrix game's exact quantities (exact methods and the bias probe)."""
    payoff: np.ndarray       # (J,) flat joint payoff q(a), unscaled (the probe's units)
    payoff_s: np.ndarray     # (J,) q(a) · reward_scale (the learner's units)
    old: np.ndarray          # (n, A_max) log π_old^i(·) at this update's start (obs 0)
    v_old: np.ndarray        # (2,) V_old (E1) of payoff and of payoff_s
    tables: np.ndarray       # (n, A_max) the exact table in use, E3 or E6, learner's units


class _StepLog(NamedTuple):
    """What each gradient step leaves for a later pass (``record_steps``; matrix games, obs 0):
    every moving agent's record, and each update's order and policies before and after.
    An update holds exactly epochs · minibatches · n records (one per moving agent per
    step, for either schedule)."""
    agent: np.ndarray        # (R,) the moving agent of each record
    logp: np.ndarray         # (R, n, A_max) log π^j(·) of every agent at that step
    order: np.ndarray        # (I, n) each update's agent order
    old: np.ndarray          # (I, n, A_max) log π_old at each update's start
    new: np.ndarray          # (I, n, A_max) log π after each update's actor phase
    count: np.ndarray        # (2,) records, updates filled


class _Work(NamedTuple):
    """Per-update memo of log-softmax rows: a (agent, observation) row is computed once per
    minibatch step (``stamp[i, o] == clock``) and shared by every sample that observes it."""
    lp: np.ndarray           # (n, n_obs, A_max) log π^i(·|o)
    pi: np.ndarray           # (n, n_obs, A_max) π^i(·|o)
    stamp: np.ndarray        # (n, n_obs) clock value when the row was last computed
    clock: np.ndarray        # (1,) current minibatch step


def _new_batch(T, B, n):
    return _Batch(np.zeros((T, B, n), np.int64), np.zeros((T, B, n), np.int64), np.zeros((T, B)),
                  np.zeros((T, B), np.bool_), np.zeros((T, B), np.bool_),
                  np.zeros((T, B), np.int64), np.zeros((T, B), np.int64))


@njit(cache=True)
def _state_policy(pol, o, logp):
    """logp[i] = log π^i(·|o) for every agent (padding columns left untouched)."""
    pi = np.empty(pol.logits.shape[2])
    for i in range(pol.logits.shape[0]):
        A = pol.joint.n_actions[i]
        _log_softmax_row(pol.logits[i, o, :A], logp[i, :A], pi[:A])


@njit(cache=True)
def _exact_table(pol, ex, logp):
    """ex.tables[i, k] = Q^i(k) − V_old in the learner's units, the partners at ``logp``:
    A^i_old (E3) with the old policies, Ã^i (E6) with the current ones."""
    _marginals_kernel(ex.payoff_s, pol.joint.radix, pol.joint.n_actions, np.exp(logp), ex.tables)
    ex.tables[:, :] -= ex.v_old[1]


class _Ctx(NamedTuple):
    """What the actor phase of one update reads: the actors, the samples, the base advantages
    and the memo of log-softmax rows."""
    pol: _Policy
    ex: _Exact
    data: _Samples
    base: np.ndarray         # (N, n) base advantage of every sample and agent
    work: _Work
    delta: np.ndarray        # (T, B) TD errors δ_t of E10 (A2PO's trace; else (0, 0))
    not_done: np.ndarray     # (T, B) 1 − done_t as 0.0 / 1.0 (A2PO's trace; else (0, 0))


@njit(cache=True, inline='always')
def _minibatch_logp(ctx, rows, agents, log_rho, diag):
    """log_rho[r, i] = log ρ^i_t for t = rows[r] and every i in agents, with log π^i_θk(·|o^i_t)
    and π^i_θk(·|o^i_t) left in ``ctx.work``: one softmax per (agent, observation) per
    minibatch step, shared by the ratio, the surrogate gradient and the entropy gradient."""
    pol, data, work = ctx.pol, ctx.data, ctx.work
    work.clock[0] += 1
    now = work.clock[0]
    for r in range(rows.shape[0]):
        t = rows[r]
        for i in agents:
            A = pol.joint.n_actions[i]
            o = data.obs[t, i]
            if work.stamp[i, o] != now:
                _log_softmax_row(pol.logits[i, o, :A], work.lp[i, o, :A], work.pi[i, o, :A])
                work.stamp[i, o] = now
            log_rho[r, i] = work.lp[i, o, data.act[t, i]] - data.old_lp[t, i]
            diag[0] = max(diag[0], log_rho[r, i])


@njit(cache=True, inline='always')
def _advantages(hp, ctx, rows, log_rho, order, cur, base, out):
    """out[r, i] = Â^i_t for t = rows[r]: the row's weight from ``log_rho[r]`` times its base —
    for EXACT_CURRENT the E6 table Ã^i re-evaluated under the partners' policies ``cur`` now,
    else the base computed at the start of the update (``base``: scratch of out's size)."""
    if hp.rule.base == EXACT_CURRENT:
        _exact_table(ctx.pol, ctx.ex, cur)
    for r in range(rows.shape[0]):
        if hp.rule.base == EXACT_CURRENT:
            _base_row(hp.rule.base, ctx.pol.joint, ctx.ex.payoff, ctx.data.joint[rows[r]], cur, 0.0,
                      ctx.ex.tables, base[r])
        else:
            for i in range(base.shape[1]):
                base[r, i] = ctx.base[rows[r], i]
    _weighted_advantages(hp.rule.weight, hp.rule.w_lo, hp.rule.w_hi, base, log_rho, order, out)


@njit(cache=True, inline='always')
def _actor_step(i, hp, ctx, rows, log_rho, adv, base, bounds):
    """One SGD ascent step of agent i's sub-problem on the minibatch ``rows`` (mean gradient),
    from the log-policies in ``ctx.work`` and the log-ratios before anyone moved; ``bounds``
    = (lo, hi) of its PPO clip. CoPPO's summed objective (``through_partners``, E11) is
    taken as the mean over its n terms: at ρ = 1 each agent's slope is then the detached one,
    where the sum would be an n× step (plain SGD on logits has no Adam to absorb it)."""
    pol, data, work = ctx.pol, ctx.data, ctx.work
    A = pol.joint.n_actions[i]
    g = np.empty(A)
    scale = hp.lr_actor / rows.shape[0]
    terms = log_rho.shape[1] if hp.rule.through_partners else 1
    for r in range(rows.shape[0]):
        t = rows[r]
        o = data.obs[t, i]
        slope = _row_slope(hp.rule, log_rho[r], i, adv[r, i], base[r, i], bounds[0],
                           bounds[1]) / terms
        _policy_grad_row(work.lp[i, o, :A], work.pi[i, o, :A], data.act[t, i], slope,
                         hp.rule.entropy_coef, g)
        z = pol.logits[i, o]
        for k in range(A):
            z[k] += scale * g[k]


@njit(cache=True)
def _start_turn(hp, ctx, log, order, turn, fixed, cur):
    """SEQUENTIAL, at the start of turn ``turn``: the previous mover's log-ratios on every
    sample, A2PO's traced base of this turn's agent (E12), and every Â^i for the turn,
    into ``fixed`` = (log_rho, adv, base), each (N, n)."""
    log_rho_all, adv_all, base_all = fixed
    all_rows = np.arange(log_rho_all.shape[0])
    if turn > 0:                         # the agent of the previous turn has moved
        _minibatch_logp(ctx, all_rows, order[turn - 1:turn], log_rho_all, log.diag)
        if hp.rule.base == TRACED:
            _trace_base(hp.rule, ctx.delta, ctx.not_done, order[turn], log_rho_all, ctx.base)
    if hp.rule.base == EXACT_CURRENT:
        _state_policy(ctx.pol, 0, cur)
    _advantages(hp, ctx, all_rows, log_rho_all, order, cur, base_all, adv_all)


@njit(cache=True)
def _log_step(steps, movers, cur):
    """The per-step log (``record_steps``): one record per moving agent, with every agent's
    log-policy ``cur`` at observation 0 as it stands before the step."""
    for i in movers:
        k = steps.count[0]
        steps.agent[k] = i
        steps.logp[k] = cur
        steps.count[0] = k + 1


@njit(cache=True)
def _actors(hp, ctx, rng, log):
    """The actor phase (E8/E9), by the row's schedule; returns the agent order.
    SIMULTANEOUS: one turn in which every agent steps on every minibatch, Â^i from the
    log-ratios as they stand before the step. SEQUENTIAL: n turns in a random order, one
    agent moving per turn; its partners do not move during its turn, so its Â^i (and
    A2PO's traced base, E12) is computed once, at the start of the turn (:func:`_start_turn`).
    Each minibatch step: the movers' log-ratios now, their Â^i, the diagnostics (ratio
    statistics, the per-step log), then one SGD step per mover (:func:`_actor_step`)."""
    N, n = ctx.base.shape
    size_max = N // hp.minibatches + (1 if N % hp.minibatches else 0)
    sequential = hp.rule.schedule == SEQUENTIAL
    order = np.arange(n)
    if sequential:
        _agent_order(hp.rule, rng, order)
    fixed = (np.zeros((N, n)), np.empty((N, n)), np.empty((N, n)))   # a turn's log ρ, Â, base
    rho_all, adv_all, base_all = fixed
    log_rho = np.empty((size_max, n))   # a minibatch's log ρ, Â^i and base
    adv = np.empty((size_max, n))
    base_mb = np.empty((size_max, n))
    cur = np.zeros(ctx.ex.old.shape)     # log π^i(·) at obs 0 now (exact tables, step log)
    bounds = _clip_bounds(hp.rule, n, n)
    for turn in range(n if sequential else 1):
        movers = order[turn:turn + 1] if sequential else order
        if sequential:
            _start_turn(hp, ctx, log, order, turn, fixed, cur)
            bounds = _clip_bounds(hp.rule, turn + 1, n)
        steps, b = _minibatches(rng, N, hp.epochs, hp.minibatches)
        for k in range(b.shape[0] - 1):
            rows = steps[b[k]:b[k + 1]]
            size = rows.shape[0]
            if sequential:                                   # the turn's fixed values
                for r in range(size):
                    for i in range(n):
                        log_rho[r, i] = rho_all[rows[r], i]
                        adv[r, i] = adv_all[rows[r], i]
                        base_mb[r, i] = base_all[rows[r], i]
            _minibatch_logp(ctx, rows, movers, log_rho, log.diag)
            if hp.rule.base == EXACT_CURRENT or hp.record_steps:
                _state_policy(ctx.pol, 0, cur)
            if not sequential:
                _advantages(hp, ctx, rows, log_rho[:size], order, cur, base_mb[:size], adv[:size])
            if hp.track_ratios:                              # diagnostics: the ratio statistics
                _record_ratios(hp, (rows, log_rho, adv, base_mb), movers, order, bounds,
                               log.ratios)
            if hp.record_steps:                              # ... and the per-step log
                _log_step(log.steps, movers, cur)
            for i in movers:
                _actor_step(i, hp, ctx, rows, log_rho, adv, base_mb, bounds)
    return order


@njit(cache=True)
def _critic_step(hp, critic, states, joint, ret, rng):
    """K epochs × minibatches of SGD on ½(R_t − V(s_t))² (and ½(R_t − Q(s_t, a_t))² when the
    base is COUNTERFACTUAL), each a step on the minibatch mean."""
    V, Q = critic.V, critic.Q
    N = ret.shape[0]
    coma = hp.rule.base == COUNTERFACTUAL
    dv = np.empty(N)
    dq = np.empty(N)
    steps, bounds = _minibatches(rng, N, hp.epochs, hp.minibatches)
    for k in range(bounds.shape[0] - 1):
        rows = steps[bounds[k]:bounds[k + 1]]
        scale = hp.lr_critic / rows.shape[0]
        for r in range(rows.shape[0]):                   # errors before any change in this step
            t = rows[r]
            dv[r] = ret[t] - V[states[t]]
            if coma:
                dq[r] = ret[t] - Q[states[t], joint[t]]
        for r in range(rows.shape[0]):
            t = rows[r]
            V[states[t]] += scale * dv[r]
            if coma:
                Q[states[t], joint[t]] += scale * dq[r]


@njit(cache=True)
def _first_non_finite(pol, critic):
    """0 if every table is finite, else the code of the first that is not: 1 V, 2 Q,
    10 + i agent i's logits."""
    for i in range(pol.logits.shape[0]):
        for o in range(pol.logits.shape[1]):
            for k in range(pol.joint.n_actions[i]):
                if not np.isfinite(pol.logits[i, o, k]):
                    return 10 + i
    for x in critic.V:
        if not np.isfinite(x):
            return 1
    for x in critic.Q.ravel():
        if not np.isfinite(x):
            return 2
    return 0


@njit(cache=True)
def _returns(hp, critic, batch):
    """E10 on the rollout with V as it stands: (Â_t, R_t) as (N,) rows t·B + b, and for
    A2PO's trace (TRACED) the TD errors δ_t and 1 − done_t as (T, B) (else (0, 0))."""
    T, B = batch.rew.shape
    r = np.empty((T, B))
    v = np.empty((T, B))
    nv = np.empty((T, B))
    for t in range(T):
        for b in range(B):
            r[t, b] = batch.rew[t, b] * hp.reward_scale
            v[t, b] = critic.V[batch.states[t, b]]
            nv[t, b] = critic.V[batch.next_states[t, b]]
    adv = np.empty((T, B))
    ret = np.empty((T, B))
    _gae_kernel(r, v, nv, batch.term, batch.trunc, hp.rule.gamma, hp.rule.lam, adv, ret)
    delta, not_done = np.zeros((0, 0)), np.zeros((0, 0))
    if hp.rule.base == TRACED:
        delta, not_done = np.empty((T, B)), np.empty((T, B))
        for t in range(T):
            for b in range(B):
                delta[t, b], not_done[t, b] = _td_error(r[t, b], v[t, b], nv[t, b],
                                                        batch.term[t, b], batch.trunc[t, b],
                                                        hp.rule.gamma)
    return adv.reshape(T * B), ret.reshape(T * B), delta, not_done


@njit(cache=True)
def _context(hp, pol, ex, batch, traced):
    """What the actor phase reads (:class:`_Ctx`): the samples as N rows with their joint
    action index and log π_old(a^i_t), the memo of log-softmax rows (holding π_old), and for
    the exact methods and the step log, π_old at observation 0, V_old and A^i_old (E1, E3).
    ``traced`` = (δ, 1 − done) of :func:`_returns`; the base is left to :func:`_bases`."""
    T, B = batch.rew.shape
    n, n_obs, A_max = pol.logits.shape
    N = T * B
    obs = batch.obs.reshape(N, n)
    act = batch.act.reshape(N, n)
    joint = np.zeros(N, np.int64)
    for t in range(N):
        for i in range(n):
            joint[t] += act[t, i] * pol.joint.radix[i]
    work = _Work(np.empty((n, n_obs, A_max)), np.empty((n, n_obs, A_max)),
                 np.zeros((n, n_obs), np.int64), np.zeros(1, np.int64))
    old_lp = np.empty((N, n))                                   # log π_old(a^i_t), π_old in work
    base = np.empty((N, n))
    _minibatch_logp(_Ctx(pol, ex, _Samples(obs, act, joint, np.zeros((N, n))), base, work,
                         traced[0], traced[1]), np.arange(N), np.arange(n), old_lp, np.zeros(1))
    if hp.rule.base in (EXACT_OLD, EXACT_CURRENT) or hp.record_steps:  # matrix games: obs 0
        _state_policy(pol, 0, ex.old)
        radix, n_actions = pol.joint.radix, pol.joint.n_actions
        ex.v_old[0] = _marginals_kernel(ex.payoff, radix, n_actions, np.exp(ex.old), ex.tables)
        ex.v_old[1] = _marginals_kernel(ex.payoff_s, radix, n_actions, np.exp(ex.old),
                                        ex.tables)
        _exact_table(pol, ex, ex.old)                           # A^i_old (E3)
    return _Ctx(pol, ex, _Samples(obs, act, joint, old_lp), base, work, traced[0], traced[1])


@njit(cache=True)
def _bases(hp, ctx, critic, states, adv):
    """ctx.base[t, i] = agent i's base advantage of sample t (:func:`asae._base_row`): the
    shared Â_t, COMA's A^i_C from the Q critic and π_old^i (E7), or the exact A^i_old (E3)."""
    N, n = ctx.base.shape
    pis = np.empty((n, ctx.pol.logits.shape[2]))                # COMA: π_old^i(·|o^i_t)
    q_row = critic.Q[0]                                         # COMA: Q(s_t, ·)
    for t in range(N):
        if hp.rule.base == COUNTERFACTUAL:
            q_row = critic.Q[states[t]]
            for i in range(n):
                for k in range(ctx.pol.joint.n_actions[i]):
                    pis[i, k] = ctx.work.pi[i, ctx.data.obs[t, i], k]
        _base_row(hp.rule.base, ctx.pol.joint, q_row, ctx.data.joint[t], pis, adv[t],
                  ctx.ex.tables, ctx.base[t])


@njit(cache=True)
def _log_update(pol, ex, order, steps):
    """The per-step log's record of one update: its order, π_old and the policies after the
    actor phase, at observation 0."""
    u = steps.count[1]
    steps.order[u] = order
    steps.old[u] = ex.old
    _state_policy(pol, 0, steps.new[u])
    steps.count[1] = u + 1


@njit(cache=True)
def _update(hp, pol, critic, ex, batch, rng, log):
    """One update on one rollout, read top to bottom (the module's docstring): E10, the
    bases, the actors, the critics. Returns 0, or the code of the first table that is no
    longer finite (:func:`_first_non_finite`)."""
    adv, ret, delta, not_done = _returns(hp, critic, batch)                       # E10
    ctx = _context(hp, pol, ex, batch, (delta, not_done))
    states = batch.states.reshape(adv.shape[0])
    _bases(hp, ctx, critic, states, adv)                                          # base
    order = _actors(hp, ctx, rng, log)                                            # actors
    if hp.record_steps:
        _log_update(pol, ex, order, log.steps)
    _critic_step(hp, critic, states, ctx.data.joint, ret, rng)                    # critics
    return _first_non_finite(pol, critic)


class EnvTables(NamedTuple):
    """An env's transition tables, what ``env.tables()`` and ``env.count_tables()`` return
    (see :class:`BatchedEnv`; any object with these attributes, or a mapping with these keys,
    is accepted too; ``count_base`` may be absent from ``tables()``)."""
    next_state: np.ndarray   # (n_states, C) int64
    reward: np.ndarray       # (n_states, C) float64
    terminated: np.ndarray   # (n_states, C) bool
    obs: np.ndarray          # (n_states, n) int64
    start_state: int
    time_limit: int
    count_base: int = 0      # 0: column = joint action j (C = J); n + 1: count index c


class _EnvCarry(NamedTuple):
    """What the table-driven rollouts carry from one iteration to the next, B envs each."""
    state: np.ndarray        # (B,) int64 state id now
    t_ep: np.ndarray         # (B,) int64 steps into the episode
    ep_ret: np.ndarray       # (B,) return of the episode so far


class _Record(NamedTuple):
    """What a jitted run fills: the rollout scratch, the curve and the recorded policies;
    and where it stands: the rollouts' carry and the iterations the next call runs."""
    batch: tuple             # _Batch
    curve: np.ndarray        # (I,) mean return of the episodes that ended in each rollout
    policy_log: np.ndarray   # (I + 1, n, n_obs, A_max) if record_policies, else (1, …)
    env: tuple               # _EnvCarry
    span: np.ndarray         # (2,) int64 [start, stop): the iterations of the next call


@njit(cache=True)
def _rollout_tables(tab, pol, state, t_ep, ep_ret, rng, batch):
    """T steps of B envs from the env's transition tables, sampling with the current
    policies. Returns (Σ returns, count) of the episodes that ended. The table column of a
    step is Σ_i w[i, a^i] (O(n)): the joint action j (w[i, k] = k · radix_i) or, for count
    tables, the count index c (w[i, k] = count_base^k for k < A − 1, w[i, A − 1] = 0)."""
    T, B = batch.rew.shape
    n, _, A_max = pol.logits.shape
    obs = np.empty((B, n), np.int64)
    act = np.empty((B, n), np.int64)
    cdf, ready = np.empty(pol.logits.shape), np.zeros(pol.logits.shape[:2], np.bool_)
    w = np.zeros((n, A_max), np.int64)
    for i in range(n):
        p = 1
        for k in range(pol.joint.n_actions[i]):
            if tab.count_base == 0:
                w[i, k] = k * pol.joint.radix[i]
            elif k < pol.joint.n_actions[i] - 1:
                w[i, k] = p
                p *= tab.count_base
    ended_sum = 0.0
    ended = 0
    for t in range(T):
        for b in range(B):
            for i in range(n):
                obs[b, i] = tab.obs[state[b], i]
        _sample_actions(pol.logits, pol.joint.n_actions, obs, rng, act, cdf, ready)
        for b in range(B):
            s = state[b]
            j = 0                                               # the table column
            for i in range(n):
                j += w[i, act[b, i]]
                batch.obs[t, b, i] = obs[b, i]
                batch.act[t, b, i] = act[b, i]
            term = tab.terminated[s, j]
            trunc = (not term) and t_ep[b] + 1 >= tab.time_limit
            batch.states[t, b] = s
            batch.next_states[t, b] = tab.next_state[s, j]      # V(s'_t): the true successor
            batch.rew[t, b] = tab.reward[s, j]
            batch.term[t, b] = term
            batch.trunc[t, b] = trunc
            ep_ret[b] += tab.reward[s, j]
            if term or trunc:
                ended_sum += ep_ret[b]
                ended += 1
                ep_ret[b] = 0.0
                state[b] = tab.start_state
                t_ep[b] = 0
            else:
                state[b] = tab.next_state[s, j]
                t_ep[b] += 1
    return ended_sum, ended


@njit(cache=True)
def _train_tables(hp, pol, critic, ex, tab, rng, log, rec):
    """The training run for an env with transition tables, iterations ``rec.span`` = [start,
    stop) of it (the whole run in one call; a callback's run one call per iteration): each a
    rollout and an update. Everything carried from one iteration to the next lives in the
    arguments (the logits, critics, random stream, diagnostics, step log and ``rec.env``),
    so calls over consecutive spans are the one call, bit for bit. Returns (iteration,
    code) of a guard failure, or (−1, 0)."""
    start, stop = rec.span[0], rec.span[1]
    env = rec.env
    record = rec.policy_log.shape[0] > 1
    if start == 0:
        env.state[:] = tab.start_state
        env.t_ep[:] = 0
        env.ep_ret[:] = 0.0
        if record:
            rec.policy_log[0] = pol.logits
    for it in range(start, stop):
        total, ended = _rollout_tables(tab, pol, env.state, env.t_ep, env.ep_ret, rng, rec.batch)
        rec.curve[it] = total / ended if ended > 0 else np.nan
        code = _update(hp, pol, critic, ex, rec.batch, rng, log)
        if code != 0:
            return it, code
        if record:
            rec.policy_log[it + 1] = pol.logits
    return -1, 0
#: Largest |z| of ``TabularConfig.init_logits``: a row's log-probabilities (z_k − max z) must stay
#: float64 while the run moves it (softmax saturates at a spread of ~745 anyway).
MAX_INIT_LOGIT = 1e150

#: The exact methods and the bias probe sum over every joint action at every gradient step,
#: J·n² operations (J = ∏ A_i); above this they are refused rather than run for hours.
MAX_EXACT_WORK = 10 ** 8

@dataclass(frozen=True)
class TabularConfig(LearnerConfig):
    """Hyperparameters of :func:`train`: the fields of every learner
    (``asae_learner.LearnerConfig``; its defaults are this learner's) and the tables' own."""

    init_logit_std: float = _doc(1.0, "Initial logits ~ N(0, std²), ≥ 0, drawn from ``seed`` alone "
                                 "so every method starts from the same policy under the same "
                                 "seed. 0: uniform policies.")
    init_logits: tuple | None = _doc(None, "Fixed initial logits instead: one (n_obs, A_i) table "
                                     "per agent (nested sequences of finite numbers); None: drawn "
                                     "as above.")
    record_policies: bool = _doc(False, "Keep each iteration's policy tables (for exact "
                                 "expected-return curves).")

    def __post_init__(self):
        super().__post_init__()
        _scalar("TabularConfig.init_logit_std", self.init_logit_std, 0.0, np.finfo(float).max)
        _check_flag("TabularConfig.record_policies", self.record_policies)
        if self.init_logits is not None:
            try:
                tabs = tuple(np.asarray(z, dtype=np.float64) for z in self.init_logits)
            except (TypeError, ValueError):
                raise TypeError("TabularConfig.init_logits must be a sequence of per-agent 2-D "
                                "tables of real numbers (n_obs, A_i)") from None
            for i, z in enumerate(tabs):
                if z.ndim != 2 or not np.all(np.abs(z) <= MAX_INIT_LOGIT):
                    raise ValueError(f"TabularConfig.init_logits[{i}] must be a 2-D table "
                                     f"(n_obs, A_i) of finite numbers with |z| ≤ "
                                     f"{MAX_INIT_LOGIT:g} (room for the run's steps); "
                                     f"got {_describe(z)}")
            object.__setattr__(self, "init_logits", tuple(tuple(map(tuple, z)) for z in tabs))


_document_fields(TabularConfig, "Parameters")


class BatchedEnv(Protocol):
    """The environment interface :func:`train` and :func:`evaluate` accept (B envs, n agents).

    ``reset(n_envs, seed) -> (obs (B, n) int, state (B,) int)`` and
    ``step(actions (B, n) int) -> (obs, state, reward (B,) float, terminated (B,) bool,
    truncated (B,) bool, final_state (B,) int)``, with auto-reset: for a finished env,
    ``obs``/``state`` start the next episode and ``final_state`` is the successor s'_t of the
    step just taken (E10 bootstraps from it when truncated). Observation ids lie in
    [0, n_obs), state ids in [0, n_states), rewards are finite; every step's outputs are
    checked and a violation raises ``ValueError``/``TypeError`` naming it.

    Optional, for speed: ``tables()`` returning transition tables with attributes
    ``next_state`` (n_states, J) int, ``reward`` (n_states, J) float, ``terminated``
    (n_states, J) bool, ``obs`` (n_states, n) int, ``start_state`` and ``time_limit`` (J =
    ∏ A_i, joint index in C order over agents): a step from (s, t) under joint action j
    goes to s' = next_state[s, j], is truncated when not terminated and t + 1 ≥ time_limit,
    and resets to start_state when it ends. With tables the whole run is one jitted call.
    ``payoff`` (the joint payoff table of a one-step game) enables the exact methods and
    the bias probe; ``optimum`` enables ``greedy_optimal``.

    Optional, for games whose transitions and rewards depend only on how many agents chose
    each action (every agent with the same A actions; ``envs.CountGame``, the penalty
    game): ``count_tables()``, the same fields plus ``count_base`` = n + 1, with columns
    indexed by the count index c = Σ_{k<A−1} count_k · (n + 1)^k (count_k agents chose
    action k; the last count is implied) instead of j, so the tables are (n_states,
    (n + 1)^(A−1)) — 1089 columns for the penalty game at n = 32, not 3^32. ``train`` uses
    them when present (O(n) per env-step, no ∏ A_i array), else ``tables()``, else
    ``step``. COMA's joint critic Q (n_states · ∏ A_i), the exact methods and the bias probe
    (the joint ``payoff``) still need their joint arrays: ``train`` refuses them, naming
    the part, where those exceed ``MAX_TABLE_BYTES``.
    """

    n_agents: int
    n_actions: Sequence[int]
    n_states: int
    n_obs: int
    episode_limit: int

    def reset(self, n_envs: int, seed: int | None = None): ...

    def step(self, actions): ...


def _check_env(env):
    """Validate the env's static interface → (n, n_actions array, n_states, n_obs)."""
    if isinstance(env, type):
        raise TypeError(f"env must be an environment instance, not the class {env.__name__}; "
                        f"call it first, e.g. {env.__name__}()")
    if hasattr(env, "obs_dim"):
        raise TypeError(f"env has feature observations (obs_dim = {env.obs_dim!r}); this needs "
                        "integer observation and state ids (env.n_obs, env.n_states); "
                        "asae_neural.train and asae_neural.evaluate run feature envs with MLP "
                        "actors (NetConfig)")
    for attr in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "reset", "step"):
        if not hasattr(env, attr):
            raise TypeError(f"env must provide the batched interface (asae_tabular.BatchedEnv); "
                            f"missing attribute {attr!r}")
    for attr in ("reset", "step") + (("tables",) if hasattr(env, "tables") else ()):
        if not callable(getattr(env, attr)):
            raise TypeError(f"env.{attr} must be callable (asae_tabular.BatchedEnv); got "
                            f"{type(getattr(env, attr)).__name__}")
    n = _integer("env.n_agents", env.n_agents, 1)
    n_actions = env.n_actions
    if isinstance(n_actions, (str, bytes)) or not isinstance(n_actions, (Sequence, np.ndarray)):
        raise TypeError(f"env.n_actions must be a sequence of {n} action counts, one per agent; "
                        f"got {type(n_actions).__name__} {n_actions!r}")
    n_actions = tuple(n_actions)
    if len(n_actions) != n:
        raise ValueError(f"env.n_actions must hold one action count per agent ({n}); "
                         f"got {n_actions!r}")
    for i, k in enumerate(n_actions):
        _integer(f"env.n_actions[{i}]", k, 1, 2 ** 31)
    _integer("env.episode_limit", env.episode_limit, 1)
    return (n, np.array(n_actions, np.int64), _integer("env.n_states", env.n_states, 1),
            _integer("env.n_obs", env.n_obs, 1))


def _check_reset(env, out, B, n, n_obs, n_states):
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("env.reset must return (obs, state)")
    return (_array("env.reset obs", out[0], kind="int", shape=(B, n), high=n_obs),
            _array("env.reset state", out[1], kind="int", shape=(B,), high=n_states))


def _check_step(out, B, n, n_obs, n_states):
    """Check one env.step's outputs against the protocol (cheap: O(B·n))."""
    if not (isinstance(out, tuple) and len(out) == 6):
        raise TypeError("env.step must return (obs, state, reward, terminated, truncated, "
                        "final_state)")
    obs = _array("env.step obs", out[0], kind="int", shape=(B, n), high=n_obs)
    state = _array("env.step state", out[1], kind="int", shape=(B,), high=n_states)
    rew = _array("env.step reward", out[2], shape=(B,))
    term = _array("env.step terminated", out[3], kind="bool", shape=(B,))
    trunc = _array("env.step truncated", out[4], kind="bool", shape=(B,))
    final = _array("env.step final_state", out[5], kind="int", shape=(B,), high=n_states)
    return obs, state, rew, term, trunc, final


def _count_columns(n, n_actions) -> int:
    """Columns of count tables, (n + 1)^(A − 1) with A = max A_i (ValueError past int64)."""
    A = int(max(n_actions))
    if (A - 1) * math.log2(n + 1) > 62:
        raise ValueError(f"env.count_tables() of n_agents = {n} with {A} actions would have "
                         f"(n_agents + 1)^{A - 1} columns, beyond int64 count indices")
    return (n + 1) ** (A - 1)


def _check_tables(tab, n, n_actions, n_states, n_obs, counts: bool = False):
    """Validate an env's transition tables once (shapes, dtypes, ranges, finite rewards):
    ``env.tables()``, columns = joint actions, or if ``counts`` ``env.count_tables()``,
    columns = count indices (count_base = n + 1, every agent with the same A actions)."""
    src = "env.count_tables()" if counts else "env.tables()"
    fields = EnvTables._fields if counts else EnvTables._fields[:-1]   # count_base optional
    if isinstance(tab, Mapping):
        missing = [f for f in fields if f not in tab]
        get = tab.get
    else:
        missing = [f for f in fields if not hasattr(tab, f)]
        get = lambda f, default=None: getattr(tab, f, default)  # noqa: E731
    if missing:
        raise TypeError(f"{src} must return an asae_tabular.EnvTables (or an object or mapping "
                        f"with {', '.join(fields)}); got {type(tab).__name__} "
                        f"without {', '.join(missing)}")
    base = _integer(f"{src}.count_base", get("count_base", 0))
    if counts:
        sizes = sorted(set(int(k) for k in n_actions))
        if len(sizes) > 1:
            raise ValueError(f"env.count_tables() needs every agent to have the same number of "
                             f"actions; env.n_actions holds {sizes}")
        if base != n + 1:
            raise ValueError(f"env.count_tables().count_base must be n_agents + 1 = {n + 1}; "
                             f"got {base}")
        C = _count_columns(n, n_actions)
    elif base != 0:
        raise ValueError(f"env.tables().count_base must be 0 (columns are joint actions; count "
                         f"tables come from env.count_tables()); got {base}")
    else:
        C = math.prod(int(k) for k in n_actions)
    nxt = _array(f"{src}.next_state", get("next_state"), kind="int", shape=(n_states, C),
                 high=n_states)
    obs = _array(f"{src}.obs", get("obs"), kind="int", shape=(n_states, n), high=n_obs)
    rew = _array(f"{src}.reward", get("reward"), shape=(n_states, C))
    term = _array(f"{src}.terminated", get("terminated"), kind="bool", shape=(n_states, C))
    start = _integer(f"{src}.start_state", get("start_state"))
    if start >= n_states:
        raise ValueError(f"{src}.start_state must be < n_states ({n_states}); got {start}")
    limit = _integer(f"{src}.time_limit", get("time_limit"), 1)
    # Private writable copies: one compiled signature for every env, and nothing shared.
    return EnvTables(nxt.copy(), rew.copy(), np.array(term), obs.copy(), start, limit, base)


def _table_columns(env, n, n_actions) -> int:
    """Columns of the transition tables :func:`train` will copy: count indices with
    ``env.count_tables()``, joint actions with ``env.tables()``, none (env.step) without."""
    if hasattr(env, "count_tables"):
        return _count_columns(n, n_actions)
    return math.prod(int(k) for k in n_actions) if hasattr(env, "tables") else 0


def _env_tables(env, n, n_actions, n_states, n_obs):
    """The checked tables :func:`train`'s jitted run steps with: ``env.count_tables()`` if the
    env has it (O(n) per step, no ∏A_i array), else ``env.tables()``, else None (env.step)."""
    for attr, counts in (("count_tables", True), ("tables", False)):
        if hasattr(env, attr):
            if not callable(getattr(env, attr)):
                raise TypeError(f"env.{attr} must be callable (asae_tabular.BatchedEnv); got "
                                f"{type(getattr(env, attr)).__name__}")
            return _check_tables(getattr(env, attr)(), n, n_actions, n_states, n_obs, counts)
    return None


def _pack(tables, n_actions) -> np.ndarray:
    """Per-agent (n_obs, A_i) tables → one (n, n_obs, A_max) array (padding: 0, never read)."""
    out = np.zeros((len(tables), tables[0].shape[0], int(max(n_actions))))
    for i, z in enumerate(tables):
        out[i, :, :z.shape[1]] = z
    return out


def _initial_logits(cfg: TabularConfig, n_obs: int, n_actions) -> np.ndarray:
    if cfg.init_logits is not None:
        tabs = [np.array(z, dtype=np.float64) for z in cfg.init_logits]
        if len(tabs) != len(n_actions):
            raise ValueError(f"TabularConfig.init_logits must hold one table per agent "
                             f"({len(n_actions)}); got {len(tabs)}")
        for i, z in enumerate(tabs):
            if z.shape != (n_obs, n_actions[i]):
                raise ValueError(f"TabularConfig.init_logits[{i}] must have shape "
                                 f"{(n_obs, int(n_actions[i]))}; got {z.shape}")
        return _pack(tabs, n_actions)
    init = np.random.default_rng([cfg.seed, 0])          # same initial logits for every method
    return _pack([cfg.init_logit_std * init.standard_normal((n_obs, int(k))) for k in n_actions],
                 n_actions)


def _memory_plan(cfg, method, sizes, table_columns, record_steps=False) -> dict:
    """Bytes a run of :func:`train` allocates (to within a small factor), by what drives
    each part: the env's sizes (``sizes`` = (n, n_actions, n_states, n_obs)) or a config
    field. ``table_columns``: columns of the transition tables the run copies
    (:func:`_table_columns`; 0 for env.step). Only COMA's
    critic Q, the exact methods and the bias probe (``record_steps``: the step log it reads
    and its pass, asae_probe) have arrays over all J = ∏A_i joint actions: the env's payoff
    and the learner's two copies (8 bytes each per joint action), the probe's (J, n)
    scratch."""
    n, n_actions, n_states, n_obs = sizes
    A, J, N = max(n_actions), math.prod(n_actions), cfg.n_envs * cfg.rollout_len
    coma = METHOD_TABLE[method].base == COUNTERFACTUAL
    payoff = METHOD_TABLE[method].base in (EXACT_OLD, EXACT_CURRENT) or record_steps
    records = cfg.iterations * cfg.epochs * cfg.minibatches * n * record_steps
    return {
        "the env's observations × actions (logits)": 24 * n * n_obs * A,
        "the env's states (critics)": 8 * n_states,
        "the env's states × joint actions (COMA's critic Q)": 8 * n_states * J * coma,
        "the env's joint actions (payoff of the exact methods and the bias probe)":
            24 * J * payoff,
        "the env's joint actions × agents (bias probe)": 8 * J * (3 * n + 3) * record_steps,
        "the env's transition tables": 17 * n_states * table_columns,
        "TabularConfig.iterations (curve, recorded policies)":
            8 * cfg.iterations * (1 + n * n_obs * A * cfg.record_policies),
        "TabularConfig.iterations × epochs × minibatches × agents² (step log)":
            8 * records * (n * A + 1) + 8 * cfg.iterations * (2 * n * A + n) * record_steps,
        "TabularConfig.n_envs × rollout_len (rollout, update)": N * (112 * n + 100),
        "TabularConfig.epochs × n_envs × rollout_len (minibatch plan)": 8 * cfg.epochs * N,
        "TabularConfig.eval_episodes (evaluation)": cfg.eval_episodes * (32 * n + 48),
    }


def _raise_guard(it: int, code: int):
    if code >= 10:
        what = f"agent {code - 10}'s logits table"
        knobs = ("lower TabularConfig.lr_actor (a step moves a logit by ≤ lr_actor·|Â^i|·ρ) or "
                 "TabularConfig.reward_scale (Â scales with it), or smaller "
                 "TabularConfig.init_logits")
    else:
        what = "the critic V" if code == 1 else "the COMA critic Q"
        knobs = ("lower TabularConfig.reward_scale: with lr_critic ≤ 1 a critic step never "
                 "overshoots, so its values overflow only when the scaled returns do")
    raise FloatingPointError(f"training diverged at iteration {it + 1}: {what} is no longer "
                             f"finite; {knobs}")


def _check_train_args(env, method, config, record_steps=False):
    """Check a run's arguments → (cfg, n, n_actions, n_states, n_obs, payoff or None), the
    memory plan before anything is allocated; ``record_steps`` (asae_probe) needs a one-step
    matrix game, as the exact methods do."""
    cfg = TabularConfig() if config is None else config
    if not isinstance(cfg, TabularConfig):
        raise TypeError(f"config must be an asae_tabular.TabularConfig (asae_neural.NetConfig "
                        f"is for feature envs); got {type(cfg).__name__}")
    _hyper(cfg, method)                                 # the method and its clip settings
    n, n_actions, n_states, n_obs = _check_env(env)
    if math.prod(int(k) for k in n_actions) > 2 ** 62:
        raise ValueError(f"env.n_actions {tuple(n_actions)} give more than 2^62 joint actions; "
                         "the learners index joint actions with int64")
    _check_batch_limit(env, cfg, "TabularConfig")
    _check_memory(_memory_plan(cfg, method, (n, n_actions, n_states, n_obs),
                               _table_columns(env, n, n_actions), record_steps))
    payoff = None                                       # (the plan first: env.payoff may be big)
    if METHOD_TABLE[method].base in (EXACT_OLD, EXACT_CURRENT) or record_steps:
        what = f"method {method!r}" + (" / the bias probe" if record_steps else "")
        work = math.prod(int(k) for k in n_actions) * n * n
        if work > MAX_EXACT_WORK:
            raise ValueError(f"{what} evaluate the joint table exactly, "
                             f"O(J·n²) = {work:.3g} operations per gradient step for these "
                             f"{n} agents; asae refuses more than MAX_EXACT_WORK = "
                             f"{MAX_EXACT_WORK:.0e} (e.g. n ≤ 12 agents of 3 actions)")
        payoff = getattr(env, "payoff", None)
        if payoff is None or n_states != 1 or n_obs != 1:
            raise ValueError(f"{what} need a one-step matrix game "
                             "(env.payoff, one state, one observation)")
        payoff = _array("env.payoff", payoff)
        if payoff.shape != tuple(n_actions):
            raise ValueError(f"env.payoff must have shape {tuple(n_actions)}; got {payoff.shape}")
    _check_optimum(env)                                 # (after: a grid's optimum is a search)
    return cfg, n, n_actions, n_states, n_obs, payoff


class _Learner(NamedTuple):
    """Everything a run carries, built by :func:`_setup`."""
    hp: _Hyper
    pol: _Policy
    critic: _Critic
    ex: _Exact
    rng: np.ndarray          # (1,) uint64 SplitMix64 state
    log: _Log
    rec: _Record


def _new_step_log(records, updates, n, A_max):
    return _StepLog(agent=np.zeros(records, np.int64), logp=np.zeros((records, n, A_max)),
                    order=np.zeros((updates, n), np.int64), old=np.zeros((updates, n, A_max)),
                    new=np.zeros((updates, n, A_max)), count=np.zeros(2, np.int64))


def _setup(env, method: str, config, record_steps=False) -> tuple[TabularConfig, _Learner]:
    """Check the arguments and build a run's initial state (what :func:`train` starts from);
    ``record_steps``: keep the per-step log (:class:`_StepLog`) that asae_probe reads."""
    cfg, n, n_actions, n_states, n_obs, payoff = _check_train_args(env, method, config,
                                                                   record_steps)
    hp = _hyper(cfg, method, record_steps)
    logits = _initial_logits(cfg, n_obs, n_actions)
    J = math.prod(int(k) for k in n_actions)
    q = np.zeros(1) if payoff is None else payoff.ravel().copy()
    A_max = logits.shape[2]
    I = cfg.iterations if record_steps else 0
    steps = _new_step_log(I * cfg.epochs * cfg.minibatches * n, I, n, A_max)
    critic_q = np.zeros((n_states, J) if hp.rule.base == COUNTERFACTUAL else (1, 1))
    return cfg, _Learner(
        hp=hp, pol=_Policy(logits, JointIndex(n_actions, _radix(n_actions))),
        critic=_Critic(np.zeros(n_states), critic_q),
        ex=_Exact(payoff=q, payoff_s=q * cfg.reward_scale, old=np.zeros((n, A_max)),
                  v_old=np.zeros(2), tables=np.zeros((n, A_max))),
        rng=_rng(cfg.seed),
        log=_Log(np.zeros(1), steps, np.zeros(RATIO_SLOTS if cfg.track_ratios else 1)),
        rec=_Record(_new_batch(cfg.rollout_len, cfg.n_envs, n), np.full(cfg.iterations, np.nan),
                    np.zeros((cfg.iterations + 1 if cfg.record_policies else 1,)
                             + logits.shape),
                    _EnvCarry(np.zeros(cfg.n_envs, np.int64), np.zeros(cfg.n_envs, np.int64),
                              np.zeros(cfg.n_envs)),
                    np.array([0, cfg.iterations], np.int64)))


def _rollout_env(env, pol, carry, rng, batch) -> float:
    """:func:`_rollout_tables` through the env's own ``step`` (every output checked):
    ``carry`` = [obs, state, episode returns so far], updated. Returns the mean return of
    the episodes that ended (NaN if none)."""
    obs, state, ep_ret = carry
    T, B, n = batch.obs.shape
    n_obs, n_states = pol.logits.shape[1], env.n_states
    act = np.empty((B, n), np.int64)
    ended = []
    for t in range(T):
        batch.obs[t], batch.states[t] = obs, state
        _sample_actions(pol.logits, pol.joint.n_actions, obs, rng, act, *_new_cdf(pol.logits))
        batch.act[t] = act
        obs, state, r, te, tr, final = _check_step(env.step(act.copy()), B, n, n_obs, n_states)
        done = te | tr
        batch.rew[t], batch.term[t], batch.trunc[t] = r, te, tr
        batch.next_states[t] = np.where(done, final, state)     # V(s'_t), E10
        ep_ret += r
        ended.extend(ep_ret[done].tolist())
        ep_ret[done] = 0.0
    carry[:2] = obs, state
    return sum(ended) / len(ended) if ended else np.nan


def train(env, method: str, config: TabularConfig | None = None,
          callback=None) -> TrainResult:
    """Train decentralised tabular softmax actors on ``env`` with one of ``asae.METHODS``.

    ``method`` names a row of ``asae.METHOD_TABLE``: where each agent's advantage starts
    (shared GAE Â, COMA's counterfactual, or an exact table — one-step matrix games only),
    what multiplies it (1, asae's w^i of E8, HAPPO's M^i of E9) and the schedule. Every
    method uses the same per-agent PPO clip (E8; ``clip_eps``, ``clip_ratio``), a tabular V
    critic trained on GAE returns (E10), and the same initial logits under the same seed.
    ``env`` follows :class:`BatchedEnv`; with ``env.tables()`` the whole run is one jitted
    call, else each step goes through ``env.step`` (checked). Same config and seed →
    bit-identical result. Raises ``FloatingPointError`` if a table stops being finite.
    Feature envs (``env.obs_dim``) are refused: ``asae_neural.train`` runs them.

    ``callback(iteration, record)``, if given, is called after each iteration with an
    ``asae_learner.Progress`` record (the curve so far, the logits as they stand) and
    returns True to stop: the result then holds the iterations run (``stopped_at``) and
    the evaluation of the logits as they stand. The run itself is the same, bit for bit
    (with tables it runs one jitted call per iteration instead of one in all); an exception
    raised by the callback propagates. ``asae_learner.progress_printer()`` prints progress;
    ``asae_io.checkpointer(path, every)`` writes checkpoints, ``asae_io.resume`` continues one.
    """
    return _run(env, method, config, callback=callback)[0]


def _state_parts(run: _Learner, carry) -> dict:
    """What a run carries from one iteration to the next, for a checkpoint: the whole
    :class:`_Learner` but the method's settings (from the config) and the rollout's scratch
    (refilled by every rollout), and for a run through ``env.step`` its carry (the
    observations, states and returns of the episodes in progress)."""
    parts = {"run": run._replace(hp=None, rec=run.rec._replace(batch=None, span=None))}
    if carry is not None:
        parts["carry"] = dict(zip(("obs", "state", "ep_ret"), carry))
    return parts


def _run(env, method: str, config, record_steps=False, callback=None,
         start: Snapshot | None = None) -> tuple[TrainResult, _Learner]:
    """:func:`train`, also returning the run's final state (asae_probe reads its step log);
    from ``start`` (a :class:`asae_learner.Snapshot` of this run, checked by asae_io.resume),
    the rest of the run."""
    t0 = time.perf_counter()
    _check_callback(callback)
    cfg, run = _setup(env, method, config, record_steps)
    hp, pol, critic, ex, rng, log, rec = run
    logits, n_actions = pol.logits, pol.joint.n_actions
    n, n_obs, n_states = len(n_actions), logits.shape[1], critic.V.shape[0]
    B, T, I = cfg.n_envs, cfg.rollout_len, cfg.iterations
    tab = _env_tables(env, n, n_actions, n_states, n_obs)
    done, stopped, k0, carry = I, None, 0, None
    if tab is None:
        carry = [*_check_reset(env, env.reset(B, seed=cfg.seed), B, n, n_obs, n_states),
                 np.zeros(B)]
    if start is not None:                    # asae_io.resume: the state after k0 iterations
        carry = None if carry is None else [np.array(x) for x in carry]
        _restore_state(_state_parts(run, carry), {k: a for k, a in start.arrays.items()
                                                  if not k.startswith("env.")})
        if carry is not None:
            _set_env_state(env, {k: a for k, a in start.arrays.items() if k.startswith("env.")})
        k0 = start.iteration
    if callback is not None:                 # what the callback reads: live, read-only views
        views = [_read_only(logits[i, :, :k]) for i, k in enumerate(n_actions)]
        shown = _read_only(rec.curve)

        def snapshot(it):
            arrays = _state_arrays(_state_parts(run, carry))
            if carry is not None:            # the episodes in progress live in the env
                arrays.update(_env_state(env))
            return Snapshot("tabular", method, cfg, env, it, arrays)

        def stops(it):
            return _stops(callback, Progress(it, I, it * B * T, float(shown[it - 1]),
                                             time.perf_counter() - t0, shown[:it], method,
                                             views, None, lambda: snapshot(it)))
    if tab is not None:
        step = max(I - k0, 1) if callback is None else 1         # a callback: one call each
        for first in range(k0, I, step):
            rec.span[:] = first, min(first + step, I)
            it, code = _train_tables(hp, pol, critic, ex, tab, rng, log, rec)
            if code:
                _raise_guard(it, code)
            if callback is not None and stops(first + 1):
                done = first + 1
                break
    else:
        if k0 == 0:
            rec.policy_log[0] = logits
        for it in range(k0, I):
            rec.curve[it] = _rollout_env(env, pol, carry, rng, rec.batch)
            code = _update(hp, pol, critic, ex, rec.batch, rng, log)
            if code:
                _raise_guard(it, code)
            if cfg.record_policies:
                rec.policy_log[it + 1] = logits
            if callback is not None and stops(it + 1):
                done = it + 1
                break
    if done < I:
        stopped = done
    curve = rec.curve[:done]
    over = np.flatnonzero(np.isinf(curve))
    if over.size:                                  # a return (or the sum of several) > 1.8e308
        raise FloatingPointError(f"train: the mean return of the episodes that ended in iteration "
                                 f"{over[0] + 1} overflows float64 (|value| > 1.8e308); rescale "
                                 "the env's rewards")
    tables = [logits[i, :, :k].copy() for i, k in enumerate(n_actions)]
    seed_eval = int(_rng_next(rng) >> np.uint64(33))
    greedy = evaluate(env, tables, cfg.eval_episodes, True, seed_eval)
    stochastic = evaluate(env, tables, cfg.eval_episodes, False, seed_eval)
    policies = None
    if cfg.record_policies:
        policies = [[softmax(p[i, :, :k]) for i, k in enumerate(n_actions)]
                    for p in rec.policy_log[:done + 1]]
    return TrainResult(
        method=method, iterations=np.arange(1, done + 1),
        env_steps=np.arange(1, done + 1) * B * T,
        mean_return=curve, greedy_return=greedy, stochastic_return=stochastic,
        greedy_optimal=_greedy_optimal(env, greedy), wall_time=time.perf_counter() - t0,
        logits=tables, values=critic.V, policies=policies,
        ratios=_ratio_summary(log.ratios) if cfg.track_ratios else None,
        diagnostics=dict(max_abs_logit=float(max(np.abs(z).max() for z in tables)),
                         max_ratio=float(np.exp(min(log.diag[0], MAX_LOG_RATIO)))),
        stopped_at=stopped), run


def evaluate(env, logits, episodes: int = 32, greedy: bool = True, seed: int = 0) -> float:
    """Mean team return of one episode in each of ``episodes`` envs under the tabular
    policies ``logits`` (one (n_obs, A_i) table per agent; argmax actions if ``greedy``,
    else sampled with a stream seeded by ``seed``). Every env output is checked. A
    feature env's MLP actors are scored by ``asae_neural.evaluate``."""
    n, n_actions, n_states, n_obs = _check_env(env)
    if hasattr(logits, "net") and hasattr(logits, "params"):
        raise TypeError(f"logits is a neural policy ({type(logits).__name__}): evaluate it "
                        "with asae_neural.evaluate")
    if isinstance(logits, np.ndarray) and logits.ndim != 3 or not hasattr(logits, "__len__"):
        raise TypeError("logits must be a sequence of per-agent (n_obs, A_i) tables")
    if len(logits) != n:
        raise ValueError(f"logits must hold one table per agent ({n}); got {len(logits)}")
    tabs = []
    for i, z in enumerate(logits):
        z = _array(f"logits[{i}]", z, ndim=2)
        if z.shape != (n_obs, n_actions[i]):
            raise ValueError(f"logits[{i}] must have shape {(n_obs, int(n_actions[i]))} for "
                             f"this env; "
                             f"got {_describe(z)}")
        tabs.append(z)
    episodes = _integer("episodes", episodes, 1)
    _check_memory({"episodes": episodes * (32 * n + 48)})
    if not isinstance(greedy, (bool, np.bool_)):
        raise TypeError(f"greedy must be True or False; got {greedy!r}")
    seed = _integer("seed", seed, 0)
    table = _pack(tabs, n_actions)
    rng = _rng(int(seed))
    obs, _ = _check_reset(env, env.reset(episodes, seed=int(seed)), episodes, n, n_obs, n_states)
    ret = np.zeros(episodes)
    active = np.ones(episodes, bool)
    act = np.empty((episodes, n), np.int64)
    for _ in range(int(env.episode_limit)):
        if greedy:
            for i, z in enumerate(tabs):
                act[:, i] = np.argmax(z[obs[:, i]], axis=1)
        else:
            _sample_actions(table, n_actions, obs, rng, act, *_new_cdf(table))
        obs, _, r, term, trunc, _ = _check_step(env.step(act.copy()), episodes, n, n_obs, n_states)
        with np.errstate(over="ignore", invalid="ignore"):
            ret += np.where(active, r, 0.0)
        active &= ~(term | trunc)
        if not active.any():
            break
    with np.errstate(over="ignore", invalid="ignore"):
        mean = ret.mean()
        if not math.isfinite(mean) and np.isfinite(ret).all():   # Σ overflows, the mean does not
            mid, k = ret.max() / 2 + ret.min() / 2, 2.0 ** math.ceil(math.log2(episodes))
            mean = mid + ((ret - mid) / k).mean() * k          # exact when all returns are equal
    return float(_finite("evaluate: the mean return", mean))


