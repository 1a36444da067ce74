"""A volume is a pyramid: level "0" at full resolution, "1", "2", … each 2×
smaller. Read one slice of level 0 and a whole coarse level over HTTP, then
open the same data lazily with Dask, through Tiled or straight from the Zarr
store when you share its file system.

    TILED_URI=http://127.0.0.1:8000 TILED_API_KEY=$(cat DATA_DIR/keys/reader) [SCAN_UID=...] python docs/examples/multiscale.py

TILED_API_KEY is a read-only key: reading is all this script does.
"""

import os
from pathlib import Path

from tiled.client import from_uri
from tiled.queries import Key

c = from_uri(os.environ["TILED_URI"], api_key=os.environ.get("TILED_API_KEY"))
if "SCAN_UID" in os.environ:
    scan_uid = os.environ["SCAN_UID"]
    volume = c["processed"][scan_uid]
else:  # any finished volume
    scan_uid, volume = c["processed"].search(Key("status") == "complete").items().first()
levels = volume.metadata["levels"]  # shapes, full resolution first
print(f"scan {scan_uid}: levels {levels}")

# One axial slice of full resolution: only the chunks that hold it are read.
full = volume["0"]
axial = full[levels[0][0] // 2]
# A vertical slice reads as cheaply: chunks are blocks, not whole slices.
vertical = full.read(slice=(slice(None), levels[0][1] // 2, slice(None)))
print(f"level 0 {full.shape}: axial slice {axial.shape}, vertical slice {vertical.shape}")

# The coarsest level, whole: an overview of the volume in one small request.
coarse = volume[str(len(levels) - 1)].read()
print(f"level {len(levels) - 1} {coarse.shape}: mean {coarse.mean():.4g}")

# Lazily with Dask, through Tiled: nothing is fetched until .compute().
lazy = from_uri(os.environ["TILED_URI"], api_key=os.environ.get("TILED_API_KEY"),
                structure_clients="dask")["processed"][scan_uid]["0"].read()
print(f"dask via Tiled: {lazy.shape}, chunks {lazy.chunksize}, slice sum {float(lazy[0].sum().compute()):.4g}")

# Lazily with Dask, straight from the OME-Zarr store (where its directory is
# mounted; napari and neuroglancer open it the same way).
store = Path(volume.metadata["zarr_store"])
if store.exists():
    import dask.array as da

    direct = da.from_zarr(str(store), component="0")
    print(f"dask from {store.name}: {direct.shape}, chunks {direct.chunksize}, "
          f"same slice: {bool((direct[0].compute() == lazy[0].compute()).all())}")
