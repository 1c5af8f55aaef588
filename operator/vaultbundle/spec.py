"""The VaultBundle spec as typed values, validated without any network access.

Field names follow crds/vaultbundle.io_vaultbundles.yaml. The API server already enforces the schema;
this parse is the second line (objects written before a CRD upgrade, tests, dry runs) and gives every
problem a precise path in its message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .bundles import Layout
from .crypto.rqem import is_timestamp

MIN_REFRESH_SECONDS = 10.0
TARGET_KINDS = ("kubernetesSecret",)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """The spec is invalid; the message names the field. Permanent until the spec changes."""

    reason = "InvalidSpec"


class CrossNamespaceError(SpecError):
    """A Secret reference names another namespace: refused (tenant isolation)."""

    reason = "CrossNamespaceReference"


def parse_duration(text: str, path: str) -> float:
    position, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise SpecError(f"{path}: {text!r} is not a duration like 30s, 1m or 1h30m")
    return total


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class Selection:
    """Which bundle keys and files a target takes, and under which names."""

    include_keys: tuple[str, ...] = ("*",)
    exclude_keys: tuple[str, ...] = ()
    rename_keys: Mapping[str, str] = field(default_factory=dict)
    include_files: tuple[str, ...] = ()
    exclude_files: tuple[str, ...] = ()
    rename_files: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TemplateEntry:
    from_key: str | None = None
    from_file: str | None = None


@dataclass(frozen=True)
class KubernetesSecretSpec:
    name: str
    type: str = "Opaque"
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    template: Mapping[str, TemplateEntry] = field(default_factory=dict)
    merge_selected: bool = False
    deletion_policy: str = "Retain"
    adopt: bool = False
    prune: bool = True


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: str
    selection: Selection
    kubernetes_secret: KubernetesSecretSpec | None = None


@dataclass(frozen=True)
class VaultBundleSpec:
    config_ref: SecretRef
    passphrase_ref: SecretRef
    layout: Layout
    version: str
    env_file: str | None
    refresh_seconds: float
    suspend: bool
    dry_run: bool
    rollback_policy: str
    targets: tuple[TargetSpec, ...]


def _obj(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path} must be an object")
    return value


def _str(value: Any, path: str, *, required: bool = False, default: str = "") -> str:
    if value is None or value == "":
        if required:
            raise SpecError(f"{path} is required")
        return default
    if not isinstance(value, str):
        raise SpecError(f"{path} must be a string")
    return value


def _bool(value: Any, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"{path} must be true or false")
    return value


def _strings(value: Any, path: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(f"{path} must be a list of strings")
    return tuple(value)


def _string_map(value: Any, path: str) -> dict[str, str]:
    mapping = _obj(value, path)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise SpecError(f"{path} must map strings to strings")
    return dict(mapping)


def _ref(value: Any, path: str, default_key: str, namespace: str | None) -> SecretRef:
    ref = _obj(value, path)
    if ref.get("namespace") and ref.get("namespace") != namespace:
        raise CrossNamespaceError(
            f"{path}.namespace {ref['namespace']!r} is refused: a VaultBundle reads Secrets only from its own "
            f"namespace{f' ({namespace!r})' if namespace else ''}; copy the Secret there or drop the field"
        )
    return SecretRef(
        _str(ref.get("name"), f"{path}.name", required=True), _str(ref.get("key"), f"{path}.key", default=default_key)
    )


def _selection(target: Mapping[str, Any], path: str) -> Selection:
    keys, files = _obj(target.get("keys"), f"{path}.keys"), _obj(target.get("files"), f"{path}.files")
    return Selection(
        include_keys=_strings(keys.get("include"), f"{path}.keys.include", ("*",)),
        exclude_keys=_strings(keys.get("exclude"), f"{path}.keys.exclude"),
        rename_keys=_string_map(keys.get("rename"), f"{path}.keys.rename"),
        include_files=_strings(files.get("include"), f"{path}.files.include"),
        exclude_files=_strings(files.get("exclude"), f"{path}.files.exclude"),
        rename_files=_string_map(files.get("rename"), f"{path}.files.rename"),
    )


def _kubernetes_secret(raw: Mapping[str, Any], path: str) -> KubernetesSecretSpec:
    template = _obj(raw.get("template"), f"{path}.template")
    entries: dict[str, TemplateEntry] = {}
    for key, entry_raw in _obj(template.get("data"), f"{path}.template.data").items():
        entry = _obj(entry_raw, f"{path}.template.data.{key}")
        from_key, from_file = entry.get("fromKey"), entry.get("fromFile")
        if (from_key is None) == (from_file is None):
            raise SpecError(f"{path}.template.data.{key} needs exactly one of fromKey or fromFile")
        entries[key] = TemplateEntry(
            from_key=_str(from_key, "fromKey") or None, from_file=_str(from_file, "fromFile") or None
        )
    policy = _str(raw.get("deletionPolicy"), f"{path}.deletionPolicy", default="Retain")
    if policy not in ("Retain", "Delete"):
        raise SpecError(f"{path}.deletionPolicy must be Retain or Delete")
    return KubernetesSecretSpec(
        name=_str(raw.get("name"), f"{path}.name", required=True),
        type=_str(raw.get("type"), f"{path}.type", default="Opaque"),
        labels=_string_map(raw.get("labels"), f"{path}.labels"),
        annotations=_string_map(raw.get("annotations"), f"{path}.annotations"),
        template=entries,
        merge_selected=_bool(template.get("mergeSelected"), f"{path}.template.mergeSelected", False),
        deletion_policy=policy,
        adopt=_bool(raw.get("adopt"), f"{path}.adopt", False),
        prune=_bool(raw.get("prune"), f"{path}.prune", True),
    )


def _target(raw: Any, path: str) -> TargetSpec:
    target = _obj(raw, path)
    name = _str(target.get("name"), f"{path}.name", required=True)
    kinds = [kind for kind in TARGET_KINDS if target.get(kind) is not None]
    if len(kinds) != 1:
        raise SpecError(f"{path} must set exactly one of: {', '.join(TARGET_KINDS)}")
    body = _obj(target[kinds[0]], f"{path}.{kinds[0]}")
    return TargetSpec(
        name=name,
        kind=kinds[0],
        selection=_selection(body, f"{path}.{kinds[0]}"),
        kubernetes_secret=_kubernetes_secret(body, f"{path}.{kinds[0]}"),
    )


def parse(
    spec: Mapping[str, Any], *, min_refresh: float = MIN_REFRESH_SECONDS, namespace: str | None = None
) -> VaultBundleSpec:
    source = _obj(spec.get("source"), "spec.source")
    if not source:
        raise SpecError("spec.source is required")
    config_ref = _ref(source.get("configSecretRef"), "spec.source.configSecretRef", "config", namespace)
    passphrase_ref = _ref(source.get("passphraseSecretRef"), "spec.source.passphraseSecretRef", "passphrase", namespace)
    if config_ref.name == passphrase_ref.name:
        raise SpecError("spec.source: config and passphrase must live in different Secrets (separate leak channels)")
    layout_text = _str(source.get("layout"), "spec.source.layout", default="auto")
    try:
        layout = Layout(layout_text)
    except ValueError:
        raise SpecError("spec.source.layout must be auto, cli or runtime") from None
    version = _str(source.get("version"), "spec.source.version")
    if version and not is_timestamp(version):
        raise SpecError("spec.source.version must be a YYYYMMDD-HHMMSS timestamp or empty")
    refresh = max(
        min_refresh,
        parse_duration(_str(spec.get("refreshInterval"), "spec.refreshInterval", default="1m"), "spec.refreshInterval"),
    )
    policy = _str(spec.get("rollbackPolicy"), "spec.rollbackPolicy", default="Refuse")
    if policy not in ("Refuse", "Allow"):
        raise SpecError("spec.rollbackPolicy must be Refuse or Allow")
    raw_targets = spec.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise SpecError("spec.targets needs at least one target")
    targets = tuple(_target(raw, f"spec.targets[{index}]") for index, raw in enumerate(raw_targets))
    names = [target.name for target in targets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SpecError(f"spec.targets: duplicate target names {', '.join(duplicates)}")
    secrets = [t.kubernetes_secret.name for t in targets if t.kubernetes_secret]
    clashes = sorted(
        {name for name in secrets if secrets.count(name) > 1} | {config_ref.name, passphrase_ref.name} & set(secrets)
    )
    if clashes:
        raise SpecError(
            f"spec.targets: Secret names written twice or overwriting a source Secret: {', '.join(clashes)}"
        )
    return VaultBundleSpec(
        config_ref=config_ref,
        passphrase_ref=passphrase_ref,
        layout=layout,
        version=version,
        env_file=_str(source.get("envFile"), "spec.source.envFile") or None,
        refresh_seconds=refresh,
        suspend=_bool(spec.get("suspend"), "spec.suspend", False),
        dry_run=_bool(spec.get("dryRun"), "spec.dryRun", False),
        rollback_policy=policy,
        targets=targets,
    )
