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
minutes on 2 cores (--quick: seconds). Runs, statistics, JSON and progress are bench.py's
(``plan``, ``experiment``, ``bench_report``); this module builds the cells, summarises each
run and cell, and draws the tables and figures.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

import asae
import bench_report as br

METHODS = ("async", "asae", "happo", "exact_sync", "exact_async")
LR = 3.0                                            # lr_actor, where an experiment does not vary it
AGENTS = (2, 3, 4)                                  # a
PPO_CLIPS = {"ε = 0.2, own ratio": {"clip_eps": 0.2, "clip_ratio": "own"},
             "ε = 0.2, joint ratio": {"clip_eps": 0.2, "clip_ratio": "joint"}, "none": {"clip_eps": None}}
CLIP_METHODS = ("async", "asae", "asae:sync_clip=none", "happo", "exact_sync", "exact_async")
LRS, EPOCHS, MAP_AGENTS = (0.3, 1.0, 3.0, 10.0, 30.0), (1, 4, 16), (2, 3)        # b
KS, START = (0, -10, -100), ([[2.0, 0.0, 0.0]], [[0.0, 0.0, 2.0]])              # c: init_logits
OUTCOMES = ("(0, 0)", "(2, 2)", "(1, 1)", "other")


# ---- What one run yields (pure functions; study_run runs in the pool's workers) ----------
def greedy_path(policies) -> np.ndarray:
    """(iterations + 1, n) greedy action of each agent (first observation) from
    ``TrainResult.policies`` (index 0 = the start)."""
    return np.array([[int(np.argmax(np.asarray(p)[0])) for p in pols] for pols in policies], dtype=int)


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
    res = asae.train(env, method, cfg)
    out = {"optimal": bool(res.greedy_optimal), "final": [int(np.argmax(z[0])) for z in res.logits]}
    if res.policies is not None:
        out["switches"], out["first_simultaneous"] = switches(greedy_path(res.policies))
    return out


# ---- Cells: the three experiments, async first within each setting ------------------------
def cells(args) -> list:
    """Every cell of a, b and c in run order, each with ``part``, ``setting`` (what it shares
    with its async reference) and a progress ``tag``; Configs built by ``bench.plan``."""
    import bench  # here, not at the top: bench imports this module (a script run aliases it as bench)
    seeds, out = args.seeds or (8 if args.quick else 100), []

    def add(part, game, setting, methods=METHODS, **overrides):
        spec = SimpleNamespace(games=game, methods=",".join(methods), seeds=seeds, quick=args.quick,
                               overrides={"lr_actor": LR, "record_policies": part == "c", **overrides})
        for c in bench.plan(spec, "learn"):
            c.part, c.setting = part, setting
            c.tag = f" ({part}: " + ", ".join(f"{k} {v}" for k, v in setting.items()) + ")"
            out.append(c)
    for n in AGENTS:
        for label, kw in PPO_CLIPS.items():
            add("a", f"penalty:k=-100:n_agents={n}", {"n": n, "PPO clip": label}, CLIP_METHODS, **kw)
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
    rec = {"part": c.part, "setting": c.setting, **br.success(c, ref, (c.part, c.game, *c.setting.values())),
           "per_seed": {"optimal": [int(r.get("optimal", False)) for r in c.results],
                        "final": [r.get("final") for r in c.results]}}
    if c.part == "c":
        finals, sw = [outcome(r["final"]) for r in good], [r["switches"] for r in good]
        first = [r["first_simultaneous"] for r in good if r["first_simultaneous"] is not None]
        mean, half = br.mean_ci(sw)
        rec.update(outcomes={o: finals.count(o) / max(len(good), 1) for o in OUTCOMES},
                   simultaneous_switches={"mean": float(mean), "ci95": float(half)},
                   first_switch_simultaneous={"runs": sum(first), "of": len(first),
                                              "wilson95": list(br.wilson(sum(first), len(first)))})
        rec["per_seed"].update(switches=[r.get("switches") for r in c.results],
                               first_simultaneous=[r.get("first_simultaneous") for r in c.results])
    return rec, []


# ---- Tables ------------------------------------------------------------------------------
def setup(cfg, seeds: int, start: str) -> str:
    """The table note on what the runs share, from the first cell's Config ``cfg``."""
    return (f"penalty(k) from bench's per-game defaults: rewards × 1/max|payoff|, {cfg.iterations} updates of "
            f"{cfg.n_envs} envs × {cfg.rollout_len} steps; Config defaults otherwise (epochs {cfg.epochs}, "
            f"minibatches {cfg.minibatches}, PPO ε {cfg.clip_eps:g} on the {cfg.clip_ratio} ratio, asae weight "
            f"clip {cfg.sync_clip:g}, entropy {cfg.entropy_coef:g}, lr_critic {cfg.lr_critic:g}) and lr_actor "
            f"{LR:g}, unless the experiment varies them; seeds 0–{seeds - 1}, {start}. success: final greedy "
            "joint policy optimal, Wilson 95 % interval. vs async: seeds where only this method (+) or only "
            "async (−) succeeds under the same setting, exact two-sided sign-test p.")


def fmt_p(p: float) -> str:
    """A p-value in two significant digits without the leading zero.

    >>> fmt_p(0.1797), fmt_p(1.0), fmt_p(0.03125), fmt_p(1.6e-07)
    ('.18', '1', '.031', '1.6e-07')
    """
    text = f"{p:.2g}"
    return text[1:] if text.startswith("0.") else text


def signed(x: float) -> str:
    """Two decimals with the sign, a true minus: ``signed(-0.125) == '−0.12'``."""
    return f"{x:+.2f}".replace("-", "−")


def heat_cell(async_rate: float, pairs) -> str:
    """One cell of the step-size map: async's success rate, then per method (name, its
    ``vs_async``) the paired difference in success rate with wins/losses and p.

    >>> heat_cell(0.62, [("asae", {"difference": 0.05, "wins": 7, "losses": 2, "p": 0.1797})])
    'async 0.62<br>asae +0.05 (+7/−2, p=.18)'
    """
    return "<br>".join([f"async {async_rate:.2f}"] + [
        f"{m} {signed(d['difference'])} (+{d['wins']}/−{d['losses']}, p={fmt_p(d['p'])})" for m, d in pairs])


def interval(x: float, lo: float, hi: float) -> str:
    """``x [lo, hi]`` in two decimals, or — if x does not exist."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f} [{lo:.2f}, {hi:.2f}]"


def versus_async(r: dict) -> list:
    """A record's paired comparison as two table cells: +wins/−losses and the sign-test p."""
    d = r["vs_async"]
    return [f"+{d['wins']}/−{d['losses']}", fmt_p(d["p"])] if d else ["—", "—"]


def table_a(rep, records: list, note: str) -> None:
    """a: a row per n, PPO-clip setting and method (asae once per weight clip)."""
    weight_clip = {"asae": "0.5", "asae:sync_clip=none": "none"}
    rows = [[r["setting"]["n"], r["setting"]["PPO clip"], weight_clip.get(r["method"], "n/a"),
             r["method"].split(":")[0], br.fmt_success(r), *versus_async(r)] for r in records if r["part"] == "a"]
    rep.table("study", f"Study a: clip ablation × number of agents, penalty k = −100, lr_actor {LR:g}", [
        "n", "PPO clip", "weight clip", "method", "success [95 % CI]", "vs async (+/−)", "p"], rows, None, [
        note, "The weight clip acts on asae alone and clip_ratio only through a PPO clip, so the other "
        "methods' runs under weight clip 0.5 and none, and every run under 'no PPO clip' with the own or "
        "the joint ratio, are the same runs (bit-identical; test_bench checks it): each is run once."])


def table_b(rep, records: list, note: str) -> None:
    """b: per n, a heat-map table, lr_actor (rows) × epochs (columns), cells from heat_cell."""
    for n in MAP_AGENTS:
        grid = {(r["setting"]["lr_actor"], r["setting"]["epochs"], r["method"]): r for r in records
                if r["part"] == "b" and r["setting"]["n"] == n}
        rate = lambda lr, ep: grid[lr, ep, "async"]["successes"] / grid[lr, ep, "async"]["runs"]  # noqa: E731
        rows = [[f"{lr:g}", *(heat_cell(rate(lr, ep), [(m, grid[lr, ep, m]["vs_async"]) for m in METHODS[1:]])
                              for ep in EPOCHS)] for lr in LRS]
        rep.table("study", f"Study b: step-size map, n = {n}, penalty k = −100", [
            "lr_actor \\ epochs", *map(str, EPOCHS)], rows, None, [
            "Each cell: async's success rate, then each method's paired difference in success rate (its "
            f"rate − async's) with seeds won/lost against async and the sign-test p. {note}"])


def table_c(rep, records: list, note: str) -> None:
    """c: a row per k and method: final outcomes, success, simultaneous switches."""
    rows = []
    for r in (r for r in records if r["part"] == "c"):
        (m, h), fs = (r["simultaneous_switches"][k] for k in ("mean", "ci95")), r["first_switch_simultaneous"]
        first = f"{fs['runs']}/{fs['of']}" + (f" = {interval(fs['runs'] / fs['of'], *fs['wilson95'])}"
                                              if fs["of"] else "")
        rows.append([r["setting"]["k"], r["method"], *(f"{r['outcomes'][o]:.2f}" for o in OUTCOMES),
                     br.fmt_success(r), *versus_async(r), interval(m, max(0.0, m - h), m + h), first])
    rep.table("study", "Study c: miscoordinated start, n = 2, logits [2, 0, 0] (agent 0) and [0, 0, 2] "
              "(agent 1)", ["k", "method", *OUTCOMES, "success [95 % CI]", "vs async (+/−)", "p",
                            "simultaneous switches [95 % CI]", "first switch simultaneous"], rows, None, [
              "Fixed initial logits (init_logits) [[2, 0, 0]] for agent 0 and [[0, 0, 2]] for agent 1 (π ≈ "
              "0.79 on the preferred action); rewards × 1/10 for k = 0 and −10, × 1/100 for k = −100. Outcome: "
              "fraction of runs whose final greedy joint action is (0, 0), (2, 2), (1, 1) or other. A "
              "simultaneous switch: an iteration at which both agents' greedy actions change; mean per run "
              "with a 95 % t-interval (its lower end cut at 0). First switch simultaneous: runs whose first "
              "greedy change is one, of the runs with any change, Wilson 95 % interval. " + note])


# ---- Figures -----------------------------------------------------------------------------
def clip_figure(records: list, out_dir: str) -> str:
    """a: per n, success with its Wilson interval for each method under each PPO-clip setting;
    * above a bar where its paired sign test against async gives p < 0.05."""
    plt, recs = br.pyplot(), [r for r in records if r["part"] == "a"]
    ns, clips = sorted({r["setting"]["n"] for r in recs}), list(PPO_CLIPS)
    color = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(CLIP_METHODS)}
    fig, axes = plt.subplots(1, len(ns), figsize=(4.6 * len(ns), 4.2), squeeze=False, sharey=True)
    width = 0.8 / len(CLIP_METHODS)
    for ax, n in zip(axes[0], ns):
        for i, clip in enumerate(clips):
            for j, m in enumerate(CLIP_METHODS):
                r = next((r for r in recs if r["setting"] == {"n": n, "PPO clip": clip} and r["method"] == m), None)
                if r is None:
                    continue
                x, p, (lo, hi) = i + (j - (len(CLIP_METHODS) - 1) / 2) * width, r["successes"] / r["runs"], \
                    r["wilson95"]
                ax.bar(x, p, width, color=color[m], yerr=[[p - lo], [hi - p]],
                       error_kw={"ecolor": "0.3", "capsize": 2, "lw": 0.8})
                if r["vs_async"] and r["vs_async"]["p"] < 0.05:
                    ax.annotate("*", (x, hi), ha="center", va="bottom", fontsize=11)
        ax.set_xticks(range(len(clips)), [f"PPO clip:\n{c}" for c in clips], fontsize=8)
        ax.set_title(f"n = {n} agents", fontsize=10)
        ax.set_ylim(0, 1.08)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("success: final greedy policy optimal")
    labels = {"asae": "asae (weight clip 0.5)", "asae:sync_clip=none": "asae (no weight clip)"}
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=color[m], label=labels.get(m, m)) for m in CLIP_METHODS],
               loc="lower center", ncol=len(CLIP_METHODS), frameon=False, fontsize=9)
    fig.suptitle(f"Study a: clip ablation, penalty k = −100, lr_actor 3 ({recs[0]['seeds']} seeds per bar; "
                 "95 % Wilson intervals; * paired sign test vs async p < 0.05)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return br.save_figure(plt, fig, out_dir, "study_clips.png")


def stepsize_figure(records: list, out_dir: str) -> str:
    """b: per n (rows), heat maps over lr_actor × epochs of async's success and of each
    method's paired difference from it; the cell's text bold with * where p < 0.05."""
    plt, recs = br.pyplot(), [r for r in records if r["part"] == "b"]
    ns = sorted({r["setting"]["n"] for r in recs})
    fig, axes = plt.subplots(len(ns), len(METHODS), figsize=(3.1 * len(METHODS), 2.9 * len(ns) + 0.9), squeeze=False)
    diffs = [r["vs_async"]["difference"] for r in recs if r["vs_async"]]
    lim = max([0.1] + [abs(d) for d in diffs])
    for row, n in zip(axes, ns):
        for ax, m in zip(row, METHODS):
            val, sig = np.full((len(LRS), len(EPOCHS)), np.nan), np.zeros((len(LRS), len(EPOCHS)), bool)
            for r in recs:
                if r["setting"]["n"] == n and r["method"] == m:
                    i, j = LRS.index(r["setting"]["lr_actor"]), EPOCHS.index(r["setting"]["epochs"])
                    val[i, j] = r["vs_async"]["difference"] if r["vs_async"] else r["successes"] / r["runs"]
                    sig[i, j] = bool(r["vs_async"]) and r["vs_async"]["p"] < 0.05
            im = ax.imshow(val, origin="lower", aspect="auto", **(
                {"cmap": "viridis", "vmin": 0, "vmax": 1} if m == "async" else {"cmap": "RdBu", "vmin": -lim,
                                                                                 "vmax": lim}))
            for (i, j), v in np.ndenumerate(val):
                if np.isfinite(v):
                    light = (m == "async" and v < 0.6) or (m != "async" and abs(v) > 0.6 * lim)
                    ax.text(j, i, (f"{v:.2f}" if m == "async" else signed(v)) + "*" * int(sig[i, j]), ha="center",
                            va="center", fontsize=8.5, fontweight="bold" if sig[i, j] else "normal",
                            color="white" if light else "black")
            ax.set_xticks(range(len(EPOCHS)), EPOCHS)
            ax.set_yticks(range(len(LRS)), [f"{x:g}" for x in LRS])
            ax.set_xlabel("epochs", fontsize=9)
            ax.set_ylabel(f"n = {n}\nlr_actor" if m == "async" else "", fontsize=9)
            ax.set_title("async: success" if m == "async" else f"{m} − async", fontsize=10)
            if m in ("async", METHODS[-1]):
                fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03,
                             label="success rate" if m == "async" else "difference in success rate")
    fig.suptitle(f"Study b: step-size map, penalty k = −100 ({recs[0]['seeds']} seeds per cell; paired "
                 "differences from async, bold * where the sign test gives p < 0.05)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return br.save_figure(plt, fig, out_dir, "study_stepsize.png")


def start_figure(records: list, out_dir: str) -> str:
    """c: per k, stacked bars of the final greedy joint action per method."""
    plt, recs = br.pyplot(), [r for r in records if r["part"] == "c"]
    ks = list(dict.fromkeys(r["setting"]["k"] for r in recs))
    colors = dict(zip(OUTCOMES, ("tab:blue", "tab:green", "tab:orange", "0.6")))
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.6), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], ks):
        rs = [r for r in recs if r["setting"]["k"] == k]
        bottom = np.zeros(len(rs))
        for o in OUTCOMES:
            frac = np.array([r["outcomes"][o] for r in rs])
            ax.bar(range(len(rs)), frac, 0.7, bottom=bottom, color=colors[o], label=o)
            bottom += frac
        for x, r in enumerate(rs):
            ax.annotate(f"{r['simultaneous_switches']['mean']:.2f}", (x, 1.01), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rs)), [r["method"] for r in rs], rotation=30, ha="right", fontsize=8)
        ax.set_title(f"k = {k:g}".replace("-", "−"), fontsize=10, pad=14)
        ax.set_ylim(0, 1.1)
    axes[0, 0].set_ylabel("fraction of runs\n(final greedy joint action)")
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[o], label=o) for o in OUTCOMES],
               loc="lower center", ncol=len(OUTCOMES), frameon=False, fontsize=9)
    fig.suptitle(f"Study c: miscoordinated start (agent 0 prefers 0, agent 1 prefers 2), n = 2, {recs[0]['seeds']} "
                 "runs each; numbers: mean simultaneous switches per run", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return br.save_figure(plt, fig, out_dir, "study_start.png")


# ---- The section -------------------------------------------------------------------------
def study(args, rep) -> None:
    """Study: when does ASAE matter? Clip ablation × agents, step-size map, miscoordinated start.
    a. penalty(−100), n = 2, 3, 4, lr_actor 3: PPO clip (ε 0.2 on the own / the joint ratio,
    none) × asae's weight clip (0.5, none); b. penalty(−100), n = 2, 3: lr_actor 0.3–30 ×
    epochs 1, 4, 16; c. n = 2 from logits favouring 0 (agent 0) and 2 (agent 1), k = 0, −10,
    −100: final outcomes and simultaneous switches of the greedy actions. Methods async,
    asae, happo, exact_sync, exact_async; 100 seeds per cell (--quick 8), each method paired
    with async seed by seed (wins/losses, exact sign test), Wilson intervals on success.
    21,900 runs, about 3.5 minutes on 2 cores."""
    import bench
    todo, ref = cells(args), {}
    bench.experiment(args, rep, "study", todo, lambda c, good: summary(ref, c, good), study_run)
    print("\n## Study: when does ASAE matter?")
    records = rep.data["study"]["cells"]
    cfg, seeds = todo[0].configs[0], len(todo[0].configs)
    drawn = f"the initial logits drawn from the seed (std {cfg.init_logit_std:g}), the same for every method"
    table_a(rep, records, setup(cfg, seeds, drawn))
    table_b(rep, records, setup(cfg, seeds, drawn))
    table_c(rep, records, setup(cfg, seeds, "the seeds vary only the sampling"))
    if args.plot:
        for fig in (clip_figure, stepsize_figure, start_figure):
            rep.log(f"wrote {fig(records, args.plot)}")
