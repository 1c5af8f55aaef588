"""Typed errors.

The first seven classes carry vsync's cross-language names (spec §12) so callers and tests can match on
them; the rest are ours, where we go further than vsync. Every error has a fixed CLI exit code and a hint
that tells the user what to do. Messages name *what* is wrong, never a secret value.
"""

from __future__ import annotations


class VSyncError(Exception):
    """Base of every error vaultbundle raises on purpose."""

    exit_code = 1
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    @property
    def reason(self) -> str:
        """Stable machine-readable reason (used in status conditions and metrics)."""
        return type(self).__name__.removesuffix("Error")


class ConfigMissingError(VSyncError):
    exit_code = 10
    hint = "provide a vsync-cfg-v1: config blob and a passphrase (run `vsync runtime-token` to get a blob)"


class ConfigUnsupportedVersionError(VSyncError):
    exit_code = 11
    hint = "regenerate the config blob with a current `vsync runtime-token`"


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
