"""The bench's statistics, in plain Python and NumPy (no SciPy): Wilson score intervals,
exact sign tests, Student-t intervals of a mean, Newcombe's interval of a paired difference
in success rate, each method's success paired seed by seed with async (or another method) —
and how each of them reads in a table cell.

>>> [round(x, 4) for x in wilson(5, 10)], sign_test(1, 9), fmt_p(sign_test(1, 9))
([0.2366, 0.7634], 0.021484375, '.021')
"""
import math

import numpy as np

Z95 = 1.959963984540054                     # and T95: the Student-t 0.975 quantiles for df = 1..30
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


# ---- Intervals and tests -----------------------------------------------------------------
def wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score 95 % interval for k successes in n trials (NaNs if n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p, z2 = k / n, Z95 ** 2
    mid, half = p + z2 / (2 * n), Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (0.0 if k == 0 else (mid - half) / (1 + z2 / n),
            1.0 if k == n else (mid + half) / (1 + z2 / n))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign-test p: binomial(n, 1/2) on the n = wins + losses discordant pairs."""
    n = wins + losses
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n)


def holm(ps) -> list:
    """Holm's step-down adjustment of m p values (S. Holm, "A simple sequentially rejective
    multiple test procedure", Scand. J. Statist. 6 (1979) 65–70): with p_(1) ≤ … ≤ p_(m),
    p̃_(k) = max_{j ≤ k} min(1, (m − j + 1) p_(j)); rejecting where p̃ < α holds the
    family-wise error at α. None entries (no test) stay None and do not count in m.

    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03, 0.005])]
    [0.03, 0.06, 0.06, 0.02]
    """
    idx = sorted((i for i, p in enumerate(ps) if p is not None), key=lambda i: ps[i])
    out, run = list(ps), 0.0
    for j, i in enumerate(idx):
        run = max(run, min(1.0, (len(idx) - j) * ps[i]))
        out[i] = run
    return out


def paired_difference_ci(both: int, wins: int, losses: int, neither: int) -> tuple:
    """Newcombe's 95 % interval for the difference p1 − p2 of two success rates measured on the
    same seeds: the square-and-add (hybrid score) interval of method 10 in R. G. Newcombe,
    "Improved confidence intervals for the difference between binomial proportions based on
    paired data", Statistics in Medicine 17 (1998) 2635–2650. The paired table: ``both``
    succeed, only the first (``wins``), only the second (``losses``), ``neither``; each rate
    gets its Wilson interval and the two are combined with the correlation estimate φ of the
    table (0 if a margin is empty; A = both·neither − wins·losses, shrunk by N/2 when
    positive). NaNs if there are no pairs.

    >>> [round(x, 4) for x in paired_difference_ci(59, 6, 16, 80)]   # Cavo et al. 2012
    [-0.1186, -0.0046]
    """
    n = both + wins + losses + neither
    if n == 0:
        return math.nan, math.nan
    p1, p2 = (both + wins) / n, (both + losses) / n
    (l1, u1), (l2, u2) = wilson(both + wins, n), wilson(both + losses, n)
    margins = (both + wins) * (losses + neither) * (both + losses) * (wins + neither)
    a = both * neither - wins * losses
    phi = 0.0 if margins == 0 else (a - n / 2 if a > n / 2 else min(a, 0)) / math.sqrt(margins)
    d = p1 - p2
    lo = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    hi = d + math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    return max(-1.0, lo), min(1.0, hi)


def mean_ci(x):
    """Mean and 95 % t-interval half-width over axis 0, ignoring NaN (NaN if < 1 / < 2 values)."""
    x = np.asarray(x, float)
    ok, nan = np.isfinite(x), np.full(x.shape[1:], np.nan)
    n = ok.sum(0)
    mean = np.divide(np.where(ok, x, 0.0).sum(0), n, out=nan.copy(), where=n > 0)
    var = np.divide((np.where(ok, x - mean, 0.0) ** 2).sum(0), n - 1, out=nan.copy(), where=n > 1)
    t = [T95[d - 1] if d <= 30 else Z95 + (Z95 ** 3 + Z95) / (4 * d)
         for d in np.ravel(np.maximum(n - 1, 1))]
    return mean, np.reshape(t, n.shape) * np.sqrt(var / np.maximum(n, 1))


# ---- Paired comparison with async --------------------------------------------------------
def paired(ok, ref_ok) -> dict:
    """Two methods' successes on the same seeds: wins (only the first succeeds), losses (only
    the second), the exact sign-test p, the difference in success rate (wins − losses) /
    seeds and its Newcombe 95 % interval (``paired_difference_ci``).

    >>> d = paired([1, 1, 0, 1], [1, 0, 0, 0])
    >>> d["wins"], d["losses"], d["difference"], [round(x, 3) for x in d["ci95"]]
    (2, 0, 0.5, [-0.135, 0.789])
    """
    if len(ok) != len(ref_ok):
        raise ValueError(f"paired: {len(ok)} and {len(ref_ok)} seeds; pairs need the same seeds")
    cells = [sum(bool(x) is a and bool(y) is b for x, y in zip(ok, ref_ok))
             for a, b in ((True, True), (True, False), (False, True), (False, False))]
    w, l_ = cells[1], cells[2]
    return {"wins": w, "losses": l_, "p": sign_test(w, l_),
            "difference": (w - l_) / max(len(ok), 1), "ci95": list(paired_difference_ci(*cells))}


def success(c, ref: dict, key) -> dict:
    """A cell's successes (its runs' ``optimal``) with a Wilson 95 % interval and, paired seed
    by seed with the async cell of the same ``key`` (run first, its successes kept in
    ``ref``), ``vs_async``: ``paired(this, async)`` (wins, losses, sign-test p, difference in
    success rate with its Newcombe 95 % interval); None for async itself or when no async
    cell ran under ``key``."""
    ok = [bool(r.get("optimal", False)) for r in c.results]
    if c.method == "async":
        ref[key] = ok
    pair = paired(ok, ref[key]) if c.method != "async" and key in ref else None
    return {"successes": sum(ok), "runs": len(ok), "wilson95": list(wilson(sum(ok), len(ok))),
            "vs_async": pair}


# ---- As table text -----------------------------------------------------------------------
def fmt_success(s: dict) -> str:
    """``success()`` as table text: k/n = rate [95 % interval]."""
    (lo, hi), k, n = s["wilson95"], s["successes"], s["runs"]
    return f"{k}/{n} = {k / n:.2f} [{lo:.2f}, {hi:.2f}]"


def fmt_p(p: float) -> str:
    """A p-value in two significant digits without the leading zero.

    >>> fmt_p(0.1797), fmt_p(1.0), fmt_p(0.03125), fmt_p(1.6e-07)
    ('.18', '1', '.031', '1.6e-07')
    """
    text = f"{p:.2g}"
    return text[1:] if text.startswith("0.") else text


def signed(x: float) -> str:
    """Two decimals with the sign, a true minus: ``signed(-0.125) == '−0.12'``."""
    return f"{x:+.2f}".replace("-", "−")


def fmt_pair(d) -> str:
    """A ``paired`` record as table text: difference [95 % CI] (+wins/−losses, p).

    >>> fmt_pair({"difference": -0.05, "ci95": [-0.11, 0.004], "wins": 3, "losses": 8,
    ...           "p": 0.227})
    '−0.05 [−0.11, +0.00] (+3/−8, p=.23)'
    """
    if not d:
        return "—"
    lo, hi = d["ci95"]
    return (f"{signed(d['difference'])} [{signed(lo)}, {signed(hi)}] "
            f"(+{d['wins']}/−{d['losses']}, p={fmt_p(d['p'])})")


def interval(x: float, lo: float, hi: float) -> str:
    """``x [lo, hi]`` in two decimals, or — if x does not exist."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f} [{lo:.2f}, {hi:.2f}]"
