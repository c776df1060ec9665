"""PromQL parser: a precedence-climbing parser with Prometheus' grammar and type checks.

Hand-written rather than the PyPI `promql-parser` (Rust bindings of GreptimeTeam's parser):
its errors carry no position ("invalid promql query" for `foo bar`), and owning the tree lets
the parser refuse constructs outside talonflow's subset by name, which a rule file needs.
"""

from __future__ import annotations

import re
from dataclasses import replace

from promql.ast import (
    Aggregate,
    Binary,
    Call,
    Expr,
    Matcher,
    MatrixSelector,
    NumberLiteral,
    Paren,
    StringLiteral,
    Subquery,
    Unary,
    ValueType,
    VectorMatching,
    VectorSelector,
)
from promql.errors import ParseError, Unsupported
from promql.lexer import Token, parse_duration, tokenize
from promql.signatures import AGGREGATION_PARAM, AGGREGATIONS, FUNCTIONS, KNOWN_UNSUPPORTED

PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    "==": 3,
    "!=": 3,
    "<=": 3,
    "<": 3,
    ">=": 3,
    ">": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
    "atan2": 5,
    "^": 6,
}
COMPARISONS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
SET_OPERATORS = frozenset({"and", "or", "unless"})
_UNARY_PRECEDENCE = 6  # unary minus binds tighter than * but looser than ^, as in Prometheus


def parse(source: str) -> Expr:
    """Parse a PromQL expression, raising ParseError naming the position and the problem."""
    parser = _Parser(source, tokenize(source))
    expr = parser.expression(0)
    parser.expect_end()
    return expr


def value_type(expr: Expr) -> ValueType:
    """The static type of an expression, as Prometheus' parser computes it."""
    if isinstance(expr, NumberLiteral):
        return ValueType.SCALAR
    if isinstance(expr, StringLiteral):
        return ValueType.STRING
    if isinstance(expr, MatrixSelector | Subquery):
        return ValueType.MATRIX
    if isinstance(expr, Call):
        return FUNCTIONS[expr.func].returns
    if isinstance(expr, Paren | Unary):
        return value_type(expr.expr)
    if isinstance(expr, Binary):
        scalar = value_type(expr.lhs) == value_type(expr.rhs) == ValueType.SCALAR
        return ValueType.SCALAR if scalar else ValueType.VECTOR
    return ValueType.VECTOR


def compile_regex(pattern: str, pos: int = 0) -> re.Pattern[str]:
    """A label regex (matched with fullmatch: anchored as Prometheus anchors; RE2 is mostly Python's)."""
    try:
        return re.compile(f"(?:{pattern})")
    except re.error as exc:
        raise ParseError(pos, f"invalid regular expression {pattern!r}: {exc}") from None


class _Parser:
    def __init__(self, source: str, tokens: list[Token]) -> None:
        self.source, self.tokens, self.i = source, tokens, 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: Token | None = None) -> ParseError:
        return ParseError((tok or self.tok).pos, message)

    def unexpected(self, context: str) -> ParseError:
        tok = self.tok
        what = "end of input" if tok.kind == "eof" else f'"{tok.text}"'
        return self.error(f"unexpected {what} {context}")

    def accept(self, text: str) -> bool:
        if self.tok.kind in ("op", "ident") and self.tok.text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str, context: str) -> Token:
        if self.tok.kind in ("op", "ident") and self.tok.text == text:
            return self.advance()
        raise self.unexpected(f'{context}, expected "{text}"')

    def expect_end(self) -> None:
        if self.tok.kind != "eof":
            raise self.unexpected("after a complete expression")

    # -- binary expressions -------------------------------------------------------------

    def binary_op(self) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.text in PRECEDENCE:
            return tok.text
        if tok.kind == "ident" and tok.text.lower() in ("and", "or", "unless", "atan2"):
            return tok.text.lower()
        return None

    def expression(self, min_prec: int) -> Expr:
        lhs = self.unary()
        while (op := self.binary_op()) is not None and PRECEDENCE[op] >= min_prec:
            op_tok = self.advance()
            return_bool = self.accept("bool")
            matching = self.vector_matching(op)
            next_prec = PRECEDENCE[op] if op == "^" else PRECEDENCE[op] + 1
            rhs = self.expression(next_prec)
            lhs = self.check_binary(Binary(op, lhs, rhs, matching, return_bool), op_tok)
        return lhs

    def vector_matching(self, op: str) -> VectorMatching | None:
        card = "many-to-many" if op in SET_OPERATORS else "one-to-one"
        labels: tuple[str, ...] = ()
        on = False
        include: tuple[str, ...] = ()
        explicit = False
        if self.tok.kind == "ident" and self.tok.text in ("on", "ignoring"):
            on = self.advance().text == "on"
            labels = self.label_list()
            explicit = True
        if self.tok.kind == "ident" and self.tok.text in ("group_left", "group_right"):
            side = self.advance()
            if op in SET_OPERATORS:
                raise self.error(f'no grouping allowed for "{op}" operation', side)
            card = "many-to-one" if side.text == "group_left" else "one-to-many"
            include = self.label_list() if self.tok.text == "(" else ()
            explicit = True
        if explicit or op in SET_OPERATORS:
            return VectorMatching(card, labels, on, include)
        return VectorMatching(card, (), False, ())

    def check_binary(self, node: Binary, op_tok: Token) -> Binary:
        lt, rt = value_type(node.lhs), value_type(node.rhs)
        for side in (lt, rt):
            if side not in (ValueType.SCALAR, ValueType.VECTOR):
                raise self.error(
                    f"binary expression must contain only scalar and instant vector types, got {side.value}",
                    op_tok,
                )
        if node.return_bool and node.op not in COMPARISONS:
            raise self.error("bool modifier can only be used on comparison operators", op_tok)
        if node.op in COMPARISONS and lt == rt == ValueType.SCALAR and not node.return_bool:
            raise self.error("comparisons between scalars must use BOOL modifier", op_tok)
        if node.op in SET_OPERATORS and ValueType.SCALAR in (lt, rt):
            raise self.error(f'set operator "{node.op}" not allowed in binary scalar expression', op_tok)
        m = node.matching
        both_vectors = lt == rt == ValueType.VECTOR
        if m is not None and (m.labels or m.on or m.card != "one-to-one") and not both_vectors:
            raise self.error("vector matching only allowed between instant vectors", op_tok)
        if m is not None and m.on and set(m.labels) & set(m.include):
            dup = sorted(set(m.labels) & set(m.include))[0]
            raise self.error(f'label "{dup}" must not occur in ON and GROUP clause at once', op_tok)
        return node if both_vectors else Binary(node.op, node.lhs, node.rhs, None, node.return_bool)

    # -- unary, postfix and primary expressions -----------------------------------------

    def unary(self) -> Expr:
        if self.tok.kind == "op" and self.tok.text in ("-", "+"):
            op_tok = self.advance()
            operand = self.expression(_UNARY_PRECEDENCE)
            if value_type(operand) not in (ValueType.SCALAR, ValueType.VECTOR):
                raise self.error(
                    "unary expression only allowed on expressions of type scalar or instant vector", op_tok
                )
            if isinstance(operand, NumberLiteral):
                return NumberLiteral(-operand.value if op_tok.text == "-" else operand.value)
            return Unary(op_tok.text, operand)
        return self.postfix(self.primary())

    def postfix(self, expr: Expr) -> Expr:
        while True:
            tok = self.tok
            if tok.kind == "op" and tok.text == "[":
                expr = self.range_suffix(expr)
            elif tok.kind == "ident" and tok.text == "offset":
                expr = self.offset_suffix(expr)
            elif tok.kind == "op" and tok.text == "@":
                expr = self.at_suffix(expr)
            else:
                return expr

    def range_suffix(self, expr: Expr) -> Expr:
        open_tok = self.advance()
        rng = self.duration("in range selector")
        if self.tok.kind == "ident" and self.tok.text.startswith(":"):
            return self.subquery(expr, rng, open_tok)
        self.expect("]", "in range selector")
        if not isinstance(expr, VectorSelector):
            raise self.error("ranges only allowed for vector selectors", open_tok)
        if expr.offset_ms or expr.at_ms is not None or expr.at_start_end:
            raise self.error("no offset or @ modifiers allowed before range", open_tok)
        return MatrixSelector(expr, rng)

    def subquery(self, expr: Expr, rng: int, open_tok: Token) -> Subquery:
        """`[range:step]`: the lexer reads `:step` as one identifier (`:` starts metric names)."""
        colon = self.advance()
        step = 0
        if colon.text != ":":
            step = self.positive(parse_duration(colon.text[1:], colon.pos + 1), colon.pos + 1)
        elif self.tok.kind == "duration":
            step = self.duration("in subquery")
        self.expect("]", "in subquery selector")
        if value_type(expr) != ValueType.VECTOR:
            raise self.error(
                f"subquery is only allowed on instant vector, got {type_name(value_type(expr))}", open_tok
            )
        return Subquery(expr, rng, step)

    def offset_suffix(self, expr: Expr) -> Expr:
        tok = self.advance()
        sign = -1 if self.accept("-") else 1
        if self.tok.kind == "op" and self.tok.text == "+":
            self.advance()
        amount = sign * self.duration("in offset")
        if isinstance(expr, Subquery):
            if expr.offset_ms:
                raise self.error("offset may not be set multiple times", tok)
            return replace(expr, offset_ms=amount)
        sel = expr.selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(sel, VectorSelector):
            raise self.error(
                "offset modifier must be preceded by an instant vector selector or range vector selector", tok
            )
        if sel.offset_ms:
            raise self.error("offset may not be set multiple times", tok)
        new = VectorSelector(sel.name, sel.matchers, amount, sel.at_ms, sel.at_start_end)
        return MatrixSelector(new, expr.range_ms) if isinstance(expr, MatrixSelector) else new

    def at_suffix(self, expr: Expr) -> Expr:
        tok = self.advance()
        at_ms: int | None = None
        start_end: str | None = None
        if self.tok.kind == "ident" and self.tok.text in ("start", "end"):
            start_end = self.advance().text
            self.expect("(", "in @ modifier")
            self.expect(")", "in @ modifier")
        else:
            sign = -1.0 if self.accept("-") else 1.0
            if self.tok.kind != "number":
                raise self.unexpected("in @ modifier, expected a timestamp")
            at_ms = round(sign * float(self.advance().value or 0) * 1000)
        if isinstance(expr, Subquery):
            if expr.at_ms is not None or expr.at_start_end:
                raise self.error("@ <timestamp> may not be set multiple times", tok)
            return replace(expr, at_ms=at_ms, at_start_end=start_end)
        sel = expr.selector if isinstance(expr, MatrixSelector) else expr
        if not isinstance(sel, VectorSelector):
            raise self.error(
                "@ modifier must be preceded by an instant vector selector or range vector selector", tok
            )
        if sel.at_ms is not None or sel.at_start_end:
            raise self.error("@ <timestamp> may not be set multiple times", tok)
        new = VectorSelector(sel.name, sel.matchers, sel.offset_ms, at_ms, start_end)
        return MatrixSelector(new, expr.range_ms) if isinstance(expr, MatrixSelector) else new

    def duration(self, context: str) -> int:
        tok = self.tok
        if tok.kind == "duration":
            self.advance()
            return self.positive(int(tok.value or 0), tok.pos)
        raise self.unexpected(f"{context}, expected a duration such as 5m")

    def positive(self, ms: int, pos: int) -> int:
        """Ranges, offsets and subquery steps of 0 are refused, as Prometheus' parser does."""
        if ms <= 0:
            raise ParseError(pos, "duration must be greater than 0")
        return ms

    def primary(self) -> Expr:
        tok = self.tok
        if tok.kind == "number":
            self.advance()
            return NumberLiteral(float(tok.value or 0))
        if tok.kind == "string":
            self.advance()
            return StringLiteral(str(tok.value))
        if tok.kind == "duration":
            raise self.error(f'unexpected duration "{tok.text}"')
        if tok.kind == "op" and tok.text == "(":
            self.advance()
            inner = self.expression(0)
            self.expect(")", "in parenthesized expression")
            return Paren(inner)
        if tok.kind == "op" and tok.text == "{":
            return self.selector(None, tok)
        if tok.kind == "ident":
            return self.identifier()
        raise self.unexpected("where an expression was expected")

    def identifier(self) -> Expr:
        tok = self.advance()
        name = tok.text
        lowered = name.lower()
        if lowered in ("inf", "nan"):
            return NumberLiteral(float(lowered))
        nxt = self.tok
        if lowered in AGGREGATIONS and (nxt.text == "(" or nxt.text in ("by", "without")):
            return self.aggregate(lowered, tok)
        if nxt.kind == "op" and nxt.text == "(":
            return self.call(name, tok)
        return self.selector(name, tok)

    def call(self, name: str, tok: Token) -> Call:
        if name in KNOWN_UNSUPPORTED:
            raise Unsupported(tok.pos, f"function {name}() is not supported by talonflow")
        if name not in FUNCTIONS:
            raise self.error(f'unknown function with name "{name}"', tok)
        self.expect("(", "in function call")
        args: list[Expr] = []
        if not self.accept(")"):
            while True:
                args.append(self.expression(0))
                if self.accept(")"):
                    break
                self.expect(",", "in function call")
        return self.check_call(Call(name, tuple(args)), tok)

    def check_call(self, node: Call, tok: Token) -> Call:
        sig = FUNCTIONS[node.func]
        want, got = sig.args, len(node.args)
        low = len(want) - sig.optional
        if got < low or (got > len(want) and not sig.variadic):
            count = f"at least {low}" if sig.variadic or sig.optional else str(len(want))
            raise self.error(f'expected {count} argument(s) in call to "{node.func}", got {got}', tok)
        for index, arg in enumerate(node.args):
            expected = want[min(index, len(want) - 1)]
            actual = value_type(arg)
            if actual != expected:
                raise self.error(
                    f'expected type {type_name(expected)} in call to function "{node.func}", '
                    f"got {type_name(actual)}",
                    tok,
                )
        return node

    def aggregate(self, op: str, tok: Token) -> Aggregate:
        grouping: tuple[str, ...] = ()
        without = False
        had_modifier = False
        if self.tok.text in ("by", "without"):
            without = self.advance().text == "without"
            grouping = self.label_list()
            had_modifier = True
        self.expect("(", f"in aggregation {op}")
        param: Expr | None = None
        if op in AGGREGATION_PARAM:
            param = self.expression(0)
            self.expect(",", f"in aggregation {op}, expected a parameter then the vector")
        expr = self.expression(0)
        self.expect(")", f"in aggregation {op}")
        if not had_modifier and self.tok.kind == "ident" and self.tok.text in ("by", "without"):
            without = self.advance().text == "without"
            grouping = self.label_list()
        if value_type(expr) != ValueType.VECTOR:
            raise self.error(
                f"expected type instant vector in aggregation expression, got {type_name(value_type(expr))}",
                tok,
            )
        if param is not None and value_type(param) != AGGREGATION_PARAM[op]:
            raise self.error(
                f"expected type {type_name(AGGREGATION_PARAM[op])} in aggregation parameter, "
                f"got {type_name(value_type(param))}",
                tok,
            )
        return Aggregate(op, expr, param, grouping, without)

    def label_list(self) -> tuple[str, ...]:
        self.expect("(", "in grouping opts")
        names: list[str] = []
        if self.accept(")"):
            return ()
        while True:
            if self.tok.kind != "ident":
                raise self.unexpected("in grouping opts, expected label")
            names.append(self.advance().text)
            if self.accept(")"):
                return tuple(names)
            self.expect(",", "in grouping opts")

    def selector(self, name: str | None, tok: Token) -> VectorSelector:
        matchers: list[Matcher] = []
        if self.tok.kind == "op" and self.tok.text == "{":
            self.advance()
            while not self.accept("}"):
                matchers.append(self.matcher())
                if not self.accept(","):
                    self.expect("}", "inside braces")
                    break
        if name is not None:
            if any(m.name == "__name__" for m in matchers):
                raise self.error(f'metric name must not be set twice: "{name}"', tok)
            matchers.insert(0, Matcher("__name__", "=", name))
        if not matchers:
            raise self.error("vector selector must contain at least one non-empty matcher", tok)
        if all(m.matches("") for m in matchers):
            raise self.error("vector selector must contain at least one non-empty matcher", tok)
        return VectorSelector(name, tuple(matchers))

    def matcher(self) -> Matcher:
        if self.tok.kind != "ident":
            raise self.unexpected("in label matching, expected label")
        name = self.advance().text
        if self.tok.kind != "op" or self.tok.text not in ("=", "!=", "=~", "!~"):
            raise self.unexpected("in label matching, expected one of =, !=, =~, !~")
        op = self.advance().text
        if self.tok.kind != "string":
            raise self.unexpected("in label matching, expected string")
        value_tok = self.advance()
        value = str(value_tok.value)
        regex = compile_regex(value, value_tok.pos) if op in ("=~", "!~") else None
        return Matcher(name, op, value, regex)


def type_name(t: ValueType) -> str:
    """The type as Prometheus names it in errors."""
    return {"vector": "instant vector", "matrix": "range vector"}.get(t.value, t.value)
