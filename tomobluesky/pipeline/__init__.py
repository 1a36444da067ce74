"""The stop path: a scan on disk to a multiscale volume, slab by slab, within a memory budget.

``reconstruct_scan(scan, settings, output)`` is the one function every route
calls (in-process, the Kafka worker, a re-reconstruction of a file).
"""

from ._plan import SlabPlan, plan_slabs
from ._resources import bytes_read, current_rss_bytes, peak_rss_mb, process_peak_rss_mb
from ._roots import DataRoots, RefusedPath, check_dataset, open_dataset, uri_path
from ._scan import DXCHANGE, FrameReadError, FrameRun, HDF5Scan, OpenFiles, runs_from_indices
from ._steps import scan_pipeline
from ._stop import DEFAULT_BUDGET, center_rows, read_sinograms, reconstruct_scan

__all__ = ["DataRoots", "RefusedPath", "check_dataset", "open_dataset", "uri_path", "DEFAULT_BUDGET", "DXCHANGE", "FrameReadError", "FrameRun", "HDF5Scan", "OpenFiles", "SlabPlan", "bytes_read",
           "center_rows", "current_rss_bytes", "peak_rss_mb", "plan_slabs", "process_peak_rss_mb", "read_sinograms", "reconstruct_scan",
           "runs_from_indices", "scan_pipeline"]
