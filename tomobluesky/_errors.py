"""Errors shared by the layers: which failures are worth waiting out.

A document that cannot be handled because the catalogue (Tiled) or another
service is unreachable is not a bad document: it must be handled again once the
service is back, never dead-lettered or recorded as a failed scan. Everything
else (bad values, missing files, wrong shapes) is the document's fault.
"""

from __future__ import annotations

#: the ``reason`` of a stop document a worker writes itself for a run whose own stop never came
NO_STOP_PREFIX = "tomobluesky: no stop document"

_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class ServiceUnavailable(RuntimeError):
    """A service a handler needs (Tiled, a broker) could not be reached; try again later."""

    transient = True


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc`` (or anything in its cause/context chain) says a service was unreachable:
    connection refused or reset, timeouts, HTTP 5xx/429/408, or an exception marked ``transient``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "transient", False):
            return True
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        if _is_httpx_transient(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _is_httpx_transient(exc: BaseException) -> bool:
    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx comes with tiled
        return False
    if isinstance(exc, httpx.TransportError):  # connect/read/write errors, timeouts, protocol errors
        return True
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in _TRANSIENT_STATUS
    return False
