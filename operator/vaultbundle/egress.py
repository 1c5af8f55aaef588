"""Egress policy: which addresses the operator may connect to for a URL a tenant chose.

A tenant controls several URLs (the S3 endpoint inside its config blob, a Vault address, a GitHub API URL, store
endpoints used with its own credentials). Without a policy each one is a server-side request forgery: the
operator would connect, from inside the cluster, wherever the tenant points it — the cloud metadata service
(169.254.169.254, fd00:ec2::254), the pod's own loopback (its metrics port, a mesh sidecar's admin API) or
an internal network the admin wants kept apart.

The policy is operator-wide (flags and chart values, never a tenant field) and is checked twice:

* before a tenant URL is used, `check_url` resolves its host and refuses it when any address is denied, with a
  clear `PolicyDenied` error naming the host and the rule; a host found allowed is not resolved again for
  `ALLOWED_TTL_S` (10,000 VaultBundles on one S3 endpoint would otherwise make one DNS lookup, in a pod up to
  five with `ndots:5`, per refresh each), while a refusal is never remembered;
* while tenant I/O runs, inside `tenant_egress()`, a Python audit hook (`socket.connect`) refuses every denied
  connection at connect time, so DNS answers that change between the check and the connection (rebinding) and
  redirects to another host are refused too. The hook only looks at the thread running tenant I/O: the
  operator's own connections (the Kubernetes API, an admin `ClusterTargetStore`'s identity endpoint) are not
  tenant egress. A connection made by a library's own C core (gRPC) does not pass through Python sockets; for
  those the pre-flight `check_url` is the guard.

Always denied: link-local addresses (169.254.0.0/16 and fe80::/10, which hold the cloud metadata services) and
fd00:ec2::254. Denied unless `allow_local`: loopback (127.0.0.0/8, ::1), the unspecified address and the pod's
own addresses. Admins add CIDRs (e.g. the pod or node network) with `deny_cidrs`; `allow_cidrs` re-opens a part
of a denied range (e.g. one in-cluster S3 service address), but never the metadata addresses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar
from urllib.parse import urlsplit

from .errors import Reason, VaultBundleError

P = ParamSpec("P")
T = TypeVar("T")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_TTL_S = 30.0  # how long `check_url` trusts an allowed answer; the connect-time hook checks every connection
ALLOWED_MAX = 4096  # remembered hosts per policy (tenants choose host names: bounded, forgotten all at once)
_now = time.monotonic  # tests move it

METADATA = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
LOCAL = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("0.0.0.0/32"),
    ipaddress.ip_network("::/128"),
)


class EgressDenied(VaultBundleError):
    """A tenant URL resolves to, or a tenant connection goes to, an address the egress policy refuses."""

    reason = Reason.POLICY_DENIED


class _RefusedConnection(ConnectionRefusedError):
    """What the audit hook raises inside a library: an ordinary connection error to it, so it cleans up."""


@dataclass(frozen=True)
class EgressPolicy:
    """The operator-wide rules; `EgressPolicy()` is the secure default."""

    allow_local: bool = False
    own_addresses: frozenset[IPAddress] = frozenset()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    allow_cidrs: tuple[IPNetwork, ...] = ()
    # (host, port) -> until when its allowed answer is trusted; not part of the policy's identity
    _allowed: dict[tuple[str, int], float] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def build(
        cls,
        *,
        allow_local: bool = False,
        own_addresses: Iterable[str] = (),
        deny_cidrs: Iterable[str] = (),
        allow_cidrs: Iterable[str] = (),
    ) -> EgressPolicy:
        """From flag values; a malformed address or CIDR is a ValueError naming it."""
        return cls(
            allow_local=allow_local,
            own_addresses=frozenset(_address(a) for a in own_addresses),
            deny_cidrs=tuple(_network(c) for c in deny_cidrs),
            allow_cidrs=tuple(_network(c) for c in allow_cidrs),
        )

    def refusal(self, address: str) -> str | None:
        """Why a connection to `address` is refused, or None when it is allowed."""
        try:
            ip = _address(address.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return "it is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in METADATA):
            return "link-local and cloud metadata addresses are never reachable for tenants"
        if any(ip in net for net in self.allow_cidrs):
            return None
        if not self.allow_local and (any(ip in net for net in LOCAL) or ip in self.own_addresses):
            return "loopback and the operator pod's own addresses are refused (operator flag --egress-allow-local)"
        if any(ip in net for net in self.deny_cidrs):
            return "the address is in a range the cluster admin denied (--egress-deny-cidr)"
        return None

    def check_url(self, url: str, *, what: str) -> None:
        """Resolve the URL's host; refuse it when any address it resolves to is denied. A host that does not
        resolve passes (its connection fails on its own); one found allowed passes without a lookup for
        `ALLOWED_TTL_S`. That is safe because this check only names the refusal early: the audit hook refuses
        every denied connection at connect time, whatever DNS answers meanwhile (for gRPC's C core, which that
        hook cannot see, its own later lookup could differ from ours even without the cache)."""
        parts = urlsplit(url if "//" in url else f"//{url}")
        host = parts.hostname
        if not host:
            raise EgressDenied(f"{what}: {url!r} has no host")
        try:
            port = parts.port or 443
        except ValueError:
            raise EgressDenied(f"{what}: {url!r} has an invalid port") from None
        if self._allowed.get((host, port), 0.0) > _now():
            return
        try:
            infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        except OSError:
            return  # unresolvable: the connection fails on its own (and the connect-time hook still guards)
        for info in infos:
            reason = self.refusal(str(info[4][0]))
            if reason:
                self._allowed.pop((host, port), None)
                raise EgressDenied(f"{what}: the egress policy refuses host {host!r} ({reason})")
        if len(self._allowed) >= ALLOWED_MAX:
            self._allowed.clear()
        self._allowed[(host, port)] = _now() + ALLOWED_TTL_S


SECURE_DEFAULT = EgressPolicy()
"""The policy when nothing else is configured: loopback, the pod's IPs and metadata addresses refused."""


def pod_addresses(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The pod's own IPs from the downward API: `POD_IP`, and `POD_IPS` (comma-separated, dual stack)."""
    found = [environ.get("POD_IP", ""), *environ.get("POD_IPS", "").split(",")]
    return tuple(dict.fromkeys(a.strip() for a in found if a.strip()))


def _address(text: str) -> IPAddress:
    return ipaddress.ip_address(text.strip())


def _network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


@dataclass
class _ThreadState(threading.local):
    policy: EgressPolicy | None = None
    denied: list[str] = field(default_factory=list)


_state = _ThreadState()
_hook_lock = threading.Lock()
_hook_installed = False


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event != "socket.connect":
        return
    policy = _state.policy
    if policy is None:
        return
    sock, address = args[0], args[1]
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return
    reason = policy.refusal(str(address[0]))
    if reason:
        _state.denied.append(reason)
        raise _RefusedConnection(f"refused by the egress policy ({reason})")


def _install_hook() -> None:
    global _hook_installed  # noqa: PLW0603 - audit hooks cannot be removed: install one, once per process
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True


@contextlib.contextmanager
def tenant_egress(policy: EgressPolicy | None, *, what: str) -> Iterator[None]:
    """Run tenant I/O in this thread under `policy` (None: unrestricted, for admin-configured connections).

    A connection the policy refuses fails inside the library as a connection error; whatever that library makes
    of it, leaving this block re-raises it as `EgressDenied` naming `what`, so status says PolicyDenied and not
    "unreachable".
    """
    if policy is None:
        yield
        return
    _install_hook()
    outer, outer_denied = _state.policy, _state.denied
    _state.policy, _state.denied = policy, []
    try:
        yield
    except Exception:
        if _state.denied:
            raise EgressDenied(f"{what}: the egress policy refused a connection ({_state.denied[0]})") from None
        raise
    else:
        if _state.denied:
            raise EgressDenied(f"{what}: the egress policy refused a connection ({_state.denied[0]})")
    finally:
        _state.policy, _state.denied = outer, outer_denied


def guarded(
    policy: EgressPolicy | None,
    what: str,
    urls: Iterable[str],
    function: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run blocking tenant I/O (in a worker thread): check every URL in *urls* first, then call
    `function(*args, **kwargs)` inside `tenant_egress`. With `policy=None` it only calls the function."""
    with tenant_egress(policy, what=what):
        if policy is not None:
            for url in urls:
                if url:
                    policy.check_url(url, what=what)
        return function(*args, **kwargs)
