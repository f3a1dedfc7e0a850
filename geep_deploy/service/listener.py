"""The reference service's listening sockets, bound and listening before the engine loads.

`serve` used to hand host and port to uvicorn, which binds after the app is built: a port in use was a log line
after the model had loaded. Binding first turns every address problem into one `ConfigError` naming it, and a
second `serve` on the same port fails at once (the sockets listen, so ``SO_REUSEADDR`` lets no one share them).
"""

from __future__ import annotations

import errno
import socket

from geep_deploy.errors import ConfigError

BACKLOG = 2048  # uvicorn's default


def bind_listeners(host: str, port: int, backlog: int = BACKLOG) -> list[socket.socket]:
    """One listening TCP socket per address ``host`` resolves to (``localhost``: often 127.0.0.1 and ::1), all on
    one port (``port`` 0: the one the system picks for the first).

    Raises:
        ConfigError: the host does not resolve, is not an address of this machine, the port is in use or needs
            privileges; every socket already opened is closed.
    """
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"serve | --host {host!r} does not resolve ({e.strerror}); give an address of this "
                          "machine such as 127.0.0.1.") from None
    out: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys(infos):  # getaddrinfo can repeat an address
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio binds: an IPv6 socket does not also take IPv4
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(out) > 1:  # the other addresses on the port the first one got
                addr = (addr[0], out[0].getsockname()[1], *addr[2:])
            try:
                sock.bind(addr)
                sock.listen(backlog)
            except OSError as e:
                raise ConfigError(f"serve | cannot listen on {url_host(addr[0])}:{addr[1]}: {_why(e, host)}") from None
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def url_host(host: str) -> str:
    """``host`` as it goes in a URL: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _why(e: OSError, host: str) -> str:
    if e.errno == errno.EADDRINUSE:
        return "the port is in use. Pick another --port (0: any free one) or stop what holds this one."
    if e.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges). Pick a --port of 1024 or more."
    if e.errno == errno.EADDRNOTAVAIL:
        return f"--host {host!r} is not an address of this machine. Give one of its addresses, e.g. 127.0.0.1."
    return f"{e.strerror or e}."
