"""`vaultbundle dotsec open | validate` through click's CliRunner and as a real subprocess: the JSON shape
(pull's, with "source": "dotsec"), schema discovery beside the file, exit codes per class, and a leak canary
that must never reach stderr or JSON without --reveal."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.dotsec_writer import schema_sha256, write_sec
from vaultbundle import errors
from vaultbundle.cli import cli

CANARY = "canary-d0t5ec-4b1e"
SCHEMA = "# @encrypt @not-empty\nAPI_TOKEN\n# @type=number @max=65535\nPORT\n"
BODY = f"# @provider=local @default-plaintext\nAPI_TOKEN=<<{CANARY}>>\nPORT=8080\n"  # inline rules: no (schema)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    text, identity, _ = write_sec(BODY, schema_sha256=schema_sha256(SCHEMA))
    paths = {"sec": tmp_path / "app.sec", "key": tmp_path / "app.key", "schema": tmp_path / "dotsec.schema"}
    paths["sec"].write_text(text)
    paths["key"].write_text(f"# created by a test\n{identity}\n")
    paths["key"].chmod(0o600)
    paths["schema"].write_text(SCHEMA)
    return paths


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["dotsec", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_open_json_shape_and_reveal(files: dict[str, Path]) -> None:
    code, out, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary == {
        "source": "dotsec",
        "layout": None,
        "timestamp": None,
        "generation": None,
        "keys": ["API_TOKEN", "PORT"],
        "files": [],
        "provider": "local",
        "mac_verified": True,
        "schema_sha256": schema_sha256(SCHEMA),  # dotsec.schema beside the file was found and bound
        "encrypted_keys": ["API_TOKEN"],
        "plaintext_keys": ["PORT"],
        "warnings": [],
    }
    assert CANARY not in out + err
    code, out, _ = run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--json", "--reveal")
    assert code == 0 and json.loads(out)["kv"] == {"API_TOKEN": CANARY, "PORT": "8080"}


def test_open_text_output_names_keys_only(files: dict[str, Path]) -> None:
    code, out, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]))
    assert code == 0 and "MAC verified" in out and "API_TOKEN (encrypted)" in out and "PORT (plaintext)" in out
    assert CANARY not in out + err and "8080" not in out


def test_usage_errors(files: dict[str, Path]) -> None:
    assert run("open", str(files["sec"]))[0] == 2
    assert run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--kms")[0] == 2
    assert run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--reveal")[0] == 2
    assert run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--region", "x")[0] == 2


def test_schema_is_required_to_verify_and_explicit_schema_wins(files: dict[str, Path], tmp_path: Path) -> None:
    files["schema"].unlink()
    code, out, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]))
    assert code == errors.DotsecMacMismatchError.exit_code == 29
    assert "error: MacMismatch (DotsecMacMismatchError):" in err and "hint:" in err and CANARY not in out + err
    elsewhere = tmp_path / "other.schema"
    elsewhere.write_text(SCHEMA)
    assert run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--schema", str(elsewhere))[0] == 0
    code, _, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--schema", "/nonexistent")
    assert code == errors.DotsecSchemaInvalidError.exit_code and "SchemaInvalid" in err


def test_tampered_file_and_wrong_identity(files: dict[str, Path], tmp_path: Path) -> None:
    text = files["sec"].read_text()
    files["sec"].write_text(text.replace("PORT=8080", "PORTX=8080"))
    code, _, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]))
    assert code == 29 and "MacMismatch" in err
    files["sec"].write_text(text)
    other = tmp_path / "other.key"
    other.write_text(write_sec("A=1\n")[1])
    other.chmod(0o600)
    code, _, err = run("open", str(files["sec"]), "--identity-file", str(other))
    assert code == errors.DotsecDekUnwrapFailedError.exit_code and "DekUnwrapFailed" in err
    code, _, err = run("open", str(files["sec"]), "--identity-file", str(tmp_path / "missing.key"))
    assert code == errors.DotsecIdentityInvalidError.exit_code and "IdentityInvalid" in err


def test_schema_violation_names_key_and_rule_never_the_value(files: dict[str, Path]) -> None:
    files["sec"].write_text(files["sec"].read_text().replace("PORT=8080", "PORT=99999"))  # plaintext: no MAC
    code, out, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--json")
    assert code == errors.SchemaViolationError.exit_code == 32 and out == ""
    assert "violation: PORT: @max=65535: above the maximum" in err and "99999" not in err
    code, _, err = run("validate", str(files["sec"]))
    assert code == 32 and "PORT: @max=65535" in err


def test_validate_with_and_without_a_key(files: dict[str, Path]) -> None:
    code, out, _ = run("validate", str(files["sec"]))
    assert code == 0 and "MAC not verified (no key)" in out and "1 encrypted values not checked" in out
    code, out, _ = run("validate", str(files["sec"]), "--identity-file", str(files["key"]))
    assert code == 0 and "MAC verified" in out and "not checked" not in out


def test_plaintext_policy_option(files: dict[str, Path]) -> None:
    code, _, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--plaintext", "warn")
    assert code == 0 and "warning: PORT: plaintext value(s)" in err
    code, _, err = run("open", str(files["sec"]), "--identity-file", str(files["key"]), "--plaintext", "refuse")
    assert code == errors.DotsecPlaintextRefusedError.exit_code and "PlaintextRefused" in err
    code, _, err = run("validate", str(files["sec"]), "--plaintext", "refuse")  # needs no key
    assert code == errors.DotsecPlaintextRefusedError.exit_code and "PORT" in err


def test_exit_codes_are_distinct_and_clear_of_vsyncs() -> None:
    codes = {
        cls.__name__: cls.exit_code
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.DotsecError) and cls is not errors.DotsecError
    }
    assert len(codes) == 12 and len(set(codes.values())) == len(codes)
    assert all(21 <= code <= 32 for code in codes.values()), codes


def test_subprocess_leak_canary_and_exit_code(files: dict[str, Path]) -> None:
    """The installed entry point, as a user runs it: values only with --json --reveal."""
    command = [sys.executable, "-m", "vaultbundle.cli", "dotsec", "open", str(files["sec"]), "--identity-file"]
    env = {**os.environ, "DOTSEC_SCHEMA": str(files["schema"])}
    quiet = subprocess.run(
        [*command, str(files["key"]), "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert quiet.returncode == 0 and CANARY not in quiet.stdout + quiet.stderr
    shown = subprocess.run(
        [*command, str(files["key"]), "--json", "--reveal"], capture_output=True, text=True, env=env, check=False
    )
    assert json.loads(shown.stdout)["kv"]["API_TOKEN"] == CANARY and CANARY not in shown.stderr
    files["sec"].write_text(files["sec"].read_text().replace("API_TOKEN=", "API_TOKEN2="))
    broken = subprocess.run(
        [*command, str(files["key"]), "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert broken.returncode == 29 and broken.stdout == "" and "MacMismatch" in broken.stderr
    assert CANARY not in broken.stderr


def test_plan_and_sync_exit_with_the_dotsec_class_codes() -> None:
    from vaultbundle.cli import REASON_EXIT_CODES

    assert REASON_EXIT_CODES["DotsecMacMismatch"] == 29 and REASON_EXIT_CODES["SchemaViolation"] == 32
    assert REASON_EXIT_CODES["WrongPassphrase"] == 14 and REASON_EXIT_CODES["KdfLimit"] == 11
