"""What a target receives from a bundle: include/exclude and renames of keys and files, as name -> bytes (pure)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from .errors import Reason, SpecError
from .fields import Selection
from .vault import Vault


class SelectionError(SpecError):
    """The selection cannot be applied to this bundle (collisions, missing template sources, bad names)."""

    reason = Reason.INVALID_SELECTION


def _matches(name: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in include) and not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def default_file_key(path: str) -> str:
    """A file path as a key: `certs/tls.key` -> `certs_tls.key` (Kubernetes keys have no `/`)."""
    return path.replace("/", "_")


def select(vault: Vault, selection: Selection) -> dict[str, bytes]:
    """Apply include/exclude/rename to keys and files; two sources landing on one name is an error naming both."""
    sources: dict[str, str] = {}
    result: dict[str, bytes] = {}

    def add(target: str, source: str, value: bytes) -> None:
        if target in result:
            raise SelectionError(f"{sources[target]} and {source} both map to the name {target!r}")
        sources[target], result[target] = source, value

    for name, value in vault.kv.items():
        if _matches(name, selection.include_keys, selection.exclude_keys):
            add(selection.rename_keys.get(name, name), f"key {name!r}", value.encode("utf-8"))
    for path, body in vault.files.items():
        if _matches(path, selection.include_files, selection.exclude_files):
            add(selection.rename_files.get(path, default_file_key(path)), f"file {path!r}", body)
    return result
