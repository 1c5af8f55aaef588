"""Every parser of untrusted input, wrapped so that only vaultbundle's typed errors may escape.

Shared by the hypothesis tests (tests/unit/test_fuzz_parsers.py, in the suite) and the atheris harness
(fuzz/run.py, `make fuzz`, long runs). Each target takes raw bytes.
"""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Callable

import pyrage

from vaultbundle import dotsec, envfile, targets, vault
from vaultbundle.bundles import Layout, parse_pointer
from vaultbundle.crypto import configblob, rqe1, rqem, sls1
from vaultbundle.crypto.kdf import DerivedKey
from vaultbundle.dotsec import grammar, header, model, rules
from vaultbundle.errors import DotsecError, SpecError, VSyncError

KEY = DerivedKey(b"k" * 32)
AGE_IDENTITY = dotsec.AgeIdentity(str(pyrage.x25519.Identity.generate()))
EXPECTED: tuple[type[Exception], ...] = (VSyncError, SpecError, DotsecError)


def rqe1_envelope(data: bytes) -> None:
    rqe1.open_envelope(KEY, data)


def rqem_record(data: bytes) -> None:
    rqem.unwrap(data)


def sls1_frame(data: bytes) -> None:
    sls1.split(data)  # everything before the key derivation; the envelope is rqe1_envelope's job


def config_blob(data: bytes) -> None:
    configblob.decode(data.decode("utf-8", errors="replace"))


def pointers(data: bytes) -> None:
    for layout in (Layout.CLI, Layout.RUNTIME):
        with contextlib.suppress(VSyncError):
            parse_pointer(layout, data)


def env_text(data: bytes) -> None:
    for key, value in envfile.parse_pairs(data.decode("utf-8", errors="replace")):
        assert "\n" not in key and "\n" not in value  # vsync has no multi-line values


def json_vault(data: bytes) -> None:
    vault.from_json(data)


def zip_payload(data: bytes) -> None:
    parsed = vault.from_zip(data, env="prod")
    for name in parsed.files:  # whatever passes has a safe relative path
        assert not name.startswith("/") and ".." not in name.split("/") and "\\" not in name


def zip_entries(data: bytes) -> None:
    """Well-formed archives whose entry names and bodies come from the input (traversal, symlink bits)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, chunk in enumerate(data.split(b"\x00")[:8]):
            name = chunk[:40].decode("utf-8", errors="replace") or f"e{index}"
            info = zipfile.ZipInfo(name)
            info.external_attr = (chunk[40] if len(chunk) > 40 else 0o644) << 16
            archive.writestr(info, chunk[41:])
    zip_payload(buffer.getvalue())


def crd_spec(data: bytes) -> None:
    try:
        document = json.loads(data.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        return
    if isinstance(document, dict):
        targets.parse_spec(document, namespace="ns")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def dotsec_sec(data: bytes) -> None:
    """The .sec grammar and model: whatever parses has well-formed keys and a stable result."""
    text = _text(data)
    sec = model.load(text)
    for entry in sec.entries:
        assert grammar._KEY.fullmatch(entry.key), "a key the grammar does not allow"
    assert model.load(text) == sec


def dotsec_header(data: bytes) -> None:
    parsed = header.parse_header(_text(data))
    assert len(parsed.mac) == 32 and parsed.wrapped_dek


def dotsec_schema(data: bytes) -> None:
    """Schema parse, then evaluation of the schema's own key names as values (patterns, numbers, formats)."""
    schema = dotsec.parse_schema(_text(data))
    rules.check((rules.Subject(key, key) for key in schema.rules), schema)


def dotsec_open(data: bytes) -> None:
    """The whole read path (provider, header, age unwrap, MAC, values) on arbitrary text."""
    dotsec.open(_text(data), AGE_IDENTITY)


TARGETS: dict[str, Callable[[bytes], None]] = {
    fn.__name__: fn
    for fn in (
        rqe1_envelope,
        rqem_record,
        sls1_frame,
        config_blob,
        pointers,
        env_text,
        json_vault,
        zip_payload,
        zip_entries,
        crd_spec,
        dotsec_sec,
        dotsec_header,
        dotsec_schema,
        dotsec_open,
    )
}


def run(name: str, data: bytes) -> None:
    """One input; anything but a typed error is a finding."""
    with contextlib.suppress(EXPECTED):
        TARGETS[name](data)
