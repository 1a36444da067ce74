"""Live slices in a matplotlib figure, for IPython sessions (or PNGs when headless).

The live path may hand over previews faster than a figure can be drawn, and
(behind :class:`tomobluesky.transport.OffThread`) from a thread that is not
the GUI's. So an interactive figure never draws inside ``write_preview``
from another thread: the preview replaces the one waiting in a single slot,
and the GUI's own timer draws whatever is newest at most every
``min_interval`` seconds. Previews replaced before they were drawn are
counted, never queued: the figure shows the newest state, not a backlog.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from ._sinks import ForwardingSink

log = logging.getLogger(__name__)

PANELS = ("axial", "vertical_x", "vertical_y")


class SliceFigureSink(ForwardingSink):
    """A sink that shows the previews: axial slice, two vertical slices through
    the axis, and the angular coverage so far, like BestEffortCallback's live
    plots. Wrap another sink to keep writing to Tiled as well:

        RE.subscribe(OffThread(live_reconstruction_router(SliceFigureSink(TiledSink(client)))))

    With an interactive matplotlib backend the figure is made where the sink is
    made (the main thread, e.g. an IPython profile) and redrawn by the GUI's
    timer every ``min_interval`` seconds with the newest preview only. Without
    one (``interactive`` False, or a non-GUI backend) each preview is saved as a
    PNG in ``png_dir`` (default: the current directory) by the thread that
    hands it over.
    """

    def __init__(self, inner=None, *, png_dir: str | Path | None = None, min_interval: float = 0.2,
                 interactive: bool | None = None):
        self.inner = inner
        self.png_dir = Path(png_dir) if png_dir else None
        self.min_interval = float(min_interval)
        self.interactive = _gui_backend() if interactive is None else bool(interactive)
        self._fig = None
        self._artists = {}
        self._timer = None
        self._lock = threading.Lock()
        self._latest = None  # (scan_uid, slices, metadata) not drawn yet
        self._last_draw = float("-inf")
        self._warned = False
        self.saved: list[Path] = []
        self.draws = 0  # figure redraws (interactive) or PNGs saved (headless)
        self.superseded = 0  # previews replaced by a newer one before they were drawn
        self.drawn = None  # (scan_uid, metadata) of the preview on show
        if self.interactive and _on_main_thread():
            self._figure()

    # --- the live path's side ---------------------------------------------------------
    def write_preview(self, scan_uid, slices, metadata):
        # copies: the live slices go on changing in place while this one waits to be drawn
        state = (scan_uid, {name: np.array(slices[name]) for name in PANELS}, dict(metadata))
        if not self.interactive:
            self._draw(*state)
            self._save_png(scan_uid, metadata)
        else:
            with self._lock:
                if self._latest is not None:
                    self.superseded += 1
                self._latest = state
            if _on_main_thread() and time.monotonic() - self._last_draw >= self.min_interval:
                self.draw_latest()  # subscribed without a dispatcher: draw here, as often as allowed
            elif self._fig is None and not _on_main_thread() and not self._warned:
                self._warned = True
                log.warning("the live figure was not made on the main thread: it cannot redraw itself; "
                            "call draw_latest() from the GUI's thread")
        if self.inner is not None:
            self.inner.write_preview(scan_uid, slices, metadata)

    def complete_volume(self, scan_uid, store, metadata):
        self._final_draw()
        super().complete_volume(scan_uid, store, metadata)

    def record_failure(self, scan_uid, reason, metadata):
        self._final_draw()
        super().record_failure(scan_uid, reason, metadata)

    # --- drawing (the GUI's thread) ---------------------------------------------------
    def draw_latest(self) -> bool:
        """Draw the newest preview if there is one not drawn yet (the GUI timer calls this);
        returns whether it drew."""
        with self._lock:
            state, self._latest = self._latest, None
        if state is None:
            return False
        self._draw(*state)
        self._fig.canvas.draw_idle()
        if _on_main_thread():
            self._fig.canvas.flush_events()
        return True

    def _final_draw(self):
        """At the end of a scan the last preview is drawn even if the timer has not come round yet."""
        if self.interactive and _on_main_thread():
            self.draw_latest()

    def _figure(self):
        import matplotlib.pyplot as plt

        if self._fig is None or not plt.fignum_exists(self._fig.number):
            self._fig = plt.figure(figsize=(13, 4), num="tomobluesky live slices")
            axes = [self._fig.add_subplot(1, 4, i + 1) for i in range(3)]
            axes.append(self._fig.add_subplot(1, 4, 4, projection="polar"))
            self._axes = axes
            self._artists = {}
            if self.interactive:
                self._timer = self._fig.canvas.new_timer(interval=max(1, int(self.min_interval * 1000)))
                self._timer.add_callback(self.draw_latest)
                self._timer.start()
        return self._fig, self._axes

    def _draw(self, scan_uid, slices, metadata):
        fig, axes = self._figure()
        for ax, name in zip(axes, PANELS):
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
        self._last_draw = time.monotonic()
        self.draws += 1
        self.drawn = (scan_uid, metadata)

    def _save_png(self, scan_uid, metadata):
        directory = self.png_dir or Path.cwd()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"live_{scan_uid[:8]}_{metadata.get('projections', 0):05d}.png"
        self._fig.savefig(path, dpi=80)
        self.saved.append(path)


def _gui_backend() -> bool:
    import matplotlib

    return matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo", "template")


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
