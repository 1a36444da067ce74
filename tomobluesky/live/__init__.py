"""Live document consumers: reconstruction while a scan is acquired."""

from ._frames import FrameReadError, read_frames
from ._reconstruction import (LiveReconstruction, is_tomography_run, live_reconstruction_router,
                              reconstruct_documents)
from ._sinks import MemorySink, ReconstructionSink

__all__ = ["FrameReadError", "LiveReconstruction", "MemorySink", "ReconstructionSink", "is_tomography_run",
           "live_reconstruction_router", "read_frames", "reconstruct_documents"]
