"""Live slices for other processes: each preview becomes one message for a publisher.

The message is ``["live", {scan_uid, metadata, slices: {name: uint8 image},
range: {name: [lo, hi]}}]``, keyed by the scan uid. Slices travel as 8-bit
images with their grey-level range, so three 2048-wide slices fit well under a
Kafka broker's 1 MB default. The publisher (``send(key, name, doc)``,
``flush(timeout)``, ``errors``) is :class:`tomobluesky.transport.LivePublisher`
for Kafka; this module knows nothing of the transport.
"""

from __future__ import annotations

import numpy as np

from ._sinks import ForwardingSink


def to_uint8(image: np.ndarray) -> tuple[np.ndarray, list[float]]:
    lo, hi = (float(v) for v in np.percentile(image, [0.5, 99.9]))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((image - lo) * scale, 0, 255).astype(np.uint8), [lo, hi]


class PublishingLiveSink(ForwardingSink):
    """Publishes each preview through ``publisher``, then hands everything to ``inner``."""

    def __init__(self, publisher, inner=None):
        self.publisher = publisher
        self.inner = inner

    @property
    def errors(self) -> list:
        return self.publisher.errors

    def write_preview(self, scan_uid, slices, metadata):
        images, ranges = {}, {}
        for name, image in slices.items():
            images[name], ranges[name] = to_uint8(np.asarray(image, dtype=np.float32))
        self.publisher.send(scan_uid, "live", {"scan_uid": scan_uid, "metadata": dict(metadata), "slices": images,
                                               "range": ranges})
        if self.inner is not None:
            self.inner.write_preview(scan_uid, slices, metadata)

    def complete_volume(self, scan_uid, store, metadata):
        self.publisher.flush(10)  # the last live slices land before the volume
        super().complete_volume(scan_uid, store, metadata)

    def record_failure(self, scan_uid, reason, metadata):
        self.publisher.flush(10)
        super().record_failure(scan_uid, reason, metadata)

    def flush(self, timeout: float = 10.0) -> int:
        return self.publisher.flush(timeout)
