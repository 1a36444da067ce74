"""``tomobluesky steps``: the installed processing steps, and a pipeline file checked against them."""

from __future__ import annotations

import argparse
import inspect
import json

STEPS_HELP = """\
List the processing steps installed in this environment: tomobluesky's own
(normalize, minus_log, paganin, rings, reconstruct, segment) and any a plugin
package registers under the entry-point group `tomobluesky.steps`, each with
the layout it works on (projections, sinograms or volume), the neighbouring
rows or slices it needs (halo), its parameters and the first line of its
docstring. A step that fails to load is listed with the reason.

A scan picks its pipeline with md={"pipeline": [{"step": ..., "params": {...}}, ...]}
or a YAML file (TOMOBLUESKY_PIPELINE_FILE); `--check FILE` checks such a file.

examples:
  tomobluesky steps
  tomobluesky steps --check pipeline.yml
"""


def add_steps_commands(sub):
    p = sub.add_parser("steps", help="list the installed processing steps (plugins) or check a pipeline",
                       description=STEPS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", metavar="FILE", help="check a pipeline YAML file and print it as it would run")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=_cmd_steps)


def _parameters(step) -> list[str]:
    needs = set(getattr(step.function, "needs", ()))
    shown = []
    for name, p in step.parameters.items():
        if name in needs:
            continue
        shown.append(name if p.default is inspect.Parameter.empty else f"{name}={p.default!r}")
    return shown


def _cmd_steps(args, settings) -> int:
    from .steps import Pipeline, StepError, available_steps

    if args.check:
        record = Pipeline.from_yaml(args.check).record()
        if args.json:
            print(json.dumps(record))
        else:
            for entry in record:
                print(f"{entry['step']}  {entry['params']}  ({entry['package']} {entry['version']})")
        return 0
    found = available_steps()
    if args.json:
        print(json.dumps({name: {"error": str(s)} if isinstance(s, StepError) else {
            "pattern": s.pattern, "halo": s.halo, "parameters": _parameters(s), "package": s.package,
            "version": s.version, "entry_point": s.entry_point, "doc": s.summary()} for name, s in found.items()}))
        return 0
    broken = 0
    for name, step in found.items():
        if isinstance(step, StepError):
            broken += 1
            print(f"{name:<14} cannot be used: {step}")
            continue
        halo = f", halo {step.halo}" if step.halo else ""
        print(f"{name:<14} {step.pattern}{halo}  ({step.package} {step.version})")
        print(f"{'':<14} params: {', '.join(_parameters(step)) or 'none'}")
        if step.summary():
            print(f"{'':<14} {step.summary()}")
    return 1 if broken else 0
