# Where documents go. With TOMOBLUESKY_KAFKA_BOOTSTRAP set, documents are
# published to Kafka and the workers in callbacks/ reconstruct and catalogue;
# otherwise reconstruction and cataloguing run here, in-process, against the
# Tiled server at TOMOBLUESKY_TILED_URI (or one started in the data dir).
import atexit
import logging

from tomobluesky.catalog import SpoolingSink, TiledServer, TiledSink, ensure_layout
from tomobluesky.demo import CALLBACK_NICE, live_off_thread, raw_run_writer_in_child
from tomobluesky.live import SliceFigureSink
from tomobluesky.transport import OffProcess

log = logging.getLogger("tomobluesky.profile")

if settings.kafka_bootstrap:
    from tomobluesky.transport import KafkaPublisher

    # /etc/bluesky/kafka.yml ($BLUESKY_KAFKA_CONFIG_PATH, $TOMOBLUESKY_KAFKA_CONFIG), the settings' kafka section
    # and TOMOBLUESKY_KAFKA_* over it; the site file's beamline wins over the profile's default, as with nslsii
    publisher = KafkaPublisher(settings.kafka_config())
    RE.subscribe(publisher)
    atexit.register(publisher.close)
    print(f"documents → Kafka at {settings.kafka_bootstrap}")
else:
    if settings.tiled_uri:
        from tiled.client import from_uri

        from tomobluesky.keys import client_key

        # the catalogue's write key, from $TOMOBLUESKY_TILED_API_KEY (checked: at least 32 hex digits)
        tiled = from_uri(settings.tiled_uri, api_key=client_key())
        tiled_uri, key_file = settings.tiled_uri, None  # the writer's child reads the key from the environment
        volume_dir = settings.volumes  # must be a readable root of that server
    else:
        # below the RunEngine's CPU priority: the server answers the writer during every scan (issue 11)
        tiled_server = TiledServer(settings.data_dir, nice=settings.local_tiled_nice).start()
        atexit.register(tiled_server.stop)
        tiled = tiled_server.client()
        tiled_uri, key_file = tiled_server.uri, str(tiled_server.layout.key_file)
        volume_dir = tiled_server.layout.volumes
        print(f"Tiled catalogue at {tiled_server.uri} (read-only key for analysts in "
              f"{tiled_server.layout.reader_key_file})")
    # the catalogue writer works in a child process (it does not take this process's GIL, issue 11) and the
    # live reconstruction on its own thread (its figure and live_row() are here): RE(...) only queues
    # documents for them, and returns while they may still be busy with its end (the volume):
    # wait_for_callbacks() waits for them. (OffThread(raw_run_writer(tiled, backup)) would keep the writer here.)
    ensure_layout(tiled)  # before the writer's child and the live sink would both create the containers
    raw_writer = OffProcess(raw_run_writer_in_child, dict(tiled_uri=tiled_uri, key_file=key_file,
                                                          backup_dir=str(settings.data_dir / "backup")),
                            name="raw-run-writer", nice=CALLBACK_NICE)
    RE.subscribe(raw_writer)
    # the live figure (three slices + angular coverage) updates during RE(...);
    # headless (TOMOBLUESKY_HEADLESS=1) it saves PNGs in the data dir instead
    # a Tiled outage never stops a scan: volumes are spooled beside the raw backups (`tomobluesky replay`)
    live_figure = SliceFigureSink(SpoolingSink(TiledSink(tiled, volume_dir=volume_dir), settings.data_dir / "backup"),
                                  png_dir=settings.data_dir / "live-png")
    _live_runs = []
    live_recon = live_off_thread(live_figure, settings.recon, on_start=_live_runs.append,
                                 memory_budget=settings.memory_budget_gb * 1e9, data_roots=settings.roots)
    RE.subscribe(live_recon)

    def wait_for_callbacks(timeout: float | None = None) -> int:
        """Wait until the live reconstruction and the catalogue writer have handled every document so far
        (the last scan's volume is in Tiled); returns how many documents are still waiting after ``timeout``."""
        return live_recon.flush(timeout) + raw_writer.flush(timeout)

    # at exit, the last scan reaches the catalogue before the Tiled server started above stops
    atexit.register(raw_writer.close)
    atexit.register(live_recon.close)

    def live_row(row: int):
        """Move the live axial slice to detector row ``row`` during a scan
        (from another thread, e.g. a second IPython cell with RE running in the background)."""
        if not _live_runs or _live_runs[-1].slices is None:
            raise RuntimeError("no scan with live slices yet")
        _live_runs[-1].set_live_row(row)
