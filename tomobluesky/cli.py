"""The ``tomobluesky`` command: the only place that reads configuration and
wires the parts together."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import __version__
from .keys import add_key_file_option, refuse_key_argument
from .config import Settings
from .limits import MAX_PROJECTIONS, PHANTOM_SIZES, PORTS, algorithm_name, bounded, memory_budget_gb

DEMO_HELP = """\
Run the embedded default end to end, in one process and with no broker:
start a local Tiled server in DATA_DIR, scan a simulated beamline (replaying the
real APS tooth scan, or a Shepp-Logan phantom) with the Bluesky RunEngine,
reconstruct live (previews during the scan, the volume at its end), register the
raw run and the volume in Tiled, save a PNG of the central slices, print a
summary and shut the server down. `tomobluesky serve --data-dir DATA_DIR`
serves the results again afterwards.
"""


def _add_demo(sub, settings: Settings):
    p = sub.add_parser("demo", help="scan, reconstruct live and catalogue, in one process",
                       description=DEMO_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=str(settings.data_dir),
                   help="catalogue data directory, kept after the demo (default: %(default)s)")
    p.add_argument("--source", choices=["tooth", "phantom"], default="tooth",
                   help="what the simulated camera sees: the replayed tooth scan or a phantom (default: tooth)")
    p.add_argument("--tooth-file", default=None,
                   help="Data Exchange HDF5 file to replay (default: ../shared/data/tooth.h5 or $TOMOBLUESKY_TOOTH)")
    p.add_argument("--fly", action="store_true", help="fly scan (continuous rotation) instead of a step scan")
    p.add_argument("--num-projections", type=bounded(int, 2, MAX_PROJECTIONS), default=None,
                   help=f"projections over 180 degrees, 2..{MAX_PROJECTIONS} (default: as many as the replayed "
                        "file has; 180 for the phantom)")
    p.add_argument("--phantom-size", type=bounded(int, *PHANTOM_SIZES), default=128,
                   help="phantom width in pixels, %d..%d (default: %%(default)s)" % PHANTOM_SIZES)
    p.add_argument("--algorithm", type=algorithm_name, default=settings.recon.algorithm,
                   help="reconstruction algorithm, one the engine has (default: %(default)s)")
    p.add_argument("--port", type=bounded(int, *PORTS), default=None, help="Tiled port (default: a free one)")
    refuse_key_argument(p, "the demo uses the keys kept in DATA_DIR/keys/")
    p.add_argument("--kafka", metavar="BOOTSTRAP", default=settings.kafka_bootstrap,
                   help="send documents through this Kafka broker to worker processes instead of reconstructing "
                        "in-process (start one with `tomobluesky kafka start`)")
    p.add_argument("--memory-budget", type=memory_budget_gb, metavar="GB", default=settings.memory_budget_gb,
                   help="peak resident memory of the stop path, in GB, at most the machine's memory; slabs are "
                        "sized to fit (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a text summary")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo, run_demo_kafka

    _stop_on_signals()  # SIGTERM too ends the demo through KeyboardInterrupt: Tiled and workers are stopped
    recon = settings.recon.model_copy(update={"algorithm": args.algorithm})
    common = dict(source=args.source, tooth_file=args.tooth_file, fly=args.fly, num_projections=args.num_projections,
                  phantom_size=args.phantom_size, port=args.port,
                  progress=not args.json and sys.stderr.isatty(), settings=recon)
    if args.kafka:  # the worker processes take their budget from TOMOBLUESKY_MEMORY_BUDGET_GB
        summary = run_demo_kafka(args.data_dir, args.kafka, kafka_config=settings.kafka_config(), **common)
    else:
        summary = run_demo(args.data_dir, memory_budget=args.memory_budget * 1e9, dask=settings.dask_scheduler,
                           **common)
    if args.json:
        print(json.dumps(summary))
        return 0
    t = summary["timings"]
    print(f"scan {summary['scan_uid']} (scan_id {summary['scan_id']}, {summary['source']}, {summary['scan_type']} scan)")
    print(f"  centre of rotation  {summary['center']:.2f} px  ({summary['center_method']}, "
          f"confidence {summary['center_confidence']:.2f})")
    print(f"  volume              {summary['volume_shape']}  in Tiled at {summary['tiled_uri']}/processed")
    print(f"  live previews       {summary['preview_updates']}")
    print(f"  timings             acquisition {t['acquisition']:.2f} s, reconstruction {t['reconstruction']:.2f} s, "
          f"registration {t['registration']:.2f} s")
    print(f"  stop to volume      {summary['stop_to_volume_s']:.2f} s, peak memory {summary['peak_rss_mb']:.0f} MB, "
          f"read amplification {summary['read_amplification']}")
    print(f"  central slices      {summary['png']}")
    print(f"Serve it again with:  tomobluesky serve --data-dir {summary['data_dir']}")
    return 0


def _add_serve(sub, settings: Settings):
    p = sub.add_parser("serve", help="serve a catalogue directory with Tiled",
                       description="Serve the Tiled catalogue in DATA_DIR (for example a demo's) until Ctrl-C. "
                                   "Writes need the write key (DATA_DIR/keys/writer, for the services); reads "
                                   "need a key too (the read-only DATA_DIR/keys/reader is for analysts) unless "
                                   "--public. Both keys are made at the first start and kept.")
    p.add_argument("--data-dir", default=str(settings.data_dir), help="catalogue data directory (default: %(default)s)")
    p.add_argument("--port", type=bounded(int, *PORTS), default=8000, help="port (default: %(default)s)")
    p.add_argument("--writer-key-file", metavar="PATH",
                   help="at the first start, use the key in PATH as the write key instead of a new random one")
    p.add_argument("--reader-key-file", metavar="PATH",
                   help="at the first start, use the key in PATH as the read-only key instead of a new random one")
    refuse_key_argument(p, "give --writer-key-file PATH")
    p.add_argument("--public", action="store_true", help="allow anonymous reads (writes still need the write key)")
    p.add_argument("--nice", type=bounded(int, 0, 19), default=0, metavar="N",
                   help="once started, serve N steps below this command's CPU priority (0-19; default: "
                        "%(default)s). On an acquisition host with few cores, 10 leaves the RunEngine the CPU "
                        "during scans; the server catches up between them (docs/benchmarks.md)")
    p.set_defaults(func=_cmd_serve)


def _stop_on_signals():
    """Ctrl-C and SIGTERM both end the command through KeyboardInterrupt, so the Tiled child is stopped,
    never orphaned. SIGINT is set explicitly: a process started in the background by a non-interactive
    shell inherits SIGINT ignored, and Python then leaves it ignored."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _cmd_serve(args, settings: Settings) -> int:
    import time

    from .catalog import TiledServer

    _stop_on_signals()
    from .keys import read_key_file

    keys = {f"{kind}_key": read_key_file(path) for kind, path in
            (("writer", args.writer_key_file), ("reader", args.reader_key_file)) if path}
    server = TiledServer(args.data_dir, port=args.port, public=args.public, nice=args.nice, **keys)
    server.start()
    print(f"Tiled serving {server.layout.root} at {server.uri}  (write key in {server.layout.key_file}, "
          f"read-only key in {server.layout.reader_key_file})", flush=True)
    try:
        while server.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _add_catalog_options(p, settings: Settings):
    p.add_argument("--uri", default=settings.tiled_uri or "http://127.0.0.1:8000",
                   help="Tiled server (env TOMOBLUESKY_TILED_URI; default: %(default)s)")
    add_key_file_option(p, "file holding the Tiled API key (default: $TOMOBLUESKY_TILED_API_KEY, else the key "
                           "stored in --data-dir: keys/reader, or keys/writer for commands that write)")
    p.add_argument("--data-dir", default=str(settings.data_dir),
                   help="where to find the stored key if none is given (default: %(default)s)")


def _client(args, write: bool = False):
    """A client with the key from --api-key-file or $TOMOBLUESKY_TILED_API_KEY, else the stored
    read-only key (the write key when ``write``), else anonymous if the server allows it."""
    import httpx
    from tiled.client import from_uri

    from .catalog import CatalogLayout
    from .keys import client_key

    layout = CatalogLayout(args.data_dir)
    key = client_key(args.api_key_file, layout.key_file if write else layout.reader_key_file)
    if key is None and httpx.get(f"{args.uri}/api/v1/metadata/", timeout=10).status_code == 401:
        raise PermissionError(f"{args.uri} needs a Tiled API key: set TOMOBLUESKY_TILED_API_KEY or give "
                              f"--api-key-file PATH")
    return from_uri(args.uri, api_key=key)


def _add_ls(sub, settings: Settings):
    p = sub.add_parser("ls", help="list reconstructed volumes in a catalogue",
                       description="List the volumes in a Tiled catalogue's `processed` container, "
                                   "optionally filtered. Example: tomobluesky ls --sample tooth")
    _add_catalog_options(p, settings)
    p.add_argument("--sample", help="only this sample name")
    p.add_argument("--scan-id", type=int, help="only this scan id")
    p.add_argument("--status", choices=["complete", "writing", "failed"], help="only volumes in this state")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=_cmd_ls)


def _cmd_ls(args, settings: Settings) -> int:
    from .catalog import find_volumes

    rows = find_volumes(_client(args), sample=args.sample, scan_id=args.scan_id, status=args.status)
    for key, node in rows:
        md = node.metadata
        row = {"scan_uid": key, "scan_id": md.get("scan_id"), "sample": md.get("sample_name"),
               "status": md.get("status"), "shape": (md.get("levels") or [[]])[0],
               "center": md.get("center"), "reason": md.get("reason")}
        if args.json:
            print(json.dumps(row))
        else:
            extra = f"centre {row['center']:.2f}" if row["center"] is not None else (row["reason"] or "")
            print(f"{key}  scan {row['scan_id']!s:>5}  {row['status']:<9} {str(row['shape']):<16} "
                  f"{row['sample'] or '':<20} {extra}")
    if not rows and not args.json:
        print("no volumes match", file=sys.stderr)
    return 0


def _add_export(sub, settings: Settings):
    p = sub.add_parser("export", help="export a volume as TIFF, NeXus NXtomoproc or Data Exchange, or a raw "
                                      "scan as NeXus NXtomo",
                       description="Volumes: read a volume slice by slice from Tiled and write it locally "
                                   "(tiff, dxchange, or nxtomoproc, NeXus's definition for reconstructed volumes). "
                                   "Raw scans: --format nxtomo writes a raw scan's Data Exchange HDF5 file (the "
                                   "detector's file, in DATA_DIR/detector, with /exchange/data, data_white, "
                                   "data_dark and theta) as a NeXus NXtomo entry with ESRF's nxtomo package, the "
                                   "layout nabu and tomwer read: darks, flats and projections in one stack with "
                                   "their image keys and angles. Examples: "
                                   "tomobluesky export 1f2e... tooth.nxs --format nxtomoproc; "
                                   "tomobluesky export DATA_DIR/detector/20261125-175409_3dba889b.h5 scan.nx "
                                   "--format nxtomo --energy-kev 25 --pixel-size-m 6.5e-6 --distance-m 0.12")
    p.add_argument("scan_uid", help="the scan's start uid (the volume's key in `processed`); "
                   "with --format nxtomo, the raw scan's Data Exchange HDF5 file")
    p.add_argument("output", help="output folder (tiff) or HDF5 file (nxtomoproc, dxchange, nxtomo)")
    p.add_argument("--format", choices=["tiff", "nxtomoproc", "dxchange", "nxtomo"], default="tiff",
                   help="default: %(default)s")
    nx = p.add_argument_group("nxtomo (raw scans)", "written into the NXtomo entry when given; nabu needs the "
                              "energy, pixel size and distance for phase retrieval")
    nx.add_argument("--sample-name", help="the sample's name")
    nx.add_argument("--energy-kev", type=bounded(float, 0, low_open=True), metavar="KEV",
                    help="incident beam energy in keV")
    nx.add_argument("--pixel-size-m", type=bounded(float, 0, low_open=True), metavar="METRES",
                    help="detector pixel size in metres (e.g. 6.5e-6)")
    nx.add_argument("--distance-m", type=bounded(float, 0, low_open=True), metavar="METRES",
                    help="sample to detector distance in metres")
    nx.add_argument("--overwrite", action="store_true", help="replace the entry in an existing OUTPUT")
    _add_catalog_options(p, settings)
    p.set_defaults(func=_cmd_export)


def _export_raw_nxtomo(args) -> int:
    """--format nxtomo: a raw scan's Data Exchange file to an NXtomo entry (no Tiled involved)."""
    from pathlib import Path

    import h5py

    from .dxchange import export_nxtomo

    source = Path(args.scan_uid).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"--format nxtomo exports a raw scan's Data Exchange HDF5 file (the detector's "
                                f"file, e.g. in DATA_DIR/detector); {args.scan_uid} is not a file")
    if not h5py.is_hdf5(source):
        raise ValueError(f"{source} is not an HDF5 file: --format nxtomo reads a raw scan's Data Exchange file")
    print(export_nxtomo(source, args.output, sample_name=args.sample_name, energy_kev=args.energy_kev,
                        pixel_size_m=args.pixel_size_m, distance_m=args.distance_m, overwrite=args.overwrite))
    return 0


_NXTOMO_ONLY = ("sample_name", "energy_kev", "pixel_size_m", "distance_m", "overwrite")


def _cmd_export(args, settings: Settings) -> int:
    if args.format == "nxtomo":
        return _export_raw_nxtomo(args)
    given = [f"--{name.replace('_', '-')}" for name in _NXTOMO_ONLY if getattr(args, name)]
    if given:
        raise ValueError(f"{', '.join(given)} apply to --format nxtomo (raw scans) only, not to {args.format}")
    from tqdm import tqdm

    from .catalog import PROCESSED, export_volume, full_resolution

    processed = _client(args)[PROCESSED]
    if args.scan_uid not in processed:
        raise LookupError(f"no volume for scan {args.scan_uid} in {args.uri}/processed")
    node = processed[args.scan_uid]
    if node.metadata.get("status") != "complete":
        raise ValueError(f"volume of {args.scan_uid} is {node.metadata.get('status')}: "
                         f"{node.metadata.get('reason', 'not complete')}")
    with tqdm(total=full_resolution(node).shape[0], unit="slice", disable=not sys.stderr.isatty()) as bar:
        path = export_volume(node, args.output, args.format, progress=lambda i, n: bar.update(i - bar.n))
    print(path)
    return 0


def _add_view(sub, settings: Settings):
    description = """\
Serve a web page that lists the scans in a Tiled catalogue, shows the live
slices updating during a scan (and, with --control-key-file, lets readers move
the live row and set the centre), and finished volumes in three orthogonal
planes with zoom, a histogram for the contrast, and line profiles.

Who reads what: by default the viewer holds no key. Each reader logs in on the
page with their own Tiled API key (kept in an HttpOnly cookie), or sends
'Authorization: Bearer KEY' to the API, and the viewer reads Tiled with that
key, so Tiled decides what each person sees. With --public the viewer reads
with one key, taken from --api-key-file or TOMOBLUESKY_TILED_API_KEY (never
from the command line, where other users can see it), and serves everyone who
can reach its port: give it a read-only key, never the catalogue's write key.

Examples:
  tomobluesky view --uri http://127.0.0.1:8000 --port 8080
  tomobluesky view --public --api-key-file ~/tiled-reader.key --host 0.0.0.0
  tomobluesky view --control-key-file DATA_DIR/keys/writer

--control-key-file: a Tiled key that may write (the catalogue's writer key).
The viewer writes a reader's live request (row, centre) with it to
live/<scan>/control, where the live reconstruction reads it, in-process or in
a Kafka worker. Only readers who may read the scan can ask; with --public,
anyone who reaches the port can.
"""
    p = sub.add_parser("view", help="web viewer: scans, live slices, volumes", description=description,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       allow_abbrev=False)  # so a mistyped --api-key KEY is refused, not read as --api-key-file
    p.add_argument("--uri", default=settings.tiled_uri or "http://127.0.0.1:8000",
                   help="Tiled server (env TOMOBLUESKY_TILED_URI; default: %(default)s)")
    p.add_argument("--public", action="store_true",
                   help="serve reads to anyone, reading Tiled with the key from --api-key-file or "
                        "TOMOBLUESKY_TILED_API_KEY (no key: anonymous reads, if Tiled allows them)")
    p.add_argument("--api-key-file", metavar="FILE", help="file holding the read-only Tiled key for --public")
    p.add_argument("--control-key-file", metavar="FILE",
                   help="file holding a Tiled key that may write, to pass readers' live requests (row, centre) "
                        "on to the live reconstruction; without it the page cannot steer")
    refuse_key_argument(p, "with --public give --api-key-file FILE; otherwise each reader brings their own key")
    p.add_argument("--port", type=bounded(int, *PORTS), default=8080, help="port of the page (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--stream-limit", type=bounded(float, 0, low_open=True), default=600.0, metavar="SECONDS",
                   help="longest a live-event stream stays open before the page reconnects, which checks the "
                        "key again (default: %(default)s)")
    p.set_defaults(func=_cmd_view)


def _cmd_view(args, settings: Settings) -> int:
    from pathlib import Path

    import uvicorn

    from .viewer import create_app

    key = None
    if args.public:
        key = Path(args.api_key_file).expanduser().read_text().strip() if args.api_key_file \
            else settings.tiled_api_key
        if args.api_key_file and not key:
            raise ValueError(f"{args.api_key_file} holds no key")
    elif args.api_key_file:
        raise ValueError("--api-key-file is for --public: otherwise the viewer holds no key and each reader "
                         "logs in with their own")
    control_key = None
    if args.control_key_file:
        control_key = Path(args.control_key_file).expanduser().read_text().strip()
        if not control_key:
            raise ValueError(f"{args.control_key_file} holds no key")
    app = create_app(args.uri, public=args.public, api_key=key, max_stream_s=args.stream_limit,
                     control_key=control_key)
    who = ("anyone who reaches it, reading with " + ("the given key" if key else "no key")) if args.public \
        else "readers who log in with their own Tiled key"
    print(f"viewer at http://{args.host}:{args.port}/ over {args.uri}, for {who}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


RECONSTRUCT_HELP = """\
Reconstruct a Data Exchange HDF5 file (/exchange/data, data_white, data_dark,
theta) into an OME-Zarr multiscale store, slab by slab within a memory budget,
with the same stop path the live reconstruction runs at the end of a scan.
The scan may be far larger than memory. Example:

  tomobluesky reconstruct scan.h5 scan.zarr --memory-budget 4
  python -c "import dask.array as da; print(da.from_zarr('scan.zarr', component='0'))"
"""


def _add_reconstruct(sub, settings: Settings):
    p = sub.add_parser("reconstruct", help="reconstruct a Data Exchange file into a multiscale Zarr volume",
                       description=RECONSTRUCT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", help="Data Exchange HDF5 file")
    p.add_argument("output", help="Zarr store to create (replaced if it exists)")
    p.add_argument("--memory-budget", type=memory_budget_gb, metavar="GB", default=settings.memory_budget_gb,
                   help="peak resident memory in GB, at most the machine's memory; slabs are sized to fit "
                        "(default: %(default)s)")
    p.add_argument("--center", type=bounded(float, 0), default=None,
                   help="detector column of the rotation axis, >= 0 (default: found from the data)")
    p.add_argument("--algorithm", type=algorithm_name, default=settings.recon.algorithm,
                   help="reconstruction algorithm, one the engine has (default: %(default)s)")
    p.add_argument("--rings", action="store_true", help="remove ring artefacts in the sinograms")
    p.add_argument("--pixel-size", type=bounded(float, 0, low_open=True), default=None,
                   help="pixel size in micrometres, > 0, for the OME metadata")
    p.add_argument("--dask", metavar="SCHEDULER", default=settings.dask_scheduler,
                   help="run the slabs as Dask tasks: 'local' (one worker process per core) or a scheduler "
                        "address such as tcp://host:8786 whose workers see the file and the output at the same "
                        "paths (a shared filesystem); default: TOMOBLUESKY_DASK_SCHEDULER, else in this process")
    p.add_argument("--json", action="store_true", help="print what was done as one JSON object")
    p.set_defaults(func=_cmd_reconstruct)


def _cmd_reconstruct(args, settings: Settings) -> int:
    from tqdm import tqdm

    from .pipeline import HDF5Scan, reconstruct_scan

    recon = settings.recon.model_copy(update={"algorithm": args.algorithm, "center": args.center,
                                              "ring_removal": args.rings or settings.recon.ring_removal})
    with HDF5Scan.from_dxchange(args.file) as scan, \
            tqdm(total=scan.detector_shape[0], desc="rows", unit="row", disable=args.json or not sys.stderr.isatty(),
                 leave=False) as bar:
        info = reconstruct_scan(scan, recon, args.output, memory_budget=args.memory_budget * 1e9,
                                pixel_size=args.pixel_size, progress=lambda done, total: bar.update(done - bar.n),
                                dask=args.dask)
    if args.json:
        print(json.dumps({"output": args.output, **info}))
        return 0
    t = info["timings"]
    print(f"{args.output}: levels {info['levels']}")
    print(f"  centre {info['center']:.2f} px ({info['center_method']}), {info['slabs']} slabs of {info['slab_rows']} rows, "
          f"{t['total']:.1f} s, peak memory {info['peak_rss_mb']:.0f} MB, read amplification {info['read_amplification']}")
    return 0


REPLAY_HELP = """\
Put runs and volumes that were spooled while Tiled was unreachable into the
catalogue, exactly once. During an outage the in-process route keeps the whole
raw run as JSON lines (DATA_DIR/backup/<uid>.jsonl) and writes each volume to
the volume directory with a record in DATA_DIR/backup/volumes/<uid>.json.
Replay writes raw runs first (a run left partial in Tiled is replaced by the
full one from the backup, a complete one is skipped), then registers the
volumes. Replayed files move to BACKUP/replayed/; a file that fails stays and
is named in the report. Example:

  tomobluesky replay ~/.local/share/tomobluesky/catalog/backup --uri http://127.0.0.1:8000
"""


def _add_replay(sub, settings: Settings):
    p = sub.add_parser("replay", help="put runs and volumes spooled during a Tiled outage into the catalogue",
                       description=REPLAY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("backup", nargs="?", help="the spool directory (default: DATA_DIR/backup)")
    _add_catalog_options(p, settings)
    p.add_argument("--volume-dir", help="the server's readable volume directory the spooled stores are in "
                   "(default: TOMOBLUESKY_VOLUME_DIR or DATA_DIR/volumes)")
    p.add_argument("--data-root", action="append", metavar="DIR",
                   help="a directory detector files may be registered from (repeatable; default: the settings' "
                        "data roots, <data_dir>/detector)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_cmd_replay)


def _cmd_replay(args, settings: Settings) -> int:
    from .catalog import replay

    from pathlib import Path

    data_dir = Path(args.data_dir).expanduser()
    backup = args.backup or data_dir / "backup"
    volume_dir = args.volume_dir or settings.volume_dir or data_dir / "volumes"
    roots = args.data_root or settings.data_roots or [data_dir / "detector"]
    report = replay(backup, _client(args, write=True), volume_dir=volume_dir, data_roots=roots).as_dict()
    if args.json:
        print(json.dumps(report))
    else:
        for key, items in report.items():
            if items:
                print(f"{key.replace('_', ' ')}: {len(items)}")
                for item in (items.items() if isinstance(items, dict) else items):
                    print("  " + (": ".join(item) if isinstance(item, tuple) else item))
        if not any(report.values()):
            print(f"nothing to replay in {backup}")
    return 1 if report["errors"] else 0


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (the usage is one --help away); still exit code 2.
    Subcommand parsers are made of the same class."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _load_settings() -> Settings | None:
    """The TOMOBLUESKY_* settings, or None after one line per bad variable (no traceback)."""
    from pydantic import ValidationError

    from .config import SettingsFileError

    try:
        return Settings()
    except (FileNotFoundError, SettingsFileError) as err:  # $TOMOBLUESKY_CONFIG names no file, or a bad one
        print(f"tomobluesky: error: {err}", file=sys.stderr)
        return None
    except ValidationError as err:
        for problem in err.errors(include_url=False):
            print(f"tomobluesky: error: {_setting_problem(problem)}", file=sys.stderr)
        return None


def _setting_problem(problem: dict) -> str:
    """``TOMOBLUESKY_X__Y='value': what is wrong``, from one pydantic error; a key of the configuration
    file that no setting has is named as the file's key."""
    from .config import settings_file

    path = settings_file()
    if problem["type"] == "extra_forbidden" and path is not None:
        key = ".".join(str(part) for part in problem["loc"])
        return f"{path}: unknown setting {key!r} (see the settings in docs/configuration.md)"
    name = "TOMOBLUESKY_" + "__".join(str(part) for part in problem["loc"]).upper()
    value = problem.get("input")
    error = (problem.get("ctx") or {}).get("error")
    message = str(error) if problem["type"] == "value_error" and error else problem["msg"]
    return f"{name}={value!r}: {message}" if isinstance(value, str) else f"{name}: {message}"


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    settings = settings or Settings()
    parser = _Parser(
        prog="tomobluesky",
        description="Acquisition-coupled tomography: Bluesky scans reconstructed live and catalogued in Tiled.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and details")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_demo(sub, settings)
    _add_serve(sub, settings)
    _add_ls(sub, settings)
    _add_export(sub, settings)
    _add_view(sub, settings)
    _add_reconstruct(sub, settings)
    _add_replay(sub, settings)
    from .cli_steps import add_steps_commands

    add_steps_commands(sub)
    from .cli_settings import add_settings_commands

    add_settings_commands(sub)
    try:
        from .cli_kafka import add_kafka_commands
    except ImportError:
        pass
    else:
        add_kafka_commands(sub)
    from .services.stack_cli import add_stack_commands

    add_stack_commands(sub)
    return parser


def main(argv=None) -> int:
    settings = _load_settings()
    if settings is None:
        return 2  # as for a bad argument: nothing was started
    args = build_parser(settings).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one clear line for users; -v shows the traceback
        if args.verbose:
            raise
        print(f"tomobluesky {args.command}: error: {_explained(err)}", file=sys.stderr)
        return 1


def _explained(err: Exception) -> str:
    """The error's text, naming the server when a connection to it failed (httpx says only "[Errno 111]")."""
    import httpx

    request = getattr(err, "_request", None)  # the request an httpx error was raised for, when it has one
    if not isinstance(err, httpx.TransportError) or request is None:
        return str(err)
    return f"cannot reach {request.url.scheme}://{request.url.netloc.decode()} ({err})"


if __name__ == "__main__":
    sys.exit(main())
