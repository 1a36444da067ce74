"""librdkafka settings for our clients: our defaults, then the site's, then the security section.

Site settings (``runengine_producer_config``, ``consumer_config`` of the NSLS-II file) are
respected. Some of them give up a guarantee our defaults give; then the client is still built
(a beamline's file must not stop the RunEngine) and one warning line says which guarantee is lost:

* ``acks`` other than ``all``: the broker acknowledges before the in-sync replicas hold the
  document, and idempotence (which librdkafka allows only with ``acks=all``) is switched off;
* ``enable.idempotence: false``: a retried send can duplicate a document or reorder a run;
* ``message.timeout.ms`` > 0: during an outage, documents already handed to the producer
  expire after that time and are kept under ``rejected/`` instead of waiting for the broker;
* consumer ``enable.auto.commit`` / ``enable.auto.offset.store`` true: these would commit runs
  that are not durable yet; ours (false) are kept and the line says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger("tomobluesky.transport.config")

_TRUE = (True, "true", "True", 1, "1")


def _is_all(acks) -> bool:
    return str(acks).lower() in ("all", "-1")


def producer_settings(ours: Mapping, site: Mapping, security: Mapping, *, source=None, who="publisher") -> dict:
    """``ours`` < ``site`` < ``security``, with idempotence dropped where the site's acks forbid it."""
    merged = {**ours, **site, **security}
    lost = []
    if not _is_all(merged.get("acks", "all")):
        if merged.get("enable.idempotence") in _TRUE:
            merged["enable.idempotence"] = False
        lost.append(f"acks={merged['acks']}: a document acknowledged by the leader alone (or not at all) is lost "
                    "if that broker fails, and idempotence is off (a retry may duplicate or reorder a run)")
    elif "enable.idempotence" in site and site["enable.idempotence"] not in _TRUE:
        lost.append("enable.idempotence=false: a retried send may duplicate a document or reorder a run")
    timeout = site.get("message.timeout.ms")
    if timeout is not None and str(timeout) != "0" and ours.get("message.timeout.ms") == 0:
        lost.append(f"message.timeout.ms={timeout}: in an outage, documents already handed to the producer are "
                    "given up after that time (kept under rejected/) instead of waiting for the broker")
    if lost:
        log.warning("%s settings from %s give up a delivery guarantee of the %s: %s", "site producer",
                    source or "the Kafka configuration", who, "; ".join(lost))
    return merged


#: consumer settings the commit-when-durable rule depends on: ours are kept
_CONSUMER_FIXED = {"enable.auto.commit": False, "enable.auto.offset.store": False}


def consumer_settings(ours: Mapping, site: Mapping, security: Mapping, *, source=None) -> dict:
    merged = {**ours, **site, **security}
    refused = [f"{k}={site[k]}" for k in _CONSUMER_FIXED if k in site and site[k] in _TRUE]
    if refused:
        merged.update(_CONSUMER_FIXED)
        log.warning("site consumer settings from %s ignored: %s (a worker commits a run only once its result is "
                    "durable; automatic commits would skip unfinished runs after a crash)",
                    source or "the Kafka configuration", ", ".join(refused))
    return merged
