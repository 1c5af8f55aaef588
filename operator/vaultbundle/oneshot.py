"""`vaultbundle plan` and `vaultbundle sync`: one reconcile of a VaultBundle manifest, without an operator.

The manifest's Secrets are read from the cluster in its namespace, exactly as the operator would; the cluster's
copy of the same VaultBundle (if any) supplies the anti-rollback floor. Nothing is written to its status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from .digest import Digester
from .egress import EgressPolicy
from .kube import Kube, load_api_client
from .pool import CryptoPool
from .reconcile import Observed, Outcome, Reconciler


async def run_once(
    manifest: Mapping[str, Any],
    *,
    namespace: str,
    kubeconfig: str | None,
    apply: bool,
    digest_key_file: str | None = None,
    egress: EgressPolicy | None = None,
) -> Outcome:
    kube = Kube(load_api_client(kubeconfig))
    meta = manifest.get("metadata") or {}
    name = str(meta.get("name") or "")
    live = await kube.get_vaultbundle(namespace, name) if name else None
    spec = dict(manifest.get("spec") or {})
    deleting = [
        str(t.get("name"))
        for t in spec.get("targets") or []
        if (t.get("kubernetesSecret") or {}).get("deletionPolicy") == "Delete"
    ]
    if apply and live is None and deleting:
        raise ValueError(
            f"targets {', '.join(deleting)} use deletionPolicy: Delete, which needs the VaultBundle to exist in the "
            "cluster (its uid owns the Secret); apply the VaultBundle first or use Retain"
        )
    if not apply:
        spec["dryRun"] = True
    observed = Observed(
        namespace=namespace,
        name=name or "manifest",
        uid=(live or {}).get("metadata", {}).get("uid", "one-shot"),
        generation=1,
        spec=spec,
        status=dict((live or {}).get("status") or {}),
    )
    with CryptoPool(workers=1) as pool:
        reconciler = Reconciler(
            kube,
            pool,
            Digester.from_file_or_random(digest_key_file),
            min_refresh=0,
            write_status=False,
            egress=egress,
        )
        return await reconciler.reconcile(observed)


def run(manifest: Mapping[str, Any], **kwargs: Any) -> Outcome:
    return asyncio.run(run_once(manifest, **kwargs))
