"""`spec.source.dotsec` and `spec.schema` as typed values (pure: no I/O), parsed like the rest of the spec.

    source:
      dotsec:
        configMapRef: {name, key}               # the `.sec` text (GitOps: a configMapGenerator over the file)
        s3: {configSecretRef: {name, key}, key}  # ... or an S3 object under the config blob's bucket and prefix
        identitySecretRef: {name, key}          # the age identity (`@provider=local`)
        kms:                                    # ... or AWS KMS (`@provider=aws`), credentials from exactly one of
          region, endpoint                      #   (with credentialsSecretRef or auth)
          credentialsSecretRef: {name, ...}     #   the tenant's static key, a Secret of the namespace
          auth: {serviceAccountRef: {name}}     #   its ServiceAccount (web identity; + stsEndpoint)
          storeRef: {name}                      #   an admin's ClusterTargetStore of kind awsKms
        plaintext: allow | warn | refuse         # values that are not ENC[...] (the MAC does not cover them)
        pin: <status.dotsec.fileDigest>           # accept this file although it is older than the last applied
    schema:
      configMapRef: {name, key}                  # a dotsec.schema text; for every source kind

Exactly one text source and exactly one key kind. Every reference names an object of the VaultBundle's own
namespace (tenant isolation). KMS never falls back to the operator's own AWS identity: the tenant names a
credentials Secret or a ServiceAccount of its namespace, or a ClusterTargetStore that admits it (`PolicyDenied`
without any); with `storeRef` the region, endpoints and identity are the store's alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import stores
from .dotsec.reader import PlaintextPolicy
from .errors import Reason, SpecError
from .fields import SecretRef, obj, secret_key, secret_object, secret_ref, service_account_ref, string

MAX_OBJECT_KEY = 1024
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
_DIGEST = re.compile(r"hmac-sha256:[0-9a-f]{32}")
DEFAULT_PLAINTEXT = PlaintextPolicy.WARN


@dataclass(frozen=True)
class S3Object:
    """A `.sec` object: `key` below the bucket and prefix of the config blob in `config_ref`."""

    config_ref: SecretRef
    key: str


@dataclass(frozen=True)
class KmsKey:
    """KMS unwrapping, with exactly one way to authenticate: the tenant's own credentials Secret
    (`credentials_secret`, with the keys below), the tenant's ServiceAccount (`service_account`: web identity),
    or an admin's ClusterTargetStore of kind awsKms (`store`: then region and endpoints are the store's)."""

    region: str = ""
    endpoint: str = ""
    credentials_secret: str = ""  # a Secret of the namespace, with the keys below
    access_key_id_key: str = "accessKeyId"
    secret_access_key_key: str = "secretAccessKey"  # noqa: S105 - a Secret data key name, not a secret
    session_token_key: str = ""
    service_account: str = ""  # auth.serviceAccountRef.name
    sts_endpoint: str = ""  # with service_account only
    store: str = ""  # storeRef.name

    @property
    def raw(self) -> dict[str, object]:
        """The fields the store policy looks at (`stores.authorize(KMS, ...)`), in the CRD's names."""
        found: dict[str, object] = {}
        if self.store:
            found["storeRef"] = {"name": self.store}
        if self.credentials_secret:
            found["credentialsSecretRef"] = {"name": self.credentials_secret}
        if self.service_account:
            found["auth"] = {"serviceAccountRef": {"name": self.service_account}}
        return found


@dataclass(frozen=True)
class DotsecSource:
    config_map: SecretRef | None  # a ConfigMap key (SecretRef's shape: name and key)
    s3: S3Object | None
    identity: SecretRef | None
    kms: KmsKey | None
    plaintext: PlaintextPolicy
    pin: str

    @property
    def origin(self) -> str:
        if self.config_map is not None:
            return f"ConfigMap {self.config_map.name!r} key {self.config_map.key!r}"
        assert self.s3 is not None
        return f"S3 object {self.s3.key!r}"


def _object_key(value: Any, path: str) -> str:
    key = string(value, path, required=True)
    if len(key) > MAX_OBJECT_KEY or key.startswith("/") or ".." in key.split("/") or "\x00" in key:
        raise SpecError(f"{path} must be a relative object key (no leading '/', no '..'), at most {MAX_OBJECT_KEY}")
    return key


_KMS_FIELDS = {"region", "endpoint", "stsEndpoint", "credentialsSecretRef", "auth", "storeRef"}


def _url(raw: Mapping[str, Any], name: str, path: str) -> str:
    url = string(raw.get(name), f"{path}.{name}")
    if url and not url.startswith(("https://", "http://")):
        raise SpecError(f"{path}.{name} must be an http(s) URL")
    return url


def _kms(raw: Mapping[str, Any], path: str, namespace: str | None) -> KmsKey:
    unknown = sorted(set(raw) - _KMS_FIELDS)
    if unknown:
        raise SpecError(f"{path}: unknown field(s) {', '.join(unknown)}")
    auth = obj(raw.get("auth"), f"{path}.auth") if raw.get("auth") is not None else {}
    if set(auth) - {"serviceAccountRef"}:
        raise SpecError(f"{path}.auth takes only serviceAccountRef: {{name: <ServiceAccount in this namespace>}}")
    ways = [w for w in ("credentialsSecretRef", "storeRef") if raw.get(w) is not None]
    ways += ["auth.serviceAccountRef"] if auth.get("serviceAccountRef") is not None else []
    if not ways:
        raise SpecError(
            f"{path} needs credentials: the operator's own AWS identity is never lent to a VaultBundle; set "
            "credentialsSecretRef (a Secret of this namespace with accessKeyId and secretAccessKey), "
            "auth.serviceAccountRef (a ServiceAccount of this namespace with an IAM role), or storeRef (a "
            "ClusterTargetStore of kind awsKms your cluster admin lends to this namespace)",
            reason=Reason.POLICY_DENIED,
        )
    if len(ways) > 1:
        raise SpecError(f"{path} takes exactly one of credentialsSecretRef, auth.serviceAccountRef, storeRef")
    if raw.get("storeRef") is not None:
        connection = sorted(f for f in _KMS_FIELDS - {"storeRef"} if raw.get(f) not in (None, ""))
        if connection:
            raise SpecError(
                f"{path}: with storeRef the region, endpoints and identity come from the ClusterTargetStore; "
                f"remove {', '.join(connection)}"
            )
        try:
            store = stores.store_ref(stores.KMS, raw) or ""
        except SpecError:
            raise SpecError(f"{path}.storeRef must be {{name: <ClusterTargetStore>}}") from None
        return KmsKey(store=store)
    region = string(raw.get("region"), f"{path}.region", required=True)
    if not _REGION.fullmatch(region):
        raise SpecError(f"{path}.region must be an AWS region such as eu-west-1, got {region[:32]!r}")
    endpoint, sts_endpoint = _url(raw, "endpoint", path), _url(raw, "stsEndpoint", path)
    if auth:
        name = service_account_ref(auth["serviceAccountRef"], f"{path}.auth.serviceAccountRef")
        return KmsKey(region=region, endpoint=endpoint, service_account=name, sts_endpoint=sts_endpoint)
    if sts_endpoint:
        raise SpecError(f"{path}.stsEndpoint is only used with auth.serviceAccountRef (its AssumeRoleWithWebIdentity)")
    where = f"{path}.credentialsSecretRef"
    body, name = secret_object(raw["credentialsSecretRef"], where, namespace=namespace)
    return KmsKey(
        region=region,
        endpoint=endpoint,
        credentials_secret=name,
        access_key_id_key=secret_key(body.get("accessKeyIdKey"), f"{where}.accessKeyIdKey", default="accessKeyId"),
        secret_access_key_key=secret_key(
            body.get("secretAccessKeyKey"), f"{where}.secretAccessKeyKey", default="secretAccessKey"
        ),
        session_token_key=secret_key(body.get("sessionTokenKey"), f"{where}.sessionTokenKey", default=""),
    )


def parse_dotsec(value: Any, path: str, *, namespace: str | None) -> DotsecSource:
    raw = obj(value, path)
    unknown = sorted(set(raw) - {"configMapRef", "s3", "identitySecretRef", "kms", "plaintext", "pin"})
    if unknown:
        raise SpecError(f"{path}: unknown field(s) {', '.join(unknown)}")
    if (raw.get("configMapRef") is None) == (raw.get("s3") is None):
        raise SpecError(f"{path} needs exactly one of configMapRef (a ConfigMap key) or s3 (an S3 object)")
    if (raw.get("identitySecretRef") is None) == (raw.get("kms") is None):
        raise SpecError(f"{path} needs exactly one of identitySecretRef (an age identity Secret) or kms")
    config_map = s3 = identity = kms = None
    if raw.get("configMapRef") is not None:
        config_map = secret_ref(raw["configMapRef"], f"{path}.configMapRef", ".sec", namespace=namespace)
    else:
        s3_raw = obj(raw["s3"], f"{path}.s3")
        s3 = S3Object(
            secret_ref(s3_raw.get("configSecretRef"), f"{path}.s3.configSecretRef", "config", namespace=namespace),
            _object_key(s3_raw.get("key"), f"{path}.s3.key"),
        )
    if raw.get("identitySecretRef") is not None:
        identity = secret_ref(raw["identitySecretRef"], f"{path}.identitySecretRef", "identity", namespace=namespace)
    else:
        kms = _kms(obj(raw["kms"], f"{path}.kms"), f"{path}.kms", namespace)
    try:
        plaintext = PlaintextPolicy(string(raw.get("plaintext"), f"{path}.plaintext", default=DEFAULT_PLAINTEXT))
    except ValueError:
        raise SpecError(f"{path}.plaintext must be allow, warn or refuse") from None
    pin = string(raw.get("pin"), f"{path}.pin")
    if pin and not _DIGEST.fullmatch(pin):
        raise SpecError(
            f"{path}.pin must be a file digest from status.dotsec.recentFiles (hmac-sha256:<32 hex digits>)"
        )
    return DotsecSource(config_map, s3, identity, kms, plaintext, pin)


def parse_schema_ref(value: Any, path: str, *, namespace: str | None) -> SecretRef | None:
    """`spec.schema.configMapRef`: the ConfigMap key holding a dotsec.schema text, or None."""
    if value is None:
        return None
    raw = obj(value, path)
    unknown = sorted(set(raw) - {"configMapRef"})
    if unknown or raw.get("configMapRef") is None:
        raise SpecError(f"{path} needs configMapRef (a ConfigMap key holding a dotsec.schema text)")
    return secret_ref(raw["configMapRef"], f"{path}.configMapRef", "dotsec.schema", namespace=namespace)
