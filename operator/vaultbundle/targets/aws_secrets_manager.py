"""AWS Secrets Manager target: one secret per selected key (PerKey) or one JSON secret for the bundle (Json).

Narrow SDK surface (boto3 `secretsmanager`): create_secret, describe_secret, get_secret_value,
put_secret_value / update_secret (a value change with kmsKeyId), tag_resource, restore_secret, list_secrets,
delete_secret; `sts.assume_role` only with roleArn.

* Credentials: a Secret in the VaultBundle's namespace (`credentialsSecretRef`), or with `storeRef` the
  connection and identity of an admin's ClusterTargetStore (region, endpoints, role, externalId, ambient or a
  Secret of the operator), its `scope.namePrefix` put in front of every name. Never the operator's ambient
  identity for a tenant (`credentials.Credentials.admit`). Every AssumeRole carries an injective
  RoleSessionName and transitive session tags vaultbundle-namespace / -name / -uid (`stores.assume_role_inputs`).
  Referent identity: `auth.serviceAccountRef` exchanges a token of the tenant's own ServiceAccount for its role
  (AssumeRoleWithWebIdentity, unsigned), so AWS decides per namespace.

* Names: the selection's renames, then `naming` (prefix, case, dash/underscore), then `namePrefix` prepended
  verbatim (a path such as `prod/web/`, not transformed); the whole name must satisfy AWS's rule. Every bad
  name and every collision is reported before anything is written.
* Ownership: every secret we create carries the tags `managed-by=vaultbundle` and
  `vaultbundle.io/owner=<namespace>/<name>`. A secret without our owner tag is never written or deleted unless
  `adopt: true`; another VaultBundle's secret never is.
* Idempotence: current values are read (GetSecretValue) and compared; an equal value is not written, so no new
  version appears.
* Prune (PerKey only): secrets carrying our owner tag, under `namePrefix`, that this target wrote (status
  `managedSecrets`) and that left the selection are deleted with a recovery window (`recoveryWindowDays`);
  two targets of one VaultBundle in one region never prune each other. A secret of ours that is scheduled
  for deletion and comes back into the selection is restored, then updated.
* Errors become TargetError with a reason (AuthFailed, Forbidden, Throttled, Unavailable, KmsError, ...);
  messages carry the operation, the secret name and the AWS error code, never the SDK's message text.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import botocore.exceptions

from .. import stores
from ..errors import Reason, SpecError, TargetError
from ..fields import (
    Selection,
    boolean,
    bounded_integer,
    checked_tags,
    obj,
    secret_key,
    secret_object,
    service_account_ref,
    string,
)
from ..selection import SelectionError, select
from ..vault import Vault
from . import aws_identity
from .base import Owner, Plan, StoreKind, TargetContext, WrittenNames
from .checks import is_utf8
from .credentials import Credentials, credentials_for
from .errormap import Messages, code_reason, reason_for_status, translated
from .naming import NameRule, Naming, parse_naming, remote_names
from .ownership import ADOPT_ANNOTATION, MANAGED_BY_KEY, MANAGED_BY_VALUE, adopt_token, claim_tagged
from .threads import ThreadedTarget, in_thread

OWNER_TAG = "vaultbundle.io/owner"
RESERVED_TAG_PREFIXES = ("vaultbundle.io/", "aws:")
MODES = ("PerKey", "Json")
MAX_VALUE_BYTES = 65_536  # SecretString / SecretBinary limit
MAX_USER_TAGS = 48  # AWS allows 50 per secret; we add two
_TAG_KEY = re.compile(r"[\w\s.:/=+\-@]{1,128}")
_TAG_VALUE = re.compile(r"[\w\s.:/=+\-@]{0,256}")
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+-\d+")
_URL = re.compile(r"https?://[^\s/]+(/\S*)?")
ROLE_ARN_ANNOTATION = aws_identity.ROLE_ARN_ANNOTATION
_ROLE_ARN = aws_identity.ROLE_ARN

NAME_RULE = NameRule(
    store="AWS Secrets Manager",
    pattern=re.compile(r"[A-Za-z0-9/_+=.@-]+"),
    max_length=512,
    description="only letters, digits and / _ + = . @ - are allowed",
)
# Json mode: the selected names become keys of one JSON object; any non-empty name works there.
JSON_KEY_RULE = NameRule(store="JSON object", pattern=re.compile(r".+", re.DOTALL), max_length=4096, description="")

_AUTH_CODES = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AuthFailure",
}
# AWS error code -> reason, checked in this order (KMS before access: a KMS denial names the key)
_CODE_REASONS: dict[Reason, set[str]] = {
    Reason.AUTH_FAILED: _AUTH_CODES,
    Reason.KMS_ERROR: {
        "EncryptionFailure",
        "DecryptionFailure",
        "KMSAccessDeniedException",
        "KMSInvalidStateException",
    },
    Reason.FORBIDDEN: {"AccessDeniedException", "Forbidden", "UnauthorizedOperation"},
    Reason.THROTTLED: {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"},
    Reason.NOT_FOUND: {"ResourceNotFoundException"},
    Reason.CONFLICT: {"ResourceExistsException"},
    Reason.QUOTA_EXCEEDED: {"LimitExceededException"},
    Reason.UNAVAILABLE: {"InternalServiceError", "InternalFailure", "ServiceUnavailable"},
}
_SDK_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
_MESSAGES = Messages(
    {
        Reason.AUTH_FAILED: "{what}: AWS rejected the credentials ({code})",
        Reason.KMS_ERROR: "{what}: the KMS key cannot be used ({code}); check kmsKeyId and its policy",
        Reason.FORBIDDEN: "{what}: access denied ({code}); check the IAM policy",
        Reason.THROTTLED: "{what}: throttled by AWS ({code})",
        Reason.NOT_FOUND: "{what}: not found ({code})",
        Reason.CONFLICT: "{what}: created by someone else meanwhile ({code}); retrying",
        Reason.QUOTA_EXCEEDED: "{what}: an AWS quota is exhausted ({code})",
        Reason.UNAVAILABLE: "{what}: AWS Secrets Manager is unavailable ({code})",
        Reason.REJECTED: "{what}: AWS rejected the request ({code})",
    }
)


@dataclass(frozen=True)
class CredentialsRef:
    """A Secret in the VaultBundle's namespace holding a static access key (optionally a session token)."""

    name: str
    access_key_id_key: str = "access-key-id"
    secret_access_key_key: str = "secret-access-key"  # noqa: S105 - a key name, not a secret
    session_token_key: str = ""


@dataclass(frozen=True)
class AwsNaming(Naming):
    """`naming` transforms, then `namePrefix` verbatim (a path prefix is not upper-cased or dash-replaced)."""

    name_prefix: str = ""

    def apply(self, name: str) -> str:
        return self.name_prefix + super().apply(name)


@dataclass(frozen=True)
class AwsSecretsManagerSpec:
    region: str = ""
    endpoint: str = ""
    sts_endpoint: str = ""
    name_prefix: str = ""
    mode: str = "PerKey"
    name: str = ""
    kms_key_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    credentials: CredentialsRef | None = None
    service_account: str = ""  # auth.serviceAccountRef: a ServiceAccount of the namespace (web identity)
    role_arn: str = ""
    external_id: str = ""
    recovery_window_days: int = 7
    force_delete_without_recovery: bool = False
    naming: Naming = field(default_factory=Naming)
    adopt: bool = False
    prune: bool = False

    @property
    def json_secret_name(self) -> str:
        return self.name_prefix + self.name


def _url(value: Any, path: str) -> str:
    text = string(value, path)
    if text and not _URL.fullmatch(text):
        raise SpecError(f"{path} must be an http(s) URL, e.g. https://secretsmanager.us-east-1.amazonaws.com")
    return text


def _credentials(raw: Any, path: str) -> CredentialsRef | None:
    if raw is None:
        return None
    ref, name = secret_object(raw, path)
    return CredentialsRef(
        name=name,
        access_key_id_key=secret_key(ref.get("accessKeyIdKey"), f"{path}.accessKeyIdKey", default="access-key-id"),
        secret_access_key_key=secret_key(
            ref.get("secretAccessKeyKey"), f"{path}.secretAccessKeyKey", default="secret-access-key"
        ),
        session_token_key=secret_key(ref.get("sessionTokenKey"), f"{path}.sessionTokenKey", default=""),
    )


def _service_account(raw: Any, path: str) -> str:
    auth = obj(raw, path)
    if set(auth) - {"serviceAccountRef"}:
        raise SpecError(f"{path} takes only serviceAccountRef: {{name: <ServiceAccount in this namespace>}}")
    if auth.get("serviceAccountRef") is None:
        return ""
    return service_account_ref(auth["serviceAccountRef"], f"{path}.serviceAccountRef")


def _tag_problem(key: str, value: str) -> str | None:
    if key in (MANAGED_BY_KEY, OWNER_TAG) or key.lower().startswith(RESERVED_TAG_PREFIXES):
        return f"{key!r} is reserved (the operator sets {MANAGED_BY_KEY} and {OWNER_TAG})"
    if not _TAG_KEY.fullmatch(key):
        return f"key {key!r} must be 1..128 letters, digits, spaces or _ . : / = + - @"
    if not _TAG_VALUE.fullmatch(value):
        return f"value of {key!r} must be 0..256 letters, digits, spaces or _ . : / = + - @"
    return None


def _tags(raw: Any, path: str) -> dict[str, str]:
    limit = "AWS allows 50 and the operator adds 2"
    return checked_tags(raw, path, _tag_problem, max_tags=MAX_USER_TAGS, limit_note=limit)


class AwsSecretsManagerKind(StoreKind):
    name = "awsSecretsManager"
    extra = "aws"  # boto3 is a core dependency (S3): always installed

    def parse(self, raw: Mapping[str, Any], path: str) -> AwsSecretsManagerSpec:
        region = string(raw.get("region"), f"{path}.region")
        if region and not _REGION.fullmatch(region):
            raise SpecError(f"{path}.region {region!r} is not an AWS region name like us-east-1")
        mode = string(raw.get("mode"), f"{path}.mode", default="PerKey")
        if mode not in MODES:
            raise SpecError(f"{path}.mode must be one of {', '.join(MODES)}")
        name = string(raw.get("name"), f"{path}.name")
        name_prefix = string(raw.get("namePrefix"), f"{path}.namePrefix")
        if mode == "Json" and not name:
            raise SpecError(f"{path}.name is required when mode is Json (the one secret holding the JSON object)")
        if mode == "PerKey" and name:
            raise SpecError(f"{path}.name is only used with mode: Json (PerKey names come from the keys)")
        if name_prefix and not NAME_RULE.pattern.fullmatch(name_prefix):
            raise SpecError(f"{path}.namePrefix: {NAME_RULE.description}")
        if mode == "Json":
            problem = NAME_RULE.problem(name_prefix + name)
            if problem:
                raise SpecError(f"{path}.name: {name_prefix + name!r}: {problem}")
        role_arn = string(raw.get("roleArn"), f"{path}.roleArn")
        if role_arn and not _ROLE_ARN.fullmatch(role_arn):
            raise SpecError(f"{path}.roleArn must be an IAM role ARN like arn:aws:iam::123456789012:role/name")
        external_id = string(raw.get("externalId"), f"{path}.externalId")
        if external_id and not role_arn:
            raise SpecError(f"{path}.externalId needs roleArn")
        naming = parse_naming(raw.get("naming"), f"{path}.naming")
        service_account = _service_account(raw.get("auth"), f"{path}.auth")
        if service_account and (raw.get("credentialsSecretRef") is not None or role_arn):
            raise SpecError(
                f"{path}.auth.serviceAccountRef: the role comes from the ServiceAccount's {ROLE_ARN_ANNOTATION} "
                "annotation; drop credentialsSecretRef and roleArn"
            )
        return AwsSecretsManagerSpec(
            region=region,
            endpoint=_url(raw.get("endpoint"), f"{path}.endpoint"),
            sts_endpoint=_url(raw.get("stsEndpoint"), f"{path}.stsEndpoint"),
            name_prefix=name_prefix,
            mode=mode,
            name=name,
            kms_key_id=string(raw.get("kmsKeyId"), f"{path}.kmsKeyId"),
            tags=_tags(raw.get("tags"), f"{path}.tags"),
            credentials=_credentials(raw.get("credentialsSecretRef"), f"{path}.credentialsSecretRef"),
            service_account=service_account,
            role_arn=role_arn,
            external_id=external_id,
            recovery_window_days=bounded_integer(
                raw.get("recoveryWindowDays"), f"{path}.recoveryWindowDays", default=7, low=7, high=30
            ),
            force_delete_without_recovery=boolean(
                raw.get("forceDeleteWithoutRecovery"), f"{path}.forceDeleteWithoutRecovery", False
            ),
            naming=naming,
            adopt=boolean(raw.get("adopt"), f"{path}.adopt", False),
            prune=boolean(raw.get("prune"), f"{path}.prune", False),
        )

    def desired(self, vault: Vault, selection: Selection, spec: AwsSecretsManagerSpec) -> dict[str, bytes]:
        """PerKey: remote secret name -> value. Json: {secret name: the JSON object of every selected key}."""
        selected = select(vault, selection)
        if spec.mode == "PerKey":
            naming = AwsNaming(
                prefix=spec.naming.prefix,
                case=spec.naming.case,
                underscores_to_dashes=spec.naming.underscores_to_dashes,
                dashes_to_underscores=spec.naming.dashes_to_underscores,
                name_prefix=spec.name_prefix,
            )
            result = remote_names(selected, naming, NAME_RULE)
            too_big = sorted(name for name, value in result.items() if len(value) > MAX_VALUE_BYTES)
            if too_big:
                raise SelectionError(f"values larger than AWS's 64 KiB secret limit: {', '.join(too_big)}")
            return result
        keys = remote_names(selected, spec.naming, JSON_KEY_RULE)
        document: dict[str, str] = {}
        binary: list[str] = []
        for key, value in keys.items():
            try:
                document[key] = value.decode("utf-8")
            except UnicodeDecodeError:
                binary.append(key)
        if binary:
            raise SelectionError(
                f"mode Json holds text only; not UTF-8: {', '.join(sorted(binary))} "
                "(exclude them in files/keys, or use mode PerKey, which stores them as SecretBinary)"
            )
        body = _canonical_json(document)
        if len(body) > MAX_VALUE_BYTES:
            raise SelectionError(f"the JSON object for {spec.json_secret_name!r} exceeds AWS's 64 KiB secret limit")
        return {spec.json_secret_name: body}

    async def connect(self, spec: AwsSecretsManagerSpec, context: TargetContext) -> AwsSecretsManagerTarget:
        source = credentials_for(context, self.name, spec.endpoint)
        grant = context.grant
        credentials: dict[str, str] = {}
        if grant is not None and grant.store is not None:
            spec, credentials = await _from_store(spec, grant, source)
        elif spec.service_account:
            spec, credentials = await _web_identity(spec, context, source)
        elif spec.credentials is None:
            source.ambient()  # refused for tenants: the grant without a store admits no ambient identity
        else:
            ref = spec.credentials
            arguments = ["aws_access_key_id", "aws_secret_access_key", "aws_session_token"]
            keys = [ref.access_key_id_key, ref.secret_access_key_key, ref.session_token_key]
            arguments, keys = arguments[: 3 if ref.session_token_key else 2], keys[: 3 if ref.session_token_key else 2]
            credentials = dict(zip(arguments, await source.secret_keys(ref.name, keys), strict=True))
        client = await in_thread(_make_client, spec, credentials, context.owner)
        return AwsSecretsManagerTarget(client, spec, context, allow_adopt=source.adopt_allowed())


async def _from_store(
    spec: AwsSecretsManagerSpec, grant: stores.Grant, source: Credentials
) -> tuple[AwsSecretsManagerSpec, dict[str, str]]:
    """The spec with the ClusterTargetStore's connection (region, endpoints, role, externalId) and its scope
    prefix in front of namePrefix (so prune lists only inside the scope), and the store's identity."""
    connection, scope = grant.connection, grant.scope
    assert isinstance(connection, stores.AwsConnection) and scope is not None  # authorize's contract for AWS
    spec = dataclasses.replace(
        spec,
        region=connection.region,
        endpoint=connection.endpoint,
        sts_endpoint=connection.sts_endpoint,
        role_arn=connection.role_arn,
        external_id=connection.external_id,
        name_prefix=scope.prefix + spec.name_prefix,
        credentials=None,
    )
    return spec, await aws_identity.store_identity(connection, source)


async def _web_identity(
    spec: AwsSecretsManagerSpec, context: TargetContext, source: Credentials
) -> tuple[AwsSecretsManagerSpec, dict[str, str]]:
    """Referent identity: a TokenRequest (audience sts.amazonaws.com) for the tenant's own ServiceAccount, which
    must opt in (`vaultbundle.io/token-audiences`) and name its role (`eks.amazonaws.com/role-arn`). The role is
    assumed with AssumeRoleWithWebIdentity: AWS's trust policy decides on the token's namespace and name."""
    role_arn, account = await aws_identity.web_identity_role(context, source, spec.service_account)
    token = await aws_identity.web_identity_token(context, spec.service_account, account)
    return dataclasses.replace(spec, role_arn=role_arn), {WEB_IDENTITY: token}


def _canonical_json(document: Mapping[str, str]) -> bytes:
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


WEB_IDENTITY = "web_identity_token"  # a credentials entry: assume spec.role_arn with this JWT, unsigned


def _make_client(spec: AwsSecretsManagerSpec, credentials: Mapping[str, str], owner: Owner) -> Any:
    try:
        if WEB_IDENTITY in credentials:
            token = credentials[WEB_IDENTITY]
            response = aws_identity.assume_web_identity(spec.region, spec.sts_endpoint, spec.role_arn, token, owner)
            credentials = aws_identity.issued(response)
        elif spec.role_arn:
            response = aws_identity.assume_role(
                spec.region, spec.sts_endpoint, spec.role_arn, spec.external_id, credentials, owner
            )
            credentials = aws_identity.issued(response)
        return aws_identity.client("secretsmanager", spec.region, spec.endpoint, credentials)
    except botocore.exceptions.NoRegionError:
        raise TargetError(
            Reason.INVALID_SPEC, "awsSecretsManager.region is not set and the ambient AWS config names no region"
        ) from None
    except _SDK_ERRORS as exc:
        operation = "AssumeRoleWithWebIdentity" if WEB_IDENTITY in credentials else "AssumeRole"
        raise _target_error(exc, operation if spec.role_arn else "connect", spec.role_arn or None) from None


def _target_error(exc: Exception, operation: str, name: str | None) -> TargetError:
    """An SDK error as a TargetError: reason from the error code; the SDK's message text is never copied."""
    what = f"{operation} {name!r}" if name else operation
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status = _error_code(exc), int((exc.response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
        reason = code_reason(code, _CODE_REASONS) or reason_for_status(status)
        shown = code if any(code in codes for codes in _CODE_REASONS.values()) else f"HTTP {status}"
        return _MESSAGES.error(reason, what, code=shown)  # a server's own code text is never quoted (H4)
    if isinstance(
        exc,
        botocore.exceptions.NoCredentialsError
        | botocore.exceptions.PartialCredentialsError
        | botocore.exceptions.CredentialRetrievalError,
    ):
        return TargetError(
            Reason.AUTH_FAILED,
            f"{what}: no usable AWS credentials ({type(exc).__name__}); check credentialsSecretRef, or the "
            "identity of the ClusterTargetStore (its ambient chain: IRSA, instance profile)",
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return TargetError(Reason.UNAVAILABLE, f"{what}: TLS verification of the AWS endpoint failed")
    if isinstance(exc, botocore.exceptions.HTTPClientError | botocore.exceptions.EndpointConnectionError):
        return TargetError(Reason.UNAVAILABLE, f"{what}: cannot reach the AWS endpoint ({type(exc).__name__})")
    return TargetError(Reason.UNAVAILABLE, f"{what}: AWS SDK error ({type(exc).__name__})")


_T = TypeVar("_T")


def _call(operation: str, name: str | None, function: Callable[..., _T], **kwargs: Any) -> _T:
    with translated(_SDK_ERRORS, lambda exc: _target_error(exc, operation, name)):
        return function(**kwargs)


_XML_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    """The AWS error code. When the body was in the other protocol's format (an XML error for this JSON API, as
    some endpoints and emulators answer authentication failures), botocore leaves the HTTP status as the code
    and the body as the message: then the code is taken from the body's <Code> element. The rest of the
    message text is never used."""
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or "")
    if code.isdigit():
        match = _XML_CODE.search(str(error.get("Message") or ""))
        if match:
            return match.group(1)
    return code


@dataclass
class StoredSecret:
    """What the store holds under one name (tags and value; the value only where we may compare it)."""

    name: str
    arn: str
    tags: dict[str, str]
    deleted: bool
    value: tuple[str, bytes] | None = None  # ("s"|"b", bytes); None: not read or no current version


@dataclass
class StoreState:
    """What plan() read, for apply."""

    remotes: dict[str, StoredSecret] = field(default_factory=dict)  # desired names that exist (or are deleted)
    restore: list[str] = field(default_factory=list)
    retag: list[str] = field(default_factory=list)
    doomed: dict[str, str] = field(default_factory=dict)  # name -> ARN, for prune


def _payload(value: bytes) -> tuple[str, bytes]:
    return ("s", value) if is_utf8(value) else ("b", value)


def _value_argument(value: bytes) -> dict[str, Any]:
    kind, raw = _payload(value)
    return {"SecretString": raw.decode("utf-8")} if kind == "s" else {"SecretBinary": raw}


class AwsSecretsManagerTarget(ThreadedTarget[StoreState]):
    def __init__(
        self, client: Any, spec: AwsSecretsManagerSpec, context: TargetContext, *, allow_adopt: bool = False
    ) -> None:
        self.client, self.spec, self.owner = client, spec, context.owner
        self.allow_adopt = allow_adopt
        self.written = WrittenNames(context.previous, client.meta.region_name)

    def describe(self) -> str:
        region = self.client.meta.region_name
        if self.spec.mode == "Json":
            return f"AWS secret {self.spec.json_secret_name} ({region})"
        return f"AWS Secrets Manager {region}" + (f" under {self.spec.name_prefix}" if self.spec.name_prefix else "")

    def status_extra(self) -> dict[str, Any]:
        return self.written.status()

    def _tags(self) -> dict[str, str]:
        return {**self.spec.tags, MANAGED_BY_KEY: MANAGED_BY_VALUE, OWNER_TAG: self.owner.ref}

    def _same(self, current: tuple[str, bytes] | None, desired: bytes) -> bool:
        if current is None:
            return False
        if self.spec.mode == "Json":  # same object, whatever the formatting (an adopted secret keeps its version)
            try:
                return current[0] == "s" and json.loads(current[1]) == json.loads(desired)
            except ValueError:
                return False
        return current == _payload(desired)

    # --- reading (plan) ---------------------------------------------------------------------------------
    def _read(self, name: str) -> StoredSecret | None:
        try:
            found = self.client.describe_secret(SecretId=name)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None
            raise _target_error(exc, "DescribeSecret", name) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _target_error(exc, "DescribeSecret", name) from None
        if found.get("Name") != name:  # `name-abcdef` resolved as a partial ARN of another secret: not ours
            return None
        tags = {t["Key"]: t.get("Value", "") for t in found.get("Tags") or []}
        remote = StoredSecret(name, found["ARN"], tags, deleted=found.get("DeletedDate") is not None)
        if not remote.deleted and tags.get(OWNER_TAG) == self.owner.ref:  # never the value of one not ours
            remote.value = self._current_value(remote)
        return remote

    def _current_value(self, remote: StoredSecret) -> tuple[str, bytes] | None:
        try:
            got = self.client.get_secret_value(SecretId=remote.arn)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":  # no AWSCURRENT version yet
                return None
            raise _target_error(exc, "GetSecretValue", remote.name) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise _target_error(exc, "GetSecretValue", remote.name) from None
        if "SecretString" in got:
            return ("s", got["SecretString"].encode("utf-8"))
        return ("b", bytes(got.get("SecretBinary") or b""))

    def _owned_elsewhere(self) -> dict[str, str]:
        """Active secrets with our owner tag under namePrefix (name -> ARN): the prune candidates."""
        filters = [{"Key": "tag-key", "Values": [OWNER_TAG]}, {"Key": "tag-value", "Values": [self.owner.ref]}]
        if self.spec.name_prefix:
            filters.append({"Key": "name", "Values": [self.spec.name_prefix]})
        found: dict[str, str] = {}
        try:
            for page in self.client.get_paginator("list_secrets").paginate(Filters=filters):
                for entry in page.get("SecretList") or []:
                    tags = {t["Key"]: t.get("Value", "") for t in entry.get("Tags") or []}
                    name = entry.get("Name", "")
                    if (
                        tags.get(OWNER_TAG) == self.owner.ref
                        and name.startswith(self.spec.name_prefix)
                        and entry.get("DeletedDate") is None
                    ):
                        found[name] = entry["ARN"]
        except _SDK_ERRORS as exc:
            raise _target_error(exc, "ListSecrets", None) from None
        return found

    def _plan(self, desired: Mapping[str, bytes]) -> Plan[StoreState]:
        plan, state = Plan[StoreState](), StoreState()
        claimed = claim_tagged(
            self._read,
            desired,
            owner_tag=OWNER_TAG,
            me=self.owner.ref,
            adopt=self.spec.adopt,
            where=self.describe(),
            deleted_note="scheduled for deletion",
            adopt_tag=ADOPT_ANNOTATION,
            token=adopt_token(self.owner),
            allow_adopt=self.allow_adopt,
        )
        plan.create, state.remotes = claimed.missing, claimed.held
        for name, remote in state.remotes.items():
            if remote.tags.get(OWNER_TAG):
                self.written.add(name)
            if remote.deleted:  # ours (or adopted): restore, then write the value if it differs
                plan.create.append(name)
                state.restore.append(name)
                continue
            if self._same(remote.value, desired[name]):
                plan.unchanged += 1
            else:
                plan.update.append(name)
            if any(remote.tags.get(k) != v for k, v in self._tags().items()):
                state.retag.append(name)
        plan.create.sort()
        if self.spec.prune and self.spec.mode == "PerKey":
            ours = self._owned_elsewhere()
            state.doomed = {n: ours[n] for n in self.written.prune_candidates(set(ours), set(desired))}
            plan.delete = sorted(state.doomed)
        plan.metadata = bool(state.retag)
        plan.state = state
        return plan

    # --- writing (apply) --------------------------------------------------------------------------------
    def _apply(self, plan: Plan[StoreState], desired: Mapping[str, bytes]) -> None:
        state = plan.state or StoreState()
        tags = self._tags()
        tag_list = [{"Key": k, "Value": v} for k, v in sorted(tags.items())]
        kms = {"KmsKeyId": self.spec.kms_key_id} if self.spec.kms_key_id else {}
        for name in plan.create:
            if name in state.restore:
                remote = state.remotes[name]
                _call("RestoreSecret", name, self.client.restore_secret, SecretId=remote.arn)
                if any(remote.tags.get(k) != v for k, v in tags.items()):
                    _call("TagResource", name, self.client.tag_resource, SecretId=remote.arn, Tags=tag_list)
                if not self._same(self._current_value(remote), desired[name]):
                    self._write_value(remote.arn, name, desired[name], kms)
                self.written.add(name)
                continue
            _call(
                "CreateSecret",
                name,
                self.client.create_secret,
                Name=name,
                Tags=tag_list,
                **kms,
                **_value_argument(desired[name]),
            )
            self.written.add(name)
        for name in plan.update:
            self._write_value(state.remotes[name].arn, name, desired[name], kms)
        for name in state.retag:
            remote = state.remotes[name]
            changed = [{"Key": k, "Value": v} for k, v in sorted(tags.items()) if remote.tags.get(k) != v]
            _call("TagResource", name, self.client.tag_resource, SecretId=remote.arn, Tags=changed)
            self.written.add(name)
        for name in plan.delete:
            window: dict[str, Any] = (
                {"ForceDeleteWithoutRecovery": True}
                if self.spec.force_delete_without_recovery
                else {"RecoveryWindowInDays": self.spec.recovery_window_days}
            )
            _call("DeleteSecret", name, self.client.delete_secret, SecretId=state.doomed[name], **window)
            self.written.discard(name)

    def _write_value(self, arn: str, name: str, value: bytes, kms: Mapping[str, str]) -> None:
        """One new version (AWSCURRENT). With kmsKeyId, UpdateSecret also moves the secret to that key."""
        if kms:
            _call("UpdateSecret", name, self.client.update_secret, SecretId=arn, **kms, **_value_argument(value))
        else:
            _call("PutSecretValue", name, self.client.put_secret_value, SecretId=arn, **_value_argument(value))


KIND = AwsSecretsManagerKind()
