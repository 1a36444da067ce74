"""The live-slice topic, ``<beamline>.tomobluesky.live``: a small producer for previews.

Previews are best effort (a newer one replaces a lost one), so no journal and no
idempotence: the producer is asynchronous, ``send`` never waits, and delivery
errors are kept in ``errors`` and logged. :class:`tomobluesky.live.PublishingLiveSink`
decides what a preview message holds; this module only carries it, so that the live
package never imports Kafka.
"""

from __future__ import annotations

import logging

from ._codec import pack
from ._config import KafkaConfig

log = logging.getLogger(__name__)


def live_topic(beamline: str) -> str:
    return f"{beamline.lower()}.tomobluesky.live"


class LivePublisher:
    """``send(key, name, doc)`` packs ``[name, doc]`` and queues it on the live topic."""

    def __init__(self, config: KafkaConfig, *, producer_config: dict | None = None):
        from confluent_kafka import Producer

        self.topic = live_topic(config.beamline)
        self.errors: list[str] = []
        self._producer = Producer({**config.client_settings(), "linger.ms": 5,
                                   "message.max.bytes": config.max_message_bytes,
                                   "logger": logging.getLogger("tomobluesky.live.librdkafka"),
                                   **(producer_config or {})})

    def _report(self, err, msg) -> None:
        if err is not None:
            self.errors.append(str(err))
            log.warning("live slice for %s not delivered: %s", msg.key(), err)

    def send(self, key: str, name: str, doc: dict) -> None:
        self._producer.produce(self.topic, key=key.encode(), value=pack(name, doc), on_delivery=self._report)
        self._producer.poll(0)

    def flush(self, timeout: float = 10.0) -> int:
        """Wait for the previews sent so far; returns how many are still undelivered."""
        return self._producer.flush(timeout)
