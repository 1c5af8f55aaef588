"""Local file I/O for the CLI: secret input files, vault folders, and safe output (no half-written state)."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigMissingError, VaultFolderError
from .vault import MAX_ENTRIES, MAX_TOTAL_BYTES, safe_relative_path


def read_secret_file(path: str | os.PathLike[str], what: str) -> str:
    """Read a config or passphrase file as vsync does: UTF-8, trailing CR/LF/tab/space removed.

    A missing, unreadable or world-writable file is ConfigMissingError; a group/world-readable one warns.
    """
    try:
        info = os.stat(path)
        if info.st_mode & stat.S_IWOTH:
            raise ConfigMissingError(
                f"{what} file {os.fspath(path)!r} is world-writable; refusing to use it",
                hint=f"chmod 600 {os.fspath(path)}",
            )
        if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            print(
                f"warning: {what} file {os.fspath(path)!r} is readable by group/others (chmod 600 it)", file=sys.stderr
            )
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigMissingError(f"{what} file {os.fspath(path)!r} does not exist") from None
    except OSError as exc:
        raise ConfigMissingError(f"{what} file {os.fspath(path)!r} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8").rstrip("\r\n\t ")
    except UnicodeDecodeError:
        raise ConfigMissingError(f"{what} file {os.fspath(path)!r} is not UTF-8") from None
    if not text:
        raise ConfigMissingError(f"{what} file {os.fspath(path)!r} is empty")
    return text


def read_vault_folder(root: str | os.PathLike[str]) -> dict[str, bytes]:
    """Every regular file under *root* by POSIX relative path. Symlinks anywhere are refused (like vsync)."""
    base = Path(root)
    if not base.is_dir() or base.is_symlink():
        raise VaultFolderError(f"{os.fspath(root)!r} is not a directory")
    files: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(base):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(base).as_posix()
            if path.is_symlink():
                raise VaultFolderError(f"{rel!r} is a symlink; symlinks are not allowed in a vault folder")
            if name in filenames:
                if not path.is_file():
                    raise VaultFolderError(f"{rel!r} is not a regular file")
                files[safe_relative_path(rel)] = path.read_bytes()
                total += len(files[rel])
        if len(files) > MAX_ENTRIES or total > MAX_TOTAL_BYTES:
            raise VaultFolderError(f"vault folder exceeds {MAX_ENTRIES} files or {MAX_TOTAL_BYTES} bytes")
    return files


def write_files(root: str | os.PathLike[str], files: Mapping[str, bytes]) -> None:
    """Write files under *root* (mode 0600, dirs 0700), each atomically (temp file + rename).

    All paths are validated before the first write, so bad input writes nothing.
    """
    base = Path(root)
    targets = {safe_relative_path(name): body for name, body in files.items()}
    for rel in targets:
        for parent in Path(rel).parents:
            if parent != Path(".") and (base / parent).is_symlink():
                raise VaultFolderError(f"{(base / parent)!s} is a symlink; refusing to write through it")
    for rel, body in targets.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".vaultbundle-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_secret_file(path: str | os.PathLike[str], text: str) -> None:
    target = Path(path)
    write_files(target.parent, {target.name: text.encode("utf-8") + b"\n"})
