"""One settings object: the `run` flags, the chart's defaults and the README take their defaults from
`vaultbundle.settings.Settings`; these tests fail when any of them drifts."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import click
import yaml

from tests.conftest import REPO
from tests.unit.test_chart import CHART, by_kind, helm, render
from vaultbundle import cli
from vaultbundle.settings import DEFAULTS, Settings, field_doc, format_duration

__all__ = ["helm"]  # the fixture, imported for the rendering test

README = REPO / "README.md"
START, END = "<!-- settings:start (tests/unit/test_settings.py) -->", "<!-- settings:end -->"
# Where the chart deliberately differs from the CLI's default, and why.
CHART_CHOICES = {
    "--log-format": "json: one object per line for log collectors",
    "--metrics-host": "the pod IP (downward API): probes and Prometheus reach it, other pods on the node do not",
}
# values.yaml key path -> Settings field
CHART_VALUES = {
    ("operator", "maxConcurrent"): "max_concurrent",
    ("operator", "minRefreshInterval"): "min_refresh_seconds",
    ("operator", "minDriftCheckInterval"): "min_drift_check_seconds",
    ("operator", "driftDebounce"): "drift_debounce_seconds",
    ("operator", "maxConcurrentPerNamespace"): "max_concurrent_per_namespace",
    ("operator", "reconcileTimeout"): "reconcile_timeout_seconds",
    ("operator", "s3Timeout"): "s3_timeout_seconds",
    ("operator", "minKdfIterations"): "min_kdf_iterations",
    ("operator", "maxKdfIterations"): "max_kdf_iterations",
    ("metrics", "port"): "metrics_port",
    ("leaderElection", "leaseDuration"): "lease_seconds",
    ("egress", "allowLocal"): "egress_allow_local",
}


def run_options() -> dict[str, click.Option]:
    return {opt: p for p in cli.run.params if isinstance(p, click.Option) for opt in p.opts if opt.startswith("--")}


def shown(name: str) -> Any:
    value = getattr(DEFAULTS, name)
    return format_duration(value) if name.endswith("_seconds") else value


def test_every_setting_is_documented() -> None:
    assert all(len(field_doc(field.name)) > 10 for field in fields(Settings))


def test_every_flag_with_a_setting_takes_its_default_and_help_from_it() -> None:
    options = run_options()
    assert len(cli.SETTING_FLAGS) >= 10
    for flag, name in cli.SETTING_FLAGS.items():
        option = options[flag]
        assert option.help == field_doc(name), flag
        default = getattr(DEFAULTS, name)
        assert option.default == (None if default is None else shown(name)), flag
        assert option.show_default == (default is not None), flag


def test_chart_values_equal_the_settings() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for (section, key), name in CHART_VALUES.items():
        assert values[section][key] == shown(name), f"values.yaml {section}.{key} != Settings.{name}"


def test_deployment_args_equal_the_settings(helm: str) -> None:
    (deployment,) = by_kind(render(helm), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    given = dict(arg.split("=", 1) for arg in args if "=" in arg)
    options = run_options()
    compared = []
    for flag, value in given.items():
        default = options[flag].default
        if default is None or flag in CHART_CHOICES or options[flag].multiple:  # a list flag has no default
            continue
        assert value == str(default), f"the chart passes {flag}={value}; `vaultbundle run` defaults to {default}"
        compared.append(flag)
    assert {"--metrics-port", "--max-concurrent", "--min-refresh-interval"} <= set(compared)
    bounds = {"--max-concurrent-per-namespace", "--reconcile-timeout", "--s3-timeout"}
    assert bounds | {"--min-kdf-iterations", "--max-kdf-iterations"} <= set(compared)
    assert given["--metrics-host"] == "$(POD_IP)"
    assert "--lease-duration" in compared


def settings_table() -> str:
    flags = {name: flag for flag, name in cli.SETTING_FLAGS.items()}
    rows = ["| Setting | Flag | Default | Meaning |", "|---|---|---|---|"]
    for field in fields(Settings):
        flag = f"`{flags[field.name]}`" if field.name in flags else "—"
        default = "—" if getattr(DEFAULTS, field.name) is None else f"`{shown(field.name)}`"
        rows.append(f"| `{field.name}` | {flag} | {default} | {field_doc(field.name)} |")
    return "\n".join(rows)


def test_readme_settings_table_is_generated_from_settings() -> None:
    text = README.read_text()
    assert START in text and END in text, f"README.md needs the generated section {START} ... {END}"
    current = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = settings_table()
    assert current == expected, f"README.md's settings table is stale; replace it with:\n{expected}"


def test_readme_usage_line_shows_the_defaults() -> None:
    usage = README.read_text().split("vaultbundle run [--kubeconfig", 1)[1].split("```", 1)[0]
    options = run_options()
    for flag, value in re.findall(r"\[(--[a-z-]+) ([^\]\[ ]+)", usage):
        default = options[flag].default
        if default is not None and not value.isupper() and "|" not in value:  # NS, N, F, a|b: not defaults
            assert value == str(default), f"README shows {flag} {value}; the default is {default}"
