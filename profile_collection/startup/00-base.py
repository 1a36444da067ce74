# RunEngine with persistent metadata (scan_id keeps counting across restarts)
# and the usual live table/plots. Every setting of the profile comes from the one
# settings model (docs/configuration.md): $TOMOBLUESKY_CONFIG's file, TOMOBLUESKY_*
# variables (TOMOBLUESKY_MD_DIR, TOMOBLUESKY_HEADLESS, TOMOBLUESKY_SOURCE, ...).
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.utils import PersistentDict, ProgressBarManager

import bluesky.plan_stubs as bps  # noqa: F401  (for interactive use)
import bluesky.plans as bp  # noqa: F401

from tomobluesky.config import Settings

settings = Settings()
settings.data_dir.mkdir(parents=True, exist_ok=True)

RE = RunEngine({})
RE.md = PersistentDict(str(settings.runengine_md))
RE.md.setdefault("beamline_id", settings.beamline)
RE.waiting_hook = ProgressBarManager()

bec = BestEffortCallback()
if settings.headless:
    bec.disable_plots()
RE.subscribe(bec)
