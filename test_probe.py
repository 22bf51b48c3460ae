"""Tests of asae_probe, the exact bias probe: each record against enumeration, and the whole
pass through train_with_bias against a reference probe written from its documentation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose

import asae
import asae_learner as learner
import asae_probe
import asae_tabular as tabular
from asae_tabular import TabularConfig
import envs
from test_asae import (RTOL, old_new_games, ref_coppo_grad, ref_coppo_partner_slope,
                       ref_joint_value, ref_log_preceding,
                       ref_marginal_q, ref_policy_grad, ref_softmax_row, ref_sync_weights)
from test_tabular import CLIMBING, ref_train, small_config


# ---------------------------------------------------------------------------------------
# The exact bias probe
# ---------------------------------------------------------------------------------------


def _pack(ps, A):
    """Per-agent probability vectors → (n, A) log-policies, padded with 0 (never read)."""
    return np.array([np.pad(np.log(np.asarray(p)), (0, A - len(p))) for p in ps])


def _game(q):
    q = np.asarray(q, float)
    return asae_probe._Game(q.ravel().copy(), asae.JointIndex(np.array(q.shape, np.int64),
                                                               asae._radix(q.shape)))


def _probe_at(method, q, old, cur, cfg, order=None):
    """One record per agent (asae_probe._record) at the log-policies ``cur`` with π_old =
    ``old`` on the matrix game q → (used (n, A), grad (n, A), sums)."""
    n, A = q.ndim, max(q.shape)
    rule = learner._hyper(cfg, method).rule
    o = np.arange(n) if order is None else np.asarray(order, np.int64)
    used, grad, sums = np.zeros((n, A)), np.zeros((n, A)), np.zeros(asae_probe.N_SUMS)
    for i in range(n):
        asae_probe._record(rule, _game(q), (i, _pack(cur, A), _pack(old, A), o), used[i],
                           grad[i], np.zeros(A), sums)
    return used, grad, sums


@given(old_new_games())
def test_probe_records_the_exact_expected_advantage(g):
    """Measured against the equations: async uses A^i_old (E3/E7); unclipped asae and
    exact_sync both use E_{a^-i~π_old}[w^i A_old] = Ã^i under the current partners (E6);
    exact_async uses A^i_old; second moments by enumeration."""
    q, old, cur, _ = g
    cfg = TabularConfig(sync_clip=None)
    targets = [asae.synchronous_marginal_advantage(q, old, cur, i) for i in range(q.ndim)]
    a_old = [asae.marginal_advantage(q, old, i) for i in range(q.ndim)]
    for method, want in [("async", a_old), ("asae", targets), ("exact_sync", targets),
                         ("exact_async", a_old), ("coma", a_old)]:
        used = _probe_at(method, q, old, cur, cfg)[0]
        for i in range(q.ndim):
            assert_allclose(used[i, :q.shape[i]], want[i], rtol=1e-9, atol=1e-9)
    # second moment of the asae estimate E_{a~π_old}[(w^i A_old)²], by enumeration
    sums = _probe_at("asae", q, old, cur, cfg)[2]
    A_old = q - ref_joint_value(q, old)
    m2 = 0.0
    for i in range(q.ndim):
        for a in itertools.product(*(range(k) for k in q.shape)):
            p = np.prod([old[j][a[j]] for j in range(q.ndim)])
            w = np.prod([cur[j][a[j]] / old[j][a[j]] for j in range(q.ndim) if j != i])
            m2 += p * (w * A_old[a]) ** 2
    assert math.isclose(sums[asae_probe.SECOND_MOMENT], m2, rel_tol=1e-9, abs_tol=1e-12)


@given(old_new_games(), st.sampled_from(["async", "asae", "exact_sync"]),
       st.sampled_from([dict(), dict(clip_ratio="joint"), dict(clip_eps=None)]))
def test_probe_gradient_is_the_expected_clipped_gradient(g, method, variant):
    """The recorded gradient = Σ_a π_old(a) ∇_{z^i}[clipped per-sample objective at a]
    with the method's advantage, by enumeration with the reference row gradient."""
    q, old, cur, _ = g
    cfg = TabularConfig(sync_clip=None, **variant)
    eps = math.inf if cfg.clip_eps is None else cfg.clip_eps
    grad = _probe_at(method, q, old, cur, cfg)[1]
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
        assert_allclose(grad[i, :q.shape[i]], want, rtol=1e-8, atol=1e-10)


@given(old_new_games())
def test_probe_finish_compares_with_e6_after_the_update(g):
    """Bias = |used − Ã^i(new)|: zero for exact_sync recorded at the new policies; for
    async it is |A^i_old − Ã^i(new)| = the E7 bias formula (a one-update step log)."""
    q, old, new, _ = g
    n, A = q.ndim, max(q.shape)
    cfg = TabularConfig(sync_clip=None)
    for method in ("exact_sync", "async"):
        steps = tabular._StepLog(agent=np.arange(n), logp=np.array([_pack(new, A)] * n),
                                 order=np.arange(n)[None], old=_pack(old, A)[None],
                                 new=_pack(new, A)[None], count=np.array([n, 1]))
        sums = np.zeros(asae_probe.N_SUMS)
        asae_probe._probe_pass(learner._hyper(cfg, method).rule, _game(q), steps, sums)
        bias = sum(np.abs(asae.marginal_advantage(q, old, i)
                          - asae.synchronous_marginal_advantage(q, old, new, i)).sum()
                   for i in range(q.ndim))
        if method == "exact_sync":
            assert sums[asae_probe.BIAS] < 1e-9 * max(1.0, np.abs(q).max())
            assert sums[asae_probe.GRAD_BIAS] < 1e-7
        else:
            assert math.isclose(sums[asae_probe.BIAS], bias, rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(sums[asae_probe.BIAS_ASYNC], bias, rel_tol=1e-9, abs_tol=1e-9)
        assert sums[asae_probe.CELLS] == sum(q.shape) and sums[asae_probe.RECORDS] == n


def test_advantage_bias_orders_methods_on_climbing():
    """Measured, not assumed: exact_sync and asae weights track Ã closer than async's 1."""
    cfg = small_config(iterations=10, sync_clip=None)
    game = envs.MatrixGame(CLIMBING)
    b = {m: asae_probe.advantage_bias(game, m, cfg) for m in ("async", "asae", "exact_sync")}
    assert all(v["n_steps"] == 10 * 16 * 2 for v in b.values())
    assert b["asae"]["mean_abs_bias"] < b["async"]["mean_abs_bias"]
    assert b["exact_sync"]["mean_abs_bias"] < b["async"]["mean_abs_bias"]
    assert math.isclose(b["async"]["mean_abs_bias"], b["async"]["mean_abs_bias_async"])


def test_probe_second_moments_and_their_async_twins_through_train():
    """For async the advantage used is A_old itself: its second moment and gradient equal
    their async twins; for asae (weights ≠ 1 once partners move) they differ."""
    cfg = small_config(iterations=4, sync_clip=None, lr_actor=3.0)
    a = asae_probe.advantage_bias(envs.MatrixGame(CLIMBING), "async", cfg)
    b = asae_probe.advantage_bias(envs.MatrixGame(CLIMBING), "asae", cfg)
    assert a["mean_second_moment"] == a["mean_second_moment_async"] > 0
    assert a["mean_abs_grad_bias"] == a["mean_abs_grad_bias_async"] > 0
    assert b["mean_second_moment"] != b["mean_second_moment_async"]
    assert b["mean_abs_grad_bias"] != b["mean_abs_grad_bias_async"]


def test_probe_bias_through_train_is_the_e7_formula():
    """With one gradient step per update the bias probe's async record is, per update, the
    exact E7 bias |A^i_old − Ã^i(new)| between the recorded policies before and after it —
    train's own probe setup (π_old, V_old) checked from the outside."""
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(iterations=5, epochs=1, minibatches=1, lr_actor=3.0,
                       record_policies=True)
    res = asae_probe.train_with_bias(game, "async", cfg)
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
    """Every field of TrainResult.bias through the front door (train_with_bias) equals the
    probe written from the equations on the plain reference run. Several gradient steps per
    update, so the steps record at policies that are neither π_old nor π_new: the async
    twins use A_old (not the method's advantage), each target gradient is taken at its own
    step's policies, and each twin is compared with its own gradient."""
    game = envs.MatrixGame(np.array(CLIMBING, float) + np.array([[0.0, 1.5, -2.0]]))
    cfg = TabularConfig(**{**dict(iterations=3, n_envs=4, rollout_len=3, epochs=2, minibatches=2,
                                lr_actor=3.0, reward_scale=1 / 30, seed=5),
                         **kw})
    got = asae_probe.train_with_bias(game, method, cfg)
    assert tabular.train(game, method, cfg).logits[0].tobytes() == got.logits[0].tobytes()
    probe = RefProbe(method, cfg, game.payoff)
    ref_L, _ = ref_train(game, method, cfg, probe)
    for g, r in zip(got.logits, ref_L):                # the same run, step for step
        assert_allclose(g, r, rtol=RTOL, atol=1e-11)
    want = probe.summary()
    assert got.bias["n_steps"] == want["n_steps"] == (cfg.iterations * cfg.epochs
                                                      * cfg.minibatches * 2)
    for key, value in want.items():
        assert math.isclose(got.bias[key], value, rel_tol=1e-9, abs_tol=1e-12), key


@given(old_new_games(), st.sampled_from([0.1, None]), st.booleans())
def test_probe_gradient_for_coppo_is_the_learners_mean_over_its_terms(g, inner, detach):
    """CoPPO's recorded gradient = Σ_a π_old(a) ∇_{z^i} of (1/n) Σ_k L^k at a (the partners'
    terms through ρ^i, as the tabular learner steps), or of L^i alone with coppo_detach —
    by enumeration with the reference row gradients (ref_coppo_grad, ref_coppo_partner_slope)."""
    q, old, cur, _ = g
    n = q.ndim
    cfg = TabularConfig(coppo_inner_eps=inner, coppo_detach=detach, entropy_coef=0.0)
    grad = _probe_at("coppo", q, old, cur, cfg)[1]
    v_old = ref_joint_value(q, old)
    for i in range(n):
        want = np.zeros(q.shape[i])
        for a in itertools.product(*(range(k) for k in q.shape)):
            p = np.prod([old[j][a[j]] for j in range(n)])
            lr = [math.log(cur[j][a[j]] / old[j][a[j]]) for j in range(n)]
            adv = q[a] - v_old
            extra = 0.0 if detach else ref_coppo_partner_slope(lr, i, adv, 0.8, 1.2, inner)
            want += p * ref_coppo_grad(np.log(cur[i]), a[i], math.log(old[i][a[i]]),
                                       sum(lr) - lr[i], adv, 0.8, 1.2, inner, 0.0, extra,
                                       1 if detach else n)
        assert_allclose(grad[i, :q.shape[i]], want, rtol=1e-8, atol=1e-10)


# Tests from the hand mutation audit of the split (each names the mutant it kills)


def test_probe_record_clips_a2po_by_the_agents_position():
    """P01: a sequential record's clip range is that of the agent's position m in the update
    order, ε_m = ε (c_ε + (1 − c_ε) m/n) (E12), as the learner steps — not position n."""
    q = envs.penalty(n_agents=3).payoff
    n, A = 3, 3
    rule = learner._hyper(TabularConfig(), "a2po").rule
    order = np.array([2, 0, 1], np.int64)
    logp = np.log(np.full((n, A), 1 / 3))
    game = asae_probe._Game(q.ravel().copy(), asae.JointIndex(np.array(q.shape, np.int64),
                                                               asae._radix(q.shape)))
    for m, i in enumerate(order, start=1):
        bounds = asae_probe._record(rule, game, (i, logp, logp, order), np.zeros(A),
                                    np.zeros(A), np.zeros(A), np.zeros(asae_probe.N_SUMS))
        eps = 0.2 * (0.5 + 0.5 * m / n)
        assert_allclose(bounds, (1 - eps, 1 + eps), rtol=1e-15)
