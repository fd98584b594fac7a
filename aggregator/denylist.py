"""Which backend tools are blocked: muster's destructive defaults, config globs, run-time overrides.

Names are compared by their normalised form (`aggregator.tool_names`): case, separators,
invisible characters and look-alike letters do not matter, and a name counts as itself and as
its last `/` segment, so `helm/uninstall_helm_chart` is `uninstall_helm_chart`. The default list
matches a backend's *original* tool name, so a tool is blocked whatever name it is exposed under;
it also sees through look-alikes within ASCII (`kubectI_delete`). Config globs match the original
or the exposed name, normalised the same way. A run-time override (ToggleToolBlock) names an
exposed tool and wins over both; yolo mode turns the denylist off but leaves explicit overrides
in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from aggregator.tool_names import name_forms, normalize_glob, normalize_tool_name

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
        originals = name_forms(original)
        forms = originals + name_forms(exposed)
        if _any_match(forms, self.allow):
            return None
        for form in originals:
            listed = _DESTRUCTIVE_BY_SKELETON.get(_ascii_skeleton(form))
            if listed == original.lower():
                return "on the default denylist of destructive tools"
            if listed is not None:
                return f"on the default denylist of destructive tools (its name reads as {listed})"
        if _any_match(forms, self.extra):
            return "on the configured denylist (aggregator.denylist.extra)"
        return None

    def with_overrides(self, overrides: Mapping[str, bool]) -> Denylist:
        return Denylist(self.yolo, self.extra, self.allow, dict(overrides))


def _any_match(forms: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(form, normalize_glob(pattern)) for pattern in patterns for form in forms)


def _ascii_skeleton(key: str) -> str:
    """A normalised name with ASCII look-alikes merged (`i` `1` `|` as `l`, `0` as `o`, `rn` as `m`)."""
    return key.translate(_ASCII_LOOKALIKES).replace("rn", "m")


_ASCII_LOOKALIKES = str.maketrans("i1|0", "lllo")
_DESTRUCTIVE_BY_SKELETON = {_ascii_skeleton(normalize_tool_name(name)): name for name in DESTRUCTIVE_TOOLS}
