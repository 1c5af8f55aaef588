"""Time to open a dotsec `.sec` file of 100 encrypted entries (age, and AWS KMS when a test bed is up), by
step, next to the vsync numbers measured in the same run: one PBKDF2-600k derivation (what every vsync bundle
open costs at least) and a whole vsync open of a 100-key CLI-layout bundle (AES-GCM, sealed timestamp, ZIP
and .env parse) with the key derived and with it cached. Writes bench/results/dotsec_open.json.

    python -m bench.dotsec_open [--entries 100] [--runs 30]

The file comes from tests/dotsec_writer.py (same MAC rules as dotsec; values padded to 64 bytes like
dotsec's). Figures are medians with min/max over the runs; the machine's load is recorded with them.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from tests.dotsec_writer import schema_sha256, write_sec

from vaultbundle import dotsec
from vaultbundle.crypto import rqe1
from vaultbundle.dotsec import header, mac, model, rules, values
from vaultbundle.dotsec_kms import ENCRYPTION_CONTEXT, KmsUnwrapper

from .run import machine_info
from .stats import Spread, samples_ms, spread

RESULTS = Path(__file__).resolve().parent / "results"
ENV_FILE = Path(__file__).resolve().parent.parent / ".testbed" / "env"


def make_file(
    entries: int, provider: str = "local", *, dek: bytes | None = None, wrapped_dek: bytes | None = None
) -> tuple[str, str, str, bytes]:
    """(text, identity, schema, DEK): *entries* encrypted ~200-byte values, every one with schema rules."""
    body = f"# @provider={provider} @region=us-east-1 @default-plaintext\n" + "".join(
        f"SECRET_{i:03d}=<<{secrets.token_urlsafe(150)}>>\n" for i in range(entries)
    )
    pattern = ' @pattern="^[A-Za-z0-9_-]+$"'
    schema = "".join(f"# @encrypt @min-length=8{pattern if i % 2 else ''}\nSECRET_{i:03d}\n" for i in range(entries))
    text, identity, dek = write_sec(body, dek=dek, wrapped_dek=wrapped_dek, schema_sha256=schema_sha256(schema))
    return text, identity, schema, dek


def _ms(fn: Callable[[], object], runs: int) -> Spread:
    return spread(samples_ms(fn, runs))


def measure_age(entries: int, runs: int) -> dict[str, Any]:
    text, identity, schema, dek = make_file(entries)
    key = dotsec.AgeIdentity(identity)
    parsed_schema = dotsec.parse_schema(schema)
    sec = model.load(text)
    parsed = header.parse_header(sec.header or "")
    subjects = [rules.Subject(e.key, values.decrypt_value(dek, e.key, e.value)) for e in sec.entries]
    steps = {
        "parse_ms": _ms(lambda: model.load(text), runs),
        "schema_parse_ms": _ms(lambda: dotsec.parse_schema(schema), runs),
        "age_unwrap_ms": _ms(lambda: key.unwrap(parsed.wrapped_dek), runs),
        "mac_ms": _ms(lambda: mac.verify(dek, sec, parsed_schema.sha256, parsed.mac, schema_given=True), runs),
        "decrypt_values_ms": _ms(lambda: [values.decrypt_value(dek, e.key, e.value) for e in sec.entries], runs),
        "schema_check_ms": _ms(lambda: rules.check(subjects, parsed_schema), runs),
    }
    return {
        "entries": entries,
        "file_bytes": len(text.encode()),
        "open_ms": _ms(lambda: dotsec.open(text, key, parsed_schema), runs),
        "open_with_schema_text_ms": _ms(lambda: dotsec.open(text, key, schema), runs),
        **steps,
    }


def _testbed_env() -> dict[str, str] | None:
    if not ENV_FILE.exists():
        return None
    env = dict(line.split("=", 1) for line in ENV_FILE.read_text().splitlines() if "=" in line and line[0] != "#")
    return env if "AWS_ENDPOINT_URL" in env else None


def measure_kms(entries: int, runs: int) -> dict[str, Any] | None:
    """The same file re-wrapped under the test bed's moto KMS (a loopback HTTP round trip per open)."""
    env = _testbed_env()
    if env is None:
        return None
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = env[name]
    import boto3  # noqa: PLC0415 - only with a test bed

    client = boto3.client("kms", region_name="us-east-1")
    key_id = client.create_key(Description="dotsec bench")["KeyMetadata"]["KeyId"]
    dek = os.urandom(32)
    blob = client.encrypt(KeyId=key_id, Plaintext=dek, EncryptionContext=ENCRYPTION_CONTEXT)["CiphertextBlob"]
    text, _, schema, _ = make_file(entries, "aws", dek=dek, wrapped_dek=blob)
    unwrapper = KmsUnwrapper()
    started = time.perf_counter()
    dotsec.open(text, unwrapper, schema)  # the first open creates the boto3 client (kept per region)
    first_ms = (time.perf_counter() - started) * 1000
    return {
        "entries": entries,
        "first_open_ms": round(first_ms, 3),
        "open_ms": _ms(lambda: dotsec.open(text, unwrapper, schema), runs),
    }


def measure_vsync(entries: int, runs: int) -> dict[str, Any]:
    """A vsync CLI-layout bundle of *entries* ~200-byte keys: open with the key derived (a cold cache, what a
    new passphrase or a restart costs) and with it cached (what the operator pays for a new bundle)."""
    from vaultbundle import bundles  # noqa: PLC0415
    from vaultbundle.crypto import kdf  # noqa: PLC0415

    salt, passphrase = "NvTGExRJ8+Kn8dwdXrPv0w", "bench passphrase"
    env = "".join(f"SECRET_{i:03d}={secrets.token_urlsafe(150)}\n" for i in range(entries)).encode()
    key = kdf.derive_key(passphrase, salt, 600_000)
    timestamp = "20260101-000000"
    blob = bundles.seal_bundle(key, bundles.Layout.CLI, timestamp, {".env.prod": env}, folder="infra/vault/prod")
    pointer = bundles.Pointer(bundles.Layout.CLI, timestamp)

    def open_with(derived: Any) -> object:
        plaintext = rqe1.open_envelope(derived, blob)
        return bundles.finish(pointer, plaintext, 0, env="prod")

    return {
        "entries": entries,
        "bundle_bytes": len(blob),
        "open_key_cached_ms": _ms(lambda: open_with(key), runs),
        "open_with_derivation_ms": _ms(lambda: open_with(kdf.derive_key(passphrase, salt, 600_000)), max(3, runs // 6)),
    }


def measure_kdf_once(runs: int) -> Spread:
    def derive() -> bytes:
        kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=secrets.token_bytes(16), iterations=600_000)
        return kdf.derive(b"bench passphrase")

    return _ms(derive, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "dotsec_open.json")
    args = parser.parse_args()
    result = {
        "machine": machine_info("2-core machine shared with other jobs (see loadavg)"),
        "age": measure_age(args.entries, args.runs),
        "kms": measure_kms(args.entries, max(5, args.runs // 3)),
        "pbkdf2_600k_one_derivation_ms": measure_kdf_once(max(3, args.runs // 6)),
        "vsync": measure_vsync(args.entries, args.runs),
    }
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    age, kms = result["age"], result["kms"]
    print(f"dotsec open, {age['entries']} entries ({age['file_bytes']} bytes), age: {age['open_ms']['median']} ms")
    for step in ("parse_ms", "age_unwrap_ms", "mac_ms", "decrypt_values_ms", "schema_check_ms"):
        print(f"  {step:18} {age[step]['median']} ms")
    if kms:
        print(
            f"dotsec open, KMS (moto): {kms['open_ms']['median']} ms "
            f"(first, with client creation: {kms['first_open_ms']} ms)"
        )
    print(f"PBKDF2-600k, one derivation: {result['pbkdf2_600k_one_derivation_ms']['median']} ms")
    vsync = result["vsync"]
    print(
        f"vsync open, {vsync['entries']} keys: {vsync['open_key_cached_ms']['median']} ms with the key cached, "
        f"{vsync['open_with_derivation_ms']['median']} ms with the derivation"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
