"""How bench.py states and presents its results: the statistics (Wilson intervals, exact
sign tests, t-intervals, paired success against async), markdown tables to stdout, progress
and failures to stderr, strict JSON rewritten atomically after every finished cell, and
figures (``--plot DIR``; matplotlib, the optional extra ``plot``, imported only then).
"""
import json
import math
import os
import platform
import subprocess
import sys
import time

import numba
import numpy as np


JSON_NOTE = ("Standard JSON: null marks a value that does not exist (a median when fewer than half "
             "the seeds get there, an interval from < 2 seeds, a ratio over 0, a failed run's "
             "numbers); NaN and Infinity are never written.")


# ---- Statistics (plain Python, no SciPy) -------------------------------------------------

Z95 = 1.959963984540054                     # and T95: the Student-t 0.975 quantiles for df = 1..30
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval for k successes in n trials (NaNs if n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p, z2 = k / n, Z95 ** 2
    mid, half = p + z2 / (2 * n), Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return 0.0 if k == 0 else (mid - half) / (1 + z2 / n), 1.0 if k == n else (mid + half) / (1 + z2 / n)


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign-test p: binomial(n, 1/2) on the n = wins + losses discordant pairs."""
    n = wins + losses
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n)


def success(c, ref: dict, key) -> dict:
    """A cell's successes (its runs' ``optimal``) with a Wilson 95 % interval and, paired seed
    by seed with the async cell of the same ``key`` (run first, its successes kept in
    ``ref``), ``vs_async``: wins (only this method succeeds), losses (only async does), the
    exact sign-test p and the difference in success rate, (wins − losses) / seeds; None for
    async itself or when no async cell ran under ``key``."""
    ok = [bool(r.get("optimal", False)) for r in c.results]
    if c.method == "async":
        ref[key] = ok
    pair = None
    if c.method != "async" and key in ref:
        w, l_ = (sum(x and not y for x, y in zip(a, b)) for a, b in ((ok, ref[key]), (ref[key], ok)))
        pair = {"wins": w, "losses": l_, "p": sign_test(w, l_), "difference": (w - l_) / len(ok)}
    return {"successes": sum(ok), "runs": len(ok), "wilson95": list(wilson(sum(ok), len(ok))), "vs_async": pair}


def fmt_success(s: dict) -> str:
    """``success()`` as table text: k/n = rate [95 % interval]."""
    (lo, hi), k, n = s["wilson95"], s["successes"], s["runs"]
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def mean_ci(x):
    """Mean and 95 % t-interval half-width over axis 0, ignoring NaN (NaN if < 1 / < 2 values)."""
    x = np.asarray(x, float)
    ok, nan = np.isfinite(x), np.full(x.shape[1:], np.nan)
    n = ok.sum(0)
    mean = np.divide(np.where(ok, x, 0.0).sum(0), n, out=nan.copy(), where=n > 0)
    var = np.divide((np.where(ok, x - mean, 0.0) ** 2).sum(0), n - 1, out=nan.copy(), where=n > 1)
    t = [T95[d - 1] if d <= 30 else Z95 + (Z95 ** 3 + Z95) / (4 * d) for d in np.ravel(np.maximum(n - 1, 1))]
    return mean, np.reshape(t, n.shape) * np.sqrt(var / np.maximum(n, 1))


def jsonable(x):
    """NumPy → Python and non-finite floats → None, recursively."""
    x = x.tolist() if isinstance(x, (np.ndarray, np.generic)) else x
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def write_json(path: str, data) -> None:
    """Strict JSON to a temp file, renamed over ``path``: a killed run keeps the last one."""
    with open(tmp := f"{path}.tmp{os.getpid()}", "w") as f:
        json.dump(jsonable(data), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


class Report:
    """Tables to stdout; progress and failures to stderr; everything kept for ``--json``."""

    def __init__(self, args):
        """Print (and keep as JSON ``meta``) the machine, versions, git revision and command."""
        self.args, self.failures, self.tty, self.last = args, [], sys.stderr.isatty(), time.perf_counter()
        cpu = platform.machine()
        if os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo") as f:
                cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
        git = subprocess.run(["git", "describe", "--always", "--dirty"], text=True, capture_output=True,
                             cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or "?"
        m = dict(cpu=cpu, cores=os.cpu_count(), jobs=args.jobs, python=platform.python_version(), git=git,
                 numpy=np.__version__, numba=numba.__version__, date=time.strftime("%Y-%m-%d %H:%M %Z"),
                 argv=sys.argv[1:], quick=args.quick)
        self.data = {"meta": m, "notes": [JSON_NOTE]}
        print(f"## asae bench\n\n- {cpu}, {m['cores']} cores, {args.jobs} worker process(es)\n- Python "
              f"{m['python']}, NumPy {m['numpy']}, Numba {m['numba']}; asae at git {git}\n- {m['date']}: "
              f"`python bench.py {' '.join(m['argv'])}`", flush=True)

    def log(self, msg: str) -> None:
        """A line on stderr, unless ``--quiet``."""
        if not self.args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def progress(self, label: str, done: int, n: int, runs: tuple, t0: float, final: bool) -> None:
        """Seeds done in this cell, and the section's runs done / total with an ETA: in place on
        a terminal; otherwise a plain line at most every 10 s and when the section ends."""
        now = time.perf_counter()
        if self.args.quiet or not (self.tty or final or now - self.last >= 10):
            return
        el, self.last, (d, total) = now - t0, now, runs
        eta = f", ETA {el / d * (total - d):.0f} s" if 0 < d < total else ""
        print(("\r\033[K" if self.tty else "") + f"{label}: {done}/{n} seeds ({d}/{total} runs, {el:.0f} s{eta})",
              end="\n" if final or not self.tty else "", file=sys.stderr, flush=True)

    def table(self, section, title, headers, rows, records, notes=()):
        lines = [headers, ["---"] * len(headers), *rows]
        print(f"\n### {title}\n\n" + "\n".join("| " + " | ".join(map(str, r)) + " |" for r in lines)
              + "".join(f"\n\n{n}" for n in notes), flush=True)
        self.data.setdefault(section, {}).setdefault("tables", []).append(
            {"title": title, "headers": headers, "rows": rows, "records": records, "notes": notes})
        self.save()

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        self.data["failures"] = self.failures
        print(f"FAILED: {msg}", file=sys.stderr, flush=True)

    def save(self) -> None:
        if self.args.json:
            write_json(self.args.json, self.data)


# ---- Figures (matplotlib imported only here) --------------------------------------------
def pyplot():
    """matplotlib.pyplot on the Agg backend (files only)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _floats(x):
    return np.array([np.nan if v is None else v for v in np.atleast_1d(x)], float)


def save_figure(plt, fig, out_dir: str, name: str) -> str:
    """Write ``fig`` to ``out_dir/name`` at 120 dpi, close it, return the path."""
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def learning_curves(cells, out_dir: str) -> str:
    """One panel per game (≤ 3 a row): each method's mean learning curve over seeds with
    its 95 % t-interval as a band, the optimum as a labelled dashed line, one legend."""
    plt = pyplot()
    games = list(dict.fromkeys(c["game"] for c in cells))
    methods = list(dict.fromkeys(c["method"] for c in cells))
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
            ax.annotate(f"optimum {cs[0]['optimum']:g}", xy=(0.99, cs[0]["optimum"]), ha="right", va="top",
                        xycoords=("axes fraction", "data"), xytext=(0, -3), textcoords="offset points", fontsize=8)
            ax.set_title(f"{game}  ({cs[0]['seeds']} seeds)", fontsize=10)
            ax.set_ylabel("exact expected return J(π)" if cs[0]["exact_curve"] else
                          "sampled episode return\n(trailing mean over 20 rollouts)")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=color[m], lw=2, label=m) for m in methods]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="grey", alpha=0.3, label="95 % interval of the mean"))
    spare = list(axes.flat)[len(games):]
    for ax in spare:
        ax.set_axis_off()
    if spare:
        spare[0].legend(handles=handles, loc="center", frameon=False, title="method (mean over seeds)")
    else:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), frameon=False)
    fig.suptitle("Learning curves; every method starts from the same policy under a seed", fontsize=11)
    fig.tight_layout(rect=(0, 0 if spare else 0.06, 1, 1))
    return save_figure(plt, fig, out_dir, "learning.png")


def bias_bars(cells, out_dir: str) -> str:
    """Per game (columns), bars per method: the mean |Â^i − Ã^i| of the advantage (top) and
    of the gradient that reaches the logits after the PPO clip (bottom), each with its 95 %
    interval over seeds and a marker at the ω = 1 (async) estimate on the same runs."""
    plt = pyplot()
    games = list(dict.fromkeys(c["game"] for c in cells))
    methods = list(dict.fromkeys(c["method"] for c in cells))
    color = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(2, len(games), figsize=(0.55 * len(methods) * len(games) + 2, 7.4), squeeze=False)
    rows = (("mean_abs_bias", "bias_ci95", "async_same_path", "advantage bias\nmean |Âⁱ − Ãⁱ|"),
            ("grad_bias", "grad_bias_ci95", "grad_async_same_path", "gradient bias after the PPO clip\n"
             "mean |E ∇ with Âⁱ − E ∇ with Ãⁱ|"))
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
    handles = [plt.Rectangle((0, 0), 1, 1, color="grey", label="method, mean and 95 % interval over seeds"),
               plt.Line2D([], [], marker="D", mfc="white", mec="k", ls="none",
                          label="ω = 1 (the async estimate) at the same steps of the same runs")]
    fig.legend(handles=handles, loc="lower center", ncol=2, frameon=False)
    fig.suptitle("Exact bias against the synchronous target Ãⁱ (E6), payoff units", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(plt, fig, out_dir, "bias.png")
