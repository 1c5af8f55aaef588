"""The VaultBundle spec as typed values, validated without any network access.

Field names follow crds/vaultbundle.io_vaultbundles.yaml. The API server already enforces the schema;
this parse is the second line (objects written before a CRD upgrade, tests, dry runs) and gives every
problem a precise path in its message.

This module parses the VaultBundle's own fields (source, schedule, policies) and the parts every target
shares (`parse_selection`). Each `spec.targets[]` entry is parsed by the caller's *parse_target*, which is
`targets.parse_target` (or simply call `targets.parse_spec`): the one-of dispatch over store kinds lives in
`targets/`, and this module never imports it, so stores can depend on the spec's types without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .bundles import Layout
from .crypto.rqem import is_timestamp
from .dotsec_spec import DotsecSource, parse_dotsec, parse_schema_ref
from .errors import SpecError
from .fields import (
    DNS_SUBDOMAIN,
    MAX_NAME_LENGTH,
    SecretRef,
    Selection,
    TargetSpec,
    boolean,
    obj,
    parse_duration,
    parse_selection,
    secret_ref,
    string,
)
from .settings import DEFAULTS, format_duration

__all__ = [
    "MIN_REFRESH_SECONDS",
    "SecretRef",
    "Selection",
    "TargetSpec",
    "VaultBundleSpec",
    "Workload",
    "parse",
    "parse_duration",
    "parse_selection",
]

MIN_REFRESH_SECONDS = DEFAULTS.min_refresh_seconds

ParseTarget = Callable[[Any, str], TargetSpec]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
MAX_ROLLOUT_TARGETS = 32


@dataclass(frozen=True)
class Workload:
    """One `spec.rolloutRestartTargets[]` entry: a workload in the VaultBundle's own namespace (there is no
    namespace field: no other namespace can be named)."""

    kind: str  # Deployment | StatefulSet | DaemonSet
    name: str


@dataclass(frozen=True)
class VaultBundleSpec:
    """The parsed spec. A vsync source has `config_ref` and `passphrase_ref`; a dotsec source has `dotsec`
    (and the vsync fields are None); `schema` (a ConfigMap key) applies to either."""

    config_ref: SecretRef | None
    passphrase_ref: SecretRef | None
    layout: Layout
    version: str
    env_file: str | None
    refresh_seconds: float
    suspend: bool
    dry_run: bool
    rollback_policy: str
    targets: tuple[TargetSpec, ...]
    allow_empty: bool = False
    rollout_targets: tuple[Workload, ...] = ()
    rollout_min_interval: float = DEFAULTS.rollout_min_interval_seconds
    dotsec: DotsecSource | None = None
    schema: SecretRef | None = None

    @property
    def source_kind(self) -> str:
        return "dotsec" if self.dotsec is not None else "vsync"

    def source_secrets(self) -> frozenset[str]:
        """The Secrets of the namespace this spec reads its bundle with (targets must not overwrite them)."""
        refs = [self.config_ref, self.passphrase_ref]
        if self.dotsec is not None:
            refs += [self.dotsec.identity, self.dotsec.s3.config_ref if self.dotsec.s3 else None]
        names = {ref.name for ref in refs if ref is not None}
        if self.dotsec is not None and self.dotsec.kms is not None and self.dotsec.kms.credentials_secret:
            names.add(self.dotsec.kms.credentials_secret)
        return frozenset(names)

    def source_config_maps(self) -> frozenset[str]:
        refs = [self.schema, self.dotsec.config_map if self.dotsec else None]
        return frozenset(ref.name for ref in refs if ref is not None)


def parse(
    spec: Mapping[str, Any],
    *,
    parse_target: ParseTarget,
    min_refresh: float = MIN_REFRESH_SECONDS,
    namespace: str | None = None,
) -> VaultBundleSpec:
    """The whole spec; *parse_target* (`targets.parse_target`) parses each `spec.targets[]` entry."""
    source = obj(spec.get("source"), "spec.source")
    if not source:
        raise SpecError("spec.source is required")
    config_ref = passphrase_ref = dotsec = None
    # the apiserver fills in layout/version/envFile defaults: only a value other than the default is a vsync field
    defaults = {"layout": "auto", "version": "", "envFile": ""}
    vsync_fields = sorted(
        name
        for name in ("configSecretRef", "passphraseSecretRef", "layout", "version", "envFile")
        if source.get(name) is not None and source.get(name) != defaults.get(name)
    )
    if source.get("dotsec") is not None:
        if vsync_fields:
            raise SpecError(
                f"spec.source: dotsec and the vsync source fields ({', '.join(vsync_fields)}) exclude each other; "
                "a VaultBundle has exactly one source kind"
            )
        dotsec = parse_dotsec(source["dotsec"], "spec.source.dotsec", namespace=namespace)
    else:
        config_ref = secret_ref(
            source.get("configSecretRef"), "spec.source.configSecretRef", "config", namespace=namespace
        )
        passphrase_ref = secret_ref(
            source.get("passphraseSecretRef"), "spec.source.passphraseSecretRef", "passphrase", namespace=namespace
        )
        if config_ref.name == passphrase_ref.name:
            raise SpecError(
                "spec.source: config and passphrase must live in different Secrets (separate leak channels)"
            )
    layout, version = _layout_and_version(source)
    refresh = max(
        min_refresh,
        parse_duration(
            string(spec.get("refreshInterval"), "spec.refreshInterval", default="1m"), "spec.refreshInterval"
        ),
    )
    policy = string(spec.get("rollbackPolicy"), "spec.rollbackPolicy", default="Refuse")
    if policy not in ("Refuse", "Allow"):
        raise SpecError("spec.rollbackPolicy must be Refuse or Allow")
    raw_targets = spec.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise SpecError("spec.targets needs at least one target")
    targets = tuple(parse_target(raw, f"spec.targets[{index}]") for index, raw in enumerate(raw_targets))
    parsed = VaultBundleSpec(
        config_ref=config_ref,
        passphrase_ref=passphrase_ref,
        layout=layout,
        version=version,
        env_file=string(source.get("envFile"), "spec.source.envFile") or None,
        refresh_seconds=refresh,
        suspend=boolean(spec.get("suspend"), "spec.suspend", False),
        dry_run=boolean(spec.get("dryRun"), "spec.dryRun", False),
        rollback_policy=policy,
        targets=targets,
        allow_empty=boolean(source.get("allowEmpty"), "spec.source.allowEmpty", False),
        rollout_targets=_workloads(spec.get("rolloutRestartTargets")),
        rollout_min_interval=parse_duration(
            string(
                spec.get("rolloutMinInterval"),
                "spec.rolloutMinInterval",
                default=format_duration(DEFAULTS.rollout_min_interval_seconds),
            ),
            "spec.rolloutMinInterval",
        ),
        dotsec=dotsec,
        schema=parse_schema_ref(spec.get("schema"), "spec.schema", namespace=namespace),
    )
    _check_targets(targets, set(parsed.source_secrets()))
    return parsed


def _workloads(raw: Any) -> tuple[Workload, ...]:
    """`spec.rolloutRestartTargets`: kind and name only (a `namespace` key, or any other, is refused), unique."""
    path = "spec.rolloutRestartTargets"
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_ROLLOUT_TARGETS:
        raise SpecError(f"{path} must be a list of at most {MAX_ROLLOUT_TARGETS} {{kind, name}} objects")
    workloads: list[Workload] = []
    for index, item in enumerate(raw):
        entry = obj(item, f"{path}[{index}]")
        unknown = sorted(set(entry) - {"kind", "name"})
        if unknown:
            raise SpecError(
                f"{path}[{index}]: unknown field(s) {', '.join(unknown)}; only kind and name (a workload in the "
                "VaultBundle's own namespace)"
            )
        kind = string(entry.get("kind"), f"{path}[{index}].kind", required=True)
        if kind not in WORKLOAD_KINDS:
            raise SpecError(f"{path}[{index}].kind must be one of {', '.join(WORKLOAD_KINDS)}, got {kind!r}")
        name = string(entry.get("name"), f"{path}[{index}].name", required=True)
        if len(name) > MAX_NAME_LENGTH or not DNS_SUBDOMAIN.fullmatch(name):
            raise SpecError(f"{path}[{index}].name must be a {kind} name (a DNS subdomain), got {name!r}")
        workload = Workload(kind, name)
        if workload in workloads:
            raise SpecError(f"{path}: {kind} {name} is listed twice")
        workloads.append(workload)
    return tuple(workloads)


def _layout_and_version(source: Mapping[str, Any]) -> tuple[Layout, str]:
    try:
        layout = Layout(string(source.get("layout"), "spec.source.layout", default="auto"))
        if layout is Layout.DOTSEC:
            raise ValueError(layout)
    except ValueError:
        raise SpecError("spec.source.layout must be auto, cli or runtime") from None
    version = string(source.get("version"), "spec.source.version")
    if version and not is_timestamp(version):
        raise SpecError("spec.source.version must be a YYYYMMDD-HHMMSS timestamp or empty")
    return layout, version


def _check_targets(targets: tuple[TargetSpec, ...], sources: set[str]) -> None:
    """Checks across targets: unique names; no Secret of this namespace written twice or over a source."""
    names = [target.name for target in targets]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SpecError(f"spec.targets: duplicate target names {', '.join(duplicates)}")
    secrets = [name for target in targets for name in target.writes_secrets]
    clashes = sorted({name for name in secrets if secrets.count(name) > 1} | sources & set(secrets))
    if clashes:
        raise SpecError(
            f"spec.targets: Secret names written twice or overwriting a source Secret: {', '.join(clashes)}"
        )
