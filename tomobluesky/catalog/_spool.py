"""Nothing is lost while Tiled is down: spool to disk, replay exactly once.

In-process, the RunEngine must never wait for or fail on the catalogue. Two
things can be left over when Tiled is unreachable during a scan:

- the raw run: TiledWriter's backup (``raw_run_writer(..., backup_directory)``)
  writes the *whole* run as JSON lines once Tiled fails, one ``<uid>.jsonl``
  per run;
- the volume: the stop path writes the Zarr store to the volume directory
  anyway (a local disk); :class:`SpoolingSink` then writes a small record
  beside the backups (``volumes/<uid>.json``) instead of registering it.

:func:`replay` puts both into the catalogue: a raw run that is complete there
is skipped, a partial one (Tiled went down mid-run) is replaced by the full
run from the backup; a volume that is complete is skipped, otherwise the
spooled store is registered. Replayed files move to ``replayed/``, so running
it twice does nothing the second time, and a failure leaves the file in place.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .._errors import is_transient
from ._writers import PROCESSED, RAW, TiledSink, VolumeExists, ensure_layout

log = logging.getLogger(__name__)

VOLUMES = "volumes"
REPLAYED = "replayed"


class SpoolingSink:
    """A :class:`TiledSink` that never fails a scan because Tiled is down.

    While Tiled is unreachable, previews are dropped (counted; they are
    refreshed by the next one), the volume's store is still written to
    ``sink.volume_dir``, and its registration (or a failure record) is spooled
    to ``spool_dir/volumes/<uid>.json`` for :func:`replay`.

    The Tiled client retries a refused request for up to ``TILED_RETRY_TIMEOUT``
    (45 s by default) before it gives up, and that wait happens in the caller's
    thread (the RunEngine's, in-process). So after one failure Tiled is not
    asked again for ``probe_interval`` seconds: during an outage a scan waits
    for one retry cycle per interval, not one per preview.
    """

    def __init__(self, sink: TiledSink, spool_dir: str | Path, *, probe_interval: float = 60.0):
        self.sink = sink
        self.spool_dir = Path(spool_dir)
        self.probe_interval = probe_interval
        self.previews_dropped = 0
        self.spooled: list[Path] = []
        self._down_until = 0.0
        self._offline: set[str] = set()  # scans whose volume went (or goes) to the spool

    @property
    def online(self) -> bool:
        """False while a recent outage says not to ask Tiled yet."""
        return time.monotonic() >= self._down_until

    def _try(self, call, *args):
        """``call(*args)``, or :class:`_Offline` when Tiled is (or was just found) unreachable."""
        if not self.online:
            raise _Offline()
        try:
            return call(*args)
        except Exception as err:
            if not is_transient(err):
                raise
            self._down_until = time.monotonic() + self.probe_interval
            log.warning("Tiled unreachable (%s: %s); results are spooled to %s and Tiled is asked again in %g s",
                        type(err).__name__, err, self.spool_dir, self.probe_interval)
            raise _Offline() from err

    def write_preview(self, scan_uid, slices, metadata):
        try:
            self._try(self.sink.write_preview, scan_uid, slices, metadata)
        except _Offline:
            self.previews_dropped += 1

    def prepare_preview(self, scan_uid, slices, metadata):
        try:
            self._try(self.sink.prepare_preview, scan_uid, slices, metadata)
        except _Offline:
            pass  # the first preview makes the nodes when Tiled is back

    def volume_status(self, scan_uid):
        try:
            return self._try(self.sink.volume_status, scan_uid)
        except _Offline:
            return "complete" if _read_record(self._record_path(scan_uid), "volume") else None

    def begin_volume(self, scan_uid, metadata) -> Path:
        try:
            return self._try(self.sink.begin_volume, scan_uid, metadata)
        except _Offline:
            self._offline.add(scan_uid)
            return self.sink.fresh_volume_path(scan_uid)

    def complete_volume(self, scan_uid, store, metadata):
        if scan_uid not in self._offline:
            try:
                return self._try(self.sink.complete_volume, scan_uid, store, metadata)
            except _Offline:
                pass
        self._offline.discard(scan_uid)
        self._spool({"kind": "volume", "scan_uid": scan_uid, "store": str(store), "metadata": metadata})

    def record_failure(self, scan_uid, reason, metadata):
        try:
            return self._try(self.sink.record_failure, scan_uid, reason, metadata)
        except _Offline:
            self._spool({"kind": "failure", "scan_uid": scan_uid, "reason": reason, "metadata": metadata})

    def live_request(self, scan_uid):
        """The viewer's live request from Tiled; none while Tiled is unreachable."""
        try:
            return self._try(self.sink.live_request, scan_uid)
        except _Offline:
            return None

    def steps_dir(self, scan_uid) -> Path:
        return self.sink.steps_dir(scan_uid)

    def register_outputs(self, scan_uid, outputs, metadata, failure=None):
        """Volume steps' outputs into Tiled; during an outage they stay on disk, unregistered (not spooled:
        `tomobluesky replay` registers volumes, not step outputs), and the log says where."""
        try:
            return self._try(self.sink.register_outputs, scan_uid, outputs, metadata, failure)
        except _Offline:
            log.warning("Tiled unreachable: the step outputs of %s stay unregistered in %s", scan_uid,
                        self.sink.steps_dir(scan_uid))

    def _record_path(self, scan_uid) -> Path:
        self.sink.volume_path(scan_uid)  # refuses a uid that is not a plain key
        return self.spool_dir / VOLUMES / f"{scan_uid}.json"

    def _spool(self, record):
        path = self._record_path(record["scan_uid"])
        _write_private(path, json.dumps(record, default=_jsonable))
        self.spooled.append(path)
        log.warning("spooled %s of %s to %s; put it into the catalogue with `tomobluesky replay %s`",
                    record["kind"], record["scan_uid"], path, self.spool_dir)


class _Offline(Exception):
    """Tiled is unreachable: take the spool path."""


@dataclass
class ReplayReport:
    """What :func:`replay` did, by file."""

    runs_written: list[str] = field(default_factory=list)
    runs_completed: list[str] = field(default_factory=list)  # were partial in Tiled
    runs_skipped: list[str] = field(default_factory=list)  # already complete
    volumes_registered: list[str] = field(default_factory=list)
    volumes_skipped: list[str] = field(default_factory=list)
    failures_recorded: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # file → reason; the file stays for the next replay

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def replay(spool_dir: str | Path, client, *, volume_dir: str | Path | None = None, data_roots=None,
           progress=None) -> ReplayReport:
    """Put every spooled run and volume under ``spool_dir`` into the catalogue, exactly once.

    ``client`` needs write access. ``volume_dir`` is the server's readable
    volume root (the spooled stores must lie inside it). Raw runs are written
    before volumes, so a volume never points at a missing run."""
    spool_dir = Path(spool_dir)
    if not spool_dir.is_dir():
        raise FileNotFoundError(f"no spool directory {spool_dir}")
    report = ReplayReport()
    runs = sorted(spool_dir.glob("*.jsonl"))
    records = sorted((spool_dir / VOLUMES).glob("*.json"))
    sink = TiledSink(client, volume_dir=volume_dir)
    for k, path in enumerate(runs + records):
        try:
            if path.suffix == ".jsonl":
                _replay_run(path, client, report, data_roots)
            else:
                _replay_volume(path, sink, report)
        except Exception as err:
            if is_transient(err):
                raise  # Tiled went away again: stop here, everything left stays spooled
            report.errors[str(path)] = f"{type(err).__name__}: {err}"
            log.error("could not replay %s: %s", path, report.errors[str(path)])
            continue
        _move_replayed(path, spool_dir)
        if progress:
            progress(k + 1, len(runs) + len(records))
    return report


def read_backup(path: Path) -> list[tuple[str, dict]]:
    """The ``(name, doc)`` pairs of a TiledWriter JSON-lines backup; a torn last line (a crash mid-write) is
    dropped with a warning, anything else malformed is an error naming the line."""
    lines = Path(path).read_text().splitlines()
    docs = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            docs.append((str(item["name"]), dict(item["doc"])))
        except (ValueError, KeyError, TypeError) as err:
            if n == len(lines):
                log.warning("%s: dropping a torn last line", path)
                break
            raise ValueError(f"{path}:{n}: not a backed-up document ({err})") from None
    if not docs or docs[0][0] != "start":
        raise ValueError(f"{path}: a backed-up run must begin with its start document")
    return docs


def _replay_run(path, client, report, data_roots):
    from bluesky_tiled_plugins import TiledWriter

    from ._confine import ConfinedDocuments

    docs = read_backup(path)
    uid = docs[0][1]["uid"]
    raw = ensure_layout(client)[RAW]
    if uid in raw:
        if raw[uid].metadata.get("stop"):
            report.runs_skipped.append(uid)
            return
        raw.delete_contents(uid, recursive=True, external_only=False)  # partial: the backup holds it all
        report.runs_completed.append(uid)
    else:
        report.runs_written.append(uid)
    writer = ConfinedDocuments(TiledWriter(raw, batch_size=100), data_roots)
    for name, doc in docs:
        writer(name, doc)


def _replay_volume(path, sink: TiledSink, report):
    record = json.loads(Path(path).read_text())
    uid, kind = record["scan_uid"], record["kind"]
    if kind == "failure":
        sink.record_failure(uid, record["reason"], record["metadata"])
        report.failures_recorded.append(uid)
    elif kind == "volume":
        if sink.volume_status(uid) == "complete":
            report.volumes_skipped.append(uid)
            return
        sink.register_volume(uid, Path(record["store"]), record["metadata"])
        report.volumes_registered.append(uid)
    else:
        raise ValueError(f"unknown spool record kind {kind!r}")


def _read_record(path: Path, kind: str) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("kind") == kind else None


def _move_replayed(path: Path, spool_dir: Path):
    target = spool_dir / REPLAYED / path.relative_to(spool_dir)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.replace(path, target)


def _write_private(path: Path, text: str):
    """Write ``text`` atomically (a crash leaves the old file or the new one), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot spool a {type(value).__name__}")


__all__ = ["PROCESSED", "ReplayReport", "SpoolingSink", "read_backup", "replay"]
