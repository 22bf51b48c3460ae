"""How the bench runs and records: every seed of every cell one task on a process pool
(``--jobs``) or a Dask cluster (``--dask ADDRESS``), progress and failures on stderr,
markdown tables on stdout, every number as
strict JSON rewritten atomically after each finished cell (``--json``), and the docs page
of a run — its tables, figures, machine, versions and sizes (``--docs``).

>>> jsonable({"a": np.float64("nan"), 2: (np.int64(1), np.arange(2), float("inf"))})
{'a': None, '2': [1, [0, 1], None]}
"""
import concurrent.futures as cf
import dataclasses
import functools
import hashlib
import inspect
import json
import math
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
import uuid

import numba
import numpy as np

from bench_plan import make_game

JSON_NOTE = ("Standard JSON: null marks a value that does not exist (a median when fewer than "
             "half the seeds get there, an interval from < 2 seeds, a ratio over 0, a failed "
             "run's numbers); NaN and Infinity are never written.")
PAGE_NOTE = """\
Written by `python bench.py{command}` at the end of a full run (`--docs DIR` for any run): every
table it printed, with its notes, and its figures, the machine and versions in the header
below, and the size of each section here. Do not edit by hand; rerun the bench. The learning,
bias, study and head-to-head numbers are bit-identical from run to run and independent of
`--jobs` and `--dask` (same seeds → same result); the timings are not. `--json PATH` writes
every number as strict JSON."""
#: The docs page a run writes into ``--docs DIR``: DIR/results.md, or the section's own page.
PAGES = {"h2h": ("h2h.md", "Head to head: bench results"),
         "spread": ("spread.md", "Neural learners on Spread: bench results")}


# ---- Strict JSON, written atomically -----------------------------------------------------
def jsonable(x):
    """NumPy → Python and non-finite floats → None, recursively."""
    x = x.tolist() if isinstance(x, (np.ndarray, np.generic)) else x
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def plain(x):
    """NumPy → Python, recursively, NaN and ±inf kept (Python's JSON round-trips them): what the
    run cache stores, so that a cached run reads back as the run returned it."""
    x = x.tolist() if isinstance(x, (np.ndarray, np.generic)) else x
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x


def replace_file(path: str, write) -> str:
    """``write(file)`` into a temp file, renamed over ``path``: a killed run keeps the last one,
    and a failed write leaves no temp file behind."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.isfile(tmp):
            os.remove(tmp)
        raise
    return path


def write_json(path: str, data) -> None:
    """Strict JSON to a temp file, renamed over ``path``: a killed run keeps the last one."""
    replace_file(path, lambda f: json.dump(jsonable(data), f, indent=1, allow_nan=False))


def anchor(title: str, words: int = 7) -> str:
    """The docs page's link target of a table: the first ``words`` words of its title in
    lower case, joined by -.

    >>> anchor("Study b: step-size map, n = 2, penalty k = −100")
    'study-b-step-size-map-n-2'
    """
    return "-".join(re.findall(r"[a-z0-9]+", title.lower())[:words])


# ---- Output: stdout, stderr, JSON, the docs page -----------------------------------------
class Report:
    """Tables to stdout; progress and failures to stderr; everything kept for ``--json`` and
    the docs page."""

    def __init__(self, args):
        """Print (and keep as JSON ``meta``) the machine, versions, git revision and command."""
        self.args, self.failures, self.tty = args, [], sys.stderr.isatty()
        self.last, self.page, self.anchors = time.perf_counter(), [], set()
        cpu = machine().rsplit(", ", 1)[0]
        git = subprocess.run(["git", "describe", "--always", "--dirty"], text=True,
                             capture_output=True, cwd=os.path.dirname(os.path.abspath(__file__))
                             ).stdout.strip() or "?"
        m = dict(cpu=cpu, cores=os.cpu_count(), jobs=args.jobs, python=platform.python_version(),
                 git=git, numpy=np.__version__, numba=numba.__version__,
                 date=time.strftime("%Y-%m-%d %H:%M %Z"), argv=sys.argv[1:], quick=args.quick)
        self.data = {"meta": m, "notes": [JSON_NOTE]}
        self.out(f"## asae bench\n\n- {cpu}, {m['cores']} cores, {args.jobs} worker process(es)\n"
                 f"- Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}; asae at git "
                 f"{git}\n- {m['date']}: `python bench.py {' '.join(m['argv'])}`")

    def out(self, text: str) -> None:
        """Markdown to stdout, kept for the docs page."""
        print(text, flush=True)
        self.page.append(text)

    def log(self, msg: str) -> None:
        """A line on stderr, unless ``--quiet``."""
        if not self.args.quiet:
            print(msg, file=sys.stderr, flush=True)

    def progress(self, label: str, done: int, n: int, runs: tuple, t0: float,
                 final: bool, units: tuple = ("seeds", "runs")) -> None:
        """Seeds done in this cell, and the section's runs done / total with an ETA: in place on
        a terminal; otherwise a plain line at most every 10 s and when the section ends.
        ``units``: what ``done``/``n`` count (None: no such count) and what ``runs`` counts."""
        now = time.perf_counter()
        if self.args.quiet or not (self.tty or final or now - self.last >= 10):
            return
        el, self.last, (d, total) = now - t0, now, runs
        eta = f", ETA {el / d * (total - d):.0f} s" if 0 < d < total else ""
        print(("\r\033[K" if self.tty else "") + f"{label}: "
              + (f"{done}/{n} {units[0]} (" if units[0] else "(")
              + f"{d}/{total} {units[1]}, {el:.0f} s{eta})",
              end="\n" if final or not self.tty else "", file=sys.stderr, flush=True)

    def table(self, section, title, headers, rows, records, notes=()):
        """A markdown table with its notes (stdout, the page) and its numbers (JSON)."""
        lines, key = [headers, ["---"] * len(headers), *rows], anchor(title)
        key = next(k for k in [key] + [f"{key}-{n}" for n in range(2, len(self.anchors) + 2)]
                   if k not in self.anchors)                       # a repeated title: -2, -3, …
        self.anchors.add(key)
        self.page.append(f'\n<a id="{key}"></a>')
        self.out(f"\n### {title}\n\n" + "\n".join("| " + " | ".join(map(str, r)) + " |"
                                                  for r in lines)
                 + "".join(f"\n\n{n}" for n in notes))
        self.data.setdefault(section, {}).setdefault("tables", []).append(
            {"title": title, "headers": headers, "rows": rows, "records": records, "notes": notes})
        self.save()

    def figure(self, path: str, caption: str) -> None:
        """A figure just written: logged, and shown on the page where the run has got to."""
        self.log(f"wrote {path}")
        self.page.append((path, caption))

    def fail(self, msg: str) -> None:
        self.failures.append(msg)
        self.data["failures"] = self.failures
        print(f"FAILED: {msg}", file=sys.stderr, flush=True)

    def save(self) -> None:
        if self.args.json:
            write_json(self.args.json, self.data)

    def sizes(self) -> list:
        """Per section run: [section, what ran, wall time] for the page."""
        rows = []
        for name, secs in self.data["meta"].get("section_s", {}).items():
            cells = self.data.get(name, {}).get("cells")
            if cells is not None:
                seeds, runs = sorted({c["seeds"] for c in cells}), sum(c["seeds"] for c in cells)
                what = (f"{len(cells)} cells × {seeds[0]} seeds = " if len(seeds) == 1
                        else f"{len(cells)} cells, ") + f"{runs:,} training runs"
            elif name == "speed":
                kernels, train = (len(t["rows"]) for t in self.data[name]["tables"][:2])
                what = f"{kernels} kernel timings, {train} training-throughput timings"
            else:                                  # e.g. spread --parts s: timings only
                what = ", ".join(f"{len(t['rows'])} rows of {t['title']!r}"
                                 for t in self.data.get(name, {}).get("tables", []))
            rows.append([name, what, f"{secs:.1f} s"])
        return rows

    def write_page(self, path: str, title: str = "Bench results", command: str = "") -> str:
        """The docs page at ``path``: a note, the sections' sizes, then everything printed,
        with the figures (linked relative to the page) after the tables they show."""
        folder, text = os.path.dirname(os.path.abspath(path)), []
        for item in self.page:
            if isinstance(item, tuple):
                rel = os.path.relpath(os.path.abspath(item[0]), folder).replace(os.sep, "/")
                item = f"\n![{item[1]}]({rel})"
            text.append(item)
        figures = "No figures in this run (`--plot DIR`, extra `plot`: matplotlib)."
        if any(isinstance(item, tuple) for item in self.page):
            import matplotlib
            figures = f"Figures drawn with matplotlib {matplotlib.__version__}."
        head = [f"# {title}", "", PAGE_NOTE.format(command=command), "",
                "| section | size | wall time |",
                "| --- | --- | --- |", *("| " + " | ".join(r) + " |" for r in self.sizes()), "",
                figures, ""]
        return replace_file(path, lambda f: f.write("\n".join(head + text) + "\n"))


# ---- Running experiments: one task per seed, on a process pool or a Dask cluster ---------
@functools.lru_cache(maxsize=1)
def machine() -> str:
    """This machine's processor (/proc/cpuinfo's model name, else the architecture) and core
    count: what the page's header shows and each cached run records."""
    cpu = platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f
                        if ln.startswith("model name")), cpu)
    return f"{cpu}, {os.cpu_count()} cores"


@functools.lru_cache(maxsize=1)
def code_identity() -> str:
    """What a run's result depends on besides its task: a digest of the project's modules
    (the .py files beside this one, tests aside) and the Python, NumPy and Numba versions. A
    Dask worker must report the same before it runs a task (bit-identical results)."""
    here, h = os.path.dirname(os.path.abspath(__file__)), hashlib.sha256()
    for name in sorted(f for f in os.listdir(here) if f.endswith(".py")
                       and not f.startswith(("test_", "conftest"))):
        with open(os.path.join(here, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return (f"{h.hexdigest()[:16]} python {platform.python_version()} numpy {np.__version__} "
            f"numba {numba.__version__}")


@functools.lru_cache(maxsize=1)
def library_identity() -> str:
    """What a run's numbers depend on: a digest of the learners and games (asae*.py, envs*.py,
    bench_plan.py) and the Python, NumPy and Numba versions — not the bench's tables, so a
    change to a report keeps the cache of finished runs (``--cache``)."""
    here, h = os.path.dirname(os.path.abspath(__file__)), hashlib.sha256()
    for name in sorted(f for f in os.listdir(here) if f.endswith(".py")
                       and (f.startswith(("asae", "envs")) or f == "bench_plan.py")):
        with open(os.path.join(here, name), "rb") as f:
            h.update(name.encode() + b"\0" + f.read() + b"\0")
    return (f"{h.hexdigest()[:16]} python {platform.python_version()} numpy {np.__version__} "
            f"numba {numba.__version__}")


def run_key(task) -> str:
    """The cache key of one run (``--cache``): a digest of :func:`library_identity`, the
    outcome function's source, the game and method specs and every field of the run's
    Config (its seed included)."""
    outcome, game, method, cfg = task
    func = getattr(outcome, "func", outcome)              # a functools.partial's function
    h = hashlib.sha256(library_identity().encode() + b"\0" + inspect.getsource(func).encode())
    fields = jsonable({f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})
    h.update(json.dumps([type(cfg).__name__, game, method, fields], sort_keys=True).encode())
    return h.hexdigest()[:32]


class RunCache:
    """Finished runs on disk (``--cache DIR``): one JSON file per run, named by
    :func:`run_key`, written atomically when the run ends without error; a study stopped at
    any point and started again with the same command runs only what is missing (same code,
    same Config → the same numbers, so a cached run is the run)."""

    def __init__(self, path: str):
        os.makedirs(path, exist_ok=True)
        self.path = path

    def get(self, task):
        """The cached result of ``task``, or None (absent, torn, or not a run file)."""
        rec = self.record(run_key(task))
        return None if rec is None else rec["result"]

    def put(self, task, result: dict, where: str = "") -> None:
        """Keep a finished run (never an error), with the code identity that ran it (what
        :meth:`foreign` reports of files no task here reads) and where it ran (``where``:
        this machine by default)."""
        if "error" not in result:
            _, game, method, cfg = task
            replace_file(os.path.join(self.path, run_key(task) + ".json"),
                         lambda f: json.dump({"game": game, "method": method, "seed": cfg.seed,
                                              "identity": library_identity(),
                                              "machine": where or machine(),
                                              "result": plain(result)}, f))

    def record(self, key: str) -> dict | None:
        """The whole file of ``key`` (its run, identity and machine), or None."""
        try:
            with open(os.path.join(self.path, key + ".json")) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        ok = (isinstance(rec, dict) and isinstance(rec.get("result"), dict)
              and isinstance(rec.get("identity", ""), str))
        return rec if ok else None                        # else: not a run file of ours

    def foreign(self, keys) -> dict:
        """The runs in this folder that none of ``keys`` names, counted by the code identity
        that wrote them ('unrecorded' for files older than that field, 'unreadable' for torn
        ones): what a changed library or NumPy/Numba version leaves behind."""
        out = {}
        for name in sorted(os.listdir(self.path)):
            if name.endswith(".json") and name[:-5] not in keys:
                rec = self.record(name[:-5])
                who = "unreadable" if rec is None else rec.get("identity", "unrecorded")
                out[who] = out.get(who, 0) + 1
        return out


def worker_identity() -> str:
    """``code_identity()`` where this runs (a Dask worker: its own modules)."""
    return code_identity()


def dask_client(address: str, timeout: float = 20):
    """A ``distributed.Client`` of the scheduler at ``address``, its workers checked to run
    this code (``code_identity``); ImportError naming the extra, ValueError saying what is
    wrong."""
    try:
        import distributed
    except ImportError:
        raise ImportError("--dask needs dask.distributed: pip install -e '.[dask]'") from None
    try:
        client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 — OSError, TimeoutError, ValueError (bad address)
        raise ValueError(f"--dask {address}: cannot reach a Dask scheduler there "
                         f"({type(exc).__name__}: {exc})".replace("\n", " ")) from None
    try:
        seen = client.run(worker_identity)
    except Exception as exc:  # noqa: BLE001 — e.g. the workers cannot import bench_run
        client.close()
        raise ValueError(f"--dask {address}: the workers cannot run the bench "
                         f"({type(exc).__name__}: {exc}); start them with the checkout on "
                         "PYTHONPATH") from None
    other = {w: i for w, i in seen.items() if i != code_identity()}
    if other:
        client.close()
        w, i = next(iter(other.items()))
        raise ValueError(f"--dask {address}: worker {w} runs other code or versions ({i}) than "
                         f"the bench ({code_identity()}); start workers from the same checkout")
    return client


def run_checked(identity: str, task) -> dict:
    """``run_seed`` on a Dask worker, once it has checked it runs the same code and versions."""
    if code_identity() != identity:
        return {"error": f"this Dask worker runs other code or versions ({code_identity()}) "
                f"than the bench ({identity}); start workers from the same checkout"}
    return run_seed(task)


class DaskPool:
    """The cells on a Dask cluster (``--dask``), in the process pool's interface: one task per
    (cell, seed), keyed ``asae-<section>-<run>-<cell>-<seed>`` (a worker lost mid-task: the
    scheduler runs the task again; its one future still yields one result)."""

    def __init__(self, client, kind: str):
        self.pool = client.get_executor(pure=False)
        self.where = ("a Dask worker of the scheduler at "
                      + str(getattr(getattr(client, "scheduler", None), "address", "?")))
        self.prefix = f"asae-{kind}-{uuid.uuid4().hex[:8]}"

    def submit(self, cell: int, seed: int, task):
        return self.pool.submit(run_checked, code_identity(), task,
                                key=f"{self.prefix}-{cell}-{seed}")

    def shutdown(self, wait=True, cancel_futures=False):
        self.pool.shutdown(wait=wait and not cancel_futures)


class LocalPool:
    """``--jobs`` spawned processes (1: a thread of this process), as DaskPool."""

    def __init__(self, jobs: int):
        self.pool = (cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
                     if jobs > 1 else cf.ThreadPoolExecutor(1))
        self.where = machine()

    def submit(self, cell: int, seed: int, task):
        return self.pool.submit(run_seed, task)

    def shutdown(self, wait=True, cancel_futures=False):
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def run_seed(task) -> dict:
    """One run (a pool task): (outcome, game spec, method spec, Config) → ``outcome(env, method
    name, Config)`` as a small dict, or the error."""
    outcome, game, method, cfg = task
    try:
        return dict(outcome(make_game(game), method.split(":")[0], cfg))
    except Exception as exc:  # noqa: BLE001 — the parent reports it as a failure
        return {"error": f"{type(exc).__name__}: {exc}"}


class StatusShown(Exception):
    """Raised by :func:`experiment` under ``--status`` once the cache's state is printed."""


def cache_status(rep, kind: str, cells, cache: RunCache, outcome) -> set:
    """``--status``: per cell, its runs found in the cache and missing, the median CPU time
    of its cached runs (where runs record one: spread and h2h), and the CPU-hours its missing
    runs will take at that median (else its stage's, else any cached run's; '?' with no
    cached run to go by), and which machines ran the cached runs. Runs nothing; returns the
    cells' keys (:func:`foreign_note` reports the folder's other files once)."""
    stats, keys = [], set()
    for c in cells:
        ks = [run_key((getattr(c, "outcome", outcome), c.game, c.method, cfg))
              for cfg in c.configs]
        keys.update(ks)
        recs = [r for r in map(cache.record, ks) if r is not None]
        cpu = [float(x) for r in recs if isinstance(x := r["result"].get("cpu_s"), (int, float))
               and math.isfinite(x)]
        stats.append((c, len(recs), cpu, {str(r.get("machine", "not recorded")) for r in recs}))
    every = [x for _, _, cpu, _ in stats for x in cpu]
    rows, recs, left, unknown = [], [], 0.0, 0
    for c, hit, cpu, _ in stats:
        stage = getattr(c, "stage", 0)
        near = cpu or [x for d, _, cp, _ in stats if getattr(d, "stage", 0) == stage
                       for x in cp] or every
        miss = len(c.configs) - hit
        est = miss * float(np.median(near)) / 3600 if near and miss else 0.0
        left, unknown = left + est, unknown + (miss if miss and not near else 0)
        rows.append([f"{c.game} {c.method}{getattr(c, 'tag', '')}", stage, hit, miss,
                     f"{np.median(cpu):.0f}" if cpu else "—",
                     f"{est:.1f}" if miss and near else ("0" if not miss else "?")])
        recs.append({"game": c.game, "method": c.method, "stage": stage, "cached": hit,
                     "missing": miss, "cpu_hours_left": est if near or not miss else None})
    found, total = sum(h for _, h, _, _ in stats), sum(len(c.configs) for c in cells)
    machines = sorted(set().union(*(w for *_, w in stats)))
    rep.table(kind, f"{kind}: what the cache holds (--status)",
              ["cell", "stage", "cached", "to run", "median CPU-s", "CPU-h to run"], rows,
              recs, [f"`{cache.path}`: {found} of {total} runs cached, {total - found} to run"
                     + (f", ≈ {left:.1f} CPU-hours" if not unknown else
                        f", ≈ {left:.1f} CPU-hours for {total - found - unknown} of them, no "
                        f"estimate yet for {unknown}")
                     + " (each at its cell's median cached CPU time, else its stage's, else "
                     "any run's)." + (f" Machines of the cached runs: {'; '.join(machines)}."
                                      if machines else "")])
    return keys


def foreign_note(rep, cache: RunCache, keys: set) -> None:
    """``--status``, once after every section: the folder's runs that no cell of this command
    reads, counted by the code identity that wrote them (a changed library, NumPy or Numba
    shows here; so do the runs of cells or seeds this command does not ask for)."""
    other = cache.foreign(keys)
    rep.out(f"\nFiles of `{cache.path}` that no run of this command reads, by the code that "
            "wrote them: " + ("; ".join(f"{n} × {who}" for who, n in other.items())
                              if other else "none") + f". This code: {library_identity()}.")
    rep.data.setdefault("status", {})["other"] = other


def experiment(args, rep, kind: str, cells, summary, outcome) -> list:
    """Run every seed of every cell through ``outcome`` — all queued at once on ``--jobs``
    processes (1: a thread of this process) or on the Dask cluster of ``--dask`` (the client
    is ``args.dask``), consumed cell by cell in seed order, each (cell, seed) one task and
    one recorded result; after each cell save its JSON record from ``summary(cell,
    ok_results)`` → (record, row). Returns the table rows [game, method, *row]. A cell's
    optional ``tag`` extends its progress label; its optional ``outcome`` replaces
    ``outcome`` for its seeds; with ``--cache`` runs are queued by the cells' optional
    ``stage`` (0 first), then seed by seed; with ``--status`` nothing runs: the cache's state
    is printed (:func:`cache_status`) and :class:`StatusShown` raised."""
    if getattr(args, "status", False):
        args.status_keys = getattr(args, "status_keys", set()) | cache_status(
            rep, kind, cells, RunCache(args.cache), outcome)
        raise StatusShown(kind)
    rows, records = [], rep.data.setdefault(kind, {}).setdefault("cells", [])
    total = sum(len(c.configs) for c in cells)
    client = getattr(args, "dask", None)
    pool = DaskPool(client, kind) if client is not None else LocalPool(args.jobs)
    cache = RunCache(args.cache) if getattr(args, "cache", None) else None
    try:
        queued = [[None] * len(c.configs) for c in cells]
        order = sorted(((s, i) for i, c in enumerate(cells) for s in range(len(c.configs))),
                       key=lambda si: (getattr(cells[si[1]], "stage", 0), *si) if cache
                       else si[::-1])       # --cache: seed by seed (within a cell's stage)
        for s, i in order:
            c = cells[i]
            task = (getattr(c, "outcome", outcome), c.game, c.method, c.configs[s])
            hit = cache.get(task) if cache else None
            if hit is not None:
                queued[i][s] = cf.Future()
                queued[i][s].set_result(hit)
                continue
            queued[i][s] = pool.submit(i, s, task)
            if cache:
                queued[i][s].add_done_callback(
                    lambda f, t=task: f.exception() is None and cache.put(t, f.result(),
                                                                        pool.where))
        rep.last = t0 = time.perf_counter()        # off a terminal: the first line after 10 s
        finished = 0                               # runs of the cells before this one
        for c, futs in zip(cells, queued):
            label = f"{kind} {c.game} {c.method}{getattr(c, 'tag', '')}"
            for done, _ in enumerate(cf.as_completed(futs), 1):
                rep.progress(label, done, len(futs), (finished + done, total), t0,
                             finished + done == total)
            c.results, finished = [f.result() for f in futs], finished + len(futs)
            for cfg, r in zip(c.configs, c.results):
                if "error" in r:
                    rep.fail(f"{label} seed {cfg.seed}: {r['error']}")
            record, row = summary(c, [r for r in c.results if "error" not in r])
            records.append({"game": c.game, "method": c.method, "config": vars(c.configs[0]),
                            "seeds": len(c.configs), **record})
            rows.append([c.game, c.method, *row])
            rep.save()
    except BaseException:                      # e.g. Ctrl-C: drop the queued runs, keep the JSON
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return rows
