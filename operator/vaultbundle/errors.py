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
    IDLE = "Idle"  # metrics only: the pointer was unchanged, nothing was done
    APPLIED = "Applied"  # the Event of a target whose content changed
    DRIFT_REPAIRED = "DriftRepaired"  # the Event of a target edited behind our back and put back
    NOT_CHECKED = "NotChecked"  # Verified condition: the cycle stopped before the bundle was looked at
    NOT_ATTEMPTED = "NotAttempted"  # Synced condition: no target was touched
    # the spec and its source Secrets
    INVALID_SPEC = "InvalidSpec"
    CROSS_NAMESPACE_REFERENCE = "CrossNamespaceReference"
    INVALID_SELECTION = "InvalidSelection"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    SECRET_INVALID = "SecretInvalid"
    CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"
    CONFIG_MAP_KEY_NOT_FOUND = "ConfigMapKeyNotFound"
    POLICY_DENIED = "PolicyDenied"
    STORE_INVALID = "StoreInvalid"
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
    BUNDLE_EMPTY = "BundleEmpty"  # a verified bundle with nothing in it, or one that would empty a target
    VAULT_FOLDER = "VaultFolder"
    # a dotsec `.sec` source (spec/dotsec-format.md §10 classes) and schema validation
    DOTSEC_PARSE_ERROR = "DotsecParseError"
    DOTSEC_SCHEMA_INVALID = "DotsecSchemaInvalid"
    DOTSEC_HEADER_MISSING = "DotsecHeaderMissing"
    DOTSEC_HEADER_INVALID = "DotsecHeaderInvalid"
    DOTSEC_UNSUPPORTED_FORMAT = "DotsecUnsupportedFormat"
    DOTSEC_PROVIDER_INVALID = "DotsecProviderInvalid"
    DOTSEC_IDENTITY_INVALID = "DotsecIdentityInvalid"
    DOTSEC_DEK_UNWRAP_FAILED = "DotsecDekUnwrapFailed"
    DOTSEC_KMS_UNAVAILABLE = "DotsecKmsUnavailable"
    DOTSEC_MAC_MISMATCH = "DotsecMacMismatch"
    DOTSEC_VALUE_CORRUPT = "DotsecValueCorrupt"
    DOTSEC_PLAINTEXT_REFUSED = "DotsecPlaintextRefused"
    SCHEMA_VIOLATION = "SchemaViolation"
    SCHEMA_WARNING = "SchemaWarning"  # Event: deprecated or unknown keys (the values still pass the schema)
    DOTSEC_PLAINTEXT = "DotsecPlaintext"  # Event: `plaintext: warn` met values the file MAC does not cover
    SHARE_KEY_TOO_SHORT = "ShareKeyTooShort"
    # a target's store
    SECRET_NOT_OWNED = "SecretNotOwned"
    TYPE_CHANGE_REFUSED = "TypeChangeRefused"  # an adopted Kubernetes Secret is never deleted to change its type
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
    ROLLOUT_RESTARTED = "RolloutRestarted"  # a workload of spec.rolloutRestartTargets was restarted (Event, status)
    ROLLOUT_PENDING = "RolloutPending"  # a restart waits for the end of spec.rolloutMinInterval
    INVALID_OPERATOR_FLAG = "InvalidOperatorFlag"  # `vaultbundle run` cannot start: a flag or its file is unusable

    @property
    def transient(self) -> bool:
        """True when waiting may fix it without anyone changing anything (network, rate limits, races)."""
        return self in _TRANSIENT


_TRANSIENT = frozenset(
    {
        Reason.S3_UNREACHABLE,
        Reason.DOTSEC_KMS_UNAVAILABLE,
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


class PolicyDeniedError(TargetError):
    """A cluster admin's policy (or its absence: the default) forbids what a target asks for. The message says
    what the admin must configure; it never names another tenant."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.POLICY_DENIED, message)


class StoreInvalidError(TargetError):
    """A ClusterTargetStore cannot be used as written; the message names its field. Fixed by the cluster admin,
    so only the targets that use that store fail."""

    def __init__(self, message: str) -> None:
        super().__init__(Reason.STORE_INVALID, message)


class SpecError(VaultBundleError, ValueError):
    """The spec is invalid; the message names the field. Permanent until the spec changes."""

    reason = Reason.INVALID_SPEC


class SourceError(VaultBundleError):
    """A source Secret (config, passphrase, a target's credentials) is missing, empty or unreadable."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message, reason=reason)


class CrossNamespaceError(SpecError):
    """A Secret reference names another namespace: refused (tenant isolation)."""

    reason = Reason.CROSS_NAMESPACE_REFERENCE


EXIT_USAGE = 2  # the CLI's exit code for bad flags or input values (click's own usage errors use it too)


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


class BundleEmptyError(VSyncError):
    """A verified bundle holds no keys and no files, or would remove every key a target holds: refused before
    anything is written (a bundle that suddenly holds nothing is far more often a packaging mistake than intent).
    Ours, not vsync's: its exit code follows the dotsec range."""

    exit_code = 33
    hint = "check what was pushed: the vault folder with its .env.<env> file; --allow-empty accepts it on purpose"


class BundleFormatError(BundleCorruptError):
    """Decrypted content is not a valid vault (bad ZIP, unsafe path, bad JSON, size limit)."""


class VaultFolderError(VSyncError):
    """A local vault folder cannot be sealed (symlink, unreadable, not a directory, bad .env)."""

    exit_code = 19
    hint = "fix the vault folder and try again"


class DotsecError(VaultBundleError):
    """Base of the dotsec `.sec` reader's errors. `error_class` is the contract's §10 name (ParseError,
    MacMismatch, ...), shown on stderr; each class has its own CLI exit code (21-32, after vsync's 10-20)."""

    error_class = "DotsecError"
    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None, reason: Reason | None = None) -> None:
        super().__init__(message, reason=reason)
        if hint is not None:
            self.hint = hint


class DotsecParseError(DotsecError):
    """The `.sec` text does not match the grammar, or breaks a size bound."""

    error_class = "ParseError"
    reason = Reason.DOTSEC_PARSE_ERROR
    exit_code = 21
    hint = "the file is not a dotsec .sec file (or was damaged); the message names the line and column"


class DotsecSchemaInvalidError(DotsecError):
    """The dotsec.schema text does not parse (same grammar, bare keys), or breaks a size bound."""

    error_class = "SchemaInvalid"
    reason = Reason.DOTSEC_SCHEMA_INVALID
    exit_code = 22
    hint = "fix the schema file (bare KEY lines with # @directive lines above them)"


class DotsecHeaderMissingError(DotsecError):
    """No `@dotsec(...)` header before the first entry (always refused: §11 requires it)."""

    error_class = "HeaderMissing"
    reason = Reason.DOTSEC_HEADER_MISSING
    exit_code = 23
    hint = "re-encrypt the file with dotsec (a .sec without its header is unauthenticated)"


class DotsecHeaderInvalidError(DotsecError):
    error_class = "HeaderInvalid"
    reason = Reason.DOTSEC_HEADER_INVALID
    exit_code = 24
    hint = "the @dotsec(format, mac, dek) header is damaged; restore the file from version control"


class DotsecUnsupportedFormatError(DotsecError):
    error_class = "UnsupportedFormat"
    reason = Reason.DOTSEC_UNSUPPORTED_FORMAT
    exit_code = 25
    hint = "only format=v3 (dotsec 7) is understood; upgrade vaultbundle or re-encrypt with dotsec 7"


class DotsecProviderInvalidError(DotsecError):
    error_class = "ProviderInvalid"
    reason = Reason.DOTSEC_PROVIDER_INVALID
    exit_code = 26
    hint = "the file needs @provider=local (age) or @provider=aws (KMS), and the matching key option"


class DotsecIdentityInvalidError(DotsecError):
    error_class = "IdentityInvalid"
    reason = Reason.DOTSEC_IDENTITY_INVALID
    exit_code = 27
    hint = "give an age identity file whose first AGE-SECRET-KEY-1... line is the file's key"


class DotsecDekUnwrapFailedError(DotsecError):
    """age or KMS could not produce the 32-byte DEK (wrong key, tampered dek=, wrong context, KMS down)."""

    error_class = "DekUnwrapFailed"
    reason = Reason.DOTSEC_DEK_UNWRAP_FAILED
    exit_code = 28
    hint = "check that the identity (or KMS key and region) is the one the file was written for"


class DotsecMacMismatchError(DotsecError):
    error_class = "MacMismatch"
    reason = Reason.DOTSEC_MAC_MISMATCH
    exit_code = 29
    hint = (
        "the file (names, order, directives or ciphertext) or its schema changed since dotsec wrote it; "
        "use the exact dotsec.schema it was written with, or restore the file"
    )


class DotsecValueCorruptError(DotsecError):
    error_class = "ValueCorrupt"
    reason = Reason.DOTSEC_VALUE_CORRUPT
    exit_code = 30
    hint = "an ENC[...] value is damaged or was encrypted under another key; restore the file"


class DotsecPlaintextRefusedError(DotsecError):
    """The `plaintext: refuse` policy met a value that is not ENC[...] (unauthenticated by the MAC)."""

    error_class = "PlaintextRefused"
    reason = Reason.DOTSEC_PLAINTEXT_REFUSED
    exit_code = 31
    hint = "encrypt those keys (dotsec set --encrypt) or relax the plaintext policy"


class SchemaViolationError(DotsecError):
    """Values break the schema. The message lists each key and rule, never a value."""

    error_class = "SchemaViolation"
    reason = Reason.SCHEMA_VIOLATION
    exit_code = 32
    hint = "fix the values (or the schema); nothing was written"

    def __init__(self, violations: list[str]) -> None:
        self.violations = tuple(violations)
        super().__init__(f"{len(violations)} schema violation(s): " + "; ".join(violations))


class ShareKeyTooShortError(VSyncError):
    """`share export` of a bundle passphrase shorter than `vsync import` accepts (20 characters)."""

    exit_code = EXIT_USAGE
    hint = (
        "vsync import needs a bundle passphrase (the share's key) of at least 20 characters; vsync's own keys "
        "have 44. Re-seal the bundle under a longer passphrase, then export again"
    )
