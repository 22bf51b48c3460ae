"""bench.py's ``h2h`` section: ASAE head to head with HAPPO, CoPPO and A2PO, 2 to 16 agents
(issue 16).

    python bench.py h2h [--quick] [--seeds N] [--json PATH] [--plot DIR] [--jobs N] [--dask A]

One protocol for every method: the penalty game (``envs.penalty``, k = −100: all agents on 0
or all on 2 → 10, all on 1 → 2, someone on 0 and someone on 2 → k, else 0), bench's per-game
defaults as in the study section (rewards × 1/100, 100 updates of 32 envs × 8 steps; Config
defaults otherwise: epochs 4, minibatches 4, PPO ε 0.2 on the own ratio, asae weight clip
0.5, CoPPO inner clip 0.1, A2PO ε_o 0.1, c_ε 0.5, c̄ 1), and the same initial policy for
every method under a seed (seeds 0–99). Parts:

a. every method × n ∈ {2, 3, 4, 6, 8, 12, 16} × lr_actor ∈ {1, 3, 10}, 100 seeds: success
   [Wilson 95 %], paired against async and against asae (wins/losses, exact sign test, the
   difference in success rate with Newcombe's 95 % interval); CPU and wall time per run;
r. per n and lr_actor, the ratio statistics (``Config.track_ratios``) of seeds 0–19 (the same
   runs as in a, re-run with tracking on, which roughly doubles their cost);
b. the exact advantage and gradient bias against E6 (``asae_probe.advantage_bias``) where the 3^n
   joint actions are enumerated cheaply, n ≤ 6, lr_actor 3, seeds 0–19;
g. every method at n = 2 on climbing, qtran, two-step and grid (lr_actor 3), 100 seeds;
t. equal time: async and asae with 2× and 4× the updates (lr_actor 3), paired with a.

The exact methods enumerate 3^n joint actions at every gradient step: they run up to n = 6
(``EXACT_MAX_N``: at n = 8 exact_sync takes ≈ 3 CPU-seconds a run, 80× async, and its 300
runs would double the study) and COMA (a joint critic) wherever asae accepts it; beyond,
the page says why each is not run (asae's refusal, or the budget). --quick: n =
2, 3, lr_actor 3, 3 seeds (ratios and bias 2), 20 updates — seconds. Cells are built by
bench_plan, run and recorded by bench_run, tested by bench_stats and drawn by bench_plot.
"""
from __future__ import annotations

import argparse
import math
import time
from types import SimpleNamespace

import numpy as np

import asae
import asae_probe as probe
import asae_tabular as tabular
import envs
from bench_plan import applicable, make_game, plan
from bench_plot import h2h_figure
from bench_run import experiment
from bench_stats import fmt_pair, fmt_success, mean_ci, paired, success

METHODS = ("async", "asae", "asae:sync_clip=none", "asae:clip_ratio=joint", "happo", "coppo",
           "coppo:coppo_detach=true", "a2po", "a2po:a2po_order=random", "a2po:a2po_trace=authors",
           "coma", "exact_sync", "exact_async")
REFERENCES = ("async", "asae")                  # every method is paired with both, seed by seed
SAMPLED = METHODS[:10]                          # no joint table: every n
EXACT = ("exact_sync", "exact_async")           # enumerate the 3^n joint actions per step
EXACT_MAX_N = 6
K, LR = -100, 3.0                               # lr_actor where a part does not vary it
FULL = SimpleNamespace(agents=(2, 3, 4, 6, 8, 12, 16), lrs=(1.0, 3.0, 10.0), seeds=100,
                       ratio_seeds=20, bias_agents=(2, 3, 4, 6), bias_seeds=20,
                       games=("climbing", "qtran", "two-step", "grid"), times=(2, 4))
QUICK = SimpleNamespace(agents=(2, 3), lrs=(3.0,), seeds=3, ratio_seeds=2, bias_agents=(2,),
                        bias_seeds=2, games=("climbing", "qtran", "two-step", "grid"), times=(2,))
QUANTILES = (0.05, 0.5, 0.95)


#: Without count games (envs.CountGame: O(n) steps, no 3^n tables) the penalty game builds
#: 3^n-entry tables in every process: the study stops there (3^16 needs ≈ 11 GB to build).
MATRIX_MAX_N = 12


def design(args) -> SimpleNamespace:
    """The study's sizes: FULL, or QUICK with --quick; --seeds sets every part's seeds and
    --agents the numbers of agents (each ≥ 2; beyond MATRIX_MAX_N only with count games)."""
    d = SimpleNamespace(**vars(QUICK if args.quick else FULL))
    if args.seeds:
        d.seeds = d.ratio_seeds = d.bias_seeds = args.seeds
    if getattr(args, "agents", None):
        d.agents = tuple(args.agents)
    d.dropped = [n for n in d.agents if n > MATRIX_MAX_N and not hasattr(envs, "CountGame")]
    d.agents = tuple(n for n in d.agents if n not in d.dropped)
    d.bias_agents = tuple(n for n in d.bias_agents if n in d.agents)
    return d


def agent_list(text: str) -> list:
    """``--agents`` text → a list of ints ≥ 2 (argparse type)."""
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or min(out) < 2:
        raise argparse.ArgumentTypeError(f"--agents takes a comma list of integers >= 2, "
                                         f"not {text!r}")
    return out


# ---- What one run yields (in the pool's workers) -----------------------------------------
def h2h_run(env, method: str, cfg, bias: bool = False) -> dict:
    """One run: success, CPU and wall seconds, and the ratio statistics when the config
    tracks them, the exact bias with ``bias`` (asae_probe.train_with_bias: the same run)."""
    t = time.process_time()
    res = (probe.train_with_bias if bias else tabular.train)(env, method, cfg)
    out = {"optimal": bool(res.greedy_optimal), "cpu_s": time.process_time() - t,
           "wall_s": res.wall_time}
    if res.ratios is not None:
        r = res.ratios
        out["ratios"] = {**{f"log_w_q{p:g}": r["log_w_quantiles"][p] for p in QUANTILES},
                         **{k: r[k] for k in ("ppo_clip_binds", "weight_clip_binds",
                                              "ess_fraction")}}
    if res.bias is not None:
        out["bias"] = dict(res.bias)
    return out


def h2h_bias_run(env, method: str, cfg) -> dict:
    """:func:`h2h_run` with the exact bias probe (part b)."""
    return h2h_run(env, method, cfg, bias=True)


def refusal(game: str, method: str) -> str | None:
    """asae's own refusal of ``method`` on ``game`` (a one-update run), or None if it runs."""
    try:
        tabular.train(make_game(game), method, tabular.TabularConfig(
            iterations=1, n_envs=1, rollout_len=1, epochs=1, minibatches=1, eval_episodes=1))
    except ValueError as exc:
        return str(exc)
    return None


# ---- Cells ---------------------------------------------------------------------------------
def penalty(n: int) -> str:
    return f"penalty:k={K}:n_agents={n}"


def runs_at(n: int, skipped: dict) -> list:
    """The methods run at n agents; each one that is not, with the reason, into ``skipped``."""
    out = []
    for m in METHODS:
        why = None
        if m in EXACT and n > EXACT_MAX_N:
            why = refusal(penalty(n), m) or (
                f"budget (3^{n} = {3 ** n:,} joint actions enumerated per gradient "
                "step; exact_sync costs ≈ 3 CPU-s a run at n = 8, 80× async)")
        elif m == "coma" and n > EXACT_MAX_N:
            why = refusal(penalty(n), m)
        if why is None:
            out.append(m)
        else:
            skipped[m, n] = why
    return out


def cells(args) -> tuple[list, dict]:
    """Every cell in run order (parts a, t, r, b, g), async then asae first within a setting,
    each with ``part``, ``setting``, ``key`` (the setting it is paired within) and a progress
    ``tag``; and the {(method, n): reason} of the cells not run."""
    d, out, skipped = design(args), [], {}

    def add(part, game, setting, methods, seeds, key=None, outcome=None, **overrides):
        spec = SimpleNamespace(games=game, methods=",".join(methods), seeds=seeds,
                               quick=args.quick, overrides={"record_policies": False,
                                                            **overrides})
        for c in plan(spec, "learn"):
            c.part, c.setting, c.key = part, setting, key or (part, game, *setting.values())
            if outcome is not None:
                c.outcome = outcome
            c.tag = f" ({part}: " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else
                                              f"{k} {v}" for k, v in setting.items()) + ")"
            out.append(c)
    at = {n: runs_at(n, skipped) for n in d.agents}
    for n in d.agents:
        for lr in d.lrs:
            add("a", penalty(n), {"n": n, "lr_actor": lr}, at[n], d.seeds, lr_actor=lr)
    for n in d.agents:
        iterations = 20 if args.quick else 100              # bench_plan.game_defaults
        for x in d.times:
            add("t", penalty(n), {"n": n, "lr_actor": LR, "updates ×": x}, REFERENCES, d.seeds,
                key=("a", penalty(n), n, LR), lr_actor=LR, iterations=x * iterations)
    for n in d.agents:
        for lr in d.lrs:
            add("r", penalty(n), {"n": n, "lr_actor": lr}, [m for m in at[n] if m in SAMPLED],
                d.ratio_seeds, lr_actor=lr, track_ratios=True)
    for n in d.bias_agents:
        add("b", penalty(n), {"n": n, "lr_actor": LR}, at[n], d.bias_seeds, lr_actor=LR,
            outcome=h2h_bias_run)
    for g in d.games:
        methods = [m for m in METHODS if applicable(m.split(":")[0], make_game(g))]
        add("g", g, {"game": g, "lr_actor": LR}, methods, d.seeds, lr_actor=LR)
    return out, skipped


# ---- Summaries ------------------------------------------------------------------------------
def summary(refs: dict, c, good: list) -> tuple[dict, list]:
    """A cell's JSON record: success, paired with async and asae of its ``key``; the median
    CPU and wall time of its runs; for r the ratio statistics and for b the bias, each the
    mean over seeds with a 95 % t-interval."""
    ok = [bool(r.get("optimal", False)) for r in c.results]
    s = success(c, {}, None)
    if c.part in "agbr" and c.method in REFERENCES:
        refs.setdefault(c.key, {})[c.method] = ok
    vs = {m: paired(ok, refs[c.key][m]) for m in REFERENCES
          if m in refs.get(c.key, {}) and not (m == c.method and c.part != "t")}
    cpu, wall = (np.array([r[k] for r in good]) for k in ("cpu_s", "wall_s"))
    rec = {"part": c.part, "setting": c.setting, **{k: s[k] for k in ("successes", "runs",
                                                                         "wilson95")},
           "vs": vs, "median_cpu_s": float(np.median(cpu)) if good else None,
           "median_wall_s": float(np.median(wall)) if good else None,
           "per_seed": {"optimal": [int(x) for x in ok], "cpu_s": [r.get("cpu_s") for r in
                                                                   c.results]}}
    for what in ("ratios", "bias"):
        runs = [r[what] for r in good if what in r]
        if runs:                        # an infinite quantile makes the mean infinite
            x = np.array([[r[k] for k in runs[0]] for r in runs], float)
            rec[what] = {k: {"mean": float(np.mean(x[:, j])), "ci95": float(h)}
                         for j, (k, h) in enumerate(zip(runs[0], mean_ci(x)[1]))}
            rec["per_seed"][what] = [r.get(what) for r in c.results]
    return rec, []


# ---- Tables ---------------------------------------------------------------------------------
def setup(cfg, d) -> str:
    """The note on what every run shares, from a penalty cell's Config ``cfg``."""
    return (f"penalty(k = −{-K}), rewards × {cfg.reward_scale:g}, {cfg.iterations} updates of "
            f"{cfg.n_envs} envs × {cfg.rollout_len} steps, epochs {cfg.epochs}, minibatches "
            f"{cfg.minibatches}, PPO ε {cfg.clip_eps:g} on the {cfg.clip_ratio} ratio, asae "
            f"weight clip {cfg.sync_clip:g}, CoPPO ε_in {cfg.coppo_inner_eps:g}, A2PO ε_o "
            f"{cfg.a2po_others_eps:g}, c_ε {cfg.a2po_clip_floor:g}, c̄ {cfg.a2po_trace_cbar:g}, "
            f"entropy {cfg.entropy_coef:g}, lr_critic {cfg.lr_critic:g}; seeds 0–{d.seeds - 1}, "
            "each seed's initial logits (std 1) the same for every method. " + PAIRING)


PAIRING = ("success: final greedy joint policy optimal, Wilson 95 % interval. vs async / vs "
           "asae: the difference in success rate (this − reference) with Newcombe's 95 % "
           "interval for paired proportions (method 10, Newcombe 1998), seeds where only this "
           "method (+) or only the reference (−) succeeds, exact two-sided sign-test p.")


def not_run(skipped: dict, ns) -> list:
    """Notes on the (method, n) cells not run, one per reason."""
    by = {}
    for (m, n), why in skipped.items():
        if n in ns:
            by.setdefault(why, []).append(f"{m} at n = {n}")
    return [f"Not run: {', '.join(what)} — {why}" for why, what in by.items()]


def pick(records, part, **setting):
    return [r for r in records if r["part"] == part
            and all(r["setting"].get(k) == v for k, v in setting.items())]


def rate(r) -> str:
    """A cell's success rate with its Wilson interval, compact."""
    lo, hi = r["wilson95"]
    return f"{r['successes'] / r['runs']:.2f} [{lo:.2f}, {hi:.2f}]"


def table_a(rep, records, d, note, skipped) -> None:
    """a: per lr_actor a compact table (methods × n), then per n every cell in full."""
    for lr in d.lrs:
        recs = pick(records, "a", lr_actor=lr)
        methods = list(dict.fromkeys(r["method"] for r in recs))
        grid = {(r["method"], r["setting"]["n"]): r for r in recs}
        rows = [[m, *(rate(grid[m, n]) if (m, n) in grid else "—" for n in d.agents)]
                for m in methods]
        rep.table("h2h", f"H2H a: success by number of agents, lr_actor {lr:g}, penalty k = −100",
                  ["method", *(f"n = {n}" for n in d.agents)], rows, None, [
                      "Success rate [Wilson 95 %] of the final greedy joint policy, "
                      f"{d.seeds} seeds per cell; — : not run (below). " + note,
                      *not_run(skipped, d.agents)])
    for n in d.agents:
        rows = [[f"{r['setting']['lr_actor']:g}", r["method"], fmt_success(r),
                 *(fmt_pair(r["vs"].get(m)) for m in REFERENCES)]
                for r in pick(records, "a", n=n)]
        rep.table("h2h", f"H2H a: n = {n} agents, penalty k = −100, paired with async and asae",
                  ["lr_actor", "method", "success [95 % CI]", "vs async: Δ [95 % CI] (+/−, p)",
                   "vs asae: Δ [95 % CI] (+/−, p)"], rows, None, [note])


def quantile(x: float) -> str:
    return "—" if x is None or math.isnan(x) else (
        "< −3" if x == -math.inf else "> 3" if x == math.inf else f"{x:+.2f}".replace("-", "−"))


def table_r(rep, records, d) -> None:
    """r: per n, lr_actor and method, the ratio statistics averaged over seeds."""
    rows = []
    for r in pick(records, "r"):
        s = {k: v["mean"] for k, v in r["ratios"].items()}
        rows.append([r["setting"]["n"], f"{r['setting']['lr_actor']:g}", r["method"],
                     *(quantile(s[f"log_w_q{p:g}"]) for p in QUANTILES),
                     *(f"{s[k]:.3f}" for k in ("ppo_clip_binds", "weight_clip_binds",
                                                "ess_fraction"))])
    rep.table("h2h", "H2H r: ratio statistics per number of agents (TrainResult.ratios)", [
        "n", "lr_actor", "method", *(f"log W q{int(100 * p)}" for p in QUANTILES),
        "PPO clip binds", "weight clip acts", "ESS fraction"], rows, None, [
        f"Seeds 0–{d.ratio_seeds - 1} of part a, re-run with Config.track_ratios (the same "
        "runs). Per run, over every gradient step, moving agent i and sample: quantiles of log "
        "W^i = Σ_{j≠i} log ρ^j (the partners' product asae multiplies by, whatever the method "
        "uses; from a histogram on [−3, 3] in steps of 0.01, '> 3' beyond), the fraction of "
        "samples where the PPO clip (coppo: either clip; a2po: its position's clip) zeroes the "
        "gradient of a non-zero advantage, the fraction where the method's weight is clipped "
        "(asae: sync_clip; a2po: ε_o; async and happo have none; coppo's inner clip on w is "
        "not counted by TrainResult.ratios, so its column reads 0), and the effective sample "
        "size (Σm)²/(N·Σm²) of the method's weights m per minibatch; each the mean over "
        "seeds (a quantile that lies beyond ±3 in some seed makes the mean infinite)."])


def table_b(rep, records, d) -> None:
    """b: per n and method, the exact bias against E6 and its ratio to ω = 1."""
    rows = []
    for r in pick(records, "b"):
        b = r["bias"]

        def f(k, scale=1.0, digits=4):
            m, h = b[k]["mean"] * scale, b[k]["ci95"] * scale
            return "—" if not math.isfinite(m) else f"{m:.{digits}f} ± {h:.{digits}f}"
        ratio = (b["mean_abs_bias"]["mean"] / b["mean_abs_bias_async"]["mean"]
                 if b["mean_abs_bias_async"]["mean"] > 0 else math.nan)
        gratio = (b["mean_abs_grad_bias"]["mean"] / b["mean_abs_grad_bias_async"]["mean"]
                  if b["mean_abs_grad_bias_async"]["mean"] > 0 else math.nan)
        rows.append([r["setting"]["n"], r["method"], f("mean_abs_bias"), f"{ratio:.2f}",
                     f("mean_abs_grad_bias"), f"{gratio:.2f}"])
    rep.table("h2h", "H2H b: exact advantage and gradient bias against E6, lr_actor 3", [
        "n", "method", "mean |Â − Ã| (payoff units)", "ratio to ω = 1", "gradient bias",
        "ratio to ω = 1"], rows, None, [
        f"asae_probe.train_with_bias on seeds 0–{d.bias_seeds - 1} (fewer than part a: the probe "
        "enumerates the 3^n joint actions for every agent at every gradient step), lr_actor "
        "3, n ≤ 6. mean ± 95 % t-interval over seeds of the mean over gradient steps, agents "
        "and actions of |E_{a^-i~π_old^-i}[Â^i | a^i] − Ã^i(a^i)| (E6, after the update), and "
        "the same for the expected gradient after the PPO clip. ratio to ω = 1: over the async "
        "estimate at the same steps of the same runs (ratio of the seed means)."])


def table_g(rep, records, d) -> None:
    """g: every method at n = 2 on the other games."""
    rows = [[r["setting"]["game"], r["method"], fmt_success(r),
             *(fmt_pair(r["vs"].get(m)) for m in REFERENCES)] for r in pick(records, "g")]
    rep.table("h2h", "H2H g: every method at n = 2 on climbing, qtran, two-step and grid",
              ["game", "method", "success [95 % CI]", "vs async: Δ [95 % CI] (+/−, p)",
               "vs asae: Δ [95 % CI] (+/−, p)"], rows, None, [
                  f"lr_actor 3, bench's per-game defaults otherwise (rewards × 1/max|payoff|; "
                  "matrix and two-step games 100 updates of 32 × 8, grid 400 of 64 × 16); "
                  f"{d.seeds} seeds; exact methods on the one-step matrix games only. "
                  + PAIRING])


#: Part v: each competitor's default against its variants, and the joint clip against both
#: CoPPOs — (method, reference) pairs, seed by seed over the cells of part a.
VARIANT_PAIRS = (("coppo", "coppo:coppo_detach=true"), ("a2po", "a2po:a2po_order=random"),
                 ("a2po:a2po_trace=authors", "a2po"), ("asae:clip_ratio=joint", "coppo"),
                 ("asae:clip_ratio=joint", "coppo:coppo_detach=true"), ("coppo", "async"),
                 ("a2po", "happo"))


def variant_pairs(records, ns) -> list:
    """Per (method, reference) of VARIANT_PAIRS and lr_actor: the pairs of part a's runs
    pooled over ``ns`` (same n, lr and seed), as ``paired`` records; rows for table_v."""
    rows = []
    for m, ref in VARIANT_PAIRS:
        for lr in sorted({r["setting"]["lr_actor"] for r in pick(records, "a")}):
            ok, ref_ok = [], []
            for n in ns:
                cells = pick(records, "a", n=n, lr_actor=lr)
                a = [r for r in cells if r["method"] == m]
                b = [r for r in cells if r["method"] == ref]
                if a and b:
                    ok += a[0]["per_seed"]["optimal"]
                    ref_ok += b[0]["per_seed"]["optimal"]
            if ok:
                rows.append([m, ref, f"{lr:g}", len(ok), fmt_pair(paired(ok, ref_ok))])
    return rows


def table_v(rep, records, d) -> None:
    """v: the competitors' defaults against their variants (issue 23), pooled over n."""
    ns = [n for n in d.agents if n <= 8]
    rep.table("h2h", "H2H v: the competitors as their authors run them, against our variants",
              ["method", "against", "lr_actor", "pairs", "Δ success [95 % CI] (+/−, p)"],
              variant_pairs(records, ns), None, [
                  f"Part a's runs, seed by seed, pooled over n = {', '.join(map(str, ns))} "
                  "(n ≤ 8): coppo = the authors' gradient through "
                  "every ratio, coppo_detach = the partners' product a constant (0.3's); a2po = "
                  "the semi-greedy order, a2po_order=random = a uniform order (0.3's), "
                  "a2po_trace=authors = their trace γλ²·min(c̄, M). " + PAIRING])


def table_time(rep, records, d, cfg) -> dict:
    """Wall-clock per method at equal samples: median CPU seconds a run, ×async."""
    recs = pick(records, "a")
    methods = list(dict.fromkeys(r["method"] for r in recs))
    cost = {}
    for m in methods:
        for n in d.agents:
            runs = [x for r in recs if r["method"] == m and r["setting"]["n"] == n
                    for x in r["per_seed"]["cpu_s"] if x is not None]
            if runs:
                cost[m, n] = float(np.median(runs))
    rows = [[m, *(f"{1000 * cost[m, n]:.0f} ({cost[m, n] / cost['async', n]:.1f}×)"
                  if (m, n) in cost else "—" for n in d.agents)] for m in methods]
    rep.table("h2h", "H2H time: median CPU time per run at equal samples", [
        "method", *(f"n = {n}" for n in d.agents)], rows, None, [
        "Milliseconds of CPU time of one run of part a (asae_tabular.train, time.process_time in "
        f"the worker), the median over its seeds and the {len(d.lrs)} lr_actor value(s), with the "
        f"ratio to async's; every run takes the same samples ({cfg.iterations} updates of "
        f"{cfg.n_envs} × {cfg.rollout_len}). Measured while "
        "other jobs shared the 2 cores; the wall time of each run (TrainResult.wall_time) is in "
        "the JSON (median_wall_s) and is larger under that load. Not bit-identical from run to "
        "run, unlike every other number here."])
    return cost


def table_t(rep, records, d, cost) -> None:
    """t: equal time: each method at 1× against async and asae given k× the updates."""
    rows = []
    for n in d.agents:
        base = {r["method"]: r for r in pick(records, "a", n=n, lr_actor=LR)}
        more = {(r["method"], r["setting"]["updates ×"]): r for r in pick(records, "t", n=n)}
        for m, r in base.items():
            c = cost.get((m, n), math.nan) / cost.get(("async", n), math.nan)
            row = [n, m, rate(r), f"{c:.1f}×"]
            for ref in REFERENCES:
                for x in d.times:
                    t = more.get((ref, x))
                    row.append("—" if t is None else fmt_pair(paired(
                        r["per_seed"]["optimal"], t["per_seed"]["optimal"])))
            rows.append(row)
        for (ref, x), t in more.items():
            rows.append([n, f"{ref}, {x}× updates", rate(t), "", *[""] * (2 * len(d.times))])
    rep.table("h2h", "H2H t: equal samples against equal time, lr_actor 3", [
        "n", "method", "success [95 % CI]", "CPU ×async",
        *(f"vs {ref} with {x}× updates" for ref in REFERENCES for x in d.times)], rows, None, [
        "Each method as in part a (lr_actor 3) paired seed by seed with async and "
        "asae given 2× and 4× the updates (the same samples per update; the same initial "
        "policy): Δ = this method's success rate − theirs [Newcombe 95 %] (+/−, sign-test p). "
        "A method whose CPU ×async is ≤ k is compared at equal time (or better for it) with "
        "async at k× updates. The last rows of each n: those longer runs' own success."])


# ---- The section --------------------------------------------------------------------------
def h2h(args, rep) -> None:
    """Head to head: ASAE against async, HAPPO, CoPPO and A2PO under one protocol, n = 2–16.
    Penalty k = −100, every method (async; asae with weight clip 0.5, none, and a joint PPO
    clip; happo; coppo; a2po; coma; the exact methods up to n = 6) × n = 2, 3, 4, 6, 8, 12,
    16 × lr_actor 1, 3, 10, 100 paired seeds per cell (success [Wilson], paired against async
    and asae: Newcombe 95 % interval of the difference, sign test); per n the ratio
    statistics (20 seeds) and the exact bias against E6 (n ≤ 6, 20 seeds); every method at
    n = 2 on climbing, qtran, two-step and grid; CPU time per run; async and asae with 2× and
    4× the updates (equal time). Not in the default run: 29,340 runs, 2,566 CPU-seconds
    (≈ 22 minutes on 2 free cores; 59 on 2 cores shared with other jobs)."""
    todo, skipped = cells(args)
    refs, d = {}, design(args)
    experiment(args, rep, "h2h", todo, lambda c, good: summary(refs, c, good), h2h_run)
    rep.data["h2h"]["not_run"] = [{"method": m, "n": n, "reason": why}
                                  for (m, n), why in skipped.items()]
    rep.out("\n## Head to head: ASAE, HAPPO, CoPPO and A2PO from 2 to 16 agents")
    records = rep.data["h2h"]["cells"]
    note = setup(next(c for c in todo if c.part == "a").configs[0], d)
    if d.dropped:
        note += (f" Not run: n = {', '.join(map(str, d.dropped))} — this checkout's "
                 "envs.penalty builds 3^n-entry joint tables (no count games yet).")
    table_a(rep, records, d, note, skipped)
    if args.plot:
        rep.figure(h2h_figure(records, args.plot), "H2H a: success against the number of "
                   "agents per method, Wilson 95 % bands, one panel per lr_actor")
    cost = table_time(rep, records, d, next(c for c in todo if c.part == "a").configs[0])
    table_t(rep, records, d, cost)
    table_r(rep, records, d)
    table_b(rep, records, d)
    table_g(rep, records, d)
    table_v(rep, records, d)
