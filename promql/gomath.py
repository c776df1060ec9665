"""Go's math.Atan2, ported (src/math/atan.go, atan2.go), because libm's atan2 differs from Go's in
the last bit and Prometheus answers `atan2` with Go's."""

from __future__ import annotations

import math

import numpy as np

from promql.values import FloatArray

_P = (-8.750608600031904122785e-01, -1.615753718733365076637e01, -7.500855792314704667340e01,
      -1.228866684490136173410e02, -6.485021904942025371773e01)  # fmt: skip
_Q = (2.485846490142306297962e01, 1.650270098316988542046e02, 4.328810604912902668951e02,
      4.853903996359136964868e02, 1.945506571482613964425e02)  # fmt: skip
_MOREBITS = 6.123233995736765886130e-17  # pi/2 = PIO2 + Morebits
_TAN3PIO8 = 2.41421356237309504880


def _xatan(x: float) -> float:
    z = x * x
    z = (
        z
        * ((((_P[0] * z + _P[1]) * z + _P[2]) * z + _P[3]) * z + _P[4])
        / (((((z + _Q[0]) * z + _Q[1]) * z + _Q[2]) * z + _Q[3]) * z + _Q[4])
    )
    return x * z + x


def _satan(x: float) -> float:
    if x <= 0.66:
        return _xatan(x)
    if x > _TAN3PIO8:
        return math.pi / 2 - _xatan(1 / x) + _MOREBITS
    return math.pi / 4 + _xatan((x - 1) / (x + 1)) + 0.5 * _MOREBITS


def _atan(x: float) -> float:
    if x == 0:
        return x
    return _satan(x) if x > 0 else -_satan(-x)


def go_atan2(y: float, x: float) -> float:
    if math.isnan(y) or math.isnan(x):
        return math.nan
    if y == 0:
        return math.copysign(0.0, y) if x >= 0 and math.copysign(1.0, x) > 0 else math.copysign(math.pi, y)
    if x == 0:
        return math.copysign(math.pi / 2, y)
    if math.isinf(x):
        if x > 0:
            return math.copysign(math.pi / 4, y) if math.isinf(y) else math.copysign(0.0, y)
        return math.copysign(3 * math.pi / 4, y) if math.isinf(y) else math.copysign(math.pi, y)
    if math.isinf(y):
        return math.copysign(math.pi / 2, y)
    q = _atan(y / x)
    if x < 0:
        return q + math.pi if q <= 0 else q - math.pi
    return q


def atan2(y: FloatArray | np.float64, x: FloatArray | np.float64) -> FloatArray:
    """Elementwise go_atan2, for the `atan2` operator."""
    return np.asarray(np.vectorize(go_atan2, otypes=[np.float64])(y, x), dtype=np.float64)
