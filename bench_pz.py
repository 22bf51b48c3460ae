"""PettingZoo in, measured: the numbers of docs/learners.md, "Bring your own PettingZoo env".

    OPENBLAS_NUM_THREADS=1 python bench_pz.py [--seeds 10] [--iterations 20] [--n-envs 16]
        [--eval-episodes 64] [--other-seeds 5] [--other-iterations 40] [--random-episodes 400]
        [--other-envs LIST] [--parts speed,spread,others] [--json PATH] [--quick]

Not part of ``python bench.py`` (nor of CI): mpe2 steps in Python at a few thousand env
steps per second, so this takes minutes. Needs the extras ``pettingzoo`` and ``mpe``.

0. **Speed** (``speed``): env steps per second of simple_spread (3 agents, 16 envs): mpe2's
   ParallelEnvs in a plain loop, the same through the adapter, envs_spread.Spread.
1. **Adapter vs the project's Spread** (``spread``). ``async`` (``asae_neural.NetConfig``
   with ``iterations``, ``n_envs``, ``eval_episodes`` as given, MAPPO's defaults otherwise) on
   mpe2's ``simple_spread_v3`` (N = 3, local_ratio 0.5, max_cycles 25) through
   ``envs_pz_in.from_parallel_env`` and on ``envs_spread.Spread(3)``, seed s for both
   (the same initial networks and action stream; the start positions come from each env's
   own generator, so the runs are not identical). Per seed the difference mpe2 − Spread of
   the final greedy and stochastic returns; their mean with a percentile bootstrap 95 %
   interval (bench_net.bootstrap_mean_ci, 10,000 resamples) and whether it covers 0.
2. **Two envs the project never modelled** (``others``), ``simple_speaker_listener_v4``
   (uneven spaces) and ``simple_reference_v3`` (50 actions per agent): the uniformly random
   policy's mean team return over ``random_episodes`` episodes, and the final returns of
   ``async`` runs (``other_iterations`` updates, ``other_seeds`` seeds), each with its
   bootstrap interval, and stochastic − random with a two-sample bootstrap interval (the
   runs and the random episodes resampled independently).

Tables go to stdout (Markdown), progress to stderr; ``--json PATH`` writes every number.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import asae_neural as neural  # noqa: E402
from bench_net import bootstrap_mean_ci  # noqa: E402
from envs_pz_in import from_parallel_env  # noqa: E402
from envs_spread import Spread  # noqa: E402


def random_return(env, episodes: int, seed: int) -> np.ndarray:
    """Team returns of ``episodes`` episodes of uniformly random actions (one per copy)."""
    rng = np.random.default_rng(seed)
    env.reset(episodes, seed=seed)
    ret, active = np.zeros(episodes), np.ones(episodes, bool)
    for _ in range(env.episode_limit):
        act = np.stack([rng.integers(0, k, episodes) for k in env.n_actions], axis=1)
        _, _, r, te, tr, _ = env.step(act)
        ret += np.where(active, r, 0.0)
        active &= ~(te | tr)
        if not active.any():
            break
    return ret


def run(env, seed: int, cfg: neural.NetConfig) -> dict:
    t = time.process_time()
    res = neural.train(env, "async", cfg)
    return {"seed": seed, "greedy": res.greedy_return, "stochastic": res.stochastic_return,
            "last_curve": float(res.mean_return[-1]), "cpu_s": time.process_time() - t}


def throughput(B: int = 16, steps: int = 100, reps: int = 3) -> dict:
    """Env steps per second (best of ``reps``) of mpe2's simple_spread_v3: B raw
    ParallelEnvs stepped in a Python loop (with ``state()`` read and auto-reset, as the
    adapter does), the same through the adapter, and envs_spread.Spread's batched kernel."""
    from mpe2 import simple_spread_v3
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 5, (steps, B, 3))
    raws = [simple_spread_v3.parallel_env() for _ in range(B)]
    names = raws[0].possible_agents

    def raw_loop():
        for e in raws:
            e.reset(seed=0)
        for t in range(steps):
            for b, e in enumerate(raws):
                if not e.agents:
                    e.reset()
                e.step({a: int(acts[t, b, i]) for i, a in enumerate(names)})
                e.state()
    out = {}
    for name, env in (("adapter", from_parallel_env(simple_spread_v3.parallel_env)),
                      ("spread", Spread(3)), ("raw", None)):
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            if env is None:
                raw_loop()
            else:
                env.reset(B, seed=0)
                for t in range(steps):
                    env.step(acts[t])
            best = min(best, time.perf_counter() - t0)
        out[name] = B * steps / best
    return out


def part_speed(args, out) -> None:
    r = out["speed"] = throughput()
    print("\n### Env steps per second, simple_spread with 3 agents (16 envs, best of 3)\n")
    print("| mpe2, raw loop | mpe2 through the adapter | envs_spread.Spread |")
    print("| --- | --- | --- |")
    print(f"| {r['raw']:,.0f} | {r['adapter']:,.0f} ({r['adapter'] / r['raw']:.2f}×) | "
          f"{r['spread']:,.0f} |")


def difference_ci(a, b, seed: int = 0, boot: int = 10_000) -> tuple:
    """Percentile bootstrap 95 % interval of mean(a) − mean(b) for independent samples
    (each resampled on its own, ``boot`` times, fixed seed)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    d = (a[rng.integers(0, a.size, (boot, a.size))].mean(axis=1)
         - b[rng.integers(0, b.size, (boot, b.size))].mean(axis=1))
    return float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def ci_text(x, ci=None) -> str:
    lo, hi = bootstrap_mean_ci(x) if ci is None else ci[1]
    mean = np.mean(x) if ci is None else ci[0]
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]".replace("-", "−")


def part_spread(args, out) -> None:
    from mpe2 import simple_spread_v3
    mpe = from_parallel_env(lambda: simple_spread_v3.parallel_env(N=3, local_ratio=0.5,
                                                                   max_cycles=25),
                            max_envs=max(args.n_envs, args.eval_episodes))
    ours = Spread(3)
    rows = {"mpe2": [], "spread": []}
    for s in range(args.seeds):
        cfg = neural.NetConfig(iterations=args.iterations, n_envs=args.n_envs,
                               eval_episodes=args.eval_episodes, seed=s)
        for name, env in (("mpe2", mpe), ("spread", ours)):
            rows[name].append(run(env, s, cfg))
            r = rows[name][-1]
            print(f"spread seed {s} {name}: greedy {r['greedy']:.3f} stochastic "
                  f"{r['stochastic']:.3f} ({r['cpu_s']:.1f} CPU-s)", file=sys.stderr)
    out["spread"] = rows
    print(f"\n### async on simple_spread: mpe2 through the adapter vs Spread "
          f"({args.seeds} paired seeds, {args.iterations} updates of {args.n_envs} envs × 25 "
          f"steps, {args.eval_episodes} evaluation episodes)\n")
    print("| return | mpe2 (adapter) | Spread | mpe2 − Spread [95 % bootstrap] | covers 0 |")
    print("| --- | --- | --- | --- | --- |")
    out["spread_diff"] = {}
    for key in ("greedy", "stochastic"):
        a = np.array([r[key] for r in rows["mpe2"]])
        b = np.array([r[key] for r in rows["spread"]])
        lo, hi = bootstrap_mean_ci(a - b)
        out["spread_diff"][key] = {"mean": float((a - b).mean()), "ci95": [lo, hi]}
        print(f"| {key} | {ci_text(a)} | {ci_text(b)} | {ci_text(a - b)} | "
              f"{'yes' if lo <= 0 <= hi else 'no'} |")
    cpu = [np.mean([r["cpu_s"] for r in rows[k]]) for k in ("mpe2", "spread")]
    steps = args.iterations * args.n_envs * 25 + 2 * args.eval_episodes * 25
    print(f"\nCPU seconds per run: mpe2 {cpu[0]:.1f}, Spread {cpu[1]:.1f} ({steps:,} env steps "
          f"each, evaluation included).")


def part_others(args, out) -> None:
    import mpe2
    print(f"\n### Envs the project never modelled ({args.other_seeds} seeds of async, "
          f"{args.other_iterations} updates of {args.n_envs} envs × 25 steps; random policy: "
          f"{args.random_episodes} episodes)\n")
    print("| env | random policy | trained, greedy | trained, stochastic | "
          "stochastic − random |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.other_envs.split(","):
        module = getattr(__import__(f"mpe2.{name}"), name)
        assert mpe2.__version__ == "1.1.1", mpe2.__version__
        env = from_parallel_env(module.parallel_env,
                                max_envs=max(args.n_envs, args.eval_episodes,
                                             args.random_episodes))
        rand = random_return(env, args.random_episodes, seed=12345)
        runs = []
        for s in range(args.other_seeds):
            cfg = neural.NetConfig(iterations=args.other_iterations, n_envs=args.n_envs,
                                   eval_episodes=args.eval_episodes, seed=s)
            runs.append(run(env, s, cfg))
            print(f"{name} seed {s}: greedy {runs[-1]['greedy']:.3f} stochastic "
                  f"{runs[-1]['stochastic']:.3f} ({runs[-1]['cpu_s']:.1f} CPU-s)",
                  file=sys.stderr)
        out[name] = {"random": rand.tolist(), "runs": runs}
        g = np.array([r["greedy"] for r in runs])
        st = np.array([r["stochastic"] for r in runs])
        diff = (st.mean() - rand.mean(), difference_ci(st, rand))
        out[name]["stochastic_minus_random"] = {"mean": diff[0], "ci95": list(diff[1])}
        print(f"| {name} | {ci_text(rand)} | {ci_text(g)} | {ci_text(st)} | "
              f"{ci_text(st, diff)} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--eval-episodes", type=int, default=64)
    p.add_argument("--other-seeds", type=int, default=5)
    p.add_argument("--other-iterations", type=int, default=40)
    p.add_argument("--random-episodes", type=int, default=400)
    p.add_argument("--other-envs", default="simple_speaker_listener_v4,simple_reference_v3",
                   help="comma-separated mpe2 modules for part 'others'")
    p.add_argument("--json", default=None)
    p.add_argument("--parts", default="speed,spread,others",
                   help="comma-separated parts to run: speed, spread, others")
    p.add_argument("--quick", action="store_true", help="2 seeds, 2 updates of 4 envs")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = args.other_seeds = 2
        args.iterations = args.other_iterations = 2
        args.n_envs, args.eval_episodes, args.random_episodes = 4, 4, 8
    t0 = time.perf_counter()
    out = {"args": vars(args)}
    parts = {"speed": part_speed, "spread": part_spread, "others": part_others}
    for name in args.parts.split(","):
        if name not in parts:
            p.error(f"--parts: unknown part {name!r} (speed, spread, others)")
        parts[name](args, out)
    out["wall_s"] = time.perf_counter() - t0
    print(f"\n({out['wall_s']:.0f} s wall)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
