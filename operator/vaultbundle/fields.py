"""Field helpers for parsing the VaultBundle spec: typed values out of untyped JSON, with the field's path in
every error. Also the small value types the spec and every store share (`SecretRef`, `Selection`).

This is a leaf module: it imports nothing from the package but `errors`, so `spec.py` and every module in
`targets/` can use it without importing each other (see the import contracts in pyproject.toml).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import CrossNamespaceError, SpecError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Kubernetes object names (RFC 1123 subdomain) and Secret data keys.
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
MAX_NAME_LENGTH = 253


@dataclass(frozen=True)
class SecretRef:
    """One key of a Secret in the VaultBundle's own namespace."""

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
    """One parsed `spec.targets[]` entry (parsed by `targets.parse_target`)."""

    name: str
    kind: str
    selection: Selection
    body: Any  # the kind's own parsed spec (e.g. KubernetesSecretSpec)
    writes_secrets: tuple[str, ...] = ()  # Secrets of the VaultBundle's namespace it writes (cross-target checks)
    raw: Mapping[str, Any] = field(default_factory=dict)  # the kind's object as written: the store policy reads it
    # seconds between read-only drift checks (driftCheckInterval), or between re-PUTs of a write-only store
    # (githubActions resyncInterval); 0 = never. Kubernetes Secret targets are repaired from their watch instead.
    check_seconds: float = 0.0


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


def positive_integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SpecError(f"{path} must be a positive integer")
    return value


def bounded_integer(value: Any, path: str, *, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path} must be an integer")
    if not low <= value <= high:
        raise SpecError(f"{path} must be between {low} and {high}")
    return value


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


# --- references to Secrets in the VaultBundle's own namespace ----------------------------------------------


def secret_object(value: Any, path: str, *, namespace: str | None = None) -> tuple[Mapping[str, Any], str]:
    """A reference object and its checked `name`. A `namespace` field is refused (tenant isolation) unless it
    equals *namespace*, the VaultBundle's own (known for the source refs; target refs never take one)."""
    if value is None:
        raise SpecError(f"{path} is required")
    ref = obj(value, path)
    other = ref.get("namespace")
    if other and other != namespace:
        own = f" ({namespace!r})" if namespace else ""
        raise CrossNamespaceError(
            f"{path}.namespace {other!r} is refused: a VaultBundle reads Secrets only from its own namespace{own}; "
            "copy the Secret there and drop the field"
        )
    name = string(ref.get("name"), f"{path}.name", required=True)
    if len(name) > MAX_NAME_LENGTH or not DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(f"{path}.name must be a Secret name (a DNS subdomain: a-z, 0-9, '-', '.'), got {name!r}")
    return ref, name


def secret_key(value: Any, path: str, *, default: str) -> str:
    """A Secret data key: letters, digits, '-', '_' and '.'. An empty *default* makes the key optional ("")."""
    key = string(value, path, default=default)
    if key and (len(key) > MAX_NAME_LENGTH or not SECRET_KEY.fullmatch(key)):
        raise SpecError(f"{path} must be a Secret key (letters, digits, '-', '_', '.'), got {key!r}")
    return key


def secret_ref(value: Any, path: str, default_key: str, *, namespace: str | None = None) -> SecretRef:
    """`{name, key}` of a Secret in the VaultBundle's own namespace, checked (see `secret_object`)."""
    ref, name = secret_object(value, path, namespace=namespace)
    return SecretRef(name, secret_key(ref.get("key"), f"{path}.key", default=default_key))


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


def service_account_ref(raw: Any, path: str) -> str:
    """The name in a `serviceAccountRef: {name}` of a target's (or a dotsec KMS key's) spec (*path* names that
    field). No namespace field: the ServiceAccount is always one of the VaultBundle's own namespace."""
    ref = obj(raw, path)
    if set(ref) != {"name"}:
        raise SpecError(f"{path} must be {{name: <ServiceAccount in this namespace>}}")
    name = string(ref["name"], f"{path}.name", required=True)
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(f"{path}.name is not a valid ServiceAccount name")
    return name
