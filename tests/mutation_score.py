"""Mutation score per module from mutmut's results in ./mutants/ (run by `make mutation`).

    python tests/mutation_score.py [GLOB ...]      e.g. "tomobluesky.transport._codec.*"

Prints, for every mutated module: killed, survived, no tests, timeouts and others, and the
survivors by name (`mutmut show NAME` shows the diff). Reads only what mutmut wrote.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py): 1 and 3 = a test failed, 0 = every test passed
_STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
           36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "type check",
           -9: "segfault", -11: "segfault", None: "not checked"}


def main(patterns: list[str]) -> int:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results in ./mutants: run `make mutation` first")
        return 1
    print(f"{'module':45s} {'killed':>6s} {'surv':>5s} {'none':>5s} {'tout':>5s} {'other':>5s} {'total':>6s}")
    survivors = []
    for meta in metas:
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        codes = {k: v for k, v in codes.items() if not patterns or any(fnmatch.fnmatch(k, p) for p in patterns)}
        if not codes:
            continue
        count = Counter(_STATUS.get(v, "suspicious") for v in codes.values())
        module = str(meta.relative_to("mutants"))[: -len(".meta")]
        other = sum(count.values()) - count["killed"] - count["survived"] - count["no tests"] - count["timeout"]
        print(f"{module:45s} {count['killed']:6d} {count['survived']:5d} {count['no tests']:5d} "
              f"{count['timeout']:5d} {other:5d} {len(codes):6d}")
        survivors += [k for k, v in codes.items() if _STATUS.get(v) in ("survived", "no tests", None)]
    if survivors:
        print("\nnot killed (survived, no tests or not checked):")
        for name in sorted(survivors):
            print("   ", name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
