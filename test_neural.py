"""Property tests of the neural learners (asae's MLP actors and centralised MLP critic).

Every piece is checked against something written independently of it: the network's
backward pass against finite differences, the critic's loss gradient against finite
differences of the loss, and the whole training run (rollouts, GAE, advantage
normalisation, each method's per-row gradient, backprop, gradient clipping, Adam, ValueNorm,
the clipped Huber critic, the evaluation) against ``ref_net_train``, a row-by-row NumPy
twin written from the documentation, for every method the neural learner runs.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import asae
import asae_neural as neural
from asae_tabular import TabularConfig
import envs
from envs_spread import Spread
from test_asae import (ref_clip_range, ref_coppo_grad, ref_coppo_partner_slope, ref_gae,
                       ref_log_preceding, ref_log_softmax_row, ref_policy_grad,
                       ref_preceding_weight, ref_sync_weights, ref_traced_gae)
from test_learner import RefRng, ref_agent_order, ref_sample

NET_METHODS = ("async", "asae", "happo", "coppo", "a2po")


# --------------------------------------------------------------------------------------
# The network against finite differences
# --------------------------------------------------------------------------------------

@st.composite
def networks(draw):
    """An MLP with random (not just initial) parameters, inputs and output weights."""
    d_in, hidden, d_out = (draw(st.integers(1, 6)) for _ in range(3))
    layers = draw(st.integers(1, 3))
    ln = draw(st.booleans())
    N = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    net = neural.MLP(d_in, hidden, layers, d_out, ln)
    rng = np.random.default_rng(seed)
    theta = net.init(rng, draw(st.sampled_from([0.01, 1.0])))
    theta += 0.3 * rng.standard_normal(theta.size)          # gains, biases away from 1 and 0
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    x = scale * rng.standard_normal((N, d_in))
    dy = rng.standard_normal((N, d_out))
    return net, theta, x, dy


@given(networks())
def test_mlp_backward_matches_finite_differences(case):
    net, theta, x, dy = case
    cache = []
    net.forward(theta, x, cache)
    grad = np.zeros(net.size)
    net.backward(theta, cache, dy, grad)
    assert cache == []                                         # every saved piece consumed

    def f(t):
        return float(np.sum(dy * net.forward(t, x)))
    h = 1e-6
    fd = np.empty(net.size)
    for k in range(net.size):
        e = np.zeros(net.size)
        e[k] = h
        fd[k] = (f(theta + e) - f(theta - e)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


@given(networks())
def test_mlp_forward_matches_row_by_row_definition(case):
    net, theta, x, _ = case
    p = net.views(theta)
    for r in range(x.shape[0]):
        h, k = x[r], 0
        if net.layer_norm:
            h = ref_layer_norm(h, p[0], p[1])
            k = 2
        for _ in range(net.layers):
            h = np.tanh(h @ p[k] + p[k + 1])
            k += 2
            if net.layer_norm:
                h = ref_layer_norm(h, p[k], p[k + 1])
                k += 2
        np.testing.assert_allclose(net.forward(theta, x[r:r + 1])[0], h @ p[k] + p[k + 1],
                                   rtol=1e-12, atol=1e-12)


def test_orthogonal_init_is_orthogonal_with_the_gains():
    net = neural.MLP(7, 16, 2, 5, True)
    p = net.views(net.init(np.random.default_rng(0), 0.01))
    W1, W2, Wo = p[2], p[6], p[10]
    np.testing.assert_allclose(W1 @ W1.T, (5 / 3) ** 2 * np.eye(7), atol=1e-12)   # 7 ≤ 16
    np.testing.assert_allclose(W2.T @ W2, (5 / 3) ** 2 * np.eye(16), atol=1e-12)
    np.testing.assert_allclose(Wo.T @ Wo, 0.01 ** 2 * np.eye(5), atol=1e-12)
    assert np.all(p[0] == 1) and np.all(p[1] == 0) and np.all(p[3] == 0)


@given(st.floats(-30, 30), st.floats(-30, 30), st.floats(-1, 1),
       st.sampled_from([None, 1.0, 10.0]), st.sampled_from([None, 0.0, 0.2, 5.0]))
def test_critic_loss_gradient_matches_finite_differences(target, v, dv_old, delta, clip):
    v_old = v + dv_old

    def loss(u):
        return ref_critic_loss(target, u, v_old, delta, clip)
    h = 1e-6
    fd = (loss(v + h) - loss(v - h)) / (2 * h)
    if abs((loss(v + h) - loss(v)) - (loss(v) - loss(v - h))) > 1e-4 * h:
        return                                                 # at a kink: no derivative
    e_clip = inside = None
    if clip is not None:
        e_clip = np.array([target - (v_old + np.clip(v - v_old, -clip, clip))])
        inside = np.array([float(abs(v - v_old) <= clip)])
    got = neural._critic_grad(np.array([target - v]), e_clip, inside, delta)[0]
    assert got == pytest.approx(fd, rel=1e-5, abs=1e-5)


# --------------------------------------------------------------------------------------
# The slow twin of a whole run
# --------------------------------------------------------------------------------------

def ref_layer_norm(x, g, b):
    """LayerNorm of one row: (x − μ)/√(σ² + 1e-5) · g + b."""
    mu = sum(x) / len(x)
    var = sum((xi - mu) ** 2 for xi in x) / len(x)
    return (np.asarray(x) - mu) / math.sqrt(var + 1e-5) * g + b


def ref_critic_loss(target, v, v_old, delta, clip):
    """max(H(e), H(e_c)) with e = target − v, e_c = target − (v_old + clip(v − v_old, ±c)),
    H Huber with δ (½e² for δ None); H(e) alone when c is None."""
    def huber(e):
        if delta is None or abs(e) <= delta:
            return 0.5 * e * e
        return delta * (abs(e) - 0.5 * delta)
    out = huber(target - v)
    if clip is not None:
        out = max(out, huber(target - (v_old + min(max(v - v_old, -clip), clip))))
    return out


class RefNet:
    """An MLP written for one row at a time, its parameters a list in neural.MLP's documented
    order ([LN g, b], per layer [W, b, LN g, b], [W_o, b_o])."""

    def __init__(self, d_in, hidden, layers, d_out, ln, rng, gain_out):
        self.layers, self.ln = layers, ln
        p = []
        if ln:
            p += [np.ones(d_in), np.zeros(d_in)]
        d = d_in
        for layer in range(layers + 1):
            shape = (d, hidden) if layer < layers else (d, d_out)
            gain = 5 / 3 if layer < layers else gain_out
            tall = shape[0] >= shape[1]
            q, r = np.linalg.qr(rng.standard_normal(shape if tall else shape[::-1]))
            q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
            p += [gain * (q if tall else q.T), np.zeros(shape[1])]
            if ln and layer < layers:
                p += [np.ones(hidden), np.zeros(hidden)]
            d = hidden
        self.p = p
        self.m = [np.zeros_like(a) for a in p]
        self.v = [np.zeros_like(a) for a in p]
        self.t = 0

    def forward(self, x):
        """y and the per-layer values backprop needs, for one input row x."""
        p, k, saved = self.p, 0, []
        h = np.asarray(x, float)
        if self.ln:
            saved.append(h)
            h = ref_layer_norm(h, p[0], p[1])
            k = 2
        for _ in range(self.layers):
            saved.append(h)
            t = np.tanh(h @ p[k] + p[k + 1])
            saved.append(t)
            k += 2
            h = t
            if self.ln:
                h = ref_layer_norm(t, p[k], p[k + 1])
                k += 2
        saved.append(h)
        return h @ p[k] + p[k + 1], saved

    def backward(self, saved, dy, grads):
        """grads += ∂(dy · y)/∂θ for the row whose forward gave ``saved``."""
        p = self.p
        k = len(p) - 2
        h = saved.pop()
        grads[k] += np.outer(h, dy)
        grads[k + 1] += dy
        dh = p[k] @ dy
        for _ in range(self.layers):
            t = saved.pop()
            if self.ln:
                k -= 2
                dh = ref_layer_norm_back(t, p[k], dh, grads[k], grads[k + 1])
            k -= 2
            h_in = saved.pop()
            da = dh * (1 - t * t)
            grads[k] += np.outer(h_in, da)
            grads[k + 1] += da
            dh = p[k] @ da
        if self.ln:
            ref_layer_norm_back(saved.pop(), p[0], dh, grads[0], grads[1])

    def adam(self, grads, lr, eps, max_norm):
        """torch's clip_grad_norm_ (coefficient max/(‖g‖ + 1e-6) when below 1), then Adam."""
        norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
        if max_norm is not None and max_norm / (norm + 1e-6) < 1:
            grads = [g * (max_norm / (norm + 1e-6)) for g in grads]
        self.t += 1
        for a, g, m, v in zip(self.p, grads, self.m, self.v):
            m[...] = 0.9 * m + 0.1 * g
            v[...] = 0.999 * v + 0.001 * g * g
            a -= lr / (1 - 0.9 ** self.t) * m / (np.sqrt(v) / math.sqrt(1 - 0.999 ** self.t)
                                                  + eps)

    def flat(self):
        return np.concatenate([a.ravel() for a in self.p])


def ref_layer_norm_back(x, g, dy, dg, db):
    """∂/∂x of y = x̂ g + b for one row (x̂ = (x − μ)/s, s = √(σ² + ε)), by the chain rule
    through μ and σ²; dg, db accumulate."""
    d = len(x)
    mu = x.mean()
    s = math.sqrt(((x - mu) ** 2).mean() + 1e-5)
    xhat = (x - mu) / s
    dg += dy * xhat
    db += dy
    dxhat = dy * g
    return (dxhat - dxhat.sum() / d - xhat * (dxhat * xhat).sum() / d) / s


class RefValueNorm:
    def __init__(self):
        self.mu = self.nu = self.d = 0.0

    def update(self, x):
        b = 0.99999
        self.mu = b * self.mu + (1 - b) * float(np.mean(x))
        self.nu = b * self.nu + (1 - b) * float(np.mean(np.square(x)))
        self.d = b * self.d + (1 - b)

    def mean_std(self):
        d = max(self.d, 1e-5)
        return self.mu / d, math.sqrt(max(self.nu / d - (self.mu / d) ** 2, 1e-2))


def ref_net_train(env, method, cfg):
    """``train`` on a feature env written from the documentation, one row at a time.
    Returns (actor parameter vectors, critic vector, curve, greedy, stochastic, max ratio),
    the last the largest ratio of a moving agent seen at a minibatch step (at least 1)."""
    n, A = env.n_agents, list(env.n_actions)
    init = np.random.default_rng([cfg.seed, 1])
    d_in = env.obs_dim + (n if cfg.share_actor else 0)
    nets = [RefNet(d_in, cfg.hidden, cfg.layers, max(A), cfg.layer_norm, init, cfg.output_gain)
            for _ in range(1 if cfg.share_actor else n)]
    critic = RefNet(env.state_dim, cfg.hidden, cfg.layers, 1, cfg.layer_norm, init, 1.0)
    vnorm = RefValueNorm()
    rng = RefRng(cfg.seed)
    eps = math.inf if cfg.clip_eps is None else cfg.clip_eps

    def net_of(i):
        return nets[0] if cfg.share_actor else nets[i]

    def x_of(i, o):
        return np.concatenate([o, np.eye(n)[i]]) if cfg.share_actor else np.asarray(o, float)

    def logits(i, o):
        return net_of(i).forward(x_of(i, o))[0][:A[i]]

    def value(s):
        v = critic.forward(s)[0][0]
        if cfg.value_norm:
            mu, sd = vnorm.mean_std()
            v = v * sd + mu
        return v

    def sample(obs, rng_, greedy):
        act = np.zeros((obs.shape[0], n), np.int64)
        for i in range(n):
            for b in range(obs.shape[0]):
                z = list(logits(i, obs[b, i]))
                act[b, i] = int(np.argmax(z)) if greedy else ref_sample(z, rng_.uniform())
        return act

    T, B = cfg.rollout_len, cfg.n_envs
    obs, state = env.reset(B, seed=cfg.seed)
    ep_ret, curve, track = np.zeros(B), [], [0.0]
    for _ in range(cfg.iterations):
        rows, ended = [], []
        for t in range(T):
            act = sample(obs, rng, False)
            obs2, state2, r, te, tr, final = env.step(act.copy())
            rows.append((obs, act, r, te, tr, state,
                         np.where((te | tr)[:, None], final, state2)))
            ep_ret += r
            ended += list(ep_ret[te | tr])
            ep_ret[te | tr] = 0
            obs, state = obs2, state2
        curve.append(np.mean(ended) if ended else np.nan)
        batch = {k: np.array(v) for k, v in zip(("obs", "act", "rew", "term", "trunc",
                                                 "states", "next_states"), zip(*rows))}
        ref_net_update(method, cfg, n, A, eps, batch, logits, net_of, x_of, value, critic,
                       vnorm, rng, track)
    seed_eval = rng.next() >> 33
    returns = []
    for greedy in (True, False):
        rng_e = RefRng(seed_eval)
        o, _ = env.reset(cfg.eval_episodes, seed=seed_eval)
        ret, active = np.zeros(cfg.eval_episodes), np.ones(cfg.eval_episodes, bool)
        for _ in range(env.episode_limit):
            o, _, r, te, tr, _ = env.step(sample(o, rng_e, greedy))
            ret += np.where(active, r, 0.0)
            active &= ~(te | tr)
        returns.append(ret.mean())
    return ([net.flat() for net in nets], critic.flat(), np.array(curve), *returns,
            math.exp(min(track[0], asae.MAX_LOG_RATIO)))


def ref_net_update(method, cfg, n, A, eps, batch, logits, net_of, x_of, value, critic, vnorm,
                   rng, track):
    T, B = batch["rew"].shape
    N = T * B
    r = batch["rew"] * cfg.reward_scale
    S = batch["states"].reshape(N, -1)
    V = np.array([value(s) for s in S]).reshape(T, B)
    NV = np.array([value(s) for s in batch["next_states"].reshape(N, -1)]).reshape(T, B)
    adv, ret = ref_gae(r, V, NV, batch["term"], batch["trunc"], cfg.gamma, cfg.lam)
    adv, ret = adv.reshape(N), ret.reshape(N)

    def normalise(x):
        return (x - x.mean()) / (x.std() + 1e-5) if cfg.adv_norm else x
    base = np.repeat(normalise(adv)[:, None], n, axis=1)
    obs, act = batch["obs"].reshape(N, n, -1), batch["act"].reshape(N, n)

    def log_pi(i, t):
        return ref_log_softmax_row(list(logits(i, obs[t, i])))

    old_lp = np.array([[log_pi(i, t)[act[t, i]] for i in range(n)] for t in range(N)])

    def log_ratios():
        return np.array([[log_pi(j, t)[act[t, j]] - old_lp[t, j] for j in range(n)]
                         for t in range(N)])

    def clip_range(m):
        return ref_clip_range(method, cfg, m, n)

    def row_grads(i, rows, lr, adv_i, base_i, m):
        """∂/∂z of agent i's objective + entropy on every row, from the pre-step networks."""
        lo, hi = clip_range(n if m is None else m)
        out = []
        for k, t in enumerate(rows):
            partners = sum(lr[k][j] for j in range(n) if j != i)
            z, a = list(logits(i, obs[t, i])), act[t, i]
            if method == "coppo":                                 # Σ_i L^i's gradient (E11)
                extra = 0.0 if cfg.coppo_detach else ref_coppo_partner_slope(
                    lr[k], i, base_i[k], lo, hi, cfg.coppo_inner_eps)
                out.append(ref_coppo_grad(z, a, old_lp[t, i], partners, base_i[k], lo, hi,
                                          cfg.coppo_inner_eps, cfg.entropy_coef, extra))
                continue
            if method == "a2po":
                e_o = cfg.a2po_others_eps
                if e_o is not None:
                    lo_o = -math.inf if e_o >= 1 else math.log(1 - e_o)
                    partners = min(max(partners, lo_o), math.log1p(e_o))
            out.append(ref_policy_grad(z, a, old_lp[t, i], partners, adv_i[k], (lo, hi),
                                       cfg.entropy_coef,
                                       cfg.clip_ratio == "joint" or method == "a2po"))
        return out

    def backprop(i, rows, g, weight, grads):
        net = net_of(i)
        for k, t in enumerate(rows):
            y, saved = net.forward(x_of(i, obs[t, i]))
            dy = np.zeros_like(y)
            dy[:A[i]] = -g[k] * weight                 # descent on −(mean objective)
            net.backward(saved, dy, grads)

    def minibatches():
        for _ in range(cfg.epochs):
            yield from np.array_split(rng.permutation(N), cfg.minibatches)

    def zeros(i):
        return [np.zeros_like(a) for a in net_of(i).p]

    if method in ("happo", "a2po"):
        order = ref_agent_order(method, cfg, rng, n)
        raw = np.repeat(adv[:, None], n, axis=1)                # A2PO's pooled normalisation
        for m, i in enumerate(order):
            lr_turn = log_ratios()
            M = ref_preceding_weight(method, cfg, lr_turn, order, i)
            base_i = base[:, i]
            if method == "a2po":
                if m > 0:
                    Mt = np.exp(np.minimum(ref_log_preceding(lr_turn, order)[:, i],
                                           asae.MAX_LOG_RATIO)).reshape(T, B)
                    traced = ref_traced_gae(r, V, NV, batch["term"], batch["trunc"], cfg.gamma,
                                            cfg.lam ** (2 if cfg.a2po_trace == "authors" else 1),
                                            np.minimum(cfg.a2po_trace_cbar, Mt)).reshape(N)
                    if cfg.a2po_pooled_norm and cfg.adv_norm:      # over every agent's column
                        raw[:, i] = traced
                        base_i = (traced - raw.mean()) / (raw.std() + 1e-5)
                    else:
                        base_i = normalise(traced)
            for rows in minibatches():
                lr = log_ratios()[rows]
                track[0] = max(track[0], lr[:, i].max())          # the mover's ratios only
                for j in range(n):
                    if j != i:
                        lr[:, j] = lr_turn[rows, j]
                g = row_grads(i, rows, lr, M[rows] * base_i[rows], base_i[rows], m + 1)
                grads = zeros(i)
                backprop(i, rows, g, 1 / len(rows), grads)
                net_of(i).adam(grads, cfg.lr_actor, cfg.adam_eps, cfg.max_grad_norm)
    else:
        for rows in minibatches():
            lr = log_ratios()[rows]
            track[0] = max(track[0], lr.max())
            if method == "asae":
                adv_mb = ref_sync_weights(lr, cfg.sync_clip) * base[rows]
            else:
                adv_mb = base[rows]
            gs = [row_grads(i, rows, lr, adv_mb[:, i], base[rows, i], None) for i in range(n)]
            if cfg.share_actor:
                grads = zeros(0)
                for i in range(n):
                    backprop(i, rows, gs[i], 1 / (len(rows) * n), grads)
                net_of(0).adam(grads, cfg.lr_actor, cfg.adam_eps, cfg.max_grad_norm)
            else:
                for i in range(n):
                    grads = zeros(i)
                    backprop(i, rows, gs[i], 1 / len(rows), grads)
                    net_of(i).adam(grads, cfg.lr_actor, cfg.adam_eps, cfg.max_grad_norm)
    v_old = np.array([critic.forward(s)[0][0] for s in S])
    for rows in minibatches():
        target = ret[rows]
        if cfg.value_norm:
            vnorm.update(target)
            mu, sd = vnorm.mean_std()
            target = (target - mu) / sd
        grads = [np.zeros_like(a) for a in critic.p]
        for k, t in enumerate(rows):
            y, saved = critic.forward(S[t])
            dl = ref_critic_slope(target[k], y[0], v_old[t], cfg.huber_delta, cfg.value_clip)
            critic.backward(saved, np.array([dl / len(rows)]), grads)
        critic.adam(grads, cfg.lr_critic, cfg.adam_eps, cfg.max_grad_norm)


def ref_critic_slope(target, v, v_old, delta, clip):
    """∂/∂v of ``ref_critic_loss`` by cases: the larger branch's Huber slope (−clip(e, ±δ)),
    times ∂v_c/∂v = 1[|v − v_old| ≤ c] on the clipped branch; ties take the unclipped one."""
    def huber(e):
        if delta is None or abs(e) <= delta:
            return 0.5 * e * e, e
        return delta * (abs(e) - 0.5 * delta), math.copysign(delta, e)
    h, dh = huber(target - v)
    if clip is None:
        return -dh
    vc = v_old + min(max(v - v_old, -clip), clip)
    hc, dhc = huber(target - vc)
    return -dh if h >= hc else -dhc * float(abs(v - v_old) <= clip)


def tiny(**kw):
    base = dict(n_envs=3, rollout_len=4, iterations=2, epochs=2, minibatches=2, hidden=5,
                eval_episodes=3, lr_actor=0.05, lr_critic=0.05, seed=3)
    base.update(kw)
    return neural.NetConfig(**base)


TWIN_CASES = [(m, {}) for m in NET_METHODS] + [
    ("asae", dict(sync_clip=None)), ("asae", dict(clip_ratio="joint")),
    ("async", dict(share_actor=True)), ("asae", dict(share_actor=True, layer_norm=False)),
    ("async", dict(value_norm=False, huber_delta=None, value_clip=None, adv_norm=False)),
    ("happo", dict(max_grad_norm=0.05, huber_delta=0.5, layers=1)),
    ("a2po", dict(a2po_trace_cbar=0.7, clip_scale="root_n", gamma=0.9)),
    ("coppo", dict(coppo_inner_eps=None, clip_eps=0.05)),
    ("coppo", dict(coppo_detach=True)),
    ("a2po", dict(a2po_order="random", a2po_trace="authors", a2po_trace_cbar=2.0)),
    ("a2po", dict(a2po_pooled_norm=True, a2po_trace_cbar=2.0)),
    ("asae", dict(clip_scale="inv_n", entropy_coef=0.2, reward_scale=0.5, output_gain=1.0)),
    ("async", dict(lr_critic=0.01, adam_eps=1e-3)),
]


def assert_matches_twin(make_env, method, cfg):
    res = neural.train(make_env(), method, cfg)
    actors, critic, curve, greedy, stochastic, max_ratio = ref_net_train(make_env(), method, cfg)
    assert len(res.policy.params) == len(actors)
    for got, want in zip(res.policy.params, actors):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.critic, critic, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(res.mean_return, curve, rtol=1e-10)
    assert res.greedy_return == pytest.approx(greedy, rel=1e-10)
    assert res.stochastic_return == pytest.approx(stochastic, rel=1e-10)
    assert res.diagnostics["max_ratio"] == pytest.approx(max_ratio, rel=1e-10)


@pytest.mark.parametrize("method,kw", TWIN_CASES)
def test_train_matches_slow_twin(method, kw):
    """Two iterations (rollouts that cross episode ends: max_cycles 3 < rollout 4), then
    the evaluation: every parameter, the curve, both returns and the largest ratio agree to
    rtol 1e-10."""
    assert_matches_twin(lambda: Spread(n_agents=3, max_cycles=3), method, tiny(**kw))


class UnevenSpread(Spread):
    """Spread whose agents have 1, 3 and 5 of the 5 moves (the networks' logits are padded to
    5; a lone logit is negative about half the time, so an argmax over the padding shows) and
    whose episode_limit (5) exceeds its episodes (3 steps, then truncated): the evaluation
    must count one episode per env and stop counting at its end."""

    def __init__(self):
        super().__init__(n_agents=3, max_cycles=3)
        self.n_actions = (1, 3, 5)
        self.episode_limit = 5


@pytest.mark.parametrize("method,kw", [("asae", dict(share_actor=True)), ("a2po", {})])
def test_train_matches_slow_twin_uneven_actions_and_long_limit(method, kw):
    assert_matches_twin(UnevenSpread, method, tiny(eval_episodes=16, **kw))


# --------------------------------------------------------------------------------------
# Behaviour
# --------------------------------------------------------------------------------------

def _params(res):
    return np.concatenate(res.policy.params + [res.critic])


def test_one_step_asae_and_coppo_are_async():
    """One minibatch step per update, all ratios 1: w = 1 and CoPPO's detached terms coincide
    with async's; its summed objective (the default) gives every agent n× async's gradient,
    which Adam's first step nearly absorbs (m/√v) but the gradient-norm clip does not."""
    cfg = tiny(iterations=1, epochs=1, minibatches=1)
    env = Spread(n_agents=3)
    runs = [_params(neural.train(env, m, cfg)) for m in ("async", "asae")]
    runs.append(_params(neural.train(env, "coppo", tiny(iterations=1, epochs=1, minibatches=1,
                                                        coppo_detach=True))))
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])
    full = _params(neural.train(env, "coppo", cfg))
    assert not np.array_equal(full, runs[0])
    free = dict(iterations=1, epochs=1, minibatches=1, max_grad_norm=None, adam_eps=1e-300)
    np.testing.assert_allclose(_params(neural.train(env, "coppo", tiny(**free))),
                               _params(neural.train(env, "async", tiny(**free))), rtol=1e-9)
    more = tiny(iterations=1, epochs=3, minibatches=1)
    assert not np.array_equal(_params(neural.train(env, "async", more)),
                              _params(neural.train(env, "asae", more)))


def test_single_agent_every_method_is_async():
    """With one agent there are no partners: w = M = 1, the trace is GAE (c̄ ≥ 1)."""
    env = Spread(n_agents=1)
    cfg = tiny(a2po_clip_floor=1.0)
    ref = _params(neural.train(env, "async", cfg))
    for m in ("asae", "happo", "a2po"):
        assert np.array_equal(_params(neural.train(env, m, cfg)), ref), m


def test_training_is_deterministic_and_seeded():
    env = Spread(n_agents=2)
    a, b = (neural.train(env, "happo", tiny()) for _ in range(2))
    assert np.array_equal(_params(a), _params(b))
    assert np.array_equal(a.mean_return, b.mean_return, equal_nan=True)
    assert not np.array_equal(_params(a), _params(neural.train(env, "happo", tiny(seed=4))))


def test_same_seed_same_initial_networks_for_every_method():
    """Zero step sizes keep the initial networks: the same for every method per seed."""
    env = Spread(n_agents=2)
    cfg = tiny(iterations=1, lr_actor=1e-300, lr_critic=1e-300)
    first = [neural.train(env, m, cfg).policy.params for m in NET_METHODS]
    for params in first[1:]:
        for p, q in zip(params, first[0]):
            np.testing.assert_allclose(p, q, rtol=0, atol=1e-290)


@pytest.mark.parametrize("field", ["max_grad_norm", "value_clip", "huber_delta", "adv_norm",
                                   "value_norm", "layer_norm", "output_gain", "adam_eps"])
def test_each_net_setting_changes_the_run(field):
    alt = {"max_grad_norm": 0.01, "value_clip": None, "huber_delta": 0.1, "adv_norm": False,
           "value_norm": False, "layer_norm": False, "output_gain": 1.0, "adam_eps": 0.1}
    env = Spread(n_agents=2)
    assert not np.array_equal(_params(neural.train(env, "async", tiny())),
                              _params(neural.train(env, "async", tiny(**{field: alt[field]}))))


def test_evaluate_runs_the_trained_policy():
    env = Spread(n_agents=2, max_cycles=5)
    res = neural.train(env, "async", tiny(eval_episodes=4))
    assert neural.evaluate(env, res.policy, episodes=4, greedy=True,
                         seed=0) == neural.evaluate(env, res.policy, episodes=4, seed=0)
    assert math.isfinite(neural.evaluate(env, res.policy, episodes=3, greedy=False, seed=1))


def test_learns_on_spread_two_agents():
    """A short run (32 envs × 25 steps × 40 updates) moves well above the random floor."""
    env = Spread(n_agents=2)
    cfg = neural.NetConfig(n_envs=32, iterations=40, seed=0, eval_episodes=64)
    res = neural.train(env, "async", cfg)
    floor = env.reference_returns.random
    assert res.stochastic_return > floor.mean + 10 * floor.ci95
    assert np.nanmean(res.mean_return[-5:]) > np.nanmean(res.mean_return[:5])


# --------------------------------------------------------------------------------------
# Guards
# --------------------------------------------------------------------------------------

class NaNRewardSpread(Spread):
    def step(self, actions):
        out = list(super().step(actions))
        out[2] = out[2].copy()
        out[2][0] = np.nan
        return tuple(out)


@pytest.mark.parametrize("call,exc,name", [
    (lambda: neural.train(Spread(2), "coma", tiny()), ValueError, "joint actions"),
    (lambda: neural.train(Spread(2), "exact_sync", tiny()), ValueError, "joint actions"),
    (lambda: neural.train(Spread(2), "async", TabularConfig()), TypeError, "NetConfig"),
    (lambda: neural.train(envs.climbing(), "async", tiny()), TypeError, "asae_tabular.train"),
    (lambda: neural.train(Spread(2), "ppo", tiny()), ValueError, "method must be one of"),
    (lambda: neural.train(Spread(2), "happo", tiny(share_actor=True)), ValueError,
     "share_actor"),
    (lambda: neural.train(Spread(2), "coppo", tiny(clip_ratio="joint")), ValueError,
     "clip_ratio"),
    (lambda: tiny(hidden=0), ValueError, "NetConfig.hidden"),
    (lambda: tiny(layers=0), ValueError, "NetConfig.layers"),
    (lambda: tiny(adam_eps=0.0), ValueError, "NetConfig.adam_eps"),
    (lambda: tiny(max_grad_norm=-1.0), ValueError, "NetConfig.max_grad_norm"),
    (lambda: tiny(huber_delta=float("nan")), ValueError, "NetConfig.huber_delta"),
    (lambda: tiny(value_clip=-0.1), ValueError, "NetConfig.value_clip"),
    (lambda: tiny(lr_actor=2.0), ValueError, "NetConfig.lr_actor"),
    (lambda: tiny(layer_norm=1), TypeError, "NetConfig.layer_norm"),
    (lambda: tiny(track_bias=True), TypeError, "track_bias"),           # the tabular fields:
    (lambda: tiny(record_policies=True), TypeError, "record_policies"),  # not NetConfig's own
    (lambda: tiny(init_logit_std=0.5), TypeError, "init_logit_std"),
    (lambda: neural.train(Spread(2), "async", tiny(n_envs=10 ** 6, rollout_len=10 ** 4)),
     ValueError, "MAX_TABLE_BYTES"),
    (lambda: neural.train(NaNRewardSpread(2), "async", tiny()), ValueError, "rewards"),
    (lambda: neural.evaluate(Spread(12), neural.MLPPolicy(neural.MLP(72, 4, 1, 5, False),
                                                           [np.zeros(1)] * 12, (5,) * 12, False),
                           episodes=2 ** 24), ValueError, "MAX_TABLE_BYTES"),
    (lambda: neural.evaluate(Spread(3), neural.train(Spread(2), "async",
                                                      tiny(iterations=1)).policy),
     ValueError, "agents"),
])
def test_bad_input_raises_clear_error(call, exc, name):
    with pytest.raises(exc, match=name):
        call()


class ConstantRewardSpread(Spread):
    def __init__(self, reward, **kw):
        super().__init__(**kw)
        self.reward = reward

    def step(self, actions):
        out = list(super().step(actions))
        out[2] = np.full_like(out[2], self.reward)
        return tuple(out)


def test_overflowing_advantages_raise_at_their_source():
    """Rewards −1e308 are finite, their discounted sum is not: E10's check names it."""
    with pytest.raises(FloatingPointError, match="advantages or returns"):
        neural.train(ConstantRewardSpread(-1e308, n_agents=2), "async", tiny())


def test_overflowing_gradient_raises_at_its_source():
    """Rewards −4e307: finite returns (≈ −1.5e308), but the unclipped critic's gradient
    (Σ over rows of ½e² slopes) overflows; the step refuses it before Adam."""
    cfg = tiny(value_norm=False, huber_delta=None, value_clip=None, max_grad_norm=None,
               adv_norm=False)
    with pytest.raises(FloatingPointError, match="gradient is not finite"):
        neural.train(ConstantRewardSpread(-4e307, n_agents=2), "async", cfg)
    with pytest.raises(FloatingPointError, match="adv_norm"):           # its mean overflows
        neural.train(ConstantRewardSpread(-4e307, n_agents=2), "async", tiny(value_norm=False))


@pytest.mark.parametrize("shared", [True, False])
def test_memory_plan_bounds_a_run(shared):
    """The pre-run memory estimate is at least the NumPy memory a run allocates
    (tracemalloc's peak; numba compiled first, by a warm-up run)."""
    import tracemalloc
    env = Spread(n_agents=4)
    neural.train(env, "async", tiny(share_actor=shared, iterations=1))
    cfg = neural.NetConfig(n_envs=16, iterations=1, epochs=1, eval_episodes=4, share_actor=shared)
    plan = neural._net_memory_plan(cfg, 4, env.obs_dim, env.state_dim,
                                 env.obs_dim + (4 if shared else 0))
    tracemalloc.start()
    try:
        neural.train(env, "async", cfg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sum(plan.values()) >= peak


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1.5e308])
def test_adam_refuses_a_gradient_that_is_not_finite(bad):
    """A NaN or infinite entry, or a norm beyond float64, raises before any parameter moves."""
    theta = np.ones(4)
    grad = np.array([1.0, bad, bad, 0.5])
    opt = neural._Adam(np.zeros(4), np.zeros(4), np.zeros(1, np.int64))
    with pytest.raises(FloatingPointError, match="the critic's gradient"):
        neural._adam_step(theta, grad, opt, 1e-3, 1e-5, 10.0, "the critic")
    assert np.all(theta == 1.0) and opt.t[0] == 0


def test_diverging_run_raises_instead_of_reporting():
    """Returns beyond float64 (rewards ~1e307 summed over 25 steps): an error, no result."""
    class Huge(Spread):
        def step(self, actions):
            out = list(super().step(actions))
            out[2] = out[2] * 1e307
            return tuple(out)
    with pytest.raises(FloatingPointError, match="no longer finite|overflows"):
        neural.train(Huge(2), "async", tiny(value_norm=False, huber_delta=None, value_clip=None))


def test_a2po_pooled_normalisation_changes_the_run_and_needs_adv_norm():
    """The authors' pooled normalisation of A2PO's traced base changes the run; without
    adv_norm there is nothing to pool (the same run); a non-bool is refused by name."""
    env = Spread(n_agents=3)
    base = _params(neural.train(env, "a2po", tiny()))
    assert not np.array_equal(base, _params(neural.train(env, "a2po",
                                                         tiny(a2po_pooled_norm=True))))
    off = dict(adv_norm=False)
    assert np.array_equal(_params(neural.train(env, "a2po", tiny(**off))),
                          _params(neural.train(env, "a2po", tiny(a2po_pooled_norm=True, **off))))
    with pytest.raises(TypeError, match="a2po_pooled_norm"):
        tiny(a2po_pooled_norm=1)


# Tests from the hand mutation audit of the split (each names the mutant it kills)


def _tiny(**kw):
    base = dict(n_envs=3, rollout_len=4, iterations=1, epochs=1, minibatches=1, hidden=5,
                eval_episodes=3, seed=3)
    return neural.NetConfig(**{**base, **kw})


def test_net_config_flags_and_value_clip_bounds():
    """N03, N04: share_actor must be a bool; value_clip = 0 is allowed (c ≥ 0), < 0 is not."""
    with pytest.raises(TypeError, match="NetConfig.share_actor"):
        neural.NetConfig(share_actor=1)
    assert neural.NetConfig(value_clip=0.0).value_clip == 0.0
    with pytest.raises(ValueError, match="NetConfig.value_clip"):
        neural.NetConfig(value_clip=-0.1)


def test_neural_evaluate_refuses_a_non_bool_greedy():
    """N05: asae_neural.evaluate checks greedy like asae_tabular.evaluate."""
    env = Spread(n_agents=2, max_cycles=3)
    policy = neural._net_setup(env, "async", _tiny())[1].policy
    with pytest.raises(TypeError, match="greedy"):
        neural.evaluate(env, policy, episodes=2, greedy=1)


@pytest.mark.parametrize("optimum, optimal", [(-1e9, True), (1e9, False)])
def test_neural_greedy_optimal_reads_the_envs_optimum(optimum, optimal):
    """N09: a feature env with an optimum gets greedy_optimal from it (within 1e-6)."""
    class WithOptimum(Spread):
        pass
    env = WithOptimum(n_agents=2, max_cycles=3)
    env.optimum = optimum
    assert neural.train(env, "async", _tiny()).greedy_optimal is optimal


# --------------------------------------------------------------------------------------
# Row chunks and the float32 option (issue 24)
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,kw", [("async", {}), ("asae", dict(share_actor=True)),
                                       ("happo", {}), ("coppo", {}), ("a2po", {}),
                                       ("asae", dict(layer_norm=False, minibatches=1))])
@pytest.mark.parametrize("chunk", [1, 5])
def test_row_chunks_match_the_slow_twin(monkeypatch, method, kw, chunk):
    """The update's forwards and backwards run over chunks of ROW_CHUNK rows (6 or 12 rows a
    minibatch here, so chunks of 5 leave a remainder and chunks of 1 are every row alone):
    the twin, which knows no chunks, still agrees to rtol 1e-10."""
    monkeypatch.setattr(neural, "ROW_CHUNK", chunk)
    assert_matches_twin(lambda: Spread(n_agents=3, max_cycles=3), method, tiny(**kw))


def test_chunks_cover_the_rows_in_order(monkeypatch):
    monkeypatch.setattr(neural, "ROW_CHUNK", 4)
    assert [(c.start, c.stop) for c in neural._chunks(10)] == [(0, 4), (4, 8), (8, 10)]
    assert neural._chunks(0) == [] and neural._chunks(4) == [slice(0, 4)]


@pytest.mark.parametrize("rows", [1, 3, 4, 7, 9])
def test_layer_norm_kernels_four_rows_at_a_time_equal_one_row_at_a_time(rows):
    """The kernels' four-row blocks give bit for bit what a row alone gives (each row's sums
    in the same order), for row counts with and without a remainder."""
    rng = np.random.default_rng(rows)
    x, g, b = rng.standard_normal((rows, 6)) * 3, rng.standard_normal(6), rng.standard_normal(6)
    y, (xhat, inv) = neural._layer_norm(x, g, b)
    t, dy = np.tanh(rng.standard_normal((rows, 6))), rng.standard_normal((rows, 6))
    grads = (np.zeros(6), np.zeros(6), np.zeros(6))
    dx = neural._layer_norm_back(dy, (xhat, inv), g, grads, t)
    for r in range(rows):
        y1, c1 = neural._layer_norm(x[r:r + 1], g, b)
        assert np.array_equal(y1, y[r:r + 1]) and np.array_equal(c1[1], inv[r:r + 1])
        g1 = (np.zeros(6), np.zeros(6), np.zeros(6))
        assert np.array_equal(neural._layer_norm_back(dy[r:r + 1], c1, g, g1, t[r:r + 1]),
                              dx[r:r + 1])
        want = ref_layer_norm(x[r], g, b)
        np.testing.assert_allclose(y[r], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[2], dx.sum(axis=0), rtol=1e-12, atol=1e-12)   # Σ_r dx
    np.testing.assert_allclose(grads[1], dy.sum(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[0], (dy * xhat).sum(axis=0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["async", "a2po"])
def test_float32_update_stays_close_to_float64_and_changes_the_run(method):
    """precision='float32' runs the update's networks in float32: two iterations land within
    1e-4 (relative to the largest parameter) of the float64 run, but not on it; the
    parameters the run returns are float64."""
    env = Spread(n_agents=3, max_cycles=3)
    a = _params(neural.train(env, method, tiny(n_envs=8, hidden=16)))
    res = neural.train(env, method, tiny(n_envs=8, hidden=16, precision="float32"))
    b = _params(res)
    assert b.dtype == np.float64 and all(p.dtype == np.float64 for p in res.policy.params)
    assert not np.array_equal(a, b)
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
    c = _params(neural.train(env, method, tiny(n_envs=8, hidden=16, precision="float32")))
    assert np.array_equal(b, c)                                         # same seed, same run


@pytest.mark.parametrize("bad", ["float16", "f32", 32, None])
def test_precision_refuses_anything_but_the_two_names(bad):
    with pytest.raises(ValueError, match="NetConfig.precision"):
        tiny(precision=bad)


def test_mlp_float32_gradient_matches_float64():
    """The same network and rows in float32 and float64: outputs and gradients agree to
    float32's precision (rtol 1e-4)."""
    rng = np.random.default_rng(0)
    net = neural.MLP(7, 16, 2, 5, True)
    theta = net.init(rng, 1.0)
    x, dy = rng.standard_normal((37, 7)), rng.standard_normal((37, 5))
    out = {}
    for dt in (np.float64, np.float32):
        cache, grad = [], np.zeros(net.size, dt)
        y = net.forward(theta.astype(dt), x, cache)
        net.backward(theta.astype(dt), cache, dy.astype(dt), grad)
        assert y.dtype == dt and grad.dtype == dt
        out[dt] = (y, grad)
    np.testing.assert_allclose(out[np.float32][0], out[np.float64][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[np.float32][1], out[np.float64][1], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_update_networks_compute_in_the_chosen_precision(monkeypatch, precision):
    """Every forward and backward of the update (actors and critic: old log-probabilities,
    V(s), the minibatch passes) runs with parameters of the chosen dtype; the rollouts and the
    evaluation (the policy's own float64 parameters) stay float64."""
    seen = {"forward": [], "backward": []}
    forward, backward = neural.MLP.forward, neural.MLP.backward

    def spy_forward(self, flat, x, cache=None):
        seen["forward"].append((flat.dtype, x.shape[0], cache is not None))
        return forward(self, flat, x, cache)

    def spy_backward(self, flat, cache, dy, grad):
        seen["backward"].append((flat.dtype, dy.dtype, grad.dtype))
        return backward(self, flat, cache, dy, grad)
    monkeypatch.setattr(neural.MLP, "forward", spy_forward)
    monkeypatch.setattr(neural.MLP, "backward", spy_backward)
    cfg = tiny(precision=precision, n_envs=5, eval_episodes=7)
    neural.train(Spread(n_agents=2, max_cycles=3), "asae", cfg)
    want = np.dtype(precision)
    rollout = {cfg.n_envs, cfg.eval_episodes}         # rows of a rollout or evaluation step
    update = [dt for dt, rows, _ in seen["forward"] if rows not in rollout]
    assert update and all(dt == want for dt in update)
    assert all(dt == np.float64 for dt, rows, _ in seen["forward"] if rows in rollout)
    assert seen["backward"] and all(set(b) == {want} for b in seen["backward"])
