"""Study files: YAML naming a model, data files and steps; read, checked and expanded into runs.

A study file::

    study: avss-smollm2            # the study's name (required)
    model: smollm2-135m-instruct   # or {name: ..., dtype: float32, device: cpu}
    seed: 0                        # set before every step; each step's --seed defaults to it
    data:                          # files, relative to this file
      pairs: data/pairs.jsonl
    steps:
      - name: scores               # the step's folder (default: the command)
        command: layer-scores      # any circuitlab sub-command but models and study
        params: {methods: [avss, block_influence], window: 64}
        sweep: {epsilon: [0.05, 1.0e-5]}   # one run per combination, each in its own folder
      - command: patch
        params: {pairs: {data: pairs}}     # a data file, by its name under data:
      - command: ila-finetune
        params: {ranking: {from: rank, output: save}}   # a file an earlier step wrote

Parameters are the sub-command's options with underscores (``top_k`` for ``--top-k``), checked
by `circuitlab.study.options`. Output options (``json``, ``plot``, ``out``, ``checkpoint``, ...)
are placed in the step's folder by the runner; a step may turn one off (``plot: false``) or on
(``export: true``). Every error names the file, the step and the fix, before anything runs.

Examples:
    >>> study = load_study("studies/quick-tour.yaml", out="results/quick-tour")
    >>> [run.folder for run in study.runs]
    ['report', 'lens', 'ablate/method=zero', 'ablate/method=mean']
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from circuitlab.cli.paths import OUTPUT_FOLDERS
from circuitlab.errors import InputError
from circuitlab.files import read_text_file
from circuitlab.study.options import (
    MODEL_OPTIONS,
    NOT_STEPS,
    OFF_BY_DEFAULT,
    OUTPUT_NAMES,
    Option,
    command_options,
    step_commands,
    suggest,
)

__all__ = ["DataFile", "StepRun", "Study", "load_study"]

_TOP_KEYS = ("study", "description", "model", "seed", "data", "steps")
_STEP_KEYS = ("name", "command", "params", "sweep")
_MODEL_KEYS = ("name", "device", "dtype")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_OFF_WHEN = {"html": "summary"}
"""Outputs a step does not write when another parameter is set (attention's --summary has no
HTML page)."""


@dataclass(frozen=True)
class DataFile:
    """A data file a study names: its path (absolute) and the fingerprint of its text.

    Attributes:
        name: the name the study's ``data:`` section gives it (steps refer to it by this).
        path: the file's absolute path.
        fingerprint: the fingerprint of its text (`circuitlab.fingerprint.data_fingerprint`).
    """

    name: str
    path: Path
    fingerprint: str


@dataclass(frozen=True)
class StepRun:
    """One run of a step: a step without a sweep, or one point of its sweep.

    Args:
        step: the step's name.
        command: the CLI sub-command it runs.
        folder: its result folder inside the study folder (``"scores"``, ``"prune/k=25"``).
        point: the sweep values of this run (empty without a sweep).
        parameters: every parameter the study gives it, converted; data files and earlier
            steps' outputs written as references (``{"data": "pairs"}``).
        values: the same with references replaced by paths (what the command receives).
        outputs: the output options the runner points into the step's folder.
        inputs: fingerprints of the files it reads (``data:NAME``) and digests of the steps
            whose outputs it reads (``step:NAME``).
        key: what makes the run's result: study, command, parameters, inputs, model, seed.
    """

    step: str
    command: str
    folder: str
    point: dict[str, Any]
    parameters: dict[str, Any]
    values: dict[str, Any]
    outputs: tuple[str, ...]
    inputs: dict[str, str]
    key: dict[str, Any]

    @property
    def digest(self) -> str:
        """A short hash of `key`: equal keys, equal results."""
        from circuitlab.fingerprint import data_fingerprint

        return data_fingerprint(self.key)

    def arguments(self, folder: Path, model: Mapping[str, Any]) -> list[str]:
        """The command line (without ``circuitlab``) that runs this step, writing into ``folder``.

        Args:
            folder: where the outputs go (the step's working folder).
            model: the study's model section (``name``, ``device``, ``dtype``).
        """
        options = command_options(self.command)
        line = [self.command]
        for option in options.values():
            if option.flag:
                continue
            if option.name in self.outputs:
                line.append(str(folder / OUTPUT_NAMES[option.name]))
            elif option.name in self.values:
                line += option.arguments(self.values[option.name])
        for name in MODEL_OPTIONS:
            value = model.get("name" if name == "model" else name)
            if value is not None:
                line.append(f"--{name}={value}")
        for name, value in self.values.items():
            if options[name].flag:
                line += options[name].arguments(value)
        for name in self.outputs:
            if options[name].flag:
                line.append(f"{options[name].flag}={folder / OUTPUT_NAMES[name]}")
        fresh = any(OUTPUT_FOLDERS.get(name, ("", False))[1] for name in self.outputs)
        if fresh and "overwrite" in options and not self.values.get("overwrite"):
            line.append("--overwrite")  # the step's own folder: a killed attempt's export goes
        return line


@dataclass(frozen=True)
class Study:
    """A checked study file: its identity and its runs in order.

    Args:
        name: the study's name.
        source: the study file.
        description: free text from the file.
        model: ``name`` (registry name, folder or hub id), ``device``,
            ``dtype``.
        seed: the study's seed.
        data: the data files by name.
        out: the study folder (absolute).
        runs: every run, in file order (sweeps expanded).
    """

    name: str
    source: Path
    description: str
    model: dict[str, Any]
    seed: int
    data: dict[str, DataFile]
    out: Path
    runs: tuple[StepRun, ...] = field(default=())

    def identity(self) -> dict[str, Any]:
        """What a study folder records and a rerun must match (steps may be added)."""
        return {
            "name": self.name,
            "model": self.model,
            "seed": self.seed,
            "data": {name: item.fingerprint for name, item in sorted(self.data.items())},
        }


def _where(source: Path, step: str | None = None, command: str | None = None) -> str:
    if step is None:
        return str(source)
    return f"{source}: step {step!r}" + (f" ({command})" if command and command != step else "")


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise InputError(f"{where}: {what} must be a mapping of names to values, got {value!r}.")
    return value


def _check_keys(given: Mapping[str, Any], allowed: Sequence[str], where: str, what: str) -> None:
    for key in given:
        if key not in allowed:
            raise InputError(
                f"{where}: unknown {what} {key!r}{suggest(key, list(allowed))} (allowed: "
                f"{', '.join(allowed)})."
            )


def _read_yaml(source: Path) -> dict[str, Any]:
    text = read_text_file(source, "study file")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise InputError(f"{source}: not valid YAML{line} ({problem}).") from None
    if not isinstance(document, dict):
        raise InputError(
            f"{source}: a study file is a YAML mapping with study:, model:, data: and steps:; "
            f"got {type(document).__name__}."
        )
    return document


def _model(value: Any, source: Path) -> dict[str, Any]:
    where = f"{source}: model"
    if value is None or isinstance(value, str):
        value = {"name": value}
    model = _mapping(value, str(source), "model")
    _check_keys(model, _MODEL_KEYS, where, "model setting")
    name = model.get("name")
    if name is None:
        from circuitlab.models.registry import DEFAULT_MODEL

        name = DEFAULT_MODEL
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: name must be a registry name, a folder or a hub id.")
    if isinstance(name, str) and not os.path.isabs(name) and (source.parent / name).is_dir():
        name = str((source.parent / name).resolve())  # a folder next to the study file
    for setting in ("device", "dtype"):
        if model.get(setting) is not None and not isinstance(model[setting], str):
            raise InputError(f"{where}: {setting} must be text (cpu, float32, ...).")
    return {
        "name": name,
        "device": model.get("device", "cpu"),
        "dtype": model.get("dtype", "float32"),
    }


def _data(value: Any, source: Path) -> dict[str, DataFile]:
    from circuitlab.fingerprint import data_fingerprint

    files = {}
    for name, path in _mapping(value, str(source), "data").items():
        where = f"{source}: data {name!r}"
        if not _NAME.fullmatch(name):
            raise InputError(f"{where}: a data name is letters, digits, '.', '_' and '-'.")
        if not isinstance(path, str) or not path.strip():
            raise InputError(f"{where}: give the file's path (relative to the study file).")
        resolved = (source.parent / Path(path).expanduser()).resolve()
        if not resolved.is_file():
            state = "is a folder, not a file" if resolved.is_dir() else "does not exist"
            raise InputError(
                f"{where}: the data file {resolved} {state}. Fix the path (relative to "
                f"{source.parent}) or add the file."
            )
        text = read_text_file(resolved, "data file")
        files[name] = DataFile(name, resolved, data_fingerprint(text))
    return files


class _Resolver:
    """Turns ``{data: NAME}`` and ``{from: STEP, output: OPTION}`` into paths and references."""

    def __init__(self, study: Study, out: Path, finished: Mapping[str, list[StepRun]]) -> None:
        self.study, self.out, self.finished = study, out, finished

    def one(self, value: Any, where: str, inputs: dict[str, str]) -> tuple[Any, Any]:
        """``(value with paths, value with references)``; plain values come back twice."""
        if isinstance(value, list):
            pairs = [self.one(item, where, inputs) for item in value]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        if not isinstance(value, dict):
            return value, value
        if set(value) == {"data"}:
            name = value["data"]
            if name not in self.study.data:
                known = list(self.study.data)
                raise InputError(
                    f"{where}: no data file named {name!r}{suggest(str(name), known)} (the "
                    f"study's data: names {', '.join(known) or 'nothing'})."
                )
            inputs[f"data:{name}"] = self.study.data[name].fingerprint
            return str(self.study.data[name].path), {"data": name}
        if set(value) == {"from", "output"}:
            step, output = value["from"], value["output"]
            runs = self.finished.get(step)
            if runs is None:
                hint = suggest(str(step), list(self.finished))
                raise InputError(
                    f"{where}: {{from: {step}}} names no earlier step{hint}; a step reads what "
                    f"the steps above it wrote."
                )
            if len(runs) != 1:
                raise InputError(
                    f"{where}: step {step!r} is swept ({len(runs)} runs); read from a step "
                    f"without a sweep."
                )
            if output not in runs[0].outputs:
                raise InputError(
                    f"{where}: step {step!r} writes no {output!r} output (it writes "
                    f"{', '.join(runs[0].outputs)})."
                )
            inputs[f"step:{step}"] = runs[0].digest
            path = self.out / runs[0].folder / OUTPUT_NAMES[output]
            return str(path), {"from": step, "output": output}
        raise InputError(
            f"{where}: a mapping value must be {{data: NAME}} (a data file) or {{from: STEP, "
            f"output: OPTION}} (a file an earlier step wrote); got {value!r}."
        )


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "+".join(_label(item) for item in value)
    if isinstance(value, dict):
        return str(value.get("data") or value.get("from"))
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))[:40]


def _parse_check(line: list[str], where: str) -> argparse.Namespace:
    """Parse ``line`` with the real CLI parser; its errors become one `InputError`."""
    from circuitlab.study.options import _parser

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return _parser().parse_args(line)
    except SystemExit:
        message = captured.getvalue().strip().split(": error: ", 1)[-1]
        message = re.sub(r" \(see `.*--help`\)$", "", message)
        message = re.sub(r"--([A-Za-z][\w-]*)", lambda m: m[1].replace("-", "_"), message)
        raise InputError(f"{where}: {message}.") from None


class _Planner:
    """Checks the steps of a study file and expands them into runs."""

    def __init__(self, study: Study, out: Path) -> None:
        self.study = study
        self.out = out
        self.runs: dict[str, list[StepRun]] = {}

    def step(self, index: int, entry: Any) -> None:
        source = self.study.source
        if not isinstance(entry, dict):
            raise InputError(
                f"{source}: step {index + 1} must be a mapping with command: (and name:, "
                f"params:, sweep:), got {entry!r}."
            )
        command = entry.get("command")
        name = entry.get("name", command)
        where = _where(source, name if isinstance(name, str) else f"#{index + 1}")
        _check_keys(entry, _STEP_KEYS, where, "step setting")
        commands = list(step_commands())
        if not isinstance(command, str) or command not in commands:
            hint = (
                f"; {command!r} is not a study step"
                if command in NOT_STEPS
                else suggest(str(command), commands)
            )
            raise InputError(
                f"{where}: unknown command {command!r}{hint} (steps run one of: "
                f"{', '.join(commands)})."
            )
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InputError(
                f"{where}: a step name is letters, digits, '.', '_' and '-' (it names the "
                f"step's folder); got {name!r}."
            )
        if name in self.runs:
            raise InputError(f"{where}: two steps are named {name!r}; give one a name:.")
        where = _where(source, name, command)
        options = command_options(command)
        params = _mapping(entry.get("params"), where, "params")
        sweep = _mapping(entry.get("sweep"), where, "sweep")
        for key in [*params, *sweep]:
            self._check_name(key, options, where)
        for key in set(params) & set(sweep):
            raise InputError(f"{where}: {key} is in both params and sweep; keep one.")
        for key, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise InputError(
                    f"{where}: sweep: {key} takes a non-empty list of values, one per run; got "
                    f"{values!r}."
                )
        points = [
            dict(zip(sweep, combo, strict=True)) for combo in itertools.product(*sweep.values())
        ]
        labels: set[str] = set()
        runs = []
        for point in points:
            folder = name
            if point:
                label = ",".join(f"{key}={_label(value)}" for key, value in point.items())
                base, number = label, 2
                while label in labels:
                    label, number = f"{base}-{number}", number + 1
                labels.add(label)
                folder = f"{name}/{label}"
            runs.append(self._run(name, command, folder, {**params, **point}, point, where))
        self.runs[name] = runs

    def _check_name(self, key: str, options: Mapping[str, Option], where: str) -> None:
        if key in options:
            return
        if key.replace("-", "_") in options:
            raise InputError(
                f"{where}: write parameter {key!r} as {key.replace('-', '_')!r} (underscores, "
                f"as in Python), not with hyphens."
            )
        if key in MODEL_OPTIONS:
            raise InputError(
                f"{where}: {key} is set once for the whole study, in its model: section, not "
                f"per step."
            )
        raise InputError(
            f"{where}: unknown parameter {key!r}{suggest(key, list(options))} (its parameters: "
            f"{', '.join(name for name in options if name not in OUTPUT_NAMES)})."
        )

    def _run(
        self,
        step: str,
        command: str,
        folder: str,
        given: dict[str, Any],
        point: dict[str, Any],
        where: str,
    ) -> StepRun:
        options = command_options(command)
        resolver = _Resolver(self.study, self.out, self.runs)
        values: dict[str, Any] = {}
        parameters: dict[str, Any] = {}
        inputs: dict[str, str] = {}
        outputs = [
            name
            for name, option in options.items()
            if option.is_output
            and name not in OFF_BY_DEFAULT
            and not given.get(_OFF_WHEN.get(name, ""), False)
        ]
        for name, raw in given.items():
            option = options[name]
            if option.is_output:
                if not isinstance(raw, bool):
                    raise InputError(
                        f"{where}: {name} is written into the step's own folder; give true or "
                        f"false (write it or not), not {raw!r}."
                    )
                if not raw and option.action.required:
                    raise InputError(f"{where}: {name} is required by {command}; it cannot be off.")
                outputs = [o for o in outputs if o != name] + ([name] if raw else [])
                continue
            text_option = option.action.type in (None, str)
            concrete, symbolic = resolver.one(raw, where, inputs)
            if concrete != raw and not text_option:
                raise InputError(f"{where}: parameter {name} takes a value, not a file reference.")
            values[name] = option.convert(concrete, where=where)
            parameters[name] = symbolic if concrete != raw else values[name]
        if "seed" in options and "seed" not in values:
            values["seed"] = parameters["seed"] = self.study.seed
        key = {
            "study": self.study.name,
            "step": step,
            "command": command,
            "parameters": parameters,
            "outputs": sorted(outputs),
            "inputs": inputs,
            "model": self.study.model,
            "seed": self.study.seed,
        }
        run = StepRun(
            step=step,
            command=command,
            folder=folder,
            point=point,
            parameters=parameters,
            values=values,
            outputs=tuple(sorted(outputs)),
            inputs=inputs,
            key=key,
        )
        _parse_check(run.arguments(self.out / folder, self.study.model), where)
        return run


def load_study(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Study:
    """Read and check a study file; expand its sweeps into runs writing under ``out``.

    Args:
        path: the study file (YAML).
        out: the study folder the runs will write into (outputs of earlier steps are read
            from there); default: a folder named after the study in the current folder.

    Returns:
        The `Study`, every run checked against its command's parser.

    Raises:
        InputError: the file is not a study (unknown key, step, parameter; a wrong type or
            value; a missing data file), with the file, the step and the fix in one line.
    """
    source = Path(path).expanduser().resolve()
    document = _read_yaml(source)
    _check_keys(document, _TOP_KEYS, str(source), "key")
    name = document.get("study")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InputError(
            f"{source}: study: names the study (letters, digits, '.', '_', '-'); got {name!r}."
        )
    seed = document.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InputError(f"{source}: seed must be a whole number, 0 or more; got {seed!r}.")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise InputError(f"{source}: description must be text.")
    steps = document.get("steps")
    if not isinstance(steps, list) or not steps:
        raise InputError(f"{source}: steps: must be a non-empty list of steps (command: ...).")
    study = Study(
        name=name,
        source=source,
        description=description.strip(),
        model=_model(document.get("model"), source),
        seed=seed,
        data=_data(document.get("data"), source),
        out=Path(name if out is None else out).expanduser().resolve(),
    )
    planner = _Planner(study, study.out)
    for index, entry in enumerate(steps):
        planner.step(index, entry)
    runs = tuple(run for runs in planner.runs.values() for run in runs)
    return dataclasses.replace(study, runs=runs)
