"""The catalogue writer registers only files under the data roots.

Tiled checks external assets against its readable roots, but that check was
beaten by ``..`` and by symlinks. So every (Stream)Resource is checked here
first, against the real path, and passed on with its URI rewritten to that
real path: Tiled then serves exactly the file that was checked. A refused
resource raises (the Kafka worker dead-letters it with the reason), and the
datums that point at it are refused too, instead of failing inside Tiled.
"""

from __future__ import annotations

from ..pipeline import DataRoots, RefusedPath

_RESOURCES = ("stream_resource", "resource")
_DATUMS = {"stream_datum": "stream_resource", "datum": "resource", "datum_page": "resource"}


class ConfinedDocuments:
    """Wraps a document callback (a TiledWriter): resources outside ``roots`` never reach it."""

    def __init__(self, callback, roots=None):
        self.callback = callback
        self.roots = DataRoots.of(roots)
        self._refused: set = set()

    def __call__(self, name, doc):
        if name in _RESOURCES:
            doc = self._checked(doc)
        elif name in _DATUMS and _resource_of(doc, _DATUMS[name]) in self._refused:
            raise RefusedPath(f"{name} {str(doc.get('uid', doc.get('datum_id')))[:80]} refers to refused resource "
                              f"{str(_resource_of(doc, _DATUMS[name]))[:80]}")
        return self.callback(name, doc)

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
