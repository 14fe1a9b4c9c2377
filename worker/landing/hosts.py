"""Which result hosts may be fetched, and the address to connect to for each.

A pattern like `*.apiframe.ai` admits public addresses only; a host named exactly is trusted on
any address. Either way the download connects to the address that was checked, never to a
second lookup's answer, so a name cannot pass the check with a public address and then be
fetched from a private one (DNS rebinding). IPv6 forms that carry an IPv4 address (mapped,
compatible, NAT64, 6to4) are judged by the IPv4 address they carry.
"""

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from worker.landing.errors import PermanentError, TransientError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
NAT64 = ipaddress.ip_network("64:ff9b::/96")
COMPATIBLE = ipaddress.ip_network("::/96")


@dataclass(frozen=True)
class Target:
    """Where to connect for a URL: the checked address, and the name to send as Host and SNI."""

    host: str
    address: Address


def carried_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or (address in COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    carried = carried_ipv4(address)
    return address.is_global and (carried is None or carried.is_global)


class HostPolicy:
    """Hosts `allowed` by the setting `setting`, for URLs of `what` (as messages name them)."""

    def __init__(
        self,
        allowed: Sequence[str],
        setting: str = "IMAGEDOCK_DOWNLOAD_HOSTS",
        what: str = "result",
    ) -> None:
        self.allowed = [pattern.lower() for pattern in allowed]
        self.setting = setting
        self.what = what

    async def check(self, url: str) -> Target:
        """The address to fetch `url` from, or PermanentError saying why it may not be."""
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or 443
        except ValueError:
            message = f"refused {self.what} URL {url[:200]!r}: its port is not one"
            raise PermanentError(message) from None
        if parts.scheme not in ("http", "https") or not host:
            raise PermanentError(f"refused {self.what} URL {url[:200]!r}: not an http(s) URL")
        named = host in self.allowed
        if not named and not any(fnmatch.fnmatchcase(host, p) for p in self.allowed):
            raise PermanentError(f"refused {self.what} host {host!r}: not in {self.setting}")
        addresses = await resolve(host, port, self.what)
        if not named:
            for address in addresses:
                if not is_public(address):
                    raise PermanentError(
                        f"refused {self.what} host {host!r}: it resolves to the non-public "
                        f"address {address}; name it exactly in {self.setting} to allow it"
                    )
        return Target(host, addresses[0])


async def resolve(host: str, port: int, what: str = "result") -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve {what} host {host!r}: {exc}") from exc
    if not infos:
        raise TransientError(f"cannot resolve {what} host {host!r}: no addresses")
    return [ipaddress.ip_address(info[4][0]) for info in infos]
