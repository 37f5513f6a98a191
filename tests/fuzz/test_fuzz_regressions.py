"""The exact inputs with which fuzzing crashed a decoder, kept as plain tests (docs/fuzzing.md
lists each fix). Each failed with an exception other than the decoder's documented error."""

from __future__ import annotations

import pytest

from safekit.config import ConfigError, RuleSyntaxError, parse_cluster, parse_duration, parse_module
from safekit.config.failover_rules import MAX_NESTING, parse_rule_expression

MIRROR = '<safe>{macros}<service mode="mirror"><heart><heartbeat/></heart>{sections}</service></safe>'


def _module(macros: str = "", sections: str = "", env: dict[str, str] | None = None) -> str:
    return MIRROR.format(macros=macros, sections=sections), env or {}


# config/xmlread.py: an encoding expat or Python cannot use let LookupError/ValueError out.
@pytest.mark.parametrize(
    ("encoding", "why"),
    [
        ("utf-7", "multi-byte encodings are not supported"),  # ValueError
        ("shift_jis", "multi-byte encodings are not supported"),  # ValueError
        ("rot13", "is not a text encoding"),  # LookupError
        ("klingon", "unknown encoding"),  # LookupError
        ("idna", "idna"),  # UnicodeError
    ],
)
def test_an_encoding_that_cannot_be_read_is_a_config_error(encoding: str, why: str) -> None:
    document = f'<?xml version="1.0" encoding="{encoding}"?><cluster/>'.encode()
    with pytest.raises(ConfigError) as caught:
        parse_cluster(document, "cluster.xml")
    assert "cannot decode the text" in str(caught.value) and why in str(caught.value)
    assert str(caught.value).startswith("cluster.xml:")


# config/xmlread.py: text (not bytes) with a lone surrogate let UnicodeEncodeError out.
def test_text_with_a_lone_surrogate_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot decode the text"):
        parse_cluster('<cluster a="\ud800"/>', "cluster.xml")


# config/attributes.py (ElementReader.regex): re.compile raised OverflowError, ValueError and
# RecursionError, not only re.error.
@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{99999999999}", "is not a regular expression (the repetition number is too large)"),
        ("(?a)(?u)", "is not a regular expression (ASCII and UNICODE flags are incompatible)"),
        ("(" * 10000 + ")" * 10000, "the regular expression nests too deeply"),
    ],
)
def test_a_regular_expression_that_python_refuses_is_a_config_error(pattern: str, message: str) -> None:
    text, env = _module(sections=f'<errd><proc nameregex="{pattern}" action="restart" class="prim"/></errd>')
    with pytest.raises(ConfigError) as caught:
        parse_module(text, "userconfig.xml", env)
    assert "<proc>: attribute 'nameregex'" in str(caught.value) and message in str(caught.value)


# config/check_parser.py (_arbitrator): "²".isdigit() is true but int("²") raises ValueError.
def test_an_arbiter_port_in_other_digits_is_a_config_error() -> None:
    check = '<check><splitbrain exec="arbitrator" arg="198.18.0.254:\u00b2"/></check>'
    text, env = _module(sections=check)
    with pytest.raises(ConfigError, match="the port must be a number from 1 to 65535"):
        parse_module(text, "userconfig.xml", env)


# config/failover_rules.py: deep nesting overflowed the recursive-descent parser (RecursionError).
@pytest.mark.parametrize(
    "condition", ["!" * 5000 + "heartbeat.a == up", "(" * 5000 + "heartbeat.a == up" + ")" * 5000]
)
def test_a_condition_nested_too_deeply_is_a_syntax_error(condition: str) -> None:
    with pytest.raises(RuleSyntaxError, match=f"more than {MAX_NESTING} levels deep") as caught:
        parse_rule_expression(condition)
    assert caught.value.offset == MAX_NESTING


def test_a_failover_rule_nested_too_deeply_is_reported_at_its_line() -> None:
    rule = "r: if (" + "!" * 5000 + "heartbeat.default == up) then stop();"
    text, env = _module(sections=f"<failover>\n{rule}</failover>")
    with pytest.raises(ConfigError) as caught:
        parse_module(text, "userconfig.xml", env)
    assert "userconfig.xml:2: <failover>: failover rule: the condition nests" in str(caught.value)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    depth = MAX_NESTING
    assert parse_rule_expression("(" * depth + "heartbeat.a == up" + ")" * depth) is not None


# config/durations.py: hundreds of digits made an infinite duration, accepted.
def test_a_duration_too_long_for_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="too long a duration"):
        parse_duration("9" * 400 + "d", "s")
    text, env = _module()
    text = text.replace('mode="mirror"', f'mode="mirror" loop_interval="{"9" * 400}"')
    with pytest.raises(ConfigError, match="'loop_interval'"):
        parse_module(text, "userconfig.xml", env)


# config/module_parser.py + macros.py: a macro's value was expanded twice, so an environment
# variable whose value holds `%NAME%` raised UnknownReference out of parse_module.
def test_an_environment_value_that_looks_like_a_reference_is_taken_as_is() -> None:
    text, env = _module(macros='<macro name="M" value="%PERCENT%"/>', env={"PERCENT": "%NOPE%"})
    module = parse_module(text, "userconfig.xml", env).config
    assert module.macros == (("M", "%NOPE%"),)


# config/macros.py: macros that double the previous one grew without bound (MemoryError).
def test_macros_that_double_themselves_stop_at_the_budget() -> None:
    macros = '<macro name="m0" value="0123456789abcdef"/>' + "".join(
        f'<macro name="m{i + 1}" value="%m{i}%%m{i}%"/>' for i in range(40)
    )
    text, env = _module(macros=macros)
    with pytest.raises(ConfigError) as caught:
        parse_module(text, "userconfig.xml", env)
    assert "expanding %m19% takes the file's references past 16777216 characters" in str(caught.value)
