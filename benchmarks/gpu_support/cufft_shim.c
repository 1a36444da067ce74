/* libcufft.so.11 for a CUDA-12 build of cufinufft on a machine with only CUDA 13's cuFFT (libcufft.so.12):
   the five entry points cufinufft uses, exported under the version node libcufft.so.11 and forwarded.
   Benchmark scaffolding for the device machine only (the 200 MB cu12 cuFFT wheel cannot travel there). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef int cufftHandle;
typedef int cufftResult;
static void *lib;

static void *sym(const char *name) {
    if (!lib) {
        const char *path = getenv("CUFFT12_PATH");
        lib = dlopen(path ? path : "libcufft.so.12", RTLD_NOW | RTLD_GLOBAL);
        if (!lib) { fprintf(stderr, "cufft shim: %s\n", dlerror()); abort(); }
    }
    void *f = dlsym(lib, name);
    if (!f) { fprintf(stderr, "cufft shim: no %s\n", name); abort(); }
    return f;
}

cufftResult cufftPlanMany(cufftHandle *plan, int rank, int *n, int *inembed, int istride, int idist,
                          int *onembed, int ostride, int odist, int type, int batch) {
    static cufftResult (*f)(cufftHandle *, int, int *, int *, int, int, int *, int, int, int, int);
    if (!f) f = sym("cufftPlanMany");
    return f(plan, rank, n, inembed, istride, idist, onembed, ostride, odist, type, batch);
}
cufftResult cufftExecC2C(cufftHandle plan, void *in, void *out, int direction) {
    static cufftResult (*f)(cufftHandle, void *, void *, int);
    if (!f) f = sym("cufftExecC2C");
    return f(plan, in, out, direction);
}
cufftResult cufftExecZ2Z(cufftHandle plan, void *in, void *out, int direction) {
    static cufftResult (*f)(cufftHandle, void *, void *, int);
    if (!f) f = sym("cufftExecZ2Z");
    return f(plan, in, out, direction);
}
cufftResult cufftSetStream(cufftHandle plan, void *stream) {
    static cufftResult (*f)(cufftHandle, void *);
    if (!f) f = sym("cufftSetStream");
    return f(plan, stream);
}
cufftResult cufftDestroy(cufftHandle plan) {
    static cufftResult (*f)(cufftHandle);
    if (!f) f = sym("cufftDestroy");
    return f(plan);
}
