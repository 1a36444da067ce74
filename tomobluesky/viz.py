"""Pictures of volumes for people: the central slices in one PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def central_slices(volume) -> dict[str, np.ndarray]:
    """Axial slice(s) and, for volumes with enough rows, two vertical slices through the axis.

    ``volume`` may be lazy (a Zarr array, a Tiled array client): only these slices are read."""
    nz, ny, nx = volume.shape
    if nz < 8:  # a few detector rows: every axial slice is informative
        return {f"axial z={z}": np.asarray(volume[z]) for z in range(nz)}
    return {f"axial z={nz // 2}": np.asarray(volume[nz // 2]),
            f"vertical y={ny // 2}": np.asarray(volume[:, ny // 2, :]),
            f"vertical x={nx // 2}": np.asarray(volume[:, :, nx // 2])}


def save_slices_png(volume, path: str | Path, title: str = "", slices: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = slices if slices is not None else central_slices(volume)
    lo, hi = np.percentile(np.concatenate([s.ravel() for s in slices.values()]), [1, 99.5])
    fig, axes = plt.subplots(1, len(slices), figsize=(4.5 * len(slices), 4.8), squeeze=False)
    for ax, (label, image) in zip(axes[0], slices.items()):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(label)
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
