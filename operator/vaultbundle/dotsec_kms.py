"""AWS KMS unwrapping of a dotsec DEK (spec/dotsec-format.md §5.2, §11.3): the one piece of the dotsec
reader that does network I/O, so it lives outside the pure `vaultbundle.dotsec` package.

`Decrypt(CiphertextBlob=dek, EncryptionContext={"dotsec:format": "v3"})` with no KeyId, exactly as dotsec
does (IAM can pin `kms:EncryptionContext:dotsec:format`); only an admin's grant of a single key adds that
KeyId. The region is ours to choose, in this order: the one given (the resource spec, the CLI's --region),
else the file's `@region`; the pod's AWS_REGION never silently overrides it (dotsec's order is the reverse).
The endpoint follows the standard AWS_ENDPOINT_URL_KMS / AWS_ENDPOINT_URL variables. Errors carry the AWS
error code, never an ARN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from .dotsec.keys import check_dek
from .errors import DotsecDekUnwrapFailedError, Reason

ENCRYPTION_CONTEXT = {"dotsec:format": "v3"}
_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "ServiceUnavailable"}
)


KeyCheck = Callable[[str, Any], None]  # (the KeyId Decrypt answered with, the KMS client) -> None or raise


class KmsUnwrapper:
    """A `KeyUnwrapper` for `@provider=aws`. *client_factory* (region -> KMS client) is for tests and for
    callers that bring their own credentials; by default boto3's chain is used. One client per region is
    kept (creating one costs far more than a Decrypt call); boto3 clients are thread-safe.

    An admin's grant (`dotsec_kms_access`) adds *key_id* (sent as Decrypt's KeyId, so KMS itself refuses any
    other key) and *check_key*, called with the response's KeyId before the DEK is used: when it raises, the
    plaintext DEK is dropped unused. When KMS refuses *key_id* (IncorrectKeyException: the file's DEK is under
    another key), *check_key* gets "" and must raise its own refusal."""

    provider = "aws"

    def __init__(
        self,
        region: str | None = None,
        *,
        client_factory: Any = None,
        key_id: str = "",
        check_key: KeyCheck | None = None,
    ) -> None:
        self.region = region
        self._client_factory = client_factory or _default_client
        self._clients: dict[str, Any] = {}
        self._key_id, self._check_key = key_id, check_key

    def __repr__(self) -> str:
        return f"KmsUnwrapper(region={self.region!r})"

    def unwrap(self, wrapped: bytes, *, file_region: str | None = None) -> bytes:
        region = self.region or file_region
        if not region:
            raise DotsecDekUnwrapFailedError("no KMS region: give one (--region) or add @region to the file")
        if region not in self._clients:
            self._clients[region] = self._client_factory(region)
        client = self._clients[region]
        key = {"KeyId": self._key_id} if self._key_id else {}
        try:
            response = client.decrypt(CiphertextBlob=wrapped, EncryptionContext=dict(ENCRYPTION_CONTEXT), **key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code == "IncorrectKeyException" and self._key_id and self._check_key is not None:
                self._check_key("", client)  # KMS refused the one key of the grant: the grant's own refusal
            reason = Reason.DOTSEC_KMS_UNAVAILABLE if code in _TRANSIENT_CODES else None
            raise DotsecDekUnwrapFailedError(f"KMS Decrypt failed in {region}: {code}", reason=reason) from None
        except EndpointConnectionError:
            raise DotsecDekUnwrapFailedError(
                f"KMS endpoint in {region} unreachable", reason=Reason.DOTSEC_KMS_UNAVAILABLE
            ) from None
        except BotoCoreError as exc:
            raise DotsecDekUnwrapFailedError(f"KMS Decrypt failed in {region}: {type(exc).__name__}") from None
        if self._check_key is not None:
            self._check_key(str(response.get("KeyId") or ""), client)  # raises: the DEK is never used
        return check_dek(bytes(response["Plaintext"]), "KMS")


def _default_client(region: str) -> Any:
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10)
    return boto3.session.Session().client("kms", region_name=region, config=config)
