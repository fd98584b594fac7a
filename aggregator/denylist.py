"""Which backend tools are blocked: muster's destructive defaults, config globs, run-time overrides.

The default list matches a backend's *original* tool name, case-insensitively, so a tool is
blocked whatever name it is exposed under. Config globs match the original or the exposed
name. A run-time override (ToggleToolBlock) names an exposed tool and wins over both; yolo
mode turns the denylist off but leaves explicit overrides in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

__all__ = ["DESTRUCTIVE_TOOLS", "Denylist"]

DESTRUCTIVE_TOOLS = frozenset(
    {
        # Kubernetes resource modification
        "kubectl_apply",
        "kubectl_create",
        "kubectl_delete",
        "kubectl_patch",
        "kubectl_rollout",
        "kubectl_scale",
        "apply_kubernetes_manifest",
        "delete_kubernetes_resource",
        # Cluster API lifecycle
        "capi_create_cluster",
        "capi_create_machinedeployment",
        "capi_delete_cluster",
        "capi_delete_machine",
        "capi_move_cluster",
        "capi_pause_cluster",
        "capi_remediate_machine",
        "capi_resume_cluster",
        "capi_scale_cluster",
        "capi_scale_machinedeployment",
        "capi_update_cluster",
        "capi_upgrade_cluster",
        # Helm
        "install_helm_chart",
        "uninstall_helm_chart",
        "upgrade_helm_chart",
        # Flux
        "reconcile_flux_helmrelease",
        "reconcile_flux_kustomization",
        "reconcile_flux_resourceset",
        "reconcile_flux_source",
        "resume_flux_reconciliation",
        "suspend_flux_reconciliation",
        # Maintenance and incident tooling
        "cleanup",
        "create_incident",
        "update_dashboard",
    }
)


@dataclass(frozen=True)
class Denylist:
    yolo: bool = False
    extra: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    overrides: Mapping[str, bool] = field(default_factory=dict)

    def blocked(self, original: str, exposed: str) -> str | None:
        """Why the tool is blocked (a sentence), or None when it may be called."""
        override = self.overrides.get(exposed)
        if override is not None:
            return "blocked at run time by an administrator" if override else None
        if self.yolo:
            return None
        names = (original.lower(), exposed.lower())
        if any(_matches(name, pattern) for pattern in self.allow for name in names):
            return None
        if names[0] in DESTRUCTIVE_TOOLS:
            return "on the default denylist of destructive tools"
        if any(_matches(name, pattern) for pattern in self.extra for name in names):
            return "on the configured denylist (aggregator.denylist.extra)"
        return None

    def with_overrides(self, overrides: Mapping[str, bool]) -> Denylist:
        return Denylist(self.yolo, self.extra, self.allow, dict(overrides))


def _matches(name: str, pattern: str) -> bool:
    return fnmatchcase(name, pattern.lower())
