"""What the bench runs: games and methods named by specs (``penalty:k=-50``,
``asae:sync_clip=none``), the per-game defaults, a command-line parser per
``asae_tabular.TabularConfig``
field, and the cells of a section — a (game, method) pair with one Config per seed, all
built (so validated) before anything runs.

>>> parse_spec("penalty:k=-50:n_agents=3", GAMES)
('penalty', {'k': -50, 'n_agents': 3})
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import math
from types import SimpleNamespace

import numpy as np

import asae
import asae_tabular as tabular
import envs
import envs_spread

GAMES = {"climbing": envs.climbing, "penalty": envs.penalty, "qtran": envs.qtran,
         "two-step": envs.TwoStepGame, "grid": envs.GridForaging,
         "spread": envs_spread.Spread}
DEFAULTS = {"learn": ("climbing,penalty:k=-100,qtran,two-step,grid", asae.METHODS),
            "bias": ("climbing,penalty:k=-100,qtran", asae.METHODS + ("asae:sync_clip=none",))}
SET_BY_BENCH = ("seed", "record_policies")      # per seed / by the section


# ---- Games and methods by name -----------------------------------------------------------
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


#: The most joint actions a count game (its reward by action counts, ``count_reward``) may
#: have for the bench to read its joint ``payoff``, which such a game builds on demand (3^8).
MAX_JOINT = 3 ** 8


def payoff(env):
    """``env.payoff``, or None if the env has none at hand: a count game's joint table is
    built on first use, so it is read only up to MAX_JOINT joint actions."""
    if hasattr(env, "count_reward") and math.prod(env.n_actions) > MAX_JOINT:
        return None
    return getattr(env, "payoff", None)


def applicable(method: str, env) -> bool:
    """The exact methods (exact_sync, exact_async) enumerate a payoff: one-step matrix games."""
    return not method.startswith("exact") or payoff(env) is not None and env.n_states == 1


def exact(env) -> bool:
    """Whether J(π) is computed exactly (matrix and two-step games) rather than sampled."""
    return payoff(env) is not None or isinstance(env, envs.TwoStepGame)


def game_defaults(env, quick: bool) -> dict:
    """Per-game defaults, the same for every method: rewards scaled by 1/max|payoff|; matrix
    and two-step games 100 updates of 32 envs × 8 steps (--quick: 20); the grid 400 updates
    of 64 × 16 (--quick: 30) at lr_actor 3 (chosen on async alone, 3 seeds: at 1.0 a third
    of the seeds found no food). Command-line flags override them."""
    if isinstance(env, envs.GridForaging):
        return {"iterations": 30 if quick else 400, "n_envs": 64, "rollout_len": 16,
                "lr_actor": 3.0}
    tables = ([env.count_reward] if hasattr(env, "count_reward") else      # no joint table
              [getattr(env, k) for k in ("payoff", "payoff_2a", "payoff_2b") if hasattr(env, k)])
    peak = max(float(np.abs(t).max()) for t in tables)
    return {"iterations": 20 if quick else 100, "n_envs": 32, "rollout_len": 8,
            "reward_scale": 1 / (peak or 1)}


# ---- Config fields as flags --------------------------------------------------------------
def field_parser(f):
    """The flag parser of a Config field from its annotation (``float | None`` → a float or
    'none'); None if the type has no text form (e.g. tables)."""
    names = [s.strip() for s in str(getattr(f.type, "__name__", f.type)).split("|")]
    nullable, base = "None" in names, [n for n in names if n != "None"]
    base = ({"float": float, "int": int, "str": str, "bool": bool}.get(base[0])
            if len(base) == 1 else None)
    kind = "true/false" if base is bool else getattr(base, "__name__", "")

    def parse(text: str):
        if nullable and text.lower() == "none":
            return None
        try:
            return {"true": True, "false": False}[text.lower()] if base is bool else base(text)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(
                f"{f.name} takes {kind}{' or none' * nullable}, not {text!r}") from None
    parse.metavar = ("BOOL" if base is bool else kind.upper()) + "|none" * nullable
    return parse if base else None


FIELD_PARSERS = {f.name: p for f in dataclasses.fields(tabular.TabularConfig)
                 if f.name not in SET_BY_BENCH[1:] and (p := field_parser(f)) is not None}


# ---- Cells: a (game, method) pair, a Config per seed -------------------------------------
#: The most runs (seeds × cells) one section may plan: a typo such as ``--seeds 10000000``
#: is refused rather than building its Configs (the full study is 21,900 runs).
MAX_RUNS = 10 ** 6


def spec_list(text: str, flag: str, what: str, known) -> list:
    """The items of a comma list (``--games``/``--methods``; commas inside brackets or quotes
    belong to a value), stripped; ValueError for an empty list, an empty item or an item
    listed twice.

    >>> spec_list("climbing, grid:layout=(((0, 0), (4, 4)), ((2, 2),))", "--games", "game", GAMES)
    ['climbing', 'grid:layout=(((0, 0), (4, 4)), ((2, 2),))']
    """
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text + ","):
        if quote or ch in "'\"":
            quote = "" if ch == quote else quote or ch
        elif ch in "([{" or ch in ")]}":
            depth += 1 if ch in "([{" else -1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    if depth or quote:
        items.append(text[start:].strip())
    if not any(items):
        raise ValueError(f"{flag} {text!r} names no {what}; choose from {', '.join(known)}")
    if "" in items:
        raise ValueError(f"{flag} {text!r} has an empty item (a stray comma)")
    twice = next((s for i, s in enumerate(items) if s in items[:i]), None)
    if twice is not None:
        raise ValueError(f"{flag} {text!r} lists {twice!r} twice")
    return items


def check_run(env, game: str, method: str, cfg, kind: str) -> None:
    """What ``asae_tabular.train`` checks before it computes (the env, the method, the memory a run
    needs, then the env's optimum: a grid searches for it), now; ValueError naming the game."""
    try:
        tabular._check_train_args(env, method, cfg, record_steps=kind == "bias")
        optimum = getattr(env, "optimum", None)        # the learn table's target, kept by env
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{game} / {method}: {exc}") from None
    except (MemoryError, OverflowError) as exc:
        raise ValueError(f"game {game!r}: its optimum cannot be computed "
                         f"({type(exc).__name__}: {exc})") from None
    if optimum is not None and not np.isfinite(optimum):
        raise ValueError(f"game {game!r}: its optimum is {optimum!r}, not a finite number")


def plan(args, kind: str) -> list:
    """The (game, method) cells of a learn/bias run or a study setting, a Config per seed, all
    built and checked as ``asae_tabular.train`` would before anything runs. Precedence: per-game
    defaults < command-line flags (the study: its setting) < the method spec's parameters
    (``asae:sync_clip=none``)."""
    games, methods = DEFAULTS[kind]
    seeds = args.seeds or (3 if args.quick else {"learn": 20}.get(kind, 10))
    first = args.overrides.get("seed", 0)
    chosen = args.methods is not None
    methods = sorted(spec_list(args.methods if chosen else ",".join(methods), "--methods",
                               "method", asae.METHODS),
                     key=lambda m: m != "async")                      # the paired reference first
    games = spec_list(games if args.games is None else args.games, "--games", "game", GAMES)
    if seeds * len(games) * len(methods) > MAX_RUNS:
        raise ValueError(f"{seeds:,} seeds × {len(games)} games × {len(methods)} methods is more "
                         f"than the {MAX_RUNS:,} runs a section may plan (--seeds)")
    method_parsers = {k: v for k, v in FIELD_PARSERS.items() if k != "seed"}
    cells = []
    for game in games:
        env = make_game(game)
        if kind == "bias" and not applicable("exact", env):
            raise ValueError(f"bias needs one-step matrix games; {game!r} is not one")
        base = {**game_defaults(env, args.quick),
                "record_policies": kind == "learn" and exact(env), **args.overrides}
        for m in methods:
            name, kw = parse_spec(m, asae.METHODS, "method", method_parsers)
            if not applicable(name, env) and chosen:
                raise ValueError(
                    f"method {name!r} needs a one-step matrix game; {game!r} is not one")
            if not applicable(name, env):
                continue
            try:
                configs = [
                    tabular.TabularConfig(**{**base, **kw, "seed": first + s}) for s in range(seeds)
                ]
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{game} / {m}: {exc}") from None
            check_run(env, game, name, configs[0], kind)
            cells.append(SimpleNamespace(game=game, method=m, configs=configs))
    return cells


def setting(cells) -> str:
    """A table note: the seeds, and per game the Config fields off their defaults."""
    d, first = tabular.TabularConfig(), {}
    for c in cells:
        first.setdefault(c.game, c.configs[0])          # the first method's (async's, if run)
    off = {g: ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in vars(cfg).items()
                        if k not in SET_BY_BENCH and v != getattr(d, k))
           for g, cfg in first.items()}
    return (f"{len(cells[0].configs)} seeds per cell, from seed {cells[0].configs[0].seed}. "
            "Config off its defaults (every method): "
            + "; ".join(f"{g}: {s or '—'}" for g, s in off.items()) + ".")
