"""The deployable consumers behind Kafka: live reconstruction and catalogue
writing. Each is a plain function over a Kafka config and a Tiled client;
``callbacks/`` holds thin entry points that call ``main``.

Restart rule (with :func:`tomobluesky.transport.run_worker`): offsets of a run
are committed only after its stop document was handled, so a restarted worker
reads every unfinished run again from its start document. The handlers here
make that replay harmless: a run whose result is complete in Tiled is skipped,
a partial one is replaced.
"""

from __future__ import annotations

import argparse
import logging
import sys

from event_model import RunRouter

from .catalog import RAW, ConfinedDocuments, TiledSink, ensure_layout
from .keys import KEY_ENV, KeyRefused, add_key_file_option, client_key
from .limits import algorithm_name, memory_budget_gb
from .live import LiveReconstruction, is_tomography_run
from .pipeline import DEFAULT_BUDGET, DataRoots
from .schema import ReconSettings

log = logging.getLogger(__name__)

RECON_GROUP = "tomobluesky-reconstruction"
CATALOG_GROUP = "tomobluesky-catalog"


def reconstruction_router(client, settings: ReconSettings | None = None, *, on_start=None,
                          live_config=None, volume_dir=None, memory_budget: float = DEFAULT_BUDGET,
                          data_roots=None, dask=None, center_memory=None) -> RunRouter:
    """Per-run LiveReconstruction into Tiled, skipping runs already complete there.
    With ``live_config`` (a KafkaConfig) previews also go to ``<beamline>.tomobluesky.live``.
    Volumes are written as Zarr stores in ``volume_dir``, a directory the Tiled server reads.
    Detector files are read only under ``data_roots``. A Tiled outage escapes (the worker
    waits and re-reads the run); it is never recorded as a failed scan. ``dask``: the stop path's
    slabs on Dask (a scheduler address, "local"); ``center_memory``: the JSON file of the last centre
    per set-up, which starts the live slices of the next scan of that set-up."""
    roots = DataRoots.of(data_roots)
    sink = TiledSink(client, volume_dir=volume_dir)
    out = sink
    if live_config is not None:
        from .live import PublishingLiveSink
        from .transport import LivePublisher

        out = PublishingLiveSink(LivePublisher(live_config), sink)

    def factory(name, start):
        if not is_tomography_run(start):
            return [], []
        if sink.volume_status(start["uid"]) == "complete":
            log.info("volume of %s is already complete; skipping the replayed run", start["uid"])
            return [], []
        cb = LiveReconstruction(out, settings, memory_budget=memory_budget, data_roots=roots,
                                raise_unavailable=True, dask=dask, center_memory=center_memory)
        if on_start:
            on_start(cb)
        return [cb], []

    return RunRouter([factory])


def catalog_router(client, backup_directory=None, *, data_roots=None) -> RunRouter:
    """TiledWriter per run into ``raw``: a complete run is skipped, a partial one rewritten.
    Resources outside ``data_roots`` are refused before Tiled sees them (:class:`ConfinedDocuments`)."""
    from bluesky_tiled_plugins import TiledWriter

    ensure_layout(client)
    raw = client[RAW]
    roots = DataRoots.of(data_roots)

    def factory(name, start):
        uid = start["uid"]
        if uid in raw:
            if raw[uid].metadata.get("stop"):
                log.info("raw run %s is already complete; skipping the replayed run", uid)
                return [], []
            log.warning("raw run %s is partial (a worker stopped mid-run); rewriting it", uid)
            raw.delete_contents(uid, recursive=True, external_only=False)
        writer = TiledWriter(raw, batch_size=50,
                             backup_directory=str(backup_directory) if backup_directory else None)
        return [ConfinedDocuments(writer, roots)], []

    return RunRouter([factory])


def run_reconstruction_worker(config, client, *, settings: ReconSettings | None = None, group_id: str = RECON_GROUP,
                              volume_dir=None, memory_budget: float = DEFAULT_BUDGET, data_roots=None,
                              policy=None, stop=None, dask=None, center_memory=None):
    """Reconstruct every tomography run of the document topic into Tiled. After a Tiled outage the
    worker re-reads the unfinished runs into a fresh router (``reset``). ``policy``: a
    :class:`tomobluesky.transport.WorkerPolicy`; ``stop``: a threading.Event that ends the loop."""
    from .transport import run_worker

    def router():
        return _Lazy(lambda: reconstruction_router(client, settings, live_config=config, volume_dir=volume_dir,
                                                   memory_budget=memory_budget, data_roots=data_roots,
                                                   dask=dask, center_memory=center_memory))

    return run_worker(config, router(), group_id=group_id, reset=router, policy=policy, stop=stop)


def run_catalog_worker(config, client, *, group_id: str = CATALOG_GROUP, backup_directory=None, data_roots=None,
                       policy=None, stop=None):
    """Write every run of the document topic into ``raw``; after a Tiled outage the unfinished runs
    are re-read (a partial run in Tiled is replaced). ``policy`` and ``stop`` as for
    :func:`run_reconstruction_worker`."""
    from .transport import run_worker

    def router():
        return _Lazy(lambda: catalog_router(client, backup_directory, data_roots=data_roots))

    return run_worker(config, router(), group_id=group_id, reset=router, policy=policy, stop=stop)


class _Lazy:
    """A router made on the first document: making one asks Tiled (the layout), so an outage at
    start-up is met inside the worker loop, which waits it out, instead of killing the worker."""

    def __init__(self, make):
        self.make = make
        self.router = None

    def __call__(self, name, doc):
        if self.router is None:
            self.router = self.make()
        return self.router(name, doc)


def build_parser(prog: str = "tomobluesky-worker") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Follow the beamline's Bluesky document topic on Kafka and either reconstruct each tomography scan "
        "into Tiled ('reconstruction') or write the raw runs into Tiled ('catalog'). Workers of one kind share "
        "a consumer group, so several of them split the scans between them."))
    p.add_argument("kind", choices=["reconstruction", "catalog"], help="which worker to run")
    p.add_argument("--bootstrap", help="Kafka bootstrap servers (default: from the Kafka YAML config / env)")
    p.add_argument("--config", help="the site's Kafka YAML file, an NSLS-II kafka.yml (default: the settings' "
                   "kafka.config_file, $BLUESKY_KAFKA_CONFIG_PATH, /etc/bluesky/kafka.yml when present); the "
                   "settings' kafka section applies over it")
    p.add_argument("--beamline", help="beamline name; the topic is <beamline>.bluesky.runengine.documents")
    p.add_argument("--tiled-uri", help="Tiled server to write to (default: the settings' tiled_uri, "
                   "TOMOBLUESKY_TILED_URI)")
    add_key_file_option(p, "file holding the catalogue's write key; without it the key comes from "
                           "$TOMOBLUESKY_TILED_API_KEY (one of the two is required)")
    p.add_argument("--group", help="consumer group (default: tomobluesky-reconstruction / tomobluesky-catalog)")
    p.add_argument("--once", action="store_true", help="stop when every assigned partition is read to its end")
    p.add_argument("--until-idle", type=float, metavar="SECONDS", help="stop after SECONDS without a message")
    p.add_argument("--run-timeout", type=float, default=3600.0, metavar="SECONDS",
                   help="close a run that sent no document for SECONDS (its stop never came) as failed, so its "
                   "memory is freed and the partition's offset moves on; 0 never closes one (default 3600)")
    p.add_argument("--algorithm", type=algorithm_name,
                   help="reconstruction algorithm (start documents may override it)")
    p.add_argument("--volume-dir", help="reconstruction: directory for the volumes' Zarr stores; the Tiled server must "
                   "serve it as a readable root (env TOMOBLUESKY_VOLUME_DIR; default <data_dir>/volumes)")
    p.add_argument("--data-root", action="append", metavar="DIR",
                   help="a directory detector files may be read from (repeat for several); documents that name "
                   "files elsewhere are refused and dead-lettered (env TOMOBLUESKY_DATA_ROOTS as a JSON list; "
                   "default <data_dir>/detector)")
    p.add_argument("--memory-budget", type=memory_budget_gb, metavar="GB",
                   help="reconstruction: peak resident memory of the stop path in GB, at most the machine's memory "
                        "(default 2)")
    return p


def main(argv=None, prog: str = "tomobluesky-worker") -> int:
    from tiled.client import from_uri

    from .transport import WorkerPolicy, configure_json_logging

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    from .config import Settings

    defaults = Settings()
    args.tiled_uri = args.tiled_uri or defaults.tiled_uri
    if not args.tiled_uri:
        parser.error("no Tiled server: give --tiled-uri URI or set TOMOBLUESKY_TILED_URI")
    try:
        key = client_key(args.api_key_file)
    except KeyRefused as err:
        parser.error(str(err))
    if key is None:
        parser.error(f"no Tiled write key: set {KEY_ENV} or give --api-key-file PATH")
    configure_json_logging()
    config = defaults.kafka_config(args.config)
    changes = {k: v for k, v in (("bootstrap", args.bootstrap), ("beamline", args.beamline)) if v}
    config = config.replace(**changes) if changes else config
    client = from_uri(args.tiled_uri, api_key=key)
    kwargs = dict(policy=WorkerPolicy(once=args.once, until_idle=args.until_idle, on_error="deadletter",
                                      run_timeout=args.run_timeout or None))
    if args.group:
        kwargs["group_id"] = args.group
    kwargs["data_roots"] = args.data_root or defaults.roots
    if args.kind == "reconstruction":
        # the configured recon section (TOMOBLUESKY_RECON__*, the pipeline file), then the command line's algorithm
        settings = defaults.recon.model_copy(update={"algorithm": args.algorithm}) if args.algorithm \
            else defaults.recon
        stats = run_reconstruction_worker(config, client, settings=settings,
                                          volume_dir=args.volume_dir or defaults.volumes,
                                          memory_budget=(args.memory_budget or defaults.memory_budget_gb) * 1e9,
                                          dask=defaults.dask_scheduler,
                                          center_memory=defaults.data_dir / "live-centers.json", **kwargs)
    else:
        stats = run_catalog_worker(config, client, **kwargs)
    log.info("worker done: %s", stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
