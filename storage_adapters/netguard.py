"""Where a store's connections may go: every new connection resolves the host it contacts
once, refuses it unless each address passes the operator's policy, and connects to the
checked address itself; no adapter follows a redirect.

A storage endpoint is hostile until checked. Checking the endpoint's name when a config is
made is not enough: the SDK contacts other hosts (OSS's `bucket.endpoint`), resolves the name
again on its own (DNS rebinding: public at the check, 169.254.169.254 at the connection), and
follows a `302 Location: http://169.254.169.254/...` wherever it points. So the check is made
where the socket is opened, by urllib3 connection classes that every adapter's HTTP stack
uses (requests for OSS and Azure, botocore and s3_wire for S3). The policy itself (which
addresses are public, what the operator allows) is not this module's: it comes in as a value,
`NetGuard.refusal`, so storage_adapters stays free of the service's settings.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from storage_adapters.errors import ErrorKind, StorageError

Resolver = Callable[..., Sequence[tuple[Any, ...]]]
# Why a connection to `address` (an IP address as text) for `host` is refused, or None.
Refusal = Callable[[str, str], "str | None"]


class Refused(StorageError):
    """A connection or redirect the guard refused (a permanent StorageError). Its own class,
    so that an adapter finds it behind an SDK's wrapping without taking some other
    StorageError that happened to be handled at the time for it."""


def system_resolve(*args: Any, **kwargs: Any) -> Sequence[tuple[Any, ...]]:
    """The machine's resolver: socket.getaddrinfo, looked up at each call."""
    return socket.getaddrinfo(*args, **kwargs)


@dataclass(frozen=True)
class NetGuard:
    """The policy a store's connections obey: `refusal(host, address)` says why an address
    may not be contacted (None: it may); `resolve` is getaddrinfo (a test passes its own)."""

    refusal: Refusal
    resolve: Resolver = system_resolve

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to now, each one allowed, to connect to in order.
        Raises socket.gaierror when it does not resolve (nothing is contacted), and a
        permanent StorageError naming host and address when one is refused: one refused
        address among allowed ones refuses the host (DNS answers rotate)."""
        try:
            infos = self.resolve(host, port, type=socket.SOCK_STREAM)
        except UnicodeError as exc:
            raise socket.gaierror(f"{host!r} is not a valid host name: {exc}") from exc
        found: list[str] = []
        for info in infos:
            address = str(info[4][0])
            if address not in found:
                found.append(address)
        if not found:
            raise socket.gaierror(f"{host} resolves to no address")
        for address in found:
            why = self.refusal(host, address)
            if why is not None:
                raise Refused(
                    ErrorKind.INVALID_CONFIG,
                    f"connection to {host} ({address}) refused: {why}",
                    transient=False,
                )
        return found


def refused(exc: BaseException) -> Refused | None:
    """The guard's StorageError behind an SDK's wrapping of it (botocore's HTTPClientError,
    azure-core's errors), if there is one: an adapter's error mapping returns it as it is."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, Refused):
            return current
        seen.add(id(current))
        inner = getattr(current, "kwargs", {}).get("error") if hasattr(current, "kwargs") else None
        if isinstance(inner, BaseException):
            current = inner
            continue
        current = current.__cause__ or current.__context__
    return None


def redirect_refused(status: int, url: str, location: str) -> Refused:
    """A redirect answer, which no adapter follows: it would take signed requests (and what
    they fetch) to a host nobody checked."""
    source = _where(url) or "the endpoint"
    target = _where(location) or "another path"
    return Refused(
        ErrorKind.INVALID_CONFIG,
        f"{source} answered HTTP {status}, a redirect to {target}: storage endpoints must "
        "answer themselves, redirects are not followed",
        status=status,
        transient=False,
    )


def _where(url: str) -> str:
    """host[:port] of `url`, nothing else of it (its path or query may hold a signature)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    return f"{host}:{port}" if host and port else host


# -- urllib3 connections that connect only to checked addresses -------------------------------


class _Guarded:
    """Mixed into a urllib3 HTTP(S)Connection class: `_new_conn` connects to the addresses
    `guard` checked, never to a name resolved again. The connection keeps its host name, so
    TLS SNI, the certificate check and the Host header are the name's."""

    guard: ClassVar[NetGuard]
    # What urllib3.connection.HTTPConnection provides.
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> socket.socket:
        host = self.host.rstrip(".")
        try:
            addresses = self.guard.addresses(host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        error: OSError | None = None
        for address in addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except TimeoutError as exc:
                raise urllib3.exceptions.ConnectTimeoutError(
                    self,
                    f"Connection to {self.host} ({address}) timed out. "
                    f"(connect timeout={self.timeout})",
                ) from exc
            except OSError as exc:
                error = exc
                continue
            return sock
        raise NewConnectionError(
            self,  # type: ignore[arg-type]
            f"Failed to establish a new connection to {self.host}: {error}",
        ) from error


@functools.cache
def guarded_connection(base: type[Any], guard: NetGuard) -> type[Any]:
    """`base` (a urllib3 or botocore connection class) connecting only where `guard` allows."""
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"guard": guard})


@functools.cache
def guarded_pool(base: type[Any], guard: NetGuard) -> type[Any]:
    """`base` (a urllib3 or botocore connection pool class) whose connections are guarded."""
    connection = guarded_connection(base.ConnectionCls, guard)
    return type(f"Guarded{base.__name__}", (base,), {"ConnectionCls": connection})


def guard_pool(pool: urllib3.HTTPConnectionPool, guard: NetGuard | None) -> None:
    """Make the connections `pool` opens from now on guarded (a pool made by
    urllib3.connection_from_url)."""
    if guard is not None:
        pool.ConnectionCls = guarded_connection(pool.ConnectionCls, guard)


# -- requests (OSS's oss2 Session, Azure's RequestsTransport) ---------------------------------


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose pools open guarded connections (none: plain ones)."""

    def __init__(self, guard: NetGuard | None, **kwargs: Any) -> None:
        self._guard = guard
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        if getattr(self, "_guard", None) is not None:
            self.poolmanager.pool_classes_by_scheme = {
                "http": guarded_pool(urllib3.connectionpool.HTTPConnectionPool, self._guard),
                "https": guarded_pool(urllib3.connectionpool.HTTPSConnectionPool, self._guard),
            }


class NoRedirectSession(requests.Session):
    """A requests session that follows no redirect: a redirect answer is a permanent
    StorageError (also when the caller, like azure-core, asks requests not to follow)."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        target = super().get_redirect_target(resp)
        if target is not None:
            resp.close()
            raise redirect_refused(resp.status_code, resp.url, str(target))
        return None


def guarded_session(guard: NetGuard | None, **adapter_options: Any) -> requests.Session:
    """A requests session for one adapter: guarded connections, no redirects."""
    session = NoRedirectSession()
    adapter = GuardedAdapter(guard, **adapter_options)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# -- botocore (S3) ----------------------------------------------------------------------------


def guard_botocore(client: Any, guard: NetGuard | None, *, custom_endpoint: bool) -> None:
    """A boto3 client's connections go only where `guard` allows (its pools' connection
    class: botocore has no public hook for it), and it follows no redirect from an
    S3-compatible server: botocore's region redirector would re-send the signed request
    wherever a 301, 302 or 307 points, and look the bucket's region up with HeadBucket calls
    that are redirected again (some 80 requests deep). AWS itself may redirect once, to the
    bucket's region (a host the guard checks like any other); a second redirect is refused."""
    if guard is not None:
        # The session's pool classes, shared with its pool manager and proxy managers.
        pools = client._endpoint.http_session._pool_classes_by_scheme
        for scheme, pool in list(pools.items()):
            pools[scheme] = guarded_pool(pool, guard)

    def refuse_redirect(response: Any, request_dict: Any, **_: Any) -> None:
        http = response[0] if response else None
        if http is None or http.status_code not in _REDIRECTS:
            return
        if custom_endpoint or request_dict.get("context", {}).get("s3_redirected"):
            location = http.headers.get("location", "")
            raise redirect_refused(http.status_code, str(request_dict.get("url", "")), location)

    # First: before the region redirector (registered by the client) acts on the answer.
    client.meta.events.register_first("needs-retry.s3", refuse_redirect)


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
