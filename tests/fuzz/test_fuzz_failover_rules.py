"""Fuzz the failover rules parser (config.failover_rules): the text of `<failover>` is hand-written.

Contract: a condition parses to the expression it spells (printed and parsed back: the same
tree) or raises `RuleSyntaxError` with a message and an offset inside the text; nesting deeper
than MAX_NESTING is refused, never a RecursionError; `parse_failover_rules` never raises and
reports each bad rule on a line of the text; `evaluate` answers a bool for any resource states.
"""

from __future__ import annotations

import pytest
from fuzz_support import count, fuzz_settings, run_decoder, timeout_seconds
from hypothesis import given
from hypothesis import strategies as st

from safekit.config.failover_rules import (
    MAX_NESTING,
    RESOURCE_VALUES,
    RULE_ACTIONS,
    And,
    Comparison,
    FailoverRule,
    Not,
    Or,
    RuleExpr,
    RuleSyntaxError,
    evaluate,
    parse_failover_rules,
    parse_rule_expression,
)

pytestmark = pytest.mark.timeout(timeout_seconds())

RESOURCES = ("heartbeat.default", "heartbeat.?", "ping.witness", "custom.app-1", "rfs.uptodate", "a.b.c")

comparisons = st.builds(
    Comparison, st.sampled_from(RESOURCES), st.sampled_from(("==", "!=")), st.sampled_from(RESOURCE_VALUES)
)
expressions: st.SearchStrategy[RuleExpr] = st.recursive(
    comparisons,
    lambda inner: (
        st.builds(Not, inner)
        | st.lists(inner, min_size=2, max_size=4).map(lambda ops: And(tuple(ops)))
        | st.lists(inner, min_size=2, max_size=4).map(lambda ops: Or(tuple(ops)))
    ),
    max_leaves=30,
)


def render(expr: RuleExpr) -> tuple[str, int]:
    """The text of `expr` with every compound operand parenthesised, and its nesting depth."""
    match expr:
        case Comparison(resource, op, value):
            return f"{resource} {op} {value}", 0
        case Not(operand):
            text, depth = render(operand)
            return f"!({text})", depth + 2
        case And(operands) | Or(operands):
            joiner = " && " if isinstance(expr, And) else " || "
            parts = [render(o) for o in operands]
            return joiner.join(f"({t})" for t, _ in parts), 1 + max(d for _, d in parts)
    raise TypeError(expr)


@given(expressions, st.sampled_from(("", " ", "\n\t")))
@fuzz_settings()
def test_conditions_round_trip(expr: RuleExpr, spacing: str) -> None:
    count("failover rules: valid round trip")
    text, depth = render(expr)
    text = spacing + text.replace(" ", spacing + " ") + spacing
    parsed, error = run_decoder("parse_rule_expression", lambda: parse_rule_expression(text), RuleSyntaxError)
    if depth > MAX_NESTING:
        assert isinstance(error, RuleSyntaxError) and "levels deep" in error.message
    else:
        assert parsed == expr


_TOKENS = (
    "heartbeat.default", "ping.?", "custom.x", "==", "!=", "&&", "||", "!", "(", ")", "up", "down",
    "init", "unknown", ":", ";", "if", "then", "stop", "swap", "()", "r1", "=", "&", "|", " ", "\n",
    ".", "?", "-", "é", "1",
)  # fmt: skip


@given(
    st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
    | st.text(max_size=60)
    | st.integers(1, 5000).map(lambda n: "!" * n + "a.b == up")
    | st.integers(1, 5000).map(lambda n: "(" * n + "a.b == up" + ")" * n)
)
@fuzz_settings()
def test_any_condition_text_parses_or_says_where(text: str) -> None:
    count("failover rules: condition text")
    parsed, error = run_decoder("parse_rule_expression", lambda: parse_rule_expression(text), RuleSyntaxError)
    if error is not None:
        assert isinstance(error, RuleSyntaxError)
        assert 0 <= error.offset <= len(text)
    else:
        assert isinstance(parsed, Comparison | Not | And | Or)
        states = dict.fromkeys(RESOURCES, "down")
        assert isinstance(evaluate(parsed, states), bool)


@st.composite
def rule_texts(draw: st.DrawFn) -> str:
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            condition, _ = render(draw(expressions))
            label = draw(st.sampled_from(("r1", "r2", "hb_lost", "1bad", "")))
            rules.append(f"{label}: if ({condition}) then {draw(st.sampled_from(RULE_ACTIONS))}();")
        else:
            rules.append("".join(draw(st.lists(st.sampled_from(_TOKENS), max_size=20))))
    return draw(st.sampled_from(("\n", " ", "\n\n"))).join(rules)


@given(rule_texts())
@fuzz_settings()
def test_rule_texts_give_rules_and_errors_on_real_lines(text: str) -> None:
    count("failover rules: <failover> text")
    (rules, errors), _ = run_decoder("parse_failover_rules", lambda: parse_failover_rules(text), ())
    lines = text.count("\n") + 1
    labels = [rule.label for rule in rules]
    assert len(labels) == len(set(labels)) or any("used twice" in m for _, m in errors)
    for rule in rules:
        assert isinstance(rule, FailoverRule) and rule.action in RULE_ACTIONS
        assert 1 <= rule.line <= lines
    for line, message in errors:
        assert 1 <= line <= lines and message.startswith("failover rule")


@given(expressions, st.dictionaries(st.sampled_from(RESOURCES), st.sampled_from(RESOURCE_VALUES)))
@fuzz_settings()
def test_evaluate_answers_for_any_states(expr: RuleExpr, states: dict[str, str]) -> None:
    count("failover rules: evaluate")
    result, _ = run_decoder("evaluate", lambda: evaluate(expr, states), ())
    assert isinstance(result, bool)
    assert evaluate(Not(expr), states) is (not result)
