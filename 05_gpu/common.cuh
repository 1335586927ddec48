// Host code shared by matmul_naive.cu and matmul_tiled.cu: argument parsing, random init,
// a cuBLAS reference (the correctness check) and CUDA-event timing. Each program only supplies
// its kernel launch; everything else lives here so the two programs stay small and comparable.
//
// Layout: all matrices are row-major fp32. C (MxN) = A (MxK) @ B (KxN).
//
// cuBLAS is loaded at run time with dlopen instead of #include <cublas_v2.h> + -lcublas: the
// programs then build with nothing but nvcc (CI has no cuBLAS), and on the GPU machine they use
// whatever libcublas is there (e.g. the one inside the torch wheel; set CUBLAS_LIB to its path).
#pragma once
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <string>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CHECK_CUDA(call)                                                          \
  do {                                                                            \
    cudaError_t err_ = (call);                                                    \
    if (err_ != cudaSuccess) {                                                    \
      fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(err_),      \
              __FILE__, __LINE__);                                                \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

#define CHECK_CUBLAS(call)                                                        \
  do {                                                                            \
    int st_ = (call);                                                             \
    if (st_ != 0) {                                                               \
      fprintf(stderr, "cuBLAS error %d at %s:%d\n", st_, __FILE__, __LINE__);     \
      exit(1);                                                                    \
    }                                                                             \
  } while (0)

// The four cuBLAS entry points we need, with their C ABI (status and enums are ints).
struct Cublas {
  typedef int (*CreateFn)(void** handle);
  typedef int (*DestroyFn)(void* handle);
  typedef int (*SetMathModeFn)(void* handle, int mode);
  typedef int (*SgemmFn)(void* handle, int transa, int transb, int m, int n, int k,
                         const float* alpha, const float* A, int lda, const float* B, int ldb,
                         const float* beta, float* C, int ldc);
  static constexpr int OP_N = 0;           // CUBLAS_OP_N
  static constexpr int PEDANTIC_MATH = 2;  // CUBLAS_PEDANTIC_MATH: true fp32, no TF32
  CreateFn create;
  DestroyFn destroy;
  SetMathModeFn set_math_mode;
  SgemmFn sgemm;
};

static inline Cublas load_cublas() {
  const char* env = getenv("CUBLAS_LIB");
  const char* names[] = {env, "libcublas.so", "libcublas.so.13", "libcublas.so.12"};
  void* lib = nullptr;
  for (const char* n : names)
    if (n && (lib = dlopen(n, RTLD_NOW | RTLD_GLOBAL))) break;
  if (!lib) {
    fprintf(stderr, "cannot load libcublas (tried $CUBLAS_LIB, libcublas.so, .so.13, .so.12): %s\n"
            "set CUBLAS_LIB=/path/to/libcublas.so.N\n", dlerror());
    exit(1);
  }
  Cublas c;
  c.create = (Cublas::CreateFn)dlsym(lib, "cublasCreate_v2");
  c.destroy = (Cublas::DestroyFn)dlsym(lib, "cublasDestroy_v2");
  c.set_math_mode = (Cublas::SetMathModeFn)dlsym(lib, "cublasSetMathMode");
  c.sgemm = (Cublas::SgemmFn)dlsym(lib, "cublasSgemm_v2");
  if (!c.create || !c.destroy || !c.set_math_mode || !c.sgemm) {
    fprintf(stderr, "libcublas lacks a needed symbol: %s\n", dlerror());
    exit(1);
  }
  return c;
}

// A kernel launcher: computes C = A @ B on device pointers (row-major).
typedef void (*MatmulLaunch)(const float* A, const float* B, float* C, int M, int N, int K);

struct MatmulArgs {
  int M = 1024, N = 1024, K = 1024;
};

static inline MatmulArgs parse_args(int argc, char** argv, const char* name) {
  MatmulArgs a;
  if (argc == 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
    printf("usage: %s [M N K]   (default 1024 1024 1024)\n", name);
    exit(0);
  }
  if (argc != 1 && argc != 4) {
    fprintf(stderr, "usage: %s [M N K]   (default 1024 1024 1024)\n", name);
    exit(2);
  }
  if (argc == 4) {
    int* dims[3] = {&a.M, &a.N, &a.K};
    for (int i = 0; i < 3; ++i) {
      char* end = nullptr;
      long v = strtol(argv[i + 1], &end, 10);
      if (*end != '\0' || v < 1 || v > (1 << 16)) {
        fprintf(stderr, "%s: bad size '%s' (need an integer in [1, 65536])\n", name, argv[i + 1]);
        exit(2);
      }
      *dims[i] = (int)v;
    }
  }
  return a;
}

// Milliseconds per call of fn(), averaged over enough repetitions to fill ~0.3 s.
template <typename F>
static inline float time_ms(F fn) {
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  fn();  // warm-up (also first-launch overheads)
  CHECK_CUDA(cudaEventRecord(start));
  fn();
  CHECK_CUDA(cudaEventRecord(stop));
  CHECK_CUDA(cudaEventSynchronize(stop));
  float one = 0.f;
  CHECK_CUDA(cudaEventElapsedTime(&one, start, stop));
  int reps = (int)fminf(100.f, fmaxf(3.f, 300.f / fmaxf(one, 1e-3f)));
  CHECK_CUDA(cudaEventRecord(start));
  for (int i = 0; i < reps; ++i) fn();
  CHECK_CUDA(cudaEventRecord(stop));
  CHECK_CUDA(cudaEventSynchronize(stop));
  float total = 0.f;
  CHECK_CUDA(cudaEventElapsedTime(&total, start, stop));
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  return total / reps;
}

// Runs `launch` on random inputs, checks it against cuBLAS sgemm, prints error and speed.
// Returns the process exit code (1 when the error is above tolerance).
static inline int run_matmul(int argc, char** argv, const char* name, MatmulLaunch launch) {
  MatmulArgs a = parse_args(argc, argv, name);
  const int M = a.M, N = a.N, K = a.K;
  printf("%s M=%d N=%d K=%d fp32\n", name, M, N, K);

  std::vector<float> hA((size_t)M * K), hB((size_t)K * N), hC((size_t)M * N), hR((size_t)M * N);
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (auto& x : hA) x = dist(rng);
  for (auto& x : hB) x = dist(rng);

  float *dA, *dB, *dC, *dR;
  CHECK_CUDA(cudaMalloc(&dA, hA.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&dB, hB.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&dC, hC.size() * sizeof(float)));
  CHECK_CUDA(cudaMalloc(&dR, hR.size() * sizeof(float)));
  CHECK_CUDA(cudaMemcpy(dA, hA.data(), hA.size() * sizeof(float), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(dB, hB.data(), hB.size() * sizeof(float), cudaMemcpyHostToDevice));

  // cuBLAS is column-major. A row-major matrix is its transpose in column-major, so
  // C = A @ B (row-major) is C^T = B^T @ A^T (column-major): pass B first, dims (N, M, K).
  Cublas cb = load_cublas();
  void* handle = nullptr;
  CHECK_CUBLAS(cb.create(&handle));
  CHECK_CUBLAS(cb.set_math_mode(handle, Cublas::PEDANTIC_MATH));
  const float alpha = 1.f, beta = 0.f;
  auto cublas = [&]() {
    CHECK_CUBLAS(cb.sgemm(handle, Cublas::OP_N, Cublas::OP_N, N, M, K, &alpha, dB, N, dA, K,
                          &beta, dR, N));
  };
  auto ours = [&]() { launch(dA, dB, dC, M, N, K); };

  ours();
  cublas();
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  CHECK_CUDA(cudaMemcpy(hC.data(), dC, hC.size() * sizeof(float), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(hR.data(), dR, hR.size() * sizeof(float), cudaMemcpyDeviceToHost));
  // Relative error normalised by the largest reference entry: element-wise ratios blow up
  // on entries that happen to be near zero, which says nothing about the kernel.
  double max_err = 0.0, max_ref = 0.0;
  for (size_t i = 0; i < hC.size(); ++i) {
    max_err = fmax(max_err, fabs((double)hC[i] - (double)hR[i]));
    max_ref = fmax(max_ref, fabs((double)hR[i]));
  }
  double rel = max_err / fmax(max_ref, 1e-30);
  printf("max_rel_err %.3e (max|C-ref| / max|ref|, ref = cuBLAS sgemm)\n", rel);

  double flops = 2.0 * M * N * K;
  float ms = time_ms(ours);
  float ms_ref = time_ms(cublas);
  printf("time_ms %.4f\n", ms);
  printf("tflops %.3f\n", flops / (ms * 1e-3) / 1e12);
  printf("cublas_time_ms %.4f\n", ms_ref);
  printf("cublas_tflops %.3f\n", flops / (ms_ref * 1e-3) / 1e12);

  CHECK_CUBLAS(cb.destroy(handle));
  CHECK_CUDA(cudaFree(dA));
  CHECK_CUDA(cudaFree(dB));
  CHECK_CUDA(cudaFree(dC));
  CHECK_CUDA(cudaFree(dR));
  const double tol = 1e-3;
  if (!(rel < tol)) {
    fprintf(stderr, "FAIL: max_rel_err %.3e >= %.0e\n", rel, tol);
    return 1;
  }
  printf("OK\n");
  return 0;
}
