"""Receivers' URLs: https in production, and never an address inside our own network
(loopback, private, link-local, …) unless settings.WEBHOOKS_ALLOW_PRIVATE (local and tests).

Checked when an endpoint is saved and again, on the resolved addresses, before every attempt
(a name may resolve elsewhere later)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from config.errors import ValidationError


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, errors={"url": [message]})


def _is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return sorted({info[4][0] for info in infos})


def url_validate(url: str, *, resolve_host: bool = True) -> str:
    """The URL, cleaned; raises ValidationError (field `url`) when it may not receive events."""
    url = (url or "").strip()
    if not url:
        raise _refuse("Enter the URL that receives the events.")
    if len(url) > 2000:
        raise _refuse("The URL is too long.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _refuse("Enter a valid URL.") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refuse("Enter a valid http or https URL.")
    if parts.username or parts.password:
        raise _refuse("The URL may not contain a user name or password.")
    if settings.WEBHOOKS_REQUIRE_HTTPS and parts.scheme != "https":
        raise _refuse("The URL must use https.")
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return url
    host = parts.hostname
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise _refuse("The URL must point to a public address.")
        if not resolve_host:
            return url
        addresses = resolve(host, port or (443 if parts.scheme == "https" else 80))
        if not addresses:
            raise _refuse("The URL's host name does not resolve.")
    if any(_is_internal(address) for address in addresses):
        raise _refuse("The URL must point to a public address.")
    return url
