"""The databroker 2.x way: the Tiled client over the runs container.

    TILED_URI=http://127.0.0.1:8000 TILED_API_KEY=$(cat DATA_DIR/keys/reader) python docs/examples/databroker_v2.py

TILED_API_KEY is a read-only key: reading is all this script does.
"""

import os

from tiled.client import from_uri
from tiled.queries import Key

cat = from_uri(os.environ["TILED_URI"] + "/api/v1/metadata/raw", api_key=os.environ.get("TILED_API_KEY"))
run = cat[-1]                                   # the most recent run
start = run.metadata["start"]
print("latest run:", start["uid"], start["plan_name"], "sample", start.get("sample_name"))
print("angles (deg):", start["theta"][:3], "...", len(start["theta"]))
flats = run["flat"]["camera_image"].read()      # read through the HDF5 file the camera wrote
print("flats:", flats.shape, "mean", float(flats.mean()))
print("step scans:", len(cat.search(Key("plan_name") == "tomo_scan")))
