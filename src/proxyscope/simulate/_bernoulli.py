"""Both potential outcomes of a Bernoulli draw made with ``rng.binomial(1, p)``.

numpy's ``Generator.binomial`` uses, for ``n * min(p, 1 - p) <= 30``, the
inversion algorithm. With ``n = 1`` and ``U`` the next double of the stream
(the same double ``rng.random()`` would return), it is:

- ``p == 0``: return 0 and consume nothing;
- ``0 < p <= 0.5``: with ``qn = exp(log1p(-p))`` (``exp(log(1 - p))`` before
  numpy 2.4), return 1 iff ``U > qn`` — except that when
  ``U - qn > p * qn / (1 - p)`` (possible only for ``U`` within rounding of 1)
  it discards ``U`` and starts again with the next double;
- ``p > 0.5``: the same on ``p' = 1 - p``, returning one minus the result:
  1 iff ``U <= exp(log1p(-(1 - p)))``.

So one double per draw (two, with probability ~2^-53), and a draw can be
replayed from its ``U``. Here the doubles are drawn with ``rng.random`` at the
binomial's place in the stream, the observed outcome is computed with the
rule above for the observed probability (identical to ``rng.binomial``), and
the other arm's outcome uses the *same branch* of the rule with its own
probability. Both branches are exact Bernoulli(p) rules for any p; using one
branch per user makes the coupling monotone: ``Y(1) >= Y(0)`` iff ``p1 >= p0``.

``exp``/``log1p`` are evaluated with numpy for speed; wherever ``U`` lies
within a few ulps of the threshold the threshold is recomputed with the C
library (``math``), which is what numpy's C code calls, so the result is
exact even where numpy's vectorized functions round differently.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

_NEAR_ULPS = 4.0  # recompute thresholds exactly within this many ulps of U
_PCG64_MULT = 0x2360ED051FC65DA44385DF649FCCF645


def _generator_with_next_double(u: float) -> np.random.Generator:
    """A PCG64 generator whose next double is ``u`` (a multiple of 2**-53 in [0, 1))."""
    k = int(u * 2**53)
    high = 0x0123456789ABCDEF & ((1 << 58) - 1)  # top 6 bits 0: XSL-RR rotation 0
    state = (high << 64) | ((k << 11) ^ high)
    gen = np.random.Generator(np.random.PCG64(0))
    st: dict[str, Any] = dict(gen.bit_generator.state)
    inner = dict(st["state"])
    inner["state"] = ((state - inner["inc"]) * pow(_PCG64_MULT, -1, 1 << 128)) % (1 << 128)
    st["state"] = inner
    st["has_uint32"] = 0
    gen.bit_generator.state = st
    return gen


@functools.cache
def _uses_log1p() -> bool:
    """Whether this numpy's inversion threshold is exp(log1p(-p)) (numpy >= 2.4) or exp(log(1-p)).

    Decided once by replaying a draw whose uniform lies between the two
    thresholds for p = 0.3.
    """
    p = 0.3
    new, old = math.exp(math.log1p(-p)), math.exp(math.log(1.0 - p))
    if new == old:  # pragma: no cover - depends on the C library
        return True
    u = max(new, old)
    drew = int(_generator_with_next_double(u).binomial(1, p))
    # U > threshold is false only when the threshold is the larger of the two.
    larger_is_new = new > old
    return (drew == 0) == larger_is_new


def _threshold(pp: np.ndarray) -> np.ndarray:
    """numpy's qn for inversion probability ``pp`` (vectorized, may be 1 ulp off)."""
    with np.errstate(divide="ignore"):
        if _uses_log1p():
            return np.exp(np.log1p(-pp))
        return np.exp(np.log(1.0 - pp))


def _threshold_scalar(pp: float) -> float:
    """numpy's qn for inversion probability ``pp``, with the C library's exp/log."""
    try:
        inner = math.log1p(-pp) if _uses_log1p() else math.log(1.0 - pp)
    except ValueError:  # log(0): pp == 1
        return 0.0
    return math.exp(inner)


def _exact_threshold(u: np.ndarray, pp: np.ndarray) -> np.ndarray:
    """Thresholds for ``pp``, exact wherever ``u`` is close enough to matter."""
    qn = _threshold(pp)
    near = np.abs(u - qn) <= _NEAR_ULPS * np.spacing(np.maximum(qn, 2.0**-1022))
    for i in np.flatnonzero(near):
        qn[i] = _threshold_scalar(float(pp[i]))
    return qn


def _branch_low(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """numpy's rule for p <= 0.5, applied to any p: 1 iff u > qn(p)."""
    return u > _exact_threshold(u, p)


def _branch_high(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """numpy's rule for p > 0.5, applied to any p: 1 iff u <= qn(1 - p)."""
    return u <= _exact_threshold(u, 1.0 - p)


def _retried(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Where numpy's inversion loop would discard ``u`` and draw again (n = 1)."""
    pp = np.where(p <= 0.5, p, 1.0 - p)  # the probability the inversion runs on
    q = 1.0 - pp
    qn = _threshold(pp)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Loose screen (only u within ~1e-15 of 1 can pass), then the exact test.
        maybe = (u - qn) > (pp * qn) / q - 1e-15
    out = np.zeros(u.shape, dtype=bool)
    for i in np.flatnonzero(maybe):
        ppi = float(pp[i])
        qni = _threshold_scalar(ppi)
        ui = float(u[i])
        out[i] = ui > qni and (ui - qni) > (ppi * qni) / (1.0 - ppi)
    return out


def binomial_uniforms(
    rng: np.random.Generator, p: np.ndarray, aux: np.random.Generator | None = None
) -> np.ndarray:
    """The double ``rng.binomial(1, p)`` would decide each draw with, consuming the same stream.

    Parameters
    ----------
    rng : numpy.random.Generator
        Advanced exactly as ``rng.binomial(1, p)`` would advance it.
    p : numpy.ndarray
        Probabilities in [0, 1] (the observed arm's), 1-D.
    aux : numpy.random.Generator, optional
        Source of a uniform for draws with ``p == 0``, which numpy answers
        without consuming the stream (used only for the other arm's outcome).

    Returns
    -------
    numpy.ndarray
        One double in [0, 1) per draw.
    """
    zero = p == 0.0
    n_zero = int(np.count_nonzero(zero))
    live_p = p[~zero] if n_zero else p
    u = rng.random(live_p.shape[0])
    pos = 0
    while True:  # numpy's retry branch: probability ~2**-53 per draw, replayed exactly
        hit = np.flatnonzero(_retried(u[pos:], live_p[pos:]))
        if hit.size == 0:
            break
        i = pos + int(hit[0])
        u = np.concatenate([u[:i], u[i + 1 :], rng.random(1)])
        pos = i
    if not n_zero:
        return u
    full = np.empty(p.shape[0])
    full[~zero] = u
    full[zero] = (aux if aux is not None else np.random.default_rng(0)).random(n_zero)
    return full


def bernoulli_pair(
    u: np.ndarray, p_obs: np.ndarray, p0: np.ndarray, p1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Y(0), Y(1) from one uniform per user, with numpy's branch chosen by the observed p.

    For the arm whose probability is ``p_obs`` the result equals
    ``rng.binomial(1, p_obs)`` bit for bit, given ``u`` from
    :func:`binomial_uniforms`.

    Returns
    -------
    tuple of numpy.ndarray
        int64 arrays of 0/1.
    """
    low = p_obs <= 0.5
    out = []
    for p in (p0, p1):
        y = np.empty(p.shape[0], dtype=np.int64)
        y[low] = _branch_low(u[low], p[low])
        y[~low] = _branch_high(u[~low], p[~low])
        out.append(y)
    return out[0], out[1]
