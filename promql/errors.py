"""Errors of the PromQL engine, shaped like Prometheus' own messages."""

from __future__ import annotations


class PromQLError(Exception):
    """Any refusal of the engine; callers catch this one type."""


class ParseError(PromQLError):
    """A syntax or type error at a character offset (`1:5: parse error: ...` as Prometheus prints)."""

    def __init__(self, pos: int, message: str) -> None:
        self.pos, self.message = pos, message
        super().__init__(f"1:{pos + 1}: parse error: {message}")


class Unsupported(ParseError):
    """Valid PromQL that talonflow refuses by name (a function it does not evaluate), so that an
    API can tell "not implemented" from "wrong"."""


class QueryTimeout(PromQLError):
    """Evaluation ran past its deadline: one query must not pin a CPU (`x[100y:1ms]`), as
    Prometheus' `--query.timeout` ensures."""

    def __init__(self) -> None:
        super().__init__("query timed out in expression evaluation")


class EvalError(PromQLError):
    """A query that parsed but cannot be evaluated (duplicate label sets, many-to-many matches)."""
