"""A small web viewer over the Tiled catalogue: scans, live slices updating
during acquisition (server-sent events), finished volumes with a slice slider
and contrast control. It reads Tiled with the same client an analyst uses."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
from starlette.applications import Starlette
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

STATIC = Path(__file__).with_name("static")


def to_png(image: np.ndarray, low: float = 1.0, high: float = 99.5) -> bytes:
    """Grey-scale PNG of ``image`` clipped to its ``low``..``high`` percentiles."""
    from PIL import Image

    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    lo, hi = np.percentile(image, [low, high]) if image.size else (0.0, 1.0)
    scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((scaled * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _percentiles(request) -> tuple[float, float]:
    low = float(request.query_params.get("low", 1.0))
    high = float(request.query_params.get("high", 99.5))
    if not 0 <= low < high <= 100:
        raise ValueError("contrast needs 0 <= low < high <= 100")
    return low, high


def _level_for(levels, size: int) -> int:
    """The coarsest pyramid level whose slices are still at least ``size`` pixels
    on both sides (level 0 when ``size`` is 0): a 2048² slice shown in a
    512-pixel image needs a sixteenth of the bytes from level 2."""
    fits = [k for k, shape in enumerate(levels) if min(shape[1:]) >= size]
    return fits[-1] if fits else 0


def create_app(client, *, poll_interval: float = 0.2) -> Starlette:
    """The viewer's ASGI app over a Tiled ``client`` (with read access)."""

    def scans(request):
        processed, live = client["processed"], client["live"]
        rows = []
        for uid, run in client["raw"].items()[-1:-51:-1]:  # the 50 newest
            start = run.metadata.get("start", {})
            volume = processed[uid].metadata if uid in processed else {}
            rows.append({
                "uid": uid, "scan_id": start.get("scan_id"), "sample": start.get("sample_name", ""),
                "time": start.get("time"), "plan": start.get("plan_name"),
                "volume_status": volume.get("status"), "reason": volume.get("reason"),
                "live": uid in live,
            })
        rows.sort(key=lambda r: r["time"] or 0, reverse=True)
        return JSONResponse(rows)

    def volume_info(request):
        uid = request.path_params["uid"]
        if uid not in client["processed"]:
            return JSONResponse({"error": f"no volume for scan {uid}"}, status_code=404)
        node = client["processed"][uid]
        md = dict(node.metadata)
        for bulky in ("theta", "multiscales"):
            md.pop(bulky, None)
        shape = list(node["0"].shape) if "0" in node else []
        return JSONResponse({"shape": shape, "metadata": md})

    def volume_slice(request):
        uid, index = request.path_params["uid"], int(request.path_params["index"])
        node = client["processed"][uid]
        levels = node.metadata.get("levels") or [list(node["0"].shape)]
        if not 0 <= index < levels[0][0]:
            return JSONResponse({"error": f"slice {index} outside 0..{levels[0][0] - 1}"}, status_code=404)
        k = _level_for(levels, int(request.query_params.get("size", 0)))
        return Response(to_png(node[str(k)][index >> k], *_percentiles(request)), media_type="image/png")

    def live_slice(request):
        uid, name = request.path_params["uid"], request.path_params["name"]
        live = client["live"]
        if uid not in live or name not in live[uid]:
            return JSONResponse({"error": f"no live {name} slice for scan {uid}"}, status_code=404)
        return Response(to_png(live[uid][name].read(), *_percentiles(request)), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    async def live_events(request):
        uid = request.path_params["uid"]

        def snapshot():
            live = client["live"]
            md = dict(live[uid].metadata) if uid in live else {}
            done = uid in client["processed"] and client["processed"][uid].metadata.get("status") in ("complete", "failed")
            return md, done

        async def stream():
            last = None
            while not await request.is_disconnected():
                md, done = await asyncio.to_thread(snapshot)
                if md.get("projections") != last:
                    last = md.get("projections")
                    yield f"event: update\ndata: {json.dumps(md)}\n\n"
                if done:
                    yield "event: done\ndata: {}\n\n"
                    return
                await asyncio.sleep(poll_interval)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def on_error(request, exc):
        status = 400 if isinstance(exc, ValueError) else 500
        return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=status)

    return Starlette(routes=[
        Route("/", index),
        Route("/api/scans", scans),
        Route("/api/scans/{uid}/volume", volume_info),
        Route("/api/scans/{uid}/volume/{index:int}.png", volume_slice),
        Route("/api/scans/{uid}/live/{name}.png", live_slice),
        Route("/api/scans/{uid}/live/events", live_events),
    ], exception_handlers={Exception: on_error, ValueError: on_error})
