#!/usr/bin/env bash
# On the GPU machine, from the checkout's root, after prepare.sh here: the carried wheels (.gpu/), cufinufft unpacked beside its CUDA 12 libraries, then the GPU tests
# and benchmarks/gpu.py. Output under $OUT (default /tmp/gpu-out).
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
SITE=/tmp/site
t0=$(date +%s)
mkdir -p $SITE && tar -C $SITE -xJf .gpu/site.tar.xz
python3 -c "import lzma,shutil;shutil.copyfileobj(lzma.open('.gpu/libcufinufft.so.xz'),open('$SITE/cufinufft/libcufinufft.so','wb'))"
export CUFFT12_PATH=$(find /opt /usr/local /usr/lib -name 'libcufft.so.12' 2>/dev/null | head -1)
echo "cufft 12: $CUFFT12_PATH; setup $(( $(date +%s) - t0 )) s"
export PYTHONPATH=$SITE:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import cupy, numpy, h5py, skimage; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'h5py', h5py.__version__)"
[ -n "${SKIP_TESTS:-}" ] || timeout 150 python3 -m pytest -c /dev/null --rootdir . --confcutdir tests/unit/recon -p no:cacheprovider -q -rs \
    tests/unit/recon/test_gpu.py tests/unit/recon/test_backend.py 2>&1 | tee $OUT/pytest.txt | tail -25
echo "tests done at $(( $(date +%s) - t0 )) s"
timeout ${BENCH_TIMEOUT:-380} python3 benchmarks/gpu.py --out $OUT/gpu.jsonl ${GPU_ARGS:-}
echo "all done at $(( $(date +%s) - t0 )) s"
