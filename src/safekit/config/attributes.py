"""Typed reading of one element's attributes, with macro expansion and error collection.

Every reader method records a problem in `Diagnostics` and returns a fallback instead of raising,
so that a parser reports all the mistakes of a file in one pass; the caller raises at the end.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Final

from safekit.config.durations import HINT, parse_duration
from safekit.config.errors import Diagnostics
from safekit.config.macros import MAX_EXPANSION, ExpansionTooLarge, MacroExpander, UnknownReference
from safekit.config.xmlread import XmlElement

_TRUE: Final = ("on", "yes")
_FALSE: Final = ("off", "no")
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


class ElementReader:
    """Reads the attributes of `element`; unknown ones are errors, ignored ones warnings."""

    def __init__(
        self,
        element: XmlElement,
        diagnostics: Diagnostics,
        expander: MacroExpander | None,
        allowed: Iterable[str],
        ignored: Mapping[str, str] | None = None,
    ) -> None:
        self.element = element
        self.diag = diagnostics
        self._expander = expander
        allowed_set = set(allowed)
        ignored = ignored or {}
        for name in element.attributes:
            if name in allowed_set:
                continue
            if name in ignored:
                self.warn(
                    f"attribute {name!r} is accepted for SafeKit compatibility and ignored ({ignored[name]})"
                )
                continue
            choices = ", ".join(sorted(allowed_set)) or "none"
            self.error(f"unknown attribute {name!r} (allowed: {choices})")

    @property
    def tag(self) -> str:
        return self.element.tag

    @property
    def line(self) -> int:
        return self.element.line

    def error(self, message: str, line: int | None = None) -> None:
        self.diag.error(self.line if line is None else line, self.tag, message)

    def warn(self, message: str) -> None:
        self.diag.warn(self.line, self.tag, message)

    def raw(self, name: str) -> str | None:
        """The value with `%NAME%` references expanded; None when absent or not expandable."""
        value = self.element.attributes.get(name)
        if value is None or self._expander is None:
            return value
        try:
            return self._expander.expand(value)
        except UnknownReference as exc:
            self.error(
                f"attribute {name!r}: %{exc.name}% is neither a macro nor an environment variable "
                f'(define <macro name="{exc.name}" value="..."/> in <safe> or set it in the environment)'
            )
            return None
        except ExpansionTooLarge as exc:
            self.error(
                f"attribute {name!r}: expanding %{exc.name}% takes the file's references past "
                f"{MAX_EXPANSION} characters (macros that repeat macros?)"
            )
            return None

    def has(self, name: str) -> bool:
        return name in self.element.attributes

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        if required and not self.has(name):
            self.error(f"missing required attribute {name!r}")
            return None
        value = self.raw(name)
        if value is None:
            return default
        if required and not value.strip():
            self.error(f"attribute {name!r} must not be empty")
            return None
        return value

    def name(self, attribute: str, default: str | None = None, *, required: bool = False) -> str | None:
        """An identifier: letters, digits, `_`, `.`, `-` (names of LANs, nodes, checkers, ...)."""
        value = self.string(attribute, default, required=required)
        if value is None or value == default:
            return value
        value = value.strip()
        if not NAME_PATTERN.fullmatch(value):
            self.error(
                f"attribute {attribute!r}: {value!r} is not a name (use letters, digits, '_', '.', '-')"
            )
            return None
        return value

    def choice(self, name: str, options: Collection[str], default: str, *, required: bool = False) -> str:
        if required and not self.has(name):
            self.error(f"missing required attribute {name!r} (use one of: {', '.join(options)})")
            return default
        value = self.raw(name)
        if value is None:
            return default
        value = value.strip()
        if value not in options:
            self.error(f"attribute {name!r}: {value!r} is not allowed (use one of: {', '.join(options)})")
            return default
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        value = value.strip().lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.error(f"attribute {name!r}: {value!r} is not allowed (use on/off or yes/no)")
        return default

    def integer(self, name: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            self.error(f"attribute {name!r}: {text!r} is not an integer")
            return default
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            self.error(f"attribute {name!r}: {number} is out of range (must be {bound})")
            return default
        return number

    def duration(self, name: str, default_unit: str, default: float) -> float:
        """Seconds; a bare number is in `default_unit`. Must be greater than zero."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            seconds = parse_duration(value, default_unit)
        except ValueError:
            self.error(f"attribute {name!r}: {value!r} is not a duration ({HINT})")
            return default
        if seconds <= 0:
            self.error(f"attribute {name!r}: {value!r} must be greater than zero")
            return default
        return seconds

    def ipv4(self, name: str, *, required: bool = True) -> str | None:
        value = self.string(name, required=required)
        if value is None:
            return None
        return self.check_ipv4(name, value.strip())

    def check_ipv4(self, name: str, value: str) -> str | None:
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            pass
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            self.error(f"attribute {name!r}: {value!r} is not an IPv4 address (e.g. 192.168.1.10)")
        else:
            self.error(
                f"attribute {name!r}: {value!r} is an IPv6 address: this version handles IPv4 only "
                "here (IPv6 is for virtual IPs; docs/config.md)"
            )
        return None

    def host(self, name: str, *, required: bool = True) -> str | None:
        """An IPv4 address or a host name (checker targets may be names resolved at run time)."""
        value = self.string(name, required=required)
        if value is None:
            return None
        return self.check_host(name, value.strip())

    def check_host(self, name: str, value: str) -> str | None:
        if re.fullmatch(r"[\d.]+", value):
            return self.check_ipv4(name, value)
        if re.fullmatch(
            r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9-]{0,62})*", value
        ):
            return value
        self.error(f"attribute {name!r}: {value!r} is neither an IPv4 address nor a host name")
        return None

    def port(self, name: str, default: int | None = None, *, required: bool = False) -> int | None:
        if not self.has(name):
            if required:
                self.error(f"missing required attribute {name!r}")
            return default
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            number = 0
        if not 1 <= number <= 65535:
            self.error(f"attribute {name!r}: {value!r} is not a port (use 1-65535)")
            return default
        return number

    def regex(self, name: str) -> str | None:
        value = self.raw(name)
        if value is None:
            return None
        try:
            re.compile(value)
        except (re.error, ValueError, OverflowError) as exc:
            # ValueError: incompatible flags ((?a)(?u)); OverflowError: a{4294967296}
            self.error(f"attribute {name!r}: {value!r} is not a regular expression ({exc})")
            return None
        except RecursionError:
            self.error(f"attribute {name!r}: the regular expression nests too deeply")
            return None
        return value


def check_children(
    element: XmlElement, diagnostics: Diagnostics, allowed: Collection[str], *, once: Collection[str] = ()
) -> None:
    """Unknown child elements are errors, as is repeating one that may appear only once, or text."""
    seen: set[str] = set()
    for child in element.children:
        if child.tag not in allowed:
            choices = ", ".join(f"<{a}>" for a in allowed) or "no child elements"
            diagnostics.error(
                child.line, element.tag, f"unknown element <{child.tag}> (allowed here: {choices})"
            )
        elif child.tag in once and child.tag in seen:
            diagnostics.error(child.line, child.tag, f"<{child.tag}> may appear only once in <{element.tag}>")
        seen.add(child.tag)
    for line, piece in element.text_pieces:
        if piece.strip():
            diagnostics.error(
                line, element.tag, f"unexpected text {piece.strip()[:40]!r} (attributes carry values)"
            )
            break


def children(element: XmlElement, tag: str) -> list[XmlElement]:
    return [child for child in element.children if child.tag == tag]


def first_child(element: XmlElement, tag: str) -> XmlElement | None:
    return next((child for child in element.children if child.tag == tag), None)


class ReadContext:
    """What every section parser of a userconfig.xml needs: diagnostics, macros and the mode."""

    def __init__(self, diagnostics: Diagnostics, expander: MacroExpander, mode: str) -> None:
        self.diag = diagnostics
        self.expander = expander
        self.mode = mode

    def reader(
        self, element: XmlElement, allowed: Iterable[str], ignored: Mapping[str, str] | None = None
    ) -> ElementReader:
        return ElementReader(element, self.diag, self.expander, allowed, ignored)

    def children(self, element: XmlElement, allowed: Collection[str], *, once: Collection[str] = ()) -> None:
        check_children(element, self.diag, allowed, once=once)
