"""Property tests of asae's equations (E1–E10, see EQUATIONS.md) and of every Numba kernel
against a slow, clearly-correct reference written loop-for-loop from the equation.

Profiles live in conftest.py (``ci``: derandomized, no deadline — JIT compiles never time out).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import pydoc
import re
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, example, given, strategies as st
from numpy.testing import assert_allclose

import asae
import envs
import envs_spread

RTOL, ATOL = 1e-10, 1e-12


# =======================================================================================
# Slow reference twins — plain Python loops, one line per term of the equation
# =======================================================================================


def ref_gae(r, v, nv, term, trunc, gamma, lam):
    """E10, scalar loops over each env column independently."""
    r2 = np.atleast_2d(np.asarray(r, float).T).T if np.ndim(r) == 1 else np.asarray(r, float)
    v2, nv2 = (np.asarray(x, float).reshape(r2.shape) for x in (v, nv))
    te, tr = (np.asarray(x, bool).reshape(r2.shape) for x in (term, trunc))
    T, B = r2.shape
    adv = np.zeros((T, B))
    for b in range(B):
        next_adv = 0.0                                   # Â_T = 0
        for t in reversed(range(T)):
            not_term = 0.0 if te[t, b] else 1.0
            not_done = 0.0 if (te[t, b] or tr[t, b]) else 1.0
            delta = r2[t, b] + gamma * not_term * nv2[t, b] - v2[t, b]
            next_adv = delta + gamma * lam * not_done * next_adv
            adv[t, b] = next_adv
    ret = adv + v2
    return adv.reshape(np.shape(r)), ret.reshape(np.shape(r))


def ref_log_softmax_row(z):
    m = max(z)
    s = 0.0
    for zk in z:
        s += math.exp(zk - m)
    return [zk - m - math.log(s) for zk in z]


def ref_softmax_row(z):
    m = max(z)
    e = [math.exp(zk - m) for zk in z]
    s = 0.0
    for ek in e:
        s += ek
    return [ek / s for ek in e]


def ref_joint_value(q, pis):
    """E1: Σ_a ∏_j π^j(a^j) q(a) by enumeration."""
    total = 0.0
    for a in itertools.product(*(range(k) for k in q.shape)):
        p = 1.0
        for j, aj in enumerate(a):
            p *= pis[j][aj]
        total += p * q[a]
    return total


def ref_marginal_q(q, pis, i):
    """E2: Q^i(a^i) = Σ_{a^-i} ∏_{j≠i} π^j(a^j) q(a)."""
    out = np.zeros(q.shape[i])
    for a in itertools.product(*(range(k) for k in q.shape)):
        p = 1.0
        for j, aj in enumerate(a):
            if j != i:
                p *= pis[j][aj]
        out[a[i]] += p * q[a]
    return out


def ref_counterfactual(qa, pa, acts):
    """E7: Q(a) − Σ_b π(b) Q(b, a^-i)."""
    out = np.zeros(len(acts))
    for n in range(len(acts)):
        base = 0.0
        for b in range(qa.shape[1]):
            base += pa[n][b] * qa[n][b]
        out[n] = qa[n][acts[n]] - base
    return out


def ref_sync_weights(lr, clip=None):
    """E8: w^i = ∏_{j≠i} ρ^j (product of ratios, computed via exp of a log-sum)."""
    N, n = lr.shape
    out = np.zeros((N, n))
    for t in range(N):
        for i in range(n):
            s = 0.0
            for j in range(n):
                if j != i:
                    s += lr[t][j]
            s = min(max(s, -asae.MAX_LOG_RATIO), asae.MAX_LOG_RATIO)
            w = math.exp(s)
            if clip is not None:
                w = min(max(w, 1.0 - clip), 1.0 + clip)
            out[t, i] = w
    return out


def ref_sequential_weights(lr, order):
    """E9: M^{i_m} = ∏_{l<m} ρ^{i_l}."""
    N, n = lr.shape
    out = np.zeros((N, n))
    for t in range(N):
        for m, i in enumerate(order):
            s = 0.0
            for l in range(m):
                s += lr[t][order[l]]
            out[t, i] = math.exp(s)
    return out


def ref_clipped_surrogate(rho, adv, eps):
    return np.array([min(p * a, min(max(p, 1 - eps), 1 + eps) * a) for p, a in zip(rho, adv)])


def ref_clipped_surrogate_grad(z, acts, olp, adv, eps):
    """∂/∂z_k min(ρÂ, clip(ρ)Â) = Â ρ (1[k=a] − π_k) unless the clip binds."""
    N, A = z.shape
    out = np.zeros((N, A))
    for t in range(N):
        pi = ref_softmax_row(list(z[t]))
        logpi = ref_log_softmax_row(list(z[t]))
        rho = math.exp(min(logpi[acts[t]] - olp[t], asae.MAX_LOG_RATIO))
        binding = (adv[t] > 0 and rho > 1 + eps) or (adv[t] < 0 and rho < 1 - eps)
        for k in range(A):
            out[t, k] = 0.0 if binding else adv[t] * rho * ((k == acts[t]) - pi[k])
    return out


# =======================================================================================
# Strategies
# =======================================================================================

finite = st.floats(-10.0, 10.0, allow_nan=False)
unit = st.floats(0.0, 1.0)


def arrays(draw, shape, elements=finite):
    n = int(np.prod(shape))
    return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=float).reshape(shape)


@st.composite
def gae_inputs(draw):
    T = draw(st.integers(1, 24))
    # B ≥ 32 exercises the kernel's vectorised row path, B < 32 its scalar path
    shape = (T,) if draw(st.booleans()) else (T, draw(st.sampled_from([1, 2, 3, 5, 31, 32, 40])))
    n = int(np.prod(shape))
    flags = lambda: np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n))).reshape(shape)
    return dict(rewards=arrays(draw, shape), values=arrays(draw, shape),
                next_values=arrays(draw, shape), terminated=flags(), truncated=flags(),
                gamma=draw(unit), lam=draw(unit))


@st.composite
def simplex(draw, size, min_mass=0.0):
    """A probability vector: positive weights normalised (full support when min_mass > 0)."""
    w = np.array(draw(st.lists(st.floats(min_mass, 1.0), min_size=size, max_size=size)))
    if w.sum() <= 0:
        w[draw(st.integers(0, size - 1))] = 1.0
    return w / w.sum()


@st.composite
def games(draw, max_agents=3, max_actions=4, min_mass=0.0):
    """A one-step game: joint table q (A_1..A_n), policies on the simplex, and an agent."""
    n = draw(st.integers(1, max_agents))
    shape = tuple(draw(st.integers(1, max_actions)) for _ in range(n))
    q = arrays(draw, shape)
    pis = [draw(simplex(k, min_mass)) for k in shape]
    return q, pis, draw(st.integers(0, n - 1))


@st.composite
def old_new_games(draw):
    """A game with full-support old policies and new policies nearby or far away."""
    q, old, i = draw(games(min_mass=0.05))
    new = [draw(simplex(len(p), 0.05)) for p in old]
    return q, old, new, i


@st.composite
def logit_batches(draw, max_abs=20.0):
    N = draw(st.integers(1, 12))
    A = draw(st.integers(1, 5))
    z = arrays(draw, (N, A), st.floats(-max_abs, max_abs))
    acts = np.array(draw(st.lists(st.integers(0, A - 1), min_size=N, max_size=N)), dtype=np.int64)
    return z, acts


# =======================================================================================
# E10 — GAE
# =======================================================================================


@given(gae_inputs())
@example(dict(rewards=np.array([1.0]), values=np.array([0.5]), next_values=np.array([2.0]),
              terminated=np.array([False]), truncated=np.array([True]), gamma=0.9, lam=0.95))
def test_gae_matches_reference(d):
    adv, ret = asae.gae(**d)
    ref_adv, ref_ret = ref_gae(d["rewards"], d["values"], d["next_values"], d["terminated"],
                               d["truncated"], d["gamma"], d["lam"])
    assert adv.shape == ret.shape == d["rewards"].shape
    assert_allclose(adv, ref_adv, rtol=RTOL, atol=ATOL)
    assert_allclose(ret, ref_ret, rtol=RTOL, atol=ATOL)


@given(gae_inputs())
def test_gae_lambda_zero_is_td_error(d):
    d["lam"] = 0.0
    adv, _ = asae.gae(**d)
    not_term = ~d["terminated"]
    delta = d["rewards"] + d["gamma"] * not_term * d["next_values"] - d["values"]
    assert_allclose(adv, delta, rtol=RTOL, atol=ATOL)


@given(gae_inputs())
def test_gae_monte_carlo_when_lambda_gamma_one(d):
    """λ = γ = 1, no truncation, last step terminated: Â_t = Σ_{k≥t in episode} r_k − V(s_t)."""
    d.update(lam=1.0, gamma=1.0)
    d["truncated"] = np.zeros_like(d["truncated"])
    d["terminated"] = d["terminated"].copy()
    d["terminated"][-1] = True
    d["next_values"] = np.roll(d["values"], -1, axis=0)  # consistent V(s'_t) = V(s_{t+1})
    adv, _ = asae.gae(**d)
    r = d["rewards"].reshape(len(d["rewards"]), -1)
    term = d["terminated"].reshape(r.shape)
    mc = np.zeros_like(r)
    for b in range(r.shape[1]):
        for t in range(r.shape[0]):
            g, k = 0.0, t
            while True:
                g += r[k, b]
                if term[k, b]:
                    break
                k += 1
            mc[t, b] = g
    assert_allclose(adv, mc.reshape(adv.shape) - d["values"], rtol=1e-9, atol=1e-9)


@given(gae_inputs(), finite, finite)
def test_gae_linear_in_rewards(d, alpha, beta):
    """With V = 0, Â is linear in r: Â(αr₁ + βr₂) = αÂ(r₁) + βÂ(r₂)."""
    zero = np.zeros_like(d["rewards"])
    base = dict(d, values=zero, next_values=zero)
    r1, r2 = d["rewards"], d["values"]  # reuse a second drawn array as r₂
    a1, _ = asae.gae(**dict(base, rewards=r1))
    a2, _ = asae.gae(**dict(base, rewards=r2))
    a12, _ = asae.gae(**dict(base, rewards=alpha * r1 + beta * r2))
    assert_allclose(a12, alpha * a1 + beta * a2, rtol=1e-9, atol=1e-9)


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), finite, finite)
def test_gae_truncation_bootstraps_termination_does_not(gamma, lam, r, v_next):
    kw = dict(rewards=[r], values=[0.0], next_values=[v_next], gamma=gamma, lam=lam)
    a_trunc, _ = asae.gae(terminated=[False], truncated=[True], **kw)
    a_term, _ = asae.gae(terminated=[True], truncated=[False], **kw)
    assert_allclose(a_trunc, [r + gamma * v_next], rtol=RTOL, atol=ATOL)
    assert_allclose(a_term, [r], rtol=RTOL, atol=ATOL)


@given(gae_inputs(), st.sampled_from(["terminated", "truncated"]))
def test_gae_trace_stops_at_done(d, kind):
    """Â at a done step does not depend on any later reward."""
    r = d["rewards"].reshape(len(d["rewards"]), -1)
    flags = d[kind].reshape(r.shape).copy()
    flags[0, :] = True
    d[kind] = flags.reshape(d[kind].shape)
    a1, _ = asae.gae(**d)
    later = d["rewards"].copy()
    later.reshape(r.shape)[1:] += 5.0
    a2, _ = asae.gae(**dict(d, rewards=later))
    assert_allclose(a1.reshape(r.shape)[0], a2.reshape(r.shape)[0], rtol=RTOL, atol=ATOL)


# =======================================================================================
# softmax / log_softmax
# =======================================================================================


@given(logit_batches(max_abs=1e4))
@example((np.array([[1e4, -1e4, 0.0]]), np.array([0])))
def test_softmax_kernels_match_reference_and_are_finite(zb):
    z, _ = zb
    p, lp = asae.softmax(z), asae.log_softmax(z)
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(lp))
    assert_allclose(p, [ref_softmax_row(list(row)) for row in z], rtol=RTOL, atol=ATOL)
    assert_allclose(lp, [ref_log_softmax_row(list(row)) for row in z], rtol=RTOL, atol=ATOL)
    assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)


@given(st.lists(st.integers(-60, 60), min_size=1, max_size=6), st.integers(0, 1020),
       st.sampled_from([-1.0, 1.0]))
@example([0, 0], 53, 1.0)           # [2^53, 2^53]: the old z − (m + log s) gave [0, 0]
@example([0, 0], 1020, 1.0)
def test_log_softmax_is_accurate_at_any_scale(d, k, sign):
    """log π is invariant to a common offset of the logits, at every finite scale: for
    z = ±2^k + d the row's differences z − max z are exact, and log_softmax(z) equals
    log_softmax(z − max z), sums to one in probability and is ≤ 0."""
    z = sign * 2.0 ** k + np.array(d, dtype=float)
    lp = asae.log_softmax(z)
    assert np.array_equal(lp, asae.log_softmax(z - z.max()))
    assert np.all(lp <= 0.0) and math.isclose(np.exp(lp).sum(), 1.0, rel_tol=1e-12)
    ref = [ref_log_softmax_row(list(z - z.max()))]
    assert_allclose(lp, ref[0], rtol=1e-13, atol=1e-15)

def test_softmax_any_leading_shape():
    z = np.arange(24.0).reshape(2, 3, 4)
    assert_allclose(asae.softmax(z).reshape(6, 4), asae.softmax(z.reshape(6, 4)), rtol=RTOL)
    assert asae.log_softmax(z[0, 0]).shape == (4,)


# =======================================================================================
# E1–E4 — values, marginal Q/advantage, exact policy gradient
# =======================================================================================


@given(games())
def test_joint_value_and_marginal_q_match_enumeration(g):
    q, pis, i = g
    assert math.isclose(asae.joint_value(q, pis), ref_joint_value(q, pis), rel_tol=RTOL, abs_tol=1e-11)
    assert_allclose(asae.marginal_q(q, pis, i), ref_marginal_q(q, pis, i), rtol=RTOL, atol=1e-11)


@given(games())
def test_marginal_advantage_has_zero_mean_under_own_policy(g):
    """E3: Σ_a π^i(a) A^i(a) = 0."""
    q, pis, i = g
    A = asae.marginal_advantage(q, pis, i)
    assert abs(pis[i] @ A) < 1e-10
    assert_allclose(A, ref_marginal_q(q, pis, i) - ref_joint_value(q, pis), rtol=RTOL, atol=1e-11)


@given(games(max_agents=1))
def test_single_agent_marginal_advantage_is_the_advantage(g):
    """E3 with n = 1: A^1(a) = q(a) − Σ_b π(b) q(b)."""
    q, pis, _ = g
    assert_allclose(asae.marginal_advantage(q, pis, 0), q - pis[0] @ q, rtol=RTOL, atol=1e-11)


@given(games(), st.data())
def test_deterministic_partners_give_joint_advantage(g, data):
    """E3: partners deterministic at a^-i ⇒ A^i(a^i) = A(a^i, a^-i)."""
    q, pis, i = g
    fixed = [data.draw(st.integers(0, k - 1)) for k in q.shape]
    pis = [p if j == i else np.eye(q.shape[j])[fixed[j]] for j, p in enumerate(pis)]
    idx = tuple(slice(None) if j == i else fixed[j] for j in range(q.ndim))
    v = ref_joint_value(q, pis)
    assert_allclose(asae.marginal_advantage(q, pis, i), q[idx] - v, rtol=RTOL, atol=1e-11)


@st.composite
def logit_games(draw):
    q, pis, i = draw(games())
    logits = [arrays(draw, (k,), st.floats(-3.0, 3.0)) for k in q.shape]
    return q, logits, i


@given(logit_games())
def test_exact_policy_gradient_identities(g):
    """E4: ∇J = Σ_a π^i(a) ∇log π^i(a) A^i(a) = central finite difference of J."""
    q, logits, i = g
    grad = asae.exact_policy_gradient(q, logits, i)
    pis = [np.array(ref_softmax_row(list(z))) for z in logits]
    Ai = ref_marginal_q(q, pis, i) - ref_joint_value(q, pis)
    K = q.shape[i]
    score = np.zeros(K)                 # Σ_a π(a) ∇_z log π(a) A^i(a), ∇_z log π(a) = e_a − π
    for a in range(K):
        score += pis[i][a] * (np.eye(K)[a] - pis[i]) * Ai[a]
    assert_allclose(grad, score, rtol=1e-9, atol=1e-11)
    h = 1e-5
    fd = np.zeros(K)
    for k in range(K):
        zp, zm = [z.copy() for z in logits], [z.copy() for z in logits]
        zp[i][k] += h
        zm[i][k] -= h
        J = lambda zs: ref_joint_value(q, [np.array(ref_softmax_row(list(z))) for z in zs])
        fd[k] = (J(zp) - J(zm)) / (2 * h)
    assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


# =======================================================================================
# E5–E7 — joint surrogate, synchronous advantage, asynchronous bias, COMA
# =======================================================================================


def ref_expect_prod_ratio_adv(q, old, new, skip=None, minus_one=False):
    """E_{a~π_old}[(∏_{j≠skip} ρ^j − minus_one) A_old(a)] by enumeration, as a vector over
    a^skip when skip is given (then the expectation is over a^-skip only)."""
    v_old = ref_joint_value(q, old)
    out = np.zeros(q.shape[skip]) if skip is not None else np.zeros(1)
    for a in itertools.product(*(range(k) for k in q.shape)):
        p, w = 1.0, 1.0
        for j, aj in enumerate(a):
            if j != skip:
                p *= old[j][aj]
                w *= new[j][aj] / old[j][aj]
        out[a[skip] if skip is not None else 0] += p * (w - minus_one) * (q[a] - v_old)
    return out


@given(old_new_games())
def test_joint_surrogate_matches_enumeration(g):
    """E5: L = J(π_old) + E_{a~π_old}[∏ρ A_old]; exact expectations give J(π_new)."""
    q, old, new, _ = g
    L = asae.joint_surrogate(q, old, new)
    ref = ref_joint_value(q, old) + ref_expect_prod_ratio_adv(q, old, new)[0]
    assert math.isclose(L, ref, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(L, ref_joint_value(q, new), rel_tol=1e-9, abs_tol=1e-9)


@given(old_new_games())
def test_synchronous_decomposition(g):
    """E6: E_{a~π_old}[∏_j ρ^j A] = E_{a^i~π_old^i}[ρ^i Ã^i(a^i)] for every agent i."""
    q, old, new, _ = g
    lhs = ref_expect_prod_ratio_adv(q, old, new)[0]
    for i in range(q.ndim):
        At = asae.synchronous_marginal_advantage(q, old, new, i)
        assert_allclose(At, ref_expect_prod_ratio_adv(q, old, new, skip=i), rtol=1e-9, atol=1e-9)
        rhs = sum(old[i][a] * (new[i][a] / old[i][a]) * At[a] for a in range(q.shape[i]))
        assert math.isclose(lhs, rhs, rel_tol=1e-9, abs_tol=1e-9)


@given(old_new_games())
def test_synchronous_equals_asynchronous_when_partners_do_not_move(g):
    q, old, new, i = g
    same = [new[j] if j == i else old[j] for j in range(q.ndim)]
    assert_allclose(asae.synchronous_marginal_advantage(q, old, same, i),
                    asae.marginal_advantage(q, old, i), rtol=1e-9, atol=1e-10)


@given(old_new_games())
def test_asynchronous_bias_formula(g):
    """E7: Ã^i − Ā^i = E_{a^-i~π_old^-i}[(∏_{j≠i} ρ^j − 1) A_old]."""
    q, old, new, i = g
    bias = asae.synchronous_marginal_advantage(q, old, new, i) - asae.marginal_advantage(q, old, i)
    assert_allclose(bias, ref_expect_prod_ratio_adv(q, old, new, skip=i, minus_one=True),
                    rtol=1e-9, atol=1e-9)


@st.composite
def coma_batches(draw):
    N = draw(st.integers(1, 12))
    A = draw(st.integers(1, 5))
    qa = arrays(draw, (N, A))
    pa = np.stack([draw(simplex(A)) for _ in range(N)])
    acts = np.array(draw(st.lists(st.integers(0, A - 1), min_size=N, max_size=N)), dtype=np.int64)
    return qa, pa, acts


@given(coma_batches())
def test_counterfactual_kernel_matches_reference(b):
    qa, pa, acts = b
    assert_allclose(asae.counterfactual_advantage(qa, pa, acts), ref_counterfactual(qa, pa, acts),
                    rtol=RTOL, atol=ATOL)


@given(games(min_mass=0.0))
def test_coma_mean_over_partners_is_marginal_advantage(g):
    """E7: E_{a^-i~π^-i}[A^i_C(a^i, a^-i)] = A^i(a^i), by exact enumeration over a^-i."""
    q, pis, i = g
    joint = list(itertools.product(*(range(k) for k in q.shape)))
    q_agent = np.array([[q[a[:i] + (b,) + a[i + 1:]] for b in range(q.shape[i])] for a in joint])
    pi_agent = np.tile(pis[i], (len(joint), 1))
    acts = np.array([a[i] for a in joint], dtype=np.int64)
    coma = asae.counterfactual_advantage(q_agent, pi_agent, acts)
    mean = np.zeros(q.shape[i])
    for a, c in zip(joint, coma):
        w = 1.0
        for j, aj in enumerate(a):
            if j != i:
                w *= pis[j][aj]
        mean[a[i]] += w * c
    assert_allclose(mean, asae.marginal_advantage(q, pis, i), rtol=1e-9, atol=1e-10)


# =======================================================================================
# E8 — synchronous weights and the per-agent clipped surrogate; E9 — sequential weights
# =======================================================================================


@st.composite
def log_ratio_tables(draw, max_abs=50.0):
    N = draw(st.integers(1, 10))
    n = draw(st.integers(1, 5))
    return arrays(draw, (N, n), st.floats(-max_abs, max_abs))


@given(log_ratio_tables(), st.one_of(st.none(), st.floats(0.0, 2.0)))
@example(np.full((2, 3), 50.0), None)
def test_sync_weights_match_reference(lr, clip):
    w = asae.sync_weights(lr, clip)
    assert np.all(np.isfinite(w))
    assert_allclose(w, ref_sync_weights(lr, clip), rtol=1e-10, atol=ATOL)


@given(st.integers(1, 10), st.integers(1, 6), st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_sync_weights_are_one_at_start_of_update(N, n, clip):
    """E8: all ρ = 1 ⇒ w = 1 (ASAE = asynchronous at the start of an update)."""
    assert_allclose(asae.sync_weights(np.zeros((N, n)), clip), 1.0, rtol=0, atol=0)


def test_sync_weights_single_agent_is_one():
    assert_allclose(asae.sync_weights(np.array([[3.0], [-7.0]])), 1.0, rtol=0, atol=0)


@given(log_ratio_tables(), st.data())
def test_sequential_weights_match_reference(lr, data):
    n = lr.shape[1]
    order = np.array(data.draw(st.permutations(range(n))), dtype=np.int64)
    M = asae.sequential_weights(lr, order)
    assert_allclose(M[:, order[0]], 1.0, rtol=0, atol=0)        # E9: first agent M = 1
    assert_allclose(M, ref_sequential_weights(lr, order), rtol=1e-10, atol=ATOL)


@given(st.lists(st.floats(0.0, 5.0), min_size=1, max_size=20), st.data(), st.floats(0.0, 1.0))
def test_clipped_surrogate_matches_reference(rho, data, eps):
    adv = data.draw(st.lists(finite, min_size=len(rho), max_size=len(rho)))
    assert_allclose(asae.clipped_surrogate(rho, adv, eps), ref_clipped_surrogate(rho, adv, eps),
                    rtol=RTOL, atol=ATOL)


@st.composite
def surrogate_batches(draw, max_abs=5.0):
    z, acts = draw(logit_batches(max_abs=max_abs))
    z_old = z + arrays(draw, z.shape, st.floats(-1.0, 1.0))
    olp = asae.log_softmax(z_old)[np.arange(len(acts)), acts]
    adv = arrays(draw, (len(acts),))
    return z, acts, olp, adv, draw(st.floats(0.05, 0.5))


@given(surrogate_batches())
def test_clipped_surrogate_grad_matches_reference(b):
    z, acts, olp, adv, eps = b
    assert_allclose(asae.clipped_surrogate_grad(z, acts, olp, adv, eps),
                    ref_clipped_surrogate_grad(z, acts, olp, adv, eps), rtol=RTOL, atol=ATOL)


def _surrogate_objective(z, acts, olp, adv, eps):
    rho = np.exp(asae.log_softmax(z)[np.arange(len(acts)), acts] - olp)
    return asae.clipped_surrogate(rho, adv, eps)


@given(surrogate_batches())
def test_clipped_surrogate_grad_matches_finite_differences(b):
    """Each sample's gradient equals a central difference, away from the clip boundary."""
    z, acts, olp, adv, eps = b
    grad = asae.clipped_surrogate_grad(z, acts, olp, adv, eps)
    rho = np.exp(asae.log_softmax(z)[np.arange(len(acts)), acts] - olp)
    h = 1e-6
    away = (np.abs(rho - (1 + eps)) > 1e-3) & (np.abs(rho - (1 - eps)) > 1e-3)
    assume(away.any())                                   # never pass vacuously
    for k in range(z.shape[1]):
        dz = np.zeros_like(z)
        dz[:, k] = h
        fd = (_surrogate_objective(z + dz, acts, olp, adv, eps)
              - _surrogate_objective(z - dz, acts, olp, adv, eps)) / (2 * h)
        assert_allclose(grad[away, k], fd[away], rtol=1e-5, atol=1e-6)


def test_clipped_surrogate_grad_is_zero_where_clip_binds():
    z = np.array([[2.0, 0.0], [-2.0, 0.0], [2.0, 0.0]])
    olp = np.log([0.5, 0.5, 0.5])                 # ρ ≈ 1.76, 0.24, 1.76 against a uniform old policy
    g = asae.clipped_surrogate_grad(z, [0, 0, 0], olp, [1.0, -1.0, -1.0], 0.2)
    assert np.all(g[:2] == 0.0)                   # Â>0, ρ>1+ε and Â<0, ρ<1−ε: binding
    assert np.all(g[2] != 0.0)                    # Â<0, ρ>1+ε: the unclipped term is the min


def test_counterfactual_is_finite_where_its_exact_value_is():
    """Term by term, Q(a) − Σ_b π(b) Q(b, a^-i) stays finite for ±1.7e308 tables whenever
    the exact value is a float64 (1.7e308 − 0.85e308 + 0.85e308)."""
    got = asae.counterfactual_advantage([[1.7e308, -1.7e308]], [[0.5, 0.5]], [0])
    assert got[0] == 1.7e308


@pytest.mark.parametrize("adv", [1.0, -1.0])
def test_clip_boundary_uses_the_unclipped_branch(adv):
    """At ρ = 1 ± ε exactly (here ρ = 1, ε = 0) the clip does not bind: the gradient is
    Â ρ (1[k=a] − π_k), the documented convention (E8), not 0."""
    z = np.array([[0.7, -0.2, 0.1]])
    old = asae.log_softmax(z)[:, 1]                       # ρ = π(a)/π_old(a) = 1 exactly
    g = asae.clipped_surrogate_grad(z, [1], old, [adv], 0.0)
    pi = asae.softmax(z)[0]
    assert_allclose(g[0], adv * (np.eye(3)[1] - pi), rtol=1e-12, atol=0)


def test_train_steps_at_the_clip_boundary():
    """With ε = 0 and one gradient step per update every ratio is exactly 1 = 1 ± ε when the
    step is taken: the policy still moves (the boundary is the unclipped branch)."""
    cfg = small_config(clip_eps=0.0, entropy_coef=0.0, epochs=1, minibatches=1, iterations=3,
                       record_policies=True)
    res = asae.train(envs.MatrixGame(CLIMBING), "async", cfg)
    assert not np.array_equal(res.policies[0][0], res.policies[-1][0])

@st.composite
def multi_agent_batches(draw):
    """n agents, per-sample logits near the old ones (every ρ inside the clip range)."""
    N = draw(st.integers(1, 6))
    n = draw(st.integers(1, 3))
    A = [draw(st.integers(1, 4)) for _ in range(n)]
    z_old = [arrays(draw, (N, k), st.floats(-2.0, 2.0)) for k in A]
    z = [zo + arrays(draw, zo.shape, st.floats(-0.01, 0.01)) for zo in z_old]
    acts = [np.array(draw(st.lists(st.integers(0, k - 1), min_size=N, max_size=N)), dtype=np.int64)
            for k in A]
    return z_old, z, acts, arrays(draw, (N,))


@given(multi_agent_batches())
def test_sum_of_subproblem_gradients_is_joint_surrogate_gradient(b):
    """E8: inside the clip range, ∇_θi L^i (with w^i held constant) = ∇_θi E_t[(∏_j ρ^j) Â]."""
    z_old, z, acts, adv = b
    N, n, eps = len(adv), len(z), 0.2
    rows = np.arange(N)
    olp = [asae.log_softmax(zo)[rows, a] for zo, a in zip(z_old, acts)]

    def joint(zs):
        lr = np.stack([asae.log_softmax(zj)[rows, a] - o for zj, a, o in zip(zs, acts, olp)], 1)
        return np.mean(np.exp(lr.sum(axis=1)) * adv)

    lr = np.stack([asae.log_softmax(zj)[rows, a] - o for zj, a, o in zip(z, acts, olp)], axis=1)
    w = asae.sync_weights(lr)
    h = 1e-6
    for i in range(n):
        g_sub = asae.clipped_surrogate_grad(z[i], acts[i], olp[i], w[:, i] * adv, eps) / N
        for t in range(N):
            for k in range(z[i].shape[1]):
                zp, zm = [x.copy() for x in z], [x.copy() for x in z]
                zp[i][t, k] += h
                zm[i][t, k] -= h
                fd = (joint(zp) - joint(zm)) / (2 * h)
                assert math.isclose(g_sub[t, k], fd, rel_tol=1e-5, abs_tol=1e-7)


# =======================================================================================
# Learner kernels: random stream, sampling, the fused row kernel, exact tables
# =======================================================================================

MASK64 = 2 ** 64 - 1


class RefRng:
    """SplitMix64 written from its definition (Steele, Lea & Flood 2014), Python integers."""

    def __init__(self, seed):
        self.state = (seed * 0xD1B54A32D192ED03 + 1) & MASK64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) / 2.0 ** 53

    def permutation(self, n):
        out = list(range(n))
        for k in range(n - 1, 0, -1):
            j = int(self.uniform() * (k + 1))
            out[k], out[j] = out[j], out[k]
        return np.array(out, np.int64)


@given(st.integers(0, 2 ** 40), st.integers(1, 40))
def test_rng_stream_and_permutation_match_reference(seed, n):
    rng, ref = asae._rng(seed), RefRng(seed)
    assert [asae._rng_uniform(rng) for _ in range(5)] == [ref.uniform() for _ in range(5)]
    perm = np.empty(n, np.int64)
    asae._rng_permutation(rng, perm)
    assert perm.tolist() == ref.permutation(n).tolist()
    assert sorted(perm.tolist()) == list(range(n))


def test_rng_uniforms_are_uniform_and_seeds_differ():
    rng = asae._rng(1)
    u = np.array([asae._rng_uniform(rng) for _ in range(20000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 2000) < 5 * np.sqrt(2000))     # ±5σ per bin
    assert asae._rng_uniform(asae._rng(2)) != asae._rng_uniform(asae._rng(3))


def ref_sample(z, u):
    """Inverse CDF: a = min{k : u · Σ_b e^{z_b − m} < Σ_{j≤k} e^{z_j − m}}."""
    m = max(z)
    e = [math.exp(zk - m) for zk in z]
    total = 0.0
    for ek in e:
        total += ek
    target, c = u * total, 0.0
    for k, ek in enumerate(e):
        c += ek
        if target < c:
            return k
    return len(z) - 1


@st.composite
def multi_agent_tables(draw, max_abs=20.0):
    """Per-agent logits tables packed as (n, n_obs, A_max), action counts, a batch of obs."""
    n, n_obs, B = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 10))
    n_actions = np.array([draw(st.integers(1, 4)) for _ in range(n)], np.int64)
    logits = np.zeros((n, n_obs, int(n_actions.max())))
    for i, A in enumerate(n_actions):
        logits[i, :, :A] = arrays(draw, (n_obs, int(A)), st.floats(-max_abs, max_abs))
    obs = np.array([[draw(st.integers(0, n_obs - 1)) for _ in range(n)] for _ in range(B)], np.int64)
    return logits, n_actions, obs


@given(multi_agent_tables(), st.integers(0, 1000))
def test_sample_actions_matches_reference(case, seed):
    """Agent-major uniform draws from the stream, inverse CDF on each agent's logits row."""
    logits, n_actions, obs = case
    out = np.empty(obs.shape, np.int64)
    asae._sample_actions(logits, n_actions, obs, asae._rng(seed), out, *asae._new_cdf(logits))
    ref = RefRng(seed)
    for i in range(obs.shape[1]):
        for b in range(obs.shape[0]):
            z = list(logits[i, obs[b, i], :n_actions[i]])
            assert out[b, i] == ref_sample(z, ref.uniform())


def test_sample_actions_frequencies_follow_the_policy():
    z = np.log(np.array([[[0.1, 0.6, 0.3]]]))
    out = np.empty((20000, 1), np.int64)
    asae._sample_actions(z, np.array([3]), np.zeros((20000, 1), np.int64), asae._rng(0), out,
                         *asae._new_cdf(z))
    freq = np.bincount(out[:, 0], minlength=3) / out.shape[0]
    assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.015)


def ref_policy_grad(z, a, old_lp, log_x_partners, adv, eps, coef, joint):
    """∇_z [min(ρÂ, clip(x)(ρ/x)Â) + c H(π)] for one row, from the equations:
    ρ = π(a)/π_old(a); x = ρ (own) or ρ·∏_{j≠i}ρ^j (joint); zero surrogate gradient where
    the clip binds; entropy gradient −c π_k (log π_k + H)."""
    pi, logpi = ref_softmax_row(list(z)), ref_log_softmax_row(list(z))
    log_rho = logpi[a] - old_lp
    rho = math.exp(min(log_rho, asae.MAX_LOG_RATIO))
    x = math.exp(min(log_rho + log_x_partners, asae.MAX_LOG_RATIO)) if joint else rho
    lo, hi = eps if isinstance(eps, tuple) else (1 - eps, 1 + eps)   # ε or a (lo, hi) range
    binding = (adv > 0 and x > hi) or (adv < 0 and x < lo)
    H = -sum(p * l for p, l in zip(pi, logpi))
    return np.array([(0.0 if binding else adv * rho * ((k == a) - pi[k]))
                     - coef * pi[k] * (logpi[k] + H) for k in range(len(z))])


@st.composite
def grad_rows(draw):
    A = draw(st.integers(1, 5))
    z = arrays(draw, (A,), st.floats(-8.0, 8.0))
    a = draw(st.integers(0, A - 1))
    old_lp = draw(st.floats(-6.0, 0.0))
    partners = draw(st.floats(-1.0, 1.0))
    adv = draw(st.floats(-5.0, 5.0))
    eps = draw(st.sampled_from([0.0, 0.1, 0.2, 0.5, np.inf]))
    return z, a, old_lp, partners, adv, eps, draw(st.floats(0.0, 1.0)), draw(st.booleans())


def _fused(z, a, old_lp, partners, adv, eps, coef, joint):
    A = z.size
    lp, pi, out = np.empty(A), np.empty(A), np.empty(A)
    asae._log_softmax_row(z, lp, pi)
    log_rho = lp[a] - old_lp
    log_x = log_rho + partners if joint else log_rho
    slope = asae._ppo_slope(log_rho, log_x, adv, 1.0 - eps, 1.0 + eps)
    asae._policy_grad_row(lp, pi, a, slope, coef, out)
    return lp, pi, out


@given(grad_rows())
@example((np.array([0.0, 0.0]), 0, math.log(0.5), 0.0, 1.0, 0.2, 0.0, False))
def test_fused_row_kernel_matches_reference(row):
    """One log-softmax per (row, agent) serves ratio, clipped-surrogate and entropy gradient."""
    z = row[0]
    lp, pi, out = _fused(*row)
    assert_allclose(lp, ref_log_softmax_row(list(z)), rtol=RTOL, atol=ATOL)
    assert_allclose(pi, ref_softmax_row(list(z)), rtol=RTOL, atol=ATOL)
    assert_allclose(out, ref_policy_grad(*row), rtol=RTOL, atol=ATOL)


@given(grad_rows())
def test_fused_row_kernel_is_the_objective_gradient_away_from_the_clip(row):
    z, a, old_lp, partners, adv, eps, coef, joint = row

    def objective(zz):
        lp = ref_log_softmax_row(list(zz))
        rho = math.exp(lp[a] - old_lp)
        x = rho * math.exp(partners) if joint else rho
        clipped = min(max(x, 1 - eps), 1 + eps) * rho / x
        return min(rho * adv, clipped * adv) - coef * sum(math.exp(l) * l for l in lp)

    lp = ref_log_softmax_row(list(z))
    x = math.exp(lp[a] - old_lp + (partners if joint else 0.0))
    assume(min(abs(x - (1 + eps)), abs(x - (1 - eps))) > 1e-3)     # not on the clip's kink
    g = _fused(*row)[2]
    h = 1e-6
    for k in range(z.size):
        zp, zm = z.copy(), z.copy()
        zp[k] += h
        zm[k] -= h
        fd = (objective(zp) - objective(zm)) / (2 * h)
        assert math.isclose(g[k], fd, rel_tol=1e-5, abs_tol=1e-6), (k, g[k], fd)


# ---------------------------------------------------------------------------------------
# E8 in use: method_advantages (the one line in which the learners differ)
# ---------------------------------------------------------------------------------------


@given(log_ratio_tables(max_abs=3.0), st.sampled_from([None, 0.2, 0.5]), st.data())
def test_method_advantages_match_reference(lr, clip, data):
    N, n = lr.shape
    adv = arrays(data.draw, (N,))
    per_agent = arrays(data.draw, (N, n))
    order = data.draw(st.permutations(range(n)))
    assert_allclose(asae.method_advantages("async", adv, lr), np.repeat(adv[:, None], n, 1), rtol=0, atol=0)
    assert_allclose(asae.method_advantages("coma", per_agent), per_agent, rtol=0, atol=0)
    assert_allclose(asae.method_advantages("asae", adv, lr, sync_clip=clip),
                    ref_sync_weights(lr, clip) * adv[:, None], rtol=RTOL, atol=ATOL)
    assert_allclose(asae.method_advantages("happo", adv, lr, order=order),
                    ref_sequential_weights(lr, order) * adv[:, None], rtol=RTOL, atol=ATOL)
    tables = [arrays(data.draw, (3,)) for _ in range(n)]
    acts = np.array(data.draw(st.lists(st.lists(st.integers(0, 2), min_size=n, max_size=n),
                                       min_size=N, max_size=N)), np.int64)
    for m in ("exact_sync", "exact_async"):
        got = asae.method_advantages(m, adv, tables=tables, actions=acts)
        assert_allclose(got, [[tables[i][acts[t, i]] for i in range(n)] for t in range(N)], rtol=0, atol=0)


def test_method_advantages_asae_is_async_when_nobody_has_moved_and_clips_overshoot():
    adv = np.array([1.0, -2.0])
    assert np.array_equal(asae.method_advantages("asae", adv, np.zeros((2, 3))),
                          asae.method_advantages("async", adv, np.zeros((2, 3))))
    big = np.log([[3.0, 3.0, 1.0], [0.1, 1.0, 1.0]])     # partners overshoot: w = 3, 9, 0.1 …
    w = asae.method_advantages("asae", np.ones(2), big, sync_clip=0.5)
    assert_allclose(w, [[1.5, 1.5, 1.5], [1.0, 0.5, 0.5]], rtol=1e-12)
    assert_allclose(asae.method_advantages("asae", np.ones(2), big, sync_clip=None),
                    [[3.0, 3.0, 9.0], [1.0, 0.1, 0.1]], rtol=1e-12)


# =======================================================================================
# Bad input: clear ValueError / TypeError naming the argument
# =======================================================================================

_r = np.zeros(3)
_f = np.zeros(3, dtype=bool)
_q = np.zeros((2, 2))
_u = [np.array([0.5, 0.5])] * 2

BAD_INPUTS = [
    (lambda: asae.gae(_r, np.zeros(4), _r, _f, _f, 0.9, 0.9), ValueError, "values"),
    (lambda: asae.gae(np.zeros((2, 2, 2)), _r, _r, _f, _f, 0.9, 0.9), ValueError, "rewards"),
    (lambda: asae.gae(np.array(["a", "b", "c"]), _r, _r, _f, _f, 0.9, 0.9), TypeError, "rewards"),
    (lambda: asae.gae(_r + np.nan, _r, _r, _f, _f, 0.9, 0.9), ValueError, "rewards"),
    (lambda: asae.gae(_r, _r, [0, np.inf, 0], _f, _f, 0.9, 0.9), ValueError, "next_values"),
    (lambda: asae.gae(_r, _r, _r, np.zeros(3), _f, 0.9, 0.9), TypeError, "terminated"),
    (lambda: asae.gae(_r, _r, _r, _f, [0, 2, 0], 0.9, 0.9), ValueError, "truncated"),
    (lambda: asae.gae(_r, _r, _r, _f, _f[:2], 0.9, 0.9), ValueError, "truncated"),
    (lambda: asae.gae(_r, _r, _r, _f, _f, 1.5, 0.9), ValueError, "gamma"),
    (lambda: asae.gae(_r, _r, _r, _f, _f, 0.9, -0.1), ValueError, "lam"),
    (lambda: asae.gae(_r, _r, _r, _f, _f, 0.9, np.nan), ValueError, "lam"),
    (lambda: asae.gae(_r, _r, _r, _f, _f, "0.9", 0.9), TypeError, "gamma"),
    (lambda: asae.softmax(np.array([1 + 1j])), TypeError, "logits"),
    (lambda: asae.log_softmax([np.nan, 0.0]), ValueError, "logits"),
    (lambda: asae.softmax(np.zeros((2, 0))), ValueError, "logits"),
    (lambda: asae.joint_value(_q, [[0.5, 0.6], [0.5, 0.5]]), ValueError, "policies[0]"),
    (lambda: asae.joint_value(_q, [[0.5, 0.5]]), ValueError, "policies"),
    (lambda: asae.joint_value(_q, [[1.0, 0.0, 0.0], [0.5, 0.5]]), ValueError, "policies[0]"),
    (lambda: asae.joint_value(_q, [[1.5, -0.5], [0.5, 0.5]]), ValueError, "policies[0]"),
    (lambda: asae.joint_value(_q + np.nan, _u), ValueError, "q"),
    (lambda: asae.marginal_q(_q, _u, 2), ValueError, "agent"),
    (lambda: asae.marginal_advantage(_q, _u, -1), ValueError, "agent"),
    (lambda: asae.marginal_q(_q, _u, 0.5), TypeError, "agent"),
    (lambda: asae.exact_policy_gradient(_q, [np.zeros(2), np.zeros(3)], 0), ValueError, "logits[1]"),
    (lambda: asae.synchronous_marginal_advantage(_q, _u, [[0.2, 0.2], [0.5, 0.5]], 0), ValueError,
     "new_policies[0]"),
    (lambda: asae.counterfactual_advantage(_q, np.full((2, 3), 1 / 3), [0, 0]), ValueError, "pi_agent"),
    (lambda: asae.counterfactual_advantage(_q, [[0.5, 0.5]] * 2, [0, 2]), ValueError, "actions_agent"),
    (lambda: asae.counterfactual_advantage(_q, [[0.5, 0.5]] * 2, [0.0, 1.0]), TypeError, "actions_agent"),
    (lambda: asae.counterfactual_advantage(_q, [[0.9, 0.5]] * 2, [0, 1]), ValueError, "pi_agent"),
    (lambda: asae.counterfactual_advantage(_q + np.nan, [[0.5, 0.5]] * 2, [0, 1]), ValueError, "q_agent"),
    (lambda: asae.counterfactual_advantage(_q, [[np.nan, 0.5]] * 2, [0, 1]), ValueError, "pi_agent"),
    (lambda: asae.gae(np.zeros((3, 40)), np.zeros((3, 40)), np.full((3, 40), np.inf),
                      np.ones((3, 40), bool), np.zeros((3, 40), bool), 0.9, 0.9), ValueError, "next_values"),
    (lambda: asae.sync_weights(np.full((4, 2), np.inf)), ValueError, "log_ratios"),
    (lambda: asae.counterfactual_advantage(np.zeros((4, 2)), np.full((4, 2), 0.5), np.full(4, 2)),
     ValueError, "actions_agent"),
    # extremes: documented valid ranges, rejected outside them (never −inf / NaN / e^300 out)
    (lambda: asae.log_softmax([1e308, -1e308]), ValueError, "logits"),
    (lambda: asae.sync_weights([[1e308, 1e308, 0.5, -1e308, -1e308]]), ValueError, "log_ratios"),
    (lambda: asae.sequential_weights([[1e308, 1e308, -1e308, -1e308, 0.5]], [0, 1, 2, 3, 4]),
     ValueError, "log_ratios"),
    (lambda: asae.joint_value(_q, None), TypeError, "policies"),
    (lambda: asae.joint_value([[1.0, 2.0], [3.0]], _u), ValueError, "q"),
    (lambda: asae.marginal_advantage(_q, "ab", 0), TypeError, "policies"),
    (lambda: asae.exact_policy_gradient(_q, None, 0), TypeError, "logits"),
    (lambda: asae.sync_weights(np.zeros(3)), ValueError, "log_ratios"),
    (lambda: asae.sync_weights(np.zeros((2, 2)), clip=-0.1), ValueError, "clip"),
    (lambda: asae.sequential_weights(np.zeros((2, 3)), [0, 0, 1]), ValueError, "order"),
    (lambda: asae.sequential_weights(np.zeros((2, 3)), [0, 1]), ValueError, "order"),
    (lambda: asae.clipped_surrogate([1.0, 1.0], [1.0], 0.2), ValueError, "advantages"),
    (lambda: asae.clipped_surrogate([1.0], [1.0], 1.5), ValueError, "clip_eps"),
    (lambda: asae.clipped_surrogate([-1.0], [1.0], 0.2), ValueError, "ratios"),
    (lambda: asae.clipped_surrogate_grad(_q, [0, 5], [-1.0, -1.0], [1.0, 1.0], 0.2), ValueError, "actions"),
    (lambda: asae.clipped_surrogate_grad(_q, [0, 1], [-1.0], [1.0, 1.0], 0.2), ValueError, "old_log_probs"),
    (lambda: asae.clipped_surrogate_grad(_q, [0, 1], [0.5, -1.0], [1.0, 1.0], 0.2), ValueError, "old_log_probs"),
    (lambda: asae.clipped_surrogate_grad(np.zeros(2), [0, 1], [-1.0, -1.0], [1.0, 1.0], 0.2), ValueError, "logits"),
    # finite inputs whose exact result is beyond float64: FloatingPointError, never ±inf
    (lambda: asae.marginal_advantage([[1.5e308], [-1.5e308]], [[1e-4, 1 - 1e-4], [1.0]], 0),
     FloatingPointError, "marginal_advantage"),
    (lambda: asae.joint_surrogate([[1.5e308], [-1.5e308]], [[1e-4, 1 - 1e-4], [1.0]],
                                  [[1 - 1e-4, 1e-4], [1.0]]), FloatingPointError, "joint_surrogate"),
    (lambda: asae.counterfactual_advantage([[1.7e308, -1.7e308]], [[0.0, 1.0]], [0]),
     FloatingPointError, "counterfactual_advantage"),
    (lambda: asae.method_advantages("asae", [1e300], [[300.0, 300.0]], sync_clip=None),
     FloatingPointError, "method_advantages"),
    (lambda: asae.clipped_surrogate([1e308], [-10.0], 0.2), FloatingPointError, "clipped_surrogate"),
    (lambda: asae.clipped_surrogate_grad([[0.0, 0.0]], [0], [-1e308], [-1e200], 0.2),
     FloatingPointError, "clipped_surrogate_grad"),
    (lambda: asae.gae([1e308, 1e308], [-1e308, 0.0], [0.0, 0.0], [False, False], [False, False],
                      1.0, 1.0), FloatingPointError, "gae"),
    (lambda: asae.clipped_surrogate_grad([[1e308, -1e308]], [1], [-0.7], [1.0], 0.2), ValueError,
     "logits"),
    # sizes beyond MAX_ARRAY_BYTES are refused before anything is allocated
    (lambda: asae.softmax(np.broadcast_to(0.0, (10 ** 6, 10 ** 6))), ValueError, "logits"),
    (lambda: asae.log_softmax(np.broadcast_to(0.0, (10 ** 6, 10 ** 6))), ValueError, "logits"),
]


@pytest.mark.parametrize("call, exc, name", BAD_INPUTS,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_raises_clear_error(call, exc, name):
    with pytest.raises(exc, match=name.replace("[", r"\[").replace("]", r"\]")):
        call()


# =======================================================================================
# Learners (E7–E10 in use): the whole update vs its slow twin, behaviour, guards
# =======================================================================================


def ref_log_preceding(lr, order):
    """log M^{i_m} = Σ_{l<m} log ρ^{i_l} for every row and agent (E9)."""
    out = np.zeros_like(lr)
    for m, i in enumerate(order):
        out[:, i] = sum((lr[:, order[l]] for l in range(m)), np.zeros(lr.shape[0]))
    return out


def ref_traced_gae(r, v, nv, term, trunc, gamma, lam, c):
    """E12 from its recursion: Â_t = δ_t + γλ c_{t+1} (1 − done_t) Â_{t+1}, Â_T = 0, with
    c = min(c̄, M) per (t, b) and δ_t of E10."""
    T, B = r.shape
    adv = np.zeros((T, B))
    for b in range(B):
        nxt = 0.0
        for t in reversed(range(T)):
            delta = r[t, b] + (0.0 if term[t, b] else gamma * nv[t, b]) - v[t, b]
            done = term[t, b] or trunc[t, b]
            cn = c[t + 1, b] if t + 1 < T else 1.0
            nxt = delta + (0.0 if done else gamma * lam * cn * nxt)
            adv[t, b] = nxt
    return adv


def ref_coppo_grad(z, a, old_lp, partners, adv, lo, hi, inner_eps, coef):
    """∇_z [min(ρ u Â, clip(ρ v, lo, hi) Â) + c H(π)] (E11) by cases: u = ∏_{j≠i} ρ^j,
    v = clip(u, 1 ± ε_in); the unclipped term where it is the minimum (ties too), else the
    clipped one, whose gradient is zero where it is constant."""
    pi, logpi = ref_softmax_row(list(z)), ref_log_softmax_row(list(z))
    rho = math.exp(min(logpi[a] - old_lp, asae.MAX_LOG_RATIO))
    u = math.exp(min(partners, asae.MAX_LOG_RATIO))
    v = u if inner_eps is None else min(max(u, 1 - inner_eps), 1 + inner_eps)
    x2 = rho * v
    if rho * u * adv <= min(max(x2, lo), hi) * adv:
        g = u * adv * rho
    else:
        g = v * adv * rho if lo <= x2 <= hi else 0.0
    H = -sum(p * lp for p, lp in zip(pi, logpi))
    return np.array([g * ((k == a) - pi[k]) - coef * pi[k] * (logpi[k] + H)
                     for k in range(len(z))])


def ref_preceding_weight(method, cfg, lr_turn, order, i):
    """Agent i's weight in a sequential turn: HAPPO's M^i = ∏_{l<m} ρ^{i_l} (E9), saturated at
    e^±MAX_LOG_RATIO; A2PO's g = clip(M, 1 ± ε_o) (E12)."""
    M = np.exp(np.clip(ref_log_preceding(lr_turn, order)[:, i], -asae.MAX_LOG_RATIO,
                       asae.MAX_LOG_RATIO))
    e_o = cfg.a2po_others_eps
    return np.clip(M, 1 - e_o, 1 + e_o) if method == "a2po" and e_o is not None else M


def ref_clip_range(method, cfg, m, n):
    """(lo, hi) of the PPO clip for the agent in position m of n: ε (∞ without a clip),
    A2PO's ε_m = ε (c_ε + (1 − c_ε) m/n) (E12), then the clip_scale rule."""
    e = math.inf if cfg.clip_eps is None else cfg.clip_eps
    if method == "a2po":
        e = e * (cfg.a2po_clip_floor + (1 - cfg.a2po_clip_floor) * m / n)
    if cfg.clip_scale == "inv_n":
        return 1 - e / n, 1 + e / n
    if cfg.clip_scale == "root_n":
        return max(1 - e, 0.0) ** (1 / n), (1 + e) ** (1 / n)
    return 1 - e, 1 + e


def ref_update(method, cfg, logits, V, Q, batch, payoff, rng, probe=None):
    """One update written from the equations, plain Python/NumPy (twin of ``asae._update``).

    logits: list of per-agent (n_obs, A_i) tables (changed in place), V (n_states,),
    Q (n_states, J) for COMA; batch: dict of (T, B[, n]) arrays; payoff: joint table
    (exact methods, one state); rng: RefRng, consumed like the jitted stream; probe: if
    given, called as probe(movers, logits, order, (lo, hi)) before each gradient step.
    """
    T, B, n = batch["obs"].shape
    N = T * B
    A = [z.shape[1] for z in logits]
    joint_clip = cfg.clip_ratio == "joint"
    # E10 with the critic before this update
    adv, ret = ref_gae(batch["rew"] * cfg.reward_scale, V[batch["states"]], V[batch["next_states"]],
                       batch["term"], batch["trunc"], cfg.gamma, cfg.lam)
    obs, act = batch["obs"].reshape(N, n), batch["act"].reshape(N, n)
    s, adv, ret = batch["states"].reshape(N), adv.reshape(N), ret.reshape(N)
    joint = np.array([np.ravel_multi_index(tuple(a), A) for a in act], np.int64)

    def log_pi(i, o):
        return ref_log_softmax_row(list(logits[i][o]))

    old_lp = np.array([[log_pi(i, obs[t, i])[act[t, i]] for i in range(n)] for t in range(N)])
    base = np.repeat(adv[:, None], n, axis=1)                    # shared Â_t
    if method == "coma":                                         # E7 with the Q critic
        for t in range(N):
            for i in range(n):
                pi = ref_softmax_row(list(logits[i][obs[t, i]]))
                cf = Q[s[t], joint[t]]
                for b in range(A[i]):
                    a_cf = list(act[t])
                    a_cf[i] = b
                    cf -= pi[b] * Q[s[t], np.ravel_multi_index(tuple(a_cf), A)]
                base[t, i] = cf
    if method in ("exact_sync", "exact_async"):
        q_s = payoff * cfg.reward_scale
        old_pis = [np.array(ref_softmax_row(list(z[0]))) for z in logits]
        v_old = ref_joint_value(q_s, old_pis)
        tables = [ref_marginal_q(q_s, old_pis, i) - v_old for i in range(n)]   # E3 (old)

    def log_ratios():
        return np.array([[log_pi(j, obs[t, j])[act[t, j]] - old_lp[t, j] for j in range(n)]
                         for t in range(N)])

    def clip_range(m):
        return ref_clip_range(method, cfg, m, n)

    def step(i, rows, lr, adv_i, base_i=None, m=None):
        """One SGD step of agent i's clipped sub-problem + entropy, minibatch mean."""
        lo, hi = clip_range(n if m is None else m)
        grads = []
        for r, t in enumerate(rows):                               # all from the pre-step logits
            partners = sum(lr[r][j] for j in range(n) if j != i)
            z, a = logits[i][obs[t, i]], act[t, i]
            if method == "coppo":                                  # E11, by cases
                grads.append(ref_coppo_grad(z, a, old_lp[t, i], partners, base_i[r], lo, hi,
                                            cfg.coppo_inner_eps, cfg.entropy_coef))
                continue
            if method == "a2po":                                   # E12: x = ρ g
                ln = lambda e: -math.inf if e >= 1 else math.log(1 - e)  # noqa: E731
                e_o = cfg.a2po_others_eps
                partners = partners if e_o is None else min(max(partners, ln(e_o)),
                                                            math.log1p(e_o))
            grads.append(ref_policy_grad(z, a, old_lp[t, i], partners, adv_i[r], (lo, hi),
                                         cfg.entropy_coef, joint_clip or method == "a2po"))
        for r, t in enumerate(rows):
            logits[i][obs[t, i]] += cfg.lr_actor / len(rows) * grads[r]

    def minibatches():
        for _ in range(cfg.epochs):
            yield from np.array_split(rng.permutation(N), cfg.minibatches)

    if method in ("happo", "a2po"):                              # E9, E12: one after another
        order = rng.permutation(n)
        for m, i in enumerate(order):
            lr_turn = log_ratios()
            M = ref_preceding_weight(method, cfg, lr_turn, order, i)
            base_i = base[:, i]
            if method == "a2po":
                if m > 0:                                        # Â^{(m)}: the truncated trace
                    Mt = np.exp(np.minimum(ref_log_preceding(lr_turn, order)[:, i],
                                           asae.MAX_LOG_RATIO)).reshape(T, B)
                    base_i = ref_traced_gae(batch["rew"] * cfg.reward_scale, V[batch["states"]],
                                            V[batch["next_states"]], batch["term"],
                                            batch["trunc"], cfg.gamma, cfg.lam,
                                            np.minimum(cfg.a2po_trace_cbar, Mt)).reshape(N)
            for rows in minibatches():
                lr = log_ratios()[rows]
                for j in range(n):
                    if j != i:
                        lr[:, j] = lr_turn[rows, j]
                if probe is not None:
                    probe([i], logits, order, clip_range(m + 1))
                step(i, rows, lr, M[rows] * base_i[rows], m=m + 1)
    else:
        for rows in minibatches():
            lr = log_ratios()[rows]
            if method == "asae":                                 # E8: Â^i = w^i Â
                adv_mb = ref_sync_weights(lr, cfg.sync_clip) * base[rows]
            elif method == "exact_sync":                         # E6 under the current partners
                cur = [np.array(ref_softmax_row(list(z[0]))) for z in logits]
                tab = [ref_marginal_q(q_s, cur, i) - v_old for i in range(n)]
                adv_mb = np.array([[tab[i][act[t, i]] for i in range(n)] for t in rows])
            elif method == "exact_async":
                adv_mb = np.array([[tables[i][act[t, i]] for i in range(n)] for t in rows])
            else:                                                # async, coma, coppo
                adv_mb = base[rows]
            if probe is not None:
                probe(range(n), logits, np.arange(n), clip_range(n))
            for i in range(n):
                step(i, rows, lr, adv_mb[:, i], base[rows, i])
    for rows in minibatches():                                   # critics: ½(R − V)², ½(R − Q)²
        dv = np.bincount(s[rows], ret[rows] - V[s[rows]], minlength=V.size)
        if method == "coma":
            flat = s[rows] * Q.shape[1] + joint[rows]
            dq = np.bincount(flat, ret[rows] - Q.ravel()[flat], minlength=Q.size).reshape(Q.shape)
            Q += cfg.lr_critic / len(rows) * dq
        V += cfg.lr_critic / len(rows) * dv


def random_batch(rng, T, B, n_actions, n_states, n_obs):
    n = len(n_actions)
    return dict(obs=rng.integers(0, n_obs, (T, B, n)),
                act=np.stack([rng.integers(0, k, (T, B)) for k in n_actions], axis=2),
                rew=rng.normal(size=(T, B)), term=rng.random((T, B)) < 0.2,
                trunc=rng.random((T, B)) < 0.1, states=rng.integers(0, n_states, (T, B)),
                next_states=rng.integers(0, n_states, (T, B)))


class TableEnv:
    """A minimal BatchedEnv of the given sizes (never stepped): what ``train`` sets up for it
    is what the update tests start from."""

    def __init__(self, n_actions, n_states, n_obs, payoff=None):
        self.n_agents, self.n_actions = len(n_actions), tuple(n_actions)
        self.n_states, self.n_obs, self.episode_limit = n_states, n_obs, 1
        if payoff is not None:
            self.payoff = payoff

    def reset(self, n_envs, seed=None):
        raise AssertionError("not stepped")

    step = reset


def run_update(method, cfg, logits, V, Q, batch, payoff):
    """asae's jitted update, on the state train's own setup builds (cfg.seed's stream), with
    the given tables put in; returns (per-agent logits, V, Q, code)."""
    n_actions = [z.shape[1] for z in logits]
    env = TableEnv(n_actions, V.size, logits[0].shape[0], payoff)
    cfg, run = asae._setup(env, method, cfg)
    for i, z in enumerate(logits):
        run.pol.logits[i, :, :z.shape[1]] = z
    run.critic.V[:] = V
    run.critic.Q[:] = Q
    b = asae._Batch(**{k: np.ascontiguousarray(batch[f]) for k, f in
                       zip(asae._Batch._fields, ("obs", "act", "rew", "term", "trunc", "states",
                                                 "next_states"))})
    code = asae._update(run.hp, run.pol, run.critic, run.ex, b, run.rng, run.log)
    L = run.pol.logits
    return [L[i, :, :k] for i, k in enumerate(n_actions)], run.critic.V, run.critic.Q, code


VARIANTS = [dict(), dict(clip_ratio="joint"), dict(clip_eps=None), dict(sync_clip=None),
            dict(epochs=3, minibatches=5, entropy_coef=0.0, lr_actor=3.0),
            dict(clip_scale="inv_n"), dict(clip_scale="root_n", clip_eps=0.5)]
OWN_CLIP_VARIANTS = {  # the methods that clip their own way take their own parameters instead
    "coppo": [dict(coppo_inner_eps=None), dict(coppo_inner_eps=0.0), dict(coppo_inner_eps=0.3,
                                                                          clip_eps=0.1)],
    "a2po": [dict(a2po_others_eps=None), dict(a2po_clip_floor=1.0, a2po_others_eps=0.3),
             dict(a2po_trace_cbar=0.5, lam=1.0), dict(clip_scale="inv_n")]}
UPDATE_CASES = [(m, v) for m in asae.METHODS for v in VARIANTS
                if m not in OWN_CLIP_VARIANTS or "clip_ratio" not in v and "clip_scale" not in v]
UPDATE_CASES += [(m, v) for m, vs in OWN_CLIP_VARIANTS.items() for v in vs]


@pytest.mark.parametrize("method, variant", UPDATE_CASES,
                         ids=[f"{m}-{v}" for m, v in UPDATE_CASES])
def test_update_matches_slow_twin(method, variant):
    """The whole jitted update (GAE → per-method advantage → clipped surrogate + entropy
    gradient → SGD, critic steps) equals the plain reference, for every method and clip."""
    rng = np.random.default_rng(abs(hash((method, str(variant)))) % 2 ** 32)
    exact = method in ("exact_sync", "exact_async")
    for n_actions in ([3, 3], [2, 3, 2]):
        n_states, n_obs = (1, 1) if exact else (4, 3)
        cfg = asae.Config(**{**dict(epochs=2, minibatches=3, lr_actor=2.0, entropy_coef=0.05,
                                    reward_scale=0.5, gamma=0.9, lam=0.8, lr_critic=0.7,
                                    seed=11), **variant})
        logits = [rng.normal(0, 1.5, (n_obs, k)) for k in n_actions]
        V = rng.normal(size=n_states)
        J = int(np.prod(n_actions))
        Q = rng.normal(size=(n_states, J)) if method == "coma" else np.zeros((1, 1))
        batch = random_batch(rng, 4, 6, n_actions, n_states, n_obs)
        payoff = rng.normal(size=n_actions) if exact else None
        got_L, got_V, got_Q, code = run_update(method, cfg, logits, V, Q, batch, payoff)
        assert code == 0
        ref_L = [z.copy() for z in logits]
        ref_V, ref_Q = V.copy(), Q.copy()
        ref_update(method, cfg, ref_L, ref_V, ref_Q, batch, payoff, RefRng(11))
        for g, r, z0 in zip(got_L, ref_L, logits):
            assert not np.allclose(r, z0)                         # the update did something
            assert_allclose(g, r, rtol=RTOL, atol=1e-11)
        assert_allclose(got_V, ref_V, rtol=RTOL, atol=ATOL)
        assert_allclose(got_Q, ref_Q, rtol=RTOL, atol=ATOL)


class NoTables:
    """Hides an env's transition tables, so train takes the env.step path."""

    def __init__(self, env):
        self.env = env
        for a in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "optimum", "payoff"):
            if hasattr(env, a):
                setattr(self, a, getattr(env, a))

    def reset(self, n_envs, seed=None):
        return self.env.reset(n_envs, seed)

    def step(self, actions):
        return self.env.step(actions)


def _same_result(a, b):
    for za, zb in zip(a.logits, b.logits):
        assert np.array_equal(za, zb)
    assert np.array_equal(a.values, b.values)
    assert np.array_equal(a.mean_return, b.mean_return, equal_nan=True)
    assert a.greedy_return == b.greedy_return and a.stochastic_return == b.stochastic_return


@pytest.mark.parametrize("make, method", [(envs.climbing, "asae"), (envs.TwoStepGame, "happo"),
                                          (lambda: envs.GridForaging(size=3, n_food=1,
                                                                     max_steps=3), "async"),
                                          (lambda: envs.GridForaging(size=3, n_food=1, max_steps=6), "coma"),
                                          (lambda: envs.MatrixGame(np.arange(8.0).reshape(2, 2, 2), 3), "async")])
def test_jitted_rollout_equals_env_step_path(make, method):
    """The table-driven rollout inside the jitted run reproduces the env.step path bit for bit."""
    cfg = asae.Config(iterations=5, n_envs=8, rollout_len=7, seed=4, reward_scale=0.1)
    env = make()
    _same_result(asae.train(env, method, cfg), asae.train(NoTables(env), method, cfg))


def ref_train(env, method, cfg, probe=None):
    """``train`` written from its documentation, through ``env.step``: initial logits
    N(0, std²) from ``default_rng([seed, 0])`` (or ``init_logits``), V = 0 and Q = 0, one
    stream seeded by ``seed`` for the agent-major inverse-CDF draws and the update, and
    ``ref_update`` once per rollout. Returns (logits, V). probe: see ``ref_update``; its
    ``start(logits)`` and ``finish(logits)`` are called before and after each update."""
    n_actions = list(env.n_actions)
    n, T, B = len(n_actions), cfg.rollout_len, cfg.n_envs
    if cfg.init_logits is None:
        init = np.random.default_rng([cfg.seed, 0])
        logits = [cfg.init_logit_std * init.standard_normal((env.n_obs, k)) for k in n_actions]
    else:
        logits = [np.array(z, dtype=float) for z in cfg.init_logits]
    V = np.zeros(env.n_states)
    Q = np.zeros((env.n_states, int(np.prod(n_actions)))) if method == "coma" else np.zeros((1, 1))
    rng = RefRng(cfg.seed)
    obs, state = env.reset(B, seed=cfg.seed)
    for _ in range(cfg.iterations):
        rows = []
        for t in range(T):
            act = np.zeros((B, n), np.int64)
            for i in range(n):
                for b in range(B):
                    act[b, i] = ref_sample(list(logits[i][obs[b, i]]), rng.uniform())
            obs2, state2, r, te, tr, final = env.step(act.copy())
            rows.append((obs, act, r, te, tr, state, np.where(te | tr, final, state2)))
            obs, state = obs2, state2
        batch = {k: np.array(v) for k, v in
                 zip(("obs", "act", "rew", "term", "trunc", "states", "next_states"), zip(*rows))}
        if probe is not None:
            probe.start(logits)
        ref_update(method, cfg, logits, V, Q, batch, getattr(env, "payoff", None), rng, probe)
        if probe is not None:
            probe.finish(logits)
    ref_train.seed_eval = rng.next() >> 33             # the evaluation's seed: the stream's next
    return logits, V


FRONT_DOOR = [(lambda: envs.MatrixGame(CLIMBING), m, {}) for m in asae.METHODS] + [
    (lambda: envs.MatrixGame(np.arange(12.0).reshape(2, 3, 2) - 5), "exact_sync",
     dict(reward_scale=0.3, clip_ratio="joint")),
    (lambda: envs.MatrixGame(np.arange(12.0).reshape(2, 3, 2) - 5), "happo", dict(clip_eps=None)),
    (envs.TwoStepGame, "coma", dict(gamma=0.9)), (envs.TwoStepGame, "happo", {}),
    (envs.TwoStepGame, "a2po", dict(a2po_trace_cbar=0.7)), (envs.TwoStepGame, "coppo", {}),
    (lambda: envs.GridForaging(size=3, n_food=1, max_steps=5), "a2po", dict(clip_scale="root_n")),
    (lambda: envs.GridForaging(size=3, n_food=1, max_steps=5), "asae", dict(sync_clip=None)),
    (lambda: envs.MatrixGame(CLIMBING), "asae",
     dict(init_logits=[[[0.5, -1.0, 2.0]], [[0.0, 1.0, -0.5]]])),
    (lambda: envs.MatrixGame(CLIMBING), "async", dict(init_logit_std=0.4)),
    (lambda: TruncatedChain(), "async", dict(gamma=0.9, iterations=8))]


class TruncatedChain:
    """Five states walked in order, reward 1 a step, truncated every 4 steps: a truncated
    step must bootstrap V of its true successor (not of the reset state), E10."""
    n_agents, n_actions, n_states, n_obs, episode_limit = 1, (2,), 5, 5, 4

    def reset(self, n_envs, seed=None):
        self.s, self.t = np.zeros(n_envs, np.int64), np.zeros(n_envs, np.int64)
        return self.s[:, None].copy(), self.s.copy()

    def step(self, actions):
        self.s, self.t = np.minimum(self.s + 1, 4), self.t + 1
        trunc, final = self.t % 4 == 0, self.s.copy()
        self.s[trunc] = 0
        return (self.s[:, None].copy(), self.s.copy(), np.ones(self.s.size),
                np.zeros(self.s.size, bool), trunc, final)


@pytest.mark.parametrize("make, method, kw", FRONT_DOOR,
                         ids=[f"{m}-{i}" for i, (_, m, _) in enumerate(FRONT_DOOR)])
def test_train_matches_slow_twin(make, method, kw):
    """The whole run through the front door: what ``train`` sets up (initial logits, payoff
    scaling, joint-action encoding, the method's row, the seed's stream) and runs equals the
    plain reference run."""
    cfg = asae.Config(**{**dict(iterations=3, n_envs=4, rollout_len=3, epochs=2, minibatches=2,
                                lr_actor=3.0, reward_scale=0.05, seed=5), **kw})
    got = asae.train(make(), method, cfg)
    ref_L, ref_V = ref_train(make(), method, cfg)
    for g, r in zip(got.logits, ref_L):
        assert_allclose(g, r, rtol=RTOL, atol=1e-11)
    assert_allclose(got.values, ref_V, rtol=RTOL, atol=ATOL)
    env = make()                                       # the final evaluation: its seed and mode
    assert got.stochastic_return == asae.evaluate(env, got.logits, cfg.eval_episodes, False,
                                                  ref_train.seed_eval)
    assert got.greedy_return == asae.evaluate(env, got.logits, cfg.eval_episodes, True, 0)

CLIMBING = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
QTRAN = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


def small_config(**kw):
    base = dict(iterations=6, n_envs=16, rollout_len=4, reward_scale=1 / 30, seed=3)
    return asae.Config(**{**base, **kw})


@pytest.mark.parametrize("method", asae.METHODS)
def test_every_method_improves_expected_return_on_climbing(method):
    """From a fixed random starting policy, the exact expected return J(π) goes up."""
    game = envs.MatrixGame(CLIMBING)
    res = asae.train(game, method, small_config(record_policies=True))
    J = [asae.joint_value(game.payoff, [p[0] for p in pols]) for pols in res.policies]
    assert J[-1] > J[0] + 0.5, (method, J)


@pytest.mark.parametrize("method", asae.METHODS)
def test_training_is_deterministic_by_seed(method):
    game = envs.MatrixGame(CLIMBING)
    a, b = (asae.train(game, method, small_config(seed=7)) for _ in range(2))
    c = asae.train(game, method, small_config(seed=8))
    _same_result(a, b)
    assert not all(np.array_equal(za, zc) for za, zc in zip(a.logits, c.logits))


def test_same_seed_same_initial_policy_for_every_method():
    game = envs.MatrixGame(CLIMBING)
    starts = [asae.train(game, m, small_config(iterations=1, record_policies=True)).policies[0]
              for m in asae.METHODS]
    for s in starts[1:]:
        for p, q in zip(s, starts[0]):
            assert np.array_equal(p, q)


def test_one_gradient_step_asae_is_async_and_exact_sync_is_exact_async():
    """With one gradient step per update nobody has moved when the advantage is computed:
    every w^i is exactly 1 (E8), and Ã^i = A^i_old (E6 = E3) — bit-identical runs."""
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=1, minibatches=1, iterations=10, lr_actor=3.0)
    _same_result(asae.train(game, "asae", cfg), asae.train(game, "async", cfg))
    _same_result(asae.train(game, "exact_sync", cfg), asae.train(game, "exact_async", cfg))


def test_with_several_steps_each_method_differs_from_its_control():
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=4, minibatches=4, iterations=3, lr_actor=3.0)
    runs = {m: asae.train(game, m, cfg) for m in asae.METHODS}
    for m, ctrl in [("asae", "async"), ("happo", "async"), ("exact_sync", "exact_async"),
                    ("coma", "async")]:
        assert not np.array_equal(runs[m].logits[0], runs[ctrl].logits[0]), m


def test_sync_clip_acts_when_partners_overshoot():
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=8, iterations=3, lr_actor=30.0, sync_clip=None)
    free = asae.train(game, "asae", cfg)
    clipped = asae.train(game, "asae", replace(cfg, sync_clip=0.05))
    assert free.diagnostics["max_ratio"] > 1.2                    # partners did overshoot
    assert not np.array_equal(free.logits[0], clipped.logits[0])


@pytest.mark.parametrize("variant", [dict(clip_ratio="joint"), dict(clip_eps=None)])
def test_clip_variants_change_the_run(variant):
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=8, iterations=3, lr_actor=10.0)
    assert not np.array_equal(asae.train(game, "asae", cfg).logits[0],
                              asae.train(game, "asae", replace(cfg, **variant)).logits[0])


# ---------------------------------------------------------------------------------------
# The exact bias probe
# ---------------------------------------------------------------------------------------


def _probe_at(method, q, old, cur, cfg, order=None):
    """Record one step for every agent on the state train's setup builds for the matrix game
    q (track_bias), the old policies put in; returns (probe, run)."""
    n = q.ndim
    env = TableEnv(q.shape, 1, 1, q)
    cfg, run = asae._setup(env, method, replace(cfg, track_bias=True))
    pack = lambda ps: np.array([np.pad(np.log(np.asarray(p)), (0, max(q.shape) - len(p)))
                                for p in ps])
    run.ex.old[:] = pack(old)
    run.ex.v_old[0] = ref_joint_value(q, old)
    o_arr = np.arange(n) if order is None else np.asarray(order, np.int64)
    for i in range(n):
        asae._probe_record(i, run.hp, run.pol, pack(cur), run.ex, o_arr, run.log.probe)
    return run.log.probe, run


@given(old_new_games())
def test_probe_records_the_exact_expected_advantage(g):
    """Measured against the equations: async uses A^i_old (E3/E7); unclipped asae and
    exact_sync both use E_{a^-i~π_old}[w^i A_old] = Ã^i under the current partners (E6);
    exact_async uses A^i_old; second moments by enumeration."""
    q, old, cur, _ = g
    cfg = asae.Config(sync_clip=None)
    targets = [asae.synchronous_marginal_advantage(q, old, cur, i) for i in range(q.ndim)]
    a_old = [asae.marginal_advantage(q, old, i) for i in range(q.ndim)]
    for method, want in [("async", a_old), ("asae", targets), ("exact_sync", targets),
                         ("exact_async", a_old), ("coma", a_old)]:
        probe = _probe_at(method, q, old, cur, cfg)[0]
        for i in range(q.ndim):
            assert_allclose(probe.used[i, :q.shape[i]], want[i], rtol=1e-9, atol=1e-9)
    # second moment of the asae estimate E_{a~π_old}[(w^i A_old)²], by enumeration
    probe = _probe_at("asae", q, old, cur, cfg)[0]
    A_old = q - ref_joint_value(q, old)
    m2 = 0.0
    for i in range(q.ndim):
        for a in itertools.product(*(range(k) for k in q.shape)):
            p = np.prod([old[j][a[j]] for j in range(q.ndim)])
            w = np.prod([cur[j][a[j]] / old[j][a[j]] for j in range(q.ndim) if j != i])
            m2 += p * (w * A_old[a]) ** 2
    assert math.isclose(probe.sums[3], m2, rel_tol=1e-9, abs_tol=1e-12)


@given(old_new_games(), st.sampled_from(["async", "asae", "exact_sync"]),
       st.sampled_from([dict(), dict(clip_ratio="joint"), dict(clip_eps=None)]))
def test_probe_gradient_is_the_expected_clipped_gradient(g, method, variant):
    """The recorded gradient = Σ_a π_old(a) ∇_{z^i}[clipped per-sample objective at a]
    with the method's advantage, by enumeration with the reference row gradient."""
    q, old, cur, _ = g
    cfg = asae.Config(sync_clip=None, **variant)
    eps = math.inf if cfg.clip_eps is None else cfg.clip_eps
    probe = _probe_at(method, q, old, cur, cfg)[0]
    v_old = ref_joint_value(q, old)
    for i in range(q.ndim):
        want = np.zeros(q.shape[i])
        for a in itertools.product(*(range(k) for k in q.shape)):
            p = np.prod([old[j][a[j]] for j in range(q.ndim)])
            partners = sum(math.log(cur[j][a[j]] / old[j][a[j]]) for j in range(q.ndim) if j != i)
            if method == "async":
                adv = q[a] - v_old
            elif method == "asae":
                adv = math.exp(partners) * (q[a] - v_old)
            else:
                adv = asae.synchronous_marginal_advantage(q, old, cur, i)[a[i]]
            want += p * ref_policy_grad(np.log(cur[i]), a[i], math.log(old[i][a[i]]), partners, adv,
                                        eps, 0.0, cfg.clip_ratio == "joint")
        assert_allclose(probe.grad[i, :q.shape[i]], want, rtol=1e-8, atol=1e-10)


@given(old_new_games())
def test_probe_finish_compares_with_e6_after_the_update(g):
    """Bias = |used − Ã^i(new)|: zero for exact_sync recorded at the new policies; for
    async it is |A^i_old − Ã^i(new)| = the E7 bias formula."""
    q, old, new, _ = g
    cfg = asae.Config(sync_clip=None)
    for method in ("exact_sync", "async"):
        probe, run = _probe_at(method, q, old, new, cfg)
        pack = np.array([np.pad(np.log(np.asarray(p)), (0, max(q.shape) - len(p))) for p in new])
        asae._probe_finish(run.hp, run.pol, pack, run.ex, probe)
        bias = sum(np.abs(asae.marginal_advantage(q, old, i)
                          - asae.synchronous_marginal_advantage(q, old, new, i)).sum()
                   for i in range(q.ndim))
        if method == "exact_sync":
            assert probe.sums[0] < 1e-9 * max(1.0, np.abs(q).max()) and probe.sums[6] < 1e-7
        else:
            assert math.isclose(probe.sums[0], bias, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(probe.sums[1], bias, rel_tol=1e-9, abs_tol=1e-9)
        assert probe.count[0] == 0 and probe.sums[2] == sum(q.shape)


def test_advantage_bias_orders_methods_on_climbing():
    """Measured, not assumed: exact_sync and asae weights track Ã closer than async's 1."""
    cfg = small_config(iterations=10, sync_clip=None)
    game = envs.MatrixGame(CLIMBING)
    b = {m: asae.advantage_bias(game, m, cfg) for m in ("async", "asae", "exact_sync")}
    assert all(v["n_steps"] == 10 * 16 * 2 for v in b.values())
    assert b["asae"]["mean_abs_bias"] < b["async"]["mean_abs_bias"]
    assert b["exact_sync"]["mean_abs_bias"] < b["async"]["mean_abs_bias"]
    assert math.isclose(b["async"]["mean_abs_bias"], b["async"]["mean_abs_bias_async"])


def test_truncation_is_bootstrapped_and_termination_is_not():
    cfg = asae.Config(gamma=0.9, lam=0.95, iterations=60, n_envs=8, rollout_len=10,
                      lr_critic=0.1, entropy_coef=0.0, seed=0)
    v_trunc = asae.train(RewardChain(terminate=False), "async", cfg).values[0]
    v_term = asae.train(RewardChain(terminate=True), "async", cfg).values[0]
    assert abs(v_trunc - 1 / (1 - 0.9)) < 0.1               # V = Σ γ^k = 10: the time limit is not the end
    expected_term = np.mean([(1 - 0.9 ** k) / 0.1 for k in range(1, 6)])  # steps-to-go 5..1
    assert abs(v_term - expected_term) < 0.1


def test_large_steps_stay_finite():
    """sync_clip=None, huge learning rate, many epochs: a finite result (or the guard)."""
    cfg = small_config(sync_clip=None, lr_actor=1e4, epochs=30, reward_scale=1.0, iterations=5)
    for method in ("asae", "happo", "exact_sync"):
        res = asae.train(envs.MatrixGame(QTRAN), method, cfg)
        assert all(np.all(np.isfinite(z)) for z in res.logits)
        assert np.isfinite(res.diagnostics["max_ratio"])


# ---------------------------------------------------------------------------------------
# Guards: non-finite state raises; every bad input a clear error, never a crash
# ---------------------------------------------------------------------------------------


class RewardChain:
    """One state, reward ``r`` per step, episodes cut every ``k`` steps by truncation (time
    limit) or by termination. With bootstrapping at truncation V = r/(1−γ)."""

    def __init__(self, k=5, terminate=False, r=1.0, n_actions=2):
        self.k, self.terminate, self.r = k, terminate, r
        self.n_agents, self.n_actions, self.n_states, self.n_obs = 1, (n_actions,), 1, 1
        self.episode_limit = k

    def reset(self, n_envs, seed=None):
        self.t = np.zeros(n_envs, np.int64)
        return np.zeros((n_envs, 1), np.int64), np.zeros(n_envs, np.int64)

    def step(self, actions):
        B = self.t.size
        self.t += 1
        cut = self.t % self.k == 0
        term, trunc = (cut, np.zeros(B, bool)) if self.terminate else (np.zeros(B, bool), cut)
        zeros = np.zeros(B, np.int64)
        return np.zeros((B, 1), np.int64), zeros, np.full(B, self.r), term, trunc, zeros


class Patched:
    """The climbing game with attributes replaced (``None`` values kept)."""

    def __init__(self, **attrs):
        game = envs.climbing()
        for a in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "optimum",
                  "payoff", "reset", "step", "tables"):
            setattr(self, a, attrs[a] if a in attrs else getattr(game, a))


class BadEnv(RewardChain):
    """RewardChain whose step output is corrupted by ``corrupt(out) -> out``."""

    def __init__(self, corrupt, **kw):
        super().__init__(**kw)
        self.corrupt = corrupt

    def step(self, actions):
        return self.corrupt(list(super().step(actions)))


def _set(k, v):
    def corrupt(out):
        out[k] = v(out[k]) if callable(v) else v
        return tuple(out)
    return corrupt


def test_diverging_critic_raises_naming_it():
    env = RewardChain(r=1e307, n_actions=1)       # one action: the actor cannot diverge
    with pytest.raises(FloatingPointError, match=r"iteration \d+: the critic V"):
        asae.train(env, "async", asae.Config(gamma=1.0, iterations=100, n_envs=4, rollout_len=5))


def test_diverging_actor_raises_naming_it():
    env = RewardChain(r=1e300)
    with pytest.raises(FloatingPointError, match="iteration 1: agent 0's logits"):
        asae.train(env, "async", asae.Config(reward_scale=1e10, iterations=3, n_envs=4, rollout_len=5))


LEARNER_BAD = [
    (lambda: asae.Config(gamma=1.5), ValueError, "gamma"),
    (lambda: asae.Config(epochs=0), ValueError, "epochs"),
    (lambda: asae.Config(epochs=2.0), TypeError, "epochs"),
    (lambda: asae.Config(sync_clip=-1.0), ValueError, "sync_clip"),
    (lambda: asae.Config(clip_eps=2.0), ValueError, "clip_eps"),
    (lambda: asae.Config(clip_ratio="both"), ValueError, "clip_ratio"),
    (lambda: asae.Config(n_envs=2, rollout_len=1, minibatches=4), ValueError, "minibatches"),
    (lambda: asae.Config(reward_scale=0.0), ValueError, "reward_scale"),
    (lambda: asae.Config(lr_critic=3.0, reward_scale=1 / 30), ValueError, "lr_critic"),
    (lambda: asae.Config(lr_critic=2.1), ValueError, "lr_critic"),
    (lambda: asae.Config(lr_actor=np.inf), ValueError, "lr_actor"),
    (lambda: asae.Config(track_bias="no"), TypeError, "track_bias"),
    (lambda: asae.Config(record_policies=1), TypeError, "record_policies"),
    (lambda: asae.Config(seed=-1), ValueError, "seed"),
    (lambda: asae.Config(init_logits=[[[0.0, np.nan]]]), ValueError, "init_logits"),
    (lambda: asae.Config(init_logits="abc"), TypeError, "init_logits"),
    (lambda: asae.train(envs.climbing(), "asae", asae.Config(init_logits=[[[0.0, 0.0, 0.0]]])),
     ValueError, "init_logits"),
    (lambda: asae.train(envs.climbing(), "ppo"), ValueError, "method"),
    (lambda: asae.train(object(), "asae"), TypeError, "env"),
    (lambda: asae.train(envs.TwoStepGame, "asae"), TypeError, "TwoStepGame()"),
    (lambda: asae.train(RewardChain(), "exact_sync"), ValueError, "exact_sync"),
    (lambda: asae.train(RewardChain(), "exact_async"), ValueError, "exact_async"),
    (lambda: asae.train(envs.climbing(), "asae", {"gamma": 0.9}), TypeError, "config"),
    (lambda: asae.advantage_bias(envs.climbing(), "asae", "fast"), TypeError, "config"),
    (lambda: asae.train(envs.GridForaging(size=100, n_food=1), "asae"), ValueError, "GiB"),
    (lambda: asae.train(BadEnv(_set(0, lambda o: o + 5)), "async"), ValueError, "obs"),
    (lambda: asae.train(BadEnv(_set(0, lambda o: o.astype(float))), "async"), TypeError, "obs"),
    (lambda: asae.train(BadEnv(_set(2, lambda r: r * np.nan)), "async"), ValueError, "reward"),
    (lambda: asae.train(BadEnv(_set(2, lambda r: r[:1])), "async"), ValueError, "reward"),
    (lambda: asae.train(BadEnv(_set(1, lambda s: s - 1)), "async"), ValueError, "state"),
    (lambda: asae.train(BadEnv(_set(5, lambda s: s + 1)), "async"), ValueError, "final_state"),
    (lambda: asae.train(BadEnv(_set(3, lambda t: t.astype(float))), "async"), TypeError, "terminated"),
    (lambda: asae.train(BadEnv(lambda out: out[:5]), "async"), TypeError, "env.step"),
    (lambda: asae.evaluate(envs.climbing(), [np.zeros((1, 3))] * 3), ValueError, "one table per agent"),
    (lambda: asae.evaluate(envs.climbing(), [np.zeros((1, 2))] * 2), ValueError, r"logits\[0\]"),
    (lambda: asae.evaluate(envs.climbing(), [np.full((1, 3), np.nan)] * 2), ValueError, r"logits\[0\]"),
    (lambda: asae.evaluate(envs.climbing(), np.zeros((1, 3))), TypeError, "logits"),
    (lambda: asae.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, episodes=0), ValueError, "episodes"),
    (lambda: asae.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, greedy="yes"), TypeError, "greedy"),
    # memory estimated before it is spent, the field named
    (lambda: asae.train(envs.climbing(), "async", asae.Config(iterations=10 ** 12)), ValueError,
     "Config.iterations"),
    (lambda: asae.train(envs.climbing(), "async", asae.Config(n_envs=10 ** 6, rollout_len=10 ** 6)),
     ValueError, "Config.n_envs"),
    (lambda: asae.train(envs.climbing(), "async", asae.Config(eval_episodes=10 ** 11)), ValueError,
     "Config.eval_episodes"),
    (lambda: asae.train(envs.climbing(), "async", asae.Config(epochs=10 ** 9)), ValueError,
     "Config.epochs"),
    (lambda: asae.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, episodes=10 ** 11), ValueError,
     "episodes"),
    (lambda: asae.Config(iterations=10 ** 30), ValueError, "iterations"),
    # the env protocol checked up front, each attribute named
    (lambda: asae.train(Patched(tables=lambda: None), "async"), TypeError, "env.tables()"),
    (lambda: asae.train(Patched(tables=lambda: {"reward": 1}), "async"), TypeError, "next_state"),
    (lambda: asae.train(Patched(tables=lambda: (1, 2, 3)), "async"), TypeError, "env.tables()"),
    (lambda: asae.train(Patched(tables=lambda: {**envs.climbing().tables()._asdict(),
                                                "time_limit": 10 ** 30}), "async"),
     ValueError, "time_limit"),
    (lambda: asae.train(Patched(n_actions=2), "async"), TypeError, "env.n_actions"),
    (lambda: asae.train(Patched(n_actions=None), "async"), TypeError, "env.n_actions"),
    (lambda: asae.train(Patched(step=None), "async"), TypeError, "env.step"),
    (lambda: asae.train(Patched(reset=5), "async"), TypeError, "env.reset"),
    (lambda: asae.train(Patched(optimum="x"), "async"), TypeError, "env.optimum"),
    (lambda: asae.train(Patched(optimum=np.nan), "async"), TypeError, "env.optimum"),
    (lambda: asae.Config(init_logits=[[[1e308, -1e308, 0.0]], [[0.0, 0.0, 0.0]]]), ValueError,
     "init_logits"),
    (lambda: asae.evaluate(RewardChain(r=1e308), [np.zeros((1, 2))]), FloatingPointError,
     "evaluate"),
    (lambda: asae.train(envs_spread.Spread(), "async", asae.Config()), TypeError, "NetConfig"),
    (lambda: asae.advantage_bias(envs_spread.Spread(), "async"), TypeError, "feature observations"),
    (lambda: asae.evaluate(envs_spread.Spread(), [np.zeros((1, 5))] * 3), TypeError,
     "feature observations"),
    (lambda: asae.method_advantages("ppo", [1.0]), ValueError, "method"),
    (lambda: asae.method_advantages("asae", [1.0]), TypeError, "log_ratios"),
    (lambda: asae.method_advantages("asae", [1.0, 2.0], np.zeros((3, 2))), ValueError, "log_ratios"),
    (lambda: asae.method_advantages("happo", [1.0], np.zeros((1, 2))), TypeError, "order"),
    (lambda: asae.method_advantages("happo", [1.0], np.zeros((1, 2)), order=[0, 0]), ValueError, "order"),
    (lambda: asae.method_advantages("exact_sync", [1.0]), TypeError, "tables"),
    (lambda: asae.method_advantages("exact_sync", [1.0], tables=[[0.0, 1.0]], actions=[[2]]),
     ValueError, "actions"),
    (lambda: asae.method_advantages("coma", np.zeros((2, 2)), np.zeros((2, 3))), ValueError, "advantages"),
]


@pytest.mark.parametrize("call, exc, name", LEARNER_BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(LEARNER_BAD)])
def test_learner_bad_input(call, exc, name):
    with pytest.raises(exc, match=name.replace("(", r"\(").replace(")", r"\)")):
        call()


CRASH_CASES = {
    # tables trained on a 3×3 grid evaluated on a 30×30 one (segfaulted in 0.1)
    "evaluate_grid_mismatch": "asae.evaluate(envs.GridForaging(size=30, n_food=1), "
                              "asae.train(envs.GridForaging(size=3, n_food=1), 'async', "
                              "asae.Config(iterations=1)).logits, greedy=False)",
    # a custom env whose observation ids exceed n_obs (segfaulted in _rollout)
    "obs_out_of_range": "asae.train(test_asae.BadEnv(test_asae._set(0, lambda o: o + 10**6)), 'async')",
    "tables_out_of_range": "asae.train(test_asae.BadTables(), 'async')",
}


class BadTables(RewardChain):
    """A custom env offering transition tables with an out-of-range successor state."""

    def tables(self):
        return SimpleNamespace(next_state=np.array([[5, 0]]), reward=np.ones((1, 2)),
                               terminated=np.zeros((1, 2), bool), obs=np.zeros((1, 1), np.int64),
                               start_state=0, time_limit=5)


@pytest.mark.parametrize("case", sorted(CRASH_CASES))
def test_former_crashes_raise_clear_errors_in_a_subprocess(case):
    """Run in a fresh interpreter: a segfault would show as a negative return code."""
    code = ("import asae, envs, test_asae\n"
            f"try:\n    {CRASH_CASES[case]}\n"
            "except (ValueError, TypeError) as e:\n    print('CLEAR', type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.startswith("CLEAR"), out.stdout + out.stderr[-2000:]


def test_evaluate_greedy_and_stochastic_policies():
    """evaluate: argmax of hand-set logits reaches the payoff's optimum; uniform play averages."""
    game = envs.MatrixGame(CLIMBING)
    best = [np.array([[5.0, 0.0, 0.0]]), np.array([[5.0, 0.0, 0.0]])]
    assert asae.evaluate(game, best, episodes=8, greedy=True) == 11.0
    uniform = [np.zeros((1, 3)), np.zeros((1, 3))]
    mean = asae.evaluate(game, uniform, episodes=4000, greedy=False, seed=1)
    assert abs(mean - np.mean(CLIMBING)) < 1.0      # E1 under the uniform policy: −31/9 ± sampling


def test_config_and_train_result_docs_are_visible_in_help():
    for cls in (asae.Config, asae.TrainResult):
        doc = pydoc.render_doc(cls)
        for f in dataclasses.fields(cls):
            assert f.name in doc and f.metadata["doc"][:30] in doc.replace("\n    ", " ")


# ---------------------------------------------------------------------------------------
# CoPPO (E11), A2PO (E12), clip_scale: the kernels against hand values, behavioural pins
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rho, u, sign, g", [(1.0, 1.5, 1, 1.1), (0.7, 2.0, 1, 0.0),
                                             (1.0, 0.5, -1, 0.9), (1.3, 1.0, 1, 0.0),
                                             (1.3, 1.0, -1, 1.0), (1.0, 1.0, 1, 1.0)])
def test_double_clip_slope_hand_values(rho, u, sign, g):
    """E11 with ε = 0.2, ε_in = 0.1: s = Â g ρ, g = u where the unclipped term is the minimum,
    v = clip(u, 0.9, 1.1) where the clipped one is and the outer clip does not bind, else 0
    (a positive advantage can be zeroed by the lower clip: the second row)."""
    log_v = math.log(min(max(u, 0.9), 1.1))
    s = asae._double_clip_slope(math.log(rho), log_v, sign * u, float(sign), 0.8, 1.2)
    assert math.isclose(s, sign * g * rho, rel_tol=1e-12, abs_tol=1e-15)


@given(st.floats(-1.0, 1.0), st.floats(-1.5, 1.5), st.floats(-3.0, 3.0),
       st.sampled_from([0.0, 0.1, 0.3, None]), st.sampled_from([0.1, 0.2, 0.5]))
def test_double_clip_slope_is_the_objective_derivative(log_rho, log_u, adv, inner, eps):
    """s = ρ ∂/∂ρ min(ρ u Â, clip(ρ v, 1 ± ε) Â) by central differences away from the kinks;
    with no inner clip it equals the joint-ratio PPO slope (asae, clip_ratio='joint')."""
    u = math.exp(log_u)
    v = u if inner is None else min(max(u, 1 - inner), 1 + inner)
    L = lambda lr: min(math.exp(lr) * u * adv,  # noqa: E731
                       min(max(math.exp(lr) * v, 1 - eps), 1 + eps) * adv)
    x1, x2 = math.exp(log_rho) * u, math.exp(log_rho) * v
    assume(min(abs(x2 - 1 - eps), abs(x2 - 1 + eps), abs(x1 - min(max(x2, 1 - eps), 1 + eps)))
           > 1e-4)
    s = asae._double_clip_slope(log_rho, math.log(v), u * adv, adv, 1 - eps, 1 + eps)
    h = 1e-7
    assert math.isclose(s, (L(log_rho + h) - L(log_rho - h)) / (2 * h), rel_tol=1e-5,
                        abs_tol=1e-7)
    if inner is None:
        ppo = asae._ppo_slope(log_rho, log_rho + log_u, u * adv, 1 - eps, 1 + eps)
        assert math.isclose(s, ppo, rel_tol=1e-12, abs_tol=1e-15)


def test_traced_advantage_hand_values():
    """E12's recursion on δ = (1, 1, 1), γ = 1, no termination, M = (·, 0.5, 2), c̄ = 1:
    λ = 1 gives (2, 2, 1) (GAE: (3, 2, 1)); λ = 0.5 gives (1.375, 1.5, 1)."""
    r, z = np.ones((3, 1)), np.zeros((3, 1))
    c = np.minimum(1.0, np.array([[1.0], [0.5], [2.0]]))
    for lam, want in [(1.0, [2, 2, 1]), (0.5, [1.375, 1.5, 1])]:
        got = ref_traced_gae(r, z, z, z.astype(bool), z.astype(bool), 1.0, lam, c)
        assert_allclose(got[:, 0], want, rtol=1e-15)
    assert_allclose(ref_traced_gae(r, z, z, z.astype(bool), z.astype(bool), 1.0, 1.0,
                                   np.ones((3, 1)))[:, 0], [3, 2, 1])


def _one_step(**kw):
    return small_config(epochs=1, minibatches=1, iterations=10, lr_actor=3.0, **kw)


def test_one_gradient_step_pins_for_coppo_a2po_and_clip_scale():
    """With one gradient step per update every ratio is 1 when it is taken: CoPPO's u = v = 1
    (≡ async bit for bit), a shrunk clip never binds (≡ the unshrunk run), A2PO's clip range
    by position is inert while ε_o ≤ ε_m, and its first agent is async's — but its later
    agents see the earlier ones' moves, so the run differs from async (as HAPPO's does)."""
    game = envs.MatrixGame(CLIMBING)
    runs = {m: asae.train(game, m, _one_step()) for m in ("async", "coppo", "a2po", "happo")}
    _same_result(runs["coppo"], runs["async"])
    _same_result(asae.train(game, "async", _one_step(clip_scale="inv_n")), runs["async"])
    _same_result(asae.train(game, "happo", _one_step(clip_scale="root_n")), runs["happo"])
    _same_result(asae.train(game, "a2po", _one_step(a2po_clip_floor=1.0)), runs["a2po"])
    assert not np.array_equal(runs["a2po"].logits[0], runs["async"].logits[0])
    assert not np.array_equal(runs["happo"].logits[0], runs["async"].logits[0])


def test_a2po_is_happo_without_its_clips_in_a_one_step_game():
    """Without a PPO clip and without ε_o, A2PO's objective is HAPPO's (E9), and in a one-step
    game every step ends an episode, so its trace is inert: the runs are identical; c̄ does
    not matter there, and the clips do once ratios move."""
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(clip_eps=None, a2po_others_eps=None, lr_actor=3.0)
    _same_result(asae.train(game, "a2po", cfg), asae.train(game, "happo", cfg))
    _same_result(asae.train(game, "a2po", replace(cfg, a2po_trace_cbar=0.01)),
                 asae.train(game, "happo", cfg))
    several = small_config(epochs=4, minibatches=4, iterations=3, lr_actor=10.0)
    assert not np.array_equal(asae.train(game, "a2po", several).logits[0],
                              asae.train(game, "happo", several).logits[0])


@pytest.mark.parametrize("method, kw, ctrl", [
    ("coppo", {}, dict(coppo_inner_eps=None)), ("coppo", {}, dict(clip_eps=None)),
    ("a2po", {}, dict(a2po_others_eps=None)), ("a2po", {}, dict(a2po_clip_floor=1.0)),
    ("async", {}, dict(clip_scale="inv_n")), ("asae", {}, dict(clip_scale="root_n"))])
def test_each_coppo_a2po_choice_changes_the_run(method, kw, ctrl):
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=8, iterations=3, lr_actor=10.0, **kw)
    assert not np.array_equal(asae.train(game, method, cfg).logits[0],
                              asae.train(game, method, replace(cfg, **ctrl)).logits[0])


def test_a2po_trace_changes_the_run_in_a_multi_step_game():
    game = envs.TwoStepGame()
    cfg = asae.Config(iterations=4, n_envs=8, rollout_len=6, epochs=4, lr_actor=5.0, seed=2)
    assert not np.array_equal(asae.train(game, "a2po", cfg).logits[0],
                              asae.train(game, "a2po", replace(cfg, a2po_trace_cbar=0.05)).logits[0])


def test_method_advantages_for_coppo_and_a2po():
    """coppo: w^i Â unclipped (sync_clip does not apply); a2po: clip(M, 1 ± ε_o) Â, ε_o given
    as sync_clip."""
    lr = np.log([[2.0, 1.25, 0.5]])
    got = asae.method_advantages("coppo", [1.0], lr, sync_clip=0.1)
    assert_allclose(got, [[0.625, 1.0, 2.5]], rtol=1e-12)
    got = asae.method_advantages("a2po", [1.0], lr, order=[1, 0, 2], sync_clip=0.1)
    assert_allclose(got, [[1.1, 1.0, 1.1]], rtol=1e-12)


COPPO_A2PO_BAD = [
    (lambda: asae.train(envs.climbing(), "coppo", asae.Config(clip_ratio="joint")), ValueError,
     "clip_ratio"),
    (lambda: asae.train(envs.climbing(), "a2po", asae.Config(clip_ratio="joint")), ValueError,
     "clip_ratio"),
    (lambda: asae.train(envs.climbing(), "coppo", asae.Config(clip_scale="inv_n")), ValueError,
     "clip_scale"),
    (lambda: asae.Config(clip_scale="n"), ValueError, "clip_scale"),
    (lambda: asae.Config(clip_scale="inv_n", clip_ratio="joint"), ValueError, "clip_scale"),
    (lambda: asae.Config(coppo_inner_eps=1.5), ValueError, "coppo_inner_eps"),
    (lambda: asae.Config(a2po_others_eps=-0.1), ValueError, "a2po_others_eps"),
    (lambda: asae.Config(a2po_clip_floor=2.0), ValueError, "a2po_clip_floor"),
    (lambda: asae.Config(a2po_trace_cbar=0.0), ValueError, "a2po_trace_cbar"),
]


@pytest.mark.parametrize("call, exc, name", COPPO_A2PO_BAD,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(COPPO_A2PO_BAD)])
def test_coppo_a2po_bad_config(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


@given(st.integers(1, 12), st.integers(2, 4), st.sampled_from(["async", "asae", "happo", "a2po",
                                                               "coppo"]), st.data())
def test_record_ratios_matches_reference(size, n, method, data):
    """The ratio statistics of one minibatch step against their definitions."""
    cfg = asae.Config(sync_clip=0.2, a2po_others_eps=0.1, track_ratios=True)
    hp = asae._hyper(cfg, method)
    lr = arrays(data.draw, (size, n), st.floats(-2.0, 2.0))
    base = arrays(data.draw, (size, n), st.floats(-3.0, 3.0))
    order = np.array(data.draw(st.permutations(range(n))), np.int64)
    adv = np.empty((size, n))
    asae._weighted_advantages(hp.weight, hp.w_lo, hp.w_hi, base, lr, order, adv)
    stats = np.zeros(asae.RATIO_SLOTS)
    movers = order if hp.schedule == asae.SIMULTANEOUS else order[:1]
    asae._record_ratios(hp, (np.arange(size), lr, adv, base), movers, order, (0.8, 1.2), stats)
    clip = 0.1 if method == "a2po" else 0.2 if method == "asae" else None
    m = ref_sequential_weights(lr, order) if hp.weight == asae.PRECEDING else \
        ref_sync_weights(lr, None) if hp.weight == asae.PARTNERS else np.ones((size, n))
    mc = m if clip is None else np.clip(m, 1 - clip, 1 + clip)
    binds = ess = 0.0
    for i in movers:
        for r in range(size):
            s = asae._row_slope(hp, lr[r], i, adv[r, i], base[r, i], 0.8, 1.2)
            binds += s == 0.0 and adv[r, i] != 0.0
        ess += mc[:, i].sum() ** 2 / (size * (mc[:, i] ** 2).sum())
    log_w = np.array([[lr[r].sum() - lr[r, i] for i in movers] for r in range(size)])
    assert stats[asae.RATIO_BINS + 2] == size * len(movers)
    assert stats[asae.RATIO_BINS + 3] == binds
    assert stats[:asae.RATIO_BINS + 2].sum() == size * len(movers)
    inside = np.abs(log_w) < asae.RATIO_RANGE - 1e-9
    assert stats[:asae.RATIO_BINS].sum() == inside.sum()
    assert math.isclose(stats[asae.RATIO_BINS + 5], ess, rel_tol=1e-9)
    want_clip = 0 if clip is None else int(sum((np.abs(mc[:, i] - m[:, i]) > 1e-12).sum()
                                               for i in movers))
    assert abs(stats[asae.RATIO_BINS + 4] - want_clip) <= 0


def test_ratio_statistics_through_train():
    """Through train: one gradient step per update means no partner has moved (log W = 0,
    no clip binds, ESS 1); async's weights are 1; asae's clip acts once partners move."""
    game = envs.penalty(-100, n_agents=3)
    one = asae.train(game, "asae", small_config(epochs=1, minibatches=1, track_ratios=True))
    assert one.ratios["log_w_quantiles"][0.05] == one.ratios["log_w_quantiles"][0.95] == 0.005
    assert one.ratios["ppo_clip_binds"] == 0 and one.ratios["ess_fraction"] == 1.0
    cfg = small_config(epochs=8, lr_actor=10.0, track_ratios=True, sync_clip=0.05)
    a, b = asae.train(game, "async", cfg), asae.train(game, "asae", cfg)
    assert a.ratios["weight_clip_binds"] == 0 and a.ratios["ess_fraction"] == 1.0
    assert b.ratios["weight_clip_binds"] > 0 and b.ratios["ess_fraction"] < 1.0
    assert a.ratios["samples"] == 6 * 64 * 8 * 3 and a.ratios["ppo_clip_binds"] > 0
    assert asae.train(game, "async", replace(cfg, track_ratios=False)).ratios is None


# =======================================================================================
# Count tables: n agents without joint tables (env.count_tables(), issue 16 item 2)
# =======================================================================================


class RandomCountReward:
    """A reward per count vector drawn from ``seed``: distinct values, so that a wrong count
    index changes the rollout."""

    def __init__(self, seed):
        self.seed = seed

    def __call__(self, counts):
        return float(np.random.default_rng([self.seed, *counts]).normal())

    def __repr__(self):
        return f"RandomCountReward({self.seed})"


class StepOnly:
    """An env with the protocol's attributes and ``step`` only: no tables, no payoff."""

    def __init__(self, env):
        self.env = env
        for a in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "optimum"):
            setattr(self, a, getattr(env, a))

    def reset(self, n_envs, seed=None):
        return self.env.reset(n_envs, seed)

    def step(self, actions):
        return self.env.step(actions)


COUNT_GAMES = [(lambda: envs.penalty(-50, 2, n_agents=3), 0.02),
               (lambda: envs.CountGame(RandomCountReward(1), 3, 3, 2), 1.0),
               (lambda: envs.CountGame(RandomCountReward(2), 3, 4), 1.0)]


@pytest.mark.parametrize("method", ["async", "asae", "happo", "coma"])
@pytest.mark.parametrize("make, scale", COUNT_GAMES, ids=["penalty", "random", "four_actions"])
def test_count_tables_train_equals_joint_tables_and_step(make, scale, method):
    """train on the count tables (O(n) column in _rollout_tables) is bit-identical to train on
    the joint tables of the same game (its MatrixGame) and to the env.step path."""
    game = make()
    cfg = asae.Config(iterations=5, n_envs=8, rollout_len=7, seed=4, reward_scale=scale)
    got = asae.train(game, method, cfg)
    assert game._tables is None                   # the run took the count tables
    joint = envs.MatrixGame(game.payoff, game.episode_len)
    _same_result(got, asae.train(joint, method, cfg))
    _same_result(got, asae.train(StepOnly(game), method, cfg))
    assert not np.array_equal(got.logits[0], asae.train(game, method, replace(cfg, iterations=1)
                                                        ).logits[0])  # the runs learned


def test_rollout_count_index_is_the_direct_formula():
    """A = 3, n = 4: every sampled joint action's table column in the jitted rollout is
    c = count_0 + count_1 · (n + 1) (the reward of column c is c here); all 81 are seen."""
    n = 4
    game = envs.CountGame(lambda counts: float(counts[0] + counts[1] * (n + 1)), n, 3)
    cfg = asae.Config(n_envs=64, rollout_len=32, init_logit_std=0.0)
    _, (hp, pol, critic, ex, rng, log, rec) = asae._setup(game, "async", cfg)
    tab = asae._env_tables(game, n, pol.n_actions, 1, 1)
    assert tab.count_base == n + 1 and tab.reward.shape == (1, (n + 1) ** 2)
    B = cfg.n_envs
    asae._rollout_tables(tab, pol, np.zeros(B, np.int64), np.zeros(B, np.int64), np.zeros(B),
                         rng, rec.batch)
    act = rec.batch.act.reshape(-1, n)
    direct = [a.count(0) + a.count(1) * (n + 1) for a in act.tolist()]
    assert rec.batch.rew.ravel().tolist() == [float(c) for c in direct]
    assert len(set(map(tuple, act.tolist()))) == 3 ** n


@pytest.mark.parametrize("n", [16, 32])
@pytest.mark.parametrize("method", ["async", "asae", "happo"])
def test_train_many_agents_on_count_tables(n, method):
    """n = 16 and 32 agents train (3^32 joint actions: only the count tables exist), with
    finite results, bit-identical to the env.step path, and no joint array built."""
    game = envs.penalty(-100, n_agents=n)
    cfg = asae.Config(iterations=3, n_envs=16, rollout_len=4, eval_episodes=8,
                      reward_scale=0.01, lr_actor=3.0)
    got = asae.train(game, method, cfg)
    assert np.isfinite(got.mean_return).all() and np.isfinite(got.values).all()
    assert math.isfinite(got.greedy_return) and math.isfinite(got.stochastic_return)
    assert len(got.logits) == n and all(z.shape == (1, 3) and np.isfinite(z).all()
                                        for z in got.logits)
    assert game._payoff is None and game._tables is None
    _same_result(got, asae.train(StepOnly(game), method, cfg))
    assert asae._table_columns(game, n, game.n_actions) == (n + 1) ** 2   # 1089 at n = 32


@pytest.mark.parametrize("n, method, track_bias, part", [
    (18, "coma", False, "the env's states × joint actions (COMA's critic Q)"),
    (32, "coma", False, "the env's states × joint actions (COMA's critic Q)"),
    (17, "exact_sync", False, "the env's joint actions (payoff of the exact methods and the "
                              "bias probe)"),
    (32, "exact_async", False, "the env's joint actions (payoff of the exact methods and the "
                               "bias probe)"),
    (14, "asae", True, "the env's joint actions × agents (bias probe)"),
    (16, "async", True, "the env's joint actions × agents (bias probe)"),
])
def test_joint_parts_refused_beyond_the_memory_plan(n, method, track_bias, part):
    """COMA's joint critic, the exact methods' payoff and the bias probe still need arrays over
    the 3^n joint actions: refused, naming the part, before the env builds its payoff."""
    game = envs.penalty(n_agents=n)
    with pytest.raises(ValueError, match=r"this run needs ≈ .* GiB, most of it for "
                       + re.escape(part) + r" \(≈ .*\); asae refuses more than 1 GiB "
                       r"\(MAX_TABLE_BYTES\)"):
        asae.train(game, method, asae.Config(track_bias=track_bias))
    assert game._payoff is None and game._tables is None


def test_joint_parts_accepted_where_they_fit(monkeypatch):
    """The other side of the boundary: COMA at n = 17 (Q: 8 · 3^17 bytes) and the bias probe
    at n = 13 fit the memory plan (checked without running; the probe's work limit, which
    refuses n = 13, lifted here)."""
    monkeypatch.setattr(asae, "MAX_EXACT_WORK", 10 ** 12)
    for n, method, track_bias in [(17, "coma", False), (13, "async", True)]:
        asae._check_train_args(envs.penalty(n_agents=n), method, asae.Config(track_bias=track_bias))


class CountPatched:
    """penalty(n_agents=3) with attributes replaced; ``count_tables`` by default its own."""

    def __init__(self, **attrs):
        game = envs.penalty(n_agents=3)
        for a in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "optimum",
                  "reset", "step", "count_tables"):
            setattr(self, a, attrs[a] if a in attrs else getattr(game, a))
        if "tables" in attrs:
            self.tables = attrs["tables"]


def _count_fields(**changes):
    return {**envs.penalty(n_agents=3).count_tables()._asdict(), **changes}


@pytest.mark.parametrize("env, exc, match", [
    (CountPatched(count_tables=lambda: {k: v for k, v in _count_fields().items()
                                        if k != "count_base"}),
     TypeError, r"env.count_tables\(\) must return an asae.EnvTables .* without count_base"),
    (CountPatched(count_tables=lambda: _count_fields(count_base=3)), ValueError,
     r"env.count_tables\(\).count_base must be n_agents \+ 1 = 4; got 3"),
    (CountPatched(count_tables=lambda: {**envs.penalty(n_agents=3).tables()._asdict(),
                                        "count_base": 4}),
     ValueError, r"env.count_tables\(\).next_state must have shape \(1, 16\)"),
    (CountPatched(count_tables=lambda: _count_fields(reward=np.full((1, 16), np.nan))),
     ValueError, r"env.count_tables\(\).reward must be finite"),
    (CountPatched(count_tables=5), TypeError, "env.count_tables must be callable"),
    (CountPatched(n_actions=(3, 3, 2)), ValueError,
     r"env.count_tables\(\) needs every agent to have the same number of actions; "
     r"env.n_actions holds \[2, 3\]"),
    (CountPatched(count_tables=None, tables=lambda: {
        **envs.penalty(n_agents=3).tables()._asdict(), "count_base": 4}), TypeError,
     "env.count_tables must be callable"),
])
def test_bad_count_tables(env, exc, match):
    with pytest.raises(exc, match=match):
        asae.train(env, "async", asae.Config(iterations=1))


def test_tables_with_a_count_base_refused():
    env = CountPatched(tables=lambda: {**envs.penalty(n_agents=3).tables()._asdict(),
                                       "count_base": 4})
    del env.count_tables
    with pytest.raises(ValueError, match=r"env.tables\(\).count_base must be 0 \(columns are "
                       r"joint actions; count tables come from env.count_tables\(\)\); got 4"):
        asae.train(env, "async", asae.Config(iterations=1))
    env.tables = lambda: {**envs.penalty(n_agents=3).tables()._asdict(), "count_base": 0}
    assert np.isfinite(asae.train(env, "async", asae.Config(iterations=1)).values).all()


@pytest.mark.parametrize("method, kw", [("exact_sync", {}), ("exact_async", {}),
                                        ("async", dict(track_bias=True))])
def test_exact_work_is_refused_beyond_its_limit(method, kw):
    """n = 13 agents of 3 actions: 3^13·13² ≈ 2.7e8 operations per gradient step, refused
    before anything is built; n = 12 (9.0e7) is accepted."""
    with pytest.raises(ValueError, match="MAX_EXACT_WORK"):
        asae.train(envs.penalty(-100, n_agents=13), method, asae.Config(iterations=1, **kw))
    if method == "exact_async":                       # the cheapest, to keep the suite quick
        cfg = asae.Config(iterations=1, n_envs=2, rollout_len=1, minibatches=1, epochs=1)
        assert np.isfinite(asae.train(envs.penalty(-100, n_agents=12), method, cfg).greedy_return)


def test_optimum_is_read_only_after_the_memory_check():
    """A grid's optimum is a search over its states: train refuses an oversized run before
    reading it (GridForaging(size=100) searched 4e8 states and raised MemoryError), and
    evaluate, which needs no optimum, never reads it."""
    class Costly(envs.GridForaging):
        reads = 0

        @property
        def optimum(self):
            Costly.reads += 1
            raise MemoryError("searched")
    with pytest.raises(ValueError, match="GiB"):
        asae.train(Costly(size=100), "async")
    with pytest.raises(ValueError, match=r"logits\[0\] must have shape"):
        asae.evaluate(Costly(size=100), [np.zeros((1, 6))] * 2)
    assert Costly.reads == 0
    with pytest.raises(MemoryError, match="searched"):           # read once the run fits
        asae.train(Costly(size=3, n_food=1), "async", asae.Config(iterations=1))
    assert Costly.reads == 1


def test_mean_returns_near_the_float64_limit():
    """evaluate: a mean whose sum overflows but which is itself finite is returned (exactly,
    when every episode pays the same); train: a learning curve whose mean overflows raises
    FloatingPointError instead of reporting inf (it did, on both env paths)."""
    import warnings
    top = envs.MatrixGame([[1e308, 1e308], [1e308, 1e308]])
    mixed = envs.MatrixGame([[1.7e308, -1.7e308], [-1.7e308, 1.7e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert asae.evaluate(top, [np.zeros((1, 2))] * 2, episodes=1000, greedy=False) == 1e308
        mean = asae.evaluate(mixed, [np.zeros((1, 2))] * 2, episodes=999, greedy=False, seed=4)
    assert math.isfinite(mean) and abs(mean) < 1.7e308
    assert asae.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, episodes=1000, greedy=False,
                         seed=3) == pytest.approx(-3.355)             # the ordinary mean, as before
    cfg = asae.Config(iterations=2, n_envs=4, rollout_len=2, minibatches=1, eval_episodes=4,
                      reward_scale=1e-308)
    for env in (top, RewardChain(k=1, r=1e308)):
        with pytest.raises(FloatingPointError, match="iteration 1 overflows float64"):
            asae.train(env, "async", cfg)


def test_recorded_policies_are_each_iterations():
    """record_policies: I + 1 entries, the first the initial softmax, the last the final
    logits' softmax, and every update moves them — on both rollout paths."""
    cfg = small_config(iterations=4, record_policies=True)
    for env in (envs.MatrixGame(CLIMBING), NoTables(envs.MatrixGame(CLIMBING))):
        res = asae.train(env, "async", cfg)
        assert len(res.policies) == 5
        for i in range(2):
            assert_allclose(res.policies[-1][i], asae.softmax(res.logits[i]), rtol=1e-15)
            assert all(not np.array_equal(a[i], b[i])
                       for a, b in zip(res.policies, res.policies[1:]))


@pytest.mark.parametrize("offset, optimal", [(5e-7, True), (2e-6, False), (-1.0, True)])
def test_greedy_optimal_tolerance(offset, optimal):
    """greedy_optimal: the greedy return reaches env.optimum within 1e-6 (climbing's greedy
    joint action from hand-set logits pays 11)."""
    cfg = small_config(iterations=1, lr_actor=1e-9, init_logits=[[[9.0, 0.0, 0.0]]] * 2)
    res = asae.train(Patched(optimum=11.0 + offset), "async", cfg)
    assert res.greedy_return == 11.0 and res.greedy_optimal is optimal


def test_probe_second_moments_and_their_async_twins_through_train():
    """For async the advantage used is A_old itself: its second moment and gradient equal
    their async twins; for asae (weights ≠ 1 once partners move) they differ."""
    cfg = small_config(iterations=4, sync_clip=None, lr_actor=3.0)
    a = asae.advantage_bias(envs.MatrixGame(CLIMBING), "async", cfg)
    b = asae.advantage_bias(envs.MatrixGame(CLIMBING), "asae", cfg)
    assert a["mean_second_moment"] == a["mean_second_moment_async"] > 0
    assert a["mean_abs_grad_bias"] == a["mean_abs_grad_bias_async"] > 0
    assert b["mean_second_moment"] != b["mean_second_moment_async"]
    assert b["mean_abs_grad_bias"] != b["mean_abs_grad_bias_async"]


def test_probe_bias_through_train_is_the_e7_formula():
    """With one gradient step per update the bias probe's async record is, per update, the
    exact E7 bias |A^i_old − Ã^i(new)| between the recorded policies before and after it —
    train's own probe setup (π_old, V_old) checked from the outside."""
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(iterations=5, epochs=1, minibatches=1, lr_actor=3.0, track_bias=True,
                       record_policies=True)
    res = asae.train(game, "async", cfg)
    total = count = 0.0
    for old, new in zip(res.policies, res.policies[1:]):
        old_p, new_p = [p[0] for p in old], [p[0] for p in new]
        for i in range(2):
            d = (asae.marginal_advantage(game.payoff, old_p, i)
                 - asae.synchronous_marginal_advantage(game.payoff, old_p, new_p, i))
            total, count = total + np.abs(d).sum(), count + d.size
    assert math.isclose(res.bias["mean_abs_bias"], total / count, rel_tol=1e-9)


class RefProbe:
    """The bias probe written from its documentation (``advantage_bias``), hooked into
    ``ref_train``: at every gradient step and for every agent i that moves, by enumerating
    the joint actions a of the matrix game q (payoff units; π_old, V_old of the update):
    the method's advantage Â^i(a) from the current log-ratios, A_old(a) = q(a) − V_old, their
    second moments under π_old, E_{a^-i~π_old^-i}[Â^i | a^i], and the expected clipped
    gradient Σ_a π_old(a) ∇_{z^i}[objective at a] at the step's policies with Â^i (grad)
    and with A_old (its async twin). After the update, each record is compared with
    Ã^i = Q^i(π_new^-i) − V_old (E6), and each gradient with the gradient at the *same
    step's* policies with Ã^i(a^i) as the advantage."""

    def __init__(self, method, cfg, q):
        assert method in ("async", "asae", "happo"), method   # the weights written out below
        self.method, self.cfg, self.q = method, cfg, np.asarray(q, float)
        self.sums = dict(bias=0.0, bias_async=0.0, cells=0, m2=0.0, m2_async=0.0, steps=0,
                         grad=0.0, grad_async=0.0, logits=0)

    def start(self, logits):
        self.old = [np.array(ref_softmax_row(list(z[0]))) for z in logits]
        self.v_old = ref_joint_value(self.q, self.old)
        self.records = []

    def _grad(self, i, z, a, partners, adv, bounds):
        return ref_policy_grad(z, a, math.log(self.old[i][a]), partners, adv, bounds, 0.0,
                               self.cfg.clip_ratio == "joint")

    def __call__(self, movers, logits, order, bounds):
        q, old, n = self.q, self.old, self.q.ndim
        cur = [np.array(ref_softmax_row(list(z[0]))) for z in logits]
        acts = list(itertools.product(*(range(k) for k in q.shape)))
        lr = np.array([[math.log(cur[j][a[j]] / old[j][a[j]]) for j in range(n)] for a in acts])
        if self.method == "asae":                                # E8: w^i = clip(∏_{j≠i} ρ^j)
            w = ref_sync_weights(lr, self.cfg.sync_clip)
        elif self.method == "happo":                             # E9: ∏ of the preceding ρ
            w = np.exp(np.clip(ref_log_preceding(lr, order), -asae.MAX_LOG_RATIO,
                               asae.MAX_LOG_RATIO))
        else:                                                    # async: weight one
            w = np.ones((len(acts), n))
        for i in movers:
            z = np.array(logits[i][0], float)
            used, grad, grad_async = np.zeros(q.shape[i]), np.zeros(q.shape[i]), 0.0
            for r, a in enumerate(acts):
                p_partners = np.prod([old[j][a[j]] for j in range(n) if j != i])
                p = p_partners * old[i][a[i]]
                a_old = q[a] - self.v_old
                adv = w[r, i] * a_old
                used[a[i]] += p_partners * adv
                self.sums["m2"] += p * adv ** 2
                self.sums["m2_async"] += p * a_old ** 2
                partners = lr[r].sum() - lr[r, i]
                grad = grad + p * self._grad(i, z, a[i], partners, adv, bounds)
                grad_async = grad_async + p * self._grad(i, z, a[i], partners, a_old, bounds)
            self.sums["steps"] += 1
            self.records.append((i, z, lr, used, grad, grad_async, bounds))

    def finish(self, logits):
        q, acts = self.q, list(itertools.product(*(range(k) for k in self.q.shape)))
        new = [np.array(ref_softmax_row(list(z[0]))) for z in logits]
        for i, z, lr, used, grad, grad_async, bounds in self.records:
            target = ref_marginal_q(q, new, i) - self.v_old                 # Ã^i (E6)
            a_old_i = ref_marginal_q(q, self.old, i) - self.v_old           # A^i_old (E3)
            self.sums["bias"] += np.abs(used - target).sum()
            self.sums["bias_async"] += np.abs(a_old_i - target).sum()
            self.sums["cells"] += q.shape[i]
            g_t = 0.0
            for r, a in enumerate(acts):
                p = np.prod([self.old[j][a[j]] for j in range(q.ndim)])
                g_t = g_t + p * self._grad(i, z, a[i], lr[r].sum() - lr[r, i], target[a[i]],
                                           bounds)
            self.sums["grad"] += np.abs(grad - g_t).sum()
            self.sums["grad_async"] += np.abs(grad_async - g_t).sum()
            self.sums["logits"] += q.shape[i]

    def summary(self):
        s = self.sums
        return {"mean_abs_bias": s["bias"] / s["cells"],
                "mean_abs_bias_async": s["bias_async"] / s["cells"],
                "mean_second_moment": s["m2"] / s["steps"],
                "mean_second_moment_async": s["m2_async"] / s["steps"],
                "mean_abs_grad_bias": s["grad"] / s["logits"],
                "mean_abs_grad_bias_async": s["grad_async"] / s["logits"],
                "n_steps": s["steps"]}


PROBE_RUNS = [("asae", dict()), ("asae", dict(sync_clip=None, clip_ratio="joint")),
              ("async", dict(clip_eps=0.1)), ("happo", dict()),
              ("asae", dict(epochs=1, minibatches=1))]


@pytest.mark.parametrize("method, kw", PROBE_RUNS, ids=[f"{m}-{k}" for m, k in PROBE_RUNS])
def test_probe_through_train_equals_the_reference_probe(method, kw):
    """Every field of TrainResult.bias through the front door (track_bias=True) equals the
    probe written from the equations on the plain reference run. Several gradient steps per
    update, so the steps record at policies that are neither π_old nor π_new: the async
    twins use A_old (not the method's advantage), each target gradient is taken at its own
    step's policies, and each twin is compared with its own gradient."""
    game = envs.MatrixGame(np.array(CLIMBING, float) + np.array([[0.0, 1.5, -2.0]]))
    cfg = asae.Config(**{**dict(iterations=3, n_envs=4, rollout_len=3, epochs=2, minibatches=2,
                                lr_actor=3.0, reward_scale=1 / 30, seed=5, track_bias=True),
                         **kw})
    got = asae.train(game, method, cfg)
    probe = RefProbe(method, cfg, game.payoff)
    ref_L, _ = ref_train(game, method, cfg, probe)
    for g, r in zip(got.logits, ref_L):                # the same run, step for step
        assert_allclose(g, r, rtol=RTOL, atol=1e-11)
    want = probe.summary()
    assert got.bias["n_steps"] == want["n_steps"] == (cfg.iterations * cfg.epochs
                                                      * cfg.minibatches * 2)
    for key, value in want.items():
        assert math.isclose(got.bias[key], value, rel_tol=1e-9, abs_tol=1e-12), key


def test_surrogate_gradient_saturates_the_ratio_at_e300():
    """A ratio beyond e^300 (log ρ ≈ 799 here) is saturated, so the gradient stays finite:
    Â e^300 (1[k=a] − π_k) with π = (½, ½)."""
    g = asae.clipped_surrogate_grad([[0.0, 0.0]], [0], [-800.0], [-1.0], 0.2)
    assert_allclose(g, [[-0.5 * math.exp(300.0), 0.5 * math.exp(300.0)]], rtol=1e-12)
