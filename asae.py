"""asae — approximatively synchronous advantage estimation, a reference implementation.

Paper: L. Wan, X. Song, X. Lan, N. Zheng, "Multi-agent Policy Optimization with
Approximatively Synchronous Advantage Estimation", arXiv:2012.03488 (2020/2021).

The paper's full text is not reproduced here. The equations E1–E10 implemented below are
this project's precise statement of the paper's method (see ``EQUATIONS.md`` and the README),
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

Learners (tabular; any env with the batched ``reset``/``step`` interface): :func:`train`
with methods ``async`` (E7's asynchronous Ā^i), ``asae`` (E8), ``happo`` (E9), ``coma`` (E7)
and ``exact_sync`` (E6 exactly); :class:`Config`, :class:`TrainResult`, :func:`evaluate`;
:func:`advantage_bias` measures each method's exact bias against Ã^i (E6).

Design: each public function validates and casts its inputs (clear ``ValueError`` /
``TypeError`` naming the argument) and then calls a private ``@njit(cache=True)`` kernel
over plain arrays and scalars. No ``fastmath``: it would change NaN/inf handling and the
order of summation. Every kernel has a slow loop-for-loop twin in ``test_asae.py``.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Sequence
import time

import numpy as np
from numba import njit, prange

__all__ = [
    "gae", "softmax", "log_softmax", "joint_value", "marginal_q", "marginal_advantage",
    "exact_policy_gradient", "joint_surrogate", "synchronous_marginal_advantage",
    "counterfactual_advantage", "sync_weights", "sequential_weights",
    "clipped_surrogate", "clipped_surrogate_grad",
    "Config", "TrainResult", "train", "evaluate", "advantage_bias", "METHODS",
]

#: Log-space saturation of importance ratios and weights (a documented choice): a ratio or
#: weight is at most e^300 ≈ 2e130, so ρ·w·Â stays finite for any |Â| < 1e47. Below the
#: saturation the formulas are exact; above it the exact value would overflow float64.
MAX_LOG_RATIO = 300.0

#: Row-wise kernels (``sync_weights``, ``counterfactual_advantage``, ``clipped_surrogate_grad``) switch to a multi-threaded
#: twin (``parallel=True``, chunks of PARALLEL_CHUNK rows) at this many rows. Each row is
#: computed by the same code either way, so the results are bit-identical; below the
#: threshold thread start-up costs more than it saves. At large N these kernels are bound
#: by exp or by memory, like their NumPy equivalents, so one thread cannot beat NumPy by much.
PARALLEL_MIN_ROWS = 1 << 15
PARALLEL_CHUNK = 4096

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
def _gae_row(r, v, nv, te, tr, nxt, adv, ret, gamma, gl):
    """E10 for one time step over the batch (1-D rows); returns whether every δ_t is finite.

    Branch-free so that LLVM vectorises it: (1 − terminated) and (1 − done) enter as 0/1
    factors, bit-identical to the branchy form for finite inputs (0·x = ±0 adds nothing).
    ``δ − δ == 0`` is False exactly when δ is NaN or ±inf.
    """
    finite = True
    for b in range(r.shape[0]):
        not_term = 1.0 - np.float64(te[b])
        not_done = not_term * (1.0 - np.float64(tr[b]))
        delta = r[b] + gamma * not_term * nv[b] - v[b]                # TD error δ_t
        a = delta + gl * not_done * nxt[b]                            # λ-return recursion
        adv[b] = a
        ret[b] = a + v[b]
        finite &= (delta - delta) == 0.0
    return finite


@njit(cache=True)
def _gae_kernel(rewards, values, next_values, terminated, truncated, gamma, lam, adv, ret):
    """Implements E10 over (T, B) arrays, time-outer (backward) so each row is contiguous.

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)
    Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},   Â_T = 0,   R_t = Â_t + V(s_t)

    Returns True iff every δ_t is finite — barring float overflow, iff every r_t, V(s_t),
    V(s'_t) is (a NaN/inf operand makes δ_t non-finite even where terminated, as
    0·inf = NaN) — so the wrapper checks finiteness without extra passes over the data.
    Batches of ≥ 32 envs go row by row through the vectorised :func:`_gae_row`; narrower
    ones (where a row view costs more than the row) run the same arithmetic inline.
    """
    T, B = rewards.shape
    gl = gamma * lam
    finite = True
    if B >= 32:
        nxt = np.zeros(B)                                             # Â_T = 0
        for t in range(T - 1, -1, -1):
            finite &= _gae_row(rewards[t], values[t], next_values[t], terminated[t],
                               truncated[t], nxt, adv[t], ret[t], gamma, gl)
            nxt = adv[t]
        return finite
    carry = np.zeros(B)  # Â_{t+1} for each env; Â_T = 0
    for t in range(T - 1, -1, -1):
        for b in range(B):
            not_term = 1.0 - np.float64(terminated[t, b])
            not_done = not_term * (1.0 - np.float64(truncated[t, b]))
            delta = rewards[t, b] + gamma * not_term * next_values[t, b] - values[t, b]
            carry[b] = delta + gl * not_done * carry[b]
            adv[t, b] = carry[b]
            ret[t, b] = carry[b] + values[t, b]
            finite &= (delta - delta) == 0.0
    return finite


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
    r = _float_array("rewards", rewards, ndims=(1, 2), finite=False)   # finiteness: kernel
    shape = r.shape
    v = _float_array("values", values, finite=False)
    nv = _float_array("next_values", next_values, finite=False)
    for name, arr in (("values", v), ("next_values", nv)):
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (same as rewards); got {_describe(arr)}")
    term = _flag_array("terminated", terminated, shape)
    trunc = _flag_array("truncated", truncated, shape)
    g = _scalar("gamma", gamma, 0.0, 1.0)
    la = _scalar("lam", lam, 0.0, 1.0)
    as2d = (lambda a: a.reshape(shape[0], 1)) if r.ndim == 1 else (lambda a: a)
    # One block for both outputs: two separate large arrays make glibc trim and re-map the
    # heap on every call, and the page faults then cost more than the kernel.
    adv, ret = np.empty((2,) + shape)
    if not _gae_kernel(as2d(r), as2d(v), as2d(nv), as2d(term), as2d(trunc), g, la,
                       as2d(adv), as2d(ret)):
        for name, arr in (("rewards", r), ("values", v), ("next_values", nv)):
            _float_array(name, arr)  # raises for the first non-finite input
        # none: finite inputs overflowed; the (non-finite) result stands, as before
    return adv, ret


# ---------------------------------------------------------------------------------------
# Softmax policies
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def _max_sumexp(row):
    """(m, s) with m = max_k z_k and s = Σ_k exp(z_k − m) ≥ 1: the stable pieces of
    log Σ_k exp(z_k) = m + log s, shared by every softmax-based kernel below."""
    m = row[0]
    for k in range(1, row.shape[0]):
        if row[k] > m:
            m = row[k]
    s = 0.0
    for k in range(row.shape[0]):
        s += np.exp(row[k] - m)
    return m, s


@njit(cache=True)
def _log_softmax_kernel(z, out):
    """log π_k = z_k − max(z) − log Σ_b exp(z_b − max(z)), row by row over (M, A)."""
    M, A = z.shape
    for m in range(M):
        zmax, s = _max_sumexp(z[m])
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
def _counterfactual_rows(q_agent, pi_agent, actions, out, start, stop):
    """Implements E7 (COMA) on rows [start, stop): A^i_C = Q(a^i, a^-i) − Σ_b π^i(b) Q(b, a^-i).

    Returns True iff the inputs pass the wrapper's checks — finite q and π, π ≥ 0, rows
    summing to 1 ± 1e-8, actions in [0, A) — checked in the same pass over the data. A row
    whose action is out of range gets NaN (nothing is read out of bounds).
    """
    A = q_agent.shape[1]
    valid = True
    for n in range(start, stop):
        baseline = 0.0  # counterfactual baseline Σ_b π^i(b) Q(s, (b, a^-i))
        total = 0.0
        ok = True
        for b in range(A):
            p = pi_agent[n, b]
            qv = q_agent[n, b]
            baseline += p * qv
            total += p
            ok &= (p >= 0.0) & ((qv - qv) == 0.0) & ((p - p) == 0.0)
        valid &= ok & (abs(total - 1.0) <= 1e-8)
        a = actions[n]
        if 0 <= a < A:
            out[n] = q_agent[n, a] - baseline
        else:
            valid = False
            out[n] = np.nan
    return valid


@njit(cache=True)
def _counterfactual_kernel(q_agent, pi_agent, actions, out):
    """E7 for every row, one thread (see :func:`_counterfactual_rows`)."""
    return _counterfactual_rows(q_agent, pi_agent, actions, out, 0, q_agent.shape[0])


@njit(cache=True, parallel=True)
def _counterfactual_parallel(q_agent, pi_agent, actions, out, chunk):
    """E7, row chunks spread over threads; bit-identical to the serial kernel."""
    N = q_agent.shape[0]
    n_bad = 0
    for c in prange((N + chunk - 1) // chunk):
        ok = _counterfactual_rows(q_agent, pi_agent, actions, out, c * chunk, min(N, (c + 1) * chunk))
        n_bad += 0 if ok else 1
    return n_bad == 0


def counterfactual_advantage(q_agent, pi_agent, actions_agent) -> np.ndarray:
    """COMA counterfactual advantage, batched. Implements E7.

    ``A^i_C(s, a) = Q(s, a) − Σ_b π^i(b|o^i) Q(s, (b, a^-i))``.

    Args:
        q_agent: (N, A) — ``Q(s, (b, a^-i))`` for every action b of agent i, partners fixed.
        pi_agent: (N, A) — agent i's policy rows (each sums to 1).
        actions_agent: (N,) — the action agent i took.
    """
    qa = _float_array("q_agent", q_agent, ndims=(2,), finite=False)   # values: kernel
    pa = _float_array("pi_agent", pi_agent, ndims=(2,), finite=False)
    if pa.shape != qa.shape:
        raise ValueError(f"pi_agent must have shape {qa.shape} (same as q_agent); got {_describe(pa)}")
    if qa.shape[1] == 0:
        raise ValueError(f"q_agent must have at least one action column; got {_describe(qa)}")
    acts = np.asarray(actions_agent)
    if acts.dtype.kind not in "iu" or acts.shape != (qa.shape[0],):
        _index_array("actions_agent", acts, (qa.shape[0],), qa.shape[1])  # raises
    acts = np.ascontiguousarray(acts, dtype=np.int64)
    out = np.empty(qa.shape[0])
    if qa.shape[0] >= PARALLEL_MIN_ROWS:
        valid = _counterfactual_parallel(qa, pa, acts, out, PARALLEL_CHUNK)
    else:
        valid = _counterfactual_kernel(qa, pa, acts, out)
    if not valid:
        # Slow path: the NumPy checks, in their usual order, raise the precise error. (If
        # none fires, a row sum was within 1e-8 only in NumPy's summation order: result stands.)
        _float_array("q_agent", qa)
        _float_array("pi_agent", pa)
        if np.any(pa < 0) or np.any(np.abs(pa.sum(axis=1) - 1.0) > 1e-8):
            raise ValueError("pi_agent rows must be non-negative and sum to 1 (±1e-8)")
        _index_array("actions_agent", acts, (qa.shape[0],), qa.shape[1])
    return out


# ---------------------------------------------------------------------------------------
# E8 — approximatively synchronous weights, and the per-agent clipped surrogate
# ---------------------------------------------------------------------------------------


@njit(cache=True)
def _sync_weights_rows(log_ratios, lo, hi, out, start, stop):
    """Implements E8 on rows [start, stop): ``w^i = exp(Σ_{j≠i} log ρ^j)``, log clamped to [lo, hi].

    The partners' log ratios are summed directly — suffix Σ_{j>i} plus prefix Σ_{j<i},
    never ``total − own`` — so a huge own ratio cannot cancel catastrophically.
    Returns True iff every log ratio is finite (NaN/inf make the row sum non-finite).
    """
    n = log_ratios.shape[1]
    finite = True
    for t in range(start, stop):
        s = 0.0
        for i in range(n - 1, -1, -1):               # out ← Σ_{j>i} log ρ^j (suffix sums)
            out[t, i] = s
            s += log_ratios[t, i]
        finite &= (s - s) == 0.0
        p = 0.0
        for i in range(n):                           # + Σ_{j<i} log ρ^j (prefix), clamp, exp
            out[t, i] = np.exp(min(max(p + out[t, i], lo), hi))
            p += log_ratios[t, i]
    return finite


@njit(cache=True)
def _sync_weights_kernel(log_ratios, lo, hi, out):
    """E8 weights for every row, one thread (see :func:`_sync_weights_rows`)."""
    return _sync_weights_rows(log_ratios, lo, hi, out, 0, log_ratios.shape[0])


@njit(cache=True, parallel=True)
def _sync_weights_parallel(log_ratios, lo, hi, out, chunk):
    """E8 weights, row chunks spread over threads; bit-identical to the serial kernel."""
    N = log_ratios.shape[0]
    n_chunks = (N + chunk - 1) // chunk
    n_bad = 0
    for c in prange(n_chunks):
        ok = _sync_weights_rows(log_ratios, lo, hi, out, c * chunk, min(N, (c + 1) * chunk))
        n_bad += 0 if ok else 1
    return n_bad == 0


def _log_ratio_table(log_ratios) -> np.ndarray:
    lr = _float_array("log_ratios", log_ratios, ndims=(2,))
    if lr.shape[1] == 0:
        raise ValueError(f"log_ratios must have one column per agent (n ≥ 1); got {_describe(lr)}")
    return lr


def sync_weights(log_ratios, clip: float | None = None) -> np.ndarray:
    """Approximatively synchronous weights ``w^i_t = ∏_{j≠i} ρ^j_t``. Implements E8.

    Computed in log space, ``w^i = exp(Σ_{j≠i} log ρ^j)``; with ``clip = c`` the weight is
    clipped to ``[1 − c, 1 + c]`` (done on the log, so nothing overflows). Without a clip
    the log weight saturates at ±MAX_LOG_RATIO (300) so the result stays finite.

    Args:
        log_ratios: (N, n) per-sample, per-agent ``log ρ^j = log π̃^j(a^j) − log π_old^j(a^j)``.
        clip: ``sync_clip`` c ≥ 0, or None for no clip.

    >>> sync_weights(np.log([[2.0, 3.0, 0.5]])).round(12).tolist()
    [[1.5, 1.0, 6.0]]
    """
    lr = _float_array("log_ratios", log_ratios, ndims=(2,), finite=False)  # finite: kernel
    if lr.shape[1] == 0:
        raise ValueError(f"log_ratios must have one column per agent (n ≥ 1); got {_describe(lr)}")
    c = None if clip is None else _scalar("clip", clip, 0.0, np.inf)
    lo, hi = _weight_bounds(c)
    out = np.empty(lr.shape)
    if lr.shape[0] >= PARALLEL_MIN_ROWS:
        finite = _sync_weights_parallel(lr, lo, hi, out, PARALLEL_CHUNK)
    else:
        finite = _sync_weights_kernel(lr, lo, hi, out)
    if not finite:
        _log_ratio_table(lr)  # raises if a log ratio is NaN/inf (else: overflow, result stands)
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
    _sequential_weights_kernel(lr, o, -MAX_LOG_RATIO, MAX_LOG_RATIO, out)
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
def _clipped_surrogate_grad_rows(logits, actions, old_log_probs, advantages, eps, max_log_ratio, out,
                                 start, stop):
    """Implements ∇_z of E8's ``min(ρÂ, clip(ρ)Â)`` for softmax logits z, rows [start, stop).

    ρ = exp(log π(a) − log π_old(a)),  ∂ρ/∂z_k = ρ (1[k=a] − π_k).
    The gradient is zero where the clip binds: (Â > 0 and ρ > 1+ε) or (Â < 0 and ρ < 1−ε);
    at the boundary itself the unclipped branch is used. log ρ is saturated at
    ``max_log_ratio`` so that Â ρ stays finite.
    """
    A = logits.shape[1]
    for t in range(start, stop):
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


@njit(cache=True)
def _clipped_surrogate_grad_kernel(logits, actions, old_log_probs, advantages, eps, max_log_ratio, out):
    """E8 surrogate gradient for every row, one thread (see :func:`_clipped_surrogate_grad_rows`)."""
    _clipped_surrogate_grad_rows(logits, actions, old_log_probs, advantages, eps, max_log_ratio,
                                 out, 0, logits.shape[0])


@njit(cache=True, parallel=True)
def _clipped_surrogate_grad_parallel(logits, actions, old_log_probs, advantages, eps,
                                     max_log_ratio, out, chunk):
    """E8 surrogate gradient, row chunks spread over threads; bit-identical to the serial kernel."""
    N = logits.shape[0]
    for c in prange((N + chunk - 1) // chunk):
        _clipped_surrogate_grad_rows(logits, actions, old_log_probs, advantages, eps,
                                     max_log_ratio, out, c * chunk, min(N, (c + 1) * chunk))


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
    if N >= PARALLEL_MIN_ROWS:
        _clipped_surrogate_grad_parallel(z, acts, olp, adv, eps, MAX_LOG_RATIO, out, PARALLEL_CHUNK)
    else:
        _clipped_surrogate_grad_kernel(z, acts, olp, adv, eps, MAX_LOG_RATIO, out)
    return out


# =======================================================================================
# Learners: decentralised tabular softmax actors, centralised tabular critics (E7–E10)
# =======================================================================================

METHODS = ("async", "asae", "happo", "coma", "exact_sync")


@dataclass(frozen=True)
class Config:
    """Hyperparameters of :func:`train`. One documented field each; defaults are for the
    one-step matrix games with payoffs scaled to ~[-1, 1] (``reward_scale``)."""

    gamma: float = 0.99
    """Discount γ (E10). 0.99: standard; irrelevant in one-step games."""
    lam: float = 0.95
    """GAE λ (E10). 0.95: the usual PPO/MAPPO value."""
    clip_eps: float = 0.2
    """PPO ratio clip ε for each agent's sub-problem (E8). 0.2: the PPO/MAPPO default."""
    sync_clip: float | None = 0.5
    """**Our choice** (E8): ASAE weights w^i clipped to [1−c, 1+c]; None = no clip. 0.5 keeps
    every weight in [0.5, 1.5]: wide enough that inside the PPO range (n=2, ε=0.2 gives
    w ∈ [0.8, 1.2]) the clip never acts, and it bounds the variance when partners overshoot."""
    epochs: int = 4
    """Passes over each rollout per update (K in E8). 4: a common PPO setting."""
    minibatches: int = 4
    """Minibatches per epoch; each is one gradient step. 4 → 16 steps per update."""
    lr_actor: float = 1.0
    """SGD step size on the actors' logits (tabular, gradient of the batch-mean objective)."""
    lr_critic: float = 0.5
    """SGD step size of the tabular critics on ½(R − V)² (and ½(R − Q)² for COMA)."""
    entropy_coef: float = 0.01
    """Entropy bonus on each agent's policy. 0.01: a small, standard exploration bonus."""
    n_envs: int = 32
    """Parallel environments B per rollout."""
    rollout_len: int = 8
    """Steps T per environment per rollout; one update per rollout (N = T·B samples)."""
    iterations: int = 100
    """Number of rollout + update iterations."""
    seed: int = 0
    """Seed of every random choice (initial logits, sampling, minibatches, HAPPO order)."""
    init_logit_std: float = 1.0
    """Initial logits ~ N(0, std²), drawn from ``seed`` alone, so every method starts from the
    same policy under the same seed. 0 gives uniform policies (all seeds in one basin)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before learning (e.g. 1/max|payoff|); reported returns
    are unscaled."""
    track_bias: bool = False
    """Matrix games only: record the exact bias and second moment of the advantage each
    method uses at every gradient step (see :func:`advantage_bias`)."""
    record_policies: bool = False
    """Keep each iteration's policy tables (for exact expected-return curves)."""
    eval_episodes: int = 32
    """Episodes of the final greedy and stochastic evaluation."""

    def __post_init__(self):
        for name in ("gamma", "lam"):
            _scalar(name, getattr(self, name), 0.0, 1.0)
        _scalar("clip_eps", self.clip_eps, 0.0, 1.0)
        if self.sync_clip is not None:
            _scalar("sync_clip", self.sync_clip, 0.0, np.inf)
        for name in ("lr_actor", "lr_critic", "entropy_coef", "init_logit_std"):
            _scalar(name, getattr(self, name), 0.0, np.inf)
        _scalar("reward_scale", self.reward_scale, 0.0, np.inf, lo_open=True)
        for name in ("epochs", "minibatches", "n_envs", "rollout_len", "iterations", "eval_episodes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"Config.{name} must be an integer ≥ 1; got {v!r}")
        if self.minibatches > self.n_envs * self.rollout_len:
            raise ValueError(f"Config.minibatches ({self.minibatches}) must be ≤ n_envs·rollout_len "
                             f"({self.n_envs * self.rollout_len})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"Config.seed must be a non-negative integer; got {self.seed!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns. Curves have one entry per iteration."""

    method: str
    iterations: np.ndarray
    """(I,) iteration index 1..I (after that many updates)."""
    env_steps: np.ndarray
    """(I,) cumulative environment steps (each step of each env counts once)."""
    mean_return: np.ndarray
    """(I,) mean team return of the episodes that ended during that iteration's rollout
    (NaN if none ended)."""
    greedy_return: float
    """Mean team return of the final greedy (argmax) joint policy."""
    stochastic_return: float
    """Mean team return of the final stochastic joint policy."""
    greedy_optimal: bool
    """Whether the greedy joint policy reaches ``env.optimum`` (within 1e-6)."""
    wall_time: float
    """Seconds spent in :func:`train` (rollouts + updates + evaluation)."""
    logits: list
    """Final per-agent logits tables, each (n_obs, A_i)."""
    values: np.ndarray
    """Final critic V(state), (n_states,)."""
    policies: list | None = None
    """If ``record_policies``: per iteration, the per-agent probability tables (n_obs, A_i)
    at the start (index 0) and after each update."""
    bias: dict | None = None
    """If ``track_bias``: see :func:`advantage_bias`."""
    diagnostics: dict = field(default_factory=dict)
    """Numerics and identities: max |logit|, max ratio, max weight, all finite; max |w − 1| in
    the first minibatch of each update (asae); max |M − 1| of the first agent (happo)."""


def _check_env(env, method: str, cfg: Config, need_payoff: bool):
    for attr in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "reset", "step"):
        if not hasattr(env, attr):
            raise TypeError(f"env must provide the batched interface; missing attribute {attr!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if not isinstance(cfg, Config):
        raise TypeError(f"config must be an asae.Config; got {type(cfg).__name__}")
    if len(tuple(env.n_actions)) != env.n_agents:
        raise ValueError("env.n_actions must hold one action count per agent")
    if need_payoff:
        payoff = getattr(env, "payoff", None)
        if payoff is None or env.n_states != 1 or env.n_obs != 1:
            raise ValueError(f"method {method!r} / track_bias need a one-step matrix game "
                             "(env.payoff, one state, one observation)")
        payoff = _float_array("env.payoff", payoff)
        if payoff.shape != tuple(env.n_actions):
            raise ValueError(f"env.payoff must have shape {tuple(env.n_actions)}; got {payoff.shape}")
        return payoff
    return None


@njit(cache=True)
def _sample_kernel(table, obs, u, out):
    """a_t ~ softmax(table[obs_t]) by inverse CDF with uniforms u_t (one agent, a batch)."""
    A = table.shape[1]
    for b in range(obs.shape[0]):
        row = table[obs[b]]
        zmax, s = _max_sumexp(row)
        target = u[b] * s
        c = 0.0
        a = A - 1
        for k in range(A):
            c += np.exp(row[k] - zmax)
            if target < c:
                a = k
                break
        out[b] = a


@njit(cache=True)
def _gather_log_probs_kernel(table, obs, actions, out_lp):
    """log π(a_t | o_t) for a batch, via log-softmax of the gathered logits row."""
    for t in range(obs.shape[0]):
        row = table[obs[t]]
        zmax, s = _max_sumexp(row)
        out_lp[t] = row[actions[t]] - zmax - np.log(s)


@njit(cache=True)
def _entropy_grad_kernel(z, coef, out):
    """out += coef · ∂H/∂z, H(π) = −Σ_k π_k log π_k, ∂H/∂z_k = −π_k (log π_k + H)."""
    N, A = z.shape
    lp = np.empty(A)
    for t in range(N):
        zmax, s = _max_sumexp(z[t])
        H = 0.0
        for k in range(A):
            lp[k] = z[t, k] - zmax - np.log(s)
            H -= np.exp(lp[k]) * lp[k]
        for k in range(A):
            out[t, k] -= coef * np.exp(lp[k]) * (lp[k] + H)


@njit(cache=True)
def _scatter_add_rows_kernel(table, rows, grads, scale):
    """table[rows[t]] += scale · grads[t] (repeated rows accumulate)."""
    for t in range(rows.shape[0]):
        r = rows[t]
        for k in range(grads.shape[1]):
            table[r, k] += scale * grads[t, k]


class _Rollout:
    """Flattened samples of one rollout (N = T·B), plus episode statistics."""

    def __init__(self, obs, actions, rewards, terminated, truncated, states, next_states, ended):
        self.obs, self.actions, self.rewards = obs, actions, rewards
        self.terminated, self.truncated = terminated, truncated
        self.states, self.next_states, self.ended_returns = states, next_states, ended


def _rollout(env, logits, obs, state, ep_ret, T, rng):
    """Run T batched steps with the current stochastic policies. Returns (rollout, obs, state)."""
    B, n = obs.shape
    O = np.empty((T, B, n), np.int64)
    Acts = np.empty((T, B, n), np.int64)
    R = np.empty((T, B))
    TE = np.empty((T, B), np.bool_)
    TR = np.empty((T, B), np.bool_)
    S = np.empty((T, B), np.int64)
    S2 = np.empty((T, B), np.int64)
    ended = []
    act = np.empty((B, n), np.int64)
    col = np.empty(B, np.int64)
    for t in range(T):
        O[t], S[t] = obs, state
        u = rng.random((n, B))
        for i in range(n):
            _sample_kernel(logits[i], np.ascontiguousarray(obs[:, i]), u[i], col)
            act[:, i] = col
        Acts[t] = act
        obs, state, r, term, trunc, final = env.step(act)
        R[t], TE[t], TR[t] = r, term, trunc
        done = term | trunc
        # V(s'_t): the true next state; for a finished env the state it ended in (E10).
        S2[t] = np.where(done, final, state)
        ep_ret += r
        if done.any():
            ended.extend(ep_ret[done].tolist())
            ep_ret[done] = 0.0
    return _Rollout(O, Acts, R, TE, TR, S, S2, ended), obs, state


def _policy_tables(logits):
    return [softmax(z) for z in logits]


def _joint_index(actions, n_actions):
    """Flat index of each joint action (C order over agents)."""
    return np.ravel_multi_index(tuple(actions.T), n_actions).astype(np.int64)


def _coma_advantages(Q, states, actions, logits_old, obs, n_actions):
    """E7 for every agent: Q(s,a) − Σ_b π^i_old(b) Q(s,(b,a^-i)) from the tabular Q critic."""
    N, n = actions.shape
    flat = _joint_index(actions, n_actions)
    strides = np.array([int(np.prod(n_actions[i + 1:])) for i in range(n)], np.int64)
    out = np.empty((N, n))
    tmp = np.empty(N)
    for i in range(n):
        b = np.arange(n_actions[i])
        cf = flat[:, None] + (b[None, :] - actions[:, i:i + 1]) * strides[i]   # (b, a^-i)
        q_agent = np.ascontiguousarray(Q[states[:, None], cf])
        pi_agent = softmax(logits_old[i][obs[:, i]])
        _counterfactual_kernel(q_agent, pi_agent, np.ascontiguousarray(actions[:, i]), tmp)
        out[:, i] = tmp
    return out


def _exact_sync_table(payoff, v_old, current, i):
    """E6 against the partners' current policies: Q^i_{π_k^-i}(a^i) − V_old, over a^i."""
    return np.asarray(_contract(payoff, current, i), dtype=np.float64) - v_old


def _joint_log_ratio_table(current_logp, old_logp):
    """(∏A_j, n): log ρ^j(a^j) = log π_k^j(a^j) − log π_old^j(a^j) for every joint action,
    from per-agent log-probability vectors (``log_softmax`` of the logits)."""
    grids = np.meshgrid(*[c - o for c, o in zip(current_logp, old_logp)], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


class _BiasProbe:
    """Exact bias/variance of the per-agent advantage a method uses (matrix games only).

    At each gradient step, for agent i the method's *expected* advantage given a^i is
    ``u^i(a^i) = E_{a^-i~π_old^-i}[ω^i(a) A_old(a)]`` with the method's weight ω^i (1 for
    async and COMA — whose expectation is A^i_old by E7 — w^i of E8 for asae, M of E9 for
    happo, the unclipped E6 weight for exact_sync), and exact ``A_old = payoff − V_old``.
    After the update the target is Ã^i of E6 under the updated partners.

    Alongside, the same quantities with ω = 1 (the asynchronous estimate) are recorded at
    the same steps, so a method can be compared with async *on its own training path*.
    """

    def __init__(self, payoff):
        self.payoff = payoff
        self.abs_err, self.abs_err_async = [], []          # |u^i − Ã^i|, |A^i_old − Ã^i|
        self.second_moment, self.second_moment_async = [], []
        self.pending = []

    def start(self, old):
        self.v_old = float(_contract(self.payoff, old, None))
        self.A_old = self.payoff - self.v_old                      # exact A_{π_old}(a), E1
        self.p_old = _contract_outer(old)                          # π_old(a)
        n = self.payoff.ndim                                       # π_old^{-i}(a^{-i}) per agent
        self.p_partners = [_contract_outer([np.ones_like(p) if j == i else p
                                            for j, p in enumerate(old)]) for i in range(n)]
        self.pending = []

    def record(self, i, weights_i):
        """weights_i: ω^i(a) for every joint action, shaped like the payoff."""
        other_axes = tuple(j for j in range(self.payoff.ndim) if j != i)
        used = np.sum(self.p_partners[i] * weights_i * self.A_old, axis=other_axes)
        used_async = np.sum(self.p_partners[i] * self.A_old, axis=other_axes)   # A^i_old, E3
        self.pending.append((i, used, used_async))
        self.second_moment.append(float(np.sum(self.p_old * (weights_i * self.A_old) ** 2)))
        self.second_moment_async.append(float(np.sum(self.p_old * self.A_old ** 2)))

    def finish(self, new):
        targets = [np.asarray(_contract(self.payoff, new, i)) - self.v_old
                   for i in range(self.payoff.ndim)]
        for i, used, used_async in self.pending:
            self.abs_err.append(np.abs(used - targets[i]))
            self.abs_err_async.append(np.abs(used_async - targets[i]))
        self.pending = []

    def summary(self):
        mean = lambda xs: float(np.mean(np.concatenate([np.atleast_1d(x) for x in xs]))) if xs else float("nan")
        return {"mean_abs_bias": mean(self.abs_err),
                "mean_abs_bias_async": mean(self.abs_err_async),
                "mean_second_moment": mean(self.second_moment),
                "mean_second_moment_async": mean(self.second_moment_async),
                "n_steps": len(self.second_moment)}


def _contract_outer(policies):
    """π(a) = ∏_j π^j(a^j) as a joint table."""
    out = np.ones(())
    for p in policies:
        out = np.multiply.outer(out, p)
    return out


def _weight_bounds(clip):
    """Log-space bounds of the E8 weights: [log(1−c), log(1+c)], or ±MAX_LOG_RATIO."""
    if clip is None:
        return -MAX_LOG_RATIO, MAX_LOG_RATIO
    lo = np.log(1.0 - clip) if clip < 1.0 else -MAX_LOG_RATIO
    return lo, min(np.log1p(clip), MAX_LOG_RATIO)


class _Learner:
    """State of one training run: actors, critics, and the per-update logic of each method."""

    def __init__(self, env, method, cfg, payoff):
        self.env, self.method, self.cfg = env, method, cfg
        self.n = int(env.n_agents)
        self.A = tuple(int(k) for k in env.n_actions)
        init = np.random.default_rng([cfg.seed, 0])       # same initial logits for every method
        self.rng = np.random.default_rng([cfg.seed, 1])
        self.logits = [cfg.init_logit_std * init.standard_normal((int(env.n_obs), k)) for k in self.A]
        self.V = np.zeros(int(env.n_states))
        self.Q = np.zeros((int(env.n_states), int(np.prod(self.A)))) if method == "coma" else None
        self.payoff = payoff
        self.probe = _BiasProbe(payoff) if cfg.track_bias else None
        self.diag = dict(max_abs_logit=0.0, max_ratio=0.0, max_weight=0.0,
                         first_step_weight_dev=0.0, first_agent_M_dev=0.0, all_finite=True)

    # -- one update (E8/E9/E7 per method) on one rollout ----------------------------------
    def update(self, roll):
        cfg, n = self.cfg, self.n
        T, B, _ = roll.obs.shape
        N = T * B
        # E10: advantages and returns from the critic as it stands before this update.
        adv = np.empty((T, B))
        ret = np.empty((T, B))
        _gae_kernel(roll.rewards * cfg.reward_scale, self.V[roll.states], self.V[roll.next_states],
                    roll.terminated, roll.truncated, cfg.gamma, cfg.lam, adv, ret)
        self.obs = [np.ascontiguousarray(roll.obs[:, :, i].ravel()) for i in range(n)]
        self.act = [np.ascontiguousarray(roll.actions[:, :, i].ravel()) for i in range(n)]
        self.old_lp = np.empty((N, n))
        for i in range(n):
            _gather_log_probs_kernel(self.logits[i], self.obs[i], self.act[i], self.old_lp[:, i])
        adv, ret, states = adv.ravel(), ret.ravel(), roll.states.ravel()
        if self.method == "coma":
            self.base_adv = _coma_advantages(self.Q, states, roll.actions.reshape(N, n),
                                             self.logits, roll.obs.reshape(N, n), self.A)
        else:
            self.base_adv = np.repeat(adv[:, None], n, axis=1)
        if self.payoff is not None:
            self.old_pi = [softmax(z[0]) for z in self.logits]
            self.old_logp = [log_softmax(z[0]) for z in self.logits]
            self.v_old = float(_contract(self.payoff, self.old_pi, None))
            if self.probe:
                self.probe.start(self.old_pi)
        if self.method == "happo":
            self._update_sequential(N)
        else:
            self._update_simultaneous(N)
        if self.probe:
            self.probe.finish([softmax(z[0]) for z in self.logits])
        self._update_critics(states, ret, roll.actions.reshape(N, n))

    def _minibatches(self, N):
        for _ in range(self.cfg.epochs):
            yield from np.array_split(self.rng.permutation(N), self.cfg.minibatches)

    def _log_ratios(self, mb):
        """(len(mb), n) current log ρ^j = log π_θk^j(a^j) − log π_old^j(a^j)."""
        lr = np.empty((mb.size, self.n))
        for j in range(self.n):
            _gather_log_probs_kernel(self.logits[j], self.obs[j][mb], self.act[j][mb], lr[:, j])
        lr -= self.old_lp[mb]
        self.diag["max_ratio"] = max(self.diag["max_ratio"], float(np.exp(min(lr.max(), MAX_LOG_RATIO))))
        return lr

    def _actor_step(self, i, mb, adv_i):
        """One SGD ascent step of agent i's clipped sub-problem (E8) on minibatch mb."""
        cfg = self.cfg
        obs_i = self.obs[i][mb]
        z = self.logits[i][obs_i]
        g = np.empty_like(z)
        _clipped_surrogate_grad_kernel(z, self.act[i][mb], self.old_lp[mb, i],
                                       np.ascontiguousarray(adv_i), cfg.clip_eps, MAX_LOG_RATIO, g)
        if cfg.entropy_coef > 0:
            _entropy_grad_kernel(z, cfg.entropy_coef, g)
        _scatter_add_rows_kernel(self.logits[i], obs_i, g, cfg.lr_actor / mb.size)

    def _update_simultaneous(self, N):
        """async / coma / asae / exact_sync: every agent steps on every minibatch at once."""
        lo, hi = _weight_bounds(self.cfg.sync_clip)
        if self.method == "exact_sync":                   # scaled like the sampled rewards
            payoff_s = self.payoff * self.cfg.reward_scale
            v_old_s = self.v_old * self.cfg.reward_scale
        for step, mb in enumerate(self._minibatches(N)):
            lr = self._log_ratios(mb)
            adv = self.base_adv[mb]
            if self.method == "asae":                     # E8: w^i = ∏_{j≠i} ρ^j, a constant
                w = np.empty_like(lr)
                _sync_weights_kernel(lr, lo, hi, w)
                self.diag["max_weight"] = max(self.diag["max_weight"], float(w.max()))
                if step == 0:
                    self.diag["first_step_weight_dev"] = max(self.diag["first_step_weight_dev"],
                                                             float(np.abs(w - 1.0).max()))
                adv = w * adv
            elif self.method == "exact_sync":             # E6, exact, partners' current policies
                cur = [softmax(z[0]) for z in self.logits]
                adv = np.stack([_exact_sync_table(payoff_s, v_old_s, cur, i)[self.act[i][mb]]
                                for i in range(self.n)], axis=1)
            if self.probe:
                self._probe_simultaneous(lo, hi)
            for i in range(self.n):                       # weights fixed above: order irrelevant
                self._actor_step(i, mb, adv[:, i])

    def _update_sequential(self, N):
        """happo (E9): agents update one after another in a random order; agent i_m's
        advantage is multiplied by M = ∏_{l<m} ρ^{i_l} of the already-updated agents."""
        order = self.rng.permutation(self.n)
        all_rows = np.arange(N)
        for m, i in enumerate(order):
            M = np.empty((N, self.n))
            _sequential_weights_kernel(self._log_ratios(all_rows), order, -MAX_LOG_RATIO,
                                       MAX_LOG_RATIO, M)
            if m == 0:
                self.diag["first_agent_M_dev"] = max(self.diag["first_agent_M_dev"],
                                                     float(np.abs(M[:, i] - 1.0).max()))
            self.diag["max_weight"] = max(self.diag["max_weight"], float(M[:, i].max()))
            if self.probe:
                cur = [log_softmax(z[0]) for z in self.logits]
                W = np.empty((int(np.prod(self.A)), self.n))
                _sequential_weights_kernel(_joint_log_ratio_table(cur, self.old_logp), order,
                                           -MAX_LOG_RATIO, MAX_LOG_RATIO, W)
            for mb in self._minibatches(N):
                if self.probe:
                    self.probe.record(i, W[:, i].reshape(self.A))
                self._actor_step(i, mb, M[mb, i] * self.base_adv[mb, i])

    def _probe_simultaneous(self, lo, hi):
        """Record the exact expected advantage each agent uses at this step (bias study)."""
        if self.method in ("async", "coma"):
            for i in range(self.n):
                self.probe.record(i, np.ones(self.A))
            return
        cur = [log_softmax(z[0]) for z in self.logits]
        table = _joint_log_ratio_table(cur, self.old_logp)
        W = np.empty_like(table)
        if self.method == "asae":
            _sync_weights_kernel(table, lo, hi, W)
        else:                                              # exact_sync: unclipped E6 weight
            _sync_weights_kernel(table, -MAX_LOG_RATIO, MAX_LOG_RATIO, W)
        for i in range(self.n):
            self.probe.record(i, W[:, i].reshape(self.A))

    def _update_critics(self, states, ret, joint_actions):
        """SGD on ½(R_t − V(s_t))² (and ½(R_t − Q(s_t, a_t))² for COMA), tabular."""
        cfg = self.cfg
        flat = _joint_index(joint_actions, self.A) if self.Q is not None else None
        for mb in self._minibatches(states.size):
            s = states[mb]
            self.V += cfg.lr_critic / mb.size * np.bincount(s, ret[mb] - self.V[s],
                                                            minlength=self.V.size)
            if self.Q is not None:
                qi = s * self.Q.shape[1] + flat[mb]
                self.Q.ravel()[:] += cfg.lr_critic / mb.size * np.bincount(
                    qi, ret[mb] - self.Q.ravel()[qi], minlength=self.Q.size)

    def finish_diagnostics(self):
        d = self.diag
        d["max_abs_logit"] = max(float(np.abs(z).max()) for z in self.logits)
        d["all_finite"] = bool(all(np.all(np.isfinite(z)) for z in self.logits)
                               and np.all(np.isfinite(self.V))
                               and np.isfinite(d["max_ratio"]) and np.isfinite(d["max_weight"]))
        return d


def evaluate(env, logits, episodes: int = 32, greedy: bool = True, seed: int = 0) -> float:
    """Mean team return of one episode in each of ``episodes`` envs under the tabular
    policies ``logits`` (argmax actions if ``greedy``, else sampled)."""
    rng = np.random.default_rng([seed, 2])
    obs, _ = env.reset(episodes, seed=seed)
    ret = np.zeros(episodes)
    active = np.ones(episodes, bool)
    act = np.empty((episodes, len(logits)), np.int64)
    col = np.empty(episodes, np.int64)
    for _ in range(int(env.episode_limit)):
        for i, z in enumerate(logits):
            if greedy:
                act[:, i] = np.argmax(z[obs[:, i]], axis=1)
            else:
                _sample_kernel(z, np.ascontiguousarray(obs[:, i]), rng.random(episodes), col)
                act[:, i] = col
        obs, _, r, term, trunc, _ = env.step(act)
        ret += np.where(active, r, 0.0)
        active &= ~(term | trunc)
        if not active.any():
            break
    return float(ret.mean())


def train(env, method: str, config: Config | None = None) -> TrainResult:
    """Train decentralised tabular softmax actors on ``env`` with one of :data:`METHODS`.

    - ``"async"``: every agent uses the shared team advantage Â_t (MAPPO-style; E7's Ā^i).
    - ``"asae"``: the paper's method, Â^i_t = w^i_t Â_t with w^i from the partners' current
      in-update ratios (E8), clipped to [1 − sync_clip, 1 + sync_clip].
    - ``"happo"``: sequential updates in a random order with M of E9.
    - ``"coma"``: counterfactual advantage from a tabular Q(s, a) critic (E7).
    - ``"exact_sync"`` (one-step matrix games): the exact E6 advantage against the
      partners' current policies — asae without sampling noise.

    Every method uses the same PPO clip (E8) per agent, a tabular V critic trained on GAE
    returns (E10, truncated steps bootstrapped from ``final_state``), and the same initial
    logits under the same seed. ``env`` needs the batched interface ``reset(n_envs, seed)``,
    ``step(actions)`` and attributes n_agents, n_actions, n_states, n_obs, episode_limit
    (and ``payoff`` for exact_sync / track_bias; ``optimum`` for ``greedy_optimal``).
    Same config and seed → bit-identical result.
    """
    cfg = Config() if config is None else config
    if not isinstance(cfg, Config):
        raise TypeError(f"config must be an asae.Config; got {type(cfg).__name__}")
    payoff = _check_env(env, method, cfg, method == "exact_sync" or cfg.track_bias)
    t0 = time.perf_counter()
    L = _Learner(env, method, cfg, payoff)
    B, T = cfg.n_envs, cfg.rollout_len
    obs, state = env.reset(B, seed=int(L.rng.integers(2**31 - 1)))
    ep_ret = np.zeros(B)
    curve = np.full(cfg.iterations, np.nan)
    policies = [_policy_tables(L.logits)] if cfg.record_policies else None
    for it in range(cfg.iterations):
        roll, obs, state = _rollout(env, L.logits, obs, state, ep_ret, T, L.rng)
        if roll.ended_returns:
            curve[it] = float(np.mean(roll.ended_returns))
        L.update(roll)
        if policies is not None:
            policies.append(_policy_tables(L.logits))
    seed_eval = int(L.rng.integers(2**31 - 1))
    greedy = evaluate(env, L.logits, cfg.eval_episodes, True, seed_eval)
    stochastic = evaluate(env, L.logits, cfg.eval_episodes, False, seed_eval)
    optimum = getattr(env, "optimum", np.inf)
    return TrainResult(
        method=method, iterations=np.arange(1, cfg.iterations + 1),
        env_steps=np.arange(1, cfg.iterations + 1) * B * T, mean_return=curve,
        greedy_return=greedy, stochastic_return=stochastic,
        greedy_optimal=bool(greedy >= optimum - 1e-6), wall_time=time.perf_counter() - t0,
        logits=L.logits, values=L.V, policies=policies,
        bias=L.probe.summary() if L.probe else None, diagnostics=L.finish_diagnostics())


def advantage_bias(env, method: str, config: Config | None = None) -> dict:
    """Exact bias and variance of the advantage ``method`` uses, measured during training.

    Trains with ``track_bias=True`` on a one-step matrix game. At every gradient step and for
    every agent i, the method's expected advantage given a^i, ``E_{a^-i~π_old^-i}[ω^i A_old]``
    (ω^i its weight: 1, w^i of E8, M of E9, or the exact E6 ratio), is compared with the
    target Ã^i of E6 under the policies as they stand *after* the update.

    Returns ``{"mean_abs_bias", "mean_second_moment", "mean_abs_bias_async",
    "mean_second_moment_async", "n_steps"}``: the mean of |used − Ã^i| over steps, agents
    and actions (uniformly), and the mean over steps and agents of
    ``E_{a~π_old}[(ω^i A_old)²]`` (the per-sample second moment of the weighted estimate),
    in payoff units; the ``_async`` twins are the same with ω = 1 at the same steps (the
    asynchronous estimate on this method's own training path).
    """
    cfg = Config() if config is None else config
    cfg = Config(**{**cfg.__dict__, "track_bias": True})
    return train(env, method, cfg).bias
