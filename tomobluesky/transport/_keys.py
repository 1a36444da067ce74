"""Which run a document belongs to: the message key is the run's start uid."""

from __future__ import annotations


class RunKeys:
    """Follow foreign keys (descriptor, resource, stream_resource → run start) across documents."""

    def __init__(self, *, strict: bool = False):
        """``strict``: unknown links give None (a consumer that joined mid-run); otherwise
        they fall back to the latest start (a publisher: runs come one at a time)."""
        self.strict = strict
        self._owner: dict[str, str] = {}  # descriptor/resource/stream_resource uid → start uid
        self._by_run: dict[str, list[str]] = {}
        self.last_start: str | None = None

    def key(self, name: str, doc: dict) -> str | None:
        """The start uid of the run ``doc`` belongs to (None only when nothing links it to a run)."""
        if name == "start":
            self.last_start = doc.get("uid")
            return self.last_start
        run = None
        if name in ("descriptor", "stop"):
            run = doc.get("run_start")
        elif name in ("event", "event_page"):
            run = self._owner.get(doc.get("descriptor"))
        elif name in ("resource", "stream_resource"):
            run = doc.get("run_start") or None
        elif name in ("datum", "datum_page"):
            run = self._owner.get(doc.get("resource"))
        elif name == "stream_datum":
            run = self._owner.get(doc.get("stream_resource")) or self._owner.get(doc.get("descriptor"))
        if run is None and not self.strict:
            run = self.last_start
        if name in ("descriptor", "resource", "stream_resource") and doc.get("uid") and run:
            self._owner[doc["uid"]] = run
            self._by_run.setdefault(run, []).append(doc["uid"])
        if name == "stop" and run:
            for uid in self._by_run.pop(run, ()):
                self._owner.pop(uid, None)
        return run

    def forget(self, run: str) -> None:
        """Drop what links documents to ``run`` (a run closed without its stop document)."""
        for uid in self._by_run.pop(run, ()):
            self._owner.pop(uid, None)
