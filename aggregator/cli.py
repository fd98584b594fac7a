"""`aggregator serve | check | tools`: flags and environment onto the Config, nothing else.

Every flag can also be given as AGGREGATOR_<NAME> (e.g. AGGREGATOR_REDIS_URL); a flag on the
command line wins over the environment, which wins over the config file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import msgspec

from shared.config import Config, ConfigError, load_config
from shared.redact import redact_url
from shared.runtime import run
from shared.workflow_files import load_workflows

__all__ = ["main"]


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"AGGREGATOR_{name}", default)


def _env_flag(name: str) -> bool:
    return (_env(name) or "").lower() in ("1", "true", "yes", "on")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="An MCP gateway that aggregates many MCP servers behind one endpoint.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway", description="Run the gateway.")
    _config_flag(serve)
    serve.add_argument("--host", default=_env("HOST"), help="address to bind (default 127.0.0.1) [AGGREGATOR_HOST]")
    serve.add_argument("--port", type=int, default=_int(_env("PORT")), help="TCP port (default 8090) [AGGREGATOR_PORT]")
    serve.add_argument(
        "--transport",
        choices=("streamable-http", "sse", "stdio"),
        default=_env("TRANSPORT"),
        help="how clients connect; HTTP serves /mcp and /sse together (default streamable-http) [AGGREGATOR_TRANSPORT]",
    )
    serve.add_argument(
        "--yolo",
        action="store_true",
        default=_env_flag("YOLO"),
        help="turn the denylist of destructive tools off (development only) [AGGREGATOR_YOLO]",
    )
    serve.add_argument(
        "--redis-url",
        default=_env("REDIS_URL"),
        help="keep shared state in Redis (cluster mode: run aggregator-worker for the backends); "
        "without it, an embedded in-memory store and the control plane in this process [AGGREGATOR_REDIS_URL]",
    )
    _log_flags(serve)

    check = commands.add_parser("check", help="validate a config and list its backends")
    _config_flag(check)

    tools = commands.add_parser(
        "tools",
        help="list tools or block/unblock one at run time (needs AGGREGATOR_ADMIN_TOKEN)",
        description="Talk to a running gateway's admin API. The token comes from AGGREGATOR_ADMIN_TOKEN.",
    )
    tools.add_argument("action", choices=("list", "block", "unblock", "reset"), help="what to do")
    tools.add_argument("name", nargs="?", help="exposed tool name (for block/unblock/reset)")
    tools.add_argument(
        "--url",
        default=_env("URL", "http://127.0.0.1:8090"),
        help="the gateway's base URL (default http://127.0.0.1:8090) [AGGREGATOR_URL]",
    )
    return parser


def _config_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=_env("CONFIG"),
        required=_env("CONFIG") is None,
        help="path to the config: YAML, or JSON such as a client's mcpServers file [AGGREGATOR_CONFIG]",
    )


def _log_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=_env("LOG_FORMAT", "text"),
        help="log line format on stderr (default text) [AGGREGATOR_LOG_FORMAT]",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default=_env("LOG_LEVEL", "info"),
        help="minimum level logged (default info) [AGGREGATOR_LOG_LEVEL]",
    )


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        print(f"aggregator: AGGREGATOR_PORT={value!r} is not a number", file=sys.stderr)
        raise SystemExit(2) from None


def apply_flags(config: Config, args: argparse.Namespace) -> Config:
    """The config with command-line and environment overrides applied."""
    changes = {
        key: value
        for key, value in (("host", args.host), ("port", args.port), ("transport", args.transport))
        if value is not None
    }
    if args.yolo:
        changes["yolo"] = True
    if not changes:
        return config
    return msgspec.structs.replace(config, aggregator=msgspec.structs.replace(config.aggregator, **changes))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tools":
        from aggregator.admin_client import run_tools_command

        return run_tools_command(args.action, args.name, args.url)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"aggregator: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        return _check(config)
    return _serve(apply_flags(config, args), args)


def _serve(config: Config, args: argparse.Namespace) -> int:
    from aggregator.serve import serve
    from shared.telemetry import configure_logging

    configure_logging(args.log_format, args.log_level)  # serve() sets the same; the config's notes come first
    log = logging.getLogger("aggregator.config")
    for name in config.disabled:
        log.info("%s: server %s has disabled: true; not started", config.source, name)
    for warning in config.warnings:
        log.warning("%s", warning)
    return run(serve(config, args)) or 0


def _check(config: Config) -> int:
    """Print the backends and workflows the config would start (URLs redacted) and its warnings.

    Warnings do not fail; a workflow file with an error does (the gateway would leave it out).
    """
    loaded = load_workflows(config)
    if loaded.errors:
        for error in loaded.errors:
            print(f"aggregator: invalid workflow file: {error}", file=sys.stderr)
        return 2
    warnings = (*config.warnings, *loaded.warnings)
    counts = [f"{len(config.mcp_servers)} backend(s)"]
    if loaded.workflows:
        counts.append(f"{len(loaded.workflows)} workflow(s)")
    if config.disabled:
        counts.append(f"{len(config.disabled)} disabled")
    if warnings:
        counts.append(f"{len(warnings)} warning(s)")
    print(f"{config.source}: OK, {', '.join(counts)}")
    for spec in config.mcp_servers:
        target = " ".join([spec.command or "", *spec.args]) if spec.type == "stdio" else redact_url(spec.url or "")
        family = f" family={spec.family.name}" if spec.family else ""
        print(f"  {spec.name:<20} {spec.type:<16} {target}  prefix={config.aggregator.prefix}_{spec.prefix}{family}")
    for name in config.disabled:
        print(f"  {name:<20} disabled (not started)")
    for workflow in loaded.workflows:
        steps = " -> ".join(step.tool for step in workflow.steps)
        print(f"  {workflow.tool_name:<20} workflow         {steps}")
    for warning in warnings:
        print(f"aggregator: warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
