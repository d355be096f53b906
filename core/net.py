"""Network helpers every socket-based probe needs: resolving, naming errors.

Probes resolve names themselves (instead of letting a library do it) so that
the ``resolve`` phase is timed on its own and ``ip_family`` is honoured, as
blackbox_exporter does.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

import anyio

from ._errors import CheckFailed
from ._socket_stream import RawSocketStream

__all__ = [
    "AddressPolicy",
    "IpFamily",
    "address_policy",
    "check_destination",
    "connect_socket",
    "connect_tcp",
    "describe_os_error",
    "fail_from_os_error",
    "open_connection",
    "resolve",
    "root_os_error",
]

IpFamily = Literal["any", "ipv4", "ipv6"]

#: Decides whether a check may connect to a host: called with the host name (or
#: address) and the addresses about to be connected to; returns None to allow,
#: or the reason it is refused.
AddressPolicy = Callable[[str, Sequence[str]], "str | None"]


class _PolicyState:
    """The policy in force, and the addresses it allowed (a connect to one of
    them is allowed: its name was checked when it was resolved)."""

    __slots__ = ("approved", "policy")

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.approved: set[str] = set()


_policy: ContextVar[_PolicyState | None] = ContextVar("anyprobe_address_policy", default=None)


@contextmanager
def address_policy(policy: AddressPolicy | None) -> Iterator[None]:
    """Apply ``policy`` to every :func:`resolve` and :func:`open_connection`
    of the checks run inside the block (and the tasks they start).

    ``anyprobe serve`` uses it for ``allow_targets``: the addresses checked are
    the addresses connected to, at every hop, so a redirect or a name that
    resolves somewhere else (DNS rebinding) cannot reach a host outside it.
    """
    token = _policy.set(_PolicyState(policy) if policy is not None else None)
    try:
        yield
    finally:
        _policy.reset(token)


def check_destination(host: str, addresses: Sequence[str] = ()) -> None:
    """Raise :class:`~anyprobe.CheckFailed` (critical) when the address policy
    in force refuses ``host`` or one of ``addresses``; nothing without a policy.

    A host holding a control character or a space is always refused: a C
    resolver would stop reading it at a NUL and look up another name.
    """
    if _UNSAFE_HOST.search(host):
        raise CheckFailed(f"{host!r}: control characters or spaces in a host name")
    state = _policy.get()
    if state is None:
        return
    if addresses and host in addresses and all(a in state.approved for a in addresses):
        return
    reason = state.policy(host, addresses)
    if reason is not None:
        raise CheckFailed(reason)
    state.approved.update(addresses)


_UNSAFE_HOST = re.compile(r"[\x00-\x20\x7f]")

_FAMILIES = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}


async def resolve(host: str, port: int, ip_family: IpFamily = "any") -> list[str]:
    """The addresses of ``host``, in the resolver's order, for ``ip_family``.

    An IP literal is returned as it is (when it fits the family). A name that
    does not resolve raises :class:`~anyprobe.CheckFailed`.
    """
    # An IP literal with no address policy in force: nothing to look up and
    # nothing to ask, and it is on every check of a target given by address.
    version = _literal_version(host)
    if version and _policy.get() is None:
        if (ip_family == "ipv4" and version != 4) or (ip_family == "ipv6" and version != 6):
            raise CheckFailed(f"{host} is not an {ip_family} address")
        return [host]
    addresses = await _lookup(host, port, ip_family)
    check_destination(host, addresses)
    return addresses


async def _lookup(host: str, port: int, ip_family: IpFamily = "any") -> list[str]:
    """:func:`resolve` without the address policy's verdict on the addresses
    (only on the name): for a caller that puts each address to the policy on
    its own (``addresses = "all"``)."""
    check_destination(host)
    version = _ip_version(host)
    if version:
        if (ip_family == "ipv4" and version != 4) or (ip_family == "ipv6" and version != 6):
            raise CheckFailed(f"{host} is not an {ip_family} address")
        return [host]
    try:
        infos = await anyio.getaddrinfo(
            host, port, family=_FAMILIES[ip_family], type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise CheckFailed(f"cannot resolve {host}: {exc.strerror}", error=exc) from None
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise CheckFailed(f"{host} has no {ip_family} address")
    return addresses


@functools.lru_cache(maxsize=4096)
def _ip_version(host: str) -> int:
    """4 or 6 for an IP literal, 0 for a name (kept: a run checks few hosts many times)."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return 0


@functools.lru_cache(maxsize=4096)
def _literal_version(host: str) -> int:
    """:func:`_ip_version` for a host that is safe to use as it is: 0 also for
    an IPv6 literal whose scope holds a space or a control character
    (``ipaddress`` accepts ``fe80::1%a b``), which :func:`check_destination`
    refuses."""
    return 0 if _UNSAFE_HOST.search(host) else _ip_version(host)


_ERRNO_TEXT = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by peer",
    errno.EHOSTUNREACH: "no route to host",
    errno.ENETUNREACH: "network unreachable",
    errno.ETIMEDOUT: "connection timed out",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection closed by peer (broken pipe)",
    errno.EADDRNOTAVAIL: "address not available",
    errno.EMFILE: "too many open files (raise ulimit -n or lower --concurrency)",
}


def root_os_error(exc: BaseException) -> BaseException:
    """The OSError that explains ``exc``: anyio wraps failed connects in an OSError
    whose cause is a group of the real ones."""
    seen = exc
    while getattr(seen, "errno", None) is None:
        cause = seen.__cause__ or seen.__context__
        if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
            cause = cause.exceptions[0]
        if cause is None:
            break
        seen = cause
    return seen if getattr(seen, "errno", None) is not None else exc


def describe_os_error(exc: BaseException) -> str:
    """A short, lower-case description: ``connection refused``, ``connection reset by peer``."""
    root = root_os_error(exc)
    code = getattr(root, "errno", None)
    if code in _ERRNO_TEXT:
        return _ERRNO_TEXT[code]
    if isinstance(root, OSError) and root.strerror:
        return root.strerror.lower()
    return str(root) or type(root).__name__


def fail_from_os_error(exc: BaseException, what: str = "") -> CheckFailed:
    """A critical :class:`~anyprobe.CheckFailed` describing ``exc``: raise it."""
    text = describe_os_error(exc)
    return CheckFailed(f"{what}{text}" if not what else f"{what}: {text}", error=root_os_error(exc))


async def connect_socket(address: str, port: int) -> socket.socket:
    """A TCP socket connected to one IP ``address``: non-blocking, owned by the
    caller (who closes it); raises OSError like a failed ``connect()``.

    ``anyio.connect_tcp`` runs a task group for happy eyeballs even for one
    address; a probe has already chosen its address, so this does the plain
    non-blocking connect instead (it is a good part of a loopback check's
    cost). The address policy in force (:func:`address_policy`) is checked
    first. For a library that wants a socket of its own (asyncssh); wrap it
    with ``anyio.abc.SocketStream.from_socket`` for a stream, or use
    :func:`open_connection`.
    """
    check_destination(address, [address])
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, _NONBLOCKING_STREAM)
    try:
        if not _SOCK_NONBLOCK:
            sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        code = sock.connect_ex((address, port))
        if code == errno.EINPROGRESS:
            # Asking again costs a system call, waiting a trip through the
            # event loop: a loopback or LAN handshake is often over already.
            code = sock.connect_ex((address, port))
            if code == errno.EISCONN:
                code = 0
            elif code in _CONNECTING:
                await anyio.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
        return sock
    except BaseException:
        sock.close()
        raise


#: Where the system has them (Linux), a socket created non-blocking and
#: close-on-exec by the one ``socket()`` call: a system call less per
#: connection than ``setblocking(False)`` after it.
_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)
_NONBLOCKING_STREAM = socket.SOCK_STREAM | _SOCK_NONBLOCK | getattr(socket, "SOCK_CLOEXEC", 0)
#: What asking a non-blocking socket to connect again says while it still connects.
_CONNECTING = frozenset({errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN, errno.EWOULDBLOCK})


async def _connect_first(addresses: Sequence[str], port: int) -> tuple[socket.socket, str]:
    """A socket (:func:`connect_socket`) connected to the first of ``addresses``
    that accepts, tried in order, and the address used; raises
    :class:`~anyprobe.CheckFailed` describing the last failure when none accepts."""
    last: BaseException | None = None
    for address in addresses:
        try:
            return await connect_socket(address, port), address
        except OSError as exc:
            last = exc
    if last is None:
        raise ValueError("_connect_first() needs at least one address")
    raise fail_from_os_error(last) from None


async def _stream_from_socket(sock: socket.socket) -> anyio.abc.SocketStream:
    """``sock`` (connected, non-blocking) as an anyio stream that owns it
    (:class:`~anyprobe._socket_stream.RawSocketStream`: no transport to build,
    no trip through the event loop)."""
    return RawSocketStream(sock)


async def open_connection(address: str, port: int) -> anyio.abc.SocketStream:
    """Connect to one IP ``address`` (:func:`connect_socket`) and return the
    stream; raises OSError like a failed ``connect()``."""
    return await _stream_from_socket(await connect_socket(address, port))


async def connect_tcp(addresses: list[str], port: int) -> tuple[anyio.abc.SocketStream, str]:
    """Connect to the first of ``addresses`` that accepts, in order.

    Returns the stream and the address used; raises :class:`~anyprobe.CheckFailed`
    describing the last failure when none accepts.
    """
    sock, address = await _connect_first(addresses, port)
    return await _stream_from_socket(sock), address
