// The rest of a Llama-family decode step around attention, compiled at run time by NVRTC (no headers):
// embedding rows, RMSNorm, bf16 matrix-vector products for up to 8 rows at once (and the bf16 parts and their sums
// around cuBLAS's products, which wider steps use), RoPE + KV-cache append, SwiGLU,
// Quest page-summary upkeep, and a dense attention for any head size and group (the models whose heads are not
// the 128-wide groups of 4 that decode_attention.cu is specialised for).
//
// Activations stay f32 (as in the CPU engine, so log-probabilities agree to bf16 weight rounding); weights and the
// KV cache are bf16. A "row" is one query token: a sequence of a decode batch or one token of a prefill chunk.
// Per-row inputs (token, position, length = position + 1) live in device memory, so one captured graph replays
// for every step.

#include "common.cuh"



// x[r][0..hidden) = embedding row of tokens[r]; grid (rows), 256 threads.
extern "C" __global__ void embed_rows(const bf16* __restrict__ table, const int* __restrict__ tokens, int hidden,
    int stride, float* __restrict__ x)
{
    step_prologue();
    const int r = blockIdx.x;
    const bf16* row = table + (long long)tokens[r] * hidden;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) x[(long long)r * stride + i] = bf16_to_f32(row[i]);
}

// 1 / sqrt(mean(x²) + eps) of one row, statistics in f32; all 256 threads of the block take part.
__device__ __forceinline__ float rms_scale(const float* __restrict__ xr, int n, float eps)
{
    __shared__ float red[8];
    float ss = 0.f;
    for (int i = threadIdx.x; i < n; i += 256) ss = fmaf(xr[i], xr[i], ss);
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float total = 0.f;
#pragma unroll
    for (int i = 0; i < 8; i++) total += red[i];
    return 1.0f / sqrtf(total / n + eps);
}

// y = x / sqrt(mean(x²) + eps) * w; grid (rows), 256 threads.
extern "C" __global__ void __launch_bounds__(256) rms_norm(const float* __restrict__ x, int stride,
    const float* __restrict__ w, int n, float eps, float* __restrict__ y, int yStride)
{
    step_prologue();
    const float* xr = x + (long long)blockIdx.x * stride;
    const float scale = rms_scale(xr, n, eps);
    float* yr = y + (long long)blockIdx.x * yStride;
    for (int i = threadIdx.x; i < n; i += 256) yr[i] = (xr[i] * scale) * w[i];
}

// An f32 value as the bf16 operands of tensor-core products: `parts` bf16 values at base[i], base[partStride + i],
// .. whose sum is v: 1 part rounds v to bf16; 3 parts carry all 24 bits of its mantissa (the prefill's "split"
// precision, and the wide steps' products).
__device__ __forceinline__ void store_parts(float v, bf16* __restrict__ base, long long partStride, int parts, long long i)
{
    for (int p = 0; p < parts; p++)
    {
        const bf16 h = f32_to_bf16(v);
        base[p * partStride + i] = h;
        v -= bf16_to_f32(h);
    }
}

// rms_norm for the prefill's matrix products: the normalised rows as `parts` bf16 parts; grid (rows).
extern "C" __global__ void __launch_bounds__(256) rms_norm_bf16(const float* __restrict__ x, int stride,
    const float* __restrict__ w, int n, float eps, bf16* __restrict__ y, long long partStride, int parts, int yStride)
{
    step_prologue();
    const float* xr = x + (long long)blockIdx.x * stride;
    const float scale = rms_scale(xr, n, eps);
    const long long r = (long long)blockIdx.x * yStride;
    for (int i = threadIdx.x; i < n; i += 256) store_parts((xr[i] * scale) * w[i], y, partStride, parts, r + i);
}

// y[b][n] (+)= W[n]·x[b] + bias[n] for rows b < rows: W bf16 [N][K] (K a multiple of 8), x f32 [B][xStride].
// 256 threads = 8 warps; a warp owns R consecutive output rows and walks K in 16-byte pieces (32 lanes × 8
// columns a turn, U turns of loads issued before the arithmetic), so each weight byte is read once, streamed past
// L1 (__ldcs), while the B activation rows come through L1 and are reused for the R weight rows. The input rows
// past `rows` are read (the buffers hold at least B rows) but never written.
template <int B, int R, int U>
__device__ __forceinline__ void gemv(const bf16* __restrict__ W, int N, int K, const float* __restrict__ x,
    int xStride, int rows, const float* __restrict__ bias, float* __restrict__ y, int yStride, int accumulate)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int n0 = (blockIdx.x * 8 + warp) * R;
    if (n0 >= N) return;
    const int K8 = K >> 3;
    const uint4* Wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) Wr[r] = (const uint4*)(W + (long long)min(n0 + r, N - 1) * K);
    float acc[B][R];
#pragma unroll
    for (int b = 0; b < B; b++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[b][r] = 0.f;

    for (int c0 = lane; c0 < K8; c0 += 32 * U)
    {
        uint4 w[U][R];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int r = 0; r < R; r++)
                w[u][r] = c0 + 32 * u < K8 ? __ldcs(Wr[r] + c0 + 32 * u) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            const int c = c0 + 32 * u;
            if (c >= K8) break;
            float wf[R][8];
#pragma unroll
            for (int r = 0; r < R; r++) unpack8(w[u][r], wf[r]);
#pragma unroll
            for (int b = 0; b < B; b++)
            {
                const float* xp = x + (long long)b * xStride + c * 8;
                float4 a0 = __ldg((const float4*)xp), a1 = __ldg((const float4*)(xp + 4));
                float xf[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int e = 0; e < 8; e++) acc[b][r] = fmaf(wf[r][e], xf[e], acc[b][r]);
            }
        }
    }
#pragma unroll
    for (int b = 0; b < B; b++)
#pragma unroll
        for (int r = 0; r < R; r++) acc[b][r] = warp_sum(acc[b][r]);
    if (lane != 0) return;
#pragma unroll
    for (int b = 0; b < B; b++)
    {
        if (b >= rows) break;
#pragma unroll
        for (int r = 0; r < R; r++)
        {
            const int n = n0 + r;
            if (n >= N) break;
            float v = acc[b][r] + (bias ? bias[n] : 0.f);
            float* o = y + (long long)b * yStride + n;
            *o = accumulate ? *o + v : v;
        }
    }
}

#define GEMV_ARGS const bf16* W, int N, int K, const float* x, int xStride, int rows, const float* bias, float* y, \
    int yStride, int accumulate
#define GEMV_PASS W, N, K, x, xStride, rows, bias, y, yStride, accumulate
// Rows per block: 8 warps × R.
extern "C" __global__ void __launch_bounds__(256) gemv_b1(GEMV_ARGS) { step_prologue(); gemv<1, 2, 4>(GEMV_PASS); }
// One-row variants for the load-depth sweep (gpu-step's weights-only rows): rows per warp × loads in flight.
extern "C" __global__ void __launch_bounds__(256) gemv_b1_r1u8(GEMV_ARGS) { step_prologue(); gemv<1, 1, 8>(GEMV_PASS); }
extern "C" __global__ void __launch_bounds__(256) gemv_b1_r2u8(GEMV_ARGS) { step_prologue(); gemv<1, 2, 8>(GEMV_PASS); }
extern "C" __global__ void __launch_bounds__(256) gemv_b1_r4u4(GEMV_ARGS) { step_prologue(); gemv<1, 4, 4>(GEMV_PASS); }
extern "C" __global__ void __launch_bounds__(256) gemv_b2(GEMV_ARGS) { step_prologue(); gemv<2, 2, 4>(GEMV_PASS); }
extern "C" __global__ void __launch_bounds__(256) gemv_b4(GEMV_ARGS) { step_prologue(); gemv<4, 4, 2>(GEMV_PASS); }
extern "C" __global__ void __launch_bounds__(256) gemv_b8(GEMV_ARGS) { step_prologue(); gemv<8, 4, 2>(GEMV_PASS); }

// RoPE ("rotate half": channel i pairs with i + d/2) with the host's cos/sin tables [position][d/2] (the CPU
// engine's own numbers): (a, b) → (a·cos − b·sin, b·cos + a·sin).
__device__ __forceinline__ float2 rotate_half(float a, float b, float c, float s) { return make_float2(a * c - b * s, b * c + a * s); }

// K (rotated) and V of KV head kh from one row's fused projection src, appended as bf16 at K, V (the position's
// rows in the cache); the block's threads share the channels.
__device__ __forceinline__ void append_kv(const float* __restrict__ src, int qHeads, int kvHeads, int kh, int hd,
    const float* __restrict__ c, const float* __restrict__ s, bf16* __restrict__ K, bf16* __restrict__ V)
{
    const int half = hd >> 1;
    const float* x = src + qHeads * hd + kh * hd;
    const float* v = src + (qHeads + kvHeads) * hd + kh * hd;
    for (int i = threadIdx.x; i < half; i += blockDim.x)
    {
        const float2 y = rotate_half(x[i], x[i + half], c[i], s[i]);
        K[i] = f32_to_bf16(y.x);
        K[i + half] = f32_to_bf16(y.y);
        V[i] = f32_to_bf16(v[i]);
        V[i + half] = f32_to_bf16(v[i + half]);
    }
}

// RoPE of the q and k parts of each row's fused q|k|v projection; q goes to q [rows][qHeads·d] f32, k and v are
// appended to the bf16 cache at the row's position. Grid (rows, qHeads + kvHeads), 64 threads.
extern "C" __global__ void rope_append(const float* __restrict__ qkv, int qkvStride, int qHeads, int kvHeads, int hd,
    const float* __restrict__ cosT, const float* __restrict__ sinT, const int* __restrict__ positions,
    const u64* __restrict__ kBases, const u64* __restrict__ vBases, long long headStride, float* __restrict__ q)
{
    step_prologue();
    const int r = blockIdx.x, h = blockIdx.y, half = hd >> 1, pos = positions[r];
    const float* c = cosT + (long long)pos * half;
    const float* s = sinT + (long long)pos * half;
    const float* src = qkv + (long long)r * qkvStride;
    if (h < qHeads)
    {
        const float* x = src + h * hd;
        float* o = q + ((long long)r * qHeads + h) * hd;
        for (int i = threadIdx.x; i < half; i += blockDim.x)
        {
            const float2 y = rotate_half(x[i], x[i + half], c[i], s[i]);
            o[i] = y.x;
            o[i + half] = y.y;
        }
        return;
    }
    const int kh = h - qHeads;
    append_kv(src, qHeads, kvHeads, kh, hd, c, s, (bf16*)kBases[r] + kh * headStride + (long long)pos * hd,
        (bf16*)vBases[r] + kh * headStride + (long long)pos * hd);
}

// The same for the `rows` consecutive tokens of one sequence from position `first` (a prefill chunk): k and v to
// the cache of one slot (kBase, vBase: its [kvHead][capacity][d] arrays), q as bf16 parts [rows][qHeads·d] for the
// tensor-core attention. Grid (rows, qHeads + kvHeads), 64 threads.
extern "C" __global__ void rope_append_span(const float* __restrict__ qkv, int qkvStride, int qHeads, int kvHeads,
    int hd, const float* __restrict__ cosT, const float* __restrict__ sinT, int first, bf16* __restrict__ kBase,
    bf16* __restrict__ vBase, long long headStride, bf16* __restrict__ q, long long partStride, int parts)
{
    step_prologue();
    const int r = blockIdx.x, h = blockIdx.y, half = hd >> 1, pos = first + r;
    const float* c = cosT + (long long)pos * half;
    const float* s = sinT + (long long)pos * half;
    const float* src = qkv + (long long)r * qkvStride;
    if (h < qHeads)
    {
        const float* x = src + h * hd;
        const long long o = ((long long)r * qHeads + h) * hd;
        for (int i = threadIdx.x; i < half; i += blockDim.x)
        {
            const float2 y = rotate_half(x[i], x[i + half], c[i], s[i]);
            store_parts(y.x, q, partStride, parts, o + i);
            store_parts(y.y, q, partStride, parts, o + i + half);
        }
        return;
    }
    const int kh = h - qHeads;
    append_kv(src, qHeads, kvHeads, kh, hd, c, s, kBase + kh * headStride + (long long)pos * hd,
        vBase + kh * headStride + (long long)pos * hd);
}

// Quest's summary of the page holding each row's new key: per channel the min and max of the page's keys so far
// (bf16, exact). Grid (rows, kvHeads), hd threads (one channel each). Rows must come in position order.
// Not a duplicate of decode_attention.cu's page_minmax: this is the per-step incremental update (one page per row,
// any head size) inside the step graph; page_minmax rebuilds every page of a 128-wide cache from its keys (after
// keys were written directly, not appended by a step).
extern "C" __global__ void page_update(const u64* __restrict__ kBases, const u64* __restrict__ minBases,
    const u64* __restrict__ maxBases, const int* __restrict__ positions, long long headStride,
    long long pageHeadStride, int pageSize, int hd, int rows)
{
    step_prologue();
    const int r = blockIdx.x, h = blockIdx.y, pos = positions[r], page = pos / pageSize;
    if (!summarises_page(kBases, positions, rows, r, pageSize)) return;
    summarise_page((const bf16*)kBases[r] + h * headStride, (bf16*)minBases[r] + h * pageHeadStride,
        (bf16*)maxBases[r] + h * pageHeadStride, page, pageSize, pos, hd, threadIdx.x);
}

// The summaries of every page that keys first .. last of one slot touch (a prefill chunk). Grid (pages, kvHeads),
// hd threads.
extern "C" __global__ void page_summaries_span(const bf16* __restrict__ kBase, bf16* __restrict__ minBase,
    bf16* __restrict__ maxBase, long long headStride, long long pageHeadStride, int pageSize, int hd, int first, int last)
{
    step_prologue();
    const int page = first / pageSize + blockIdx.x, h = blockIdx.y;
    summarise_page(kBase + h * headStride, minBase + h * pageHeadStride, maxBase + h * pageHeadStride, page, pageSize,
        min(last, (page + 1) * pageSize - 1), hd, threadIdx.x);
}

__device__ __forceinline__ float silu_mul(float g, float u) { return (g * (1.0f / (1.0f + expf(-g)))) * u; }

// h[r][i] = silu(g) · u with g = gu[r][i], u = gu[r][F + i] (the fused gate|up projection); grid-stride.
extern "C" __global__ void swiglu(const float* __restrict__ gu, int F, int guStride, int rows, float* __restrict__ h, int hStride)
{
    step_prologue();
    const long long n = (long long)rows * F;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const int r = (int)(i / F), j = (int)(i % F);
        h[(long long)r * hStride + j] = silu_mul(gu[(long long)r * guStride + j], gu[(long long)r * guStride + F + j]);
    }
}

// swiglu for the prefill's down projection: h as bf16 parts; grid-stride.
extern "C" __global__ void swiglu_bf16(const float* __restrict__ gu, int F, int guStride, int rows, bf16* __restrict__ h,
    long long partStride, int parts, int hStride)
{
    step_prologue();
    const long long n = (long long)rows * F;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        const int r = (int)(i / F), j = (int)(i % F);
        store_parts(silu_mul(gu[(long long)r * guStride + j], gu[(long long)r * guStride + F + j]), h, partStride, parts, (long long)r * hStride + j);
    }
}

// The operands of a step's wide products through cuBLAS: x [rows][xStride] f32 as `parts` bf16 parts laid out
// [part][rows][k] (part stride rows·k), so one product of parts·rows rows reads the weights once for every part.
extern "C" __global__ void to_bf16_parts(const float* __restrict__ x, int xStride, int k, int rows, bf16* __restrict__ y,
    int parts)
{
    step_prologue();
    const long long n = (long long)rows * k;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        store_parts(x[(i / k) * xStride + i % k], y, n, parts, i);
}

// y[r][j] (+)= Σ_p partial[p][r][j] + bias[j]: the per-part products of to_bf16_parts' operands summed, the smallest
// part first (as the tensor-core kernels add them); grid-stride.
extern "C" __global__ void sum_parts(const float* __restrict__ partial, int n, int rows, int parts,
    const float* __restrict__ bias, float* __restrict__ y, int yStride, int accumulate)
{
    step_prologue();
    const long long total = (long long)rows * n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
    {
        float v = 0.f;
        for (int p = parts - 1; p >= 0; p--) v += partial[p * total + i];
        if (bias) v += bias[i % n];
        float* out = y + (i / n) * yStride + i % n;
        *out = accumulate ? *out + v : v;
    }
}

// y[r][j] += bias[j] for rows of n values (a projection's bias after a matrix product); grid-stride.
extern "C" __global__ void add_bias(float* __restrict__ y, int n, int yStride, int rows, const float* __restrict__ bias)
{
    step_prologue();
    const long long total = (long long)rows * n;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x)
        y[(i / n) * yStride + i % n] += bias[i % n];
}

extern "C" __global__ void fill_f32(float* __restrict__ p, long long n, float v)
{
    step_prologue();
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) p[i] = v;
}

// ------------------------------------------------------------------------------------------------ attention
// Kept beside decode_attention.cu's tuned flash-decoding kernels on purpose: those take heads of 128 in groups of 4
// or 8 (a half-warp per 256-byte key row, the group's queries in registers); this one serves every other shape.
// GpuModel routes by GpuModel.IsTunedShape; gpu-step cross-checks the two on the tuned shape.
// Dense decode attention for any head size d ≤ 256 and any group (query heads per KV head): grid (chunks, qHeads,
// rows), 128 threads = 4 warps; a warp takes one key at a time (lane e holds channels e, e + 32, ...), keeps an
// online softmax, and the warps are merged at the end. Partials per (row, head, chunk): max m (log2 units), sum l
// and unnormalised output o[d], combined by attn_any_reduce. Keys [kvHead][capacity][d] bf16 at kBases[row].
#define AMAX 8
// With idx: over the index list of the head instead ([rows][listHeads][idxCount], listHeads = qHeads (per query
// head) or qHeads / group (per KV head); entries < 0 or >= the length skipped).
extern "C" __global__ void __launch_bounds__(128) attn_any_partial(const u64* __restrict__ kBases,
    const u64* __restrict__ vBases, const int* __restrict__ lengths, long long headStride, int hd,
    const float* __restrict__ q, int qHeads, int group, int chunk, int nChunks, float scaleLog2,
    float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ po,
    const int* __restrict__ idx, int idxCount, int listPerQueryHead)
{
    step_prologue();
    __shared__ float sm_m[4], sm_l[4], sm_o[4][32 * AMAX];
    const int c = blockIdx.x, h = blockIdx.y, r = blockIdx.z, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int len = lengths[r], c0 = c * chunk, c1 = min(c0 + chunk, idx ? idxCount : len);
    const int* I = idx ? idx + ((long long)r * (listPerQueryHead ? qHeads : qHeads / group) + (listPerQueryHead ? h : h / group)) * idxCount : 0;
    const bf16* K = (const bf16*)kBases[r] + (h / group) * headStride;
    const bf16* V = (const bf16*)vBases[r] + (h / group) * headStride;
    float qr[AMAX], acc[AMAX];
#pragma unroll
    for (int i = 0; i < AMAX; i++)
    {
        const int e = lane + 32 * i;
        qr[i] = e < hd ? q[((long long)r * qHeads + h) * hd + e] * scaleLog2 : 0.f;
        acc[i] = 0.f;
    }
    float m = NEG_INF, l = 0.f;
    for (int jj = c0 + warp; jj < c1; jj += 4)
    {
        const int j = I ? I[jj] : jj;
        if (j < 0 || j >= len) continue;
        const bf16* kr = K + (long long)j * hd;
        float d = 0.f;
#pragma unroll
        for (int i = 0; i < AMAX; i++)
        {
            const int e = lane + 32 * i;
            if (e < hd) d = fmaf(qr[i], bf16_to_f32(kr[e]), d);
        }
        const float s = warp_sum(d);
        const float mx = fmaxf(m, s), corr = exp2f(m - mx), p = exp2f(s - mx);
        l = l * corr + p;
        m = mx;
        const bf16* vr = V + (long long)j * hd;
#pragma unroll
        for (int i = 0; i < AMAX; i++)
        {
            const int e = lane + 32 * i;
            acc[i] = acc[i] * corr + (e < hd ? p * bf16_to_f32(vr[e]) : 0.f);
        }
    }
    if (lane == 0) { sm_m[warp] = m; sm_l[warp] = l; }
#pragma unroll
    for (int i = 0; i < AMAX; i++) sm_o[warp][lane + 32 * i] = acc[i];
    __syncthreads();
    float M = fmaxf(fmaxf(sm_m[0], sm_m[1]), fmaxf(sm_m[2], sm_m[3]));
    const long long row = ((long long)r * qHeads + h) * nChunks + c;
    for (int e = threadIdx.x; e < hd; e += 128)
    {
        float O = 0.f;
        if (M != NEG_INF)
#pragma unroll
            for (int w = 0; w < 4; w++) O = fmaf(sm_o[w][e], exp2f(sm_m[w] - M), O);
        po[row * hd + e] = O;
    }
    if (threadIdx.x == 0)
    {
        float L = 0.f;
        if (M != NEG_INF)
            for (int w = 0; w < 4; w++) L = fmaf(sm_l[w], exp2f(sm_m[w] - M), L);
        pm[row] = M;
        pl[row] = L;
    }
}

// out[r][h·d + e] = Σ_c o_c[e]·2^(m_c − M) / Σ_c l_c·2^(m_c − M); grid (qHeads, rows), 128 threads.
extern "C" __global__ void __launch_bounds__(128) attn_any_reduce(const float* __restrict__ pm,
    const float* __restrict__ pl, const float* __restrict__ po, int nChunks, int qHeads, int hd, float* __restrict__ out)
{
    step_prologue();
    const int h = blockIdx.x, r = blockIdx.y;
    const long long r0 = ((long long)r * qHeads + h) * nChunks;
    float M = NEG_INF;
    for (int c = 0; c < nChunks; c++) M = fmaxf(M, pm[r0 + c]);
    float L = 0.f;
    if (M != NEG_INF)
        for (int c = 0; c < nChunks; c++) L = fmaf(pl[r0 + c], exp2f(pm[r0 + c] - M), L);
    for (int e = threadIdx.x; e < hd; e += 128)
    {
        float O = 0.f;
        if (M != NEG_INF)
            for (int c = 0; c < nChunks; c++) O = fmaf(po[(r0 + c) * hd + e], exp2f(pm[r0 + c] - M), O);
        out[((long long)r * qHeads + h) * hd + e] = L > 0.f ? O / L : 0.f;
    }
}
