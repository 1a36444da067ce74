"""The catalogue writer registers only files under the data roots.

Tiled checks external assets against its readable roots, but that check was
beaten by ``..`` and by symlinks. So every (Stream)Resource is checked here
first, against the real path, and passed on with its URI rewritten to that
real path: Tiled then serves exactly the file that was checked. A refused
resource raises (the Kafka worker dead-letters it with the reason), and the
datums that point at it are refused too, instead of failing inside Tiled.

Events are checked too (found by the document fuzz test): a list or a map where
the descriptor declares a scalar (or a map anywhere) goes into TiledWriter's
table, and Tiled answers every try to store that table with a 500, which the
worker takes for an outage and waits out forever. Such an event is refused
here, with the reason, and the rest of the run goes on.
"""

from __future__ import annotations

from ..pipeline import DataRoots, RefusedPath

_RESOURCES = ("stream_resource", "resource")
_DATUMS = {"stream_datum": "stream_resource", "datum": "resource", "datum_page": "resource"}


class UnstorableValue(ValueError):
    """An event value the catalogue cannot store in a table."""


class ConfinedDocuments:
    """Wraps a document callback (a TiledWriter): resources outside ``roots`` never reach it,
    nor event values its tables cannot hold."""

    def __init__(self, callback, roots=None):
        self.callback = callback
        self.roots = DataRoots.of(roots)
        self._refused: set = set()
        self._internal: dict = {}  # descriptor uid → {data key: declared scalar?} of the keys stored in tables

    def __call__(self, name, doc):
        if name in _RESOURCES:
            doc = self._checked(doc)
        elif name in _DATUMS and _resource_of(doc, _DATUMS[name]) in self._refused:
            raise RefusedPath(f"{name} {str(doc.get('uid', doc.get('datum_id')))[:80]} refers to refused resource "
                              f"{str(_resource_of(doc, _DATUMS[name]))[:80]}")
        elif name == "descriptor":
            self._note_keys(doc)
        elif name in ("event", "event_page"):
            self._check_values(name, doc)
        return self.callback(name, doc)

    def _note_keys(self, doc) -> None:
        keys, uid = doc.get("data_keys"), doc.get("uid")
        if isinstance(keys, dict) and isinstance(uid, str):
            self._internal[uid] = {k: not v.get("shape") for k, v in keys.items()
                                   if isinstance(v, dict) and "external" not in v}

    def _check_values(self, name, doc) -> None:
        descriptor, data = doc.get("descriptor"), doc.get("data")
        internal = self._internal.get(descriptor, {}) if isinstance(descriptor, str) else {}
        if not isinstance(data, dict):
            return
        for key, scalar in internal.items():
            if key not in data:
                continue
            values = data[key] if name == "event_page" and isinstance(data[key], list) else [data[key]]
            for value in values:
                if isinstance(value, dict) or (scalar and (isinstance(value, (list, tuple))
                                                           or getattr(value, "ndim", 0) > 0)):
                    raise UnstorableValue(
                        f"{name} {str(doc.get('uid'))[:80]}: {key!r} holds a {type(value).__name__} where the "
                        f"descriptor declares {'a scalar' if scalar else 'an array'}; the catalogue cannot store it")

    def _checked(self, doc) -> dict:
        try:
            real = self.roots.resource_file(doc, must_exist=False)
        except RefusedPath:
            self._refused.add(doc.get("uid"))
            raise
        if "uri" in doc:
            return {**doc, "uri": real.as_uri()}
        return {**doc, "root": "/", "resource_path": str(real).lstrip("/")}


def _resource_of(doc, key):
    value = doc.get(key)
    if isinstance(value, list):  # a datum_page carries one resource per datum
        value = value[0] if value else None
    return value
