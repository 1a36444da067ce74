"""Web viewer: scans, live slices during acquisition, finished volumes.

Unless started public, it reads Tiled with each reader's own key."""

from ._app import CSP, create_app, to_png
from ._auth import COOKIE, ClientCache

__all__ = ["COOKIE", "CSP", "ClientCache", "create_app", "to_png"]
