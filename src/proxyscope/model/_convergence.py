"""Vectorized convergence diagnostics: rank-normalized split R-hat and bulk/tail ESS.

The method is that of Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021),
"Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC", Bayesian Analysis 16(2):667-718. The functions here compute it for
many scalar parameters at once (an array ``(..., chain, draw)``) and reproduce the numbers
of ArviZ 0.23 (``az.rhat(method="rank")``, ``az.ess(method="bulk")`` and
``az.ess(method="tail")``) up to floating-point rounding, including ArviZ's details:

* chains are split in halves; with an odd number of draws the middle draw is dropped;
* rank normalization uses average ranks for ties, the Blom offset ``(r - 3/8) / (S + 1/4)``
  over all ``S`` split draws, then the standard normal quantile;
* R-hat is the larger of the split R-hat of the rank-normalized draws and of the
  rank-normalized draws folded about their median;
* ESS uses the FFT autocovariance and Geyer's initial monotone sequence as ArviZ truncates
  it (the last even lag is kept when positive, ``tau`` is bounded below by
  ``1 / log10(S)``); an array that does not vary has ESS ``S``;
* tail ESS is the smaller of the ESS of the indicators ``draw <= q`` at the 5% and 95%
  quantiles (R's type 7 quantile of all draws, as ``scipy.stats.mstats.mquantiles``);
* NaN draws give NaN; R-hat needs 2 chains and ESS and R-hat need 4 draws, else NaN.

One deliberate difference: draws are cast to float64 first, so a float32 input is folded
about a float64 median (ArviZ folds it in float32).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import scipy.fft
import scipy.special

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

TAIL_PROB = (0.05, 0.95)
_BLOM = 3.0 / 8.0  # Blom's fractional offset of the rank normalization
_MIN_DRAWS = 4
# Rows are processed in blocks of about this many bytes of draws (small blocks keep the
# temporaries in cache and off the page-fault path), on up to _MAX_WORKERS threads.
_CHUNK_BYTES = 2**19
_MAX_WORKERS = 4
_ALL = ("rhat", "bulk", "tail")


def _split_chains(x: FloatArray) -> FloatArray:
    """``(n, chain, draw)`` -> ``(n, 2 chain, draw // 2)``: first halves, then second halves."""
    half = x.shape[2] // 2
    return np.concatenate([x[:, :, :half], x[:, :, x.shape[2] - half :]], axis=1)


def _blom_scores(ranks: FloatArray, size: int) -> FloatArray:
    """Normal scores of (1-based, possibly averaged) ranks among ``size`` values."""
    out: FloatArray = scipy.special.ndtri((ranks - _BLOM) / (size - 2 * _BLOM + 1))
    return out


def _normal_scores(srt: FloatArray) -> FloatArray:
    """Rank-normal scores of the values of sorted rows, in sorted order.

    Equal values share their average rank (``scipy.stats.rankdata(method="average")``).
    """
    n_rows, size = srt.shape
    scores: FloatArray = np.broadcast_to(_blom_scores(np.arange(1.0, size + 1.0), size), srt.shape)
    # same[:, j] = value j equals value j - 1, with a 0 before and after every row so that
    # runs of equal values never cross rows once flattened.
    same = np.zeros((n_rows, size + 1), dtype=np.int8)
    np.equal(srt[:, 1:], srt[:, :-1], out=same[:, 1:size], casting="unsafe")
    step = np.diff(same.reshape(-1))
    first = np.flatnonzero(step == 1)  # a run starts at this (padded, flat) position
    last = np.flatnonzero(step == -1)  # ... and ends here
    if first.size == 0:
        return scores
    width = size + 1
    row = first // width
    average = (first + last) / 2.0 - row * width + 1.0  # average of 1-based ranks
    length = last - first + 1
    start = np.repeat(first - row, length)  # positions in the unpadded flat array
    offset = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    scores = scores.copy()
    scores.reshape(-1)[start + offset] = np.repeat(_blom_scores(average, size), length)
    return scores


def _row_offsets(n_rows: int, n: int) -> IntArray:
    return np.arange(0, n_rows * n, n)[:, None]


def _gather(values: FloatArray, order: IntArray) -> FloatArray:
    """``out[i, j] = values[i, order[i, j]]``."""
    out: FloatArray = values.reshape(-1)[order + _row_offsets(*order.shape)]
    return out


def _gather_index(index: IntArray, order: IntArray) -> IntArray:
    """``out[i, j] = index[i, order[i, j]]``."""
    out: IntArray = index.reshape(-1)[order + _row_offsets(*order.shape)]
    return out


def _scatter(values: FloatArray, order: IntArray) -> FloatArray:
    """``out[i, order[i, j]] = values[i, j]``."""
    out = np.empty(order.shape)
    out.reshape(-1)[order + _row_offsets(*order.shape)] = values
    return out


def _rhat(z: FloatArray) -> FloatArray:
    """Classic R-hat of each ``z[i]`` (chains already split)."""
    d = z.shape[2]
    between = d * np.var(z.mean(axis=2), axis=1, ddof=1)
    within = np.var(z, axis=2, ddof=1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.sqrt((between / within + d - 1) / d)
    return out


def _ess(x: FloatArray) -> FloatArray:
    """ESS of each ``x[i]`` (chains already split), Geyer's initial monotone sequence."""
    n, m, d = x.shape
    size = m * d
    chain_mean = x.mean(axis=2)
    # Autocovariance averaged over chains: the chains' power spectra summed, one inverse FFT.
    nfft = scipy.fft.next_fast_len(2 * d, real=True)
    spec = scipy.fft.rfft(x - chain_mean[:, :, None], n=nfft, axis=2)
    power = (spec.real**2 + spec.imag**2).sum(axis=1)
    acov = scipy.fft.irfft(power, n=nfft, axis=1)[:, :d] / (d * m)

    mean_var = acov[:, 0] * d / (d - 1.0)
    var_plus = mean_var * (d - 1.0) / d + np.var(chain_mean, axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - acov) / var_plus[:, None]
    rho[:, 0] = 1.0

    # Sums of the autocorrelations at lags (2k, 2k + 1). Like ArviZ, look at pairs
    # k = 1..k_max while the previous sum is positive; the pair that ends the sequence
    # (sum <= 0, or k_max) adds only its even lag, when that is positive (or the sum is 0).
    n_pairs = d // 2
    pair = rho[:, 0 : 2 * n_pairs : 2] + rho[:, 1 : 2 * n_pairs : 2]
    k_max = max(0, (d - 1) // 2 - 1)
    if k_max:
        stop = pair[:, 1 : k_max + 1] <= 0
        stop[:, -1] = True
        k_last = np.argmax(stop, axis=1) + 1
    else:
        k_last = np.zeros(n, dtype=np.intp)
    k_last[~(pair[:, 0] > 0)] = 0
    rows = np.arange(n)
    even = rho[rows, 2 * k_last]
    last_even = np.where((pair[rows, k_last] >= 0) | (even > 0), even, 0.0)
    last_even[k_last == 0] = 1.0
    # Initial monotone sequence: every pair sum capped by the previous (capped) one.
    monotone = np.minimum.accumulate(pair, axis=1)
    kept = np.arange(n_pairs) < k_last[:, None]
    tau = -1.0 + 2.0 * np.where(kept, monotone, 0.0).sum(axis=1) + last_even
    tau = np.maximum(tau, 1.0 / np.log10(size))
    ess: FloatArray = size / tau
    ess[np.isnan(rho).any(axis=1)] = np.nan
    ess[np.ptp(x, axis=(1, 2)) < np.finfo(np.float64).resolution] = size
    return ess


def _quantiles(srt: FloatArray, prob: tuple[float, float]) -> FloatArray:
    """R's type 7 quantiles (``mquantiles(alphap=1, betap=1)``) of sorted rows, ``(n, 2)``."""
    size = srt.shape[1]
    p = np.asarray(prob, dtype=np.float64)
    aleph = size * p + (1.0 - p)
    k = np.floor(aleph.clip(1, size - 1)).astype(np.intp)
    gamma = (aleph - k).clip(0, 1)
    with np.errstate(invalid="ignore"):  # infinite draws: 0 * inf
        out: FloatArray = (1.0 - gamma) * srt[:, k - 1] + gamma * srt[:, k]
    return out


def _diagnose_rows(
    x: FloatArray, which: tuple[str, ...], prob: tuple[float, float]
) -> dict[str, FloatArray]:
    """The diagnostics of ``x`` (n, chain, draw >= 4) without NaN."""
    n, _, n_draw = x.shape
    split = _split_chains(x)
    size = split.shape[1] * split.shape[2]  # always even
    flat = split.reshape(n, size)
    order = np.argsort(flat, axis=1)
    srt = _gather(flat, order)
    out = {}
    if "rhat" in which or "bulk" in which:
        z = _scatter(_normal_scores(srt), order).reshape(split.shape)
        if "bulk" in which:
            out["bulk"] = _ess(z)
        if "rhat" in which:
            bulk = _rhat(z)
            # Fold about the median; in sorted order |srt - median| is a descending then an
            # ascending run, which a stable (merge) sort orders in linear time.
            with np.errstate(invalid="ignore"):  # infinite draws: inf - inf
                median = (srt[:, size // 2 - 1] + srt[:, size // 2]) / 2.0
                folded = np.abs(srt - median[:, None])
            order_f = np.argsort(folded, axis=1, kind="stable")
            scores_f = _normal_scores(_gather(folded, order_f))
            z_f = _scatter(scores_f, _gather_index(order, order_f))
            tail = _rhat(z_f.reshape(split.shape))
            tail[~np.isfinite(median)] = np.nan  # folding inf about inf gives NaN
            out["rhat"] = np.where(tail > bulk, tail, bulk)  # max() as ArviZ takes it
    if "tail" in which:
        # With an even number of draws the split chains hold every draw.
        every = srt if n_draw % 2 == 0 else np.sort(x.reshape(n, -1), axis=1)
        q = _quantiles(every, prob)
        low = _ess((split <= q[:, 0, None, None]).astype(np.float64))
        high = _ess((split <= q[:, 1, None, None]).astype(np.float64))
        out["tail"] = np.where(high < low, high, low)  # min() as ArviZ takes it
    return out


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _compute(
    draws: npt.ArrayLike, which: tuple[str, ...], prob: tuple[float, float] = TAIL_PROB
) -> list[FloatArray]:
    """The diagnostics named in ``which`` ("rhat", "bulk", "tail"), each of the leading shape."""
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"draws must have shape (..., chain, draw), got {x.shape}")
    lead, (n_chain, n_draw) = x.shape[:-2], x.shape[-2:]
    x = x.reshape(math.prod(lead), n_chain, n_draw)
    results = {name: np.full(x.shape[0], np.nan) for name in which}
    if n_chain < 2:
        which = tuple(name for name in which if name != "rhat")  # R-hat needs 2 chains
    if n_chain and n_draw >= _MIN_DRAWS and which:
        rows = np.flatnonzero(~np.isnan(x).any(axis=(1, 2)))
        step = max(1, _CHUNK_BYTES // (8 * n_chain * n_draw))
        blocks = [rows[lo : lo + step] for lo in range(0, rows.size, step)]

        def run(block: IntArray) -> dict[str, FloatArray]:
            return _diagnose_rows(x[block], which, prob)

        workers = min(_MAX_WORKERS, _n_cpus(), len(blocks))
        if workers > 1:  # numpy and scipy.fft release the GIL
            with ThreadPoolExecutor(workers) as pool:
                done = list(pool.map(run, blocks))
        else:
            done = [run(block) for block in blocks]
        for block, values in zip(blocks, done, strict=True):
            for name, v in values.items():
                results[name][block] = v
    return [results[name].reshape(lead) for name in results]


def rhat_rank(draws: npt.ArrayLike) -> FloatArray:
    """Rank-normalized split R-hat (``az.rhat(method="rank")``) of each (chain, draw) array.

    ``draws`` has shape ``(..., chain, draw)``; the result has shape ``(...)``.
    """
    return _compute(draws, ("rhat",))[0]


def ess_bulk(draws: npt.ArrayLike) -> FloatArray:
    """Bulk ESS (``az.ess(method="bulk")``) of each (chain, draw) array of ``draws``."""
    return _compute(draws, ("bulk",))[0]


def ess_tail(draws: npt.ArrayLike, prob: tuple[float, float] = TAIL_PROB) -> FloatArray:
    """Tail ESS (``az.ess(method="tail")``) of each (chain, draw) array of ``draws``."""
    return _compute(draws, ("tail",), prob)[0]


def diagnose(draws: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """R-hat, bulk ESS and tail ESS of each (chain, draw) array, sharing the sorting."""
    rhat, bulk, tail = _compute(draws, _ALL)
    return rhat, bulk, tail
