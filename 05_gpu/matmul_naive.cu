// Naive fp32 matmul: one thread per output element, straight from global memory.
// Build: make -C 05_gpu ; run: 05_gpu/bin/matmul_naive [M N K]
#include "common.cuh"

// threadIdx.x walks along a row of C, so a warp reads consecutive B and writes consecutive C
// (coalesced); every thread re-reads a full row of A and column of B from global memory,
// which is why this is memory-bound: 2 loads per multiply-add.
__global__ void matmul_naive(const float* __restrict__ A, const float* __restrict__ B,
                             float* __restrict__ C, int M, int N, int K) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  int row = blockIdx.y * blockDim.y + threadIdx.y;
  if (row >= M || col >= N) return;
  float acc = 0.f;
  for (int k = 0; k < K; ++k) acc += A[(size_t)row * K + k] * B[(size_t)k * N + col];
  C[(size_t)row * N + col] = acc;
}

static void launch(const float* A, const float* B, float* C, int M, int N, int K) {
  dim3 block(32, 8);
  dim3 grid((N + block.x - 1) / block.x, (M + block.y - 1) / block.y);
  matmul_naive<<<grid, block>>>(A, B, C, M, N, K);
}

int main(int argc, char** argv) { return run_matmul(argc, argv, "matmul_naive", launch); }
