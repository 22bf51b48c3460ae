"""Property tests of asae's equations (E1–E12, see EQUATIONS.md) and of every Numba kernel
of asae.py against a slow, clearly-correct reference written loop-for-loop from the equation;
the learners' tests are in test_learner.py, test_tabular.py, test_probe.py and test_neural.py.

Profiles live in conftest.py (``ci``: derandomized, no deadline — JIT compiles never time out).
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, example, given, strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import asae
from asae_tabular import TabularConfig
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

def ref_coppo_partner_slope(lr, j, adv, lo, hi, inner_eps):
    """Σ_{i≠j} ρ^j ∂L^i/∂ρ^j of CoPPO's summed objective Σ_i L^i (E11, the authors' gradient),
    by cases on each term L^i = min(ρ^i u^i Â, clip(ρ^i v^i, lo, hi) Â), u^i = ∏_{k≠i} ρ^k,
    v^i = clip(u^i, 1 ± ε_in): ρ^i u^i Â where the unclipped term is the minimum; where the
    clipped one is, ρ^i v^i Â if it is inside [lo, hi] and v^i = u^i (else constant in ρ^j)."""
    total = 0.0
    for i in range(len(lr)):
        if i == j:
            continue
        rho = math.exp(min(lr[i], asae.MAX_LOG_RATIO))
        u = math.exp(min(sum(lr[k] for k in range(len(lr)) if k != i), asae.MAX_LOG_RATIO))
        inside = inner_eps is None or 1 - inner_eps <= u <= 1 + inner_eps
        v = u if inside else min(max(u, 1 - inner_eps), 1 + inner_eps)
        if rho * u * adv <= min(max(rho * v, lo), hi) * adv:
            total += rho * u * adv
        elif inside and lo <= rho * v <= hi:
            total += rho * v * adv
    return total


def ref_coppo_grad(z, a, old_lp, partners, adv, lo, hi, inner_eps, coef, extra=0.0, terms=1):
    """∇_z [min(ρ u Â, clip(ρ v, lo, hi) Â) + c H(π)] (E11) by cases: u = ∏_{j≠i} ρ^j,
    v = clip(u, 1 ± ε_in); the unclipped term where it is the minimum (ties too), else the
    clipped one, whose gradient is zero where it is constant. ``extra``: the partners' terms
    of the summed objective (ref_coppo_partner_slope), the slope divided by ``terms`` (the
    tabular learner's mean over the n terms)."""
    pi, logpi = ref_softmax_row(list(z)), ref_log_softmax_row(list(z))
    rho = math.exp(min(logpi[a] - old_lp, asae.MAX_LOG_RATIO))
    u = math.exp(min(partners, asae.MAX_LOG_RATIO))
    v = u if inner_eps is None else min(max(u, 1 - inner_eps), 1 + inner_eps)
    x2 = rho * v
    if rho * u * adv <= min(max(x2, lo), hi) * adv:
        g = u * adv * rho
    else:
        g = v * adv * rho if lo <= x2 <= hi else 0.0
    g = (g + extra) / terms
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
    assert math.isclose(
        asae.joint_value(q, pis), ref_joint_value(q, pis), rel_tol=RTOL, abs_tol=1e-11
    )
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
    olp = np.log([0.5, 0.5, 0.5])  # ρ ≈ 1.76, 0.24, 1.76 against a uniform old policy
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
    assert_allclose(
        asae.method_advantages("async", adv, lr), np.repeat(adv[:, None], n, 1), rtol=0, atol=0
    )
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
        assert_allclose(
            got, [[tables[i][acts[t, i]] for i in range(n)] for t in range(N)], rtol=0, atol=0
        )


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
    (
        lambda: asae.exact_policy_gradient(_q, [np.zeros(2), np.zeros(3)], 0),
        ValueError,
        "logits[1]",
    ),
    (
        lambda: asae.synchronous_marginal_advantage(_q, _u, [[0.2, 0.2], [0.5, 0.5]], 0),
        ValueError,
        "new_policies[0]",
    ),
    (
        lambda: asae.counterfactual_advantage(_q, np.full((2, 3), 1 / 3), [0, 0]),
        ValueError,
        "pi_agent",
    ),
    (
        lambda: asae.counterfactual_advantage(_q, [[0.5, 0.5]] * 2, [0, 2]),
        ValueError,
        "actions_agent",
    ),
    (
        lambda: asae.counterfactual_advantage(_q, [[0.5, 0.5]] * 2, [0.0, 1.0]),
        TypeError,
        "actions_agent",
    ),
    (lambda: asae.counterfactual_advantage(_q, [[0.9, 0.5]] * 2, [0, 1]), ValueError, "pi_agent"),
    (
        lambda: asae.counterfactual_advantage(_q + np.nan, [[0.5, 0.5]] * 2, [0, 1]),
        ValueError,
        "q_agent",
    ),
    (
        lambda: asae.counterfactual_advantage(_q, [[np.nan, 0.5]] * 2, [0, 1]),
        ValueError,
        "pi_agent",
    ),
    (
        lambda: asae.gae(
            np.zeros((3, 40)),
            np.zeros((3, 40)),
            np.full((3, 40), np.inf),
            np.ones((3, 40), bool),
            np.zeros((3, 40), bool),
            0.9,
            0.9,
        ),
        ValueError,
        "next_values",
    ),
    (lambda: asae.sync_weights(np.full((4, 2), np.inf)), ValueError, "log_ratios"),
    (
        lambda: asae.counterfactual_advantage(
            np.zeros((4, 2)), np.full((4, 2), 0.5), np.full(4, 2)
        ),
        ValueError,
        "actions_agent",
    ),
    # extremes: documented valid ranges, rejected outside them (never −inf / NaN / e^300 out)
    (lambda: asae.log_softmax([1e308, -1e308]), ValueError, "logits"),
    (lambda: asae.sync_weights([[1e308, 1e308, 0.5, -1e308, -1e308]]), ValueError, "log_ratios"),
    (
        lambda: asae.sequential_weights([[1e308, 1e308, -1e308, -1e308, 0.5]], [0, 1, 2, 3, 4]),
        ValueError,
        "log_ratios",
    ),
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
    (
        lambda: asae.clipped_surrogate_grad(_q, [0, 5], [-1.0, -1.0], [1.0, 1.0], 0.2),
        ValueError,
        "actions",
    ),
    (
        lambda: asae.clipped_surrogate_grad(_q, [0, 1], [-1.0], [1.0, 1.0], 0.2),
        ValueError,
        "old_log_probs",
    ),
    (
        lambda: asae.clipped_surrogate_grad(_q, [0, 1], [0.5, -1.0], [1.0, 1.0], 0.2),
        ValueError,
        "old_log_probs",
    ),
    (
        lambda: asae.clipped_surrogate_grad(np.zeros(2), [0, 1], [-1.0, -1.0], [1.0, 1.0], 0.2),
        ValueError,
        "logits",
    ),
    # finite inputs whose exact result is beyond float64: FloatingPointError, never ±inf
    (
        lambda: asae.marginal_advantage([[1.5e308], [-1.5e308]], [[1e-4, 1 - 1e-4], [1.0]], 0),
        FloatingPointError,
        "marginal_advantage",
    ),
    (
        lambda: asae.joint_surrogate(
            [[1.5e308], [-1.5e308]], [[1e-4, 1 - 1e-4], [1.0]], [[1 - 1e-4, 1e-4], [1.0]]
        ),
        FloatingPointError,
        "joint_surrogate",
    ),
    (
        lambda: asae.counterfactual_advantage([[1.7e308, -1.7e308]], [[0.0, 1.0]], [0]),
        FloatingPointError,
        "counterfactual_advantage",
    ),
    (
        lambda: asae.method_advantages("asae", [1e300], [[300.0, 300.0]], sync_clip=None),
        FloatingPointError,
        "method_advantages",
    ),
    (
        lambda: asae.clipped_surrogate([1e308], [-10.0], 0.2),
        FloatingPointError,
        "clipped_surrogate",
    ),
    (
        lambda: asae.clipped_surrogate_grad([[0.0, 0.0]], [0], [-1e308], [-1e200], 0.2),
        FloatingPointError,
        "clipped_surrogate_grad",
    ),
    (
        lambda: asae.gae(
            [1e308, 1e308], [-1e308, 0.0], [0.0, 0.0], [False, False], [False, False], 1.0, 1.0
        ),
        FloatingPointError,
        "gae",
    ),
    (
        lambda: asae.clipped_surrogate_grad([[1e308, -1e308]], [1], [-0.7], [1.0], 0.2),
        ValueError,
        "logits",
    ),
    # sizes beyond MAX_ARRAY_BYTES are refused before anything is allocated
    (lambda: asae.softmax(np.broadcast_to(0.0, (10**6, 10**6))), ValueError, "logits"),
    (lambda: asae.log_softmax(np.broadcast_to(0.0, (10**6, 10**6))), ValueError, "logits"),
]


@pytest.mark.parametrize("call, exc, name", BAD_INPUTS,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_raises_clear_error(call, exc, name):
    with pytest.raises(exc, match=name.replace("[", r"\[").replace("]", r"\]")):
        call()


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


def test_method_advantages_for_coppo_and_a2po():
    """coppo: w^i Â unclipped (sync_clip does not apply); a2po: clip(M, 1 ± ε_o) Â, ε_o given
    as sync_clip."""
    lr = np.log([[2.0, 1.25, 0.5]])
    got = asae.method_advantages("coppo", [1.0], lr, sync_clip=0.1)
    assert_allclose(got, [[0.625, 1.0, 2.5]], rtol=1e-12)
    got = asae.method_advantages("a2po", [1.0], lr, order=[1, 0, 2], sync_clip=0.1)
    assert_allclose(got, [[1.1, 1.0, 1.1]], rtol=1e-12)


def test_surrogate_gradient_saturates_the_ratio_at_e300():
    """A ratio beyond e^300 (log ρ ≈ 799 here) is saturated, so the gradient stays finite:
    Â e^300 (1[k=a] − π_k) with π = (½, ½)."""
    g = asae.clipped_surrogate_grad([[0.0, 0.0]], [0], [-800.0], [-1.0], 0.2)
    assert_allclose(g, [[-0.5 * math.exp(300.0), 0.5 * math.exp(300.0)]], rtol=1e-12)


# =======================================================================================
# asae.py copied alone: "copy it into your project" stays true
# =======================================================================================

ALONE = '''
import doctest, sys
import numpy as np
import asae
assert asae.__file__.startswith(sys.argv[1]), asae.__file__
ours = {"envs", "envs_spread", "envs_pettingzoo", "envs_pz_in", "asae_learner", "asae_tabular",
        "asae_probe", "asae_neural", "asae_io", "bench"}
assert not ours & set(sys.modules), ours & set(sys.modules)
q, p, p2 = np.array([[1.0, 0.0], [0.0, 2.0]]), [[0.5, 0.5], [0.3, 0.7]], [[0.6, 0.4], [0.2, 0.8]]
lr = np.log([[1.1, 0.9], [0.8, 1.3]])
calls = {
    "softmax": lambda: asae.softmax([0.0, 1.0]),
    "log_softmax": lambda: asae.log_softmax([[0.0, 1.0]]),
    "joint_value": lambda: asae.joint_value(q, p),
    "marginal_q": lambda: asae.marginal_q(q, p, 1),
    "marginal_advantage": lambda: asae.marginal_advantage(q, p, 0),
    "exact_policy_gradient": lambda: asae.exact_policy_gradient(q, [[0.0, 1.0], [1.0, 0.0]], 0),
    "joint_surrogate": lambda: asae.joint_surrogate(q, p, p2),
    "synchronous_marginal_advantage": lambda: asae.synchronous_marginal_advantage(q, p, p2, 0),
    "counterfactual_advantage": lambda: asae.counterfactual_advantage(q, p, [0, 1]),
    "sync_weights": lambda: asae.sync_weights(lr, 0.5),
    "clipped_surrogate": lambda: asae.clipped_surrogate([1.1, 0.7], [1.0, -1.0], 0.2),
    "clipped_surrogate_grad": lambda: asae.clipped_surrogate_grad(
        [[0.0, 1.0], [1.0, 0.0]], [0, 1], np.log([0.5, 0.5]), [1.0, -1.0], 0.2),
    "sequential_weights": lambda: asae.sequential_weights(lr, [1, 0]),
    "method_rule": lambda: asae.method_rule("a2po", a2po_others_eps=0.2),
    "method_advantages": lambda: asae.method_advantages("happo", [1.0, 2.0], lr, order=[1, 0]),
    "gae": lambda: asae.gae([1.0, 1.0], [0.0, 0.5], [0.5, 0.0], [False, True], [False, False],
                            0.9, 0.95),
}
public = {n for n in asae.__all__ if callable(getattr(asae, n))
          and not isinstance(getattr(asae, n), type)}
assert public == set(calls), public ^ set(calls)
for name, call in calls.items():
    out = call()
    assert np.all(np.isfinite(np.asarray(out[0] if isinstance(out, tuple) else out,
                                         dtype=float))), name
failed, tried = doctest.testmod(asae)
assert failed == 0 and tried >= 10, (failed, tried)
print("ALONE OK", tried)
'''


def test_asae_py_works_copied_alone(tmp_path):
    """asae.py in an empty directory, imported there (not the installed one), imports none
    of the project's other modules, passes its doctests and runs every public function."""
    import shutil
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "asae.py"), tmp_path)
    out = subprocess.run([sys.executable, "-c", ALONE, str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0 and "ALONE OK" in out.stdout, out.stderr[-3000:]


@given(st.integers(2, 4), st.floats(-2.0, 2.0), st.sampled_from([0.1, 0.3, None]),
       st.sampled_from([0.1, 0.2]), st.data())
def test_coppo_full_gradient_is_the_summed_objectives_derivative(n, adv, inner, eps, data):
    """E11 as the authors differentiate it: for every agent j, ρ^j ∂/∂ρ^j Σ_i L^i from
    ``_row_slope`` (own term + ``_double_clip_partners``) times (e_a − π^j) equals a central
    difference of Σ_i min(ρ^i u^i Â, clip(ρ^i v^i, 1 ± ε) Â) in agent j's logits, away from
    the kinks; with ``coppo_detach`` the partners' terms drop out."""
    A = 3
    z_old = np.array(arrays(data.draw, (n, A), st.floats(-1.0, 1.0)))
    z = z_old + np.array(arrays(data.draw, (n, A), st.floats(-0.4, 0.4)))
    act = [data.draw(st.integers(0, A - 1)) for _ in range(n)]
    lo, hi = 1 - eps, 1 + eps
    old_lp = np.array([ref_log_softmax_row(list(z_old[i]))[act[i]] for i in range(n)])

    def summed(zz):
        lr = [ref_log_softmax_row(list(zz[i]))[act[i]] - old_lp[i] for i in range(n)]
        total = 0.0
        for i in range(n):
            rho, u = math.exp(lr[i]), math.exp(sum(lr) - lr[i])
            v = u if inner is None else min(max(u, 1 - inner), 1 + inner)
            total += min(rho * u * adv, min(max(rho * v, lo), hi) * adv)
        return total

    lr = np.array([ref_log_softmax_row(list(z[i]))[act[i]] - old_lp[i] for i in range(n)])
    for i in range(n):                                            # away from every kink
        rho, u = math.exp(lr[i]), math.exp(lr.sum() - lr[i])
        v = u if inner is None else min(max(u, 1 - inner), 1 + inner)
        assume(min(abs(rho * v - lo), abs(rho * v - hi), abs(rho * u - min(max(rho * v, lo), hi)))
               > 1e-4 and (inner is None or min(abs(u - 1 + inner), abs(u - 1 - inner)) > 1e-4))
    rule = asae.method_rule("coppo", coppo_inner_eps=inner, clip_eps=eps, entropy_coef=0.0)
    detached = asae.method_rule("coppo", coppo_inner_eps=inner, clip_eps=eps, coppo_detach=True)
    w = asae.sync_weights(lr[None])[0]
    for j in range(n):
        pi = np.array(ref_softmax_row(list(z[j])))
        s = asae._row_slope(rule, lr, j, w[j] * adv, adv, lo, hi)
        num = np.zeros(A)
        for k in range(A):
            dz = np.zeros((n, A))
            dz[j, k] = 1e-6
            num[k] = (summed(z + dz) - summed(z - dz)) / 2e-6
        assert_allclose(s * (np.eye(A)[act[j]] - pi), num, rtol=1e-5, atol=1e-7)
        own = asae._row_slope(detached, lr, j, w[j] * adv, adv, lo, hi)
        assert math.isclose(s - own, asae._double_clip_partners(rule, lr, j, adv, lo, hi),
                            rel_tol=1e-12, abs_tol=1e-15)
        assert math.isclose(s - own, ref_coppo_partner_slope(list(lr), j, adv, lo, hi, inner),
                            rel_tol=1e-9, abs_tol=1e-12)


# Tests from the hand mutation audit of the split (each names the mutant it kills)


@pytest.mark.parametrize("name", ["gamma", "lam", "a2po_clip_floor", "a2po_trace_cbar",
                                  "entropy_coef"])
def test_settings_without_a_none_choice_refuse_none(name):
    """A07: only the settings whose RULE_SETTINGS entry allows None may be None; the others
    are refused by name, by method_rule and by every config, when they are built."""
    with pytest.raises(TypeError, match=name):
        asae.method_rule("async", **{name: None})
    with pytest.raises(TypeError, match="TabularConfig." + name):
        TabularConfig(**{name: None})


@pytest.mark.parametrize("call", [
    lambda: asae.sync_weights(np.zeros((2, 0))),
    lambda: asae.sequential_weights(np.zeros((2, 0)), np.zeros(0, np.int64)),
    lambda: asae.method_advantages("asae", [1.0, 2.0], np.zeros((2, 0))),
])
def test_log_ratio_tables_need_at_least_one_agent(call):
    """A15: (N, 0) log-ratios are refused, naming log_ratios (not an empty result)."""
    with pytest.raises(ValueError, match=r"log_ratios must have shape \(.*, n ≥ 1\)"):
        call()


def test_trace_base_ignores_the_moving_agents_own_ratio():
    """A20: E12's trace factor is min(c̄, ∏_{j≠i} ρ^j_{t+1}); agent i's own log-ratio never
    enters (the learners pass 0 there, so only a direct test sees it). Checked against the
    recursion written out, with a non-zero own column."""
    rng = np.random.default_rng(0)
    T, B, n, cbar = 5, 3, 3, 1.3
    rule = asae.method_rule("a2po", gamma=0.9, lam=0.8, a2po_trace_cbar=cbar)
    delta = rng.normal(size=(T, B))
    not_done = (rng.random((T, B)) > 0.2).astype(float)
    lr = rng.normal(0.0, 0.3, (T * B, n))
    for i in range(n):
        got, other = np.zeros((T * B, n)), np.zeros((T * B, n))
        asae._trace_base(rule, delta, not_done, i, lr, got)
        lr2 = lr.copy()
        lr2[:, i] = rng.normal(0.0, 2.0, T * B)
        asae._trace_base(rule, delta, not_done, i, lr2, other)
        assert_array_equal(got[:, i], other[:, i])
        want, carry = np.zeros((T, B)), np.zeros(B)
        for t in reversed(range(T)):
            c = np.ones(B)
            if t + 1 < T:
                nxt = lr[(t + 1) * B:(t + 2) * B]
                c = np.minimum(cbar, np.exp(nxt.sum(axis=1) - nxt[:, i]))
            carry = delta[t] + 0.9 * 0.8 * c * not_done[t] * carry
            want[t] = carry
        assert_allclose(got[:, i], want.ravel(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_all_finite_sees_every_position(bad):
    """H2: the four running sums of x·0 each see their lane — a non-finite entry at any
    position of arrays of 1–9 entries is caught, by the kernel and by gae's check."""
    for n in range(1, 10):
        assert asae._all_finite(np.zeros(n))
        for k in range(n):
            x = np.zeros(n)
            x[k] = bad
            assert not asae._all_finite(x), (n, k)
            with pytest.raises(ValueError, match="rewards"):
                asae.gae(x, np.zeros(n), np.zeros(n), np.zeros(n, bool), np.zeros(n, bool),
                         0.9, 0.9)
