"""Volume steps after the reconstruction, slab by slab, each output a multiscale store of its own.

A volume step reads the current volume (the reconstruction, or the array
the previous volume step returned) one slab at a time, with its ``halo``
slices on each side, and its arrays are written under
``<output_root>/<step>`` (or ``<output_root>/<step>/<key>`` for a dict of
arrays) in the same multiscale layout as the volume; integer arrays (labels)
get a pyramid of samples instead of means. A step with ``whole_volume``
gets the volume as one lazy, slab-chunked dask array and does its own
slab-by-slab passes (segmentation joins labels across slab borders).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from ..store import MultiscaleWriter, open_multiscale
from ._pipeline import Pipeline, StepFailed


def _writer(path, shape, dtype, attributes, min_size):
    kind = np.dtype(dtype).kind
    return MultiscaleWriter(path, shape, dtype=dtype, attributes=attributes, min_size=min_size,
                            downsample="nearest" if kind in "iub" else "mean")


def _min_size(levels) -> int:
    """The ``min_size`` that gives an output as many levels as the volume it came from."""
    return max(levels[-1].shape)


def _is_table(value) -> bool:
    return isinstance(value, dict) and all(np.ndim(v) == 1 for v in value.values())


def _write_lazy(array, path, slab, attributes, min_size) -> Path:
    writer = _writer(path, array.shape, array.dtype, attributes, min_size)
    height = writer.slab_height(slab, parallel=False)
    for z0 in range(0, array.shape[0], height):
        writer.write_slab(z0, np.asarray(array[z0:z0 + height]))
    return Path(path)


def _run_slabwise(stage, current, root, slab, context, attributes, min_size):
    """A per-slab step: array or dict of arrays out, written as the slabs come."""
    halo, depth = stage.step.halo, current.shape[0]
    writers, height = {}, None
    z0 = 0
    while z0 < depth:
        a = max(z0 - halo, 0)
        if height is None:
            height = slab
        z1 = min(z0 + height, depth)
        out = stage(np.asarray(current[a:min(z1 + halo, depth)]), context)
        parts = out if isinstance(out, dict) else {None: out}
        for key, value in parts.items():
            value = np.asarray(value)[z0 - a:z0 - a + (z1 - z0)]
            if value.shape[0] != z1 - z0:
                raise StepFailed(stage.step.name, f"returned {value.shape[0]} slices for a slab of {z1 - z0}; "
                                 "a volume step must keep the slices it is given")
            if key not in writers:
                path = root if key is None else root / str(key)
                writers[key] = _writer(path, (depth, *value.shape[1:]), value.dtype, attributes, min_size)
                height = min(writers[key].slab_height(slab, parallel=False), height)
            writers[key].write_slab(z0, value)
        z0 = z1
    return {(stage.step.name if k is None else f"{stage.step.name}/{k}"): w.path for k, w in writers.items()}


def run_volume_steps(pipeline: Pipeline, volume_store, output_root, *, slab: int = 64, context: dict | None = None,
                     attributes: dict | None = None) -> dict:
    """Run the volume steps of ``pipeline`` on the multiscale store ``volume_store``.

    Returns ``{"arrays": {name: store path (str)}, "tables": {name: columns}, "values": {name: value}}``.
    A step that raises stops the chain with :class:`StepFailed` (naming the step);
    what earlier steps wrote stays on disk.
    """
    root = Path(output_root)
    levels = open_multiscale(volume_store)
    current, min_size = levels[0], _min_size(levels)
    arrays, tables, values = {}, {}, {}
    for stage in pipeline.stage("volume"):
        name = stage.step.name
        step_root = root / name
        if step_root.exists():
            shutil.rmtree(step_root)  # a rerun of the same scan replaces the step's outputs
        workdir = root / f".{name}.work"
        workdir.mkdir(parents=True, exist_ok=True)
        step_context = {**(context or {}), "workdir": workdir}
        meta = {**(attributes or {}), "step": name, "params": stage.params}
        try:
            if stage.step.whole:
                written = _run_whole(stage, current, step_root, slab, step_context, meta, tables, values, min_size)
            else:
                written = _run_slabwise(stage, current, step_root, slab, step_context, meta, min_size)
        except StepFailed as err:  # what the earlier steps wrote goes with the error, to be registered
            shutil.rmtree(step_root, ignore_errors=True)
            err.outputs = {"arrays": {n: str(p) for n, p in arrays.items()}, "tables": tables, "values": values}
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        arrays.update(written)
        if name in written:  # the step returned an array: the next volume step works on it
            current = open_multiscale(written[name])[0]
    return {"arrays": {name: str(path) for name, path in arrays.items()}, "tables": tables, "values": values}


def _run_whole(stage, current, step_root, slab, context, meta, tables, values, min_size):
    import dask.array as da

    result = stage(da.from_zarr(current), context)
    parts = result if isinstance(result, dict) else {None: result}
    written = {}
    for key, value in parts.items():
        label = stage.step.name if key is None else f"{stage.step.name}/{key}"
        if hasattr(value, "shape") and np.ndim(value) == 3:
            path = step_root if key is None else step_root / str(key)
            try:
                written[label] = _write_lazy(value, path, slab, meta, min_size)
            except Exception as err:
                raise StepFailed(stage.step.name, f"{type(err).__name__}: {err}") from err
        elif _is_table(value):
            tables[label] = {k: np.asarray(v) for k, v in value.items()}
        else:
            values[label] = value
    return written
