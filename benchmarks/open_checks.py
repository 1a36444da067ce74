"""What the HDF5 confinement checks cost per dataset open (docs/security.md, issue 12).

    .venv/bin/python benchmarks/open_checks.py

Every read of detector frames opens its dataset through ``pipeline.open_dataset``: the links on the way
are looked at unfollowed, then the dataset (external storage, virtual). This times that against a bare
``f[name]`` plus the dataset check alone, on a Data Exchange path (/exchange/data).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import h5py

from tomobluesky.pipeline import check_dataset, open_dataset


def per_call_us(fn, n: int = 5000) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("exchange/data", shape=(10, 8, 8), dtype="f4")
        with h5py.File(path, "r") as f:
            bare = per_call_us(lambda: check_dataset(f["/exchange/data"], path))
            checked = per_call_us(lambda: open_dataset(f, "/exchange/data", path))
    print(f"f[name] + check_dataset: {bare:.0f} us per open; open_dataset (links looked at first): "
          f"{checked:.0f} us per open")


if __name__ == "__main__":
    main()
