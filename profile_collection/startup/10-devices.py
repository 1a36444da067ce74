# The simulated end station, in ophyd-async. Swap the source for a real file with
#   camera.source = ReplaySource("/path/to/scan.h5")
# or look at a phantom with camera.source = PhantomSource(n_columns=256)
# (TOMOBLUESKY_SOURCE=phantom, or `source: phantom` in the settings file, starts with one).
from tomobluesky.devices import PhantomSource, ReplaySource  # noqa: F401
from tomobluesky.devices.oa import make_sim_beamline

_source = PhantomSource() if settings.source == "phantom" else ReplaySource()
camera, rotation, shutter, sample = make_sim_beamline(_source, settings.data_dir / "detector")
