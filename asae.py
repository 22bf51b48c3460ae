"""asae — approximatively synchronous advantage estimation: the method, and only the method.

Paper: L. Wan, X. Song, X. Lan, N. Zheng, "Multi-agent Policy Optimization with
Approximatively Synchronous Advantage Estimation", arXiv:2012.03488 (2020/2021).

E1–E10 are this project's precise statement of the paper's method (``EQUATIONS.md``: derived
from its definitions and the standard multi-agent policy-optimisation identities); E11 and
E12 are the competitors' corrections (CoPPO, Wu et al. 2021; A2PO, Wang et al. 2023), written
from their papers. Choices of ours are parameters: ``sync_clip`` (E8), the clip-boundary
convention of the surrogate gradient (E8), the log-space saturation of importance weights.

Equations → code, in the file's order (EQUATIONS.md states each; the learners' exact tables
and E1–E6 share one kernel, ``_marginals_kernel``):

E1   V = Σ_a π(a) Q(a); A = Q − V                          joint_value
E2   Q^i(a^i) = Σ_{a^-i} π^-i(a^-i) Q(a^i, a^-i)           marginal_q
E3   A^i(a^i) = Q^i(a^i) − V                               marginal_advantage
E4   ∇_θi J = E[∇ log π^i(a^i) A^i(a^i)]                   exact_policy_gradient
E5   L(π̃) = J(π_old) + E_{a~π_old}[(∏_j ρ^j) A]           joint_surrogate
E6   Ã^i(a^i) = E_{a^-i~π̃^-i}[A_old(a)]                   synchronous_marginal_advantage
E7   COMA: Q(a) − Σ_b π^i(b) Q(b, a^-i)                    counterfactual_advantage
E8   w^i = ∏_{j≠i} ρ^j (prefix + suffix sums of log ρ)     sync_weights
     L^i = E[min(ρ^i w^i Â, clip(ρ^i, 1±ε) w^i Â)], ∇_z    clipped_surrogate(_grad)
E9   M^{i_m} = ∏_{l<m} ρ^{i_l} (HAPPO-style)               sequential_weights
—    a method = base × weight, schedule, clip; settings    METHOD_TABLE, method_rule → Rule
—    one row, ratios → ∂/∂z (E7–E9, E11, E12), in order:   _base_row, _trace_base,
     base, weight, clip range, slope, logit gradient       _weighted_advantages, _clip_bounds,
     (section "One row"; EQUATIONS.md lists them)          _row_slope → _logit_grads
E11  CoPPO: min(ρ^i w^i Â, clip(ρ^i·clip(w^i, 1±ε_in), 1±ε) Â)      _double_clip_slope
     summed, its gradient through every ρ^j (coppo_detach off)     _double_clip_partners
E12  A2PO: clip(ρ^i g, 1±ε_m) Â^{(m)}, g = clip(M^i, 1±ε_o), ε_m by position (_clip_bounds),
     Â^{(m)} with the trace γλ·min(c̄, M) (_trace_base)    _row_slope (WEIGHTED)
—    every method's Â^i on a batch                         method_advantages
E10  δ_t = r_t + γ(1−term_t)V(s'_t) − V(s_t);
     Â_t = δ_t + γλ(1−done_t)Â_{t+1}                       gae

The learners import this file, which imports none of them (copy it alone): ``asae_tabular``
(with ``asae_probe``) and ``asae_neural`` meet the methods at the logits (:func:`_row_slope`).
Design: each public function validates and casts its inputs (:func:`_array`: a clear
``ValueError``/``TypeError`` naming the argument), then calls a private ``@njit(cache=True)``
kernel over plain arrays, one per equation; a finite input that would overflow float64
raises ``FloatingPointError``. No ``fastmath`` (it would change NaN/inf handling and the
order of summation). Every kernel has a slow loop-for-loop twin in ``test_asae.py``.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

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

__version__ = "0.4.0"
__all__ = ["softmax", "log_softmax", "joint_value", "marginal_q", "marginal_advantage",
           "exact_policy_gradient", "joint_surrogate", "synchronous_marginal_advantage",
           "counterfactual_advantage", "sync_weights", "clipped_surrogate",
           "clipped_surrogate_grad", "sequential_weights", "METHOD_TABLE", "METHODS", "Method",
           "Rule", "RULE_SETTINGS", "method_rule", "JointIndex", "method_advantages", "gae"]

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
        if finite and not _all_finite(arr.reshape(-1)):
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


@njit(cache=True)
def _all_finite(x):
    """Whether every entry of the 1-D float64 ``x`` is finite, in one pass without temporaries:
    Σ_k x_k·0 is 0 exactly then (NaN·0, ±inf·0 are NaN); four sums, so the adds overlap."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = x.shape[0] - x.shape[0] % 4
    for k in range(0, n4, 4):
        s0 += x[k] * 0.0
        s1 += x[k + 1] * 0.0
        s2 += x[k + 2] * 0.0
        s3 += x[k + 3] * 0.0
    for k in range(n4, x.shape[0]):
        s0 += x[k] * 0.0
    return s0 + s1 + s2 + s3 == 0.0


def _finite(name: str, x):
    """Return x if every entry is finite, else raise FloatingPointError: finite inputs whose
    exact result is beyond float64 (|value| > 1.8e308)."""
    if _all_finite(x.reshape(-1)) if type(x) is np.ndarray else math.isfinite(x):
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
    log_rho = _array("log_ratios", log_ratios, ndim=2)
    if log_rho.shape[1] == 0 or (n_rows is not None and log_rho.shape[0] != n_rows):
        want = "N" if n_rows is None else n_rows
        raise ValueError(f"log_ratios must have shape ({want}, n ≥ 1); got {_describe(log_rho)}")
    if log_rho.size and (big := max(log_rho.max(), -log_rho.min())) > \
            MAX_LOG_RATIO_SUM / log_rho.shape[1]:
        raise ValueError(f"log_ratios must satisfy n·max|log ρ| ≤ {MAX_LOG_RATIO_SUM:g} (so no "
                         f"partial sum overflows); got max|log ρ| = {big:g} with "
                         f"n = {log_rho.shape[1]}")
    return log_rho


# =======================================================================================
# Softmax policies — π_k = exp(z_k − m) / Σ_b exp(z_b − m), m = max_b z_b


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


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis, max-shifted (any finite logits).

    >>> softmax([0.0, 0.0]).tolist()
    [0.5, 0.5]
    """
    z = _logits("logits", logits, spread=False)
    out = np.empty(z.shape)
    _softmax_kernel(z.reshape(-1, z.shape[-1]), False, out.reshape(-1, z.shape[-1]))
    return out


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
    z = _logits("logits", logits)
    out = np.empty(z.shape)
    _softmax_kernel(z.reshape(-1, z.shape[-1]), True, out.reshape(-1, z.shape[-1]))
    return out


# =======================================================================================
# E1–E6 — exact oracles for a one-step game q(a^1..a^n): V, Q^i, A^i = Q^i − V, Ã^i under π̃^-i


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
    i = _integer("agent", agent, 0, q.ndim - 1)
    return _finite("marginal_q", _marginals(q, pis)[0][i, :q.shape[i]])


def marginal_advantage(q, policies, agent: int) -> np.ndarray:
    """E3: ``A^i(a^i) = Q^i(a^i) − V``; satisfies ``Σ_a π^i(a) A^i(a) = 0``.

    >>> marginal_advantage([[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [1.0, 0.0]], 0).tolist()
    [0.5, -0.5]
    """
    q, pis = _joint_table(q, policies)
    i = _integer("agent", agent, 0, q.ndim - 1)
    qs, v = _marginals(q, pis)
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite("marginal_advantage", qs[i, :q.shape[i]] - v)


def exact_policy_gradient(q, logits, agent: int) -> np.ndarray:
    """E4: ∇ of ``J(θ) = Σ_a ∏_j softmax(θ^j)(a^j) q(a)`` w.r.t. agent i's logits.

    ``∂J/∂θ^i_k = Σ_a π^i(a) (1[a=k] − π^i(k)) A^i(a) = π^i(k) (Q^i(k) − Σ_a π^i(a) Q^i(a))``.
    """
    q, zs = _joint_table(q, logits, "logits",
                         lambda name, z, k: _array(name, z, ndim=1, shape=(k,)))
    pis = [softmax(z) for z in zs]
    i = _integer("agent", agent, 0, q.ndim - 1)
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
    i = _integer("agent", agent, 0, q.ndim - 1)
    v_old = _marginals(q, old)[1]
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite("synchronous_marginal_advantage",
                       _marginals(q, new)[0][i, :q.shape[i]] - v_old)


# =======================================================================================
# E7 — asynchronous estimates; COMA: A^i_C = Q(a) − Σ_b π^i(b) Q(b, a^-i)


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
    with np.errstate(invalid="ignore", over="ignore"):      # NaN / ±inf rows fail both tests
        bad = np.flatnonzero(~((pa.min(axis=1, initial=np.inf) >= 0.0)
                               & (np.abs(pa.sum(axis=1) - 1.0) <= 1e-8)))
    if bad.size:
        raise ValueError(f"pi_agent rows must be finite, non-negative and sum to 1 (±1e-8); "
                         f"row {bad[0]} is {pa[bad[0]].tolist()}")
    acts = _array("actions_agent", actions_agent, kind="int", shape=(qa.shape[0],),
                  high=qa.shape[1])
    out = np.empty(qa.shape[0])
    _counterfactual_kernel(qa, pa, acts, out)
    return _finite("counterfactual_advantage", out)

# =======================================================================================
# E8 — approximatively synchronous estimate w^i = ∏_{j≠i} ρ^j, Â^i = w^i Â; the clipped L^i


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

    Args: ``logits`` (N, A) current logits z of the acting agent, ``actions`` (N,) taken,
    ``old_log_probs`` (N,) log π_old(a_t) (``log_softmax`` of the old logits), ``advantages``
    (N,) Â (for ASAE: already multiplied by w^i), ``clip_eps`` PPO ε in [0, 1].
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


# E9 — sequential correction (HAPPO-style): M^{i_m} = ∏_{l<m} ρ^{i_l}, M = 1 for the first


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


def _permutation(order, n: int) -> np.ndarray:
    o = _array("order", order, kind="int", shape=(n,), high=n)
    if np.unique(o).size != n:
        raise ValueError(f"order must be a permutation of 0..{n - 1}; got {o.tolist()}")
    return o


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
    o = _permutation(order, n)
    out = np.empty(log_rho.shape)
    _sequential_weights_kernel(log_rho, o, -MAX_LOG_RATIO, MAX_LOG_RATIO, out)
    return out


# =======================================================================================
# The method table — every learner is one row of orthogonal choices; nothing else differs

# Where agent i's advantage starts (the base).
SHARED = 0           # the shared GAE advantage Â_t (E10), one critic V(s)
COUNTERFACTUAL = 1   # COMA's A^i_C(s, a) (E7) from a joint critic Q(s, a) and π_old^i
EXACT_OLD = 2        # the exact table A^i(a^i) under the partners' old policies (E3)
EXACT_CURRENT = 3    # the exact table Ã^i(a^i) under their current in-update policies (E6)
TRACED = 4           # A2PO's Â^{(m)}: GAE, its trace cut by the preceding agents' ratios (E12)
# What multiplies it (the weight), a constant in agent i's gradient.
ONE = 0              # nothing
PARTNERS = 1         # w^i = ∏_{j≠i} ρ^j, clipped by sync_clip (E8)
PRECEDING = 2        # M^i = ∏_{l<m} ρ^{i_l}, the agents updated before i (E9)
# The schedule of the actor phase.
SIMULTANEOUS = 0     # on every minibatch every agent takes one step
SEQUENTIAL = 1       # one agent after another in a random order, K epochs each
# What the PPO clip acts on (ε = clip_eps, optionally shrunk by clip_scale).
PPO = 0              # clip(x, 1±ε)(ρ/x)·(weight·Â), x the ratio clip_ratio names: own ρ^i
                     # or joint ∏_j ρ^j (E8)
DOUBLE = 1           # CoPPO: min(ρ w Â, clip(ρ·clip(w, 1±ε_in), 1±ε) Â) (E11)
WEIGHTED = 2         # A2PO: clip(ρ g, 1±ε_m) Â with g the clipped weight, ε_m by position (E12)
# How the own-ratio clip shrinks with n (clip_scale), as the kernels read it.
SCALE_NONE = 0       # 1 ± ε
SCALE_INV_N = 1      # 1 ± ε/n
SCALE_ROOT_N = 2     # [(1 − ε)^{1/n}, (1 + ε)^{1/n}]
#: ``clip_scale`` by name → its code above.
CLIP_SCALES = {None: SCALE_NONE, "inv_n": SCALE_INV_N, "root_n": SCALE_ROOT_N}
# The agent order of a sequential schedule (a2po_order; HAPPO's is always random).
ORDER_RANDOM = 0     # a uniformly random permutation, fresh every update
ORDER_SEMI_GREEDY = 1  # A2PO's: by score, alternately the best remaining and a random one
#: ``a2po_order`` by name → its code; ``a2po_trace`` by name → the power of λ in E12's trace.
ORDERS = {"random": ORDER_RANDOM, "semi_greedy": ORDER_SEMI_GREEDY}
TRACES = {"ours": 1, "authors": 2}


class Method(NamedTuple):
    """One row of :data:`METHOD_TABLE`: four orthogonal choices."""
    base: int
    weight: int
    schedule: int
    clip: int


#: The methods, one row each. Adding a method means adding a row (and at most one choice).
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


class Rule(NamedTuple):
    """A row of :data:`METHOD_TABLE` with its settings, as the per-row kernels read them."""
    base: int
    weight: int
    schedule: int
    clip: int
    gamma: float             # γ and λ of E10 (A2PO's traced base re-runs the recursion)
    lam: float
    clip_eps: float          # ε of the PPO clip; inf: no clip
    joint_clip: bool         # the clip acts on ∏_j ρ^j instead of ρ^i (clip_ratio='joint')
    clip_scale: int          # SCALE_NONE, SCALE_INV_N or SCALE_ROOT_N
    clip_floor: float        # A2PO's c_ε: ε_m = ε (c_ε + (1 − c_ε) m/n); 1: ε for every m
    w_lo: float              # log-space bounds of the weight (its clip; ±MAX_LOG_RATIO: none)
    w_hi: float
    inner_lo: float          # CoPPO: log-space bounds of v = clip(w, 1 ± ε_in)
    inner_hi: float
    through_partners: bool   # CoPPO: Σ_i L^i's gradient also flows through each w^i (E11)
    trace_cbar: float        # A2PO: the trace's truncation c̄
    trace_factor: float      # A2PO: the trace's γλ (ours) or γλ² (the authors' code), E12
    order: int               # ORDER_RANDOM or ORDER_SEMI_GREEDY (sequential schedules)
    entropy_coef: float      # c of the entropy bonus c·H(π^i) in each row's objective


_BIG = float(np.finfo(float).max)
#: The settings of :func:`method_rule`: name → (default, lo, hi, lo excluded, None allowed)
#: for the real ones, (default,) for clip_ratio ∈ {'own', 'joint'}, clip_scale ∈ CLIP_SCALES and
#: the flag coppo_detach (True: CoPPO's w^i a constant, the gradient of L^i reaches θ^i only),
#: a2po_order ∈ ORDERS and a2po_trace ∈ TRACES.
RULE_SETTINGS = {
    "gamma": (0.99, 0.0, 1.0, False, False), "lam": (0.95, 0.0, 1.0, False, False),
    "clip_eps": (0.2, 0.0, 1.0, False, True), "clip_ratio": ("own",), "clip_scale": (None,),
    "sync_clip": (0.5, 0.0, np.inf, False, True), "coppo_inner_eps": (0.1, 0.0, 1.0, False, True),
    "a2po_others_eps": (0.1, 0.0, np.inf, False, True),
    "a2po_clip_floor": (0.5, 0.0, 1.0, False, False),
    "a2po_trace_cbar": (1.0, 0.0, _BIG, True, False),
    "entropy_coef": (0.01, 0.0, _BIG, False, False), "coppo_detach": (False,),
    "a2po_order": ("semi_greedy",), "a2po_trace": ("ours",)}


def _check_settings(prefix: str, settings: dict):
    """Each setting of :data:`RULE_SETTINGS` in its range (errors name ``prefix + name``)."""
    for name, (_, *valid) in RULE_SETTINGS.items():
        if valid and name in settings and not (valid[3] and settings[name] is None):
            _scalar(prefix + name, settings[name], *valid[:3])
    for name, names in (("a2po_order", ORDERS), ("a2po_trace", TRACES)):
        if name in settings and (not isinstance(settings[name], str)
                                 or settings[name] not in names):
            raise ValueError(f"{prefix}{name} must be one of {tuple(names)}; "
                             f"got {settings[name]!r}")
    if not isinstance(settings.get("coppo_detach", False), (bool, np.bool_)):
        raise TypeError(f"{prefix}coppo_detach must be True or False; "
                        f"got {settings['coppo_detach']!r}")
    if settings.get("clip_ratio", "own") not in ("own", "joint"):
        raise ValueError(f"{prefix}clip_ratio must be 'own' or 'joint'; "
                         f"got {settings['clip_ratio']!r}")
    scale = settings.get("clip_scale")
    if not isinstance(scale, (str, type(None))) or scale not in CLIP_SCALES:
        raise ValueError(f"{prefix}clip_scale must be one of {tuple(CLIP_SCALES)}; got {scale!r}")
    if scale is not None and settings.get("clip_ratio") == "joint":
        raise ValueError(f"{prefix}clip_scale shrinks the clip on each agent's own ratio; "
                         "with clip_ratio='joint' the clip acts on the joint ratio already")


def method_rule(method: str, prefix: str = "", **settings) -> Rule:
    """The :class:`Rule` of ``method`` under ``settings`` (names and defaults:
    :data:`RULE_SETTINGS`; errors name ``prefix + name``). The weight's clip is asae's
    ``sync_clip`` (E8) or A2PO's ``a2po_others_eps`` (E12); HAPPO's M and CoPPO's w are
    unclipped.

    >>> method_rule("asae", sync_clip=0.5).w_hi == math.log1p(0.5)
    True
    """
    unknown = sorted(set(settings) - set(RULE_SETTINGS))
    if unknown:
        raise TypeError(f"method_rule got unknown settings {unknown}; known: "
                        f"{sorted(RULE_SETTINGS)}")
    s = {**{k: v[0] for k, v in RULE_SETTINGS.items()}, **settings}
    _check_settings(prefix, s)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    row = METHOD_TABLE[method]               # the clip settings must fit the row's clip
    if row.clip != PPO and (s["clip_ratio"] != "own"
                            or s["clip_scale"] is not None and row.clip == DOUBLE):
        raise ValueError(f"method {method!r} clips its own way (METHOD_TABLE); "
                         f"{prefix}clip_ratio must stay 'own'"
                         + (" and clip_scale None" if row.clip == DOUBLE else ""))
    lo, hi = _weight_bounds(s["a2po_others_eps"] if row.clip == WEIGHTED else s["sync_clip"]
                            if row.weight == PARTNERS and row.clip == PPO else None)
    inner_lo, inner_hi = _weight_bounds(s["coppo_inner_eps"])
    return Rule(
        base=row.base, weight=row.weight, schedule=row.schedule, clip=row.clip,
        gamma=float(s["gamma"]), lam=float(s["lam"]),
        clip_eps=np.inf if s["clip_eps"] is None else float(s["clip_eps"]),
        joint_clip=s["clip_ratio"] == "joint", clip_scale=CLIP_SCALES[s["clip_scale"]],
        clip_floor=float(s["a2po_clip_floor"]) if row.clip == WEIGHTED else 1.0,
        w_lo=float(lo), w_hi=float(hi), inner_lo=float(inner_lo), inner_hi=float(inner_hi),
        through_partners=row.clip == DOUBLE and not s["coppo_detach"],
        trace_cbar=float(s["a2po_trace_cbar"]), entropy_coef=float(s["entropy_coef"]),
        trace_factor=float(s["gamma"]) * float(s["lam"]) ** TRACES[s["a2po_trace"]],
        order=ORDERS[s["a2po_order"]] if row.clip == WEIGHTED else ORDER_RANDOM)


# =======================================================================================
# One row, from its ratios to ∂/∂z — base, weight, clip range, slope, logit gradient
# (E7, E8, E9, E11, E12), in the order a learner applies them; both learners call these


class JointIndex(NamedTuple):
    """The flat joint-action encoding: j = Σ_l a^l · radix_l (C order over agents)."""
    n_actions: np.ndarray    # (n,) A_i
    radix: np.ndarray        # (n,) radix_l = ∏_{m>l} A_m


@njit(cache=True, inline='always')
def _base_row(base, joint, q_row, j, pis, shared, tables, out):
    """out[i] = agent i's base advantage for one sample with joint action j, by the row's
    ``base``: SHARED → ``shared`` (Â_t; TRACED starts from it, the trace is redone per turn);
    COUNTERFACTUAL → A^i_C (E7) from the joint critic row ``q_row`` and π_old^i = ``pis[i]``;
    EXACT_* → ``tables[i, a^i]``. ``joint``: a :class:`JointIndex`."""
    for i in range(out.shape[0]):
        if base == SHARED or base == TRACED:
            out[i] = shared
            continue
        a = _joint_action(j, i, joint.radix, joint.n_actions)
        if base == COUNTERFACTUAL:         # Q(s, (b, a^-i)) for b = 0..A−1: a strided view
            A, stride = joint.n_actions[i], joint.radix[i]
            j0 = j - a * stride
            out[i] = _counterfactual_row(q_row[j0:j0 + A * stride:stride], pis[i, :A], a)
        else:
            out[i] = tables[i, a]


@njit(cache=True)
def _trace_base(rule, delta, not_done, i, log_rho, base):
    """A2PO's preceding-agent off-policy correction (E12) for agent i, into base[:, i] from
    E10's TD errors ``delta`` and ``not_done`` = 1 − done (T, B):
    Â_t = δ_t + γλ min(c̄, M_{t+1}) (1 − done_t) Â_{t+1}, Â_T = 0, M_u = ∏_{j≠i} ρ^j_u over
    the agents that have moved (the others' log ρ are exactly 0); c̄ ≥ 1 and M ≡ 1 give
    E10's GAE bit for bit. With a2po_trace='authors' the factor is γλ² (their code applies λ
    to rates that hold γλ already). Rows of ``log_rho`` and ``base`` are t·B + b."""
    T, B = delta.shape
    gl = rule.trace_factor                                    # γλ (or the authors' γλ²)
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
                c = min(rule.trace_cbar, np.exp(min(log_m, MAX_LOG_RATIO)))
            carry = delta[t, b] + gl * c * not_done[t, b] * carry
            base[t * B + b, i] = carry


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


@njit(cache=True, inline='always')
def _clip_bounds(rule, m, n):
    """(lo, hi) of the PPO clip for the agent in position m = 1..n of the order (m = n for a
    simultaneous schedule): ε, or A2PO's ε_m = ε (c_ε + (1 − c_ε) m/n) (E12), then the
    clip_scale rule: 1 ± ε, 1 ± ε/n, or [(1 − ε)^{1/n}, (1 + ε)^{1/n}]."""
    eps = rule.clip_eps
    if rule.clip_floor < 1.0:
        eps = eps * (rule.clip_floor + (1.0 - rule.clip_floor) * m / n)
    if rule.clip_scale == SCALE_INV_N:
        return 1.0 - eps / n, 1.0 + eps / n
    if rule.clip_scale == SCALE_ROOT_N:
        return max(1.0 - eps, 0.0) ** (1.0 / n), (1.0 + eps) ** (1.0 / n)
    return 1.0 - eps, 1.0 + eps


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
    ``adv_u`` = u Â with u = w^i, and v = exp(log_v) = clip(w^i, 1 ± ε_in): the unclipped
    term where it is the minimum (ties too), s = ρ u Â; else the clipped one, s = ρ v Â
    inside [lo, hi] and 0 outside."""
    rho = np.exp(min(log_rho, MAX_LOG_RATIO))
    x = np.exp(min(log_rho + log_v, MAX_LOG_RATIO))
    unclipped = rho * adv_u
    if unclipped <= min(max(x, lo), hi) * adv:
        return unclipped
    return x * adv if lo <= x <= hi else 0.0


@njit(cache=True, inline='always')
def _double_clip_partners(rule, log_rho, j, adv, lo, hi):
    """Σ_{i≠j} ρ^j ∂L^i/∂ρ^j of CoPPO's summed objective Σ_i L^i (E11, the authors' gradient;
    ``adv`` the shared Â): L^i = min(ρ^i u^i Â, clip(ρ^i v^i, lo, hi) Â) depends on ρ^j
    through u^i = ∏_{k≠i} ρ^k, so ρ^j ∂L^i/∂ρ^j = ρ^i u^i Â where the unclipped term is the
    minimum (ties too), else 0: the clipped term is constant in ρ^j where v^i = clip(u^i) or
    the outer clip binds, and where neither does it equals the unclipped one (a tie)."""
    total = 0.0
    for i in range(log_rho.shape[0]):
        if i == j:
            continue
        partners = 0.0                                         # log u^i
        for k in range(log_rho.shape[0]):
            if k != i:
                partners += log_rho[k]
        log_v = min(max(partners, rule.inner_lo), rule.inner_hi)
        unclipped = np.exp(min(log_rho[i] + partners, MAX_LOG_RATIO)) * adv   # ρ^i u^i Â
        x = np.exp(min(log_rho[i] + log_v, MAX_LOG_RATIO))                    # ρ^i v^i
        if unclipped <= min(max(x, lo), hi) * adv:
            total += unclipped
    return total


@njit(cache=True, inline='always')
def _row_slope(rule, log_rho, i, adv, base, lo, hi):
    """s = ρ ∂L^i/∂ρ^i of agent i's objective on one sample, by the row's clip: ``log_rho``
    (n,) the sample's log-ratios, ``adv`` = weight × ``base`` its advantage Â^i (E8, E11,
    E12); the partners' factors are constants — but for CoPPO with ``through_partners`` the
    slope is s^i = Σ_k ρ^i ∂L^k/∂ρ^i of the summed objective (E11)."""
    if rule.clip == PPO:
        log_x = log_rho[i]
        if rule.joint_clip:                                    # x = ∏_j ρ^j
            log_x = 0.0
            for j in range(log_rho.shape[0]):
                log_x += log_rho[j]
        return _ppo_slope(log_rho[i], log_x, adv, lo, hi)
    partners = 0.0                                             # log ∏_{j≠i} ρ^j
    for j in range(log_rho.shape[0]):
        if j != i:
            partners += log_rho[j]
    if rule.clip == WEIGHTED:                                  # x = ρ^i g, g = clip(M, 1 ± ε_o)
        return _ppo_slope(log_rho[i], log_rho[i] + min(max(partners, rule.w_lo), rule.w_hi),
                          adv, lo, hi)
    own = _double_clip_slope(log_rho[i], min(max(partners, rule.inner_lo), rule.inner_hi),
                             adv, base, lo, hi)                # DOUBLE: v = clip(w, 1 ± ε_in)
    if rule.through_partners:                                  # + the partners' terms (E11)
        return own + _double_clip_partners(rule, log_rho, i, base, lo, hi)
    return own


@njit(cache=True, inline='always')
def _policy_grad_row(logp, pi, a, slope, entropy_coef, out):
    """∇_z of one sample's objective plus the entropy bonus c·H(π), from the row's
    log-softmax (the learners' fused form of :func:`clipped_surrogate_grad`):
        ∂/∂z_k = s (1[k=a] − π_k) − c π_k (log π_k + H),   H = −Σ_k π_k log π_k,
    with s = ρ ∂L/∂ρ from :func:`_row_slope`. ``logp``/``pi`` come from one
    :func:`_log_softmax_row` per (agent, observation) and minibatch step, which also gave
    the ratio: one softmax serves all three."""
    H = 0.0
    for k in range(logp.shape[0]):
        H -= pi[k] * logp[k]                               # entropy H(π)
    for k in range(logp.shape[0]):
        out[k] = (slope * ((1.0 if k == a else 0.0) - pi[k])
                  - entropy_coef * pi[k] * (logp[k] + H))


@njit(cache=True)
def _logit_grads(rule, i, lp, pi, act, mb, bounds, out):
    """out[r] = ∂/∂z [L^i_r + c H(π^i(·|o_r))] for every minibatch row r of agent i — the
    method's side of the seam where methods and policy classes meet: the slope
    s = ρ ∂L/∂ρ by the row's clip (:func:`_row_slope`: E8, E11, E12), then
    ∂/∂z_k = s (1[k=a] − π_k) − c π_k (log π_k + H) (:func:`_policy_grad_row`).
    ``lp``, ``pi`` (size, A_i) log π^i and π^i at the rows, ``act`` (size,) a^i;
    ``mb`` = (log_rho (size, n), adv (size, n) Â^i, base (size, n)); ``bounds`` = (lo, hi)."""
    log_rho, adv, base = mb
    for r in range(lp.shape[0]):
        slope = _row_slope(rule, log_rho[r], i, adv[r, i], base[r, i], bounds[0], bounds[1])
        _policy_grad_row(lp[r], pi[r], act[r], slope, rule.entropy_coef, out[r])


def _exact_base(tables, actions, N: int):
    """Exact methods' base: ``tables[i][a^i_t]`` → (N, n), from per-agent vectors."""
    if not hasattr(tables, "__len__") or isinstance(tables, (str, bytes)) \
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


def method_advantages(method: str, advantages, log_ratios=None, *, order=None, actions=None,
                      tables=None, **settings) -> np.ndarray:
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
                    (E12)                                     log_ratios, order,
                                                              a2po_others_eps (ε_o)
    ``coma``        the counterfactual A^i_C (E7), as given   advantages (N, n)
    ``exact_sync``  Ã^i(a^i_t), the exact E6 table under the  tables, actions
                    partners' *current* policies
    ``exact_async`` A^i(a^i_t), the exact E3 table under the  tables, actions
                    partners' *old* policies
    ==============  ========================================  ==========================

    Args:
        method: one of :data:`METHODS`.
        advantages: (N,) shared Â_t, or (N, n) one column per agent (COMA's A^i_C).
        log_ratios: (N, n) current ``log ρ^j_t`` of every agent (asae, happo, coppo, a2po).
        order: the update order of happo and a2po (a permutation of 0..n−1).
        actions, tables: (N, n) integer actions and n vectors, ``tables[i][a]`` the exact
            advantage of agent i's action a (exact methods).
        settings: of :func:`method_rule`; the weight's clip is ``sync_clip`` (asae; default
            0.5) or ``a2po_others_eps`` (a2po; default 0.1), None for no clip.

    >>> method_advantages("asae", [1.0], np.log([[2.0, 1.25]]), sync_clip=None).tolist()
    [[1.25, 2.0]]
    >>> method_advantages("happo", [1.0], np.log([[2.0, 1.25]]), order=[1, 0]).tolist()
    [[1.25, 1.0]]
    """
    rule = method_rule(method, **settings)
    adv = _array("advantages", advantages, ndim=(1, 2))
    N = adv.shape[0]
    exact = rule.base in (EXACT_OLD, EXACT_CURRENT)
    if log_ratios is None and rule.weight != ONE:
        raise TypeError(f"method {method!r} needs log_ratios of shape ({N}, n)")
    log_rho = None if log_ratios is None else _log_ratio_table(log_ratios, N)
    base = _exact_base(tables, actions, N) if exact else adv[:, None] if adv.ndim == 1 else adv
    n = log_rho.shape[1] if log_rho is not None and not exact else base.shape[1]
    if base.shape != (N, n) and base.shape != (N, 1):
        raise ValueError(f"advantages must have shape ({N},) or ({N}, {n}); got {_describe(adv)}")
    o = np.arange(n, dtype=np.int64)
    if rule.weight == PRECEDING:
        if order is None:
            raise TypeError(f"method {method!r} needs order, a permutation of 0..n−1")
        o = _permutation(order, n)
    out = np.empty((N, n))
    _weighted_advantages(rule.weight, rule.w_lo, rule.w_hi, base,
                         np.zeros((N, n)) if log_rho is None else log_rho, o, out)
    return _finite("method_advantages", out)


# =======================================================================================
# E10 — GAE with termination and truncation:
#       δ_t = r_t + γ(1 − term_t) V(s'_t) − V(s_t),  Â_t = δ_t + γλ(1 − done_t) Â_{t+1}


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
    ``Â_t = δ_t + γλ(1 − done_t) Â_{t+1}``, ``Â_T = 0``, returns ``R_t = Â_t + V(s_t)``;
    gives (advantages, returns), new float64 arrays of the input's shape.

    Args:
        rewards: (T,) or (T, B) team rewards r_t.
        values: V(s_t), same shape.
        next_values: V(s'_t) of the *true* next state (for a truncated step: the final state
            before the reset), same shape. Ignored where ``terminated``.
        terminated: bool, same shape — no bootstrap at this step, and the trace stops.
        truncated: bool, same shape — bootstraps ``next_values`` but the trace stops.
        gamma, lam: discount γ and GAE λ, both in [0, 1].

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


