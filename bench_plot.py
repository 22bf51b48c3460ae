"""The bench's figures (``--plot DIR``), drawn from the JSON records of a section's cells:
learning curves and bias bars (learn, bias), and the study's clip ablation, step-size map
and miscoordinated start. matplotlib (the optional extra ``plot``) is imported only when a
figure is drawn; every figure is written to ``DIR/<name>.png`` at 120 dpi and its path
returned.
"""
import os

import numpy as np

from bench_stats import signed


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _floats(x):
    return np.array([np.nan if v is None else v for v in np.atleast_1d(x)], float)


def _ordered(values) -> list:
    """The distinct values in order of first appearance (the run order of the cells)."""
    return list(dict.fromkeys(values))


def save_figure(plt, fig, out_dir: str, name: str) -> str:
    """Write ``fig`` to ``out_dir/name`` at 120 dpi, close it, return the path."""
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---- learn and bias ----------------------------------------------------------------------
def learning_curves(cells, out_dir: str) -> str:
    """One panel per game (≤ 3 a row): each method's mean learning curve over seeds with
    its 95 % t-interval as a band, the optimum as a labelled dashed line, one legend."""
    plt = pyplot()
    games, methods = _ordered(c["game"] for c in cells), _ordered(c["method"] for c in cells)
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    cols = min(3, len(games) + 1) if len(games) % 3 else 3
    rows = -(-(len(games) + (len(games) % 3 != 0)) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.4 * rows + 0.5), squeeze=False)
    for ax, game in zip(axes.flat, games):
        cs = [c for c in cells if c["game"] == game and c.get("curve_mean") is not None]
        for c in cs:
            x, m, h = (_floats(c[k]) for k in ("curve_steps", "curve_mean", "curve_ci95"))
            ax.plot(x, m, color=color[c["method"]], lw=1.6)
            ax.fill_between(x, m - h, m + h, color=color[c["method"]], alpha=0.12, lw=0)
        if cs:
            ax.axhline(cs[0]["optimum"], color="k", ls="--", lw=0.9)
            ax.annotate(f"optimum {cs[0]['optimum']:g}", xy=(0.99, cs[0]["optimum"]),
                        ha="right", va="top", xycoords=("axes fraction", "data"), xytext=(0, -3),
                        textcoords="offset points", fontsize=8)
            ax.set_title(f"{game}  ({cs[0]['seeds']} seeds)", fontsize=10)
            ax.set_ylabel("exact expected return J(π)" if cs[0]["exact_curve"] else
                          "sampled episode return\n(trailing mean over 20 rollouts)")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=color[m], lw=2, label=m) for m in methods]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.3,
                                 label="95 % interval of the mean"))
    spare = list(axes.flat)[len(games):]
    for ax in spare:
        ax.set_axis_off()
    if spare:
        spare[0].legend(handles=handles, loc="center", frameon=False,
                        title="method (mean over seeds)")
    else:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), frameon=False)
    fig.suptitle("Learning curves; every method starts from the same policy under a seed",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0 if spare else 0.06, 1, 1))
    return save_figure(plt, fig, out_dir, "learning.png")


def bias_bars(cells, out_dir: str) -> str:
    """Per game (columns), bars per method: the mean |Â^i − Ã^i| of the advantage (top) and
    of the gradient that reaches the logits after the PPO clip (bottom), each with its 95 %
    interval over seeds and a marker at the ω = 1 (async) estimate on the same runs."""
    plt = pyplot()
    games, methods = _ordered(c["game"] for c in cells), _ordered(c["method"] for c in cells)
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(2, len(games), figsize=(0.55 * len(methods) * len(games) + 2, 7.4),
                             squeeze=False)
    rows = (("mean_abs_bias", "bias_ci95", "async_same_path", "advantage bias\nmean |Âⁱ − Ãⁱ|"),
            ("grad_bias", "grad_bias_ci95", "grad_async_same_path",
             "gradient bias after the PPO clip\nmean |E ∇ with Âⁱ − E ∇ with Ãⁱ|"))
    for j, game in enumerate(games):
        cs = [c for c in cells if c["game"] == game]
        x = np.arange(len(cs))
        for ax, (key, ci, ref, label) in zip(axes[:, j], rows):
            b, h, r = (_floats([c.get(k) for c in cs]) for k in (key, ci, ref))
            err = np.nan_to_num(np.vstack([np.minimum(h, b), h]))       # a bias is ≥ 0
            ax.bar(x, b, yerr=err, color=[color[c["method"]] for c in cs], width=0.7,
                   error_kw={"ecolor": "0.25", "capsize": 3, "lw": 1})
            ax.plot(x, r, "D", mfc="white", mec="k", ms=6, ls="none")
            ax.set_xticks(x, [c["method"] for c in cs], rotation=35, ha="right", fontsize=8)
            ax.set_ylabel(label if j == 0 else "", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
        axes[0, j].set_title(f"{game}  ({cs[0]['seeds']} seeds)", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color="grey",
                             label="method, mean and 95 % interval over seeds"),
               plt.Line2D([], [], marker="D", mfc="white", mec="k", ls="none",
                          label="ω = 1 (the async estimate) at the same steps of the same runs")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle("Exact bias against the synchronous target Ãⁱ (E6), payoff units", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(plt, fig, out_dir, "bias.png")


# ---- the study (records of bench_study, each with ``part`` and ``setting``) --------------
def clip_figure(records: list, out_dir: str) -> str:
    """a: per n, success with its Wilson interval for each method under each PPO-clip setting;
    * above a bar where its paired sign test against async gives p < 0.05."""
    plt, recs = pyplot(), [r for r in records if r["part"] == "a"]
    ns = sorted({r["setting"]["n"] for r in recs})
    clips = _ordered(r["setting"]["PPO clip"] for r in recs)
    methods = _ordered(r["method"] for r in recs)
    color = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(ns), figsize=(4.6 * len(ns), 4.2), squeeze=False, sharey=True)
    width = 0.8 / len(methods)
    for ax, n in zip(axes[0], ns):
        for i, clip in enumerate(clips):
            for j, m in enumerate(methods):
                r = next((r for r in recs if r["setting"] == {"n": n, "PPO clip": clip}
                          and r["method"] == m), None)
                if r is None:
                    continue
                x = i + (j - (len(methods) - 1) / 2) * width
                p, (lo, hi) = r["successes"] / r["runs"], r["wilson95"]
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
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=color[m], label=labels.get(m, m))
                        for m in methods],
               loc="lower center", ncol=len(methods), frameon=False, fontsize=9)
    fig.suptitle(f"Study a: clip ablation, penalty k = −100, lr_actor 3 ({recs[0]['seeds']} seeds "
                 "per bar; 95 % Wilson intervals; * paired sign test vs async p < 0.05)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return save_figure(plt, fig, out_dir, "study_clips.png")


def stepsize_figure(records: list, out_dir: str) -> str:
    """b: per n (rows), heat maps over lr_actor × epochs of async's success and of each
    method's paired difference from it; the cell's text bold with * where p < 0.05."""
    plt, recs = pyplot(), [r for r in records if r["part"] == "b"]
    ns, methods = sorted({r["setting"]["n"] for r in recs}), _ordered(r["method"] for r in recs)
    lrs, epochs = (_ordered(r["setting"][k] for r in recs) for k in ("lr_actor", "epochs"))
    fig, axes = plt.subplots(len(ns), len(methods),
                             figsize=(3.1 * len(methods), 2.9 * len(ns) + 0.9), squeeze=False)
    diffs = [r["vs_async"]["difference"] for r in recs if r["vs_async"]]
    lim = max([0.1] + [abs(d) for d in diffs])
    for row, n in zip(axes, ns):
        for ax, m in zip(row, methods):
            val = np.full((len(lrs), len(epochs)), np.nan)
            sig = np.zeros((len(lrs), len(epochs)), bool)
            for r in recs:
                if r["setting"]["n"] == n and r["method"] == m:
                    i, j = lrs.index(r["setting"]["lr_actor"]), epochs.index(r["setting"]["epochs"])
                    val[i, j] = (r["vs_async"]["difference"] if r["vs_async"]
                                 else r["successes"] / r["runs"])
                    sig[i, j] = bool(r["vs_async"]) and r["vs_async"]["p"] < 0.05
            im = ax.imshow(val, origin="lower", aspect="auto", **(
                {"cmap": "viridis", "vmin": 0, "vmax": 1} if m == "async"
                else {"cmap": "RdBu", "vmin": -lim, "vmax": lim}))
            for (i, j), v in np.ndenumerate(val):
                if np.isfinite(v):
                    light = (m == "async" and v < 0.6) or (m != "async" and abs(v) > 0.6 * lim)
                    text = (f"{v:.2f}" if m == "async" else signed(v)) + "*" * int(sig[i, j])
                    ax.text(j, i, text, ha="center", va="center", fontsize=8.5,
                            fontweight="bold" if sig[i, j] else "normal",
                            color="white" if light else "black")
            ax.set_xticks(range(len(epochs)), epochs)
            ax.set_yticks(range(len(lrs)), [f"{x:g}" for x in lrs])
            ax.set_xlabel("epochs", fontsize=9)
            ax.set_ylabel(f"n = {n}\nlr_actor" if m == "async" else "", fontsize=9)
            ax.set_title("async: success" if m == "async" else f"{m} − async", fontsize=10)
            if m in ("async", methods[-1]):
                fig.colorbar(im, ax=ax, fraction=0.08, pad=0.03,
                             label="success rate" if m == "async" else "difference in success rate")
    fig.suptitle(f"Study b: step-size map, penalty k = −100 ({recs[0]['seeds']} seeds per cell; "
                 "paired differences from async, bold * where the sign test gives p < 0.05)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save_figure(plt, fig, out_dir, "study_stepsize.png")


def start_figure(records: list, out_dir: str) -> str:
    """c: per k, stacked bars of the final greedy joint action per method."""
    plt, recs = pyplot(), [r for r in records if r["part"] == "c"]
    ks, outcomes = _ordered(r["setting"]["k"] for r in recs), list(recs[0]["outcomes"])
    colors = dict(zip(outcomes, ("tab:blue", "tab:green", "tab:orange", "0.6")))
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.6), squeeze=False, sharey=True)
    for ax, k in zip(axes[0], ks):
        rs = [r for r in recs if r["setting"]["k"] == k]
        bottom = np.zeros(len(rs))
        for o in outcomes:
            frac = np.array([r["outcomes"][o] for r in rs])
            ax.bar(range(len(rs)), frac, 0.7, bottom=bottom, color=colors[o], label=o)
            bottom += frac
        for x, r in enumerate(rs):
            ax.annotate(f"{r['simultaneous_switches']['mean']:.2f}", (x, 1.01), ha="center",
                        va="bottom", fontsize=8)
        ax.set_xticks(range(len(rs)), [r["method"] for r in rs], rotation=30, ha="right",
                      fontsize=8)
        ax.set_title(f"k = {k:g}".replace("-", "−"), fontsize=10, pad=14)
        ax.set_ylim(0, 1.1)
    axes[0, 0].set_ylabel("fraction of runs\n(final greedy joint action)")
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[o], label=o) for o in outcomes],
               loc="lower center", ncol=len(outcomes), frameon=False, fontsize=9)
    fig.suptitle("Study c: miscoordinated start (agent 0 prefers 0, agent 1 prefers 2), n = 2, "
                 f"{recs[0]['seeds']} runs each; numbers: mean simultaneous switches per run",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return save_figure(plt, fig, out_dir, "study_start.png")


# ---- the head-to-head study (records of bench_h2h) ----------------------------------------
def h2h_figure(records: list, out_dir: str) -> str:
    """a: per lr_actor (panels), success against the number of agents for each method, with
    its Wilson 95 % band; the x axis spaced by log n."""
    plt, recs = pyplot(), [r for r in records if r["part"] == "a"]
    lrs, methods = (_ordered(r["setting"]["lr_actor"] for r in recs),
                    _ordered(r["method"] for r in recs))
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    style = {m: "--" if m.startswith(("exact", "coma")) else "-" for m in methods}
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.2 * len(lrs), 4.4), squeeze=False,
                             sharey=True)
    for ax, lr in zip(axes[0], lrs):
        for m in methods:
            rs = sorted((r for r in recs if r["method"] == m and r["setting"]["lr_actor"] == lr),
                        key=lambda r: r["setting"]["n"])
            if not rs:
                continue
            n = np.array([r["setting"]["n"] for r in rs])
            p = np.array([r["successes"] / r["runs"] for r in rs])
            lo, hi = np.array([r["wilson95"] for r in rs]).T
            ax.plot(n, p, style[m], marker="o", ms=3.5, color=color[m], lw=1.5, label=m)
            ax.fill_between(n, lo, hi, color=color[m], alpha=0.10, lw=0)
        ns = sorted({r["setting"]["n"] for r in recs})
        ax.set_xscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("agents n")
        ax.set_title(f"lr_actor {lr:g}", fontsize=10)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("success: final greedy policy optimal")
    fig.legend(handles=[plt.Line2D([], [], color=color[m], ls=style[m], lw=2, label=m)
                        for m in methods], loc="lower center", ncol=min(len(methods), 5),
               frameon=False, fontsize=9)
    fig.suptitle(f"Head to head: penalty k = −100, {recs[0]['seeds']} paired seeds per point; "
                 "bands: Wilson 95 % intervals", fontsize=10)
    fig.tight_layout(rect=(0, 0.11, 1, 0.95))
    return save_figure(plt, fig, out_dir, "h2h.png")


# ---- spread --------------------------------------------------------------------------------
#: Updates in the trailing mean of the paired-difference panel (each seed's difference).
SMOOTH = 10


def trailing_mean(x, k: int = SMOOTH):
    """Row by row, the mean of the last ``k`` finite values up to each update (fewer at the
    start; NaN where there are none).

    >>> trailing_mean(np.array([[1.0, np.nan, 3.0, 5.0]]), 2).tolist()
    [[1.0, 1.0, 3.0, 4.0]]
    """
    x = np.atleast_2d(np.asarray(x, float))
    ok = np.isfinite(x)
    s = np.cumsum(np.where(ok, x, 0.0), axis=1)
    c = np.cumsum(ok, axis=1)
    s[:, k:], c[:, k:] = s[:, k:] - s[:, :-k], c[:, k:] - c[:, :-k]
    return np.divide(s, c, out=np.full(x.shape, np.nan), where=c > 0)


def spread_figure(records: list, out_dir: str) -> str:
    """Learning curves (normalised training return per update) with 95 % t-bands over seeds:
    the learning run (parts l and p) if it ran; one panel per part m or b and n with every
    method; per n of part b, every method's difference from async seed by seed (a trailing
    mean over :data:`SMOOTH` updates, then mean and t-band over seeds); per n of part a,
    async and asae with their own networks (solid) and a shared actor (dashed)."""
    from bench_stats import mean_ci
    plt = pyplot()
    learn = [r for r in records if r["part"] in ("l", "p")]
    panels = ([("l", None)] if learn else []) + _ordered(
        (r["part"], r["n"]) for r in records if r["part"] in ("m", "b"))
    panels += [("d", n) for part, n in list(panels) if part == "b"]
    panels += _ordered(("a", r["n"]) for r in records if r["part"] == "a")
    methods = _ordered(r["method"] for r in records if r["part"] in ("m", "b"))
    alone = [m for m in _ordered(r["method"] for r in records if r["part"] == "a")
             if m.split(":")[0] not in methods]           # a shared arm without its own run
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods + alone)}
    methods += alone
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)

    def band(ax, curves, c, label, style="-"):
        if curves.size == 0:
            return
        mean, half = mean_ci(curves)
        x = np.arange(1, mean.size + 1)
        ax.plot(x, mean, style, color=c, lw=1.4, label=label)
        ax.fill_between(x, mean - half, mean + half, color=c, alpha=0.15, lw=0)

    def curves(rec):
        return np.array([_floats(x) for x in rec["curves"] if x is not None])

    def find(part, n, method):
        return next((r for r in records if (r["part"], r["n"], r["method"]) == (part, n, method)),
                    None)
    for ax, (part, n) in zip(axes[0], panels):
        if part == "l":
            for rec in learn:
                float32 = rec["part"] == "p"
                band(ax, curves(rec), "darkcyan" if float32 else "black",
                     f"async n = {rec['n']}" + (" float32" if float32 else ""))
                ax.set_title(f"learning: async, n = {rec['n']}", fontsize=10)
            if len(learn) > 1:
                ax.legend(fontsize=8, frameon=False)
        elif part in ("m", "b"):
            for rec in records:
                if (rec["part"], rec["n"]) == (part, n):
                    band(ax, curves(rec), color[rec["method"]], rec["method"])
            ax.set_title(f"{'methods' if part == 'm' else 'budget study'}, n = {n}",
                         fontsize=10)
        elif part == "d":
            ref = find("b", n, "async")
            for rec in records:
                if (rec["part"], rec["n"]) == ("b", n) and ref is not None and rec is not ref:
                    pairs = [(_floats(a), _floats(b)) for a, b in zip(rec["curves"], ref["curves"])
                             if a is not None and b is not None]
                    band(ax, trailing_mean(np.array([a - b for a, b in pairs])) if pairs
                         else np.zeros(0), color[rec["method"]], rec["method"])
            ax.axhline(0.0, color="grey", lw=0.8)
            ax.set_ylabel("difference in normalised return")
            ax.set_title(f"− async, seed by seed (mean of {SMOOTH} updates), n = {n}",
                         fontsize=10)
        else:
            for m in _ordered(r["method"] for r in records if (r["part"], r["n"]) == ("a", n)):
                shared, own = find("a", n, m), find("b", n, m.split(":")[0])
                c = color[own["method"]] if own is not None else color[m]
                if own is not None:
                    band(ax, curves(own), c, own["method"])
                band(ax, curves(shared), c, m, "--")
            ax.set_title(f"sharing, n = {n}: own networks (—), shared actor (--)", fontsize=10)
    for ax in axes[0]:
        ax.set_xlabel("update")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("normalised return (0 random, 1 scripted)")
    if methods:                                  # --parts l: the learning panel alone
        fig.legend(handles=[plt.Line2D([], [], color=color[m], lw=2, label=m)
                            for m in methods],
                   loc="lower center", ncol=min(len(methods), 5), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.09 if len(methods) <= 5 else 0.14, 1, 1))
    return save_figure(plt, fig, out_dir, "spread.png")
