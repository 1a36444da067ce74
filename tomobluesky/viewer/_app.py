"""A small web viewer over the Tiled catalogue: scans, live slices updating
during acquisition (server-sent events) with the row and centre settable from
the page, and finished volumes in three orthogonal planes, each read from the
pyramid level that fits the screen, with zoom, a histogram for the contrast
and line profiles.

Who may read what is Tiled's decision, not the viewer's: unless it is public,
the viewer reads Tiled with the key each request brings (see ``_auth``).
Everything a scan's documents say is data, never markup: the page builds its
DOM from text, and the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..catalog._live import live_shapes, live_slices, read_live_slice
from ._auth import (COOKIE, CatalogUnavailable, ClientCache, Unauthorized, connect_checked, connector, request_key,
                    tiled_refused)
from ._control import CONTROL, BadControl, check_request, detector_shape, stored
from ._levels import Level, LevelCache, LiveReads
from ._volume import PLANE_AXES, BadRequest, Plane, histogram, histogram_sample, read_plane, read_profile, window_png

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
RAW, PROCESSED, LIVE = "raw", "processed", "live"  # the catalogue's containers (tomobluesky.catalog)
LIVE_SLICES = ("axial", "vertical_x", "vertical_y")
# Bluesky start uids are UUIDs; accept the names the catalogue writer accepts and nothing that could
# make a Tiled path climb ("..") or carry another path segment.
_UID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_INDEX = re.compile(r"[0-9]{1,9}")

# Only the viewer's own files, no inline script or style, no framing, no plugins.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-resource-policy": "same-origin",
}


def to_png(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> bytes:
    """Grey-scale PNG of ``image`` clipped to its ``low``..``high`` percentiles."""
    from PIL import Image

    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(image, [low, high]) if image.size else (0.0, 1.0)
    scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((scaled * 255).astype(np.uint8)).save(buf, format="PNG", compress_level=1)  # speed over bytes
    return buf.getvalue()


class Problem(Exception):
    """An answer other than success, with its HTTP status and a message for the person."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _shown(text: str, limit: int = 80) -> str:
    """User input quoted in an error message, cut short."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _percentiles(request) -> tuple[float, float]:
    try:
        low = float(request.query_params.get("low", 1.0))
        high = float(request.query_params.get("high", 99.5))
    except ValueError:
        raise Problem(400, "contrast low and high must be numbers") from None
    if not 0 <= low < high <= 100:  # also false for nan
        raise Problem(400, "contrast needs 0 <= low < high <= 100")
    return low, high


# the volume axis each plane cuts (0 = z, 1 = y, 2 = x)
_CUT_AXIS = {axis: ({0, 1, 2} - set(shown)).pop() for axis, shown in PLANE_AXES.items()}


def _size(request) -> int:
    size = request.query_params.get("size", "0")
    if not _INDEX.fullmatch(size) or int(size) > 65536:
        raise Problem(400, f"size must be a whole number of pixels from 0 to 65536, not {_shown(size)}")
    return int(size)


def _integer(request, name: str, default: int | None = None) -> int:
    text = request.query_params.get(name)
    if text is None and default is not None:
        return default
    if text is None or not _INDEX.fullmatch(text):
        raise Problem(400, f"{name} must be a whole number from 0, not {_shown(str(text))}")
    return int(text)


def _numbers(request, name: str, count: int) -> list[float] | None:
    """``count`` comma-separated finite numbers from the query parameter ``name``; None when absent."""
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count or not all(np.isfinite(values)):
        raise Problem(400, f"{name} must be {count} finite numbers separated by commas, not {_shown(text)}")
    return values


def _window(request) -> tuple[float, float] | None:
    """The contrast window ``vmin``..``vmax`` (data values) when the request gives one."""
    given = [request.query_params.get(n) for n in ("vmin", "vmax")]
    if given == [None, None]:
        return None
    try:
        vmin, vmax = (float(v) for v in given)
    except (TypeError, ValueError):
        raise Problem(400, "contrast vmin and vmax must both be numbers") from None
    if not (np.isfinite(vmin) and np.isfinite(vmax) and vmin < vmax):
        raise Problem(400, "contrast needs finite vmin < vmax")
    return vmin, vmax


def _scan_uid(request) -> str:
    uid = request.path_params["uid"]
    if not _UID.fullmatch(uid):
        raise Problem(404, f"no scan {_shown(uid)} in the catalogue")
    return uid


def _level_for(levels, size: int) -> int:
    """The coarsest pyramid level whose slices are still at least ``size`` pixels
    on both sides (level 0 when ``size`` is 0): a 2048² slice shown in a
    512-pixel image needs a sixteenth of the bytes from level 2."""
    fits = [k for k, shape in enumerate(levels) if min(shape[1:]) >= size]
    return fits[-1] if fits else 0


def _node(client, *path: str):
    """The node at ``path`` from the catalogue's root, or None. One exact lookup: the ``raw``
    container's own ``[]`` and ``in`` would also match a partial uid or a scan_id."""
    try:
        return client[path]
    except KeyError:
        return None


#: a live-event stream looks for the scan's volume every this many polls (every 2 s at the default 0.5 s)
VOLUME_EVERY = 4


def _children(client, container: str, keys: list[str]) -> dict[str, dict]:
    """The metadata of those of ``keys`` that ``container`` holds, by key: one search, not a lookup each."""
    from tiled.queries import KeysFilter

    node = _node(client, container)
    if node is None or not keys:
        return {}
    return {key: dict(child.metadata) for key, child in node.search(KeysFilter(keys=list(keys))).items()}


def _time(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _sse(event: str, data) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


class _SecurityHeaders:
    """ASGI middleware: the security headers on every response, and no caching of what the API
    read with someone's key."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        private = scope["path"].startswith(("/api/", "/login", "/logout"))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if private:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(tiled: str | Callable[[str | None], Any], *, public: bool = False, api_key: str | None = None,
               poll_interval: float = 0.5, max_stream_s: float = 600.0, max_clients: int = 16,
               control_key: str | None = None) -> Starlette:
    """The viewer's ASGI app over a Tiled catalogue.

    ``tiled`` is the catalogue's URI, or a function ``api_key -> tiled client``.

    Not ``public`` (the default): the viewer holds no key. Every API request must
    bring the reader's Tiled key (``Authorization: Bearer <key>``, or the HttpOnly
    cookie that ``POST /login`` sets from the page's form); the viewer reads Tiled
    with that key, keeping a client for each of the ``max_clients`` most recent
    keys, and answers 401 when the key is missing or Tiled refuses it.

    ``public``: the viewer reads with ``api_key`` (give it a read-only key; None
    reads anonymously from a Tiled server that allows it) and serves anyone.
    It connects at once, so a refused key fails here rather than on each request.

    A live-event stream reads the scan's live preview every ``poll_interval`` seconds
    (the live path refreshes it at most every ``recon.preview_interval_s``, 0.5 s by
    default) and looks for its volume every ``VOLUME_EVERY`` polls; each read is a
    request that costs the Tiled server tens of milliseconds of CPU, on the host that
    may be acquiring. It ends when the scan's volume is complete or failed, or after
    ``max_stream_s`` seconds (the page's EventSource then reconnects, which checks the
    key again).

    ``control_key``: a Tiled key that may write (the catalogue's writer key).
    With it, a reader who may read a scan's live slices may also steer them
    (``POST /api/scans/<uid>/live/control``): the viewer checks the request,
    then writes it with this key to ``live/<uid>/control``, where the live
    reconstruction reads it. Without it the page cannot steer.
    """
    if max_stream_s <= 0 or poll_interval <= 0:
        raise ValueError("max_stream_s and poll_interval must be positive")
    connect = connector(tiled)
    if public:
        shared = connect_checked(connect, api_key)
        clients = None
    elif api_key is not None:
        raise ValueError("a viewer that is not public holds no key of its own: each reader brings theirs; "
                         "give api_key only with public=True")
    else:
        shared, clients = None, ClientCache(connect, max_clients)

    control = connect_checked(connect, control_key) if control_key is not None else None
    control_lock = threading.Lock()
    levels_seen = LevelCache()
    live_reads = LiveReads()

    def client_for(request):
        return shared if public else clients.get(request_key(request))

    def answer(request, exc: BaseException) -> tuple[int, str]:
        """The status and message for a failed request; unexpected errors are logged, not shown."""
        if isinstance(exc, Problem):
            return exc.status, exc.message
        if isinstance(exc, (BadRequest, BadControl)):
            return 400, str(exc)
        if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 403:
            return 403, "the catalogue does not let this key read that"
        if isinstance(exc, Unauthorized) or tiled_refused(exc):
            if public:
                return 503, "the catalogue refused the viewer's read key"
            clients.forget(request_key(request))
            return 401, str(exc) if isinstance(exc, Unauthorized) else "the catalogue refused this API key"
        if isinstance(exc, CatalogUnavailable):
            return 503, str(exc)
        if isinstance(exc, httpx.HTTPStatusError):
            if exc.response.status_code == 404:
                return 404, "not found in the catalogue"
            return 502, f"the catalogue answered HTTP {exc.response.status_code}"
        if isinstance(exc, httpx.TransportError):
            return 503, f"the catalogue is unreachable ({type(exc).__name__})"
        if isinstance(exc, KeyError):  # a node that went away between looking and reading
            return 404, "not found in the catalogue"
        log.error("viewer request %s failed", request.url.path, exc_info=exc)
        return 500, "internal error in the viewer (its log has the details)"

    def error_response(request, exc: BaseException) -> JSONResponse:
        status, message = answer(request, exc)
        headers = {"WWW-Authenticate": 'Bearer realm="tomobluesky viewer"'} if status == 401 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def api(path: str, work: Callable[[Any, Any], Response]) -> Route:
        """A GET route whose ``work(request, client)`` reads Tiled in a worker thread."""

        async def endpoint(request):
            try:
                return await run_in_threadpool(lambda: work(request, client_for(request)))
            except Exception as exc:
                return error_response(request, exc)

        return Route(path, endpoint)

    def scans(request, client):
        raw = _node(client, RAW)
        if raw is None:
            return JSONResponse([])
        newest = raw.items()[-1:-51:-1]  # the 50 newest
        uids = [uid for uid, _ in newest]
        # their volumes and live previews in one search each: a lookup per scan cost Tiled two requests
        # per row (100 for a full list, seconds of its CPU, while the page's planes waited behind them)
        volumes, live = _children(client, PROCESSED, uids), _children(client, LIVE, uids)
        rows = []
        for uid, run in newest:
            start = run.metadata.get("start", {})
            volume = volumes.get(uid, {})
            rows.append({
                "uid": uid, "scan_id": start.get("scan_id"), "sample": start.get("sample_name", ""),
                "time": start.get("time"), "plan": start.get("plan_name"),
                "volume_status": volume.get("status"), "reason": volume.get("reason"),
                "live": uid in live,
            })
        rows.sort(key=lambda r: _time(r["time"]), reverse=True)
        return JSONResponse(rows)

    def volume_node(client, uid):
        node = _node(client, PROCESSED, uid)
        if node is None:
            raise Problem(404, f"no volume for scan {uid}")
        return node

    def volume_info(request, client):
        uid = _scan_uid(request)
        node = volume_node(client, uid)
        remember(client, uid, node)
        md = dict(node.metadata)
        for bulky in ("theta", "multiscales"):
            md.pop(bulky, None)
        levels = md.get("levels") or ([list(node["0"].shape)] if "0" in node else [])
        return JSONResponse({"shape": levels[0] if levels else [], "levels": levels, "metadata": md})

    def remember(client, uid, node) -> list[Level] | None:
        """The levels of a complete volume, kept for the next requests; None for any other."""
        if node.metadata.get("status") != "complete":
            return None
        shapes = node.metadata.get("levels") or [node["0"].shape]
        return levels_seen.put(client, uid, [Level(node, k, shape) for k, shape in enumerate(shapes)])

    def complete_levels(client, uid) -> list[Level]:
        levels = levels_seen.get(client, uid)
        if levels is not None:
            return levels
        node = volume_node(client, uid)
        levels = remember(client, uid, node)
        if levels is None:
            raise Problem(404, f"the volume of scan {uid} is {node.metadata.get('status')}, not complete")
        return levels

    def plane(request, client):
        """``GET .../plane/{z|y|x}.png?index=I&region=r0,r1,c0,c1&size=S&vmin=&vmax=``: the plane that
        cuts the axis at level-0 index I, the level-0 region of it, from the coarsest level at which
        the region is still S pixels along its longer side (no index: the middle; no region: the
        whole plane). Headers say the level, the region it covers (widened to whole pixels of the
        level) and the index."""
        uid, axis = _scan_uid(request), request.path_params["axis"]
        if axis not in PLANE_AXES:
            raise Problem(404, f"no plane {_shown(axis)}: planes cut z (axial), y (coronal) or x (sagittal)")
        size, region, window = _size(request), _numbers(request, "region", 4), _window(request)
        levels = complete_levels(client, uid)
        # no index: the middle one, where the page starts (it may ask before it knows the shape)
        index = _integer(request, "index", levels[0].shape[_CUT_AXIS[axis]] // 2)
        rows, cols = (levels[0].shape[a] for a in PLANE_AXES[axis])
        r0, r1, c0, c1 = region if region is not None else (0, rows, 0, cols)
        if not all(float(v).is_integer() for v in (r0, r1, c0, c1)):
            raise Problem(400, "region must be whole level-0 pixels")
        image, k, covered = read_plane(levels, Plane(axis, index, int(r0), int(r1), int(c0), int(c1), size))
        png = window_png(image, *window) if window else to_png(image)
        return Response(png, media_type="image/png",
                        headers={"x-level": str(k), "x-region": ",".join(map(str, covered)), "x-index": str(index)})

    def volume_histogram(request, client):
        """``GET .../histogram?bins=N``: counts of the coarsest level's voxels (a sample of its slices
        when it is large), for the page to set the contrast window from percentiles."""
        uid, bins = _scan_uid(request), _integer(request, "bins", 256)
        if not 1 <= bins <= 4096:
            raise Problem(400, f"bins must be from 1 to 4096, not {bins}")
        voxels, k, step = histogram_sample(complete_levels(client, uid))
        return JSONResponse({"level": k, "slice_step": step, **histogram(voxels, bins)})

    def profile(request, client):
        """``GET .../profile?axis=z&index=I&start=r,c&end=r,c&size=N``: values along a line in a plane
        (level-0 coordinates), from the coarsest level at which the line is still N pixels long."""
        uid, axis = _scan_uid(request), request.query_params.get("axis", "")
        if axis not in PLANE_AXES:
            raise Problem(400, f"axis must be z, y or x, not {_shown(axis)}")
        start, end = _numbers(request, "start", 2), _numbers(request, "end", 2)
        if start is None or end is None:
            raise Problem(400, "a profile needs start=row,column and end=row,column")
        result = read_profile(complete_levels(client, uid), axis, _integer(request, "index"), start, end,
                              _size(request))
        return JSONResponse(result)

    def volume_slice(request, client):
        uid, index = _scan_uid(request), request.path_params["index"]
        if not _INDEX.fullmatch(index):
            raise Problem(400, f"a slice index is a whole number from 0, not {_shown(index)}")
        index = int(index)
        low_high, size = _percentiles(request), _size(request)
        node = volume_node(client, uid)
        status = node.metadata.get("status")
        if status != "complete":
            raise Problem(404, f"the volume of scan {uid} is {status}, not complete")
        levels = node.metadata.get("levels") or [list(node["0"].shape)]
        if not index < levels[0][0]:
            raise Problem(404, f"slice {index} outside 0..{levels[0][0] - 1} of scan {uid}")
        k = _level_for(levels, size)
        return Response(to_png(node[str(k)][index >> k], *low_high), media_type="image/png")

    def live_slice(request, client):
        uid, name = _scan_uid(request), request.path_params["name"]
        low_high = _percentiles(request)
        if name not in LIVE_SLICES:
            raise Problem(404, f"no live slice named {_shown(name)}: there are {', '.join(LIVE_SLICES)}")
        stamp = request.query_params.get("t")
        if stamp is None:  # one image alone: only its rows
            image = read_live_slice(client, uid, name)
        else:  # one of the page's three images of a refresh: one read for the three
            image = live_reads.get(client, uid, stamp[:32], lambda: live_slices(client, uid)).get(name)
        if image is None:
            raise Problem(404, f"no live {name} slice for scan {uid}")
        return Response(to_png(image, *low_high), media_type="image/png")

    def live_geometry(client, uid) -> tuple[int, int]:
        """The detector's (rows, columns) of a scan with live slices, read with the reader's key
        (which also shows that this reader may see the scan)."""
        live = _node(client, LIVE, uid)
        if live is None:
            raise Problem(404, f"no live slices of scan {uid} to steer (none yet, or no such scan)")
        return detector_shape(dict(live.metadata), live_shapes(live))

    def control_state(request, client):
        uid = _scan_uid(request)
        live_geometry(client, uid)
        node = _node(client, LIVE, uid, CONTROL)
        return JSONResponse({"enabled": control is not None,
                             "request": dict(node.metadata) if node is not None else None})

    async def set_control(request):
        """``POST .../live/control`` with ``{"row": int, "center": float}`` (either optional)."""
        if not same_origin(request):
            return JSONResponse({"error": "a request from another site is refused"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": 'send {"row": ..., "center": ...} as application/json'}, status_code=415)
        body = await request.body()
        try:
            decoded = json.loads(body) if len(body) <= 4096 else None
        except ValueError:
            decoded = None
        try:
            return await run_in_threadpool(write_control, request, decoded)
        except Exception as exc:
            return error_response(request, exc)

    def write_control(request, body):
        uid = _scan_uid(request)
        rows, columns = live_geometry(client_for(request), uid)
        if control is None:
            raise Problem(403, "this viewer cannot steer live reconstructions: it was started without "
                               "--control-key-file")
        request_ = check_request(body, rows, columns)
        with control_lock:
            live = control[(LIVE, uid)]
            node = live.get(CONTROL)
            metadata = stored(request_, dict(node.metadata) if node is not None else None)
            if node is None:
                live.create_container(CONTROL, metadata=metadata)
            else:
                node.replace_metadata(metadata=metadata)
        return JSONResponse({"ok": True, "request": metadata})

    def scan_known(client, uid) -> bool:
        return any(_node(client, container, uid) is not None for container in (RAW, LIVE, PROCESSED))

    def snapshot(client, uid, look_for_volume: bool):
        live = _node(client, LIVE, uid)
        volume = _node(client, PROCESSED, uid) if look_for_volume else None
        md = dict(live.metadata) if live is not None else {}
        return md, volume is not None and volume.metadata.get("status") in ("complete", "failed")

    async def live_events(request):
        try:
            uid = _scan_uid(request)
            client = await run_in_threadpool(client_for, request)
            if not await run_in_threadpool(scan_known, client, uid):
                raise Problem(404, f"no scan {uid} in the catalogue")
        except Exception as exc:  # before the stream starts: a plain error, which EventSource does not retry
            return error_response(request, exc)

        async def stream():
            deadline = time.monotonic() + max_stream_s
            last, polls = None, 0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                try:  # the volume is looked for every VOLUME_EVERY polls: it comes once, the slices often
                    md, done = await run_in_threadpool(snapshot, client, uid, polls % VOLUME_EVERY == 0)
                    polls += 1
                except Exception as exc:
                    status, message = answer(request, exc)
                    yield _sse("error", {"error": message, "status": status})
                    return
                if md.get("projections") != last:
                    last = md.get("projections")
                    yield _sse("update", md)
                if done:
                    yield _sse("done", {})
                    return
                if time.monotonic() >= deadline:
                    yield _sse("timeout", {"after_s": max_stream_s})
                    return
                await asyncio.sleep(poll_interval)

        return StreamingResponse(stream(), media_type="text/event-stream")

    def same_origin(request) -> bool:
        origin = request.headers.get("origin")
        return origin is None or urlsplit(origin).netloc == request.headers.get("host")

    async def login(request):
        """Check a key with Tiled and keep it in an HttpOnly, SameSite=Strict cookie. JSON only:
        a form on another site cannot post JSON without a CORS preflight, which this app never grants."""
        if public:
            return JSONResponse({"error": "this viewer is public: no login needed"}, status_code=400)
        if not same_origin(request):
            return JSONResponse({"error": "login from another site refused"}, status_code=403)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": 'send {"key": "..."} as application/json'}, status_code=415)
        body = await request.body()
        try:
            key = json.loads(body[:4096]).get("key") if len(body) <= 4096 else None
        except (ValueError, AttributeError):
            key = None
        if not isinstance(key, str):
            return JSONResponse({"error": 'send {"key": "<your Tiled API key>"}'}, status_code=400)
        try:
            await run_in_threadpool(clients.get, key)
        except Exception as exc:
            return error_response(request, exc)
        response = JSONResponse({"ok": True})
        response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return response

    async def logout(request):
        if not public and same_origin(request):
            clients.forget(request.cookies.get(COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return response

    async def session(request):
        return JSONResponse({"public": public, "control": control is not None})

    async def index(request):
        return FileResponse(STATIC / "index.html")

    return Starlette(routes=[
        Route("/", index),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/session", session),
        api("/api/scans", scans),
        api("/api/scans/{uid}/volume", volume_info),
        api("/api/scans/{uid}/volume/{index}.png", volume_slice),
        api("/api/scans/{uid}/plane/{axis}.png", plane),
        api("/api/scans/{uid}/histogram", volume_histogram),
        api("/api/scans/{uid}/profile", profile),
        api("/api/scans/{uid}/live/control", control_state),
        Route("/api/scans/{uid}/live/control", set_control, methods=["POST"]),
        api("/api/scans/{uid}/live/{name}.png", live_slice),
        Route("/api/scans/{uid}/live/events", live_events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(_SecurityHeaders)])
