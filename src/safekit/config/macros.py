"""`%NAME%` references in attribute values: a `<macro>` of the module, else an environment variable.

A `%` that does not open a well-formed `%NAME%` reference is kept as is, so values such as
`80%` need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_REFERENCE: Final = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
MAX_EXPANSION: Final = 16 * 1024 * 1024
"""Characters all the substitutions of one file may produce. Macros may use macros, so a few
lines could otherwise double a value forty times (a "billion laughs" made of macros)."""


class UnknownReference(LookupError):
    """A `%NAME%` that is neither a macro nor an environment variable."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class ExpansionTooLarge(LookupError):
    """Substituting `%NAME%` references would produce more than MAX_EXPANSION characters."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class MacroExpander:
    """Expands references with the module's macros first, then the environment."""

    def __init__(self, macros: Mapping[str, str], env: Mapping[str, str]) -> None:
        self._macros = dict(macros)
        self._env = env
        self._budget = MAX_EXPANSION

    def define(self, name: str, value: str, *, expand: bool = True) -> None:
        """Add a macro; its value may itself use macros defined before it.

        `expand=False` stores a value that was already expanded, as is: expanding it again would
        read a `%` that came from an environment variable's value as a reference.
        """
        self._macros[name] = self.expand(value) if expand else value

    def is_defined(self, name: str) -> bool:
        return name in self._macros

    @property
    def macros(self) -> Mapping[str, str]:
        return dict(self._macros)

    def expand(self, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self._macros:
                text = self._macros[name]
            elif name in self._env:
                text = self._env[name]
            else:
                raise UnknownReference(name)
            self._budget -= len(text)
            if self._budget < 0:
                raise ExpansionTooLarge(name)
            return text

        return _REFERENCE.sub(replace, value)
