"""bench.py's ``speed`` section: GAE and every public kernel of asae against a vectorised
NumPy reference (one thread, results checked to agree), ``asae_tabular.train``'s env steps/s beside
its env's own batched step rate, and the first-call latency of each.

>>> gae_numpy(np.ones((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros((2, 1), bool),
...           np.zeros((2, 1), bool), gamma=1.0, lam=1.0)[0].ravel().tolist()
[2.0, 1.0]
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numba
import numpy as np

import asae
import asae_tabular as tabular
from bench_plan import applicable, game_defaults, make_game


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


# ---- NumPy references ----------------------------------------------------------------------
def gae_numpy(r, v, nv, term, trunc, gamma=0.99, lam=0.95):
    """GAE (E10) in NumPy: δ and traces vectorised, one backward loop over t across the batch."""
    delta = r + np.where(term, 0.0, gamma * nv) - v
    trace = np.where(term | trunc, 0.0, gamma * lam)
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


def softmax_numpy(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def log_softmax_numpy(z):
    s = z - z.max(1, keepdims=True)
    return s - np.log(np.exp(s).sum(1, keepdims=True))


def sync_weights_numpy(lr, c=0.5):
    return np.exp(np.clip(lr.sum(1, keepdims=True) - lr, np.log(1 - c), np.log(1 + c)))


KERNELS = {  # public kernel: (asae call, vectorised NumPy reference) on the inputs x
    "softmax": (lambda x: asae.softmax(x.z), lambda x: softmax_numpy(x.z)),
    "log_softmax": (lambda x: asae.log_softmax(x.z), lambda x: log_softmax_numpy(x.z)),
    "sync_weights": (lambda x: asae.sync_weights(x.lr, 0.5), lambda x: sync_weights_numpy(x.lr)),
    "sequential_weights": (  # M: 1, ρ², ρ²ρ⁰ for the order 2, 0, 1
        lambda x: asae.sequential_weights(x.lr, [2, 0, 1]),
        lambda x: np.exp(np.cumsum(np.c_[0 * x.a, x.lr[:, [2, 0]]], 1))[:, [1, 2, 0]]),
    "counterfactual_advantage": (
        lambda x: asae.counterfactual_advantage(x.q, x.pi, x.a),
        lambda x: x.q[np.arange(len(x.a)), x.a] - np.einsum("na,na->n", x.pi, x.q)),
    "clipped_surrogate": (
        lambda x: asae.clipped_surrogate(x.rho, x.adv, 0.2),
        lambda x: np.minimum(x.rho * x.adv, np.clip(x.rho, 0.8, 1.2) * x.adv)),
    "clipped_surrogate_grad": (
        lambda x: asae.clipped_surrogate_grad(x.z, x.a, x.olp, x.adv, 0.2),
        lambda x: surrogate_grad_numpy(x.z, x.a, x.olp, x.adv)),
    "method_advantages (asae)": (
        lambda x: asae.method_advantages("asae", x.adv, x.lr, sync_clip=0.5),
        lambda x: x.adv[:, None] * sync_weights_numpy(x.lr))}


# ---- The section ---------------------------------------------------------------------------
def kernel_cases(quick: bool, rng) -> list:
    """(name, size, asae call, NumPy call): GAE at (T, B), each public kernel at N rows."""
    cases = []
    sizes = [(128, 1), (128, 64), (512, 4096)] + ([] if quick else [(1024, 64), (128, 1024)])
    for T, B in sizes:
        r, v, nv = rng.standard_normal((3, T, B))
        te = rng.random((T, B)) < 0.02
        x = (r, v, nv, te, (rng.random((T, B)) < 0.01) & ~te)
        cases.append(("gae", f"T={T}, B={B}", lambda x=x: asae.gae(*x, 0.99, 0.95),
                      lambda x=x: gae_numpy(*x)))
    for N in (10**3, 10**5) if quick else (10**3, 10**4, 10**5, 10**6):
        x = SimpleNamespace(z=rng.standard_normal((N, 5)), q=rng.standard_normal((N, 5)),
                            a=rng.integers(0, 5, N), pi=rng.dirichlet(np.ones(5), N),
                            lr=rng.normal(0, .1, (N, 3)), adv=rng.standard_normal(N),
                            rho=np.exp(rng.normal(0, .2, N)))
        x.olp = np.log(rng.uniform(0.05, 1, N))
        cases += [(k, f"N={N:.0e}", lambda f=f, x=x: f(x), lambda g=g, x=x: g(x))
                  for k, (f, g) in KERNELS.items() if hasattr(asae, k.split()[0])]
    return cases


def speed(args, rep) -> None:
    """Speed: kernels vs NumPy, training throughput vs env stepping, first-call latency.
    GAE and every public kernel against a vectorised NumPy reference on one thread (✓ where
    asae is at least as fast); ``train``'s env steps/s beside its env's own batched step
    rate at the same batch size (the learner's ceiling); the first-call latency (Numba
    compilation or cache load) of each."""
    rep.out("\n## Speed\n")
    (reps, min_t), rng, first = (5, .005) if args.quick else (11, .05), np.random.default_rng(0), {}
    cases = kernel_cases(args.quick, rng)
    rows, recs, threads = [], [], numba.get_num_threads()
    games = (("climbing", 32, 8, 400), ("two-step", 32, 8, 400), ("grid", 64, 16, 100))
    total = len(cases) + sum(3 + sum(applicable(m, make_game(g)) for m in asae.METHODS)
                             for g, *_ in games)
    rep.last = t0 = time.perf_counter()         # off a terminal: the first line after 10 s
    done = iter(range(1, total + 1))

    def tick(label):
        d = next(done)
        rep.progress(f"speed {label}", 0, 0, (d, total), t0, d == total, (None, "timings"))
    numba.set_num_threads(1)
    rep.log(f"speed: {len(cases)} kernel timings, then env stepping and train throughput")
    for name, size, ours, ref in cases:
        (f, t), t_np = timed(ours, reps, min_t), timed(ref, reps, min_t)[1]   # the first call first
        tick(f"{name} ({size})")
        if not all(np.allclose(u, w, rtol=1e-7, atol=1e-9) for u, w in zip(*(
                (y,) if isinstance(y, np.ndarray) else y for y in (ours(), ref())))):
            rep.fail(f"{name} ({size}): asae and its NumPy reference disagree")
        first.setdefault(name, (f, t))
        rows.append([name, size, f"{t * 1e6:,.1f}", f"{t_np * 1e6:,.1f}", f"{t_np / t:.2f}",
                     "✓✗"[t > t_np]])
        recs.append({"kernel": name, "size": size, "asae_s": t, "numpy_s": t_np,
                     "first_call_s": f})
    numba.set_num_threads(threads)
    rep.table("speed", "Public kernels vs NumPy, one thread", [
        "kernel", "size", "asae µs", "NumPy µs", "NumPy / asae", "asae ≤ NumPy"], rows, recs, [
        "Median of warm repeats after a first call, numba.set_num_threads(1), results checked to "
        "agree. gae: (T, B), 2 % terminations, 1 % truncations; others: N rows of 5 actions or 3 "
        "agents. asae validates its inputs, the NumPy references do not."])
    rows, recs = [], []
    for game, B, T, iters in games:
        env, iters, rate = make_game(game), iters // 10 if args.quick else iters, {}
        for b in (1, B, 4096):
            acts = np.stack([rng.integers(0, k, b) for k in env.n_actions], 1)
            env.reset(b, seed=0)
            f, t = timed(lambda: env.step(acts), reps, min_t)
            rate[b] = b / t
            first.setdefault(f"{game}: env.step", (f, t))
            tick(f"{game}: env.step at B = {b}")
        for m in [m for m in asae.METHODS if applicable(m, env)]:
            cfg = tabular.TabularConfig(**{**game_defaults(env, False), "iterations": iters})
            f, t = first[f"{game}: train({m!r})"] = timed(
                lambda: tabular.train(env, m, cfg), 3, 0.0
            )
            tick(f"{game}: train({m!r})")
            steps = iters * B * T / t
            rows.append([game, f"{B}×{T}", m, f"{steps:,.0f}", f"{rate[B]:,.0f}",
                         f"{steps / rate[B]:.2f}", f"{rate[1]:,.0f}", f"{rate[4096]:,.0f}"])
            recs.append({"game": game, "method": m, "n_envs": B, "rollout_len": T,
                         "iterations": iters, "train_env_steps_per_s": steps,
                         "env_step_rate": rate})
    rep.table("speed", "Training throughput vs the env's own batched step rate (env steps/s)", [
        "game", "B×T", "method", "train", "env.step at B", "train / env.step",
        "env.step at B = 1", "at B = 4096"], rows, recs, [
        "One step of each of B envs = B env steps. train: median of 3 whole "
        "`asae_tabular.train` runs (rollouts, updates, evaluation) after a first run, per-game "
        "TabularConfig defaults. env.step: "
        "the public batched step on random joint actions, the learner's ceiling."])
    spread_table(args, rep, reps, min_t, first)
    import_s = getattr(args, "import_s", math.nan)
    rep.table("speed", "First-call latency (compilation or cache load)", [
        "call", "first call ms", "warm ms"],
        [["import asae, asae_tabular, envs (incl. numba)", f"{import_s * 1e3:,.1f}", "—"]]
        + [[n, f"{f * 1e3:,.1f}", f"{t * 1e3:,.3g}"] for n, (f, t) in first.items()],
        [{"call": n, "first_s": f, "warm_s": t} for n, (f, t) in first.items()], [
        "The first call in this process, at the smallest size above: compilation on the first "
        "run after installing or editing asae.py / envs.py, loading Numba's cache after that."])


def mpe2_rate(n: int, steps: int) -> float:
    """mpe2's own simple_spread_v3 (PettingZoo parallel API, pure Python): env steps/s on
    random actions, median of 3 timings of ``steps`` steps; NaN when mpe2 is not installed."""
    try:
        from mpe2 import simple_spread_v3
    except ImportError:
        return math.nan
    env, rng, times = simple_spread_v3.parallel_env(N=n, max_cycles=25), np.random.default_rng(
        0), []
    env.reset(seed=0)
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step({a: int(rng.integers(5)) for a in env.agents})
            if any(term.values()) or any(trunc.values()) or not env.agents:
                env.reset()
        times.append(time.perf_counter() - t0)
    return steps / float(np.median(times))


def spread_table(args, rep, reps: int, min_t: float, first: dict) -> None:
    """envs_spread.Spread: one Numba kernel steps B environments; env steps/s at n = 3, 6, 12 and
    B = 256, 1024, 4096 (one thread), beside mpe2's own rate in this run."""
    import envs_spread
    rows, recs, threads = [], [], numba.get_num_threads()
    numba.set_num_threads(1)
    sizes = (256, 1024) if args.quick else (256, 1024, 4096)
    for n in (3, 6, 12):
        env, rng, rate = envs_spread.Spread(n_agents=n), np.random.default_rng(n), {}
        for B in sizes:
            acts = rng.integers(0, 5, (B, n))
            env.reset(B, seed=0)
            f, t = timed(lambda: env.step(acts), reps, min_t)
            rate[B] = B / t
            first.setdefault(f"Spread(n={n}): env.step", (f, t))
        ref = mpe2_rate(n, 50 if args.quick else 300)
        rows.append([str(n)] + [f"{rate[B]:,.0f}" for B in sizes]
                    + [f"{ref:,.0f}" if ref == ref else "not installed",
                       f"{rate[1024] / ref:,.0f}×" if ref == ref else "—"])
        recs.append({"n_agents": n, "env_steps_per_s": rate, "mpe2_env_steps_per_s": ref})
    numba.set_num_threads(threads)
    rep.table("speed", "Cooperative navigation (Spread ≡ mpe2 simple_spread_v3), env steps/s", [
        "n agents"] + [f"B = {B}" for B in sizes] + ["mpe2 (one env)", "Spread B=1024 / mpe2"],
        rows, recs, [
        "envs_spread.Spread.step on random actions, one thread, median of warm repeats (auto-reset "
        "included); mpe2: its PettingZoo parallel env, one env, pure Python, median of 3 "
        "(extra `mpe`). The cost is linear in B and at most quadratic in n (collisions are "
        "pairs)."])
