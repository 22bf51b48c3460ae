"""asae_probe — the exact bias of each method's advantage, measured on a matrix game.

At every gradient step of a tabular run and for every moving agent i, the advantage the
method uses (its base and weight, by the same ``asae`` kernels as training, fed the exact
A_old(a) = q(a) − V_old for every joint action a) is compared with the target Ã^i of E6
under the policies as they stand *after* the update; and the expected clipped gradient it
produces with the gradient the target would produce. The probe is a separate pass: the
tabular learner keeps a per-step log (``asae_tabular._StepLog``: each step's moving agent
and log-policies, each update's order and policies before and after), and
:func:`_probe_pass` replays it exactly — nothing here runs inside the learner's loop.

Front doors: :func:`advantage_bias` (the summary) and :func:`train_with_bias` (the run's
``TrainResult`` with ``bias`` filled).
"""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
from numba import njit

from asae import (EXACT_CURRENT, EXACT_OLD, SEQUENTIAL, _base_row, _clip_bounds, _joint_action,
                  _joint_prob, _marginals_kernel, _policy_grad_row, _row_slope,
                  _weighted_advantages)
import asae_tabular

# The probe's running sums, by name (slots of one array).
BIAS = 0                 # Σ |E_{a^-i~π_old^-i}[Â^i | a^i] − Ã^i(a^i)| over (record, action)
BIAS_ASYNC = 1           # the same with A^i_old (ω = 1) in place of the method's advantage
CELLS = 2                # (record, action) pairs
SECOND_MOMENT = 3        # Σ E_{a~π_old}[(Â^i)²] over records
SECOND_MOMENT_ASYNC = 4  # ... with A_old
RECORDS = 5              # records (one per moving agent per gradient step)
GRAD_BIAS = 6            # Σ |E[∇_{z^i} objective with Â^i] − the same with Ã^i| over (rec, logit)
GRAD_BIAS_ASYNC = 7      # ... with A_old
GRAD_CELLS = 8           # (record, logit) pairs
N_SUMS = 9


class _Game(NamedTuple):
    """The matrix game as the probe reads it."""
    payoff: np.ndarray       # (J,) flat joint payoff q(a), unscaled (the probe's units)
    joint: tuple             # asae.JointIndex: A_i and the joint index's strides


@njit(cache=True)
def _expected_grad(rule, game, cur, old, i, advs, bounds, out):
    """out = E_{a~π_old}[∇_{z^i} of agent i's clipped objective] with, at joint action j, the
    advantage advs[0][j] and base advs[1][j] — the clip's indicator evaluated per joint
    action (``asae._row_slope``, as in training, CoPPO's summed objective over its n terms as
    the tabular learner steps on it); ``old`` = log π_old, ``cur`` = log π now."""
    radix, n_actions = game.joint.radix, game.joint.n_actions
    A = n_actions[i]
    n = cur.shape[0]
    terms = n if rule.through_partners else 1         # CoPPO's mean, as the tabular step
    row = np.empty(A)
    log_rho = np.empty(n)
    pi = np.exp(cur[i, :A])
    pi_old = np.exp(old)
    out[:A] = 0.0
    for j in range(advs[0].shape[0]):
        for l in range(n):
            al = _joint_action(j, l, radix, n_actions)
            log_rho[l] = cur[l, al] - old[l, al]
        a = _joint_action(j, i, radix, n_actions)
        p = _joint_prob(pi_old, radix, n_actions, j, i) * pi_old[i, a]
        slope = _row_slope(rule, log_rho, i, advs[0][j], advs[1][j], bounds[0],
                           bounds[1]) / terms
        _policy_grad_row(cur[i, :A], pi, a, slope, 0.0, row)
        for k in range(A):
            out[k] += p * row[k]


@njit(cache=True)
def _record(rule, game, step, used, grad, grad_async, sums):
    """One record: agent i = step[0] at a gradient step with the log-policies cur = step[1],
    π_old = step[2] and the order step[3]. Fills ``used`` = E_{a^-i~π_old^-i}[Â^i | a^i],
    ``grad`` and ``grad_async`` (the expected gradients with Â^i and with A_old) and adds the
    second moments to ``sums``; returns the clip range (lo, hi) of the step.

    The method's advantage over every joint action a comes from the same ``_base_row`` and
    ``_weighted_advantages`` as training, fed the exact A_old(a) = q(a) − V_old (COMA: the
    exact counterfactual with Q = q; exact methods: the exact tables; A2PO: its trace is
    inert in a one-step game) and the current log-ratios."""
    i, cur, old, order = step
    payoff, joint = game.payoff, game.joint
    J = payoff.shape[0]
    n, A_max = cur.shape
    pi_old = np.exp(old)
    scratch = np.empty((n, A_max))
    v_old = _marginals_kernel(payoff, joint.radix, joint.n_actions, pi_old, scratch)   # E1
    tables = np.zeros((n, A_max))
    if rule.base == EXACT_CURRENT or rule.base == EXACT_OLD:
        _marginals_kernel(payoff, joint.radix, joint.n_actions,
                          np.exp(cur) if rule.base == EXACT_CURRENT else pi_old, tables)
        tables -= v_old
    log_rho = np.empty((J, n))
    base = np.empty((J, n))
    a_old = np.empty(J)
    for j in range(J):
        a_old[j] = payoff[j] - v_old
        for l in range(n):
            a = _joint_action(j, l, joint.radix, joint.n_actions)
            log_rho[j, l] = cur[l, a] - old[l, a]
        _base_row(rule.base, joint, payoff, j, pi_old, a_old[j], tables, base[j])
    out = np.empty((J, n))
    _weighted_advantages(rule.weight, rule.w_lo, rule.w_hi, base, log_rho, order, out)
    m = 1
    while order[m - 1] != i:
        m += 1
    bounds = _clip_bounds(rule, m if rule.schedule == SEQUENTIAL else n, n)
    used[:] = 0.0
    m2 = 0.0
    m2_async = 0.0
    for j in range(J):
        p_partners = _joint_prob(pi_old, joint.radix, joint.n_actions, j, i)
        a = _joint_action(j, i, joint.radix, joint.n_actions)
        used[a] += p_partners * out[j, i]
        p = p_partners * pi_old[i, a]
        m2 += p * out[j, i] ** 2
        m2_async += p * a_old[j] ** 2
    _expected_grad(rule, game, cur, old, i, (out[:, i].copy(), base[:, i].copy()), bounds, grad)
    _expected_grad(rule, game, cur, old, i, (a_old, a_old), bounds, grad_async)
    sums[SECOND_MOMENT] += m2
    sums[SECOND_MOMENT_ASYNC] += m2_async
    sums[RECORDS] += 1.0
    return bounds


@njit(cache=True)
def _probe_pass(rule, game, steps, sums):
    """Replay the step log update by update: each record (:func:`_record`), then its
    comparison with the target Ã^i of E6 under the *updated* partners (and, for the
    gradient, the clipped gradient with Ã^i as the advantage). ``sums``: see the slots."""
    radix, n_actions = game.joint.radix, game.joint.n_actions
    J = game.payoff.shape[0]
    updates, n, A_max = steps.new.shape
    per_update = steps.count[0] // max(updates, 1)
    used = np.empty(A_max)
    grad = np.zeros(A_max)
    grad_async = np.zeros(A_max)
    target = np.empty((n, A_max))
    a_old = np.empty((n, A_max))
    adv_t = np.empty(J)
    g_t = np.empty(A_max)
    for u in range(updates):
        old = steps.old[u]
        v_old = _marginals_kernel(game.payoff, radix, n_actions, np.exp(old), a_old)
        _marginals_kernel(game.payoff, radix, n_actions, np.exp(steps.new[u]), target)
        target -= v_old                                                   # Ã^i (E6)
        a_old -= v_old                                                    # A^i_old (E3)
        for k in range(u * per_update, (u + 1) * per_update):
            i = steps.agent[k]
            A = n_actions[i]
            bounds = _record(rule, game, (i, steps.logp[k], old, steps.order[u]), used, grad,
                             grad_async, sums)
            for a in range(A):
                sums[BIAS] += abs(used[a] - target[i, a])
                sums[BIAS_ASYNC] += abs(a_old[i, a] - target[i, a])
                sums[CELLS] += 1.0
            for j in range(J):
                adv_t[j] = target[i, _joint_action(j, i, radix, n_actions)]
            _expected_grad(rule, game, steps.logp[k], old, i, (adv_t, adv_t), bounds, g_t)
            for a in range(A):
                sums[GRAD_BIAS] += abs(grad[a] - g_t[a])
                sums[GRAD_BIAS_ASYNC] += abs(grad_async[a] - g_t[a])
                sums[GRAD_CELLS] += 1.0


def _summary(s: np.ndarray) -> dict:
    return {"mean_abs_bias": s[BIAS] / s[CELLS], "mean_abs_bias_async": s[BIAS_ASYNC] / s[CELLS],
            "mean_second_moment": s[SECOND_MOMENT] / s[RECORDS],
            "mean_second_moment_async": s[SECOND_MOMENT_ASYNC] / s[RECORDS],
            "mean_abs_grad_bias": s[GRAD_BIAS] / s[GRAD_CELLS],
            "mean_abs_grad_bias_async": s[GRAD_BIAS_ASYNC] / s[GRAD_CELLS],
            "n_steps": int(s[RECORDS])}


def train_with_bias(env, method: str, config=None):
    """``asae_tabular.train`` with the step log kept, then the probe's pass over it: the
    run's ``TrainResult`` (identical to ``train``'s under the same config) with ``bias`` =
    :func:`advantage_bias`'s summary. Needs a one-step matrix game (``env.payoff``)."""
    result, run = asae_tabular._run(env, method, config, record_steps=True)
    sums = np.zeros(N_SUMS)
    _probe_pass(run.hp.rule, _Game(run.ex.payoff, run.pol.joint), run.log.steps, sums)
    return replace(result, bias=_summary(sums))


def advantage_bias(env, method: str, config=None) -> dict:
    """Exact bias and variance of the advantage ``method`` uses, measured during training.

    Trains with ``asae_tabular.train`` (``config``: a ``TabularConfig``) on a one-step matrix
    game. At every gradient step and for every moving agent i, the advantage the method
    uses (``asae.method_advantages``, fed the exact A_old(a) = payoff(a) − V_old for every
    joint action a, and for COMA the exact counterfactual) is compared with the target Ã^i
    of E6 under the policies as they stand *after* the update:

    - ``mean_abs_bias``: mean over steps, agents and actions of
      |E_{a^-i~π_old^-i}[Â^i | a^i] − Ã^i(a^i)| (before any clipping);
    - ``mean_abs_grad_bias``: mean over steps, agents and logits of |E_{a~π_old}[∇ of the
      clipped per-sample objective with Â^i] − the same with Ã^i(a^i)| — the PPO clip's
      indicator evaluated per joint action, so this is the bias that reaches the logits;
    - ``mean_second_moment``: mean of E_{a~π_old}[(Â^i)²], in payoff units;
    - each ``_async`` twin: the same with ω = 1 (A_old) at the same steps, i.e. the
      asynchronous estimate on this method's own training path; ``n_steps``: records.
    """
    return train_with_bias(env, method, config).bias
