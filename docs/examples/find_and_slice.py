"""Find volumes by sample, scan id or date; read one slice over HTTP; follow
the link back to the raw run. Run against any tomobluesky catalogue:

    TILED_URI=http://127.0.0.1:8000 TILED_API_KEY=$(cat DATA_DIR/keys/reader) python docs/examples/find_and_slice.py

TILED_API_KEY is a read-only key: reading is all this script does.
"""

import os
from datetime import datetime, timedelta

from tiled.client import from_uri
from tiled.queries import Key

c = from_uri(os.environ["TILED_URI"], api_key=os.environ.get("TILED_API_KEY"))
processed = c["processed"]

# by sample name, and only finished volumes
tooth = processed.search(Key("sample_name") == os.environ.get("SAMPLE", "tooth")).search(Key("status") == "complete")
print(f"{len(tooth)} complete volume(s) of sample {os.environ.get('SAMPLE', 'tooth')!r}")

for scan_uid, volume in tooth.items():
    md = volume.metadata
    # by scan id finds the same volume
    assert scan_uid in processed.search(Key("scan_id") == md["scan_id"])
    # one axial slice of the full-resolution level "0": only the chunks holding it are read
    full = volume["0"]
    middle = full.shape[0] // 2
    axial = full[middle]
    print(f"scan {md['scan_id']} {scan_uid}: shape {full.shape}, centre {md['center']:.2f}, "
          f"slice {middle} mean {axial.mean():.4g}, {len(md['levels'])} pyramid level(s)")
    # back to the raw run it came from
    run = c["raw"][md["scan_uid"]]
    print(f"  raw run: plan {run.metadata['start']['plan_name']}, "
          f"{run['primary']['camera_image'].shape[0]} projections, streams {list(run)}")

# by date: raw runs of the last day (start documents carry a UNIX time)
since = (datetime.now() - timedelta(days=1)).timestamp()
recent = c["raw"].search(Key("start.time") >= since)
print(f"{len(recent)} raw run(s) in the last 24 h")
