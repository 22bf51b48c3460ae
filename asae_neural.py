"""asae_neural — MLP actors and a centralised MLP critic for feature envs (``env.obs_dim``).

``train(env, method, NetConfig(...))`` runs a row of ``asae.METHOD_TABLE`` whose base needs no
table over joint actions (async, asae, happo, coppo, a2po) with MAPPO's settings and returns
an ``asae_learner.TrainResult`` whose ``policy`` is an :class:`MLPPolicy`; :func:`evaluate`
scores one. The networks (:class:`MLP`, LayerNorm, Adam, MAPPO's ValueNorm) are small and
written here, in float64 through NumPy's BLAS.

A method and a policy class meet at the logits. For every minibatch row the method gives
g_r = ∂/∂z [L^i_r + c H(π^i(·|o_r))] (:func:`_logit_grads`: the same `_row_slope` and
`_policy_grad_row` the tabular step applies row by row); the policy class turns the rows'
gradients into a parameter step — the table adds each to its row (`_actor_step`), the
network backpropagates them (:meth:`MLP.backward`) and takes an Adam step. The critic
likewise: ∂ℓ/∂V back through the table or the network. Every row of METHOD_TABLE whose
base needs no table over joint actions (SHARED, TRACED) runs with either class.

The update reads as the tabular one, with MAPPO's choices (Yu et al. 2022, "The Surprising
Effectiveness of PPO in Cooperative Multi-Agent Games"; marlbenchmark/on-policy: config.py,
r_mappo.py, valuenorm.py, train_mpe_spread.sh — read to check the settings, not copied):
  E10     Â_t, R_t = GAE(r · reward_scale, V(s), V(s')), V the critic's denormalised output
  norm    Â ← (Â − mean Â) / (std Â + 1e-5) over the rollout        (NetConfig.adv_norm)
  actors  K epochs × minibatches; each moving agent: z = f_θi(o), log ρ, Â^i = weight ×
          base, g_r, backprop of −mean_r g_r, global-norm clip, Adam
  critic  K epochs × minibatches; ValueNorm update, (clipped) Huber loss, backprop, clip, Adam
Networks run in float64 through NumPy's BLAS (matmul); the per-row method code is jitted.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from asae import (MAX_LOG_RATIO, SEQUENTIAL, SHARED, TRACED, _array, _clip_bounds, _describe,
                  _finite, _gae_kernel, _integer, _log_softmax_row, _logit_grads, _scalar,
                  _trace_base, _weighted_advantages)
from asae_learner import (_agent_order, _check_batch_limit, _check_flag, _check_memory, _doc,
                          _document_fields,
                          _greedy_optimal, _hyper, LearnerConfig, _Log, _minibatches, _new_cdf,
                          RATIO_SLOTS, _ratio_summary, _record_ratios, _rng, _rng_next,
                          _sample_actions, TrainResult)
from asae_learner import _check_callback, Progress, _read_only, _stops   # train's callback
from asae_learner import (_env_state, _restore_state, _set_env_state, Snapshot,
                          _state_arrays)                                  # checkpoints

LN_EPS = 1e-5         #: LayerNorm's ε (torch's default)
ADAM_BETAS = (0.9, 0.999)
VALUE_NORM_BETA = 0.99999   #: ValueNorm's running-average weight (MAPPO)


@dataclass(frozen=True)
class NetConfig(LearnerConfig):
    """Hyperparameters of :func:`train`: the fields of every learner
    (``asae_learner.LearnerConfig``) and the networks' own — MLP actors, a centralised MLP
    critic on the env's global state, Adam. Defaults are MAPPO's for MPE (Yu et al. 2022;
    marlbenchmark/on-policy ``config.py`` and ``train_mpe_spread.sh``) except ``iterations``
    and where a field says so; MAPPO's recurrent (GRU) policy is not implemented — these
    are feed-forward networks."""

    epochs: int = _doc(10, "PPO epochs K over each rollout, ≥ 1. 10: --ppo_epoch 10.")
    minibatches: int = _doc(1, "Minibatches per epoch (one Adam step each), ≥ 1. 1: "
                            "--num_mini_batch 1.")
    lr_actor: float = _doc(7e-4, "Adam step size of the actors, > 0. 7e-4: --lr 7e-4.")
    lr_critic: float = _doc(7e-4, "Adam step size of the critic, in (0, 1]. 7e-4: --critic_lr.")
    n_envs: int = _doc(128, "Parallel environments B, ≥ 1. 128: --n_rollout_threads 128.")
    rollout_len: int = _doc(25, "Steps T per env per rollout, ≥ 1. 25: --episode_length 25, "
                            "one Spread episode.")
    iterations: int = _doc(200, "Rollout + update iterations, ≥ 1. 200 (640,000 env steps): "
                           "this machine's budget; MAPPO runs 2e7 env steps (6,250).")
    eval_episodes: int = _doc(128, "Episodes of the final greedy and stochastic evaluation.")
    hidden: int = _doc(64, "Width of every hidden layer, ≥ 1. 64: --hidden_size 64.")
    layers: int = _doc(2, "Hidden layers, ≥ 1, each Linear → tanh (→ LayerNorm). 2: MAPPO's "
                       "fc1 plus --layer_N 1; tanh: its MPE script passes --use_ReLU (off).")
    layer_norm: bool = _doc(True, "LayerNorm (ε = 1e-5, learned gain and bias) on the input "
                            "and after every hidden tanh, as MAPPO's MLPBase "
                            "(use_feature_normalization) and MLPLayer.")
    output_gain: float = _doc(0.01, "Orthogonal-init gain of the actors' output layer, ≥ 0 "
                              "(--gain 0.01: near-uniform initial policies). Hidden layers "
                              "use 5/3 (tanh), the critic's output 1; biases start at 0.")
    adam_eps: float = _doc(1e-5, "Adam's ε, > 0 (--opti_eps 1e-5); β = (0.9, 0.999).")
    max_grad_norm: float | None = _doc(10.0, "Clip each network's gradient to this global "
                                       "L2 norm per step, > 0 (--max_grad_norm 10); None: off.")
    adv_norm: bool = _doc(True, "Normalise the base advantage over the rollout, (Â − mean) / "
                          "(std + 1e-5), as MAPPO's trainer (A2PO's traced base: each turn).")
    value_norm: bool = _doc(True, "The critic learns normalised returns with MAPPO's ValueNorm "
                            "(running mean and mean square, β = 0.99999, debiased, variance ≥ "
                            "1e-2), updated on every critic minibatch (--use_valuenorm).")
    huber_delta: float | None = _doc(10.0, "Huber loss of the critic's error with this δ > 0 "
                                     "(--huber_delta 10; the standard Huber on both sides); "
                                     "None: ½ e².")
    value_clip: float | None = _doc(0.2, "Clipped value loss (use_clipped_value_loss): the "
                                    "max of the losses at V and at V_old + clip(V − V_old, ±c), "
                                    "c ≥ 0 (MAPPO: its clip_param, 0.2); None: off.")
    share_actor: bool = _doc(False, "One actor network for every agent, its input the "
                             "observation and a one-hot agent id (MAPPO shares; it omits the "
                             "id); simultaneous methods only. False: one network per agent, "
                             "as the sequential methods (happo, a2po) require.")
    precision: str = _doc("float64", "What the update's networks compute in: 'float64' (the "
                          "reference; every twin and pin) or 'float32' (matmuls, tanh and "
                          "LayerNorm in float32 — faster; parameters, Adam, the method's "
                          "per-row kernels, rollouts and evaluation stay float64; "
                          "docs/learners.md states its tolerance).")
    a2po_pooled_norm: bool = _doc(False, "A2PO with adv_norm: normalise each turn's traced "
                                  "base over every agent's column (the others at their latest "
                                  "traced or initial values), as the authors' code (r_mappo.py "
                                  "_get_advantages); False: over the moving agent's column.")

    def __post_init__(self):
        super().__post_init__()
        for name, lo, hi in (("hidden", 1, 2 ** 20), ("layers", 1, 64)):
            _integer(f"NetConfig.{name}", getattr(self, name), lo, hi)
        for name in ("layer_norm", "adv_norm", "value_norm", "share_actor", "a2po_pooled_norm"):
            _check_flag(f"NetConfig.{name}", getattr(self, name))
        if not isinstance(self.precision, str) or self.precision not in ("float64", "float32"):
            raise ValueError("NetConfig.precision must be 'float64' or 'float32'; "
                             f"got {self.precision!r}")
        big = np.finfo(float).max
        _scalar("NetConfig.output_gain", self.output_gain, 0.0, 1e6)
        _scalar("NetConfig.adam_eps", self.adam_eps, 0.0, 1.0, lo_open=True)
        _scalar("NetConfig.lr_actor", self.lr_actor, 0.0, 1.0, lo_open=True)
        for name, lo_open in (("max_grad_norm", True), ("huber_delta", True),
                              ("value_clip", False)):
            if getattr(self, name) is not None:
                _scalar(f"NetConfig.{name}", getattr(self, name), 0.0, big, lo_open=lo_open)


_document_fields(NetConfig, "Parameters")


#: The kernels below divide only by row widths and √(σ² + ε) > 0; NumPy's error model (IEEE
#: results instead of a Python ZeroDivisionError check in every division) lets LLVM vectorise
#: their loops. It is not fastmath: every operation and its order are as written.
_KERNEL = dict(cache=True, error_model="numpy")


@njit(inline='always', **_KERNEL)
def _norm_row(x, r, mu, iv, g, b, y, xhat):
    """Row r of LayerNorm's output: x̂ = (x − μ)·iv, y = x̂ g + b."""
    for k in range(x.shape[1]):
        xhat[r, k] = (x[r, k] - mu) * iv
    for k in range(x.shape[1]):
        y[r, k] = xhat[r, k] * g[k] + b[k]


@njit(**_KERNEL)
def _layer_norm_kernel(x, g, b, y, xhat, inv):
    """y = x̂ g + b row by row, x̂ = (x − μ)/√(σ² + ε), μ and σ² the row's mean and
    (population) variance; x̂ and iv = 1/√(σ² + ε) kept for the backward pass. Four rows at a
    time, so that their sums (each in k order) overlap; the rest one by one."""
    N, d = x.shape
    N4 = N - N % 4
    for r in range(0, N4, 4):
        s0 = s1 = s2 = s3 = 0.0
        for k in range(d):
            s0 += x[r, k]
            s1 += x[r + 1, k]
            s2 += x[r + 2, k]
            s3 += x[r + 3, k]
        m0, m1, m2, m3 = s0 / d, s1 / d, s2 / d, s3 / d
        s0 = s1 = s2 = s3 = 0.0
        for k in range(d):
            c0, c1, c2, c3 = x[r, k] - m0, x[r + 1, k] - m1, x[r + 2, k] - m2, x[r + 3, k] - m3
            s0 += c0 * c0
            s1 += c1 * c1
            s2 += c2 * c2
            s3 += c3 * c3
        for j, (mu, var) in enumerate(((m0, s0), (m1, s1), (m2, s2), (m3, s3))):
            inv[r + j] = 1.0 / np.sqrt(var / d + LN_EPS)
            _norm_row(x, r + j, mu, inv[r + j], g, b, y, xhat)
    for r in range(N4, N):
        mu = 0.0
        for k in range(d):
            mu += x[r, k]
        mu /= d
        var = 0.0
        for k in range(d):
            c = x[r, k] - mu
            var += c * c
        inv[r] = 1.0 / np.sqrt(var / d + LN_EPS)
        _norm_row(x, r, mu, inv[r], g, b, y, xhat)


@njit(inline='always', **_KERNEL)
def _back_row(dy, xhat, iv, g, t, dx, r, m):
    """Row r of LayerNorm's ∂x: iv (dy g − m₁ − x̂ m₂), m = (m₁, m₂), then × (1 − t²)."""
    for k in range(dy.shape[1]):
        dx[r, k] = iv * (dy[r, k] * g[k] - m[0] - xhat[r, k] * m[1])
    if t.shape[0] > 0:
        for k in range(dy.shape[1]):
            dx[r, k] *= 1.0 - t[r, k] * t[r, k]


@njit(**_KERNEL)
def _layer_norm_back_kernel(dy, xhat, inv, g, grads, t, dx):
    """dx = ∂/∂x of LayerNorm, (1/√(σ²+ε)) (d − mean d − x̂ mean(d x̂)), d = dy g (means over
    the row; four rows at a time, as the forward), times 1 − t² when ``t`` (the tanh before
    it) has rows; ``grads`` = (dg, db, dc) accumulate Σ_r dy x̂, Σ_r dy and (when dc has
    entries) Σ_r dx, the gradient of the bias before the tanh. No dx when it has no rows
    (the input's LayerNorm)."""
    dg, db, dc = grads
    N, d = dy.shape
    for r in range(N):
        for k in range(d):
            dg[k] += dy[r, k] * xhat[r, k]
        for k in range(d):
            db[k] += dy[r, k]
    if dx.shape[0] == 0:
        return
    N4 = N - N % 4
    for r in range(0, N4, 4):
        a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = 0.0
        for k in range(d):
            w0, w1 = dy[r, k] * g[k], dy[r + 1, k] * g[k]
            w2, w3 = dy[r + 2, k] * g[k], dy[r + 3, k] * g[k]
            a0 += w0
            a1 += w1
            a2 += w2
            a3 += w3
            b0 += w0 * xhat[r, k]
            b1 += w1 * xhat[r + 1, k]
            b2 += w2 * xhat[r + 2, k]
            b3 += w3 * xhat[r + 3, k]
        for j, m in enumerate(((a0 / d, b0 / d), (a1 / d, b1 / d), (a2 / d, b2 / d),
                               (a3 / d, b3 / d))):
            _back_row(dy, xhat, inv[r + j], g, t, dx, r + j, m)
    for r in range(N4, N):
        a = b_ = 0.0
        for k in range(d):
            w = dy[r, k] * g[k]
            a += w
            b_ += w * xhat[r, k]
        _back_row(dy, xhat, inv[r], g, t, dx, r, (a / d, b_ / d))
    if dc.shape[0] > 0:
        for r in range(N):
            for k in range(d):
                dc[k] += dx[r, k]


def _layer_norm(x, g, b):
    """LayerNorm of every row (:func:`_layer_norm_kernel`) → (y, cache for the backward)."""
    x = np.ascontiguousarray(x)
    y, xhat, inv = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype), np.empty(x.shape[0])
    _layer_norm_kernel(x, g, b, y, xhat, inv)
    return y, (xhat, inv)




def _layer_norm_back(dy, cache, g, grads, t=None, dx=True):
    """∂/∂x of LayerNorm (then through tanh if ``t``); ``grads`` = (dg, db, dc) accumulate
    (:func:`_layer_norm_back_kernel`; dc may be empty); None if not ``dx``."""
    xhat, inv = cache
    none = np.zeros((0, 0), dy.dtype)
    out = np.empty(dy.shape, dy.dtype) if dx else none
    _layer_norm_back_kernel(np.ascontiguousarray(dy), xhat, inv, g, grads,
                            none if t is None else t, out)
    return out if dx else None


class MLP:
    """A tanh multilayer perceptron over rows x (N, d_in):
    h_0 = LN(x), h_l = LN(tanh(h_{l−1} W_l + b_l)) for l = 1..L, y = h_L W_o + b_o
    (LN only with ``layer_norm``; else the identity). Its parameters live in one flat vector
    (Adam, the gradient clip and the finiteness check act on it); :meth:`views` gives the
    pieces in the order [LN_0 g, b], then per layer [W, b, LN g, b], then [W_o, b_o]."""

    def __init__(self, d_in: int, hidden: int, layers: int, d_out: int, layer_norm: bool):
        self.d_in, self.d_out, self.layers, self.layer_norm = d_in, d_out, layers, layer_norm
        ln = [(d_in,), (d_in,)] if layer_norm else []
        shapes, d = list(ln), d_in
        for _ in range(layers):
            shapes += [(d, hidden), (hidden,)] + ([(hidden,), (hidden,)] if layer_norm else [])
            d = hidden
        self.shapes = shapes + [(d, d_out), (d_out,)]
        self.size = sum(math.prod(s) for s in self.shapes)

    def views(self, flat: np.ndarray) -> list:
        out, k = [], 0
        for s in self.shapes:
            m = math.prod(s)
            out.append(flat[k:k + m].reshape(s))
            k += m
        return out

    def init(self, rng: np.random.Generator, gain_out: float) -> np.ndarray:
        """Orthogonal weights (Saxe et al. 2014: W = gain · Q, Q from the QR decomposition of
        a standard normal matrix, columns' signs fixed by diag R), gain 5/3 for the tanh
        layers, ``gain_out`` for the output; biases 0; LayerNorm gains 1, biases 0."""
        flat = np.zeros(self.size)
        p = self.views(flat)
        k = 0
        if self.layer_norm:
            p[0][:] = 1.0
            k = 2
        for layer in range(self.layers + 1):
            W = p[k]
            gain = 5.0 / 3.0 if layer < self.layers else gain_out
            a = rng.standard_normal(W.shape if W.shape[0] >= W.shape[1] else W.shape[::-1])
            q, r = np.linalg.qr(a)
            q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
            W[:] = gain * (q if W.shape[0] >= W.shape[1] else q.T)
            k += 2
            if self.layer_norm and layer < self.layers:
                p[k][:] = 1.0
                k += 2
        return flat

    def forward(self, flat: np.ndarray, x: np.ndarray, cache: list | None = None):
        """y (N, d_out); with ``cache`` (a list) what :meth:`backward` needs is appended."""
        p = self.views(flat)
        k, h = 0, x if x.dtype == flat.dtype else x.astype(flat.dtype)
        if self.layer_norm:
            h, c = _layer_norm(h, p[0], p[1])
            k = 2
            if cache is not None:
                cache.append(c)
        for _ in range(self.layers):
            t = h @ p[k]
            t += p[k + 1]                   # in place, as tanh below: no temporaries
            np.tanh(t, out=t)
            if cache is not None:
                cache.append((h, t))
            k += 2
            h = t
            if self.layer_norm:
                h, c = _layer_norm(t, p[k], p[k + 1])
                k += 2
                if cache is not None:
                    cache.append(c)
        if cache is not None:
            cache.append(h)
        return h @ p[k] + p[k + 1]

    def backward(self, flat: np.ndarray, cache: list, dy: np.ndarray, grad: np.ndarray):
        """grad += ∂/∂θ Σ_r dy_r · y_r (chain rule, back through :meth:`forward`); with
        LayerNorm one kernel per layer goes back through LN and tanh and sums the bias's
        gradient (:func:`_layer_norm_back_kernel`)."""
        p, g = self.views(flat), self.views(grad)
        k = len(p) - 2
        h = cache.pop()
        g[k] += h.T @ dy
        g[k + 1] += dy.sum(axis=0)
        dh = dy @ p[k].T
        for layer in range(self.layers):
            if self.layer_norm:
                k -= 2
                ln = cache.pop()
                h_in, t = cache.pop()
                da = _layer_norm_back(dh, ln, p[k], (g[k], g[k + 1], g[k - 1]), t)
            else:
                h_in, t = cache.pop()
                da = dh * (1.0 - t * t)
                g[k - 1] += da.sum(axis=0)
            k -= 2
            g[k] += h_in.T @ da
            if self.layer_norm or layer < self.layers - 1:    # the input needs no gradient
                dh = da @ p[k].T
        if self.layer_norm:
            _layer_norm_back(dh, cache.pop(), p[0], (g[0], g[1], g[0][:0]), dx=False)


class _Adam(NamedTuple):
    """Adam (Kingma & Ba 2015) in torch's form on one flat parameter vector:
    m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − (lr/(1−β₁ᵗ)) m / (√v/√(1−β₂ᵗ) + ε)."""
    m: np.ndarray
    v: np.ndarray
    t: np.ndarray            # (1,) steps taken


def _adam_step(theta, grad, opt: _Adam, lr: float, eps: float, max_norm, what: str):
    """One descent step on ``grad`` (∂loss/∂θ), first scaled by min(1, max_norm/(‖g‖₂ +
    1e-6)) when ``max_norm`` is set (torch's clip_grad_norm_). A gradient that is not
    finite, or whose norm overflows, raises FloatingPointError naming ``what``."""
    big = np.abs(grad).max()
    with np.errstate(over="ignore", invalid="ignore"):
        norm = big * math.sqrt(np.dot(grad / big, grad / big)) if big > 0 else big
    if not math.isfinite(norm):                            # NaN entries give a NaN big
        raise FloatingPointError(f"{what}'s gradient is not finite")
    if max_norm is not None:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            grad *= coef
    b1, b2 = ADAM_BETAS
    opt.t[0] += 1
    opt.m[:] = b1 * opt.m + (1.0 - b1) * grad
    opt.v[:] = b2 * opt.v + (1.0 - b2) * grad * grad
    denom = np.sqrt(opt.v) / math.sqrt(1.0 - b2 ** opt.t[0]) + eps
    theta -= (lr / (1.0 - b1 ** opt.t[0])) * (opt.m / denom)


class _ValueNorm(NamedTuple):
    """MAPPO's ValueNorm: running mean μ and mean square ν of the returns and a debiasing
    weight d, each x ← βx + (1−β)·(batch value); normalise (R − μ/d)/σ with
    σ² = max(ν/d − (μ/d)², 1e-2), d clamped at ≥ 1e-5."""
    stats: np.ndarray        # (3,) μ, ν, d

    def update(self, ret):
        b = VALUE_NORM_BETA
        self.stats[:] = b * self.stats + (1.0 - b) * np.array([ret.mean(), (ret * ret).mean(),
                                                               1.0])

    def mean_std(self):
        d = max(self.stats[2], 1e-5)
        mu = self.stats[0] / d
        return mu, math.sqrt(max(self.stats[1] / d - mu * mu, 1e-2))


def _critic_grad(e, e_clip, inside, delta):
    """∂ℓ/∂V per row of ℓ = max(H(e), H(e_c)) (or H(e) alone when ``e_clip`` is None), e =
    target − V, e_c = target − V_c, V_c = V_old + clip(V − V_old, ±c) (``inside``: the clip
    is not binding, so ∂V_c/∂V = 1); H(e) = ½e² for |e| ≤ δ, δ(|e| − ½δ) beyond (δ = None:
    ½e²), H'(e) = clip(e, −δ, δ). Ties take H(e)."""
    def huber(x):
        if delta is None:
            return 0.5 * x * x, x
        a = np.abs(x)
        return np.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta)), np.clip(x, -delta,
                                                                                   delta)
    h, dh = huber(e)
    if e_clip is None:
        return -dh
    hc, dhc = huber(e_clip)
    return np.where(h >= hc, -dh, -dhc * inside)


@njit(cache=True)
def _log_softmax_rows(z, lp, pi):
    """lp, pi = log softmax, softmax of every row of z (:func:`_log_softmax_row`)."""
    for r in range(z.shape[0]):
        _log_softmax_row(z[r], lp[r], pi[r])


class MLPPolicy(NamedTuple):
    """Decentralised MLP actors: agent i's logits z^i = f(θ_i; o^i) (with ``shared``, one θ
    and the input [o^i, onehot(i)]). :func:`train` returns one; :func:`evaluate` runs it."""
    net: MLP
    params: list             # one flat parameter vector per network (1 if shared, else n)
    n_actions: tuple
    shared: bool

    def inputs(self, i: int, obs: np.ndarray) -> np.ndarray:
        """The network's input rows for agent i's observations ``obs`` (N, obs_dim)."""
        x = np.asarray(obs, np.float64)
        if not self.shared:
            return x
        x = np.concatenate([x, np.zeros((x.shape[0], len(self.n_actions)))], axis=1)
        x[:, x.shape[1] - len(self.n_actions) + i] = 1.0
        return x

    def logits(self, i: int, obs: np.ndarray, cache: list | None = None,
               flat: np.ndarray | None = None) -> np.ndarray:
        """z^i (N, A_i) for agent i's observations (N, obs_dim); ``flat``: the parameters to
        use in place of agent i's (the update's float32 copy)."""
        if flat is None:
            flat = self.params[0 if self.shared else i]
        z = self.net.forward(flat, self.inputs(i, obs), cache)
        return z[:, :self.n_actions[i]]


class _NetRun(NamedTuple):
    """A neural run's state: actors, critic, their optimisers, the value normaliser."""
    policy: MLPPolicy
    critic: MLP
    theta_v: np.ndarray      # the critic's flat parameters
    opt_pi: list             # _Adam per actor network
    opt_v: _Adam
    vnorm: _ValueNorm
    dtype: type              # what the update's networks compute in (NetConfig.precision)


def _work(run: _NetRun, flat: np.ndarray) -> np.ndarray:
    """The parameters the update's networks compute with: ``flat`` itself in float64, else
    its float32 copy (the float64 parameters and Adam's state stay the reference)."""
    return flat if run.dtype is np.float64 else flat.astype(run.dtype)


class _NetBatch(NamedTuple):
    """One rollout, time-major, as the update reads it."""
    obs: np.ndarray          # (T, B, n, obs_dim)
    act: np.ndarray          # (T, B, n) int64
    rew: np.ndarray          # (T, B)
    term: np.ndarray         # (T, B) bool
    trunc: np.ndarray        # (T, B) bool
    states: np.ndarray       # (T, B, state_dim) s_t
    next_states: np.ndarray  # (T, B, state_dim) s'_t, the true successor (E10)


def _critic_out(run: _NetRun, states: np.ndarray) -> np.ndarray:
    """The critic's raw output at every row of ``states`` (forward only, chunk by chunk)."""
    theta = _work(run, run.theta_v)
    return np.concatenate([run.critic.forward(theta, states[c])[:, 0]
                           for c in _chunks(len(states))]).astype(np.float64, copy=False)


def _values(run: _NetRun, cfg: NetConfig, states: np.ndarray):
    """V(s) in return units: the critic's output, denormalised under ``value_norm``."""
    v = _critic_out(run, states)
    if cfg.value_norm:
        mu, sd = run.vnorm.mean_std()
        v = v * sd + mu
    return v


def _normalise(x: np.ndarray) -> np.ndarray:
    """(x − mean)/(std + 1e-5), MAPPO's advantage normalisation (population std)."""
    return (x - x.mean()) / (x.std() + 1e-5)


#: Rows per pass through a network: the update's forwards and backwards run over chunks of
#: this many rows, so that a chunk's activations stay in the cache (3,200 rows at once stream
#: 1.6 MB arrays from memory: 2–3× slower here); gradients are summed chunk by chunk.
ROW_CHUNK = 512


def _chunks(size: int) -> list:
    """Consecutive slices of at most ROW_CHUNK rows covering range(size)."""
    return [slice(c, min(c + ROW_CHUNK, size)) for c in range(0, size, ROW_CHUNK)]


def _actor_logp(run: _NetRun, i: int, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Agent i's log π(a) at every row (forward only, chunk by chunk)."""
    flat = _work(run, run.policy.params[0 if run.policy.shared else i])
    return np.concatenate([_actor_rows(run, i, obs[c], act[c], None, flat)[2]
                           for c in _chunks(len(act))])


def _actor_rows(run: _NetRun, i: int, obs: np.ndarray, act: np.ndarray, cache=None, flat=None):
    """Agent i's log π, π (N, A_i) (float64) and log π(a) at ``obs`` rows, ``cache`` for
    backprop, ``flat`` the parameters to use (:func:`_work`; None: agent i's own)."""
    z = run.policy.logits(i, obs, cache, flat)
    lp, pi = np.empty(z.shape), np.empty(z.shape)
    _log_softmax_rows(np.ascontiguousarray(z, dtype=np.float64), lp, pi)
    return lp, pi, lp[np.arange(act.shape[0]), act]


def _net_actors(hp, cfg, run, data, rng, log):
    """The actor phase (as the tabular :func:`_actors`, one loop for both schedules):
    ``data`` = (obs (N, n, d), act (N, n), old_lp (N, n), base (N, n), delta, not_done, the
    raw GAE Â (N,): A2PO's pooled normalisation starts from it).
    A moving agent's minibatch step: forward, log ρ, Â^i = weight × base (simultaneous: from
    every agent's ratio now; sequential: fixed for the turn), the rows' logit gradients
    (:func:`_logit_grads`), backprop of the mean's negative, clip, Adam."""
    obs, act, old_lp, base, delta, not_done, adv_raw = data
    rule = hp.rule
    N, n = old_lp.shape
    pooled = cfg.adv_norm and cfg.a2po_pooled_norm and rule.base == TRACED
    raw = np.repeat(adv_raw[:, None], n, axis=1) if pooled else None   # traced, unnormalised
    sequential = hp.rule.schedule == SEQUENTIAL
    order = np.arange(n)
    if sequential:
        _agent_order(hp.rule, rng, order)
    log_rho_all, adv_all = np.zeros((N, n)), np.empty((N, n))
    bounds = _clip_bounds(hp.rule, n, n)
    nets = len(run.policy.params)
    for turn in range(n if sequential else 1):
        movers = order[turn:turn + 1] if sequential else order
        if sequential:
            if turn > 0:                 # the agent of the previous turn has moved
                j = order[turn - 1]
                log_rho_all[:, j] = _actor_logp(run, j, obs[:, j], act[:, j]) - old_lp[:, j]
                if hp.rule.base == TRACED:
                    _trace_base(hp.rule, delta, not_done, order[turn], log_rho_all, base)
                    if pooled:                   # the authors': over every agent's column
                        raw[:, order[turn]] = base[:, order[turn]]
                        base[:, order[turn]] = (raw[:, order[turn]] - raw.mean()) / (
                            raw.std() + 1e-5)
                    elif cfg.adv_norm:
                        base[:, order[turn]] = _normalise(base[:, order[turn]])
            _weighted_advantages(rule.weight, rule.w_lo, rule.w_hi, base, log_rho_all, order,
                                 adv_all)
            bounds = _clip_bounds(hp.rule, turn + 1, n)
        steps, b = _minibatches(rng, N, hp.epochs, hp.minibatches)
        for k in range(b.shape[0] - 1):
            rows = steps[b[k]:b[k + 1]]
            size = rows.shape[0]
            log_rho, base_mb = log_rho_all[rows], base[rows]
            adv = adv_all[rows] if sequential else np.empty((size, n))
            grads = [None] * nets
            scale = -1.0 / (size * (len(movers) if run.policy.shared else 1))   # −mean
            work = [_work(run, theta) for theta in run.policy.params]
            for c in _chunks(size):                      # a chunk of rows through every net
                rc, fwd = rows[c], {}
                for i in movers:
                    cache = []
                    lp, pi, lp_a = _actor_rows(run, i, obs[rc, i], act[rc, i], cache,
                                               work[0 if run.policy.shared else i])
                    log_rho[c, i] = lp_a - old_lp[rc, i]
                    fwd[i] = (cache, lp, pi)
                if not sequential:                       # from every agent's ratio now
                    _weighted_advantages(rule.weight, rule.w_lo, rule.w_hi, base_mb[c],
                                         log_rho[c], order, adv[c])
                for i in movers:
                    cache, lp, pi = fwd[i]
                    g = np.empty(lp.shape)
                    _logit_grads(rule, i, lp, pi, act[rc, i], (log_rho[c], adv[c], base_mb[c]),
                                 bounds, g)
                    dz = np.zeros((lp.shape[0], run.policy.net.d_out), run.dtype)
                    dz[:, :lp.shape[1]] = g * scale
                    s = 0 if run.policy.shared else i
                    if grads[s] is None:
                        grads[s] = np.zeros(run.policy.net.size, run.dtype)
                    run.policy.net.backward(work[s], cache, dz, grads[s])
            log.diag[0] = max(log.diag[0], log_rho[:, movers].max())
            if hp.track_ratios:
                _record_ratios(hp, (rows, log_rho, adv, base_mb), movers, order, bounds,
                               log.ratios)
            for s, g in enumerate(grads):
                if g is not None:
                    _adam_step(run.policy.params[s], g.astype(np.float64, copy=False),
                               run.opt_pi[s], hp.lr_actor,
                               cfg.adam_eps, cfg.max_grad_norm,
                               "the shared actor" if run.policy.shared else f"agent {s}'s actor")


def _net_critic(cfg, run, states, ret, rng):
    """K epochs × minibatches of Adam on the critic: per minibatch the ValueNorm update,
    then the mean over rows of the (clipped) Huber loss of the normalised returns
    (:func:`_critic_grad`), backprop, clip, Adam."""
    N = ret.shape[0]
    v_old = _critic_out(run, states)                           # predictions at update start
    steps, b = _minibatches(rng, N, cfg.epochs, cfg.minibatches)
    for k in range(b.shape[0] - 1):
        rows = steps[b[k]:b[k + 1]]
        target = ret[rows]
        if cfg.value_norm:
            run.vnorm.update(target)
            mu, sd = run.vnorm.mean_std()
            target = (target - mu) / sd
        grad, theta = np.zeros(run.critic.size, run.dtype), _work(run, run.theta_v)
        for c in _chunks(rows.shape[0]):
            rc, cache = rows[c], []
            v = run.critic.forward(theta, states[rc], cache)[:, 0].astype(np.float64, copy=False)
            e_clip = inside = None
            if cfg.value_clip is not None:
                dv = v - v_old[rc]
                e_clip = target[c] - (v_old[rc] + np.clip(dv, -cfg.value_clip, cfg.value_clip))
                inside = (np.abs(dv) <= cfg.value_clip).astype(np.float64)
            dl = _critic_grad(target[c] - v, e_clip, inside, cfg.huber_delta) / rows.shape[0]
            run.critic.backward(theta, cache, dl[:, None].astype(run.dtype, copy=False), grad)
        _adam_step(run.theta_v, grad.astype(np.float64, copy=False), run.opt_v, cfg.lr_critic,
                   cfg.adam_eps, cfg.max_grad_norm, "the critic")


def _net_update(hp, cfg, run, batch, rng, log):
    """One update on one rollout (the banner above)."""
    T, B, n, d = batch.obs.shape
    N = T * B
    S = batch.states.shape[2]
    v = _values(run, cfg, batch.states.reshape(N, S)).reshape(T, B)
    nv = _values(run, cfg, batch.next_states.reshape(N, S)).reshape(T, B)
    r = batch.rew * hp.reward_scale
    adv, ret = np.empty((T, B)), np.empty((T, B))
    _gae_kernel(r, v, nv, batch.term, batch.trunc, hp.rule.gamma, hp.rule.lam, adv, ret)   # E10
    if not (np.isfinite(adv).all() and np.isfinite(ret).all()):
        raise FloatingPointError("the advantages or returns (E10) are not finite")
    delta, not_done = np.zeros((0, 0)), np.zeros((0, 0))
    if hp.rule.base == TRACED:                                       # E10's δ_t and 1 − done_t
        done = batch.term | batch.trunc
        delta = r + hp.rule.gamma * np.where(batch.term, 0.0, nv) - v
        not_done = np.where(done, 0.0, 1.0)
    adv = adv.reshape(N)
    base = np.repeat((_normalise(adv) if cfg.adv_norm else adv)[:, None], n, axis=1)
    if not np.isfinite(base[:, 0]).all():               # the mean or std overflowed
        raise FloatingPointError("the advantage normalisation (NetConfig.adv_norm) overflows: "
                                 "the advantages' mean or spread exceeds float64")
    obs = batch.obs.reshape(N, n, d)
    act = batch.act.reshape(N, n)
    old_lp = np.empty((N, n))
    for i in range(n):
        old_lp[:, i] = _actor_logp(run, i, obs[:, i], act[:, i])
    _net_actors(hp, cfg, run, (obs, act, old_lp, base, delta, not_done, adv), rng, log)
    _net_critic(cfg, run, batch.states.reshape(N, S), ret.reshape(N), rng)
    for s, theta in enumerate(run.policy.params + [run.theta_v]):
        if not np.isfinite(theta).all():
            return s + 1
    return 0


def _check_feature_env(env):
    """A feature env's static interface → (n, n_actions, obs_dim, state_dim)."""
    if isinstance(env, type):
        raise TypeError(f"env must be an environment instance, not the class {env.__name__}")
    for attr in ("n_agents", "n_actions", "obs_dim", "state_dim", "episode_limit", "reset",
                 "step"):
        if not hasattr(env, attr):
            hint = ("; an env with integer observation ids trains with asae_tabular.train"
                    if attr in ("obs_dim", "state_dim") else "")
            raise TypeError(f"a feature env must provide {attr!r} (obs_dim, state_dim, "
                            f"n_agents, n_actions, episode_limit, reset, step){hint}")
    n = _integer("env.n_agents", env.n_agents, 1, 2 ** 16)
    n_actions = tuple(int(_integer(f"env.n_actions[{i}]", k, 1, 2 ** 16))
                      for i, k in enumerate(env.n_actions))
    if len(n_actions) != n:
        raise ValueError(f"env.n_actions must hold one action count per agent ({n}); "
                         f"got {env.n_actions!r}")
    _integer("env.episode_limit", env.episode_limit, 1, 2 ** 40)
    return (n, n_actions, _integer("env.obs_dim", env.obs_dim, 1, 2 ** 24),
            _integer("env.state_dim", env.state_dim, 1, 2 ** 24))


def _check_feature_step(out, B, n, d, S, what="env.step"):
    """Every output of a feature env's step (or reset, 2 outputs), checked and cast."""
    if not isinstance(out, tuple) or len(out) != (2 if what == "env.reset" else 6):
        raise TypeError(f"{what} must return a tuple of "
                        f"{2 if what == 'env.reset' else 6} arrays (asae_tabular.BatchedEnv)")
    obs = _array(f"{what}'s observations", out[0], shape=(B, n, d))
    state = _array(f"{what}'s states", out[1], shape=(B, S))
    if what == "env.reset":
        return obs, state
    r = _array(f"{what}'s rewards", out[2], shape=(B,))
    flags = []
    for name, x in (("terminated", out[3]), ("truncated", out[4])):
        x = np.asarray(x)
        if x.shape != (B,) or x.dtype != np.bool_:
            raise TypeError(f"{what}'s {name} must be a (B,) bool array; got {_describe(x)}")
        flags.append(x)
    final = _array(f"{what}'s final states", out[5], shape=(B, S))
    return obs, state, r, flags[0], flags[1], final


def _net_memory_plan(cfg: NetConfig, n, obs_dim, state_dim, inputs) -> dict:
    N, h = cfg.n_envs * cfg.rollout_len, cfg.hidden
    return {
        "NetConfig.n_envs × rollout_len × obs_dim × n_agents (rollout observations)":
            8 * N * n * obs_dim * 2,
        "NetConfig.n_envs × rollout_len × state_dim (rollout states, critic's input)":
            8 * N * state_dim * 3,
        "NetConfig.n_envs × rollout_len × hidden × layers × agents (activations)":
            8 * N * (h * cfg.layers * 4 + inputs + 16) * n,
        "NetConfig.hidden² × layers × agents (networks, Adam)":
            32 * (n + 1) * (h * h * cfg.layers + h * (inputs + state_dim + 16)),
        "NetConfig.epochs × n_envs × rollout_len (minibatch plan)": 8 * cfg.epochs * N,
        "NetConfig.eval_episodes (evaluation)": cfg.eval_episodes * 8 * n * (obs_dim + 16),
    }


def _net_setup(env, method, config):
    cfg = NetConfig() if config is None else config
    if not isinstance(cfg, NetConfig):
        raise TypeError(f"config must be an asae_neural.NetConfig (MLP actors and critic; "
                        f"asae_tabular.TabularConfig is for tables); got {type(cfg).__name__}")
    row = _hyper(cfg, method).rule
    if row.base not in (SHARED, TRACED):
        raise ValueError(f"method {method!r} needs a table over joint actions (COMA's "
                         "Q(s, a), or the exact tables of a matrix game); the neural learner "
                         "runs async, asae, happo, coppo, a2po")
    if cfg.share_actor and row.schedule == SEQUENTIAL:
        raise ValueError(f"method {method!r} updates the agents one after another, each its "
                         "own network; NetConfig.share_actor must be False")
    n, n_actions, obs_dim, state_dim = _check_feature_env(env)
    _check_batch_limit(env, cfg, "NetConfig")
    inputs = obs_dim + (n if cfg.share_actor else 0)
    _check_memory(_net_memory_plan(cfg, n, obs_dim, state_dim, inputs))
    init = np.random.default_rng([cfg.seed, 1])          # same networks for every method
    net = MLP(inputs, cfg.hidden, cfg.layers, max(n_actions), cfg.layer_norm)
    params = [net.init(init, cfg.output_gain) for _ in range(1 if cfg.share_actor else n)]
    critic = MLP(state_dim, cfg.hidden, cfg.layers, 1, cfg.layer_norm)
    theta_v = critic.init(init, 1.0)

    def adam(size):
        return _Adam(np.zeros(size), np.zeros(size), np.zeros(1, np.int64))
    run = _NetRun(MLPPolicy(net, params, n_actions, bool(cfg.share_actor)), critic, theta_v,
                  [adam(net.size) for _ in params], adam(critic.size),
                  _ValueNorm(np.zeros(3)), np.dtype(cfg.precision).type)
    return cfg, run, (n, n_actions, obs_dim, state_dim)


def _sample_policy(policy: MLPPolicy, obs, rng, greedy: bool = False) -> np.ndarray:
    """Every agent's action for the (B, n, obs_dim) observations: argmax, or by inverse CDF
    with :func:`_sample_actions` (env b as observation id b, agent-major draws)."""
    B, n = obs.shape[:2]
    A = max(policy.n_actions)
    z = np.zeros((n, B, A))
    for i in range(n):
        z[i, :, :policy.n_actions[i]] = policy.logits(i, obs[:, i])
    if greedy:
        return np.array([np.argmax(z[i, :, :policy.n_actions[i]], axis=1) for i in range(n)]).T
    act = np.empty((B, n), np.int64)
    ids = np.repeat(np.arange(B)[:, None], n, axis=1)
    _sample_actions(z, np.array(policy.n_actions, np.int64), ids, rng, act, *_new_cdf(z))
    return act


def _net_rollout(env, run, carry, rng, batch) -> float:
    """T steps of B envs through env.step; ``carry`` = [obs, state, returns so far]."""
    obs, state, ep_ret = carry
    T, B, n, d = batch.obs.shape
    S = batch.states.shape[2]
    ended = []
    for t in range(T):
        batch.obs[t], batch.states[t] = obs, state
        act = _sample_policy(run.policy, obs, rng)
        batch.act[t] = act
        obs, state, r, te, tr, final = _check_feature_step(env.step(act.copy()), B, n, d, S)
        done = te | tr
        batch.rew[t], batch.term[t], batch.trunc[t] = r, te, tr
        batch.next_states[t] = np.where(done[:, None], final, state)   # V(s'_t), E10
        with np.errstate(over="ignore"):            # an overflowing return is refused below
            ep_ret += r
        ended.extend(ep_ret[done].tolist())
        ep_ret[done] = 0.0
    carry[:2] = obs, state
    return sum(ended) / len(ended) if ended else np.nan


def _evaluate_policy(env, policy: MLPPolicy, episodes: int, greedy: bool, seed: int) -> float:
    n, n_actions, d, S = _check_feature_env(env)
    _check_memory({"episodes × (observations, states, logits)":
                   8 * episodes * (2 * n * d + 2 * S + 3 * n * max(n_actions) + 8)})
    if len(policy.n_actions) != n or tuple(policy.n_actions) != tuple(n_actions):
        raise ValueError(f"the policy is for {len(policy.n_actions)} agents with actions "
                         f"{policy.n_actions}; the env has {n} with {n_actions}")
    rng = _rng(int(seed))
    obs, _ = _check_feature_step(env.reset(episodes, seed=int(seed)), episodes, n, d, S,
                                 "env.reset")
    ret, active = np.zeros(episodes), np.ones(episodes, bool)
    for _ in range(int(env.episode_limit)):
        act = _sample_policy(policy, obs, rng, greedy)
        obs, _, r, te, tr, _ = _check_feature_step(env.step(act.copy()), episodes, n, d, S)
        ret += np.where(active, r, 0.0)
        active &= ~(te | tr)
        if not active.any():
            break
    return float(_finite("evaluate: the mean return", ret.mean()))


def evaluate(env, policy: MLPPolicy, episodes: int = 128, greedy: bool = True,
             seed: int = 0) -> float:
    """Mean team return of one episode in each of ``episodes`` copies of the feature env
    ``env`` under the MLP actors ``policy`` (``TrainResult.policy``): argmax actions if
    ``greedy``, else sampled with a stream seeded by ``seed``. Every env output is checked."""
    if not isinstance(policy, MLPPolicy):
        raise TypeError(f"policy must be an asae_neural.MLPPolicy (TrainResult.policy); got "
                        f"{type(policy).__name__} (tabular logits: asae_tabular.evaluate)")
    episodes = _integer("episodes", episodes, 1, 2 ** 24)
    _check_flag("greedy", greedy)
    return _evaluate_policy(env, policy, episodes, bool(greedy), _integer("seed", seed, 0))


def train(env, method: str, config: NetConfig | None = None, callback=None) -> TrainResult:
    """Train MLP actors and a centralised MLP critic on the feature env ``env`` with one of
    ``asae.METHODS`` whose base needs no joint-action table (async, asae, happo, coppo,
    a2po): the update in the module's docstring, MAPPO's settings (:class:`NetConfig`).
    ``env`` has ``obs_dim``, ``state_dim``, ``n_agents``, ``n_actions``, ``episode_limit``
    and the batched ``reset``/``step`` of ``asae_tabular.BatchedEnv`` with (B, n, obs_dim)
    observations and (B, state_dim) states. Same config and seed → the same run. Raises
    ``FloatingPointError``, naming the network, if training diverges.

    ``callback(iteration, record)``, if given, is called after each iteration with an
    ``asae_learner.Progress`` record (the curve so far; ``record.policy`` the actors as they
    stand: ``evaluate`` them on a *copy* of ``env``, e.g. ``copy.deepcopy(env)`` made before
    training — evaluating resets the env, and the training env's episodes would restart)
    and returns True to stop: the result then holds the iterations run (``stopped_at``) and
    the evaluation of the actors as they stand. The run is the same, bit for bit; an
    exception raised by the callback propagates. ``asae_learner.progress_printer()``
    prints progress; ``asae_io.checkpointer(path, every)`` writes checkpoints,
    ``asae_io.resume`` continues one."""
    return _net_run(env, method, config, callback)


def _net_run(env, method: str, config, callback=None,
             start: Snapshot | None = None) -> TrainResult:
    """:func:`train`; from ``start`` (a :class:`asae_learner.Snapshot` of this run, checked
    by asae_io.resume), the rest of the run."""
    t0 = time.perf_counter()
    _check_callback(callback)
    cfg, run, (n, n_actions, d, S) = _net_setup(env, method, config)
    hp = _hyper(cfg, method)
    B, T, I = cfg.n_envs, cfg.rollout_len, cfg.iterations
    rng = _rng(cfg.seed)
    log = _Log(np.zeros(1), (), np.zeros(RATIO_SLOTS if cfg.track_ratios else 1))
    batch = _NetBatch(np.zeros((T, B, n, d)), np.zeros((T, B, n), np.int64), np.zeros((T, B)),
                      np.zeros((T, B), np.bool_), np.zeros((T, B), np.bool_),
                      np.zeros((T, B, S)), np.zeros((T, B, S)))
    carry = [*_check_feature_step(env.reset(B, seed=cfg.seed), B, n, d, S, "env.reset"),
             np.zeros(B)]
    curve = np.full(I, np.nan)
    shown, done, k0 = _read_only(curve), I, 0            # what a callback reads of the curve

    def parts():                                         # what a checkpoint holds (but env.*)
        return {"run": run, "rng": rng, "log": log, "curve": curve,
                "carry": dict(zip(("obs", "state", "ep_ret"), carry))}
    if start is not None:                    # asae_io.resume: the state after k0 iterations
        carry = [np.array(x) for x in carry]
        _restore_state(parts(), {k: a for k, a in start.arrays.items()
                                 if not k.startswith("env.")})
        _set_env_state(env, {k: a for k, a in start.arrays.items() if k.startswith("env.")})
        k0 = start.iteration

    def snapshot(it):
        return Snapshot("neural", method, cfg, env, it, {**_state_arrays(parts()),
                                                         **_env_state(env)})
    for it in range(k0, I):
        curve[it] = _net_rollout(env, run, carry, rng, batch)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                code = _net_update(hp, cfg, run, batch, rng, log)
        except FloatingPointError as e:
            raise FloatingPointError(f"training diverged at iteration {it + 1}: {e}; lower "
                                     "NetConfig.lr_actor / lr_critic or reward_scale"
                                     ) from None
        if code:
            what = "the critic" if code == len(run.policy.params) + 1 else (
                "the shared actor" if run.policy.shared else f"agent {code - 1}'s actor")
            raise FloatingPointError(f"training diverged at iteration {it + 1}: {what}'s "
                                     "parameters are no longer finite; lower NetConfig.lr_actor "
                                     "/ lr_critic or reward_scale")
        if callback is not None and _stops(callback, Progress(
                it + 1, I, (it + 1) * B * T, float(curve[it]), time.perf_counter() - t0,
                shown[:it + 1], method, [], run.policy, lambda it=it: snapshot(it + 1))):
            done = it + 1
            break
    curve = curve[:done]
    if not np.isfinite(curve[~np.isnan(curve)]).all():
        raise FloatingPointError("train: a mean episode return overflows float64; rescale the "
                                 "env's rewards")
    seed_eval = int(_rng_next(rng) >> np.uint64(33))
    greedy = _evaluate_policy(env, run.policy, cfg.eval_episodes, True, seed_eval)
    stochastic = _evaluate_policy(env, run.policy, cfg.eval_episodes, False, seed_eval)
    return TrainResult(
        method=method, iterations=np.arange(1, done + 1),
        env_steps=np.arange(1, done + 1) * B * T,
        mean_return=curve, greedy_return=greedy, stochastic_return=stochastic,
        greedy_optimal=_greedy_optimal(env, greedy), wall_time=time.perf_counter() - t0,
        logits=[], values=np.zeros(0), policy=run.policy, critic=run.theta_v,
        stopped_at=done if done < I else None, critic_norm=run.vnorm.stats.copy(),
        ratios=_ratio_summary(log.ratios) if cfg.track_ratios else None,
        diagnostics=dict(max_abs_param=float(max(np.abs(p).max() for p in run.policy.params)),
                         max_ratio=float(np.exp(min(log.diag[0], MAX_LOG_RATIO)))))

