"""Remote secret names for external stores: declarative transforms, then the store's own rules.

Order: the selection (include/exclude/`keys.rename`/`files.rename`) gives names; `naming` then applies
`prefix`, `case` and dash/underscore replacement; the result must satisfy the store's rule. Invalid names and
two sources landing on one remote name are errors that list every offender, before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..fields import boolean, obj, string
from ..selection import SelectionError

CASES = ("Preserve", "Upper", "Lower")


@dataclass(frozen=True)
class Naming:
    prefix: str = ""
    case: str = "Preserve"
    underscores_to_dashes: bool = False
    dashes_to_underscores: bool = False

    def apply(self, name: str) -> str:
        name = self.prefix + name
        if self.case == "Upper":
            name = name.upper()
        elif self.case == "Lower":
            name = name.lower()
        if self.underscores_to_dashes:
            name = name.replace("_", "-")
        if self.dashes_to_underscores:
            name = name.replace("-", "_")
        return name


@dataclass(frozen=True)
class NameRule:
    """A store's naming rule, e.g. GitHub: `[A-Z0-9_]`, not starting with GITHUB_ or a digit."""

    store: str
    pattern: re.Pattern[str]
    max_length: int
    description: str
    forbidden_prefixes: tuple[str, ...] = ()
    case_insensitive_prefixes: bool = True

    def problem(self, name: str) -> str | None:
        if not name or len(name) > self.max_length:
            return f"length must be 1..{self.max_length}"
        if not self.pattern.fullmatch(name):
            return self.description
        folded = name.upper() if self.case_insensitive_prefixes else name
        for prefix in self.forbidden_prefixes:
            if folded.startswith(prefix.upper() if self.case_insensitive_prefixes else prefix):
                return f"must not start with {prefix}"
        return None


def parse_naming(raw: Any, path: str) -> Naming:
    body = obj(raw, path)
    case = string(body.get("case"), f"{path}.case", default="Preserve")
    if case not in CASES:
        raise SpecError(f"{path}.case must be one of {', '.join(CASES)}")
    naming = Naming(
        prefix=string(body.get("prefix"), f"{path}.prefix"),
        case=case,
        underscores_to_dashes=boolean(body.get("underscoresToDashes"), f"{path}.underscoresToDashes", False),
        dashes_to_underscores=boolean(body.get("dashesToUnderscores"), f"{path}.dashesToUnderscores", False),
    )
    if naming.underscores_to_dashes and naming.dashes_to_underscores:
        raise SpecError(f"{path}: underscoresToDashes and dashesToUnderscores exclude each other")
    return naming


def remote_names(selected: Mapping[str, bytes], naming: Naming, rule: NameRule) -> dict[str, bytes]:
    """Map selected names to remote names; every invalid name and every collision is reported at once."""
    result: dict[str, bytes] = {}
    source_of: dict[str, str] = {}
    problems: list[str] = []
    for name in sorted(selected):
        remote = naming.apply(name)
        problem = rule.problem(remote)
        if problem:
            problems.append(f"{name!r} -> {remote!r}: {problem}")
        elif remote in result:
            problems.append(f"{source_of[remote]!r} and {name!r} both map to {remote!r}")
        else:
            result[remote], source_of[remote] = selected[name], name
    if problems:
        raise SelectionError(
            f"invalid {rule.store} secret names: " + "; ".join(problems) + " (adjust keys.rename or naming)"
        )
    return result
