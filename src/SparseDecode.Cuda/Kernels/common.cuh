// Shared by the .cu files of the CUDA backend (passed to NVRTC as a header, no system headers): element types
// and the bf16 → f32 unpacking every kernel that reads bf16 rows uses.
#pragma once

typedef unsigned short bf16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define NEG_INF __int_as_float(0xff800000)

// Programmatic dependent launch (sm_90 and later). The host may launch these kernels so that one begins before the
// kernel ahead of it in the stream has finished (CudaFunction.Launch; off before sm_90). Every kernel of the backend
// begins here: it waits until the kernel ahead has finished and its writes are visible (so nothing before this line
// may read what an earlier kernel wrote), then lets the kernel after it be launched — its blocks are placed as soon
// as this kernel's last blocks are running, instead of after the last one ends and the launch is processed. Launched
// without the attribute, both instructions return at once.
__device__ __forceinline__ void step_prologue()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Eight bf16 values (one 16-byte load) to f32: a bf16 is the upper half of an f32.
__device__ __forceinline__ void unpack8(uint4 w, float* f)
{
    f[0] = __uint_as_float(w.x << 16); f[1] = __uint_as_float(w.x & 0xffff0000u);
    f[2] = __uint_as_float(w.y << 16); f[3] = __uint_as_float(w.y & 0xffff0000u);
    f[4] = __uint_as_float(w.z << 16); f[5] = __uint_as_float(w.z & 0xffff0000u);
    f[6] = __uint_as_float(w.w << 16); f[7] = __uint_as_float(w.w & 0xffff0000u);
}

__device__ __forceinline__ float bf16_to_f32(bf16 v) { return __uint_as_float((u32)v << 16); }

// Round to nearest even, as the CPU engine's SingleToBf16 (NaN stays NaN).
__device__ __forceinline__ bf16 f32_to_bf16(float f)
{
    u32 b = __float_as_uint(f);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (bf16)((b >> 16) | 0x40u);
    return (bf16)((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ u32 pack_bf16(float lo, float hi) { return (u32)f32_to_bf16(lo) | ((u32)f32_to_bf16(hi) << 16); }

// D += A·B on the tensor cores: A 16×16 row-major (4 regs of bf16 pairs), B 16×8 column-major (2 regs), D f32.
__device__ __forceinline__ void mma16816(float* c, u32 a0, u32 a1, u32 a2, u32 a3, u32 b0, u32 b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Budget.Resolve: k = tokens, or ceil(fraction · n) when fraction > 0; at least 1, at most n.
__device__ __forceinline__ int resolve_budget(int tokens, double fraction, int n)
{
    long long k = fraction > 0 ? (long long)ceil(fraction * (double)n) : (long long)tokens;
    return (int)max(1LL, min(k, (long long)n));
}

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

// Max over the block's threads (sh: a float per warp); every thread gets it. Ends with a barrier so sh can be reused.
__device__ __forceinline__ float block_max(float v, float* sh)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float m = sh[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) m = fmaxf(m, sh[w]);
    __syncthreads();
    return m;
}

// Exclusive scan over the block's threads; *total gets the sum. Ends with a barrier so sh can be reused.
__device__ __forceinline__ u32 block_excl_scan(u32 v, u32* sh, u32* total)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    u32 x = v;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1)
    {
        u32 y = __shfl_up_sync(0xffffffffu, x, off);
        if (lane >= off) x += y;
    }
    if (lane == 31) sh[warp] = x;
    __syncthreads();
    u32 before = 0, all = 0;
    for (int w = 0; w < nw; w++)
    {
        u32 s = sh[w];
        if (w < warp) before += s;
        all += s;
    }
    __syncthreads();
    *total = all;
    return before + x - v;
}

// Quest's summary of one page of one KV head for channel t: min and max over its keys from the page's start to
// `last` (bf16, exact; among equal values the first key's bits), written into the page's slot of the summary arrays.
// It runs on every layer of every step (model_step.cu's page_update, or inside selection.cu's Quest page bounds) in
// a handful of blocks, so its cost is load latency: the keys are loaded SUMMARY_KEYS at a time, all in flight before
// the first comparison.
#define SUMMARY_KEYS 16
__device__ __forceinline__ void summarise_page(const bf16* __restrict__ K, bf16* __restrict__ mn, bf16* __restrict__ mx,
    int page, int pageSize, int last, int hd, int t)
{
    const int first = page * pageSize;
    bf16 blo = K[(long long)first * hd + t], bhi = blo;
    float lo = bf16_to_f32(blo), hi = lo;
    for (int p0 = first + 1; p0 <= last; p0 += SUMMARY_KEYS)
    {
        bf16 k[SUMMARY_KEYS];
#pragma unroll
        for (int i = 0; i < SUMMARY_KEYS; i++) k[i] = p0 + i <= last ? K[(long long)(p0 + i) * hd + t] : (bf16)0;
#pragma unroll
        for (int i = 0; i < SUMMARY_KEYS; i++)
        {
            if (p0 + i > last) break;
            const float f = bf16_to_f32(k[i]);
            if (f < lo) { lo = f; blo = k[i]; }
            if (f > hi) { hi = f; bhi = k[i]; }
        }
    }
    mn[(long long)page * hd + t] = blo;
    mx[(long long)page * hd + t] = bhi;
}

// Whether row r of a step summarises the page of its new key: rows of one sequence in one page (a prefill chunk)
// leave it to the last of them, which covers the others' keys too. Rows must come in position order.
__device__ __forceinline__ bool summarises_page(const u64* kBases, const int* positions, int rows, int r, int pageSize)
{
    return !(r + 1 < rows && kBases[r + 1] == kBases[r] && positions[r + 1] / pageSize == positions[r] / pageSize);
}
