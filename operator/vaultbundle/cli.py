"""`vaultbundle` command line: pull, push, inspect, token, share (vsync's bundles, no cluster needed); plan and
sync (one reconcile of a VaultBundle manifest, no operator); run (the operator).

`push` and `pull` append vsync's audit row to `<prefix>audit.csv` (see audit.py; `--no-audit` skips it).
Exit codes (fixed; see README): 0 ok, 2 usage or bad input (incl. a share key vsync would refuse),
10-16 vsync's error classes, 17 rollback refused, 18 ambiguous layout, 19 bad vault folder, 20 plan/sync
found a failed target, 21-32 dotsec, 33 an empty bundle refused (BundleEmpty), 1 anything unexpected.
stderr names the error class and what to do; secret values are never printed unless `--reveal` asks for them on
stdout.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from . import __version__, audit, bundles, errors
from .bundles import Layout
from .cli_dotsec import dotsec
from .crypto import configblob, sls1
from .crypto.configblob import BootstrapConfig
from .crypto.kdf import MAX_SUPPORTED_ITERATIONS
from .crypto.rqem import is_timestamp
from .errors import VSyncError
from .localfiles import read_secret_file, read_vault_folder, write_files, write_secret_file
from .pool import CryptoPool
from .remote import S3Objects
from .settings import DEFAULTS, Settings, Shard, field_doc, format_duration
from .status import Outcome

F = TypeVar("F", bound=Callable[..., Any])
EXIT_SYNC_FAILED = 20
REASON_EXIT_CODES = {  # a bundle error's reason -> its exit code (vsync's 10-20, dotsec's 21-32)
    str(cls.reason): cls.exit_code
    for cls in vars(errors).values()
    if isinstance(cls, type)
    and issubclass(cls, errors.VSyncError | errors.DotsecError)
    and cls not in (errors.VSyncError, errors.DotsecError)
}
LAYOUTS = click.Choice([layout.value for layout in Layout if layout is not Layout.DOTSEC])


def _config_option(fn: F) -> F:
    return click.option(
        "--config-file",
        "config_file",
        required=True,
        envvar="VSYNC_CONFIG_FILE",
        type=click.Path(dir_okay=False),
        help="File holding a vsync-cfg-v1: config blob (a trailing newline is fine). Env: VSYNC_CONFIG_FILE.",
    )(fn)


def _passphrase_option(fn: F) -> F:
    return click.option(
        "--passphrase-file",
        "passphrase_file",
        required=True,
        envvar="VSYNC_PASSPHRASE_FILE",
        type=click.Path(dir_okay=False),
        help="File holding the bundle passphrase (trailing whitespace removed). Env: VSYNC_PASSPHRASE_FILE.",
    )(fn)


def _audit_option(fn: F) -> F:
    return click.option(
        "--no-audit", is_flag=True, help="Do not append a row to <prefix>audit.csv (vsync's audit trail)."
    )(fn)


def _record(objects: S3Objects, config: BootstrapConfig, action: str, version_ts: str, no_audit: bool) -> None:
    """vsync's audit row; a failure is a warning, never the command's failure (a 403 is skipped silently)."""
    if no_audit:
        return
    if audit.record(objects, config.prefix, action, version_ts) is audit.Outcome.FAILED:
        click.echo(f"warning: could not append to {config.prefix}{audit.OBJECT_NAME}; the {action} succeeded", err=True)


def _timestamp(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value and not is_timestamp(value):
        raise click.BadParameter("expected a YYYYMMDD-HHMMSS timestamp")
    return value


def _load_config(path: str) -> BootstrapConfig:
    return configblob.decode(read_secret_file(path, "config"))


@contextmanager
def _progress(message: str, quiet: bool) -> Iterator[None]:
    """Tell the user about a slow step (the KDF) on stderr, with its duration."""
    started = time.monotonic()
    if not quiet:
        click.echo(f"{message}...", err=True, nl=False)
    yield
    if not quiet:
        click.echo(f" done ({time.monotonic() - started:.1f}s)", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vaultbundle")
def cli() -> None:
    """Read and write vsync secret bundles on S3 (both layouts) and run the vaultbundle operator."""


cli.add_command(dotsec)  # `vaultbundle dotsec open|validate` (cli_dotsec.py)


@cli.command()
@_config_option
@_passphrase_option
@click.option("--layout", type=LAYOUTS, default="auto", show_default=True, help="Bucket layout; auto detects it.")
@click.option("--version", "version", callback=_timestamp, help="Pull this bundle timestamp instead of the latest.")
@click.option("--not-older-than", callback=_timestamp, help="Refuse (exit 17) a bundle older than this timestamp.")
@click.option("--env-file", help="ZIP entry holding the key/values (CLI layout); default .env.<env>.")
@click.option("--allow-empty", is_flag=True, help="Accept a bundle with no keys and no files (else exit 33).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Write the vault folder's files here.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (never values unless --reveal).")
@click.option("--reveal", is_flag=True, help="With --json: include values (kv) and files (files_b64).")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
@_audit_option
def pull(
    config_file: str,
    passphrase_file: str,
    layout: str,
    version: str | None,
    not_older_than: str | None,
    env_file: str | None,
    allow_empty: bool,
    out_dir: str | None,
    as_json: bool,
    reveal: bool,
    quiet: bool,
    no_audit: bool,
) -> None:
    """Download, verify and decrypt the current (or a pinned) bundle. One with no keys and no files is refused
    (exit 33, BundleEmptyError) unless --allow-empty."""
    if reveal and not as_json:
        raise click.UsageError("--reveal only works together with --json")
    config = _load_config(config_file)
    passphrase = read_secret_file(passphrase_file, "passphrase")
    objects = S3Objects(config)
    with CryptoPool(workers=1) as pool:
        pointer = bundles.locate(objects, config, Layout(layout), version=version, not_older_than=not_older_than)
        envelope = bundles.fetch(objects, config, pointer)
        with _progress(f"Deriving key (PBKDF2-SHA256, {config.iterations} iterations)", quiet):
            plaintext = pool.open_envelope(envelope, passphrase, config.salt, config.iterations)
    generation = bundles.read_generation(objects, config, pointer.layout)
    bundle = bundles.finish(pointer, plaintext, generation, env=config.env, env_file=env_file)
    bundles.check_not_empty(bundle, allow=allow_empty)  # before anything is written or recorded
    content = bundle.vault
    if out_dir:
        write_files(out_dir, content.folder_files())
    _record(objects, config, "pull", bundle.timestamp, no_audit)
    summary: dict[str, Any] = {
        "layout": bundle.layout.value,
        "timestamp": bundle.timestamp,
        "generation": bundle.generation,
        "keys": sorted(content.kv),
        "files": sorted(content.files),
    }
    if as_json:
        if reveal:
            summary["kv"] = dict(content.kv)
            summary["files_b64"] = {
                name: base64.b64encode(body).decode("ascii") for name, body in content.files.items()
            }
        click.echo(json.dumps(summary, ensure_ascii=False, sort_keys=False))
    else:
        click.echo(
            f"{bundle.layout.value} bundle {bundle.timestamp} (generation {bundle.generation}): "
            f"{len(content.kv)} keys, {len(content.files)} files" + (f" written to {out_dir}" if out_dir else "")
        )
        for name in summary["keys"]:
            click.echo(f"  key  {name}")
        for name in summary["files"]:
            click.echo(f"  file {name}")


@cli.command()
@_config_option
@_passphrase_option
@click.option("--layout", type=click.Choice(["cli", "runtime"]), required=True, help="Bucket layout to write.")
@click.option("--vault-folder", help="Path prefix of ZIP entries (CLI layout); default infra/vault/<env>.")
@click.option("--quiet", "-q", is_flag=True, help="No progress messages on stderr.")
@_audit_option
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
def push(
    config_file: str,
    passphrase_file: str,
    layout: str,
    vault_folder: str | None,
    quiet: bool,
    no_audit: bool,
    directory: str,
) -> None:
    """Seal DIRECTORY (a vault folder) and upload it; the pointer is written last.

    CLI layout: the folder is zipped as `vsync push` does (`.env.<env>` holds the key/values).
    Runtime layout: `.env.<env>` (else `.env`) holds the key/values and every other file becomes an asset.
    Both append a row to <prefix>audit.csv, as vsync does (unless --no-audit).
    """
    config = _load_config(config_file)
    passphrase = read_secret_file(passphrase_file, "passphrase")
    files = read_vault_folder(directory)
    objects = S3Objects(config)
    with CryptoPool(workers=1) as pool:
        with _progress(f"Deriving key (PBKDF2-SHA256, {config.iterations} iterations)", quiet):
            pool.derive(passphrase, config.salt, config.iterations)
        pointer = bundles.push(objects, config, passphrase, pool, files, layout=Layout(layout), folder=vault_folder)
    _record(objects, config, "push", pointer.timestamp, no_audit)
    click.echo(f"pushed {pointer.layout.value} bundle {pointer.timestamp} ({len(files)} files)")


@cli.command()
@_config_option
@click.option("--layout", type=LAYOUTS, default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(config_file: str, layout: str, as_json: bool) -> None:
    """Show the pointer, the stored versions and the generation (no passphrase needed)."""
    config = _load_config(config_file)
    objects = S3Objects(config)
    pointer = bundles.read_pointer(objects, config, Layout(layout))
    assert pointer is not None
    report = {
        "bucket": config.bucket,
        "prefix": config.prefix,
        "layout": pointer.layout.value,
        "timestamp": pointer.timestamp,
        "pointer_etag": pointer.etag,
        "generation": bundles.read_generation(objects, config, pointer.layout),
        "versions": bundles.list_versions(objects, config, pointer.layout),
    }
    if as_json:
        click.echo(json.dumps(report))
    else:
        for name, value in report.items():
            click.echo(f"{name}: {' '.join(value) if isinstance(value, list) else value}")


@cli.group()
def token() -> None:
    """Encode or decode vsync-cfg-v1: config blobs."""


@token.command("decode")
@_config_option
@click.option("--reveal", is_flag=True, help="Show the secret access key too.")
def token_decode(config_file: str, reveal: bool) -> None:
    """Print a config blob's fields as JSON (secret access key redacted unless --reveal)."""
    document = _load_config(config_file).to_json()
    if not reveal:
        document["secretAccessKey"] = "<redacted>"
    click.echo(json.dumps(document, indent=2))


@token.command("encode")
@click.option(
    "--from-json",
    "from_json",
    type=click.File("r"),
    required=True,
    help="JSON with endpoint, region, bucket, accessKeyId, secretAccessKey, prefix, env and optional "
    f"salt (generated when absent) and iterations ({DEFAULTS.kdf_iterations}). '-' reads stdin.",
)
def token_encode(from_json: Any) -> None:
    """Build a vsync-cfg-v1: blob (what `vsync runtime-token` prints)."""
    try:
        document = json.load(from_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc.msg}", param_hint="--from-json") from None
    if not isinstance(document, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--from-json")
    document.setdefault("salt", base64.b64encode(os.urandom(18)).decode("ascii").rstrip("="))
    document.setdefault("iterations", DEFAULTS.kdf_iterations)
    names = {
        "endpoint": "endpoint",
        "region": "region",
        "bucket": "bucket",
        "accessKeyId": "access_key_id",
        "secretAccessKey": "secret_access_key",
        "prefix": "prefix",
        "env": "env",
        "salt": "salt",
        "iterations": "iterations",
    }
    missing = sorted(set(names) - set(document))
    if missing:
        raise click.BadParameter(f"missing fields: {', '.join(missing)}", param_hint="--from-json")
    click.echo(configblob.encode(BootstrapConfig(**{attr: document[field] for field, attr in names.items()})))


@cli.group()
def share() -> None:
    """Export or import vsync SLS1 .share files."""


@share.command("export")
@_config_option
@_passphrase_option
@click.option("--repo", help="vsync repo identity; default: the first path part of the prefix.")
@click.option(
    "--share-passphrase-file",
    type=click.Path(dir_okay=False),
    help="Share passphrase; when absent one is generated and printed on stderr.",
)
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False), help="The .share file to write.")
def share_export(
    config_file: str, passphrase_file: str, repo: str | None, share_passphrase_file: str | None, out_file: str
) -> None:
    """Write an SLS1 .share file that `vsync import` (and `share import`) can read."""
    config = _load_config(config_file)
    passphrase = read_secret_file(passphrase_file, "passphrase")
    sls1.check_key(passphrase)
    repo = repo or config.prefix.split("/")[0]
    if not repo:
        raise click.UsageError("cannot infer the repo from an empty prefix; pass --repo")
    env_config = {
        "version": 1,
        "s3": {
            "endpoint": config.endpoint,
            "region": config.region,
            "bucket": config.bucket,
            "accessKeyId": config.access_key_id,
            "secretAccessKey": config.secret_access_key,
            "useSsl": not config.endpoint.startswith("http://"),
        },
        "encryption": {"salt": config.salt},
        "prefix": config.prefix,
    }
    if share_passphrase_file:
        share_passphrase = read_secret_file(share_passphrase_file, "share passphrase")
    else:
        share_passphrase = sls1.generate_share_passphrase()
        click.echo(f"share passphrase: {share_passphrase}", err=True)
    data = sls1.seal(sls1.ShareFile(repo=repo, env=config.env, config=env_config, key=passphrase), share_passphrase)
    write_files(os.path.dirname(os.path.abspath(out_file)), {os.path.basename(out_file): data})
    click.echo(f"wrote {out_file}")


@share.command("import")
@click.argument("share_file", type=click.Path(dir_okay=False, exists=True))
@click.option("--share-passphrase-file", required=True, type=click.Path(dir_okay=False))
@click.option("--config-out", required=True, type=click.Path(dir_okay=False), help="Where to write the config blob.")
@click.option("--passphrase-out", required=True, type=click.Path(dir_okay=False), help="Where to write the passphrase.")
def share_import(share_file: str, share_passphrase_file: str, config_out: str, passphrase_out: str) -> None:
    """Open a .share file and write a config blob + passphrase file for `pull` and the operator.

    The prefix is `<repo>/<env>/`, where `vsync push` writes (it ignores the stored prefix)."""
    with open(share_file, "rb") as handle:
        data = handle.read()
    opened = sls1.open_share(data, read_secret_file(share_passphrase_file, "share passphrase"))
    s3 = opened.config["s3"]
    config = BootstrapConfig(
        endpoint=s3["endpoint"],
        region=s3["region"],
        bucket=s3["bucket"],
        access_key_id=s3["accessKeyId"],
        secret_access_key=s3["secretAccessKey"],
        prefix=f"{opened.repo}/{opened.env.lower()}/",
        env=opened.env,
        salt=opened.config["encryption"]["salt"],
        iterations=DEFAULTS.kdf_iterations,
    )
    write_secret_file(config_out, configblob.encode(config))
    write_secret_file(passphrase_out, opened.key)
    click.echo(f"imported {opened.repo}/{opened.env}: wrote {config_out} and {passphrase_out}")


def _one_shot(
    *,
    manifest_file: Any,
    namespace: str | None,
    kubeconfig: str | None,
    apply: bool,
    as_json: bool,
    digest_key_file: str | None,
    egress_allow_local: bool,
) -> None:
    import yaml  # noqa: PLC0415 - only these commands read YAML

    from . import oneshot  # noqa: PLC0415 - pulls in the Kubernetes client

    try:
        manifest = yaml.safe_load(manifest_file)
    except yaml.YAMLError:
        raise click.BadParameter("not YAML", param_hint="-f") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != "VaultBundle":
        raise click.BadParameter("expected one VaultBundle manifest", param_hint="-f")
    namespace = namespace or (manifest.get("metadata") or {}).get("namespace") or "default"
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    outcome = oneshot.run(
        manifest,
        namespace=namespace,
        kubeconfig=kubeconfig,
        apply=apply,
        digest_key_file=digest_key_file,
        egress=Settings(egress_allow_local=egress_allow_local).egress_policy(),
    )
    conditions = {c["type"]: c for c in outcome.status.get("conditions", [])}
    refused = outcome.reason == errors.Reason.BUNDLE_EMPTY  # verified, then refused before any target was planned
    verified = conditions.get("Verified", {}).get("status") == "True" and not refused
    targets = outcome.status.get("targets", []) if verified else []
    if as_json:
        click.echo(
            json.dumps(
                {
                    "namespace": namespace,
                    "bundle": outcome.status.get("bundle"),
                    **{k: outcome.status[k] for k in ("source", "dotsec") if k in outcome.status},
                    "conditions": list(conditions.values()),
                    "targets": targets,
                }
            )
        )
    else:
        _print_plan(f"{namespace}/{(manifest.get('metadata') or {}).get('name', '')}", outcome, targets)
    failed = any(t.get("state") == "Failed" for t in targets)
    if not verified or failed or (apply and not outcome.ready):
        raise SystemExit(REASON_EXIT_CODES.get(outcome.reason, EXIT_SYNC_FAILED))


def _print_plan(where: str, outcome: Outcome, targets: list[dict[str, Any]]) -> None:
    """`plan`/`sync` text output: the outcome, the bundle, and `+ KEY` / `~ KEY` / `- KEY` per target."""
    bundle = outcome.status.get("bundle") or {}
    click.echo(f"{where}: {outcome.reason}: {outcome.message}")
    dotsec = outcome.status.get("dotsec") if outcome.status.get("source") == "dotsec" else None
    if dotsec:
        verified = "MAC verified" if dotsec.get("macVerified") else "MAC not verified"
        click.echo(f"dotsec file {dotsec['fileDigest']} ({dotsec['keys']} keys, {verified})")
    elif bundle:
        click.echo(f"bundle {bundle['timestamp']} ({bundle['layout']} layout, generation {bundle['generation']})")
    for target in targets:
        plan = target.get("plan") or {}
        click.echo(f"target {target['name']} ({target['kind']}): {target['state']} - {target['message']}")
        for verb, sign in (("create", "+"), ("update", "~"), ("delete", "-")):
            for key in plan.get(verb, []):
                click.echo(f"  {sign} {key}")
        if plan:
            click.echo(f"  = {plan.get('unchanged', 0)} unchanged")


def _manifest_options(fn: F) -> F:
    for option in reversed(
        (
            click.option(
                "-f",
                "--filename",
                "manifest_file",
                type=click.File("r"),
                required=True,
                help="A VaultBundle manifest ('-' reads stdin).",
            ),
            click.option("--namespace", "-n", help="Namespace (default: the manifest's, else 'default')."),
            click.option("--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file."),
            click.option("--json", "as_json", is_flag=True, help="Print JSON (names only, never values)."),
            click.option("--digest-key-file", envvar="VAULTBUNDLE_DIGEST_KEY_FILE", help="Key for content digests."),
            click.option(
                "--egress-allow-local",
                is_flag=True,
                help="Let the manifest's URLs (S3 endpoint, store URLs) reach loopback (test beds only).",
            ),
        )
    ):
        fn = option(fn)
    return fn


@cli.command()
@_manifest_options
def plan(**options: Any) -> None:
    """Show what syncing a VaultBundle manifest would create, update or delete: key names only, no writes."""
    _one_shot(apply=False, **options)


@cli.command()
@_manifest_options
def sync(**options: Any) -> None:
    """Sync a VaultBundle manifest once, without a running operator (e.g. in a CI pipeline).

    Exits 0 when every target holds the bundle. A target with deletionPolicy: Delete needs the VaultBundle to
    exist in the cluster (its uid owns the Secret)."""
    _one_shot(apply=True, **options)


SETTING_FLAGS: dict[str, str] = {}  # `run` flag -> the Settings field it sets (docs and tests read this)


def _setting(flag: str, name: str, **kwargs: Any) -> Callable[[F], F]:
    """A `run` flag whose default and help text are the `Settings` field *name*'s (durations as "10s")."""
    SETTING_FLAGS[flag] = name
    default = getattr(DEFAULTS, name)
    if name.endswith("_seconds"):
        default = format_duration(default)
    return click.option(flag, default=default, show_default=default is not None, help=field_doc(name), **kwargs)


@cli.command()
@click.option("--namespace", "-n", "namespaces", multiple=True, help="Watch this namespace (repeatable).")
@click.option("--all-namespaces", "-A", "all_namespaces", is_flag=True, help="Watch every namespace.")
@_setting("--kubeconfig", "kubeconfig", envvar="KUBECONFIG")
@_setting("--metrics-port", "metrics_port", type=int)
@_setting("--metrics-host", "metrics_host")
@_setting("--metrics-tls-cert-file", "metrics_tls_cert_file")
@_setting("--metrics-tls-key-file", "metrics_tls_key_file")
@_setting("--metrics-token-file", "metrics_token_file")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_setting("--workers", "workers", type=int)
@_setting("--max-concurrent", "max_concurrent", type=click.IntRange(min=1))
@_setting("--max-concurrent-per-namespace", "max_concurrent_per_namespace", type=click.IntRange(min=1))
@_setting("--reconcile-timeout", "reconcile_timeout_seconds")
@_setting("--s3-timeout", "s3_timeout_seconds")
@_setting("--min-kdf-iterations", "min_kdf_iterations", type=click.IntRange(min=1))
@_setting("--max-kdf-iterations", "max_kdf_iterations", type=click.IntRange(min=1, max=MAX_SUPPORTED_ITERATIONS))
@_setting("--min-refresh-interval", "min_refresh_seconds")
@_setting("--min-drift-check-interval", "min_drift_check_seconds")
@_setting("--drift-debounce", "drift_debounce_seconds")
@_setting("--digest-key-file", "digest_key_file", envvar="VAULTBUNDLE_DIGEST_KEY_FILE")
@_setting("--leader-election-namespace", "leader_election_namespace", envvar="POD_NAMESPACE")
@_setting("--lease-duration", "lease_seconds")
@_setting("--shard", "shard")
@_setting("--egress-allow-local", "egress_allow_local", is_flag=True)
@_setting("--egress-deny-cidr", "egress_deny_cidrs", multiple=True)
@_setting("--egress-allow-cidr", "egress_allow_cidrs", multiple=True)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging (never logs secret values).")
def run(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    kubeconfig: str | None,
    metrics_port: int,
    metrics_host: str,
    metrics_tls_cert_file: str | None,
    metrics_tls_key_file: str | None,
    metrics_token_file: str | None,
    log_format: str,
    workers: int | None,
    max_concurrent: int,
    max_concurrent_per_namespace: int,
    reconcile_timeout: str,
    s3_timeout: str,
    min_kdf_iterations: int,
    max_kdf_iterations: int,
    min_refresh_interval: str,
    min_drift_check_interval: str,
    drift_debounce: str,
    digest_key_file: str | None,
    leader_election_namespace: str | None,
    lease_duration: str,
    shard: str | None,
    egress_allow_local: bool,
    egress_deny_cidr: tuple[str, ...],
    egress_allow_cidr: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run the operator: keep every VaultBundle's targets equal to its latest verified bundle."""
    import kopf  # noqa: PLC0415 - heavy; only this command needs it

    from .controller import build_registry  # noqa: PLC0415
    from .observability import MetricsConfigError, MetricsSecurity, disable_core_dumps  # noqa: PLC0415
    from .spec import parse_duration  # noqa: PLC0415

    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace (one or more) or --all-namespaces")
    if min_kdf_iterations > max_kdf_iterations:
        raise click.UsageError("--min-kdf-iterations must not exceed --max-kdf-iterations")
    deadlines = {
        flag: parse_duration(text, flag)
        for flag, text in (("--reconcile-timeout", reconcile_timeout), ("--s3-timeout", s3_timeout))
    }
    for flag, seconds in deadlines.items():
        if seconds <= 0:
            raise click.UsageError(f"{flag} must be longer than 0s")
    security = MetricsSecurity(metrics_tls_cert_file, metrics_tls_key_file, metrics_token_file)
    try:  # fail here, with the flag named, rather than in kopf's startup handler
        security.ssl_context()
        security.token()
    except MetricsConfigError as exc:
        raise click.UsageError(str(exc)) from None
    disable_core_dumps()
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON if log_format == "json" else kopf.LogFormat.FULL)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "kubernetes"):  # their debug output shows requests
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:  # kopf logs every handled Secret event at INFO; our own log says what matters
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings = Settings(
        kubeconfig=kubeconfig,
        namespaces=tuple(namespaces),
        workers=workers,
        digest_key_file=digest_key_file,
        max_concurrent=max_concurrent,
        max_concurrent_per_namespace=max_concurrent_per_namespace,
        reconcile_timeout_seconds=deadlines["--reconcile-timeout"],
        s3_timeout_seconds=deadlines["--s3-timeout"],
        min_kdf_iterations=min_kdf_iterations,
        max_kdf_iterations=max_kdf_iterations,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        metrics_tls_cert_file=metrics_tls_cert_file,
        metrics_tls_key_file=metrics_tls_key_file,
        metrics_token_file=metrics_token_file,
        min_refresh_seconds=parse_duration(min_refresh_interval, "--min-refresh-interval"),
        min_drift_check_seconds=parse_duration(min_drift_check_interval, "--min-drift-check-interval"),
        drift_debounce_seconds=parse_duration(drift_debounce, "--drift-debounce"),
        shard=Shard.parse(shard) if shard else None,
        leader_election_namespace=leader_election_namespace or None,
        lease_seconds=parse_duration(lease_duration, "--lease-duration"),
        egress_allow_local=egress_allow_local,
        egress_deny_cidrs=tuple(egress_deny_cidr),
        egress_allow_cidrs=tuple(egress_allow_cidr),
    )
    try:  # a malformed CIDR or POD_IP fails here, with the flag named
        settings.egress_policy()
    except ValueError as exc:
        raise click.UsageError(f"--egress-deny-cidr / --egress-allow-cidr / POD_IP: {exc}") from None
    kopf.run(
        registry=build_registry(settings), standalone=True, clusterwide=all_namespaces, namespaces=list(namespaces)
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn our typed errors into their exit codes and a one-line hint."""
    try:
        cli.main(args=argv, prog_name="vaultbundle", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except VSyncError as exc:
        click.echo(f"error: {type(exc).__name__}: {exc}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)
    except ValueError as exc:
        click.echo(f"error: invalid input: {exc}", err=True)
        sys.exit(errors.EXIT_USAGE)
    sys.exit(0)


if __name__ == "__main__":
    main()
