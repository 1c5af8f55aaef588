"""`vaultbundle pull/push/inspect/token/share` as a user runs them, against a real S3 API server.

The CLI runs as a subprocess so exit codes and stderr are the real ones. Bundles "written by vsync" are
built here by hand from the spec (spec §7, §14) with `cryptography` directly, independent of our code, and
our pushes are read back the same independent way.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from tests.conftest import VECTORS
from tests.integration.conftest import Bucket

VAULTBUNDLE = [sys.executable, "-m", "vaultbundle.cli"]


def run(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*VAULTBUNDLE, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)
    if ok and result.returncode != 0:
        pytest.fail(f"vaultbundle {args} exited {result.returncode}: {result.stderr}")
    return result


def pull(bucket: Bucket, *extra: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run(
        "pull", "--config-file", bucket.config_file, "--passphrase-file", bucket.passphrase_file, "-q", *extra, ok=ok
    )


def push(bucket: Bucket, layout: str, folder: Path, *extra: str) -> str:
    out = run(
        "push",
        "--config-file",
        bucket.config_file,
        "--passphrase-file",
        bucket.passphrase_file,
        "--layout",
        layout,
        "-q",
        *extra,
        folder,
    ).stdout
    return out.split()[3]  # "pushed <layout> bundle <ts> (...)"


# -- independent vsync model (spec §1, §2, §3, §7.2, §7.3) ------------------------------------------------
def _key(passphrase: str, salt: str) -> bytes:
    return PBKDF2HMAC(hashes.SHA256(), 32, salt.encode(), 600_000).derive(passphrase.encode())


def vsync_push(
    bucket: Bucket, ts: str, entries: dict[str, bytes], *, sealed_ts: str | None = None, parents: bool = False
) -> None:
    """What `vsync push` puts in the bucket: versions/<ts>.enc = RQE1(RQEM0001(ts)+zip -r), then latest.
    *parents*: also directory entries for the vault folder's parents, as many other zip tools write."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if parents:
            archive.writestr("infra/", b"")
            archive.writestr("infra/vault/", b"")
        archive.writestr("infra/vault/prod/", b"")
        for name, body in entries.items():
            archive.writestr(f"infra/vault/prod/{name}", body)
    plaintext = b"RQEM0001" + (sealed_ts or ts).encode() + buffer.getvalue()
    nonce = os.urandom(12)
    blob = b"RQE1" + nonce + AESGCM(_key(bucket.passphrase, bucket.config.salt)).encrypt(nonce, plaintext, None)
    bucket.put(f"{bucket.config.prefix}versions/{ts}.enc", blob)
    bucket.put(f"{bucket.config.prefix}latest", ts.encode())


def vsync_pull(bucket: Bucket) -> dict[str, bytes]:
    """What `vsync pull` does: latest -> versions/<ts>.enc -> decrypt -> embedded ts == pointer -> unzip."""
    ts = bucket.get(f"{bucket.config.prefix}latest").decode().strip()
    blob = bucket.get(f"{bucket.config.prefix}versions/{ts}.enc")
    assert blob[:4] == b"RQE1"
    plaintext = AESGCM(_key(bucket.passphrase, bucket.config.salt)).decrypt(blob[4:16], blob[16:], None)
    assert plaintext[:8] == b"RQEM0001" and plaintext[8:23].decode() == ts
    with zipfile.ZipFile(io.BytesIO(plaintext[23:])) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}


ENV_TEXT = (
    'PLAIN=hello\nUNICODE="grüße 🌍 ünï"\nLOOKS_MULTILINE="line1\\nline2"\nSPACES="  padded  "\n'
    "EMPTY=\n# a comment\nURL=postgres://u:p@db:5432/x?sslmode=require\n"
).encode()
BINARY = bytes(range(256)) * 4


def make_folder(tmp: Path, files: dict[str, bytes]) -> Path:
    folder = tmp / "vault"
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    return folder


EXPECTED_KV = {
    "PLAIN": "hello",
    "UNICODE": "grüße 🌍 ünï",
    "LOOKS_MULTILINE": "line1\\nline2",
    "SPACES": "  padded  ",
    "EMPTY": "",
    "URL": "postgres://u:p@db:5432/x?sslmode=require",
}


def test_cli_layout_written_by_us_read_by_us_and_by_vsync(bucket: Bucket, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {".env.prod": ENV_TEXT, "certs/tls.bin": BINARY})
    ts = push(bucket, "cli", folder)
    assert bucket.keys() == ["acme_web/prod/audit.csv", "acme_web/prod/latest", f"acme_web/prod/versions/{ts}.enc"]
    summary = json.loads(pull(bucket, "--json").stdout)
    assert summary == {
        "layout": "cli",
        "timestamp": ts,
        "generation": 0,
        "keys": sorted(EXPECTED_KV),
        "files": ["certs/tls.bin"],
    }
    revealed = json.loads(pull(bucket, "--json", "--reveal").stdout)
    assert revealed["kv"] == EXPECTED_KV
    assert base64.b64decode(revealed["files_b64"]["certs/tls.bin"]) == BINARY
    assert vsync_pull(bucket) == {"infra/vault/prod/.env.prod": ENV_TEXT, "infra/vault/prod/certs/tls.bin": BINARY}
    out = tmp_path / "out"
    pull(bucket, "--out", out)
    assert (out / ".env.prod").read_bytes() == ENV_TEXT and (out / "certs/tls.bin").read_bytes() == BINARY


def test_cli_layout_written_by_vsync(bucket: Bucket) -> None:
    vsync_push(bucket, "20260429-103045", {".env.prod": b"A=1\nB='two'\n", "sa.json": b'{"k": 1}'})
    revealed = json.loads(pull(bucket, "--json", "--reveal").stdout)
    assert revealed["timestamp"] == "20260429-103045" and revealed["layout"] == "cli"
    assert revealed["kv"] == {"A": "1", "B": "two"}
    assert base64.b64decode(revealed["files_b64"]["sa.json"]) == b'{"k": 1}'


def test_runtime_layout_round_trip_with_assets(bucket: Bucket, tmp_path: Path) -> None:
    assets = {path.stem: path.read_bytes() for path in (VECTORS / "asset-path").glob("*.bin")}
    folder = make_folder(tmp_path, {".env": ENV_TEXT, **assets, "nested/blob.bin": BINARY})
    first = push(bucket, "runtime", folder)
    second = push(bucket, "runtime", folder)
    assert second > first
    assert json.loads(bucket.get("acme_web/prod/latest.meta")) == {"gen": 2}
    assert bucket.get("acme_web/prod/manifest") == b"RQEM0001" + second.encode()
    revealed = json.loads(pull(bucket, "--json", "--reveal").stdout)
    assert (revealed["layout"], revealed["timestamp"], revealed["generation"]) == ("runtime", second, 2)
    assert revealed["kv"] == EXPECTED_KV
    assert {k: base64.b64decode(v) for k, v in revealed["files_b64"].items()} == {**assets, "nested/blob.bin": BINARY}
    out = tmp_path / "out"
    pull(bucket, "--out", out)
    for name, body in {**assets, "nested/blob.bin": BINARY}.items():  # the asset-path vectors: exact bytes, 0600
        assert (out / name).read_bytes() == body
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600
    assert json.loads(pull(bucket, "--json", "--version", first).stdout)["timestamp"] == first


def test_empty_prefix_both_layouts(bucket: Bucket, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {".env.prod": b"A=1\n", ".env": b"A=1\n"})
    for layout, name in (("cli", "latest"), ("runtime", "manifest")):
        bare = bucket.with_prefix("", tmp_path)
        ts = push(bare, layout, folder)
        assert name in bare.keys()
        assert json.loads(pull(bare, "--json", "--layout", layout).stdout)["timestamp"] == ts
    assert "LayoutAmbiguousError" in pull(bare, ok=False).stderr  # both pointers now exist at the same prefix
    assert pull(bare, ok=False).returncode == 18


def test_zip_with_parent_directory_entries_and_empty_bundle(bucket: Bucket, tmp_path: Path) -> None:
    """Parent directory entries do not move the vault folder; a bundle with nothing in it exits 33."""
    vsync_push(bucket, "20260429-103045", {".env.prod": b"A=1\nB=2\n", "certs/ca.pem": b"ca"}, parents=True)
    summary = json.loads(pull(bucket, "--json").stdout)
    assert (summary["keys"], summary["files"]) == (["A", "B"], ["certs/ca.pem"])
    vsync_push(bucket, "20260429-103046", {".env.prod": b"# emptied by mistake\n"}, parents=True)
    out = tmp_path / "out"
    refused = pull(bucket, "--out", out, ok=False)
    assert refused.returncode == 33 and "BundleEmptyError" in refused.stderr and "--allow-empty" in refused.stderr
    assert not out.exists()  # nothing written
    assert json.loads(pull(bucket, "--json", "--allow-empty").stdout)["keys"] == []


def test_pointer_to_missing_object_is_torn_bucket(bucket: Bucket) -> None:
    bucket.put("acme_web/prod/latest", b"20260101-000000")
    result = pull(bucket, ok=False)
    assert result.returncode == 15 and "BundleCorruptError" in result.stderr and "does not exist" in result.stderr


def test_wrong_passphrase(bucket: Bucket, tmp_path: Path) -> None:
    vsync_push(bucket, "20260429-103045", {".env.prod": b"A=1\n"})
    bucket.passphrase_file.write_text("not-the-passphrase")
    result = pull(bucket, ok=False)
    assert result.returncode == 14 and "WrongPassphraseError" in result.stderr and "hint:" in result.stderr


def test_pointer_moved_to_older_bundle_with_other_sealed_ts(bucket: Bucket) -> None:
    """An attacker copies the old bundle under the new name and moves the pointer: the seal gives it away."""
    vsync_push(bucket, "20260501-091500", {".env.prod": b"A=new\n"}, sealed_ts="20260429-103045")
    result = pull(bucket, ok=False)
    assert result.returncode == 15 and "sealed timestamp 20260429-103045" in result.stderr


def test_rollback_refused_before_decrypting(bucket: Bucket) -> None:
    vsync_push(bucket, "20260429-103045", {".env.prod": b"A=old\n"})
    result = pull(bucket, "--not-older-than", "20260501-091500", ok=False)
    assert result.returncode == 17 and "RollbackRefusedError" in result.stderr
    assert pull(bucket, "--not-older-than", "20260429-103045").returncode == 0


def test_taxonomy_scenarios(bucket: Bucket, tmp_path: Path) -> None:
    """The error-taxonomy vectors that name scenarios: manifest-404, unreachable S3, missing config."""
    missing = pull(bucket, "--layout", "runtime", ok=False)
    assert missing.returncode == 13 and "ManifestNotFoundError" in missing.stderr
    assert pull(bucket, ok=False).returncode == 13  # auto: neither pointer exists
    closed = bucket.with_prefix("p/", tmp_path)
    closed.config_file.write_text(_blob_with_endpoint(bucket, "http://127.0.0.1:9"))
    unreachable = pull(closed, ok=False)
    assert unreachable.returncode == 12 and "S3UnreachableError" in unreachable.stderr
    forbidden = bucket.with_prefix("p/", tmp_path)
    forbidden.config_file.write_text(
        _blob_with_endpoint(bucket, bucket.config.endpoint, bucket_name="no-such-bucket-x")
    )
    assert pull(forbidden, ok=False).returncode == 12
    result = run("pull", "--config-file", tmp_path / "absent", "--passphrase-file", bucket.passphrase_file, ok=False)
    assert result.returncode == 10 and "ConfigMissingError" in result.stderr
    raw_json = tmp_path / "raw.json"
    raw_json.write_text('{"v":1}')
    assert (
        run("pull", "--config-file", raw_json, "--passphrase-file", bucket.passphrase_file, ok=False).returncode == 10
    )
    v99 = tmp_path / "v99"
    v99.write_bytes((VECTORS / "error-taxonomy" / "config-unsupported-version.bin").read_bytes())
    assert run("pull", "--config-file", v99, "--passphrase-file", bucket.passphrase_file, ok=False).returncode == 11


def _blob_with_endpoint(bucket: Bucket, endpoint: str, *, bucket_name: str | None = None) -> str:
    from vaultbundle.crypto import configblob
    from vaultbundle.crypto.configblob import BootstrapConfig

    fields = {**bucket.config.__dict__, "endpoint": endpoint, "bucket": bucket_name or bucket.name}
    return configblob.encode(BootstrapConfig(**fields))


def test_usage_errors_exit_2(bucket: Bucket) -> None:
    assert pull(bucket, "--reveal", ok=False).returncode == 2
    assert pull(bucket, "--version", "yesterday", ok=False).returncode == 2
    assert run("pull", ok=False).returncode == 2
    assert run("--version").stdout.startswith("vaultbundle, version ")


def test_world_writable_passphrase_file_refused(bucket: Bucket) -> None:
    bucket.passphrase_file.chmod(0o666)
    result = pull(bucket, ok=False)
    assert result.returncode == 10 and "world-writable" in result.stderr


def test_inspect_needs_no_passphrase(bucket: Bucket, tmp_path: Path) -> None:
    vsync_push(bucket, "20260429-103045", {".env.prod": b"A=1\n"})
    vsync_push(bucket, "20260501-091500", {".env.prod": b"A=2\n"})
    bucket.put("acme_web/prod/latest.manifest", b'{"gen":3,"prev_gen":2,"rotated_at":"2026-05-01T00:00:00Z"}')
    report = json.loads(run("inspect", "--config-file", bucket.config_file, "--json").stdout)
    assert report["layout"] == "cli" and report["timestamp"] == "20260501-091500" and report["generation"] == 3
    assert report["versions"] == ["20260429-103045", "20260501-091500"]
    pinned = json.loads(pull(bucket, "--json", "--reveal", "--version", "20260429-103045").stdout)
    assert pinned["kv"] == {"A": "1"}


def test_token_encode_decode(bucket: Bucket, tmp_path: Path) -> None:
    decoded = json.loads(run("token", "decode", "--config-file", bucket.config_file).stdout)
    assert decoded["secretAccessKey"] == "<redacted>" and decoded["bucket"] == bucket.name
    revealed = json.loads(run("token", "decode", "--config-file", bucket.config_file, "--reveal").stdout)
    assert revealed == bucket.config.to_json()
    source = tmp_path / "fields.json"
    source.write_text(json.dumps({k: v for k, v in revealed.items() if k not in ("v", "salt")}))
    blob = run("token", "encode", "--from-json", source).stdout.strip()
    blob_file = tmp_path / "new.cfg"
    blob_file.write_text(blob)
    again = json.loads(run("token", "decode", "--config-file", blob_file, "--reveal").stdout)
    assert len(again["salt"]) == 24 and {**again, "salt": revealed["salt"]} == revealed


def test_share_export_import_then_pull(bucket: Bucket, tmp_path: Path) -> None:
    vsync_push(bucket, "20260429-103045", {".env.prod": b"A=shared\n"})
    share_pass = tmp_path / "share-pass"
    share_pass.write_text("ABCD-EFGH-JKMN")
    share_pass.chmod(0o600)
    share_file = tmp_path / "prod.share"
    run(
        "share",
        "export",
        "--config-file",
        bucket.config_file,
        "--passphrase-file",
        bucket.passphrase_file,
        "--share-passphrase-file",
        share_pass,
        "--out",
        share_file,
    )
    assert share_file.read_bytes()[:4] == b"SLS1"
    cfg, phrase = tmp_path / "imported.cfg", tmp_path / "imported.pass"
    run(
        "share",
        "import",
        share_file,
        "--share-passphrase-file",
        share_pass,
        "--config-out",
        cfg,
        "--passphrase-out",
        phrase,
    )
    assert stat.S_IMODE(phrase.stat().st_mode) == 0o600
    revealed = json.loads(
        run("pull", "--config-file", cfg, "--passphrase-file", phrase, "--json", "--reveal", "-q").stdout
    )
    assert revealed["kv"] == {"A": "shared"}
    share_pass.write_text("WRNG-WRNG-WRNG")
    bad = run(
        "share",
        "import",
        share_file,
        "--share-passphrase-file",
        share_pass,
        "--config-out",
        cfg,
        "--passphrase-out",
        phrase,
        ok=False,
    )
    assert bad.returncode == 14


def test_no_secret_in_any_output(bucket: Bucket, tmp_path: Path) -> None:
    canary = "CANARY-" + hashlib.sha256(os.urandom(8)).hexdigest()[:16]
    folder = make_folder(tmp_path, {".env.prod": f"TOKEN={canary}\n".encode(), "f.txt": canary.encode()})
    push(bucket, "cli", folder)
    outputs = [
        pull(bucket),
        pull(bucket, "--json"),
        run("inspect", "--config-file", bucket.config_file),
        run("token", "decode", "--config-file", bucket.config_file),
    ]
    bucket.passphrase_file.write_text("wrong")
    outputs.append(pull(bucket, ok=False))
    for result in outputs:
        for text in (result.stdout, result.stderr):
            assert canary not in text and bucket.passphrase not in text and bucket.config.secret_access_key not in text
