"""asae — approximatively synchronous advantage estimation, a reference implementation.

Paper: L. Wan, X. Song, X. Lan, N. Zheng, "Multi-agent Policy Optimization with
Approximatively Synchronous Advantage Estimation", arXiv:2012.03488 (2020/2021).

The paper's full text is not reproduced here. The equations E1–E10 implemented below are
this project's precise statement of the paper's method (see ``EQUATIONS.md`` and the README),
derived from its definitions and the standard multi-agent policy-optimisation identities.
Where a choice is ours it is a parameter: ``sync_clip`` (E8), the clip-boundary convention
of the surrogate gradient (E8), and the log-space saturation of importance weights.

Equations → code (the file follows this order)
==============================================
===  =========================================================  ===============================
E1   V = Σ_a π(a) Q(a); A = Q − V                               :func:`joint_value`
E2   Q^i(a^i) = Σ_{a^-i} π^-i(a^-i) Q(a^i, a^-i)                :func:`marginal_q`
E3   A^i(a^i) = Q^i(a^i) − V                                    :func:`marginal_advantage`
E4   ∇_θi J = E[∇ log π^i(a^i) A^i(a^i)]                        :func:`exact_policy_gradient`
E5   L(π̃) = J(π_old) + E_{a~π_old}[(∏_j ρ^j) A]                :func:`joint_surrogate`
E6   Ã^i(a^i) = E_{a^-i~π̃^-i}[A_old(a)]                        ``synchronous_marginal_advantage``
     (E1–E6 and the learners' exact tables: one kernel,         ``_marginals_kernel``)
E7   COMA: Q(a) − Σ_b π^i(b) Q(b, a^-i)                         :func:`counterfactual_advantage`
E8   w^i = exp(Σ_{j<i} log ρ^j + Σ_{j>i} log ρ^j) = ∏_{j≠i} ρ^j  :func:`sync_weights`
     L^i = E[min(ρ^i w^i Â, clip(ρ^i, 1±ε) w^i Â)], ∇_z L^i     :func:`clipped_surrogate`,
                                                                :func:`clipped_surrogate_grad`
E9   M^{i_m} = ∏_{l<m} ρ^{i_l} (HAPPO-style)                    :func:`sequential_weights`
—    a method = base × weight, scheduled: one row per learner   :data:`METHOD_TABLE`,
                                                                :func:`method_advantages`
E10  δ_t = r_t + γ(1−term_t)V(s'_t) − V(s_t);
     Â_t = δ_t + γλ(1−done_t)Â_{t+1}                            :func:`gae`
===  =========================================================  ===============================

Then the learners: :func:`train` with the rows of :data:`METHOD_TABLE` (``async``, ``asae``,
``happo``, ``coma``, ``exact_sync``, ``exact_async``, ``coppo``, ``a2po``); tabular actors and
critics for any env with the :class:`BatchedEnv` interface (:class:`Config`), MLP actors and a
centralised MLP critic for feature envs (``env.obs_dim``; :class:`NetConfig`, :class:`MLP`,
:class:`MLPPolicy`) — the two policy classes meet the methods at the logits
(:func:`_logit_grads`); :class:`TrainResult`, :func:`evaluate`; and the bias probe,
:func:`advantage_bias`, which measures each method's exact bias against Ã^i (E6).

Design: each public function validates and casts its inputs (one checker, :func:`_array`: a
clear ``ValueError``/``TypeError`` naming the argument), then calls a private
``@njit(cache=True)`` kernel over plain arrays and scalars, one kernel per equation; a finite
input that would overflow float64 raises ``FloatingPointError``. No ``fastmath``: it would
change NaN/inf handling and the order of summation. Every kernel has a slow loop-for-loop twin
in ``test_asae.py``, and so has the learners' whole update.
"""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import MISSING, dataclass, field, fields, replace
from collections.abc import Mapping
from typing import NamedTuple, Protocol, Sequence

import numpy as np

try:
    import numba
    from numba import njit
except ModuleNotFoundError:  # pragma: no cover - depends on the installation
    raise ModuleNotFoundError("asae needs numba (≥ 0.58): python -m pip install numba, or "
                              "python -m pip install -e . in a clone of asae") from None
if tuple(int(x) for x in numba.__version__.split(".")[:2]) < (0, 58):  # pragma: no cover
    raise ImportError(f"asae needs numba ≥ 0.58; found {numba.__version__}: "
                      "python -m pip install --upgrade numba")

__all__ = [
    "softmax", "log_softmax", "joint_value", "marginal_q", "marginal_advantage",
    "exact_policy_gradient", "joint_surrogate", "synchronous_marginal_advantage",
    "counterfactual_advantage", "sync_weights", "method_advantages", "clipped_surrogate",
    "clipped_surrogate_grad", "sequential_weights", "gae", "METHODS", "Config", "TrainResult",
    "BatchedEnv", "EnvTables", "METHOD_TABLE", "Method", "train", "evaluate", "advantage_bias",
    "NetConfig", "MLP", "MLPPolicy",
]

#: Log-space saturation of importance ratios and weights (a documented choice): a ratio or
#: weight is at most e^300 ≈ 2e130, so ρ·w·Â stays finite for any |Â| < 1e47. Below the
#: saturation the formulas are exact; above it the exact value would overflow float64.
MAX_LOG_RATIO = 300.0

#: The largest array (in bytes, as float64) a public function accepts or allocates; larger
#: inputs, outputs and learner tables raise ``ValueError`` naming the argument and the estimate
#: instead of exhausting memory (a broadcast view of 10^12 entries is one such input).
MAX_ARRAY_BYTES = 2 ** 32

#: Valid range of a table of n log-ratios per row: n · max|log ρ| ≤ this, so that no partial
#: sum Σ_j log ρ^j overflows (sync_weights, sequential_weights, method_advantages).
MAX_LOG_RATIO_SUM = 1e308


# =======================================================================================
# Validation — one checker for every public wrapper; kernels assume checked input
# =======================================================================================


def _describe(x: np.ndarray) -> str:
    return f"shape {x.shape} and dtype {x.dtype}"


_KINDS = {"real": ("iuf", "a real (integer or float)"), "int": ("iu", "an integer"),
          "bool": ("biu", "a boolean (or 0/1 integer)")}


def _array(name: str, x, *, kind: str = "real", ndim=None, shape=None, finite: bool = True,
           high: int | None = None) -> np.ndarray:
    """Check ``x`` and return it as a C-contiguous float64 / int64 / bool array.

    kind: "real" (ints or floats → float64; ``finite`` rejects NaN/inf), "int" (indices →
    int64, in [0, high) if ``high``), "bool" (bools or 0/1 ints → bool). ndim: an int or a
    tuple of allowed ndims; shape: the exact shape.
    """
    if type(x) is np.ndarray:
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError):
            raise ValueError(f"{name} must be a rectangular numeric array; got a ragged "
                             "sequence") from None
    if arr.size * 8 > MAX_ARRAY_BYTES:
        raise ValueError(f"{name} has {arr.size:,} entries ({_gib(arr.size * 8)} as float64); "
                         f"asae refuses arrays over MAX_ARRAY_BYTES = {_gib(MAX_ARRAY_BYTES)}")
    accepted, what = _KINDS[kind]
    if arr.dtype.kind not in accepted:
        raise TypeError(f"{name} must be {what} array; got {_describe(arr)}")
    ndims = (ndim,) if isinstance(ndim, int) else ndim
    if ndims is not None and arr.ndim not in ndims:
        raise ValueError(f"{name} must be {' or '.join(f'{d}-D' for d in ndims)}; "
                         f"got {_describe(arr)}")
    if shape is not None and arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}; got {_describe(arr)}")
    if kind == "real":
        if arr.dtype != np.float64 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float64)
        # A finite sum proves every entry finite (NaN and ±inf propagate); only when the sum
        # is not finite (an entry is, or finite entries overflowed) look element by element.
        with np.errstate(over="ignore", invalid="ignore"):
            bad = finite and not math.isfinite(np.add.reduce(arr, axis=None)) \
                and not np.isfinite(arr).all()
        if bad:
            raise ValueError(f"{name} must be finite; got NaN or inf in an array of "
                             f"{_describe(arr)}")
        return arr
    if kind == "bool":
        if arr.dtype.kind != "b" and np.any((arr != 0) & (arr != 1)):
            raise ValueError(f"{name} must hold only 0/1 (or bool) values")
        return np.ascontiguousarray(arr, dtype=np.bool_)
    if high is not None and arr.size and (arr.min() < 0 or arr.max() >= high):
        raise ValueError(f"{name} must hold indices in [0, {high}); got values in "
                         f"[{arr.min()}, {arr.max()}]")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _finite(name: str, x):
    """Return x if every entry is finite, else raise FloatingPointError: finite inputs whose
    exact result is beyond float64 (|value| > 1.8e308). One reduction in the common case."""
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(np.add.reduce(x, axis=None)) or np.isfinite(x).all():
            return x
    raise FloatingPointError(f"{name}: the result overflows float64 (|value| > 1.8e308) for "
                             "these finite inputs; rescale them")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2 ** 30:,.3g} GiB"


def _scalar(name: str, x, lo: float, hi: float, lo_open: bool = False) -> float:
    """A real number in [lo, hi] (or (lo, hi]); bools are not numbers here."""
    if type(x) is not float and (isinstance(x, (bool, np.bool_))
                                 or not isinstance(x, numbers.Real)):
        raise TypeError(f"{name} must be a real number; got {type(x).__name__}")
    v = float(x)
    if not (np.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi):
        raise ValueError(f"{name} must be a finite number in {'(' if lo_open else '['}{lo}, {hi}]; "
                         f"got {v!r}")
    return v


def _integer(name: str, x, low: int = 0, high: int = 2 ** 62) -> int:
    """An integer in [low, high] (bools and floats rejected; high keeps it an int64)."""
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {type(x).__name__} {x!r}")
    if not low <= x <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high:.4g}]; got {x!r}")
    return int(x)


def _probability_vector(name: str, p, size: int) -> np.ndarray:
    arr = _array(name, p, ndim=1, shape=(size,))
    if np.any(arr < 0.0) or abs(arr.sum() - 1.0) > 1e-8:
        raise ValueError(f"{name} must be non-negative and sum to 1 (±1e-8); "
                         f"got min {arr.min()!r}, sum {arr.sum()!r}")
    return arr


def _logit_vector(name: str, z, size: int) -> np.ndarray:
    return _array(name, z, ndim=1, shape=(size,))


def _agent_index(agent, n: int) -> int:
    if isinstance(agent, (bool, np.bool_)) or not isinstance(agent, numbers.Integral):
        raise TypeError(f"agent must be an integer index; got {type(agent).__name__}")
    if not 0 <= int(agent) < n:
        raise ValueError(f"agent must be in [0, {n}) for a game of {n} agents; got {agent}")
    return int(agent)


def _joint_table(q, vectors, name: str = "policies", each=_probability_vector):
    """A joint table q (A_1..A_n) and one vector per axis, each checked by ``each``."""
    q = _array("q", q)
    if q.ndim < 1 or q.size == 0:
        raise ValueError(f"q must be a non-empty joint table of shape (A_1, ..., A_n); "
                         f"got {_describe(q)}")
    if vectors is None or isinstance(vectors, (str, bytes)) or not hasattr(vectors, "__len__") \
            or isinstance(vectors, np.ndarray) and vectors.ndim < 2:
        raise TypeError(f"{name} must be a sequence of {q.ndim} vectors, one per agent; "
                        f"got {type(vectors).__name__}")
    if len(vectors) != q.ndim:
        raise ValueError(f"{name} must hold one vector per axis of q ({q.ndim}); "
                         f"got {len(vectors)}")
    return q, [each(f"{name}[{j}]", v, q.shape[j]) for j, v in enumerate(vectors)]


def _log_ratio_table(log_ratios, n_rows: int | None = None) -> np.ndarray:
    """(N, n ≥ 1) finite log-ratios within the valid range n · max|log ρ| ≤ MAX_LOG_RATIO_SUM."""
    log_rho = _array("log_ratios", log_ratios, ndim=2, finite=False)     # finite: below
    if log_rho.shape[1] == 0 or (n_rows is not None and log_rho.shape[0] != n_rows):
        want = "N" if n_rows is None else n_rows
        raise ValueError(f"log_ratios must have shape ({want}, n ≥ 1); got {_describe(log_rho)}")
    if log_rho.size:
        big = max(log_rho.max(), -log_rho.min())                   # NaN if any entry is NaN
        if not np.isfinite(big):
            raise ValueError(f"log_ratios must be finite; got NaN or inf in an array of "
                             f"{_describe(log_rho)}")
        if big > MAX_LOG_RATIO_SUM / log_rho.shape[1]:
            raise ValueError(f"log_ratios must satisfy n·max|log ρ| ≤ {MAX_LOG_RATIO_SUM:g} (so no "
                             f"partial sum overflows); got max|log ρ| = {big:g} with "
                             f"n = {log_rho.shape[1]}")
    return log_rho


# =======================================================================================
# Softmax policies — π_k = exp(z_k − m) / Σ_b exp(z_b − m), m = max_b z_b
# =======================================================================================


@njit(cache=True, inline='always')
def _row_max(z):
    """m = max_k z_k, the shift that keeps every exp(z_k − m) ≤ 1."""
    m = z[0]
    for k in range(1, z.shape[0]):
        if z[k] > m:
            m = z[k]
    return m


@njit(cache=True, inline='always')
def _log_softmax_row(z, logp, pi):
    """logp = log softmax(z) and pi = softmax(z) for one row, from one exp per action: with
    m = max z and s = Σ_b exp(z_b − m) ∈ [1, A], π_k = exp(z_k − m)/s and
    log π_k = (z_k − m) − log s — the shift first, so the result is accurate to a few ulp at
    any scale of z (z_k − (m + log s) would lose log s once |m| ≫ 1)."""
    m = _row_max(z)
    s = 0.0
    for k in range(z.shape[0]):
        pi[k] = np.exp(z[k] - m)
        s += pi[k]
    log_s = np.log(s)
    for k in range(z.shape[0]):
        logp[k] = (z[k] - m) - log_s
        pi[k] /= s


@njit(cache=True)
def _softmax_kernel(z, log, out):
    """Row by row over (M, A): out = log softmax(z) if ``log`` else softmax(z), both from
    :func:`_log_softmax_row` (the other half goes to a one-row scratch)."""
    scratch = np.empty(z.shape[1])
    for m in range(z.shape[0]):
        if log:
            _log_softmax_row(z[m], out[m], scratch)
        else:
            _log_softmax_row(z[m], scratch, out[m])


def _logits(name: str, logits, spread: bool = True) -> np.ndarray:
    """Logits with ≥ 1 action on the last axis; with ``spread``, each row's max − min must be
    finite (≤ 1.8e308), else a log-probability (z_k − max z) is not a float64."""
    z = _array(name, logits, finite=not spread)         # finite: implied by a finite spread
    if z.ndim < 1 or z.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one axis with ≥ 1 action; got {_describe(z)}")
    if spread and z.size:
        with np.errstate(over="ignore", invalid="ignore"):  # global spread first (2 passes)
            ok = np.isfinite(z.max() - z.min()) or \
                np.all(np.isfinite(z.max(axis=-1) - z.min(axis=-1)))
        if not ok:
            raise ValueError(f"{name} must be finite with each row's max − min ≤ 1.8e308 (else "
                             "a log-probability overflows); got a row spanning more")
    return z


def _softmax_rows(z: np.ndarray, log: bool) -> np.ndarray:
    """log softmax (``log``) or softmax of checked logits over the last axis."""
    out = np.empty(z.shape)
    _softmax_kernel(z.reshape(-1, z.shape[-1]), log, out.reshape(-1, z.shape[-1]))
    return out


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis, max-shifted (any finite logits).

    >>> softmax([0.0, 0.0]).tolist()
    [0.5, 0.5]
    """
    return _softmax_rows(_logits("logits", logits, spread=False), False)


def log_softmax(logits) -> np.ndarray:
    """Log-softmax over the last axis; never ``log(softmax)``.

    Computed as (z_k − max z) − log Σ_b exp(z_b − max z): accurate to a few ulp at any
    finite scale. Valid range: each row's spread max − min finite (≤ 1.8e308); a row spanning
    more (e.g. [1e308, −1e308], whose log-probability −2e308 is not a float64) raises
    ``ValueError``.

    >>> log_softmax([0.0, 0.0]).round(6).tolist()
    [-0.693147, -0.693147]
    >>> log_softmax([1e16, 1e16]).round(6).tolist()
    [-0.693147, -0.693147]
    """
    return _softmax_rows(_logits("logits", logits), True)


# =======================================================================================
# E1–E6 — exact (tabular) oracles for a one-step game with joint table q(a^1..a^n)
#          V = Σ_a π(a) q(a);  Q^i(a^i) = Σ_{a^-i} π^-i q;  A^i = Q^i − V;  Ã^i under π̃^-i
# =======================================================================================


@njit(cache=True, inline='always')
def _joint_action(j, l, radix, n_actions):
    """a^l, agent l's action in the joint action with flat index j = Σ_l a^l · radix_l
    (C order over agents: radix_l = ∏_{m>l} A_m)."""
    return (j // radix[l]) % n_actions[l]


@njit(cache=True)
def _joint_prob(pi, radix, n_actions, j, skip):
    """π^{-skip}(a^{-skip}) = ∏_{l≠skip} π^l(a^l) of the joint action j, the product taken in
    agent order; skip = −1 gives the joint probability π(a) = ∏_l π^l(a^l)."""
    p = 1.0
    for l in range(pi.shape[0]):
        if l != skip:
            p *= pi[l, _joint_action(j, l, radix, n_actions)]
    return p


@njit(cache=True)
def _marginals_kernel(q, radix, n_actions, pi, out):
    """E1 and E2 in one pass over the flat joint table q (policies ``pi`` (n, A_max)):
    ``out[i, k] = Q^i(k) = Σ_{a: a^i = k} ∏_{j≠i} π^j(a^j) q(a)`` for every agent i, and the
    return value ``V = Σ_a ∏_j π^j(a^j) q(a)``. The learners use it too (exact methods, probe)."""
    out[:, :] = 0.0
    v = 0.0
    for j in range(q.shape[0]):
        v += _joint_prob(pi, radix, n_actions, j, -1) * q[j]
        for i in range(pi.shape[0]):
            out[i, _joint_action(j, i, radix, n_actions)] += _joint_prob(pi, radix, n_actions, j,
                                                                         i) * q[j]
    return v


def _radix(n_actions) -> np.ndarray:
    """Strides of the flat (C-order) joint index: radix_l = ∏_{m>l} A_m."""
    return np.array([math.prod(int(k) for k in n_actions[l + 1:]) for l in range(len(n_actions))],
                    np.int64)


def _marginals(q: np.ndarray, pis) -> tuple[np.ndarray, float]:
    """(Q (n, A_max) with row i = Q^i of E2, V of E1) of the joint table q under ``pis``."""
    n_actions = np.array(q.shape, np.int64)
    pi = np.zeros((q.ndim, int(n_actions.max())))
    for i, p in enumerate(pis):
        pi[i, :p.size] = p
    out = np.empty(pi.shape)
    v = _marginals_kernel(q.ravel(), _radix(n_actions), n_actions, pi, out)
    return out, v


def joint_value(q, policies) -> float:
    """E1 for a one-step game: ``V = Σ_a ∏_j π^j(a^j) q(a)``.

    >>> joint_value([[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]])
    0.5
    """
    q, pis = _joint_table(q, policies)
    return float(_finite("joint_value", _marginals(q, pis)[1]))


def marginal_q(q, policies, agent: int) -> np.ndarray:
    """E2: ``Q^i(a^i) = Σ_{a^-i} ∏_{j≠i} π^j(a^j) q(a^i, a^-i)`` → (A_i,)."""
    q, pis = _joint_table(q, policies)
    i = _agent_index(agent, q.ndim)
    return _finite("marginal_q", _marginals(q, pis)[0][i, :q.shape[i]])


def marginal_advantage(q, policies, agent: int) -> np.ndarray:
    """E3: ``A^i(a^i) = Q^i(a^i) − V``; satisfies ``Σ_a π^i(a) A^i(a) = 0``.

    >>> marginal_advantage([[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]], 0).tolist()
    [0.5, -0.5]
    """
    q, pis = _joint_table(q, policies)
    i = _agent_index(agent, q.ndim)
    qs, v = _marginals(q, pis)
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite("marginal_advantage", qs[i, :q.shape[i]] - v)


def exact_policy_gradient(q, logits, agent: int) -> np.ndarray:
    """E4: ∇ of ``J(θ) = Σ_a ∏_j softmax(θ^j)(a^j) q(a)`` w.r.t. agent i's logits.

    ``∂J/∂θ^i_k = Σ_a π^i(a) (1[a=k] − π^i(k)) A^i(a) = π^i(k) (Q^i(k) − Σ_a π^i(a) Q^i(a))``.
    """
    q, zs = _joint_table(q, logits, "logits", _logit_vector)
    pis = [softmax(z) for z in zs]
    i = _agent_index(agent, q.ndim)
    qi = _marginals(q, pis)[0][i, :q.shape[i]]                  # Q^i (E2)
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite("exact_policy_gradient", pis[i] * (qi - pis[i] @ qi))   # π^i(k) A^i(k)


def joint_surrogate(q, old_policies, new_policies) -> float:
    """E5 for a one-step game: ``L = J(π_old) + Σ_a π_old(a) (∏_j ρ^j(a^j)) A_old(a)``.

    With exact expectations this equals J(π_new); sampled, it is the PPO joint objective.
    """
    q, old = _joint_table(q, old_policies, "old_policies")
    _, new = _joint_table(q, new_policies, "new_policies")
    v_old = _finite("joint_surrogate", _marginals(q, old)[1])
    with np.errstate(over="ignore", invalid="ignore"):
        gain = _marginals(q - v_old, new)[1]                  # Σ π_old ∏ρ A = Σ π_new A
        return float(_finite("joint_surrogate", v_old + gain))


def synchronous_marginal_advantage(q, old_policies, new_policies, agent: int) -> np.ndarray:
    """E6: ``Ã^i(a^i) = E_{a^-i ~ π̃^-i}[A_old(a^i, a^-i)] = Q^i_{π̃^-i}(a^i) − V_old``.

    Agent i's own new policy does not enter; its partners' new policies do.
    """
    q, old = _joint_table(q, old_policies, "old_policies")
    _, new = _joint_table(q, new_policies, "new_policies")
    i = _agent_index(agent, q.ndim)
    v_old = _marginals(q, old)[1]
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite("synchronous_marginal_advantage",
                       _marginals(q, new)[0][i, :q.shape[i]] - v_old)


# =======================================================================================
# E7 — asynchronous estimates; COMA: A^i_C = Q(a) − Σ_b π^i(b) Q(b, a^-i)
# =======================================================================================


@njit(cache=True, inline='always')
def _counterfactual_row(q_b, pi, a):
    """E7 for one sample: ``A^i_C = Q(a^i, a^-i) − Σ_b π^i(b) Q(b, a^-i)``, with
    ``q_b[b] = Q(b, a^-i)`` (a strided view of the joint Q row in the learners)."""
    adv = q_b[a]
    for b in range(q_b.shape[0]):
        adv -= pi[b] * q_b[b]                  # the counterfactual baseline, term by term
    return adv


@njit(cache=True)
def _counterfactual_kernel(q_agent, pi_agent, actions, out):
    """Implements E7 (COMA) row by row: A^i_C = Q(a^i, a^-i) − Σ_b π^i(b) Q(b, a^-i)."""
    for n in range(q_agent.shape[0]):
        out[n] = _counterfactual_row(q_agent[n], pi_agent[n], actions[n])

@njit(cache=True)
def _first_bad_policy_row(pi):
    """Index of the first row of ``pi`` that is not a probability vector (an entry negative
    or not finite, or |Σ − 1| > 1e-8), or −1: one pass, for the wrapper's check."""
    for n in range(pi.shape[0]):
        total = 0.0
        smallest = 0.0
        for b in range(pi.shape[1]):
            p = pi[n, b]
            total += p                                   # NaN / ±inf make the total non-finite
            smallest = p if p < smallest else smallest
        if smallest < 0.0 or not abs(total - 1.0) <= 1e-8:
            return n
    return -1


def counterfactual_advantage(q_agent, pi_agent, actions_agent) -> np.ndarray:
    """COMA counterfactual advantage, batched. Implements E7.

    ``A^i_C(s, a) = Q(s, a) − Σ_b π^i(b|o^i) Q(s, (b, a^-i))``.

    Args:
        q_agent: (N, A) — ``Q(s, (b, a^-i))`` for every action b of agent i, partners fixed.
        pi_agent: (N, A) — agent i's policy rows (each sums to 1).
        actions_agent: (N,) — the action agent i took.
    """
    qa = _array("q_agent", q_agent, ndim=2)
    if qa.shape[1] == 0:
        raise ValueError(f"q_agent must have at least one action column; got {_describe(qa)}")
    pa = _array("pi_agent", pi_agent, shape=qa.shape, finite=False)   # checked row by row
    bad = _first_bad_policy_row(pa)
    if bad >= 0:
        raise ValueError(f"pi_agent rows must be finite, non-negative and sum to 1 (±1e-8); "
                         f"row {bad} is {pa[bad].tolist()}")
    acts = _array("actions_agent", actions_agent, kind="int", shape=(qa.shape[0],),
                  high=qa.shape[1])
    out = np.empty(qa.shape[0])
    _counterfactual_kernel(qa, pa, acts, out)
    return _finite("counterfactual_advantage", out)

# =======================================================================================
# E8 — approximatively synchronous estimate: w^i = ∏_{j≠i} ρ^j, Â^i = w^i Â, and the
#      per-agent clipped surrogate L^i = E[min(ρ^i Â^i, clip(ρ^i, 1−ε, 1+ε) Â^i)]
# =======================================================================================


@njit(cache=True)
def _sync_weights_kernel(log_ratios, lo, hi, out):
    """Implements E8: ``w^i = exp(Σ_{j≠i} log ρ^j)``, the log clamped to [lo, hi].

    The partners' log ratios are summed directly — suffix Σ_{j>i} plus prefix Σ_{j<i},
    never ``total − own`` — so a huge own ratio cannot cancel catastrophically.
    """
    n = log_ratios.shape[1]
    for t in range(log_ratios.shape[0]):
        s = 0.0
        for i in range(n - 1, -1, -1):               # out ← Σ_{j>i} log ρ^j (suffix sums)
            out[t, i] = s
            s += log_ratios[t, i]
        p = 0.0
        for i in range(n):                           # + Σ_{j<i} log ρ^j (prefix), clamp, exp
            out[t, i] = np.exp(min(max(p + out[t, i], lo), hi))
            p += log_ratios[t, i]


def _weight_bounds(clip):
    """Log-space bounds of the E8 weights: [log(1−c), log(1+c)], or ±MAX_LOG_RATIO."""
    if clip is None:
        return -MAX_LOG_RATIO, MAX_LOG_RATIO
    lo = np.log(1.0 - clip) if clip < 1.0 else -MAX_LOG_RATIO
    return lo, min(np.log1p(clip), MAX_LOG_RATIO)


def sync_weights(log_ratios, clip: float | None = None) -> np.ndarray:
    """Approximatively synchronous weights ``w^i_t = ∏_{j≠i} ρ^j_t``. Implements E8.

    Computed in log space, ``w^i = exp(Σ_{j≠i} log ρ^j)``; with ``clip = c`` the weight is
    clipped to ``[1 − c, 1 + c]`` (done on the log, so nothing overflows). Without a clip
    the log weight saturates at ±MAX_LOG_RATIO (300) so the result stays finite.

    Args:
        log_ratios: (N, n) per-sample, per-agent ``log ρ^j = log π̃^j(a^j) − log π_old^j(a^j)``,
            with n·max|log ρ| ≤ MAX_LOG_RATIO_SUM.
        clip: ``sync_clip`` c ≥ 0, or None for no clip.

    >>> sync_weights(np.log([[2.0, 3.0, 0.5]])).round(12).tolist()
    [[1.5, 1.0, 6.0]]
    """
    log_rho = _log_ratio_table(log_ratios)
    c = None if clip is None else _scalar("clip", clip, 0.0, np.inf)
    lo, hi = _weight_bounds(c)
    out = np.empty(log_rho.shape)
    _sync_weights_kernel(log_rho, lo, hi, out)
    return out


@njit(cache=True)
def _clipped_surrogate_kernel(ratios, advantages, eps, out):
    """Implements E8's per-sample objective ``min(ρ Â, clip(ρ, 1−ε, 1+ε) Â)``."""
    for t in range(ratios.shape[0]):
        rho = ratios[t]
        clipped = min(max(rho, 1.0 - eps), 1.0 + eps)
        out[t] = min(rho * advantages[t], clipped * advantages[t])


def clipped_surrogate(ratios, advantages, clip_eps: float) -> np.ndarray:
    """Per-sample PPO clipped objective ``min(ρÂ, clip(ρ, 1−ε, 1+ε)Â)``. Implements E8.

    >>> clipped_surrogate([1.5, 0.5], [1.0, 1.0], 0.2).tolist()
    [1.2, 0.5]
    """
    rho = _array("ratios", ratios, ndim=1)
    if rho.size and rho.min() < 0:
        raise ValueError("ratios must be non-negative (they are probability ratios)")
    adv = _array("advantages", advantages, shape=rho.shape)
    eps = _scalar("clip_eps", clip_eps, 0.0, 1.0)
    out = np.empty(rho.shape[0])
    _clipped_surrogate_kernel(rho, adv, eps, out)
    return _finite("clipped_surrogate", out)


@njit(cache=True, inline='always')
def _ppo_slope(log_rho, log_x, adv, lo, hi):
    """s = ρ ∂L/∂ρ of one sample's clipped objective ``L = min(ρ Â, clip(x, lo, hi) (ρ/x) Â)``
    (E8; lo = 1 − ε, hi = 1 + ε), with ρ = exp(log_rho) the agent's own ratio and x =
    exp(log_x) the ratio the clip acts on (x = ρ: PPO). s = 0 where the clip binds,
    (Â > 0 and x > hi) or (Â < 0 and x < lo); else Â ρ — at x = lo or hi exactly the
    unclipped branch. Ratios saturate at e^MAX_LOG_RATIO."""
    rho = np.exp(min(log_rho, MAX_LOG_RATIO))
    x = rho if log_x == log_rho else np.exp(min(log_x, MAX_LOG_RATIO))
    binding = (adv > 0.0 and x > hi) or (adv < 0.0 and x < lo)
    return 0.0 if binding else adv * rho


@njit(cache=True, inline='always')
def _double_clip_slope(log_rho, log_v, adv_u, adv, lo, hi):
    """s = ρ ∂L/∂ρ of CoPPO's per-agent objective (E11) ``L = min(ρ u Â, clip(ρ v, lo, hi) Â)``,
    ``adv_u`` = u Â with u = w^i, and v = exp(log_v) = clip(w^i, 1 ± ε_in): the unclipped term
    where it is the minimum (ties too), s = ρ u Â; else the clipped one, s = ρ v Â inside
    [lo, hi] and 0 outside."""
    rho = np.exp(min(log_rho, MAX_LOG_RATIO))
    x = np.exp(min(log_rho + log_v, MAX_LOG_RATIO))
    unclipped = rho * adv_u
    if unclipped <= min(max(x, lo), hi) * adv:
        return unclipped
    return x * adv if lo <= x <= hi else 0.0


@njit(cache=True, inline='always')
def _policy_grad_row(logp, pi, a, slope, entropy_coef, out):
    """∇_z of one sample's objective plus the entropy bonus c·H(π), from the row's
    log-softmax (the learners' fused form of :func:`clipped_surrogate_grad`):
        ∂/∂z_k = s (1[k=a] − π_k) − c π_k (log π_k + H),   H = −Σ_k π_k log π_k,
    with s = ρ ∂L/∂ρ from :func:`_ppo_slope` or :func:`_double_clip_slope`. ``logp``/``pi``
    come from one :func:`_log_softmax_row` per (agent, observation) and minibatch step,
    which also gave the ratio: one softmax serves all three."""
    H = 0.0
    for k in range(logp.shape[0]):
        H -= pi[k] * logp[k]                               # entropy H(π)
    for k in range(logp.shape[0]):
        out[k] = slope * ((1.0 if k == a else 0.0) - pi[k]) - entropy_coef * pi[k] * (logp[k]
                                                                                        + H)


@njit(cache=True)
def _clipped_surrogate_grad_kernel(logits, actions, old_log_probs, advantages, eps, out):
    """Implements ∇_z of E8's ``min(ρÂ, clip(ρ)Â)`` for softmax logits z, row by row:
    ∂/∂z_k = Â ρ (1[k=a] − π_k), zero where the clip binds — :func:`_policy_grad_row` with
    no entropy term and x = ρ. At the boundary itself the unclipped branch is used; log ρ
    is saturated at MAX_LOG_RATIO so that Â ρ stays finite."""
    A = logits.shape[1]
    logp = np.empty(A)
    pi = np.empty(A)
    for t in range(logits.shape[0]):
        _log_softmax_row(logits[t], logp, pi)
        log_rho = logp[actions[t]] - old_log_probs[t]
        slope = _ppo_slope(log_rho, log_rho, advantages[t], 1.0 - eps, 1.0 + eps)
        _policy_grad_row(logp, pi, actions[t], slope, 0.0, out[t])


def clipped_surrogate_grad(logits, actions, old_log_probs, advantages,
                           clip_eps: float) -> np.ndarray:
    """Gradient of each sample's E8 objective w.r.t. its softmax logits → (N, A).

    ``∂/∂z_k min(ρÂ, clip(ρ)Â) = Â ρ (1[k=a] − π_k)`` where the unclipped term is the
    minimum, and 0 where the clip is active and binding.

    Args:
        logits: (N, A) current logits z of the acting agent.
        actions: (N,) actions taken.
        old_log_probs: (N,) log π_old(a_t) (from ``log_softmax`` of the old logits).
        advantages: (N,) advantages Â (for ASAE: already multiplied by w^i).
        clip_eps: PPO ε in [0, 1].
    """
    z = _logits("logits", logits)
    if z.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, A); got {_describe(z)}")
    N = z.shape[0]
    acts = _array("actions", actions, kind="int", shape=(N,), high=z.shape[1])
    olp = _array("old_log_probs", old_log_probs, shape=(N,))
    if np.any(olp > 1e-12):
        raise ValueError("old_log_probs must be ≤ 0 (they are log-probabilities)")
    adv = _array("advantages", advantages, shape=(N,))
    eps = _scalar("clip_eps", clip_eps, 0.0, 1.0)
    out = np.empty(z.shape)
    _clipped_surrogate_grad_kernel(z, acts, olp, adv, eps, out)
    return _finite("clipped_surrogate_grad", out)


# =======================================================================================
# E9 — sequential correction (HAPPO-style): M^{i_m} = ∏_{l<m} ρ^{i_l}, M = 1 for the first
# =======================================================================================


@njit(cache=True)
def _sequential_weights_kernel(log_ratios, order, lo, hi, out):
    """Implements E9: ``M^{i_m} = exp(Σ_{l<m} log ρ^{i_l})``; M = 1 for the first agent."""
    N, n = log_ratios.shape
    for t in range(N):
        s = 0.0                              # Σ of log ratios of already-updated agents
        for m in range(n):
            i = order[m]
            out[t, i] = np.exp(min(max(s, lo), hi))
            s += log_ratios[t, i]


def sequential_weights(log_ratios, order) -> np.ndarray:
    """HAPPO-style sequential correction factors. Implements E9.

    Agents update one at a time in ``order`` (a permutation of 0..n−1); agent ``order[m]``
    gets ``M = ∏_{l<m} ρ^{order[l]}`` — the already-updated partners' ratios, exactly known.
    Valid range as :func:`sync_weights` (n·max|log ρ| ≤ MAX_LOG_RATIO_SUM).

    >>> sequential_weights(np.log([[2.0, 3.0, 0.5]]), [2, 0, 1]).round(12).tolist()
    [[0.5, 1.0, 1.0]]
    """
    log_rho = _log_ratio_table(log_ratios)
    n = log_rho.shape[1]
    o = _array("order", order, kind="int", shape=(n,), high=n)
    if np.unique(o).size != n:
        raise ValueError(f"order must be a permutation of 0..{n - 1}; got {o.tolist()}")
    out = np.empty(log_rho.shape)
    _sequential_weights_kernel(log_rho, o, -MAX_LOG_RATIO, MAX_LOG_RATIO, out)
    return out


# =======================================================================================
# The method table — every learner is one row of orthogonal choices; nothing else differs
# =======================================================================================

# Where agent i's advantage starts (the base).
SHARED = 0           # the shared GAE advantage Â_t (E10), one critic V(s)
COUNTERFACTUAL = 1   # COMA's A^i_C(s, a) (E7) from a joint critic Q(s, a) and π_old^i
EXACT_OLD = 2        # the exact table A^i(a^i) under the partners' old policies (E3)
EXACT_CURRENT = 3    # the exact table Ã^i(a^i) under their current in-update policies (E6)
TRACED = 4           # A2PO's Â^{(m)}: GAE whose trace is cut by the preceding agents' ratios (E12)
# What multiplies it (the weight), a constant in agent i's gradient.
ONE = 0              # nothing
PARTNERS = 1         # w^i = ∏_{j≠i} ρ^j, clipped by Config.sync_clip (E8)
PRECEDING = 2        # M^i = ∏_{l<m} ρ^{i_l}, the agents updated before i (E9)
# The schedule of the actor phase.
SIMULTANEOUS = 0     # on every minibatch every agent takes one step
SEQUENTIAL = 1       # one agent after another in a random order, K epochs each
# What the PPO clip acts on (ε = Config.clip_eps, optionally shrunk by Config.clip_scale).
PPO = 0              # clip(x, 1±ε)(ρ/x)·(weight·Â), x the ratio Config.clip_ratio names: own ρ^i
                     # or joint ∏_j ρ^j (E8)
DOUBLE = 1           # CoPPO: min(ρ w Â, clip(ρ·clip(w, 1±ε_in), 1±ε) Â) (E11)
WEIGHTED = 2         # A2PO: clip(ρ g, 1±ε_m) Â with g the clipped weight, ε_m by position (E12)


class Method(NamedTuple):
    """One row of :data:`METHOD_TABLE`: four orthogonal choices."""
    base: int
    weight: int
    schedule: int
    clip: int


#: ``Config.clip_scale`` values: none, ε/n, the n-th root (index = the jitted code).
CLIP_SCALES = (None, "inv_n", "root_n")

#: The learners, one row each. Adding a method means adding a row (and at most one choice).
METHOD_TABLE = {
    #              base            weight     schedule      clip          equation
    "async": Method(SHARED, ONE, SIMULTANEOUS, PPO),              # E7 Ā^i (MAPPO)
    "asae": Method(SHARED, PARTNERS, SIMULTANEOUS, PPO),          # E8 w^i Â, sync_clip
    "happo": Method(SHARED, PRECEDING, SEQUENTIAL, PPO),          # E9 M^i Â
    "coma": Method(COUNTERFACTUAL, ONE, SIMULTANEOUS, PPO),       # E7 A^i_C
    "exact_sync": Method(EXACT_CURRENT, ONE, SIMULTANEOUS, PPO),  # E6 Ã^i, exact
    "exact_async": Method(EXACT_OLD, ONE, SIMULTANEOUS, PPO),     # E3 A^i_old, exact
    "coppo": Method(SHARED, PARTNERS, SIMULTANEOUS, DOUBLE),      # E11 CoPPO
    "a2po": Method(TRACED, PRECEDING, SEQUENTIAL, WEIGHTED),      # E12 A2PO
}
METHODS = tuple(METHOD_TABLE)


@njit(cache=True)
def _weighted_advantages(weight, lo, hi, base, log_rho, order, out):
    """``Â^i_t = m^i_t · base[t, i]`` for every row t and agent i, with the row's weight m:
    1 (ONE), w^i_t = ∏_{j≠i} ρ^j_t (PARTNERS, E8), or M^{i_m}_t = ∏_{l<m} ρ^{i_l}_t over
    ``order`` (PRECEDING, E9), the weight's log clamped to [lo, hi] (the weight's clip:
    asae's sync_clip, A2PO's ε_o; ±MAX_LOG_RATIO for none). ``base`` is (N, n), or (N, 1)
    when every agent shares Â_t; ``log_rho`` (N, n) holds log ρ^j_t."""
    N, n = out.shape
    if weight == PARTNERS:
        _sync_weights_kernel(log_rho, lo, hi, out)
    elif weight == PRECEDING:
        _sequential_weights_kernel(log_rho, order, lo, hi, out)
    shared = base.shape[1] == 1
    for t in range(N):
        for i in range(n):
            adv = base[t, 0] if shared else base[t, i]
            out[t, i] = adv if weight == ONE else out[t, i] * adv


def _weight_is_clipped(row: Method) -> bool:
    """Whether the row's weight has a clip: asae's w^i (Config.sync_clip) and A2PO's g
    (Config.a2po_others_eps); HAPPO's M and CoPPO's w are used unclipped."""
    return row.weight == PARTNERS and row.clip == PPO or row.clip == WEIGHTED


def _exact_base(tables, actions, N: int):
    """Exact methods' base: ``tables[i][a^i_t]`` → (N, n), from per-agent vectors."""
    if tables is None or not hasattr(tables, "__len__") or isinstance(tables, (str, bytes)) \
            or isinstance(tables, np.ndarray) and tables.ndim < 2:
        raise TypeError("tables must be a sequence of per-agent advantage vectors (exact methods)")
    vecs = [_array(f"tables[{i}]", v, ndim=1) for i, v in enumerate(tables)]
    if not vecs or any(v.size == 0 for v in vecs):
        raise ValueError("tables must hold one non-empty vector per agent")
    acts = _array("actions", actions, kind="int", shape=(N, len(vecs)),
                  high=max(v.size for v in vecs))
    for i, v in enumerate(vecs):
        if N and acts[:, i].max() >= v.size:
            raise ValueError(f"actions[:, {i}] must be < {v.size} (len(tables[{i}])); "
                             f"got {acts[:, i].max()}")
    return np.stack([v[acts[:, i]] for i, v in enumerate(vecs)], axis=1).reshape(N, len(vecs))


def method_advantages(method: str, advantages, log_ratios=None, *, sync_clip: float | None = 0.5,
                      order=None, actions=None, tables=None) -> np.ndarray:
    """The advantage each agent's clipped sub-problem (E8) uses under ``method`` → (N, n):
    the row's base times its weight (:data:`METHOD_TABLE`), by the kernel the learners use.

    ==============  ========================================  ==========================
    method          Â^i_t                                     needs
    ==============  ========================================  ==========================
    ``async``       Â_t (shared; E7's asynchronous Ā^i)        advantages (N,) or (N, n)
    ``asae``        w^i_t Â_t, w^i = ∏_{j≠i} ρ^j_t (E8),      advantages, log_ratios,
                    clipped to [1 − sync_clip, 1 + sync_clip]  sync_clip
    ``happo``       M^i_t Â_t, M^{i_m} = ∏_{l<m} ρ^{i_l} (E9)  advantages, log_ratios, order
    ``coppo``       w^i_t Â_t, w^i unclipped (E11)             advantages, log_ratios
    ``a2po``        g^i_t Â^{(m)}_t, g = clip(M^i, 1 ± ε_o)    advantages (traced, E12),
                    (E12)                                     log_ratios, order, sync_clip
                                                              (as ε_o)
    ``coma``        the counterfactual A^i_C (E7), as given   advantages (N, n)
    ``exact_sync``  Ã^i(a^i_t), the exact E6 table under the  tables, actions
                    partners' *current* policies
    ``exact_async`` A^i(a^i_t), the exact E3 table under the  tables, actions
                    partners' *old* policies
    ==============  ========================================  ==========================

    Args:
        method: one of :data:`METHODS`.
        advantages: (N,) shared Â_t, or (N, n) one column per agent (COMA's A^i_C).
        log_ratios: (N, n) current ``log ρ^j_t`` of every agent (asae, happo).
        sync_clip: the weight's clip c — asae's ``sync_clip``, a2po's ε_o (None: no clip);
            the other methods' weights are not clipped.
        order: happo's update order (a permutation of 0..n−1).
        actions: (N, n) integer actions (exact methods).
        tables: sequence of n vectors, ``tables[i][a]`` the exact advantage of agent i's
            action a (exact methods).

    >>> method_advantages("asae", [1.0], np.log([[2.0, 1.25]]), sync_clip=None).tolist()
    [[1.25, 2.0]]
    >>> method_advantages("happo", [1.0], np.log([[2.0, 1.25]]), order=[1, 0]).tolist()
    [[1.25, 1.0]]
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    row = METHOD_TABLE[method]
    adv = _array("advantages", advantages, ndim=(1, 2))
    N = adv.shape[0]
    exact = row.base in (EXACT_OLD, EXACT_CURRENT)
    if log_ratios is None and row.weight != ONE:
        raise TypeError(f"method {method!r} needs log_ratios of shape ({N}, n)")
    log_rho = None if log_ratios is None else _log_ratio_table(log_ratios, N)
    base = _exact_base(tables, actions, N) if exact else adv[:, None] if adv.ndim == 1 else adv
    n = log_rho.shape[1] if log_rho is not None and not exact else base.shape[1]
    if base.shape != (N, n) and base.shape != (N, 1):
        raise ValueError(f"advantages must have shape ({N},) or ({N}, {n}); got {_describe(adv)}")
    o = np.arange(n, dtype=np.int64)
    if row.weight == PRECEDING:
        if order is None:
            raise TypeError(f"method {method!r} needs order, a permutation of 0..n−1")
        o = _array("order", order, kind="int", shape=(n,), high=n)
        if np.unique(o).size != n:
            raise ValueError(f"order must be a permutation of 0..{n - 1}; got {o.tolist()}")
    clip = None if sync_clip is None else _scalar("sync_clip", sync_clip, 0.0, np.inf)
    lo, hi = _weight_bounds(clip if _weight_is_clipped(row) else None)
    out = np.empty((N, n))
    _weighted_advantages(row.weight, lo, hi, base,
                         np.zeros((N, n)) if log_rho is None else log_rho, o, out)
    return _finite("method_advantages", out)
# =======================================================================================
# E10 — GAE with termination and truncation:
#       δ_t = r_t + γ(1 − term_t) V(s'_t) − V(s_t),  Â_t = δ_t + γλ(1 − done_t) Â_{t+1}
# =======================================================================================


@njit(cache=True, inline='always')
def _td_error(r, v, nv, terminated, truncated, gamma):
    """(δ_t, 1 − done_t) of E10 for one step: δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t),
    the flags entering as 0/1 factors (0·x = ±0 adds nothing for finite x)."""
    not_term = 1.0 - np.float64(terminated)
    return r + gamma * not_term * nv - v, not_term * (1.0 - np.float64(truncated))


@njit(cache=True)
def _gae_kernel(rewards, values, next_values, terminated, truncated, gamma, lam, adv, ret):
    """Implements E10 over (T, B) arrays, backward in time (each row contiguous).

    δ_t = r_t + γ (1 − terminated_t) V(s'_t) − V(s_t)
    Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},   Â_T = 0,   R_t = Â_t + V(s_t)

    Branch-free, so LLVM vectorises the inner loop: (1 − terminated) and (1 − done) enter as
    0/1 factors, bit-identical to the branchy form for finite inputs (0·x = ±0 adds nothing).
    """
    T, B = rewards.shape
    gl = gamma * lam
    carry = np.zeros(B)                                               # Â_{t+1}; Â_T = 0
    for t in range(T - 1, -1, -1):
        for b in range(B):
            delta, not_done = _td_error(rewards[t, b], values[t, b], next_values[t, b],
                                        terminated[t, b], truncated[t, b], gamma)   # δ_t
            carry[b] = delta + gl * not_done * carry[b]               # λ-return recursion
            adv[t, b] = carry[b]
            ret[t, b] = carry[b] + values[t, b]


def gae(rewards, values, next_values, terminated, truncated, gamma: float, lam: float):
    """Generalised advantage estimation with termination vs truncation. Implements E10.

    ``δ_t = r_t + γ(1 − terminated_t) V(s'_t) − V(s_t)``,
    ``Â_t = δ_t + γλ(1 − done_t) Â_{t+1}``, ``Â_T = 0``, returns ``R_t = Â_t + V(s_t)``.

    Args:
        rewards: (T,) or (T, B) team rewards r_t.
        values: V(s_t), same shape.
        next_values: V(s'_t) of the *true* next state (for a truncated step: the final state
            before the reset), same shape. Ignored where ``terminated``.
        terminated: bool, same shape — no bootstrap at this step, and the trace stops.
        truncated: bool, same shape — bootstraps ``next_values`` but the trace stops.
        gamma, lam: discount γ and GAE λ, both in [0, 1].

    Returns:
        (advantages, returns), new float64 arrays of the input's shape.

    >>> adv, ret = gae([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [False, True], [False, False], 1.0, 1.0)
    >>> adv.tolist(), ret.tolist()
    ([2.0, 1.0], [2.0, 1.0])
    """
    r = _array("rewards", rewards, ndim=(1, 2))
    v = _array("values", values, shape=r.shape)
    nv = _array("next_values", next_values, shape=r.shape)
    term = _array("terminated", terminated, kind="bool", shape=r.shape)
    trunc = _array("truncated", truncated, kind="bool", shape=r.shape)
    g = _scalar("gamma", gamma, 0.0, 1.0)
    la = _scalar("lam", lam, 0.0, 1.0)
    as2d = (lambda a: a.reshape(a.shape[0], 1)) if r.ndim == 1 else (lambda a: a)
    adv, ret = np.empty(r.shape), np.empty(r.shape)
    _gae_kernel(as2d(r), as2d(v), as2d(nv), as2d(term), as2d(trunc), g, la, as2d(adv), as2d(ret))
    return _finite("gae", adv), _finite("gae returns", ret)


# =======================================================================================
# Learners: decentralised tabular softmax actors, centralised tabular critics (E7–E10)
# =======================================================================================
#
# One training run = `iterations` × (rollout of T steps in B envs → one update). The update
# (`_update`, jitted) reads top to bottom, the same for every row of METHOD_TABLE:
#   E10     Â_t, R_t = GAE(r · reward_scale, V(s), V(s'))           with V as it stands
#   base    Â_t | COMA's A^i_C from the Q critic (E7) | the exact table (E3; E6 per step)
#   actors  K epochs × minibatches of one SGD step per moving agent on its clipped
#           sub-problem (E8) with Â^i = weight × base, the weight from the log-ratios at that
#           step; the schedule decides who moves (everyone, or one agent per turn, E9)
#   critics K epochs × minibatches of SGD on ½(R − V(s))² (and ½(R − Q(s, a))², COMA)
# State travels in a few named tuples: _Hyper (scalars and the method row), _Policy (the
# actors' logits and action sizes), _Critic (V, Q), _Samples (the rollout, flat), _Exact
# (a matrix game's exact quantities), _Log (diagnostics and the bias probe).
# Rollouts run inside the jitted loop when the env offers transition tables
# (`env.tables()`), else through the env's own Python `step`.


@njit(cache=True)
def _rng_next(state):
    """SplitMix64 (Steele, Lea & Flood 2014): the next 64-bit output of the stream ``state``."""
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _rng_uniform(state):
    """A uniform double in [0, 1) from the top 53 bits of the next output."""
    return np.float64(_rng_next(state) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _rng_permutation(state, out):
    """Fill ``out`` with a uniformly random permutation of 0..len−1 (Fisher–Yates)."""
    for k in range(out.shape[0]):
        out[k] = k
    for k in range(out.shape[0] - 1, 0, -1):
        j = int(_rng_uniform(state) * (k + 1))
        out[k], out[j] = out[j], out[k]


@njit(cache=True)
def _minibatches(rng, N, epochs, n_mb):
    """K epochs × n_mb minibatches: one fresh permutation of the N rows per epoch, each split
    as ``np.array_split`` does. Gradient step k uses rows ``order[bounds[k]:bounds[k + 1]]``."""
    order = np.empty(epochs * N, np.int64)
    bounds = np.zeros(epochs * n_mb + 1, np.int64)
    for e in range(epochs):
        _rng_permutation(rng, order[e * N:(e + 1) * N])
        for m in range(n_mb):
            k = e * n_mb + m
            bounds[k + 1] = bounds[k] + N // n_mb + (1 if m < N % n_mb else 0)
    return order, bounds


def _rng(seed: int) -> np.ndarray:
    """A fresh random stream for ``seed`` (its state is one uint64, advanced in place)."""
    return np.array([(int(seed) * 0xD1B54A32D192ED03 + 1) % 2 ** 64], np.uint64)


@njit(cache=True)
def _sample_actions(logits, n_actions, obs, rng, out, cdf, ready):
    """a^i_b ~ softmax(logits[i, obs[b, i]]) by inverse CDF, agent-major uniform draws:
    a = min{k : u · Σ_j e^{z_j − m} < Σ_{j≤k} e^{z_j − m}}, m = max z.

    ``cdf[i, o]`` memoises the running sums of agent i's row o (``ready[i, o]``); the caller
    clears ``ready`` whenever the logits change (once per rollout).
    """
    B, n = obs.shape
    for i in range(n):
        A = n_actions[i]
        for b in range(B):
            o = obs[b, i]
            if not ready[i, o]:
                zmax = _row_max(logits[i, o, :A])
                c = 0.0
                for k in range(A):
                    c += np.exp(logits[i, o, k] - zmax)
                    cdf[i, o, k] = c
                ready[i, o] = True
            target = _rng_uniform(rng) * cdf[i, o, A - 1]
            a = A - 1
            for k in range(A):
                if target < cdf[i, o, k]:
                    a = k
                    break
            out[b, i] = a


def _new_cdf(logits):
    """Scratch for :func:`_sample_actions`: (cdf, ready) for one set of logits."""
    return np.empty(logits.shape), np.zeros(logits.shape[:2], np.bool_)


class _Hyper(NamedTuple):
    """The scalars of :class:`Config` and the method's row, as the jitted update reads them."""
    base: int                # the method row (METHOD_TABLE)
    weight: int
    schedule: int
    clip: int
    gamma: float
    lam: float
    clip_eps: float          # inf: no PPO clip
    joint_clip: bool         # clip the joint ratio ∏_j ρ^j instead of the agent's own ρ^i
    clip_scale: int          # 0: ε; 1: ε/n; 2: [(1−ε)^{1/n}, (1+ε)^{1/n}] (Config.clip_scale)
    clip_floor: float        # A2PO's c_ε: ε_m = ε (c_ε + (1 − c_ε) m/n); 1: ε for every m
    w_lo: float              # log-space bounds of the weight (its clip; ±MAX_LOG_RATIO: none)
    w_hi: float
    inner_lo: float          # CoPPO: log-space bounds of v = clip(w, 1 ± ε_in)
    inner_hi: float
    trace_cbar: float        # A2PO: the trace's truncation c̄
    epochs: int
    minibatches: int
    lr_actor: float
    lr_critic: float
    entropy_coef: float
    reward_scale: float
    track_bias: bool
    track_ratios: bool


class _Policy(NamedTuple):
    """The decentralised actors: agent i's logits z^i(o, ·) and the joint-action encoding."""
    logits: np.ndarray       # (n, n_obs, A_max); columns ≥ A_i are padding, never read
    n_actions: np.ndarray    # (n,) A_i
    radix: np.ndarray        # (n,) strides of the flat joint action index (C order)


class _Critic(NamedTuple):
    V: np.ndarray            # (n_states,) V(s)
    Q: np.ndarray            # (n_states, J) Q(s, a) for COMA; (1, 1) otherwise


class _Batch(NamedTuple):
    """One rollout, (T, B[, n]) arrays in time-major order."""
    obs: np.ndarray          # (T, B, n) int64 observation ids
    act: np.ndarray          # (T, B, n) int64 actions
    rew: np.ndarray          # (T, B) team rewards (unscaled)
    term: np.ndarray         # (T, B) bool
    trunc: np.ndarray        # (T, B) bool
    states: np.ndarray       # (T, B) int64 s_t
    next_states: np.ndarray  # (T, B) int64 s'_t (the true successor, E10)


class _Samples(NamedTuple):
    """The rollout as N = T·B rows, what the actor steps read."""
    obs: np.ndarray          # (N, n) o^i_t
    act: np.ndarray          # (N, n) a^i_t
    joint: np.ndarray        # (N,) flat joint action index of a_t
    old_lp: np.ndarray       # (N, n) log π_old^i(a^i_t | o^i_t)


class _Exact(NamedTuple):
    """A one-step matrix game's exact quantities (exact methods and the bias probe)."""
    payoff: np.ndarray       # (J,) flat joint payoff q(a), unscaled (the probe's units)
    payoff_s: np.ndarray     # (J,) q(a) · reward_scale (the learner's units)
    old: np.ndarray          # (n, A_max) log π_old^i(·) at this update's start (obs 0)
    v_old: np.ndarray        # (2,) V_old (E1) of payoff and of payoff_s
    tables: np.ndarray       # (n, A_max) the exact table in use, E3 or E6, learner's units


class _Work(NamedTuple):
    """Per-update memo of log-softmax rows: a (agent, observation) row is computed once per
    minibatch step (``stamp[i, o] == clock``) and shared by every sample that observes it."""
    lp: np.ndarray           # (n, n_obs, A_max) log π^i(·|o)
    pi: np.ndarray           # (n, n_obs, A_max) π^i(·|o)
    stamp: np.ndarray        # (n, n_obs) clock value when the row was last computed
    clock: np.ndarray        # (1,) current minibatch step


class _Log(NamedTuple):
    diag: np.ndarray         # (1,) largest log ρ^i_t seen in the actor steps
    probe: tuple             # the bias probe's accumulators (_Probe)
    ratios: np.ndarray       # (RATIO_SLOTS,) if track_ratios, else (1,): see _record_ratios


#: Ratio statistics (Config.track_ratios): a histogram of log W^i = Σ_{j≠i} log ρ^j over
#: [−RATIO_RANGE, RATIO_RANGE] in RATIO_BINS bins, then under/overflow, samples, PPO-clip
#: binds, weight-clip binds, Σ ESS fractions, minibatch-agent count.
RATIO_BINS, RATIO_RANGE = 600, 3.0
RATIO_SLOTS = RATIO_BINS + 7


@njit(cache=True)
def _record_ratios(hp, mb, movers, order, bounds, stats):
    """Accumulate, for one minibatch step ``mb`` = (rows, log_rho, adv, base): for each moving
    agent i and row, log W^i = Σ_{j≠i} log ρ^j (the partners' product every method sees move),
    whether the PPO clip binds (the slope is 0 with Â^i ≠ 0), whether the weight's clip acts
    (the weight ≠ its unclipped value), and the effective-sample-size fraction of the row's
    weights m^i, (Σ_r m)² / (size · Σ_r m²)."""
    rows, log_rho, adv, base = mb
    size, n = rows.shape[0], log_rho.shape[1]
    m = np.empty((size, n))
    free = np.empty((size, n))
    _weighted_advantages(hp.weight, hp.w_lo, hp.w_hi, np.ones((size, 1)), log_rho[:size], order,
                         m)
    _weighted_advantages(hp.weight, -MAX_LOG_RATIO, MAX_LOG_RATIO, np.ones((size, 1)),
                         log_rho[:size], order, free)
    for i in movers:
        s1 = 0.0
        s2 = 0.0
        for r in range(size):
            log_w = 0.0
            for j in range(n):
                if j != i:
                    log_w += log_rho[r, j]
            k = int(np.floor((log_w + RATIO_RANGE) / (2 * RATIO_RANGE) * RATIO_BINS))
            stats[RATIO_BINS if k < 0 else RATIO_BINS + 1 if k >= RATIO_BINS else k] += 1.0
            stats[RATIO_BINS + 2] += 1.0
            slope = _row_slope(hp, log_rho[r], i, adv[r, i], base[r, i], bounds[0], bounds[1])
            if slope == 0.0 and adv[r, i] != 0.0:
                stats[RATIO_BINS + 3] += 1.0
            if m[r, i] != free[r, i]:
                stats[RATIO_BINS + 4] += 1.0
            s1 += m[r, i]
            s2 += m[r, i] * m[r, i]
        stats[RATIO_BINS + 5] += s1 * s1 / (size * s2) if s2 > 0.0 else 1.0
        stats[RATIO_BINS + 6] += 1.0


def _ratio_summary(stats: np.ndarray) -> dict:
    """Quantiles of log W^i (from the histogram: bin centres; ±inf outside the range) and
    the fractions of :func:`_record_ratios`."""
    hist, total = stats[:RATIO_BINS + 2], stats[RATIO_BINS + 2]
    cdf = np.cumsum(np.concatenate([[hist[RATIO_BINS]], hist[:RATIO_BINS]])) / max(total, 1.0)
    centres = -RATIO_RANGE + (np.arange(RATIO_BINS) + 0.5) * (2 * RATIO_RANGE / RATIO_BINS)
    values = np.concatenate([[-np.inf], centres])

    def q(p):
        k = int(np.searchsorted(cdf, p))
        return round(float(values[k]), 9) if k < values.size else np.inf
    return {"log_w_quantiles": {p: q(p) for p in (0.05, 0.25, 0.5, 0.75, 0.95)},
            "ppo_clip_binds": float(stats[RATIO_BINS + 3] / max(total, 1.0)),
            "weight_clip_binds": float(stats[RATIO_BINS + 4] / max(total, 1.0)),
            "ess_fraction": float(stats[RATIO_BINS + 5] / max(stats[RATIO_BINS + 6], 1.0)),
            "samples": int(total)}


def _new_batch(T, B, n):
    return _Batch(np.zeros((T, B, n), np.int64), np.zeros((T, B, n), np.int64), np.zeros((T, B)),
                  np.zeros((T, B), np.bool_), np.zeros((T, B), np.bool_),
                  np.zeros((T, B), np.int64), np.zeros((T, B), np.int64))


@njit(cache=True)
def _state_policy(pol, o, logp):
    """logp[i] = log π^i(·|o) for every agent (padding columns left untouched)."""
    pi = np.empty(pol.logits.shape[2])
    for i in range(pol.logits.shape[0]):
        A = pol.n_actions[i]
        _log_softmax_row(pol.logits[i, o, :A], logp[i, :A], pi[:A])


@njit(cache=True)
def _exact_table(pol, ex, logp):
    """ex.tables[i, k] = Q^i(k) − V_old in the learner's units, the partners at ``logp``:
    A^i_old (E3) with the old policies, Ã^i (E6) with the current ones."""
    _marginals_kernel(ex.payoff_s, pol.radix, pol.n_actions, np.exp(logp), ex.tables)
    ex.tables[:, :] -= ex.v_old[1]


@njit(cache=True, inline='always')
def _base_row(base, pol, q_row, j, pis, shared, tables, out):
    """out[i] = agent i's base advantage for one sample with joint action j, by the row's
    ``base``: SHARED → ``shared`` (Â_t; TRACED starts from it, the trace is redone per turn);
    COUNTERFACTUAL → A^i_C (E7) from the joint critic row ``q_row`` and π_old^i = ``pis[i]``;
    EXACT_* → ``tables[i, a^i]``."""
    for i in range(out.shape[0]):
        if base == SHARED or base == TRACED:
            out[i] = shared
            continue
        a = _joint_action(j, i, pol.radix, pol.n_actions)
        if base == COUNTERFACTUAL:         # Q(s, (b, a^-i)) for b = 0..A−1: a strided view
            A, stride = pol.n_actions[i], pol.radix[i]
            j0 = j - a * stride
            out[i] = _counterfactual_row(q_row[j0:j0 + A * stride:stride], pis[i, :A], a)
        else:
            out[i] = tables[i, a]


class _Ctx(NamedTuple):
    """What the actor phase of one update reads: the actors, the samples, the base advantages
    and the memo of log-softmax rows."""
    pol: _Policy
    ex: _Exact
    data: _Samples
    base: np.ndarray         # (N, n) base advantage of every sample and agent
    work: _Work
    delta: np.ndarray        # (T, B) TD errors δ_t of E10 (A2PO's trace; else (0, 0))
    not_done: np.ndarray     # (T, B) 1 − done_t as 0.0 / 1.0 (A2PO's trace; else (0, 0))


@njit(cache=True, inline='always')
def _minibatch_logp(ctx, rows, agents, log_rho, diag):
    """log_rho[r, i] = log ρ^i_t for t = rows[r] and every i in agents, with log π^i_θk(·|o^i_t)
    and π^i_θk(·|o^i_t) left in ``ctx.work``: one softmax per (agent, observation) per
    minibatch step, shared by the ratio, the surrogate gradient and the entropy gradient."""
    pol, data, work = ctx.pol, ctx.data, ctx.work
    work.clock[0] += 1
    now = work.clock[0]
    for r in range(rows.shape[0]):
        t = rows[r]
        for i in agents:
            A = pol.n_actions[i]
            o = data.obs[t, i]
            if work.stamp[i, o] != now:
                _log_softmax_row(pol.logits[i, o, :A], work.lp[i, o, :A], work.pi[i, o, :A])
                work.stamp[i, o] = now
            log_rho[r, i] = work.lp[i, o, data.act[t, i]] - data.old_lp[t, i]
            diag[0] = max(diag[0], log_rho[r, i])


@njit(cache=True, inline='always')
def _advantages(hp, ctx, rows, log_rho, order, cur, base, out):
    """out[r, i] = Â^i_t for t = rows[r]: the row's weight from ``log_rho[r]`` times its base —
    for EXACT_CURRENT the E6 table Ã^i re-evaluated under the partners' policies ``cur`` now,
    else the base computed at the start of the update (``base``: scratch of out's size)."""
    if hp.base == EXACT_CURRENT:
        _exact_table(ctx.pol, ctx.ex, cur)
    for r in range(rows.shape[0]):
        if hp.base == EXACT_CURRENT:
            _base_row(hp.base, ctx.pol, ctx.ex.payoff, ctx.data.joint[rows[r]], cur, 0.0,
                      ctx.ex.tables, base[r])
        else:
            for i in range(base.shape[1]):
                base[r, i] = ctx.base[rows[r], i]
    _weighted_advantages(hp.weight, hp.w_lo, hp.w_hi, base, log_rho, order, out)


@njit(cache=True, inline='always')
def _clip_bounds(hp, m, n):
    """(lo, hi) of the PPO clip for the agent in position m = 1..n of the order (m = n for a
    simultaneous schedule): ε, or A2PO's ε_m = ε (c_ε + (1 − c_ε) m/n) (E12), then the
    clip_scale rule: 1 ± ε, 1 ± ε/n, or [(1 − ε)^{1/n}, (1 + ε)^{1/n}]."""
    eps = hp.clip_eps
    if hp.clip_floor < 1.0:
        eps = eps * (hp.clip_floor + (1.0 - hp.clip_floor) * m / n)
    if hp.clip_scale == 1:
        return 1.0 - eps / n, 1.0 + eps / n
    if hp.clip_scale == 2:
        return max(1.0 - eps, 0.0) ** (1.0 / n), (1.0 + eps) ** (1.0 / n)
    return 1.0 - eps, 1.0 + eps


@njit(cache=True, inline='always')
def _row_slope(hp, log_rho, i, adv, base, lo, hi):
    """s = ρ ∂L^i/∂ρ^i of agent i's objective on one sample, by the row's clip: ``log_rho``
    (n,) the sample's log-ratios, ``adv`` = weight × ``base`` its advantage Â^i (E8, E11,
    E12); the partners' factors are constants."""
    if hp.clip == PPO:
        log_x = log_rho[i]
        if hp.joint_clip:                                      # x = ∏_j ρ^j
            log_x = 0.0
            for j in range(log_rho.shape[0]):
                log_x += log_rho[j]
        return _ppo_slope(log_rho[i], log_x, adv, lo, hi)
    partners = 0.0                                             # log ∏_{j≠i} ρ^j
    for j in range(log_rho.shape[0]):
        if j != i:
            partners += log_rho[j]
    if hp.clip == WEIGHTED:                                    # x = ρ^i g, g = clip(M, 1 ± ε_o)
        return _ppo_slope(log_rho[i], log_rho[i] + min(max(partners, hp.w_lo), hp.w_hi), adv,
                          lo, hi)
    return _double_clip_slope(log_rho[i], min(max(partners, hp.inner_lo), hp.inner_hi), adv,
                              base, lo, hi)                    # DOUBLE: v = clip(w, 1 ± ε_in)


@njit(cache=True, inline='always')
def _actor_step(i, hp, ctx, rows, log_rho, adv, base, bounds):
    """One SGD ascent step of agent i's sub-problem on the minibatch ``rows`` (mean gradient),
    from the log-policies in ``ctx.work`` and the log-ratios before anyone moved; ``bounds``
    = (lo, hi) of its PPO clip."""
    pol, data, work = ctx.pol, ctx.data, ctx.work
    A = pol.n_actions[i]
    g = np.empty(A)
    scale = hp.lr_actor / rows.shape[0]
    for r in range(rows.shape[0]):
        t = rows[r]
        o = data.obs[t, i]
        slope = _row_slope(hp, log_rho[r], i, adv[r, i], base[r, i], bounds[0], bounds[1])
        _policy_grad_row(work.lp[i, o, :A], work.pi[i, o, :A], data.act[t, i], slope,
                         hp.entropy_coef, g)
        z = pol.logits[i, o]
        for k in range(A):
            z[k] += scale * g[k]


@njit(cache=True)
def _trace_base(hp, delta, not_done, i, log_rho, base):
    """A2PO's preceding-agent off-policy correction (E12) for agent i, into base[:, i] from
    E10's TD errors ``delta`` and ``not_done`` = 1 − done (T, B):
    Â_t = δ_t + γλ min(c̄, M_{t+1}) (1 − done_t) Â_{t+1}, Â_T = 0, M_u = ∏_{j≠i} ρ^j_u over
    the agents that have moved (the others' log ρ are exactly 0); c̄ ≥ 1 and M ≡ 1 give
    E10's GAE bit for bit."""
    T, B = delta.shape
    gl = hp.gamma * hp.lam
    for b in range(B):
        carry = 0.0
        for t in range(T - 1, -1, -1):
            c = 1.0
            if t + 1 < T:
                u = (t + 1) * B + b
                log_m = 0.0
                for j in range(log_rho.shape[1]):
                    if j != i:
                        log_m += log_rho[u, j]
                c = min(hp.trace_cbar, np.exp(min(log_m, MAX_LOG_RATIO)))
            carry = delta[t, b] + gl * c * not_done[t, b] * carry
            base[t * B + b, i] = carry


@njit(cache=True)
def _actors(hp, ctx, rng, log):
    """The actor phase (E8/E9), by the row's schedule. SIMULTANEOUS: one turn in which every
    agent steps on every minibatch, Â^i from the log-ratios as they stand before the step.
    SEQUENTIAL: n turns in a random order, one agent moving per turn; its partners do not
    move during its turn, so its Â^i (and A2PO's traced base, E12) is computed once, at the
    start of the turn."""
    N, n = ctx.base.shape
    size_max = N // hp.minibatches + (1 if N % hp.minibatches else 0)
    sequential = hp.schedule == SEQUENTIAL
    order = np.arange(n)
    if sequential:
        _rng_permutation(rng, order)
    all_rows = np.arange(N)
    log_rho_all = np.zeros((N, n))       # log ρ^j_t of every sample, refreshed after each turn
    adv_all = np.empty((N, n))
    base_all = np.empty((N, n))
    log_rho = np.empty((size_max, n))
    adv = np.empty((size_max, n))
    base_mb = np.empty((size_max, n))
    cur = np.zeros(ctx.ex.old.shape)     # log π^i(·) at obs 0 now (exact tables, probe)
    bounds = _clip_bounds(hp, n, n)
    for turn in range(n if sequential else 1):
        movers = order[turn:turn + 1] if sequential else order
        if sequential:
            if turn > 0:                 # the agent of the previous turn has moved
                _minibatch_logp(ctx, all_rows, order[turn - 1:turn], log_rho_all, log.diag)
                if hp.base == TRACED:
                    _trace_base(hp, ctx.delta, ctx.not_done, order[turn], log_rho_all,
                                ctx.base)
            if hp.base == EXACT_CURRENT:
                _state_policy(ctx.pol, 0, cur)
            _advantages(hp, ctx, all_rows, log_rho_all, order, cur, base_all, adv_all)
            bounds = _clip_bounds(hp, turn + 1, n)
        steps, b = _minibatches(rng, N, hp.epochs, hp.minibatches)
        for k in range(b.shape[0] - 1):
            rows = steps[b[k]:b[k + 1]]
            size = rows.shape[0]
            for r in range(size if sequential else 0):   # the turn's fixed values
                for i in range(n):
                    log_rho[r, i] = log_rho_all[rows[r], i]
                    adv[r, i] = adv_all[rows[r], i]
                    base_mb[r, i] = base_all[rows[r], i]
            _minibatch_logp(ctx, rows, movers, log_rho, log.diag)
            if hp.base == EXACT_CURRENT or hp.track_bias:
                _state_policy(ctx.pol, 0, cur)
            if not sequential:
                _advantages(hp, ctx, rows, log_rho[:size], order, cur, base_mb[:size], adv[:size])
            if hp.track_ratios:
                _record_ratios(hp, (rows, log_rho, adv, base_mb), movers, order, bounds,
                               log.ratios)
            for i in movers:
                if hp.track_bias:
                    _probe_record(i, hp, ctx.pol, cur, ctx.ex, order, log.probe)
            for i in movers:
                _actor_step(i, hp, ctx, rows, log_rho, adv, base_mb, bounds)


@njit(cache=True)
def _critic_step(hp, critic, states, joint, ret, rng):
    """K epochs × minibatches of SGD on ½(R_t − V(s_t))² (and ½(R_t − Q(s_t, a_t))² when the
    base is COUNTERFACTUAL), each a step on the minibatch mean."""
    V, Q = critic.V, critic.Q
    N = ret.shape[0]
    coma = hp.base == COUNTERFACTUAL
    dv = np.empty(N)
    dq = np.empty(N)
    steps, bounds = _minibatches(rng, N, hp.epochs, hp.minibatches)
    for k in range(bounds.shape[0] - 1):
        rows = steps[bounds[k]:bounds[k + 1]]
        scale = hp.lr_critic / rows.shape[0]
        for r in range(rows.shape[0]):                   # errors before any change in this step
            t = rows[r]
            dv[r] = ret[t] - V[states[t]]
            if coma:
                dq[r] = ret[t] - Q[states[t], joint[t]]
        for r in range(rows.shape[0]):
            t = rows[r]
            V[states[t]] += scale * dv[r]
            if coma:
                Q[states[t], joint[t]] += scale * dq[r]


@njit(cache=True)
def _first_non_finite(pol, critic):
    """0 if every table is finite, else the code of the first that is not: 1 V, 2 Q,
    10 + i agent i's logits."""
    for i in range(pol.logits.shape[0]):
        for o in range(pol.logits.shape[1]):
            for k in range(pol.n_actions[i]):
                if not np.isfinite(pol.logits[i, o, k]):
                    return 10 + i
    for x in critic.V:
        if not np.isfinite(x):
            return 1
    for x in critic.Q.ravel():
        if not np.isfinite(x):
            return 2
    return 0


@njit(cache=True)
def _update(hp, pol, critic, ex, batch, rng, log):
    """One update on one rollout (the banner above); returns 0, or the code of the first
    table that is no longer finite (:func:`_first_non_finite`)."""
    T, B = batch.rew.shape
    n, n_obs, A_max = pol.logits.shape
    N = T * B
    r = np.empty((T, B))
    v = np.empty((T, B))
    nv = np.empty((T, B))
    for t in range(T):
        for b in range(B):
            r[t, b] = batch.rew[t, b] * hp.reward_scale
            v[t, b] = critic.V[batch.states[t, b]]
            nv[t, b] = critic.V[batch.next_states[t, b]]
    adv = np.empty((T, B))
    ret = np.empty((T, B))
    _gae_kernel(r, v, nv, batch.term, batch.trunc, hp.gamma, hp.lam, adv, ret)   # E10
    adv = adv.reshape(N)
    ret = ret.reshape(N)
    states = batch.states.reshape(N)
    obs = batch.obs.reshape(N, n)
    act = batch.act.reshape(N, n)
    joint = np.zeros(N, np.int64)
    for t in range(N):
        for i in range(n):
            joint[t] += act[t, i] * pol.radix[i]
    work = _Work(np.empty((n, n_obs, A_max)), np.empty((n, n_obs, A_max)),
                 np.zeros((n, n_obs), np.int64), np.zeros(1, np.int64))
    old_lp = np.empty((N, n))                                   # log π_old(a^i_t), π_old in work
    base = np.empty((N, n))
    delta, not_done = np.zeros((0, 0)), np.zeros((0, 0))
    if hp.base == TRACED:                                       # E10's δ_t and 1 − done_t
        delta, not_done = np.empty((T, B)), np.empty((T, B))
        for t in range(T):
            for b in range(B):
                delta[t, b], not_done[t, b] = _td_error(r[t, b], v[t, b], nv[t, b],
                                                        batch.term[t, b], batch.trunc[t, b],
                                                        hp.gamma)
    _minibatch_logp(_Ctx(pol, ex, _Samples(obs, act, joint, np.zeros((N, n))), base, work,
                         delta, not_done), np.arange(N), np.arange(n), old_lp, np.zeros(1))
    ctx = _Ctx(pol, ex, _Samples(obs, act, joint, old_lp), base, work, delta, not_done)
    if hp.base in (EXACT_OLD, EXACT_CURRENT) or hp.track_bias:  # matrix games: obs 0
        _state_policy(pol, 0, ex.old)
        ex.v_old[0] = _marginals_kernel(ex.payoff, pol.radix, pol.n_actions, np.exp(ex.old),
                                        ex.tables)
        ex.v_old[1] = _marginals_kernel(ex.payoff_s, pol.radix, pol.n_actions, np.exp(ex.old),
                                        ex.tables)
        _exact_table(pol, ex, ex.old)                           # A^i_old (E3)
    pis = np.empty((n, A_max))                                  # COMA: π_old^i(·|o^i_t)
    q_row = critic.Q[0]                                         # COMA: Q(s_t, ·)
    for t in range(N):
        if hp.base == COUNTERFACTUAL:
            q_row = critic.Q[states[t]]
            for i in range(n):
                for k in range(pol.n_actions[i]):
                    pis[i, k] = work.pi[i, obs[t, i], k]
        _base_row(hp.base, pol, q_row, joint[t], pis, adv[t], ex.tables, base[t])
    _actors(hp, ctx, rng, log)
    if hp.track_bias:
        new = np.zeros((n, A_max))
        _state_policy(pol, 0, new)
        _probe_finish(hp, pol, new, ex, log.probe)
    _critic_step(hp, critic, states, joint, ret, rng)
    return _first_non_finite(pol, critic)


class EnvTables(NamedTuple):
    """An env's transition tables, what ``env.tables()`` and ``env.count_tables()`` return
    (see :class:`BatchedEnv`; any object with these attributes, or a mapping with these keys,
    is accepted too; ``count_base`` may be absent from ``tables()``)."""
    next_state: np.ndarray   # (n_states, C) int64
    reward: np.ndarray       # (n_states, C) float64
    terminated: np.ndarray   # (n_states, C) bool
    obs: np.ndarray          # (n_states, n) int64
    start_state: int
    time_limit: int
    count_base: int = 0      # 0: column = joint action j (C = J); n + 1: count index c


class _Record(NamedTuple):
    """What a jitted run fills: the rollout scratch, the curve and the recorded policies."""
    batch: tuple             # _Batch
    curve: np.ndarray        # (I,) mean return of the episodes that ended in each rollout
    policy_log: np.ndarray   # (I + 1, n, n_obs, A_max) if record_policies, else (1, …)


@njit(cache=True)
def _rollout_tables(tab, pol, state, t_ep, ep_ret, rng, batch):
    """T steps of B envs from the env's transition tables, sampling with the current
    policies. Returns (Σ returns, count) of the episodes that ended. The table column of a
    step is Σ_i w[i, a^i] (O(n)): the joint action j (w[i, k] = k · radix_i) or, for count
    tables, the count index c (w[i, k] = count_base^k for k < A − 1, w[i, A − 1] = 0)."""
    T, B = batch.rew.shape
    n, _, A_max = pol.logits.shape
    obs = np.empty((B, n), np.int64)
    act = np.empty((B, n), np.int64)
    cdf, ready = np.empty(pol.logits.shape), np.zeros(pol.logits.shape[:2], np.bool_)
    w = np.zeros((n, A_max), np.int64)
    for i in range(n):
        p = 1
        for k in range(pol.n_actions[i]):
            if tab.count_base == 0:
                w[i, k] = k * pol.radix[i]
            elif k < pol.n_actions[i] - 1:
                w[i, k] = p
                p *= tab.count_base
    ended_sum = 0.0
    ended = 0
    for t in range(T):
        for b in range(B):
            for i in range(n):
                obs[b, i] = tab.obs[state[b], i]
        _sample_actions(pol.logits, pol.n_actions, obs, rng, act, cdf, ready)
        for b in range(B):
            s = state[b]
            j = 0                                               # the table column
            for i in range(n):
                j += w[i, act[b, i]]
                batch.obs[t, b, i] = obs[b, i]
                batch.act[t, b, i] = act[b, i]
            term = tab.terminated[s, j]
            trunc = (not term) and t_ep[b] + 1 >= tab.time_limit
            batch.states[t, b] = s
            batch.next_states[t, b] = tab.next_state[s, j]      # V(s'_t): the true successor
            batch.rew[t, b] = tab.reward[s, j]
            batch.term[t, b] = term
            batch.trunc[t, b] = trunc
            ep_ret[b] += tab.reward[s, j]
            if term or trunc:
                ended_sum += ep_ret[b]
                ended += 1
                ep_ret[b] = 0.0
                state[b] = tab.start_state
                t_ep[b] = 0
            else:
                state[b] = tab.next_state[s, j]
                t_ep[b] += 1
    return ended_sum, ended


@njit(cache=True)
def _train_tables(hp, pol, critic, ex, tab, rng, log, rec):
    """The whole training run for an env with transition tables: every iteration a rollout
    and an update, in one call. Returns (iteration, code) of a guard failure, or (−1, 0)."""
    B = rec.batch.rew.shape[1]
    state = np.full(B, tab.start_state, np.int64)
    t_ep = np.zeros(B, np.int64)
    ep_ret = np.zeros(B)
    record = rec.policy_log.shape[0] > 1
    if record:
        rec.policy_log[0] = pol.logits
    for it in range(rec.curve.shape[0]):
        total, ended = _rollout_tables(tab, pol, state, t_ep, ep_ret, rng, rec.batch)
        rec.curve[it] = total / ended if ended > 0 else np.nan
        code = _update(hp, pol, critic, ex, rec.batch, rng, log)
        if code != 0:
            return it, code
        if record:
            rec.policy_log[it + 1] = pol.logits
    return -1, 0
#: Largest |z| of ``Config.init_logits``: a row's log-probabilities (z_k − max z) must stay
#: float64 while the run moves it (softmax saturates at a spread of ~745 anyway).
MAX_INIT_LOGIT = 1e150

#: The exact methods and the bias probe sum over every joint action at every gradient step,
#: J·n² operations (J = ∏ A_i); above this they are refused rather than run for hours.
MAX_EXACT_WORK = 10 ** 8

#: ``train`` and ``evaluate`` refuse a run whose arrays (logits, critics, transition tables,
#: rollouts, recorded policies, minibatch plans, evaluation) would need more than this many
#: bytes, estimated before anything is allocated, rather than exhausting memory.
MAX_TABLE_BYTES = 2 ** 30


def _doc(default, doc: str, **kw):
    """A dataclass field carrying its one-line documentation (shown by ``help()``)."""
    return field(default=default, metadata={"doc": doc}, **kw)


def _document_fields(cls, heading: str):
    """Append a numpydoc section listing every field with its doc to ``cls.__doc__``."""
    lines = [cls.__doc__.rstrip(), "", heading, "-" * len(heading)]
    for f in fields(cls):
        default = "" if f.default is MISSING else f", default {f.default!r}"
        lines += [f"{f.name} : {f.type}{default}", f"    {f.metadata.get('doc', '')}"]
    cls.__doc__ = "\n".join(lines) + "\n"
    return cls


@dataclass(frozen=True)
class Config:
    """Hyperparameters of :func:`train`, one documented field each. Defaults are for the
    one-step matrix games with payoffs scaled to ~[-1, 1] (``reward_scale``)."""

    gamma: float = _doc(0.99, "Discount γ (E10) in [0, 1]. 0.99: standard; irrelevant in "
                        "one-step games.")
    lam: float = _doc(0.95, "GAE λ (E10) in [0, 1]. 0.95: the usual PPO/MAPPO value.")
    clip_eps: float | None = _doc(0.2, "PPO clip ε in [0, 1] of each agent's sub-problem (E8); "
                                  "None: no clip (plain importance-weighted surrogate). 0.2: the "
                                  "PPO/MAPPO default.")
    clip_ratio: str = _doc("own", "What the PPO clip acts on (E8): 'own' — agent i's ratio ρ^i "
                           "(PPO, MAPPO); 'joint' — the joint ratio ∏_j ρ^j, the partners' move "
                           "counted inside the trust region (CoPPO-style).")
    sync_clip: float | None = _doc(0.5, "**Our choice** (E8): asae weights w^i clipped to "
                                   "[1−c, 1+c], c ≥ 0; None = no clip. 0.5: with n = 2 and ε = 0.2 "
                                   "a partner inside its PPO range gives w ∈ [0.8, 1.2], where it "
                                   "never acts; it acts when partners' ratios leave that range, "
                                   "more often with n ≥ 3 (README, study a), bounding the "
                                   "variance.")
    clip_scale: str | None = _doc(None, "Shrink each agent's own-ratio clip with the number of "
                                  "agents n (motivated by Sun et al. 2023, who bound independent "
                                  "ratios by n; the formula is ours): 'inv_n' — 1 ± ε/n; 'root_n' "
                                  "— [(1−ε)^{1/n}, (1+ε)^{1/n}], so n ratios in range keep their "
                                  "product in [1−ε, 1+ε]; None — 1 ± ε. Not with clip_ratio="
                                  "'joint' or coppo, whose clips act on a joint ratio already.")
    coppo_inner_eps: float | None = _doc(0.1, "CoPPO's inner clip ε_in ∈ [0, 1] on the partners' "
                                         "product inside the clipped term (E11); None: no inner "
                                         "clip. 0.1: the authors' code default (Wu et al. 2021).")
    a2po_others_eps: float | None = _doc(0.1, "A2PO's clip ε_o ≥ 0 of the preceding agents' "
                                         "product g = clip(M, 1 ± ε_o) (E12); None: unclipped. "
                                         "0.1: the authors' code (= ε/2 at ε = 0.2).")
    a2po_clip_floor: float = _doc(0.5, "A2PO's c_ε ∈ [0, 1]: the agent in position m of n clips "
                                  "at ε_m = ε (c_ε + (1 − c_ε) m/n) (E12); 1: ε for every agent. "
                                  "0.5: the value reported for all tasks (Wang et al. 2023).")
    a2po_trace_cbar: float = _doc(1.0, "A2PO's trace truncation c̄ > 0: the trace factor is "
                                  "λ min(c̄, M) (E12). 1.0: the authors' code default.")
    epochs: int = _doc(4, "Passes K over each rollout per update (E8), ≥ 1. 4: a common PPO "
                       "setting.")
    minibatches: int = _doc(4, "Minibatches per epoch, each one gradient step; 1 ≤ minibatches ≤ "
                            "n_envs·rollout_len. 4 → 16 steps per update.")
    lr_actor: float = _doc(1.0, "SGD step size on the actors' logits (tabular; gradient of the "
                           "minibatch-mean objective), > 0 and finite. Any value is numerically "
                           "safe (softmax is shift-stable, ratios saturate at e^300); a run whose "
                           "logits overflow raises FloatingPointError.")
    lr_critic: float = _doc(0.5, "SGD step size of the tabular critics on ½(R − V)² (and ½(R − Q)² "
                            "for COMA), in (0, 1]: a step moves V(s) towards the minibatch mean "
                            "return by lr·(share of the minibatch in s) ≤ 1 of the distance, so it "
                            "never overshoots; above 1 it can (and above 2 it diverges).")
    entropy_coef: float = _doc(0.01, "Entropy bonus on each agent's policy, ≥ 0. 0.01: a small, "
                               "standard exploration bonus.")
    n_envs: int = _doc(32, "Parallel environments B per rollout, ≥ 1.")
    rollout_len: int = _doc(8, "Steps T per environment per rollout, ≥ 1; one update per rollout "
                            "(N = T·B samples).")
    iterations: int = _doc(100, "Number of rollout + update iterations, ≥ 1.")
    seed: int = _doc(0, "Seed (integer ≥ 0) of every random choice: initial logits, sampling, "
                     "minibatches, HAPPO order, evaluation.")
    init_logit_std: float = _doc(1.0, "Initial logits ~ N(0, std²), ≥ 0, drawn from ``seed`` alone "
                                 "so every method starts from the same policy under the same "
                                 "seed. 0: uniform policies.")
    init_logits: tuple | None = _doc(None, "Fixed initial logits instead: one (n_obs, A_i) table "
                                     "per agent (nested sequences of finite numbers); None: drawn "
                                     "as above.")
    reward_scale: float = _doc(1.0, "Rewards are multiplied by this (> 0) before learning, e.g. "
                               "1/max|payoff|; reported returns are unscaled.")
    track_bias: bool = _doc(False, "Matrix games only: record the exact bias of each method's "
                            "advantage at every gradient step (see advantage_bias).")
    track_ratios: bool = _doc(False, "Record ratio statistics at every gradient step "
                              "(TrainResult.ratios): quantiles of log ∏_{j≠i} ρ^j, how often "
                              "the PPO clip and the weight's clip act, the weights' effective "
                              "sample size.")
    record_policies: bool = _doc(False, "Keep each iteration's policy tables (for exact "
                                 "expected-return curves).")
    eval_episodes: int = _doc(32, "Episodes of the final greedy and stochastic evaluation, ≥ 1.")

    def __post_init__(self):
        for name in ("gamma", "lam"):
            _scalar(f"Config.{name}", getattr(self, name), 0.0, 1.0)
        if self.clip_eps is not None:
            _scalar("Config.clip_eps", self.clip_eps, 0.0, 1.0)
        if self.clip_ratio not in ("own", "joint"):
            raise ValueError(f"Config.clip_ratio must be 'own' or 'joint'; got {self.clip_ratio!r}")
        if self.sync_clip is not None:
            _scalar("Config.sync_clip", self.sync_clip, 0.0, np.inf)
        if self.clip_scale not in CLIP_SCALES:
            raise ValueError(f"Config.clip_scale must be one of {CLIP_SCALES}; "
                             f"got {self.clip_scale!r}")
        if self.clip_scale is not None and self.clip_ratio == "joint":
            raise ValueError("Config.clip_scale shrinks the clip on each agent's own ratio; "
                             "with clip_ratio='joint' the clip acts on the joint ratio already")
        if self.coppo_inner_eps is not None:
            _scalar("Config.coppo_inner_eps", self.coppo_inner_eps, 0.0, 1.0)
        if self.a2po_others_eps is not None:
            _scalar("Config.a2po_others_eps", self.a2po_others_eps, 0.0, np.inf)
        _scalar("Config.a2po_clip_floor", self.a2po_clip_floor, 0.0, 1.0)
        _scalar("Config.a2po_trace_cbar", self.a2po_trace_cbar, 0.0, np.finfo(float).max,
                lo_open=True)
        _scalar("Config.lr_actor", self.lr_actor, 0.0, np.finfo(float).max, lo_open=True)
        _scalar("Config.lr_critic", self.lr_critic, 0.0, 1.0, lo_open=True)
        for name in ("entropy_coef", "init_logit_std"):
            _scalar(f"Config.{name}", getattr(self, name), 0.0, np.finfo(float).max)
        _scalar("Config.reward_scale", self.reward_scale, 0.0, np.finfo(float).max, lo_open=True)
        for name in ("epochs", "minibatches", "n_envs", "rollout_len", "iterations",
                     "eval_episodes", "seed"):
            _integer(f"Config.{name}", getattr(self, name), 0 if name == "seed" else 1)
        if self.minibatches > self.n_envs * self.rollout_len:
            raise ValueError(f"Config.minibatches ({self.minibatches}) must be ≤ "
                             f"n_envs·rollout_len "
                             f"({self.n_envs * self.rollout_len})")
        for name in ("track_bias", "track_ratios", "record_policies"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"Config.{name} must be True or False; got {getattr(self, name)!r}")
        if self.init_logits is not None:
            try:
                tabs = tuple(np.asarray(z, dtype=np.float64) for z in self.init_logits)
            except (TypeError, ValueError):
                raise TypeError("Config.init_logits must be a sequence of per-agent 2-D tables "
                                "of real numbers (n_obs, A_i)") from None
            for i, z in enumerate(tabs):
                if z.ndim != 2 or not np.all(np.abs(z) <= MAX_INIT_LOGIT):
                    raise ValueError(f"Config.init_logits[{i}] must be a 2-D table (n_obs, A_i) "
                                     f"of finite numbers with |z| ≤ {MAX_INIT_LOGIT:g} (room for "
                                     f"the run's steps); got {_describe(z)}")
            object.__setattr__(self, "init_logits", tuple(tuple(map(tuple, z)) for z in tabs))


_document_fields(Config, "Parameters")


@dataclass
class TrainResult:
    """What :func:`train` returns. Curves have one entry per iteration."""

    method: str = _doc(MISSING, "The method trained (one of METHODS).")
    iterations: np.ndarray = _doc(MISSING, "(I,) iteration index 1..I (after that many updates).")
    env_steps: np.ndarray = _doc(MISSING, "(I,) cumulative environment steps (each step of each "
                                 "env counts once).")
    mean_return: np.ndarray = _doc(MISSING, "(I,) mean team return of the episodes that ended "
                                   "during that iteration's rollout (NaN if none ended).")
    greedy_return: float = _doc(MISSING, "Mean team return of the final greedy (argmax) joint "
                                "policy.")
    stochastic_return: float = _doc(MISSING, "Mean team return of the final stochastic joint "
                                    "policy.")
    greedy_optimal: bool = _doc(MISSING, "Whether the greedy return reaches env.optimum (within "
                                "1e-6).")
    wall_time: float = _doc(MISSING, "Seconds spent in train (rollouts, updates, evaluation).")
    logits: list = _doc(MISSING, "Final per-agent logits tables, each (n_obs, A_i); [] for a "
                        "feature env (see policy).")
    values: np.ndarray = _doc(MISSING, "Final critic V(state), (n_states,); empty for a "
                              "feature env (see critic).")
    policies: list | None = _doc(None, "If record_policies: per iteration (index 0 = start), the "
                                 "per-agent probability tables (n_obs, A_i).")
    bias: dict | None = _doc(None, "If track_bias: see advantage_bias.")
    policy: "MLPPolicy | None" = _doc(None, "Feature envs: the trained MLP actors (evaluate "
                                      "runs them); None for the tabular learners.")
    critic: np.ndarray | None = _doc(None, "Feature envs: the critic's flat parameter vector "
                                     "(layout: asae.MLP over env.state_dim); None for tables.")
    ratios: dict | None = _doc(None, "If track_ratios: log_w_quantiles {p: quantile of log "
                               "∏_{j≠i} ρ^j over (sample, moving agent, step), to 0.01; ±inf "
                               "beyond ±3}, ppo_clip_binds, weight_clip_binds (fractions), "
                               "ess_fraction (mean over steps and agents of (Σm)²/(size·Σm²) "
                               "for the method's weights m), samples.")
    diagnostics: dict = _doc(None, "max_abs_logit (final; max_abs_param for the networks) "
                             "and max_ratio (largest ρ^i_t seen during the updates).")


_document_fields(TrainResult, "Attributes")


class BatchedEnv(Protocol):
    """The environment interface :func:`train` and :func:`evaluate` accept (B envs, n agents).

    ``reset(n_envs, seed) -> (obs (B, n) int, state (B,) int)`` and
    ``step(actions (B, n) int) -> (obs, state, reward (B,) float, terminated (B,) bool,
    truncated (B,) bool, final_state (B,) int)``, with auto-reset: for a finished env,
    ``obs``/``state`` start the next episode and ``final_state`` is the successor s'_t of the
    step just taken (E10 bootstraps from it when truncated). Observation ids lie in
    [0, n_obs), state ids in [0, n_states), rewards are finite; every step's outputs are
    checked and a violation raises ``ValueError``/``TypeError`` naming it.

    Optional, for speed: ``tables()`` returning transition tables with attributes
    ``next_state`` (n_states, J) int, ``reward`` (n_states, J) float, ``terminated``
    (n_states, J) bool, ``obs`` (n_states, n) int, ``start_state`` and ``time_limit`` (J =
    ∏ A_i, joint index in C order over agents): a step from (s, t) under joint action j
    goes to s' = next_state[s, j], is truncated when not terminated and t + 1 ≥ time_limit,
    and resets to start_state when it ends. With tables the whole run is one jitted call.
    ``payoff`` (the joint payoff table of a one-step game) enables the exact methods and
    the bias probe; ``optimum`` enables ``greedy_optimal``.

    Optional, for games whose transitions and rewards depend only on how many agents chose
    each action (every agent with the same A actions; ``envs.CountGame``, the penalty
    game): ``count_tables()``, the same fields plus ``count_base`` = n + 1, with columns
    indexed by the count index c = Σ_{k<A−1} count_k · (n + 1)^k (count_k agents chose
    action k; the last count is implied) instead of j, so the tables are (n_states,
    (n + 1)^(A−1)) — 1089 columns for the penalty game at n = 32, not 3^32. ``train`` uses
    them when present (O(n) per env-step, no ∏ A_i array), else ``tables()``, else
    ``step``. COMA's joint critic Q (n_states · ∏ A_i), the exact methods and the bias probe
    (the joint ``payoff``) still need their joint arrays: ``train`` refuses them, naming
    the part, where those exceed ``MAX_TABLE_BYTES``.
    """

    n_agents: int
    n_actions: Sequence[int]
    n_states: int
    n_obs: int
    episode_limit: int

    def reset(self, n_envs: int, seed: int | None = None): ...

    def step(self, actions): ...


def _check_env(env):
    """Validate the env's static interface → (n, n_actions array, n_states, n_obs)."""
    if isinstance(env, type):
        raise TypeError(f"env must be an environment instance, not the class {env.__name__}; "
                        f"call it first, e.g. {env.__name__}()")
    if hasattr(env, "obs_dim"):
        raise TypeError(f"env has feature observations (obs_dim = {env.obs_dim!r}); this needs "
                        "integer observation and state ids (env.n_obs, env.n_states); train "
                        "and evaluate run feature envs with MLP actors (asae.NetConfig)")
    for attr in ("n_agents", "n_actions", "n_states", "n_obs", "episode_limit", "reset", "step"):
        if not hasattr(env, attr):
            raise TypeError(f"env must provide the batched interface (asae.BatchedEnv); "
                            f"missing attribute {attr!r}")
    for attr in ("reset", "step") + (("tables",) if hasattr(env, "tables") else ()):
        if not callable(getattr(env, attr)):
            raise TypeError(f"env.{attr} must be callable (asae.BatchedEnv); got "
                            f"{type(getattr(env, attr)).__name__}")
    n = _integer("env.n_agents", env.n_agents, 1)
    n_actions = env.n_actions
    if isinstance(n_actions, (str, bytes)) or not isinstance(n_actions, (Sequence, np.ndarray)):
        raise TypeError(f"env.n_actions must be a sequence of {n} action counts, one per agent; "
                        f"got {type(n_actions).__name__} {n_actions!r}")
    n_actions = tuple(n_actions)
    if len(n_actions) != n:
        raise ValueError(f"env.n_actions must hold one action count per agent ({n}); "
                         f"got {n_actions!r}")
    for i, k in enumerate(n_actions):
        _integer(f"env.n_actions[{i}]", k, 1, 2 ** 31)
    _integer("env.episode_limit", env.episode_limit, 1)
    return (n, np.array(n_actions, np.int64), _integer("env.n_states", env.n_states, 1),
            _integer("env.n_obs", env.n_obs, 1))


def _check_optimum(env):
    """env.optimum, if any, is a finite real; read after the memory check (a grid's optimum
    is a search over its states)."""
    optimum = getattr(env, "optimum", None)
    if optimum is not None and (isinstance(optimum, (bool, np.bool_)) or
                                not isinstance(optimum, numbers.Real) or
                                not math.isfinite(optimum)):
        raise TypeError(f"env.optimum must be a finite real number (the best expected return) or "
                        f"absent; got {type(optimum).__name__} {optimum!r}")


def _check_reset(env, out, B, n, n_obs, n_states):
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("env.reset must return (obs, state)")
    return (_array("env.reset obs", out[0], kind="int", shape=(B, n), high=n_obs),
            _array("env.reset state", out[1], kind="int", shape=(B,), high=n_states))


def _check_step(out, B, n, n_obs, n_states):
    """Check one env.step's outputs against the protocol (cheap: O(B·n))."""
    if not (isinstance(out, tuple) and len(out) == 6):
        raise TypeError("env.step must return (obs, state, reward, terminated, truncated, "
                        "final_state)")
    obs = _array("env.step obs", out[0], kind="int", shape=(B, n), high=n_obs)
    state = _array("env.step state", out[1], kind="int", shape=(B,), high=n_states)
    rew = _array("env.step reward", out[2], shape=(B,))
    term = _array("env.step terminated", out[3], kind="bool", shape=(B,))
    trunc = _array("env.step truncated", out[4], kind="bool", shape=(B,))
    final = _array("env.step final_state", out[5], kind="int", shape=(B,), high=n_states)
    return obs, state, rew, term, trunc, final


def _count_columns(n, n_actions) -> int:
    """Columns of count tables, (n + 1)^(A − 1) with A = max A_i (ValueError past int64)."""
    A = int(max(n_actions))
    if (A - 1) * math.log2(n + 1) > 62:
        raise ValueError(f"env.count_tables() of n_agents = {n} with {A} actions would have "
                         f"(n_agents + 1)^{A - 1} columns, beyond int64 count indices")
    return (n + 1) ** (A - 1)


def _check_tables(tab, n, n_actions, n_states, n_obs, counts: bool = False):
    """Validate an env's transition tables once (shapes, dtypes, ranges, finite rewards):
    ``env.tables()``, columns = joint actions, or if ``counts`` ``env.count_tables()``,
    columns = count indices (count_base = n + 1, every agent with the same A actions)."""
    src = "env.count_tables()" if counts else "env.tables()"
    fields = EnvTables._fields if counts else EnvTables._fields[:-1]   # count_base optional
    if isinstance(tab, Mapping):
        missing = [f for f in fields if f not in tab]
        get = tab.get
    else:
        missing = [f for f in fields if not hasattr(tab, f)]
        get = lambda f, default=None: getattr(tab, f, default)  # noqa: E731
    if missing:
        raise TypeError(f"{src} must return an asae.EnvTables (or an object or mapping "
                        f"with {', '.join(fields)}); got {type(tab).__name__} "
                        f"without {', '.join(missing)}")
    base = _integer(f"{src}.count_base", get("count_base", 0))
    if counts:
        sizes = sorted(set(int(k) for k in n_actions))
        if len(sizes) > 1:
            raise ValueError(f"env.count_tables() needs every agent to have the same number of "
                             f"actions; env.n_actions holds {sizes}")
        if base != n + 1:
            raise ValueError(f"env.count_tables().count_base must be n_agents + 1 = {n + 1}; "
                             f"got {base}")
        C = _count_columns(n, n_actions)
    elif base != 0:
        raise ValueError(f"env.tables().count_base must be 0 (columns are joint actions; count "
                         f"tables come from env.count_tables()); got {base}")
    else:
        C = math.prod(int(k) for k in n_actions)
    nxt = _array(f"{src}.next_state", get("next_state"), kind="int", shape=(n_states, C),
                 high=n_states)
    obs = _array(f"{src}.obs", get("obs"), kind="int", shape=(n_states, n), high=n_obs)
    rew = _array(f"{src}.reward", get("reward"), shape=(n_states, C))
    term = _array(f"{src}.terminated", get("terminated"), kind="bool", shape=(n_states, C))
    start = _integer(f"{src}.start_state", get("start_state"))
    if start >= n_states:
        raise ValueError(f"{src}.start_state must be < n_states ({n_states}); got {start}")
    limit = _integer(f"{src}.time_limit", get("time_limit"), 1)
    # Private writable copies: one compiled signature for every env, and nothing shared.
    return EnvTables(nxt.copy(), rew.copy(), np.array(term), obs.copy(), start, limit, base)


def _table_columns(env, n, n_actions) -> int:
    """Columns of the transition tables :func:`train` will copy: count indices with
    ``env.count_tables()``, joint actions with ``env.tables()``, none (env.step) without."""
    if hasattr(env, "count_tables"):
        return _count_columns(n, n_actions)
    return math.prod(int(k) for k in n_actions) if hasattr(env, "tables") else 0


def _env_tables(env, n, n_actions, n_states, n_obs):
    """The checked tables :func:`train`'s jitted run steps with: ``env.count_tables()`` if the
    env has it (O(n) per step, no ∏A_i array), else ``env.tables()``, else None (env.step)."""
    for attr, counts in (("count_tables", True), ("tables", False)):
        if hasattr(env, attr):
            if not callable(getattr(env, attr)):
                raise TypeError(f"env.{attr} must be callable (asae.BatchedEnv); got "
                                f"{type(getattr(env, attr)).__name__}")
            return _check_tables(getattr(env, attr)(), n, n_actions, n_states, n_obs, counts)
    return None


def _hyper(cfg: Config, method: str) -> _Hyper:
    row = METHOD_TABLE[method]
    weight_clip = cfg.a2po_others_eps if row.clip == WEIGHTED else cfg.sync_clip
    lo, hi = _weight_bounds(weight_clip if _weight_is_clipped(row) else None)
    inner_lo, inner_hi = _weight_bounds(cfg.coppo_inner_eps)
    return _Hyper(*row, float(cfg.gamma), float(cfg.lam),
                  np.inf if cfg.clip_eps is None else float(cfg.clip_eps),
                  cfg.clip_ratio == "joint", CLIP_SCALES.index(cfg.clip_scale),
                  float(cfg.a2po_clip_floor) if row.clip == WEIGHTED else 1.0,
                  float(lo), float(hi), float(inner_lo), float(inner_hi),
                  float(cfg.a2po_trace_cbar), int(cfg.epochs),
                  int(cfg.minibatches), float(cfg.lr_actor), float(cfg.lr_critic),
                  float(cfg.entropy_coef), float(cfg.reward_scale), bool(cfg.track_bias),
                  bool(cfg.track_ratios))


def _pack(tables, n_actions) -> np.ndarray:
    """Per-agent (n_obs, A_i) tables → one (n, n_obs, A_max) array (padding: 0, never read)."""
    out = np.zeros((len(tables), tables[0].shape[0], int(max(n_actions))))
    for i, z in enumerate(tables):
        out[i, :, :z.shape[1]] = z
    return out


def _initial_logits(cfg: Config, n_obs: int, n_actions) -> np.ndarray:
    if cfg.init_logits is not None:
        tabs = [np.array(z, dtype=np.float64) for z in cfg.init_logits]
        if len(tabs) != len(n_actions):
            raise ValueError(f"Config.init_logits must hold one table per agent "
                             f"({len(n_actions)}); "
                             f"got {len(tabs)}")
        for i, z in enumerate(tabs):
            if z.shape != (n_obs, n_actions[i]):
                raise ValueError(f"Config.init_logits[{i}] must have shape "
                                 f"{(n_obs, int(n_actions[i]))}; "
                                 f"got {z.shape}")
        return _pack(tabs, n_actions)
    init = np.random.default_rng([cfg.seed, 0])          # same initial logits for every method
    return _pack([cfg.init_logit_std * init.standard_normal((n_obs, int(k))) for k in n_actions],
                 n_actions)


def _memory_plan(cfg, method, n, n_actions, n_states, n_obs, table_columns) -> dict:
    """Bytes a run of :func:`train` allocates (to within a small factor), by what drives
    each part: the env's sizes or a Config field. ``table_columns``: columns of the
    transition tables the run copies (:func:`_table_columns`; 0 for env.step). Only COMA's
    critic Q, the exact methods and the bias probe have arrays over all J = ∏A_i joint
    actions: the env's payoff and the learner's two copies (8 bytes each per joint action),
    the probe's (J, n) scratch."""
    A, J, N = max(n_actions), math.prod(n_actions), cfg.n_envs * cfg.rollout_len
    coma = METHOD_TABLE[method].base == COUNTERFACTUAL
    payoff = METHOD_TABLE[method].base in (EXACT_OLD, EXACT_CURRENT) or cfg.track_bias
    return {
        "the env's observations × actions (logits)": 24 * n * n_obs * A,
        "the env's states (critics)": 8 * n_states,
        "the env's states × joint actions (COMA's critic Q)": 8 * n_states * J * coma,
        "the env's joint actions (payoff of the exact methods and the bias probe)": 24 * J * payoff,
        "the env's joint actions × agents (bias probe)": 8 * J * (3 * n + 3) * cfg.track_bias,
        "the env's transition tables": 17 * n_states * table_columns,
        "Config.iterations (curve, recorded policies)":
            8 * cfg.iterations * (1 + n * n_obs * A * cfg.record_policies),
        "Config.n_envs × Config.rollout_len (rollout, update)": N * (112 * n + 100),
        "Config.epochs × n_envs × rollout_len (minibatch plan)": 8 * cfg.epochs * N,
        "Config.eval_episodes (evaluation)": cfg.eval_episodes * (32 * n + 48),
    }


def _check_memory(plan: dict, limit: int):
    """Refuse a plan above ``limit`` bytes, naming its largest part."""
    need = sum(plan.values())
    if need > limit:
        part = max(plan, key=plan.get)
        raise ValueError(f"this run needs ≈ {_gib(need)}, most of it for {part} "
                         f"(≈ {_gib(plan[part])}); asae refuses more than {_gib(limit)} "
                         "(MAX_TABLE_BYTES)")


def _raise_guard(it: int, code: int):
    if code >= 10:
        what, knobs = (f"agent {code - 10}'s logits table", "lower Config.lr_actor (a step moves "
                       "a logit by ≤ lr_actor·|Â^i|·ρ) or Config.reward_scale (Â scales with it), "
                       "or smaller Config.init_logits")
    else:
        what = "the critic V" if code == 1 else "the COMA critic Q"
        knobs = ("lower Config.reward_scale: with lr_critic ≤ 1 a critic step never overshoots, "
                 "so its values overflow only when the scaled returns do")
    raise FloatingPointError(f"training diverged at iteration {it + 1}: {what} is no longer "
                             f"finite; {knobs}")


def _check_method(method, cfg):
    """``method`` names a row of METHOD_TABLE, and the Config's clip settings fit its clip."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    row = METHOD_TABLE[method]
    if row.clip != PPO and (cfg.clip_ratio != "own" or cfg.clip_scale is not None and
                            row.clip == DOUBLE):
        raise ValueError(f"method {method!r} clips its own way (METHOD_TABLE); "
                         f"Config.clip_ratio must stay 'own'"
                         + (" and clip_scale None" if row.clip == DOUBLE else ""))
    return row


def _check_train_args(env, method, config):
    cfg = Config() if config is None else config
    if not isinstance(cfg, Config) or isinstance(cfg, NetConfig):
        raise TypeError(f"config must be an asae.Config (NetConfig is for feature envs); got "
                        f"{type(cfg).__name__}")
    _check_method(method, cfg)
    n, n_actions, n_states, n_obs = _check_env(env)
    if math.prod(int(k) for k in n_actions) > 2 ** 62:
        raise ValueError(f"env.n_actions {tuple(n_actions)} give more than 2^62 joint actions; "
                         "the learners index joint actions with int64")
    _check_memory(_memory_plan(cfg, method, n, n_actions, n_states, n_obs,
                               _table_columns(env, n, n_actions)), MAX_TABLE_BYTES)
    payoff = None                                       # (the plan first: env.payoff may be big)
    if METHOD_TABLE[method].base in (EXACT_OLD, EXACT_CURRENT) or cfg.track_bias:
        work = math.prod(int(k) for k in n_actions) * n * n
        if work > MAX_EXACT_WORK:
            raise ValueError(f"method {method!r} / track_bias evaluate the joint table exactly, "
                             f"O(J·n²) = {work:.3g} operations per gradient step for these "
                             f"{n} agents; asae refuses more than MAX_EXACT_WORK = "
                             f"{MAX_EXACT_WORK:.0e} (e.g. n ≤ 12 agents of 3 actions)")
        payoff = getattr(env, "payoff", None)
        if payoff is None or n_states != 1 or n_obs != 1:
            raise ValueError(f"method {method!r} / track_bias need a one-step matrix game "
                             "(env.payoff, one state, one observation)")
        payoff = _array("env.payoff", payoff)
        if payoff.shape != tuple(n_actions):
            raise ValueError(f"env.payoff must have shape {tuple(n_actions)}; got {payoff.shape}")
    _check_optimum(env)                                 # (after: a grid's optimum is a search)
    return cfg, n, n_actions, n_states, n_obs, payoff


class _Learner(NamedTuple):
    """Everything a run carries, built by :func:`_setup`."""
    hp: _Hyper
    pol: _Policy
    critic: _Critic
    ex: _Exact
    rng: np.ndarray          # (1,) uint64 SplitMix64 state
    log: _Log
    rec: _Record


def _setup(env, method: str, config) -> tuple[Config, _Learner]:
    """Check the arguments and build a run's initial state (what :func:`train` starts from)."""
    cfg, n, n_actions, n_states, n_obs, payoff = _check_train_args(env, method, config)
    hp = _hyper(cfg, method)
    logits = _initial_logits(cfg, n_obs, n_actions)
    J = math.prod(int(k) for k in n_actions)
    q = np.zeros(1) if payoff is None else payoff.ravel().copy()
    A_max = logits.shape[2]
    probe = _new_probe(cfg.epochs * cfg.minibatches * n if cfg.track_bias else 1, n, A_max)
    return cfg, _Learner(
        hp, _Policy(logits, n_actions, _radix(n_actions)),
        _Critic(np.zeros(n_states), np.zeros((n_states, J) if hp.base == COUNTERFACTUAL
                                             else (1, 1))),
        _Exact(q, q * cfg.reward_scale, np.zeros((n, A_max)), np.zeros(2), np.zeros((n, A_max))),
        _rng(cfg.seed), _Log(np.zeros(1), probe,
                             np.zeros(RATIO_SLOTS if cfg.track_ratios else 1)),
        _Record(_new_batch(cfg.rollout_len, cfg.n_envs, n), np.full(cfg.iterations, np.nan),
                np.zeros((cfg.iterations + 1 if cfg.record_policies else 1,) + logits.shape)))


def _rollout_env(env, pol, carry, rng, batch) -> float:
    """:func:`_rollout_tables` through the env's own ``step`` (every output checked):
    ``carry`` = [obs, state, episode returns so far], updated. Returns the mean return of
    the episodes that ended (NaN if none)."""
    obs, state, ep_ret = carry
    T, B, n = batch.obs.shape
    n_obs, n_states = pol.logits.shape[1], env.n_states
    act = np.empty((B, n), np.int64)
    ended = []
    for t in range(T):
        batch.obs[t], batch.states[t] = obs, state
        _sample_actions(pol.logits, pol.n_actions, obs, rng, act, *_new_cdf(pol.logits))
        batch.act[t] = act
        obs, state, r, te, tr, final = _check_step(env.step(act.copy()), B, n, n_obs, n_states)
        done = te | tr
        batch.rew[t], batch.term[t], batch.trunc[t] = r, te, tr
        batch.next_states[t] = np.where(done, final, state)     # V(s'_t), E10
        ep_ret += r
        ended.extend(ep_ret[done].tolist())
        ep_ret[done] = 0.0
    carry[:2] = obs, state
    return sum(ended) / len(ended) if ended else np.nan


def train(env, method: str, config: Config | None = None) -> TrainResult:
    """Train decentralised tabular softmax actors on ``env`` with one of :data:`METHODS`.

    ``method`` names a row of :data:`METHOD_TABLE`: where each agent's advantage starts
    (shared GAE Â, COMA's counterfactual, or an exact table — one-step matrix games only),
    what multiplies it (1, asae's w^i of E8, HAPPO's M^i of E9) and the schedule. Every
    method uses the same per-agent PPO clip (E8; ``clip_eps``, ``clip_ratio``), a tabular V
    critic trained on GAE returns (E10), and the same initial logits under the same seed.
    ``env`` follows :class:`BatchedEnv`; with ``env.tables()`` the whole run is one jitted
    call, else each step goes through ``env.step`` (checked). Same config and seed →
    bit-identical result. Raises ``FloatingPointError`` if a table stops being finite.
    """
    if hasattr(env, "obs_dim") and not isinstance(env, type):
        return _train_net(env, method, config)
    t0 = time.perf_counter()
    cfg, (hp, pol, critic, ex, rng, log, rec) = _setup(env, method, config)
    logits, n_actions = pol.logits, pol.n_actions
    n, n_obs, n_states = len(n_actions), logits.shape[1], critic.V.shape[0]
    B, T, I = cfg.n_envs, cfg.rollout_len, cfg.iterations
    tab = _env_tables(env, n, n_actions, n_states, n_obs)
    if tab is not None:
        it, code = _train_tables(hp, pol, critic, ex, tab, rng, log, rec)
        if code:
            _raise_guard(it, code)
    else:
        carry = [*_check_reset(env, env.reset(B, seed=cfg.seed), B, n, n_obs, n_states),
                 np.zeros(B)]
        rec.policy_log[0] = logits
        for it in range(I):
            rec.curve[it] = _rollout_env(env, pol, carry, rng, rec.batch)
            code = _update(hp, pol, critic, ex, rec.batch, rng, log)
            if code:
                _raise_guard(it, code)
            if cfg.record_policies:
                rec.policy_log[it + 1] = logits
    over = np.flatnonzero(np.isinf(rec.curve))
    if over.size:                                  # a return (or the sum of several) > 1.8e308
        raise FloatingPointError(f"train: the mean return of the episodes that ended in iteration "
                                 f"{over[0] + 1} overflows float64 (|value| > 1.8e308); rescale "
                                 "the env's rewards")
    tables = [logits[i, :, :k].copy() for i, k in enumerate(n_actions)]
    seed_eval = int(_rng_next(rng) >> np.uint64(33))
    greedy = evaluate(env, tables, cfg.eval_episodes, True, seed_eval)
    stochastic = evaluate(env, tables, cfg.eval_episodes, False, seed_eval)
    optimum = getattr(env, "optimum", np.inf)
    policies = None
    if cfg.record_policies:
        policies = [[softmax(p[i, :, :k]) for i, k in enumerate(n_actions)]
                    for p in rec.policy_log]
    return TrainResult(
        method=method, iterations=np.arange(1, I + 1), env_steps=np.arange(1, I + 1) * B * T,
        mean_return=rec.curve, greedy_return=greedy, stochastic_return=stochastic,
        greedy_optimal=bool(greedy >= optimum - 1e-6), wall_time=time.perf_counter() - t0,
        logits=tables, values=critic.V, policies=policies,
        bias=_probe_summary(log.probe) if cfg.track_bias else None,
        ratios=_ratio_summary(log.ratios) if cfg.track_ratios else None,
        diagnostics=dict(max_abs_logit=float(max(np.abs(z).max() for z in tables)),
                         max_ratio=float(np.exp(min(log.diag[0], MAX_LOG_RATIO)))))


def evaluate(env, logits, episodes: int = 32, greedy: bool = True, seed: int = 0) -> float:
    """Mean team return of one episode in each of ``episodes`` envs under the tabular
    policies ``logits`` (one (n_obs, A_i) table per agent; argmax actions if ``greedy``,
    else sampled with a stream seeded by ``seed``). Every env output is checked. For a
    feature env ``logits`` is an :class:`MLPPolicy` (``TrainResult.policy``)."""
    if isinstance(logits, MLPPolicy):
        episodes = _integer("episodes", episodes, 1, 2 ** 24)
        if not isinstance(greedy, (bool, np.bool_)):
            raise TypeError(f"greedy must be True or False; got {greedy!r}")
        return _evaluate_policy(env, logits, episodes, bool(greedy), _integer("seed", seed, 0))
    n, n_actions, n_states, n_obs = _check_env(env)
    if isinstance(logits, np.ndarray) and logits.ndim != 3 or not hasattr(logits, "__len__"):
        raise TypeError("logits must be a sequence of per-agent (n_obs, A_i) tables")
    if len(logits) != n:
        raise ValueError(f"logits must hold one table per agent ({n}); got {len(logits)}")
    tabs = []
    for i, z in enumerate(logits):
        z = _array(f"logits[{i}]", z, ndim=2)
        if z.shape != (n_obs, n_actions[i]):
            raise ValueError(f"logits[{i}] must have shape {(n_obs, int(n_actions[i]))} for "
                             f"this env; "
                             f"got {_describe(z)}")
        tabs.append(z)
    episodes = _integer("episodes", episodes, 1)
    _check_memory({"episodes": episodes * (32 * n + 48)}, MAX_TABLE_BYTES)
    if not isinstance(greedy, (bool, np.bool_)):
        raise TypeError(f"greedy must be True or False; got {greedy!r}")
    seed = _integer("seed", seed, 0)
    table = _pack(tabs, n_actions)
    rng = _rng(int(seed))
    obs, _ = _check_reset(env, env.reset(episodes, seed=int(seed)), episodes, n, n_obs, n_states)
    ret = np.zeros(episodes)
    active = np.ones(episodes, bool)
    act = np.empty((episodes, n), np.int64)
    for _ in range(int(env.episode_limit)):
        if greedy:
            for i, z in enumerate(tabs):
                act[:, i] = np.argmax(z[obs[:, i]], axis=1)
        else:
            _sample_actions(table, n_actions, obs, rng, act, *_new_cdf(table))
        obs, _, r, term, trunc, _ = _check_step(env.step(act.copy()), episodes, n, n_obs, n_states)
        with np.errstate(over="ignore", invalid="ignore"):
            ret += np.where(active, r, 0.0)
        active &= ~(term | trunc)
        if not active.any():
            break
    with np.errstate(over="ignore", invalid="ignore"):
        mean = ret.mean()
        if not math.isfinite(mean) and np.isfinite(ret).all():   # Σ overflows, the mean does not
            mid, k = ret.max() / 2 + ret.min() / 2, 2.0 ** math.ceil(math.log2(episodes))
            mean = mid + ((ret - mid) / k).mean() * k          # exact when all returns are equal
    return float(_finite("evaluate: the mean return", mean))


# =======================================================================================
# The bias probe — exact E_{a^-i~π_old^-i}[Â^i | a^i] of each method vs Ã^i (E6) after the
# update, and the expected clipped gradient it produces (matrix games)
# =======================================================================================


class _Probe(NamedTuple):
    """Accumulators of the exact bias probe (see :func:`advantage_bias`)."""
    sums: np.ndarray         # (9,) running sums, see _probe_summary
    agent: np.ndarray        # (P,) agent of each pending record of this update
    bounds: np.ndarray       # (P, 2) its PPO clip range (lo, hi) at that step
    used: np.ndarray         # (P, A_max) E_{a^-i~π_old^-i}[Â^i | a^i] the method used
    grad: np.ndarray         # (P, A_max) E_{a~π_old}[∇_{z^i} objective] with those advantages
    grad_async: np.ndarray   # (P, A_max) the same with weight 1 and base A_old
    logp: np.ndarray         # (P, n, A_max) the current log-policies at that step
    count: np.ndarray        # (1,) pending records


def _new_probe(records, n, A_max):
    return _Probe(np.zeros(9), np.zeros(records, np.int64), np.zeros((records, 2)),
                  np.zeros((records, A_max)), np.zeros((records, A_max)),
                  np.zeros((records, A_max)), np.zeros((records, n, A_max)),
                  np.zeros(1, np.int64))


@njit(cache=True)
def _probe_grad(hp, pol, cur, old, i, advs, out, bounds):
    """out = E_{a~π_old}[∇_{z^i} of agent i's clipped objective] with, at joint action j, the
    advantage advs[0][j] and base advs[1][j] — the clip's indicator evaluated per joint
    action (:func:`_row_slope`, as in training); ``old`` = log π_old, ``cur`` = log π now."""
    A = pol.n_actions[i]
    n = cur.shape[0]
    row = np.empty(A)
    log_rho = np.empty(n)
    pi = np.exp(cur[i, :A])
    pi_old = np.exp(old)
    out[:A] = 0.0
    for j in range(advs[0].shape[0]):
        for l in range(n):
            al = _joint_action(j, l, pol.radix, pol.n_actions)
            log_rho[l] = cur[l, al] - old[l, al]
        a = _joint_action(j, i, pol.radix, pol.n_actions)
        p = _joint_prob(pi_old, pol.radix, pol.n_actions, j, i) * pi_old[i, a]
        slope = _row_slope(hp, log_rho, i, advs[0][j], advs[1][j], bounds[0], bounds[1])
        _policy_grad_row(cur[i, :A], pi, a, slope, 0.0, row)
        for k in range(A):
            out[k] += p * row[k]


@njit(cache=True)
def _probe_record(i, hp, pol, cur, ex, order, probe):
    """Record, for agent i at this gradient step, the exact expectation of the advantage the
    method uses given a^i, its second moment, and the expected gradient reaching z^i.

    The method's advantage over every joint action a comes from the same :func:`_base_row`
    and :func:`_weighted_advantages` as training, fed the exact A_old(a) = q(a) − V_old (COMA:
    the exact counterfactual with Q = q; exact methods: the exact tables; A2PO: its trace is
    inert in a one-step game) and the current log-ratios.
    """
    J = ex.payoff.shape[0]
    n, A_max = cur.shape
    v_old = ex.v_old[0]
    pi_old = np.exp(ex.old)
    tables = np.zeros((n, A_max))
    if hp.base == EXACT_CURRENT or hp.base == EXACT_OLD:
        _marginals_kernel(ex.payoff, pol.radix, pol.n_actions,
                          np.exp(cur) if hp.base == EXACT_CURRENT else pi_old, tables)
        tables -= v_old
    log_rho = np.empty((J, n))
    base = np.empty((J, n))
    a_old = np.empty(J)
    for j in range(J):
        a_old[j] = ex.payoff[j] - v_old
        for l in range(n):
            a = _joint_action(j, l, pol.radix, pol.n_actions)
            log_rho[j, l] = cur[l, a] - ex.old[l, a]
        _base_row(hp.base, pol, ex.payoff, j, pi_old, a_old[j], tables, base[j])
    out = np.empty((J, n))
    _weighted_advantages(hp.weight, hp.w_lo, hp.w_hi, base, log_rho, order, out)
    m = 1
    while order[m - 1] != i:
        m += 1
    bounds = _clip_bounds(hp, m if hp.schedule == SEQUENTIAL else n, n)
    k = probe.count[0]
    probe.count[0] = k + 1
    probe.agent[k] = i
    probe.bounds[k, 0], probe.bounds[k, 1] = bounds
    probe.used[k, :] = 0.0
    m2 = 0.0
    m2_async = 0.0
    for j in range(J):
        p_partners = _joint_prob(pi_old, pol.radix, pol.n_actions, j, i)
        a = _joint_action(j, i, pol.radix, pol.n_actions)
        probe.used[k, a] += p_partners * out[j, i]
        p = p_partners * pi_old[i, a]
        m2 += p * out[j, i] ** 2
        m2_async += p * a_old[j] ** 2
    _probe_grad(hp, pol, cur, ex.old, i, (out[:, i].copy(), base[:, i].copy()), probe.grad[k],
                bounds)
    _probe_grad(hp, pol, cur, ex.old, i, (a_old, a_old), probe.grad_async[k], bounds)
    probe.logp[k] = cur
    probe.sums[3] += m2
    probe.sums[4] += m2_async
    probe.sums[5] += 1.0


@njit(cache=True)
def _probe_finish(hp, pol, new, ex, probe):
    """Compare this update's records with the target Ã^i of E6 under the *updated*
    partners (and, for the gradient, the clipped gradient with Ã^i as the advantage)."""
    n, A_max = new.shape
    J = ex.payoff.shape[0]
    v_old = ex.v_old[0]
    target = np.empty((n, A_max))
    _marginals_kernel(ex.payoff, pol.radix, pol.n_actions, np.exp(new), target)
    target -= v_old                                                        # Ã^i (E6)
    a_old = np.empty((n, A_max))
    _marginals_kernel(ex.payoff, pol.radix, pol.n_actions, np.exp(ex.old), a_old)
    a_old -= v_old                                                         # A^i_old (E3)
    adv_t = np.empty(J)
    g_t = np.empty(A_max)
    for k in range(probe.count[0]):
        i = probe.agent[k]
        A = pol.n_actions[i]
        for a in range(A):
            probe.sums[0] += abs(probe.used[k, a] - target[i, a])
            probe.sums[1] += abs(a_old[i, a] - target[i, a])
            probe.sums[2] += 1.0
        for j in range(J):
            adv_t[j] = target[i, _joint_action(j, i, pol.radix, pol.n_actions)]
        _probe_grad(hp, pol, probe.logp[k], ex.old, i, (adv_t, adv_t), g_t,
                    (probe.bounds[k, 0], probe.bounds[k, 1]))
        for a in range(A):
            probe.sums[6] += abs(probe.grad[k, a] - g_t[a])
            probe.sums[7] += abs(probe.grad_async[k, a] - g_t[a])
            probe.sums[8] += 1.0
    probe.count[0] = 0


def _probe_summary(probe: _Probe) -> dict:
    s = probe.sums
    return {"mean_abs_bias": s[0] / s[2], "mean_abs_bias_async": s[1] / s[2],
            "mean_second_moment": s[3] / s[5], "mean_second_moment_async": s[4] / s[5],
            "mean_abs_grad_bias": s[6] / s[8], "mean_abs_grad_bias_async": s[7] / s[8],
            "n_steps": int(s[5])}
def advantage_bias(env, method: str, config: Config | None = None) -> dict:
    """Exact bias and variance of the advantage ``method`` uses, measured during training.

    Trains with ``track_bias=True`` on a one-step matrix game. At every gradient step and
    for every agent i, the advantage the method uses (:func:`method_advantages`, fed the
    exact A_old(a) = payoff(a) − V_old for every joint action a, and for COMA the exact
    counterfactual) is compared with the target Ã^i of E6 under the policies as they stand
    *after* the update:

    - ``mean_abs_bias``: mean over steps, agents and actions of
      |E_{a^-i~π_old^-i}[Â^i | a^i] − Ã^i(a^i)| (before any clipping);
    - ``mean_abs_grad_bias``: mean over steps, agents and logits of |E_{a~π_old}[∇ of the
      clipped per-sample objective with Â^i] − the same with Ã^i(a^i)| — the PPO clip's
      indicator evaluated per joint action, so this is the bias that reaches the logits;
    - ``mean_second_moment``: mean of E_{a~π_old}[(Â^i)²], in payoff units;
    - each ``_async`` twin: the same with ω = 1 (A_old) at the same steps, i.e. the
      asynchronous estimate on this method's own training path; ``n_steps``: records.
    """
    cfg = Config() if config is None else config
    if not isinstance(cfg, Config):
        raise TypeError(f"config must be an asae.Config; got {type(cfg).__name__}")
    cfg = replace(cfg, track_bias=True)
    return train(env, method, cfg).bias


# =======================================================================================
# Neural learners — MLP actors and a centralised MLP critic for feature envs (env.obs_dim)
# =======================================================================================
# A method and a policy class meet at the logits. For every minibatch row the method gives
# g_r = ∂/∂z [L^i_r + c H(π^i(·|o_r))] (:func:`_logit_grads`: the same `_row_slope` and
# `_policy_grad_row` the tabular step applies row by row); the policy class turns the rows'
# gradients into a parameter step — the table adds each to its row (`_actor_step`), the
# network backpropagates them (:meth:`MLP.backward`) and takes an Adam step. The critic
# likewise: ∂ℓ/∂V back through the table or the network. Every row of METHOD_TABLE whose
# base needs no table over joint actions (SHARED, TRACED) runs with either class.
#
# The update reads as the tabular one, with MAPPO's choices (Yu et al. 2022, "The Surprising
# Effectiveness of PPO in Cooperative Multi-Agent Games"; marlbenchmark/on-policy: config.py,
# r_mappo.py, valuenorm.py, train_mpe_spread.sh — read to check the settings, not copied):
#   E10     Â_t, R_t = GAE(r · reward_scale, V(s), V(s')), V the critic's denormalised output
#   norm    Â ← (Â − mean Â) / (std Â + 1e-5) over the rollout            (NetConfig.adv_norm)
#   actors  K epochs × minibatches; each moving agent: z = f_θi(o), log ρ, Â^i = weight ×
#           base, g_r, backprop of −mean_r g_r, global-norm clip, Adam
#   critic  K epochs × minibatches; ValueNorm update, (clipped) Huber loss, backprop, clip, Adam
# Networks run in float64 through NumPy's BLAS (matmul); the per-row method code is jitted.

LN_EPS = 1e-5         #: LayerNorm's ε (torch's default)
ADAM_BETAS = (0.9, 0.999)
VALUE_NORM_BETA = 0.99999   #: ValueNorm's running-average weight (MAPPO)


@dataclass(frozen=True)
class NetConfig(Config):
    """Hyperparameters of :func:`train` on a feature env (``env.obs_dim``): MLP actors, a
    centralised MLP critic on the env's global state, Adam. Defaults are MAPPO's for MPE
    (Yu et al. 2022; marlbenchmark/on-policy ``config.py`` and ``train_mpe_spread.sh``)
    except ``iterations`` and where a field says so; MAPPO's recurrent (GRU) policy is not
    implemented — these are feed-forward networks. The tabular fields ``init_logit_std``,
    ``init_logits``, ``track_bias`` and ``record_policies`` do not apply and must keep their
    defaults."""

    epochs: int = _doc(10, "PPO epochs K over each rollout, ≥ 1. 10: --ppo_epoch 10.")
    minibatches: int = _doc(1, "Minibatches per epoch (one Adam step each), ≥ 1. 1: "
                            "--num_mini_batch 1.")
    lr_actor: float = _doc(7e-4, "Adam step size of the actors, > 0. 7e-4: --lr 7e-4.")
    lr_critic: float = _doc(7e-4, "Adam step size of the critic, in (0, 1]. 7e-4: --critic_lr.")
    n_envs: int = _doc(128, "Parallel environments B, ≥ 1. 128: --n_rollout_threads 128.")
    rollout_len: int = _doc(25, "Steps T per env per rollout, ≥ 1. 25: --episode_length 25, "
                            "one Spread episode.")
    iterations: int = _doc(200, "Rollout + update iterations, ≥ 1. 200 (640,000 env steps): "
                           "this machine's budget; MAPPO runs 2e7 env steps (6,250).")
    eval_episodes: int = _doc(128, "Episodes of the final greedy and stochastic evaluation.")
    hidden: int = _doc(64, "Width of every hidden layer, ≥ 1. 64: --hidden_size 64.")
    layers: int = _doc(2, "Hidden layers, ≥ 1, each Linear → tanh (→ LayerNorm). 2: MAPPO's "
                       "fc1 plus --layer_N 1; tanh: its MPE script passes --use_ReLU (off).")
    layer_norm: bool = _doc(True, "LayerNorm (ε = 1e-5, learned gain and bias) on the input "
                            "and after every hidden tanh, as MAPPO's MLPBase "
                            "(use_feature_normalization) and MLPLayer.")
    output_gain: float = _doc(0.01, "Orthogonal-init gain of the actors' output layer, ≥ 0 "
                              "(--gain 0.01: near-uniform initial policies). Hidden layers "
                              "use 5/3 (tanh), the critic's output 1; biases start at 0.")
    adam_eps: float = _doc(1e-5, "Adam's ε, > 0 (--opti_eps 1e-5); β = (0.9, 0.999).")
    max_grad_norm: float | None = _doc(10.0, "Clip each network's gradient to this global "
                                       "L2 norm per step, > 0 (--max_grad_norm 10); None: off.")
    adv_norm: bool = _doc(True, "Normalise the base advantage over the rollout, (Â − mean) / "
                          "(std + 1e-5), as MAPPO's trainer (A2PO's traced base: each turn).")
    value_norm: bool = _doc(True, "The critic learns normalised returns with MAPPO's ValueNorm "
                            "(running mean and mean square, β = 0.99999, debiased, variance ≥ "
                            "1e-2), updated on every critic minibatch (--use_valuenorm).")
    huber_delta: float | None = _doc(10.0, "Huber loss of the critic's error with this δ > 0 "
                                     "(--huber_delta 10; the standard Huber on both sides); "
                                     "None: ½ e².")
    value_clip: float | None = _doc(0.2, "Clipped value loss (use_clipped_value_loss): the "
                                    "max of the losses at V and at V_old + clip(V − V_old, ±c), "
                                    "c ≥ 0 (MAPPO: its clip_param, 0.2); None: off.")
    share_actor: bool = _doc(False, "One actor network for every agent, its input the "
                             "observation and a one-hot agent id (MAPPO shares; it omits the "
                             "id); simultaneous methods only. False: one network per agent, "
                             "as the sequential methods (happo, a2po) require.")

    def __post_init__(self):
        super().__post_init__()
        for name, lo, hi in (("hidden", 1, 2 ** 20), ("layers", 1, 64)):
            _integer(f"NetConfig.{name}", getattr(self, name), lo, hi)
        for name in ("layer_norm", "adv_norm", "value_norm", "share_actor"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"NetConfig.{name} must be True or False; "
                                f"got {getattr(self, name)!r}")
        big = np.finfo(float).max
        _scalar("NetConfig.output_gain", self.output_gain, 0.0, 1e6)
        _scalar("NetConfig.adam_eps", self.adam_eps, 0.0, 1.0, lo_open=True)
        _scalar("NetConfig.lr_actor", self.lr_actor, 0.0, 1.0, lo_open=True)
        for name, lo_open in (("max_grad_norm", True), ("huber_delta", True),
                              ("value_clip", False)):
            if getattr(self, name) is not None:
                _scalar(f"NetConfig.{name}", getattr(self, name), 0.0, big, lo_open=lo_open)
        for name, default in (("init_logits", None), ("track_bias", False),
                              ("record_policies", False)):
            if getattr(self, name) != default:
                raise ValueError(f"NetConfig.{name} applies to the tabular learners only; "
                                 f"leave it at {default!r}")


_document_fields(NetConfig, "Parameters")


@njit(cache=True)
def _layer_norm_kernel(x, g, b, y, xhat, inv):
    """y = x̂ g + b row by row, x̂ = (x − μ)/√(σ² + ε), μ and σ² the row's mean and
    (population) variance; x̂ and 1/√(σ² + ε) kept for the backward pass."""
    N, d = x.shape
    for r in range(N):
        mu = 0.0
        for k in range(d):
            mu += x[r, k]
        mu /= d
        var = 0.0
        for k in range(d):
            var += (x[r, k] - mu) ** 2
        inv[r] = 1.0 / np.sqrt(var / d + LN_EPS)
        for k in range(d):
            xhat[r, k] = (x[r, k] - mu) * inv[r]
            y[r, k] = xhat[r, k] * g[k] + b[k]


@njit(cache=True)
def _layer_norm_back_kernel(dy, xhat, inv, g, grads, t, dx):
    """dx = ∂/∂x of LayerNorm, ∂x = (1/√(σ²+ε)) (d − mean d − x̂ mean(d x̂)), d = dy g (means
    over the row), times 1 − t² when ``t`` (the tanh before it) is given; ``grads`` =
    (dg, db) accumulate Σ_r dy x̂ and Σ_r dy."""
    dg, db = grads
    N, d = dy.shape
    for r in range(N):
        m1 = 0.0
        m2 = 0.0
        for k in range(d):
            dk = dy[r, k] * g[k]
            dg[k] += dy[r, k] * xhat[r, k]
            db[k] += dy[r, k]
            m1 += dk
            m2 += dk * xhat[r, k]
        m1 /= d
        m2 /= d
        for k in range(d):
            dx[r, k] = inv[r] * (dy[r, k] * g[k] - m1 - xhat[r, k] * m2)
            if t.shape[0] > 0:
                dx[r, k] *= 1.0 - t[r, k] * t[r, k]


def _layer_norm(x, g, b):
    """LayerNorm of every row (:func:`_layer_norm_kernel`) → (y, cache for the backward)."""
    x = np.ascontiguousarray(x)
    y, xhat, inv = np.empty(x.shape), np.empty(x.shape), np.empty(x.shape[0])
    _layer_norm_kernel(x, g, b, y, xhat, inv)
    return y, (xhat, inv)


def _layer_norm_back(dy, cache, g, dg, db, t=None):
    """∂/∂x of LayerNorm (then through tanh if ``t``); dg, db accumulate."""
    xhat, inv = cache
    dx = np.empty(dy.shape)
    _layer_norm_back_kernel(np.ascontiguousarray(dy), xhat, inv, g, (dg, db),
                            np.zeros((0, 0)) if t is None else t, dx)
    return dx


class MLP:
    """A tanh multilayer perceptron over rows x (N, d_in):
    h_0 = LN(x), h_l = LN(tanh(h_{l−1} W_l + b_l)) for l = 1..L, y = h_L W_o + b_o
    (LN only with ``layer_norm``; else the identity). Its parameters live in one flat vector
    (Adam, the gradient clip and the finiteness check act on it); :meth:`views` gives the
    pieces in the order [LN_0 g, b], then per layer [W, b, LN g, b], then [W_o, b_o]."""

    def __init__(self, d_in: int, hidden: int, layers: int, d_out: int, layer_norm: bool):
        self.d_in, self.d_out, self.layers, self.layer_norm = d_in, d_out, layers, layer_norm
        ln = [(d_in,), (d_in,)] if layer_norm else []
        shapes, d = list(ln), d_in
        for _ in range(layers):
            shapes += [(d, hidden), (hidden,)] + ([(hidden,), (hidden,)] if layer_norm else [])
            d = hidden
        self.shapes = shapes + [(d, d_out), (d_out,)]
        self.size = sum(math.prod(s) for s in self.shapes)

    def views(self, flat: np.ndarray) -> list:
        out, k = [], 0
        for s in self.shapes:
            m = math.prod(s)
            out.append(flat[k:k + m].reshape(s))
            k += m
        return out

    def init(self, rng: np.random.Generator, gain_out: float) -> np.ndarray:
        """Orthogonal weights (Saxe et al. 2014: W = gain · Q, Q from the QR decomposition of
        a standard normal matrix, columns' signs fixed by diag R), gain 5/3 for the tanh
        layers, ``gain_out`` for the output; biases 0; LayerNorm gains 1, biases 0."""
        flat = np.zeros(self.size)
        p = self.views(flat)
        k = 0
        if self.layer_norm:
            p[0][:] = 1.0
            k = 2
        for layer in range(self.layers + 1):
            W = p[k]
            gain = 5.0 / 3.0 if layer < self.layers else gain_out
            a = rng.standard_normal(W.shape if W.shape[0] >= W.shape[1] else W.shape[::-1])
            q, r = np.linalg.qr(a)
            q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
            W[:] = gain * (q if W.shape[0] >= W.shape[1] else q.T)
            k += 2
            if self.layer_norm and layer < self.layers:
                p[k][:] = 1.0
                k += 2
        return flat

    def forward(self, flat: np.ndarray, x: np.ndarray, cache: list | None = None):
        """y (N, d_out); with ``cache`` (a list) what :meth:`backward` needs is appended."""
        p = self.views(flat)
        k, h = 0, x
        if self.layer_norm:
            h, c = _layer_norm(h, p[0], p[1])
            k = 2
            if cache is not None:
                cache.append(c)
        for _ in range(self.layers):
            t = np.tanh(h @ p[k] + p[k + 1])
            if cache is not None:
                cache.append((h, t))
            k += 2
            h = t
            if self.layer_norm:
                h, c = _layer_norm(t, p[k], p[k + 1])
                k += 2
                if cache is not None:
                    cache.append(c)
        if cache is not None:
            cache.append(h)
        return h @ p[k] + p[k + 1]

    def backward(self, flat: np.ndarray, cache: list, dy: np.ndarray, grad: np.ndarray):
        """grad += ∂/∂θ Σ_r dy_r · y_r (chain rule, back through :meth:`forward`)."""
        p, g = self.views(flat), self.views(grad)
        k = len(p) - 2
        h = cache.pop()
        g[k] += h.T @ dy
        g[k + 1] += dy.sum(axis=0)
        dh = dy @ p[k].T
        for _ in range(self.layers):
            if self.layer_norm:
                k -= 2
                ln = cache.pop()
                h_in, t = cache.pop()
                da = _layer_norm_back(dh, ln, p[k], g[k], g[k + 1], t)   # through tanh too
            else:
                h_in, t = cache.pop()
                da = dh * (1.0 - t * t)
            k -= 2
            g[k] += h_in.T @ da
            g[k + 1] += da.sum(axis=0)
            dh = da @ p[k].T
        if self.layer_norm:
            _layer_norm_back(dh, cache.pop(), p[0], g[0], g[1])


class _Adam(NamedTuple):
    """Adam (Kingma & Ba 2015) in torch's form on one flat parameter vector:
    m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − (lr/(1−β₁ᵗ)) m / (√v/√(1−β₂ᵗ) + ε)."""
    m: np.ndarray
    v: np.ndarray
    t: np.ndarray            # (1,) steps taken


def _adam_step(theta, grad, opt: _Adam, lr: float, eps: float, max_norm, what: str):
    """One descent step on ``grad`` (∂loss/∂θ), first scaled by min(1, max_norm/(‖g‖₂ +
    1e-6)) when ``max_norm`` is set (torch's clip_grad_norm_). A gradient that is not
    finite, or whose norm overflows, raises FloatingPointError naming ``what``."""
    big = np.abs(grad).max()
    with np.errstate(over="ignore", invalid="ignore"):
        norm = big * math.sqrt(np.dot(grad / big, grad / big)) if big > 0 else big
    if not math.isfinite(norm):                            # NaN entries give a NaN big
        raise FloatingPointError(f"{what}'s gradient is not finite")
    if max_norm is not None:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            grad *= coef
    b1, b2 = ADAM_BETAS
    opt.t[0] += 1
    opt.m[:] = b1 * opt.m + (1.0 - b1) * grad
    opt.v[:] = b2 * opt.v + (1.0 - b2) * grad * grad
    denom = np.sqrt(opt.v) / math.sqrt(1.0 - b2 ** opt.t[0]) + eps
    theta -= (lr / (1.0 - b1 ** opt.t[0])) * (opt.m / denom)


class _ValueNorm(NamedTuple):
    """MAPPO's ValueNorm: running mean μ and mean square ν of the returns and a debiasing
    weight d, each x ← βx + (1−β)·(batch value); normalise (R − μ/d)/σ with
    σ² = max(ν/d − (μ/d)², 1e-2), d clamped at ≥ 1e-5."""
    stats: np.ndarray        # (3,) μ, ν, d

    def update(self, ret):
        b = VALUE_NORM_BETA
        self.stats[:] = b * self.stats + (1.0 - b) * np.array([ret.mean(), (ret * ret).mean(),
                                                               1.0])

    def mean_std(self):
        d = max(self.stats[2], 1e-5)
        mu = self.stats[0] / d
        return mu, math.sqrt(max(self.stats[1] / d - mu * mu, 1e-2))


def _critic_grad(e, e_clip, inside, delta):
    """∂ℓ/∂V per row of ℓ = max(H(e), H(e_c)) (or H(e) alone when ``e_clip`` is None), e =
    target − V, e_c = target − V_c, V_c = V_old + clip(V − V_old, ±c) (``inside``: the clip
    is not binding, so ∂V_c/∂V = 1); H(e) = ½e² for |e| ≤ δ, δ(|e| − ½δ) beyond (δ = None:
    ½e²), H'(e) = clip(e, −δ, δ). Ties take H(e)."""
    def huber(x):
        if delta is None:
            return 0.5 * x * x, x
        a = np.abs(x)
        return np.where(a <= delta, 0.5 * x * x, delta * (a - 0.5 * delta)), np.clip(x, -delta,
                                                                                   delta)
    h, dh = huber(e)
    if e_clip is None:
        return -dh
    hc, dhc = huber(e_clip)
    return np.where(h >= hc, -dh, -dhc * inside)


@njit(cache=True)
def _log_softmax_rows(z, lp, pi):
    """lp, pi = log softmax, softmax of every row of z (:func:`_log_softmax_row`)."""
    for r in range(z.shape[0]):
        _log_softmax_row(z[r], lp[r], pi[r])


@njit(cache=True)
def _logit_grads(hp, i, lp, pi, act, mb, bounds, out):
    """out[r] = ∂/∂z [L^i_r + c H(π^i(·|o_r))] for every minibatch row r of agent i — the
    method's side of the seam, identical to the tabular step's row: the slope
    s = ρ ∂L/∂ρ by the row's clip (:func:`_row_slope`: E8, E11, E12), then
    ∂/∂z_k = s (1[k=a] − π_k) − c π_k (log π_k + H) (:func:`_policy_grad_row`).
    ``mb`` = (log_rho (size, n), adv (size, n) Â^i, base (size, n))."""
    log_rho, adv, base = mb
    for r in range(lp.shape[0]):
        slope = _row_slope(hp, log_rho[r], i, adv[r, i], base[r, i], bounds[0], bounds[1])
        _policy_grad_row(lp[r], pi[r], act[r], slope, hp.entropy_coef, out[r])


class MLPPolicy(NamedTuple):
    """Decentralised MLP actors: agent i's logits z^i = f(θ_i; o^i) (with ``shared``, one θ
    and the input [o^i, onehot(i)]). :func:`train` returns one; :func:`evaluate` runs it."""
    net: MLP
    params: list             # one flat parameter vector per network (1 if shared, else n)
    n_actions: tuple
    shared: bool

    def inputs(self, i: int, obs: np.ndarray) -> np.ndarray:
        """The network's input rows for agent i's observations ``obs`` (N, obs_dim)."""
        x = np.asarray(obs, np.float64)
        if not self.shared:
            return x
        x = np.concatenate([x, np.zeros((x.shape[0], len(self.n_actions)))], axis=1)
        x[:, x.shape[1] - len(self.n_actions) + i] = 1.0
        return x

    def logits(self, i: int, obs: np.ndarray, cache: list | None = None) -> np.ndarray:
        """z^i (N, A_i) for agent i's observations (N, obs_dim)."""
        z = self.net.forward(self.params[0 if self.shared else i], self.inputs(i, obs), cache)
        return z[:, :self.n_actions[i]]


class _NetRun(NamedTuple):
    """A neural run's state: actors, critic, their optimisers, the value normaliser."""
    policy: MLPPolicy
    critic: MLP
    theta_v: np.ndarray      # the critic's flat parameters
    opt_pi: list             # _Adam per actor network
    opt_v: _Adam
    vnorm: _ValueNorm


class _NetBatch(NamedTuple):
    """One rollout, time-major, as the update reads it."""
    obs: np.ndarray          # (T, B, n, obs_dim)
    act: np.ndarray          # (T, B, n) int64
    rew: np.ndarray          # (T, B)
    term: np.ndarray         # (T, B) bool
    trunc: np.ndarray        # (T, B) bool
    states: np.ndarray       # (T, B, state_dim) s_t
    next_states: np.ndarray  # (T, B, state_dim) s'_t, the true successor (E10)


def _values(run: _NetRun, cfg: NetConfig, states: np.ndarray):
    """V(s) in return units: the critic's output, denormalised under ``value_norm``."""
    v = run.critic.forward(run.theta_v, states)[:, 0]
    if cfg.value_norm:
        mu, sd = run.vnorm.mean_std()
        v = v * sd + mu
    return v


def _normalise(x: np.ndarray) -> np.ndarray:
    """(x − mean)/(std + 1e-5), MAPPO's advantage normalisation (population std)."""
    return (x - x.mean()) / (x.std() + 1e-5)


def _actor_rows(run: _NetRun, i: int, obs: np.ndarray, act: np.ndarray, cache=None):
    """Agent i's log π, π (N, A_i) and log π(a) at ``obs`` rows, ``cache`` for backprop."""
    z = run.policy.logits(i, obs, cache)
    lp, pi = np.empty(z.shape), np.empty(z.shape)
    _log_softmax_rows(np.ascontiguousarray(z), lp, pi)
    return lp, pi, lp[np.arange(act.shape[0]), act]


def _net_actors(hp, cfg, run, data, rng, log):
    """The actor phase (as the tabular :func:`_actors`, one loop for both schedules):
    ``data`` = (obs (N, n, d), act (N, n), old_lp (N, n), base (N, n), delta, not_done).
    A moving agent's minibatch step: forward, log ρ, Â^i = weight × base (simultaneous: from
    every agent's ratio now; sequential: fixed for the turn), the rows' logit gradients
    (:func:`_logit_grads`), backprop of the mean's negative, clip, Adam."""
    obs, act, old_lp, base, delta, not_done = data
    N, n = old_lp.shape
    sequential = hp.schedule == SEQUENTIAL
    order = np.arange(n)
    if sequential:
        _rng_permutation(rng, order)
    log_rho_all, adv_all = np.zeros((N, n)), np.empty((N, n))
    bounds = _clip_bounds(hp, n, n)
    nets = len(run.policy.params)
    for turn in range(n if sequential else 1):
        movers = order[turn:turn + 1] if sequential else order
        if sequential:
            if turn > 0:                 # the agent of the previous turn has moved
                j = order[turn - 1]
                log_rho_all[:, j] = _actor_rows(run, j, obs[:, j], act[:, j])[2] - old_lp[:, j]
                if hp.base == TRACED:
                    _trace_base(hp, delta, not_done, order[turn], log_rho_all, base)
                    if cfg.adv_norm:
                        base[:, order[turn]] = _normalise(base[:, order[turn]])
            _weighted_advantages(hp.weight, hp.w_lo, hp.w_hi, base, log_rho_all, order, adv_all)
            bounds = _clip_bounds(hp, turn + 1, n)
        steps, b = _minibatches(rng, N, hp.epochs, hp.minibatches)
        for k in range(b.shape[0] - 1):
            rows = steps[b[k]:b[k + 1]]
            size = rows.shape[0]
            log_rho = log_rho_all[rows]
            fwd = {}
            for i in movers:
                cache = []
                lp, pi, lp_a = _actor_rows(run, i, obs[rows, i], act[rows, i], cache)
                log_rho[:, i] = lp_a - old_lp[rows, i]
                fwd[i] = (cache, lp, pi)
            log.diag[0] = max(log.diag[0], log_rho[:, movers].max())
            base_mb = base[rows]
            if sequential:
                adv = adv_all[rows]
            else:
                adv = np.empty((size, n))
                _weighted_advantages(hp.weight, hp.w_lo, hp.w_hi, base_mb, log_rho, order, adv)
            if hp.track_ratios:
                _record_ratios(hp, (rows, log_rho, adv, base_mb), movers, order, bounds,
                               log.ratios)
            grads = [None] * nets
            for i in movers:
                cache, lp, pi = fwd[i]
                g = np.empty(lp.shape)
                _logit_grads(hp, i, lp, pi, act[rows, i], (log_rho, adv, base_mb), bounds, g)
                dz = np.zeros((size, run.policy.net.d_out))
                shared = run.policy.shared         # one loss: the mean over rows and agents
                dz[:, :lp.shape[1]] = g * (-1.0 / (size * (len(movers) if shared else 1)))
                s = 0 if shared else i
                if grads[s] is None:
                    grads[s] = np.zeros(run.policy.net.size)
                run.policy.net.backward(run.policy.params[s], cache, dz, grads[s])
            for s, g in enumerate(grads):
                if g is not None:
                    _adam_step(run.policy.params[s], g, run.opt_pi[s], hp.lr_actor,
                               cfg.adam_eps, cfg.max_grad_norm,
                               "the shared actor" if run.policy.shared else f"agent {s}'s actor")


def _net_critic(cfg, run, states, ret, rng):
    """K epochs × minibatches of Adam on the critic: per minibatch the ValueNorm update,
    then the mean over rows of the (clipped) Huber loss of the normalised returns
    (:func:`_critic_grad`), backprop, clip, Adam."""
    N = ret.shape[0]
    v_old = run.critic.forward(run.theta_v, states)[:, 0]      # predictions at update start
    steps, b = _minibatches(rng, N, cfg.epochs, cfg.minibatches)
    for k in range(b.shape[0] - 1):
        rows = steps[b[k]:b[k + 1]]
        target = ret[rows]
        if cfg.value_norm:
            run.vnorm.update(target)
            mu, sd = run.vnorm.mean_std()
            target = (target - mu) / sd
        cache = []
        v = run.critic.forward(run.theta_v, states[rows], cache)[:, 0]
        e_clip = inside = None
        if cfg.value_clip is not None:
            dv = v - v_old[rows]
            e_clip = target - (v_old[rows] + np.clip(dv, -cfg.value_clip, cfg.value_clip))
            inside = (np.abs(dv) <= cfg.value_clip).astype(np.float64)
        dl = _critic_grad(target - v, e_clip, inside, cfg.huber_delta) / rows.shape[0]
        grad = np.zeros(run.critic.size)
        run.critic.backward(run.theta_v, cache, dl[:, None], grad)
        _adam_step(run.theta_v, grad, run.opt_v, cfg.lr_critic, cfg.adam_eps, cfg.max_grad_norm,
                   "the critic")


def _net_update(hp, cfg, run, batch, rng, log):
    """One update on one rollout (the banner above)."""
    T, B, n, d = batch.obs.shape
    N = T * B
    S = batch.states.shape[2]
    v = _values(run, cfg, batch.states.reshape(N, S)).reshape(T, B)
    nv = _values(run, cfg, batch.next_states.reshape(N, S)).reshape(T, B)
    r = batch.rew * hp.reward_scale
    adv, ret = np.empty((T, B)), np.empty((T, B))
    _gae_kernel(r, v, nv, batch.term, batch.trunc, hp.gamma, hp.lam, adv, ret)   # E10
    if not (np.isfinite(adv).all() and np.isfinite(ret).all()):
        raise FloatingPointError("the advantages or returns (E10) are not finite")
    delta, not_done = np.zeros((0, 0)), np.zeros((0, 0))
    if hp.base == TRACED:                                       # E10's δ_t and 1 − done_t
        done = batch.term | batch.trunc
        delta = r + hp.gamma * np.where(batch.term, 0.0, nv) - v
        not_done = np.where(done, 0.0, 1.0)
    adv = adv.reshape(N)
    base = np.repeat((_normalise(adv) if cfg.adv_norm else adv)[:, None], n, axis=1)
    if not np.isfinite(base[:, 0]).all():               # the mean or std overflowed
        raise FloatingPointError("the advantage normalisation (NetConfig.adv_norm) overflows: "
                                 "the advantages' mean or spread exceeds float64")
    obs = batch.obs.reshape(N, n, d)
    act = batch.act.reshape(N, n)
    old_lp = np.empty((N, n))
    for i in range(n):
        old_lp[:, i] = _actor_rows(run, i, obs[:, i], act[:, i])[2]
    _net_actors(hp, cfg, run, (obs, act, old_lp, base, delta, not_done), rng, log)
    _net_critic(cfg, run, batch.states.reshape(N, S), ret.reshape(N), rng)
    for s, theta in enumerate(run.policy.params + [run.theta_v]):
        if not np.isfinite(theta).all():
            return s + 1
    return 0


def _check_feature_env(env):
    """A feature env's static interface → (n, n_actions, obs_dim, state_dim)."""
    if isinstance(env, type):
        raise TypeError(f"env must be an environment instance, not the class {env.__name__}")
    for attr in ("n_agents", "n_actions", "obs_dim", "state_dim", "episode_limit", "reset",
                 "step"):
        if not hasattr(env, attr):
            raise TypeError(f"a feature env must provide {attr!r} (obs_dim, state_dim, "
                            "n_agents, n_actions, episode_limit, reset, step)")
    n = _integer("env.n_agents", env.n_agents, 1, 2 ** 16)
    n_actions = tuple(int(_integer(f"env.n_actions[{i}]", k, 1, 2 ** 16))
                      for i, k in enumerate(env.n_actions))
    if len(n_actions) != n:
        raise ValueError(f"env.n_actions must hold one action count per agent ({n}); "
                         f"got {env.n_actions!r}")
    _integer("env.episode_limit", env.episode_limit, 1, 2 ** 40)
    return (n, n_actions, _integer("env.obs_dim", env.obs_dim, 1, 2 ** 24),
            _integer("env.state_dim", env.state_dim, 1, 2 ** 24))


def _check_feature_step(out, B, n, d, S, what="env.step"):
    """Every output of a feature env's step (or reset, 2 outputs), checked and cast."""
    if not isinstance(out, tuple) or len(out) != (2 if what == "env.reset" else 6):
        raise TypeError(f"{what} must return a tuple of "
                        f"{2 if what == 'env.reset' else 6} arrays (asae.BatchedEnv)")
    obs = _array(f"{what}'s observations", out[0], shape=(B, n, d))
    state = _array(f"{what}'s states", out[1], shape=(B, S))
    if what == "env.reset":
        return obs, state
    r = _array(f"{what}'s rewards", out[2], shape=(B,))
    flags = []
    for name, x in (("terminated", out[3]), ("truncated", out[4])):
        x = np.asarray(x)
        if x.shape != (B,) or x.dtype != np.bool_:
            raise TypeError(f"{what}'s {name} must be a (B,) bool array; got {_describe(x)}")
        flags.append(x)
    final = _array(f"{what}'s final states", out[5], shape=(B, S))
    return obs, state, r, flags[0], flags[1], final


def _net_memory_plan(cfg: NetConfig, n, obs_dim, state_dim, inputs) -> dict:
    N, h = cfg.n_envs * cfg.rollout_len, cfg.hidden
    return {
        "Config.n_envs × rollout_len × obs_dim × n_agents (rollout observations)":
            8 * N * n * obs_dim * 2,
        "Config.n_envs × rollout_len × state_dim (rollout states, critic's input)":
            8 * N * state_dim * 3,
        "Config.n_envs × rollout_len × hidden × layers × agents (activations)":
            8 * N * (h * cfg.layers * 4 + inputs + 16) * n,
        "Config.hidden² × layers × agents (networks, Adam)":
            32 * (n + 1) * (h * h * cfg.layers + h * (inputs + state_dim + 16)),
        "Config.epochs × n_envs × rollout_len (minibatch plan)": 8 * cfg.epochs * N,
        "Config.eval_episodes (evaluation)": cfg.eval_episodes * 8 * n * (obs_dim + 16),
    }


def _net_setup(env, method, config):
    cfg = NetConfig() if config is None else config
    if not isinstance(cfg, NetConfig):
        raise TypeError(f"env has feature observations (obs_dim): config must be an "
                        f"asae.NetConfig (MLP actors and critic); got {type(cfg).__name__}")
    row = _check_method(method, cfg)
    if row.base not in (SHARED, TRACED):
        raise ValueError(f"method {method!r} needs a table over joint actions (COMA's "
                         "Q(s, a), or the exact tables of a matrix game); the neural learner "
                         "runs async, asae, happo, coppo, a2po")
    if cfg.share_actor and row.schedule == SEQUENTIAL:
        raise ValueError(f"method {method!r} updates the agents one after another, each its "
                         "own network; NetConfig.share_actor must be False")
    n, n_actions, obs_dim, state_dim = _check_feature_env(env)
    inputs = obs_dim + (n if cfg.share_actor else 0)
    _check_memory(_net_memory_plan(cfg, n, obs_dim, state_dim, inputs), MAX_TABLE_BYTES)
    init = np.random.default_rng([cfg.seed, 1])          # same networks for every method
    net = MLP(inputs, cfg.hidden, cfg.layers, max(n_actions), cfg.layer_norm)
    params = [net.init(init, cfg.output_gain) for _ in range(1 if cfg.share_actor else n)]
    critic = MLP(state_dim, cfg.hidden, cfg.layers, 1, cfg.layer_norm)
    theta_v = critic.init(init, 1.0)

    def adam(size):
        return _Adam(np.zeros(size), np.zeros(size), np.zeros(1, np.int64))
    run = _NetRun(MLPPolicy(net, params, n_actions, bool(cfg.share_actor)), critic, theta_v,
                  [adam(net.size) for _ in params], adam(critic.size),
                  _ValueNorm(np.zeros(3)))
    return cfg, run, (n, n_actions, obs_dim, state_dim)


def _sample_policy(policy: MLPPolicy, obs, rng, greedy: bool = False) -> np.ndarray:
    """Every agent's action for the (B, n, obs_dim) observations: argmax, or by inverse CDF
    with :func:`_sample_actions` (env b as observation id b, agent-major draws)."""
    B, n = obs.shape[:2]
    A = max(policy.n_actions)
    z = np.zeros((n, B, A))
    for i in range(n):
        z[i, :, :policy.n_actions[i]] = policy.logits(i, obs[:, i])
    if greedy:
        return np.array([np.argmax(z[i, :, :policy.n_actions[i]], axis=1) for i in range(n)]).T
    act = np.empty((B, n), np.int64)
    ids = np.repeat(np.arange(B)[:, None], n, axis=1)
    _sample_actions(z, np.array(policy.n_actions, np.int64), ids, rng, act, *_new_cdf(z))
    return act


def _net_rollout(env, run, carry, rng, batch) -> float:
    """T steps of B envs through env.step; ``carry`` = [obs, state, returns so far]."""
    obs, state, ep_ret = carry
    T, B, n, d = batch.obs.shape
    S = batch.states.shape[2]
    ended = []
    for t in range(T):
        batch.obs[t], batch.states[t] = obs, state
        act = _sample_policy(run.policy, obs, rng)
        batch.act[t] = act
        obs, state, r, te, tr, final = _check_feature_step(env.step(act.copy()), B, n, d, S)
        done = te | tr
        batch.rew[t], batch.term[t], batch.trunc[t] = r, te, tr
        batch.next_states[t] = np.where(done[:, None], final, state)   # V(s'_t), E10
        with np.errstate(over="ignore"):            # an overflowing return is refused below
            ep_ret += r
        ended.extend(ep_ret[done].tolist())
        ep_ret[done] = 0.0
    carry[:2] = obs, state
    return sum(ended) / len(ended) if ended else np.nan


def _evaluate_policy(env, policy: MLPPolicy, episodes: int, greedy: bool, seed: int) -> float:
    n, n_actions, d, S = _check_feature_env(env)
    _check_memory({"episodes × (observations, states, logits)":
                   8 * episodes * (2 * n * d + 2 * S + 3 * n * max(n_actions) + 8)},
                  MAX_TABLE_BYTES)
    if len(policy.n_actions) != n or tuple(policy.n_actions) != tuple(n_actions):
        raise ValueError(f"the policy is for {len(policy.n_actions)} agents with actions "
                         f"{policy.n_actions}; the env has {n} with {n_actions}")
    rng = _rng(int(seed))
    obs, _ = _check_feature_step(env.reset(episodes, seed=int(seed)), episodes, n, d, S,
                                 "env.reset")
    ret, active = np.zeros(episodes), np.ones(episodes, bool)
    for _ in range(int(env.episode_limit)):
        act = _sample_policy(policy, obs, rng, greedy)
        obs, _, r, te, tr, _ = _check_feature_step(env.step(act.copy()), episodes, n, d, S)
        ret += np.where(active, r, 0.0)
        active &= ~(te | tr)
        if not active.any():
            break
    return float(_finite("evaluate: the mean return", ret.mean()))


def _train_net(env, method, config) -> TrainResult:
    """:func:`train` on a feature env: MLP actors, the centralised MLP critic (above)."""
    t0 = time.perf_counter()
    cfg, run, (n, n_actions, d, S) = _net_setup(env, method, config)
    hp = _hyper(cfg, method)
    B, T, I = cfg.n_envs, cfg.rollout_len, cfg.iterations
    rng = _rng(cfg.seed)
    log = _Log(np.zeros(1), (), np.zeros(RATIO_SLOTS if cfg.track_ratios else 1))
    batch = _NetBatch(np.zeros((T, B, n, d)), np.zeros((T, B, n), np.int64), np.zeros((T, B)),
                      np.zeros((T, B), np.bool_), np.zeros((T, B), np.bool_),
                      np.zeros((T, B, S)), np.zeros((T, B, S)))
    carry = [*_check_feature_step(env.reset(B, seed=cfg.seed), B, n, d, S, "env.reset"),
             np.zeros(B)]
    curve = np.full(I, np.nan)
    for it in range(I):
        curve[it] = _net_rollout(env, run, carry, rng, batch)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                code = _net_update(hp, cfg, run, batch, rng, log)
        except FloatingPointError as e:
            raise FloatingPointError(f"training diverged at iteration {it + 1}: {e}; lower "
                                     "NetConfig.lr_actor / lr_critic or Config.reward_scale"
                                     ) from None
        if code:
            what = "the critic" if code == len(run.policy.params) + 1 else (
                "the shared actor" if run.policy.shared else f"agent {code - 1}'s actor")
            raise FloatingPointError(f"training diverged at iteration {it + 1}: {what}'s "
                                     "parameters are no longer finite; lower NetConfig.lr_actor "
                                     "/ lr_critic or Config.reward_scale")
    if not np.isfinite(curve[~np.isnan(curve)]).all():
        raise FloatingPointError("train: a mean episode return overflows float64; rescale the "
                                 "env's rewards")
    seed_eval = int(_rng_next(rng) >> np.uint64(33))
    greedy = _evaluate_policy(env, run.policy, cfg.eval_episodes, True, seed_eval)
    stochastic = _evaluate_policy(env, run.policy, cfg.eval_episodes, False, seed_eval)
    optimum = getattr(env, "optimum", np.inf)
    return TrainResult(
        method=method, iterations=np.arange(1, I + 1), env_steps=np.arange(1, I + 1) * B * T,
        mean_return=curve, greedy_return=greedy, stochastic_return=stochastic,
        greedy_optimal=bool(greedy >= optimum - 1e-6), wall_time=time.perf_counter() - t0,
        logits=[], values=np.zeros(0), policy=run.policy, critic=run.theta_v,
        ratios=_ratio_summary(log.ratios) if cfg.track_ratios else None,
        diagnostics=dict(max_abs_param=float(max(np.abs(p).max() for p in run.policy.params)),
                         max_ratio=float(np.exp(min(log.diag[0], MAX_LOG_RATIO)))))
