"""bench.py's ``study`` section: when does ASAE matter? (issue 11)

    python bench.py study [--quick] [--seeds N] [--json PATH] [--plot DIR] [--jobs N]

Three experiments on the penalty game (``envs.penalty``: all agents on 0 or all on 2 → 10,
all on 1 → 2, someone on 0 and someone on 2 → k, else 0), each cell 100 seeds (--quick: 8;
--seeds), every method paired seed by seed with async under the same setting:

a. clip ablation × agents: k = −100, n = 2, 3, 4; PPO clip (ε = 0.2 on the own or the joint
   ratio, or none) × asae's weight clip (0.5 or none);
b. step-size map: k = −100, n = 2, 3; lr_actor × epochs;
c. miscoordinated start: n = 2 from fixed logits (agent 0 prefers action 0, agent 1
   action 2), k = 0, −10, −100: where the runs end and how often both agents switch their
   greedy action at the same iteration.

Every run uses bench's per-game defaults (rewards × 1/max|payoff|, 100 updates of 32 envs ×
8 steps; --quick 20) and lr_actor 3 unless the experiment varies it; other Config fields at
their defaults. Success = the final greedy joint policy is optimal. 21,900 runs: about 3.5
minutes on 2 cores (--quick: seconds). Cells are built by bench_plan, run and recorded by
bench_run, tested by bench_stats and drawn by bench_plot; this module chooses the cells,
summarises each run and cell, and lays out the tables.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import asae
import asae_tabular as tabular
from bench_plan import MAX_RUNS, plan
from bench_plot import clip_figure, start_figure, stepsize_figure
from bench_run import experiment
from bench_stats import fmt_p, fmt_success, interval, mean_ci, signed, success, wilson

METHODS = ("async", "asae", "happo", "exact_sync", "exact_async")
LR = 3.0                                            # lr_actor, where an experiment does not vary it
AGENTS = (2, 3, 4)                                  # a
PPO_CLIPS = {"ε = 0.2, own ratio": {"clip_eps": 0.2, "clip_ratio": "own"},
             "ε = 0.2, joint ratio": {"clip_eps": 0.2, "clip_ratio": "joint"},
             "none": {"clip_eps": None}}
CLIP_METHODS = ("async", "asae", "asae:sync_clip=none", "happo", "exact_sync", "exact_async")
LRS, EPOCHS, MAP_AGENTS = (0.3, 1.0, 3.0, 10.0, 30.0), (1, 4, 16), (2, 3)        # b
KS, START = (0, -10, -100), ([[2.0, 0.0, 0.0]], [[0.0, 0.0, 2.0]])              # c: init_logits
OUTCOMES = ("(0, 0)", "(2, 2)", "(1, 1)", "other")


# ---- What one run yields (pure functions; study_run runs in the pool's workers) ----------
def greedy_path(policies) -> np.ndarray:
    """(iterations + 1, n) greedy action of each agent (first observation) from
    ``TrainResult.policies`` (index 0 = the start)."""
    return np.array([[int(np.argmax(np.asarray(p)[0])) for p in pols] for pols in policies],
                    dtype=int)


def switches(path) -> tuple[int, bool | None]:
    """(simultaneous switches, whether the first switch is simultaneous) of a greedy path:
    a switch is an iteration at which an agent's greedy action changes; it is simultaneous
    when every agent's changes at that iteration. None if no agent ever switches.

    >>> switches([[0, 2], [2, 0], [2, 2], [0, 0], [0, 0]])
    (2, True)
    >>> switches([[0, 2], [0, 1], [1, 0]]), switches([[1, 1], [1, 1]])
    ((1, False), (0, None))
    """
    path = np.asarray(path)
    changed = path[1:] != path[:-1]
    both, any_ = changed.all(1), changed.any(1)
    return int(both.sum()), bool(both[any_.argmax()]) if any_.any() else None


def outcome(joint) -> str:
    """The final greedy joint action as one of OUTCOMES (every agent on the same action, or other).

    >>> outcome([0, 0]), outcome([2, 2]), outcome((1, 1)), outcome([0, 2]), outcome([2, 2, 2])
    ('(0, 0)', '(2, 2)', '(1, 1)', 'other', '(2, 2, 2)')
    """
    return f"({', '.join(map(str, joint))})" if len(set(joint)) == 1 else "other"


def study_run(env, method: str, cfg) -> dict:
    """One run: success, the final greedy joint action and, with recorded policies, switches."""
    res = tabular.train(env, method, cfg)
    out = {"optimal": bool(res.greedy_optimal), "final": [int(np.argmax(z[0])) for z in res.logits]}
    if res.policies is not None:
        out["switches"], out["first_simultaneous"] = switches(greedy_path(res.policies))
    return out


# ---- Cells: the three experiments, async first within each setting ------------------------
def cells(args) -> list:
    """Every cell of a, b and c in run order, each with ``part``, ``setting`` (what it shares
    with its async reference) and a progress ``tag``; Configs built by ``bench_plan.plan``."""
    seeds, out = args.seeds or (8 if args.quick else 100), []
    n_cells = (len(AGENTS) * len(PPO_CLIPS) * len(CLIP_METHODS)
               + len(MAP_AGENTS) * len(LRS) * len(EPOCHS) * len(METHODS) + len(KS) * len(METHODS))
    if seeds * n_cells > MAX_RUNS:
        raise ValueError(f"{seeds:,} seeds × {n_cells} study cells is more than the "
                         f"{MAX_RUNS:,} runs a section may plan (--seeds)")

    def add(part, game, setting, methods=METHODS, **overrides):
        overrides = {"lr_actor": LR, "record_policies": part == "c", **overrides}
        spec = SimpleNamespace(games=game, methods=",".join(methods), seeds=seeds,
                               quick=args.quick, overrides=overrides)
        for c in plan(spec, "learn"):
            c.part, c.setting = part, setting
            c.tag = f" ({part}: " + ", ".join(f"{k} {v}" for k, v in setting.items()) + ")"
            out.append(c)
    for n in AGENTS:
        for label, kw in PPO_CLIPS.items():
            add("a", f"penalty:k=-100:n_agents={n}", {"n": n, "PPO clip": label}, CLIP_METHODS,
                **kw)
    for n in MAP_AGENTS:
        for lr in LRS:
            for ep in EPOCHS:
                add("b", f"penalty:k=-100:n_agents={n}", {"n": n, "lr_actor": lr, "epochs": ep},
                    lr_actor=lr, epochs=ep)
    for k in KS:
        add("c", f"penalty:k={k}", {"k": k}, init_logits=START)
    return out


def summary(ref: dict, c, good: list) -> tuple[dict, list]:
    """A cell's JSON record: success paired with its setting's async; for c also the final
    outcomes, simultaneous switches (mean, 95 % t-interval) and first-switch counts."""
    rec = {"part": c.part, "setting": c.setting,
           **success(c, ref, (c.part, c.game, *c.setting.values())),
           "per_seed": {"optimal": [int(r.get("optimal", False)) for r in c.results],
                        "final": [r.get("final") for r in c.results]}}
    if c.part == "c":
        finals, sw = [outcome(r["final"]) for r in good], [r["switches"] for r in good]
        first = [r["first_simultaneous"] for r in good if r["first_simultaneous"] is not None]
        mean, half = mean_ci(sw)
        rec.update(outcomes={o: finals.count(o) / max(len(good), 1) for o in OUTCOMES},
                   simultaneous_switches={"mean": float(mean), "ci95": float(half)},
                   first_switch_simultaneous={"runs": sum(first), "of": len(first),
                                              "wilson95": list(wilson(sum(first), len(first)))})
        rec["per_seed"].update(switches=[r.get("switches") for r in c.results],
                               first_simultaneous=[r.get("first_simultaneous") for r in c.results])
    return rec, []


# ---- Tables ------------------------------------------------------------------------------
def setup(cfg, seeds: int, start: str) -> str:
    """The table note on what the runs share, from the first cell's Config ``cfg``."""
    return ("penalty(k) from bench's per-game defaults: rewards × 1/max|payoff|, "
            f"{cfg.iterations} updates of {cfg.n_envs} envs × {cfg.rollout_len} steps; Config "
            f"defaults otherwise (epochs {cfg.epochs}, minibatches {cfg.minibatches}, PPO ε "
            f"{cfg.clip_eps:g} on the {cfg.clip_ratio} ratio, asae weight clip {cfg.sync_clip:g}, "
            f"entropy {cfg.entropy_coef:g}, lr_critic {cfg.lr_critic:g}) and lr_actor {LR:g}, "
            f"unless the experiment varies them; seeds 0–{seeds - 1}, {start}. success: final "
            "greedy joint policy optimal, Wilson 95 % interval. vs async: seeds where only this "
            "method (+) or only async (−) succeeds under the same setting, exact two-sided "
            "sign-test p.")


def heat_cell(async_rate: float, pairs) -> str:
    """One cell of the step-size map: async's success rate, then per method (name, its
    ``vs_async``) the paired difference in success rate with wins/losses and p.

    >>> heat_cell(0.62, [("asae", {"difference": 0.05, "wins": 7, "losses": 2, "p": 0.1797})])
    'async 0.62<br>asae +0.05 (+7/−2, p=.18)'
    """
    return "<br>".join([f"async {async_rate:.2f}"] + [
        f"{m} {signed(d['difference'])} (+{d['wins']}/−{d['losses']}, p={fmt_p(d['p'])})"
        for m, d in pairs])


def versus_async(r: dict) -> list:
    """A record's paired comparison as two table cells: +wins/−losses and the sign-test p."""
    d = r["vs_async"]
    return [f"+{d['wins']}/−{d['losses']}", fmt_p(d["p"])] if d else ["—", "—"]


def table_a(rep, records: list, note: str) -> None:
    """a: a row per n, PPO-clip setting and method (asae once per weight clip)."""
    weight_clip = {"asae": "0.5", "asae:sync_clip=none": "none"}
    rows = [[r["setting"]["n"], r["setting"]["PPO clip"], weight_clip.get(r["method"], "n/a"),
             r["method"].split(":")[0], fmt_success(r), *versus_async(r)]
            for r in records if r["part"] == "a"]
    rep.table("study", "Study a: clip ablation × number of agents, penalty k = −100, "
              f"lr_actor {LR:g}", ["n", "PPO clip", "weight clip", "method", "success [95 % CI]",
                                   "vs async (+/−)", "p"], rows, None, [
        note, "The weight clip acts on asae alone and clip_ratio only through a PPO clip, so the "
        "other methods' runs under weight clip 0.5 and none, and every run under 'no PPO clip' "
        "with the own or the joint ratio, are the same runs (bit-identical; test_bench checks "
        "it): each is run once."])


def table_b(rep, records: list, note: str) -> None:
    """b: per n, a heat-map table, lr_actor (rows) × epochs (columns), cells from heat_cell."""
    for n in MAP_AGENTS:
        grid = {(r["setting"]["lr_actor"], r["setting"]["epochs"], r["method"]): r
                for r in records if r["part"] == "b" and r["setting"]["n"] == n}

        def cell(lr, ep):
            base = grid[lr, ep, "async"]
            return heat_cell(base["successes"] / base["runs"],
                             [(m, grid[lr, ep, m]["vs_async"]) for m in METHODS[1:]])
        rows = [[f"{lr:g}", *(cell(lr, ep) for ep in EPOCHS)] for lr in LRS]
        rep.table("study", f"Study b: step-size map, n = {n}, penalty k = −100", [
            "lr_actor \\ epochs", *map(str, EPOCHS)], rows, None, [
            "Each cell: async's success rate, then each method's paired difference in success "
            "rate (its rate − async's) with seeds won/lost against async and the sign-test p. "
            f"{note}"])


def table_c(rep, records: list, note: str) -> None:
    """c: a row per k and method: final outcomes, success, simultaneous switches."""
    rows = []
    for r in (r for r in records if r["part"] == "c"):
        (m, h) = (r["simultaneous_switches"][k] for k in ("mean", "ci95"))
        fs = r["first_switch_simultaneous"]
        first = f"{fs['runs']}/{fs['of']}" + (
            f" = {interval(fs['runs'] / fs['of'], *fs['wilson95'])}" if fs["of"] else "")
        rows.append([r["setting"]["k"], r["method"],
                     *(f"{r['outcomes'][o]:.2f}" for o in OUTCOMES), fmt_success(r),
                     *versus_async(r), interval(m, max(0.0, m - h), m + h), first])
    rep.table("study", "Study c: miscoordinated start, n = 2, logits [2, 0, 0] (agent 0) and "
              "[0, 0, 2] (agent 1)", [
                  "k", "method", *OUTCOMES, "success [95 % CI]", "vs async (+/−)", "p",
                  "simultaneous switches [95 % CI]", "first switch simultaneous"], rows, None, [
        "Fixed initial logits (init_logits) [[2, 0, 0]] for agent 0 and [[0, 0, 2]] for agent 1 "
        "(π ≈ 0.79 on the preferred action); rewards × 1/10 for k = 0 and −10, × 1/100 for "
        "k = −100. Outcome: fraction of runs whose final greedy joint action is (0, 0), (2, 2), "
        "(1, 1) or other. A simultaneous switch: an iteration at which both agents' greedy "
        "actions change; mean per run with a 95 % t-interval (its lower end cut at 0). First "
        "switch simultaneous: runs whose first greedy change is one, of the runs with any "
        "change, Wilson 95 % interval. " + note])


# ---- The section -------------------------------------------------------------------------
FIGURES = {  # table → (figure drawn after it, its caption on the docs page)
    table_a: (clip_figure, "Study a: success per method under each clip setting, n = 2, 3, 4"),
    table_b: (stepsize_figure, "Study b: async's success and each method's paired difference, "
              "p < 0.05 in bold with *"),
    table_c: (start_figure, "Study c: outcomes and simultaneous switches from a miscoordinated "
              "start")}


def study(args, rep) -> None:
    """Study: when does ASAE matter? Clip ablation × agents, step-size map, miscoordinated start.
    a. penalty(−100), n = 2, 3, 4, lr_actor 3: PPO clip (ε 0.2 on the own / the joint ratio,
    none) × asae's weight clip (0.5, none); b. penalty(−100), n = 2, 3: lr_actor 0.3–30 ×
    epochs 1, 4, 16; c. n = 2 from logits favouring 0 (agent 0) and 2 (agent 1), k = 0, −10,
    −100: final outcomes and simultaneous switches of the greedy actions. Methods async,
    asae, happo, exact_sync, exact_async; 100 seeds per cell (--quick 8), each method paired
    with async seed by seed (wins/losses, exact sign test), Wilson intervals on success.
    21,900 runs, about 3.5 minutes on 2 cores."""
    todo, ref = cells(args), {}
    experiment(args, rep, "study", todo, lambda c, good: summary(ref, c, good), study_run)
    rep.out("\n## Study: when does ASAE matter?")
    records = rep.data["study"]["cells"]
    cfg, seeds = todo[0].configs[0], len(todo[0].configs)
    drawn = ("the initial logits drawn from the seed (std "
             f"{cfg.init_logit_std:g}), the same for every method")
    for table, start in ((table_a, drawn), (table_b, drawn),
                         (table_c, "the seeds vary only the sampling")):
        table(rep, records, setup(cfg, seeds, start))
        if args.plot:
            figure, caption = FIGURES[table]
            rep.figure(figure(records, args.plot), caption)
