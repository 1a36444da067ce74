# RunEngine with persistent metadata (scan_id keeps counting across restarts)
# and the usual live table/plots.
import os
from pathlib import Path

from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.utils import PersistentDict, ProgressBarManager

import bluesky.plan_stubs as bps  # noqa: F401  (for interactive use)
import bluesky.plans as bp  # noqa: F401

from tomobluesky.config import Settings

settings = Settings()
settings.data_dir.mkdir(parents=True, exist_ok=True)

RE = RunEngine({})
RE.md = PersistentDict(str(Path(os.environ.get("TOMOBLUESKY_MD_DIR", settings.data_dir / "runengine-md"))))
RE.md.setdefault("beamline_id", settings.beamline)
RE.waiting_hook = ProgressBarManager()

bec = BestEffortCallback()
bec.disable_plots() if os.environ.get("TOMOBLUESKY_HEADLESS") else None
RE.subscribe(bec)
