"""`_ordered` puts samples in (series, time) order keeping a repeated timestamp's first sample,
whether the samples come in long chained runs (put in order run by run) or not (sorted)."""

from __future__ import annotations

import numpy as np
import pytest

from console.point_series import _in_runs, _ordered, _Samples


def _reference(samples: _Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((samples.position, samples.run, samples.timestamps, samples.series))
    index, timestamps = samples.series[order], samples.timestamps[order]
    first = np.concatenate(([True], (index[1:] != index[:-1]) | (timestamps[1:] != timestamps[:-1])))
    return index[first], timestamps[first], samples.values[order][first]


def _files(rng: np.random.Generator, files: int, series: int, per_file: int, overlap: int) -> _Samples:
    """Files read one after the other, each holding its series in runs of rising time (sorted by
    source, as a copy is), the series' indexes shuffled against the sources' order; `overlap` ms
    of each file's times repeat the end of the file before it."""
    parts = []
    for f in range(files):
        base = f * per_file * 1000 - (overlap if f else 0)
        for s in rng.permutation(series):
            times = base + np.sort(rng.choice(per_file * 1000 + overlap, per_file, replace=False))
            parts.append((np.full(per_file, s), times, np.full(per_file, f), np.arange(per_file)))
    index, timestamps, run, position = (np.concatenate(c) for c in zip(*parts, strict=True))
    return _Samples(index, timestamps, rng.random(len(index)), run, position)


@pytest.mark.parametrize("seed", range(5))
def test_chained_runs_are_ordered_run_by_run(seed: int) -> None:
    samples = _files(np.random.default_rng(seed), files=6, series=20, per_file=300, overlap=0)
    assert _in_runs(samples.series, samples.timestamps) is not None
    for got, want in zip(_ordered(samples), _reference(samples), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(5))
def test_overlapping_or_repeated_times_are_sorted(seed: int) -> None:
    samples = _files(np.random.default_rng(seed), files=6, series=20, per_file=300, overlap=5_000)
    assert _in_runs(samples.series, samples.timestamps) is None  # files overlap: runs do not chain
    for got, want in zip(_ordered(samples), _reference(samples), strict=True):
        np.testing.assert_array_equal(got, want)


def test_short_runs_are_sorted() -> None:
    rng = np.random.default_rng(7)
    samples = _files(rng, files=4, series=10, per_file=200, overlap=0)
    shuffled = _Samples(*(column[rng.permutation(len(samples.series))] for column in samples))
    assert _in_runs(shuffled.series, shuffled.timestamps) is None
    for got, want in zip(_ordered(shuffled), _reference(shuffled), strict=True):
        np.testing.assert_array_equal(got, want)
