# Tomography plans, called as bluesky's own plans are (detectors first, then the motors):
#   RE(tomo_scan([camera], rotation, shutter, sample, num_projections=181))
#   RE(tomo_fly_scan([camera], rotation, shutter, sample, num_projections=181, velocity=90))
# The queueserver finds them here by name (existing_plans_and_devices.yaml beside this folder).
from tomobluesky.plans import tomo_fly_scan, tomo_scan  # noqa: F401
