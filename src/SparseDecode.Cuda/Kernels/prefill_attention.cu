// Causal flash attention for a prefill chunk on the tensor cores, compiled at run time by NVRTC (no headers).
//
// The chunk's T query tokens sit at positions first .. first + T − 1 of one sequence; each attends to every cached
// key before it and to the chunk's own keys up to itself (the chunk's keys are already in the cache). Keys and
// values are read from the bf16 cache of that sequence's slot, [kvHead][capacity][hd]; query head h reads KV head
// h / group (GQA). Queries come as bf16 [T][qHeads][hd], the output goes out as bf16 [T][qHeads·hd] for the output
// projection's matrix product.
//
// A block of 4 warps owns 64 queries of one head; each warp 16 of them. Per tile of 64 keys: S = Q·Kᵀ with
// mma.sync m16n8k16 (bf16 in, f32 accumulate), online softmax in the log2 domain in f32, O += P·V with P rounded to
// bf16 in registers (the S accumulator's layout is the A operand's, so P never leaves the registers). The running
// maxima stay in raw score units, so a weight costs one fused multiply-add and one ex2. K and V
// tiles are staged in shared memory by cp.async: V of a tile loads while S is computed, the next K while P·V is.
//
// PARTS: queries come as 1 or 3 bf16 parts (3: hi + mid + lo, all 24 bits of an f32 mantissa) and P is split the
// same way, so with 3 the products see them at f32 accuracy (the CPU engine's log-probabilities); 3× the
// tensor-core work. The output goes out in as many parts.
//
// Head sizes up to DP (a multiple of 16): channels hd .. DP − 1 read as zeros and are never written.

#include "common.cuh"

#define BM 64
#define BN 64
#define WARPS 4

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid)
{
    const u32 s = (u32)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Four 8×8 bf16 matrices out of shared memory (lane l gives the address of row l % 8 of matrix l / 8): lane l gets
// of each (row l / 4, columns 2(l % 4), +1), or with .trans (rows 2(l % 4), +1; column l / 4).
__device__ __forceinline__ void ldmatrix_x4(u32& r0, u32& r1, u32& r2, u32& r3, const void* smem)
{
    const u32 s = (u32)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(s));
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32& r0, u32& r1, u32& r2, u32& r3, const void* smem)
{
    const u32 s = (u32)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(s));
}

// Rows key0 .. key0 + BN − 1 of a [capacity][hd] array into a [BN][DP + 8] tile (rows padded by 16 bytes, so the
// fragment loads of 8 rows hit 8 different bank groups); keys at or past `keys` and channels past hd become zeros.
template <int DP>
__device__ __forceinline__ void load_tile(bf16 (*tile)[DP + 8], const bf16* __restrict__ src, int key0, int keys, int hd)
{
    constexpr int PIECES = BN * DP / 8;
    for (int i = threadIdx.x; i < PIECES; i += WARPS * 32)
    {
        const int row = i / (DP / 8), c = (i % (DP / 8)) * 8, key = key0 + row;
        const bool valid = key < keys && c < hd;
        cp_async16(&tile[row][c], valid ? src + (long long)key * hd + c : src, valid);
    }
}

// Two f32 values as one register of two bf16 (round to nearest even, one instruction): `lo` in the low half.
__device__ __forceinline__ u32 cvt_bf16x2(float lo, float hi)
{
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// 2^x in one multi-function-unit instruction (subnormal results flush to zero: softmax weights below 2^-126).
__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

// f32 values as PARTS bf16 pairs whose sums are the values (a, b: the low and high halves of A-fragment registers).
template <int PARTS>
__device__ __forceinline__ void split_pair(float a, float b, u32* out)
{
#pragma unroll
    for (int p = 0; p < PARTS; p++)
    {
        const u32 r = cvt_bf16x2(a, b);
        out[p] = r;
        if (p + 1 < PARTS)
        {
            a -= __uint_as_float(r << 16);
            b -= __uint_as_float(r & 0xffff0000u);
        }
    }
}

template <int DP, int PARTS>
__device__ __forceinline__ void flash_prefill(const bf16* __restrict__ q, long long qPart,
    const bf16* __restrict__ kBase, const bf16* __restrict__ vBase, long long headStride, int hd, int qHeads,
    int group, int T, int first, float scaleLog2, bf16* __restrict__ out, long long outPart)
{
    __shared__ __align__(16) bf16 Ks[BN][DP + 8];
    __shared__ __align__(16) bf16 Vs[BN][DP + 8];
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

    float o[DP / 8][4];
#pragma unroll
    for (int n = 0; n < DP / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
    float ma = NEG_INF, mb = NEG_INF, la = 0.f, lb = 0.f;

    const int tiles = (keys + BN - 1) / BN;
    load_tile<DP>(Ks, K, 0, keys, hd);
    cp_async_commit();
    for (int kt = 0; kt < tiles; kt++)
    {
        const int k0 = kt * BN;
        load_tile<DP>(Vs, V, k0, keys, hd);
        cp_async_commit();
        cp_async_wait_one(); // K of this tile
        __syncthreads();
        // a warp whose queries all precede the tile skips it (it still takes part in the barriers)
        const bool active = k0 <= first + rw + 15;
        float s[BN / 8][4];
        if (active)
        {
#pragma unroll
            for (int n = 0; n < BN / 8; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
            // Kᵀ fragments of two key tiles per ldmatrix: matrices (keys +0, channels +0), (+0, +8), (+8, +0), (+8, +8)
            const int m = lane >> 3, krow = (lane & 7) + (m >> 1) * 8, kcol = (m & 1) * 8;
#pragma unroll
            for (int n = 0; n < BN / 8; n += 2)
#pragma unroll
                for (int kk = 0; kk < DP / 16; kk++)
                {
                    u32 b0, b1, b2, b3;
                    ldmatrix_x4(b0, b1, b2, b3, &Ks[n * 8 + krow][kk * 16 + kcol]);
                    // smallest parts first, so the accumulator's rounding sees them before the large terms
#pragma unroll
                    for (int p = PARTS - 1; p >= 0; p--)
                    {
                        mma16816(s[n], qf[p][kk][0], qf[p][kk][1], qf[p][kk][2], qf[p][kk][3], b0, b1);
                        mma16816(s[n + 1], qf[p][kk][0], qf[p][kk][1], qf[p][kk][2], qf[p][kk][3], b2, b3);
                    }
                }
            // causal mask on the raw scores, only in tiles that reach past the warp's first query
            if (k0 + BN - 1 > first + rw)
#pragma unroll
                for (int n = 0; n < BN / 8; n++)
#pragma unroll
                    for (int i = 0; i < 4; i++)
                        if (k0 + n * 8 + 2 * t + (i & 1) > ((i & 2) ? pb : pa)) s[n][i] = NEG_INF;
            float xa = NEG_INF, xb = NEG_INF;
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
            {
                xa = fmaxf(xa, fmaxf(s[n][0], s[n][1]));
                xb = fmaxf(xb, fmaxf(s[n][2], s[n][3]));
            }
            xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 1));
            xa = fmaxf(xa, __shfl_xor_sync(0xffffffffu, xa, 2));
            xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 1));
            xb = fmaxf(xb, __shfl_xor_sync(0xffffffffu, xb, 2));
            // running maxima in raw score units; p = 2^(s·scale − m·scale), one fused multiply-add and one ex2 each.
            // A row with no visible key yet keeps m = −inf: its exponentials are taken against 0 (all zero).
            const float na = fmaxf(ma, xa), nb = fmaxf(mb, xb);
            const float ba = na == NEG_INF ? 0.f : na * scaleLog2, bb = nb == NEG_INF ? 0.f : nb * scaleLog2;
            const float ca = ex2(ma * scaleLog2 - ba), cb = ex2(mb * scaleLog2 - bb);
            ma = na;
            mb = nb;
            float sa = 0.f, sb = 0.f;
#pragma unroll
            for (int n = 0; n < BN / 8; n++)
            {
                s[n][0] = ex2(fmaf(s[n][0], scaleLog2, -ba));
                s[n][1] = ex2(fmaf(s[n][1], scaleLog2, -ba));
                s[n][2] = ex2(fmaf(s[n][2], scaleLog2, -bb));
                s[n][3] = ex2(fmaf(s[n][3], scaleLog2, -bb));
                sa += s[n][0] + s[n][1];
                sb += s[n][2] + s[n][3];
            }
            la = la * ca + sa;
            lb = lb * cb + sb;
#pragma unroll
            for (int n = 0; n < DP / 8; n++)
            {
                o[n][0] *= ca;
                o[n][1] *= ca;
                o[n][2] *= cb;
                o[n][3] *= cb;
            }
        }
        __syncthreads(); // every warp is done with Ks
        if (kt + 1 < tiles) load_tile<DP>(Ks, K, k0 + BN, keys, hd);
        cp_async_commit();
        cp_async_wait_one(); // V of this tile
        __syncthreads();
        if (active)
        {
#pragma unroll
            for (int j = 0; j < BN / 16; j++)
            {
                // P of keys 16j .. 16j + 15 as an A fragment: the accumulators of key tiles 2j and 2j + 1
                const float* p0 = s[2 * j];
                const float* p1 = s[2 * j + 1];
                u32 a0[PARTS], a1[PARTS], a2[PARTS], a3[PARTS];
                split_pair<PARTS>(p0[0], p0[1], a0);
                split_pair<PARTS>(p0[2], p0[3], a1);
                split_pair<PARTS>(p1[0], p1[1], a2);
                split_pair<PARTS>(p1[2], p1[3], a3);
                const int m = lane >> 3, row = j * 16 + (lane & 7) + (m & 1) * 8;
#pragma unroll
                for (int nn = 0; nn < DP / 16; nn++)
                {
                    u32 b0, b1, b2, b3;
                    ldmatrix_x4_trans(b0, b1, b2, b3, &Vs[row][nn * 16 + (m >> 1) * 8]);
#pragma unroll
                    for (int p = PARTS - 1; p >= 0; p--)
                    {
                        mma16816(o[2 * nn], a0[p], a1[p], a2[p], a3[p], b0, b1);
                        mma16816(o[2 * nn + 1], a0[p], a1[p], a2[p], a3[p], b2, b3);
                    }
                }
            }
        }
        __syncthreads(); // every warp is done with Vs
    }

    la += __shfl_xor_sync(0xffffffffu, la, 1);
    la += __shfl_xor_sync(0xffffffffu, la, 2);
    lb += __shfl_xor_sync(0xffffffffu, lb, 1);
    lb += __shfl_xor_sync(0xffffffffu, lb, 2);
    const float ia = la > 0.f ? 1.f / la : 0.f, ib = lb > 0.f ? 1.f / lb : 0.f;
    const long long oStride = (long long)qHeads * hd;
#pragma unroll
    for (int n = 0; n < DP / 8; n++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            const int row = (i & 2) ? rb : ra, c = n * 8 + 2 * t + (i & 1);
            if (row >= T || c >= hd) continue;
            const float v = o[n][i] * ((i & 2) ? ib : ia);
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
