"""The explicit registry: every kind is known statically, a missing SDK extra is reported per target."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from vaultbundle.errors import Reason, SpecError, TargetError
from vaultbundle.targets import KINDS, KNOWN_KINDS, load, parse_spec, parse_target


def test_every_kind_is_registered_with_its_extra() -> None:
    assert KNOWN_KINDS == (
        "kubernetesSecret",
        "githubActions",
        "gcpSecretManager",
        "awsSecretsManager",
        "azureKeyVault",
        "hashicorpVault",
    )
    assert {name: kind.extra for name, kind in KINDS.items() if kind.sdk} == {
        "githubActions": "github",
        "gcpSecretManager": "gcp",
        "azureKeyVault": "azure",
        "hashicorpVault": "vault",
    }
    assert all(load(name) is KINDS[name] for name in KNOWN_KINDS)  # the test venv has every extra


@pytest.mark.parametrize("module", ["vaultbundle_no_such_sdk", "vaultbundle_no_such_sdk.sub"])
def test_a_missing_sdk_is_target_kind_unavailable(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KINDS["hashicorpVault"], "sdk", (module,))
    with pytest.raises(TargetError) as caught:
        load("hashicorpVault")
    assert caught.value.reason is Reason.TARGET_KIND_UNAVAILABLE
    assert "pip install 'vaultbundle[vault]' (vaultbundle_no_such_sdk" in str(caught.value)
    # parsing does not need the SDK: the spec is still validated
    parsed = parse_target(
        {
            "name": "v",
            "hashicorpVault": {"address": "https://v", "path": "a", "auth": {"tokenSecretRef": {"name": "t"}}},
        },
        "t",
    )
    assert parsed.kind == "hashicorpVault" and parsed.body.path == "a"


def test_one_of_dispatch_and_cross_target_checks() -> None:
    with pytest.raises(SpecError, match=r"^t must set exactly one of: kubernetesSecret, githubActions"):
        parse_target({"name": "x", "kubernetesSecret": {"name": "a"}, "githubActions": {}}, "t")
    assert parse_target({"name": "x", "kubernetesSecret": {"name": "a"}}, "t").writes_secrets == ("a",)
    spec = {
        "source": {"configSecretRef": {"name": "cfg"}, "passphraseSecretRef": {"name": "pass"}},
        "targets": [
            {"name": "k", "kubernetesSecret": {"name": "web"}},
            {"name": "a", "awsSecretsManager": {"region": "us-east-1", "namePrefix": "web"}},  # not a Secret of ours
        ],
    }
    assert [t.writes_secrets for t in parse_spec(spec).targets] == [("web",), ()]


def test_spec_imports_no_target_module() -> None:
    """spec.py parses the VaultBundle's own fields without the store modules (no spec -> targets edge)."""
    code = "import sys, vaultbundle.spec, vaultbundle.selection\nassert 'vaultbundle.targets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
