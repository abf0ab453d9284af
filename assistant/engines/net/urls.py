"""URL helpers for the cloud adapters: adding query parameters, and a URL fit for a message."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping


def host_of(url: str) -> str:
    """Scheme, host, port and path of ``url`` without its query (which may hold a key)."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def with_query(url: str, params: Mapping[str, str]) -> str:
    """``url`` with ``params`` added to (or replacing those in) its query string."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def http_base(ws_url: str) -> str:
    """The HTTP(S) origin of a websocket endpoint: wss://host/x → https://host."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"
