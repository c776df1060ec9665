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


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_L = (6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01,
      2.222219843214978396e-01, 1.818357216161805012e-01, 1.531383769920937332e-01,
      1.479819860511658591e-01)  # fmt: skip


def go_log(x: float) -> float:
    """Go's math.Log (src/math/log.go, FreeBSD's e_log.c), ported because glibc's log rounds
    differently in the last bit (ln(3): glibc ...098, Go ...096), and ln/log2/log10 answer with Go's."""
    if math.isnan(x) or x == math.inf:
        return x
    if x < 0:
        return math.nan
    if x == 0:
        return -math.inf
    f1, ki = math.frexp(x)
    if f1 < math.sqrt(2) / 2:
        f1 *= 2
        ki -= 1
    f = f1 - 1
    k = float(ki)
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_L[0] + s4 * (_L[2] + s4 * (_L[4] + s4 * _L[6])))
    t2 = s4 * (_L[1] + s4 * (_L[3] + s4 * _L[5]))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def log(xs: FloatArray) -> FloatArray:
    """Elementwise go_log."""
    return np.asarray(np.vectorize(go_log, otypes=[np.float64])(xs), dtype=np.float64)
