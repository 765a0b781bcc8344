"""Our own URLs in headers (`Link`, `Location`): never built from the request's Host header.

A client chooses the Host header it sends; echoing it in a link lets whoever can make a
proxy or cache keep a forged answer (a poisoned `Link` to their own server). Without a configured
public base URL the API answers paths (relative references, RFC 3986 section 4.2), which clients
resolve against the URL they asked; with one, absolute URLs under it.
"""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import URL


def _base(request: Request) -> str:
    public_url: str | None = request.app.state.config.public_url
    return (public_url or "").rstrip("/")


def public(request: Request, url: URL | str) -> str:
    """The path and query of `url`, under the configured public base URL when there is one."""
    parsed = URL(str(url))
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    return _base(request) + target


def own_origin(request: Request) -> str:
    """The origin pages of this API have: the public base URL's, else this request's Host's."""
    base = _base(request)
    if base:
        parsed = URL(base)
        return f"{parsed.scheme}://{parsed.netloc}"
    return f"{request.url.scheme}://{request.headers.get('host', '')}"
