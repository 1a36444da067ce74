"""Bluesky documents over Kafka: an explicit msgpack-numpy codec, a publisher that
never stalls the RunEngine (with an on-disk journal for outages), and the
consumer side: decode (:mod:`._decode`), the commit ledger (:mod:`._ledger`), the
consumer (:mod:`._consumer`: dead letters, commit-when-durable) and the worker loop
behind the worker processes (:mod:`._worker`, with its :class:`WorkerPolicy`).

Importing this package does not import confluent-kafka; constructing a
publisher or consumer does.
"""

from ._codec import CodecError, pack, unpack
from ._config import DEFAULT_CONFIG_PATH, KafkaConfig, deadletter_topic, document_topic, load_config
from ._consumer import Delivery, DocumentConsumer, WorkerStats
from ._decode import DOCUMENT_NAMES, Malformed, decode_document
from ._live import LivePublisher, live_topic
from ._logging import JsonFormatter, configure_json_logging
from ._publisher import DocumentTooLarge, KafkaPublisher, PublishError
from ._topics import ensure_topics
from ._worker import HandlerError, WorkerPolicy, run_complete, run_worker

__all__ = ["CodecError", "DEFAULT_CONFIG_PATH", "DOCUMENT_NAMES", "Delivery", "DocumentConsumer", "DocumentTooLarge",
           "HandlerError", "JsonFormatter", "KafkaConfig", "KafkaPublisher", "LivePublisher", "Malformed", "PublishError",
           "WorkerPolicy", "WorkerStats", "configure_json_logging", "deadletter_topic", "decode_document", "document_topic",
           "ensure_topics", "live_topic", "load_config", "pack", "run_complete", "run_worker", "unpack"]
from ._inprocess import OffThread, flush_all  # noqa: E402  in-process callbacks off the RunEngine's thread
__all__ += ["OffThread", "flush_all"]
from ._offprocess import ChildProcessDied, OffProcess  # noqa: E402  the same in a child process (no shared GIL)
__all__ += ["ChildProcessDied", "OffProcess"]
