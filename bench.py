"""asae benchmarks: kernel speed vs NumPy and pure Python, env stepping, training
throughput, compile/cache times — and (later) learning curves and bias.

Usage::

    python bench.py                      # everything (full sizes, ≤ 15 min)
    python bench.py --quick              # CI-sized run (< 60 s in total)
    python bench.py --sections speed     # a subset: speed, learning, bias
    python bench.py --json out.json      # also write every number collected
    python bench.py --plot curves.png    # learning curves (learning section)

Markdown tables go to stdout, progress lines to stderr. Timings are medians of ≥ 5 warm
repeats after a warm-up call (so JIT compilation is never in a timed repeat; compile time
is measured separately, in subprocesses). Inputs come from ``np.random.default_rng(0)``.
There are no timing assertions: the tables state each target and whether it is met.

Every section is a function ``section_NAME(args, results)`` that prints its tables with
:func:`emit_table`, which also records them in ``results`` for ``--json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numba  # noqa: E402

import asae  # noqa: E402
import envs  # noqa: E402

_T0 = time.perf_counter()

# =======================================================================================
# Shared helpers: progress, timing, formatting, tables
# =======================================================================================


def log(msg: str) -> None:
    """Progress line on stderr, stamped with seconds since start."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def timeit(fn, repeats: int = 5, min_time: float = 0.002, warmup: bool = True) -> float:
    """Median wall seconds per call of ``fn()`` over ``repeats`` warm repeats.

    One warm-up call first (it absorbs JIT compilation / cache loading, which is timed
    separately elsewhere). Each repeat calls ``fn`` ``number`` times, with ``number``
    chosen so that a repeat lasts ≥ ``min_time`` (fast functions are not timed at the
    clock's resolution); the garbage collector is off while timing.
    """
    if warmup:
        fn()
    number, elapsed = 1, 0.0
    while True:  # calibration, also a second warm-up
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time:
            break
        number = max(number * 2, int(number * min_time / max(elapsed, 1e-9) * 1.2))
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        samples = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            samples.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_on:
            gc.enable()
    return statistics.median(samples)


def timeit_optional(fn, **kw) -> float:
    """:func:`timeit` for calls into private kernels, whose signatures may change: NaN
    (shown as '—') if ``fn`` is None or its first call raises."""
    if fn is None:
        return float("nan")
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 — a changed private signature must not abort
        log(f"  (raw kernel call skipped: {type(exc).__name__}: {str(exc)[:80]})")
        return float("nan")
    return timeit(fn, **kw)


def fmt_time(sec: float) -> str:
    """Seconds as a short human string (ns / µs / ms / s)."""
    if sec != sec:  # NaN
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if sec >= scale:
            return f"{sec / scale:.3g} {unit}"
    return f"{sec * 1e9:.3g} ns"


def fmt_rate(per_sec: float) -> str:
    """A rate like 1.23e6/s as '1.23 M/s' ('—' for NaN)."""
    if per_sec != per_sec:
        return "—"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if per_sec >= scale:
            return f"{per_sec / scale:.3g} {unit}/s"
    return f"{per_sec:.3g} /s"


def fmt_x(ratio: float) -> str:
    """A ratio as '12.3×' ('—' for NaN)."""
    return "—" if ratio != ratio else f"{ratio:.3g}×"


def verdict_at_least(ratio: float, target: float) -> str:
    """'✓' if ``ratio ≥ target``, else '✗ (k× short)' where k = target / ratio."""
    return "✓" if ratio >= target else f"✗ ({target / ratio:.2f}× short)"


def verdict_at_most(value: float, limit: float) -> str:
    """'✓' if ``value ≤ limit``, else '✗ (k× short)' where k = value / limit."""
    return "✓" if value <= limit else f"✗ ({value / limit:.2f}× short)"


def md_table(headers, rows) -> str:
    """Markdown table from a header list and rows of already-formatted cells."""
    lines = ["| " + " | ".join(map(str, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def emit_table(results, section, key, title, headers, rows, records=None, notes=()):
    """Print a titled markdown table (plus notes) to stdout and record it in ``results``.

    ``rows`` are formatted cells for display; ``records`` (list of dicts of raw numbers)
    is what ``--json`` stores — defaults to the rows themselves.
    """
    print(f"\n### {title}\n")
    print(md_table(headers, rows))
    for note in notes:
        print(f"\n{note}")
    sys.stdout.flush()
    results.setdefault(section, {})[key] = {
        "title": title, "headers": list(headers), "rows": [list(map(str, r)) for r in rows],
        "records": records if records is not None else [list(map(str, r)) for r in rows],
        "notes": list(notes)}


def check_close(name, got, want, rtol=1e-7, atol=1e-9):
    """Abort loudly if a kernel and its reference disagree (before anything is timed)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol):
        diff = np.max(np.abs(got - want)) if got.shape == want.shape else "shape mismatch"
        raise SystemExit(f"bench.py: ABORT — {name}: kernel and reference disagree "
                         f"(shapes {got.shape} vs {want.shape}, max |diff| {diff})")


# =======================================================================================
# Header
# =======================================================================================


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_revision() -> str:
    """Short git commit of the repo (+ '-dirty' if it has local changes), or '?'."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=HERE, capture_output=True, text=True, timeout=10).stdout
        return (rev or "?") + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def header(args) -> dict:
    """Machine / software / mode description; printed and stored as results['meta']."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    meta = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
        "numba_threads": numba.config.NUMBA_NUM_THREADS,
        "python": platform.python_version(), "numpy": np.__version__,
        "numba": numba.__version__, "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git": git_revision(), "mode": "quick" if args.quick else "full",
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "sections": args.sections,
    }
    print("## asae benchmarks\n")
    print(f"- Machine: {meta['cpu']}, {meta['cores']} cores ({meta['usable_cores']} usable), "
          f"{meta['platform']}")
    print(f"- Python {meta['python']}, NumPy {meta['numpy']}, Numba {meta['numba']} "
          f"({meta['numba_threads']} threads)")
    print(f"- Date {meta['date']}, asae at git {meta['git']}"
          + (f", load average at start {meta['loadavg_at_start'][0]:.2f}"
             if meta["loadavg_at_start"] else ""))
    print(f"- Mode: {meta['mode']} (`python bench.py{' --quick' if args.quick else ''}`); "
          f"sections: {', '.join(args.sections)}")
    sys.stdout.flush()
    return meta


def timing_params(args) -> dict:
    """Repeats and minimal repeat duration for the current mode (always ≥ 5 repeats)."""
    return {"repeats": 5, "min_time": 0.002} if args.quick else {"repeats": 11, "min_time": 0.05}


# =======================================================================================
# Speed 1 — GAE (E10): kernel vs NumPy time loop vs pure Python, plus bandwidth probe
# =======================================================================================

GAMMA, LAM = 0.99, 0.95
GAE_SIZES = [(128, 1), (128, 64), (1024, 64), (128, 1024), (512, 4096)]


def gae_inputs(T, B, rng):
    """Random (T, B) float64 rewards / values / next values, with random terminations
    (p = 0.02) and truncations (p = 0.01, never on a terminated step)."""
    r = rng.standard_normal((T, B))
    v = rng.standard_normal((T, B))
    nv = rng.standard_normal((T, B))
    term = rng.random((T, B)) < 0.02
    trunc = (rng.random((T, B)) < 0.01) & ~term
    return r, v, nv, term, trunc


def gae_numpy(r, v, nv, term, trunc, gamma, lam):
    """Fair NumPy GAE: δ and the trace coefficients vectorised over (T, B); then one
    backward loop over t, vectorised across the batch, in place (two ufunc calls a step)."""
    T = r.shape[0]
    delta = r + np.where(term, 0.0, gamma * nv) - v
    trace = np.where(term | trunc, 0.0, gamma * lam)
    adv = np.empty_like(delta)
    adv[T - 1] = delta[T - 1]
    for t in range(T - 2, -1, -1):
        np.multiply(trace[t], adv[t + 1], out=adv[t])
        adv[t] += delta[t]
    return adv, adv + v


def gae_python(r, v, nv, term, trunc, gamma, lam):
    """Pure-Python scalar GAE over nested lists (T rows of B), env by env, t backward."""
    T, B = len(r), len(r[0])
    adv = [[0.0] * B for _ in range(T)]
    ret = [[0.0] * B for _ in range(T)]
    for b in range(B):
        carry = 0.0
        for t in range(T - 1, -1, -1):
            bootstrap = 0.0 if term[t][b] else gamma * nv[t][b]
            delta = r[t][b] + bootstrap - v[t][b]
            trace = 0.0 if (term[t][b] or trunc[t][b]) else gamma * lam
            carry = delta + trace * carry
            adv[t][b] = carry
            ret[t][b] = carry + v[t][b]
    return adv, ret


def gae_bandwidth_probe(T, B):
    """Arrays for one fused ``np.add(x, y, out=z)`` pass moving as many bytes as GAE does:
    GAE reads r, V, V' (8 B each) and two bool flags (1 B each) and writes Â and R (8 B
    each) = 42 B per element; ``np.add`` moves 24 B per element."""
    n = -(-T * B * 42 // 24)
    x, y, z = np.ones(n), np.ones(n), np.empty(n)
    return lambda: np.add(x, y, out=z)


def time_gae_python(r, v, nv, term, trunc, cap):
    """Seconds for the pure-Python loop on all B envs, measured on ≤ ``cap`` elements
    (a slice of the batch) and scaled linearly in B. Returns (seconds, envs timed)."""
    T, B = r.shape
    bs = max(1, min(B, cap // T))
    lists = [a[:, :bs].tolist() for a in (r, v, nv, term, trunc)]
    got = gae_python(*lists, GAMMA, LAM)
    want = asae.gae(r[:, :bs], v[:, :bs], nv[:, :bs], term[:, :bs], trunc[:, :bs], GAMMA, LAM)
    check_close(f"gae python loop ({T}, {bs})", got[0], want[0])
    check_close(f"gae python loop returns ({T}, {bs})", got[1], want[1])
    reps = 3 if T * bs >= 20_000 else 5
    t = timeit(lambda: gae_python(*lists, GAMMA, LAM), repeats=reps, min_time=0.0, warmup=False)
    return t * B / bs, bs


def table_gae(args, results):
    """Speed table 1: GAE kernel (public wrapper and raw kernel) vs NumPy vs Python."""
    tp = timing_params(args)
    py_cap = 20_000 if args.quick else 150_000
    rng = np.random.default_rng(0)
    rows, records = [], []
    for T, B in GAE_SIZES:
        log(f"GAE (T={T}, B={B})")
        r, v, nv, term, trunc = gae_inputs(T, B, rng)
        adv_k, ret_k = asae.gae(r, v, nv, term, trunc, GAMMA, LAM)
        adv_n, ret_n = gae_numpy(r, v, nv, term, trunc, GAMMA, LAM)
        check_close(f"gae NumPy reference ({T}, {B})", adv_k, adv_n)
        check_close(f"gae NumPy reference returns ({T}, {B})", ret_k, ret_n)
        out_a, out_r = np.empty((T, B)), np.empty((T, B))
        t_wrap = timeit(lambda: asae.gae(r, v, nv, term, trunc, GAMMA, LAM), **tp)
        t_raw = timeit_optional(
            lambda: asae._gae_kernel(r, v, nv, term, trunc, GAMMA, LAM, out_a, out_r), **tp)
        t_np = timeit(lambda: gae_numpy(r, v, nv, term, trunc, GAMMA, LAM), **tp)
        t_py, bs = time_gae_python(r, v, nv, term, trunc, py_cap)
        t_bw = timeit(gae_bandwidth_probe(T, B), **tp)
        target = 20.0 if B == 1 else 3.0
        sp_np, sp_raw = t_np / t_wrap, t_np / t_raw
        bw_w, bw_k = t_wrap / t_bw, t_raw / t_bw
        bw_target = verdict_at_most(bw_w, 3.0) if (T, B) == (512, 4096) else ""
        py_note = "" if bs == B else f" (scaled from {bs} envs)"
        rows.append([T, B, fmt_time(t_wrap), fmt_time(t_raw), fmt_time(t_np),
                     fmt_time(t_py) + py_note, fmt_x(sp_np), fmt_x(sp_raw),
                     f"≥ {target:g}×: {verdict_at_least(sp_np, target)}", fmt_x(t_py / t_wrap),
                     fmt_time(t_bw), f"{bw_w:.2f}× / " + ("—" if bw_k != bw_k else f"{bw_k:.2f}×"),
                     f"≤ 3×: {bw_target}" if bw_target else "—"])
        records.append({"T": T, "B": B, "wrapper_s": t_wrap, "raw_kernel_s": t_raw,
                        "numpy_s": t_np, "python_s": t_py, "python_envs_timed": bs,
                        "speedup_vs_numpy": sp_np, "raw_speedup_vs_numpy": sp_raw,
                        "target_vs_numpy": target, "met_vs_numpy": sp_np >= target,
                        "speedup_vs_python": t_py / t_wrap, "bandwidth_probe_s": t_bw,
                        "wrapper_over_probe": bw_w, "raw_over_probe": bw_k,
                        "met_bandwidth": (bw_w <= 3.0) if bw_target else None})
    headers = ["T", "B", "asae.gae", "raw kernel", "NumPy t-loop", "Python loop",
               "vs NumPy", "raw vs NumPy", "target (wrapper)", "vs Python",
               "bandwidth probe", "× probe (wrapper / raw)", "target (bandwidth)"]
    notes = [
        "`asae.gae` is the public wrapper (validation + output allocation + kernel); "
        "'raw kernel' calls the `@njit` kernel `_gae_kernel` on preallocated outputs. "
        "Targets are judged on the public wrapper; 'raw' shows how much is wrapper overhead.",
        "NumPy t-loop: δ and trace coefficients vectorised over (T, B), then a backward "
        "loop over t vectorised across B, in place. Python loop: scalar loop over nested "
        "lists (conversion not timed); at large sizes timed on a slice of the batch and "
        "scaled linearly in B (as marked), median of 3–5 runs.",
        "Bandwidth probe: one `np.add(x, y, out=z)` pass over preallocated arrays moving "
        "the same number of bytes as GAE (42 B per (t, b): 3 float64 + 2 bool read, "
        "2 float64 written). float64, random terminations (2 %) and truncations (1 %).",
        "Caveat: at mid sizes (arrays of ~0.1–2 MB) fresh output arrays may come from pages "
        "glibc has just returned to the OS, and the page faults can cost more than the "
        "arithmetic; this hits both `asae.gae` and the NumPy reference, so their times (and the "
        "ratio) can vary several-fold between runs. The raw kernel and probe use preallocated "
        "arrays and are steady.",
    ]
    emit_table(results, "speed", "gae", "GAE (E10): Numba kernel vs NumPy vs pure Python",
               headers, rows, records, notes)


# =======================================================================================
# Speed 2 — sync_weights, counterfactual_advantage, clipped_surrogate_grad vs NumPy
# =======================================================================================

N_AGENTS_BENCH, N_ACTIONS_BENCH, SYNC_CLIP, CLIP_EPS = 3, 5, 0.2, 0.2


def sync_weights_numpy(lr, clip):
    """Vectorised E8 weights: log w^i = (Σ_j log ρ^j) − log ρ^i, clipped, exponentiated.
    (The row sum is a matrix-vector product: faster than ``sum(axis=1)`` over few columns.)"""
    s = (lr @ np.ones(lr.shape[1]))[:, None] - lr
    np.clip(s, np.log(1.0 - clip), np.log1p(clip), out=s)
    return np.exp(s, out=s)


def counterfactual_numpy(q, pi, a):
    """Vectorised E7 (COMA): Q(a) − Σ_b π(b) Q(b), per row."""
    return q[np.arange(q.shape[0]), a] - np.einsum("na,na->n", pi, q)


def clipped_surrogate_grad_numpy(z, a, olp, adv, eps):
    """Vectorised ∇_z min(ρÂ, clip(ρ)Â) for softmax logits, per row (same conventions as
    the kernel: zero where the clip binds, log ρ saturated at asae.MAX_LOG_RATIO)."""
    idx = np.arange(z.shape[0])
    zs = z - z.max(axis=1, keepdims=True)
    e = np.exp(zs)
    s = e.sum(axis=1)
    pi = e / s[:, None]
    rho = np.exp(np.minimum(zs[idx, a] - np.log(s) - olp, asae.MAX_LOG_RATIO))
    binding = ((adv > 0) & (rho > 1.0 + eps)) | ((adv < 0) & (rho < 1.0 - eps))
    g = np.where(binding, 0.0, adv * rho)
    out = pi * -g[:, None]
    out[idx, a] += g
    return out


def kernel_cases(N, rng):
    """(name, public call, raw-kernel call, NumPy call) for the three kernels at size N."""
    n, A = N_AGENTS_BENCH, N_ACTIONS_BENCH
    lr = rng.normal(0.0, 0.1, (N, n))
    lo, hi = np.log(1.0 - SYNC_CLIP), np.log1p(SYNC_CLIP)
    w_out = np.empty((N, n))
    q = rng.standard_normal((N, A))
    pi = asae.softmax(rng.standard_normal((N, A)))
    acts = rng.integers(0, A, N)
    cf_out = np.empty(N)
    z = rng.standard_normal((N, A))
    olp = asae.log_softmax(z + rng.normal(0.0, 0.3, (N, A)))[np.arange(N), acts]
    adv = rng.standard_normal(N)
    g_out = np.empty((N, A))
    return [
        ("sync_weights", lambda: asae.sync_weights(lr, SYNC_CLIP),
         lambda: asae._sync_weights_kernel(lr, lo, hi, w_out),
         lambda: sync_weights_numpy(lr, SYNC_CLIP)),
        ("counterfactual_advantage", lambda: asae.counterfactual_advantage(q, pi, acts),
         lambda: asae._counterfactual_kernel(q, pi, acts, cf_out),
         lambda: counterfactual_numpy(q, pi, acts)),
        ("clipped_surrogate_grad",
         lambda: asae.clipped_surrogate_grad(z, acts, olp, adv, CLIP_EPS),
         lambda: asae._clipped_surrogate_grad_kernel(z, acts, olp, adv, CLIP_EPS,
                                                     asae.MAX_LOG_RATIO, g_out),
         lambda: clipped_surrogate_grad_numpy(z, acts, olp, adv, CLIP_EPS)),
    ]


def table_kernels(args, results):
    """Speed table 2: the E7/E8 kernels (public wrapper and raw) vs vectorised NumPy."""
    tp = timing_params(args)
    rng = np.random.default_rng(0)
    rows, records = [], []
    for N in (10**3, 10**5, 10**6):
        for name, public, raw, ref in kernel_cases(N, rng):
            log(f"{name} (N={N:.0e})")
            check_close(f"{name} NumPy reference (N={N})", public(), ref())
            t_pub, t_raw, t_np = timeit(public, **tp), timeit_optional(raw, **tp), timeit(ref, **tp)
            sp, sp_raw = t_np / t_pub, t_np / t_raw
            target = verdict_at_least(sp, 2.0) if N == 10**6 else "—"
            rows.append([name, f"{N:.0e}", fmt_time(t_pub), fmt_time(t_raw), fmt_time(t_np),
                         fmt_x(sp), fmt_x(sp_raw), f"≥ 2×: {target}" if N == 10**6 else "—"])
            records.append({"kernel": name, "N": N, "wrapper_s": t_pub, "raw_kernel_s": t_raw,
                            "numpy_s": t_np, "speedup_vs_numpy": sp,
                            "raw_speedup_vs_numpy": sp_raw,
                            "met": (sp >= 2.0) if N == 10**6 else None})
    headers = ["kernel", "N", "public wrapper", "raw kernel", "NumPy", "vs NumPy",
               "raw vs NumPy", "target (wrapper, N = 1e6)"]
    notes = [
        f"n = {N_AGENTS_BENCH} agents (sync_weights, clip {SYNC_CLIP}), A = {N_ACTIONS_BENCH} "
        f"actions (counterfactual_advantage, clipped_surrogate_grad, ε = {CLIP_EPS}). "
        "The public wrapper validates its inputs (finiteness, shapes, probability rows, "
        "index ranges) and allocates the output; the raw kernel writes into a preallocated "
        "output. The NumPy references are fully vectorised and validate nothing.",
    ]
    emit_table(results, "speed", "kernels", "E7/E8 kernels vs vectorised NumPy",
               headers, rows, records, notes)


# =======================================================================================
# Speed 3 — env stepping: batched Numba step vs plain-Python reference step
# =======================================================================================

ENV_BATCHES = (1, 64, 4096)


def bench_games():
    """(label, factory) of the games whose stepping is benchmarked."""
    return [("climbing", envs.climbing), ("GridForaging", envs.GridForaging)]


def random_actions(env, B, rng):
    """(B, n_agents) int64 random joint actions."""
    return np.stack([rng.integers(0, k, B) for k in env.n_actions], axis=1).astype(np.int64)


def check_env_agrees(env, B, steps, rng):
    """Step the batched env and the Python reference side by side; abort on mismatch."""
    env.reset(B, seed=0)
    states = [env.reference_reset() for _ in range(B)]
    for step in range(steps):
        acts = random_actions(env, B, rng)
        obs, state, reward, term, trunc, final = env.step(acts)
        for b in range(B):
            s, t, rw, te, tr, fs = env.reference_step(*states[b], tuple(acts[b].tolist()))
            states[b] = (s, t)
            if (s, rw, te, tr, fs) != (state[b], reward[b], term[b], trunc[b], final[b]):
                raise SystemExit(f"bench.py: ABORT — {type(env).__name__} batched step and "
                                 f"reference_step disagree at step {step}, env {b}")


def reference_loop(env, B, acts):
    """A closure stepping B envs once each through the plain-Python ``reference_step``."""
    states = [env.reference_reset() for _ in range(B)]
    joint = [tuple(row) for row in acts.tolist()]
    step = env.reference_step
    rewards = [0.0] * B

    def run():
        for b in range(B):
            s, t, rewards[b], _, _, _ = step(*states[b], joint[b])
            states[b] = (s, t)
    return run


def raw_env_step(env, acts):
    """A closure calling the env's Numba kernel directly on preallocated outputs (no
    validation/allocation), or None if the env has no ``_kernel`` (private API)."""
    kernel = getattr(env, "_kernel", None)
    if kernel is None:
        return None
    B, n = acts.shape
    outs = (np.empty((B, n), np.int64), np.empty(B, np.int64), np.empty(B),
            np.empty(B, np.bool_), np.empty(B, np.bool_), np.empty(B, np.int64))
    return lambda: kernel(acts, *outs)


def table_envs(args, results):
    """Speed table 3: agent-steps/s of the batched step vs the Python reference."""
    tp = timing_params(args)
    rng = np.random.default_rng(0)
    rows, records = [], []
    for label, make in bench_games():
        check_env_agrees(make(), 16, 60, rng)
        for B in ENV_BATCHES:
            log(f"env step {label} (B={B})")
            env = make()
            n = env.n_agents
            acts = random_actions(env, B, rng)
            env.reset(B, seed=0)
            t_step = timeit(lambda: env.step(acts), **tp)
            raw = raw_env_step(env, acts)
            t_raw = timeit_optional(raw, **tp)
            t_ref = timeit(reference_loop(make(), B, acts), **tp)
            sps, sps_raw, sps_ref = B * n / t_step, B * n / t_raw, B * n / t_ref
            ratio = sps / sps_ref
            target = f"≥ 50×: {verdict_at_least(ratio, 50.0)}" if B == 4096 else "—"
            rows.append([label, B, fmt_time(t_step), fmt_rate(sps), fmt_rate(sps_raw),
                         fmt_rate(sps_ref), fmt_x(ratio), fmt_x(sps_raw / sps_ref), target])
            records.append({"game": label, "B": B, "n_agents": n, "step_s": t_step,
                            "raw_step_s": t_raw, "reference_s": t_ref,
                            "agent_steps_per_s": sps, "raw_agent_steps_per_s": sps_raw,
                            "reference_agent_steps_per_s": sps_ref, "speedup": ratio,
                            "met": (ratio >= 50.0) if B == 4096 else None})
    headers = ["game", "B", "env.step time", "batched agent-steps/s",
               "raw kernel agent-steps/s", "Python reference agent-steps/s", "speed-up",
               "raw speed-up", "target (B = 4096)"]
    notes = [
        "`env.step` is the public batched step (action validation, output allocation, Numba "
        "kernel, auto-reset); 'raw kernel' calls the env's private `_kernel` on preallocated "
        "outputs. Python reference: `env.reference_step` once per env in a Python loop. "
        "Agent-steps = envs × agents stepped. Random joint actions; both were checked to "
        "agree step by step before timing.",
    ]
    emit_table(results, "speed", "envs", "Env stepping: batched Numba step vs Python reference",
               headers, rows, records, notes)


# =======================================================================================
# Speed 4 — training throughput of asae.train
# =======================================================================================


def train_config(n_envs, rollout_len, iterations, seed=0):
    """An ``asae.Config`` with the given sizes and every other field at its default."""
    return dataclasses.replace(asae.Config(), n_envs=n_envs, rollout_len=rollout_len,
                               iterations=iterations, seed=seed)


def table_train(args, results):
    """Speed table 4: env steps per second of ``asae.train`` (methods asae and async)."""
    if not (hasattr(asae, "train") and hasattr(asae, "Config")):
        print("\n### Training throughput\n\n(train not available yet)")
        results.setdefault("speed", {})["train"] = {"title": "Training throughput",
                                                    "records": [], "notes": ["not available"]}
        return
    n_envs, rollout_len = 64, 16
    iterations = 10 if args.quick else 50
    rows, records = [], []
    for label, make in bench_games():
        for method in ("asae", "async"):
            log(f"train {method} on {label} ({iterations} iterations)")
            try:
                asae.train(make(), method, train_config(n_envs, rollout_len, 1))  # warm-up
                t0 = time.perf_counter()
                res = asae.train(make(), method, train_config(n_envs, rollout_len, iterations))
                wall = time.perf_counter() - t0
            except Exception as exc:  # report, don't crash the whole bench
                rows.append([label, method, "—", "—", "—", "—", f"error: {exc!r}"[:80]])
                records.append({"game": label, "method": method, "error": repr(exc)})
                continue
            steps = int(np.ravel(res.env_steps)[-1])  # cumulative per iteration → total
            rw = float(res.wall_time)
            rows.append([label, method, iterations, steps, fmt_time(rw),
                         fmt_rate(steps / rw), fmt_time(wall)])
            records.append({"game": label, "method": method, "iterations": iterations,
                            "env_steps": steps, "wall_time_s": rw, "env_steps_per_s": steps / rw,
                            "outer_wall_s": wall})
    headers = ["game", "method", "iterations", "env steps", "TrainResult.wall_time",
               "env steps/s", "outer wall (incl. setup)"]
    notes = [f"`asae.train` with n_envs = {n_envs}, rollout_len = {rollout_len}, other Config "
             "fields at their defaults, after a one-iteration warm-up run (JIT). env steps/s = "
             "TrainResult.env_steps / TrainResult.wall_time."]
    emit_table(results, "speed", "train", "Training throughput (`asae.train`)",
               headers, rows, records, notes)


# =======================================================================================
# Speed 5 — cold compile time (empty cache) and warm import + first call (cache hit)
# =======================================================================================

# Runs in a fresh interpreter: times `import asae, envs` and the first call of every
# public kernel, then reports Numba's per-dispatcher cache hits/misses, as JSON on stdout.
_FIRST_CALL_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import asae, envs
t2 = time.perf_counter()
z = np.zeros((4, 3)); f = np.zeros(4, bool); a = np.zeros(4, np.int64)
lr = np.zeros((4, 3)); pi = np.full((4, 3), 1 / 3)

def env_step(make):
    env = make(); env.reset(2, seed=0); env.step(np.zeros((2, env.n_agents), np.int64))

calls = [
    ("gae", lambda: asae.gae(z, z, z, f[:, None].repeat(3, 1), f[:, None].repeat(3, 1), 0.9, 0.9)),
    ("softmax", lambda: asae.softmax(z)),
    ("log_softmax", lambda: asae.log_softmax(z)),
    ("sync_weights", lambda: asae.sync_weights(lr, 0.2)),
    ("sequential_weights", lambda: asae.sequential_weights(lr, [0, 1, 2])),
    ("counterfactual_advantage", lambda: asae.counterfactual_advantage(z, pi, a)),
    ("clipped_surrogate", lambda: asae.clipped_surrogate(np.ones(4), np.ones(4), 0.2)),
    ("clipped_surrogate_grad", lambda: asae.clipped_surrogate_grad(z, a, -np.ones(4), np.ones(4), 0.2)),
    ("MatrixGame.step (climbing)", lambda: env_step(envs.climbing)),
    ("TwoStepGame.step", lambda: env_step(envs.TwoStepGame)),
    ("GridForaging.step", lambda: env_step(envs.GridForaging)),
    ("GridForaging.solve", lambda: envs.GridForaging().solve()),
]
if hasattr(asae, "train") and hasattr(asae, "Config"):  # learner kernels (sampling, scatter, ...)
    for m in getattr(asae, "METHODS", ("asae",)):
        cfg = asae.Config(n_envs=2, rollout_len=2, minibatches=1, epochs=1, iterations=1,
                          eval_episodes=1)
        calls.append((f"train({m!r}), 1 tiny iteration",
                      lambda m=m, cfg=cfg: asae.train(envs.climbing(), m, cfg)))
first = {}
for name, fn in calls:
    t = time.perf_counter(); fn(); first[name] = time.perf_counter() - t

from numba.core.registry import CPUDispatcher
hits = misses = 0
unused = []
for mod in (asae, envs):
    for name, obj in vars(mod).items():
        if isinstance(obj, CPUDispatcher):
            hits += sum(obj.stats.cache_hits.values())
            misses += sum(obj.stats.cache_misses.values())
            if not obj.signatures:
                unused.append(f"{mod.__name__}.{name}")
print(json.dumps({"import_numpy": t1 - t0, "import_asae_envs": t2 - t1, "first_call": first,
                  "cache_hits": hits, "cache_misses": misses, "not_exercised": unused}))
"""


def run_first_calls(cache_dir):
    """Run the first-call script in a fresh interpreter (``NUMBA_CACHE_DIR=cache_dir``, or
    if None the same cache as this process: ``$NUMBA_CACHE_DIR`` if set, else the default
    ``__pycache__`` next to the sources); returns its JSON + wall."""
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _FIRST_CALL_SCRIPT, HERE], env=env,
                          capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench.py: ABORT — first-call subprocess failed:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall"] = wall
    return out


def table_compile(args, results):
    """Speed table 5: cold compile (empty cache dir) vs warm import + first call.

    In --quick mode the cold run (≈ 10 s of compilation) is skipped; the warm run then uses
    the default cache, which this process has just filled."""
    runs = {}
    if not args.quick:
        with tempfile.TemporaryDirectory(prefix="asae-numba-cache-") as cache_dir:
            log("compile: cold subprocess (empty NUMBA_CACHE_DIR; compiles every kernel, ~10 s)")
            runs["cold"] = run_first_calls(cache_dir)
            log("compile: warm subprocess (same cache dir)")
            runs["warm"] = run_first_calls(cache_dir)
    where = (f"$NUMBA_CACHE_DIR={os.environ['NUMBA_CACHE_DIR']}" if os.environ.get("NUMBA_CACHE_DIR")
             else "default __pycache__")
    log(f"compile: priming subprocess ({where}; compiles whatever is stale)")
    primed = run_first_calls(None)
    log(f"compile: warm subprocess ({where}, as pytest and users see it)")
    runs["default"] = run_first_calls(None)
    labels = {"cold": "cold (empty cache)", "warm": "warm (same cache dir)",
              "default": "warm (default __pycache__)"}
    cols = [c for c in labels if c in runs]
    names = list(runs[cols[0]]["first_call"])
    rows = [["import numpy"] + [fmt_time(runs[c]["import_numpy"]) for c in cols],
            ["import asae, envs (incl. numba)"] + [fmt_time(runs[c]["import_asae_envs"]) for c in cols]]
    for name in names:
        rows.append([f"first call: {name}"] + [fmt_time(runs[c]["first_call"][name]) for c in cols])
    totals = {c: runs[c]["import_asae_envs"] + sum(runs[c]["first_call"].values()) for c in cols}
    rows.append(["**total: import asae, envs + first calls**"]
                + [f"**{fmt_time(totals[c])}**" for c in cols])
    rows.append(["target (warm total ≤ 1.5 s)"]
                + ["—" if c == "cold" else verdict_at_most(totals[c], 1.5) for c in cols])
    rows.append(["Numba cache hits / misses"]
                + [f"{runs[c]['cache_hits']} / {runs[c]['cache_misses']}" for c in cols])
    rows.append(["subprocess wall (incl. interpreter start)"]
                + [fmt_time(runs[c]["process_wall"]) for c in cols])
    notes = [
        "Each column is a fresh interpreter. 'cold' points NUMBA_CACHE_DIR at a new empty "
        "temp dir, so every `@njit(cache=True)` kernel compiles; 'warm' reruns with that "
        "now-filled dir; the last column uses the cache this process uses — `__pycache__` "
        "next to the sources unless NUMBA_CACHE_DIR is set — which is what pytest and users get. First calls use tiny inputs, so "
        "they measure compile or cache-load time, not work (the first warm call also pays "
        "Numba's one-off dispatcher start-up). Cache hits / misses count (kernel, signature) "
        "entries loaded / compiled; helper kernels called only from other kernels are "
        "compiled into their callers and not counted. The default-cache column is the "
        f"second of two runs (the first, priming run compiled {primed['cache_misses']} "
        "stale entries, e.g. after an edit of asae.py / envs.py).",
    ]
    if "cold" in runs:
        unused = [u for u in runs["cold"]["not_exercised"]]
        notes.append("Kernels not compiled by these first calls: "
                     + (", ".join(f"`{u}`" for u in unused) if unused else "none") + ".")
    else:
        notes.append("Cold compile skipped in --quick mode (it takes ≈ 10 s); run without "
                     "--quick for it.")
    records = {c: dict(runs[c], total=totals[c]) for c in cols}
    records["priming_cache_misses"] = primed["cache_misses"]
    records["met"] = all(totals[c] <= 1.5 for c in cols if c != "cold")
    emit_table(results, "speed", "compile", "Compile time: cold (empty cache) vs warm (cache hit)",
               [""] + [labels[c] for c in cols], rows, records, notes)


# =======================================================================================
# Sections
# =======================================================================================


def section_speed(args, results):
    """Speed: GAE, E7/E8 kernels, env stepping, training throughput, compile/cache."""
    print("\n## Speed\n")
    print("Ratios are medians of ≥ 5 warm repeats after a warm-up call; compile time is "
          "measured separately (last table). '✗ (k× short)': k is the factor still missing.")
    t0 = time.perf_counter()
    for table in (table_gae, table_kernels, table_envs, table_train, table_compile):
        table(args, results)
    results.setdefault("speed", {})["wall_s"] = time.perf_counter() - t0
    log(f"speed section done in {time.perf_counter() - t0:.1f} s")


# =======================================================================================
# Learning — asae vs asynchronous baselines on games with known answers
# =======================================================================================


@dataclasses.dataclass(frozen=True)
class GameSpec:
    """One game of the learning study and its shared hyperparameters (all methods)."""

    name: str
    make: object
    reward_scale: float
    iterations: int
    n_envs: int = 32
    rollout_len: int = 8
    exact: bool = True          # exact expected return J(π) available from the policy tables
    overrides: tuple = ()       # further Config fields shared by every method on this game


def game_specs(quick: bool):
    """The games, with one shared setting each (every method gets the same): rewards scaled
    by 1/max|payoff|; matrix and two-step games 100 updates of 32×8 samples; grid foraging
    400 updates of 64×16 with lr_actor 3 (chosen on async alone, 3 seeds: 1.0 left a third
    of the seeds with no food). --quick: 20 and 30 updates."""
    m_it, g_it = (20, 30) if quick else (100, 400)
    return [
        GameSpec("climbing", envs.climbing, 1 / 30, m_it),
        GameSpec("penalty(k=-100)", lambda: envs.penalty(-100), 1 / 100, m_it),
        GameSpec("qtran", envs.qtran, 1 / 12, m_it),
        GameSpec("two-step", envs.TwoStepGame, 1 / 8, m_it),
        GameSpec("grid foraging", envs.GridForaging, 1.0, g_it, n_envs=64, rollout_len=16,
                 exact=False, overrides=(("lr_actor", 3.0),)),
    ]


def spec_config(spec, seed, **kw):
    """The shared Config of a game (same for every method) for one seed."""
    base = dict(reward_scale=spec.reward_scale, iterations=spec.iterations, n_envs=spec.n_envs,
                rollout_len=spec.rollout_len, seed=seed, **dict(spec.overrides))
    return asae.Config(**{**base, **kw})


def methods_for(env):
    """exact_sync needs a one-step matrix game (an exact payoff to enumerate)."""
    one_step = getattr(env, "payoff", None) is not None and env.n_states == 1
    return [m for m in asae.METHODS if m != "exact_sync" or one_step]


def exact_return(env, policies):
    """Exact expected team return of the tabular policies (matrix and two-step games)."""
    if getattr(env, "payoff", None) is not None:
        return asae.joint_value(env.payoff, [p[0] for p in policies])
    if isinstance(env, envs.TwoStepGame):                 # agent 0 picks 2A / 2B in state 0
        p0 = policies[0][0]
        return (p0[0] * asae.joint_value(env.payoff_2a, [p[1] for p in policies])
                + p0[1] * asae.joint_value(env.payoff_2b, [p[2] for p in policies]))
    raise ValueError(f"no exact return for {type(env).__name__}")


def learning_curve(env, spec, res, window=20):
    """(env_steps, return) per update: exact J(π) where available; else the mean return of
    the episodes that ended in the last ``window`` rollouts (a trailing average: one
    rollout's few finished episodes are too noisy to compare with 95 % of the optimum)."""
    if spec.exact:
        J = np.array([exact_return(env, pols) for pols in res.policies])
        steps = np.concatenate([[0], res.env_steps])
        return steps, J
    r = res.mean_return
    curve = np.array([np.nanmean(r[max(0, t - window + 1):t + 1])
                      if np.isfinite(r[max(0, t - window + 1):t + 1]).any() else np.nan
                      for t in range(r.size)])
    return res.env_steps, curve


def steps_to_reach(steps, curve, level):
    """First env-step count at which the curve reaches ``level`` (inf if never)."""
    hit = np.nonzero(np.nan_to_num(curve, nan=-np.inf) >= level)[0]
    return float(steps[hit[0]]) if hit.size else np.inf


def run_study(args, spec, init_std, seeds):
    """Train every method on every seed; returns {method: [per-seed dict]}."""
    env = spec.make()
    out = {}
    for method in methods_for(env):
        t0 = time.perf_counter()
        runs = []
        for seed in seeds:
            cfg = spec_config(spec, seed, init_logit_std=init_std, record_policies=spec.exact)
            res = asae.train(env, method, cfg)
            steps, curve = learning_curve(env, spec, res)
            runs.append(dict(seed=seed, greedy=res.greedy_return, stochastic=res.stochastic_return,
                             optimal=res.greedy_optimal, wall=res.wall_time, steps=steps,
                             curve=curve, to95=steps_to_reach(steps, curve, 0.95 * env.optimum)))
        out[method] = runs
        log(f"learning {spec.name:16s} {method:10s} init std {init_std}: {len(seeds)} seeds "
            f"in {time.perf_counter() - t0:.1f} s")
    return env, out


def _early(runs, k, exact):
    """Mean over seeds of the return after k updates (index k of an exact curve)."""
    vals = [r["curve"][k if exact else k - 1] for r in runs if len(r["curve"]) > k]
    return float(np.nanmean(vals)) if vals else float("nan")


def _median_steps(runs):
    s = np.array([r["to95"] for r in runs])
    reached = np.isfinite(s).sum()
    med = np.median(s)  # inf when fewer than half reach
    return (f"{med:,.0f}" if np.isfinite(med) else "—") + f" ({reached}/{len(s)})", med, int(reached)


def learning_rows(spec, env, study, brief=False):
    rows, records = [], []
    for method, runs in study.items():
        g = np.array([r["greedy"] for r in runs])
        st = np.array([r["stochastic"] for r in runs])
        frac = np.mean([r["optimal"] for r in runs])
        med_txt, med, reached = _median_steps(runs)
        e5, e15 = _early(runs, 5, spec.exact), _early(runs, 15, spec.exact)
        rec = dict(game=spec.name, method=method, seeds=len(runs), optimum=env.optimum,
                   frac_optimal=frac, greedy_mean=g.mean(), greedy_std=g.std(),
                   stochastic_mean=st.mean(), stochastic_std=st.std(),
                   median_steps_to_95=med, n_reached_95=reached, return_after_5=e5,
                   return_after_15=e15, wall_s=sum(r["wall"] for r in runs))
        records.append(rec)
        if brief:
            rows.append([spec.name, method, f"{frac:.2f}", f"{g.mean():.2f} ± {g.std():.2f}"])
        else:
            rows.append([spec.name, method, f"{frac:.2f}", f"{g.mean():.2f} ± {g.std():.2f}",
                         f"{st.mean():.2f} ± {st.std():.2f}", med_txt, f"{e5:.2f}", f"{e15:.2f}"])
    return rows, records


def section_learning(args, results):
    """Learning table: games × methods × seeds, random N(0,1) initial logits (the same for
    every method under a seed), plus a brief uniform-initialisation variant."""
    print("\n## Learning\n")
    seeds = list(range(2 if args.quick else 20))
    specs = game_specs(args.quick)
    rows, records, curves = [], [], {}
    for spec in specs:
        env, study = run_study(args, spec, 1.0, seeds)
        r, rec = learning_rows(spec, env, study)
        rows += r
        records += rec
        curves[spec.name] = {m: (runs[0]["steps"], np.nanmean([x["curve"] for x in runs], axis=0),
                                 env.optimum) for m, runs in study.items()}
    hp = asae.Config()
    notes = [
        f"{len(seeds)} seeds per cell; initial logits N(0, 1) drawn from the seed alone, so every "
        "method starts from the same policy under the same seed. Shared hyperparameters "
        f"(asae.Config defaults, every method): γ={hp.gamma}, λ={hp.lam}, ε={hp.clip_eps}, "
        f"sync_clip={hp.sync_clip}, epochs={hp.epochs}, minibatches={hp.minibatches}, "
        f"lr_actor={hp.lr_actor}, lr_critic={hp.lr_critic}, entropy_coef={hp.entropy_coef}. "
        "Per game (all methods): " + "; ".join(
            f"{s.name}: reward_scale={s.reward_scale:.4g}, {s.iterations} updates × "
            f"{s.n_envs}×{s.rollout_len} steps" + "".join(f", {k}={v}" for k, v in s.overrides)
            for s in specs) + ".",
        "optimal: fraction of seeds whose final greedy joint policy reaches the optimum. "
        "greedy / stochastic: final return of the argmax / sampled joint policy (mean ± std "
        "over seeds). steps to 95%: median env steps until the expected return reaches 95% of "
        "the optimum ('—' if fewer than half the seeds do; in brackets how many do). "
        "J@5, J@15: mean return after 5 and 15 updates. Matrix and two-step games: exact "
        "expected return J(π) of the policy tables; grid foraging: mean return of the episodes "
        "that ended in the last 20 rollouts (a trailing average of sampled episodes).",
    ]
    emit_table(results, "learning", "random_init", "Learning: random initial logits N(0, 1)",
               ["game", "method", "optimal", "greedy return", "stochastic return",
                "steps to 95%", "J@5", "J@15"], rows, records, notes)
    # Uniform initial logits: every seed starts in one basin; only sampling differs.
    rows_u, rec_u = [], []
    seeds_u = seeds[: (1 if args.quick else 10)]
    for spec in specs:
        if not spec.exact:
            continue
        env, study = run_study(args, spec, 0.0, seeds_u)
        r, rec = learning_rows(spec, env, study, brief=True)
        rows_u += r
        rec_u += rec
    emit_table(results, "learning", "uniform_init", "Learning: uniform initial policies",
               ["game", "method", "optimal", "greedy return"], rows_u, rec_u,
               [f"{len(seeds_u)} seeds, all starting from the uniform joint policy (one basin); "
                "same hyperparameters as above."])
    if args.plot:
        plot_curves(curves, args.plot)


def plot_curves(curves, path):
    """Mean learning curve per game and method (random initial logits) → PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("--plot: matplotlib not installed (pip install -e '.[plot]'); no plot written")
        return
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.4))
    for ax, (game, by_method) in zip(np.atleast_1d(axes), curves.items()):
        for method, (steps, curve, optimum) in by_method.items():
            ax.plot(steps, curve, label=method, lw=1.5)
        ax.axhline(optimum, color="k", ls=":", lw=1)
        ax.set_title(game)
        ax.set_xlabel("env steps")
    np.atleast_1d(axes)[0].set_ylabel("expected team return (mean over seeds)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


# =======================================================================================
# Bias — each method's advantage vs the exact synchronous target Ã^i (E6)
# =======================================================================================


def section_bias(args, results):
    """Exact bias and second moment of the advantage each method uses (advantage_bias)."""
    print("\n## Bias\n")
    seeds = list(range(1 if args.quick else 10))
    variants = [(m, m, {}) for m in asae.METHODS] + [("asae (sync_clip=None)", "asae",
                                                      {"sync_clip": None})]
    rows, records = [], []
    for spec in game_specs(args.quick)[:3]:
        env = spec.make()
        for label, method, kw in variants:
            t0 = time.perf_counter()
            outs = [asae.advantage_bias(env, method, spec_config(spec, seed, **kw)) for seed in seeds]
            col = lambda key: np.array([o[key] for o in outs])
            b, b1 = col("mean_abs_bias"), col("mean_abs_bias_async")
            m2, m21 = col("mean_second_moment"), col("mean_second_moment_async")
            rel_b, rel_m2 = b.mean() / b1.mean(), m2.mean() / m21.mean()
            rows.append([spec.name, label, f"{b.mean():.4f} ± {b.std():.4f}",
                         f"{b1.mean():.4f}", f"{rel_b:.2f}", f"{m2.mean():.2f}",
                         f"{rel_m2:.3f}"])
            records.append(dict(game=spec.name, method=label, seeds=len(seeds),
                                mean_abs_bias=b.mean(), bias_std=b.std(),
                                same_path_async_bias=b1.mean(), bias_ratio=rel_b,
                                second_moment=m2.mean(), same_path_async_second_moment=m21.mean(),
                                second_moment_ratio=rel_m2))
            log(f"bias {spec.name:16s} {label:22s} {time.perf_counter() - t0:.1f} s")
    emit_table(
        results, "bias", "bias", "Bias: |used advantage − synchronous target Ã^i| (exact)",
        ["game", "method", "mean abs bias", "ω=1, same path", "ratio", "second moment",
         "ratio to ω=1"], rows, records,
        [f"{len(seeds)} seeds; same training setting as the learning table. At every gradient "
         "step of every update and for every agent, the method's expected advantage given a^i, "
         "E_{a^-i~π_old^-i}[ω^i(a) A_old(a)] (ω^i: 1 for async and coma, w^i of E8 for asae, M of "
         "E9 for happo, the exact E6 ratio for exact_sync), is compared with Ã^i of E6 under the "
         "policies after the update; mean |difference| over steps, agents, actions (uniform) and "
         "seeds (± std over seeds), in payoff units. 'ω=1, same path': the asynchronous estimate "
         "A^i_old measured at the same steps of the same training run, and 'ratio' = bias / that "
         "— the comparison free of each method's different training path. second moment: "
         "E_{a~π_old}[(ω^i A_old)^2], the per-sample second moment of the weighted estimate "
         "(mean over steps, agents, seeds), and its ratio to the ω=1 value at the same steps: "
         "the variance price of the weights. COMA's expectation with an exact Q is A^i_old (E7), "
         "so its ratios are 1 by construction; its own critic's error is not in this table."])
    table_bias_vs_epochs(args, results)


def table_bias_vs_epochs(args, results):
    """Bias as the update gets longer: partners move further within one update (E7)."""
    seeds = list(range(1 if args.quick else 5))
    epochs_grid = [1, 4] if args.quick else [1, 2, 4, 8, 16]
    spec = game_specs(args.quick)[0]                      # climbing
    env = spec.make()
    rows, records = [], []
    for epochs in epochs_grid:
        row = [str(epochs)]
        for method in ("async", "happo", "asae"):
            outs = [asae.advantage_bias(env, method, spec_config(spec, seed, epochs=epochs))
                    for seed in seeds]
            mean = lambda key: float(np.mean([o[key] for o in outs]))
            b, rel = mean("mean_abs_bias"), mean("mean_abs_bias") / mean("mean_abs_bias_async")
            m2 = mean("mean_second_moment") / mean("mean_second_moment_async")
            row += [f"{b:.4f}"] if method == "async" else [f"{b:.4f} ({rel:.2f})", f"{m2:.3f}"]
            records.append(dict(game=spec.name, epochs=epochs, method=method, seeds=len(seeds),
                                mean_abs_bias=b, bias_ratio_same_path=rel, second_moment_ratio=m2))
        rows.append(row)
        log(f"bias vs epochs {spec.name}: epochs={epochs}")
    emit_table(
        results, "bias", "bias_vs_epochs", f"Bias vs update length ({spec.name})",
        ["epochs", "async bias", "happo bias (ratio)", "happo m2 ratio", "asae bias (ratio)",
         "asae m2 ratio"], rows, records,
        [f"{len(seeds)} seeds, {spec.name}, the learning-table setting with `epochs` changed "
         "(4 minibatches each, so 4·epochs gradient steps per update). Bias, same-path ratio to "
         "ω=1 (in brackets) and second-moment ratio as in the table above. The longer the update, the further the partners move "
         "from π_old and the larger the asynchronous bias (E7); asae's weights track the move."])


SECTIONS = {"speed": section_speed, "learning": section_learning, "bias": section_bias}


def parse_args(argv=None):
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CI-sized run (< 60 s in total)")
    p.add_argument("--json", metavar="PATH", help="write every number collected to PATH")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all)")
    p.add_argument("--plot", metavar="PATH", help="write learning curves to PATH (learning)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    return args


def to_jsonable(obj):
    """json.dump fallback for NumPy scalars and arrays."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def main(argv=None):
    args = parse_args(argv)
    results = {"meta": header(args)}
    for name in args.sections:
        SECTIONS[name](args, results)
    results["meta"]["wall_s"] = time.perf_counter() - _T0
    print(f"\nTotal wall time: {results['meta']['wall_s']:.1f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=to_jsonable)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
