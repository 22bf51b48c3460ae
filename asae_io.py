"""asae_io — keep what you trained: a trained policy saved to a portable file, and
checkpoints from which a run resumes exactly (issue 25).

    save(path, result, env, config)                 a TrainResult of either learner → a file
    load(path, env=None) -> Loaded                  (policy, critic, meta): the policy runs in
                                                    asae_tabular.evaluate / asae_neural.evaluate
    checkpointer(path, every=1, callback=None)      a train callback writing the run's whole
                                                    state every ``every`` iterations
    resume(path, env, method=None, config=None, callback=None) -> TrainResult
                                                    the rest of a checkpointed run, bit for bit

**The file** is a NumPy ``.npz`` archive (a zip of ``.npy`` members, written and read with
``allow_pickle=False``: no pickle anywhere): the arrays, a member ``meta`` holding one JSON
text (0-d unicode array) and a member ``sha256``, the SHA-256 (hex) of :func:`_checksum` —
every other member's name, dtype, shape and bytes in name order, then the JSON text —
verified on every read. A file that is not such an archive, is truncated or damaged (the
zip's CRC, then the checksum), comes from a newer format version or lacks a member raises
:class:`FormatError` (a ValueError); a policy is never read silently different.
docs/learners.md ("Save, load and resume") lists the members and JSON keys.

This module sits above both learners (it imports each; neither imports it): the learners
give a run's state as an ``asae_learner.Snapshot`` (``Progress.snapshot()``) and take one
back (``asae_tabular._run(..., start=)``, ``asae_neural._net_run(..., start=)``); here the
file format, the description and checks of the env and the config.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
import platform
import re
import uuid
import warnings
import zipfile
from dataclasses import fields
from typing import NamedTuple

import numba
import numpy as np

import asae
import asae_neural
import asae_tabular
from asae import _integer
from asae_learner import _check_callback, Snapshot, TrainResult
from asae_neural import MLP, MLPPolicy, NetConfig
from asae_tabular import TabularConfig

#: What the ``format`` key of every file's metadata says.
FORMAT = "asae"
#: The version of the layout this module writes; it reads this one and older ones.
FORMAT_VERSION = 1

_CONFIGS = {"TabularConfig": TabularConfig, "NetConfig": NetConfig}
_LEARNERS = {TabularConfig: "tabular", NetConfig: "neural"}
_RESERVED = ("meta", "sha256")
#: The sizes ``load(path, env=env)`` checks; ``resume`` checks every key of the description.
_SIZES = ("n_agents", "n_actions", "obs_dim", "state_dim", "n_obs", "n_states")


class FormatError(ValueError):
    """A file that is not an asae file, is damaged or truncated, fails its checksum, comes
    from a newer format version, or lacks a member or key it must have."""


class MLPCritic(NamedTuple):
    """A neural run's critic as saved: the network, its flat parameters and MAPPO's
    ValueNorm statistics (μ, ν, d); V(s) = output · σ + μ/d with σ² = max(ν/d − (μ/d)², 1e-2)
    when the config's value_norm is on (``asae_neural._ValueNorm``)."""
    net: MLP
    params: np.ndarray
    value_norm: np.ndarray


class Loaded(NamedTuple):
    """What :func:`load` returns."""
    policy: object           # tabular: per-agent (n_obs, A_i) logits; neural: an MLPPolicy
    critic: object           # tabular: V, (n_states,); neural: an MLPCritic
    meta: dict               # the file's metadata (docs/learners.md lists its keys)


# =======================================================================================
# The archive: write atomically, read with every check
# =======================================================================================


def _checksum(arrays: dict, text: str) -> str:
    """SHA-256 (hex) over every array, in name order — ``name``, its ``dtype.str``, its shape
    as comma-separated integers, each followed by a newline, then its bytes in C order — and
    then the metadata's JSON text in UTF-8."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}\n{a.dtype.str}\n{','.join(map(str, a.shape))}\n".encode())
        h.update(a.tobytes())
    h.update(text.encode("utf-8"))
    return h.hexdigest()


def _versions() -> dict:
    return {"asae": asae.__version__, "numpy": np.__version__, "numba": numba.__version__,
            "python": platform.python_version()}


def _write(path, meta: dict, arrays: dict) -> str:
    """Write ``arrays`` and ``meta`` (plus format, version and checksum) to ``path``
    atomically: a temporary file beside it, flushed to disk, then ``os.replace`` — a reader
    sees the old file or the new one, never half of one. Returns the path."""
    path = os.fspath(path)
    clash = [k for k in arrays if k in _RESERVED or not isinstance(k, str)]
    if clash:
        raise ValueError(f"array names {clash} are reserved")
    arrays = {k: np.ascontiguousarray(a) for k, a in arrays.items()}
    for k, a in arrays.items():
        if a.dtype.hasobject:
            raise TypeError(f"array {k} holds Python objects; a file holds numbers only")
    text = json.dumps({**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
                       "versions": _versions()}, sort_keys=True, allow_nan=False,
                      ensure_ascii=False)
    members = {**arrays, "meta": np.array(text), "sha256": np.array(_checksum(arrays, text))}
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "xb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
                for name in sorted(members):      # fixed member times: same state, same bytes
                    info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                    with zf.open(info, "w", force_zip64=True) as m:
                        np.lib.format.write_array(m, members[name], allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


#: Errors of the file system, not of the file's content: they propagate as they are.
_NOT_THE_FILE = (PermissionError, IsADirectoryError, FileNotFoundError)


def _read(path) -> tuple[dict, dict]:
    """(meta, arrays) of an asae file, every check passed (:class:`FormatError` if not)."""
    where = os.fspath(path)
    if not os.path.exists(where):
        raise FileNotFoundError(f"no such file: {where!r}")
    with open(where, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise FormatError(f"{where} is not an asae file (a lone .npy array, not an archive)")
    if magic[:4] != b"PK\x03\x04":
        raise FormatError(f"{where} is not an asae file (not a .npz archive; asae_io writes "
                          "arrays and JSON, never pickles)")
    try:
        z = np.load(where, allow_pickle=False)
    except _NOT_THE_FILE:
        raise
    except Exception as e:         # whatever a damaged archive makes zipfile or numpy raise
        raise FormatError(f"{where} is not an asae file (not a readable .npz archive: "
                          f"{type(e).__name__}: {e})") from None
    if not hasattr(z, "files"):
        raise FormatError(f"{where} is not an asae file (a lone .npy array, not an archive)")
    with z:
        missing = [k for k in _RESERVED if k not in z.files]
        if missing:
            raise FormatError(f"{where} is not an asae file: no member {missing[0]!r} (an .npz "
                              "archive not written by asae_io)")
        try:
            text, digest = z["meta"], z["sha256"]
            if text.dtype.kind != "U" or text.ndim or digest.dtype.kind != "U" or digest.ndim:
                raise FormatError(f"{where}: the members meta and sha256 must be text")
            text, digest = text.item(), digest.item()
            meta = json.loads(text)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise FormatError(f"{where} is not an asae file: its metadata says format "
                                  f"{meta.get('format') if isinstance(meta, dict) else None!r}")
            version = meta.get("format_version")
            if type(version) is not int or version < 1:
                raise FormatError(f"{where}: format_version {version!r} is not a version")
            if version > FORMAT_VERSION:
                raise FormatError(
                    f"{where} was written in format version {version} (by asae "
                    f"{meta.get('versions', {}).get('asae', '?')}); this asae "
                    f"({asae.__version__}) reads versions up to {FORMAT_VERSION}: upgrade it")
            arrays = {k: z[k] for k in z.files if k not in _RESERVED}
        except (FormatError, *_NOT_THE_FILE):
            raise
        except Exception as e:     # a member cut short, a bad CRC or .npy header, bad JSON
            raise FormatError(f"{where} is damaged or truncated ({type(e).__name__}: {e})"
                              ) from None
    if _checksum(arrays, text) != digest:
        raise FormatError(f"{where} fails its checksum: its arrays or metadata changed after "
                          "it was written (a damaged or edited file)")
    return meta, arrays


def _member(arrays: dict, name: str, dtype, shape) -> np.ndarray:
    """The member ``name``, of ``dtype`` and ``shape`` (FormatError naming it if not)."""
    if name not in arrays:
        raise FormatError(f"the file lacks the member {name!r}")
    a = arrays[name]
    if a.dtype != np.dtype(dtype) or a.shape != tuple(shape):
        raise FormatError(f"the member {name!r} is {a.dtype} {a.shape}; expected "
                          f"{np.dtype(dtype)} {tuple(shape)}")
    return np.array(a)


# =======================================================================================
# What the file says of the env and the config
# =======================================================================================


def _env_description(env) -> dict:
    """The env as the metadata describes it: class, module, repr (without a memory address),
    episode_limit, the sizes (n_agents, n_actions and obs_dim, state_dim or n_obs,
    n_states), obs_dtype and obs_dims where the env has them, and for an integer-id env
    with transition tables a SHA-256 of the tables the tabular learner reads (they identify
    the game: climbing and penalty have the same sizes and repr)."""
    d = {"class": type(env).__name__, "module": type(env).__module__,
         "repr": re.sub(r" at 0x[0-9a-fA-F]+", "", repr(env))}
    if hasattr(env, "obs_dim"):
        n, n_actions, obs_dim, state_dim = asae_neural._check_feature_env(env)
        d.update(obs_dim=obs_dim, state_dim=state_dim)
        if hasattr(env, "obs_dtype"):
            d["obs_dtype"] = str(np.dtype(env.obs_dtype))
        if hasattr(env, "obs_dims"):
            d["obs_dims"] = [int(k) for k in env.obs_dims]
    else:
        n, n_actions, n_states, n_obs = asae_tabular._check_env(env)
        d.update(n_obs=n_obs, n_states=n_states)
        tab = asae_tabular._env_tables(env, n, n_actions, n_states, n_obs)
        if tab is not None:
            h = hashlib.sha256()
            for name, x in zip(tab._fields, tab):
                h.update(f"{name}={np.asarray(x).dtype.str}{np.shape(x)}:".encode())
                h.update(np.ascontiguousarray(x).tobytes())
            d["tables_sha256"] = h.hexdigest()
    d.update(n_agents=int(n), n_actions=[int(k) for k in n_actions],
             episode_limit=int(env.episode_limit))
    return d


def _check_env_fits(saved: dict, env, strict: bool, what: str):
    """ValueError naming every key in which ``env`` differs from the file's description:
    the sizes (:data:`_SIZES`), or with ``strict`` every key (resume: the same env)."""
    now = _env_description(env)
    if not isinstance(saved, dict):
        raise FormatError(f"{what}: the file's metadata has no env description")
    keys = sorted(set(saved) | set(now)) if strict else _SIZES
    differ = [k for k in keys if saved.get(k) != now.get(k)]
    if differ:
        raise ValueError(f"{what}: the env differs from the file's in "
                         + "; ".join(f"{k} (file: {saved.get(k)!r}, this env: {now.get(k)!r})"
                                     for k in differ))


def _plain(x):
    """A config value as JSON: Python bools, ints, floats, str, None and lists."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (tuple, list, np.ndarray)):
        return [_plain(y) for y in x]
    return x


def _config_json(cfg) -> dict:
    return {"class": type(cfg).__name__,
            "fields": {f.name: _plain(getattr(cfg, f.name)) for f in fields(cfg)}}


def _config_from(meta: dict):
    """The config a file holds, rebuilt (and validated) from its JSON."""
    c = meta.get("config")
    cls = _CONFIGS.get(c.get("class")) if isinstance(c, dict) else None
    if cls is None or not isinstance(c.get("fields"), dict):
        raise FormatError(f"the file's config is not a TabularConfig or NetConfig: {c!r}")
    names = {f.name for f in fields(cls)}
    unknown, missing = sorted(set(c["fields"]) - names), sorted(names - set(c["fields"]))
    if unknown or missing:
        raise FormatError(f"the file's {cls.__name__} does not fit this asae: "
                          f"unknown fields {unknown}, missing fields {missing}")
    try:
        return cls(**c["fields"])
    except (TypeError, ValueError) as e:
        raise FormatError(f"the file's {cls.__name__} is not valid: {e}") from None


def _config_differs(saved: dict, cfg) -> list:
    """'field (file: x, given: y)' for every field in which ``cfg`` differs from ``saved``."""
    if type(cfg).__name__ != saved["class"]:
        return [f"its class (file: {saved['class']}, given: {type(cfg).__name__})"]
    given = _config_json(cfg)["fields"]
    return [f"{k} (file: {saved['fields'][k]!r}, given: {given[k]!r})" for k in given
            if given[k] != saved["fields"][k]]


def _learner(config) -> str:
    if type(config) not in _LEARNERS:
        raise TypeError(f"config must be an asae_tabular.TabularConfig or an "
                        f"asae_neural.NetConfig; got {type(config).__name__}")
    return _LEARNERS[type(config)]


def _net_json(net: MLP) -> dict:
    return {"d_in": net.d_in, "hidden": net.shapes[2 if net.layer_norm else 0][1],
            "layers": net.layers, "d_out": net.d_out, "layer_norm": bool(net.layer_norm),
            "shapes": [list(s) for s in net.shapes]}


def _net_from(d: dict) -> MLP:
    net = MLP(int(d["d_in"]), int(d["hidden"]), int(d["layers"]), int(d["d_out"]),
              bool(d["layer_norm"]))
    if [list(s) for s in net.shapes] != d["shapes"]:
        raise FormatError(f"the file's network shapes {d['shapes']} are not those of an MLP "
                          f"of its own description ({[list(s) for s in net.shapes]})")
    return net


def _nets(cfg: NetConfig, env: dict) -> tuple[dict, dict]:
    """The actors' and the critic's network descriptions of a neural run of ``cfg`` on the
    described env (as ``asae_neural._net_setup`` builds them)."""
    n = env["n_agents"]
    d_in = env["obs_dim"] + (n if cfg.share_actor else 0)
    actor = MLP(d_in, cfg.hidden, cfg.layers, max(env["n_actions"]), cfg.layer_norm)
    critic = MLP(env["state_dim"], cfg.hidden, cfg.layers, 1, cfg.layer_norm)
    return _net_json(actor), _net_json(critic)


# =======================================================================================
# Save and load a trained policy
# =======================================================================================


def save(path, result: TrainResult, env, config) -> str:
    """Write the policy and critic of ``result`` (what ``asae_tabular.train`` or
    ``asae_neural.train`` returned for ``env`` and ``config``) to ``path`` (atomically; the
    name is used as given, ``.npz`` is not appended). The file holds the tabular logits and
    values, or each network's flat parameters and layer shapes with the critic's ValueNorm
    statistics; the method, the config (every field), the env's description, the result's
    returns and curve, the versions (asae, numpy, numba, python), the format version and a
    checksum. Returns the path."""
    if not isinstance(result, TrainResult):
        raise TypeError(f"result must be an asae_learner.TrainResult; got "
                        f"{type(result).__name__}")
    learner = _learner(config)
    env_d = _env_description(env)
    n, n_actions = env_d["n_agents"], env_d["n_actions"]
    if ("obs_dim" in env_d) != (learner == "neural"):
        raise ValueError(f"a {learner} run's result needs an env with "
                         + ("feature observations (obs_dim)" if learner == "neural" else
                            "integer observation ids (n_obs)") + f"; got {env_d['repr']}")
    meta = {"kind": "policy", "learner": learner, "method": result.method,
            "config": _config_json(config), "env": env_d,
            "result": {"greedy_return": float(result.greedy_return),
                       "stochastic_return": float(result.stochastic_return),
                       "greedy_optimal": bool(result.greedy_optimal),
                       "iterations": int(np.size(result.iterations)),
                       "stopped_at": result.stopped_at}}
    arrays = {"result.mean_return": np.asarray(result.mean_return, np.float64)}
    if learner == "tabular":
        if not isinstance(result.logits, list) or len(result.logits) != n:
            raise ValueError(f"result.logits must hold one table per agent of this env ({n}); "
                             "is this a tabular run's result?")
        for i, z in enumerate(result.logits):
            want = (env_d["n_obs"], n_actions[i])
            if np.shape(z) != want:
                raise ValueError(f"result.logits[{i}] has shape {np.shape(z)}; this env's "
                                 f"agent {i} needs {want}")
            arrays[f"policy.logits.{i}"] = np.asarray(z, np.float64)
        if np.shape(result.values) != (env_d["n_states"],):
            raise ValueError(f"result.values has shape {np.shape(result.values)}; this env "
                             f"has {env_d['n_states']} states")
        arrays["critic.values"] = np.asarray(result.values, np.float64)
        meta["policy"] = {"class": "logits", "tables": n}
    else:
        policy = result.policy
        if not isinstance(policy, MLPPolicy) or result.critic is None \
                or result.critic_norm is None:
            raise ValueError("result must be a neural run's (with policy, critic and "
                             "critic_norm)")
        actor, critic = _nets(config, env_d)
        if _net_json(policy.net) != actor or list(policy.n_actions) != n_actions:
            raise ValueError(f"result.policy does not fit this env and config: its network "
                             f"{_net_json(policy.net)['shapes']} and actions "
                             f"{list(policy.n_actions)}, the run's {actor['shapes']} and "
                             f"{n_actions}")
        for k, p in enumerate(policy.params):
            arrays[f"policy.params.{k}"] = np.asarray(p, np.float64)
        arrays["critic.params"] = np.asarray(result.critic, np.float64)
        arrays["critic.value_norm"] = np.asarray(result.critic_norm, np.float64)
        meta["policy"] = {"class": "MLPPolicy", "shared": bool(policy.shared),
                          "n_actions": n_actions, "net": actor}
        meta["critic"] = {"class": "MLPCritic", "net": critic}
    _policy_of(meta, arrays)                    # what load will check, checked now
    return _write(path, meta, arrays)


def _policy_of(meta: dict, arrays: dict) -> tuple:
    """(policy, critic) from a policy file's members (:func:`load`)."""
    env = meta["env"]
    n, n_actions = env["n_agents"], env["n_actions"]
    if meta["learner"] == "tabular":
        tables = [_member(arrays, f"policy.logits.{i}", np.float64, (env["n_obs"], n_actions[i]))
                  for i in range(n)]
        return tables, _member(arrays, "critic.values", np.float64, (env["n_states"],))
    if meta["learner"] != "neural":
        raise FormatError(f"unknown learner {meta['learner']!r}")
    p = meta["policy"]
    net = _net_from(p["net"])
    params = [_member(arrays, f"policy.params.{k}", np.float64, (net.size,))
              for k in range(1 if p["shared"] else n)]
    cnet = _net_from(meta["critic"]["net"])
    critic = MLPCritic(cnet, _member(arrays, "critic.params", np.float64, (cnet.size,)),
                       _member(arrays, "critic.value_norm", np.float64, (3,)))
    return MLPPolicy(net, params, tuple(int(k) for k in p["n_actions"]), bool(p["shared"])), critic


def _checkpoint_policy(meta: dict, arrays: dict) -> tuple:
    """A checkpoint's policy and critic as they stood, through :func:`_policy_of`."""
    cfg, env = _config_from(meta), meta["env"]
    if meta["learner"] == "tabular":
        logits = _member(arrays, "run.pol.logits", np.float64,
                         (env["n_agents"], env["n_obs"], max(env["n_actions"])))
        mine = {f"policy.logits.{i}": logits[i, :, :k] for i, k in enumerate(env["n_actions"])}
        mine["critic.values"] = arrays.get("run.critic.V")
        return _policy_of(meta, {k: v for k, v in mine.items() if v is not None})
    actor, critic = _nets(cfg, env)
    mine = {f"policy.params.{k}": arrays.get(f"run.policy.params.{k}")
            for k in range(1 if cfg.share_actor else env["n_agents"])}
    mine.update({"critic.params": arrays.get("run.theta_v"),
                 "critic.value_norm": arrays.get("run.vnorm.stats")})
    meta = {**meta, "policy": {"shared": cfg.share_actor, "n_actions": env["n_actions"],
                               "net": actor}, "critic": {"net": critic}}
    return _policy_of(meta, {k: v for k, v in mine.items() if v is not None})


def load(path, env=None, strict: bool = True) -> Loaded:
    """Read a file of :func:`save` (or a checkpoint: its policy as it stood) → ``Loaded(policy,
    critic, meta)``: ``policy`` the per-agent logits tables (``asae_tabular.evaluate``) or an
    ``MLPPolicy`` (``asae_neural.evaluate``), ``critic`` the values V or an
    :class:`MLPCritic`, ``meta`` the metadata. With ``env``, a ValueError names every key in
    which it differs from the file's env: with ``strict`` (the default) its class, module,
    repr, the game's tables (their SHA-256) and sizes — the policy was trained on this env;
    ``strict=False``: the sizes only (agents, action counts, observation and state sizes),
    to run a policy on another env of the same shape. A damaged, truncated, foreign or newer
    file: :class:`FormatError`."""
    if not isinstance(strict, (bool, np.bool_)):
        raise TypeError(f"strict must be True or False; got {strict!r}")
    meta, arrays = _read(path)
    if env is not None:
        _check_env_fits(meta.get("env"), env, bool(strict), f"load({os.fspath(path)!r})")
    try:
        kind = meta["kind"]
        if kind == "policy":
            policy, critic = _policy_of(meta, arrays)
        elif kind == "checkpoint":
            policy, critic = _checkpoint_policy(meta, arrays)
        else:
            raise FormatError(f"unknown kind {kind!r} (policy or checkpoint)")
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise FormatError(f"{os.fspath(path)}: its metadata lacks or mangles a key "
                          f"({type(e).__name__}: {e})") from None
    return Loaded(policy, critic, meta)


# =======================================================================================
# Checkpoints: a train callback writes them, resume continues
# =======================================================================================


def checkpointer(path, every: int = 1, callback=None):
    """A ``train`` callback (either learner) writing the run's whole state to ``path`` after
    every ``every``-th iteration and after the run's last (atomically, each replacing the
    last): the networks or tables, Adam's moments and step counts, the ValueNorm
    statistics, the random stream, the rollouts' carry (observations, states, returns of
    the episodes in progress), the env's state when the run steps it (``env.get_state()``;
    an env without it is refused at the first iteration, naming its type), the curve so far,
    the ratio statistics and diagnostics. ``callback``, if given, is called after it and its
    answer returned (True stops the run, and the state it stopped in is written).
    :func:`resume` continues from the file."""
    every = _integer("every", every, 1)
    path = os.fspath(path)
    _check_callback(callback)
    described = {}                              # the env of the run and its description

    def write(iteration, record):
        if getattr(record, "snapshot", None) is None:
            raise TypeError("asae_io.checkpointer is a callback of asae_tabular.train or "
                            "asae_neural.train (its record has no snapshot)")
        due = iteration % every == 0 or iteration == record.iterations
        if due or described.get("env") is None:   # the first call: fail now if it cannot
            snap = record.snapshot()
            if described.get("env") is not snap.env:
                described.update(env=snap.env, meta=_env_description(snap.env))
            if due:
                _write_checkpoint(path, snap, described["meta"])
        answer = None if callback is None else callback(iteration, record)
        if isinstance(answer, (bool, np.bool_)) and answer and not due:   # stopped: keep it
            _write_checkpoint(path, record.snapshot(), described["meta"])
        return answer
    return write


def _write_checkpoint(path: str, snap: Snapshot, env: dict):
    _write(path, {"kind": "checkpoint", "learner": snap.learner, "method": snap.method,
                  "config": _config_json(snap.config), "env": env,
                  "iteration": int(snap.iteration)}, snap.arrays)


def resume(path, env, method: str | None = None, config=None, callback=None) -> TrainResult:
    """Continue the run checkpointed in ``path`` (:func:`checkpointer`) on ``env`` — a new
    env of the same description (class, repr, sizes, tables; the env's own state and the
    episodes in progress come from the file) — to its config's last iteration, with
    ``callback`` (e.g. another checkpointer). The result equals the uninterrupted run's bit
    for bit in every field but ``wall_time`` (this call's time; ``Progress.elapsed`` counts
    from here too). ``method`` and ``config``, if given, must be the checkpoint's; any
    difference (or a different env) is a ValueError naming it."""
    meta, arrays = _read(path)
    if meta.get("versions") != _versions():
        warnings.warn(f"{os.fspath(path)} was written with {meta.get('versions')}; this is "
                      f"{_versions()}: the continuation is exact only with the same versions",
                      RuntimeWarning, stacklevel=2)
    where = f"resume({os.fspath(path)!r})"
    if meta.get("kind") != "checkpoint":
        raise ValueError(f"{where}: the file is a saved policy, not a checkpoint (load it)")
    try:
        cfg, learner, saved_method, it = (_config_from(meta), meta["learner"], meta["method"],
                                          meta["iteration"])
    except (KeyError, TypeError, AttributeError) as e:
        raise FormatError(f"{where}: the metadata lacks or mangles a key ({e})") from None
    _check_env_fits(meta.get("env"), env, True, where)
    if learner != _learner(cfg) or type(it) is not int or not 0 <= it <= cfg.iterations:
        raise FormatError(f"{where}: learner {learner!r} with a {type(cfg).__name__}, "
                          f"iteration {it!r} of {cfg.iterations}")
    if method is not None and method != saved_method:
        raise ValueError(f"{where}: the checkpoint trains {saved_method!r}, not {method!r}")
    if config is not None:
        differ = _config_differs(meta["config"], config)
        if differ:
            raise ValueError(f"{where}: the config differs from the checkpoint's in "
                             + "; ".join(differ))
    start = Snapshot(learner, saved_method, cfg, env, it, arrays)
    if learner == "tabular":
        return asae_tabular._run(env, saved_method, cfg, callback=callback, start=start)[0]
    return asae_neural._net_run(env, saved_method, cfg, callback, start)
