"""Where vaultbundle once differed from upstream vsync, against a real S3 API server (the bed's moto).

* `push`/`pull` append vsync's `audit.csv` rows (format and append protocol), read back here with an
  independent reader that follows vsync's rules; `--no-audit` writes none;
* `push --layout runtime` of a folder holding `.env.<env>` seals its key/values;
* `share export` of a bundle passphrase vsync's import would refuse says so (not "damaged").
"""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.integration.conftest import Bucket
from tests.integration.test_cli_s3 import make_folder, pull, push, run
from vaultbundle import __version__, audit
from vaultbundle.remote import S3Objects

AUDIT_HEADER = "ts,action,version_ts,hostname,local_ip,os_user,git_email,vsync_version,bun_version,meta"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def vsync_parse_csv(text: str) -> list[list[str]]:
    """vsync's CSV: rows end in LF; a field is quoted only when it holds a quote, comma, CR or LF."""
    rows: list[list[str]] = []
    fields: list[str] = []
    field, quoted, i = "", False, 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == '"' and text[i + 1 : i + 2] == '"':
                field, i = field + '"', i + 2
                continue
            if char == '"':
                quoted = False
            else:
                field += char
        elif char == '"' and not field:
            quoted = True
        elif char == ",":
            fields.append(field)
            field = ""
        elif char == "\n":
            rows.append([*fields, field])
            fields, field = [], ""
        else:
            field += char
        i += 1
    assert not quoted and not fields and not field, "the file must end with a complete, LF-terminated row"
    return rows


def vsync_render(rows: list[list[str]]) -> str:
    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in '",\r\n') else value

    return "".join(",".join(cell(value) for value in row) + "\n" for row in rows)


def read_audit(bucket: Bucket) -> list[dict[str, str]]:
    text = bucket.get(f"{bucket.config.prefix}audit.csv").decode("utf-8")
    rows = vsync_parse_csv(text)
    assert vsync_render(rows) == text, "quoting must be exactly vsync's (only where needed)"
    header, *events = rows
    assert ",".join(header) == AUDIT_HEADER
    assert all(len(event) == len(header) for event in events)
    return [dict(zip(header, event, strict=True)) for event in events]


def test_push_and_pull_append_vsync_audit_rows(bucket: Bucket, tmp_path: Path) -> None:
    started = datetime.now(UTC) - timedelta(seconds=2)
    folder = make_folder(tmp_path, {".env.prod": b"A=1\n"})
    ts = push(bucket, "cli", folder)
    pull(bucket, "--json")
    rows = read_audit(bucket)
    assert [(row["action"], row["version_ts"]) for row in rows] == [("push", ts), ("pull", ts)]
    for row in rows:
        assert ISO_MS.match(row["ts"]), row["ts"]
        moment = datetime.strptime(row["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert started <= moment <= datetime.now(UTC)
        assert row["hostname"] == socket.gethostname()
        assert row["vsync_version"] == f"vaultbundle/{__version__}"
        assert (row["bun_version"], row["meta"]) == ("", "")
        assert not row["local_ip"].startswith("127.")
    assert rows[0]["ts"] <= rows[1]["ts"]


def test_no_audit_writes_no_row(bucket: Bucket, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {".env.prod": b"A=1\n"})
    ts = push(bucket, "cli", folder, "--no-audit")
    pull(bucket, "--json", "--no-audit")
    assert f"{bucket.config.prefix}audit.csv" not in bucket.keys()
    assert ts in bucket.keys()[-1]


def test_rows_are_appended_after_vsync_rows_even_without_a_final_newline(bucket: Bucket, tmp_path: Path) -> None:
    written_by_vsync = (
        f"{AUDIT_HEADER}\n"
        '2026-04-29T10:30:45.123Z,push,20260429-103045,"lap,top",10.0.0.7,ana,ana@example.com,0.17.0,1.2.3,'
        '"{""event"":""push""}"'
    )
    bucket.put(f"{bucket.config.prefix}audit.csv", written_by_vsync.encode())
    ts = push(bucket, "cli", make_folder(tmp_path, {".env.prod": b"A=1\n"}))
    body = bucket.get(f"{bucket.config.prefix}audit.csv").decode()
    assert body.startswith(written_by_vsync + "\n")
    rows = read_audit(bucket)
    assert rows[0]["hostname"] == "lap,top" and rows[0]["meta"] == '{"event":"push"}'
    assert (rows[1]["action"], rows[1]["version_ts"]) == ("push", ts)


class _RacingClient:
    """The real S3 client, but another writer appends a row just before our first conditional PUT."""

    def __init__(self, client: Any, bucket: Bucket) -> None:
        self._client, self._bucket, self.raced = client, bucket, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **kwargs: Any) -> Any:
        if not self.raced and kwargs.get("IfMatch"):
            self.raced = True
            key = kwargs["Key"]
            theirs = b"2026-04-29T10:31:00.000Z,pull,20260429-103045,x,,,,0.17.0,,\n"
            self._bucket.put(key, self._bucket.get(key) + theirs)
        return self._client.put_object(**kwargs)


def test_a_lost_race_is_retried_and_both_rows_survive(bucket: Bucket, tmp_path: Path) -> None:
    push(bucket, "cli", make_folder(tmp_path, {".env.prod": b"A=1\n"}))
    racing = _RacingClient(bucket.client, bucket)
    objects = S3Objects(bucket.config, client=racing)
    outcome = audit.record(objects, bucket.config.prefix, "pull", "20260429-103045")
    assert outcome is audit.Outcome.APPENDED and racing.raced
    assert [row["action"] for row in read_audit(bucket)] == ["push", "pull", "pull"]
    assert read_audit(bucket)[1]["hostname"] == "x"  # the other writer's row kept, ours after it


def test_runtime_push_takes_key_values_from_env_dot_env(bucket: Bucket, tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {".env.prod": b"A=1\nB='two'\n", "tls/cert.pem": b"PEM"})
    push(bucket, "runtime", folder)
    revealed = json.loads(pull(bucket, "--json", "--reveal").stdout)
    assert revealed["kv"] == {"A": "1", "B": "two"}
    assert revealed["files"] == ["tls/cert.pem"]


def test_share_export_of_a_short_bundle_passphrase_says_why(bucket: Bucket, tmp_path: Path) -> None:
    short = tmp_path / "short-passphrase"
    short.write_text("only-19-characters!")
    short.chmod(0o600)
    out = tmp_path / "prod.share"
    result = run(
        "share", "export", "--config-file", bucket.config_file, "--passphrase-file", short, "--out", out, ok=False
    )
    assert result.returncode == 2
    assert "ShareKeyTooShortError" in result.stderr and "20 characters" in result.stderr
    assert "damaged" not in result.stderr and "share passphrase:" not in result.stderr
    assert "only-19-characters!" not in result.stderr + result.stdout
    assert not out.exists()
