// Causal flash attention for a prefill chunk on the tensor cores, compiled at run time by NVRTC (no headers).
//
// The chunk's T query tokens sit at positions first .. first + T − 1 of one sequence; each attends to every cached
// key before it and to the chunk's own keys up to itself (the chunk's keys are already in the cache). Keys and
// values are read from the bf16 cache of that sequence's slot, [kvHead][capacity][hd]; query head h reads KV head
// h / group (GQA). Queries come as bf16 [T][qHeads][hd], the output goes out as bf16 [T][qHeads·hd] for the output
// projection's matrix product.
//
// A block of 4 warps owns 64 queries of one head; each warp 16 of them, tile by tile of 64 keys (tensor_core.cuh).
//
// PARTS: queries come as 1 or 3 bf16 parts (3: hi + mid + lo, all 24 bits of an f32 mantissa) and P is split the
// same way, so with 3 the products see them at f32 accuracy (the CPU engine's log-probabilities); 3× the
// tensor-core work. The output goes out in as many parts.
//
// Head sizes up to DP (a multiple of 16): channels hd .. DP − 1 read as zeros and are never written.

#include "tensor_core.cuh"

#define BM 64
#define BN 64
#define WARPS 4

template <int DP, int PARTS>
__device__ __forceinline__ void flash_prefill(const bf16* __restrict__ q, long long qPart,
    const bf16* __restrict__ kBase, const bf16* __restrict__ vBase, long long headStride, int hd, int qHeads,
    int group, int T, int first, float scaleLog2, bf16* __restrict__ out, long long outPart)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    // the longest (latest) query blocks first: causal work grows with the position
    const int qb = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, kvh = h / group;
    const int r0 = qb * BM, rw = r0 + warp * 16, ra = rw + g, rb = ra + 8;
    const int pa = first + ra, pb = first + rb;
    const int keys = first + min(r0 + BM, T); // keys any query of the block may see
    const bf16* K = kBase + kvh * headStride;
    const bf16* V = vBase + kvh * headStride;
    const long long qStride = (long long)qHeads * hd;

    // this warp's 16 queries as A fragments, all DP channels
    u32 qf[PARTS][DP / 16][4];
#pragma unroll
    for (int kk = 0; kk < DP / 16; kk++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            const int row = (i & 1) ? rb : ra, c = kk * 16 + 2 * t + ((i & 2) ? 8 : 0);
            const bool ok = row < T && c < hd;
            const long long at = row * qStride + h * hd + c;
#pragma unroll
            for (int p = 0; p < PARTS; p++) qf[p][kk][i] = ok ? *(const u32*)(q + p * qPart + at) : 0u;
        }

    FlashState<DP> st;
    st.init();
    // a warp whose queries all precede a tile skips it; tiles that reach past its first query are masked
    flash_tiles<DP, PARTS, BN, WARPS * 32>(qf, K, V, 0, keys, hd, first + rw + 15, first + rw, pa, pb, scaleLog2, st);
    st.finish();
    const float la = st.la, lb = st.lb;
    const float ia = la > 0.f ? 1.f / la : 0.f, ib = lb > 0.f ? 1.f / lb : 0.f;
    const long long oStride = (long long)qHeads * hd;
#pragma unroll
    for (int n = 0; n < DP / 8; n++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            const int row = (i & 2) ? rb : ra, c = n * 8 + 2 * t + (i & 1);
            if (row >= T || c >= hd) continue;
            const float v = st.o[n][i] * ((i & 2) ? ib : ia);
            const long long at = row * oStride + h * hd + c;
            float r = v;
#pragma unroll
            for (int p = 0; p < PARTS; p++)
            {
                const bf16 part = f32_to_bf16(r);
                out[p * outPart + at] = part;
                r -= bf16_to_f32(part);
            }
        }
}

#define FLASH_ARGS const bf16* q, long long qPart, const bf16* kBase, const bf16* vBase, long long headStride, \
    int hd, int qHeads, int group, int T, int first, float scaleLog2, bf16* out, long long outPart
#define FLASH_PASS q, qPart, kBase, vBase, headStride, hd, qHeads, group, T, first, scaleLog2, out, outPart
// Grid (ceil(T / 64), qHeads), 128 threads. Named by padded head size and precision (split: 3 parts). The bf16
// kernel of 128-wide heads is held to 170 registers, so three blocks (12 warps) share a multiprocessor.
extern "C" __global__ void __launch_bounds__(128) flash_prefill_32(FLASH_ARGS) { step_prologue(); flash_prefill<32, 1>(FLASH_PASS); }
extern "C" __global__ void __launch_bounds__(128) flash_prefill_64(FLASH_ARGS) { step_prologue(); flash_prefill<64, 1>(FLASH_PASS); }
extern "C" __global__ void __launch_bounds__(128, 3) flash_prefill_128(FLASH_ARGS) { step_prologue(); flash_prefill<128, 1>(FLASH_PASS); }
extern "C" __global__ void __launch_bounds__(128) flash_prefill_split_32(FLASH_ARGS) { step_prologue(); flash_prefill<32, 3>(FLASH_PASS); }
extern "C" __global__ void __launch_bounds__(128) flash_prefill_split_64(FLASH_ARGS) { step_prologue(); flash_prefill<64, 3>(FLASH_PASS); }
extern "C" __global__ void __launch_bounds__(128) flash_prefill_split_128(FLASH_ARGS) { step_prologue(); flash_prefill<128, 3>(FLASH_PASS); }
