"""asae — approximatively synchronous advantage estimation, a reference implementation.

Paper: L. Wan, X. Song, X. Lan, N. Zheng, "Multi-agent Policy Optimization with
Approximatively Synchronous Advantage Estimation", arXiv:2012.03488 (2020/2021).

The paper's full text is not reproduced here. The equations E1–E10 implemented below are
this project's precise statement of the paper's method (see ``EQUATIONS.md`` / the README),
derived from its definitions and the standard multi-agent policy-optimisation identities.
Where a choice is ours it is a parameter: ``sync_clip`` (E8), the clip-boundary convention
of the surrogate gradient (E8), and the log-space saturation of importance weights.

Equations → code
================
===  ===========================================================  ==============================
E1   V = Σ_a π(a) Q(a); A = Q − V                                 :func:`joint_value`
E2   Q^i(a^i) = Σ_{a^-i} π^-i(a^-i) Q(a^i, a^-i)                  :func:`marginal_q`
E3   A^i(a^i) = Q^i(a^i) − V                                      :func:`marginal_advantage`
E4   ∇_θi J = E[∇ log π^i(a^i) A^i(a^i)]                          :func:`exact_policy_gradient`
E5   L(π̃) = J(π_old) + E_{a~π_old}[(∏_j ρ^j) A]                  :func:`joint_surrogate`
E6   Ã^i(a^i) = E_{a^-i~π̃^-i}[A_old(a)]                          :func:`synchronous_marginal_advantage`
E7   COMA: Q(a) − Σ_b π^i(b) Q(b, a^-i)                           :func:`counterfactual_advantage`
E8   w^i = ∏_{j≠i} ρ^j; L^i = E[min(ρ^i w^i Â, clip(ρ^i) w^i Â)]  :func:`sync_weights`,
                                                                  :func:`clipped_surrogate`,
                                                                  :func:`clipped_surrogate_grad`
E9   M^{i_m} = ∏_{l<m} ρ^{i_l} (HAPPO-style)                      :func:`sequential_weights`
E10  δ_t = r_t + γ(1−term_t)V(s'_t) − V(s_t);
     Â_t = δ_t + γλ(1−done_t)Â_{t+1}                              :func:`gae`
===  ===========================================================  ==============================

Design: each public function validates and casts its inputs (clear ``ValueError`` /
``TypeError`` naming the argument) and then calls a private ``@njit(cache=True)`` kernel
over plain arrays and scalars. No ``fastmath``: it would change NaN/inf handling and the
order of summation. Every kernel has a slow loop-for-loop twin in ``test_asae.py``.
"""
from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
from numba import njit

__all__ = [
    "gae", "softmax", "log_softmax", "joint_value", "marginal_q", "marginal_advantage",
    "exact_policy_gradient", "joint_surrogate", "synchronous_marginal_advantage",
    "counterfactual_advantage", "sync_weights", "sequential_weights",
    "clipped_surrogate", "clipped_surrogate_grad",
]

#: Saturation of log ρ inside the surrogate gradient: ρ ≤ e^300 ≈ 2e130, so Â ρ is finite
#: for any |Â| < 1e178 (documented choice; below it the formula is exact).
MAX_LOG_RATIO = 300.0

#: Log-space saturation for importance weights: exp(±LOG_WEIGHT_MAX) is finite in float64.
#: A weight whose log exceeds it is saturated (documented choice; the exact value would overflow).
LOG_WEIGHT_MAX = 700.0

# ---------------------------------------------------------------------------------------
# Input validation (public wrappers only; kernels assume validated, contiguous input)
# ---------------------------------------------------------------------------------------


def _describe(x: np.ndarray) -> str:
    return f"shape {x.shape} and dtype {x.dtype}"


def _float_array(name: str, x, ndims: tuple[int, ...] = (), finite: bool = True) -> np.ndarray:
    """Cast ``x`` to a C-contiguous float64 array after checking kind, ndim and finiteness."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a real (integer or float) array; got {_describe(arr)}")
    if ndims and arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}; got {_describe(arr)}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if finite and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got NaN or inf in an array of {_describe(arr)}")
    return arr


def _flag_array(name: str, x, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean flags: a bool array, or an integer array of 0/1, of exactly ``shape``."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must be a boolean (or 0/1 integer) array; got {_describe(arr)}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (same as rewards); got {_describe(arr)}")
    if arr.dtype.kind != "b" and np.any((arr != 0) & (arr != 1)):
        raise ValueError(f"{name} must hold only 0/1 (or bool) values")
    return np.ascontiguousarray(arr, dtype=np.bool_)


def _index_array(name: str, x, shape: tuple[int, ...], high: int) -> np.ndarray:
    """Integer indices in [0, high) of exactly ``shape``."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array; got {_describe(arr)}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {_describe(arr)}")
    if arr.size and (arr.min() < 0 or arr.max() >= high):
        raise ValueError(f"{name} must hold indices in [0, {high}); got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _scalar(name: str, x, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(x).__name__}")
    v = float(x)
    ok = np.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        bra = "(" if lo_open else "["
        raise ValueError(f"{name} must be a finite number in {bra}{lo}, {hi}]; got {v!r}")
    return v


def _probability_vector(name: str, p, size: int | None = None) -> np.ndarray:
    arr = _float_array(name, p, ndims=(1,))
    if arr.size == 0 or (size is not None and arr.size != size):
        want = f"length {size}" if size is not None else "non-empty"
        raise ValueError(f"{name} must be a probability vector of {want}; got {_describe(arr)}")
    if np.any(arr < 0.0) or abs(arr.sum() - 1.0) > 1e-8:
        raise ValueError(f"{name} must be non-negative and sum to 1 (±1e-8); "
                         f"got min {arr.min()!r}, sum {arr.sum()!r}")
    return arr


def _agent_index(agent, n: int) -> int:
    if isinstance(agent, (bool, np.bool_)) or not isinstance(agent, numbers.Integral):
        raise TypeError(f"agent must be an integer index; got {type(agent).__name__}")
    if not 0 <= int(agent) < n:
        raise ValueError(f"agent must be in [0, {n}) for a game of {n} agents; got {agent}")
    return int(agent)


def _payoff_and_policies(q, policies, name: str = "policies"):
    """Validate a joint table q (A_1..A_n) and n probability vectors matching its axes."""
    q = _float_array("q", q)
    if q.ndim < 1 or q.size == 0:
        raise ValueError(f"q must be a non-empty joint table of shape (A_1, ..., A_n); got {_describe(q)}")
    if isinstance(policies, np.ndarray) and policies.ndim == 1:
        raise TypeError(f"{name} must be a sequence of {q.ndim} probability vectors, one per agent")
    policies = list(policies)
    if len(policies) != q.ndim:
        raise ValueError(f"{name} must hold one vector per axis of q ({q.ndim}); got {len(policies)}")
    pis = [_probability_vector(f"{name}[{j}]", p, q.shape[j]) for j, p in enumerate(policies)]
    return q, pis


# ---------------------------------------------------------------------------------------
# E10 — generalised advantage estimation with termination and truncation
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def _gae_kernel(rewards, values, next_values, terminated, truncated, gamma, lam, adv, ret):
    """Implements E10 over (T, B) arrays, time-outer (backward) so each row is contiguous.

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)
    Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},   Â_T = 0,   R_t = Â_t + V(s_t)
    """
    T, B = rewards.shape
    carry = np.zeros(B)  # Â_{t+1} for each env; Â_T = 0
    for t in range(T - 1, -1, -1):
        for b in range(B):
            bootstrap = 0.0 if terminated[t, b] else gamma * next_values[t, b]
            delta = rewards[t, b] + bootstrap - values[t, b]          # TD error δ_t
            trace = 0.0 if (terminated[t, b] or truncated[t, b]) else gamma * lam
            carry[b] = delta + trace * carry[b]                       # λ-return recursion
            adv[t, b] = carry[b]
            ret[t, b] = carry[b] + values[t, b]


def gae(rewards, values, next_values, terminated, truncated, gamma: float, lam: float):
    """Generalised advantage estimation with termination vs truncation. Implements E10.

    ``δ_t = r_t + γ(1 − terminated_t) V(s'_t) − V(s_t)``,
    ``Â_t = δ_t + γλ(1 − done_t) Â_{t+1}``, ``Â_T = 0``, returns ``R_t = Â_t + V(s_t)``.

    Args:
        rewards: (T,) or (T, B) team rewards r_t.
        values: V(s_t), same shape.
        next_values: V(s'_t) of the *true* next state (for a truncated step: the final state
            before the reset), same shape. Ignored where ``terminated``.
        terminated: bool, same shape — no bootstrap at this step, and the trace stops.
        truncated: bool, same shape — bootstraps ``next_values`` but the trace stops.
        gamma, lam: discount γ and GAE λ, both in [0, 1].

    Returns:
        (advantages, returns), new float64 arrays of the input's shape.

    >>> adv, ret = gae([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [False, True], [False, False], 1.0, 1.0)
    >>> adv.tolist(), ret.tolist()
    ([2.0, 1.0], [2.0, 1.0])
    """
    r = _float_array("rewards", rewards, ndims=(1, 2))
    shape = r.shape
    v = _float_array("values", values)
    nv = _float_array("next_values", next_values)
    for name, arr in (("values", v), ("next_values", nv)):
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (same as rewards); got {_describe(arr)}")
    term = _flag_array("terminated", terminated, shape)
    trunc = _flag_array("truncated", truncated, shape)
    g = _scalar("gamma", gamma, 0.0, 1.0)
    la = _scalar("lam", lam, 0.0, 1.0)
    as2d = (lambda a: a.reshape(shape[0], 1)) if r.ndim == 1 else (lambda a: a)
    adv = np.empty(shape)
    ret = np.empty(shape)
    _gae_kernel(as2d(r), as2d(v), as2d(nv), as2d(term), as2d(trunc), g, la, as2d(adv), as2d(ret))
    return adv, ret


# ---------------------------------------------------------------------------------------
# Softmax policies
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def _log_softmax_kernel(z, out):
    """log π_k = z_k − max(z) − log Σ_b exp(z_b − max(z)), row by row over (M, A)."""
    M, A = z.shape
    for m in range(M):
        zmax = z[m, 0]
        for k in range(1, A):
            if z[m, k] > zmax:
                zmax = z[m, k]
        s = 0.0
        for k in range(A):
            s += np.exp(z[m, k] - zmax)
        log_norm = zmax + np.log(s)
        for k in range(A):
            out[m, k] = z[m, k] - log_norm


@njit(cache=True)
def _softmax_kernel(z, out):
    """π_k = exp(z_k − max(z)) / Σ_b exp(z_b − max(z)), row by row over (M, A)."""
    M, A = z.shape
    for m in range(M):
        zmax = z[m, 0]
        for k in range(1, A):
            if z[m, k] > zmax:
                zmax = z[m, k]
        s = 0.0
        for k in range(A):
            e = np.exp(z[m, k] - zmax)
            out[m, k] = e
            s += e
        for k in range(A):
            out[m, k] /= s


def _logits(name: str, logits) -> np.ndarray:
    z = _float_array(name, logits)
    if z.ndim < 1 or z.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one axis with ≥ 1 action; got {_describe(z)}")
    return z


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis; stable for logits up to ±1e4 (max-shifted).

    >>> softmax([0.0, 0.0]).tolist()
    [0.5, 0.5]
    """
    z = _logits("logits", logits)
    out = np.empty(z.shape)
    _softmax_kernel(z.reshape(-1, z.shape[-1]), out.reshape(-1, z.shape[-1]))
    return out


def log_softmax(logits) -> np.ndarray:
    """Log-softmax over the last axis; finite for finite logits (never ``log(softmax)``)."""
    z = _logits("logits", logits)
    out = np.empty(z.shape)
    _log_softmax_kernel(z.reshape(-1, z.shape[-1]), out.reshape(-1, z.shape[-1]))
    return out


# ---------------------------------------------------------------------------------------
# E1–E7 — exact (tabular) oracles for a one-step game with joint table q(a^1..a^n)
# ---------------------------------------------------------------------------------------


def _contract(q: np.ndarray, policies: Sequence[np.ndarray], keep: int | None) -> np.ndarray:
    """Σ over every agent's action except ``keep``'s, weighted by that agent's policy."""
    out = q
    for j in reversed(range(q.ndim)):  # axis j is still at position j: only later axes are gone
        if j != keep:
            out = np.tensordot(out, policies[j], axes=([j], [0]))
    return out


def joint_value(q, policies) -> float:
    """E1 for a one-step game: ``V = Σ_a ∏_j π^j(a^j) q(a)``.

    >>> joint_value([[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]])
    0.5
    """
    q, pis = _payoff_and_policies(q, policies)
    return float(_contract(q, pis, None))


def marginal_q(q, policies, agent: int) -> np.ndarray:
    """E2: ``Q^i(a^i) = Σ_{a^-i} ∏_{j≠i} π^j(a^j) q(a^i, a^-i)`` → (A_i,)."""
    q, pis = _payoff_and_policies(q, policies)
    i = _agent_index(agent, q.ndim)
    return np.array(_contract(q, pis, i), dtype=np.float64)


def marginal_advantage(q, policies, agent: int) -> np.ndarray:
    """E3: ``A^i(a^i) = Q^i(a^i) − V``; satisfies ``Σ_a π^i(a) A^i(a) = 0``.

    >>> marginal_advantage([[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]], 0).tolist()
    [0.5, -0.5]
    """
    q, pis = _payoff_and_policies(q, policies)
    i = _agent_index(agent, q.ndim)
    return np.array(_contract(q, pis, i), dtype=np.float64) - float(_contract(q, pis, None))


def exact_policy_gradient(q, logits, agent: int) -> np.ndarray:
    """E4: ∇ of ``J(θ) = Σ_a ∏_j softmax(θ^j)(a^j) q(a)`` w.r.t. agent i's logits.

    ``∂J/∂θ^i_k = Σ_a π^i(a) (1[a=k] − π^i(k)) A^i(a) = π^i(k) (Q^i(k) − Σ_a π^i(a) Q^i(a))``.
    """
    q = _float_array("q", q)
    if q.ndim < 1:
        raise ValueError(f"q must be a joint table of shape (A_1, ..., A_n); got {_describe(q)}")
    if isinstance(logits, np.ndarray) and logits.ndim == 1:
        raise TypeError("logits must be a sequence of per-agent logit vectors, one per agent")
    logits = list(logits)
    if len(logits) != q.ndim:
        raise ValueError(f"logits must hold one vector per axis of q ({q.ndim}); got {len(logits)}")
    pis = []
    for j, z in enumerate(logits):
        z = _float_array(f"logits[{j}]", z, ndims=(1,))
        if z.size != q.shape[j]:
            raise ValueError(f"logits[{j}] must have length {q.shape[j]}; got {_describe(z)}")
        pis.append(softmax(z))
    i = _agent_index(agent, q.ndim)
    qi = np.asarray(_contract(q, pis, i), dtype=np.float64)   # Q^i (E2)
    return pis[i] * (qi - pis[i] @ qi)                          # π^i(k) A^i(k)


def joint_surrogate(q, old_policies, new_policies) -> float:
    """E5 for a one-step game: ``L = J(π_old) + Σ_a π_old(a) (∏_j ρ^j(a^j)) A_old(a)``.

    With exact expectations this equals J(π_new); sampled, it is the PPO joint objective.
    """
    q, old = _payoff_and_policies(q, old_policies, "old_policies")
    _, new = _payoff_and_policies(q, new_policies, "new_policies")
    v_old = float(_contract(q, old, None))
    return v_old + float(_contract(q - v_old, new, None))  # Σ π_old ∏ρ A = Σ π_new A


def synchronous_marginal_advantage(q, old_policies, new_policies, agent: int) -> np.ndarray:
    """E6: ``Ã^i(a^i) = E_{a^-i ~ π̃^-i}[A_old(a^i, a^-i)] = Q^i_{π̃^-i}(a^i) − V_old``.

    Agent i's own new policy does not enter; its partners' new policies do.
    """
    q, old = _payoff_and_policies(q, old_policies, "old_policies")
    _, new = _payoff_and_policies(q, new_policies, "new_policies")
    i = _agent_index(agent, q.ndim)
    v_old = float(_contract(q, old, None))
    return np.array(_contract(q, new, i), dtype=np.float64) - v_old


@njit(cache=True)
def _counterfactual_kernel(q_agent, pi_agent, actions, out):
    """Implements E7 (COMA): A^i_C = Q(a^i, a^-i) − Σ_b π^i(b) Q(b, a^-i), per sample."""
    N, A = q_agent.shape
    for n in range(N):
        baseline = 0.0  # counterfactual baseline Σ_b π^i(b) Q(s, (b, a^-i))
        for b in range(A):
            baseline += pi_agent[n, b] * q_agent[n, b]
        out[n] = q_agent[n, actions[n]] - baseline


def counterfactual_advantage(q_agent, pi_agent, actions_agent) -> np.ndarray:
    """COMA counterfactual advantage, batched. Implements E7.

    ``A^i_C(s, a) = Q(s, a) − Σ_b π^i(b|o^i) Q(s, (b, a^-i))``.

    Args:
        q_agent: (N, A) — ``Q(s, (b, a^-i))`` for every action b of agent i, partners fixed.
        pi_agent: (N, A) — agent i's policy rows (each sums to 1).
        actions_agent: (N,) — the action agent i took.
    """
    qa = _float_array("q_agent", q_agent, ndims=(2,))
    pa = _float_array("pi_agent", pi_agent, ndims=(2,))
    if pa.shape != qa.shape:
        raise ValueError(f"pi_agent must have shape {qa.shape} (same as q_agent); got {_describe(pa)}")
    if qa.shape[1] == 0:
        raise ValueError(f"q_agent must have at least one action column; got {_describe(qa)}")
    if np.any(pa < 0) or np.any(np.abs(pa.sum(axis=1) - 1.0) > 1e-8):
        raise ValueError("pi_agent rows must be non-negative and sum to 1 (±1e-8)")
    acts = _index_array("actions_agent", actions_agent, (qa.shape[0],), qa.shape[1])
    out = np.empty(qa.shape[0])
    _counterfactual_kernel(qa, pa, acts, out)
    return out


# ---------------------------------------------------------------------------------------
# E8 — approximatively synchronous weights, and the per-agent clipped surrogate
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def _sync_weights_kernel(log_ratios, lo, hi, out):
    """Implements E8: ``w^i = exp(Σ_{j≠i} log ρ^j)``, log weight clamped to [lo, hi].

    The partners' log ratios are summed directly (j ≠ i), never as ``total − own``, so a
    huge own ratio cannot cancel catastrophically.
    """
    N, n = log_ratios.shape
    for t in range(N):
        for i in range(n):
            s = 0.0
            for j in range(n):
                if j != i:
                    s += log_ratios[t, j]      # log ρ^j of partner j
            out[t, i] = np.exp(min(max(s, lo), hi))


def _log_ratio_table(log_ratios) -> np.ndarray:
    lr = _float_array("log_ratios", log_ratios, ndims=(2,))
    if lr.shape[1] == 0:
        raise ValueError(f"log_ratios must have one column per agent (n ≥ 1); got {_describe(lr)}")
    return lr


def sync_weights(log_ratios, clip: float | None = None) -> np.ndarray:
    """Approximatively synchronous weights ``w^i_t = ∏_{j≠i} ρ^j_t``. Implements E8.

    Computed in log space, ``w^i = exp(Σ_{j≠i} log ρ^j)``; with ``clip = c`` the weight is
    clipped to ``[1 − c, 1 + c]`` (done on the log, so nothing overflows). Without a clip
    the log weight saturates at ±LOG_WEIGHT_MAX (700) so the result stays finite.

    Args:
        log_ratios: (N, n) per-sample, per-agent ``log ρ^j = log π̃^j(a^j) − log π_old^j(a^j)``.
        clip: ``sync_clip`` c ≥ 0, or None for no clip.

    >>> sync_weights(np.log([[2.0, 3.0, 0.5]])).round(12).tolist()
    [[1.5, 1.0, 6.0]]
    """
    lr = _log_ratio_table(log_ratios)
    if clip is None:
        lo, hi = -LOG_WEIGHT_MAX, LOG_WEIGHT_MAX
    else:
        c = _scalar("clip", clip, 0.0, np.inf)
        lo = np.log(1.0 - c) if c < 1.0 else -LOG_WEIGHT_MAX
        hi = min(np.log1p(c), LOG_WEIGHT_MAX)
    out = np.empty(lr.shape)
    _sync_weights_kernel(lr, lo, hi, out)
    return out


@njit(cache=True)
def _sequential_weights_kernel(log_ratios, order, lo, hi, out):
    """Implements E9: ``M^{i_m} = exp(Σ_{l<m} log ρ^{i_l})``; M = 1 for the first agent."""
    N, n = log_ratios.shape
    for t in range(N):
        s = 0.0                              # Σ of log ratios of already-updated agents
        for m in range(n):
            i = order[m]
            out[t, i] = np.exp(min(max(s, lo), hi))
            s += log_ratios[t, i]


def sequential_weights(log_ratios, order) -> np.ndarray:
    """HAPPO-style sequential correction factors. Implements E9.

    Agents update one at a time in ``order`` (a permutation of 0..n−1); agent ``order[m]``
    gets ``M = ∏_{l<m} ρ^{order[l]}`` — the already-updated partners' ratios, exactly known.

    >>> sequential_weights(np.log([[2.0, 3.0, 0.5]]), [2, 0, 1]).round(12).tolist()
    [[0.5, 1.0, 1.0]]
    """
    lr = _log_ratio_table(log_ratios)
    n = lr.shape[1]
    o = _index_array("order", order, (n,), n)
    if np.unique(o).size != n:
        raise ValueError(f"order must be a permutation of 0..{n - 1}; got {o.tolist()}")
    out = np.empty(lr.shape)
    _sequential_weights_kernel(lr, o, -LOG_WEIGHT_MAX, LOG_WEIGHT_MAX, out)
    return out


@njit(cache=True)
def _clipped_surrogate_kernel(ratios, advantages, eps, out):
    """Implements E8's per-sample objective ``min(ρ Â, clip(ρ, 1−ε, 1+ε) Â)``."""
    for t in range(ratios.shape[0]):
        rho = ratios[t]
        clipped = min(max(rho, 1.0 - eps), 1.0 + eps)
        out[t] = min(rho * advantages[t], clipped * advantages[t])


def _same_length(name: str, x, n: int) -> np.ndarray:
    arr = _float_array(name, x, ndims=(1,))
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},); got {_describe(arr)}")
    return arr


def clipped_surrogate(ratios, advantages, clip_eps: float) -> np.ndarray:
    """Per-sample PPO clipped objective ``min(ρÂ, clip(ρ, 1−ε, 1+ε)Â)``. Implements E8.

    >>> clipped_surrogate([1.5, 0.5], [1.0, 1.0], 0.2).tolist()
    [1.2, 0.5]
    """
    rho = _float_array("ratios", ratios, ndims=(1,))
    if np.any(rho < 0):
        raise ValueError("ratios must be non-negative (they are probability ratios)")
    adv = _same_length("advantages", advantages, rho.shape[0])
    eps = _scalar("clip_eps", clip_eps, 0.0, 1.0)
    out = np.empty(rho.shape[0])
    _clipped_surrogate_kernel(rho, adv, eps, out)
    return out


@njit(cache=True)
def _clipped_surrogate_grad_kernel(logits, actions, old_log_probs, advantages, eps, max_log_ratio, out):
    """Implements ∇_z of E8's ``min(ρÂ, clip(ρ)Â)`` for softmax logits z, per sample.

    ρ = exp(log π(a) − log π_old(a)),  ∂ρ/∂z_k = ρ (1[k=a] − π_k).
    The gradient is zero where the clip binds: (Â > 0 and ρ > 1+ε) or (Â < 0 and ρ < 1−ε);
    at the boundary itself the unclipped branch is used. log ρ is saturated at
    ``max_log_ratio`` so that Â ρ stays finite.
    """
    N, A = logits.shape
    for t in range(N):
        a = actions[t]
        zmax = logits[t, 0]
        for k in range(1, A):
            if logits[t, k] > zmax:
                zmax = logits[t, k]
        s = 0.0
        for k in range(A):
            e = np.exp(logits[t, k] - zmax)
            out[t, k] = e
            s += e
        log_pi_a = logits[t, a] - zmax - np.log(s)
        rho = np.exp(min(log_pi_a - old_log_probs[t], max_log_ratio))  # ρ, saturated
        adv = advantages[t]
        binding = (adv > 0.0 and rho > 1.0 + eps) or (adv < 0.0 and rho < 1.0 - eps)
        g = 0.0 if binding else adv * rho
        for k in range(A):
            pi_k = out[t, k] / s
            out[t, k] = g * ((1.0 if k == a else 0.0) - pi_k)


def clipped_surrogate_grad(logits, actions, old_log_probs, advantages, clip_eps: float) -> np.ndarray:
    """Gradient of each sample's E8 objective w.r.t. its softmax logits → (N, A).

    ``∂/∂z_k min(ρÂ, clip(ρ)Â) = Â ρ (1[k=a] − π_k)`` where the unclipped term is the
    minimum, and 0 where the clip is active and binding.

    Args:
        logits: (N, A) current logits z of the acting agent.
        actions: (N,) actions taken.
        old_log_probs: (N,) log π_old(a_t) (from ``log_softmax`` of the old logits).
        advantages: (N,) advantages Â (for ASAE: already multiplied by w^i).
        clip_eps: PPO ε in [0, 1].
    """
    z = _float_array("logits", logits, ndims=(2,))
    if z.shape[1] == 0:
        raise ValueError(f"logits must have at least one action column; got {_describe(z)}")
    N = z.shape[0]
    acts = _index_array("actions", actions, (N,), z.shape[1])
    olp = _same_length("old_log_probs", old_log_probs, N)
    if np.any(olp > 1e-12):
        raise ValueError("old_log_probs must be ≤ 0 (they are log-probabilities)")
    adv = _same_length("advantages", advantages, N)
    eps = _scalar("clip_eps", clip_eps, 0.0, 1.0)
    out = np.empty(z.shape)
    _clipped_surrogate_grad_kernel(z, acts, olp, adv, eps, MAX_LOG_RATIO, out)
    return out
