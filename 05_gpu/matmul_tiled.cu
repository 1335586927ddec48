// Tiled fp32 matmul: shared-memory tiles plus register blocking.
// Build: make -C 05_gpu ; run: 05_gpu/bin/matmul_tiled [M N K]
//
// A block of 256 threads computes a BM x BN = 128 x 128 tile of C. Per step it stages a
// BM x BK slice of A and a BK x BN slice of B in shared memory (each global element is then
// read once per block instead of once per thread), and each thread accumulates a TM x TN = 8 x 8
// sub-tile in registers: per k it loads 8 + 8 values from shared memory and does 64 FMAs, so
// the kernel is compute-bound instead of load-bound. The next tile is fetched from global memory
// while the current one is multiplied (double buffering). Edge tiles are zero-filled on load and
// masked on store, so any M, N, K works.
#include "common.cuh"

#ifndef TILED_MIN_BLOCKS
#define TILED_MIN_BLOCKS 2  // blocks per SM the compiler must fit: caps registers at 128
#endif

// Small problems get 64 x 64 tiles with 4 x 4 per thread instead: 128 x 128 tiles would leave
// most of the GPU's SMs idle (a 1024^2 C is only 64 such tiles for 132 SMs on an H100).
template <int BM, int BN, int BK, int TM, int TN>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), TILED_MIN_BLOCKS)
matmul_tiled(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
             int M, int N, int K) {
  constexpr int THREADS = (BM / TM) * (BN / TN);  // 256 for both tile shapes
  constexpr int LA = BM * BK / THREADS, LB = BK * BN / THREADS;  // loads per thread per tile
  // Two shared buffers: while the block computes on one, the next tile's global loads (issued
  // into registers before the math) are in flight, and one barrier per tile suffices.
  __shared__ float As[2][BK][BM];  // A tile stored transposed: a column of A is contiguous
  __shared__ float Bs[2][BK][BN];
  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
  // Thread (ty, tx) owns rows ty + i*(BM/TM) and columns tx + j*(BN/TN) of the tile. Interleaving
  // (rather than adjacent columns) makes neighbouring threads read neighbouring shared-memory banks.
  float acc[TM][TN] = {};
  float a_frag[TM], b_frag[TN], a_next[LA], b_next[LB];

  auto load_tile = [&](int k0) {  // global -> registers, zero outside the matrices
#pragma unroll
    for (int r = 0; r < LA; ++r) {
      int i = tid + r * THREADS, gr = row0 + i / BK, gk = k0 + i % BK;
      a_next[r] = (gr < M && gk < K) ? A[(size_t)gr * K + gk] : 0.f;
    }
#pragma unroll
    for (int r = 0; r < LB; ++r) {
      int i = tid + r * THREADS, gk = k0 + i / BN, gc = col0 + i % BN;
      b_next[r] = (gk < K && gc < N) ? B[(size_t)gk * N + gc] : 0.f;
    }
  };
  auto store_tile = [&](int buf) {  // registers -> shared
#pragma unroll
    for (int r = 0; r < LA; ++r) {
      int i = tid + r * THREADS;
      As[buf][i % BK][i / BK] = a_next[r];
    }
#pragma unroll
    for (int r = 0; r < LB; ++r) {
      int i = tid + r * THREADS;
      Bs[buf][i / BN][i % BN] = b_next[r];
    }
  };

  const int tiles = (K + BK - 1) / BK;
  load_tile(0);
  store_tile(0);
  __syncthreads();
  for (int t = 0; t < tiles; ++t) {
    const int cur = t & 1;
    if (t + 1 < tiles) load_tile((t + 1) * BK);
#pragma unroll
    for (int k = 0; k < BK; ++k) {
#pragma unroll
      for (int i = 0; i < TM; ++i) a_frag[i] = As[cur][k][ty + i * (BM / TM)];
#pragma unroll
      for (int j = 0; j < TN; ++j) b_frag[j] = Bs[cur][k][tx + j * (BN / TN)];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a_frag[i] * b_frag[j];
    }
    // the other buffer was last read in iteration t-1, which every thread finished before the
    // barrier at its end; this barrier publishes it and retires the reads of `cur`
    if (t + 1 < tiles) store_tile(cur ^ 1);
    __syncthreads();
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

template <int BM, int BN, int BK, int TM, int TN>
static void launch_tiles(const float* A, const float* B, float* C, int M, int N, int K) {
  dim3 grid((N + BN - 1) / BN, (M + BM - 1) / BM);
  matmul_tiled<BM, BN, BK, TM, TN><<<grid, (BM / TM) * (BN / TN)>>>(A, B, C, M, N, K);
}

static void launch(const float* A, const float* B, float* C, int M, int N, int K) {
  static int sms = 0;
  if (!sms) CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  long big_tiles = (long)((M + 127) / 128) * ((N + 127) / 128);
  if (big_tiles >= sms)  // at least one full wave of 128 x 128 tiles
    launch_tiles<128, 128, 8, 8, 8>(A, B, C, M, N, K);
  else  // smaller tiles, deeper K step: fewer FMAs per thread, so fewer barriers per FMA
    launch_tiles<64, 64, 16, 4, 4>(A, B, C, M, N, K);
}

int main(int argc, char** argv) { return run_matmul(argc, argv, "matmul_tiled", launch); }
