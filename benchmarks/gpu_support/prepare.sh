#!/usr/bin/env bash
# Fills .gpu/ (ignored by git) with what benchmarks/gpu.py needs on a GPU machine that has CuPy for CUDA 13,
# NumPy, SciPy, h5py and scikit-image but nothing else of ours and no network (the device machine lent to some
# sessions): run here, then there `bash benchmarks/gpu_support/run_on_device.sh` with .gpu carried along.
#
# - the wheels of our pure dependencies that the image lacks (Python 3.12, manylinux x86-64);
# - cufinufft, its 175 MB library xz-compressed to 40 MB (the wheel alone is over the 64 MiB a call may carry);
# - CUDA 12's runtime (cufinufft's wheel links libcudart.so.12 and libcufft.so.11 and ships neither) and, for
#   cuFFT, whose CUDA 12 wheel is 200 MB, a five-function forwarding library to the image's CUDA 13 cuFFT
#   (cufft_shim.c). Both go where pip's nvidia-*-cu12 packages put them, so that
#   tomobluesky.recon._backend.import_cufinufft loads them as it would on a real installation.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/gpu_support
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/whl .gpu/dl .gpu/site/nvidia/cuda_runtime/lib .gpu/site/nvidia/cufft/lib
platforms="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
pip_get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms "$@"; }
pip_get -d .gpu/whl annotated-types donfig finufft google-crc32c numcodecs pydantic pydantic-core \
    typing-inspection typing_extensions "zarr>=3.1" pydantic-settings python-dotenv \
    dask distributed tornado tblib zict locket partd
pip_get -d .gpu/dl cufinufft nvidia-cuda-runtime-cu12
unzip -q -o .gpu/dl/cufinufft-*.whl -d .gpu/dl/cufinufft
mkdir -p .gpu/site/cufinufft && cp .gpu/dl/cufinufft/cufinufft/*.py .gpu/site/cufinufft/
cp -r .gpu/dl/cufinufft/cufinufft-*.dist-info .gpu/site/
xz -T0 -9 -c .gpu/dl/cufinufft/cufinufft/libcufinufft.so > .gpu/libcufinufft.so.xz
unzip -q -o -j .gpu/dl/nvidia_cuda_runtime_cu12-*.whl 'nvidia/cuda_runtime/lib/libcudart.so.12' \
    -d .gpu/site/nvidia/cuda_runtime/lib
gcc -O2 -shared -fPIC -o .gpu/site/nvidia/cufft/lib/libcufft.so.11 $here/cufft_shim.c \
    -Wl,-soname,libcufft.so.11 -Wl,--version-script=$here/cufft.map -ldl
# the wheels unpacked beside the rest, one xz archive: 20 MB where the wheels were 26 (64 MiB travel per call)
python3 -m pip install -q --no-deps --target .gpu/site --python-version 3.12 --only-binary=:all: .gpu/whl/*.whl
tar -C .gpu/site -cf - . | xz -T0 -6 > .gpu/site.tar.xz
rm -rf .gpu/dl .gpu/whl .gpu/site
du -sh .gpu
