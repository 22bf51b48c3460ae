"""PettingZoo in: a user's PettingZoo ``ParallelEnv`` as a batched env the learners accept.

:func:`from_parallel_env` takes a zero-argument *factory* returning a PettingZoo
``ParallelEnv`` (e.g. ``mpe2.simple_spread_v3.parallel_env``, or ``lambda:
my_env(n=4)``) and returns a batched env of the interface in the docstring of :mod:`envs`:
B copies of the env (B = the ``n_envs`` of ``reset``), stepped one after another in
Python, with auto-reset.  Which of the two forms depends on the observation spaces:

* every agent's observation space a gymnasium ``Box`` → a :class:`ParallelEnvAdapter`,
  a *feature env* (``obs_dim``, ``state_dim``) for ``asae_neural.train``;
* every agent's observation space a ``Discrete`` → a :class:`ParallelEnvIdAdapter`, an
  *integer-id env* (``n_obs``, ``n_states``) for ``asae_tabular.train`` (through its
  ``env.step`` path: there are no transition tables).

The direction out, this project's games as PettingZoo envs, is
:func:`envs_pettingzoo.to_parallel_env`.  gymnasium and pettingzoo are imported at the
first call (the extra ``pettingzoo``); this module itself needs only numpy.

**What is supported, and what is refused** (a ``TypeError`` or ``ValueError`` naming the
agent and the space or output; never a run on data the learners would misread):

* Actions: ``Discrete`` per agent, counts may differ between agents (``n_actions``;
  ``Discrete(n, start=s)`` is shifted so the learners' action a is the env's s + a).
  Box (continuous), MultiDiscrete, MultiBinary, Dict and Tuple actions are refused.
* Observations: all ``Box`` (flattened in C order; sizes may differ between agents: each
  agent's vector is zero-padded at its end to ``obs_dim``, the largest, and ``obs_dims``
  holds the true sizes) or all ``Discrete`` (ids shifted by ``start``; ``n_obs`` is the
  largest ``n``).  A ``Dict`` with exactly the keys ``"observation"`` (Box or Discrete)
  and ``"action_mask"`` is read as that observation plus an action mask.  Mixed Box and
  Discrete agents, and every other space (MultiDiscrete, MultiBinary, Graph, other Dicts,
  Tuples, ...), are refused.
* Agents: the set ``possible_agents`` of the first copy, fixed: every copy must have the
  same agents and spaces, every reset and every step must give an observation, a reward,
  a termination and a truncation flag for every agent, and the agents end their episode
  together (all done, or none).  Agents that leave mid-episode, or agent sets that change
  between reset and step, are refused at the step where it happens.
* Action masks (an ``"action_mask"`` in an agent's info dict or its Dict observation): the
  learners sample from all ``n_actions[i]`` actions of agent i and cannot apply a mask, so
  the default ``action_masks="refuse"`` refuses them — at construction for Dict
  observations, at the first reset or step that returns one for masks in ``infos``.  With
  ``action_masks="ignore"`` the run goes on: every mask is recorded in
  :attr:`action_mask` ((B, n, max n_actions) bool, True = allowed, all True where the env
  gave none), the chosen actions are passed to the env unchanged (what the env does with a
  forbidden action is its own affair: an error, a penalty, a no-op), and every forbidden
  action passed is counted in :attr:`masked_actions`.

**The batched env.**  ``reset(n_envs, seed)`` resets copies 0..B−1 (copies are made by
calling the factory as needed, at most ``max_envs``); with an int ``seed`` copy b's k-th
episode (k = 0 at ``reset``, +1 at every auto-reset) starts with
``env.reset(seed=seed_for(seed, b, k))``, so the same seed gives the same run whatever
else ran before; with ``seed=None`` every reset passes ``seed=None`` (the env's own
stream).  ``step(actions)`` steps every copy with its row of ``actions`` and returns
``(obs, state, reward, terminated, truncated, final_state)``:

* ``reward`` = the team reward, the sum of the agents' rewards in ``possible_agents`` order
  (the per-agent rewards are in :attr:`agent_rewards`, (B, n));
* ``terminated[b]`` when every agent's termination flag is set; ``truncated[b]`` when every
  agent is done and none terminated, or when the copy has run ``episode_limit`` steps
  without ending (the adapter's own time limit; ``episode_limit`` defaults to the env's
  ``max_cycles``, which mpe2's ``SimpleEnv`` (mpe2/_mpe_utils/simple_env.py) and
  PettingZoo's butterfly envs have).  Agents that disagree (one terminated, another only
  truncated) are refused: a learner could not tell whether to bootstrap;
* ``final_state[b]`` = the critic's input in the state the step reached, before the copy is
  reset (E10 bootstraps a truncated step from it), ``state[b]`` for copies that go on; a
  finished copy's ``obs`` and ``state`` are already those of its next episode, and the
  observations it reached are kept in :attr:`final_obs`.

**The critic's input** (``critic_input``, kept as the attribute of that name):
``"state"`` is the env's ``state()`` (its ``state_space`` a Box for the feature form,
flattened; a Discrete for the id form); ``"observations"`` the agents' observations
concatenated in agent order at their true sizes (feature form: ``state_dim =
sum(obs_dims)``) or, in the id form, the joint observation id ``sum_i o_i * prod_{j > i}
n_j`` (``n_states = prod_i n_i``, agent 0 the most significant digit); ``"auto"`` (the
default) takes ``"state"`` when the env has a ``state_space`` of the form's kind, else
``"observations"``.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import numpy as np

from envs import MAX_COUNT, _check_batch_actions, _check_int, _check_seed

__all__ = ["from_parallel_env", "ParallelEnvAdapter", "ParallelEnvIdAdapter"]

CRITIC_INPUTS = ("auto", "state", "observations")
ACTION_MASK_MODES = ("refuse", "ignore")
#: Largest number of copies ``max_envs`` may allow (each copy is a whole Python env).
MAX_COPIES = 2 ** 16


def _modules():
    """(gymnasium.spaces, pettingzoo.AECEnv), imported at the first call."""
    try:
        from gymnasium import spaces
        from pettingzoo import AECEnv
    except ImportError as e:
        raise ModuleNotFoundError(
            f"from_parallel_env needs gymnasium and pettingzoo ({e}); install them with "
            "pip install -e '.[pettingzoo]' in a checkout of asae, or pip install "
            "'asae[pettingzoo]'", name=e.name) from e
    return spaces, AECEnv


def seed_for(seed: int, b: int, episode: int) -> int:
    """The seed of episode ``episode`` (0 at ``reset``) of copy ``b`` under ``reset(B,
    seed)``: the first uint64 word of ``np.random.SeedSequence([seed, b, episode])``, a
    Python int (gymnasium's seeding refuses numpy ints).

    >>> seed_for(0, 0, 0) == seed_for(0, 0, 0) != seed_for(0, 1, 0)
    True
    """
    seed = _check_int(seed, "seed", 0)
    b = _check_int(b, "b", 0)
    episode = _check_int(episode, "episode", 0)
    return int(np.random.SeedSequence([seed, b, episode]).generate_state(1, np.uint64)[0])


def _check_factory(factory):
    """factory is a zero-argument callable (not an env instance)."""
    if hasattr(factory, "step") and hasattr(factory, "reset") and not isinstance(factory, type):
        raise TypeError(f"factory must be a zero-argument callable returning a PettingZoo "
                        f"ParallelEnv, not an env ({type(factory).__name__}); the adapter makes "
                        f"one copy per batch entry, so pass e.g. "
                        f"simple_spread_v3.parallel_env or lambda: make_my_env()")
    if not callable(factory):
        raise TypeError(f"factory must be a zero-argument callable returning a PettingZoo "
                        f"ParallelEnv; got {type(factory).__name__} {factory!r}")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):                      # builtins without a signature
        return
    try:
        signature.bind()
    except TypeError:
        raise TypeError(f"factory must be callable with no arguments; {factory!r} has "
                        f"signature {signature}: bind its arguments with functools.partial or "
                        f"a lambda") from None


def _describe_space(space) -> str:
    text, kind = str(space), type(space).__name__
    return text if text.startswith(kind) else f"{kind} {text}"


class _Spec:
    """What the first copy says about the env: agents, spaces, the form's pieces."""

    def __init__(self, env, spaces, features_wanted: bool | None):
        agents = getattr(env, "possible_agents", None)
        if isinstance(agents, (str, bytes)) or not hasattr(agents, "__len__") or not agents:
            raise ValueError(f"the env's possible_agents must be a non-empty list of agent ids; "
                             f"got {agents!r}")
        agents = list(agents)
        if len(set(agents)) != len(agents):
            raise ValueError(f"the env's possible_agents repeats an agent: {agents!r}")
        if len(agents) > 2 ** 16:
            raise ValueError(f"the env has {len(agents)} agents; at most 2**16 are supported")
        self.agents = agents
        self.obs_spaces, self.act_spaces = [], []
        self.mask_in_obs = []        # True: the observation is {"observation", "action_mask"}
        for a in agents:
            act = env.action_space(a)
            if not isinstance(act, spaces.Discrete):
                raise TypeError(f"agent {a!r}'s action space is {_describe_space(act)}; the "
                                f"learners take Discrete actions only (continuous Box, "
                                f"MultiDiscrete, MultiBinary, Dict and Tuple actions are not "
                                f"supported)")
            self.act_spaces.append(act)
            obs = env.observation_space(a)
            inner, masked = obs, False
            if isinstance(obs, spaces.Dict) and set(obs.spaces) == {"observation", "action_mask"}:
                inner, masked = obs.spaces["observation"], True
                mask = obs.spaces["action_mask"]
                if not (isinstance(mask, (spaces.Box, spaces.MultiBinary))
                        and int(np.prod(mask.shape)) == act.n):
                    raise TypeError(f"agent {a!r}'s action_mask space is "
                                    f"{_describe_space(mask)}; expected a Box or MultiBinary of "
                                    f"{act.n} entries, one per action")
            if not isinstance(inner, (spaces.Box, spaces.Discrete)):
                raise TypeError(f"agent {a!r}'s observation space is {_describe_space(obs)}; "
                                f"the adapter takes Box observations (asae_neural) or Discrete "
                                f"ones (asae_tabular), optionally inside a Dict of exactly "
                                f"'observation' and 'action_mask'")
            self.obs_spaces.append(inner)
            self.mask_in_obs.append(masked)
        self.features = isinstance(self.obs_spaces[0], spaces.Box)
        for a, s in zip(agents, self.obs_spaces):
            if isinstance(s, spaces.Box) != self.features:
                first = type(self.obs_spaces[0]).__name__
                raise TypeError(f"agent {agents[0]!r} observes a {first} but agent {a!r} a "
                                f"{_describe_space(s)}; every agent must "
                                f"observe a Box (asae_neural) or every agent a Discrete "
                                f"(asae_tabular)")
        if features_wanted is not None and features_wanted != self.features:
            kind, other = (("Box", "ParallelEnvAdapter") if self.features
                           else ("Discrete", "ParallelEnvIdAdapter"))
            here = "ParallelEnvIdAdapter" if self.features else "ParallelEnvAdapter"
            raise TypeError(f"the env's observations are {kind} "
                            f"({_describe_space(self.obs_spaces[0])} for agent {agents[0]!r}); "
                            f"{here} takes the other kind: use "
                            f"{other} or from_parallel_env, which chooses")
        self.n_actions = tuple(int(s.n) for s in self.act_spaces)
        self.act_start = [int(s.start) for s in self.act_spaces]
        self.state_space = getattr(env, "state_space", None)

    def same_as(self, env, spaces, b):
        """ValueError unless copy ``b`` has the first copy's agents and spaces."""
        agents = list(getattr(env, "possible_agents", []) or [])
        if agents != self.agents:
            raise ValueError(f"copy {b} made by the factory has possible_agents {agents!r}, the "
                             f"first copy {self.agents!r}; every copy must be the same env")
        other = _Spec(env, spaces, None)
        for i, a in enumerate(agents):
            if (other.obs_spaces[i], other.act_spaces[i], other.mask_in_obs[i]) != (
                    self.obs_spaces[i], self.act_spaces[i], self.mask_in_obs[i]):
                raise ValueError(f"copy {b} made by the factory gives agent {a!r} the spaces "
                                 f"{other.obs_spaces[i]}, {other.act_spaces[i]}; the first copy "
                                 f"{self.obs_spaces[i]}, {self.act_spaces[i]}: every copy must "
                                 f"be the same env")


class _Adapter:
    """What both forms share: the copies, their seeds, reading PettingZoo's dicts."""

    _features: bool | None = None

    def __init__(self, factory, *, episode_limit=None, critic_input="auto",
                 action_masks="refuse", max_envs=256, first_env=None):
        spaces, aec = _modules()
        self._spaces = spaces
        _check_factory(factory)
        if critic_input not in CRITIC_INPUTS:
            raise ValueError(f"critic_input must be one of {CRITIC_INPUTS}; got {critic_input!r}")
        if action_masks not in ACTION_MASK_MODES:
            raise ValueError(f"action_masks must be one of {ACTION_MASK_MODES}; got "
                             f"{action_masks!r}")
        self.max_envs = _check_int(max_envs, "max_envs", 1, most=MAX_COPIES)
        self._factory, self._aec = factory, aec
        self._copies = []
        env = self._make(first_env)
        spec = self._spec = _Spec(env, spaces, self._features)
        self.agents = tuple(spec.agents)
        self.n_agents = len(spec.agents)
        self.n_actions = spec.n_actions
        self.action_masks = action_masks
        if action_masks == "refuse" and any(spec.mask_in_obs):
            a = spec.agents[spec.mask_in_obs.index(True)]
            raise ValueError(self._mask_refusal(a, "its observation space is a Dict with an "
                                                   "'action_mask'"))
        if episode_limit is None:
            limit = getattr(getattr(env, "unwrapped", env), "max_cycles", None)
            if limit is None:
                raise ValueError("episode_limit: the env has no max_cycles attribute; pass "
                                 "episode_limit=T, the most steps of an episode (the adapter "
                                 "truncates an episode there)")
            self.episode_limit = _check_int(limit, "the env's max_cycles", 1, most=MAX_COUNT)
        else:
            self.episode_limit = _check_int(episode_limit, "episode_limit", 1, most=MAX_COUNT)
        self.critic_input = self._choose_critic_input(critic_input)
        self._A = max(self.n_actions)
        self._B = None
        self._seed = None
        self.action_mask = None
        self.masked_actions = 0
        self.agent_rewards = None
        self.final_obs = None

    # -- the copies
    def _make(self, env=None):
        """A new copy (``env`` if given, else ``factory()``), checked."""
        b = len(self._copies)
        if env is None:
            env = self._factory()
        if isinstance(env, self._aec):
            raise TypeError(f"factory returned an AEC env ({type(env).__name__}); pass the "
                            f"Parallel form (e.g. simple_spread_v3.parallel_env) or wrap it with "
                            f"pettingzoo.utils.aec_to_parallel")
        missing = [m for m in ("possible_agents", "reset", "step", "observation_space",
                               "action_space") if not hasattr(env, m)]
        if missing:
            raise TypeError(f"factory must return a PettingZoo ParallelEnv; it returned "
                            f"{type(env).__name__}, which has no {', '.join(missing)}")
        if any(env is c for c in self._copies):
            raise ValueError("factory returned an env it had returned before; every call must "
                             "make a new env (one copy per batch entry)")
        if self._copies:
            self._spec.same_as(env, self._spaces, b)
        self._copies.append(env)
        return env

    @property
    def envs(self) -> tuple:
        """The copies of the current batch (copy b steps row b), after ``reset``."""
        return tuple(self._copies[:self._B or 0])

    def close(self):
        """Close every copy (``env.close()``) and forget them; ``reset`` makes new ones."""
        for env in self._copies:
            env.close()
        self._copies, self._B = [], None

    def _mask_refusal(self, agent, where):
        return (f"agent {agent!r} gives an action mask ({where}); the learners sample from all "
                f"of an agent's n_actions and cannot apply masks, so a run would take forbidden "
                f"actions. Pass action_masks='ignore' to run anyway (the masks are recorded in "
                f".action_mask, the forbidden actions passed to the env counted in "
                f".masked_actions), or remove the masks from the env")

    def _choose_critic_input(self, choice):
        space = self._spec.state_space
        fits = isinstance(space, self._spaces.Box if self._features else self._spaces.Discrete)
        if choice == "auto":
            return "state" if fits else "observations"
        if choice == "state" and not fits:
            kind = "Box" if self._features else "Discrete"
            got = "no state_space" if space is None else f"state_space {_describe_space(space)}"
            raise ValueError(f"critic_input='state' needs the env's state() with a {kind} "
                             f"state_space; the env has {got}; use critic_input='observations'")
        return choice

    # -- seeds and resets
    def reset(self, n_envs, seed=None):
        """Reset copies 0..n_envs−1 (making copies as needed) → ``(obs, state)``; copy b's
        first episode is seeded with ``seed_for(seed, b, 0)`` (None: ``seed=None``)."""
        B = _check_int(n_envs, "n_envs", 1)
        if B > self.max_envs:
            raise ValueError(f"n_envs must be in [1, max_envs = {self.max_envs}], got {B}: the "
                             f"learners reset NetConfig/TabularConfig.n_envs copies to train "
                             f"and eval_episodes to evaluate; raise the adapter's max_envs")
        self._seed = _check_seed(seed)
        while len(self._copies) < B:
            self._make()
        self._B = B
        self._episode = np.zeros(B, np.int64)
        self._t = np.zeros(B, np.int64)
        self.action_mask = np.ones((B, self.n_agents, self._A), np.bool_)
        self.masked_actions = 0
        self.agent_rewards = self.final_obs = None
        obs, state = self._outputs(B)
        for b in range(B):
            self._reset_copy(b, obs, state)
        return obs, state

    def _reset_copy(self, b, obs, state):
        seed = None if self._seed is None else seed_for(self._seed, b, int(self._episode[b]))
        out = self._copies[b].reset(seed=seed)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"copy {b}'s reset must return (observations, infos) (PettingZoo "
                            f"1.24+); got {type(out).__name__}")
        self._t[b] = 0
        self._check_live(b, "reset")
        self._read(b, out[0], out[1], obs, state, "reset")

    def _check_live(self, b, when):
        live = getattr(self._copies[b], "agents", None)
        if live is not None and set(live) != set(self.agents):
            gone = [a for a in self.agents if a not in live]
            new = [a for a in live if a not in self.agents]
            raise ValueError(f"copy {b}'s live agents after {when} are {list(live)!r}, not "
                             f"possible_agents {list(self.agents)!r} (missing {gone}, unknown "
                             f"{new}): agents that join or leave mid-episode are not supported")

    def _agent_entry(self, d, a, what, b, when):
        if not isinstance(d, Mapping):
            raise TypeError(f"copy {b}'s {when} must return a dict of {what} per agent; got "
                            f"{type(d).__name__}")
        if a not in d:
            raise ValueError(f"copy {b}'s {when} gave no {what} for agent {a!r} (it gave "
                             f"{sorted(map(str, d))}): every agent must act in every step; "
                             f"agents that leave mid-episode are not supported")
        return d[a]

    def _read(self, b, observations, infos, obs, state, when):
        """Copy b's observations (and masks) into obs[b], its critic input into state[b]."""
        parts = []                    # (other keys, e.g. "common", are PettingZoo's leave)
        for i, a in enumerate(self.agents):
            x = self._agent_entry(observations, a, "observation", b, when)
            info = infos.get(a, {}) if isinstance(infos, Mapping) else {}
            mask = info.get("action_mask") if isinstance(info, Mapping) else None
            where = "an 'action_mask' in its info dict"
            if self._spec.mask_in_obs[i]:
                if not (isinstance(x, Mapping) and "observation" in x and "action_mask" in x):
                    raise ValueError(f"copy {b}'s {when} gave agent {a!r} an observation "
                                     f"without the keys 'observation' and 'action_mask' of its "
                                     f"Dict space")
                x, mask, where = x["observation"], x["action_mask"], "its Dict observation"
            if mask is not None:
                self._record_mask(b, i, a, mask, where)
            parts.append(self._observation(b, i, a, x, obs, when))
        if self.critic_input == "state":
            state[b] = self._env_state(b, when)
        else:
            state[b] = self._joint(parts)

    def _record_mask(self, b, i, a, mask, where):
        if self.action_masks == "refuse":
            raise ValueError(self._mask_refusal(a, where))
        m = np.asarray(mask).reshape(-1)
        if m.shape != (self.n_actions[i],) or m.dtype.kind not in "biu":
            raise ValueError(f"agent {a!r}'s action mask in copy {b} must hold "
                             f"{self.n_actions[i]} 0/1 entries; got {m.dtype} of shape "
                             f"{np.shape(mask)}")
        self.action_mask[b, i, :self.n_actions[i]] = m != 0

    # -- step
    def step(self, actions):
        """Step every copy with its row of ``actions`` ((B, n) ints, 0 <= a < n_actions[i])
        → ``(obs, state, reward, terminated, truncated, final_state)`` (module docstring)."""
        if self._B is None:
            raise RuntimeError("call reset(n_envs, seed) before step(actions)")
        B, n = self._B, self.n_agents
        act = _check_batch_actions(actions, B, n)
        bad = (act < 0) | (act >= np.array(self.n_actions))
        if bad.any():
            b, i = (int(k) for k in np.argwhere(bad)[0])
            raise ValueError(f"actions[{b}, {i}] = {act[b, i]} is out of range: agent "
                             f"{self.agents[i]!r} has actions 0..{self.n_actions[i] - 1}")
        if self.action_masks == "ignore":
            rows = np.arange(B)[:, None]
            self.masked_actions += int((~self.action_mask[rows, np.arange(n), act]).sum())
            self.action_mask[:] = True
        obs, state = self._outputs(B)
        final_obs, final_state = self._outputs(B)
        reward = np.zeros(B)
        agent_rewards = np.zeros((B, n))
        terminated = np.zeros(B, np.bool_)
        truncated = np.zeros(B, np.bool_)
        start = self._spec.act_start
        for b in range(B):
            env = self._copies[b]
            out = env.step({a: int(act[b, i]) + start[i] for i, a in enumerate(self.agents)})
            if not (isinstance(out, tuple) and len(out) == 5):
                raise TypeError(f"copy {b}'s step must return (observations, rewards, "
                                f"terminations, truncations, infos); got "
                                f"{type(out).__name__}")
            o, r, te, tr, info = out
            self._t[b] += 1
            for i, a in enumerate(self.agents):
                x = self._agent_entry(r, a, "reward", b, "step")
                try:
                    if isinstance(x, (str, bytes, bool, np.bool_)) or np.ndim(x) != 0 \
                            or np.asarray(x).dtype.kind not in "iuf":
                        raise TypeError
                    agent_rewards[b, i] = float(x)
                except (TypeError, ValueError):
                    raise TypeError(f"copy {b}'s step gave agent {a!r} the reward "
                                    f"{type(x).__name__} {x!r}; rewards must be real "
                                    f"numbers") from None
            reward[b] = sum(agent_rewards[b].tolist())
            done, term = self._flags(b, te, tr)
            self._read(b, o, info, final_obs, final_state, "step")
            if done:
                terminated[b], truncated[b] = term, not term
                self._episode[b] += 1
                self.action_mask[b] = True
                self._reset_copy(b, obs, state)
            elif self._t[b] >= self.episode_limit:        # the adapter's time limit
                truncated[b] = True
                self._episode[b] += 1
                self.action_mask[b] = True
                self._reset_copy(b, obs, state)
            else:
                self._check_live(b, "step")
                obs[b], state[b] = final_obs[b], final_state[b]
        self.agent_rewards, self.final_obs = agent_rewards, final_obs
        return obs, state, reward, terminated, truncated, final_state

    def _flags(self, b, te, tr):
        """(done, terminated) of copy b from its per-agent flags; agents must agree."""
        te = [bool(self._agent_entry(te, a, "termination flag", b, "step")) for a in self.agents]
        tr = [bool(self._agent_entry(tr, a, "truncation flag", b, "step")) for a in self.agents]
        done = [x or y for x, y in zip(te, tr)]
        if any(done) and not all(done):
            a, c = self.agents[done.index(True)], self.agents[done.index(False)]
            raise ValueError(f"in copy {b}, agent {a!r} finished (terminated or truncated) at "
                             f"step {self._t[b]} and agent {c!r} did not: agents that leave "
                             f"mid-episode are not supported")
        if any(te) and not all(te):
            a, c = self.agents[te.index(True)], self.agents[te.index(False)]
            raise ValueError(f"in copy {b} at step {self._t[b]}, agent {a!r} terminated and "
                             f"agent {c!r} was only truncated: the learners cannot tell whether "
                             f"to bootstrap the step (E10)")
        return all(done), all(te)


class ParallelEnvAdapter(_Adapter):
    """B copies of a PettingZoo ParallelEnv with Box observations as a *feature env*
    (``asae_neural.train``); see the module's docstring for the whole contract.

    ``factory``: a zero-argument callable returning a new ``ParallelEnv`` at every call.
    ``episode_limit``: the adapter truncates an episode after this many steps (default: the
    env's ``max_cycles``; else required).  ``critic_input``: ``"auto"``, ``"state"`` or
    ``"observations"`` (the module's docstring). ``action_masks``: ``"refuse"`` or
    ``"ignore"``. ``max_envs``: the most copies ``reset`` may ask for, in [1, 2**16] (each
    copy is a whole env; mpe2's keep a 700×700 drawing surface, ~2 MB each).
    ``first_env``: an env the factory already made, used as copy 0.

    Attributes: ``agents`` (``possible_agents``), ``n_agents``, ``n_actions`` (per agent),
    ``obs_dims`` (each agent's flattened observation size), ``obs_dim`` (their maximum:
    observations are zero-padded at the end to it), ``state_dim``, ``obs_dtype`` (float64),
    ``episode_limit``, ``critic_input`` (``"state"`` or ``"observations"``: what ``state``
    holds), ``action_masks``; after ``reset``/``step``: ``envs`` (the copies),
    ``agent_rewards`` (B, n), ``final_obs`` (B, n, obs_dim), ``action_mask``,
    ``masked_actions``.
    """

    _features = True

    def __init__(self, factory, *, episode_limit=None, critic_input="auto",
                 action_masks="refuse", max_envs=256, first_env=None):
        super().__init__(factory, episode_limit=episode_limit, critic_input=critic_input,
                         action_masks=action_masks, max_envs=max_envs, first_env=first_env)
        self.obs_dtype = np.dtype(np.float64)
        self._obs_shapes = [tuple(s.shape) for s in self._spec.obs_spaces]
        self.obs_dims = tuple(math.prod(s) for s in self._obs_shapes)
        self.obs_dim = max(self.obs_dims)
        if self.obs_dim < 1:
            raise ValueError(f"every agent's Box observation is empty (shapes "
                             f"{self._obs_shapes}); the networks need obs_dim >= 1")
        if self.critic_input == "state":
            self._state_shape = tuple(self._spec.state_space.shape)
            self.state_dim = math.prod(self._state_shape)
            if self.state_dim < 1:
                raise ValueError(f"the env's state_space {self._spec.state_space} is empty; use "
                                 f"critic_input='observations'")
        else:
            self.state_dim = sum(self.obs_dims)

    def __repr__(self):
        return (f"ParallelEnvAdapter({self._factory!r}, agents={list(self.agents)}, "
                f"obs_dims={self.obs_dims}, n_actions={self.n_actions}, "
                f"critic_input={self.critic_input!r})")

    def _outputs(self, B):
        return np.zeros((B, self.n_agents, self.obs_dim)), np.zeros((B, self.state_dim))

    def _observation(self, b, i, a, x, obs, when):
        try:
            v = np.asarray(x, np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"copy {b}'s {when} gave agent {a!r} the observation "
                            f"{type(x).__name__}; its space is a Box of shape "
                            f"{self._obs_shapes[i]}") from None
        if v.shape != self._obs_shapes[i]:
            raise ValueError(f"copy {b}'s {when} gave agent {a!r} an observation of shape "
                             f"{v.shape}; its space is a Box of shape {self._obs_shapes[i]}")
        v = v.reshape(-1)
        if not np.isfinite(v).all():
            raise ValueError(f"copy {b}'s {when} gave agent {a!r} a non-finite observation "
                             f"(NaN or inf): the networks need finite inputs")
        obs[b, i, :v.size] = v
        return v

    def _env_state(self, b, when):
        s = np.asarray(self._copies[b].state(), np.float64)
        if s.shape != self._state_shape:
            raise ValueError(f"copy {b}'s state() after {when} has shape {s.shape}; its "
                             f"state_space says {self._state_shape}")
        if not np.isfinite(s).all():
            raise ValueError(f"copy {b}'s state() after {when} is not finite (NaN or inf)")
        return s.reshape(-1)

    def _joint(self, parts):
        return np.concatenate(parts)


class ParallelEnvIdAdapter(_Adapter):
    """B copies of a PettingZoo ParallelEnv with Discrete observations as an *integer-id env*
    (``asae_tabular.train``, through ``env.step``; no ``tables()``); see the module's
    docstring for the whole contract and :class:`ParallelEnvAdapter` for the arguments.

    Attributes beyond the shared ones: ``obs_sizes`` (each agent's Discrete ``n``),
    ``n_obs`` (their maximum: agent i's ids lie in [0, obs_sizes[i])), ``n_states`` (the
    state_space's ``n``, or ``prod(obs_sizes)`` for the joint observation; at most
    2**31 − 1).
    """

    _features = False

    def __init__(self, factory, *, episode_limit=None, critic_input="auto",
                 action_masks="refuse", max_envs=256, first_env=None):
        super().__init__(factory, episode_limit=episode_limit, critic_input=critic_input,
                         action_masks=action_masks, max_envs=max_envs, first_env=first_env)
        self._obs_start = [int(s.start) for s in self._spec.obs_spaces]
        self.obs_sizes = tuple(int(s.n) for s in self._spec.obs_spaces)
        self.n_obs = max(self.obs_sizes)
        if self.critic_input == "state":
            self._state_start = int(self._spec.state_space.start)
            self.n_states = int(self._spec.state_space.n)
        else:
            self.n_states = math.prod(self.obs_sizes)
            if self.n_states > MAX_COUNT:
                raise ValueError(f"the joint observation of the {self.n_agents} agents has "
                                 f"{self.n_states:.3g} values (prod of {self.obs_sizes}), more "
                                 f"than a state table can index (2**31 - 1): give the env a "
                                 f"Discrete state_space and state() (critic_input='state')")
        if self.n_states > MAX_COUNT or self.n_obs > MAX_COUNT:
            raise ValueError(f"n_states = {self.n_states} or n_obs = {self.n_obs} exceeds "
                             f"2**31 - 1")

    def __repr__(self):
        return (f"ParallelEnvIdAdapter({self._factory!r}, agents={list(self.agents)}, "
                f"obs_sizes={self.obs_sizes}, n_actions={self.n_actions}, "
                f"critic_input={self.critic_input!r})")

    def _outputs(self, B):
        return np.zeros((B, self.n_agents), np.int64), np.zeros(B, np.int64)

    def _id(self, x, what, start, n):
        if isinstance(x, np.ndarray) and x.ndim == 0:
            x = x.item()
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"{what} must be an int; got {type(x).__name__} {x!r}")
        if not start <= x < start + n:
            raise ValueError(f"{what} must be in [{start}, {start + n}) (its Discrete space); "
                             f"got {x}")
        return int(x) - start

    def _observation(self, b, i, a, x, obs, when):
        obs[b, i] = self._id(x, f"copy {b}'s {when}: agent {a!r}'s observation",
                             self._obs_start[i], self.obs_sizes[i])
        return int(obs[b, i])

    def _env_state(self, b, when):
        return self._id(self._copies[b].state(), f"copy {b}'s state() after {when}",
                        self._state_start, self.n_states)

    def _joint(self, parts):
        j = 0
        for o, k in zip(parts, self.obs_sizes):
            j = j * k + o
        return j


def from_parallel_env(factory, *, episode_limit=None, critic_input="auto",
                      action_masks="refuse", max_envs=256):
    """A batched env over copies of the PettingZoo ParallelEnv that ``factory()`` makes:
    a :class:`ParallelEnvAdapter` (feature env, for ``asae_neural.train``) when every agent
    observes a Box, a :class:`ParallelEnvIdAdapter` (integer ids, for
    ``asae_tabular.train``) when every agent observes a Discrete; the arguments are theirs
    and the contract (spaces, seeds, flags, the critic's input, action masks) is in the
    module's docstring. Raises ``TypeError``/``ValueError`` naming the agent and space the
    learners cannot take; requires gymnasium and pettingzoo (the extra ``pettingzoo``).

    ``asae_neural.train(from_parallel_env(simple_spread_v3.parallel_env), "async",
    NetConfig(n_envs=16))`` trains on mpe2's simple_spread through it.
    """
    spaces, _ = _modules()
    _check_factory(factory)
    first = factory()
    obs_space = None
    agents = getattr(first, "possible_agents", None)
    if agents and hasattr(first, "observation_space"):
        if not callable(first.observation_space) or not callable(getattr(first, "action_space",
                                                                         None)):
            raise TypeError(f"the factory's env ({type(first).__name__}) must have the methods "
                            "observation_space(agent) and action_space(agent) of PettingZoo's "
                            "ParallelEnv; got attributes")
        obs_space = first.observation_space(list(agents)[0])
        if isinstance(obs_space, spaces.Dict) and "observation" in obs_space.spaces:
            obs_space = obs_space.spaces["observation"]
    cls = ParallelEnvIdAdapter if isinstance(obs_space, spaces.Discrete) else ParallelEnvAdapter
    return cls(factory, episode_limit=episode_limit, critic_input=critic_input,
               action_masks=action_masks, max_envs=max_envs, first_env=first)
