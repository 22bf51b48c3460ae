"""The bench's statistics, in plain Python and NumPy (no SciPy): Wilson score intervals,
exact sign tests, Student-t intervals of a mean, each method's success paired seed by seed
with async — and how each of them reads in a table cell.

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
def success(c, ref: dict, key) -> dict:
    """A cell's successes (its runs' ``optimal``) with a Wilson 95 % interval and, paired seed
    by seed with the async cell of the same ``key`` (run first, its successes kept in
    ``ref``), ``vs_async``: wins (only this method succeeds), losses (only async does), the
    exact sign-test p and the difference in success rate, (wins − losses) / seeds; None for
    async itself or when no async cell ran under ``key``."""
    ok = [bool(r.get("optimal", False)) for r in c.results]
    if c.method == "async":
        ref[key] = ok
    pair = None
    if c.method != "async" and key in ref:
        w, l_ = (sum(x and not y for x, y in zip(a, b))
                 for a, b in ((ok, ref[key]), (ref[key], ok)))
        pair = {"wins": w, "losses": l_, "p": sign_test(w, l_), "difference": (w - l_) / len(ok)}
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


def interval(x: float, lo: float, hi: float) -> str:
    """``x [lo, hi]`` in two decimals, or — if x does not exist."""
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f} [{lo:.2f}, {hi:.2f}]"
