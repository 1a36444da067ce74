# Tomography plans bound to this end station's devices:
#   RE(tomo_scan(num_projections=181))
#   RE(tomo_fly_scan(num_projections=181, velocity=90))
from functools import partial

from tomobluesky import plans as _plans

tomo_scan = partial(_plans.tomo_scan, camera, rotation, shutter, sample)
tomo_fly_scan = partial(_plans.tomo_fly_scan, camera, rotation, shutter, sample)
tomo_scan.__doc__ = _plans.tomo_scan.__doc__
tomo_fly_scan.__doc__ = _plans.tomo_fly_scan.__doc__
