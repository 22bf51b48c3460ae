"""bench.py's ``learn`` and ``bias`` sections: every method on every game, seed by seed —
does it find the optimum (paired against async), and how far is its advantage from the
synchronous target (E6, exact). One table per section, a row per (game, method) cell.
"""
from __future__ import annotations

import math

import numpy as np

import asae
import asae_probe as probe
import asae_tabular as tabular
import envs
from bench_plan import exact, make_game, plan, setting
from bench_plot import bias_bars, learning_curves
from bench_run import experiment
from bench_stats import fmt_success, mean_ci, sign_test, success


# ---- What one learn run yields (in the pool's workers) -----------------------------------
def learning_curve(env, res, window: int = 20) -> np.ndarray:
    """Exact J(π) at the start and after each update (matrix, two-step games); otherwise the
    mean return of the episodes that ended in the last ``window`` rollouts (a trailing mean)."""
    if getattr(env, "payoff", None) is not None:
        return np.array([sum(asae.joint_value(env.payoff, [p[t] for p in pols])
                             for t in range(env.n_obs)) for pols in res.policies])
    if isinstance(env, envs.TwoStepGame):    # agent 0's action in state 0 picks 2A or 2B
        return np.array([p[0][0][0] * asae.joint_value(env.payoff_2a, [x[1] for x in p])
                         + p[0][0][1] * asae.joint_value(env.payoff_2b, [x[2] for x in p])
                         for p in res.policies])
    ok = np.isfinite(res.mean_return)
    s, n = (np.concatenate([[0], np.cumsum(x)]) for x in (np.where(ok, res.mean_return, 0.0), ok))
    i = np.arange(1, ok.size + 1)
    lo = np.maximum(0, i - window)
    return np.divide(s[i] - s[lo], n[i] - n[lo], out=np.full(ok.size, np.nan), where=n[i] > n[lo])


def learned(env, method: str, cfg) -> dict:
    """A learn run: success, final greedy and stochastic returns, the learning curve."""
    res = tabular.train(env, method, cfg)
    return {"optimal": bool(res.greedy_optimal), "greedy": res.greedy_return,
            "stochastic": res.stochastic_return, "curve": learning_curve(env, res)}


def tabulate(args, rep, kind: str, cells, rows, title: str, headers: list, note: str,
             figure, caption: str) -> None:
    """A learn/bias section's table (a row per cell, the setting in a note) and figure."""
    rep.out(f"\n## {title.split(':')[0]}")
    rep.table(kind, title, ["game", "method", *headers], rows, None, [setting(cells), note])
    if args.plot:
        rep.figure(figure(rep.data[kind]["cells"], args.plot), caption)


# ---- The sections --------------------------------------------------------------------------
def learn(args, rep) -> None:
    """Learning: does each method find the optimum, paired against async seed by seed.
    Games × methods × seeds, each seed's random initial policy shared by every method.
    Success = the final greedy joint policy is optimal: Wilson 95 % interval, and wins /
    losses against async with an exact sign-test p; final greedy and stochastic returns;
    env steps until the learning curve reaches 95 % of the optimum."""
    ref, cells = {}, plan(args, "learn")

    def summary(c, good):
        env, n = make_game(c.game), len(c.results)
        bt = c.configs[0].n_envs * c.configs[0].rollout_len
        pair = (s := success(c, ref, c.game))["vs_async"]
        curves = np.array([r.pop("curve") for r in good] or [[np.nan]])
        steps = (np.arange(curves.shape[1]) + (not exact(env))) * bt   # sampled: after a rollout
        reach = np.nan_to_num(curves, nan=-np.inf) >= 0.95 * env.optimum
        to95 = np.where(reach.any(1), steps[reach.argmax(1)], np.inf)[:len(good)]
        for r, t in zip(good, to95):
            r["steps_to_95"] = t
        g, st = (np.array([r[x] for r in good]) for x in ("greedy", "stochastic"))
        med, reached = float(np.median(to95)) if good else math.nan, int(np.isfinite(to95).sum())
        sd = lambda x: f"{x.mean():.2f} ± {x.std():.2f}" if x.size else "—"  # noqa: E731
        return ({**s, "optimum": env.optimum, "greedy_mean": np.mean(g) if good else None,
                 "stochastic_mean": np.mean(st) if good else None, "median_steps_to_95": med,
                 "reached_95": reached, "exact_curve": exact(env), "curve_steps": steps,
                 **dict(zip(("curve_mean", "curve_ci95"), mean_ci(curves))),
                 "per_seed": [{"seed": cfg.seed, **r} for cfg, r in zip(c.configs, c.results)]},
                [fmt_success(s), sd(g), sd(st),
                 f"+{pair['wins']}/−{pair['losses']}, p = {pair['p']:.2g}" if pair else "—",
                 (f"{med:,.0f}" if math.isfinite(med) else "—") + f" ({reached}/{n})"])
    tabulate(args, rep, "learn", cells, experiment(args, rep, "learn", cells, summary, learned),
             "Learning: success, returns and speed per game and method", [
                 "optimal [95 % CI]", "greedy return", "stochastic return", "vs async (paired)",
                 "steps to 95 %"],
             "Initial logits ~ N(0, init_logit_std²) from the seed alone. optimal: final greedy "
             "joint policy optimal, Wilson 95 % interval. Returns: mean ± std, final greedy "
             "(argmax) and sampled policy. vs async: seeds where only this method (+) or only "
             "async (−) is optimal, exact two-sided sign test. steps to 95 %: median env steps "
             "until the curve (exact J(π); grid: mean return of the episodes ended in the last "
             "20 rollouts) reaches 95 % of the optimum (— if fewer than half the seeds do; in "
             "brackets how many do).", learning_curves,
             "Learning curves: mean and 95 % band over the seeds, per method")


def bias(args, rep) -> None:
    """Bias: each method's exact advantage bias against the synchronous target (E6).
    The mean |advantage used − Ã^i| during training (``asae_probe.advantage_bias``), before and
    after the PPO clip, with 95 % intervals over seeds; paired per seed with the ω = 1
    (async) estimate at the same steps of the same run (ratio; seeds where it is lower,
    sign-test p); and the second-moment price of the weights."""
    def summary(c, good):
        col = lambda key: np.array([r.get(key, np.nan) for r in good], float)  # noqa: E731

        def ratio(key):
            return np.divide(col(key), col(key + "_async"), out=np.full(len(good), np.nan),
                             where=col(key + "_async") > 0)
        b, b1 = col("mean_abs_bias"), col("mean_abs_bias_async")
        (bm, bh), (b1m, _), (rm, rh), (gm, gh), (gr, _), (m2, _), (m2r, _) = (mean_ci(x) for x in (
            b, b1, ratio("mean_abs_bias"), col("mean_abs_grad_bias"), ratio("mean_abs_grad_bias"),
            col("mean_second_moment"), ratio("mean_second_moment")))
        tie = np.isclose(b, b1, rtol=1e-9, atol=1e-12)      # ω = 1 methods: equal up to rounding
        w, l_ = int((b < b1)[~tie].sum()), int((b > b1)[~tie].sum())

        def f(m, h=math.nan, d=4):
            if not np.isfinite(m):
                return "—"
            return f"{m:.{d}f}" + (f" ± {h:.{d}f}" if np.isfinite(h) else "")
        return ({"mean_abs_bias": bm, "bias_ci95": bh, "async_same_path": b1m, "ratio": rm,
                 "ratio_ci95": rh, "lower": w, "higher": l_, "p": sign_test(w, l_),
                 "grad_bias": gm, "grad_bias_ci95": gh,
                 "grad_async_same_path": mean_ci(col("mean_abs_grad_bias_async"))[0],
                 "grad_bias_ratio": gr, "second_moment": m2, "second_moment_ratio": m2r,
                 "per_seed": c.results},
                [f(bm, bh), f(b1m), f(rm, rh, 2),
                 f"{w} lower, {l_} higher, p = {sign_test(w, l_):.2g}", f(gm, gh), f(gr, d=2),
                 f(m2, d=3), f(m2r, d=3)])
    cells = plan(args, "bias")
    rows = experiment(args, rep, "bias", cells, summary, probe.advantage_bias)
    tabulate(args, rep, "bias", cells, rows,
             "Bias: |advantage used − synchronous target Ã^i| (exact)", [
                 "mean abs bias", "ω = 1, same path", "ratio to ω = 1", "seeds vs ω = 1",
                 "gradient bias (clipped)", "ratio to ω = 1", "second moment", "ratio to ω = 1"],
             "mean abs bias: |E_{a^-i~π_old^-i}[Â^i | a^i] − Ã^i(a^i)| with Ã^i of E6 after the "
             "update, before any clipping, mean over gradient steps, agents and actions, ± 95 % "
             "t-interval over seeds. ω = 1: the async estimate at the same steps of the same "
             "runs; ratios per seed; seeds: bias lower / higher, exact sign test. gradient bias: "
             "the same for the expected gradient of the clipped per-sample objective (the PPO "
             "clip per joint action), i.e. what reaches the logits. Second moment: "
             "E_{a~π_old}[(Â^i)²], the variance price of the weights.", bias_bars,
             "Exact bias per method, before and after the PPO clip")
