"""``tomobluesky stack up|status|down|config``: the whole service set on one host.

One command starts PostgreSQL (the catalogue), a Kafka broker (KRaft), Tiled,
a Dask scheduler and workers, N reconstruction workers in one consumer group,
the catalogue writer and the viewer, all supervised by supervisord (a service
that exits is started again). Logs go to one directory (paths.logs).

The configuration is the one YAML file every command reads (--config, else
$TOMOBLUESKY_CONFIG): its `stack` section (kafka, tiled, postgres, workers,
dask, viewer, paths) says what runs, and the shared keys (beamline, data_dir,
data_roots, memory_budget_gb, recon.algorithm) come from the rest of the file
(docs/configuration.md); `tomobluesky stack config` prints the effective one. It holds no secret: Tiled's keys are files in
<catalog>/keys (0600), PostgreSQL uses peer authentication on its unix socket.

Examples:
  tomobluesky stack up --config stack.yml
  tomobluesky stack status            # each service's state, address and health
  tomobluesky stack down              # nothing is left running
"""

from __future__ import annotations

import argparse
import json
import sys


def add_stack_commands(subparsers) -> argparse.ArgumentParser:
    """Add ``stack up|status|down|config``; each leaf sets ``func(args, settings=None) -> int``."""
    p = subparsers.add_parser("stack", help="run the whole service set on this host, supervised",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stack_command", required=True, metavar="ACTION")

    def common(q, json_help="print one JSON object"):
        q.add_argument("--config", metavar="YAML", help="the settings file, with a 'stack' section (default: "
                       "$TOMOBLUESKY_CONFIG, else built-in defaults)")
        q.add_argument("--json", action="store_true", help=json_help)

    q = sub.add_parser("up", help="start every service and wait until each answers (exit 0), or stop all (1)")
    common(q)
    q.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                   help="how long the services may take to answer (default: %(default)s)")
    q.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")
    q.set_defaults(func=_cmd_up)
    q = sub.add_parser("status", help="each service's processes, address and health (exit 0 when all are "
                                      "healthy, 3 when not)")
    common(q)
    q.set_defaults(func=_cmd_status)
    q = sub.add_parser("down", help="stop every service and the supervisor; checks that no process is left")
    common(q)
    q.set_defaults(func=_cmd_down)
    q = sub.add_parser("config", help="print the effective configuration as YAML (secrets masked)")
    common(q, "print JSON instead of YAML")
    q.set_defaults(func=_cmd_config)
    return p


def _stack(args):
    from .stack import Stack
    from .stack_config import load_stack_settings

    return Stack(load_stack_settings(args.config))


def _print_status(rows, as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.__dict__ for r in rows]))
        return
    for r in rows:
        states = ", ".join(f"{p['state'].lower()} {p['pid'] or '-'}" for p in r.processes)
        mark = "ok  " if r.healthy else "FAIL"
        print(f"{mark} {r.service:<15} {r.address:<48} {r.detail}  [{states}]")


def _cmd_up(args, settings=None) -> int:
    if args.print_config:
        return _cmd_config(args)
    stack = _stack(args)
    rows = stack.up(timeout=args.timeout)
    _print_status(rows, args.json)
    if not args.json:
        print(f"logs in {stack.paths.logs}; write key {stack.catalog_layout.key_file}, "
              f"read-only key {stack.catalog_layout.reader_key_file}")
    return 0


def _cmd_status(args, settings=None) -> int:
    stack = _stack(args)
    rows = stack.status()
    if not rows:
        print(json.dumps([]) if args.json else f"the stack in {stack.root} is not running")
        return 3
    _print_status(rows, args.json)
    return 0 if all(r.healthy for r in rows) else 3


def _cmd_down(args, settings=None) -> int:
    stack = _stack(args)
    report = stack.down()
    left = report["left_running"] or report["ports_in_use"]
    if args.json:
        print(json.dumps(report))
    elif not report["stopped"]:
        print(f"the stack in {stack.root} was not running")
    else:
        print(f"stopped {report['processes']} processes" + (f"; STILL RUNNING: {report['left_running']}, "
                                                            f"ports in use: {report['ports_in_use']}" if left else ""))
    return 1 if left else 0


def _cmd_config(args, settings=None) -> int:
    import yaml

    from .stack_config import load_stack_settings, masked

    data = masked(load_stack_settings(args.config))
    print(json.dumps(data, indent=1) if args.json else yaml.safe_dump(data, sort_keys=False), end="\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tomobluesky")
    add_stack_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "stack" and not argv[0].startswith("-"):
        argv = ["stack", *argv]
    args = parser.parse_args(argv)
    try:
        return args.func(args, None)
    except Exception as err:  # one line, as the main CLI does
        print(f"tomobluesky stack: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # python -m tomobluesky.services.stack_cli up == tomobluesky stack up
    sys.exit(main())
