"""Errors and warnings of the configuration reader, and the collector that gathers them.

A user fixes a configuration file by reading these messages, so every one names the file, the line,
the element and what would have been accepted. The collector lets a parser keep going after the
first problem: one run reports every mistake of a file instead of one per edit.
"""

from __future__ import annotations

from dataclasses import dataclass


def _where(filename: str, line: int, element: str | None) -> str:
    place = f"{filename}:{line}:" if line > 0 else f"{filename}:"
    return f"{place} <{element}>:" if element else place


class ConfigError(Exception):
    """One problem in a configuration file, or (as `ConfigErrors`) all the problems of a file."""

    def __init__(self, filename: str, line: int, element: str | None, message: str) -> None:
        self.filename = filename
        self.line = line
        self.element = element
        self.message = message
        # Uniform access for callers: a single error is a list of one.
        self.errors: tuple[ConfigError, ...] = (self,)
        super().__init__(f"{_where(filename, line, element)} {message}")


class ConfigErrors(ConfigError):
    """Every problem found in one file, in file order; `str()` gives one line per problem.

    It is a `ConfigError` so that callers catch one class; `errors` holds the individual problems.
    """

    def __init__(self, errors: list[ConfigError]) -> None:
        if not errors:
            raise ValueError("ConfigErrors needs at least one error")
        ordered = sorted(errors, key=lambda e: (e.filename, e.line))
        first = ordered[0]
        super().__init__(first.filename, first.line, first.element, first.message)
        self.errors = tuple(ordered)
        # The summary replaces the single-error text so that printing the exception shows everything.
        self.args = ("\n".join(str(e) for e in ordered),)

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """Something accepted but not acted upon (a SafeKit attribute we knowingly ignore)."""

    filename: str
    line: int
    element: str | None
    message: str

    def __str__(self) -> str:
        return f"{_where(self.filename, self.line, self.element)} {self.message}"


class Diagnostics:
    """Collects the errors and warnings of one file while it is being read."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[ConfigError] = []
        self.warnings: list[ConfigWarning] = []

    def error(self, line: int, element: str | None, message: str) -> None:
        self.errors.append(ConfigError(self.filename, line, element, message))

    def warn(self, line: int, element: str | None, message: str) -> None:
        self.warnings.append(ConfigWarning(self.filename, line, element, message))

    def raise_if_errors(self) -> None:
        """Raise one exception carrying every error collected so far, if there is any."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise ConfigErrors(self.errors)

    def sorted_warnings(self) -> tuple[ConfigWarning, ...]:
        return tuple(sorted(self.warnings, key=lambda w: w.line))
