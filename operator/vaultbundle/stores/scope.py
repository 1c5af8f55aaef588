"""Scopes: where one VaultBundle may write in an admin's store, and the proof that nobody else may write there.

A ClusterTargetStore's scope is a set of templates with the placeholders `{namespace}` and `{name}`. Expanding a
template is not enough: with `{namespace}-` the name `team-a-x` lies in namespace team's scope *and* in team-a's.
So every check asks the opposite question too, "under which (namespace, name) is this string in scope?", by
matching the template against it, and accepts only when the answer is this VaultBundle alone. Pure; no I/O.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from vaultbundle.errors import PolicyDeniedError, Reason, SpecError, TargetError

AWS, GCP, AZURE, VAULT, GITHUB, KMS = (
    "awsSecretsManager",
    "gcpSecretManager",
    "azureKeyVault",
    "hashicorpVault",
    "githubActions",
    "awsKms",  # not a target: the KMS key of a dotsec source (`spec.source.dotsec.kms.storeRef`)
)
KINDS = (AWS, GCP, AZURE, VAULT, GITHUB, KMS)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
VAULT_PATH = re.compile(r"[A-Za-z0-9._~@=+:,-]+(/[A-Za-z0-9._~@=+:,-]+)*")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}|[{}]")
PLACEHOLDERS = ("{namespace}", "{name}")


@dataclass(frozen=True)
class Scope:
    """The admin's scope templates (with `{namespace}` / `{name}`), applicable fields depend on the kind."""

    name_prefix: str = ""  # AWS, GCP, Azure
    mount: str = ""  # Vault
    path_prefix: str = ""  # Vault
    repositories: tuple[str, ...] = ()  # GitHub `owner/repo` patterns; `*` matches within the repo name
    organization: str = ""  # GitHub
    environments: tuple[str, ...] = ()  # GitHub environment-name patterns (placeholders, `*`); none: no environments
    keys: tuple[str, ...] = ()  # awsKms: key ARNs (literal) and alias ARNs (placeholders in the alias name)


# --- KMS key ARNs ----------------------------------------------------------------------------------------------------
KMS_KEY_ARN = re.compile(
    r"arn:aws[a-z-]*:kms:(?P<region>[a-z]{2}(-[a-z0-9]+)+-[0-9]+):[0-9]{12}:key/"
    r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
)
KMS_ALIAS_ARN = re.compile(r"arn:aws[a-z-]*:kms:(?P<region>[a-z]{2}(-[a-z0-9]+)+-[0-9]+):[0-9]{12}:alias/(?P<alias>.+)")
KMS_ALIAS_NAME = re.compile(r"[A-Za-z0-9/_-]{1,250}")


# --- placeholders and scope matching ---------------------------------------------------------------------------------
def check_values(namespace: str, name: str) -> None:
    if len(namespace) > 63 or not DNS_LABEL.fullmatch(namespace):
        raise SpecError(f"namespace {namespace!r:.80} is not a Kubernetes namespace name (DNS label)")
    if len(name) > 253 or not DNS_SUBDOMAIN.fullmatch(name):
        raise SpecError(f"name {name!r:.80} is not a Kubernetes object name (DNS subdomain)")


def check_segments(text: str) -> None:
    """Refuse what could leave a scope: '..' / '.' segments, empty segments, a leading '/', control characters."""
    if text.startswith("/") or "//" in text:
        raise SpecError(f"{text!r:.120} has an empty path segment")
    if any(seg in (".", "..") for seg in text.split("/")):
        raise SpecError(f"{text!r:.120} has a '.' or '..' segment")
    if any(ord(c) < 0x21 or c == "\x7f" for c in text):
        raise SpecError(f"{text!r:.120} contains whitespace or control characters")


_NS, _NAME, _WILD = "{namespace}", "{name}", "*"


@dataclass(frozen=True)
class Template:
    """A scope template split into literals and tokens (`{namespace}`, `{name}`, and `*` where allowed)."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, *, wildcards: bool = False) -> Template:
        for brace in _PLACEHOLDER.findall(text):
            if brace not in PLACEHOLDERS:
                raise SpecError(f"{brace!r} is not a placeholder (use {{namespace}} or {{name}})")
        pieces = re.split(r"(\{namespace\}|\{name\}" + (r"|\*" if wildcards else "") + ")", text)
        parts = tuple(p for p in pieces if p)
        tokens = [p for p in parts if p in (_NS, _NAME, _WILD)]
        if tokens.count(_NS) > 1 or tokens.count(_NAME) > 1 or tokens.count(_WILD) > 1:
            raise SpecError("each placeholder (and '*') may appear at most once")
        for left, right in itertools.pairwise(parts):
            if left in (_NS, _NAME, _WILD) and right in (_NS, _NAME, _WILD):
                raise SpecError(f"{left} and {right} must be separated by a literal (else the scope is ambiguous)")
        return cls(parts=parts)

    def uses(self) -> tuple[bool, bool]:
        return _NS in self.parts, _NAME in self.parts

    def owners(self, text: str, *, tail: bool, fold: bool, wild_chars: str = "") -> set[tuple[str | None, str | None]]:
        """Every (namespace, name) under which *text* is in this template's scope (`tail`: a prefix scope).

        A placeholder value must itself be a valid namespace / object name; `*` and the tail match any run of
        characters (the tail may be empty only for exact paths: the caller decides). Used to prove a name belongs
        to exactly one tenant: e.g. ``{namespace}-`` makes ``team-a-x`` belong to both ``team`` and ``team-a``.
        """
        parts = tuple(p.lower() if fold and p not in (_NS, _NAME, _WILD) else p for p in self.parts)
        subject = text.lower() if fold else text
        found: set[tuple[str | None, str | None]] = set()
        _match(parts + ((_WILD,) if tail else ()), subject, 0, None, None, found, wild_chars)
        return found


_TOKEN_CHARS = {
    _NS: frozenset("abcdefghijklmnopqrstuvwxyz0123456789-"),
    _NAME: frozenset("abcdefghijklmnopqrstuvwxyz0123456789-."),
}


def _valid_value(token: str, value: str) -> bool:
    if token == _NS:
        return len(value) <= 63 and DNS_LABEL.fullmatch(value) is not None
    return len(value) <= 253 and DNS_SUBDOMAIN.fullmatch(value) is not None


def _match(
    parts: tuple[str, ...],
    s: str,
    pos: int,
    ns: str | None,
    nm: str | None,
    found: set[tuple[str | None, str | None]],
    wild_chars: str,
) -> None:
    if not parts:
        if pos == len(s):
            found.add((ns, nm))
        return
    head, rest = parts[0], parts[1:]
    if head not in (_NS, _NAME, _WILD):
        if s.startswith(head, pos):
            _match(rest, s, pos + len(head), ns, nm, found, wild_chars)
        return
    if head == _WILD and not rest and not wild_chars:
        found.add((ns, nm))  # a prefix scope's tail: anything goes
        return
    limit = {_NS: 63, _NAME: 253}.get(head, len(s))
    start = pos if head == _WILD else pos + 1
    for end in range(start, min(len(s), pos + limit) + 1):
        value = s[pos:end]
        if head == _WILD:
            if wild_chars and value and value[-1] not in wild_chars:
                break
            _match(rest, s, end, ns, nm, found, wild_chars)
        elif value[-1] not in _TOKEN_CHARS[head]:
            break  # no longer value can be valid either
        elif _valid_value(head, value):
            _match(rest, s, end, value if head == _NS else ns, value if head == _NAME else nm, found, wild_chars)


def expand(template: str, namespace: str, name: str) -> str:
    """Fill `{namespace}` and `{name}` (the VaultBundle's namespace and name) into an admin's scope template.

    Only those two placeholders exist; any other `{...}` or a stray brace is refused, as are values that are not a
    namespace / object name and results with '..', '.' or empty segments.
    """
    check_values(namespace, name)
    Template.parse(template)
    result = template.replace(_NS, namespace).replace(_NAME, name)
    check_segments(result)
    return result


def scoped_name(prefix: str, name: str) -> str:
    """The store-side name of *name* under an (expanded) *prefix*: the prefix, then the name, nothing in between."""
    if not name:
        raise SpecError("a secret name under a store prefix must not be empty")
    return prefix + name


# --- per-kind name rules ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _NameRule:
    chars: re.Pattern[str]
    max_length: int
    fold: bool
    describe: str


NAME_RULES: Mapping[str, _NameRule] = {
    AWS: _NameRule(re.compile(r"[A-Za-z0-9/_+=.@-]+"), 512, False, "letters, digits and /_+=.@-"),
    GCP: _NameRule(re.compile(r"[A-Za-z0-9_-]+"), 255, False, "letters, digits, '_' and '-'"),
    AZURE: _NameRule(re.compile(r"[A-Za-z0-9-]+"), 127, True, "letters, digits and '-'"),
}
_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")
_ORGANIZATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
_REPO_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-"


@dataclass(frozen=True)
class BoundScope:
    """A store's scope for one VaultBundle (namespace + name): the checks a target makes before every write."""

    store: str
    kind: str
    namespace: str
    name: str
    templates: Scope

    def _deny(self, what: str) -> PolicyDeniedError:
        return PolicyDeniedError(
            f"{what} is outside the scope ClusterTargetStore {self.store} grants to this "
            "VaultBundle; pick a name inside it, or ask your cluster admin to change spec.scope"
        )

    def _owned(self, template: Template, owners: set[tuple[str | None, str | None]]) -> bool:
        uses_ns, uses_name = template.uses()
        ours = (self.namespace if uses_ns else None, self.name if uses_name else None)
        return owners == {ours}

    @property
    def prefix(self) -> str:
        """AWS / GCP / Azure: the expanded name prefix every remote name of this VaultBundle starts with."""
        return expand(self.templates.name_prefix, self.namespace, self.name)

    def scoped_name(self, name: str) -> str:
        """AWS / GCP / Azure: prefix + *name*, checked (`check_name`); use it for every create, adopt and delete."""
        full = scoped_name(self.prefix, name)
        self.check_name(full)
        return full

    def check_name(self, full_name: str) -> None:
        """AWS / GCP / Azure: *full_name* obeys the store's name rules and belongs to this VaultBundle alone."""
        rule = NAME_RULES[self.kind]
        if len(full_name) > rule.max_length or not rule.chars.fullmatch(full_name):
            raise TargetError(
                Reason.INVALID_SELECTION,
                f"secret name {full_name!r:.140} is not a valid {self.kind} name "
                f"(1..{rule.max_length} {rule.describe})",
            )
        if "/" in full_name:
            try:
                check_segments(full_name)
            except SpecError:
                raise self._deny(f"secret name {full_name!r:.140}") from None
        template = Template.parse(self.templates.name_prefix)
        owners = template.owners(full_name, tail=True, fold=rule.fold)
        if not self._owned(template, owners) or full_name == self.prefix:
            raise self._deny(f"secret name {full_name!r:.140}")

    def check_path(self, mount: str, path: str) -> None:
        """Vault: *mount* is the store's mount and *path* is the prefix itself or below it, for this tenant only."""
        if mount.strip("/") != self.templates.mount.strip("/"):
            raise self._deny(f"Vault mount {mount!r:.80}")
        if not path or not VAULT_PATH.fullmatch(path) or any(s in (".", "..") for s in path.split("/")):
            raise self._deny(f"Vault path {path!r:.140}")
        template = Template.parse(self.templates.path_prefix.strip("/"))
        owners = template.owners(path, tail=False, fold=False)
        below = Template(parts=(*template.parts, "/")).owners(path, tail=True, fold=False)
        if not self._owned(template, owners | below):
            raise self._deny(f"Vault path {path!r:.140}")

    def check_repository(self, repository: str) -> None:
        """GitHub: `owner/repo` matches one of the store's repository patterns, for this tenant only."""
        if not _REPOSITORY.fullmatch(repository):
            raise PolicyDeniedError(f"{repository!r:.150} is not an owner/repo name")
        for pattern in self.templates.repositories:
            template = Template.parse(pattern, wildcards=True)
            owners = template.owners(repository, tail=False, fold=True, wild_chars=_REPO_CHARS)
            if owners and self._owned(template, owners):
                return
        raise self._deny(f"repository {repository}")

    def check_environment(self, environment: str) -> None:
        """GitHub: environment secrets only for an environment matching one of the store's patterns (this tenant's
        alone; case-insensitive, as GitHub compares environment names). No patterns: no environment secrets. The name
        is a URL path segment: '.', '..', '%' (an encoded separator) and control characters are refused outright."""
        if environment in (".", "..") or any(c in "/%" or ord(c) < 0x20 or c == "\x7f" for c in environment):
            raise self._deny(f"environment {environment!r:.80}")
        for pattern in self.templates.environments:
            template = Template.parse(pattern, wildcards=True)
            owners = template.owners(environment, tail=False, fold=True)
            if owners and self._owned(template, owners):
                return
        raise self._deny(f"environment {environment!r:.80}")

    def check_github(self, repository: str, environment: str, organization: str, visibility: str = "") -> None:
        """GitHub: where a target writes (its repository, and environment if any, or its organization) is in scope;
        the target calls it before every read and write, `authorize` once on the spec. An organization secret must
        be `visibility: selected` (its repositories are checked by the target, `check_repository` per id): `all` or
        `private` would hand it to every repository of the organization, the other tenants' included."""
        if repository:
            self.check_repository(repository)
            if environment:
                self.check_environment(environment)
        elif organization:
            self.check_organization(organization)
            if visibility != "selected":
                raise PolicyDeniedError(
                    f"organization secrets with visibility {visibility or 'private'} would reach repositories outside "
                    f"the scope ClusterTargetStore {self.store} grants to this VaultBundle; use visibility: selected "
                    "with selectedRepositoryIds of repositories in that scope"
                )

    @property
    def kms_keys(self) -> tuple[str, ...]:
        """awsKms: the key and alias ARNs this VaultBundle may decrypt with (aliases expanded for it)."""
        return tuple(expand(entry, self.namespace, self.name) for entry in self.templates.keys)

    @property
    def kms_key_id(self) -> str:
        """awsKms: the one key ARN to pass as Decrypt's KeyId (so KMS itself refuses any other key) when the scope
        is exactly one key ARN; else "" (the response's KeyId is checked, `check_kms_key`)."""
        keys = self.templates.keys
        return keys[0] if len(keys) == 1 and KMS_KEY_ARN.fullmatch(keys[0]) else ""

    def check_kms_key(self, key_arn: str, resolve: Callable[[str], str]) -> None:
        """awsKms: *key_arn* (the KeyId a Decrypt answered with) is a key of this VaultBundle's scope: one of its key
        ARNs, or the key an alias of its scope points at (*resolve*: alias ARN -> key ARN, i.e. DescribeKey; asked
        only for aliases that belong to this VaultBundle alone). Raises `PolicyDeniedError`."""
        deny = PolicyDeniedError(
            f"the file's KMS key is not one ClusterTargetStore {self.store} grants to this VaultBundle "
            "(spec.scope.keys); the decrypted key was discarded and nothing was written: wrap the file's DEK "
            "with a key in scope, or ask your cluster admin"
        )
        if not KMS_KEY_ARN.fullmatch(key_arn):
            raise deny
        for entry in self.templates.keys:
            if KMS_KEY_ARN.fullmatch(entry):
                if entry == key_arn:
                    return
                continue
            template = Template.parse(entry)
            alias = expand(entry, self.namespace, self.name)
            if self._owned(template, template.owners(alias, tail=False, fold=False)) and resolve(alias) == key_arn:
                return
        raise deny

    def check_organization(self, organization: str) -> None:
        """GitHub: organization secrets only for the store's organization (case-insensitive)."""
        allowed = self.templates.organization
        if not allowed or not _ORGANIZATION.fullmatch(organization):
            raise self._deny(f"organization {organization!r:.60}")
        if expand(allowed, self.namespace, self.name).lower() != organization.lower():
            raise self._deny(f"organization {organization}")
