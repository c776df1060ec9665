"""Value types shared by every config and rule model: durations, sizes, ports, strict models.

Durations read "250ms", "5s", "2m", "7d" (or plain seconds); sizes read "4MiB", "512KiB" (or
plain bytes). Kept apart from schemas/config.py so that the models it includes can use them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": 1024,
    "kb": 1000,
    "mib": 1024**2,
    "mb": 1000**2,
    "gib": 1024**3,
    "gb": 1000**3,
}


def _parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s', '2m' or '7d'")
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*", str(value))
    if not match:
        raise ValueError(f"invalid duration {value!r}: expected a number with a unit (ms, s, m, h, d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _parse_size(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a size such as '4MiB'")
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B|B)?\s*", str(value), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"invalid size {value!r}: expected bytes or a number with B, KiB, MiB or GiB")
    return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]


Seconds = Annotated[float, BeforeValidator(_parse_duration), Field(ge=0)]
Bytes = Annotated[int, BeforeValidator(_parse_size), Field(gt=0)]
BytesOrOff = Annotated[int, BeforeValidator(_parse_size), Field(ge=0)]  # 0 turns the cache off
Port = Annotated[int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    """Unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
