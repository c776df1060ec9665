"""All series of one selector in three flat arrays, so that a step's windows are found for every
series with one binary search and counter functions are computed for every series at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from promql.values import FloatArray, IntArray, Labels, Series, is_stale


@dataclass
class PackedSeries:
    """Series i holds samples bounds[i]:bounds[i+1] of ts/vs; keys = i * span + (ts - base) is
    sorted across all series, which lets np.searchsorted answer every series in one call."""

    labels: list[Labels]
    ts: IntArray
    vs: FloatArray
    bounds: IntArray
    base: int
    span: int
    keys: IntArray = field(repr=False)

    @classmethod
    def pack(cls, series: list[Series]) -> PackedSeries:
        n = len(series)
        lengths = np.fromiter((len(s.timestamps) for s in series), dtype=np.int64, count=n)
        bounds = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=bounds[1:])
        if int(bounds[-1]) == 0:
            empty = np.empty(0, dtype=np.int64)
            return cls([s.labels for s in series], empty, np.empty(0), bounds, 0, 1, empty)
        ts = np.concatenate([s.timestamps for s in series]).astype(np.int64, copy=False)
        vs = np.concatenate([s.values for s in series]).astype(np.float64, copy=False)
        base = int(ts.min())
        span = int(ts.max()) - base + 1
        keys = np.repeat(np.arange(n, dtype=np.int64), lengths) * span + (ts - base)
        return cls([s.labels for s in series], ts, vs, bounds, base, span, keys)

    def without_stale(self) -> PackedSeries:
        """The same series without staleness markers, which range windows never see."""
        keep = ~is_stale(self.vs)
        if keep.all():
            return self
        kept_before = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(keep, out=kept_before[1:])
        bounds = kept_before[self.bounds]
        return PackedSeries(
            self.labels, self.ts[keep], self.vs[keep], bounds, self.base, self.span, self.keys[keep]
        )

    def _targets(self, t: int, low: int, high: int) -> IntArray:
        """Each series' key for time t, clamped to its own key range [low, high] of offsets."""
        offset = min(max(t - self.base, low), high)
        return np.arange(len(self.labels), dtype=np.int64) * self.span + offset

    def first_from(self, t: int) -> IntArray:
        """Per series, the index of its first sample at or after t (its end bound if none)."""
        return np.searchsorted(self.keys, self._targets(t, 0, self.span), "left").astype(np.int64)

    def end_at(self, t: int) -> IntArray:
        """Per series, one past the index of its last sample at or before t."""
        return np.searchsorted(self.keys, self._targets(t, -1, self.span - 1), "right").astype(np.int64)

    @cached_property
    def _same_series_pair(self) -> np.ndarray:
        """pair[j]: sample j and j-1 belong to the same series (j >= 1)."""
        pair = np.ones(len(self.ts), dtype=bool)
        pair[self.bounds[:-1][self.bounds[:-1] < len(self.ts)]] = False
        return pair

    def _prefix(self, flags: np.ndarray) -> IntArray:
        out = np.zeros(len(flags) + 1, dtype=np.int64)
        np.cumsum(flags, out=out[1:])
        return out

    @cached_property
    def reset_prefix(self) -> IntArray:
        """reset_prefix[k]: how many samples before k are lower than the one before them."""
        drop = np.zeros(len(self.ts), dtype=bool)
        drop[1:] = self.vs[1:] < self.vs[:-1]
        return self._prefix(drop & self._same_series_pair)

    @cached_property
    def change_prefix(self) -> IntArray:
        """change_prefix[k]: how many samples before k differ from the one before them (NaN = NaN)."""
        changed = np.zeros(len(self.ts), dtype=bool)
        cur, prev = self.vs[1:], self.vs[:-1]
        changed[1:] = (cur != prev) & ~(np.isnan(cur) & np.isnan(prev))
        return self._prefix(changed & self._same_series_pair)
