"""Go's text/template, for the templates Alertmanager and Prometheus configs carry as written.

Hand-written because no maintained Python implementation exists: PyPI has only a two-release CGo
wrapper (cognihub-pygotemplate 0.0.2, no installable distribution here) that cannot call Python
functions, and both Prometheus (`humanize`, `$labels`) and Alertmanager (`toUpper`, `.SortedPairs`)
need their own functions and data model over one engine.

Covered: text and actions with trim markers (`{{-`, `-}}`), comments, fields and map keys
(`.A.B`), methods of the data (called like fields, with arguments), variables (`$`, `$x := ...`,
`$x = ...`), pipelines, parenthesised pipelines, `if / else if / else`, `range` over lists, maps
(sorted keys) and integers with `$i, $e :=`, `break`, `continue`, `with / else with / else`,
`define`, `template`, `block`, and Go's builtins (and, or, not, len, index, slice, print,
printf, println, eq, ne, lt, le, gt, ge, html, js, urlquery, call) with Go's printf verbs.
Anything else (complex numbers, hex floats, unknown functions, unknown variables, misplaced
keywords) is refused at parse time with the template name, the line and what is wrong.

Data is Python: dicts are maps (a missing key is nothing, printed `<no value>`, as in Go's
map[string]any; use `StringMap` for Go's map[string]string, where it is ""), lists are slices,
and other objects expose capitalised attributes and methods as Go structs do. Differences from
Go, both lenient: a field of nothing is nothing (Go fails), and the float verbs accept integers.
"""

from __future__ import annotations

import ast
import html
import math
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "GoTemplate",
    "GoTemplateError",
    "GoTemplateExecError",
    "StringMap",
    "go_sprint",
    "go_sprintf",
    "html_escape",
]

TemplateFunc = Callable[..., Any]


class GoTemplateError(ValueError):
    """A template that does not parse: the message names the template, the line and the problem."""


class GoTemplateExecError(ValueError):
    """A template that failed while rendering (a function raised, a bad index, a missing template)."""


# ---------------------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # text, left, right, field, var, ident, string, number, char, dot, pipe, lparen,
    # rparen, declare, assign, comma, bool, nil, eof
    value: Any
    line: int
    pos: int
    end: int
    trim: bool = False  # for left/right delimiters: the "-" marker


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?\d+)?|0[bB][01_]+|0[oO][0-7_]+"
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)i?"
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_VAR = re.compile(r"\$[A-Za-z0-9_]*")
_GO_ESCAPE = re.compile(r"""\\(?:[abfnrtv\\'"]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3})""")
_KEYWORDS = frozenset(
    {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue"}
)


class _Lexer:
    def __init__(self, source: str, name: str) -> None:
        self.src, self.name, self.tokens = source, name, list[_Tok]()

    def fail(self, pos: int, message: str) -> GoTemplateError:
        return GoTemplateError(f"template: {self.name}:{self.src.count(chr(10), 0, pos) + 1}: {message}")

    def line(self, pos: int) -> int:
        return self.src.count("\n", 0, pos) + 1

    def run(self) -> list[_Tok]:
        src, pos = self.src, 0
        while pos < len(src):
            start = src.find("{{", pos)
            if start < 0:
                self.emit("text", src[pos:], pos, len(src))
                break
            if start > pos:
                self.emit("text", src[pos:start], pos, start)
            pos = self.action(start)
        self.emit("eof", None, len(src), len(src))
        return self.tokens

    def emit(self, kind: str, value: Any, pos: int, end: int, trim: bool = False) -> None:
        self.tokens.append(_Tok(kind, value, self.line(pos), pos, end, trim))

    def action(self, start: int) -> int:
        """Lex one `{{ ... }}`; returns the position after it. Comments vanish here."""
        src = self.src
        pos = start + 2
        trim_left = src.startswith("- ", pos) or src.startswith("-\t", pos) or src.startswith("-\n", pos)
        if trim_left:
            pos += 2
        comment = re.compile(r"\s*/\*").match(src, pos) if trim_left else None
        if src.startswith("/*", pos) or comment:
            close = src.find("*/", pos)
            if close < 0:
                raise self.fail(start, "unclosed comment")
            after = close + 2
            trim_right = False
            m = re.compile(r"\s+-}}").match(src, after)
            if m:
                trim_right, after = True, m.end()
            elif src.startswith("}}", after):
                after += 2
            else:
                raise self.fail(start, "comment ends before closing delimiter")
            self.emit("comment", None, start, after)
            if trim_left:
                self.trim_previous()
            if trim_right:
                self.tokens.append(_Tok("trimnext", None, self.line(after), after, after))
            return after
        self.emit("left", None, start, pos, trim_left)
        if trim_left:
            self.trim_previous()
        depth = 0
        while True:
            if pos >= len(src):
                raise self.fail(start, "unclosed action")
            c = src[pos]
            if c in " \t\r\n":
                m = re.compile(r"[ \t\r\n]+-}}").match(src, pos)
                if m:
                    if depth:
                        raise self.fail(pos, "unclosed left paren")
                    self.emit("right", None, pos, m.end(), True)
                    return m.end()
                pos += 1
                continue
            if src.startswith("}}", pos):
                if depth:
                    raise self.fail(pos, "unclosed left paren")
                self.emit("right", None, pos, pos + 2)
                return pos + 2
            pos = self.item(pos)
            last = self.tokens[-1].kind
            depth += (last == "lparen") - (last == "rparen")
            if depth < 0:
                raise self.fail(pos, "unexpected right paren")

    def item(self, pos: int) -> int:
        src = self.src
        c = src[pos]
        if c == '"':
            m = re.compile(r'"(?:[^"\\\n]|\\.)*"').match(src, pos)
            if not m:
                raise self.fail(pos, "unterminated quoted string")
            body = m.group()[1:-1]
            for bad in re.finditer(r"\\.", body):
                if not _GO_ESCAPE.match(body, bad.start()):
                    raise self.fail(
                        pos, f"invalid syntax in string {m.group()}: unknown escape {bad.group()}"
                    )
            self.emit("string", ast.literal_eval(m.group()), pos, m.end())
            return m.end()
        if c == "`":
            close = src.find("`", pos + 1)
            if close < 0:
                raise self.fail(pos, "unterminated raw quoted string")
            self.emit("string", src[pos + 1 : close], pos, close + 1)
            return close + 1
        if c == "'":
            m = re.compile(r"'(?:[^'\\\n]|\\.[0-9a-fA-F]*)'").match(src, pos)
            if not m:
                raise self.fail(pos, "unterminated character constant")
            self.emit("char", ord(ast.literal_eval(m.group())), pos, m.end())
            return m.end()
        if c == "$":
            m = _VAR.match(src, pos)
            assert m is not None
            fields = _FIELD.match(src, m.end())
            end = fields.end() if fields else m.end()
            chain = fields.group()[1:].split(".") if fields else []
            self.emit("var", (m.group(), chain), pos, end)
            return end
        if c == "." and not (pos + 1 < len(src) and src[pos + 1].isdigit()):
            m = _FIELD.match(src, pos)
            if m:
                self.emit("field", m.group()[1:].split("."), pos, m.end())
                return m.end()
            self.emit("dot", None, pos, pos + 1)
            return pos + 1
        if c.isdigit() or (
            c in "+-." and pos + 1 < len(src) and (src[pos + 1].isdigit() or src[pos + 1] == ".")
        ):
            m = _NUMBER.match(src, pos)
            if m:
                self.emit("number", self.number(m.group(), pos), pos, m.end())
                return m.end()
        if c == ":" and src.startswith(":=", pos):
            self.emit("declare", None, pos, pos + 2)
            return pos + 2
        simple = {"|": "pipe", "(": "lparen", ")": "rparen", "=": "assign", ",": "comma"}
        if c in simple:
            self.emit(simple[c], c, pos, pos + 1)
            return pos + 1
        m = _IDENT.match(src, pos)
        if m:
            word = m.group()
            kind = "bool" if word in ("true", "false") else "nil" if word == "nil" else "ident"
            value: Any = word == "true" if kind == "bool" else word
            self.emit(kind, value, pos, m.end())
            return m.end()
        raise self.fail(pos, f"unexpected {c!r} in command")

    def number(self, text: str, pos: int) -> int | float:
        if text.endswith("i"):
            raise self.fail(pos, f"complex number {text} is not supported")
        if re.match(r"[+-]?0[xX].*[.pP]", text):
            raise self.fail(pos, f"hexadecimal floating-point number {text} is not supported")
        digits = text.replace("_", "")
        try:
            if re.fullmatch(r"[+-]?0[0-7]+", digits):
                return int(digits, 8)
            if re.fullmatch(r"[+-]?(?:0[xXbBoO])?[0-9a-fA-F]+", digits) and not re.search(
                r"[eE.]", digits[:2]
            ):
                return int(digits, 0)
            return float(digits)
        except ValueError:
            raise self.fail(pos, f"bad number syntax: {text!r}") from None

    def trim_previous(self) -> None:
        for i in range(len(self.tokens) - 2, -1, -1):
            tok = self.tokens[i]
            if tok.kind == "text":
                self.tokens[i] = _Tok("text", tok.value.rstrip(" \t\r\n"), tok.line, tok.pos, tok.end)
            if tok.kind not in ("left",):
                break


# ---------------------------------------------------------------------------------------- nodes


@dataclass(slots=True)
class _Node:
    line: int


@dataclass(slots=True)
class _Text(_Node):
    text: str


@dataclass(slots=True)
class _Operand(_Node):
    """One word of a command: a constant, `.`, a field chain, a variable, a function name or a
    parenthesised pipeline, with the fields chained after it."""

    kind: str  # const, dot, field, var, func, pipe
    value: Any
    chain: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Command(_Node):
    words: list[_Operand]


@dataclass(slots=True)
class _Pipeline(_Node):
    decl: list[str]
    is_assign: bool
    commands: list[_Command]


@dataclass(slots=True)
class _Action(_Node):
    pipe: _Pipeline


@dataclass(slots=True)
class _Branch(_Node):
    kind: str  # if, with, range
    pipe: _Pipeline
    body: list[_Node]
    otherwise: list[_Node]


@dataclass(slots=True)
class _Include(_Node):
    name: str
    pipe: _Pipeline | None


@dataclass(slots=True)
class _LoopControl(_Node):
    kind: str  # break, continue


# --------------------------------------------------------------------------------------- parser

_BUILTINS = frozenset(
    "and or not len index slice print printf println eq ne lt le gt ge html js urlquery call".split()  # noqa: SIM905
)


class _Parser:
    def __init__(self, tokens: list[_Tok], name: str, funcs: Iterable[str]) -> None:
        self.toks, self.i, self.name = tokens, 0, name
        self.funcs = _BUILTINS | frozenset(funcs)
        self.defines: dict[str, list[_Node]] = {}
        self.scopes: list[list[str]] = [["$"]]
        self.loops = 0

    def fail(self, tok: _Tok, message: str) -> GoTemplateError:
        return GoTemplateError(f"template: {self.name}:{tok.line}: {message}")

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, kind: str, context: str) -> _Tok:
        tok = self.next()
        if tok.kind != kind:
            raise self.fail(tok, f"unexpected {self.describe(tok)} in {context}")
        return tok

    @staticmethod
    def describe(tok: _Tok) -> str:
        if tok.kind == "right":
            return '"}}"'
        if tok.kind == "eof":
            return "EOF"
        if tok.kind == "string":
            return repr(tok.value)
        return f'"{tok.value}"' if tok.value is not None else tok.kind

    def parse(self) -> list[_Node]:
        body, stop = self.list_until(top=True)
        if stop is not None:
            raise self.fail(stop, f"unexpected {{{{{stop.value}}}}}")
        return body

    def list_until(self, top: bool = False) -> tuple[list[_Node], _Tok | None]:
        """Nodes up to `{{end}}`/`{{else}}` (returned, not consumed past the keyword) or EOF."""
        nodes: list[_Node] = []
        while True:
            tok = self.next()
            if tok.kind == "eof":
                if not top:
                    raise self.fail(tok, "unexpected EOF")
                return nodes, None
            if tok.kind in ("comment", "trimnext"):
                if tok.kind == "trimnext" and self.peek().kind == "text":
                    self.trim_next_text()
                continue
            if tok.kind == "text":
                if tok.value:
                    nodes.append(_Text(tok.line, tok.value))
                continue
            # a left delimiter
            word = self.peek()
            if word.kind == "ident" and word.value in ("end", "else"):
                if top:
                    raise self.fail(word, f"unexpected {{{{{word.value}}}}}")
                self.next()
                return nodes, word
            node = self.action(word, top)
            if node is not None:
                nodes.append(node)

    def trim_next_text(self) -> None:
        tok = self.toks[self.i]
        self.toks[self.i] = _Tok("text", tok.value.lstrip(" \t\r\n"), tok.line, tok.pos, tok.end)

    def close(self) -> None:
        right = self.expect("right", "action")
        if right.trim and self.peek().kind == "text":
            self.trim_next_text()

    def action(self, word: _Tok, top: bool) -> _Node | None:
        if word.kind == "ident" and word.value in _KEYWORDS:
            self.next()
            kw = word.value
            if kw in ("if", "with", "range"):
                return self.branch(kw, word)
            if kw in ("template", "block"):
                return self.include(kw, word)
            if kw == "define":
                if not top:
                    raise self.fail(word, "unexpected define: define is only allowed at the top level")
                self.define(word)
                return None
            if not self.loops:
                raise self.fail(word, f"{{{{{kw}}}}} outside {{{{range}}}}")
            self.close()
            return _LoopControl(word.line, kw)
        pipe = self.pipeline("command", word)
        self.close()
        return _Action(word.line, pipe)

    def branch(self, kind: str, word: _Tok) -> _Node:
        self.scopes.append([])
        pipe = self.pipeline(kind, word, allow_two=(kind == "range"))
        self.close()
        if kind == "range":
            self.loops += 1
        body, stop = self.list_until()
        if kind == "range":
            self.loops -= 1
        otherwise: list[_Node] = []
        assert stop is not None
        if stop.value == "else":
            nxt = self.peek()
            if nxt.kind == "ident" and nxt.value in ("if", "with") and kind != "range":
                # `{{else if x}}` is `{{else}}{{if x}}...{{end}}{{end}}`: the inner branch takes the end
                self.next()
                if nxt.value != kind:
                    raise self.fail(nxt, f"unexpected else {nxt.value} in {kind}")
                otherwise = [self.branch(nxt.value, nxt)]
                self.scopes.pop()
                return _Branch(word.line, kind, pipe, body, otherwise)
            self.close()
            self.scopes[-1] = []
            otherwise, stop = self.list_until()
            if stop is None or stop.value != "end":
                raise self.fail(stop or word, f"expected end; found {{{{{stop.value if stop else 'EOF'}}}}}")
        self.close()
        self.scopes.pop()
        return _Branch(word.line, kind, pipe, body, otherwise)

    def include(self, kind: str, word: _Tok) -> _Node:
        name = self.expect("string", f"{kind} clause")
        pipe = None
        if self.peek().kind != "right":
            pipe = self.pipeline(kind, word)
        self.close()
        if kind == "block":
            self.definition(name.value, word, kind)
        return _Include(word.line, name.value, pipe)

    def define(self, word: _Tok) -> None:
        name = self.expect("string", "define clause")
        self.close()
        self.definition(name.value, word, "define")

    def definition(self, name: str, word: _Tok, kind: str) -> None:
        """The body of a `define` or `block`, up to its end, with variables of its own."""
        saved, self.scopes = self.scopes, [["$"]]
        body, stop = self.list_until()
        self.scopes = saved
        if stop is None or stop.value != "end":
            raise self.fail(word, f"expected end of {kind}")
        self.close()
        self.defines[name] = body

    def known(self, var: str) -> bool:
        return any(var in scope for scope in self.scopes)

    def pipeline(self, context: str, word: _Tok, allow_two: bool = False) -> _Pipeline:
        decl: list[str] = []
        is_assign = False
        # `$x :=`, `$x =`, `$i, $e :=`
        if self.peek().kind == "var" and not self.peek().value[1]:
            k1 = self.peek(1).kind
            if k1 in ("declare", "assign"):
                decl = [self.next().value[0]]
                is_assign = self.next().kind == "assign"
            elif (
                k1 == "comma" and allow_two and self.peek(2).kind == "var" and self.peek(3).kind == "declare"
            ):
                decl = [self.next().value[0]]
                self.next()
                decl.append(self.next().value[0])
                self.next()
        for var in decl:
            if is_assign and not self.known(var):
                raise self.fail(word, f'undefined variable "{var}"')
        commands: list[_Command] = []
        while True:
            commands.append(self.command(context))
            if self.peek().kind != "pipe":
                break
            self.next()
        if decl and not is_assign:
            self.scopes[-1].extend(decl)
        for cmd in commands[1:]:
            head = cmd.words[0]
            if head.kind not in ("func", "field") and not (head.kind == "var" and head.chain):
                raise self.fail(word, f"non executable command in pipeline stage {commands.index(cmd) + 1}")
        return _Pipeline(word.line, decl, is_assign, commands)

    def command(self, context: str) -> _Command:
        words: list[_Operand] = []
        while True:
            tok = self.peek()
            if tok.kind in ("right", "pipe", "rparen"):
                break
            words.append(self.operand())
        if not words:
            raise self.fail(self.peek(), f"missing value for {context}")
        if words[0].kind == "const" and words[0].value is None and not words[0].chain:
            raise self.fail(self.peek(), "nil is not a command")
        return _Command(words[0].line, words)

    def operand(self) -> _Operand:
        tok = self.next()
        op: _Operand
        if tok.kind == "lparen":
            inner = self.pipeline("parenthesized pipeline", tok)
            self.expect("rparen", "parenthesized pipeline")
            op = _Operand(tok.line, "pipe", inner)
        elif tok.kind == "dot":
            op = _Operand(tok.line, "dot", None)
        elif tok.kind == "field":
            op = _Operand(tok.line, "field", None, list(tok.value))
        elif tok.kind == "var":
            name, chain = tok.value
            if not self.known(name):
                raise self.fail(tok, f'undefined variable "{name}"')
            op = _Operand(tok.line, "var", name, list(chain))
        elif tok.kind == "ident":
            if tok.value in _KEYWORDS:
                raise self.fail(tok, f"unexpected <{tok.value}> in operand")
            if tok.value not in self.funcs:
                raise self.fail(tok, f'function "{tok.value}" not defined')
            op = _Operand(tok.line, "func", tok.value)
        elif tok.kind in ("string", "number", "char", "bool"):
            op = _Operand(tok.line, "const", tok.value)
        elif tok.kind == "nil":
            op = _Operand(tok.line, "const", None)
        else:
            raise self.fail(tok, f"unexpected {self.describe(tok)} in operand")
        # fields chained directly onto the operand: `(pipe).A.B`
        while self.peek().kind == "field" and self.peek().pos == self.toks[self.i - 1].end:
            if op.kind in ("func",):
                raise self.fail(tok, f"unexpected . after term {tok.value!r}")
            op.chain.extend(self.next().value)
        return op


# ------------------------------------------------------------------------------- value printing


def _type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    return {bool: "bool", int: "int", float: "float64", str: "string"}.get(type(value), type(value).__name__)


def _format_float(value: float, verb: str, prec: int | None) -> str:
    """Go's strconv.FormatFloat for %e %f %g and %v (shortest digits when no precision)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if verb in "fF":
        return f"{value:.{6 if prec is None else prec}f}"
    if verb in "eE":
        text = f"{value:.{6 if prec is None else prec}e}"
        return text.upper() if verb == "E" else text
    # %g / %v: shortest digits unless a precision is given (strconv's 'g' with precision -1)
    if prec is not None:
        return f"{value:.{max(prec, 1)}{verb if verb in 'gG' else 'g'}}"
    sign = "-" if math.copysign(1, value) < 0 else ""
    if value == 0:
        return sign + "0"
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    lead = len(all_digits) - len(all_digits.lstrip("0"))
    digits = all_digits.strip("0")
    exp = len(int_part) + int(exp_text or 0) - lead - 1  # exponent of the first significant digit
    if exp < -4 or exp >= 6:  # strconv: a shortest %g decides with precision 6
        tail = f"e{'-' if exp < 0 else '+'}{abs(exp):02d}"
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + tail
        return sign + (text.upper() if verb == "G" else text)
    if exp < 0:
        return sign + "0." + "0" * (-exp - 1) + digits
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return sign + digits[: exp + 1] + "." + digits[exp + 1 :]


def _str(value: Any) -> str:
    """Go's %v of a value."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _format_float(value, "v", None)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{_str(k)}:{_str(value[k])}" for k in sorted(value, key=_sort_key)) + "]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(_str(v) for v in value) + "]"
    return str(value)


def _sort_key(key: Any) -> tuple[int, Any]:
    return (0, key) if isinstance(key, int | float) else (1, str(key))


def go_sprint(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_str(arg))
    return "".join(out)


_VERB = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?([a-zA-Z%])")


def _quote(text: str) -> str:
    """strconv.Quote."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        special = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
                   "\v": r"\v", "\\": "\\\\", '"': '\\"'}  # fmt: skip
        if ch in special:
            out.append(special[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out) + '"'


def _format_one(verb: str, flags: str, prec: int | None, arg: Any) -> str:
    bad = f"%!{verb}({_type_name(arg)}={_str(arg)})"
    is_int = isinstance(arg, int) and not isinstance(arg, bool)
    if verb == "v":
        if flags.count("#") and isinstance(arg, str):
            return _quote(arg)
        return _format_float(arg, "v", prec) if isinstance(arg, float) else _str(arg)
    if verb == "s":
        if isinstance(arg, bytes):
            arg = arg.decode()
        text = _str(arg)
        return text[:prec] if prec is not None else text
    if verb == "q":
        if is_int:
            return "'" + _quote(chr(arg))[1:-1].replace('\\"', '"').replace("'", "\\'") + "'"
        return _quote(_str(arg)) if isinstance(arg, str) else bad
    if verb == "t":
        return _str(arg) if isinstance(arg, bool) else bad
    if verb in "dbocxXU":
        if is_int:
            value = int(arg)
            sign = "-" if value < 0 else ("+" if "+" in flags else " " if " " in flags else "")
            mag = abs(value)
            if verb == "c":
                return chr(value)
            if verb == "U":
                return f"U+{value:04X}"
            body = {"d": f"{mag}", "b": f"{mag:b}", "o": f"{mag:o}", "x": f"{mag:x}", "X": f"{mag:X}"}[verb]
            if prec is not None:
                body = body.rjust(prec, "0")
            if "#" in flags:
                body = {"b": "0b", "o": "0", "x": "0x", "X": "0X"}.get(verb, "") + body
            return sign + body
        if verb in "xX" and isinstance(arg, str):
            text = arg.encode().hex()
            return text.upper() if verb == "X" else text
        if verb in "xX" and isinstance(arg, float):
            return float.hex(arg)
        return bad
    if verb in "eEfFgG":
        if isinstance(arg, int | float) and not isinstance(arg, bool):
            text = _format_float(float(arg), verb, prec)
            if "+" in flags and not text.startswith("-"):
                text = "+" + text
            elif " " in flags and not text.startswith("-"):
                text = " " + text
            return text
        return bad
    return f"%!{verb}({_type_name(arg)}={_str(arg)})"


def go_sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf with Go's verbs, flags, width and precision; mismatches print as Go does."""
    out: list[str] = []
    index, pos = 0, 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width_text, prec_text, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        width: int | None = None
        prec: int | None = None
        if width_text == "*":
            width, index = (int(args[index]) if index < len(args) else 0), index + 1
        elif width_text:
            width = int(width_text)
        if prec_text == "*":
            prec, index = (int(args[index]) if index < len(args) else 0), index + 1
        elif prec_text is not None:
            prec = int(prec_text or 0)
        if index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        text = _format_one(verb, flags, prec, args[index])
        index += 1
        if width is not None and len(text) < width:
            if "-" in flags:
                text = text.ljust(width)
            elif "0" in flags and verb in "dbboxXeEfFgG" and text[:1] in "+- " and text[1:2].isdigit():
                text = text[0] + text[1:].rjust(width - 1, "0")
            elif "0" in flags and verb in "dboxXeEfFgG":
                text = text.rjust(width, "0")
            else:
                text = text.rjust(width)
        out.append(text)
    out.append(fmt[pos:])
    if index < len(args):
        extra = ", ".join(f"{_type_name(a)}={_str(a)}" for a in args[index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# ------------------------------------------------------------------------------------- builtins


def _truth(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, lists and maps are false."""
    if value is None:
        return False
    if isinstance(value, bool | int | float | str | Sequence | Mapping):
        return bool(value)
    try:
        return bool(len(value))
    except TypeError:
        return True


def _len(value: Any) -> int:
    if value is None or isinstance(value, bool | int | float):
        raise GoTemplateExecError(f"len of type {_type_name(value)}")
    return len(value.encode() if isinstance(value, str) else value)


def _key(mapping: Mapping[Any, Any], key: Any) -> Any:
    """A missing key is nothing, or the mapping's own zero value: a dict subclass with
    `__missing__` (StringMap) answers "" as Go's map[string]string does."""
    try:
        return mapping[key]
    except KeyError:
        return None


class StringMap(dict[str, str]):
    """Go's map[string]string: a missing key reads as "" (labels, annotations)."""

    def __missing__(self, key: str) -> str:
        return ""


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = _key(item, key)
        elif isinstance(item, Sequence):
            if not isinstance(key, int) or not 0 <= key < len(item):
                raise GoTemplateExecError(f"error calling index: index out of range: {key}")
            item = item[key]
        else:
            raise GoTemplateExecError(f"error calling index: can't index item of type {_type_name(item)}")
    return item


def _slice(item: Any, *bounds: int) -> Any:
    """Go slices strings by bytes."""
    if (len(bounds) > 2 and isinstance(item, str)) or len(bounds) > 3:
        raise GoTemplateExecError("error calling slice: too many slice indexes")
    if isinstance(item, str):
        return item.encode()[slice(*bounds) if len(bounds) != 1 else slice(bounds[0], None)].decode(
            errors="replace"
        )
    return item[slice(*bounds[:2]) if len(bounds) != 1 else slice(bounds[0], None)]


def _kind(value: Any) -> str:
    """Go's basic kinds for comparison: ints and floats compare with each other (leniently)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _compare(name: str, a: Any, b: Any) -> int:
    if _kind(a) != _kind(b):
        if (a is None or b is None) and name in ("eq", "ne"):
            return 0 if a is b else 1
        raise GoTemplateExecError(f"error calling {name}: incompatible types for comparison")
    if a == b:
        return 0
    try:
        return -1 if a < b else 1
    except TypeError:
        raise GoTemplateExecError(f"error calling {name}: invalid type for comparison") from None


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise GoTemplateExecError("error calling eq: missing argument for comparison")
    return any(_compare("eq", first, other) == 0 for other in others)


def _js(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    out = []
    for ch in text:
        table = {
            "\\": "\\\\",
            "'": "\\'",
            '"': '\\"',
            "<": "\\u003C",
            ">": "\\u003E",
            "&": "\\u0026",
            "=": "\\u003D",
        }
        if ch in table:
            out.append(table[ch])
        elif ord(ch) < 0x20 or (ord(ch) >= 0x80 and not ch.isprintable()):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def html_escape(text: str) -> str:
    """Go's template.HTMLEscapeString."""
    return html.escape(text).replace("&#x27;", "&#39;").replace("&quot;", "&#34;").replace("\0", "\ufffd")


def _html(*args: Any) -> str:
    return html_escape(args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args))


def _urlquery(*args: Any) -> str:
    text = args[0] if len(args) == 1 and isinstance(args[0], str) else go_sprint(*args)
    return urllib.parse.quote_plus(text, safe="")


def _call(fn: Any, *args: Any) -> Any:
    if not callable(fn):
        raise GoTemplateExecError(f"error calling call: non-function of type {_type_name(fn)}")
    return fn(*args)


_BUILTIN_FUNCS: dict[str, TemplateFunc] = {
    "not": lambda value: not _truth(value),
    "len": _len,
    "index": _index,
    "slice": _slice,
    "print": go_sprint,
    "printf": go_sprintf,
    "println": lambda *args: " ".join(_str(a) for a in args) + "\n",
    "eq": _eq,
    "ne": lambda a, b: _compare("ne", a, b) != 0,
    "lt": lambda a, b: _compare("lt", a, b) < 0,
    "le": lambda a, b: _compare("le", a, b) <= 0,
    "gt": lambda a, b: _compare("gt", a, b) > 0,
    "ge": lambda a, b: _compare("ge", a, b) >= 0,
    "html": _html,
    "js": _js,
    "urlquery": _urlquery,
    "call": _call,
}


# ------------------------------------------------------------------------------------ execution


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


_MAX_DEPTH = 100  # nested {{template}} calls: Go allows 100,000, Python's stack far fewer


class _Exec:
    def __init__(
        self,
        templates: Mapping[str, list[_Node]],
        funcs: Mapping[str, TemplateFunc],
        name: str,
        escape: Callable[[str], str] | None = None,
    ) -> None:
        self.templates, self.funcs, self.name, self.escape = templates, funcs, name, escape
        self.vars: list[tuple[str, Any]] = []
        self.out: list[str] = []
        self.depth = 0

    def fail(self, node: _Node, message: str) -> GoTemplateExecError:
        return GoTemplateExecError(f"template: {self.name}:{node.line}: {message}")

    def lookup(self, name: str) -> Any:
        for var, value in reversed(self.vars):
            if var == name:
                return value
        raise GoTemplateExecError(f'undefined variable "{name}"')

    def assign(self, name: str, value: Any) -> None:
        for i in range(len(self.vars) - 1, -1, -1):
            if self.vars[i][0] == name:
                self.vars[i] = (name, value)
                return

    def walk(self, nodes: list[_Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipeline(node.pipe, dot)
                if not node.pipe.decl:
                    text = _str(value)
                    self.out.append(self.escape(text) if self.escape else text)
            elif isinstance(node, _Branch):
                self.branch(node, dot)
            elif isinstance(node, _Include):
                self.include(node, dot)
            elif isinstance(node, _LoopControl):
                raise _Break() if node.kind == "break" else _Continue()

    def scoped(self, nodes: list[_Node], dot: Any, bindings: Sequence[tuple[str, Any]] = ()) -> None:
        mark = len(self.vars)
        self.vars.extend(bindings)
        try:
            self.walk(nodes, dot)
        finally:
            del self.vars[mark:]

    def branch(self, node: _Branch, dot: Any) -> None:
        mark = len(self.vars)
        try:
            value = self.pipeline(node.pipe, dot, declare=node.kind != "range")
            if node.kind == "range":
                self.range(node, dot, value)
                return
            if _truth(value):
                self.walk(node.body, value if node.kind == "with" else dot)
            else:
                self.walk(node.otherwise, dot)
        finally:
            del self.vars[mark:]

    def range(self, node: _Branch, dot: Any, value: Any) -> None:
        items: Iterable[tuple[Any, Any]]
        if value is None:
            items = ()
        elif isinstance(value, Mapping):
            items = ((k, value[k]) for k in sorted(value, key=_sort_key))
        elif isinstance(value, bool | float | str):
            raise self.fail(node, f"range can't iterate over {_str(value)}")
        elif isinstance(value, int):
            items = ((i, i) for i in range(value))
        else:
            items = enumerate(value)
        empty = True
        for key, elem in items:
            empty = False
            decl = node.pipe.decl
            bindings = (
                [(decl[0], elem)] if len(decl) == 1 else [(decl[0], key), (decl[1], elem)] if decl else []
            )
            try:
                self.scoped(node.body, elem, bindings)
            except _Continue:
                continue
            except _Break:
                break
        if empty:
            self.walk(node.otherwise, dot)

    def include(self, node: _Include, dot: Any) -> None:
        body = self.templates.get(node.name)
        if body is None:
            raise self.fail(
                node, f'template: no template "{node.name}" associated with template "{self.name}"'
            )
        value = self.pipeline(node.pipe, dot) if node.pipe else None
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail(node, f'exceeded maximum template depth ({_MAX_DEPTH}) in "{node.name}"')
        saved, self.vars = self.vars, [("$", value)]
        try:
            self.walk(body, value)
        finally:
            self.vars, self.depth = saved, self.depth - 1

    def pipeline(self, pipe: _Pipeline, dot: Any, declare: bool = True) -> Any:
        value: Any = None
        first = True
        for cmd in pipe.commands:
            value = self.command(cmd, dot, value, piped=not first)
            first = False
        if pipe.decl and declare:
            if pipe.is_assign:
                self.assign(pipe.decl[0], value)
            else:
                self.vars.append((pipe.decl[0], value))
        return value

    def command(self, cmd: _Command, dot: Any, final: Any, piped: bool) -> Any:
        head, args = cmd.words[0], cmd.words[1:]
        extra = [final] if piped else []
        if head.kind == "func":
            if head.value in ("and", "or"):
                return self.logic(cmd, head.value, args, dot, extra)
            fn = self.funcs.get(head.value) or _BUILTIN_FUNCS[head.value]
            values = [self.arg(a, dot) for a in args] + extra
            try:
                return fn(*values)
            except (GoTemplateExecError, _Break, _Continue):
                raise
            except Exception as err:
                raise self.fail(cmd, f"error calling {head.value}: {err}") from err
        if head.kind in ("field", "var") and head.chain:
            base = dot if head.kind == "field" else self.lookup(head.value)
            return self.chain(cmd, base, head.chain, [self.arg(a, dot) for a in args] + extra)
        if args or piped:
            raise self.fail(cmd, f"can't give argument to non-function {self.words(head)}")
        return self.arg(head, dot)

    def logic(self, cmd: _Command, name: str, args: list[_Operand], dot: Any, extra: list[Any]) -> Any:
        if not args and not extra:
            raise self.fail(cmd, f"wrong number of args for {name}: want at least 1 got 0")
        value: Any = None
        for i in range(len(args) + len(extra)):  # Go evaluates lazily: stop at the first decisive one
            value = self.arg(args[i], dot) if i < len(args) else extra[0]
            if _truth(value) == (name == "or"):
                return value
        return value

    @staticmethod
    def words(op: _Operand) -> str:
        return repr(op.value) if op.kind == "const" else op.kind

    def arg(self, op: _Operand, dot: Any) -> Any:
        if op.kind == "const":
            base = op.value
        elif op.kind == "dot" or op.kind == "field":
            base = dot
        elif op.kind == "var":
            base = self.lookup(op.value)
        elif op.kind == "pipe":
            mark = len(self.vars)
            base = self.pipeline(op.value, dot)
            del self.vars[mark:]
        else:  # a function named as an argument is called without arguments
            if op.value in ("and", "or"):
                raise self.fail(op, f"wrong number of args for {op.value}: want at least 1 got 0")
            fn = self.funcs.get(op.value) or _BUILTIN_FUNCS[op.value]
            try:
                base = fn()
            except Exception as err:
                raise self.fail(op, f"error calling {op.value}: {err}") from err
        return self.chain(op, base, op.chain, []) if op.chain else base

    def chain(self, node: _Node, base: Any, names: list[str], args: list[Any]) -> Any:
        for i, name in enumerate(names):
            last = i == len(names) - 1
            base = self.field(node, base, name, args if last else [])
        return base

    def field(self, node: _Node, receiver: Any, name: str, args: list[Any]) -> Any:
        """Go's order: a method of the value, then a map key, then a struct field."""
        if receiver is None:
            if args:
                raise self.fail(node, f"nil pointer evaluating .{name}")
            return None
        method = getattr(type(receiver), name, None) if name[:1].isupper() else None
        if method is not None:
            attr = getattr(receiver, name)
            if callable(attr):
                try:
                    return attr(*args)
                except GoTemplateExecError:
                    raise
                except Exception as err:
                    raise self.fail(node, f"error calling {name}: {err}") from err
            if args:
                raise self.fail(node, f"{name} has arguments but cannot be invoked as function")
            return attr
        if isinstance(receiver, Mapping):
            if args:
                raise self.fail(node, f"{name} is not a method but has arguments")
            return _key(receiver, name)
        if name[:1].isupper() and hasattr(receiver, name):
            attr = getattr(receiver, name)
            return attr(*args) if callable(attr) else attr
        raise self.fail(node, f"can't evaluate field {name} in type {_type_name(receiver)}")


# ------------------------------------------------------------------------------------------ API


class GoTemplate:
    """A parsed Go template. `include` lends the `define`d templates of other GoTemplates (the way
    Alertmanager parses its template files and default.tmpl into one set before the config's own
    strings); a name defined here overrides one lent."""

    def __init__(
        self,
        source: str,
        funcs: Mapping[str, TemplateFunc] | None = None,
        *,
        name: str = "template",
        include: Sequence[GoTemplate] = (),
    ) -> None:
        self.name, self.source = name, source
        self.funcs: dict[str, TemplateFunc] = {}
        for other in include:
            self.funcs.update(other.funcs)
        self.funcs.update(funcs or {})
        parser = _Parser(_Lexer(source, name).run(), name, self.funcs)
        self.body = parser.parse()
        self.templates: dict[str, list[_Node]] = {}
        for other in include:
            self.templates.update(other.templates)
        self.templates.update(parser.defines)
        self.templates[name] = self.body

    @property
    def defined(self) -> list[str]:
        """Names of the templates this set can execute (its own body included)."""
        return sorted(self.templates)

    def render(
        self, data: Any = None, template: str | None = None, escape: Callable[[str], str] | None = None
    ) -> str:
        """Execute the body, or the template `define`d as `template`, with `data` as dot and `$`.
        `escape` is applied to every value an action prints (html.escape approximates what Go's
        html/template does to text in HTML)."""
        name = self.name if template is None else template
        body = self.templates.get(name)
        if body is None:
            raise GoTemplateExecError(
                f'template: no template "{name}" associated with template "{self.name}"'
            )
        run = _Exec(self.templates, self.funcs, name, escape)
        run.vars.append(("$", data))
        try:
            run.walk(body, data)
        except RecursionError:
            raise GoTemplateExecError(f"template: {name}: exceeded maximum template depth") from None
        return "".join(run.out)

    def __repr__(self) -> str:
        return f"GoTemplate({self.name!r}, defines={self.defined})"
