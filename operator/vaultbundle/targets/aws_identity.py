"""AWS identities the operator may use for a tenant, shared by every AWS consumer (the Secrets Manager target,
the dotsec source's KMS key): boto3 clients from one session, role assumption with the session identity of one
VaultBundle, and referent identity (a TokenRequest for the tenant's own ServiceAccount exchanged with
AssumeRoleWithWebIdentity, UNSIGNED, so the operator's own identity never reaches AWS for it).

Which of these a caller may use is not decided here: every credential still comes through
`credentials.Credentials` (the Grant's policy).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import boto3
import botocore
from botocore.config import Config

from .. import stores
from ..errors import Reason, TargetError
from . import tokens
from .base import Owner, TargetContext
from .credentials import Credentials

ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"  # the IRSA convention: the role a ServiceAccount may assume
STS_AUDIENCE = "sts.amazonaws.com"
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
SESSION_SECONDS = 900  # the STS minimum: issued credentials are short-lived

# One shared boto3 session: its loader caches the service models, so a client per sync costs little.
# Clients get explicit credentials or fall back to the session's default chain (env, IRSA web identity, ECS/EC2).
_SESSION_LOCK = threading.Lock()
_SESSION: boto3.session.Session | None = None
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=5,
    read_timeout=20,
    user_agent_extra="vaultbundle",
)


def client(service: str, region: str, endpoint: str, credentials: Mapping[str, str], *, unsigned: bool = False) -> Any:
    """A boto3 client; *credentials* are boto3's `aws_access_key_id`... arguments (empty: the default chain,
    which only a ClusterTargetStore's ambient identity may reach). `unsigned`: no credentials at all."""
    global _SESSION  # noqa: PLW0603 - one lazily created session per process
    config = _CONFIG.merge(Config(signature_version=botocore.UNSIGNED)) if unsigned else _CONFIG
    with _SESSION_LOCK:  # botocore sessions are not thread-safe; clients are
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client(
            service, region_name=region or None, endpoint_url=endpoint or None, config=config, **credentials
        )


def issued(response: Mapping[str, Any]) -> dict[str, str]:
    """boto3 credential arguments from an STS response's `Credentials`."""
    found = response["Credentials"]
    return {
        "aws_access_key_id": found["AccessKeyId"],
        "aws_secret_access_key": found["SecretAccessKey"],
        "aws_session_token": found["SessionToken"],
    }


def expiration(response: Mapping[str, Any]) -> datetime | None:
    found = response["Credentials"].get("Expiration")
    return found if isinstance(found, datetime) else None


def assume_web_identity(region: str, sts_endpoint: str, role_arn: str, token: str, owner: Owner) -> Any:
    """AssumeRoleWithWebIdentity needs no AWS credentials: the client is UNSIGNED, so the operator's own
    identity is never attached to a request a tenant's ServiceAccount triggers."""
    sts = client("sts", region, sts_endpoint, {}, unsigned=True)
    return sts.assume_role_with_web_identity(
        RoleArn=role_arn,
        RoleSessionName=stores.role_session_name(owner.namespace, owner.name),
        WebIdentityToken=token,
        DurationSeconds=SESSION_SECONDS,
    )


def assume_role(
    region: str, sts_endpoint: str, role_arn: str, external_id: str, credentials: Mapping[str, str], owner: Owner
) -> Any:
    """AssumeRole with *credentials*, an injective session name and transitive session tags (namespace, name,
    uid); the ExternalId only ever comes from a ClusterTargetStore (authorize refuses a tenant's)."""
    sts = client("sts", region, sts_endpoint, credentials)
    identity = stores.assume_role_inputs(owner.namespace, owner.name, owner.uid, external_id)
    return sts.assume_role(RoleArn=role_arn, DurationSeconds=SESSION_SECONDS, **identity)


async def web_identity_role(
    context: TargetContext, source: Credentials, service_account: str
) -> tuple[str, Mapping[str, Any]]:
    """Referent identity, step 1 (one GET, no token): the tenant's own ServiceAccount, admitted by the Grant, and
    the role its `eks.amazonaws.com/role-arn` annotation names. Returns (role ARN, the ServiceAccount)."""
    source.service_account(service_account)
    account = await tokens.service_account(context, service_account)
    role_arn = str(tokens.annotations_of(account).get(ROLE_ARN_ANNOTATION, ""))
    if not ROLE_ARN.fullmatch(role_arn):
        raise TargetError(
            Reason.AUTH_FAILED,
            f"ServiceAccount {service_account!r} has no {ROLE_ARN_ANNOTATION} annotation with an IAM role ARN; "
            "annotate it with the role this namespace may assume",
        )
    return role_arn, account


async def web_identity_token(context: TargetContext, service_account: str, account: Mapping[str, Any]) -> str:
    """Referent identity, step 2: a TokenRequest (audience sts.amazonaws.com) for that ServiceAccount, which must
    opt in (`vaultbundle.io/token-audiences`). Ask for one only right before an AssumeRoleWithWebIdentity: AWS's
    trust policy then decides on the token's namespace and name."""
    return await tokens.service_account_token(
        context, service_account, [STS_AUDIENCE], "assume its AWS role", account=account
    )


async def store_identity(connection: stores.AwsConnection, source: Credentials) -> dict[str, str]:
    """A ClusterTargetStore's identity: {} for its ambient one (the default chain), else its Secret's keys."""
    identity = connection.identity
    if identity.secret_ref is None:
        source.ambient()  # the store lends the operator's own identity (IRSA / default chain)
        return {}
    ref = identity.secret_ref
    credentials = {
        "aws_access_key_id": await source.store_secret(ref, "accessKeyIdKey"),
        "aws_secret_access_key": await source.store_secret(ref, "secretAccessKeyKey"),
    }
    if ref.key("sessionTokenKey"):
        credentials["aws_session_token"] = await source.store_secret(ref, "sessionTokenKey")
    return credentials
