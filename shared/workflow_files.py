"""Every workflow a config defines: its `workflows:` list, and one YAML (or JSON) file each in `workflowsDir`.

The control plane (the elected worker, or the gateway itself without Redis) reads them at start
and again whenever the folder's fingerprint (file names, sizes, modification times) changes;
`aggregator check` reads them the same way. A file with a problem is left out and named, so an
edit in progress cannot take the other workflows down. Files are written like the config:
${VAR} is expanded, and errors name the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import msgspec

from shared.config_checks import describe
from shared.config_document import ConfigProblem, expand, parse
from shared.config_types import Config, WorkflowSpec
from shared.workflow_checks import workflow_errors, workflow_warnings

__all__ = ["Fingerprint", "WorkflowSet", "fingerprint", "has_workflows", "load_workflows", "workflows_dir"]

_SUFFIXES = (".yaml", ".yml", ".json")

Fingerprint = tuple[tuple[str, int, int], ...]
"""(file name, size, modification time in ns) of each workflow file, in name order."""


@dataclass(frozen=True, slots=True)
class WorkflowSet:
    workflows: tuple[WorkflowSpec, ...]
    errors: tuple[str, ...] = ()
    """Files left out, each as 'FILE: $.path: problem'."""
    warnings: tuple[str, ...] = ()


def has_workflows(config: Config) -> bool:
    """Whether the config defines workflows, or a folder for them (then the gateway serves the workflow tools)."""
    return bool(config.workflows) or config.aggregator.workflows_dir is not None


def workflows_dir(config: Config) -> Path | None:
    """The workflow folder, a relative one taken from the config file's own folder."""
    written = config.aggregator.workflows_dir
    if written is None:
        return None
    base = Path(config.source).parent if not config.source.startswith("<") else Path()
    return base / Path(written).expanduser()


def fingerprint(directory: Path) -> Fingerprint:
    """What changes when a workflow file is added, removed or edited; () for a missing folder.

    Hidden files (an editor's, a half-written copy) are not workflow files.
    """
    try:
        files = [
            path
            for path in directory.iterdir()
            if path.suffix in _SUFFIXES and not path.name.startswith(".") and path.is_file()
        ]
        found = [(path.name, path.stat()) for path in files]
    except OSError:
        return ()
    return tuple(sorted((name, stat.st_size, stat.st_mtime_ns) for name, stat in found))


def load_workflows(config: Config) -> WorkflowSet:
    """The config's own workflows (already checked when it loaded), then each file's, in file name order."""
    directory = workflows_dir(config)
    workflows = list(config.workflows)
    owners = {workflow.name: f"{config.source}: $.workflows[{i}]" for i, workflow in enumerate(config.workflows)}
    errors: list[str] = []
    warnings: list[str] = []
    if directory is not None and not directory.is_dir():
        warnings.append(f"{config.source}: $.aggregator.workflowsDir: {str(directory)!r} is not a folder (yet)")
    files = [directory / name for name, _, _ in fingerprint(directory)] if directory is not None else []
    for path in files:
        try:
            workflow = _read(path, config)
        except ConfigProblem as problem:
            errors.append(f"{path}: {problem}")
            continue
        if workflow.name in owners:
            errors.append(f"{path}: $.name: workflow {workflow.name!r} is already defined by {owners[workflow.name]}")
            continue
        owners[workflow.name] = str(path)
        workflows.append(workflow)
        warnings.extend(f"{path}: {warning}" for warning in workflow_warnings(workflow, "$", config))
    return WorkflowSet(tuple(workflows), tuple(errors), tuple(warnings))


def _read(path: Path, config: Config) -> WorkflowSpec:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigProblem(f"cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigProblem("not UTF-8 text") from None
    data = expand(parse(text, json_file=path.suffix == ".json"), "$")
    try:
        workflow = msgspec.convert(data, WorkflowSpec)
    except msgspec.ValidationError as exc:
        raise ConfigProblem(describe(exc, (), WorkflowSpec)) from None
    problem = next(workflow_errors(workflow, "$", name_limit=config.aggregator.max_tool_name_length), None)
    if problem is not None:
        raise ConfigProblem(problem)
    return workflow
