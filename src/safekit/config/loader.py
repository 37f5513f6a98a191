"""Reading configuration files from disk, and checking one file whatever its kind."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from safekit.config.cluster import ClusterConfig
from safekit.config.cluster_parser import parse_cluster
from safekit.config.errors import ConfigError, ConfigWarning
from safekit.config.module_parser import ModuleResult, parse_module
from safekit.config.xmlread import MAX_CONFIG_BYTES, read_xml


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as handle:
            # One byte more than the limit, so that read_xml sees (and reports) an oversized file.
            return handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(os.fspath(path), 0, None, f"cannot read: {exc.strerror or exc}") from None


def module_file(path: str | os.PathLike[str]) -> Path:
    """A module directory stands for its `conf/userconfig.xml`, as in a SafeKit module."""
    candidate = Path(path)
    return candidate / "conf" / "userconfig.xml" if candidate.is_dir() else candidate


def load_cluster(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and validate a `cluster.xml`; warnings are in the result's `warnings`."""
    return parse_cluster(_read(path), os.fspath(path))


def load_module(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> ModuleResult:
    """Read and validate a module's `userconfig.xml` (or a module directory)."""
    file = module_file(path)
    return parse_module(_read(file), os.fspath(file), env)


def check_file(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[ConfigWarning, ...]:
    """Validate a `cluster.xml` or a `userconfig.xml`, told apart by the root element.

    Returns the warnings; raises ConfigError with every problem of the file.
    """
    file = module_file(path)
    data = _read(file)
    root = read_xml(data, os.fspath(file))
    if root.tag == "cluster":
        return parse_cluster(data, os.fspath(file)).warnings
    if root.tag == "safe":
        return parse_module(data, os.fspath(file), env).warnings
    raise ConfigError(
        os.fspath(file),
        root.line,
        root.tag,
        "not a SafeKit file: the root element must be <cluster> or <safe>",
    )
