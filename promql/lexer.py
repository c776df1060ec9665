"""Tokens of PromQL, with the offset of each so parse errors can point at the construct."""

from __future__ import annotations

import re
from dataclasses import dataclass

from promql.errors import ParseError

DURATION_UNITS_MS = {
    "y": 365 * 86400_000,
    "w": 7 * 86400_000,
    "d": 86400_000,
    "h": 3600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")
_DURATION_PART = re.compile(r"([0-9]+)(ms|[smhdwy])")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# Prometheus' lexer reads ASCII only: str.isdigit/isalpha/isspace would let "²", "µ" or U+3000
# through to the regexes above, which do not match them.
_SPACE = frozenset(" \t\n\r")
_DIGITS = frozenset("0123456789")
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")
_INT64_MAX = 2**63 - 1
_OPERATORS = (
    "=~",
    "!~",
    "!=",
    "==",
    ">=",
    "<=",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "^",
    ">",
    "<",
    "@",
    ":",
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, duration, string, op, eof
    text: str
    pos: int
    value: float | int | str | None = None


def parse_duration(text: str, pos: int = 0) -> int:
    """A Prometheus duration (`1h30m`, `500ms`) in milliseconds; units must descend."""
    if not _DURATION.fullmatch(text):
        raise ParseError(pos, f'bad duration "{text}"')
    total, last_rank = 0, -1
    ranks = list(DURATION_UNITS_MS)
    for amount, unit in _DURATION_PART.findall(text):
        rank = ranks.index(unit)
        if rank <= last_rank:
            raise ParseError(pos, f'bad duration "{text}": units out of order')
        last_rank = rank
        total += int(amount) * DURATION_UNITS_MS[unit]
    return total


def tokenize(source: str) -> list[Token]:
    """Split a PromQL expression into tokens, dropping whitespace and `#` comments."""
    tokens: list[Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in _SPACE:
            i += 1
        elif ch == "#":
            while i < n and source[i] != "\n":
                i += 1
        elif ch in "\"'`":
            text, end = _read_string(source, i)
            tokens.append(Token("string", source[i:end], i, text))
            i = end
        elif ch in _DIGITS or (ch == "." and i + 1 < n and source[i + 1] in _DIGITS):
            i = _read_number_or_duration(source, i, tokens)
        elif ch in _IDENT_START:
            match = _IDENT.match(source, i)
            assert match is not None
            tokens.append(Token("ident", match.group(), i))
            i = match.end()
        else:
            op = next((o for o in _OPERATORS if source.startswith(o, i)), None)
            if op is None:
                raise ParseError(i, f"unexpected character: {ch!r}")
            tokens.append(Token("op", op, i))
            i += len(op)
    tokens.append(Token("eof", "", n))
    return tokens


def _read_number_or_duration(source: str, i: int, tokens: list[Token]) -> int:
    duration = _DURATION.match(source, i)
    number = _NUMBER.match(source, i)
    assert number is not None
    if duration and duration.end() > number.end():
        tokens.append(Token("duration", duration.group(), i, parse_duration(duration.group(), i)))
        return duration.end()
    text = number.group()
    if text[:2] in ("0x", "0X"):
        whole = int(text, 16)
        if whole > _INT64_MAX:  # Go's ParseInt(s, 0, 64) refuses it, and ParseFloat has no hex ints
            raise ParseError(i, f'bad number "{text}"')
        value = float(whole)
    else:
        value = float(text)
    tokens.append(Token("number", text, i, value))
    return number.end()


def _read_string(source: str, start: int) -> tuple[str, int]:
    quote, i = source[start], start + 1
    out: list[str] = []
    while i < len(source):
        ch = source[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\" and quote != "`":
            i += 1
            if i >= len(source):
                break
            esc = source[i]
            if esc in _ESCAPES:
                out.append(_ESCAPES[esc])
            elif esc in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[esc]
                digits = source[i + 1 : i + 1 + width]
                if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise ParseError(i, f"invalid escape sequence \\{esc}{digits}")
                code = int(digits, 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:  # not a rune: Go's Unquote refuses it
                    raise ParseError(i, f"invalid escape sequence \\{esc}{digits}")
                out.append(chr(code))
                i += width
            else:
                raise ParseError(i, f"unknown escape sequence {esc!r}")
        elif ch == "\n" and quote != "`":
            raise ParseError(i, "unterminated quoted string")
        else:
            out.append(ch)
        i += 1
    raise ParseError(start, "unterminated quoted string")
