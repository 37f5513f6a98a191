"""SafeKit failover rules: `label: if (expr) then action();` parsed into a small AST, and evaluated.

`expr` combines comparisons `resource == value` / `resource != value` with `&&`, `||`, `!` and
parentheses. Resources are named `class.ident` (`heartbeat.default`, `custom.app`, `ping.witness`,
`rfs.uptodate`); `class.?` stands for every resource of the class. Values are up, down, unknown
and init. Everything here is pure: the daemon passes the current resource states to `evaluate`.

Semantics chosen where SafeKit's guide is silent: a resource missing from the mapping is
`unknown`; `class.? == v` holds when any resource of the class is `v`; `a != v` is `!(a == v)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, cast

ResourceValue = Literal["up", "down", "unknown", "init"]
RuleAction = Literal["stop", "stopstart", "wait", "restart", "swap"]
RESOURCE_VALUES: Final[tuple[str, ...]] = ("up", "down", "unknown", "init")
RULE_ACTIONS: Final[tuple[str, ...]] = ("stop", "stopstart", "wait", "restart", "swap")
WILDCARD: Final = "?"
MAX_NESTING: Final = 64
"""Deepest nesting of `!` and parentheses a condition may have. Real rules nest two or three
levels; the bound keeps the recursive-descent parser (and `evaluate`) far from Python's stack
limit whatever a file holds."""


@dataclass(frozen=True, slots=True)
class Comparison:
    resource: str
    op: Literal["==", "!="]
    value: ResourceValue


@dataclass(frozen=True, slots=True)
class Not:
    operand: RuleExpr


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[RuleExpr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[RuleExpr, ...]


RuleExpr = Comparison | Not | And | Or


@dataclass(frozen=True, slots=True)
class FailoverRule:
    """`label: if (condition) then action();`"""

    label: str
    condition: RuleExpr
    action: RuleAction
    line: int = field(default=0, compare=False)


class RuleSyntaxError(ValueError):
    """A rule that cannot be parsed; `offset` is the position of the problem in the rule text."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def evaluate(rule_expr: RuleExpr, resources: Mapping[str, str]) -> bool:
    """Truth of `rule_expr` for the given resource states (`{"heartbeat.default": "down", ...}`)."""
    match rule_expr:
        case Comparison(resource, op, value):
            equal = _matches(resource, value, resources)
            return equal if op == "==" else not equal
        case Not(operand):
            return not evaluate(operand, resources)
        case And(operands):
            return all(evaluate(o, resources) for o in operands)
        case Or(operands):
            return any(evaluate(o, resources) for o in operands)
    raise TypeError(f"not a rule expression: {rule_expr!r}")  # pragma: no cover - exhaustive above


def _matches(resource: str, value: str, resources: Mapping[str, str]) -> bool:
    if resource.endswith("." + WILDCARD):
        prefix = resource[:-1]
        return any(name.startswith(prefix) and state == value for name, state in resources.items())
    return resources.get(resource, "unknown") == value


def resources_in(rule_expr: RuleExpr) -> tuple[str, ...]:
    """Resource names a condition refers to, in order (for checking them against the module)."""
    match rule_expr:
        case Comparison(resource, _, _):
            return (resource,)
        case Not(operand):
            return resources_in(operand)
        case And(operands) | Or(operands):
            return tuple(name for o in operands for name in resources_in(o))
    raise TypeError(f"not a rule expression: {rule_expr!r}")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------
# Tokenizer and recursive-descent parser

_TOKEN: Final = re.compile(
    r"\s*(?:(?P<op>==|!=|&&|\|\||[!():;])|(?P<word>[A-Za-z_][A-Za-z0-9_\-]*(?:\.(?:[A-Za-z0-9_\-]+|\?))*))"
)
_RESOURCE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*\.(?:[A-Za-z0-9_\-]+|\?)(?:\.[A-Za-z0-9_\-]+)*")
_LABEL: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["op", "word", "end"]
    text: str
    offset: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            tokens.append(_Token("end", "", position))
            return tokens
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            hint = {"=": " (compare with '==')", "&": " (use '&&')", "|": " (use '||')"}.get(
                text[position], ""
            )
            raise RuleSyntaxError(f"unexpected character {text[position]!r}{hint}", position)
        kind: Literal["op", "word"] = "op" if match.group("op") else "word"
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.current
        if token.kind != "end":
            self.index += 1
        return token

    def expect(self, text: str, what: str) -> _Token:
        token = self.current
        if token.text != text or token.kind == "end":
            found = repr(token.text) if token.kind != "end" else "end of text"
            raise RuleSyntaxError(f"expected {what}, found {found}", token.offset)
        return self.advance()

    def rule(self) -> FailoverRule:
        label = self.advance()
        if label.kind != "word" or not _LABEL.fullmatch(label.text):
            raise RuleSyntaxError(
                f"expected a rule label (e.g. 'hb_lost:'), found {label.text!r}", label.offset
            )
        self.expect(":", "':' after the rule label")
        self.expect("if", "'if'")
        condition = self.expression()
        self.expect("then", "'then' after the condition")
        action = self.advance()
        if action.text not in RULE_ACTIONS:
            raise RuleSyntaxError(
                f"unknown action {action.text!r} (use one of: {', '.join(a + '()' for a in RULE_ACTIONS)})",
                action.offset,
            )
        self.expect("(", "'(' after the action")
        self.expect(")", "')' (actions take no arguments)")
        self.expect(";", "';' at the end of the rule")
        return FailoverRule(label.text, condition, cast(RuleAction, action.text), 0)

    def expression(self) -> RuleExpr:
        operands = [self.conjunction()]
        while self.current.text == "||" and self.current.kind == "op":
            self.advance()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> RuleExpr:
        operands = [self.unary()]
        while self.current.text == "&&" and self.current.kind == "op":
            self.advance()
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> RuleExpr:
        token = self.current
        if token.kind == "op" and token.text in ("!", "("):
            if self.depth >= MAX_NESTING:
                raise RuleSyntaxError(
                    f"the condition nests '!' and '(' more than {MAX_NESTING} levels deep", token.offset
                )
            self.depth += 1
            self.advance()
            if token.text == "!":
                inner: RuleExpr = Not(self.unary())
            else:
                inner = self.expression()
                self.expect(")", "')'")
            self.depth -= 1
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        resource = self.advance()
        if resource.kind != "word" or not _RESOURCE.fullmatch(resource.text):
            found = resource.text or "end of text"
            raise RuleSyntaxError(
                f"expected a resource such as 'heartbeat.default' or 'custom.?', found {found!r}",
                resource.offset,
            )
        op = self.advance()
        if op.text not in ("==", "!="):
            raise RuleSyntaxError(
                f"expected '==' or '!=' after {resource.text!r}, found {op.text!r}", op.offset
            )
        value = self.advance()
        if value.text not in RESOURCE_VALUES:
            raise RuleSyntaxError(
                f"{value.text!r} is not a resource value (use one of: {', '.join(RESOURCE_VALUES)})",
                value.offset,
            )
        return Comparison(resource.text, cast(Literal["==", "!="], op.text), cast(ResourceValue, value.text))


def parse_rule_expression(text: str) -> RuleExpr:
    """Parse a condition alone, e.g. `heartbeat.default == down && ping.witness == up`."""
    parser = _Parser(_tokenize(text))
    expr = parser.expression()
    if parser.current.kind != "end":
        raise RuleSyntaxError(
            f"unexpected {parser.current.text!r} after the condition", parser.current.offset
        )
    return expr


def parse_failover_rules(
    text: str, line_at: Callable[[int], int] | None = None
) -> tuple[tuple[FailoverRule, ...], tuple[tuple[int, str], ...]]:
    """Parse every rule of a `<failover>` text; return (rules, [(line, message), ...]).

    A rule with a syntax error is reported and skipped up to its `;`, so that every bad rule of a
    file is reported in one pass. `line_at(offset)` maps an offset in `text` to a file line.
    """
    locate = line_at or (lambda offset: 1 + text.count("\n", 0, offset))
    rules: list[FailoverRule] = []
    errors: list[tuple[int, str]] = []
    labels: set[str] = set()
    for start, chunk, terminated in _split_rules(text):
        if not chunk.strip():
            continue
        first = start + len(chunk) - len(chunk.lstrip())
        try:
            parser = _Parser(_tokenize(chunk + ";" if terminated else chunk))
            rule = parser.rule()
            if parser.current.kind != "end":  # pragma: no cover - the chunk holds exactly one rule
                raise RuleSyntaxError("unexpected text after the rule", parser.current.offset)
        except RuleSyntaxError as exc:
            errors.append(
                (locate(start + min(exc.offset, len(chunk.rstrip()))), f"failover rule: {exc.message}")
            )
            continue
        if rule.label in labels:
            errors.append((locate(first), f"failover rule label {rule.label!r} is used twice"))
        labels.add(rule.label)
        rules.append(FailoverRule(rule.label, rule.condition, rule.action, locate(first)))
    return tuple(rules), tuple(errors)


def _split_rules(text: str) -> list[tuple[int, str, bool]]:
    """Split on `;` into (offset, rule text, ended by a `;`); only the last piece may lack it."""
    pieces: list[tuple[int, str, bool]] = []
    start = 0
    for index, char in enumerate(text):
        if char == ";":
            pieces.append((start, text[start:index], True))
            start = index + 1
    pieces.append((start, text[start:], False))
    return pieces


@dataclass(frozen=True)
class RuleFiring:
    """A rule whose condition has held for `handle_time`: fire its action (`held_for` seconds)."""

    rule: FailoverRule
    held_for: float


@dataclass(frozen=True)
class RuleClock:
    """The "true for handle_time, fire once" clock of `<failover>` rules (pure; time passed in).

    A rule fires when its condition has been true at every evaluation for `handle_time`, and once
    per time the condition becomes true: it fires again only after it was false once, so a lasting
    condition does not count toward maxloop forever. `reset` (checkers switched off) forgets it all.
    """

    handle_time: float
    true_since: Mapping[str, float] = field(default_factory=dict)
    fired: frozenset[str] = frozenset()

    def evaluate(
        self, rules: Iterable[FailoverRule], resources: Mapping[str, str], now: float
    ) -> tuple[RuleClock, list[RuleFiring]]:
        true_since = dict(self.true_since)
        fired = set(self.fired)
        firings: list[RuleFiring] = []
        for rule in rules:
            if not evaluate(rule.condition, resources):
                true_since.pop(rule.label, None)
                fired.discard(rule.label)
                continue
            since = true_since.setdefault(rule.label, now)
            if rule.label in fired or now - since < self.handle_time:
                continue
            fired.add(rule.label)
            firings.append(RuleFiring(rule, now - since))
        return RuleClock(self.handle_time, true_since, frozenset(fired)), firings

    def reset(self) -> RuleClock:
        return RuleClock(self.handle_time)
