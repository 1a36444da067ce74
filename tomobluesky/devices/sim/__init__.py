"""Frame sources for the simulated camera: a phantom, or a replayed real scan."""

from ._sources import TOOTH_ATTRIBUTION, PhantomSource, ReplaySource, SourceError, default_tooth_path

__all__ = ["PhantomSource", "ReplaySource", "SourceError", "TOOTH_ATTRIBUTION", "default_tooth_path"]
