// Tiled fp32 matmul: shared-memory tiles plus register blocking.
// Build: make -C 05_gpu ; run: 05_gpu/bin/matmul_tiled [M N K]
//
// A block of 256 threads computes a BM x BN = 128 x 128 tile of C. Per step it stages a
// BM x BK slice of A and a BK x BN slice of B in shared memory (each global element is then
// read once per block instead of once per thread), and each thread accumulates a TM x TN = 8 x 8
// sub-tile in registers: per k it loads 8 + 8 values from shared memory and does 64 FMAs, so
// the kernel is compute-bound instead of load-bound. Edge tiles are zero-filled on load and
// masked on store, so any M, N, K works.
#include "common.cuh"

// Small problems get 64 x 64 tiles with 4 x 4 per thread instead: 128 x 128 tiles would leave
// most of the GPU's SMs idle (a 1024^2 C is only 64 such tiles for 132 SMs on an H100).
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN))
matmul_tiled(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
             int M, int N, int K) {
  constexpr int THREADS = (BM / TM) * (BN / TN);  // 256 for both tile shapes
  __shared__ float As[BK][BM];  // A tile stored transposed: a column of A is contiguous
  __shared__ float Bs[BK][BN];
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
  // Thread (ty, tx) owns rows ty + i*(BM/TM) and columns tx + j*(BN/TN) of the tile. Interleaving (rather
  // than 8 adjacent columns) makes neighbouring threads read neighbouring shared-memory banks.
  float acc[TM][TN] = {};
  float a_frag[TM], b_frag[TN];

  for (int k0 = 0; k0 < K; k0 += BK) {
#pragma unroll
    for (int i = tid; i < BM * BK; i += THREADS) {
      int m = i / BK, k = i % BK, gr = row0 + m, gk = k0 + k;
      As[k][m] = (gr < M && gk < K) ? A[(size_t)gr * K + gk] : 0.f;
    }
#pragma unroll
    for (int i = tid; i < BK * BN; i += THREADS) {
      int k = i / BN, n = i % BN, gk = k0 + k, gc = col0 + n;
      Bs[k][n] = (gk < K && gc < N) ? B[(size_t)gk * N + gc] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < BK; ++k) {
#pragma unroll
      for (int i = 0; i < TM; ++i) a_frag[i] = As[k][ty + i * (BM / TM)];
#pragma unroll
      for (int j = 0; j < TN; ++j) b_frag[j] = Bs[k][tx + j * (BN / TN)];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
    }
    __syncthreads();  // before the next tile overwrites shared memory
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    int r = row0 + ty + i * (BM / TM);
    if (r >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      int c = col0 + tx + j * (BN / TN);
      if (c < N) C[(size_t)r * N + c] = acc[i][j];
    }
  }
}

template <int BM, int BN, int TM, int TN>
static void launch_tiles(const float* A, const float* B, float* C, int M, int N, int K) {
  dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM);
  matmul_tiled<BM, BN, 8, TM, TN><<<grid, (BM / TM) * (BN / TN)>>>(A, B, C, M, N, K);
}

static void launch(const float* A, const float* B, float* C, int M, int N, int K) {
  static int sms = 0;
  if (!sms) CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  long big_tiles = (long)((M + 127) / 128) * ((N + 127) / 128);
  if (big_tiles >= 2L * sms)
    launch_tiles<128, 128, 8, 8>(A, B, C, M, N, K);
  else
    launch_tiles<64, 64, 4, 4>(A, B, C, M, N, K);
}

int main(int argc, char** argv) { return run_matmul(argc, argv, "matmul_tiled", launch); }
