"""Hypothesis fuzzing of every parser of untrusted input (short runs in the suite; `make fuzz` runs atheris)."""

from __future__ import annotations

import base64
import json

import pytest
from fuzz import targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
