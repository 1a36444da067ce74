"""CUDA kernels for the CuPy backend, compiled by CuPy (NVRTC) the first time they run.

The array code in ``_fbp`` runs on CuPy as it stands, but its backprojection
walks the angles in Python and makes several slab-sized temporaries per angle:
memory traffic, not arithmetic, decides its speed on a GPU. Here one thread
owns one pixel of one slice and sums every angle in a register, reading the
filtered rows in the layout of ``_interp.pad_rows`` with the same clipping, so
it computes what ``_fbp.backproject`` computes (float32, same order of angles).
"""

from __future__ import annotations

import numpy as np

from ._interp import PAD_BEFORE

_SOURCE = r"""
extern "C" __global__
void backproject(const float* __restrict__ rows, const float* __restrict__ cos_t,
                 const float* __restrict__ sin_t, const float* __restrict__ centers,
                 const int angles, const int length, const int n, const float scale,
                 float* __restrict__ out)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    const int s = blockIdx.z;
    if (i >= n || j >= n) return;
    const float half = 0.5f * (float)(n - 1);
    const float x = (float)j - half, y = half - (float)i;  /* y up, as in _fbp */
    const float shift = centers[s] + (float)PAD_BEFORE;
    const float last = (float)(length - 2);  /* the last left index with a right neighbour */
    const float* row = rows + (size_t)s * angles * length;
    float acc = 0.0f;
    for (int a = 0; a < angles; ++a, row += length) {
        float t = fminf(fmaxf(x * __ldg(cos_t + a) + y * __ldg(sin_t + a) + shift, 0.0f), last);
        const int left = (int)t;  /* t >= 0: truncation is floor */
        const float w = t - (float)left;
        const float lo = __ldg(row + left);
        acc += lo + w * (__ldg(row + left + 1) - lo);
    }
    out[((size_t)s * n + i) * n + j] = acc * scale;
}
""".replace("PAD_BEFORE", str(PAD_BEFORE))

_KERNELS: dict = {}
BLOCK = (32, 8, 1)  # a warp along a detector row's direction: neighbouring pixels read neighbouring columns


def _kernel(cupy):
    kernel = _KERNELS.get("backproject")
    if kernel is None:
        kernel = _KERNELS["backproject"] = cupy.RawKernel(_SOURCE, "backproject")
    return kernel


def backproject_padded(padded, theta, centers):
    """(slices, angles, n + 3) rows laid out by ``pad_rows`` on the GPU → (slices, n, n) float32 images,
    the sum over angles scaled by π / angles."""
    import cupy

    slices, angles, length = padded.shape
    n = length - 3
    th = np.asarray(theta, dtype=np.float64)
    cos_t = cupy.asarray(np.cos(th).astype(np.float32))
    sin_t = cupy.asarray(np.sin(th).astype(np.float32))
    centers = cupy.asarray(centers, dtype=cupy.float32).reshape(slices)
    out = cupy.empty((slices, n, n), dtype=cupy.float32)
    grid = ((n + BLOCK[0] - 1) // BLOCK[0], (n + BLOCK[1] - 1) // BLOCK[1], slices)
    rows = cupy.ascontiguousarray(padded, dtype=cupy.float32)
    _kernel(cupy)(grid, BLOCK, (rows, cos_t, sin_t, centers, np.int32(angles), np.int32(length), np.int32(n),
                                np.float32(np.pi / angles), out))
    return out


__all__ = ["backproject_padded"]
