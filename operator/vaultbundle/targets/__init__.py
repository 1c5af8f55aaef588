"""Targets: where a verified bundle's secrets go. One module per store, one `TargetKind` each.

Kinds load lazily: a store whose SDK (an install extra, e.g. `vaultbundle[github]`) is missing is reported as
`TargetKindUnavailable` on the target that uses it, and every other target still syncs.
"""

from __future__ import annotations

import importlib

from ..errors import TargetError
from .base import TargetKind

__all__ = ["KNOWN_KINDS", "TargetError", "TargetKind", "load"]

# spec.targets[] field name -> (module, install extra)
KNOWN_KINDS: dict[str, tuple[str, str]] = {
    "kubernetesSecret": ("vaultbundle.targets.kubernetes_secret", ""),
    "githubActions": ("vaultbundle.targets.github_actions", "github"),
    "gcpSecretManager": ("vaultbundle.targets.gcp_secret_manager", "gcp"),
    "awsSecretsManager": ("vaultbundle.targets.aws_secrets_manager", "aws"),
    "azureKeyVault": ("vaultbundle.targets.azure_key_vault", "azure"),
    "hashicorpVault": ("vaultbundle.targets.hashicorp_vault", "vault"),
}


def load(kind: str) -> TargetKind:
    module_name, extra = KNOWN_KINDS[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TargetError(
            "TargetKindUnavailable",
            f"target kind {kind} needs the {extra or 'core'} extra: pip install 'vaultbundle[{extra}]' ({exc.name})",
        ) from None
    found: TargetKind = module.KIND
    return found
