"""Live slices as a Kafka stream: ``<beamline>.tomobluesky.live``.

Each preview is one message keyed by the scan uid: ``["live", {scan_uid,
metadata, slices: {name: uint8 image}, range: {name: [lo, hi]}}]`` in the
transport's msgpack codec. Slices travel as 8-bit images with their grey-level
range, so three 2048-wide slices fit well under the broker's 1 MB default.
"""

from __future__ import annotations

import logging

import numpy as np

from ._sinks import ForwardingSink

log = logging.getLogger(__name__)


def live_topic(beamline: str) -> str:
    return f"{beamline}.tomobluesky.live"


def to_uint8(image: np.ndarray) -> tuple[np.ndarray, list[float]]:
    lo, hi = (float(v) for v in np.percentile(image, [0.5, 99.9]))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((image - lo) * scale, 0, 255).astype(np.uint8), [lo, hi]


class KafkaLiveSink(ForwardingSink):
    """Publishes each preview to the live topic, then hands everything to ``inner``."""

    def __init__(self, config, inner=None, *, producer_config: dict | None = None):
        from confluent_kafka import Producer

        self.topic = live_topic(config.beamline)
        self.inner = inner
        self.errors: list[str] = []
        self._producer = Producer({"bootstrap.servers": config.bootstrap, "linger.ms": 5,
                                   "message.max.bytes": config.max_message_bytes,
                                   "logger": logging.getLogger("tomobluesky.live.librdkafka"),
                                   **(producer_config or {})})

    def _report(self, err, msg):
        if err is not None:
            self.errors.append(str(err))
            log.warning("live slice for %s not delivered: %s", msg.key(), err)

    def write_preview(self, scan_uid, slices, metadata):
        from ..transport import pack

        images, ranges = {}, {}
        for name, image in slices.items():
            images[name], ranges[name] = to_uint8(np.asarray(image, dtype=np.float32))
        value = pack("live", {"scan_uid": scan_uid, "metadata": dict(metadata), "slices": images, "range": ranges})
        self._producer.produce(self.topic, key=scan_uid.encode(), value=value, on_delivery=self._report)
        self._producer.poll(0)
        if self.inner is not None:
            self.inner.write_preview(scan_uid, slices, metadata)


    def complete_volume(self, scan_uid, store, metadata):
        self._producer.flush(10)  # the last live slices land before the volume
        super().complete_volume(scan_uid, store, metadata)

    def record_failure(self, scan_uid, reason, metadata):
        self._producer.flush(10)
        super().record_failure(scan_uid, reason, metadata)

    def flush(self, timeout: float = 10.0) -> int:
        return self._producer.flush(timeout)
