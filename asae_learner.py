"""asae_learner — what the tabular and the neural learners share, above ``asae`` (the method).

The learners (``asae_tabular``, ``asae_neural``) import this module and ``asae``, never each
other. Here: the configuration fields every learner has (:class:`LearnerConfig`, the
method's settings among them), the result (:class:`TrainResult`), the random stream
(SplitMix64) and the minibatch plan, action sampling, the method's settings as the jitted
update reads them (:class:`_Hyper`, wrapping :class:`asae.Rule`), the ratio statistics and
the memory guard.
"""
from __future__ import annotations

import math
import numbers
import sys
from dataclasses import MISSING, dataclass, field, fields
from typing import NamedTuple

import numpy as np
from numba import njit

import asae
from asae import (MAX_LOG_RATIO, RULE_SETTINGS, _gib, _integer, _row_max, _row_slope, _scalar,
                  _weighted_advantages)

#: ``train`` and ``evaluate`` refuse a run whose arrays (policies, critics, tables, rollouts,
#: recorded policies, minibatch plans, evaluation) would need more than this many bytes,
#: estimated before anything is allocated, rather than exhausting memory.
MAX_TABLE_BYTES = 2 ** 30


# =======================================================================================
# The random stream, the minibatch plan and action sampling (both learners, jitted)
# =======================================================================================


@njit(cache=True)
def _rng_next(state):
    """SplitMix64 (Steele, Lea & Flood 2014): the next 64-bit output of the stream ``state``."""
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _rng_uniform(state):
    """A uniform double in [0, 1) from the top 53 bits of the next output."""
    return np.float64(_rng_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _rng_permutation(state, out):
    """Fill ``out`` with a uniformly random permutation of 0..len−1 (Fisher–Yates)."""
    for k in range(out.shape[0]):
        out[k] = k
    for k in range(out.shape[0] - 1, 0, -1):
        j = int(_rng_uniform(state) * (k + 1))
        out[k], out[j] = out[j], out[k]


@njit(cache=True)
def _minibatches(rng, N, epochs, n_mb):
    """K epochs × n_mb minibatches: one fresh permutation of the N rows per epoch, each split
    as ``np.array_split`` does. Gradient step k uses rows ``order[bounds[k]:bounds[k + 1]]``."""
    order = np.empty(epochs * N, np.int64)
    bounds = np.zeros(epochs * n_mb + 1, np.int64)
    for e in range(epochs):
        _rng_permutation(rng, order[e * N:(e + 1) * N])
        for m in range(n_mb):
            k = e * n_mb + m
            bounds[k + 1] = bounds[k] + N // n_mb + (1 if m < N % n_mb else 0)
    return order, bounds


@njit(cache=True)
def _agent_order(rule, rng, order):
    """The agent order of a sequential update, into ``order``: a uniformly random permutation
    (HAPPO; A2PO with a2po_order='random'), or A2PO's semi-greedy order — the agents sorted by
    their score, ties in index order, then alternately the best remaining and a uniformly
    random one of the rest. The authors score agent i by mean |Â^i / V|; with the shared Â
    and critic V of these learners every score is the same (at V = 0 the same inf or NaN),
    so the order is [0, random, lowest remaining, random, …] and no score is computed."""
    if rule.order == asae.ORDER_RANDOM:
        _rng_permutation(rng, order)
        return
    n = order.shape[0]
    rest = np.arange(n)
    for m in range(n):
        k = 0 if m % 2 == 0 else int(_rng_uniform(rng) * (n - m))
        order[m] = rest[k]
        for q in range(k, n - m - 1):
            rest[q] = rest[q + 1]


def _rng(seed: int) -> np.ndarray:
    """A fresh random stream for ``seed`` (its state is one uint64, advanced in place)."""
    return np.array([(int(seed) * 0xD1B54A32D192ED03 + 1) % 2 ** 64], np.uint64)


@njit(cache=True)
def _sample_actions(logits, n_actions, obs, rng, out, cdf, ready):
    """a^i_b ~ softmax(logits[i, obs[b, i]]) by inverse CDF, agent-major uniform draws:
    a = min{k : u · Σ_j e^{z_j − m} < Σ_{j≤k} e^{z_j − m}}, m = max z.

    ``cdf[i, o]`` memoises the running sums of agent i's row o (``ready[i, o]``); the caller
    clears ``ready`` whenever the logits change (once per rollout).
    """
    B, n = obs.shape
    for i in range(n):
        A = n_actions[i]
        for b in range(B):
            o = obs[b, i]
            if not ready[i, o]:
                zmax = _row_max(logits[i, o, :A])
                c = 0.0
                for k in range(A):
                    c += np.exp(logits[i, o, k] - zmax)
                    cdf[i, o, k] = c
                ready[i, o] = True
            target = _rng_uniform(rng) * cdf[i, o, A - 1]
            a = A - 1
            for k in range(A):
                if target < cdf[i, o, k]:
                    a = k
                    break
            out[b, i] = a


def _new_cdf(logits):
    """Scratch for :func:`_sample_actions`: (cdf, ready) for one set of logits."""
    return np.empty(logits.shape), np.zeros(logits.shape[:2], np.bool_)


class _Hyper(NamedTuple):
    """What the jitted update reads of a config: the method's rule and the learner's scalars."""
    rule: asae.Rule          # the method row and its settings (asae.method_rule)
    epochs: int
    minibatches: int
    lr_actor: float
    lr_critic: float
    reward_scale: float
    track_ratios: bool
    record_steps: bool       # the tabular learner's per-step log (what asae_probe reads)


def _hyper(cfg, method: str, record_steps: bool = False) -> _Hyper:
    """A config (any :class:`LearnerConfig`) and a method → :class:`_Hyper`, by field name."""
    rule = asae.method_rule(method, f"{type(cfg).__name__}.",
                            **{name: getattr(cfg, name) for name in RULE_SETTINGS})
    return _Hyper(rule=rule, epochs=int(cfg.epochs), minibatches=int(cfg.minibatches),
                  lr_actor=float(cfg.lr_actor), lr_critic=float(cfg.lr_critic),
                  reward_scale=float(cfg.reward_scale), track_ratios=bool(cfg.track_ratios),
                  record_steps=bool(record_steps))


class _Log(NamedTuple):
    """Diagnostics a run fills as it goes."""
    diag: np.ndarray         # (1,) largest log ρ^i_t seen in the actor steps
    steps: tuple             # the tabular learner's per-step log (asae_tabular._StepLog)
    ratios: np.ndarray       # (RATIO_SLOTS,) if track_ratios, else (1,): see _record_ratios


# =======================================================================================
# Ratio statistics (LearnerConfig.track_ratios)
# =======================================================================================

#: A histogram of log W^i = Σ_{j≠i} log ρ^j over [−RATIO_RANGE, RATIO_RANGE] in RATIO_BINS
#: bins, then the named slots below.
RATIO_BINS, RATIO_RANGE = 600, 3.0
UNDERFLOW = RATIO_BINS           # log W^i below the range
OVERFLOW = RATIO_BINS + 1        # above it
SAMPLES = RATIO_BINS + 2         # (sample, moving agent) pairs recorded
PPO_BINDS = RATIO_BINS + 3       # ... where the PPO clip binds (slope 0 with Â^i ≠ 0)
WEIGHT_BINDS = RATIO_BINS + 4    # ... where the weight's clip acts
ESS_SUM = RATIO_BINS + 5         # Σ over (minibatch, agent) of the weights' ESS fraction
ESS_COUNT = RATIO_BINS + 6       # (minibatch, agent) pairs
RATIO_SLOTS = RATIO_BINS + 7


@njit(cache=True)
def _record_ratios(hp, mb, movers, order, bounds, stats):
    """Accumulate, for one minibatch step ``mb`` = (rows, log_rho, adv, base): for each moving
    agent i and row, log W^i = Σ_{j≠i} log ρ^j (the partners' product every method sees move),
    whether the PPO clip binds (the slope is 0 with Â^i ≠ 0), whether the weight's clip acts
    (the weight ≠ its unclipped value), and the effective-sample-size fraction of the row's
    weights m^i, (Σ_r m)² / (size · Σ_r m²)."""
    rows, log_rho, adv, base = mb
    rule = hp.rule
    size, n = rows.shape[0], log_rho.shape[1]
    m = np.empty((size, n))
    free = np.empty((size, n))
    _weighted_advantages(rule.weight, rule.w_lo, rule.w_hi, np.ones((size, 1)), log_rho[:size],
                         order, m)
    _weighted_advantages(rule.weight, -MAX_LOG_RATIO, MAX_LOG_RATIO, np.ones((size, 1)),
                         log_rho[:size], order, free)
    for i in movers:
        s1 = 0.0
        s2 = 0.0
        for r in range(size):
            log_w = 0.0
            for j in range(n):
                if j != i:
                    log_w += log_rho[r, j]
            k = int(np.floor((log_w + RATIO_RANGE) / (2 * RATIO_RANGE) * RATIO_BINS))
            stats[UNDERFLOW if k < 0 else OVERFLOW if k >= RATIO_BINS else k] += 1.0
            stats[SAMPLES] += 1.0
            slope = _row_slope(rule, log_rho[r], i, adv[r, i], base[r, i], bounds[0],
                               bounds[1])
            if slope == 0.0 and adv[r, i] != 0.0:
                stats[PPO_BINDS] += 1.0
            if m[r, i] != free[r, i]:
                stats[WEIGHT_BINDS] += 1.0
            s1 += m[r, i]
            s2 += m[r, i] * m[r, i]
        stats[ESS_SUM] += s1 * s1 / (size * s2) if s2 > 0.0 else 1.0
        stats[ESS_COUNT] += 1.0


def _ratio_summary(stats: np.ndarray) -> dict:
    """Quantiles of log W^i (from the histogram: bin centres; ±inf outside the range) and
    the fractions of :func:`_record_ratios`."""
    hist, total = stats[:RATIO_BINS + 2], stats[SAMPLES]
    cdf = np.cumsum(np.concatenate([[hist[UNDERFLOW]], hist[:RATIO_BINS]])) / max(total, 1.0)
    centres = -RATIO_RANGE + (np.arange(RATIO_BINS) + 0.5) * (2 * RATIO_RANGE / RATIO_BINS)
    values = np.concatenate([[-np.inf], centres])

    def q(p):
        k = int(np.searchsorted(cdf, p))
        return round(float(values[k]), 9) if k < values.size else np.inf
    return {"log_w_quantiles": {p: q(p) for p in (0.05, 0.25, 0.5, 0.75, 0.95)},
            "ppo_clip_binds": float(stats[PPO_BINDS] / max(total, 1.0)),
            "weight_clip_binds": float(stats[WEIGHT_BINDS] / max(total, 1.0)),
            "ess_fraction": float(stats[ESS_SUM] / max(stats[ESS_COUNT], 1.0)),
            "samples": int(total)}


# =======================================================================================
# Memory, the env's optimum
# =======================================================================================


def _check_memory(plan: dict, limit: int = MAX_TABLE_BYTES):
    """Refuse a plan above ``limit`` bytes, naming its largest part."""
    need = sum(plan.values())
    if need > limit:
        part = max(plan, key=plan.get)
        raise ValueError(f"this run needs ≈ {_gib(need)}, most of it for {part} "
                         f"(≈ {_gib(plan[part])}); asae refuses more than {_gib(limit)} "
                         "(MAX_TABLE_BYTES)")


def _check_optimum(env):
    """env.optimum, if any, is a finite real or None (no known optimum); read after the
    memory check (a grid's optimum is a search over its states)."""
    optimum = getattr(env, "optimum", None)
    if optimum is not None and (isinstance(optimum, (bool, np.bool_)) or
                                not isinstance(optimum, numbers.Real) or
                                not math.isfinite(optimum)):
        raise TypeError(f"env.optimum must be a finite real number (the best expected return), "
                        f"None or absent; got {type(optimum).__name__} {optimum!r}")


def _greedy_optimal(env, greedy: float) -> bool:
    """Whether ``greedy`` reaches env.optimum (within 1e-6); False without an optimum (an
    absent attribute or None)."""
    optimum = getattr(env, "optimum", None)
    return optimum is not None and bool(greedy >= optimum - 1e-6)


# =======================================================================================
# Configuration and result
# =======================================================================================


def _doc(default, doc: str, **kw):
    """A dataclass field carrying its one-line documentation (shown by ``help()``)."""
    return field(default=default, metadata={"doc": doc}, **kw)


def _document_fields(cls, heading: str):
    """Append a numpydoc section listing every field with its doc to ``cls.__doc__``."""
    lines = [cls.__doc__.rstrip(), "", heading, "-" * len(heading)]
    for f in fields(cls):
        default = "" if f.default is MISSING else f", default {f.default!r}"
        lines += [f"{f.name} : {f.type}{default}", f"    {f.metadata.get('doc', '')}"]
    cls.__doc__ = "\n".join(lines) + "\n"
    return cls


@dataclass(frozen=True)
class LearnerConfig:
    """The fields every learner has, one documented field each: the method's settings
    (:data:`asae.RULE_SETTINGS`), the update's schedule and step sizes, the run's size and
    seed. Each learner subclasses it (``asae_tabular.TabularConfig``,
    ``asae_neural.NetConfig``) with its own fields and defaults; the defaults here are the
    tabular learner's (one-step matrix games, payoffs scaled to ~[-1, 1])."""

    gamma: float = _doc(0.99, "Discount γ (E10) in [0, 1]. 0.99: standard; irrelevant in "
                        "one-step games.")
    lam: float = _doc(0.95, "GAE λ (E10) in [0, 1]. 0.95: the usual PPO/MAPPO value.")
    clip_eps: float | None = _doc(0.2, "PPO clip ε in [0, 1] of each agent's sub-problem (E8); "
                                  "None: no clip (plain importance-weighted surrogate). 0.2: the "
                                  "PPO/MAPPO default.")
    clip_ratio: str = _doc("own", "What the PPO clip acts on (E8): 'own' — agent i's ratio ρ^i "
                           "(PPO, MAPPO); 'joint' — the joint ratio ∏_j ρ^j, the partners' move "
                           "counted inside the trust region (CoPPO-style).")
    sync_clip: float | None = _doc(0.5, "**Our choice** (E8): asae weights w^i clipped to "
                                   "[1−c, 1+c], c ≥ 0; None = no clip. 0.5: with n = 2 and ε = 0.2 "
                                   "a partner inside its PPO range gives w ∈ [0.8, 1.2], where it "
                                   "never acts; it acts when partners' ratios leave that range, "
                                   "more often with n ≥ 3 (README, study a), bounding the "
                                   "variance.")
    clip_scale: str | None = _doc(None, "Shrink each agent's own-ratio clip with the number of "
                                  "agents n (motivated by Sun et al. 2023, who bound independent "
                                  "ratios by n; the formula is ours): 'inv_n' — 1 ± ε/n; 'root_n' "
                                  "— [(1−ε)^{1/n}, (1+ε)^{1/n}], so n ratios in range keep their "
                                  "product in [1−ε, 1+ε]; None — 1 ± ε. Not with clip_ratio="
                                  "'joint' or coppo, whose clips act on a joint ratio already.")
    coppo_inner_eps: float | None = _doc(0.1, "CoPPO's inner clip ε_in ∈ [0, 1] on the partners' "
                                         "product inside the clipped term (E11); None: no inner "
                                         "clip. 0.1: the authors' code default (Wu et al. 2021).")
    coppo_detach: bool = _doc(False, "CoPPO (E11): False — the gradient of the summed objective "
                              "Σ_i L^i through every agent's ratio, w^i included, as the "
                              "authors' code takes it (the tabular learner steps on its mean "
                              "over the n terms); True — w^i a constant (the 0.3 variant).")
    a2po_others_eps: float | None = _doc(0.1, "A2PO's clip ε_o ≥ 0 of the preceding agents' "
                                         "product g = clip(M, 1 ± ε_o) (E12); None: unclipped. "
                                         "0.1: the authors' code (= ε/2 at ε = 0.2).")
    a2po_order: str = _doc("semi_greedy", "A2PO's agent order (E12): 'semi_greedy' — the "
                           "authors' default (config.py: by score, alternately the best "
                           "remaining and a random one; with a shared Â and V: [0, random, "
                           "lowest remaining, …]); 'random' — a uniform permutation (0.3).")
    a2po_trace: str = _doc("ours", "A2PO's trace (E12): 'ours' — γλ min(c̄, M) per step, the "
                           "recursion of the paper's truncated importance weights; 'authors' — "
                           "γλ² min(c̄, M), as their code applies λ to rates that already hold "
                           "γλ.")
    a2po_clip_floor: float = _doc(0.5, "A2PO's c_ε ∈ [0, 1]: the agent in position m of n clips "
                                  "at ε_m = ε (c_ε + (1 − c_ε) m/n) (E12); 1: ε for every agent. "
                                  "0.5: the value reported for all tasks (Wang et al. 2023).")
    a2po_trace_cbar: float = _doc(1.0, "A2PO's trace truncation c̄ > 0: the trace factor is "
                                  "λ min(c̄, M) (E12). 1.0: the authors' code default.")
    epochs: int = _doc(4, "Passes K over each rollout per update (E8), ≥ 1. 4: a common PPO "
                       "setting.")
    minibatches: int = _doc(4, "Minibatches per epoch, each one gradient step; 1 ≤ minibatches ≤ "
                            "n_envs·rollout_len. 4 → 16 steps per update.")
    lr_actor: float = _doc(1.0, "SGD step size on the actors' logits (tabular; gradient of the "
                           "minibatch-mean objective), > 0 and finite. Any value is numerically "
                           "safe (softmax is shift-stable, ratios saturate at e^300); a run whose "
                           "logits overflow raises FloatingPointError.")
    lr_critic: float = _doc(0.5, "SGD step size of the tabular critics on ½(R − V)² (and ½(R − Q)² "
                            "for COMA), in (0, 1]: a step moves V(s) towards the minibatch mean "
                            "return by lr·(share of the minibatch in s) ≤ 1 of the distance, so it "
                            "never overshoots; above 1 it can (and above 2 it diverges).")
    entropy_coef: float = _doc(0.01, "Entropy bonus on each agent's policy, ≥ 0. 0.01: a small, "
                               "standard exploration bonus.")
    n_envs: int = _doc(32, "Parallel environments B per rollout, ≥ 1.")
    rollout_len: int = _doc(8, "Steps T per environment per rollout, ≥ 1; one update per rollout "
                            "(N = T·B samples).")
    iterations: int = _doc(100, "Number of rollout + update iterations, ≥ 1.")
    seed: int = _doc(0, "Seed (integer ≥ 0) of every random choice: initial logits, sampling, "
                     "minibatches, HAPPO order, evaluation.")
    reward_scale: float = _doc(1.0, "Rewards are multiplied by this (> 0) before learning, e.g. "
                               "1/max|payoff|; reported returns are unscaled.")
    track_ratios: bool = _doc(False, "Record ratio statistics at every gradient step "
                              "(TrainResult.ratios): quantiles of log ∏_{j≠i} ρ^j, how often "
                              "the PPO clip and the weight's clip act, the weights' effective "
                              "sample size.")
    eval_episodes: int = _doc(32, "Episodes of the final greedy and stochastic evaluation, ≥ 1.")

    def __post_init__(self):
        where = f"{type(self).__name__}."
        asae._check_settings(where, {name: getattr(self, name) for name in RULE_SETTINGS})
        big = np.finfo(float).max
        _scalar(where + "lr_actor", self.lr_actor, 0.0, big, lo_open=True)
        _scalar(where + "lr_critic", self.lr_critic, 0.0, 1.0, lo_open=True)
        _scalar(where + "reward_scale", self.reward_scale, 0.0, big, lo_open=True)
        for name in ("epochs", "minibatches", "n_envs", "rollout_len", "iterations",
                     "eval_episodes", "seed"):
            _integer(where + name, getattr(self, name), 0 if name == "seed" else 1)
        if self.minibatches > self.n_envs * self.rollout_len:
            raise ValueError(f"{where}minibatches ({self.minibatches}) must be ≤ "
                             f"n_envs·rollout_len ({self.n_envs * self.rollout_len})")
        _check_flag(where + "track_ratios", self.track_ratios)


def _check_batch_limit(env, cfg, what: str):
    """An env that makes at most ``env.max_envs`` copies (envs_pz_in's adapters) must hold the
    run's ``n_envs`` and ``eval_episodes``: a ValueError before training, not at its end."""
    limit = getattr(env, "max_envs", None)
    if isinstance(limit, numbers.Integral) and not isinstance(limit, bool):
        for name in ("n_envs", "eval_episodes"):
            if getattr(cfg, name) > limit:
                raise ValueError(f"{what}.{name} = {getattr(cfg, name)} exceeds env.max_envs = "
                                 f"{limit} (the copies this env may make); lower it or raise "
                                 "the env's max_envs")


def _check_flag(name: str, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")


_document_fields(LearnerConfig, "Parameters")


@dataclass
class TrainResult:
    """What a learner's ``train`` returns. Curves have one entry per iteration."""

    method: str = _doc(MISSING, "The method trained (one of METHODS).")
    iterations: np.ndarray = _doc(MISSING, "(I,) iteration index 1..I (after that many updates).")
    env_steps: np.ndarray = _doc(MISSING, "(I,) cumulative environment steps (each step of each "
                                 "env counts once).")
    mean_return: np.ndarray = _doc(MISSING, "(I,) mean team return of the episodes that ended "
                                   "during that iteration's rollout (NaN if none ended).")
    greedy_return: float = _doc(MISSING, "Mean team return of the final greedy (argmax) joint "
                                "policy.")
    stochastic_return: float = _doc(MISSING, "Mean team return of the final stochastic joint "
                                    "policy.")
    greedy_optimal: bool = _doc(MISSING, "Whether the greedy return reaches env.optimum (within "
                                "1e-6); False when the env has no optimum (None or absent).")
    wall_time: float = _doc(MISSING, "Seconds spent in train (rollouts, updates, evaluation).")
    logits: list = _doc(MISSING, "Final per-agent logits tables, each (n_obs, A_i); [] for a "
                        "feature env (see policy).")
    values: np.ndarray = _doc(MISSING, "Final critic V(state), (n_states,); empty for a "
                              "feature env (see critic).")
    policies: list | None = _doc(None, "If record_policies: per iteration (index 0 = start), the "
                                 "per-agent probability tables (n_obs, A_i).")
    bias: dict | None = _doc(None, "asae_probe.train_with_bias fills it: see "
                             "asae_probe.advantage_bias.")
    policy: object = _doc(None, "Feature envs: the trained asae_neural.MLPPolicy (its "
                          "evaluate runs it); None for the tabular learner.")
    critic: np.ndarray | None = _doc(None, "Feature envs: the critic's flat parameter vector "
                                     "(layout: asae_neural.MLP over env.state_dim); None for "
                                     "tables.")
    ratios: dict | None = _doc(None, "If track_ratios: log_w_quantiles {p: quantile of log "
                               "∏_{j≠i} ρ^j over (sample, moving agent, step), to 0.01; ±inf "
                               "beyond ±3}, ppo_clip_binds, weight_clip_binds (fractions), "
                               "ess_fraction (mean over steps and agents of (Σm)²/(size·Σm²) "
                               "for the method's weights m), samples.")
    diagnostics: dict = _doc(None, "max_abs_logit (final; max_abs_param for the networks) "
                             "and max_ratio (largest ρ^i_t seen during the updates).")
    stopped_at: int | None = _doc(None, "The iteration after which train's callback stopped "
                                  "the run (the curves then hold that many entries and the "
                                  "evaluation is of the policy as it stood); None if it ran "
                                  "all config.iterations.")
    critic_norm: np.ndarray | None = _doc(None, "Feature envs: the critic's ValueNorm "
                                          "statistics (μ, ν, d) (NetConfig.value_norm: V = "
                                          "output · σ + μ/d); None for tables.")


_document_fields(TrainResult, "Attributes")




# =======================================================================================
# Progress and early stopping (train(..., callback=...), both learners)
# =======================================================================================


class Progress(NamedTuple):
    """What ``train``'s callback receives after each iteration, as ``callback(iteration,
    record)``. ``curve``, ``logits`` and ``policy`` are the run's own state, live: read them
    during the call (``curve`` and ``logits`` are read-only views; do not change ``policy``)
    and copy what you keep."""
    iteration: int           # iterations done so far, 1..iterations
    iterations: int          # the run's config.iterations
    env_steps: int           # cumulative env steps (iteration · n_envs · rollout_len)
    mean_return: float       # this iteration's mean episode return (NaN if none ended)
    elapsed: float           # seconds since train was called
    curve: np.ndarray        # (iteration,) the mean returns so far (read-only view)
    method: str
    logits: list             # tabular: per-agent (n_obs, A_i) logits (read-only views); else []
    policy: object           # neural: the current asae_neural.MLPPolicy; tabular: None
    snapshot: object = None  # snapshot() → the run's whole state now, a Snapshot (asae_io)


def _check_callback(callback):
    """``train``'s callback: None or a callable."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be None or a callable callback(iteration, record) "
                        f"returning True to stop; got {type(callback).__name__} {callback!r}")
    return callback


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a`` (``a`` itself stays writable)."""
    v = a.view()
    v.flags.writeable = False
    return v


def _stops(callback, record: Progress) -> bool:
    """Call ``callback(record.iteration, record)``: True stops the run, False or None goes
    on; any other answer is a TypeError (a callback that returns a line, or a count, by
    mistake must not stop a run silently). Its exceptions propagate."""
    out = callback(record.iteration, record)
    if out is None or isinstance(out, (bool, np.bool_)):
        return bool(out)
    raise TypeError(f"callback must return True (stop), False or None (go on); it returned "
                    f"{type(out).__name__} {out!r} at iteration {record.iteration}")


def progress_printer(every_seconds: float = 5.0, file=None, label: str = ""):
    """A ready ``train`` callback that prints one line at most every ``every_seconds``
    seconds of the run (and a last one at its final iteration, if it printed before) to
    ``file`` (default: ``sys.stderr`` at the time of printing); never stops the run:

    ``label``iteration 50/200 (25 %), 160,000 env steps, mean return −23.4 (its 31–50),
    3,210 env steps/s, 12 s elapsed, ~37 s left

    The mean return is over the iterations since the previous line (NaN ones skipped; —
    if no episode ended), the rate over the same span, the time left from the mean time
    per iteration since the first callback (setup and compilation excluded). A run shorter
    than ``every_seconds`` prints nothing. On a terminal each line first clears the
    current one (an in-place progress line, as the bench's). One printer can serve runs
    one after another (an iteration number that does not grow starts a new run)."""
    every = _scalar("every_seconds", every_seconds, 0.0, np.finfo(float).max)
    if not isinstance(label, str):
        raise TypeError(f"label must be a str; got {type(label).__name__}")
    if file is not None and not callable(getattr(file, "write", None)):
        raise TypeError(f"file must be None (sys.stderr) or a text file; got "
                        f"{type(file).__name__}")
    seen = {}                                   # the first record and the last line's

    def printer(iteration, record):
        it, t = record.iteration, record.elapsed
        if not seen or it <= seen["it"]:        # a new run
            seen.update(first=(it, t), line=(0, 0, 0.0), lines=0)
        seen["it"] = it
        last_it, last_steps, last_t = seen["line"]
        final = it == record.iterations and seen["lines"] > 0
        if t - last_t < every and not final:
            return None
        recent = record.curve[last_it:it]
        recent = recent[~np.isnan(recent)]
        ret = f"{recent.mean():.4g}".replace("-", "−") if recent.size else "—"
        span = f"its {last_it + 1}–{it}" if it > last_it + 1 else f"it {it}"
        rate = (record.env_steps - last_steps) / max(t - last_t, 1e-9)
        (it0, t0), left = seen["first"], ""
        if it < record.iterations:
            per = (t - t0) / (it - it0) if it > it0 else t / it
            left = f", ~{_seconds(per * (record.iterations - it))} left"
        out = sys.stderr if file is None else file
        clear = "\r\033[K" if getattr(out, "isatty", lambda: False)() else ""
        print(f"{clear}{label}iteration {it}/{record.iterations} "
              f"({100 * it / record.iterations:.0f} %), {record.env_steps:,} env steps, "
              f"mean return {ret} ({span}), {rate:,.0f} env steps/s, {_seconds(t)} elapsed{left}",
              file=out, flush=True)
        seen["line"], seen["lines"] = (it, record.env_steps, t), seen["lines"] + 1
        return None
    return printer


def _seconds(x: float) -> str:
    """A duration for a progress line: 0.1 s resolution below 10 s, else whole seconds."""
    return f"{x:.1f} s" if x < 10 else f"{x:,.0f} s"


# =======================================================================================
# A run's whole state (Progress.snapshot; asae_io writes checkpoints and resumes them)
# =======================================================================================


class Snapshot(NamedTuple):
    """A run's whole state after ``iteration`` iterations, what ``Progress.snapshot()``
    returns and a checkpoint holds (``asae_io.checkpointer``, ``asae_io.resume``)."""
    learner: str             # "tabular" or "neural"
    method: str
    config: LearnerConfig    # the run's config (its iterations and seed included)
    env: object              # the run's env (described in the file, not stored)
    iteration: int           # iterations done
    arrays: dict             # name → a copy of every array the run carries ("env.*": the env's)


def _leaves(tree, name: str):
    """(name, array) of every array in ``tree`` — named tuples, lists, tuples and dicts,
    named by path ("run.opt_pi.0.m"); other leaves (ints, objects, None) are skipped."""
    if isinstance(tree, np.ndarray):
        yield name, tree
    elif isinstance(tree, tuple) and hasattr(tree, "_fields"):
        for f in tree._fields:
            yield from _leaves(getattr(tree, f), f"{name}.{f}")
    elif isinstance(tree, (list, tuple)):
        for k, x in enumerate(tree):
            yield from _leaves(x, f"{name}.{k}")
    elif isinstance(tree, dict):
        for k, x in tree.items():
            yield from _leaves(x, f"{name}.{k}")


def _state_arrays(parts: dict) -> dict:
    """name → a copy of every array of ``parts`` (``{"run": ..., "rng": ...}``)."""
    return {name: a.copy() for top, tree in parts.items() for name, a in _leaves(tree, top)}


def _restore_state(parts: dict, saved: dict, what: str = "the checkpoint"):
    """Write ``saved`` (a :func:`_state_arrays` of the same run) into the run's own arrays
    in place; the names, dtypes and shapes must match exactly, else a ValueError naming the
    first that does not (a state of another run, or of another version of the learner)."""
    own = {name: a for top, tree in parts.items() for name, a in _leaves(tree, top)}
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or extra:
        raise ValueError(f"{what} does not fit this run: "
                         + "; ".join(f"{label} {', '.join(names[:4])}" for label, names in
                                     (("missing", missing), ("unexpected", extra)) if names))
    for name, a in own.items():
        x = saved[name]
        if x.dtype != a.dtype or x.shape != a.shape:
            raise ValueError(f"{what} does not fit this run: {name} is {x.dtype} {x.shape}, "
                             f"the run's {a.dtype} {a.shape}")
    for name, a in own.items():
        a[...] = saved[name]


def _env_state(env) -> dict:
    """"env.<key>" → a copy of each array of ``env.get_state()``, for a run that steps its
    env through ``env.step`` (its episodes in progress live in the env); a TypeError naming
    the env's type if it cannot give its state back (no get_state() / set_state())."""
    name = type(env).__name__
    if not (callable(getattr(env, "get_state", None)) and
            callable(getattr(env, "set_state", None))):
        raise TypeError(f"this run steps its env through env.step, so a checkpoint must hold "
                        f"the env's state, and {name} has no get_state() / set_state() "
                        "(envs.py's games and envs_spread.Spread have them; a tabular run "
                        "with env.tables() needs none); the run cannot be checkpointed")
    state = env.get_state()
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray)
                                              for k, v in state.items()):
        raise TypeError(f"{name}.get_state() must return a dict of str → numpy array; got "
                        f"{type(state).__name__}")
    return {f"env.{k}": v.copy() for k, v in state.items()}


def _set_env_state(env, saved: dict):
    """Put a state of :func:`_env_state` (its "env.*" arrays) back into ``env``, just reset
    to the run's batch size: the keys, dtypes and shapes must be those of its own state."""
    now = _env_state(env)
    for key in sorted(set(now) | set(saved)):
        if key not in now or key not in saved or (now[key].dtype, now[key].shape) != (
                saved[key].dtype, saved[key].shape):
            got = (saved[key].dtype, saved[key].shape) if key in saved else "absent"
            want = (now[key].dtype, now[key].shape) if key in now else "absent"
            raise ValueError(f"the checkpoint's env state does not fit {type(env).__name__}: "
                             f"{key} is {got} in the checkpoint, {want} in the env")
    env.set_state({key[4:]: a.copy() for key, a in saved.items()})
