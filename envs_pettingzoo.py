"""The asae environments in PettingZoo's Parallel API (:func:`to_parallel_env`).

:func:`to_parallel_env` wraps one environment of a batched game of :mod:`envs` (the games
with known answers: MatrixGame and its instances, CountGame, TwoStepGame, GridForaging) or
of :class:`envs_spread.Spread` (MPE's simple_spread, in :mod:`envs_spread`) in PettingZoo's
Parallel API, on a private copy of the game.  gymnasium and pettingzoo are imported lazily,
at the first call (the extra ``pettingzoo``); the envs themselves need only numpy and numba.
The batched interface the wrapper drives is described in the docstring of :mod:`envs`.
The other direction, a user's PettingZoo env as a batched env for the learners, is
:func:`envs_pz_in.from_parallel_env`.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np

from envs import _check_int, _check_seed, _Game
from envs_spread import Spread

__all__ = ["to_parallel_env"]


_PARALLEL_CLASS = None
# batch arrays, replaced by every reset (not copied), and read-only caches (shared)
_BATCH_ATTRIBUTES = ("_state", "_t", "_pos", "_vel", "_lm", "_rng", "agent_rewards")
_SHARED_ATTRIBUTES = ("_tables", "_solution", "payoff", "_flat", "_payoff_list")


def _parallel_class():
    global _PARALLEL_CLASS
    if _PARALLEL_CLASS is not None:
        return _PARALLEL_CLASS
    try:
        from gymnasium import spaces
        from pettingzoo import ParallelEnv
    except ImportError as e:
        raise ModuleNotFoundError(
            f"to_parallel_env needs gymnasium and pettingzoo ({e}); install them with "
            "pip install -e '.[pettingzoo]' in a checkout of asae, or pip install "
            "'asae[pettingzoo]'",
            name=e.name) from e

    class AsaeParallelEnv(ParallelEnv):
        """One env of an asae game in PettingZoo's Parallel API (see ``to_parallel_env``)."""

        metadata = {"name": "asae_game_v0", "render_modes": []}

        def __init__(self, game, seed=None):
            # a private copy without the batch of the original (its reset arrays, however
            # many envs) and sharing the read-only tables and solution
            memo = {id(v): None for k, v in vars(game).items() if k in _BATCH_ATTRIBUTES}
            memo.update({id(v): v for k, v in vars(game).items() if k in _SHARED_ATTRIBUTES})
            self.game = copy.deepcopy(game, memo)
            self.possible_agents = [f"agent_{i}" for i in range(game.n_agents)]
            self.agents = []
            self.metadata = {**self.metadata, "name": f"asae_{type(game).__name__}_v0"}
            self._features = hasattr(game, "obs_dim")  # the feature-observation form
            if self._features:
                def box(dim):
                    return spaces.Box(-np.inf, np.inf, (dim,), game.obs_dtype)
                self._observation_spaces = {a: box(game.obs_dim) for a in self.possible_agents}
                self.state_space = box(game.state_dim)
            else:
                self._observation_spaces = {a: spaces.Discrete(game.n_obs)
                                            for a in self.possible_agents}
                self.state_space = spaces.Discrete(game.n_states)
            self._action_spaces = {a: spaces.Discrete(k)
                                   for a, k in zip(self.possible_agents, game.n_actions)}
            self._seed = seed
            self._state_id = None  # the state id, or the state vector of a feature env

        def _check_agent(self, agent):
            if agent not in self._action_spaces:
                raise ValueError(f"agent must be one of {self.possible_agents}, got {agent!r}")

        def observation_space(self, agent):
            self._check_agent(agent)
            return self._observation_spaces[agent]

        def action_space(self, agent):
            self._check_agent(agent)
            return self._action_spaces[agent]

        def reset(self, seed=None, options=None):
            seed = _check_seed(seed)  # a Python int: gymnasium's seeding rejects numpy ints
            if options is not None and not isinstance(options, Mapping):
                raise TypeError(f"options must be None or a dict, got {type(options).__name__} "
                                f"{options!r}")
            if seed is None:
                seed, self._seed = self._seed, None
            if seed is not None:
                for i, a in enumerate(self.possible_agents):
                    self._action_spaces[a].seed(seed + i)
            obs, state = self.game.reset(1, seed)
            self.agents = self.possible_agents[:]
            if self._features:
                self._state_id = state[0]
                return ({a: obs[0, i] for i, a in enumerate(self.agents)},
                        {a: {} for a in self.agents})
            self._state_id = int(state[0])
            return ({a: int(obs[0, i]) for i, a in enumerate(self.agents)},
                    {a: {} for a in self.agents})

        def step(self, actions):
            if not self.agents:
                raise RuntimeError("episode is over; call reset()")
            if not isinstance(actions, Mapping):
                raise TypeError(f"actions must be a dict {{agent: action}}, got "
                                f"{type(actions).__name__} {actions!r}")
            unknown = [a for a in actions if a not in self.agents]
            if unknown:
                raise ValueError(f"actions has keys {unknown} that are not live agents "
                                 f"{self.agents}")
            missing = [a for a in self.agents if a not in actions]
            if missing:
                raise ValueError(f"actions is missing agents {missing}")
            joint = np.empty((1, len(self.possible_agents)), np.int64)
            for i, a in enumerate(self.possible_agents):
                joint[0, i] = _check_int(actions[a], f"actions[{a!r}]", 0, self.game.n_actions[i])
            obs, state, reward, terminated, truncated, final_state = self.game.step(joint)
            done = bool(terminated[0] or truncated[0])
            agents = self.agents
            if done:
                self.agents = []
            if self._features:
                self._state_id = final_state[0] if done else state[0]
                if done:  # Spread's state is the concatenation of the observations
                    obs = final_state.reshape(1, len(self.possible_agents), -1)
                observations = {a: obs[0, i] for i, a in enumerate(self.possible_agents)}
                rewards = {a: float(self.game.agent_rewards[0, i])
                           for i, a in enumerate(self.possible_agents)}
            else:
                self._state_id = int(final_state[0] if done else state[0])
                observations = {a: self._state_id for a in agents}
                rewards = {a: float(reward[0]) for a in agents}
            return (observations, rewards,
                    {a: bool(terminated[0]) for a in agents},
                    {a: bool(truncated[0]) for a in agents},
                    {a: {} for a in agents})

        def state(self):
            if self._state_id is None:
                raise RuntimeError("call reset() before state()")
            if self._features:
                return self._state_id.copy()
            return np.asarray(self._state_id, np.int64)

    _PARALLEL_CLASS = AsaeParallelEnv
    return AsaeParallelEnv


def to_parallel_env(game, seed=None):
    """Wrap one environment of ``game`` (on a private copy) in PettingZoo's Parallel API.

    Agents are ``"agent_0"``, ``"agent_1"``, ...; actions ``Discrete(game.n_actions[i])``.
    Integer-id games: observations are ``Discrete(game.n_obs)`` ids, ``state()`` is the
    global state id (``state_space = Discrete(game.n_states)``) and every agent receives
    the team reward.  Feature envs (:class:`envs_spread.Spread`): observations are
    ``Box(-inf, inf, (game.obs_dim,), game.obs_dtype)`` arrays, ``state()`` the global state
    vector (``Box`` of ``state_dim``), and every agent receives its own reward
    (``game.agent_rewards``, as mpe2 does; they sum to the team reward).  ``seed`` seeds
    the first ``reset`` (and the action spaces).  When the episode ends, the returned
    observations are those of the final state and ``agents`` becomes empty.  ``step``
    takes a dict with exactly one int action per live agent (unknown or missing agents are
    a ValueError).  Requires gymnasium and pettingzoo (``pip install -e '.[pettingzoo]'``
    in a checkout, or ``pip install 'asae[pettingzoo]'``); without them this raises
    ModuleNotFoundError.
    """
    if not isinstance(game, (_Game, Spread)):
        raise TypeError(f"game must be an asae game (MatrixGame, TwoStepGame, GridForaging, "
                        f"Spread), got {type(game).__name__}")
    return _parallel_class()(game, _check_seed(seed))
