"""`vaultbundle dotsec open | validate`: read dotsec `.sec` files from the command line.

The schema is found as dotsec finds it: `--schema`, else `$DOTSEC_SCHEMA`, else `dotsec.schema` beside the
file. The key is explicit (`--identity-file` or `--kms`): nothing is taken from a path the file names.
Errors exit with their class's code (21-32) and print the contract's class name and a hint on stderr; no
value is printed unless `--json --reveal` asks for it on stdout.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import dotsec as reader
from .errors import (
    ConfigMissingError,
    DotsecError,
    DotsecIdentityInvalidError,
    DotsecParseError,
    DotsecSchemaInvalidError,
    SchemaViolationError,
)
from .localfiles import read_secret_file

F = TypeVar("F", bound=Callable[..., Any])
MAX_FILE_BYTES = 4 << 20  # the reader's own bound is 1 Mi characters; refuse far larger files unread
SCHEMA_BESIDE = "dotsec.schema"


def _typed_errors(fn: F) -> F:
    """Print a DotsecError as `error: <class>: message` + hint and exit with its code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SchemaViolationError as exc:
            for violation in exc.violations:
                click.echo(f"violation: {violation}", err=True)
            _fail(exc)
        except DotsecError as exc:
            _fail(exc)

    return wrapper  # type: ignore[return-value]


def _fail(exc: DotsecError) -> None:
    click.echo(f"error: {exc.error_class} ({type(exc).__name__}): {exc}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    raise SystemExit(exc.exit_code)


def _read_text(path: Path, what: str, error: type[DotsecError]) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise error(f"{what} {str(path)!r} is larger than {MAX_FILE_BYTES} bytes")
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise error(f"{what} {str(path)!r} is not UTF-8") from None
    except OSError as exc:
        raise error(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None


def _schema(sec_file: Path, schema_file: str | None) -> str | None:
    """dotsec's discovery: --schema / $DOTSEC_SCHEMA (must exist), else dotsec.schema beside the file."""
    if schema_file:
        return _read_text(Path(schema_file), "schema file", DotsecSchemaInvalidError)
    beside = sec_file.parent / SCHEMA_BESIDE
    return _read_text(beside, "schema file", DotsecSchemaInvalidError) if beside.is_file() else None


def _key(identity_file: str | None, kms: bool, region: str | None) -> reader.KeyUnwrapper:
    if bool(identity_file) == kms:
        raise click.UsageError("give exactly one of --identity-file F or --kms")
    if region and not kms:
        raise click.UsageError("--region only works together with --kms")
    if kms:
        from .dotsec_kms import KmsUnwrapper  # noqa: PLC0415 - boto3 is imported only when KMS is used

        return KmsUnwrapper(region)
    assert identity_file is not None
    try:
        return reader.AgeIdentity.from_key_file(read_secret_file(identity_file, "identity"))
    except ConfigMissingError as exc:
        raise DotsecIdentityInvalidError(str(exc), hint=exc.hint or None) from None


def _common(fn: F) -> F:
    for option in reversed(
        (
            click.argument("sec_file", type=click.Path(dir_okay=False)),
            click.option(
                "--identity-file", type=click.Path(dir_okay=False), help="age identity file (AGE-SECRET-KEY-1...)."
            ),
            click.option("--kms", is_flag=True, help="Unwrap the DEK with AWS KMS (@provider=aws files)."),
            click.option("--region", help="KMS region (default: the file's @region; AWS_REGION is not used)."),
            click.option(
                "--schema",
                "schema_file",
                envvar="DOTSEC_SCHEMA",
                type=click.Path(dir_okay=False),
                help="dotsec.schema to bind and enforce (default: dotsec.schema beside FILE). Env: DOTSEC_SCHEMA.",
            ),
            click.option(
                "--plaintext",
                type=click.Choice([policy.value for policy in reader.PlaintextPolicy]),
                default="allow",
                show_default=True,
                help="Values that are not ENC[...] are not covered by the MAC: allow, warn about or refuse them.",
            ),
        )
    ):
        fn = option(fn)
    return fn


def _warn(report: reader.Report) -> None:
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)


@click.group()
def dotsec() -> None:
    """Read dotsec `.sec` files (format v3, dotsec 7): verify, decrypt, validate against a schema."""


@dotsec.command(name="open")
@_common
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (never values unless --reveal).")
@click.option("--reveal", is_flag=True, help="With --json: include the values (kv).")
@_typed_errors
def open_command(
    sec_file: str,
    identity_file: str | None,
    kms: bool,
    region: str | None,
    schema_file: str | None,
    plaintext: str,
    as_json: bool,
    reveal: bool,
) -> None:
    """Verify the file MAC, decrypt every value and check the schema. Prints key names (no values)."""
    if reveal and not as_json:
        raise click.UsageError("--reveal only works together with --json")
    key = _key(identity_file, kms, region)
    path = Path(sec_file)
    schema = _schema(path, schema_file)
    text = _read_text(path, ".sec file", DotsecParseError)
    values, report = reader.open(text, key, schema, plaintext=reader.PlaintextPolicy(plaintext))
    _warn(report)
    if as_json:
        summary: dict[str, Any] = {
            "source": "dotsec",
            "layout": None,
            "timestamp": None,
            "generation": None,
            "keys": sorted(values),
            "files": [],
            "provider": report.provider,
            "mac_verified": report.mac_verified,
            "schema_sha256": report.schema_sha256 if schema is not None else None,
            "encrypted_keys": sorted(report.encrypted_keys),
            "plaintext_keys": sorted(report.plaintext_keys),
            "warnings": list(report.warnings),
        }
        if reveal:
            summary["kv"] = dict(values)
        click.echo(json.dumps(summary, ensure_ascii=False))
        return
    bound = f"schema {report.schema_sha256[:12]}" if schema is not None else "no schema"
    click.echo(f"dotsec file {sec_file} ({report.provider}, MAC verified, {bound}): {len(values)} keys")
    for name in report.keys:
        click.echo(f"  key  {name} ({'encrypted' if name in report.encrypted_keys else 'plaintext'})")


@dotsec.command(name="validate")
@_common
@_typed_errors
def validate_command(
    sec_file: str, identity_file: str | None, kms: bool, region: str | None, schema_file: str | None, plaintext: str
) -> None:
    """Check FILE against its schema (exit 32 on violations). Without a key: grammar, header, required and
    unknown keys, inline directives and plaintext values; with --identity-file/--kms: everything, MAC too."""
    path = Path(sec_file)
    keyed = bool(identity_file) or kms
    key = _key(identity_file, kms, region) if keyed else None
    schema = _schema(path, schema_file)
    text = _read_text(path, ".sec file", DotsecParseError)
    if key is not None:
        _, report = reader.open(text, key, schema, plaintext=reader.PlaintextPolicy(plaintext))
    else:
        report = reader.validate_structure(text, schema, plaintext=reader.PlaintextPolicy(plaintext))
    _warn(report)
    unchecked = f"; {len(report.unchecked_keys)} encrypted values not checked (no key)" if report.unchecked_keys else ""
    mac = "MAC verified" if report.mac_verified else "MAC not verified (no key)"
    source = "dotsec.schema" if schema is not None else "inline directives"
    click.echo(f"valid: {len(report.keys)} keys against {source}, {mac}{unchecked}")
