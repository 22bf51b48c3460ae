"""Property tests of asae's equations (E1–E10, see EQUATIONS.md) and of every Numba kernel
against a slow, clearly-correct reference written loop-for-loop from the equation.

Profiles live in conftest.py (``ci``: derandomized, no deadline — JIT compiles never time out).
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, strategies as st
from numpy.testing import assert_allclose

import asae

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


def test_parallel_twins_are_bit_identical_and_match_reference():
    """Above PARALLEL_MIN_ROWS the wrappers use multi-threaded twins: same bits as serial."""
    rng = np.random.default_rng(0)
    N = asae.PARALLEL_MIN_ROWS + 123
    lr = rng.normal(0.0, 2.0, (N, 3))
    w = asae.sync_weights(lr, 0.5)
    w_serial = np.empty_like(lr)
    asae._sync_weights_kernel(lr, np.log(0.5), np.log(1.5), w_serial)
    assert np.array_equal(w, w_serial)
    rows = np.r_[0:40, N - 40:N]
    assert_allclose(w[rows], ref_sync_weights(lr[rows], 0.5), rtol=RTOL, atol=ATOL)
    z = rng.normal(size=(N, 4))
    acts = rng.integers(0, 4, N)
    olp = asae.log_softmax(z + rng.normal(0.0, 0.5, z.shape))[np.arange(N), acts]
    adv = rng.normal(size=N)
    g = asae.clipped_surrogate_grad(z, acts, olp, adv, 0.2)
    g_serial = np.empty_like(z)
    asae._clipped_surrogate_grad_kernel(z, acts, olp, adv, 0.2, asae.MAX_LOG_RATIO, g_serial)
    assert np.array_equal(g, g_serial)
    assert_allclose(g[rows], ref_clipped_surrogate_grad(z[rows], acts[rows], olp[rows], adv[rows], 0.2),
                    rtol=RTOL, atol=ATOL)
    pi = asae.softmax(rng.normal(size=(N, 4)))
    c = asae.counterfactual_advantage(z, pi, acts)
    c_serial = np.empty(N)
    assert asae._counterfactual_kernel(z, pi, acts, c_serial)
    assert np.array_equal(c, c_serial)
    assert_allclose(c[rows], ref_counterfactual(z[rows], pi[rows], acts[rows]), rtol=RTOL, atol=ATOL)


# =======================================================================================
# Learner kernels: sampling, gathered log-probabilities, entropy gradient, scatter-add
# =======================================================================================


def ref_sample(table, obs, u):
    """Inverse CDF: a = min{k : u · Σ_b e^{z_b − m} < Σ_{j≤k} e^{z_j − m}}, z = table[o]."""
    out = []
    for b in range(len(obs)):
        z = list(table[obs[b]])
        m = max(z)
        e = [math.exp(zk - m) for zk in z]
        total = 0.0
        for ek in e:
            total += ek
        target, c, a = u[b] * total, 0.0, len(z) - 1
        for k, ek in enumerate(e):
            c += ek
            if target < c:
                a = k
                break
        out.append(a)
    return np.array(out)


def ref_entropy_grad(z, coef):
    """coef · ∂H/∂z_k with H = −Σ_k π_k log π_k: −coef · π_k (log π_k + H)."""
    out = np.zeros(z.shape)
    for t in range(z.shape[0]):
        lp = ref_log_softmax_row(list(z[t]))
        H = -sum(math.exp(l) * l for l in lp)
        for k in range(z.shape[1]):
            out[t, k] = -coef * math.exp(lp[k]) * (lp[k] + H)
    return out


@st.composite
def logit_tables(draw, max_abs=20.0):
    """A logits table (n_obs, A), a batch of observation ids, actions and uniforms."""
    n_obs, A, N = draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 12))
    table = arrays(draw, (n_obs, A), st.floats(-max_abs, max_abs))
    ints = lambda hi: np.array(draw(st.lists(st.integers(0, hi - 1), min_size=N, max_size=N)), np.int64)
    u = np.array(draw(st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=N, max_size=N)))
    return table, ints(n_obs), ints(A), u


@given(logit_tables())
@example((np.array([[0.0, 0.0]]), np.array([0, 0]), np.array([0, 1]), np.array([0.0, 0.5])))
def test_sample_kernel_matches_reference(case):
    table, obs, _, u = case
    out = np.empty(len(obs), np.int64)
    asae._sample_kernel(table, obs, u, out)
    assert np.array_equal(out, ref_sample(table, obs, u))


def test_sample_kernel_frequencies_follow_the_policy():
    z = np.array([[0.0, np.log(3.0)]])                 # π = (0.25, 0.75)
    u = np.random.default_rng(0).random(20000)
    out = np.empty(u.size, np.int64)
    asae._sample_kernel(z, np.zeros(u.size, np.int64), u, out)
    assert abs(out.mean() - 0.75) < 0.01


@given(logit_tables())
def test_gather_log_probs_kernel_matches_reference(case):
    table, obs, acts, _ = case
    out = np.empty(len(obs))
    asae._gather_log_probs_kernel(table, obs, acts, out)
    ref = [ref_log_softmax_row(list(table[o]))[a] for o, a in zip(obs, acts)]
    assert_allclose(out, ref, rtol=RTOL, atol=ATOL)


@given(logit_batches(max_abs=5.0), st.floats(0.0, 1.0))
def test_entropy_grad_kernel_matches_reference_and_finite_differences(zb, coef):
    z, _ = zb
    out = np.full(z.shape, 0.25)                       # the kernel adds to what is there
    asae._entropy_grad_kernel(z, coef, out)
    assert_allclose(out - 0.25, ref_entropy_grad(z, coef), rtol=1e-9, atol=1e-12)
    H = lambda row: -sum(math.exp(l) * l for l in ref_log_softmax_row(list(row)))
    h = 1e-6
    for t in range(z.shape[0]):
        for k in range(z.shape[1]):
            zp, zm = z[t].copy(), z[t].copy()
            zp[k] += h
            zm[k] -= h
            assert math.isclose(out[t, k] - 0.25, coef * (H(zp) - H(zm)) / (2 * h),
                                rel_tol=1e-5, abs_tol=1e-7)


@given(logit_tables(), st.floats(-2.0, 2.0))
def test_scatter_add_rows_kernel_matches_reference(case, scale):
    table, obs, _, u = case
    grads = np.outer(u, np.arange(1.0, table.shape[1] + 1.0))
    got = table.copy()
    asae._scatter_add_rows_kernel(got, obs, grads, scale)
    ref = table.copy()
    for t in range(len(obs)):                          # repeated rows accumulate
        for k in range(table.shape[1]):
            ref[obs[t], k] += scale * grads[t, k]
    assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


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
    (lambda: asae.sync_weights(np.full((asae.PARALLEL_MIN_ROWS, 2), np.inf)), ValueError, "log_ratios"),
    (lambda: asae.counterfactual_advantage(np.zeros((asae.PARALLEL_MIN_ROWS, 2)),
                                           np.full((asae.PARALLEL_MIN_ROWS, 2), 0.5),
                                           np.full(asae.PARALLEL_MIN_ROWS, 2)), ValueError, "actions_agent"),
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
]


@pytest.mark.parametrize("call, exc, name", BAD_INPUTS,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_raises_clear_error(call, exc, name):
    with pytest.raises(exc, match=name.replace("[", r"\[").replace("]", r"\]")):
        call()


# =======================================================================================
# Learners (E7–E10 in use): train, evaluate, the bias probe
# =======================================================================================


class OneStepGame:
    """A minimal one-step matrix game with the batched interface (tests need no envs.py)."""

    def __init__(self, payoff):
        self.payoff = np.asarray(payoff, float)
        self.n_agents = self.payoff.ndim
        self.n_actions = self.payoff.shape
        self.n_states = self.n_obs = self.episode_limit = 1
        self.optimum = float(self.payoff.max())

    def reset(self, n_envs, seed):
        self.B = n_envs
        return np.zeros((n_envs, self.n_agents), np.int64), np.zeros(n_envs, np.int64)

    def step(self, actions):
        r = self.payoff[tuple(np.asarray(actions).T)]
        ones, zeros = np.ones(self.B, bool), np.zeros(self.B, np.int64)
        return (np.zeros((self.B, self.n_agents), np.int64), zeros, r, ones,
                ~ones, zeros)


class RewardChain:
    """One state, reward 1 per step, episodes cut every ``k`` steps by truncation (time
    limit) or by termination. With bootstrapping at truncation V = 1/(1−γ)."""

    def __init__(self, k=5, terminate=False):
        self.k, self.terminate = k, terminate
        self.n_agents, self.n_actions, self.n_states, self.n_obs = 1, (2,), 1, 1
        self.episode_limit = k

    def reset(self, n_envs, seed):
        self.t = np.zeros(n_envs, np.int64)
        return np.zeros((n_envs, 1), np.int64), np.zeros(n_envs, np.int64)

    def step(self, actions):
        B = self.t.size
        self.t += 1
        cut = self.t % self.k == 0
        term, trunc = (cut, np.zeros(B, bool)) if self.terminate else (np.zeros(B, bool), cut)
        zeros = np.zeros(B, np.int64)
        return np.zeros((B, 1), np.int64), zeros, np.ones(B), term, trunc, zeros


CLIMBING = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
QTRAN = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


def small_config(**kw):
    base = dict(iterations=6, n_envs=16, rollout_len=4, reward_scale=1 / 30, seed=3)
    return asae.Config(**{**base, **kw})


@pytest.mark.parametrize("method", asae.METHODS)
def test_every_method_improves_expected_return_on_climbing(method):
    """From a fixed random starting policy, the exact expected return J(π) goes up."""
    game = OneStepGame(CLIMBING)
    res = asae.train(game, method, small_config(record_policies=True))
    J = [asae.joint_value(game.payoff, [p[0] for p in pols]) for pols in res.policies]
    assert J[-1] > J[0] + 0.5, (method, J)


@pytest.mark.parametrize("method", asae.METHODS)
def test_training_is_deterministic_by_seed(method):
    game = OneStepGame(CLIMBING)
    a, b = (asae.train(game, method, small_config(seed=7)) for _ in range(2))
    c = asae.train(game, method, small_config(seed=8))
    for za, zb in zip(a.logits, b.logits):
        assert np.array_equal(za, zb)
    assert np.array_equal(a.mean_return, b.mean_return, equal_nan=True)
    assert not all(np.array_equal(za, zc) for za, zc in zip(a.logits, c.logits))


def test_same_seed_same_initial_policy_for_every_method():
    game = OneStepGame(CLIMBING)
    starts = [asae.train(game, m, small_config(iterations=1, record_policies=True)).policies[0]
              for m in asae.METHODS]
    for s in starts[1:]:
        for p, q in zip(s, starts[0]):
            assert np.array_equal(p, q)


def test_asae_weights_are_one_in_first_minibatch_and_move_later():
    res = asae.train(OneStepGame(CLIMBING), "asae", small_config(sync_clip=None))
    assert res.diagnostics["first_step_weight_dev"] == 0.0
    assert res.diagnostics["max_weight"] > 1.0           # partners' ratios do move within an update


def test_happo_first_agent_has_unit_correction():
    res = asae.train(OneStepGame(np.zeros((2, 3, 2)) + np.arange(12).reshape(2, 3, 2)), "happo",
                     small_config())
    assert res.diagnostics["first_agent_M_dev"] == 0.0
    assert res.diagnostics["max_weight"] > 1.0


@given(old_new_games())
def test_exact_sync_advantage_is_e6(g):
    """The advantage table exact_sync trains on is Ã^i of E6 with the current partners."""
    q, old, cur, i = g
    table = asae._exact_sync_table(q, asae.joint_value(q, old), cur, i)
    assert_allclose(table, asae.synchronous_marginal_advantage(q, old, cur, i), rtol=1e-12, atol=1e-12)


@given(old_new_games())
def test_bias_probe_is_exact(g):
    """Weight 1 yields A^i_old (bias = |Ā − Ã|, E7); the exact E6 ratio weight yields Ã (bias 0)."""
    q, old, new, _ = g
    for i in range(q.ndim):
        probe = asae._BiasProbe(q)
        probe.start(old)
        probe.record(i, np.ones(q.shape))
        W = asae.sync_weights(asae._joint_log_ratio_table([np.log(p) for p in new], [np.log(p) for p in old]))[:, i].reshape(q.shape)
        probe.record(i, W)
        probe.finish(new)
        expected = np.abs(asae.marginal_advantage(q, old, i) - asae.synchronous_marginal_advantage(q, old, new, i))
        assert_allclose(probe.abs_err[0], expected, rtol=1e-9, atol=1e-9)
        assert_allclose(probe.abs_err[1], 0.0, atol=1e-9)
        for k in range(2):                       # the ω = 1 twin recorded at the same steps
            assert_allclose(probe.abs_err_async[k], expected, rtol=1e-9, atol=1e-9)
            assert probe.second_moment_async[k] == probe.second_moment[0]
        A_old = q - ref_joint_value(q, old)      # E_{a~π_old}[(ω A_old)²] with ω = 1, by enumeration
        m2 = sum(np.prod([old[j][a[j]] for j in range(q.ndim)]) * A_old[a] ** 2
                 for a in itertools.product(*(range(k) for k in q.shape)))
        assert math.isclose(probe.second_moment[0], m2, rel_tol=1e-9, abs_tol=1e-12)


def test_truncation_is_bootstrapped_and_termination_is_not():
    cfg = asae.Config(gamma=0.9, lam=0.95, iterations=60, n_envs=8, rollout_len=10,
                      lr_critic=0.5, entropy_coef=0.0, seed=0)
    v_trunc = asae.train(RewardChain(terminate=False), "async", cfg).values[0]
    v_term = asae.train(RewardChain(terminate=True), "async", cfg).values[0]
    assert abs(v_trunc - 1 / (1 - 0.9)) < 0.1               # V = Σ γ^k = 10: the time limit is not the end
    expected_term = np.mean([(1 - 0.9 ** k) / 0.1 for k in range(1, 6)])  # steps-to-go 5..1
    assert abs(v_term - expected_term) < 0.1


def test_large_steps_stay_finite():
    """sync_clip=None, huge learning rate, many epochs: logits, ratios, weights stay finite."""
    cfg = small_config(sync_clip=None, lr_actor=1e4, epochs=30, reward_scale=1.0, iterations=5)
    for method in ("asae", "happo", "exact_sync"):
        res = asae.train(OneStepGame(QTRAN), method, cfg)
        d = res.diagnostics
        assert d["all_finite"], (method, d)
        assert np.isfinite(d["max_ratio"]) and np.isfinite(d["max_weight"]) and np.isfinite(d["max_abs_logit"])


def test_advantage_bias_orders_methods_on_climbing():
    """Measured, not assumed: exact_sync and asae weights track Ã closer than async's 1."""
    cfg = small_config(iterations=10, sync_clip=None)
    game = OneStepGame(CLIMBING)
    b = {m: asae.advantage_bias(game, m, cfg) for m in ("async", "asae", "exact_sync")}
    assert all(v["n_steps"] == 10 * 16 * 2 for v in b.values())
    assert b["asae"]["mean_abs_bias"] < b["async"]["mean_abs_bias"]
    assert b["exact_sync"]["mean_abs_bias"] < b["async"]["mean_abs_bias"]


LEARNER_BAD = [
    (lambda: asae.Config(gamma=1.5), ValueError, "gamma"),
    (lambda: asae.Config(epochs=0), ValueError, "epochs"),
    (lambda: asae.Config(sync_clip=-1.0), ValueError, "sync_clip"),
    (lambda: asae.Config(n_envs=2, rollout_len=1, minibatches=4), ValueError, "minibatches"),
    (lambda: asae.Config(reward_scale=0.0), ValueError, "reward_scale"),
    (lambda: asae.train(OneStepGame(CLIMBING), "ppo"), ValueError, "method"),
    (lambda: asae.train(object(), "asae"), TypeError, "env"),
    (lambda: asae.train(RewardChain(), "exact_sync"), ValueError, "exact_sync"),
    (lambda: asae.train(OneStepGame(CLIMBING), "asae", {"gamma": 0.9}), TypeError, "config"),
]


@pytest.mark.parametrize("call, exc, name", LEARNER_BAD, ids=[b[2] for b in LEARNER_BAD])
def test_learner_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_evaluate_greedy_and_stochastic_policies():
    """evaluate: argmax of hand-set logits reaches the payoff's optimum; uniform play averages."""
    game = OneStepGame(CLIMBING)
    best = [np.array([[5.0, 0.0, 0.0]]), np.array([[5.0, 0.0, 0.0]])]
    assert asae.evaluate(game, best, episodes=8, greedy=True) == 11.0
    uniform = [np.zeros((1, 3)), np.zeros((1, 3))]
    mean = asae.evaluate(game, uniform, episodes=4000, greedy=False, seed=1)
    assert abs(mean - np.mean(CLIMBING)) < 1.0      # E1 under the uniform policy: −31/9 ± sampling
