"""The configuration: read a file, decode it into the Struct tree, check it, explain what is wrong.

Reading the document (JSON or YAML, our list of servers or the clients' map, ${VAR}) is
config_document's part; the types are config_types'; the checks config_checks'. Everything
else imports the types from here.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from shared.config_checks import check, describe, non_fatal_problems
from shared.config_document import ConfigProblem, Document, read_document
from shared.config_types import (
    AggregatorSettings,
    BackendAuth,
    Config,
    ConfigError,
    DenylistSettings,
    FamilySpec,
    OAuthSettings,
    RateLimitSettings,
    ServerSpec,
    TokenExchangeSpec,
)

__all__ = [
    "AggregatorSettings",
    "BackendAuth",
    "Config",
    "ConfigError",
    "DenylistSettings",
    "FamilySpec",
    "OAuthSettings",
    "RateLimitSettings",
    "ServerSpec",
    "TokenExchangeSpec",
    "load_config",
    "parse_config",
]


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file (JSON if named .json, else YAML); raise ConfigError naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass an existing file with -c/--config)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Validate config text into a Config; ConfigError messages and warnings start with `source`."""
    try:
        document = read_document(text, json_file=source.endswith(".json"))
        config = _decode(document)
    except ConfigProblem as problem:
        raise ConfigError(f"{source}: {problem}") from None
    notes = tuple(f"{source}: {note}" for note in non_fatal_problems(config, document.server_paths))
    return msgspec.structs.replace(config, source=source, disabled=document.disabled, warnings=notes)


def _decode(document: Document) -> Config:
    try:
        config = msgspec.convert(document.data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigProblem(describe(exc, document.server_paths)) from None
    problem = next(check(config, document), None)
    if problem is not None:
        raise ConfigProblem(problem)
    return config
