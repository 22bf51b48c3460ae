"""bench.py's ``spread`` section: the neural learners on MPE's simple_spread (issue 18).

    python bench.py spread [--quick] [--seeds N] [--agents LIST] [--json PATH] [--plot DIR]
                           [--jobs N] [--dask ADDRESS]

MLP actors and a centralised MLP critic (``asae_neural.NetConfig``: MAPPO's MPE settings) on
``envs_spread.Spread`` with n agents; the score of a run is the normalised score of its final
stochastic policy (``Spread.normalized_score``: 0 = uniformly random actions, 1 = the
scripted assignment controller, both measured over 20,000 episodes) over ``eval_episodes``
evaluation episodes. Parts:

s. speed, per n: the update's matrix-multiply work per env step (counted), the rate it runs
   at beside this machine's float64 matmul rate measured in the same run, and training
   throughput (rollout inference included) beside the env's own step rate;
l. learning: async at NetConfig's defaults (200 updates of 128 envs × 25 steps = 640,000
   env steps) on Spread(3), ``--seeds`` seeds (20): median score, the fraction ≥ 0.7
   [Wilson], curves with 95 % bands;
m. methods: async, asae (weight clip 0.5, none, joint PPO clip), happo, coppo, a2po on
   Spread with n = 3, 5, 8 at the study budget (80 updates of 32 envs × 25 steps = 64,000
   env steps per run; NetConfig otherwise), ``--seeds`` paired seeds (20; the same initial
   networks for every method under a seed): mean score, paired differences against async
   and against asae (bootstrap 95 % interval of the mean difference, wins/losses, exact
   sign test), the ratio statistics (``track_ratios``), CPU time per run;
b. the budget study (not in the default): async, asae (and its joint clip), happo, coppo (the
   authors' and detached), a2po at n = 3 for 625 updates of NetConfig's defaults (2,000,000
   env steps, where async's median passes 0.6), 20 paired seeds: final score and AUC paired
   against async and asae, the difference by quarter of training, ratio statistics;
p. precision (not in the default): async with ``precision='float32'`` at part l's budget,
   seed by seed against part l's float64 runs (agreement margin :data:`PRECISION_MARGIN`);
a. parameter sharing (not in the default): async and asae with one shared actor at part b's
   budget, against their own-network runs of part b and against each other.

The budgets are what this 2-core machine affords (the whole section ≈ 1 hour); the same
command with them raised (``--study-iterations``, ``--learn-iterations``) is what a Dask
cluster (``--dask``) is for. --quick: n = 2, 3, two seeds, three updates of 8 envs — seconds.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import time
from types import SimpleNamespace

import numpy as np

import asae
import asae_learner as learner
import asae_neural as neural
import envs_spread
from bench_plan import FIELD_PARSERS, field_parser, parse_spec
from bench_run import experiment
from bench_stats import fmt_p, holm, mean_ci, sign_test, signed, wilson

METHODS = ("async", "asae", "asae:sync_clip=none", "asae:clip_ratio=joint", "happo", "coppo",
           "a2po")
REFERENCES = ("async", "asae")
#: Part b's arms: the competitors as their authors run them and our variants (issue 23).
BUDGET_METHODS = ("async", "asae", "asae:clip_ratio=joint", "happo", "coppo",
                  "coppo:coppo_detach=true", "a2po")
#: Part a's arms: MAPPO's parameter sharing (one actor for every agent, its input the observation
#: and the agent's one-hot id) for the simultaneous methods, each paired with its own-network
#: run of part b under the same seed (the sequential methods need a network per agent).
SHARED_METHODS = ("async:share_actor=true", "asae:share_actor=true")
#: Part p's arm: async with NetConfig.precision float32, paired with part l's float64 runs.
PRECISION_METHOD = "async:precision=float32"
#: Part p's agreement margin on the mean paired score difference, fixed before the runs: the
#: half-width of 0.4.0's published interval for part l's median (0.486 [0.413, 0.522]).
PRECISION_MARGIN = 0.05
#: What a method spec may set: the methods' (TabularConfig's) fields and these of NetConfig.
NET_PARSERS = {**FIELD_PARSERS, **{f.name: p for f in dataclasses.fields(neural.NetConfig)
                                   if f.name in ("share_actor", "precision")
                                   and (p := field_parser(f)) is not None}}
#: The order runs are queued in with --cache (stage by stage, seed by seed within a stage):
#: the cheap parts first, then the budget study's arms, then its sharing arms.
STAGES = dict(s=0, l=0, p=0, m=1, b=2, a=3)
#: Part b's budget: NetConfig's defaults (128 envs × 25 steps, 10 epochs, 1 minibatch) for
#: 625 updates = 2,000,000 env steps a run — where async's median score at n = 3 passes 0.6
#: (it is 0.49 at NetConfig's 200 updates; docs/spread.md, part b, says where it crosses).
BUDGET = dict(iterations=625)
WINDOWS = 4                                      # part b: training in quarters
QUANTILES = (0.05, 0.5, 0.95)
LEARN = dict()                                   # NetConfig's defaults
STUDY = dict(n_envs=32, iterations=80)           # 64,000 env steps per run
FULL = SimpleNamespace(agents=(3, 5, 8), seeds=20, learn_agents=3, learn=LEARN, study=STUDY,
                       speed_reps=5, budget=BUDGET, budget_agents=(3,))
QUICK = SimpleNamespace(agents=(2, 3), seeds=2, learn_agents=2, speed_reps=2,
                        learn=dict(n_envs=8, iterations=3, eval_episodes=8),
                        study=dict(n_envs=8, iterations=3, eval_episodes=8),
                        budget=dict(n_envs=8, iterations=4, eval_episodes=8), budget_agents=(2,))
TARGET = 0.7                                     # issue 18's learning bar (median score)
BOOT = 10_000
#: Seconds between the progress lines of one spread run on stderr (asae_learner.progress_printer,
#: printed by the worker running it); a shorter run prints none. None with --quiet.
PROGRESS_S = 30


def design(args) -> SimpleNamespace:
    """FULL or QUICK, with --seeds, --agents and the budgets (--study-iterations,
    --learn-iterations, each ≥ 1) applied."""
    d = SimpleNamespace(**vars(QUICK if args.quick else FULL))
    if args.seeds:
        d.seeds = args.seeds
    for flag, part in (("study_iterations", "study"), ("learn_iterations", "learn"),
                       ("budget_iterations", "budget")):
        value = getattr(args, flag, None)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1; got {value}")
            setattr(d, part, {**getattr(d, part), "iterations": value})
    if getattr(args, "agents", None):
        d.agents = d.budget_agents = tuple(args.agents)
    return d


def part_list(text: str) -> str:
    """--parts: a non-empty subset of 'slmbpa' (speed, learning, methods, budget study,
    precision, parameter sharing)."""
    if not text or set(text) - set("slmbpa") or len(set(text)) != len(text):
        raise argparse.ArgumentTypeError(f"--parts must be letters from 'slmbpa' (s speed, "
                                         f"l learning, m methods, b the budget study, p "
                                         f"float32 against float64, a parameter sharing at "
                                         f"the budget), each once; got {text!r}")
    return text


def agent_list(text: str) -> list:
    try:
        out = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--agents must be a comma list of integers; got "
                                         f"{text!r}") from None
    if not out or min(out) < 1 or max(out) > 64 or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"--agents must list distinct numbers 1..64; got "
                                         f"{text!r}")
    return out


# ---- One run -------------------------------------------------------------------------------
def spread_run(env, method: str, cfg, progress: float | None = None, label: str = "") -> dict:
    """One run: final score (stochastic and greedy), the training curve as scores, CPU and
    wall seconds, the ratio statistics when tracked. With ``progress``, a line on stderr every
    ``progress`` seconds of the run (``label``, the seed), through train's callback."""
    t = time.process_time()
    show = None if progress is None else learner.progress_printer(
        progress, label=f"{label or method} seed {cfg.seed}: ")
    res = neural.train(env, method, cfg, callback=show)
    curve = [None if not np.isfinite(x) else float(env.normalized_score(x))
             for x in res.mean_return]
    out = {"score": float(env.normalized_score(res.stochastic_return)),
           "greedy_score": float(env.normalized_score(res.greedy_return)),
           "curve": curve, "cpu_s": time.process_time() - t, "wall_s": res.wall_time}
    if res.ratios is not None:
        r = res.ratios
        out["ratios"] = {**{f"log_w_q{p:g}": r["log_w_quantiles"][p] for p in QUANTILES},
                         **{k: r[k] for k in ("ppo_clip_binds", "weight_clip_binds",
                                              "ess_fraction")}}
    return out


def spread(n: int) -> str:
    return f"spread:n_agents={n}"


def cells(args) -> list:
    """Part l's cell, part p's, then part m's (per n, every method, async and asae first),
    part b's and part a's. Each cell's runs print their own progress (:data:`PROGRESS_S`)
    unless --quiet; ``stage`` orders the queue (:data:`STAGES`)."""
    d, out = design(args), []
    every = None if getattr(args, "quiet", False) else PROGRESS_S

    def cell(part, n, method, size, tag="", **extra):
        _, kw = parse_spec(method, asae.METHODS, "method", NET_PARSERS)
        configs = [neural.NetConfig(**size, **kw, **extra, seed=s) for s in range(d.seeds)]
        return SimpleNamespace(part=part, n=n, game=spread(n), method=method, configs=configs,
                               tag=tag, stage=STAGES[part], outcome=functools.partial(
                                   spread_run, progress=every,
                                   label=f"spread {part} n={n} {method}"))
    out += [cell("l", d.learn_agents, "async", d.learn, " (learning)"),
            cell("p", d.learn_agents, PRECISION_METHOD, d.learn, " (precision)")]
    for part, agents, methods, size, tag in (
            ("m", d.agents, METHODS, d.study, ""),
            ("b", d.budget_agents, BUDGET_METHODS, d.budget, " (budget)"),
            ("a", d.budget_agents, SHARED_METHODS, d.budget, " (budget, shared)")):
        out += [cell(part, n, m, size, f" n={n}{tag}", track_ratios=True)
                for n in agents for m in methods]
    return out


# ---- Statistics ----------------------------------------------------------------------------
def bootstrap_mean_ci(x, seed: int = 0) -> tuple:
    """Percentile bootstrap 95 % interval of the mean of ``x`` (BOOT resamples, fixed seed)."""
    x = np.asarray(x, float)
    if x.size < 2:
        return (float("nan"),) * 2
    idx = np.random.default_rng(seed).integers(0, x.size, (BOOT, x.size))
    means = x[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def paired_scores(a, b) -> dict:
    """Seed-by-seed scores of two methods: mean difference a − b, its bootstrap interval,
    wins/losses (ties excluded) and the exact sign test."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    diff = np.array([x - y for x, y in pairs])
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    lo, hi = bootstrap_mean_ci(diff)
    return {"mean_diff": float(diff.mean()) if diff.size else float("nan"), "ci95": [lo, hi],
            "wins": wins, "losses": losses, "p_sign": sign_test(wins, losses),
            "pairs": len(pairs)}


def num(x: float) -> str:
    """Three decimals with a typographic minus, as the other columns."""
    return f"{x:.3f}".replace("-", "−")


def fmt_paired(p: dict) -> str:
    """mean [95 %] +wins/−losses p; a dash where fewer than 2 seeds pair (no interval)."""
    if p["pairs"] < 2:
        return f"— ({p['pairs']} paired seed{'' if p['pairs'] == 1 else 's'})"
    lo, hi = p["ci95"]
    return (f"{signed(p['mean_diff'])} [{signed(lo)}, {signed(hi)}] "
            f"+{p['wins']}/−{p['losses']} p={fmt_p(p['p_sign'])}")


def median_cpu(r) -> str:
    """A cell's median CPU seconds per run, or a dash if no run finished."""
    cpu = [x for x in r["cpu_s"] if x is not None]
    return f"{np.median(cpu):.0f}" if cpu else "—"


def mean_cell(scores) -> str:
    """mean [95 % bootstrap] of a cell's finished runs; a dash for none, no interval for one."""
    s = np.array([x for x in scores if x is not None], float)
    if s.size < 2:
        return num(s[0]) if s.size else "—"
    lo, hi = bootstrap_mean_ci(s)
    return f"{num(s.mean())} [{num(lo)}, {num(hi)}]"


def scores_of(c) -> list:
    """Scores in seed order (None for a failed run), so that pairs line up by seed."""
    return [r.get("score") if "error" not in r else None for r in c.results]


# ---- Part s: speed -------------------------------------------------------------------------
def net_flops(cfg, n: int, d: int, S: int, A: int, sequential: bool = False) -> tuple:
    """Matrix-multiply floating-point operations (2 per multiply-add) of one update and of one
    rollout's inference: forward 2·rows·Σ in·out per network, backward twice that (input
    and weight gradients); the update runs old log-probabilities (n actor forwards), V(s)
    and V(s') (2 critic forwards) and the critic's start values (1), then K epochs over
    the N rows of n actors (forward + backward) and of the critic (the backward without the
    first layer's input gradient when there is no input LayerNorm); sequential schedules add
    n − 1 actor forwards. Elementwise work (tanh, LayerNorm, softmax) is not counted."""
    h, L, N = cfg.hidden, cfg.layers, cfg.n_envs * cfg.rollout_len
    inputs = d + (n if cfg.share_actor else 0)

    def fwd(d_in, d_out):
        return 2 * (d_in * h + (L - 1) * h * h + h * d_out)

    def back(d_in, d_out):                 # no input gradient without an input LayerNorm
        return 2 * fwd(d_in, d_out) - (0 if cfg.layer_norm else 2 * d_in * h)
    actor, critic = fwd(inputs, A), fwd(S, 1)
    update = N * (n * actor + 3 * critic) + cfg.epochs * N * (
        n * (actor + back(inputs, A)) + critic + back(S, 1))
    update += (n - 1) * N * actor if sequential else 0
    rollout = cfg.rollout_len * cfg.n_envs * n * actor
    return update, rollout


def matmul_rate(reps: int) -> dict:
    """This machine's float64 matmul rate (GFLOP/s), in this process: a square 256 × 256
    product (near BLAS peak) and the networks' own shape, (3200 × 64) @ (64 × 64)."""
    out = {}
    for name, (m, k, nn) in (("square 256", (256, 256, 256)), ("3200×64 @ 64×64",
                                                                 (3200, 64, 64))):
        a, b = np.random.default_rng(0).standard_normal((2, max(m, k), max(k, nn)))
        a, b = np.ascontiguousarray(a[:m, :k]), np.ascontiguousarray(b[:k, :nn])
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(20):
                a @ b
            times.append((time.perf_counter() - t) / 20)
        out[name] = 2 * m * k * nn / float(np.median(times)) / 1e9
    return out


def matmul_replay(cfg, n: int, d: int, S: int, A: int, reps: int) -> tuple:
    """The update's matrix products alone (as :func:`net_flops` counts them), at its own
    shapes — rows in chunks of ``asae_neural.ROW_CHUNK``, each network's layer widths — on
    random matrices in ``cfg.precision``: (median seconds over ``reps``, flops, each network
    pass's (rows, input width, with backward) in order, the products' dtypes). What one
    update would cost if the elementwise work (tanh, LayerNorm, softmax, Adam, the method's
    kernel) were free; the ceiling of the update at this shape."""
    h, L, N = cfg.hidden, cfg.layers, cfg.n_envs * cfg.rollout_len
    dt, rng = np.dtype(cfg.precision), np.random.default_rng(0)

    def net(d_in, d_out):
        dims = [d_in] + [h] * L + [d_out]
        return [rng.standard_normal((a, b)).astype(dt) for a, b in zip(dims[:-1], dims[1:])]
    nets = {"actor": net(d + (n if cfg.share_actor else 0), A), "critic": net(S, 1)}
    def inputs(size):                                     # one pass: chunks of ROW_CHUNK
        return {k: [rng.standard_normal((c.stop - c.start, W[0].shape[0])).astype(dt)
                    for c in neural._chunks(size)] for k, W in nets.items()}
    whole = inputs(N)
    batches = [inputs(len(b)) for b in np.array_split(np.arange(N), cfg.minibatches)]
    flops, shapes, dtypes = [0], [], set()

    def mm(a, b):                                         # a product, its flops counted
        flops[0] += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        dtypes.add(np.result_type(a, b).name)
        return a @ b

    def passes(kind, backward, x=whole):
        W = nets[kind]
        for xc in x[kind]:
            shapes.append((xc.shape[0], xc.shape[1], backward))
            hs = [xc]
            for w in W:
                hs.append(mm(hs[-1], w))
            if backward:
                dy = hs[-1]
                for k, (w, h_in) in enumerate(zip(W[::-1], hs[-2::-1])):
                    mm(h_in.T, dy)                        # the weight's gradient
                    if cfg.layer_norm or k < len(W) - 1:  # the input's (as MLP.backward)
                        dy = mm(dy, w.T)
    times = []
    for _ in range(reps):
        flops[0] = 0
        shapes.clear()
        t = time.perf_counter()
        for _ in range(n):
            passes("actor", False)                        # old log-probabilities
        for _ in range(3):
            passes("critic", False)                       # V(s), V(s'), the critic's start
        for _ in range(cfg.epochs):
            for x in batches:
                for _ in range(n):
                    passes("actor", True, x)
                passes("critic", True, x)
        times.append(time.perf_counter() - t)
    return float(np.median(times)), flops[0], shapes, dtypes


def update_speed(n: int, reps: int, quick: bool, precision: str = "float64") -> dict:
    """Median seconds of one update (_net_update on one rollout, compile excluded), the
    whole train loop's env steps per second, and the env's own step rate."""
    env = envs_spread.Spread(n_agents=n)
    size = dict(n_envs=QUICK.study["n_envs"]) if quick else {}
    size["precision"] = precision
    cfg = neural.NetConfig(**size, iterations=1, eval_episodes=8)
    neural.train(env, "async", cfg)                                  # compile
    cfg_, run, (n_, n_actions, d, S) = neural._net_setup(env, "async", cfg)
    hp = learner._hyper(cfg, "async")
    T, B = cfg.rollout_len, cfg.n_envs
    batch = neural._NetBatch(np.zeros((T, B, n, d)), np.zeros((T, B, n), np.int64),
                           np.zeros((T, B)), np.zeros((T, B), bool), np.zeros((T, B), bool),
                           np.zeros((T, B, S)), np.zeros((T, B, S)))
    rng = learner._rng(0)
    carry = [*env.reset(B, seed=0), np.zeros(B)]
    carry[:2] = [np.asarray(carry[0], float), np.asarray(carry[1], float)]
    log = learner._Log(np.zeros(1), (), np.zeros(1))
    upd, roll = [], []
    for _ in range(reps):
        t = time.perf_counter()
        neural._net_rollout(env, run, carry, rng, batch)
        roll.append(time.perf_counter() - t)
        t = time.perf_counter()
        neural._net_update(hp, cfg, run, batch, rng, log)
        upd.append(time.perf_counter() - t)
    it = 4 if quick else 10
    t = time.perf_counter()
    neural.train(env, "async", neural.NetConfig(**size, iterations=it, eval_episodes=1))
    train_rate = it * B * T / (time.perf_counter() - t)
    acts = np.random.default_rng(0).integers(0, 5, (200, B, n))
    env.reset(B, seed=1)
    t = time.perf_counter()
    for a in acts:
        env.step(a)
    env_rate = 200 * B / (time.perf_counter() - t)
    flops_u, flops_r = net_flops(cfg, n, d, S, max(n_actions))
    replay_s = matmul_replay(cfg, n, d, S, max(n_actions), reps)[0]
    return {"n": n, "precision": precision, "update_s": float(np.median(upd)),
            "matmul_replay_s": replay_s,
            "rollout_s": float(np.median(roll)),
            "update_flops": flops_u, "rollout_flops": flops_r, "steps_per_update": B * T,
            "train_steps_per_s": train_rate, "env_steps_per_s": env_rate}


def part_s(args, rep, d) -> None:
    rows, recs, peaks = [], [], []
    for n, prec in ((n, p) for n in d.agents for p in ("float64", "float32")):
        before = matmul_rate(d.speed_reps)     # the machine's rate beside each update's timing
        s = update_speed(n, d.speed_reps, args.quick, prec)
        after = matmul_rate(d.speed_reps)
        s["matmul_gflops"] = {k: max(before[k], after[k]) for k in before}
        peak = max(s["matmul_gflops"].values())
        s["gflops"] = s["update_flops"] / s["update_s"] / 1e9
        s["of_peak"] = s["gflops"] / peak
        peaks.append(peak)
        recs.append(s)
        rows.append([n, prec, f"{s['update_flops'] / s['steps_per_update'] / 1e3:.0f} k",
                     f"{s['update_s'] * 1e3:.0f} ms", f"{s['gflops']:.1f}",
                     f"{100 * s['of_peak']:.0f} %",
                     f"{s['matmul_replay_s'] * 1e3:.0f} ms "
                     f"({100 * s['matmul_replay_s'] / s['update_s']:.0f} %)",
                     f"{s['train_steps_per_s']:,.0f}",
                     f"{s['env_steps_per_s']:,.0f}",
                     f"{s['env_steps_per_s'] / s['train_steps_per_s']:.0f}×"])
    rep.table("spread", "Spread s: the neural update's speed",
              ["n", "precision", "matmul flop / env step", "update (median)", "GFLOP/s",
               "float64 matmul GFLOP/s", "of float64 matmul",
               "its matmuls alone (of the update)", "train env-steps/s",
               "env.step alone", "env / train"],
              [r[:5] + [f"{p:.1f}"] + r[5:] for r, p in zip(rows, peaks)], {"runs": recs},
              ["Matmul GFLOP/s: this machine's float64 rate, one BLAS thread, measured in the "
               "same process just before and after each n's update timing (the larger of a "
               "256² product and the networks' shape, 3200 × 64 @ 64 × 64; best of the two "
               "measurements). An update of the default NetConfig "
               "(128 envs × 25 steps, 10 epochs, 64 × 2 tanh + LayerNorm, n actors + the "
               "critic); its matrix work is counted by `net_flops` (elementwise work — tanh, "
               "LayerNorm, softmax, the per-row method kernel — is not), timed alone "
               "(NetConfig.precision: the update's networks in float64 or float32) "
               f"(median of {d.speed_reps}). Its matmuls alone: the same products at the "
               "same shapes (rows in chunks of ROW_CHUNK, each layer's width) on random "
               "matrices, nothing else (`matmul_replay`): the update's ceiling were its "
               "elementwise work free. Train env-steps/s: whole `train` calls, "
               "rollout inference, updates and evaluation included."])


# ---- Parts l and m -------------------------------------------------------------------------
def summary(c, good) -> tuple:
    scores = [r["score"] for r in good]
    mean, half = mean_ci(np.array(scores)[:, None]) if scores else ([np.nan], [np.nan])
    rec = {"part": c.part, "n": c.n, "scores": scores_of(c),
           "greedy_scores": [r.get("greedy_score") for r in c.results],
           "curves": [r.get("curve") for r in c.results],
           "cpu_s": [r.get("cpu_s") for r in c.results],
           "ratios": [r.get("ratios") for r in c.results]}
    return rec, [f"{float(mean[0]):.3f} ± {float(half[0]):.3f}"]


def part_l(rep, record, cfg) -> None:
    s = np.array([x for x in record["scores"] if x is not None])
    k = int((s >= TARGET).sum())
    lo, hi = wilson(k, s.size)
    blo, bhi = bootstrap_mean_ci(s)
    meds = np.median(np.random.default_rng(1).choice(s, (BOOT, s.size)), axis=1)
    med_lo, med_hi = np.quantile(meds, [0.025, 0.975])
    budget = "NetConfig's defaults" if cfg.iterations == neural.NetConfig().iterations else (
        f"NetConfig's defaults but {cfg.iterations} updates")
    rep.table("spread", f"Spread l: async (MAPPO) learning, {budget}",
              ["n", "seeds", "env steps", "median score [95 % bootstrap]",
               "mean [95 % bootstrap]", f"≥ {TARGET} [Wilson]", "CPU s / run"],
              [[record["n"], s.size, f"{cfg.iterations * cfg.n_envs * cfg.rollout_len:,}",
                f"{num(np.median(s))} [{num(med_lo)}, {num(med_hi)}]",
                f"{num(s.mean())} [{num(blo)}, {num(bhi)}]",
                f"{k}/{s.size} [{lo:.2f}, {hi:.2f}]",
                f"{np.median([x for x in record['cpu_s'] if x is not None]):.0f}"]],
              {"record": record},
              ["Score: the final stochastic policy's normalised return over "
               f"{cfg.eval_episodes} evaluation episodes (0 random, 1 scripted assignment)."])


def part_m(rep, records, d, cfg) -> None:
    by = {(r["n"], r["method"]): r for r in records if r["part"] == "m"}
    rows = []
    for n in d.agents:
        for m in METHODS:
            r = by.get((n, m))
            if r is None:
                continue
            cells_ = [n, m, mean_cell(r["scores"])]
            for ref in REFERENCES:
                cells_.append("—" if m == ref else
                              fmt_paired(paired_scores(r["scores"], by[n, ref]["scores"])))
            cpu = [x for x in r["cpu_s"] if x is not None]
            cells_.append(f"{np.median(cpu):.1f}" if cpu else "—")
            rows.append(cells_)
    rep.table("spread", "Spread m: every method with MLP actors, n = "
              + ", ".join(map(str, d.agents)),
              ["n", "method", "mean score [95 % bootstrap]", "− async: mean [95 %] +w/−l p",
               "− asae: mean [95 %] +w/−l p", "CPU s / run"], rows, {},
              [f"{d.seeds} paired seeds per cell (the same initial networks for every method "
               f"under a seed); {cfg.iterations} updates of {cfg.n_envs} envs × "
               f"{cfg.rollout_len} steps = {cfg.iterations * cfg.n_envs * cfg.rollout_len:,} "
               "env steps per run; NetConfig otherwise (epochs 10, 1 minibatch, Adam 7e-4, "
               "PPO ε 0.2, asae weight clip 0.5, CoPPO ε_in 0.1, A2PO ε_o 0.1, c_ε 0.5). "
               "Differences: mean of the seed-by-seed score differences with a percentile "
               "bootstrap 95 % interval (10,000 resamples), wins/losses, exact sign test."])
    ratio_table(rep, by, [(n, m) for n in d.agents for m in METHODS], "Spread m")


def ratio_table(rep, by: dict, keys: list, title: str) -> None:
    """The ratio statistics of the cells ``by[key]`` for each (n, method) in ``keys``."""
    rows = []
    for n, m in keys:
        rs = [x for x in by.get((n, m), {}).get("ratios", []) if x]
        if not rs:
            continue
        mean = {k: float(np.mean([x[k] for x in rs])) for k in rs[0]}
        rows.append([n, m] + [num(mean[f"log_w_q{p:g}"]) for p in QUANTILES]
                    + [f"{mean[k]:.3f}" for k in ("ppo_clip_binds", "weight_clip_binds",
                                                  "ess_fraction")])
    rep.table("spread", f"{title}: ratio statistics", ["n", "method"]
              + [f"log w q{p:g}" for p in QUANTILES]
              + ["PPO clip binds", "weight clip acts", "ESS fraction"], rows, {},
              ["Means over seeds of each run's statistics (`Config.track_ratios`, summed over "
               "the whole run): quantiles of log w^i = Σ_{j≠i} log ρ^j over samples, moving "
               "agents and gradient steps; the fraction of samples whose PPO clip binds and "
               "whose weight clip acts; the effective-sample-size fraction of the method's "
               "weights."])


def curve_means(curves, lo: float = 0.0, hi: float = 1.0) -> list:
    """Each run's mean training-curve score over the fraction [lo, hi) of its updates (None
    for a failed run or a window without a finished episode)."""
    out = []
    for c in curves:
        x = np.array([np.nan if v is None else v for v in (c or [])], float)
        w = x[int(round(lo * x.size)):int(round(hi * x.size))]
        out.append(float(np.nanmean(w)) if np.isfinite(w).any() else None)
    return out


def crossing(curves, level: float, smooth: int = 10):
    """The first update at which the median over runs of the training-curve score, averaged
    over ``smooth`` updates, reaches ``level``; None if it never does."""
    x = np.array([[np.nan if v is None else v for v in c] for c in curves if c], float)
    if x.size == 0:
        return None
    med = np.nanmedian(x, axis=0)
    k = np.convolve(np.nan_to_num(med), np.ones(smooth) / smooth, mode="valid")
    hit = np.nonzero(k >= level)[0]
    return int(hit[0] + smooth) if hit.size else None


def pfmt(p) -> str:
    """A p value as the tables print it; a dash where there is no test."""
    return "—" if p is None else fmt_p(p)


def holm_family(by: dict, agents, methods) -> list:
    """Per n, every arm's sign-test p against async (final score, AUC) adjusted by Holm over
    the arms of that n (bench_stats.holm); an arm without 2 paired seeds has no test."""
    out = []
    for n in agents:
        if (n, "async") not in by:
            continue
        arms = [m for m in methods if m != "async" and (n, m) in by]
        ref = by[n, "async"]
        fam = {"n": n}
        for what, get in (("final", lambda r: r["scores"]),
                          ("auc", lambda r: curve_means(r["curves"]))):
            tests = [paired_scores(get(by[n, m]), get(ref)) for m in arms]
            fam[what] = dict(zip(arms, holm([t["p_sign"] if t["pairs"] >= 2 else None
                                             for t in tests])))
        out.append(fam)
    return out


def part_b(rep, records, d, cfg) -> None:
    """The budget study's tables: final score and area under the curve, paired against async
    and asae; the paired difference with async in each quarter of training; ratios."""
    by = {(r["n"], r["method"]): r for r in records if r["part"] == "b"}
    rows, where = [], []
    for n in d.budget_agents:
        for m in BUDGET_METHODS:
            r = by.get((n, m))
            if r is None:
                continue
            s = [x for x in r["scores"] if x is not None]
            auc = curve_means(r["curves"])
            row = [n, m, mean_cell(s), num(np.median(s)) if s else "—"]
            for ref in REFERENCES:
                row.append("—" if m == ref else
                           fmt_paired(paired_scores(r["scores"], by[n, ref]["scores"])))
            row.append(mean_cell(auc))
            row.append("—" if m == "async" else fmt_paired(paired_scores(
                auc, curve_means(by[n, "async"]["curves"]))))
            row.append(median_cpu(r))
            rows.append(row)
            if m != "async":
                where.append([n, m] + [fmt_paired(paired_scores(
                    curve_means(r["curves"], q / WINDOWS, (q + 1) / WINDOWS),
                    curve_means(by[n, "async"]["curves"], q / WINDOWS, (q + 1) / WINDOWS)))
                    for q in range(WINDOWS)])
    steps = cfg.n_envs * cfg.rollout_len
    cross = {n: crossing(by[n, "async"]["curves"], 0.6) for n in d.budget_agents
             if (n, "async") in by}
    family = holm_family(by, d.budget_agents, BUDGET_METHODS)
    rep.table("spread", f"Spread b: every method at {cfg.iterations * steps:,} env steps",
              ["n", "method", "final score [95 % bootstrap]", "median", "− async", "− asae",
               "AUC [95 % bootstrap]", "AUC − async", "CPU s / run"], rows,
              {"crossing_0.6": cross, "holm": family},
              [f"{d.seeds} paired seeds per cell (the same initial networks for every method "
               f"under a seed); {cfg.iterations} updates of {cfg.n_envs} envs × "
               f"{cfg.rollout_len} steps; NetConfig otherwise (precision {cfg.precision}). "
               "Final score: the final stochastic policy over "
               f"{cfg.eval_episodes} episodes; AUC: the mean training-curve score over all "
               "updates. Differences: seed by seed, mean with a percentile bootstrap 95 % "
               "interval, wins/losses, exact sign test. async's median training score "
               "(smoothed over 10 updates) first reaches 0.6 at update "
               + ", ".join(f"{c} ({c * steps:,} env steps) at n = {n}" if c else
                           f"— (never) at n = {n}" for n, c in cross.items()) + ". "
               "Many arms, one question (does any differ from async?): the sign tests' p "
               "adjusted by Holm's step-down over the arms of each n — " + "; ".join(
                   f"n = {f['n']}: final score " + ", ".join(
                       f"{m} {pfmt(p)}" for m, p in f["final"].items()) + "; AUC " + ", ".join(
                       f"{m} {pfmt(p)}" for m, p in f["auc"].items()) for f in family)
               + " (the bootstrap intervals are each at 95 %, unadjusted)."])
    rep.table("spread", "Spread b: where in training (− async, by quarter of the updates)",
              ["n", "method"] + [f"updates {q * cfg.iterations // WINDOWS + 1}–"
                                 f"{(q + 1) * cfg.iterations // WINDOWS}"
                                 for q in range(WINDOWS)], where, {},
              ["Each run's mean training-curve score over the quarter, minus async's under the "
               "same seed: mean [95 % bootstrap] +wins/−losses, sign test p."])
    ratio_table(rep, by, [(n, m) for n in d.budget_agents for m in BUDGET_METHODS],
                "Spread b")


def part_p(rep, records, cfg) -> None:
    """float32 against float64: async at part l's budget, the same seeds in both precisions."""
    by = {r["part"]: r for r in records if r["part"] in ("l", "p")}
    f64, f32 = by["l"], by["p"]
    rows = []
    for name, r in (("float64", f64), ("float32", f32)):
        s = np.array([x for x in r["scores"] if x is not None])
        k = int((s >= TARGET).sum())
        w_lo, w_hi = wilson(k, s.size) if s.size else (0.0, 1.0)
        rows.append([name, s.size, num(np.median(s)) if s.size else "—", mean_cell(s),
                     f"{k}/{s.size} [{w_lo:.2f}, {w_hi:.2f}]", median_cpu(r)])
    diff = paired_scores(f32["scores"], f64["scores"])
    auc = paired_scores(curve_means(f32["curves"]), curve_means(f64["curves"]))
    cpu = [a / b for a, b in zip(f32["cpu_s"], f64["cpu_s"]) if a and b]
    lo, hi = diff["ci95"]
    if diff["pairs"] < 2:
        verdict = "undetermined (fewer than 2 paired seeds)"
    else:
        verdict = (f"[{lo:+.3f}, {hi:+.3f}], " + ("inside" if -PRECISION_MARGIN <= lo and
                                                 hi <= PRECISION_MARGIN else "not inside")
                   + f" ±{PRECISION_MARGIN}").replace("-", "−")
    rep.table("spread", "Spread p: float32 against float64 (async, n = "
              f"{f64['n']}, {cfg.iterations * cfg.n_envs * cfg.rollout_len:,} env steps)",
              ["precision", "seeds", "median score", "mean [95 % bootstrap]",
               f"≥ {TARGET} [Wilson]", "CPU s / run"], rows,
              {"paired": diff, "auc_paired": auc, "cpu_ratio_median": float(np.median(cpu))
               if cpu else None, "margin": PRECISION_MARGIN},
              [f"The same seeds in both precisions (NetConfig.precision; float64 = part l's "
               f"runs). float32 − float64, seed by seed: final score {fmt_paired(diff)} — "
               f"the interval is {verdict} (the margin fixed before the runs); training AUC "
               f"{fmt_paired(auc)}; CPU time float32/float64: median "
               + (f"{np.median(cpu):.2f} over {len(cpu)} pairs." if cpu else "—.")
               + " The two precisions' runs part within a few updates (float32 rounds each "
               "update's gradient differently), so a pair is two draws of the same "
               "distribution, not one run twice."])


def part_a(rep, records, d, cfg) -> None:
    """Parameter sharing at the budget: each shared-actor arm against the same method with a
    network per agent (part b, same seeds), and asae − async within each choice."""
    by = {(r["n"], r["method"]): r for r in records if r["part"] in ("a", "b")}
    rows = []
    for n in d.budget_agents:
        for m in SHARED_METHODS:
            own = m.split(":")[0]
            if (n, m) not in by or (n, own) not in by:
                continue
            r, o = by[n, m], by[n, own]
            ref = SHARED_METHODS[0] if m != SHARED_METHODS[0] else None
            rows.append([n, m, mean_cell(r["scores"]),
                         fmt_paired(paired_scores(r["scores"], o["scores"])),
                         fmt_paired(paired_scores(curve_means(r["curves"]),
                                                  curve_means(o["curves"]))),
                         "—" if ref is None or (n, ref) not in by else
                         fmt_paired(paired_scores(r["scores"], by[n, ref]["scores"])),
                         median_cpu(r)])
    picture, numbers = [], []                     # does sharing change asae − async?
    for n in d.budget_agents:
        sc = {m: by[n, m]["scores"] for m in ("async", "asae", *SHARED_METHODS)
              if (n, m) in by}
        if len(sc) < 4:
            continue
        own, shared = ([None if x is None or y is None else y - x
                        for x, y in zip(sc[a], sc[b])]
                       for a, b in (("async", "asae"), SHARED_METHODS))
        got = {"n": n, "own": paired_scores(sc["asae"], sc["async"]),
               "shared": paired_scores(sc[SHARED_METHODS[1]], sc[SHARED_METHODS[0]]),
               "shared_minus_own": paired_scores(shared, own)}
        numbers.append(got)
        picture.append(f"n = {n}: asae − async with own networks {fmt_paired(got['own'])}, "
                       f"shared {fmt_paired(got['shared'])}; shared − own, seed by seed: "
                       f"{fmt_paired(got['shared_minus_own'])}.")
    rep.table("spread", "Spread a: parameter sharing at the budget (MAPPO's default)",
              ["n", "method", "final score [95 % bootstrap]", "− own networks",
               "AUC − own networks", "− async (shared)", "CPU s / run"], rows,
              {"asae_minus_async": numbers},
              [f"{d.seeds} paired seeds; part b's budget ({cfg.iterations} updates of "
               f"{cfg.n_envs} envs × {cfg.rollout_len} steps). Shared: one actor for every "
               "agent, its input the observation and the agent's one-hot id "
               "(NetConfig.share_actor); own networks: the same method in part b under the "
               "same seed. Differences as in part b. Does sharing change asae's reading? "
               + " ".join(picture)])
    ratio_table(rep, by, [(n, m) for n in d.budget_agents for m in SHARED_METHODS], "Spread a")


def spread_section(args, rep) -> None:
    """Neural learners on Spread: speed (matmul work and rate, throughput); async's learning at
    NetConfig's defaults (n = 3, 20 seeds, 640,000 env steps each); every non-exact method
    (async, asae ×3 clips, happo, coppo, a2po) × n = 3, 5, 8 × 20 paired seeds at 64,000 env
    steps per run: scores, paired differences with bootstrap intervals and sign tests,
    ratio statistics, CPU time. Not in the default run (≈ 1 hour on 2 cores)."""
    d = design(args)
    parts = getattr(args, "parts", None) or "slm"
    rep.out("\n## Spread: MLP actors and a centralised MLP critic (issue 18)")
    if "s" in parts and not getattr(args, "status", False):       # --status: runs nothing
        part_s(args, rep, d)
    need = set(parts) | ({"l"} if "p" in parts else set())        # p pairs with l's runs
    shared = {m.split(":")[0] for m in SHARED_METHODS}             # a pairs with b's
    todo = [c for c in cells(args) if c.part in need
            or c.part == "b" and "a" in parts and c.method in shared]
    if not todo:
        if getattr(args, "status", False):
            rep.out("\nspread: no runs to cache in these parts (--status)")
        return
    experiment(args, rep, "spread", todo, summary, spread_run)
    records = rep.data["spread"]["cells"]
    first = {c.part: c.configs[0] for c in reversed(todo)}
    if "l" in need:
        part_l(rep, next(r for r in records if r["part"] == "l"), first["l"])
    if "p" in parts:
        part_p(rep, records, first["p"])
    if "m" in parts:
        part_m(rep, records, d, first["m"])
    if "b" in parts:
        part_b(rep, records, d, first["b"])
    if "a" in parts:
        part_a(rep, records, d, first["a"])
    if args.plot:
        from bench_plot import spread_figure
        rep.figure(spread_figure(records, args.plot), "Spread: mean normalised training "
                   "return per update, 95 % t-bands over seeds: the learning run (parts l, p), "
                   "every method per part and n, the budget study's differences from async "
                   "(seed by seed, a trailing mean of 10 updates) and parameter sharing (own "
                   "networks solid, shared actor dashed), as the parts ran")
