"""asae bench: how fast the kernels, envs and learner are, how well each method learns, and
when ASAE matters (the ``study`` section, bench_study.py).

    python bench.py                            # everything: speed, learn, bias, study
    python bench.py --quick                    # the same, CI-sized
    python bench.py speed|learn|bias|study -h  # one section and its options
    python bench.py learn --games penalty:k=-50 --methods async,asae --seeds 100 --epochs 8

Markdown tables go to stdout, progress to stderr. ``--json PATH`` is rewritten atomically
after every finished cell; ``--plot DIR`` draws figures (extra ``plot``). Runs are
independent per seed and spread over ``--jobs`` processes; results do not depend on it.
Exit status 1 if a run failed or a kernel disagreed with its NumPy reference.
"""
from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import dataclasses
import math
import multiprocessing
import os
import sys
import time
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.modules.setdefault("bench", sys.modules[__name__])   # as a script too: the `bench` bench_study imports
_t0 = time.perf_counter()
import asae  # noqa: E402
import envs  # noqa: E402
IMPORT_S = time.perf_counter() - _t0
import numba  # noqa: E402

import bench_study  # noqa: E402 — the study section; it runs on this module's plan and experiment
from bench_report import Report, fmt_success, mean_ci, sign_test, success  # noqa: E402

# ---- Speed -------------------------------------------------------------------------------
def timed(fn, repeats: int, min_time: float) -> tuple[float, float]:
    """(first, median): seconds of the first call of ``fn()`` (compilation or cache load
    included), and the median per call over ``repeats`` warm repeats, each looping ``fn``
    long enough to last ≥ ``min_time``."""
    t0 = time.perf_counter()
    fn()
    first, t0 = time.perf_counter() - t0, time.perf_counter()
    fn()
    number, samples = max(1, math.ceil(min_time / max(time.perf_counter() - t0, 1e-9))), []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return first, float(np.median(samples))

def gae_numpy(r, v, nv, term, trunc, gamma=0.99, lam=0.95):
    """GAE (E10) in NumPy: δ and traces vectorised, one backward loop over t across the batch."""
    delta, trace = r + np.where(term, 0.0, gamma * nv) - v, np.where(term | trunc, 0.0, gamma * lam)
    for t in range(r.shape[0] - 2, -1, -1):
        delta[t] += trace[t] * delta[t + 1]
    return delta, delta + v

def surrogate_grad_numpy(z, a, olp, adv, eps=0.2):
    """E8's gradient in NumPy: Âρ(1[k=a] − π_k) per softmax row, 0 where the clip binds."""
    i, e = np.arange(z.shape[0]), np.exp(z - z.max(1, keepdims=True))
    rho = np.exp(np.minimum(np.log(e[i, a] / e.sum(1)) - olp, 300.0))
    g = np.where(((adv > 0) & (rho > 1 + eps)) | ((adv < 0) & (rho < 1 - eps)), 0.0, adv * rho)
    out = -e / e.sum(1, keepdims=True) * g[:, None]
    out[i, a] += g
    return out

KERNELS = {  # public kernel: (asae call, vectorised NumPy reference) on the inputs x
    "softmax": (lambda x: asae.softmax(x.z),
                lambda x: (e := np.exp(x.z - x.z.max(1, keepdims=True))) / e.sum(1, keepdims=True)),
    "log_softmax": (lambda x: asae.log_softmax(x.z),
                    lambda x: (s := x.z - x.z.max(1, keepdims=True)) - np.log(np.exp(s).sum(1, keepdims=True))),
    "sync_weights": (lambda x: asae.sync_weights(x.lr, 0.5),
                     lambda x: np.exp(np.clip(x.lr.sum(1, keepdims=True) - x.lr, np.log(0.5), np.log(1.5)))),
    "sequential_weights": (lambda x: asae.sequential_weights(x.lr, [2, 0, 1]),  # M: 1, ρ², ρ²ρ⁰ for 2, 0, 1
                           lambda x: np.exp(np.cumsum(np.c_[0 * x.a, x.lr[:, [2, 0]]], 1))[:, [1, 2, 0]]),
    "counterfactual_advantage": (lambda x: asae.counterfactual_advantage(x.q, x.pi, x.a),
                                 lambda x: x.q[np.arange(len(x.a)), x.a] - np.einsum("na,na->n", x.pi, x.q)),
    "clipped_surrogate": (lambda x: asae.clipped_surrogate(x.rho, x.adv, 0.2),
                          lambda x: np.minimum(x.rho * x.adv, np.clip(x.rho, 0.8, 1.2) * x.adv)),
    "clipped_surrogate_grad": (lambda x: asae.clipped_surrogate_grad(x.z, x.a, x.olp, x.adv, 0.2),
                               lambda x: surrogate_grad_numpy(x.z, x.a, x.olp, x.adv)),
    "method_advantages (asae)": (lambda x: asae.method_advantages("asae", x.adv, x.lr, sync_clip=0.5),
                                 lambda x: x.adv[:, None] * KERNELS["sync_weights"][1](x))}

def speed(args, rep) -> None:
    """Speed: kernels vs NumPy, training throughput vs env stepping, first-call latency.
    GAE and every public kernel against a vectorised NumPy reference on one thread (✓ where
    asae is at least as fast); ``train``'s env steps/s beside its env's own batched step
    rate at the same batch size (the learner's ceiling); the first-call latency (Numba
    compilation or cache load) of each."""
    print("\n## Speed\n")
    (reps, min_t), rng, first, cases = (5, .005) if args.quick else (11, .05), np.random.default_rng(0), {}, []
    for T, B in [(128, 1), (128, 64), (512, 4096)] + ([] if args.quick else [(1024, 64), (128, 1024)]):
        r, v, nv = rng.standard_normal((3, T, B))
        te = rng.random((T, B)) < 0.02
        x = (r, v, nv, te, (rng.random((T, B)) < 0.01) & ~te)
        cases.append(("gae", f"T={T}, B={B}", lambda x=x: asae.gae(*x, 0.99, 0.95), lambda x=x: gae_numpy(*x)))
    for N in (10**3, 10**5) if args.quick else (10**3, 10**4, 10**5, 10**6):
        x = SimpleNamespace(z=rng.standard_normal((N, 5)), q=rng.standard_normal((N, 5)), a=rng.integers(0, 5, N),
                            pi=rng.dirichlet(np.ones(5), N), lr=rng.normal(0, .1, (N, 3)),
                            adv=rng.standard_normal(N), rho=np.exp(rng.normal(0, .2, N)))
        x.olp = np.log(rng.uniform(0.05, 1, N))
        cases += [(k, f"N={N:.0e}", lambda f=f, x=x: f(x), lambda g=g, x=x: g(x)) for k, (f, g) in KERNELS.items()
                  if hasattr(asae, k.split()[0])]
    rows, recs, threads = [], [], numba.get_num_threads()
    numba.set_num_threads(1)
    rep.log(f"speed: {len(cases)} kernel timings, then env stepping and train throughput")
    for name, size, ours, ref in cases:
        (f, t), t_np = timed(ours, reps, min_t), timed(ref, reps, min_t)[1]    # the first call first
        if not all(np.allclose(u, w, rtol=1e-7, atol=1e-9) for u, w in zip(*(
                (y,) if isinstance(y, np.ndarray) else y for y in (ours(), ref())))):
            rep.fail(f"{name} ({size}): asae and its NumPy reference disagree")
        first.setdefault(name, (f, t))
        rows.append([name, size, f"{t * 1e6:,.1f}", f"{t_np * 1e6:,.1f}", f"{t_np / t:.2f}", "✓✗"[t > t_np]])
        recs.append({"kernel": name, "size": size, "asae_s": t, "numpy_s": t_np, "first_call_s": f})
    numba.set_num_threads(threads)
    rep.table("speed", "Public kernels vs NumPy, one thread", ["kernel", "size", "asae µs", "NumPy µs",
              "NumPy / asae", "asae ≤ NumPy"], rows, recs, [
              "Median of warm repeats after a first call, numba.set_num_threads(1), results checked to agree. "
              "gae: (T, B), 2 % terminations, 1 % truncations; others: N rows of 5 actions or 3 agents. asae "
              "validates its inputs, the NumPy references do not."])
    rows, recs = [], []
    for game, B, T, iters in (("climbing", 32, 8, 400), ("two-step", 32, 8, 400), ("grid", 64, 16, 100)):
        env, iters, rate = make_game(game), iters // 10 if args.quick else iters, {}
        for b in (1, B, 4096):
            acts = np.stack([rng.integers(0, k, b) for k in env.n_actions], 1)
            env.reset(b, seed=0)
            f, t = timed(lambda: env.step(acts), reps, min_t)
            rate[b] = b / t
            first.setdefault(f"{game}: env.step", (f, t))
        for m in [m for m in asae.METHODS if applicable(m, env)]:
            cfg = asae.Config(**{**game_defaults(env, False), "iterations": iters})
            f, t = first[f"{game}: train({m!r})"] = timed(lambda: asae.train(env, m, cfg), 3, 0.0)
            rows.append([game, f"{B}×{T}", m, f"{iters * B * T / t:,.0f}", f"{rate[B]:,.0f}",
                         f"{iters * B * T / t / rate[B]:.2f}", f"{rate[1]:,.0f}", f"{rate[4096]:,.0f}"])
            recs.append({"game": game, "method": m, "n_envs": B, "rollout_len": T, "iterations": iters,
                         "train_env_steps_per_s": iters * B * T / t, "env_step_rate": rate})
    rep.table("speed", "Training throughput vs the env's own batched step rate (env steps/s)", [
              "game", "B×T", "method", "train", "env.step at B", "train / env.step", "env.step at B = 1",
              "at B = 4096"], rows, recs, [
              "One step of each of B envs = B env steps. train: median of 3 whole `asae.train` runs (rollouts, "
              "updates, evaluation) after a first run, per-game Config defaults. env.step: the public batched "
              "step on random joint actions, the learner's ceiling."])
    rep.table("speed", "First-call latency (compilation or cache load)", ["call", "first call ms", "warm ms"],
              [["import asae, envs (incl. numba)", f"{IMPORT_S * 1e3:,.1f}", "—"]]
              + [[n, f"{f * 1e3:,.1f}", f"{t * 1e3:,.3g}"] for n, (f, t) in first.items()],
              [{"call": n, "first_s": f, "warm_s": t} for n, (f, t) in first.items()], [
              "The first call in this process, at the smallest size above: compilation on the first run "
              "after installing or editing asae.py / envs.py, loading Numba's cache after that."])

# ---- Experiments: games, methods, a Config per seed --------------------------------------
GAMES = {"climbing": envs.climbing, "penalty": envs.penalty, "qtran": envs.qtran,
         "two-step": envs.TwoStepGame, "grid": envs.GridForaging}
DEFAULTS = {"learn": ("climbing,penalty:k=-100,qtran,two-step,grid", asae.METHODS),
            "bias": ("climbing,penalty:k=-100,qtran", asae.METHODS + ("asae:sync_clip=none",))}
SET_BY_BENCH = ("seed", "track_bias", "record_policies")      # per seed / by the section

def parse_spec(spec: str, known, what: str = "game", parsers=None) -> tuple[str, dict]:
    """``name:key=value:...`` → (name, {key: value}), values as Python literals (else text)
    or through ``parsers[key]``; ValueError saying what is wrong."""
    name, *params = [p.strip() for p in spec.split(":")]
    if name not in known:
        raise ValueError(f"unknown {what} {name!r} in {spec!r}; choose from {', '.join(known)}")
    kw = {}
    for p in params:
        key, eq, val = (s.strip() for s in p.partition("="))
        if not (key and eq and val) or key in kw or (parsers is not None and key not in parsers):
            raise ValueError(f"{what} {spec!r}: {p!r} is not a new key=value parameter"
                             + (" with a settable Config field" if parsers else ""))
        try:
            kw[key] = parsers[key](val) if parsers else ast.literal_eval(val)
        except (ValueError, SyntaxError):
            kw[key] = val
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{what} {spec!r}: {exc}") from None
    return name, kw

def make_game(spec: str, _cache={}):  # noqa: B006 — one env per spec and process
    """The env a spec names: ``penalty:k=-50:n_agents=3`` → ``envs.penalty(k=-50, n_agents=3)``."""
    if spec not in _cache:
        name, kw = parse_spec(spec, GAMES)
        try:
            _cache[spec] = GAMES[name](**kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"game {spec!r}: {exc}") from None
    return _cache[spec]

def applicable(method: str, env) -> bool:
    """The exact methods (exact_sync, exact_async) enumerate a payoff: one-step matrix games."""
    return not method.startswith("exact") or getattr(env, "payoff", None) is not None and env.n_states == 1

def exact(env) -> bool:
    """Whether J(π) is computed exactly (matrix and two-step games) rather than sampled."""
    return getattr(env, "payoff", None) is not None or isinstance(env, envs.TwoStepGame)

def game_defaults(env, quick: bool) -> dict:
    """Per-game defaults, the same for every method: rewards scaled by 1/max|payoff|; matrix
    and two-step games 100 updates of 32 envs × 8 steps (--quick: 20); the grid 400 updates
    of 64 × 16 (--quick: 30) at lr_actor 3 (chosen on async alone, 3 seeds: at 1.0 a third
    of the seeds found no food). Command-line flags override them."""
    if isinstance(env, envs.GridForaging):
        return {"iterations": 30 if quick else 400, "n_envs": 64, "rollout_len": 16, "lr_actor": 3.0}
    peak = max(float(np.abs(getattr(env, k)).max()) for k in ("payoff", "payoff_2a", "payoff_2b") if hasattr(env, k))
    return {"iterations": 20 if quick else 100, "n_envs": 32, "rollout_len": 8, "reward_scale": 1 / (peak or 1)}

def field_parser(f):
    """The flag parser of a Config field from its annotation (``float | None`` → a float or
    'none'); None if the type has no text form (e.g. tables)."""
    names = [s.strip() for s in str(getattr(f.type, "__name__", f.type)).split("|")]
    nullable, base = "None" in names, [n for n in names if n != "None"]
    base = {"float": float, "int": int, "str": str, "bool": bool}.get(base[0]) if len(base) == 1 else None
    kind = "true/false" if base is bool else getattr(base, "__name__", "")

    def parse(text: str):
        if nullable and text.lower() == "none":
            return None
        try:
            return {"true": True, "false": False}[text.lower()] if base is bool else base(text)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(f"{f.name} takes {kind}{' or none' * nullable}, not {text!r}") from None
    parse.metavar = ("BOOL" if base is bool else kind.upper()) + "|none" * nullable
    return parse if base else None

FIELD_PARSERS = {f.name: p for f in dataclasses.fields(asae.Config)
                 if f.name not in SET_BY_BENCH[1:] and (p := field_parser(f)) is not None}

def plan(args, kind: str) -> list:
    """The (game, method) cells of a learn/bias run or a study setting, a Config per seed, all
    built (so validated) before anything runs. Precedence: per-game defaults < command-line
    flags (the study: its setting) < the method spec's parameters (``asae:sync_clip=none``)."""
    games, methods = DEFAULTS[kind]
    seeds, first = args.seeds or (3 if args.quick else {"learn": 20}.get(kind, 10)), args.overrides.get("seed", 0)
    methods = sorted([m.strip() for m in (args.methods or ",".join(methods)).split(",") if m.strip()],
                     key=lambda m: m != "async")              # the paired reference first
    cells = []
    for game in [g.strip() for g in (args.games or games).split(",") if g.strip()]:
        env = make_game(game)
        if kind == "bias" and not applicable("exact", env):
            raise ValueError(f"bias needs one-step matrix games; {game!r} is not one")
        base = {**game_defaults(env, args.quick), "record_policies": kind == "learn" and exact(env), **args.overrides}
        for m in methods:
            name, kw = parse_spec(m, asae.METHODS, "method", {k: v for k, v in FIELD_PARSERS.items() if k != "seed"})
            if not applicable(name, env) and args.methods:
                raise ValueError(f"method {name!r} needs a one-step matrix game; {game!r} is not one")
            try:
                cells += [SimpleNamespace(game=game, method=m, configs=[asae.Config(**{
                    **base, **kw, "seed": first + s}) for s in range(seeds)])] if applicable(name, env) else []
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{game} / {m}: {exc}") from None
    return cells

def setting(cells) -> str:
    """A table note: the seeds, and per game the Config fields off their defaults."""
    d, first = asae.Config(), {}
    for c in cells:
        first.setdefault(c.game, c.configs[0])          # the first method's (async's, if run)
    off = {g: ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in vars(cfg).items()
                        if k not in SET_BY_BENCH and v != getattr(d, k)) for g, cfg in first.items()}
    return (f"{len(cells[0].configs)} seeds per cell, from seed {cells[0].configs[0].seed}. Config off its "
            "defaults (every method): " + "; ".join(f"{g}: {s or '—'}" for g, s in off.items()) + ".")

# ---- Running experiments: one task per seed, on a process pool ---------------------------
def learning_curve(env, res, window: int = 20) -> np.ndarray:
    """Exact J(π) at the start and after each update (matrix, two-step games); otherwise the
    mean return of the episodes that ended in the last ``window`` rollouts (a trailing mean)."""
    if getattr(env, "payoff", None) is not None:
        return np.array([sum(asae.joint_value(env.payoff, [p[t] for p in pols]) for t in range(env.n_obs))
                         for pols in res.policies])
    if isinstance(env, envs.TwoStepGame):    # agent 0's action in state 0 picks 2A or 2B
        return np.array([p[0][0][0] * asae.joint_value(env.payoff_2a, [x[1] for x in p]) + p[0][0][1]
                         * asae.joint_value(env.payoff_2b, [x[2] for x in p]) for p in res.policies])
    ok = np.isfinite(res.mean_return)
    s, n = (np.concatenate([[0], np.cumsum(x)]) for x in (np.where(ok, res.mean_return, 0.0), ok))
    i = np.arange(1, ok.size + 1)
    lo = np.maximum(0, i - window)
    return np.divide(s[i] - s[lo], n[i] - n[lo], out=np.full(ok.size, np.nan), where=n[i] > n[lo])

def learned(env, method: str, cfg) -> dict:
    """A learn run: success, final greedy and stochastic returns, the learning curve."""
    res = asae.train(env, method, cfg)
    return {"optimal": bool(res.greedy_optimal), "greedy": res.greedy_return,
            "stochastic": res.stochastic_return, "curve": learning_curve(env, res)}

def run_seed(task) -> dict:
    """One run (a pool task): (outcome, game spec, method spec, Config) → ``outcome(env, method
    name, Config)`` as a small dict, or the error."""
    outcome, game, method, cfg = task
    try:
        return dict(outcome(make_game(game), method.split(":")[0], cfg))
    except Exception as exc:  # noqa: BLE001 — the parent reports it as a failure
        return {"error": f"{type(exc).__name__}: {exc}"}

def experiment(args, rep, kind: str, cells, summary, outcome=learned) -> list:
    """Run every seed of every cell through ``outcome`` — all queued at once on ``--jobs``
    processes (1: a thread of this process), consumed cell by cell in seed order; after each
    cell save its JSON record from ``summary(cell, ok_results)`` → (record, row). Returns the
    table rows [game, method, *row]. A cell's optional ``tag`` extends its progress label."""
    rows, records, total = [], rep.data.setdefault(kind, {}).setdefault("cells", []), sum(len(c.configs) for c in cells)
    pool = cf.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) \
        if args.jobs > 1 else cf.ThreadPoolExecutor(1)
    try:
        queued = [[pool.submit(run_seed, (outcome, c.game, c.method, x)) for x in c.configs] for c in cells]
        rep.last = t0 = time.perf_counter()        # off a terminal: the first line after 10 s
        finished = 0                               # runs of the cells before this one
        for c, futs in zip(cells, queued):
            label = f"{kind} {c.game} {c.method}{getattr(c, 'tag', '')}"
            for done, _ in enumerate(cf.as_completed(futs), 1):
                rep.progress(label, done, len(futs), (finished + done, total), t0, finished + done == total)
            c.results, finished = [f.result() for f in futs], finished + len(futs)
            for cfg, r in zip(c.configs, c.results):
                if "error" in r:
                    rep.fail(f"{label} seed {cfg.seed}: {r['error']}")
            record, row = summary(c, [r for r in c.results if "error" not in r])
            records.append({"game": c.game, "method": c.method, "config": vars(c.configs[0]),
                            "seeds": len(c.configs), **record})
            rows.append([c.game, c.method, *row])
            rep.save()
    except BaseException:                          # e.g. Ctrl-C: drop the queued runs, keep the JSON
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return rows

def tabulate(args, rep, kind: str, cells, rows, title: str, headers: list, note: str, plot: str) -> None:
    """A learn/bias section's table (a row per cell, the setting in a note) and figure."""
    print(f"\n## {title.split(':')[0]}")
    rep.table(kind, title, ["game", "method", *headers], rows, None, [setting(cells), note])
    if args.plot:
        import bench_report
        rep.log(f"wrote {getattr(bench_report, plot)(rep.data[kind]['cells'], args.plot)}")

# ---- Sections: learn, bias ---------------------------------------------------------------
def learn(args, rep) -> None:
    """Learning: does each method find the optimum, paired against async seed by seed.
    Games × methods × seeds, each seed's random initial policy shared by every method.
    Success = the final greedy joint policy is optimal: Wilson 95 % interval, and wins /
    losses against async with an exact sign-test p; final greedy and stochastic returns;
    env steps until the learning curve reaches 95 % of the optimum."""
    ref, cells = {}, plan(args, "learn")

    def summary(c, good):
        env, bt, n = make_game(c.game), c.configs[0].n_envs * c.configs[0].rollout_len, len(c.results)
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
        return ({**s, "optimum": env.optimum,
                 "greedy_mean": np.mean(g) if good else None, "stochastic_mean": np.mean(st) if good else None,
                 "median_steps_to_95": med, "reached_95": reached, "exact_curve": exact(env), "curve_steps": steps,
                 **dict(zip(("curve_mean", "curve_ci95"), mean_ci(curves))),
                 "per_seed": [{"seed": cfg.seed, **r} for cfg, r in zip(c.configs, c.results)]},
                [fmt_success(s), sd(g), sd(st),
                 f"+{pair['wins']}/−{pair['losses']}, p = {pair['p']:.2g}" if pair else "—",
                 (f"{med:,.0f}" if math.isfinite(med) else "—") + f" ({reached}/{n})"])
    tabulate(args, rep, "learn", cells, experiment(args, rep, "learn", cells, summary),
             "Learning: success, returns and speed per game and method", [
        "optimal [95 % CI]", "greedy return", "stochastic return", "vs async (paired)", "steps to 95 %"],
        "Initial logits ~ N(0, init_logit_std²) from the seed alone. optimal: final greedy joint policy "
        "optimal, Wilson 95 % interval. Returns: mean ± std, final greedy (argmax) and sampled policy. vs "
        "async: seeds where only this method (+) or only async (−) is optimal, exact two-sided sign test. "
        "steps to 95 %: median env steps until the curve (exact J(π); grid: mean return of the episodes "
        "ended in the last 20 rollouts) reaches 95 % of the optimum (— if fewer than half the seeds do; "
        "in brackets how many do).", "learning_curves")

def bias(args, rep) -> None:
    """Bias: each method's exact advantage bias against the synchronous target (E6).
    The mean |advantage used − Ã^i| during training (``asae.advantage_bias``), before and
    after the PPO clip, with 95 % intervals over seeds; paired per seed with the ω = 1
    (async) estimate at the same steps of the same run (ratio; seeds where it is lower,
    sign-test p); and the second-moment price of the weights."""
    def summary(c, good):
        col = lambda key: np.array([r.get(key, np.nan) for r in good], float)  # noqa: E731
        ratio = lambda key: np.divide(col(key), col(key + "_async"), out=np.full(len(good), np.nan),  # noqa: E731
                                      where=col(key + "_async") > 0)
        b, b1 = col("mean_abs_bias"), col("mean_abs_bias_async")
        (bm, bh), (b1m, _), (rm, rh), (gm, gh), (gr, _), (m2, _), (m2r, _) = (mean_ci(x) for x in (
            b, b1, ratio("mean_abs_bias"), col("mean_abs_grad_bias"), ratio("mean_abs_grad_bias"),
            col("mean_second_moment"), ratio("mean_second_moment")))
        tie = np.isclose(b, b1, rtol=1e-9, atol=1e-12)      # ω = 1 methods: equal up to rounding
        w, l_ = int((b < b1)[~tie].sum()), int((b > b1)[~tie].sum())
        f = lambda m, h=math.nan, d=4: "—" if not np.isfinite(m) else f"{m:.{d}f}" + (  # noqa: E731
            f" ± {h:.{d}f}" if np.isfinite(h) else "")
        return ({"mean_abs_bias": bm, "bias_ci95": bh, "async_same_path": b1m, "ratio": rm, "ratio_ci95": rh,
                 "lower": w, "higher": l_, "p": sign_test(w, l_), "grad_bias": gm, "grad_bias_ci95": gh,
                 "grad_async_same_path": mean_ci(col("mean_abs_grad_bias_async"))[0],
                 "grad_bias_ratio": gr, "second_moment": m2, "second_moment_ratio": m2r, "per_seed": c.results},
                [f(bm, bh), f(b1m), f(rm, rh, 2), f"{w} lower, {l_} higher, p = {sign_test(w, l_):.2g}",
                 f(gm, gh), f(gr, d=2), f(m2, d=3), f(m2r, d=3)])
    tabulate(args, rep, "bias", cells := plan(args, "bias"), experiment(args, rep, "bias", cells, summary,
             asae.advantage_bias), "Bias: |advantage used − synchronous target Ã^i| (exact)", [
        "mean abs bias", "ω = 1, same path", "ratio to ω = 1", "seeds vs ω = 1", "gradient bias (clipped)",
        "ratio to ω = 1", "second moment", "ratio to ω = 1"],
        "mean abs bias: |E_{a^-i~π_old^-i}[Â^i | a^i] − Ã^i(a^i)| with Ã^i of E6 after the update, before any "
        "clipping, mean over gradient steps, agents and actions, ± 95 % t-interval over seeds. ω = 1: the "
        "async estimate at the same steps of the same runs; ratios per seed; seeds: bias lower / higher, "
        "exact sign test. gradient bias: the same for the expected gradient of the clipped per-sample "
        "objective (the PPO clip per joint action), i.e. what reaches the logits. Second moment: "
        "E_{a~π_old}[(Â^i)²], the variance price of the weights.", "bias_bars")

# ---- Command line ------------------------------------------------------------------------
SECTIONS = {"speed": speed, "learn": learn, "bias": bias, "study": bench_study.study}

def parse_args(argv=None):
    """Parse, then validate games, methods, Configs and --plot before anything runs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(SECTIONS) + "}")
    for sp in [p] + [sub.add_parser(n, help=f.__doc__.splitlines()[0], description=f.__doc__ + (
            "\n\n" + game_defaults.__doc__ if n in DEFAULTS else "")) for n, f in SECTIONS.items()]:
        d = (lambda v: v) if sp is p else (lambda v: argparse.SUPPRESS)  # a subcommand's own value wins
        sp.add_argument("--quick", action="store_true", default=d(False), help="CI-sized run")
        sp.add_argument("--json", metavar="PATH", default=d(None), help="write all numbers as strict JSON")
        sp.add_argument("--plot", metavar="DIR", default=d(None), help="write figures into DIR (matplotlib)")
        sp.add_argument("--quiet", action="store_true", default=d(False), help="no progress on stderr")
        sp.add_argument("--jobs", type=int, metavar="N", default=d(os.cpu_count() or 1),
                        help="worker processes (default: CPU count; 1: in this process)")
        if sp is not p and sp.prog.split()[-1] != "speed":
            sp.add_argument("--seeds", type=int, metavar="N", help="seeds per cell (learn 20, bias 10, study 100; "
                            "--quick: 3, study 8)")
        if sp is p or sp.prog.split()[-1] not in DEFAULTS:
            continue
        sp.add_argument("--games", metavar="LIST", help="comma list of games with parameters, e.g. "
                        f"climbing,penalty:k=-50:n_agents=3,grid:size=4; games: {', '.join(GAMES)}")
        sp.add_argument("--methods", metavar="LIST", help=f"comma list from {', '.join(asae.METHODS)}"
                        "; with Config fields per method, e.g. asae:sync_clip=none")
        g = sp.add_argument_group("asae.Config fields", "[the Config default]; per-game defaults above; "
                                  "a bool flag alone means true")
        for f in [f for f in dataclasses.fields(asae.Config) if f.name in FIELD_PARSERS]:
            doc = "first seed (runs use seed, seed + 1, …)" if f.name == "seed" else f.metadata.get("doc", "")
            g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=FIELD_PARSERS[f.name],
                           default=argparse.SUPPRESS, metavar=FIELD_PARSERS[f.name].metavar,
                           help=f"{doc} [{f.default!r}]".replace("%", "%%"),
                           **({"nargs": "?", "const": True} if isinstance(f.default, bool) else {}))
    args = p.parse_args(argv)
    args.sections = [args.command] if args.command else list(SECTIONS)
    args.overrides = {k: getattr(args, k) for k in FIELD_PARSERS if hasattr(args, k)}
    args.games, args.methods, args.seeds = (getattr(args, k, None) for k in ("games", "methods", "seeds"))
    if args.jobs < 1 or args.seeds is not None and args.seeds < 1:
        p.error("--jobs and --seeds must be at least 1")
    try:
        for s in set(args.sections) & set(DEFAULTS):
            plan(args, s)
        if args.plot:
            import matplotlib  # noqa: F401
            os.makedirs(args.plot, exist_ok=True)
    except ValueError as exc:
        p.error(str(exc))
    except ImportError:
        p.error("--plot needs matplotlib: pip install -e '.[plot]'")
    return args

def main(argv=None) -> int:
    """Run the chosen sections; 1 if anything failed, else 0."""
    args = parse_args(argv)
    rep, t0 = Report(args), time.perf_counter()
    for name in args.sections:
        t = time.perf_counter()
        SECTIONS[name](args, rep)
        rep.data["meta"].setdefault("section_s", {})[name] = time.perf_counter() - t
    rep.data["meta"]["wall_s"] = time.perf_counter() - t0
    rep.save()
    print(f"\nTotal wall time {rep.data['meta']['wall_s']:.1f} s ("
          + ", ".join(f"{k} {v:.1f} s" for k, v in rep.data["meta"]["section_s"].items()) + ")"
          + (f"; {len(rep.failures)} FAILURE(S), see stderr" if rep.failures else ""))
    return 1 if rep.failures else 0

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("bench.py: interrupted (a --json file holds every finished cell)")
