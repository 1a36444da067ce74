"""A real Apache Kafka broker for tests, demos and small deployments: :mod:`._jars` fetches
the broker's jars from Maven Central once; :mod:`._broker` runs a single KRaft node from them."""

from ._broker import (
    LOG4J2_CONFIG,
    STATE_FILE,
    BrokerState,
    KafkaBroker,
    broker_is_ready,
    default_state_dir,
    read_state,
)
from ._jars import (
    FALLBACK_VERSIONS,
    KAFKA_VERSION,
    LOG4J_VERSION,
    POM_TEMPLATE,
    KafkaServiceError,
    cached_jars,
    default_cache_root,
    fetch_jars,
    java_executable,
    render_pom,
)
from ..._ports import free_port

__all__ = ["FALLBACK_VERSIONS", "KAFKA_VERSION", "LOG4J2_CONFIG", "LOG4J_VERSION", "POM_TEMPLATE", "STATE_FILE",
           "BrokerState", "KafkaBroker", "KafkaServiceError", "broker_is_ready", "cached_jars",
           "default_cache_root", "default_state_dir", "fetch_jars", "free_port", "java_executable", "read_state",
           "render_pom"]
