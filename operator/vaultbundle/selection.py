"""What a target receives from a bundle: selection, renames and templates, as name -> bytes (pure)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from .spec import KubernetesSecretSpec, Selection, SpecError
from .vault import Vault

_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


class SelectionError(SpecError):
    """The selection cannot be applied to this bundle (collisions, missing template sources, bad names)."""

    reason = "InvalidSelection"


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


def kubernetes_secret_data(vault: Vault, selection: Selection, spec: KubernetesSecretSpec) -> dict[str, bytes]:
    """The Secret's data: the template's entries (plus the selection when mergeSelected or no template)."""
    data = select(vault, selection) if spec.merge_selected or not spec.template else {}
    for key, entry in spec.template.items():
        if entry.from_key is not None:
            if entry.from_key not in vault.kv:
                raise SelectionError(
                    f"template key {key!r} takes bundle key {entry.from_key!r}, which the bundle lacks"
                )
            data[key] = vault.kv[entry.from_key].encode("utf-8")
        elif entry.from_file is not None:
            if entry.from_file not in vault.files:
                raise SelectionError(f"template key {key!r} takes file {entry.from_file!r}, which the bundle lacks")
            data[key] = vault.files[entry.from_file]
    bad = sorted(name for name in data if not _SECRET_KEY.fullmatch(name) or len(name) > 253)
    if bad:
        raise SelectionError(
            f"not valid Secret keys (allowed: letters, digits, '-', '_', '.'): {', '.join(bad)}; "
            "rename them in keys.rename / files.rename"
        )
    return data
