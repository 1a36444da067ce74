"""Export a volume as a TIFF stack and as NeXus NXtomoproc HDF5, from Python.
(The CLI does the same: `tomobluesky export SCAN_UID OUT --format nxtomoproc`.)

    TILED_URI=... TILED_API_KEY=$(cat DATA_DIR/keys/reader) OUT=/tmp/export [SCAN_UID=...] python docs/examples/export_volume.py

TILED_API_KEY is a read-only key: reading is all this script does.
"""

import os
from pathlib import Path

from tiled.client import from_uri
from tiled.queries import Key

from tomobluesky.catalog import export_volume

c = from_uri(os.environ["TILED_URI"], api_key=os.environ.get("TILED_API_KEY"))
out = Path(os.environ.get("OUT", "export"))
if "SCAN_UID" in os.environ:
    scan_uid = os.environ["SCAN_UID"]
    volume = c["processed"][scan_uid]
else:  # any finished volume
    scan_uid, volume = c["processed"].search(Key("status") == "complete").items().first()
print(export_volume(volume, out / scan_uid[:8], "tiff"))
print(export_volume(volume, out / f"{scan_uid[:8]}.nxs", "nxtomoproc"))
