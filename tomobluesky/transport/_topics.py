"""Create the document and dead-letter topics with the partitions you want."""

from __future__ import annotations

from ._config import KafkaConfig


def ensure_topics(config: KafkaConfig, partitions: int = 1, *, timeout: float = 30.0) -> list[str]:
    """Create ``<topic>`` and ``<topic>.deadletter`` unless they exist; returns the topics created."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient(config.client_settings())
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [t for t in (config.document_topic, config.deadletter_topic) if t not in existing]
    if not wanted:
        return []
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted],
                                  operation_timeout=timeout)
    created = []
    for topic, fut in futures.items():
        try:
            fut.result(timeout)
            created.append(topic)
        except Exception as e:
            err = e.args[0] if e.args else None
            if getattr(err, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
