"""vsync's .env rules (quirks included) and the two vault shapes, including hostile archives."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vaultbundle import envfile, vault
from vaultbundle.errors import BundleFormatError, VaultFolderError


def test_env_rules_and_quirks() -> None:
    text = (
        "# comment\r\n"
        "  A = 1  \n"
        'B="quoted value"\n'
        "C='single'\n"
        "D=\"mismatched'\n"
        "export E=1\n"
        "F=b # not a comment\n"
        "G=first\n"
        "no equals sign\n"
        "  continuation-line\n"
        "G=second\n"
        'H=""\n'
        "I=x=y\n"
        'J="\n'
    )
    assert envfile.parse_pairs(text) == [
        ("A", "1"),
        ("B", "quoted value"),
        ("C", "single"),
        ("D", "\"mismatched'"),
        ("export E", "1"),
        ("F", "b # not a comment"),
        ("G", "first"),
        ("G", "second"),
        ("H", ""),
        ("I", "x=y"),
        ("J", '"'),
    ]
    assert envfile.parse(text)["G"] == "second"


single_line = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]), max_size=40)
keys = st.text(
    st.characters(blacklist_characters="\r\n=#", blacklist_categories=["Cs", "Zs", "Cc"]), min_size=1, max_size=20
)


@given(st.dictionaries(keys.filter(lambda k: k == envfile.js_trim(k)), single_line, max_size=8))
def test_env_render_parse_round_trip(values: dict[str, str]) -> None:
    assert envfile.parse(envfile.render(values)) == values


# What JavaScript's String.prototype.trim() removes (ECMAScript WhiteSpace + LineTerminator), listed by hand
# from the ECMAScript spec and Unicode's Zs category, independently of the module under test.
JS_TRIMMED = {0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F}
JS_TRIMMED |= {0x205F, 0x3000, 0xFEFF}


def test_js_trim_set_matches_ecmascript_for_every_code_point() -> None:
    for code in range(0x110000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:
            continue
        assert (envfile.js_trim(char) == "") is (code in JS_TRIMMED), hex(code)


@pytest.mark.parametrize("code", sorted(JS_TRIMMED - {0x0A}))
def test_env_trims_what_javascript_trims(code: int) -> None:
    c = chr(code)
    assert envfile.parse_pairs(f"{c}KEY{c}={c}value{c}\n") == [("KEY", "value")]


@pytest.mark.parametrize("code", [0x1C, 0x1D, 0x1E, 0x1F, 0x85, 0x180E, 0x200B])
def test_env_keeps_what_javascript_keeps(code: int) -> None:
    """Python's str.strip() removes U+001C-U+001F and U+0085; vsync (JavaScript) keeps them in keys and values."""
    c = chr(code)
    assert envfile.parse_pairs(f"{c}KEY={c}value{c}\n") == [(f"{c}KEY", f"{c}value{c}")]


def test_env_saved_with_a_byte_order_mark() -> None:
    text = (b"\xef\xbb\xbfA=1\r\nB=2\r\n").decode("utf-8")
    assert envfile.parse(text) == {"A": "1", "B": "2"}


def test_env_render_refuses_keys_javascript_would_trim() -> None:
    with pytest.raises(VaultFolderError, match="BOM_KEY"):
        envfile.render({"BOM_KEY\ufeff": "x"})
    assert envfile.parse(envfile.render({"\x1cKEY": "v\x85"})) == {"\x1cKEY": "v\x85"}


def test_env_render_refuses_multiline_by_name_only() -> None:
    with pytest.raises(VaultFolderError) as caught:
        envfile.render({"PEM": "line1\nline2-SECRET"})
    assert "PEM" in str(caught.value) and "SECRET" not in str(caught.value)


def _zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, body)
    return buffer.getvalue()


def test_zip_like_vsync_push() -> None:
    """`zip -r` of infra/vault/prod: full relative names with directory entries; names become folder-relative."""
    data = _zip(
        [
            ("infra/vault/prod/", b"", stat.S_IFDIR | 0o755),
            ("infra/vault/prod/.env.prod", b"DB=postgres://x\nEMPTY=\n", stat.S_IFREG | 0o644),
            ("infra/vault/prod/certs/", b"", stat.S_IFDIR | 0o755),
            ("infra/vault/prod/certs/tls.key", b"\x00\xffkey", stat.S_IFREG | 0o600),
        ]
    )
    parsed = vault.from_zip(data, env="PROD")
    assert dict(parsed.kv) == {"DB": "postgres://x", "EMPTY": ""}
    assert dict(parsed.files) == {"certs/tls.key": b"\x00\xffkey"}
    assert parsed.env_file == ".env.prod"
    assert parsed.folder_files()[".env.prod"] == b"DB=postgres://x\nEMPTY=\n"
    assert "postgres" not in repr(parsed)


def test_zip_round_trip_through_our_writer() -> None:
    files = {".env.dev": b"A=1\n", "a/b/c.bin": bytes(range(256)), "top.txt": "ünï\n".encode()}
    parsed = vault.from_zip(vault.to_zip(files, folder="infra/vault/dev"), env="dev")
    assert parsed.folder_files() == files


@pytest.mark.parametrize(
    "name",
    ["../evil", "/etc/passwd", "a/../../evil", "C:/evil", "a\\..\\evil", "./../x"],
)
def test_zip_path_traversal_refused(name: str) -> None:
    with pytest.raises(BundleFormatError, match="unsafe path"):
        vault.from_zip(_zip([(name, b"x", stat.S_IFREG | 0o644)]))


def test_zip_symlink_refused() -> None:
    with pytest.raises(BundleFormatError, match="symlink"):
        vault.from_zip(_zip([("v/link", b"/etc/passwd", stat.S_IFLNK | 0o777)]))


def test_zip_bomb_refused() -> None:
    with pytest.raises(BundleFormatError, match=r"compression ratio|expands beyond"):
        vault.from_zip(_zip([("v/bomb", b"\0" * 5_000_000, stat.S_IFREG | 0o644)]))


def test_zip_duplicate_and_garbage_refused() -> None:
    with pytest.raises(BundleFormatError, match="two entries"):
        vault.from_zip(_zip([("v/a", b"1", stat.S_IFREG | 0o644), ("v/./a", b"2", stat.S_IFREG | 0o644)]))
    with pytest.raises(BundleFormatError, match="not a valid ZIP"):
        vault.from_zip(b"PK\x03\x04 definitely not a zip")


def test_explicit_env_file_missing_is_named() -> None:
    with pytest.raises(BundleFormatError, match=r"no file '\.env\.staging'"):
        vault.from_zip(vault.to_zip({".env.prod": b"A=1"}, folder="v"), env_file=".env.staging")


def test_json_vault_shapes() -> None:
    structured = vault.from_json(b'{"kv": {"A": "1"}, "assets": {"f.bin": "AAE="}}')
    assert (dict(structured.kv), dict(structured.files)) == ({"A": "1"}, {"f.bin": b"\x00\x01"})
    flat = vault.from_json('{"A": "1", "B": "ü\\n2"}'.encode())
    assert dict(flat.kv) == {"A": "1", "B": "ü\n2"} and not flat.files
    assert dict(vault.from_json(b'{"kv": null, "assets": null}').kv) == {}
    round_trip = vault.from_json(vault.to_json(vault.Vault(kv={"kv": "x", "assets": "y"}, files={"z": b"\xff"})))
    assert dict(round_trip.kv) == {"kv": "x", "assets": "y"} and dict(round_trip.files) == {"z": b"\xff"}


@pytest.mark.parametrize(
    "document",
    [
        b"\xff",
        b"[]",
        b'"x"',
        b'{"A": 1}',
        b'{"kv": []}',
        b'{"assets": {"f": "AA-_"}}',
        b'{"assets": {"f": "AAE"}}',
        b'{"kv": {"A": {"nested": "x"}}}',
        b"[" * 100_000,
    ],
)
def test_json_vault_invalid(document: bytes) -> None:
    with pytest.raises(BundleFormatError):
        vault.from_json(document)


@given(st.binary(max_size=300))
def test_zip_parser_only_raises_typed_errors(data: bytes) -> None:
    try:
        vault.from_zip(data)
    except BundleFormatError:
        pass


def test_bundle_sealed_for_another_env_is_refused() -> None:
    staging = vault.to_zip({".env.staging": b"A=1\n"}, folder="infra/vault/staging")
    with pytest.raises(BundleFormatError, match=r"sealed for another environment"):
        vault.from_zip(staging, env="prod")
    assert dict(vault.from_zip(staging, env="prod", env_file=".env.staging").kv) == {"A": "1"}  # explicit override
    assert dict(vault.from_zip(vault.to_zip({".env": b"A=1\n"}, folder="v"), env="prod").kv) == {"A": "1"}


def test_runtime_folder_key_values_come_from_env_dot_env_first() -> None:
    files = {".env.prod": b"A=prod\n", ".env": b"A=plain\n", "cert.pem": b"PEM"}
    chosen = vault.from_folder_files(files, env="Prod")
    assert dict(chosen.kv) == {"A": "prod"} and sorted(chosen.files) == [".env", "cert.pem"]
    fallback = vault.from_folder_files({".env": b"A=plain\n", "cert.pem": b"PEM"}, env="prod")
    assert dict(fallback.kv) == {"A": "plain"} and sorted(fallback.files) == ["cert.pem"]
