"""Tokens for a ServiceAccount of the VaultBundle's own namespace (TokenRequest), for stores that log in as it.

Referent identity: instead of the operator's own identity, the store (Vault's Kubernetes auth, AWS STS
AssumeRoleWithWebIdentity) receives a short-lived JWT of a ServiceAccount the tenant owns, and decides per
namespace itself. A ServiceAccount opts in: only audiences listed in its `vaultbundle.io/token-audiences`
annotation are ever requested, so the operator cannot be made to mint tokens for accounts that did not agree.
A ClusterTargetStore's Vault Kubernetes auth uses the same opt-in for its ServiceAccount in the operator's own
namespace (`namespace=`, granted by `credentials.Credentials.store_service_account`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import Reason, TargetError
from ..fields import service_account_ref
from ..kube import KubeError
from .base import TargetContext

__all__ = [
    "AUDIENCES_ANNOTATION",
    "TOKEN_SECONDS",
    "annotations_of",
    "service_account",
    "service_account_ref",
    "service_account_token",
]

AUDIENCES_ANNOTATION = "vaultbundle.io/token-audiences"
TOKEN_SECONDS = 600  # the TokenRequest minimum: the JWT is used once, for the login


async def service_account(context: TargetContext, name: str, namespace: str = "") -> Mapping[str, Any]:
    """The ServiceAccount *name* of the owner's namespace (or *namespace*); `AuthFailed` when it does not exist."""
    namespace = namespace or context.owner.namespace
    where = _where(namespace, name)
    try:
        account = await context.kube.get_service_account(namespace, name)
    except KubeError as exc:
        raise _kube_error(exc, f"reading {where}") from None
    if account is None:
        raise TargetError(Reason.AUTH_FAILED, f"reading {where}: not found; create the ServiceAccount")
    return account


def annotations_of(account: Mapping[str, Any]) -> Mapping[str, str]:
    return (account.get("metadata") or {}).get("annotations") or {}


async def opted_in_account(
    context: TargetContext, name: str, audiences: Sequence[str], purpose: str, namespace: str = ""
) -> Mapping[str, Any]:
    """The ServiceAccount, read now, once its annotation allows *audiences* (else `Forbidden`): what a caller that
    may skip the TokenRequest (a login it still holds) checks on every cycle, so an opt-out takes effect at once."""
    namespace = namespace or context.owner.namespace
    account = await service_account(context, name, namespace)
    _require_audiences(account, audiences, purpose, _where(namespace, name))
    return account


def _require_audiences(account: Mapping[str, Any], audiences: Sequence[str], purpose: str, where: str) -> None:
    allowed = {a.strip() for a in str(annotations_of(account).get(AUDIENCES_ANNOTATION, "")).split(",") if a.strip()}
    refused = sorted(set(audiences) - allowed)
    if refused:
        raise TargetError(
            Reason.FORBIDDEN,
            f"{where} does not allow tokens for audience(s) {', '.join(refused)}: annotate it with "
            f"{AUDIENCES_ANNOTATION}: {','.join(audiences)} to let vaultbundle {purpose} as it",
        )


async def service_account_token(
    context: TargetContext,
    name: str,
    audiences: Sequence[str],
    purpose: str,
    account: Mapping[str, Any] | None = None,
    namespace: str = "",
) -> str:
    """A short-lived JWT for the ServiceAccount (of the owner's namespace, or *namespace*), only for audiences its
    annotation allows (*purpose* completes "to let vaultbundle ... as it" in the refusal)."""
    namespace = namespace or context.owner.namespace
    where = _where(namespace, name)
    account = account if account is not None else await service_account(context, name, namespace)
    _require_audiences(account, audiences, purpose, where)
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"audiences": list(audiences), "expirationSeconds": TOKEN_SECONDS},
    }
    try:
        response = await context.kube.create_token(namespace, name, body)
    except KubeError as exc:
        raise _kube_error(exc, f"requesting a token for {where}") from None
    token = (response.get("status") or {}).get("token")
    if not token:
        raise TargetError(Reason.KUBERNETES_API_ERROR, f"the TokenRequest for {where} returned no token")
    return str(token)


def _where(namespace: str, name: str) -> str:
    return f"ServiceAccount {name!r} in namespace {namespace!r}"


def _kube_error(exc: KubeError, what: str) -> TargetError:
    if exc.status == 404:
        return TargetError(Reason.AUTH_FAILED, f"{what}: not found; create the ServiceAccount")
    if exc.status == 403:
        return TargetError(
            Reason.FORBIDDEN,
            f"{what}: the operator lacks RBAC (get serviceaccounts, create serviceaccounts/token)",
        )
    return TargetError(Reason.KUBERNETES_API_ERROR, f"{what} failed: HTTP {exc.status}")
