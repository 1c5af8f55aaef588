"""Spec parsing (precise paths in errors) and what a target receives from a bundle."""

from __future__ import annotations

from typing import Any

import pytest

from vaultbundle import selection
from vaultbundle.bundles import Layout
from vaultbundle.digest import Digester
from vaultbundle.errors import SpecError
from vaultbundle.spec import parse_duration
from vaultbundle.targets import parse_spec as parse
from vaultbundle.targets.kubernetes_secret import KIND
from vaultbundle.vault import Vault


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [{"name": "app", "kubernetesSecret": {"name": "web-env"}}],
    }
    return {**base, **overrides}


def test_defaults() -> None:
    parsed = parse(spec())
    assert (parsed.config_ref.key, parsed.passphrase_ref.key) == ("config", "passphrase")
    assert parsed.layout is Layout.AUTO and parsed.version == "" and parsed.refresh_seconds == 60
    assert parsed.rollback_policy == "Refuse" and not parsed.suspend and not parsed.dry_run
    target = parsed.targets[0]
    assert target.kind == "kubernetesSecret"
    assert (target.body.type, target.body.deletion_policy) == ("Opaque", "Retain")
    assert target.body.prune and not target.body.adopt
    assert target.selection.include_keys == ("*",) and target.selection.include_files == ()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("30s", 30), ("1h30m", 5400), ("1.5s", 1.5), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source": {"configSecretRef": {"name": "s"}, "passphraseSecretRef": {"name": "s"}}}, "different Secrets"),
        (
            {"source": {"configSecretRef": {"name": "a", "namespace": "other"}, "passphraseSecretRef": {"name": "b"}}},
            "configSecretRef.namespace 'other' is refused",
        ),
        ({"refreshInterval": "soon"}, "spec.refreshInterval"),
        ({"rollbackPolicy": "Sometimes"}, "spec.rollbackPolicy"),
        ({"targets": []}, "at least one target"),
        ({"targets": [{"name": "a"}]}, "exactly one of"),
        (
            {
                "targets": [
                    {"name": "a", "kubernetesSecret": {"name": "x"}},
                    {"name": "a", "kubernetesSecret": {"name": "y"}},
                ]
            },
            "duplicate target names a",
        ),
        ({"targets": [{"name": "a", "kubernetesSecret": {"name": "cfg"}}]}, "overwriting a source Secret: cfg"),
        (
            {"targets": [{"name": "a", "kubernetesSecret": {"name": "x", "template": {"data": {"k": {}}}}}]},
            "spec.targets[0].kubernetesSecret.template.data.k needs exactly one",
        ),
    ],
)
def test_invalid_specs_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse(spec(**overrides))
    assert message in str(caught.value)


def test_refresh_clamped_to_minimum() -> None:
    assert parse(spec(refreshInterval="1s")).refresh_seconds == 10
    assert parse(spec(refreshInterval="1s"), min_refresh=1).refresh_seconds == 1


VAULT = Vault(
    kv={"DB_URL": "postgres://x", "API_KEY": "k", "DEBUG": "1"},
    files={"certs/tls.crt": b"CRT", "certs/tls.key": b"KEY", "notes.txt": b"n"},
)


def test_select_include_exclude_rename_and_files() -> None:
    target = parse(
        spec(
            targets=[
                {
                    "name": "a",
                    "kubernetesSecret": {
                        "name": "x",
                        "keys": {"exclude": ["DEBUG"], "rename": {"DB_URL": "database-url"}},
                        "files": {"include": ["certs/*"], "rename": {"certs/tls.key": "key.pem"}},
                    },
                }
            ]
        )
    ).targets[0]
    assert selection.select(VAULT, target.selection) == {
        "database-url": b"postgres://x",
        "API_KEY": b"k",
        "certs_tls.crt": b"CRT",
        "key.pem": b"KEY",
    }


def test_two_sources_on_one_name_is_an_error_naming_both() -> None:
    target = parse(
        spec(targets=[{"name": "a", "kubernetesSecret": {"name": "x", "keys": {"rename": {"DB_URL": "API_KEY"}}}}])
    ).targets[0]
    with pytest.raises(
        selection.SelectionError, match=r"key 'API_KEY' and key 'DB_URL'|key 'DB_URL' and key 'API_KEY'"
    ):
        selection.select(VAULT, target.selection)


def test_tls_template_and_missing_source() -> None:
    target = parse(
        spec(
            targets=[
                {
                    "name": "a",
                    "kubernetesSecret": {
                        "name": "x",
                        "type": "kubernetes.io/tls",
                        "template": {
                            "data": {"tls.crt": {"fromFile": "certs/tls.crt"}, "tls.key": {"fromFile": "certs/tls.key"}}
                        },
                    },
                }
            ]
        )
    ).targets[0]
    assert KIND.desired(VAULT, target.selection, target.body) == {
        "tls.crt": b"CRT",
        "tls.key": b"KEY",
    }
    missing = Vault(kv={}, files={"certs/tls.crt": b"CRT"})
    with pytest.raises(selection.SelectionError, match=r"certs/tls\.key"):
        KIND.desired(missing, target.selection, target.body)


def test_invalid_secret_key_names_are_listed() -> None:
    target = parse(spec()).targets[0]
    with pytest.raises(selection.SelectionError, match="BAD KEY"):
        KIND.desired(Vault(kv={"BAD KEY": "v"}), target.selection, target.body)


def test_digest_is_keyed_and_order_independent() -> None:
    one, two = Digester(b"k" * 32), Digester(b"j" * 32)
    a = one.digest({"A": b"1", "B": b"2"})
    assert a == one.digest({"B": b"2", "A": b"1"}) and a != two.digest({"A": b"1", "B": b"2"})
    assert a != one.digest({"A": b"12", "B": b""})  # boundaries are length-prefixed
    assert "k" * 8 not in repr(one)


def test_cross_namespace_reference_has_its_own_reason() -> None:
    refs = {"configSecretRef": {"name": "a", "namespace": "team-b"}, "passphraseSecretRef": {"name": "b"}}
    with pytest.raises(SpecError) as caught:
        parse(spec(source=refs), namespace="team-a")
    assert caught.value.reason == "CrossNamespaceReference" and "'team-a'" in str(caught.value)
    same = {"configSecretRef": {"name": "a", "namespace": "team-a"}, "passphraseSecretRef": {"name": "b"}}
    assert parse(spec(source=same), namespace="team-a").config_ref.name == "a"
