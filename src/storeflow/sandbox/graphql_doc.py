"""A small GraphQL document parser for the simulators (queries, mutations, variables, fragments).

Enough of the GraphQL grammar (October 2021 spec) for what Shopify's Admin API is sent: operations
with variables, aliases, arguments (strings, block strings, numbers, enums, lists, objects,
variables), inline fragments and named fragments. The simulator walks the parsed selections
over its own data, so a client gets back exactly the fields it asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class GraphQLSyntaxError(ValueError):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass
class Field:
    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    selections: list[Selection] = field(default_factory=list)
    line: int = 1
    column: int = 1

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class InlineFragment:
    type_condition: str | None
    selections: list[Selection] = field(default_factory=list)


@dataclass
class FragmentSpread:
    name: str


Selection = Field | InlineFragment | FragmentSpread


@dataclass
class Variable:
    name: str


@dataclass
class EnumValue:
    name: str


@dataclass
class Operation:
    kind: str  # query | mutation
    name: str | None
    variables: dict[str, Any]  # name -> default value (None when none)
    selections: list[Selection]


@dataclass
class Document:
    operations: list[Operation]
    fragments: dict[str, tuple[str, list[Selection]]]

    def operation(self, name: str | None = None) -> Operation:
        if name:
            for op in self.operations:
                if op.name == name:
                    return op
            raise ValueError(f"Operation name {name!r} not found in the document")
        if len(self.operations) != 1:
            raise ValueError("An operation name is required when the document has several operations")
        return self.operations[0]


_TOKEN = re.compile(
    r'(?P<block>"""(?:\\"""|[^"]|"(?!""))*""")'
    r'|(?P<string>"(?:\\.|[^"\\\n])*")'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<spread>\.\.\.)"
    r"|(?P<name>[_A-Za-z][_0-9A-Za-z]*)"
    r"|(?P<punct>[!$&()\[\]{}:=@|])"
    r"|(?P<skip>[\s,\ufeff]+|#[^\n]*)"
)


@dataclass
class _Tok:
    kind: str
    value: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            line, col = _where(text, pos)
            raise GraphQLSyntaxError(f"Parse error on {text[pos]!r}", line, col)
        kind = match.lastgroup or "skip"
        if kind != "skip":
            out.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    return out


def _where(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        return value is None or self.toks[self.i].value == value

    def take(self, value: str | None = None, kind: str | None = None) -> _Tok:
        if self.i >= len(self.toks):
            line, col = _where(self.text, len(self.text))
            raise GraphQLSyntaxError("Unexpected end of document", line, col)
        tok = self.toks[self.i]
        if (value is not None and tok.value != value) or (kind is not None and tok.kind != kind):
            line, col = _where(self.text, tok.pos)
            raise GraphQLSyntaxError(f"Parse error on {tok.value!r} (expected {value or kind})", line, col)
        self.i += 1
        return tok

    def document(self) -> Document:
        ops: list[Operation] = []
        fragments: dict[str, tuple[str, list[Selection]]] = {}
        while self.peek():
            if self.peek("{"):
                ops.append(Operation("query", None, {}, self.selection_set()))
            elif self.peek("fragment"):
                self.take("fragment")
                name = self.take(kind="name").value
                self.take("on")
                type_name = self.take(kind="name").value
                fragments[name] = (type_name, self.selection_set())
            else:
                kind = self.take(kind="name").value
                if kind not in {"query", "mutation"}:
                    tok = self.toks[self.i - 1]
                    line, col = _where(self.text, tok.pos)
                    raise GraphQLSyntaxError(f"Parse error on {kind!r}", line, col)
                op_name = self.take(kind="name").value if self.peek() and self.toks[self.i].kind == "name" else None
                variables: dict[str, Any] = {}
                if self.peek("("):
                    self.take("(")
                    while not self.peek(")"):
                        self.take("$")
                        var = self.take(kind="name").value
                        self.take(":")
                        self.type_ref()
                        variables[var] = self.value() if self.peek("=") and self.take("=") else None
                    self.take(")")
                ops.append(Operation(kind, op_name, variables, self.selection_set()))
        if not ops:
            raise GraphQLSyntaxError("The document has no operation", 1, 1)
        return Document(ops, fragments)

    def type_ref(self) -> None:
        if self.peek("["):
            self.take("[")
            self.type_ref()
            self.take("]")
        else:
            self.take(kind="name")
        if self.peek("!"):
            self.take("!")

    def selection_set(self) -> list[Selection]:
        self.take("{")
        out: list[Selection] = []
        while not self.peek("}"):
            if self.peek("..."):
                self.take("...")
                if self.peek("on"):
                    self.take("on")
                    type_name = self.take(kind="name").value
                    out.append(InlineFragment(type_name, self.selection_set()))
                elif self.peek("{"):
                    out.append(InlineFragment(None, self.selection_set()))
                else:
                    out.append(FragmentSpread(self.take(kind="name").value))
                continue
            tok = self.take(kind="name")
            line, col = _where(self.text, tok.pos)
            name, alias = tok.value, None
            if self.peek(":"):
                self.take(":")
                alias, name = name, self.take(kind="name").value
            args: dict[str, Any] = {}
            if self.peek("("):
                self.take("(")
                while not self.peek(")"):
                    arg = self.take(kind="name").value
                    self.take(":")
                    args[arg] = self.value()
                self.take(")")
            while self.peek("@"):  # directives are accepted and ignored
                self.take("@")
                self.take(kind="name")
                if self.peek("("):
                    while not self.peek(")"):
                        self.i += 1
                    self.take(")")
            selections = self.selection_set() if self.peek("{") else []
            out.append(Field(name, alias, args, selections, line, col))
        self.take("}")
        return out

    def value(self) -> Any:
        tok = self.take()
        if tok.kind == "punct" and tok.value == "$":
            return Variable(self.take(kind="name").value)
        if tok.kind == "block":
            return _block_string(tok.value[3:-3])
        if tok.kind == "string":
            return _unescape(tok.value[1:-1])
        if tok.kind == "number":
            return float(tok.value) if any(c in tok.value for c in ".eE") else int(tok.value)
        if tok.kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok.value, EnumValue(tok.value))
        if tok.value == "[":
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take("]")
            return items
        if tok.value == "{":
            obj = {}
            while not self.peek("}"):
                key = self.take(kind="name").value
                self.take(":")
                obj[key] = self.value()
            self.take("}")
            return obj
        line, col = _where(self.text, tok.pos)
        raise GraphQLSyntaxError(f"Parse error on {tok.value!r}", line, col)


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(raw: str) -> str:
    out = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt == "u":
                out.append(chr(int(raw[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _block_string(raw: str) -> str:
    lines = raw.replace('\\"""', '"""').splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    common = min(indents) if indents else 0
    lines = lines[:1] + [line[common:] for line in lines[1:]]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def parse(text: str) -> Document:
    """Parse a GraphQL document; GraphQLSyntaxError names the line and column at fault."""
    return _Parser(text).document()


def resolve_value(value: Any, variables: dict[str, Any]) -> Any:
    """An argument with its variables substituted and enums as plain strings."""
    if isinstance(value, Variable):
        return variables.get(value.name)
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return [resolve_value(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve_value(v, variables) for k, v in value.items()}
    return value
