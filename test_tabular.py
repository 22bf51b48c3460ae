"""Tests of asae_tabular, the tabular learner: its whole update and whole run against slow
twins written from the equations (ref_update, ref_train), each method's behaviour, the count
tables, and the guards (non-finite state, bad input, memory)."""

from __future__ import annotations

import dataclasses
import math
import zlib
import os
import pydoc
import re
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

import asae
import asae_learner as learner
import asae_probe as probe
import asae_tabular as tabular
from asae_tabular import TabularConfig
import envs
import envs_spread
from test_asae import (ATOL, RTOL, ref_clip_range, ref_coppo_grad, ref_coppo_partner_slope, ref_gae,
                       ref_joint_value, ref_log_preceding, ref_log_softmax_row, ref_marginal_q,
                       ref_policy_grad, ref_preceding_weight, ref_softmax_row, ref_sync_weights,
                       ref_traced_gae)
from test_learner import RefRng, ref_agent_order, ref_sample


def test_train_steps_at_the_clip_boundary():
    """With ε = 0 and one gradient step per update every ratio is exactly 1 = 1 ± ε when the
    step is taken: the policy still moves (the boundary is the unclipped branch)."""
    cfg = small_config(clip_eps=0.0, entropy_coef=0.0, epochs=1, minibatches=1, iterations=3,
                       record_policies=True)
    res = tabular.train(envs.MatrixGame(CLIMBING), "async", cfg)
    assert not np.array_equal(res.policies[0][0], res.policies[-1][0])


# =======================================================================================
# Learners (E7–E10 in use): the whole update vs its slow twin, behaviour, guards
# =======================================================================================












def ref_update(method, cfg, logits, V, Q, batch, payoff, rng, probe=None):
    """One update written from the equations, plain Python/NumPy (twin of ``asae_tabular._update``).

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
                full = not cfg.coppo_detach                        # Σ_i L^i, mean over terms
                extra = ref_coppo_partner_slope(lr[r], i, base_i[r], lo, hi,
                                                cfg.coppo_inner_eps) if full else 0.0
                grads.append(ref_coppo_grad(z, a, old_lp[t, i], partners, base_i[r], lo, hi,
                                            cfg.coppo_inner_eps, cfg.entropy_coef, extra,
                                            n if full else 1))
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
        order = ref_agent_order(method, cfg, rng, n)
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
                                            batch["trunc"], cfg.gamma,
                                            cfg.lam ** (2 if cfg.a2po_trace == "authors" else 1),
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
    cfg, run = tabular._setup(env, method, cfg)
    for i, z in enumerate(logits):
        run.pol.logits[i, :, :z.shape[1]] = z
    run.critic.V[:] = V
    run.critic.Q[:] = Q
    b = tabular._Batch(**{k: np.ascontiguousarray(batch[f]) for k, f in
                       zip(tabular._Batch._fields, ("obs", "act", "rew", "term", "trunc", "states",
                                                 "next_states"))})
    code = tabular._update(run.hp, run.pol, run.critic, run.ex, b, run.rng, run.log)
    L = run.pol.logits
    return [L[i, :, :k] for i, k in enumerate(n_actions)], run.critic.V, run.critic.Q, code


VARIANTS = [dict(), dict(clip_ratio="joint"), dict(clip_eps=None), dict(sync_clip=None),
            dict(epochs=3, minibatches=5, entropy_coef=0.0, lr_actor=3.0),
            dict(clip_scale="inv_n"), dict(clip_scale="root_n", clip_eps=0.5)]
OWN_CLIP_VARIANTS = {  # the methods that clip their own way take their own parameters instead
    "coppo": [dict(coppo_inner_eps=None), dict(coppo_inner_eps=0.0), dict(coppo_inner_eps=0.3,
                                                                          clip_eps=0.1)],
    "a2po": [dict(a2po_others_eps=None), dict(a2po_clip_floor=1.0, a2po_others_eps=0.3),
             dict(a2po_trace_cbar=0.5, lam=1.0), dict(clip_scale="inv_n"),
             dict(a2po_order="random"), dict(a2po_trace="authors", a2po_trace_cbar=2.0)]}
UPDATE_CASES = [(m, v) for m in asae.METHODS for v in VARIANTS
                if m not in OWN_CLIP_VARIANTS or "clip_ratio" not in v and "clip_scale" not in v]
UPDATE_CASES += [(m, v) for m, vs in OWN_CLIP_VARIANTS.items() for v in vs]


@pytest.mark.parametrize("method, variant", UPDATE_CASES,
                         ids=[f"{m}-{v}" for m, v in UPDATE_CASES])
def test_update_matches_slow_twin(method, variant):
    """The whole jitted update (GAE → per-method advantage → clipped surrogate + entropy
    gradient → SGD, critic steps) equals the plain reference, for every method and clip."""
    rng = np.random.default_rng(zlib.crc32(f"{method}{variant}".encode()))  # not hash(): salted
    exact = method in ("exact_sync", "exact_async")
    for n_actions in ([3, 3], [2, 3, 2]):
        n_states, n_obs = (1, 1) if exact else (4, 3)
        cfg = TabularConfig(**{**dict(epochs=2, minibatches=3, lr_actor=2.0, entropy_coef=0.05,
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
        for a in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "optimum",
                  "payoff"):
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


@pytest.mark.parametrize(
    "make, method",
    [
        (envs.climbing, "asae"),
        (envs.TwoStepGame, "happo"),
        (lambda: envs.GridForaging(size=3, n_food=1, max_steps=3), "async"),
        (lambda: envs.GridForaging(size=3, n_food=1, max_steps=6), "coma"),
        (lambda: envs.MatrixGame(np.arange(8.0).reshape(2, 2, 2), 3), "async"),
    ],
)
def test_jitted_rollout_equals_env_step_path(make, method):
    """The table-driven rollout inside the jitted run reproduces the env.step path bit for bit."""
    cfg = TabularConfig(iterations=5, n_envs=8, rollout_len=7, seed=4, reward_scale=0.1)
    env = make()
    _same_result(tabular.train(env, method, cfg), tabular.train(NoTables(env), method, cfg))


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
    cfg = TabularConfig(**{**dict(iterations=3, n_envs=4, rollout_len=3, epochs=2, minibatches=2,
                                lr_actor=3.0, reward_scale=0.05, seed=5), **kw})
    got = tabular.train(make(), method, cfg)
    ref_L, ref_V = ref_train(make(), method, cfg)
    for g, r in zip(got.logits, ref_L):
        assert_allclose(g, r, rtol=RTOL, atol=1e-11)
    assert_allclose(got.values, ref_V, rtol=RTOL, atol=ATOL)
    env = make()                                       # the final evaluation: its seed and mode
    assert got.stochastic_return == tabular.evaluate(env, got.logits, cfg.eval_episodes, False,
                                                  ref_train.seed_eval)
    assert got.greedy_return == tabular.evaluate(env, got.logits, cfg.eval_episodes, True, 0)

CLIMBING = [[11, -30, 0], [-30, 7, 6], [0, 0, 5]]
QTRAN = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


def small_config(**kw):
    base = dict(iterations=6, n_envs=16, rollout_len=4, reward_scale=1 / 30, seed=3)
    return TabularConfig(**{**base, **kw})


@pytest.mark.parametrize("method", asae.METHODS)
def test_every_method_improves_expected_return_on_climbing(method):
    """From a fixed random starting policy, the exact expected return J(π) goes up."""
    game = envs.MatrixGame(CLIMBING)
    res = tabular.train(game, method, small_config(record_policies=True))
    J = [asae.joint_value(game.payoff, [p[0] for p in pols]) for pols in res.policies]
    assert J[-1] > J[0] + 0.5, (method, J)


@pytest.mark.parametrize("method", asae.METHODS)
def test_training_is_deterministic_by_seed(method):
    game = envs.MatrixGame(CLIMBING)
    a, b = (tabular.train(game, method, small_config(seed=7)) for _ in range(2))
    c = tabular.train(game, method, small_config(seed=8))
    _same_result(a, b)
    assert not all(np.array_equal(za, zc) for za, zc in zip(a.logits, c.logits))


def test_same_seed_same_initial_policy_for_every_method():
    game = envs.MatrixGame(CLIMBING)
    starts = [tabular.train(game, m, small_config(iterations=1, record_policies=True)).policies[0]
              for m in asae.METHODS]
    for s in starts[1:]:
        for p, q in zip(s, starts[0]):
            assert np.array_equal(p, q)


def test_one_gradient_step_asae_is_async_and_exact_sync_is_exact_async():
    """With one gradient step per update nobody has moved when the advantage is computed:
    every w^i is exactly 1 (E8), and Ã^i = A^i_old (E6 = E3) — bit-identical runs."""
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=1, minibatches=1, iterations=10, lr_actor=3.0)
    _same_result(tabular.train(game, "asae", cfg), tabular.train(game, "async", cfg))
    _same_result(tabular.train(game, "exact_sync", cfg), tabular.train(game, "exact_async", cfg))


def test_with_several_steps_each_method_differs_from_its_control():
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=4, minibatches=4, iterations=3, lr_actor=3.0)
    runs = {m: tabular.train(game, m, cfg) for m in asae.METHODS}
    for m, ctrl in [("asae", "async"), ("happo", "async"), ("exact_sync", "exact_async"),
                    ("coma", "async")]:
        assert not np.array_equal(runs[m].logits[0], runs[ctrl].logits[0]), m


def test_sync_clip_acts_when_partners_overshoot():
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=8, iterations=3, lr_actor=30.0, sync_clip=None)
    free = tabular.train(game, "asae", cfg)
    clipped = tabular.train(game, "asae", replace(cfg, sync_clip=0.05))
    assert free.diagnostics["max_ratio"] > 1.2                    # partners did overshoot
    assert not np.array_equal(free.logits[0], clipped.logits[0])


@pytest.mark.parametrize("variant", [dict(clip_ratio="joint"), dict(clip_eps=None)])
def test_clip_variants_change_the_run(variant):
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=8, iterations=3, lr_actor=10.0)
    assert not np.array_equal(tabular.train(game, "asae", cfg).logits[0],
                              tabular.train(game, "asae", replace(cfg, **variant)).logits[0])


def test_truncation_is_bootstrapped_and_termination_is_not():
    cfg = TabularConfig(gamma=0.9, lam=0.95, iterations=60, n_envs=8, rollout_len=10,
                      lr_critic=0.1, entropy_coef=0.0, seed=0)
    v_trunc = tabular.train(RewardChain(terminate=False), "async", cfg).values[0]
    v_term = tabular.train(RewardChain(terminate=True), "async", cfg).values[0]
    assert abs(v_trunc - 1 / (1 - 0.9)) < 0.1  # V = Σ γ^k = 10: the time limit is not the end
    expected_term = np.mean([(1 - 0.9 ** k) / 0.1 for k in range(1, 6)])  # steps-to-go 5..1
    assert abs(v_term - expected_term) < 0.1


def test_large_steps_stay_finite():
    """sync_clip=None, huge learning rate, many epochs: a finite result (or the guard)."""
    cfg = small_config(sync_clip=None, lr_actor=1e4, epochs=30, reward_scale=1.0, iterations=5)
    for method in ("asae", "happo", "exact_sync"):
        res = tabular.train(envs.MatrixGame(QTRAN), method, cfg)
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
        tabular.train(
            env, "async", TabularConfig(gamma=1.0, iterations=100, n_envs=4, rollout_len=5)
        )


def test_diverging_actor_raises_naming_it():
    env = RewardChain(r=1e300)
    with pytest.raises(FloatingPointError, match="iteration 1: agent 0's logits"):
        tabular.train(
            env, "async", TabularConfig(reward_scale=1e10, iterations=3, n_envs=4, rollout_len=5)
        )


LEARNER_BAD = [
    (lambda: TabularConfig(gamma=1.5), ValueError, "gamma"),
    (lambda: TabularConfig(epochs=0), ValueError, "epochs"),
    (lambda: TabularConfig(epochs=2.0), TypeError, "epochs"),
    (lambda: TabularConfig(sync_clip=-1.0), ValueError, "sync_clip"),
    (lambda: TabularConfig(clip_eps=2.0), ValueError, "clip_eps"),
    (lambda: TabularConfig(clip_ratio="both"), ValueError, "clip_ratio"),
    (lambda: TabularConfig(n_envs=2, rollout_len=1, minibatches=4), ValueError, "minibatches"),
    (lambda: TabularConfig(reward_scale=0.0), ValueError, "reward_scale"),
    (lambda: TabularConfig(lr_critic=3.0, reward_scale=1 / 30), ValueError, "lr_critic"),
    (lambda: TabularConfig(lr_critic=2.1), ValueError, "lr_critic"),
    (lambda: TabularConfig(lr_actor=np.inf), ValueError, "lr_actor"),
    (lambda: TabularConfig(record_policies=1), TypeError, "record_policies"),
    (lambda: TabularConfig(seed=-1), ValueError, "seed"),
    (lambda: TabularConfig(init_logits=[[[0.0, np.nan]]]), ValueError, "init_logits"),
    (lambda: TabularConfig(init_logits="abc"), TypeError, "init_logits"),
    (
        lambda: tabular.train(
            envs.climbing(), "asae", TabularConfig(init_logits=[[[0.0, 0.0, 0.0]]])
        ),
        ValueError,
        "init_logits",
    ),
    (lambda: tabular.train(envs.climbing(), "ppo"), ValueError, "method"),
    (lambda: tabular.train(object(), "asae"), TypeError, "env"),
    (lambda: tabular.train(envs.TwoStepGame, "asae"), TypeError, "TwoStepGame()"),
    (lambda: tabular.train(RewardChain(), "exact_sync"), ValueError, "exact_sync"),
    (lambda: tabular.train(RewardChain(), "exact_async"), ValueError, "exact_async"),
    (lambda: tabular.train(envs.climbing(), "asae", {"gamma": 0.9}), TypeError, "config"),
    (lambda: probe.advantage_bias(envs.climbing(), "asae", "fast"), TypeError, "config"),
    (lambda: tabular.train(envs.GridForaging(size=100, n_food=1), "asae"), ValueError, "GiB"),
    (lambda: tabular.train(BadEnv(_set(0, lambda o: o + 5)), "async"), ValueError, "obs"),
    (lambda: tabular.train(BadEnv(_set(0, lambda o: o.astype(float))), "async"), TypeError, "obs"),
    (lambda: tabular.train(BadEnv(_set(2, lambda r: r * np.nan)), "async"), ValueError, "reward"),
    (lambda: tabular.train(BadEnv(_set(2, lambda r: r[:1])), "async"), ValueError, "reward"),
    (lambda: tabular.train(BadEnv(_set(1, lambda s: s - 1)), "async"), ValueError, "state"),
    (lambda: tabular.train(BadEnv(_set(5, lambda s: s + 1)), "async"), ValueError, "final_state"),
    (
        lambda: tabular.train(BadEnv(_set(3, lambda t: t.astype(float))), "async"),
        TypeError,
        "terminated",
    ),
    (lambda: tabular.train(BadEnv(lambda out: out[:5]), "async"), TypeError, "env.step"),
    (
        lambda: tabular.evaluate(envs.climbing(), [np.zeros((1, 3))] * 3),
        ValueError,
        "one table per agent",
    ),
    (lambda: tabular.evaluate(envs.climbing(), [np.zeros((1, 2))] * 2), ValueError, r"logits\[0\]"),
    (
        lambda: tabular.evaluate(envs.climbing(), [np.full((1, 3), np.nan)] * 2),
        ValueError,
        r"logits\[0\]",
    ),
    (lambda: tabular.evaluate(envs.climbing(), np.zeros((1, 3))), TypeError, "logits"),
    (
        lambda: tabular.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, episodes=0),
        ValueError,
        "episodes",
    ),
    (
        lambda: tabular.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, greedy="yes"),
        TypeError,
        "greedy",
    ),
    # memory estimated before it is spent, the field named
    (
        lambda: tabular.train(envs.climbing(), "async", TabularConfig(iterations=10**12)),
        ValueError,
        "Config.iterations",
    ),
    (
        lambda: tabular.train(
            envs.climbing(), "async", TabularConfig(n_envs=10**6, rollout_len=10**6)
        ),
        ValueError,
        "Config.n_envs",
    ),
    (
        lambda: tabular.train(envs.climbing(), "async", TabularConfig(eval_episodes=10**11)),
        ValueError,
        "Config.eval_episodes",
    ),
    (
        lambda: tabular.train(envs.climbing(), "async", TabularConfig(epochs=10**9)),
        ValueError,
        "Config.epochs",
    ),
    (
        lambda: tabular.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, episodes=10**11),
        ValueError,
        "episodes",
    ),
    (lambda: TabularConfig(iterations=10**30), ValueError, "iterations"),
    # the env protocol checked up front, each attribute named
    (lambda: tabular.train(Patched(tables=lambda: None), "async"), TypeError, "env.tables()"),
    (
        lambda: tabular.train(Patched(tables=lambda: {"reward": 1}), "async"),
        TypeError,
        "next_state",
    ),
    (lambda: tabular.train(Patched(tables=lambda: (1, 2, 3)), "async"), TypeError, "env.tables()"),
    (
        lambda: tabular.train(
            Patched(tables=lambda: {**envs.climbing().tables()._asdict(), "time_limit": 10**30}),
            "async",
        ),
        ValueError,
        "time_limit",
    ),
    (lambda: tabular.train(Patched(n_actions=2), "async"), TypeError, "env.n_actions"),
    (lambda: tabular.train(Patched(n_actions=None), "async"), TypeError, "env.n_actions"),
    (lambda: tabular.train(Patched(step=None), "async"), TypeError, "env.step"),
    (lambda: tabular.train(Patched(reset=5), "async"), TypeError, "env.reset"),
    (lambda: tabular.train(Patched(optimum="x"), "async"), TypeError, "env.optimum"),
    (lambda: tabular.train(Patched(optimum=np.nan), "async"), TypeError, "env.optimum"),
    (
        lambda: TabularConfig(init_logits=[[[1e308, -1e308, 0.0]], [[0.0, 0.0, 0.0]]]),
        ValueError,
        "init_logits",
    ),
    (
        lambda: tabular.evaluate(RewardChain(r=1e308), [np.zeros((1, 2))]),
        FloatingPointError,
        "evaluate",
    ),
    (lambda: tabular.train(envs_spread.Spread(), "async", TabularConfig()), TypeError, "NetConfig"),
    (
        lambda: probe.advantage_bias(envs_spread.Spread(), "async"),
        TypeError,
        "feature observations",
    ),
    (
        lambda: tabular.evaluate(envs_spread.Spread(), [np.zeros((1, 5))] * 3),
        TypeError,
        "feature observations",
    ),
    (lambda: asae.method_advantages("ppo", [1.0]), ValueError, "method"),
    (lambda: asae.method_advantages("asae", [1.0]), TypeError, "log_ratios"),
    (
        lambda: asae.method_advantages("asae", [1.0, 2.0], np.zeros((3, 2))),
        ValueError,
        "log_ratios",
    ),
    (lambda: asae.method_advantages("happo", [1.0], np.zeros((1, 2))), TypeError, "order"),
    (
        lambda: asae.method_advantages("happo", [1.0], np.zeros((1, 2)), order=[0, 0]),
        ValueError,
        "order",
    ),
    (lambda: asae.method_advantages("exact_sync", [1.0]), TypeError, "tables"),
    (
        lambda: asae.method_advantages("exact_sync", [1.0], tables=[[0.0, 1.0]], actions=[[2]]),
        ValueError,
        "actions",
    ),
    (
        lambda: asae.method_advantages("coma", np.zeros((2, 2)), np.zeros((2, 3))),
        ValueError,
        "advantages",
    ),
]


@pytest.mark.parametrize(
    "call, exc, name", LEARNER_BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(LEARNER_BAD)]
)
def test_learner_bad_input(call, exc, name):
    with pytest.raises(exc, match=name.replace("(", r"\(").replace(")", r"\)")):
        call()


CRASH_CASES = {
    # tables trained on a 3×3 grid evaluated on a 30×30 one (segfaulted in 0.1)
    "evaluate_grid_mismatch": "tabular.evaluate(envs.GridForaging(size=30, n_food=1), "
    "tabular.train(envs.GridForaging(size=3, n_food=1), 'async', "
    "tabular.TabularConfig(iterations=1)).logits, greedy=False)",
    # a custom env whose observation ids exceed n_obs (segfaulted in _rollout)
    "obs_out_of_range": (
        "tabular.train(test_tabular.BadEnv(test_tabular._set(0, lambda o: o + 10**6)), " "'async')"
    ),
    "tables_out_of_range": "tabular.train(test_tabular.BadTables(), 'async')",
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
    code = ("import asae_tabular as tabular, envs, test_tabular\n"
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
    assert tabular.evaluate(game, best, episodes=8, greedy=True) == 11.0
    uniform = [np.zeros((1, 3)), np.zeros((1, 3))]
    mean = tabular.evaluate(game, uniform, episodes=4000, greedy=False, seed=1)
    assert abs(mean - np.mean(CLIMBING)) < 1.0      # E1 under the uniform policy: −31/9 ± sampling


def test_config_and_train_result_docs_are_visible_in_help():
    for cls in (TabularConfig, learner.TrainResult):
        doc = pydoc.render_doc(cls)
        for f in dataclasses.fields(cls):
            assert f.name in doc and f.metadata["doc"][:30] in doc.replace("\n    ", " ")


def _one_step(**kw):
    return small_config(epochs=1, minibatches=1, iterations=10, lr_actor=3.0, **kw)


def test_one_gradient_step_pins_for_coppo_a2po_and_clip_scale():
    """With one gradient step per update every ratio is 1 when it is taken: CoPPO's u = v = 1
    (≡ async bit for bit), a shrunk clip never binds (≡ the unshrunk run), A2PO's clip range
    by position is inert while ε_o ≤ ε_m, and its first agent is async's — but its later
    agents see the earlier ones' moves, so the run differs from async (as HAPPO's does)."""
    game = envs.MatrixGame(CLIMBING)
    runs = {m: tabular.train(game, m, _one_step()) for m in ("async", "coppo", "a2po", "happo")}
    _same_result(runs["coppo"], runs["async"])
    _same_result(tabular.train(game, "async", _one_step(clip_scale="inv_n")), runs["async"])
    _same_result(tabular.train(game, "happo", _one_step(clip_scale="root_n")), runs["happo"])
    _same_result(tabular.train(game, "a2po", _one_step(a2po_clip_floor=1.0)), runs["a2po"])
    assert not np.array_equal(runs["a2po"].logits[0], runs["async"].logits[0])
    assert not np.array_equal(runs["happo"].logits[0], runs["async"].logits[0])


def test_a2po_is_happo_without_its_clips_in_a_one_step_game():
    """Without a PPO clip and without ε_o, A2PO's objective is HAPPO's (E9), and in a one-step
    game every step ends an episode, so its trace is inert: with HAPPO's random order the runs
    are identical (the authors' semi-greedy order, the default, is another run); c̄ does not
    matter there, and the clips do once ratios move."""
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(clip_eps=None, a2po_others_eps=None, lr_actor=3.0, a2po_order="random")
    _same_result(tabular.train(game, "a2po", cfg), tabular.train(game, "happo", cfg))
    assert not np.array_equal(tabular.train(game, "a2po", replace(cfg, a2po_order="semi_greedy"))
                              .logits[0], tabular.train(game, "happo", cfg).logits[0])
    _same_result(tabular.train(game, "a2po", replace(cfg, a2po_trace_cbar=0.01)),
                 tabular.train(game, "happo", cfg))
    several = small_config(epochs=4, minibatches=4, iterations=3, lr_actor=10.0)
    assert not np.array_equal(tabular.train(game, "a2po", several).logits[0],
                              tabular.train(game, "happo", several).logits[0])


@pytest.mark.parametrize("method, kw, ctrl", [
    ("coppo", {}, dict(coppo_inner_eps=None)), ("coppo", {}, dict(clip_eps=None)),
    ("coppo", {}, dict(coppo_detach=True)),
    ("a2po", {}, dict(a2po_others_eps=None)), ("a2po", {}, dict(a2po_clip_floor=1.0)),
    ("async", {}, dict(clip_scale="inv_n")), ("asae", {}, dict(clip_scale="root_n"))])
def test_each_coppo_a2po_choice_changes_the_run(method, kw, ctrl):
    game = envs.MatrixGame(CLIMBING)
    cfg = small_config(epochs=8, iterations=3, lr_actor=10.0, **kw)
    assert not np.array_equal(tabular.train(game, method, cfg).logits[0],
                              tabular.train(game, method, replace(cfg, **ctrl)).logits[0])


def test_a2po_trace_changes_the_run_in_a_multi_step_game():
    """c̄ and the authors' λ² change the trace of every agent after the first (the semi-greedy
    order puts agent 0 first in a two-agent game, so agent 1's logits show it); at λ = 1 the
    authors' trace is ours bit for bit."""
    game = envs.TwoStepGame()
    cfg = TabularConfig(iterations=4, n_envs=8, rollout_len=6, epochs=4, lr_actor=5.0, seed=2)
    ours = tabular.train(game, "a2po", cfg)
    for ctrl in (dict(a2po_trace_cbar=0.05), dict(a2po_trace="authors")):
        assert not np.array_equal(ours.logits[1],
                                  tabular.train(game, "a2po", replace(cfg, **ctrl)).logits[1])
    lam1 = replace(cfg, lam=1.0)
    _same_result(tabular.train(game, "a2po", lam1),
                 tabular.train(game, "a2po", replace(lam1, a2po_trace="authors")))


COPPO_A2PO_BAD = [
    (lambda: tabular.train(envs.climbing(), "coppo", TabularConfig(clip_ratio="joint")), ValueError,
     "clip_ratio"),
    (lambda: tabular.train(envs.climbing(), "a2po", TabularConfig(clip_ratio="joint")), ValueError,
     "clip_ratio"),
    (lambda: tabular.train(envs.climbing(), "coppo", TabularConfig(clip_scale="inv_n")), ValueError,
     "clip_scale"),
    (lambda: TabularConfig(clip_scale="n"), ValueError, "clip_scale"),
    (lambda: TabularConfig(clip_scale="inv_n", clip_ratio="joint"), ValueError, "clip_scale"),
    (lambda: TabularConfig(coppo_inner_eps=1.5), ValueError, "coppo_inner_eps"),
    (lambda: TabularConfig(coppo_detach=1), TypeError, "coppo_detach"),
    (lambda: TabularConfig(a2po_order="greedy"), ValueError, "a2po_order"),
    (lambda: TabularConfig(a2po_trace=2), ValueError, "a2po_trace"),
    (lambda: asae.method_rule("coppo", coppo_detach="yes"), TypeError, "coppo_detach"),
    (lambda: TabularConfig(a2po_others_eps=-0.1), ValueError, "a2po_others_eps"),
    (lambda: TabularConfig(a2po_clip_floor=2.0), ValueError, "a2po_clip_floor"),
    (lambda: TabularConfig(a2po_trace_cbar=0.0), ValueError, "a2po_trace_cbar"),
]


@pytest.mark.parametrize("call, exc, name", COPPO_A2PO_BAD,
                         ids=[f"{i}-{b[2]}" for i, b in enumerate(COPPO_A2PO_BAD)])
def test_coppo_a2po_bad_config(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


def test_ratio_statistics_through_train():
    """Through train: one gradient step per update means no partner has moved (log W = 0,
    no clip binds, ESS 1); async's weights are 1; asae's clip acts once partners move."""
    game = envs.penalty(-100, n_agents=3)
    one = tabular.train(game, "asae", small_config(epochs=1, minibatches=1, track_ratios=True))
    assert one.ratios["log_w_quantiles"][0.05] == one.ratios["log_w_quantiles"][0.95] == 0.005
    assert one.ratios["ppo_clip_binds"] == 0 and one.ratios["ess_fraction"] == 1.0
    cfg = small_config(epochs=8, lr_actor=10.0, track_ratios=True, sync_clip=0.05)
    a, b = tabular.train(game, "async", cfg), tabular.train(game, "asae", cfg)
    assert a.ratios["weight_clip_binds"] == 0 and a.ratios["ess_fraction"] == 1.0
    assert b.ratios["weight_clip_binds"] > 0 and b.ratios["ess_fraction"] < 1.0
    assert a.ratios["samples"] == 6 * 64 * 8 * 3 and a.ratios["ppo_clip_binds"] > 0
    assert tabular.train(game, "async", replace(cfg, track_ratios=False)).ratios is None


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
    cfg = TabularConfig(iterations=5, n_envs=8, rollout_len=7, seed=4, reward_scale=scale)
    got = tabular.train(game, method, cfg)
    assert game._tables is None                   # the run took the count tables
    joint = envs.MatrixGame(game.payoff, game.episode_len)
    _same_result(got, tabular.train(joint, method, cfg))
    _same_result(got, tabular.train(StepOnly(game), method, cfg))
    assert not np.array_equal(got.logits[0], tabular.train(game, method, replace(cfg, iterations=1)
                                                        ).logits[0])  # the runs learned


def test_rollout_count_index_is_the_direct_formula():
    """A = 3, n = 4: every sampled joint action's table column in the jitted rollout is
    c = count_0 + count_1 · (n + 1) (the reward of column c is c here); all 81 are seen."""
    n = 4
    game = envs.CountGame(lambda counts: float(counts[0] + counts[1] * (n + 1)), n, 3)
    cfg = TabularConfig(n_envs=64, rollout_len=32, init_logit_std=0.0)
    _, (hp, pol, critic, ex, rng, log, rec) = tabular._setup(game, "async", cfg)
    tab = tabular._env_tables(game, n, pol.joint.n_actions, 1, 1)
    assert tab.count_base == n + 1 and tab.reward.shape == (1, (n + 1) ** 2)
    B = cfg.n_envs
    tabular._rollout_tables(tab, pol, np.zeros(B, np.int64), np.zeros(B, np.int64), np.zeros(B),
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
    cfg = TabularConfig(iterations=3, n_envs=16, rollout_len=4, eval_episodes=8,
                      reward_scale=0.01, lr_actor=3.0)
    got = tabular.train(game, method, cfg)
    assert np.isfinite(got.mean_return).all() and np.isfinite(got.values).all()
    assert math.isfinite(got.greedy_return) and math.isfinite(got.stochastic_return)
    assert len(got.logits) == n and all(z.shape == (1, 3) and np.isfinite(z).all()
                                        for z in got.logits)
    assert game._payoff is None and game._tables is None
    _same_result(got, tabular.train(StepOnly(game), method, cfg))
    assert tabular._table_columns(game, n, game.n_actions) == (n + 1) ** 2   # 1089 at n = 32


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
        (probe.train_with_bias if track_bias else tabular.train)(game, method,
                                                                 TabularConfig())
    assert game._payoff is None and game._tables is None


def test_joint_parts_accepted_where_they_fit(monkeypatch):
    """The other side of the boundary: COMA at n = 17 (Q: 8 · 3^17 bytes) and the bias probe
    at n = 13 fit the memory plan (checked without running; the probe's work limit, which
    refuses n = 13, lifted here)."""
    monkeypatch.setattr(tabular, "MAX_EXACT_WORK", 10 ** 12)
    for n, method, track_bias in [(17, "coma", False), (13, "async", True)]:
        tabular._check_train_args(envs.penalty(n_agents=n), method, TabularConfig(),
                                  record_steps=track_bias)


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


@pytest.mark.parametrize(
    "env, exc, match",
    [
        (
            CountPatched(
                count_tables=lambda: {k: v for k, v in _count_fields().items() if k != "count_base"}
            ),
            TypeError,
            r"env.count_tables\(\) must return an asae_tabular.EnvTables .* without count_base",
        ),
        (
            CountPatched(count_tables=lambda: _count_fields(count_base=3)),
            ValueError,
            r"env.count_tables\(\).count_base must be n_agents \+ 1 = 4; got 3",
        ),
        (
            CountPatched(
                count_tables=lambda: {
                    **envs.penalty(n_agents=3).tables()._asdict(),
                    "count_base": 4,
                }
            ),
            ValueError,
            r"env.count_tables\(\).next_state must have shape \(1, 16\)",
        ),
        (
            CountPatched(count_tables=lambda: _count_fields(reward=np.full((1, 16), np.nan))),
            ValueError,
            r"env.count_tables\(\).reward must be finite",
        ),
        (CountPatched(count_tables=5), TypeError, "env.count_tables must be callable"),
        (
            CountPatched(n_actions=(3, 3, 2)),
            ValueError,
            r"env.count_tables\(\) needs every agent to have the same number of actions; "
            r"env.n_actions holds \[2, 3\]",
        ),
        (
            CountPatched(
                count_tables=None,
                tables=lambda: {**envs.penalty(n_agents=3).tables()._asdict(), "count_base": 4},
            ),
            TypeError,
            "env.count_tables must be callable",
        ),
    ],
)
def test_bad_count_tables(env, exc, match):
    with pytest.raises(exc, match=match):
        tabular.train(env, "async", TabularConfig(iterations=1))


def test_tables_with_a_count_base_refused():
    env = CountPatched(tables=lambda: {**envs.penalty(n_agents=3).tables()._asdict(),
                                       "count_base": 4})
    del env.count_tables
    with pytest.raises(ValueError, match=r"env.tables\(\).count_base must be 0 \(columns are "
                       r"joint actions; count tables come from env.count_tables\(\)\); got 4"):
        tabular.train(env, "async", TabularConfig(iterations=1))
    env.tables = lambda: {**envs.penalty(n_agents=3).tables()._asdict(), "count_base": 0}
    assert np.isfinite(tabular.train(env, "async", TabularConfig(iterations=1)).values).all()


@pytest.mark.parametrize("method, bias", [("exact_sync", False), ("exact_async", False),
                                          ("async", True)])
def test_exact_work_is_refused_beyond_its_limit(method, bias):
    """n = 13 agents of 3 actions: 3^13·13² ≈ 2.7e8 operations per gradient step, refused
    before anything is built; n = 12 (9.0e7) is accepted."""
    with pytest.raises(ValueError, match="MAX_EXACT_WORK"):
        (probe.train_with_bias if bias else tabular.train)(
            envs.penalty(-100, n_agents=13), method, TabularConfig(iterations=1))
    if method == "exact_async":                       # the cheapest, to keep the suite quick
        cfg = TabularConfig(iterations=1, n_envs=2, rollout_len=1, minibatches=1, epochs=1)
        assert np.isfinite(
            tabular.train(envs.penalty(-100, n_agents=12), method, cfg).greedy_return
        )


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
        tabular.train(Costly(size=100), "async")
    with pytest.raises(ValueError, match=r"logits\[0\] must have shape"):
        tabular.evaluate(Costly(size=100), [np.zeros((1, 6))] * 2)
    assert Costly.reads == 0
    with pytest.raises(MemoryError, match="searched"):           # read once the run fits
        tabular.train(Costly(size=3, n_food=1), "async", TabularConfig(iterations=1))
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
        assert tabular.evaluate(top, [np.zeros((1, 2))] * 2, episodes=1000, greedy=False) == 1e308
        mean = tabular.evaluate(mixed, [np.zeros((1, 2))] * 2, episodes=999, greedy=False, seed=4)
    assert math.isfinite(mean) and abs(mean) < 1.7e308
    assert tabular.evaluate(envs.climbing(), [np.zeros((1, 3))] * 2, episodes=1000, greedy=False,
                         seed=3) == pytest.approx(-3.355)             # the ordinary mean, as before
    cfg = TabularConfig(iterations=2, n_envs=4, rollout_len=2, minibatches=1, eval_episodes=4,
                      reward_scale=1e-308)
    for env in (top, RewardChain(k=1, r=1e308)):
        with pytest.raises(FloatingPointError, match="iteration 1 overflows float64"):
            tabular.train(env, "async", cfg)


def test_recorded_policies_are_each_iterations():
    """record_policies: I + 1 entries, the first the initial softmax, the last the final
    logits' softmax, and every update moves them — on both rollout paths."""
    cfg = small_config(iterations=4, record_policies=True)
    for env in (envs.MatrixGame(CLIMBING), NoTables(envs.MatrixGame(CLIMBING))):
        res = tabular.train(env, "async", cfg)
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
    res = tabular.train(Patched(optimum=11.0 + offset), "async", cfg)
    assert res.greedy_return == 11.0 and res.greedy_optimal is optimal


class WithoutOptimum(Patched):
    """The climbing game without an ``optimum`` attribute."""

    def __init__(self):
        super().__init__()
        del self.optimum


@pytest.mark.parametrize("make", [lambda: Patched(optimum=None), WithoutOptimum],
                         ids=["optimum None", "no optimum"])
def test_an_env_without_an_optimum_trains_and_is_never_optimal(make):
    """optimum None means "no known optimum", as a missing attribute does: the run completes
    (it raised a raw TypeError from `greedy ≥ None − 1e-6` in 0.3) and greedy_optimal is False
    even where the greedy return is the game's best (11)."""
    cfg = small_config(iterations=1, lr_actor=1e-9, init_logits=[[[9.0, 0.0, 0.0]]] * 2)
    res = tabular.train(make(), "async", cfg)
    assert res.greedy_return == 11.0 and res.greedy_optimal is False
    res = probe.train_with_bias(make(), "async", cfg)
    assert res.greedy_optimal is False and res.bias["n_steps"] > 0


def test_coppo_through_the_partners_reduces_as_it_must():
    """The default CoPPO gradient (Σ_i L^i through every ratio, E11) against its detached
    variant: one agent has no partners, so the two are the same run; at n = 3 agents and
    large steps the partners' terms change the run."""
    one = envs.GridForaging(n_agents=1)
    cfg = small_config(epochs=4, iterations=4, lr_actor=3.0)
    full, detached = (tabular.train(one, "coppo", replace(cfg, coppo_detach=d))
                      for d in (False, True))
    _same_result(full, detached)
    three = envs.penalty(-50, n_agents=3)
    cfg = small_config(epochs=8, iterations=3, lr_actor=10.0)
    detached = tabular.train(three, "coppo", replace(cfg, coppo_detach=True))
    assert not np.array_equal(tabular.train(three, "coppo", cfg).logits[0], detached.logits[0])


# Tests from the hand mutation audit of the split (each names the mutant it kills)


@pytest.mark.parametrize("bad", [True, np.True_])
def test_a_boolean_optimum_is_refused(bad):
    """L11: env.optimum = True is a bool, not a return: refused by name like "x" and NaN."""
    with pytest.raises(TypeError, match="env.optimum"):
        tabular.train(Patched(optimum=bad), "async", TabularConfig(iterations=1))


def test_track_ratios_must_be_a_bool():
    """L15: LearnerConfig.track_ratios is checked like the other flags, in every config."""
    with pytest.raises(TypeError, match="TabularConfig.track_ratios"):
        TabularConfig(track_ratios=1)
    import asae_neural
    with pytest.raises(TypeError, match="NetConfig.track_ratios"):
        asae_neural.NetConfig(track_ratios="yes")


def test_one_row_per_minibatch_is_allowed():
    """L13 (caught only by test_bench): minibatches = n_envs·rollout_len is the limit, allowed."""
    cfg = TabularConfig(n_envs=2, rollout_len=2, minibatches=4, iterations=1)
    assert np.isfinite(tabular.train(envs.climbing(), "async", cfg).greedy_return)
    with pytest.raises(ValueError, match="minibatches"):
        TabularConfig(n_envs=2, rollout_len=2, minibatches=5)


@pytest.mark.parametrize("method", ["async", "happo"])
def test_memory_plan_covers_the_step_log(method):
    """T18: the plan's step-log part is the step log _setup allocates, to within a small
    factor: one record per moving agent per gradient step, each (n, A_max) log-policies."""
    game = envs.penalty(n_agents=3)
    cfg = TabularConfig(iterations=5, epochs=3, minibatches=2, n_envs=4, rollout_len=2)
    _, run = tabular._setup(game, method, cfg, record_steps=True)
    actual = sum(a.nbytes for a in run.log.steps)
    plan = tabular._memory_plan(cfg, method, (3, np.array(game.n_actions), 1, 1), 0, True)
    part = plan["TabularConfig.iterations × epochs × minibatches × agents² (step log)"]
    assert actual / 1.5 <= part <= 1.5 * actual


@pytest.mark.parametrize("method, bias", [("exact_sync", False), ("exact_async", False),
                                          ("async", True)])
def test_exact_methods_and_the_probe_need_one_observation(method, bias):
    """T21: a one-state env with two observations is not a matrix game (the exact tables
    and the probe read observation 0 only): refused like a multi-state env."""
    env = Patched(n_obs=2)
    run = probe.train_with_bias if bias else tabular.train
    with pytest.raises(ValueError, match="one-step matrix game"):
        run(env, method, TabularConfig(iterations=1))
