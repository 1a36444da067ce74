"""Example processing steps for tomobluesky (docs/plugins.md).

tomobluesky finds them through the entry points in this package's
pyproject.toml, not through this module: importing it is only for calling
the functions yourself.
"""

from .filters import median3d, unsharp_mask
from .zingers import remove_zingers

__all__ = ["median3d", "remove_zingers", "unsharp_mask"]
