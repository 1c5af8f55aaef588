"""`spec.schema`: a dotsec.schema text from a ConfigMap key, enforced on a bundle's values before any target
is planned, whatever the source (issue #16 item 3).

For a vsync bundle the key/values are checked as dotsec checks a `.sec` without inline directives
(`dotsec.check_values`: every schema key required unless `@optional`, unknown keys a warning, types, bounds,
unanchored patterns). A violation is `SchemaViolation` naming each key and rule, never a value, and the cycle
stops before the fan-out: nothing is written. Warnings (deprecated or unknown keys) become one Warning Event.
For a dotsec source the same text is also bound through the file MAC (`dotsec_source`).
"""

from __future__ import annotations

import asyncio

from . import dotsec, sources
from .bundles import Bundle
from .errors import Reason, SchemaViolationError
from .spec import SecretRef
from .status import Event

MAX_EVENT_FINDINGS = 20


async def read(kube: sources.SourceReader, namespace: str, ref: SecretRef | None) -> str | None:
    """The schema text, or None without `spec.schema`. A missing ConfigMap or key is a `SourceError`."""
    if ref is None:
        return None
    return (await sources.read_config_map_value(kube, namespace, ref, "schema")).text


def _check(bundle: Bundle, text: str) -> list[str]:
    findings = dotsec.check_values(bundle.vault.kv, dotsec.parse_schema(text))
    errors = [str(finding) for finding in findings if finding.error]
    if errors:
        raise SchemaViolationError(errors)
    return [str(finding) for finding in findings if not finding.error]


async def enforce(bundle: Bundle, text: str | None) -> list[str]:
    """Raise `SchemaViolationError` (or `DotsecSchemaInvalidError`) when the bundle breaks the schema; return
    the warnings. Runs in a thread: a 10,000-key bundle against patterns is not free."""
    if text is None:
        return []
    return await asyncio.to_thread(_check, bundle, text)


def warning_events(warnings: list[str]) -> list[Event]:
    """One Warning Event (`SchemaWarning`) for the schema's warnings: key names and rules only."""
    if not warnings:
        return []
    shown = "; ".join(warnings[:MAX_EVENT_FINDINGS])
    more = f" (and {len(warnings) - MAX_EVENT_FINDINGS} more)" if len(warnings) > MAX_EVENT_FINDINGS else ""
    return [Event("Warning", Reason.SCHEMA_WARNING, f"{len(warnings)} schema warning(s): {shown}{more}")]
