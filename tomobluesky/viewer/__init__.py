"""Web viewer: scans, live slices during acquisition, finished volumes."""

from ._app import create_app, to_png

__all__ = ["create_app", "to_png"]
