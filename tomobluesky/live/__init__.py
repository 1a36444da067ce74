"""Live document consumers: reconstruction while a scan is acquired."""

from ._figure import SliceFigureSink
from ._publishing_sink import PublishingLiveSink
from ._frames import FrameReader, FrameReadError, read_frames
from ._reconstruction import (LiveReconstruction, is_tomography_run, live_reconstruction_router,
                              reconstruct_documents)
from ._accumulator import ScanDocuments
from ._sinks import ForwardingSink, MemorySink, ReconstructionSink
from ._slices import IncrementalSlices

__all__ = ["FrameReadError", "ForwardingSink", "IncrementalSlices", "ScanDocuments", "PublishingLiveSink", "LiveReconstruction", "SliceFigureSink", "MemorySink", "ReconstructionSink", "is_tomography_run",
           "live_reconstruction_router", "read_frames", "reconstruct_documents", "FrameReader"]
