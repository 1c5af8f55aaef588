"""The decrypted vault: key/values and files, and its two wire shapes (pure, no file-system I/O).

* CLI layout: a ZIP of the vault folder; key/values come from its `.env.<env>` file and every other entry is
  a file (path relative to the vault folder). The vault folder is the one holding the env file, whatever
  directory entries the ZIP carries (`_vault_root`); a file outside it is refused.
* Runtime layout: a JSON object, structured `{"kv": {...}, "assets": {name: base64}}` or flat `{name: value}`.

Untrusted input is bounded (entry count, total size, compression ratio) and unsafe paths are refused. A vault
has at most `MAX_KEYS` keys and files together, each named in at most `MAX_NAME_BYTES` bytes of UTF-8: every
target works per key in Python, so the count bounds the time and memory of a cycle, and no store accepts names
anywhere near that long.

The runtime layout's JSON is read pair by pair with `json`'s own scanner (`_JsonReader`) rather than with one
`json.loads`: one C call over a 64 MiB document holds the GIL for ~0.5 s (stalling the operator's event loop
even from a worker thread) and builds every key before any count can be checked (~5x the bundle in memory for
millions of tiny keys). Pair by pair, the parse stops at the first key past the limit, each scanner call covers
one key or value, and a JSON string is at most `MAX_JSON_STRING_BYTES` long (a 3 MiB asset in base64; larger
files belong in the CLI layout, whose ZIP is inflated without the GIL).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import posixpath
import re
import stat
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import envfile
from .errors import BundleFormatError

MAX_ENTRIES = 10_000
MAX_TOTAL_BYTES = 64 * 1024 * 1024
MAX_RATIO = 200  # uncompressed / compressed per entry, beyond which an entry is treated as a zip bomb
MAX_KEYS = 10_000  # key/values and files of one vault together
MAX_NAME_BYTES = 1024  # UTF-8 bytes of one key or file name
MAX_JSON_STRING_BYTES = 4 * 1024 * 1024  # one key or value as written in a runtime-layout JSON document


@dataclass(frozen=True)
class Vault:
    """Key/values and files of one bundle. The repr names keys and files, never values."""

    kv: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    env_file: str | None = None  # the ZIP entry the key/values came from (CLI layout)
    env_source: bytes = field(default=b"", repr=False)  # that entry's bytes, verbatim

    def __post_init__(self) -> None:
        object.__setattr__(self, "kv", MappingProxyType(dict(self.kv)))
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def __repr__(self) -> str:
        return f"Vault(keys={sorted(self.kv)}, files={sorted(self.files)})"

    def folder_files(self) -> dict[str, bytes]:
        """The vault folder as it was sealed: the env file verbatim (or a rendered `.env`) plus the files."""
        if self.env_file is not None:
            return {self.env_file: self.env_source, **self.files}
        rendered = {".env": envfile.render(self.kv).encode("utf-8")} if self.kv else {}
        return {**rendered, **self.files}


def safe_relative_path(name: str) -> str:
    """Normalise a stored path; refuse absolute paths, `..`, backslashes, NUL and empty names."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BundleFormatError(f"unsafe path in bundle: {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if not parts or any(part == ".." for part in parts):
        raise BundleFormatError(f"unsafe path in bundle: {name!r}")
    return "/".join(parts)


_ENV_FILE_NAME = re.compile(r"\.env(\..+)?")


def _vault_root(names: Sequence[str], env: str | None, env_file: str | None) -> str:
    """The vault folder inside the ZIP, from its file entries only. Directory entries never count: zip tools
    differ in which parents they write (vsync's `zip -r` writes none above the vault folder, others write all).

    It is the folder holding the env file (*env_file*, else `.env.<env>`), else the folder of the `.env` /
    `.env.*` file nearest the top, else (none, or the nearest ones in different folders) the common folder of
    all files."""
    wanted = env_file or (f".env.{env.lower()}" if env else None)
    if wanted:
        folder = _nearest_folder({n: n[: -len(wanted)] for n in names if n == wanted or n.endswith("/" + wanted)})
        if folder is not None:
            return folder
    env_files = [name for name in names if _ENV_FILE_NAME.fullmatch(posixpath.basename(name))]
    folder = _nearest_folder({name: posixpath.dirname(name) for name in env_files})
    if folder is not None:
        return folder
    split = [posixpath.dirname(name).split("/") if "/" in name else [] for name in names]
    common: list[str] = []
    for parts in zip(*split, strict=False):
        if any(part != parts[0] for part in parts):
            break
        common.append(parts[0])
    return "/".join(common)


def _nearest_folder(found: Mapping[str, str]) -> str | None:
    """The folder of the shallowest entries of *found* (entry -> its folder), when they all sit in one folder."""
    if not found:
        return None
    depth = min(name.count("/") for name in found)
    folders = {folder.rstrip("/") for name, folder in found.items() if name.count("/") == depth}
    return folders.pop() if len(folders) == 1 else None


def _choose_env_file(files: Mapping[str, bytes], env: str | None, env_file: str | None) -> str | None:
    if env_file is not None:
        if env_file not in files:
            raise BundleFormatError(
                f"the bundle has no file {env_file!r}; it has: {', '.join(sorted(files)) or 'none'}"
            )
        return env_file
    candidates = sorted(name for name in files if "/" not in name and (name == ".env" or name.startswith(".env.")))
    if env:
        wanted = f".env.{env.lower()}"
        if wanted in files:
            return wanted
        others = [name for name in candidates if name.startswith(".env.")]
        if others:  # a bundle sealed for another environment (e.g. staging's, swapped into prod's prefix)
            raise BundleFormatError(
                f"the bundle has {', '.join(others)} but no {wanted}: it was sealed for another environment "
                "(set envFile to read a different file on purpose)"
            )
    return candidates[0] if len(candidates) == 1 else None


def from_zip(data: bytes, *, env: str | None = None, env_file: str | None = None) -> Vault:
    """Read a vsync CLI-layout ZIP. The env file is *env_file*, else `.env.<env>`, else the only `.env*`; names
    are relative to the folder holding it (`_vault_root`)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError):
        # NotImplementedError: a ZIP version or feature zipfile does not support (found by fuzzing)
        raise BundleFormatError("bundle payload is not a valid ZIP archive") from None
    if len(infos) > MAX_ENTRIES:
        raise BundleFormatError(f"bundle has {len(infos)} entries; the limit is {MAX_ENTRIES}")
    if sum(info.file_size for info in infos) > MAX_TOTAL_BYTES:
        raise BundleFormatError(f"bundle expands beyond {MAX_TOTAL_BYTES} bytes")
    contents: dict[str, bytes] = {}
    total = 0
    for info in infos:
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise BundleFormatError(f"bundle entry {info.filename!r} is a symlink; symlinks are refused")
        if info.flag_bits & 0x1:
            raise BundleFormatError(f"bundle entry {info.filename!r} is encrypted inside the ZIP")
        name = safe_relative_path(info.filename)
        if info.is_dir():
            continue
        if name in contents:
            raise BundleFormatError(f"bundle has two entries named {name!r}")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1) + 1024:
            raise BundleFormatError(f"bundle entry {name!r} has an implausible compression ratio")
        try:
            with archive.open(info) as handle:
                body = handle.read(info.file_size + 1)
        except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError, ValueError, RuntimeError):
            raise BundleFormatError(f"bundle entry {name!r} cannot be read (corrupt or unsupported ZIP)") from None
        if len(body) != info.file_size:
            raise BundleFormatError(f"bundle entry {name!r} does not match its declared size")
        total += len(body)
        if total > MAX_TOTAL_BYTES:
            raise BundleFormatError(f"bundle expands beyond {MAX_TOTAL_BYTES} bytes")
        contents[name] = body
    root = _vault_root(list(contents), env, env_file)
    outside = sorted(name for name in contents if root and not name.startswith(root + "/"))
    if outside:
        raise BundleFormatError(
            f"bundle entries {', '.join(repr(n) for n in outside[:5])} lie outside the vault folder {root!r} "
            "(the folder holding the env file); re-push the vault folder alone"
        )
    cut = len(root) + 1 if root else 0
    files = {name[cut:]: body for name, body in contents.items()}
    chosen = _choose_env_file(files, env, env_file)
    if chosen is None:
        return _checked(Vault(files=files))
    source = files.pop(chosen)
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError:
        raise BundleFormatError(f"{chosen} is not UTF-8 text") from None
    kv: dict[str, str] = {}
    for key, value in envfile.iter_pairs(text):
        kv[key] = value
        if len(kv) + len(files) > MAX_KEYS:
            raise _too_many_keys()
    return _checked(Vault(kv=kv, files=files, env_file=chosen, env_source=source))


def _too_many_keys() -> BundleFormatError:
    return BundleFormatError(
        f"the bundle has more than {MAX_KEYS} keys and files; the limit is {MAX_KEYS} (split it into several bundles)"
    )


def _checked(vault: Vault) -> Vault:
    """Refuse a vault past the key-count or name-length limits (the error names the limit and the name)."""
    if len(vault.kv) + len(vault.files) > MAX_KEYS:
        raise _too_many_keys()
    for name in (*vault.kv, *vault.files):
        if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise BundleFormatError(
                f"the bundle has a name of more than {MAX_NAME_BYTES} bytes (starting {name[:40]!r}); "
                f"the limit is {MAX_NAME_BYTES} bytes"
            )
    return vault


def to_zip(members: Mapping[str, bytes], *, folder: str) -> bytes:
    """Build a ZIP like `zip -r` of the vault folder: entries carry *folder* as their path prefix."""
    folder = safe_relative_path(folder)
    dirs: set[str] = {folder}
    for name in members:
        safe_relative_path(name)
        parent = posixpath.dirname(name)
        while parent:
            dirs.add(f"{folder}/{parent}")
            parent = posixpath.dirname(parent)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for directory in sorted(dirs):
            info = zipfile.ZipInfo(directory + "/", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFDIR | 0o755) << 16
            archive.writestr(info, b"")
        for name, body in sorted(members.items()):
            info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFREG | 0o600) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, body)
    return buffer.getvalue()


def from_json(data: bytes) -> Vault:
    """Read a runtime-layout JSON vault (structured or flat), exactly as strict as vsync's Go reader."""
    try:
        document = _JsonReader(data).document()
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, StopIteration):
        raise BundleFormatError("runtime bundle is not UTF-8 JSON") from None
    return vault_from_document(document)


def vault_from_document(document: Any) -> Vault:
    """The runtime layout's shape rules over a parsed JSON document."""
    if not isinstance(document, dict):
        raise BundleFormatError("runtime bundle is not a JSON object")
    if "kv" in document or "assets" in document:
        kv_raw, assets_raw = document.get("kv"), document.get("assets")
        kv_raw, assets_raw = {} if kv_raw is None else kv_raw, {} if assets_raw is None else assets_raw
    else:
        kv_raw, assets_raw = document, {}
    if not isinstance(kv_raw, dict) or not isinstance(assets_raw, dict):
        raise BundleFormatError("runtime bundle 'kv' and 'assets' must be objects")
    bad = sorted(name for name, value in kv_raw.items() if not isinstance(value, str))
    if bad:
        raise BundleFormatError(f"runtime bundle values must be strings; not so for: {', '.join(bad)}")
    files: dict[str, bytes] = {}
    for name, value in assets_raw.items():
        if not isinstance(value, str):
            raise BundleFormatError(f"asset {name!r} must be a base64 string")
        try:
            files[name] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise BundleFormatError(f"asset {name!r} is not standard padded base64") from None
    return _checked(Vault(kv=kv_raw, files=files))


_WHITESPACE = re.compile(rb"[ \t\n\r]*")
_SCANNER = json.JSONDecoder()  # strict, exactly as json.loads


class _JsonReader:
    """A UTF-8 JSON document whose top level is an object of strings, nulls or objects of strings, read one pair
    at a time straight from the bytes; anything else is refused where it starts (other shapes are not vaults).

    Each key or value is decoded (strict UTF-8) and scanned on its own, so no step holds the GIL for long and
    the document never exists as one 64 MiB `str`. Outside strings only ASCII is valid JSON, so splitting at
    unescaped `"` bytes is exact (UTF-8 continuation bytes are never `"` or `\\`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pairs = 0

    def document(self) -> Any:
        start = self._skip(0)
        if self.data[start : start + 1] != b"{":
            raise BundleFormatError("runtime bundle is not a JSON object")
        result, end = self._object(start, nested=False)
        if self._skip(end) != len(self.data):
            raise StopIteration(end)  # extra data after the object
        return result

    def _skip(self, index: int) -> int:
        match = _WHITESPACE.match(self.data, index)
        return match.end() if match else index

    def _string(self, index: int) -> tuple[str, int]:
        if self.data[index : index + 1] != b'"':
            raise StopIteration(index)
        end = self._string_end(index)
        token = self.data[index:end].decode("utf-8")
        value, after = _SCANNER.scan_once(token, 0)  # type: ignore[attr-defined]
        if after != len(token):
            raise StopIteration(index)
        return str(value), end

    def _string_end(self, index: int) -> int:
        """Where the string token at *index* ends, looking no further than the length limit."""
        window = index + MAX_JSON_STRING_BYTES + 2
        quote = index
        while True:
            quote = self.data.find(b'"', quote + 1, window)
            if quote < 0:
                if window <= len(self.data):
                    raise BundleFormatError(
                        f"runtime bundle has a key or value longer than {MAX_JSON_STRING_BYTES} bytes "
                        "(the limit; put large files in the CLI layout)"
                    )
                raise StopIteration(index)  # unterminated
            before = quote - 1
            while before > index and self.data[before] == 0x5C:  # backslash
                before -= 1
            if (quote - 1 - before) % 2 == 0:  # an even run of backslashes: this quote is not escaped
                return quote + 1

    def _object(self, start: int, *, nested: bool) -> tuple[dict[str, Any], int]:
        result: dict[str, Any] = {}
        index = self._skip(start + 1)
        if self.data[index : index + 1] == b"}":
            return result, index + 1
        while True:
            key, index = self._string(index)
            index = self._skip(index)
            if self.data[index : index + 1] != b":":
                raise StopIteration(index)
            index = self._skip(index + 1)
            result[key], index = self._value(key, index, nested=nested)
            self.pairs += 1
            if self.pairs > MAX_KEYS + 2:  # + the structured form's "kv" and "assets"
                raise _too_many_keys()
            index = self._skip(index)
            separator = self.data[index : index + 1]
            if separator == b"}":
                return result, index + 1
            if separator != b",":
                raise StopIteration(index)
            index = self._skip(index + 1)

    def _value(self, key: str, index: int, *, nested: bool) -> tuple[Any, int]:
        first = self.data[index : index + 1]
        if first == b'"':
            return self._string(index)
        if not nested and first == b"{":
            return self._object(index, nested=True)
        if not nested and self.data.startswith(b"null", index):
            return None, index + 4
        raise BundleFormatError(f"runtime bundle value of {key[:64]!r} is not a string")


def from_folder_files(files: Mapping[str, bytes], *, env: str | None = None) -> Vault:
    """A runtime-layout vault from a folder: the key/values come from `.env.<env>` when the folder has one
    (vsync's own convention), else from `.env`; every other file is an asset."""
    assets = dict(files)
    wanted = f".env.{env.lower()}" if env else None
    name = wanted if wanted in assets else ".env"
    source = assets.pop(name, b"")
    try:
        kv = envfile.parse(source.decode("utf-8"))
    except UnicodeDecodeError:
        raise BundleFormatError(f"{name} is not UTF-8 text") from None
    return Vault(kv=kv, files=assets)


def to_json(vault: Vault) -> bytes:
    """Write the structured runtime shape (always structured, so keys named kv/assets survive)."""
    document = {
        "kv": dict(vault.kv),
        "assets": {name: base64.b64encode(body).decode("ascii") for name, body in vault.files.items()},
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
