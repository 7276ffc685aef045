"""Config files that are JavaScript, read without running JavaScript.

Etsy's statsd `eval`s its config file, so real ones use expressions: `flushInterval: 60 * 1000`,
`socket_mod: 0o660`, `prefix: "web" + "." + "eu"`, `graphiteHost: process.env.GRAPHITE || "..."`,
`globalSuffix: require("os").hostname()`. esprima parses the file; this module evaluates the few
kinds of expression a config needs and refuses everything else by name and line, so a config
file can never run code.
"""

from __future__ import annotations

import math
import os
import socket
from typing import Any

_UNDEFINED = None  # JSON has no undefined; a key set to undefined reads as unset


class Unsupported(ValueError):
    """An expression a config file may not use: the message names it, `line` says where."""

    def __init__(self, message: str, line: int | str = "?") -> None:
        super().__init__(message)
        self.line = line


def parse_js_object(text: str) -> Any:
    """The value of a config file's one expression (`{...}`, as Etsy evals it after `config = `)."""
    # imported here, only for files json5 cannot read: esprima's Unicode tables cost ~120 MiB of
    # memory and 0.25 s, which a daemon with a plain config file should not carry
    import esprima

    try:
        tree = esprima.parseScript("(" + text + "\n)", {"loc": True})
    except esprima.Error as e:
        raise ValueError(f"line {getattr(e, 'lineNumber', '?')}: {getattr(e, 'description', e)}") from None
    if len(tree.body) != 1 or tree.body[0].type != "ExpressionStatement":
        raise ValueError("the file must hold one object literal")
    return _eval(tree.body[0].expression)


def _js_number(value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    raise Unsupported(f"arithmetic on {value!r}")


def _js_string(value: Any) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


_BINARY = {
    "-": lambda a, b: _js_number(a) - _js_number(b),
    "*": lambda a, b: _js_number(a) * _js_number(b),
    "/": lambda a, b: _js_number(a) / _js_number(b) if _js_number(b) else math.inf,
    "%": lambda a, b: math.fmod(_js_number(a), _js_number(b)),
    "**": lambda a, b: _js_number(a) ** _js_number(b),
    "|": lambda a, b: int(_js_number(a)) | int(_js_number(b)),
}


def _eval(node: Any) -> Any:
    kind = node.type
    line = node.loc.start.line if node.loc else "?"
    if kind == "ObjectExpression":
        out = {}
        for prop in node.properties:
            if prop.type != "Property" or prop.computed:
                raise Unsupported("only plain `key: value` properties are supported", line)
            key = prop.key.name if prop.key.type == "Identifier" else _js_string(prop.key.value)
            out[key] = _eval(prop.value)
        return out
    if kind == "ArrayExpression":
        return [_eval(e) for e in node.elements]
    if kind == "Literal":
        if getattr(node, "regex", None):
            raise Unsupported("regular expressions are not supported", line)
        value = node.value
        return (
            int(value) if isinstance(value, float) and value.is_integer() and "." not in node.raw else value
        )
    if kind == "TemplateLiteral" and not node.expressions:
        return "".join(q.value.cooked for q in node.quasis)
    if kind == "Identifier" and node.name in ("undefined", "NaN", "Infinity"):
        return {"undefined": _UNDEFINED, "NaN": math.nan, "Infinity": math.inf}[node.name]
    if kind == "UnaryExpression":
        value = _eval(node.argument)
        if node.operator == "-":
            return -_js_number(value)
        if node.operator == "+":
            return _js_number(value)
        if node.operator == "!":
            return not value
    if kind == "BinaryExpression":
        left, right = _eval(node.left), _eval(node.right)
        if node.operator == "+":
            if isinstance(left, str) or isinstance(right, str):
                return _js_string(left) + _js_string(right)
            return _js_number(left) + _js_number(right)
        if node.operator in _BINARY:
            return _BINARY[node.operator](left, right)
    if kind == "LogicalExpression":
        left = _eval(node.left)
        if node.operator == "||":
            return left if left not in (None, False, 0, "") else _eval(node.right)
        if node.operator == "&&":
            return _eval(node.right) if left not in (None, False, 0, "") else left
        if node.operator == "??":
            return left if left is not None else _eval(node.right)
    if kind == "ConditionalExpression":
        return (
            _eval(node.consequent) if _eval(node.test) not in (None, False, 0, "") else _eval(node.alternate)
        )
    if kind == "MemberExpression" and _is_process_env(node.object):
        name = node.property.name if not node.computed else _eval(node.property)
        return os.environ.get(str(name))
    if kind == "CallExpression" and _is_os_hostname(node):
        return socket.gethostname()
    raise Unsupported(
        f"{kind} is not supported in a config file (webops reads literals, arithmetic, "
        'string concatenation, process.env.NAME, || / && / ?:, and require("os").hostname())',
        line,
    )


def _is_process_env(node: Any) -> bool:
    return (
        node.type == "MemberExpression"
        and not node.computed
        and node.object.type == "Identifier"
        and node.object.name == "process"
        and node.property.name == "env"
    )


def _is_os_hostname(node: Any) -> bool:
    callee = node.callee
    return (
        not node.arguments
        and callee.type == "MemberExpression"
        and not callee.computed
        and callee.property.name == "hostname"
        and callee.object.type == "CallExpression"
        and callee.object.callee.type == "Identifier"
        and callee.object.callee.name == "require"
        and len(callee.object.arguments) == 1
        and callee.object.arguments[0].type == "Literal"
        and callee.object.arguments[0].value == "os"
    )
