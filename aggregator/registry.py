"""ServerRegistry: the backends' latest records, and the catalog built from them, shared or per user.

Every change rebuilds an immutable `Catalog` (catalog_builder.py makes all naming decisions);
the request path only reads `registry.catalog`, or `registry.view(...)` for a user who reaches
protected backends of their own. A rebuild takes over what unchanged backends contributed to
the last one (`ToolCache`), and finds the lists that changed by comparing only the items that
are not the very same objects as before.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from aggregator.catalog import Catalog, CoreItems
from aggregator.catalog_builder import CatalogBuilder, ToolCache
from aggregator.denylist import Denylist
from shared.config import AggregatorSettings, ServerSpec
from shared.protocol.vocabulary import LIST_KINDS
from shared.records import ServerRecord

__all__ = ["ServerRegistry"]

log = logging.getLogger("aggregator.registry")

_VIEWS = 256


class ServerRegistry:
    """The exposed catalog, rebuilt from backend records whenever one changes."""

    def __init__(
        self, settings: AggregatorSettings, specs: Sequence[ServerSpec], *, core: CoreItems | None = None
    ) -> None:
        self.settings = settings
        self.specs = {spec.name: spec for spec in specs}
        self.core = core or CoreItems()
        self.records: dict[str, ServerRecord] = {}
        self.denylist = Denylist(settings.yolo, settings.denylist.extra, settings.denylist.allow)
        self._tool_cache = ToolCache()
        self.catalog = self._build({}, 0)
        self._listeners: list[Callable[[set[str]], None]] = []
        self._views: OrderedDict[tuple[int, Hashable], Catalog] = OrderedDict()

    def on_change(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(kinds)` after each rebuild that changed the named lists."""
        self._listeners.append(listener)

    def update(self, record: ServerRecord) -> set[str]:
        """Apply a backend's latest record (up or down); returns the lists that changed."""
        if record.server not in self.specs:
            log.warning("ignoring a record for %r, which is not in this gateway's config", record.server)
            return set()
        previous = self.records.get(record.server)
        self.records[record.server] = record
        if record.state != "up" and (previous is None or previous.state != "up"):
            # Still nothing to expose: only the health shown on /readyz changes.
            self.catalog = dataclasses.replace(self.catalog, servers={**self.catalog.servers, record.server: record})
            return set()
        return self._rebuild()

    def remove(self, server: str) -> set[str]:
        if self.records.pop(server, None) is None:
            return set()
        return self._rebuild()

    def replace_all(self, records: Iterable[ServerRecord]) -> set[str]:
        self.records = {r.server: r for r in records if r.server in self.specs}
        return self._rebuild()

    def set_overrides(self, overrides: dict[str, bool]) -> set[str]:
        self.denylist = self.denylist.with_overrides(overrides)
        return self._rebuild()

    def set_workflows(self, tools: Iterable[dict[str, Any]]) -> set[str]:
        """Expose these workflow tools (and no others)."""
        self.core = dataclasses.replace(self.core, workflows=tuple(tools))
        return self._rebuild()

    def view(self, overlay: Mapping[str, ServerRecord], key: Hashable) -> Catalog:
        """What one user sees: every shared backend plus the protected ones in `overlay` (records for that user).

        Users whose overlays are equal (`key` says so: the same records) share one catalog; a few
        hundred distinct views are kept, each rebuilt after the shared catalog changed.
        """
        if not overlay:
            return self.catalog
        cache_key = (self.catalog.version, key)
        view = self._views.get(cache_key)
        if view is None:
            view = self._views[cache_key] = self._build(overlay, self.catalog.version)
            if len(self._views) > _VIEWS:
                self._views.popitem(last=False)
        else:
            self._views.move_to_end(cache_key)
        return view

    def _build(self, overlay: Mapping[str, ServerRecord], version: int) -> Catalog:
        records = {**self.records, **overlay} if overlay else self.records
        builder = CatalogBuilder(self.settings, self.specs, records, self.denylist, self.core, self._tool_cache)
        return builder.build(version)

    def _rebuild(self) -> set[str]:
        old = self.catalog
        new = self._build({}, old.version + 1)
        changed = {kind.key for kind in LIST_KINDS if _announced_differ(old, new, kind.key)}
        self.catalog = new
        if changed:
            for listener in self._listeners:
                listener(changed)
        return changed


_encoder = msgspec.json.Encoder(order="deterministic")


def _announced_differ(old: Catalog, new: Catalog, kind: str) -> bool:
    """Whether a list_changed of `kind` is due: its list changed, and for tools also what list_tools shows.

    With `exposure: meta` tools/list itself never changes, yet clients must hear of new tools.
    """
    if kind == "tools" and _differ(old.backend_tools, new.backend_tools):
        return True
    return _differ(old.items(kind), new.items(kind))


def _differ(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> bool:
    """Whether two lists would read differently on the wire; items kept from the last build are not encoded."""
    if len(old) != len(new):
        return True
    return any(a is not b and _encoder.encode(a) != _encoder.encode(b) for a, b in zip(old, new, strict=True))
