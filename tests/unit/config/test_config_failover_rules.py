"""Failover rules: SafeKit's `label: if (expr) then action();` parsed to an AST and evaluated."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safekit.config import (
    And,
    Comparison,
    Not,
    Or,
    RuleExpr,
    RuleSyntaxError,
    evaluate,
    parse_failover_rules,
    parse_rule_expression,
)
from safekit.config.failover_rules import FailoverRule, RuleClock

HB_DOWN = Comparison("heartbeat.default", "==", "down")


def test_precedence_is_not_then_and_then_or() -> None:
    expr = parse_rule_expression("!a.x == up || b.y == down && c.z != init")
    assert expr == Or(
        (
            Not(Comparison("a.x", "==", "up")),
            And((Comparison("b.y", "==", "down"), Comparison("c.z", "!=", "init"))),
        )
    )


def test_parentheses_group() -> None:
    expr = parse_rule_expression("(a.x == up || b.y == up) && c.z == up")
    assert isinstance(expr, And) and isinstance(expr.operands[0], Or)


def test_rules_carry_label_action_and_line() -> None:
    text = (
        "\n  split: if (heartbeat.default == down && ping.witness == down) then stop();"
        "\n  s2: if (rfs.uptodate != up) then swap();\n"
    )
    rules, errors = parse_failover_rules(text)
    assert errors == ()
    assert [(r.label, r.action, r.line) for r in rules] == [("split", "stop", 2), ("s2", "swap", 3)]
    assert rules[0].condition == And((HB_DOWN, Comparison("ping.witness", "==", "down")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("r: if (a.b == up) then stop()", "expected ';' at the end of the rule"),
        ("r: if (a.b == up) then fly();", "unknown action 'fly'"),
        ("r: if (a.b == sideways) then stop();", "'sideways' is not a resource value"),
        ("r: if (a.b == up then stop();", "expected ')'"),
        ("r if (a.b == up) then stop();", "expected ':' after the rule label"),
        ("r: if (ab == up) then stop();", "expected a resource"),
        ("r: if (a.b == up) then stop(now);", "actions take no arguments"),
        ("r: if (a.b == up) then stop();\nr: if (a.b == down) then stop();", "label 'r' is used twice"),
    ],
)
def test_syntax_errors_are_reported_not_raised(text: str, message: str) -> None:
    _, errors = parse_failover_rules(text)
    assert len(errors) == 1 and message in errors[0][1], errors


def test_one_bad_rule_does_not_hide_the_others() -> None:
    rules, errors = parse_failover_rules(
        "a: if (x.y == up) then stop();\nb: if x.y == then stop();\nc: if (x.y == up) then wait();"
    )
    assert [r.label for r in rules] == ["a", "c"]
    assert [line for line, _ in errors] == [2]


def test_parse_rule_expression_raises_on_trailing_text() -> None:
    with pytest.raises(RuleSyntaxError, match="unexpected"):
        parse_rule_expression("a.b == up c.d")


def test_evaluate_comparisons_and_missing_resources() -> None:
    assert evaluate(HB_DOWN, {"heartbeat.default": "down"})
    assert not evaluate(HB_DOWN, {"heartbeat.default": "up"})
    # a resource nobody reported yet is unknown, never "down": no action on missing data
    assert not evaluate(HB_DOWN, {})
    assert evaluate(Comparison("heartbeat.default", "==", "unknown"), {})


def test_wildcard_matches_any_resource_of_the_class() -> None:
    any_ip_down = parse_rule_expression("ip.? == down")
    assert evaluate(any_ip_down, {"ip.a": "up", "ip.b": "down", "tcp.c": "up"})
    assert not evaluate(any_ip_down, {"ip.a": "up", "ipx.b": "down"})
    assert evaluate(parse_rule_expression("ip.? != down"), {"ip.a": "up"})


def test_split_brain_rule_reads_as_an_operator_would() -> None:
    (rule,), _ = parse_failover_rules(
        "isolated: if (heartbeat.? == down && splitbrain.uptodate == down) then wait();"
    )
    assert evaluate(
        rule.condition, {"heartbeat.default": "down", "heartbeat.repl": "up", "splitbrain.uptodate": "down"}
    )
    assert not evaluate(rule.condition, {"heartbeat.default": "down", "splitbrain.uptodate": "up"})


NAMES = ["a.x", "b.y", "c.z"]
VALUES = ["up", "down", "unknown", "init"]
comparisons = st.builds(
    Comparison, st.sampled_from(NAMES), st.sampled_from(["==", "!="]), st.sampled_from(VALUES)
)
expressions: st.SearchStrategy[RuleExpr] = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)


def render(expr: RuleExpr) -> str:
    """Fully parenthesised text of an expression, as a user could write it."""
    match expr:
        case Comparison(resource, op, value):
            return f"{resource} {op} {value}"
        case Not(operand):
            return f"!({render(operand)})"
        case And(operands):
            return "(" + " && ".join(render(o) for o in operands) + ")"
        case Or(operands):
            return "(" + " || ".join(render(o) for o in operands) + ")"
    raise AssertionError(expr)


@given(expressions, st.fixed_dictionaries({n: st.sampled_from(VALUES) for n in NAMES}))
def test_rendered_rules_parse_back_to_the_same_meaning(expr: RuleExpr, state: dict[str, str]) -> None:
    parsed = parse_rule_expression(render(expr))
    assert evaluate(parsed, state) == evaluate(expr, state)
    (rule,), errors = parse_failover_rules(f"r: if {render(expr)} then stopstart();")
    assert errors == () and evaluate(rule.condition, state) == evaluate(expr, state)


# --------------------------------------------------------------------------- the rule clock
def _clock_rules() -> tuple[FailoverRule, ...]:
    rules, errors = parse_failover_rules("interface_down: if (heartbeat.default == down) then restart();")
    assert errors == ()
    return rules


def test_a_rule_fires_once_its_condition_held_for_handle_time_and_once_only() -> None:
    clock = RuleClock(handle_time=2.0)
    down = {"heartbeat.default": "down"}
    clock, fired = clock.evaluate(_clock_rules(), down, 10.0)
    assert fired == []
    clock, fired = clock.evaluate(_clock_rules(), down, 11.5)
    assert fired == []
    clock, fired = clock.evaluate(_clock_rules(), down, 12.0)
    assert [(f.rule.label, f.held_for) for f in fired] == [("interface_down", 2.0)]
    clock, fired = clock.evaluate(_clock_rules(), down, 20.0)
    assert fired == []  # a lasting condition fires once
    clock, _ = clock.evaluate(_clock_rules(), {"heartbeat.default": "up"}, 21.0)
    clock, fired = clock.evaluate(_clock_rules(), down, 22.0)
    assert fired == []  # true again: the clock starts over
    clock, fired = clock.evaluate(_clock_rules(), down, 24.0)
    assert len(fired) == 1


def test_a_condition_false_once_restarts_the_clock_and_reset_forgets_everything() -> None:
    clock = RuleClock(handle_time=2.0)
    down, up = {"heartbeat.default": "down"}, {"heartbeat.default": "up"}
    clock, _ = clock.evaluate(_clock_rules(), down, 0.0)
    clock, _ = clock.evaluate(_clock_rules(), up, 1.0)
    clock, fired = clock.evaluate(_clock_rules(), down, 2.5)
    assert fired == []
    clock = clock.reset()
    assert clock == RuleClock(handle_time=2.0)
