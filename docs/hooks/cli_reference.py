"""MkDocs hook: the command-line reference, generated from ``circuitlab.cli.main.build_parser()``.

Generates ``reference/cli.md``: every sub-command, nested ones (``models list``) included, with
its description, its usage line and a table of its arguments (flags, type or choices, default,
help). Sub-commands added to the parser appear without touching the docs.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
USAGE_WIDTH = "100"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, one-line help, parser)`` of each direct sub-command, in definition order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            formatter = parser._get_formatter()
            helps = {
                choice.dest: formatter._expand_help(choice) if choice.help else ""
                for choice in action._choices_actions
            }
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _kind(action: argparse.Action) -> str:
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        kind = "one of " + ", ".join(f"`{choice}`" for choice in action.choices)
    elif action.nargs == 0:
        return "flag"
    elif action.type is None:
        kind = "text"
    else:
        kind = getattr(action.type, "__name__", str(action.type)).replace("_", " ")
    counts = {"+": "one or more", "*": "any number", "?": "optional"}
    if isinstance(action.nargs, int) and action.nargs > 1:
        kind = f"{action.nargs} × {kind}"
    elif action.nargs in counts:
        kind = f"{kind}, {counts[action.nargs]}"
    if isinstance(action, argparse._AppendAction):
        kind += ", repeatable"
    return kind


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    default = action.default
    if default is None or default == argparse.SUPPRESS or action.nargs == 0 or default == []:
        return ""
    if isinstance(default, (list, tuple)):
        return " ".join(f"`{value}`" for value in default)
    return f"`{default}`"


def _argument_rows(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            metavar = (
                formatter._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
            )
            flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
            name = f"{flags} `{metavar}`" if metavar else flags
        else:
            name = f"`{formatter._format_args(action, action.dest)}`"
        help_text = formatter._expand_help(action) if action.help else ""
        cells = [name, _kind(action), _default(action), help_text]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return rows


def _section(
    path: list[str], summary: str, parser: argparse.ArgumentParser, level: int
) -> list[str]:
    lines = [f"{'#' * level} `{' '.join(path)}`", ""]
    description = parser.description or summary
    if description:
        lines += [description, ""]
    usage = parser.format_usage().strip().removeprefix("usage: ")
    usage = "\n".join(line.removeprefix(" " * len("usage: ")) for line in usage.splitlines())
    lines += ["```text", usage, "```", ""]
    rows = _argument_rows(parser)
    if rows:
        lines += ["| Argument | Type | Default | Meaning |", "| --- | --- | --- | --- |", *rows, ""]
    children = list(_subcommands(parser))
    if children:
        lines += ["| Sub-command | What it does |", "| --- | --- |"]
        lines += [
            f"| [`{name}`](#{'-'.join([*path, name]).replace(' ', '-')}) | {_cell(text)} |"
            for name, text, _ in children
        ]
        lines.append("")
    for name, text, child in children:
        lines += _section([*path, name], text, child, min(level + 1, 4))
    return lines


def cli_reference() -> str:
    """The Markdown of the command-line reference page."""
    from circuitlab.cli.main import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = USAGE_WIDTH  # usage lines wrap the same on every terminal
    try:
        parser = build_parser()
        lines = [
            "# Command-line reference",
            "",
            "Generated from the parser (`circuitlab.cli.main.build_parser()`) when the docs are "
            "built; `circuitlab COMMAND --help` prints the same. For tasks and examples see the "
            "[command-line guide](../guides/cli.md).",
            "",
            *_section([parser.prog], parser.description or "", parser, 2),
        ]
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated ``reference/cli.md`` to the site."""
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files
