"""Services tomobluesky runs for itself (a real Kafka broker from Maven Central jars)."""

from .kafka import (
    KAFKA_VERSION,
    BrokerState,
    KafkaBroker,
    KafkaServiceError,
    broker_is_ready,
    default_cache_root,
    default_state_dir,
    fetch_jars,
    read_state,
    render_pom,
)

__all__ = ["KAFKA_VERSION", "BrokerState", "KafkaBroker", "KafkaServiceError", "broker_is_ready",
           "default_cache_root", "default_state_dir", "fetch_jars", "read_state", "render_pom"]
