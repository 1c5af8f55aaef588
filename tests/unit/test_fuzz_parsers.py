"""Hypothesis fuzzing of every parser of untrusted input (short runs in the suite; `make fuzz` runs atheris)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from fuzz import targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.dotsec_writer import encrypt_value, write_sec
from vaultbundle import dotsec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
spec_like = st.fixed_dictionaries(
    {},
    optional={
        "source": st.dictionaries(
            st.sampled_from(["configSecretRef", "passphraseSecretRef", "layout", "version"]), json_values, max_size=4
        ),
        "targets": st.lists(
            st.dictionaries(
                st.sampled_from(["name", "kubernetesSecret", "githubActions", "hashicorpVault", "awsSecretsManager"]),
                json_values,
                max_size=3,
            ),
            max_size=3,
        ),
        "refreshInterval": json_values,
        "rollbackPolicy": json_values,
    },
)


@pytest.mark.parametrize("name", sorted(set(targets.TARGETS) - {"crd_spec"}))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=2048))
def test_bytes_parsers_raise_only_typed_errors(name: str, data: bytes) -> None:
    targets.run(name, data)


@settings(max_examples=200, deadline=None)
@given(document=spec_like)
def test_spec_parser_raises_only_spec_errors(document: dict[str, object]) -> None:
    targets.run("crd_spec", json.dumps(document).encode())


dotsec_like = st.fixed_dictionaries(
    {
        "source": st.fixed_dictionaries(
            {
                "dotsec": st.dictionaries(
                    st.sampled_from(["configMapRef", "s3", "identitySecretRef", "kms", "plaintext", "pin"]),
                    json_values | st.fixed_dictionaries({}, optional={"name": json_values, "key": json_values}),
                    max_size=6,
                )
            },
            optional={"layout": json_values, "configSecretRef": json_values},
        ),
        "targets": st.just([{"name": "app", "kubernetesSecret": {"name": "out"}}]),
    },
    optional={"schema": json_values | st.fixed_dictionaries({"configMapRef": json_values})},
)


@settings(max_examples=300, deadline=None)
@given(document=dotsec_like)
def test_dotsec_source_spec_raises_only_spec_errors(document: dict[str, object]) -> None:
    targets.run("crd_spec", json.dumps(document).encode())


@settings(max_examples=100, deadline=None)
@given(document=json_values)
def test_json_vault_parser_on_any_json(document: object) -> None:
    targets.run("json_vault", json.dumps(document).encode())


def test_known_hostile_inputs() -> None:
    """Seeds from the hardening issue: traversal names, symlinks, deep JSON, a gzip bomb blob."""
    for entry in (b"../../etc/passwd", b"/abs", b"a/../../b", b"ok\x00..\\win"):
        targets.run("zip_entries", entry)
    targets.run("zip_entries", b"link" + b"x" * 36 + bytes([0o120]) + b"/etc/passwd")  # S_IFLNK in the mode bits
    targets.run("json_vault", b"[" * 100_000)
    # found by atheris: a central directory claiming ZIP version 6.7 made zipfile raise NotImplementedError
    targets.run(
        "zip_payload",
        base64.b64decode(
            "AEhDQFBLAQK+Q0NDAVBLBQYAQ0NDw0MnQ/lDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDAEhDQ0NDQ0NDQ0NDQ1BLBQZDAAAAAAAAAD8AAAAAAABIQ0A="
        ),
    )
    targets.run("crd_spec", b'{"source": ' * 5000)


# dotsec: text built from the grammar's own tokens reaches far more of the parser than random bytes do
DOTSEC_TOKENS = [
    "\n", "\r\n", "\r", " ", "\t", "#", "# ", "//", "@", "=", '"', "'", "`", "\\", "\\n", "\\u00e9", "\\q",
    "A", "KEY_1", "x.y-z", "export", "export ", "ENC[", "]", "# @encrypt", "# @plaintext", "# @default-encrypt",
    "@optional", " @not-empty", "# @type=number", '@type=enum("a", "b")', "@min=-1.5", "@max-length=3",
    '@pattern="[0-9]+"', '@deprecated="x"', "@description=a b", "# @provider=local", "@provider=aws",
    "@key-id=k", "@region=us-east-1", "@push=aws-ssm(path=\"/p\"), aws-secrets-manager", "@also-env",
    "# @dotsec(format=v3, mac=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=, dek=YWdl)", "@format=uuid", "é", "\ufeff",
]  # fmt: skip
dotsec_text = st.lists(st.sampled_from(DOTSEC_TOKENS), max_size=60).map("".join)


@pytest.mark.parametrize("name", ["dotsec_sec", "dotsec_schema", "dotsec_open"])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=dotsec_text)
def test_dotsec_parsers_on_grammar_shaped_text(name: str, text: str) -> None:
    targets.run(name, text.encode())


dotsec_keys = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,12}", fullmatch=True).filter(
    lambda key: not key.startswith("export")  # dotsec reads `exporter=` as key `er` (tested elsewhere)
)


@settings(max_examples=40, deadline=None)
@given(entries=st.lists(st.tuples(dotsec_keys, st.text(max_size=300)), min_size=1, max_size=8))
def test_dotsec_any_encrypted_value_round_trips(entries: list[tuple[str, str]]) -> None:
    """Values of any content (newlines, quotes, NUL, astral characters) come back exactly, in file order."""
    dek = os.urandom(32)
    body = "# @provider=local @default-encrypt\n" + "".join(
        f"{key}={encrypt_value(dek, key, value)}\n" for key, value in entries
    )
    text, identity, _ = write_sec(body, dek=dek)
    values, _ = dotsec.open(text, dotsec.AgeIdentity(identity), validate=False)
    assert list(values.pairs) == entries


def test_dotsec_hostile_inputs() -> None:
    for text in ("#" * 100_000, '"' + "\\" * 60_000, "A=" + "`" * 60_000, "# @" + "a" * 60_000, "\n" * 200_000):
        targets.run("dotsec_sec", text.encode())
    targets.run("dotsec_header", b"mac=" + b"A" * 100_000)
    targets.run("dotsec_schema", b'# @pattern="(a+)+$"\n' + b"a" * 40 + b"_")  # catastrophic backtracking: cut off
