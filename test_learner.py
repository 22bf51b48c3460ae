"""Tests of asae_learner, what both learners share: the random stream (SplitMix64), the
minibatch plan, action sampling and the ratio statistics, each against a slow twin."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, strategies as st
from numpy.testing import assert_allclose

import asae
import asae_learner as learner
from asae_tabular import TabularConfig
from test_asae import arrays, ref_sequential_weights, ref_sync_weights


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


def ref_agent_order(method, cfg, rng, n):
    """A sequential update's order from its definition: HAPPO, and A2PO with
    a2po_order='random', a uniform permutation; A2PO's semi-greedy order (E12) takes the best
    remaining agent (every score ties here: index order) at even positions and a uniform pick
    of the rest, ⌊u · len⌋, at odd ones."""
    if method != "a2po" or cfg.a2po_order == "random":
        return rng.permutation(n)
    rest, order = list(range(n)), []
    for m in range(n):
        order.append(rest.pop(0 if m % 2 == 0 else int(rng.uniform() * len(rest))))
    return np.array(order)


@given(st.integers(0, 2 ** 40), st.integers(1, 40))
def test_rng_stream_and_permutation_match_reference(seed, n):
    rng, ref = learner._rng(seed), RefRng(seed)
    assert [learner._rng_uniform(rng) for _ in range(5)] == [ref.uniform() for _ in range(5)]
    perm = np.empty(n, np.int64)
    learner._rng_permutation(rng, perm)
    assert perm.tolist() == ref.permutation(n).tolist()
    assert sorted(perm.tolist()) == list(range(n))


def test_rng_uniforms_are_uniform_and_seeds_differ():
    rng = learner._rng(1)
    u = np.array([learner._rng_uniform(rng) for _ in range(20000)])
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - 2000) < 5 * np.sqrt(2000))     # ±5σ per bin
    assert learner._rng_uniform(learner._rng(2)) != learner._rng_uniform(learner._rng(3))


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
    obs = np.array(
        [[draw(st.integers(0, n_obs - 1)) for _ in range(n)] for _ in range(B)], np.int64
    )
    return logits, n_actions, obs


@given(multi_agent_tables(), st.integers(0, 1000))
def test_sample_actions_matches_reference(case, seed):
    """Agent-major uniform draws from the stream, inverse CDF on each agent's logits row."""
    logits, n_actions, obs = case
    out = np.empty(obs.shape, np.int64)
    learner._sample_actions(
        logits, n_actions, obs, learner._rng(seed), out, *learner._new_cdf(logits)
    )
    ref = RefRng(seed)
    for i in range(obs.shape[1]):
        for b in range(obs.shape[0]):
            z = list(logits[i, obs[b, i], :n_actions[i]])
            assert out[b, i] == ref_sample(z, ref.uniform())


def test_sample_actions_frequencies_follow_the_policy():
    z = np.log(np.array([[[0.1, 0.6, 0.3]]]))
    out = np.empty((20000, 1), np.int64)
    learner._sample_actions(z, np.array([3]), np.zeros((20000, 1), np.int64), learner._rng(0), out,
                         *learner._new_cdf(z))
    freq = np.bincount(out[:, 0], minlength=3) / out.shape[0]
    assert_allclose(freq, [0.1, 0.6, 0.3], atol=0.015)


@given(st.integers(1, 12), st.integers(2, 4), st.sampled_from(["async", "asae", "happo", "a2po",
                                                               "coppo"]), st.data())
def test_record_ratios_matches_reference(size, n, method, data):
    """The ratio statistics of one minibatch step against their definitions."""
    cfg = TabularConfig(sync_clip=0.2, a2po_others_eps=0.1, track_ratios=True)
    hp = learner._hyper(cfg, method)
    lr = arrays(data.draw, (size, n), st.floats(-2.0, 2.0))
    base = arrays(data.draw, (size, n), st.floats(-3.0, 3.0))
    order = np.array(data.draw(st.permutations(range(n))), np.int64)
    adv = np.empty((size, n))
    rule = hp.rule
    asae._weighted_advantages(rule.weight, rule.w_lo, rule.w_hi, base, lr, order, adv)
    stats = np.zeros(learner.RATIO_SLOTS)
    movers = order if rule.schedule == asae.SIMULTANEOUS else order[:1]
    learner._record_ratios(hp, (np.arange(size), lr, adv, base), movers, order, (0.8, 1.2), stats)
    clip = 0.1 if method == "a2po" else 0.2 if method == "asae" else None
    m = ref_sequential_weights(lr, order) if rule.weight == asae.PRECEDING else \
        ref_sync_weights(lr, None) if rule.weight == asae.PARTNERS else np.ones((size, n))
    mc = m if clip is None else np.clip(m, 1 - clip, 1 + clip)
    binds = ess = 0.0
    for i in movers:
        for r in range(size):
            s = asae._row_slope(rule, lr[r], i, adv[r, i], base[r, i], 0.8, 1.2)
            binds += s == 0.0 and adv[r, i] != 0.0
        ess += mc[:, i].sum() ** 2 / (size * (mc[:, i] ** 2).sum())
    log_w = np.array([[lr[r].sum() - lr[r, i] for i in movers] for r in range(size)])
    assert stats[learner.SAMPLES] == size * len(movers)
    assert stats[learner.PPO_BINDS] == binds
    assert stats[:learner.RATIO_BINS + 2].sum() == size * len(movers)
    inside = np.abs(log_w) < learner.RATIO_RANGE - 1e-9
    assert stats[:learner.RATIO_BINS].sum() == inside.sum()
    assert math.isclose(stats[learner.ESS_SUM], ess, rel_tol=1e-9)
    want_clip = 0 if clip is None else int(sum((np.abs(mc[:, i] - m[:, i]) > 1e-12).sum()
                                               for i in movers))
    assert abs(stats[learner.WEIGHT_BINDS] - want_clip) <= 0


@given(st.integers(1, 9), st.integers(0, 2 ** 40), st.sampled_from(["random", "semi_greedy"]))
def test_agent_order_matches_reference(n, seed, how):
    """The order of a sequential update (HAPPO's permutation; A2PO's semi-greedy order with
    every score tied: [0, random, lowest remaining, random, …]) against its definition, the
    stream consumed alike (the next draw agrees)."""
    cfg = TabularConfig(a2po_order=how)
    rule = learner._hyper(cfg, "a2po").rule
    rng, ref = learner._rng(seed), RefRng(seed)
    out = np.empty(n, np.int64)
    learner._agent_order(rule, rng, out)
    want = ref_agent_order("a2po", cfg, ref, n)
    assert out.tolist() == list(want) and sorted(out.tolist()) == list(range(n))
    assert learner._rng_uniform(rng) == ref.uniform()
    if how == "semi_greedy":
        for m in range(0, n, 2):
            assert out[m] == min(set(range(n)) - set(out[:m].tolist()))
    happo = learner._hyper(cfg, "happo").rule                     # HAPPO: always random
    rng, ref = learner._rng(seed), RefRng(seed)
    learner._agent_order(happo, rng, out)
    assert out.tolist() == list(ref.permutation(n))
