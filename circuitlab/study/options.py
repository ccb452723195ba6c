"""A study step's parameters, checked against the options of the CLI sub-command it runs.

Steps are the ``circuitlab`` sub-commands (`circuitlab.cli.main.build_parser`). A parameter is
one of the sub-command's options, spelled as its long flag with underscores (``top_k`` for
``--top-k``). Each value is checked the way argparse would check it on the command line (the
option's own ``type`` and ``choices``, one value or a list, a switch takes true/false), so a
study file fails with the same rules, and a clear message, before anything runs.

Example:
    >>> options = command_options("layer-scores")
    >>> options["k"].convert(25, where="step 'scores'")
    25.0
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from circuitlab.cli.paths import OUTPUT_FILES, OUTPUT_FOLDERS
from circuitlab.errors import InputError

__all__ = [
    "MODEL_OPTIONS",
    "NOT_STEPS",
    "OUTPUT_NAMES",
    "Option",
    "command_options",
    "step_commands",
    "suggest",
]

NOT_STEPS = ("models", "study")
"""Sub-commands a study cannot run as a step (cache management, and studies themselves)."""

MODEL_OPTIONS = ("model", "device", "dtype")
"""Options a step takes from the study's ``model:`` section, never from its parameters."""

_NOT_PARAMETERS = ("cache_dir", "debug", "help")

OUTPUT_NAMES: dict[str, str] = {
    "json": "result.json",
    "save": "result.safetensors",
    "csv": "table.csv",
    "plot": "figure.png",
    "html": "attention.html",
    "checkpoint": "checkpoint",
    "out": "out",
    "output": "model",
    "export": "export",
    "checkpoint_dir": "checkpoints",
    "adapters": "adapters",
}
"""Where the runner points each output option, inside the step's own folder."""

OFF_BY_DEFAULT = ("export", "adapters")
"""Outputs written only when a step asks for them (``export: true``): whole model folders."""

_MISSING = set(OUTPUT_FILES) | set(OUTPUT_FOLDERS)
if _MISSING - set(OUTPUT_NAMES):  # pragma: no cover - a new output option needs a name here
    raise RuntimeError(f"no study file name for output options {_MISSING - set(OUTPUT_NAMES)}")


def suggest(name: str, choices: list[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` (empty if none is close).

    Args:
        name: the unknown name that was given.
        choices: the valid names.
    """
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Option:
    """One option of a sub-command, as a study parameter.

    Args:
        name: the parameter name (the long flag with underscores, or a positional's name).
        flag: the flag on the command line (empty for a positional).
        action: the argparse action.
    """

    name: str
    flag: str
    action: argparse.Action

    @property
    def is_switch(self) -> bool:
        """A flag without a value (``--clip``): the parameter takes true or false."""
        return self.action.nargs == 0

    @property
    def is_output(self) -> bool:
        """A file or folder the command writes (the runner places it in the step's folder)."""
        return self.action.dest in OUTPUT_NAMES

    @property
    def takes_list(self) -> bool:
        """Several values (``nargs`` ``+``/``*``/N, or a repeatable flag)."""
        nargs = self.action.nargs
        return (
            isinstance(self.action, argparse._AppendAction)
            or nargs in ("+", "*")
            or (isinstance(nargs, int) and nargs > 0)
        )

    def _one(self, value: Any, where: str) -> Any:
        """One value, converted with the option's type and checked against its choices."""
        if isinstance(value, bool):
            raise InputError(
                f"{where}: parameter {self.name} takes {self._expected()}, got {value} (a YAML "
                f"boolean); quote it if you mean the word ('{str(value).lower()}')."
            )
        if value is None or isinstance(value, (dict, list)):
            shown = "null" if value is None else type(value).__name__
            raise InputError(
                f"{where}: parameter {self.name} takes {self._expected()}, got {shown}. "
                f"Give a value, or drop the parameter to use the default."
            )
        text = value if isinstance(value, str) else repr(value)
        convert = self.action.type or str
        try:
            converted = convert(text)  # type: ignore[operator]
        except argparse.ArgumentTypeError as error:
            raise InputError(f"{where}: parameter {self.name}: {error}.") from None
        except (TypeError, ValueError):
            raise InputError(
                f"{where}: parameter {self.name} takes {self._expected()}, got {value!r}."
            ) from None
        choices = self.action.choices
        if choices is not None and converted not in choices:
            hint = suggest(str(converted), list(map(str, choices)))
            raise InputError(
                f"{where}: parameter {self.name} is {converted!r}{hint} (choose from "
                f"{', '.join(map(str, choices))})."
            )
        return converted

    def _expected(self) -> str:
        kind = getattr(self.action.type, "__name__", None) or "str"
        kind = {"int": "a whole number", "float": "a number", "str": "text"}.get(
            kind, "a value" if kind.startswith("_") else f"a {kind}"
        )
        return f"a list of {kind.removeprefix('a ')}s" if self.takes_list else kind

    def convert(self, value: Any, *, where: str) -> Any:
        """``value`` from a study file as the command would parse it (a list for list options).

        Args:
            value: the YAML value (a scalar, a list, or true/false for a switch).
            where: names the study file and step in the errors.

        Returns:
            The converted value: a bool, one value, a list, or (``--diff``) a list of lists.
        """
        if self.is_switch:
            if not isinstance(value, bool):
                raise InputError(
                    f"{where}: parameter {self.name} is a switch ({self.flag}); give true or "
                    f"false, not {value!r}."
                )
            return value
        nargs = self.action.nargs
        if not self.takes_list:
            if isinstance(value, list):
                raise InputError(
                    f"{where}: parameter {self.name} takes one value, got a list {value!r}; to "
                    f"run the step once per value, put it under sweep: instead."
                )
            return self._one(value, where)
        items = value if isinstance(value, list) else [value]
        if isinstance(self.action, argparse._AppendAction) and isinstance(nargs, int):
            groups = [item if isinstance(item, list) else None for item in items]
            if isinstance(value, list) and value and not isinstance(value[0], list):
                groups = [value]  # one group written flat: [A, B]
            if any(group is None or len(group) != nargs for group in groups):
                raise InputError(
                    f"{where}: parameter {self.name} takes groups of {nargs} values ("
                    f"{' '.join(self.action.metavar or ())}), e.g. [[a, b]]; got {value!r}."
                )
            return [[self._one(item, where) for item in group] for group in groups if group]
        if isinstance(nargs, int) and len(items) != nargs:
            raise InputError(
                f"{where}: parameter {self.name} takes exactly {nargs} values, got {len(items)}."
            )
        if nargs == "+" and not items:
            raise InputError(f"{where}: parameter {self.name} takes at least one value, got [].")
        return [self._one(item, where) for item in items]

    def arguments(self, value: Any) -> list[str]:
        """The command-line arguments that give this option ``value`` (already converted).

        Args:
            value: the converted value (`convert`'s result).
        """
        if self.is_switch:
            return [self.flag] if value else []
        if not self.flag:
            return [str(item) for item in value] if isinstance(value, list) else [str(value)]
        if isinstance(self.action, argparse._AppendAction):
            if isinstance(self.action.nargs, int):
                return [part for group in value for part in (self.flag, *map(str, group))]
            return [f"{self.flag}={item}" for item in value]
        if isinstance(value, list):
            return [self.flag, *map(str, value)]
        return [f"{self.flag}={value}"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@cache
def _parser() -> argparse.ArgumentParser:
    from circuitlab.cli.main import build_parser

    return build_parser()


def step_commands() -> dict[str, argparse.ArgumentParser]:
    """The sub-commands a step can run, with their parsers (every one but `NOT_STEPS`)."""
    return {
        name: parser for name, parser in _subparsers(_parser()).items() if name not in NOT_STEPS
    }


def command_options(command: str) -> Mapping[str, Option]:
    """The parameters of sub-command ``command``, by name (model, cache and debug options left
    out: the study's model section sets them).

    Args:
        command: a sub-command a step can run (a key of `step_commands`).
    """
    parser = step_commands()[command]
    options = {}
    for action in parser._actions:
        if action.dest in _NOT_PARAMETERS or isinstance(action, argparse._HelpAction):
            continue
        longs = [flag for flag in action.option_strings if flag.startswith("--")]
        if action.option_strings and not longs:  # pragma: no cover - every option has --name
            continue
        name = longs[0][2:].replace("-", "_") if longs else action.dest
        if name in MODEL_OPTIONS:
            continue
        options[name] = Option(name=name, flag=longs[0] if longs else "", action=action)
    return options
