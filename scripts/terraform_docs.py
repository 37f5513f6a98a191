"""The inputs and outputs tables of the Terraform modules' READMEs, generated from their .tf files
the way terraform-docs does it (terraform-docs is neither a Debian nor a PyPI package, and nothing
else can be installed where the project builds):

    .venv/bin/python scripts/terraform_docs.py           # rewrite the tables of every module README
    .venv/bin/python scripts/terraform_docs.py --check   # exit 1 with a diff if one is stale

A module is a directory terraform/<stack>/modules/<name> (the clouds' safekit_cluster, and
terraform/shared/modules/safekit_handoff). Its README.md holds the generated part between
`<!-- BEGIN_TF_DOCS -->` and `<!-- END_TF_DOCS -->` (terraform-docs' own markers); the rest of the
README is written by hand. Inputs come in the order of the .tf files (sorted by name) and of
their blocks, as a reader meets them; a default is shown as HCL, `required` when there is none.
Needs python-hcl2, the parser of the offline Terraform checks (the project's test extra);
tests/unit/terraform/test_terraform_docs.py fails when a README is not what this prints.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN_TF_DOCS -->"
END = "<!-- END_TF_DOCS -->"
_TEXT = hcl2.SerializationOptions(
    strip_string_quotes=True, with_comments=False, explicit_blocks=False, preserve_heredocs=False
)
# Strings keep their quotes and escapes: a default is shown as it is written.
_LITERAL = hcl2.SerializationOptions(
    strip_string_quotes=False, with_comments=False, explicit_blocks=False, preserve_heredocs=False
)


class StaleReadme(RuntimeError):
    """A module README without the markers the generated tables go between."""


@dataclass(frozen=True)
class Input:
    name: str
    type: str
    default: str | None  # HCL text; None: required
    description: str
    sensitive: bool


@dataclass(frozen=True)
class Output:
    name: str
    description: str
    sensitive: bool


def module_dirs(terraform: Path) -> list[Path]:
    """Every reusable module under terraform/: <stack>/modules/<name> with .tf files."""
    return sorted(p for p in terraform.glob("*/modules/*") if p.is_dir() and any(p.glob("*.tf")))


def _blocks(
    directory: Path, kind: str, options: hcl2.SerializationOptions
) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle, serialization_options=options)
        for entry in parsed.get(kind, []):
            found.extend((name.strip('"'), body) for name, body in entry.items())
    return found


def hcl_value(value: Any) -> str:
    """A default as HCL: strings as written (quoted), lists, maps, numbers, bools, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {hcl_value(v)}" for k, v in value.items()) + " }"
    return str(value)


def _type(body: dict[str, Any]) -> str:
    text = str(body.get("type", "any"))
    return text[2:-1] if text.startswith("${") and text.endswith("}") else text


def inputs(directory: Path) -> list[Input]:
    literal = dict(_blocks(directory, "variable", _LITERAL))
    return [
        Input(
            name=name,
            type=_type(body),
            default=hcl_value(literal[name]["default"]) if "default" in body else None,
            description=str(body.get("description", "")),
            sensitive=bool(body.get("sensitive", False)),
        )
        for name, body in _blocks(directory, "variable", _TEXT)
    ]


def outputs(directory: Path) -> list[Output]:
    return [
        Output(name, str(body.get("description", "")), bool(body.get("sensitive", False)))
        for name, body in _blocks(directory, "output", _TEXT)
    ]


def cell(text: str) -> str:
    """Text for a Markdown table cell: one line, `|` escaped, and outside code spans `<`, `>`
    and `*` escaped, so that `<module_name>` is shown rather than taken for an HTML tag and two
    `safekit_cloud_*` do not make italics."""
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        for char in "<>*":
            parts[i] = parts[i].replace(char, "\\" + char)
    return "`".join(parts)


def tables(directory: Path) -> str:
    """The generated part of a module README: its inputs and outputs tables."""
    lines = ["## Inputs", "", "| name | type | default | description |", "|---|---|---|---|"]
    for item in inputs(directory):
        default = "required" if item.default is None else f"`{cell(item.default)}`"
        note = " (sensitive)" if item.sensitive else ""
        lines.append(f"| `{item.name}` | `{cell(item.type)}` | {default} | {cell(item.description)}{note} |")
    lines += ["", "## Outputs", "", "| name | description |", "|---|---|"]
    for out in outputs(directory):
        note = " (sensitive)" if out.sensitive else ""
        lines.append(f"| `{out.name}` | {cell(out.description)}{note} |")
    return "\n".join(lines) + "\n"


def updated(readme: str, generated: str) -> str:
    """The README with the text between the markers replaced by `generated`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise StaleReadme(f"no {BEGIN} ... {END} section")
    return readme[: start + len(BEGIN)] + "\n" + generated + readme[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a README is stale")
    parser.add_argument("--terraform", type=Path, default=REPO / "terraform", help="the terraform/ folder")
    args = parser.parse_args(argv)
    stale, broken = 0, 0
    for directory in module_dirs(args.terraform):
        readme = directory / "README.md"
        current = readme.read_text() if readme.exists() else ""
        try:
            wanted = updated(current, tables(directory))
        except StaleReadme as error:
            print(f"{readme}: {error}", file=sys.stderr)
            broken += 1
            continue
        if wanted == current:
            continue
        stale += 1
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), wanted.splitlines(True), str(readme), "generated"
                )
            )
        else:
            readme.write_text(wanted)
            print(f"{readme}: tables updated")
    if args.check and stale:
        print(f"{stale} module README(s) out of date: run scripts/terraform_docs.py", file=sys.stderr)
    return 1 if broken or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
