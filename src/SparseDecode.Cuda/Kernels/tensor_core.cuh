// Flash attention on the tensor cores, shared by prefill_attention.cu (a prefill chunk's queries) and
// decode_attention.cu (the rows of dense passes): asynchronous tile loads, fragment loads, bf16 splitting, and one
// warp's work on one tile of keys — S = Q·Kᵀ with mma.sync m16n8k16 (bf16 in, f32 accumulate), the online softmax in
// the log2 domain, O += P·V with P rounded to bf16 in registers (the S accumulator's layout is the A operand's, so P
// never leaves the registers).
//
// A warp owns 16 query rows: lane l holds rows l / 4 ("a") and l / 4 + 8 ("b") of its fragments, the channel pairs
// 2(l % 4), +1 (+8). The running maxima stay in raw score units, so a weight costs one fused multiply-add and one ex2.
//
// PARTS: operands as 1 or 3 bf16 parts (3: hi + mid + lo, all 24 bits of an f32 mantissa), so with 3 the products
// see queries and weights at f32 accuracy; 3× the tensor-core work.
#pragma once
#include "common.cuh"

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
// THREADS: the block's threads, which share the copies.
template <int DP, int BN, int THREADS>
__device__ __forceinline__ void load_tile(bf16 (*tile)[DP + 8], const bf16* __restrict__ src, int key0, int keys, int hd)
{
    constexpr int PIECES = BN * DP / 8;
    for (int i = threadIdx.x; i < PIECES; i += THREADS)
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

// One warp's running softmax state over its 16 rows: maxima (raw score units) and sums of rows a and b, and the
// unnormalised outputs as C fragments (channels 8n + 2(l % 4), +1 of rows a (entries 0, 1) and b (2, 3)).
template <int DP>
struct FlashState
{
    float o[DP / 8][4];
    float ma, mb, la, lb;

    __device__ __forceinline__ void init()
    {
#pragma unroll
        for (int n = 0; n < DP / 8; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
        ma = mb = NEG_INF;
        la = lb = 0.f;
    }

    // The row sums over the four lanes that share each row (after the last tile).
    __device__ __forceinline__ void finish()
    {
        la += __shfl_xor_sync(0xffffffffu, la, 1);
        la += __shfl_xor_sync(0xffffffffu, la, 2);
        lb += __shfl_xor_sync(0xffffffffu, lb, 1);
        lb += __shfl_xor_sync(0xffffffffu, lb, 2);
    }
};

// Scores of the warp's queries (A fragments qf) against the BN keys k0 .. of tile Ks, keys past lastA (row a) or
// lastB (row b) masked when `mask`, then the online softmax: the state's maxima, sums and outputs rescaled, and s
// left holding the weights P of this tile. A row with no visible key yet keeps m = −inf: its exponentials are taken
// against 0 (all zero).
template <int DP, int PARTS, int BN>
__device__ __forceinline__ void tile_softmax(const u32 (&qf)[PARTS][DP / 16][4], const bf16 (*Ks)[DP + 8], int k0,
    bool mask, int lastA, int lastB, float scaleLog2, float (&s)[BN / 8][4], FlashState<DP>& st)
{
    const int lane = threadIdx.x & 31, t = lane & 3;
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
    if (mask)
#pragma unroll
        for (int n = 0; n < BN / 8; n++)
#pragma unroll
            for (int i = 0; i < 4; i++)
                if (k0 + n * 8 + 2 * t + (i & 1) > ((i & 2) ? lastB : lastA)) s[n][i] = NEG_INF;
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
    // p = 2^(s·scale − m·scale): one fused multiply-add and one ex2 each
    const float na = fmaxf(st.ma, xa), nb = fmaxf(st.mb, xb);
    const float ba = na == NEG_INF ? 0.f : na * scaleLog2, bb = nb == NEG_INF ? 0.f : nb * scaleLog2;
    const float ca = ex2(st.ma * scaleLog2 - ba), cb = ex2(st.mb * scaleLog2 - bb);
    st.ma = na;
    st.mb = nb;
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
    st.la = st.la * ca + sa;
    st.lb = st.lb * cb + sb;
#pragma unroll
    for (int n = 0; n < DP / 8; n++)
    {
        st.o[n][0] *= ca;
        st.o[n][1] *= ca;
        st.o[n][2] *= cb;
        st.o[n][3] *= cb;
    }
}

// O += P·V for the tile's weights s (tile_softmax's) and the tile of values Vs.
template <int DP, int PARTS, int BN>
__device__ __forceinline__ void tile_values(const float (&s)[BN / 8][4], const bf16 (*Vs)[DP + 8], FlashState<DP>& st)
{
    const int lane = threadIdx.x & 31;
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
                mma16816(st.o[2 * nn], a0[p], a1[p], a2[p], a3[p], b0, b1);
                mma16816(st.o[2 * nn + 1], a0[p], a1[p], a2[p], a3[p], b2, b3);
            }
        }
    }
}

// Keys `from` .. keys − 1 of K and V (each [capacity][hd] of one head) in tiles of BN, through the block's warps:
// a warp takes part in a tile only if it reaches no further than `warpLast` (the latest key any of its rows sees;
// the others only take part in the barriers), and masks keys past lastA / lastB (its rows a and b) in tiles that
// reach past `maskAfter`. K and V tiles are staged in shared memory by cp.async: V of a tile loads while S is
// computed, the next K while P·V is.
template <int DP, int PARTS, int BN, int THREADS>
__device__ __forceinline__ void flash_tiles(const u32 (&qf)[PARTS][DP / 16][4], const bf16* __restrict__ K,
    const bf16* __restrict__ V, int from, int keys, int hd, int warpLast, int maskAfter, int lastA, int lastB,
    float scaleLog2, FlashState<DP>& st)
{
    __shared__ __align__(16) bf16 Ks[BN][DP + 8];
    __shared__ __align__(16) bf16 Vs[BN][DP + 8];
    const int tiles = keys > from ? (keys - from + BN - 1) / BN : 0;
    if (tiles == 0) return;
    load_tile<DP, BN, THREADS>(Ks, K, from, keys, hd);
    cp_async_commit();
    for (int kt = 0; kt < tiles; kt++)
    {
        const int k0 = from + kt * BN;
        const bool active = k0 <= warpLast;
        load_tile<DP, BN, THREADS>(Vs, V, k0, keys, hd);
        cp_async_commit();
        cp_async_wait_one(); // K of this tile
        __syncthreads();
        float s[BN / 8][4];
        if (active) tile_softmax<DP, PARTS, BN>(qf, Ks, k0, k0 + BN - 1 > maskAfter, lastA, lastB, scaleLog2, s, st);
        __syncthreads(); // every warp is done with Ks
        if (kt + 1 < tiles) load_tile<DP, BN, THREADS>(Ks, K, k0 + BN, keys, hd);
        cp_async_commit();
        cp_async_wait_one(); // V of this tile
        __syncthreads();
        if (active) tile_values<DP, PARTS, BN>(s, Vs, st);
        __syncthreads(); // every warp is done with Vs
    }
}
