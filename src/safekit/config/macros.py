"""`%NAME%` references in attribute values: a `<macro>` of the module, else an environment variable.

A `%` that does not open a well-formed `%NAME%` reference is kept as is, so values such as
`80%` need no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_REFERENCE: Final = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")


class UnknownReference(LookupError):
    """A `%NAME%` that is neither a macro nor an environment variable."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class MacroExpander:
    """Expands references with the module's macros first, then the environment."""

    def __init__(self, macros: Mapping[str, str], env: Mapping[str, str]) -> None:
        self._macros = dict(macros)
        self._env = env

    def define(self, name: str, value: str) -> None:
        """Add a macro; its value may itself use macros defined before it."""
        self._macros[name] = self.expand(value)

    def is_defined(self, name: str) -> bool:
        return name in self._macros

    @property
    def macros(self) -> Mapping[str, str]:
        return dict(self._macros)

    def expand(self, value: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self._macros:
                return self._macros[name]
            if name in self._env:
                return self._env[name]
            raise UnknownReference(name)

        return _REFERENCE.sub(replace, value)
