"""Typed errors: one hierarchy, one list of reasons.

Every error vaultbundle raises on purpose is a `VaultBundleError`. Its `reason` (a `Reason`) is what status
conditions, per-target status, Events and metrics show, and `Reason.transient` says whether a failure is worth
retrying soon (capped exponential backoff with jitter) or only when the spec, a source Secret or the bundle
changes (or at the refresh interval). Messages name *what* is wrong, never a secret value.

The `VSyncError` family carries vsync's cross-language names (spec section 12) and a fixed CLI exit code and
hint each; the rest are ours, where we go further than vsync.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Every reason vaultbundle reports (status, Events, metrics). The values are a public contract."""

    # a cycle's outcome
    SYNCED = "Synced"
    VERIFIED = "Verified"
    DRY_RUN = "DryRun"
    SUSPENDED = "Suspended"
    TARGET_FAILED = "TargetFailed"
    # the spec and its source Secrets
    INVALID_SPEC = "InvalidSpec"
    CROSS_NAMESPACE_REFERENCE = "CrossNamespaceReference"
    INVALID_SELECTION = "InvalidSelection"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    SECRET_INVALID = "SecretInvalid"
    POLICY_DENIED = "PolicyDenied"
    # the bundle (vsync's taxonomy and ours)
    CONFIG_MISSING = "ConfigMissing"
    CONFIG_UNSUPPORTED_VERSION = "ConfigUnsupportedVersion"
    KDF_LIMIT = "KdfLimit"
    KEY_DERIVATION_FAILED = "KeyDerivationFailed"
    S3_UNREACHABLE = "S3Unreachable"
    MANIFEST_NOT_FOUND = "ManifestNotFound"
    WRONG_PASSPHRASE = "WrongPassphrase"
    BUNDLE_CORRUPT = "BundleCorrupt"
    BUNDLE_FORMAT = "BundleFormat"
    UNSUPPORTED_SPEC_VERSION = "UnsupportedSpecVersion"
    ROLLBACK_REFUSED = "RollbackRefused"
    LAYOUT_AMBIGUOUS = "LayoutAmbiguous"
    VAULT_FOLDER = "VaultFolder"
    # a target's store
    SECRET_NOT_OWNED = "SecretNotOwned"
    SECRET_DISABLED = "SecretDisabled"
    AUTH_FAILED = "AuthFailed"
    FORBIDDEN = "Forbidden"
    NOT_FOUND = "NotFound"
    REJECTED = "Rejected"
    QUOTA_EXCEEDED = "QuotaExceeded"
    THROTTLED = "Throttled"
    UNAVAILABLE = "Unavailable"
    CONFLICT = "Conflict"
    KV_VERSION_MISMATCH = "KVVersionMismatch"
    INVALID_CA_BUNDLE = "InvalidCABundle"
    INVALID_VAULT_URL = "InvalidVaultURL"
    KMS_ERROR = "KmsError"
    TARGET_KIND_UNAVAILABLE = "TargetKindUnavailable"
    STORE_API_ERROR = "StoreAPIError"
    # ours
    KUBERNETES_API_ERROR = "KubernetesAPIError"
    STATUS_UPDATE_FAILED = "StatusUpdateFailed"
    INTERNAL_ERROR = "InternalError"
    RECONCILE_TIMEOUT = "ReconcileTimeout"

    @property
    def transient(self) -> bool:
        """True when waiting may fix it without anyone changing anything (network, rate limits, races)."""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        Reason.S3_UNREACHABLE,
        Reason.THROTTLED,
        Reason.UNAVAILABLE,
        Reason.CONFLICT,
        Reason.KUBERNETES_API_ERROR,
        Reason.STATUS_UPDATE_FAILED,
        Reason.INTERNAL_ERROR,
        Reason.RECONCILE_TIMEOUT,
    }
)


class VaultBundleError(Exception):
    """Base of every error vaultbundle raises on purpose: a message (names, never values) and a `Reason`."""

    reason: Reason = Reason.INTERNAL_ERROR

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def transient(self) -> bool:
        return self.reason.transient


class TargetError(VaultBundleError):
    """A target cannot be synced; `reason` goes to its status entry. Messages name keys, never values."""

    def __init__(self, reason: Reason | str, message: str) -> None:
        super().__init__(message, reason=Reason(reason))


class SpecError(VaultBundleError, ValueError):
    """The spec is invalid; the message names the field. Permanent until the spec changes."""

    reason = Reason.INVALID_SPEC


class CrossNamespaceError(SpecError):
    """A Secret reference names another namespace: refused (tenant isolation)."""

    reason = Reason.CROSS_NAMESPACE_REFERENCE


class VSyncError(VaultBundleError):
    """Base of the bundle errors, with vsync's names: each has a CLI exit code and a hint."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "reason" not in cls.__dict__:
            cls.reason = Reason(cls.__name__.removesuffix("Error"))


class ConfigMissingError(VSyncError):
    exit_code = 10
    hint = "provide a vsync-cfg-v1: config blob and a passphrase (run `vsync runtime-token` to get a blob)"


class ConfigUnsupportedVersionError(VSyncError):
    exit_code = 11
    hint = "regenerate the config blob with a current `vsync runtime-token`"


class KdfLimitError(ConfigUnsupportedVersionError):
    """The config blob asks for a KDF iteration count outside what this operator accepts.

    A bound of our own (vsync has none): an unbounded count lets one tenant pin the crypto threads for hours."""

    reason = Reason.KDF_LIMIT
    hint = (
        "regenerate the config blob with an iteration count inside the operator's range "
        "(vsync's default is 600000), or ask the admin to change --min/--max-kdf-iterations"
    )


class KeyDerivationFailedError(VSyncError):
    """The crypto library failed while deriving a key (any exception, even a Rust panic); names only its type."""

    reason = Reason.KEY_DERIVATION_FAILED
    hint = "check the salt and iterations in the config blob; report a bug if they look sane"


class S3UnreachableError(VSyncError):
    exit_code = 12
    hint = "check the endpoint, bucket, credentials and network path to the S3 server"


class ManifestNotFoundError(VSyncError):
    exit_code = 13
    hint = "check bucket and prefix; push a bundle first"


class WrongPassphraseError(VSyncError):
    exit_code = 14
    hint = "check the passphrase and the salt/iterations in the config blob; the bundle may also be tampered"


class BundleCorruptError(VSyncError):
    exit_code = 15
    hint = "the stored bundle is damaged or was tampered with; re-push a good bundle"


class UnsupportedSpecVersionError(VSyncError):
    exit_code = 16
    hint = "this bundle was written by a newer format version; upgrade vaultbundle"


class RollbackRefusedError(VSyncError):
    """The bundle is older than one already known good (possible rollback attack)."""

    exit_code = 17
    hint = "if the older bundle is intended, lower the known-good timestamp explicitly"


class LayoutAmbiguousError(VSyncError):
    """Both pointer objects (`latest` and `manifest`) exist under the prefix."""

    exit_code = 18
    hint = "set the layout explicitly (cli or runtime)"


class BundleFormatError(BundleCorruptError):
    """Decrypted content is not a valid vault (bad ZIP, unsafe path, bad JSON, size limit)."""


class VaultFolderError(VSyncError):
    """A local vault folder cannot be sealed (symlink, unreadable, not a directory, bad .env)."""

    exit_code = 19
    hint = "fix the vault folder and try again"


EXIT_OK = 0
EXIT_USAGE = 2
