"""What each console page shows, read from the replica's registry, its readiness and the store.

Every function returns the plain values one template renders; the full page and its live
fragment (sent on the event stream) use the same ones.
"""

from __future__ import annotations

from typing import Any

from aggregator.admin import auth_summary
from aggregator.console.calls import CallRow
from aggregator.console.charts import sparkline
from aggregator.console.watch import ClusterWatch
from aggregator.gateway import Gateway
from shared.store.protocols import StoreUnavailable

__all__ = ["auth", "backends", "calls", "overview", "tools"]


async def overview(gateway: Gateway, watch: ClusterWatch, ready: dict[str, Any]) -> dict[str, Any]:
    replicas = [
        {
            "id": beat.id,
            "version": beat.version,
            "uptime": beat.at - beat.started_at,
            "in_flight": beat.in_flight,
            "sessions": beat.sessions,
            "streams": beat.streams,
            "registry_version": beat.registry_version,
            "this": beat.id == gateway.replica_id,
        }
        for beat in watch.replicas()
    ]
    workers = [
        {"id": beat.id, "role": beat.role or "standby", "fence": beat.fence, "uptime": beat.at - beat.started_at}
        for beat in watch.workers()
    ]
    states = [entry["state"] for entry in ready["backends"].values()]
    routes = gateway.registry.catalog.tool_routes.values()
    return {
        "status": ready["status"],
        "reasons": ready.get("reasons", []),
        "store": {**ready["store"], "heartbeats_error": watch.error},
        "registry_version": gateway.sync.version,
        "replicas": replicas,
        "workers": workers,
        "leader": next((w for w in workers if w["role"] == "leader"), None),
        "embedded": gateway.supervisor is not None,
        "totals": {
            "backends": len(states),
            "backends_up": states.count("up"),
            "tools": sum(1 for route in routes if not route.blocked),
            "blocked": sum(1 for route in routes if route.blocked),
            "sessions": sum(r["sessions"] for r in replicas),
            "streams": sum(r["streams"] for r in replicas),
            "in_flight": sum(r["in_flight"] for r in replicas),
            "calls": sum(row.calls for row in watch.history.rows("servers")),
        },
    }


def backends(gateway: Gateway, ready: dict[str, Any]) -> dict[str, Any]:
    rows = []
    for spec in gateway.config.mcp_servers:
        entry = ready["backends"][spec.name]
        record = gateway.registry.catalog.servers.get(spec.name)
        rows.append(
            {
                "name": spec.name,
                "transport": spec.type,
                "protocol": entry.get("protocol"),
                "state": entry["state"],
                "where": entry.get("where"),
                "error": entry.get("error"),
                "since": entry.get("since"),
                "attempts": entry.get("attempts", 0),
                "tools": len(record.tools) if record else 0,
                "resources": len(record.resources) + len(record.resource_templates) if record else 0,
                "prompts": len(record.prompts) if record else 0,
                "family": spec.family.name if spec.family else None,
                "replica": entry.get("replica"),
            }
        )
    return {"backends": rows}


def tools(gateway: Gateway, text: str, server: str) -> dict[str, Any]:
    overrides = gateway.registry.denylist.overrides
    needle = text.strip().lower()
    everything = sorted(gateway.registry.catalog.tool_routes.values(), key=lambda route: route.exposed)
    rows = [
        {
            "name": route.exposed,
            "original": route.original,
            "servers": ["gateway"] if route.internal else list(route.servers),
            "blocked": route.blocked,
            "override": overrides.get(route.exposed),
        }
        for route in everything
        if (not needle or needle in route.exposed.lower() or needle in route.original.lower())
        and (not server or server in route.servers)
    ]
    return {
        "tools": rows,
        "total": len(everything),
        "text": text,
        "server": server,
        "servers": [spec.name for spec in gateway.config.mcp_servers],
    }


def calls(watch: ClusterWatch) -> dict[str, Any]:
    history = watch.history

    def shown(row: CallRow) -> dict[str, Any]:
        return {
            "row": row,
            "rate_chart": sparkline(
                f"{row.name}: calls and errors per second", (row.rates, "rate"), (row.errors, "errors")
            ),
            "p99_chart": sparkline(f"{row.name}: p99 duration", (row.p99s, "p99")),
        }

    return {
        "window": len(history.steps) * history.step,
        "keep": history.keep * history.step,
        "step": history.step,
        "by_tool": [shown(row) for row in history.rows("tools")],
        "by_server": [shown(row) for row in history.rows("servers")],
    }


async def auth(gateway: Gateway) -> dict[str, Any]:
    protected = [
        {"name": name, "state": record.state if record else "starting", "auth": record.auth if record else None}
        for name in gateway.protected
        for record in [gateway.registry.catalog.servers.get(name)]
    ]
    try:
        summary: dict[str, Any] | None = auth_summary(await gateway.stores.auth_metrics.all())
        error = None
    except StoreUnavailable as exc:
        summary, error = None, str(exc)
    return {"protected": protected, "summary": summary, "error": error}
