"""asae bench: how fast the kernels, envs and learner are, how well each method learns,
when ASAE matters (the ``study`` section, bench_study.py) and how it compares with HAPPO,
CoPPO and A2PO from 2 to 16 agents (the ``h2h`` section, bench_h2h.py), and the neural
learners on MPE's simple_spread (the ``spread`` section, bench_net.py).

    python bench.py                            # speed, learn, bias, study (≤ 10 min, 2 cores)
    python bench.py --quick                    # those and h2h, CI-sized (seconds each)
    python bench.py h2h                        # the head-to-head study (docs/h2h.md)
    python bench.py spread                     # neural learners on Spread (docs/spread.md)
    python bench.py speed|learn|bias|study|h2h|spread -h  # one section and its options
    python bench.py learn --games penalty:k=-50 --methods async,asae --seeds 100 --epochs 8

Markdown tables go to stdout, progress to stderr. ``--json PATH`` is rewritten atomically
after every finished cell; ``--plot DIR`` draws figures (extra ``plot``). Runs are
independent per seed and spread over ``--jobs`` processes, or over a Dask cluster with
``--dask ADDRESS`` (extra ``dask``); results do not depend on either. Exit status 1 if a
run failed or a kernel disagreed with its NumPy reference; 2 for bad command-line input.
"""
# The bench, one module per concept; each imports only those above it, none imports bench.py:
#   bench_stats.py  Wilson intervals, sign tests, t-intervals, success paired with async
#   bench_plan.py   games, methods and Config flags → cells (a Config per seed)
#   bench_run.py    cells run on a process pool; tables, progress, strict JSON, the docs page
#   bench_plot.py   the figures (matplotlib imported only to draw)
#   bench_speed.py  the speed section
#   bench_learn.py  the learn and bias sections
#   bench_study.py  the study section
#   bench_h2h.py    the head-to-head section
#   bench_net.py    the spread section (neural learners)
#   bench.py        the command line and the section registry (this file)
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# One BLAS thread per process (inherited by the spawned workers): the neural learners'
# matrices are small, and OpenBLAS threads competing with the other workers for the cores
# make them tens of times slower. Set before NumPy's first import; the environment wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
_t0 = time.perf_counter()
import asae  # noqa: E402
import asae_tabular  # noqa: E402, F401 — the quickstart's imports, timed together for
import envs  # noqa: E402, F401 — the speed section's first-call table
IMPORT_S = time.perf_counter() - _t0

import bench_h2h  # noqa: E402
import bench_learn  # noqa: E402
import bench_net  # noqa: E402
import bench_speed  # noqa: E402
import bench_study  # noqa: E402
from bench_plan import DEFAULTS, FIELD_PARSERS, GAMES, game_defaults, plan  # noqa: E402
from bench_run import (PAGES, Report, RunCache, StatusShown, dask_client,  # noqa: E402
                       foreign_note)
import asae_tabular as tabular

SECTIONS = {"speed": bench_speed.speed, "learn": bench_learn.learn, "bias": bench_learn.bias,
            "study": bench_study.study, "h2h": bench_h2h.h2h,
            "spread": bench_net.spread_section}
PLANS = {"learn": lambda args: plan(args, "learn"), "bias": lambda args: plan(args, "bias"),
         "study": bench_study.cells, "h2h": bench_h2h.cells,
         "spread": bench_net.cells}  # what a section runs, checked first
#: What a plain ``python bench.py`` runs (≤ 10 minutes on 2 cores); ``--quick`` runs them all.
FULL_RUN = ("speed", "learn", "bias", "study")


def parse_args(argv=None):
    """Parse, then validate games, methods, Configs, --plot and --docs before anything runs."""
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(SECTIONS) + "}")
    subs = [sub.add_parser(n, help=f.__doc__.splitlines()[0], description=f.__doc__ + (
        "\n\n" + game_defaults.__doc__ if n in DEFAULTS else "")) for n, f in SECTIONS.items()]
    for sp in [p] + subs:
        # a subcommand's own value wins
        d = (lambda v: v) if sp is p else (lambda v: argparse.SUPPRESS)  # noqa: E731
        sp.add_argument("--quick", action="store_true", default=d(False), help="CI-sized run")
        sp.add_argument("--json", metavar="PATH", default=d(None),
                        help="write all numbers as strict JSON")
        sp.add_argument("--plot", metavar="DIR", default=d(None),
                        help="write figures into DIR (matplotlib)")
        sp.add_argument("--docs", metavar="DIR", default=d(None),
                        help="write DIR/results.md: every table, figure, version and size of the "
                        "run (default for the full `python bench.py`: docs/ beside bench.py, "
                        "with its figures if matplotlib is installed; 'none': no page)")
        sp.add_argument("--quiet", action="store_true", default=d(False),
                        help="no progress on stderr")
        sp.add_argument("--jobs", type=int, metavar="N", default=d(os.cpu_count() or 1),
                        help="worker processes (default: CPU count; 1: in this process)")
        sp.add_argument("--cache", metavar="DIR", default=d(None),
                        help="keep every finished run in DIR (one JSON file per run, keyed by "
                        "the learners' code, the Config and the seed) and reuse it: a stopped "
                        "study started again runs only what is missing; runs are then queued "
                        "seed by seed across cells")
        sp.add_argument("--status", action="store_true", default=d(False),
                        help="with --cache: run nothing; print per cell how many runs DIR holds "
                        "and how many are missing, the CPU-hours left, and DIR's runs of other "
                        "code or versions (no --docs page)")
        sp.add_argument("--dask", metavar="ADDRESS", default=d(None),
                        help="run the cells on the Dask cluster whose scheduler is at ADDRESS "
                        "(e.g. tcp://scheduler-host:8786; extra 'dask'; same results as the local "
                        "pool; --jobs then unused; the speed section always runs here)")
        if sp is not p and sp.prog.split()[-1] != "speed":
            sp.add_argument("--seeds", type=int, metavar="N", help="seeds per cell (learn 20, "
                            "bias 10, study 100, h2h 100, spread 20; --quick: 3, study 8, h2h 3, "
                            "spread 2)")
        if sp is not p and sp.prog.split()[-1] == "h2h":
            sp.add_argument("--agents", type=bench_h2h.agent_list, metavar="LIST",
                            help="numbers of agents, e.g. 2,3,4 [2,3,4,6,8,12,16; --quick 2,3]")
        if sp is not p and sp.prog.split()[-1] == "spread":
            sp.add_argument("--agents", type=bench_net.agent_list, metavar="LIST",
                            help="numbers of agents of parts m, b and a, e.g. 3,5 [m: 3,5,8; "
                            "b, a: 3; --quick 2,3]")
            sp.add_argument("--parts", type=bench_net.part_list, metavar="LIST",
                            help="parts to run: s (speed), l (learning), m (methods); not in "
                            "the default: b (the budget study), p (float32 against l's float64 "
                            "runs), a (parameter sharing at b's budget) [slm]; "
                            "a subset writes no docs page unless --docs is given")
            sp.add_argument("--study-iterations", type=int, metavar="N",
                            help="updates per run of part m [80 of 32 envs × 25 steps]: the "
                            "budget to raise on a cluster")
            sp.add_argument("--learn-iterations", type=int, metavar="N",
                            help="updates per run of part l [NetConfig's 200 of 128 × 25]")
            sp.add_argument("--budget-iterations", type=int, metavar="N",
                            help="updates per run of part b [625 of 128 × 25 = 2 M env steps]")
        if sp is p or sp.prog.split()[-1] not in DEFAULTS:
            continue
        sp.add_argument("--games", metavar="LIST", help="comma list of games with parameters, "
                        "e.g. climbing,penalty:k=-50:n_agents=3,grid:size=4; games: "
                        f"{', '.join(GAMES)}")
        sp.add_argument("--methods", metavar="LIST", help="comma list from "
                        f"{', '.join(asae.METHODS)}; with Config fields per method, e.g. "
                        "asae:sync_clip=none")
        g = sp.add_argument_group("TabularConfig fields", "[the Config default]; per-game defaults "
                                  "above; a bool flag alone means true")
        for f in [f for f in dataclasses.fields(tabular.TabularConfig) if f.name in FIELD_PARSERS]:
            doc = ("first seed (runs use seed, seed + 1, …)" if f.name == "seed"
                   else f.metadata.get("doc", ""))
            g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=FIELD_PARSERS[f.name],
                           default=argparse.SUPPRESS, metavar=FIELD_PARSERS[f.name].metavar,
                           help=f"{doc} [{f.default!r}]".replace("%", "%%"),
                           **({"nargs": "?", "const": True} if isinstance(f.default, bool) else {}))
    args = p.parse_args(argv)

    def error(msg: str):                         # argparse's format, one line, exit status 2
        p.exit(2, f"{p.prog}: error: {' '.join(str(msg).split())}\n")
    args.sections = ([args.command] if args.command else
                     list(SECTIONS) if args.quick else list(FULL_RUN))
    args.overrides = {k: getattr(args, k) for k in FIELD_PARSERS if hasattr(args, k)}
    args.games, args.methods, args.seeds = (getattr(args, k, None)
                                            for k in ("games", "methods", "seeds"))
    args.import_s = IMPORT_S
    most = 4 * (os.cpu_count() or 1)
    if not 1 <= args.jobs <= most:
        error(f"--jobs must be from 1 to {most} (4 × the CPU count); got {args.jobs}")
    if args.seeds is not None and args.seeds < 1:
        error(f"--seeds must be at least 1; got {args.seeds}")
    if args.status and args.cache is not None and not os.path.isdir(args.cache):
        error(f"--status reads an existing --cache folder; {args.cache!r} is not one")
    if args.cache is not None:
        try:
            os.makedirs(args.cache, exist_ok=True)
        except OSError as e:
            error(f"--cache must be a directory this process can create or write; "
                  f"{args.cache!r}: {e.strerror or e}")
    if args.status and args.cache is None:
        error("--status needs --cache DIR (the runs it reports on)")
    if args.status:
        args.docs, args.plot, args.dask = "none", None, None   # nothing runs: no page
    if args.docs is None and args.command in (None, *PAGES) and not args.quick:  # full runs
        args.docs = os.path.join(HERE, "docs")
    if getattr(args, "parts", None) and args.command == "spread" and not any(
            a == "--docs" or a.startswith("--docs=") for a in (argv or sys.argv[1:])):
        args.docs = None                         # a subset: no page over the full one
    args.docs = None if args.docs == "none" else args.docs
    try:
        for flag in ("--json", "--plot", "--docs"):
            if getattr(args, flag[2:]) == "":
                raise ValueError(f"{flag} needs a {'file' if flag == '--json' else 'folder'} "
                                 "path; got ''")
        if args.json:
            writable_file(args.json, "--json")
        if args.plot:
            import matplotlib  # noqa: F401
            writable_folder(args.plot, "--plot")
        if args.docs:
            writable_folder(args.docs, "--docs")
            if os.path.isdir(args.docs):
                writable_file(os.path.join(args.docs, PAGES.get(args.command, ("results.md",))[0]),
                              "--docs")
        for s in args.sections:                 # every cell built and checked, then dropped
            PLANS.get(s, lambda args: None)(args)
        for flag, folder in (("--plot", args.plot), ("--docs", args.docs)):
            try:
                os.makedirs(folder or ".", exist_ok=True)
            except OSError as exc:
                raise ValueError(f"{flag} {folder!r} cannot be made: {exc.strerror or exc}")
    except ValueError as exc:
        error(exc)
    except ImportError:
        error("--plot needs matplotlib: pip install -e '.[plot]'")
    if args.dask:
        try:
            args.dask = dask_client(args.dask)
        except (ImportError, ValueError) as exc:
            error(exc)
    if args.docs and not args.plot:             # the page's figures, if matplotlib is there
        try:
            import matplotlib  # noqa: F401, F811
            args.plot = args.docs
        except ImportError:
            pass
    return args


def writable_file(path: str, flag: str) -> str:
    """``path`` if the bench can later write it atomically (a temp file beside it, renamed
    over it): its folder exists and takes a new file, and it is not a folder or a device.
    ValueError otherwise; nothing is left behind."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a folder, not a file")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ValueError(f"{flag} {path!r} exists and is not a regular file")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path!r}: its folder {folder!r} does not exist")
    try:
        with open(tmp := f"{path}.tmp{os.getpid()}", "w"):
            pass
        os.remove(tmp)
    except OSError as exc:
        raise ValueError(f"{flag} {path!r} cannot be written: {exc.strerror or exc}") from None
    return path


def writable_folder(path: str, flag: str) -> str:
    """``path`` if it is a folder that takes a new file, or can be made as one (its nearest
    existing parent does); ValueError otherwise. Nothing is made or left behind."""
    top = os.path.abspath(path)
    while not os.path.lexists(top):
        top = os.path.dirname(top)
    if not os.path.isdir(top):
        raise ValueError(f"{flag} {path!r}" + (f": {top!r}" if top != os.path.abspath(path)
                                                else "") + " is a file, not a folder")
    try:
        with open(probe := os.path.join(top, f".bench{os.getpid()}"), "w"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise ValueError(f"{flag} {path!r}: no file can be written there "
                         f"({exc.strerror or exc})") from None
    return path


def main(argv=None) -> int:
    """Run the chosen sections, then write the docs page if asked; 1 if anything failed."""
    args = parse_args(argv)
    rep, t0 = Report(args), time.perf_counter()
    for name in args.sections:
        t = time.perf_counter()
        if args.status and name not in PLANS:       # a section with no runs to cache
            rep.out(f"\n## {name}: no runs to cache (--status)")
            continue
        try:
            SECTIONS[name](args, rep)
        except StatusShown:                         # --status: the cache's state, nothing run
            pass
        rep.data["meta"].setdefault("section_s", {})[name] = time.perf_counter() - t
    if args.status:                                 # the folder's other runs, once
        foreign_note(rep, RunCache(args.cache), getattr(args, "status_keys", set()))
    rep.data["meta"]["wall_s"] = time.perf_counter() - t0
    rep.save()
    each = rep.data["meta"].get("section_s", {})
    rep.out(f"\nTotal wall time {rep.data['meta']['wall_s']:.1f} s"
            + (" (" + ", ".join(f"{k} {v:.1f} s" for k, v in each.items()) + ")" if each else "")
            + (f"; {len(rep.failures)} FAILURE(S), see stderr" if rep.failures else ""))
    if args.docs:
        name, title = PAGES.get(args.command, ("results.md", "Bench results"))
        command = f" {args.command}" if args.command else ""
        rep.log(f"wrote {rep.write_page(os.path.join(args.docs, name), title, command)}")
    if args.dask:
        args.dask.close()
    return 1 if rep.failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit("bench.py: interrupted (a --json file holds every finished cell)")
