"""Live slices in a matplotlib figure, for IPython sessions (or PNGs when headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._sinks import ForwardingSink


class SliceFigureSink(ForwardingSink):
    """A sink that draws each preview: axial slice, two vertical slices through
    the axis, and the angular coverage so far, like BestEffortCallback's live
    plots. Wrap another sink to keep writing to Tiled as well:

        RE.subscribe(live_reconstruction_router(SliceFigureSink(TiledSink(client))))

    Without an interactive matplotlib backend each update is saved as a PNG
    in ``png_dir`` (default: the current directory).
    """

    def __init__(self, inner=None, *, png_dir: str | Path | None = None):
        self.inner = inner
        self.png_dir = Path(png_dir) if png_dir else None
        self._fig = None
        self._artists = {}
        self.saved: list[Path] = []

    def _figure(self):
        import matplotlib.pyplot as plt

        if self._fig is None or not plt.fignum_exists(self._fig.number):
            self._fig = plt.figure(figsize=(13, 4), num="tomobluesky live slices")
            axes = [self._fig.add_subplot(1, 4, i + 1) for i in range(3)]
            axes.append(self._fig.add_subplot(1, 4, 4, projection="polar"))
            self._axes = axes
            self._artists = {}
        return self._fig, self._axes

    def _interactive(self) -> bool:
        import matplotlib

        return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template")

    def write_preview(self, scan_uid, slices, metadata):
        import matplotlib.pyplot as plt

        fig, axes = self._figure()
        for ax, name in zip(axes, ("axial", "vertical_x", "vertical_y")):
            image = slices[name]
            lo, hi = np.percentile(image, [1, 99.5])
            if name in self._artists and self._artists[name].get_array().shape == image.shape:
                self._artists[name].set_data(image)
                self._artists[name].set_clim(lo, hi)
            else:
                ax.clear()
                self._artists[name] = ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, aspect="auto")
                ax.set_axis_off()
            ax.set_title(name.replace("_", " "))
        polar = axes[3]
        polar.clear()
        coverage = np.radians(metadata.get("angle_coverage_deg", 0.0))
        polar.bar(coverage / 2, 1, width=max(coverage, 1e-3), alpha=0.5)
        polar.set_yticks([])
        polar.set_title(f"{metadata.get('projections', 0)} projections")
        fig.suptitle(f"scan {scan_uid[:8]}  centre {metadata.get('center', float('nan')):.1f}  "
                     f"lag {metadata.get('lag_s', 0):.3f} s")
        if self._interactive():
            fig.canvas.draw_idle()
            plt.pause(0.001)
        else:
            directory = self.png_dir or Path.cwd()
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"live_{scan_uid[:8]}_{metadata.get('projections', 0):05d}.png"
            fig.savefig(path, dpi=80)
            self.saved.append(path)
        if self.inner is not None:
            self.inner.write_preview(scan_uid, slices, metadata)


