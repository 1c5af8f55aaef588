"""The VaultBundle spec as typed values, validated without any network access.

Field names follow crds/vaultbundle.io_vaultbundles.yaml. The API server already enforces the schema;
this parse is the second line (objects written before a CRD upgrade, tests, dry runs) and gives every
problem a precise path in its message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import targets as target_kinds
from .bundles import Layout
from .crypto.rqem import is_timestamp
from .errors import CrossNamespaceError, SpecError
from .settings import DEFAULTS

MIN_REFRESH_SECONDS = DEFAULTS.min_refresh_seconds
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


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
class TargetSpec:
    name: str
    kind: str
    selection: Selection
    body: Any  # the kind's own parsed spec (e.g. KubernetesSecretSpec)


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


def obj(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path} must be an object")
    return value


def string(value: Any, path: str, *, required: bool = False, default: str = "") -> str:
    if value is None or value == "":
        if required:
            raise SpecError(f"{path} is required")
        return default
    if not isinstance(value, str):
        raise SpecError(f"{path} must be a string")
    return value


def boolean(value: Any, path: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise SpecError(f"{path} must be true or false")
    return value


def strings(value: Any, path: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SpecError(f"{path} must be a list of strings")
    return tuple(value)


def string_map(value: Any, path: str) -> dict[str, str]:
    mapping = obj(value, path)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise SpecError(f"{path} must map strings to strings")
    return dict(mapping)


def checked_tags(
    value: Any, path: str, problem: Callable[[str, str], str | None], *, max_tags: int, limit_note: str
) -> dict[str, str]:
    """A store's user tags: a string map whose entries *problem* accepts (None) and at most *max_tags* of them.
    Every problem is reported at once, in key order."""
    tags = string_map(value, path)
    problems = [found for key, found_value in sorted(tags.items()) if (found := problem(key, found_value))]
    if len(tags) > max_tags:
        problems.append(f"at most {max_tags} tags ({limit_note})")
    if problems:
        raise SpecError(f"{path}: " + "; ".join(problems))
    return tags


def _ref(value: Any, path: str, default_key: str, namespace: str | None) -> SecretRef:
    ref = obj(value, path)
    if ref.get("namespace") and ref.get("namespace") != namespace:
        raise CrossNamespaceError(
            f"{path}.namespace {ref['namespace']!r} is refused: a VaultBundle reads Secrets only from its own "
            f"namespace{f' ({namespace!r})' if namespace else ''}; copy the Secret there or drop the field"
        )
    return SecretRef(
        string(ref.get("name"), f"{path}.name", required=True),
        string(ref.get("key"), f"{path}.key", default=default_key),
    )


def parse_selection(target: Mapping[str, Any], path: str) -> Selection:
    keys, files = obj(target.get("keys"), f"{path}.keys"), obj(target.get("files"), f"{path}.files")
    return Selection(
        include_keys=strings(keys.get("include"), f"{path}.keys.include", ("*",)),
        exclude_keys=strings(keys.get("exclude"), f"{path}.keys.exclude"),
        rename_keys=string_map(keys.get("rename"), f"{path}.keys.rename"),
        include_files=strings(files.get("include"), f"{path}.files.include"),
        exclude_files=strings(files.get("exclude"), f"{path}.files.exclude"),
        rename_files=string_map(files.get("rename"), f"{path}.files.rename"),
    )


def _target(raw: Any, path: str) -> TargetSpec:
    target = obj(raw, path)
    name = string(target.get("name"), f"{path}.name", required=True)
    kinds = [kind for kind in target_kinds.KNOWN_KINDS if target.get(kind) is not None]
    if len(kinds) != 1:
        raise SpecError(f"{path} must set exactly one of: {', '.join(target_kinds.KNOWN_KINDS)}")
    kind, where = kinds[0], f"{path}.{kinds[0]}"
    body = obj(target[kind], where)
    try:
        parsed = target_kinds.load(kind).parse(body, where)
    except target_kinds.TargetError:
        parsed = None  # the kind's SDK is not installed: only this target fails (TargetKindUnavailable)
    return TargetSpec(name=name, kind=kind, selection=parse_selection(body, where), body=parsed)


def parse(
    spec: Mapping[str, Any], *, min_refresh: float = MIN_REFRESH_SECONDS, namespace: str | None = None
) -> VaultBundleSpec:
    source = obj(spec.get("source"), "spec.source")
    if not source:
        raise SpecError("spec.source is required")
    config_ref = _ref(source.get("configSecretRef"), "spec.source.configSecretRef", "config", namespace)
    passphrase_ref = _ref(source.get("passphraseSecretRef"), "spec.source.passphraseSecretRef", "passphrase", namespace)
    if config_ref.name == passphrase_ref.name:
        raise SpecError("spec.source: config and passphrase must live in different Secrets (separate leak channels)")
    layout_text = string(source.get("layout"), "spec.source.layout", default="auto")
    try:
        layout = Layout(layout_text)
    except ValueError:
        raise SpecError("spec.source.layout must be auto, cli or runtime") from None
    version = string(source.get("version"), "spec.source.version")
    if version and not is_timestamp(version):
        raise SpecError("spec.source.version must be a YYYYMMDD-HHMMSS timestamp or empty")
    refresh = max(
        min_refresh,
        parse_duration(
            string(spec.get("refreshInterval"), "spec.refreshInterval", default="1m"), "spec.refreshInterval"
        ),
    )
    policy = string(spec.get("rollbackPolicy"), "spec.rollbackPolicy", default="Refuse")
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
    secrets = [t.body.name for t in targets if t.kind == "kubernetesSecret"]
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
        env_file=string(source.get("envFile"), "spec.source.envFile") or None,
        refresh_seconds=refresh,
        suspend=boolean(spec.get("suspend"), "spec.suspend", False),
        dry_run=boolean(spec.get("dryRun"), "spec.dryRun", False),
        rollback_policy=policy,
        targets=targets,
    )
