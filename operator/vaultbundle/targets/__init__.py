"""Targets: where a verified bundle's secrets go. One module per store, one `TargetKind` each, all registered
here explicitly (so a static import graph sees every store).

A store module imports its SDK (an install extra, e.g. `vaultbundle[github]`) only when it uses it, so every
kind parses and validates its spec without the SDK. `load(kind)` checks that the kind's SDK modules are
installed: a missing extra is reported as `TargetKindUnavailable` on the target that uses it, and every other
target still syncs.

The one-of dispatch of a `spec.targets[]` entry (`parse_target`) lives here too; `parse_spec` parses a whole
VaultBundle spec with it (`spec.py` never imports this package).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping
from typing import Any

from .. import spec
from ..errors import Reason, SpecError, TargetError
from ..fields import TargetSpec, obj, parse_duration, parse_selection, string
from ..settings import DEFAULTS
from . import (
    aws_secrets_manager,
    azure_key_vault,
    gcp_secret_manager,
    github_actions,
    grants,
    hashicorp_vault,
    kubernetes_secret,
)
from .base import TargetKind

__all__ = ["KINDS", "KNOWN_KINDS", "TargetError", "TargetKind", "load", "parse_spec", "parse_target"]

# spec.targets[] field name -> kind, in the CRD's order
KINDS: dict[str, TargetKind[Any]] = {
    kind.name: kind
    for kind in (
        kubernetes_secret.KIND,
        github_actions.KIND,
        gcp_secret_manager.KIND,
        aws_secrets_manager.KIND,
        azure_key_vault.KIND,
        hashicorp_vault.KIND,
    )
}
KNOWN_KINDS = tuple(KINDS)
# the interval field of each kind checked on a timer: a read-only drift check, or (write-only GitHub secrets) a
# periodic re-PUT that is off by default; Kubernetes Secrets are repaired from their watch, so they have none
CHECK_FIELDS: dict[str, tuple[str, float]] = {
    github_actions.KIND.name: ("resyncInterval", 0.0),
    gcp_secret_manager.KIND.name: ("driftCheckInterval", DEFAULTS.drift_check_seconds),
    aws_secrets_manager.KIND.name: ("driftCheckInterval", DEFAULTS.drift_check_seconds),
    azure_key_vault.KIND.name: ("driftCheckInterval", DEFAULTS.drift_check_seconds),
    hashicorp_vault.KIND.name: ("driftCheckInterval", DEFAULTS.drift_check_seconds),
}


def _missing_module(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError as exc:  # a parent package is missing
            return exc.name or name
    return None


def load(name: str) -> TargetKind[Any]:
    """The kind, once its SDK is known to be installed; else `TargetKindUnavailable` naming the extra."""
    kind = KINDS[name]
    missing = _missing_module(kind.sdk)
    if missing:
        raise TargetError(
            Reason.TARGET_KIND_UNAVAILABLE,
            f"target kind {name} needs the {kind.extra} extra: pip install 'vaultbundle[{kind.extra}]' ({missing})",
        )
    return kind


def check_interval(body: Mapping[str, Any], kind: str, path: str, minimum: float) -> float:
    """The kind's driftCheckInterval / resyncInterval in seconds: its default when unset, 0 (`0` or `0s`) = off,
    else at least *minimum* (`--min-drift-check-interval`)."""
    if kind not in CHECK_FIELDS:
        return 0.0
    name, default = CHECK_FIELDS[kind]
    text = string(body.get(name), f"{path}.{name}")
    if not text:
        return default
    seconds = 0.0 if text == "0" else parse_duration(text, f"{path}.{name}")
    if 0 < seconds < minimum:
        raise SpecError(
            f"{path}.{name} {text} is below the operator's minimum of {minimum:g}s (--min-drift-check-interval): "
            "every check reads the store; set a longer interval, or 0 to turn it off"
        )
    return seconds


def parse_target(raw: Any, path: str, *, min_drift_check: float = DEFAULTS.min_drift_check_seconds) -> TargetSpec:
    """One `spec.targets[]` entry: its name, exactly one kind, the kind's spec and the shared selection."""
    target = obj(raw, path)
    name = string(target.get("name"), f"{path}.name", required=True)
    kinds = [kind for kind in KINDS if target.get(kind) is not None]
    if len(kinds) != 1:
        raise SpecError(f"{path} must set exactly one of: {', '.join(KINDS)}")
    kind, where = KINDS[kinds[0]], f"{path}.{kinds[0]}"
    body: Mapping[str, Any] = obj(target[kind.name], where)
    grants.check_store_ref(kind.name, body, where)  # the tenant's spec error, found before any I/O
    parsed = kind.parse(body, where)
    return TargetSpec(
        name=name,
        kind=kind.name,
        selection=parse_selection(body, where),
        body=parsed,
        writes_secrets=kind.writes_secrets(parsed),
        raw=body,
        check_seconds=check_interval(body, kind.name, where, min_drift_check),
    )


def parse_spec(
    document: Mapping[str, Any],
    *,
    min_refresh: float = spec.MIN_REFRESH_SECONDS,
    namespace: str | None = None,
    min_drift_check: float = DEFAULTS.min_drift_check_seconds,
) -> spec.VaultBundleSpec:
    """A whole VaultBundle spec, its targets parsed by `parse_target`."""
    each = functools.partial(parse_target, min_drift_check=min_drift_check)
    return spec.parse(document, parse_target=each, min_refresh=min_refresh, namespace=namespace)
