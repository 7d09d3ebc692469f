// Decode-time attention and selection over a bf16 KV cache, compiled at run time by NVRTC (no headers).
//
// Cache layout, per sequence and layer: K and V are [kvHeads][capacity][128] bf16 (one 256-byte row per
// position, heads `headStride` elements apart). Queries are f32 [batch][qHeads][128]. A half-warp (16 lanes)
// owns one key row: each lane one 16-byte piece of 8 channels, so a warp reads two rows per load instruction,
// fully coalesced. Every kernel below shares that shape: blocks of 128 threads over (chunk, head, sequence).
//
// Softmax runs in the log2 domain: queries are pre-scaled by log2(e)/sqrt(d) so that p = exp2(s - m).

#include "tensor_core.cuh"

#define HD 128
#define BLOCK 128
#define HALVES (BLOCK / 16)

__device__ __forceinline__ float half_sum(float x)
{
    x += __shfl_xor_sync(0xffffffffu, x, 8);
    x += __shfl_xor_sync(0xffffffffu, x, 4);
    x += __shfl_xor_sync(0xffffffffu, x, 2);
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x;
}

// ------------------------------------------------------------------------------------------------ attention
#define MAXW 1024

__device__ __forceinline__ float block_max128(float v, float* sh)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = fmaxf(fmaxf(sh[0], sh[1]), fmaxf(sh[2], sh[3]));
    __syncthreads();
    return v;
}

__device__ __forceinline__ float block_sum128(float v, float* sh)
{
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    v = (sh[0] + sh[1]) + (sh[2] + sh[3]);
    __syncthreads();
    return v;
}

// Combines nc chunk partials (rows r0 .. r0 + nc - 1) of one query head; 128 threads, thread t = channel t. The
// max and the chunk weights are computed by all threads together and the weighted sum runs eight independent
// loads deep, so a long list of chunks costs bandwidth, not a chain of dependent L2 round trips.
__device__ __forceinline__ void combine_chunks(const float* __restrict__ pm, const float* __restrict__ pl,
    const float* __restrict__ po, long long r0, int nc, float* sh_w, float* sh_red, float* outM, float* outL, float* outO)
{
    const int t = threadIdx.x;
    float m = NEG_INF;
    for (int c = t; c < nc; c += BLOCK) m = fmaxf(m, __ldcg(pm + r0 + c));
    const float M = block_max128(m, sh_red);
    float L = 0.f, O = 0.f;
    if (M != NEG_INF)
    {
        for (int base = 0; base < nc; base += MAXW)
        {
            const int cnt = min(MAXW, nc - base);
            float l = 0.f;
            for (int c = t; c < cnt; c += BLOCK)
            {
                float mc = __ldcg(pm + r0 + base + c);
                float w = mc == NEG_INF ? 0.f : exp2f(mc - M);
                sh_w[c] = w;
                l = fmaf(__ldcg(pl + r0 + base + c), w, l);
            }
            L += block_sum128(l, sh_red);  // its barrier also publishes sh_w
            const float* P = po + (r0 + base) * HD + t;
            float o[8];
#pragma unroll
            for (int u = 0; u < 8; u++) o[u] = 0.f;
            int c = 0;
            for (; c + 8 <= cnt; c += 8)
            {
#pragma unroll
                for (int u = 0; u < 8; u++) o[u] = fmaf(__ldcg(P + (long long)(c + u) * HD), sh_w[c + u], o[u]);
            }
            for (; c < cnt; c++) o[0] = fmaf(__ldcg(P + (long long)c * HD), sh_w[c], o[0]);
            O += ((o[0] + o[1]) + (o[2] + o[3])) + ((o[4] + o[5]) + (o[6] + o[7]));
            __syncthreads();  // sh_w is rewritten by the next segment
        }
    }
    *outM = M;
    *outL = L;
    *outO = O;
}
// Whether row r is a padding copy of the row before it: the same cache bases and length. A step pads each of its
// parts with copies of the part's last row (same token, position and slot), and no two other rows share both: rows
// of one sequence's dense pass differ in length. A copy's attention is its source's, so it is not computed again.
__device__ __forceinline__ bool run_copy(const u64* kBase, const int* lengths, int r)
{
    return r > 0 && kBase[r] == kBase[r - 1] && lengths[r] == lengths[r - 1];
}

// The first row of the copies r belongs to (r itself when it is no copy).
__device__ __forceinline__ int copy_source(const u64* kBase, const int* lengths, int r)
{
    while (run_copy(kBase, lengths, r)) r--;
    return r;
}

// Partial attention of one chunk of keys (dense: positions [c0, c1); indexed: entries [c0, c1) of the head's
// index list, entries < 0 or >= length skipped). G query heads share the chunk's keys: G = group size when the
// index list is per KV head (or dense), G = 1 when it is per query head. Writes per (query head, chunk) the
// running max m (log2 units), the sum l of exp2(s - m) and the unnormalised output o.
// FUSED: the last block of each (sequence, head) to finish (a per-head arrival counter, reset by that block) also
// combines the chunks, so no second kernel is launched; otherwise attn_reduce does it, and a padding copy's blocks
// return at once (attn_reduce combines its source's partials for it), so padding reads no key again.
template <int G, bool INDEXED, int U, bool FUSED>
__device__ __forceinline__ void attn_partial(
    const u64* __restrict__ kBase, const u64* __restrict__ vBase, const int* __restrict__ lengths, long long headStride,
    const float* __restrict__ q, const int* __restrict__ idx, int idxCount, int idxHeads,
    int qHeads, int group, int chunk, int nChunks, float scaleLog2,
    float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ po,
    u32* __restrict__ counters, float* __restrict__ out, float* __restrict__ lse)
{
    __shared__ float sm_m[HALVES][G], sm_l[HALVES][G];
    __shared__ float sm_o[HALVES][G][HD];

    const int b = blockIdx.z, y = blockIdx.y, c = blockIdx.x;
    if (!FUSED && run_copy(kBase, lengths, b)) return;
    const int qh0 = G == 1 ? y : y * G;
    const int kvh = G == 1 ? y / group : y;
    const int len = lengths[b];
    const int n = INDEXED ? idxCount : len;
    const int c0 = c * chunk, c1 = min(c0 + chunk, n);
    const int tid = threadIdx.x, warp = tid >> 5, half = (tid >> 4) & 1, l16 = tid & 15, hw = tid >> 4;
    const bf16* K = (const bf16*)kBase[b] + kvh * headStride + l16 * 8;
    const bf16* V = (const bf16*)vBase[b] + kvh * headStride + l16 * 8;
    const int* I = INDEXED ? idx + ((long long)b * idxHeads + y) * idxCount : 0;

    float qr[G][8];
#pragma unroll
    for (int g = 0; g < G; g++)
    {
        const float* qp = q + ((long long)b * qHeads + qh0 + g) * HD + l16 * 8;
        float4 a = *(const float4*)qp, bb = *(const float4*)(qp + 4);
        qr[g][0] = a.x * scaleLog2; qr[g][1] = a.y * scaleLog2; qr[g][2] = a.z * scaleLog2; qr[g][3] = a.w * scaleLog2;
        qr[g][4] = bb.x * scaleLog2; qr[g][5] = bb.y * scaleLog2; qr[g][6] = bb.z * scaleLog2; qr[g][7] = bb.w * scaleLog2;
    }
    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; g++)
    {
        m[g] = NEG_INF; l[g] = 0.f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.f;
    }

    const int step = (BLOCK / 32) * 2 * U;
    for (int j0 = c0 + warp * 2 * U; j0 < c1; j0 += step)
    {
        uint4 kr[U], vr[U];
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            int j = j0 + 2 * u + half, pos = -1;
            if (j < c1) pos = INDEXED ? I[j] : j;
            ok[u] = pos >= 0 && pos < len;
            if (ok[u])
            {
                kr[u] = __ldg((const uint4*)(K + (long long)pos * HD));
                vr[u] = __ldg((const uint4*)(V + (long long)pos * HD));
            }
            else
            {
                kr[u] = make_uint4(0, 0, 0, 0);
                vr[u] = make_uint4(0, 0, 0, 0);
            }
        }
        float s[U][G];
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            float kf[8];
            unpack8(kr[u], kf);
#pragma unroll
            for (int g = 0; g < G; g++)
            {
                float d = 0.f;
#pragma unroll
                for (int e = 0; e < 8; e++) d = fmaf(qr[g][e], kf[e], d);
                s[u][g] = half_sum(d);
            }
        }
        float p[U][G];
#pragma unroll
        for (int g = 0; g < G; g++)
        {
            float mx = m[g];
#pragma unroll
            for (int u = 0; u < U; u++)
            {
                if (!ok[u]) s[u][g] = NEG_INF;
                mx = fmaxf(mx, s[u][g]);
            }
            float corr = 1.f;
            if (mx == NEG_INF)
            {
#pragma unroll
                for (int u = 0; u < U; u++) p[u][g] = 0.f;
            }
            else
            {
                corr = exp2f(m[g] - mx);
#pragma unroll
                for (int u = 0; u < U; u++) p[u][g] = exp2f(s[u][g] - mx);
                m[g] = mx;
            }
            float ls = 0.f;
#pragma unroll
            for (int u = 0; u < U; u++) ls += p[u][g];
            l[g] = l[g] * corr + ls;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] *= corr;
        }
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            float vf[8];
            unpack8(vr[u], vf);
#pragma unroll
            for (int g = 0; g < G; g++)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] = fmaf(p[u][g], vf[e], acc[g][e]);
        }
    }

#pragma unroll
    for (int g = 0; g < G; g++)
    {
        if (l16 == 0) { sm_m[hw][g] = m[g]; sm_l[hw][g] = l[g]; }
#pragma unroll
        for (int e = 0; e < 8; e++) sm_o[hw][g][l16 * 8 + e] = acc[g][e];
    }
    __syncthreads();
    const int t = tid;  // one output channel per thread (BLOCK == HD)
#pragma unroll
    for (int g = 0; g < G; g++)
    {
        float M = NEG_INF;
#pragma unroll
        for (int h = 0; h < HALVES; h++) M = fmaxf(M, sm_m[h][g]);
        float L = 0.f, O = 0.f;
        if (M != NEG_INF)
        {
#pragma unroll
            for (int h = 0; h < HALVES; h++)
            {
                float w = exp2f(sm_m[h][g] - M);
                L = fmaf(sm_l[h][g], w, L);
                O = fmaf(sm_o[h][g][t], w, O);
            }
        }
        long long r = ((long long)b * qHeads + qh0 + g) * nChunks + c;
        po[r * HD + t] = O;
        if (t == 0) { pm[r] = M; pl[r] = L; }
    }
    if (FUSED)
    {
        __shared__ bool sh_last;
        __threadfence();
        __syncthreads();
        if (t == 0)
        {
            u32* ctr = counters + (long long)b * gridDim.y + y;
            u32 prev = atomicAdd(ctr, 1u);
            sh_last = prev == nChunks - 1;
            if (sh_last) *ctr = 0u;  // every block of this head has arrived: ready for the next launch
        }
        __syncthreads();
        if (!sh_last) return;
        __threadfence();
        __shared__ float sh_w[MAXW], sh_red[4];
        for (int g = 0; g < G; g++)
        {
            const long long r0 = ((long long)b * qHeads + qh0 + g) * nChunks;
            float M, L, O;
            combine_chunks(pm, pl, po, r0, nChunks, sh_w, sh_red, &M, &L, &O);
            const long long oi = (long long)b * qHeads + qh0 + g;
            out[oi * HD + t] = L > 0.f ? O / L : 0.f;
            if (lse && t == 0) lse[oi] = L > 0.f ? (M + log2f(L)) * 0.6931471805599453f : NEG_INF;
        }
    }
}

#define ATTN_ARGS const u64* kBase, const u64* vBase, const int* lengths, long long headStride, const float* q, \
    const int* idx, int idxCount, int idxHeads, int qHeads, int group, int chunk, int nChunks, float scaleLog2,  \
    float* pm, float* pl, float* po, u32* counters, float* out, float* lse
#define ATTN_PASS kBase, vBase, lengths, headStride, q, idx, idxCount, idxHeads, qHeads, group, chunk, nChunks, \
    scaleLog2, pm, pl, po, counters, out, lse

// Dense flash-decoding: grid (chunks, kvHeads, batch); the 4 query heads of a GQA group read each key once.
// Suffix _f: the chunks are combined by the last block to finish (no attn_reduce launch).
extern "C" __global__ void __launch_bounds__(BLOCK) attn_dense_g4(ATTN_ARGS) { step_prologue(); attn_partial<4, false, 4, false>(ATTN_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) attn_dense_g4_f(ATTN_ARGS) { step_prologue(); attn_partial<4, false, 4, true>(ATTN_PASS); }
// Sparse over per-KV-head index lists [batch][kvHeads][idxCount]: grid (chunks, kvHeads, batch).
extern "C" __global__ void __launch_bounds__(BLOCK) attn_sparse_g4(ATTN_ARGS) { step_prologue(); attn_partial<4, true, 4, false>(ATTN_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) attn_sparse_g4_f(ATTN_ARGS) { step_prologue(); attn_partial<4, true, 4, true>(ATTN_PASS); }
// Sparse over per-query-head index lists [batch][qHeads][idxCount]: grid (chunks, qHeads, batch).
extern "C" __global__ void __launch_bounds__(BLOCK) attn_sparse_g1(ATTN_ARGS) { step_prologue(); attn_partial<1, true, 4, false>(ATTN_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) attn_sparse_g1_f(ATTN_ARGS) { step_prologue(); attn_partial<1, true, 4, true>(ATTN_PASS); }

// The same for groups of 8 query heads per KV head (Llama-3 70B: 64 q / 8 kv heads).
extern "C" __global__ void __launch_bounds__(BLOCK) attn_dense_g8(ATTN_ARGS) { step_prologue(); attn_partial<8, false, 4, false>(ATTN_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) attn_sparse_g8(ATTN_ARGS) { step_prologue(); attn_partial<8, true, 4, false>(ATTN_PASS); }

// Combines the chunks' partials: grid (qHeads, batch), 128 threads (one channel each). out [batch][qHeads][128];
// lse (optional) is the natural-log log-sum-exp of the scores attended, for dropped-mass bookkeeping. A padding
// copy (run_copy) gets its source row's result, from the source's partials.
extern "C" __global__ void __launch_bounds__(BLOCK) attn_reduce(
    const u64* __restrict__ kBase, const int* __restrict__ lengths,
    const float* __restrict__ pm, const float* __restrict__ pl, const float* __restrict__ po, int nChunks,
    int qHeads, float* __restrict__ out, float* __restrict__ lse)
{
    step_prologue();
    __shared__ float sh_w[MAXW], sh_red[4];
    const int h = blockIdx.x, b = blockIdx.y, t = threadIdx.x;
    const long long r0 = ((long long)copy_source(kBase, lengths, b) * qHeads + h) * nChunks;
    float M, L, O;
    combine_chunks(pm, pl, po, r0, nChunks, sh_w, sh_red, &M, &L, &O);
    out[((long long)b * qHeads + h) * HD + t] = L > 0.f ? O / L : 0.f;
    if (lse && t == 0) lse[(long long)b * qHeads + h] = L > 0.f ? (M + log2f(L)) * 0.6931471805599453f : NEG_INF;
}

// ------------------------------------------------------------------------------------------------ dense passes
// Dense attention of the rows of dense passes on the tensor cores. A pass is a run of rows of one sequence at
// consecutive positions (the same cache bases, each row's length one more than the row before's): its queries share
// every key up to the first row's position, so a block takes the rows of up to 64 / G tokens of a run together with
// the G query heads of one KV head — 64 query rows, four warps of 16 (tensor_core.cuh) — and reads each key of its
// chunk once for all of them instead of once per row. Queries are f32 [rows][qHeads][128] (split into three bf16
// parts: f32 accuracy, as are the weights P), partials go to the flash-decoding workspace per (row, query head,
// chunk) like attn_partial's, and attn_reduce combines them.
// Grid (chunks, kvHeads, rows): block z does the rows from z if z begins a run or lies a multiple of 64 / G rows into
// one; the other blocks return at once, so the host needs no list of the runs and one captured graph serves any
// arrangement of them. A row equal to the row before it (the same bases and length: a padding copy) is no token of
// a run: the block of the row it copies writes the same partials for it, so padding reads no key again.
#define RUN_KEYS 64
__device__ __forceinline__ bool run_continues(const u64* kBase, const int* lengths, int r)
{
    return r > 0 && kBase[r] == kBase[r - 1] && lengths[r] == lengths[r - 1] + 1 && !run_copy(kBase, lengths, r - 1);
}
template <int G>
__device__ __forceinline__ void attn_runs(const u64* __restrict__ kBase, const u64* __restrict__ vBase,
    const int* __restrict__ lengths, long long headStride, const float* __restrict__ q, int rows, int qHeads, int chunk,
    int nChunks, float scaleLog2, float* __restrict__ pm, float* __restrict__ pl, float* __restrict__ po)
{
    constexpr int TOKENS = 64 / G;
    __shared__ int sh_n, sh_copies;
    const int c = blockIdx.x, kvh = blockIdx.y, r = blockIdx.z;
    if (threadIdx.x == 0)
    {
        int start = r, n = 0, copies = 0;
        while (run_continues(kBase, lengths, start)) start--;
        if (!run_copy(kBase, lengths, r) && (r - start) % TOKENS == 0)
        {
            for (n = 1; n < TOKENS && r + n < rows && run_continues(kBase, lengths, r + n); n++) {}
            while (r + n + copies < rows && run_copy(kBase, lengths, r + n + copies)) copies++;
        }
        sh_n = n;
        sh_copies = copies;
    }
    __syncthreads();
    const int n = sh_n, copies = sh_copies;
    if (n == 0) return;

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int first = lengths[r] - 1;                  // position of the block's first token
    const int c0 = c * chunk, c1 = min(c0 + chunk, first + n); // keys of this chunk any of its rows sees
    // query row m of the block: token m / G of the run, query head kvh·G + m % G
    const int ra = warp * 16 + g, rb = ra + 8, ja = ra / G, jb = rb / G;
    const int lastA = ja < n ? min(first + ja, c1 - 1) : -1, lastB = jb < n ? min(first + jb, c1 - 1) : -1;
    const int warpLast = min(first + min((warp * 16 + 15) / G, n - 1), c1 - 1);
    const bool warpRows = warp * 16 < n * G;

    u32 qf[3][HD / 16][4];
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
        for (int i = 0; i < 4; i++)
        {
            const int m = (i & 1) ? rb : ra, j = (i & 1) ? jb : ja, ch = kk * 16 + 2 * t + ((i & 2) ? 8 : 0);
            float2 v = make_float2(0.f, 0.f);
            if (j < n) v = *(const float2*)(q + ((long long)(r + j) * qHeads + kvh * G + m % G) * HD + ch);
            u32 parts[3];
            split_pair<3>(v.x, v.y, parts);
#pragma unroll
            for (int p = 0; p < 3; p++) qf[p][kk][i] = parts[p];
        }

    FlashState<HD> st;
    st.init();
    flash_tiles<HD, 3, RUN_KEYS, BLOCK>(qf, (const bf16*)kBase[r] + kvh * headStride, (const bf16*)vBase[r] + kvh * headStride,
        c0, c1, HD, warpRows ? warpLast : -1, -1, lastA, lastB, scaleLog2, st);
    st.finish();

#pragma unroll
    for (int half = 0; half < 2; half++)
    {
        const int m = half ? rb : ra, j = half ? jb : ja;
        if (j >= n) continue;
        const float mx = half ? st.mb : st.ma, l = half ? st.lb : st.la;
        // the row of token j, and the copies that follow the last token
        for (int k = 0; k <= (j == n - 1 ? copies : 0); k++)
        {
            const long long slot = ((long long)(r + j + k) * qHeads + kvh * G + m % G) * nChunks + c;
#pragma unroll
            for (int nn = 0; nn < HD / 8; nn++)
                *(float2*)(po + slot * HD + nn * 8 + 2 * t) = half ? make_float2(st.o[nn][2], st.o[nn][3]) : make_float2(st.o[nn][0], st.o[nn][1]);
            if (t == 0)
            {
                pm[slot] = mx == NEG_INF ? NEG_INF : mx * scaleLog2;
                pl[slot] = l;
            }
        }
    }
}

#define RUNS_ARGS const u64* kBase, const u64* vBase, const int* lengths, long long headStride, const float* q, int rows, \
    int qHeads, int chunk, int nChunks, float scaleLog2, float* pm, float* pl, float* po
#define RUNS_PASS kBase, vBase, lengths, headStride, q, rows, qHeads, chunk, nChunks, scaleLog2, pm, pl, po
extern "C" __global__ void __launch_bounds__(BLOCK) attn_runs_g4(RUNS_ARGS) { step_prologue(); attn_runs<4>(RUNS_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) attn_runs_g8(RUNS_ARGS) { step_prologue(); attn_runs<8>(RUNS_PASS); }

// ------------------------------------------------------------------------------------------------ scoring
// The tuned scorers for heads of 128 in groups of 4 or 8 (a half-warp per key row, the group's queries in
// registers). selection.cu's scores kernel takes any shape; the device plans use these for the tuned shape and that
// one otherwise, and gpu-step checks the two agree to f32 rounding. Kept while the tuned ones measure faster.
// Scores q·k/sqrt(d) of rows (keys, or pages when BOUND: Σ_e max(q_e·min_e, q_e·max_e)/sqrt(d) from the page's
// per-channel min/max rows). Rows: dense [0, ceil(length / rowDiv)) or the entries of an index list.
// MAXG: one row of output per index head (the max over the G query heads of the group); else one per query head.
// out[(batch·outHeads + head)·outStride + j], -inf for skipped entries. Lists are idxCount entries apart; with
// idxMeta (the selection plans' lists: a (count, stamp) pair per list) list l holds idxMeta[2l] entries, else
// idxCount. With mask, only output rows r with (mask[r] != 0) == (maskKind == 1) are written (maskKind 0: all), and
// a block none of whose rows is admitted returns at once (LFPS's refresh scores only the heads that refresh).
// RANGE: list l's rows are rangeStart[l] + j for j < rangeLength[l] (PrHS's retrieval domains), out entry j.
template <int G, bool INDEXED, bool MAXG, bool BOUND, int U, bool RANGE = false>
__device__ __forceinline__ void score_rows(
    const u64* __restrict__ aBase, const u64* __restrict__ bBase, const int* __restrict__ lengths, int rowDiv,
    long long headStride, const float* __restrict__ q, const int* __restrict__ idx, int idxCount, int idxHeads,
    int qHeads, int group, int chunk, float scale, float* __restrict__ out, int outStride,
    const int* __restrict__ idxMeta, const int* __restrict__ mask, int maskKind, const int* __restrict__ rangeStart,
    const int* __restrict__ rangeLength)
{
    const int b = blockIdx.z, y = blockIdx.y, c = blockIdx.x;
    const int qh0 = G == 1 ? y : y * G;
    const int kvh = G == 1 ? y / group : y;
    const int outHeads = MAXG ? idxHeads : qHeads;
    constexpr int OUTS = MAXG ? 1 : G;
    bool on[OUTS];
    bool any = false;
#pragma unroll
    for (int g = 0; g < OUTS; g++)
    {
        const int r = b * outHeads + (MAXG ? y : qh0 + g);
        on[g] = !mask || maskKind == 0 || ((maskKind == 1) == (mask[r] != 0));
        any |= on[g];
    }
    if (!any) return;
    const int len = (lengths[b] + rowDiv - 1) / rowDiv;
    const int list = b * idxHeads + y;
    const int n = RANGE ? rangeLength[list] : INDEXED ? (idxMeta ? min(idxMeta[2LL * list], idxCount) : idxCount) : len;
    const int first = RANGE ? rangeStart[list] : 0;
    const int c0 = c * chunk, c1 = min(c0 + chunk, n);
    if (c0 >= c1) return;
    const int tid = threadIdx.x, warp = tid >> 5, half = (tid >> 4) & 1, l16 = tid & 15;
    const bf16* A = (const bf16*)aBase[b] + kvh * headStride + l16 * 8;
    const bf16* B = BOUND ? (const bf16*)bBase[b] + kvh * headStride + l16 * 8 : 0;
    const int* I = INDEXED ? idx + ((long long)b * idxHeads + y) * idxCount : 0;

    float qr[G][8];
#pragma unroll
    for (int g = 0; g < G; g++)
    {
        const float* qp = q + ((long long)b * qHeads + qh0 + g) * HD + l16 * 8;
        float4 a = *(const float4*)qp, bb = *(const float4*)(qp + 4);
        qr[g][0] = a.x * scale; qr[g][1] = a.y * scale; qr[g][2] = a.z * scale; qr[g][3] = a.w * scale;
        qr[g][4] = bb.x * scale; qr[g][5] = bb.y * scale; qr[g][6] = bb.z * scale; qr[g][7] = bb.w * scale;
    }
    const int step = (BLOCK / 32) * 2 * U;
    for (int j0 = c0 + warp * 2 * U; j0 < c1; j0 += step)
    {
        uint4 ar[U], br[U];
        bool ok[U];
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            int j = j0 + 2 * u + half, pos = -1;
            if (j < c1) pos = INDEXED ? I[j] : first + j;
            ok[u] = pos >= 0 && pos < len;
            ar[u] = ok[u] ? __ldg((const uint4*)(A + (long long)pos * HD)) : make_uint4(0, 0, 0, 0);
            if (BOUND) br[u] = ok[u] ? __ldg((const uint4*)(B + (long long)pos * HD)) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < U; u++)
        {
            float af[8], bf[8];
            unpack8(ar[u], af);
            if (BOUND) unpack8(br[u], bf);
            float best = NEG_INF;
            float sg[G];
#pragma unroll
            for (int g = 0; g < G; g++)
            {
                float d = 0.f;
#pragma unroll
                for (int e = 0; e < 8; e++)
                    d += BOUND ? fmaxf(qr[g][e] * af[e], qr[g][e] * bf[e]) : qr[g][e] * af[e];
                sg[g] = half_sum(d);
                best = fmaxf(best, sg[g]);
            }
            int j = j0 + 2 * u + half;
            if (l16 == 0 && j < c1)
            {
                if (MAXG) { if (on[0]) out[((long long)b * outHeads + y) * outStride + j] = ok[u] ? best : NEG_INF; }
                else
                {
#pragma unroll
                    for (int g = 0; g < G; g++)
                        if (on[g % OUTS]) out[((long long)b * outHeads + qh0 + g) * outStride + j] = ok[u] ? sg[g] : NEG_INF;
                }
            }
        }
    }
}

#define SCORE_ARGS const u64* aBase, const u64* bBase, const int* lengths, int rowDiv, long long headStride, \
    const float* q, const int* idx, int idxCount, int idxHeads, int qHeads, int group, int chunk, float scale, \
    float* out, int outStride, const int* idxMeta, const int* mask, int maskKind, const int* rangeStart, const int* rangeLength
#define SCORE_PASS aBase, bBase, lengths, rowDiv, headStride, q, idx, idxCount, idxHeads, qHeads, group, chunk, scale, \
    out, outStride, idxMeta, mask, maskKind, rangeStart, rangeLength

// All keys; per KV head, max over its query heads (selection per KV head) / per query head.
extern "C" __global__ void __launch_bounds__(BLOCK) score_all_max(SCORE_ARGS) { step_prologue(); score_rows<4, false, true, false, 8>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_all_each(SCORE_ARGS) { step_prologue(); score_rows<4, false, false, false, 8>(SCORE_PASS); }
// Keys of per-KV-head index lists (LFPS candidates, a kept set).
extern "C" __global__ void __launch_bounds__(BLOCK) score_idx_max(SCORE_ARGS) { step_prologue(); score_rows<4, true, true, false, 8>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_idx_each(SCORE_ARGS) { step_prologue(); score_rows<4, true, false, false, 8>(SCORE_PASS); }
// Keys of per-query-head index lists: grid (chunks, qHeads, batch).
extern "C" __global__ void __launch_bounds__(BLOCK) score_idx_g1(SCORE_ARGS) { step_prologue(); score_rows<1, true, false, false, 8>(SCORE_PASS); }
// Keys of per-head ranges: per query head (grid (chunks, qHeads, batch)) / per KV head, max over its group.
extern "C" __global__ void __launch_bounds__(BLOCK) score_range_g1(SCORE_ARGS) { step_prologue(); score_rows<1, false, false, false, 8, true>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_range_max(SCORE_ARGS) { step_prologue(); score_rows<4, false, true, false, 8, true>(SCORE_PASS); }
// Quest page upper bounds from per-page min/max rows (aBase = min, bBase = max, rowDiv = page size).
extern "C" __global__ void __launch_bounds__(BLOCK) page_bounds_max(SCORE_ARGS) { step_prologue(); score_rows<4, false, true, true, 4>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) page_bounds_each(SCORE_ARGS) { step_prologue(); score_rows<4, false, false, true, 4>(SCORE_PASS); }

// Groups of 8 query heads per KV head.
extern "C" __global__ void __launch_bounds__(BLOCK) score_all_max_g8(SCORE_ARGS) { step_prologue(); score_rows<8, false, true, false, 8>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_all_each_g8(SCORE_ARGS) { step_prologue(); score_rows<8, false, false, false, 8>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_range_max_g8(SCORE_ARGS) { step_prologue(); score_rows<8, false, true, false, 8, true>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_idx_max_g8(SCORE_ARGS) { step_prologue(); score_rows<8, true, true, false, 8>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) score_idx_each_g8(SCORE_ARGS) { step_prologue(); score_rows<8, true, false, false, 8>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) page_bounds_max_g8(SCORE_ARGS) { step_prologue(); score_rows<8, false, true, true, 4>(SCORE_PASS); }
extern "C" __global__ void __launch_bounds__(BLOCK) page_bounds_each_g8(SCORE_ARGS) { step_prologue(); score_rows<8, false, false, true, 4>(SCORE_PASS); }

// Per-page, per-channel min and max of the keys, every page rebuilt from the keys (model_step.cu's page_update is
// the per-step incremental form): grid (pageChunks, kvHeads, batch), 128 threads (one channel).
// Keys are bf16, so the min/max are exact bf16 values and the bounds built on them are true bounds.
extern "C" __global__ void __launch_bounds__(BLOCK) page_minmax(
    const u64* __restrict__ kBase, const u64* __restrict__ minBase, const u64* __restrict__ maxBase,
    const int* __restrict__ lengths, long long headStride, long long pageHeadStride, int pageSize, int pagesPerBlock)
{
    step_prologue();
    const int b = blockIdx.z, h = blockIdx.y, t = threadIdx.x;
    const int len = lengths[b], pages = (len + pageSize - 1) / pageSize;
    const bf16* K = (const bf16*)kBase[b] + h * headStride + t;
    bf16* mn = (bf16*)minBase[b] + h * pageHeadStride + t;
    bf16* mx = (bf16*)maxBase[b] + h * pageHeadStride + t;
    for (int p = (int)blockIdx.x * pagesPerBlock; p < min(pages, ((int)blockIdx.x + 1) * pagesPerBlock); p++)
    {
        int r0 = p * pageSize, r1 = min(r0 + pageSize, len);
        bf16 lo = K[(long long)r0 * HD], hi = lo;
        float flo = __uint_as_float((u32)lo << 16), fhi = flo;
        for (int r = r0 + 1; r < r1; r++)
        {
            bf16 v = K[(long long)r * HD];
            float f = __uint_as_float((u32)v << 16);
            if (f < flo) { flo = f; lo = v; }
            if (f > fhi) { fhi = f; hi = v; }
        }
        mn[(long long)p * HD] = lo;
        mx[(long long)p * HD] = hi;
    }
}

// ------------------------------------------------------------------------------------------------ top-k
// Exact top-k of each row of f32 scores by radix select on order-preserving 32-bit keys: three histogram passes
// (digits of 11, 11 and 10 bits, each pass counting only the keys whose higher digits match the bins chosen so
// far) fix the k-th largest key T and how many keys equal to T to take; a count pass and an ordered write pass
// then emit the chosen positions ascending (ties: the lowest positions), so the result is deterministic.
// Rows are [rows][rowStride] (rowStride a multiple of 4); a row's length is rowLens[row] or rowLen. cand maps
// entry j to a position (cand[row·candStride + j]); -inf scores give -1. With expand > 1 each chosen position p
// stands for positions p·expand .. p·expand + expand - 1 (pages to tokens), those at or beyond limits[row]
// written as -1. out is [rows][outStride], k·expand entries per row, padded with -1 when a row has fewer than k
// (and up to padTo). k is per row where ks is given (ks[row] < 0: the row is left as it is), and counts[2·row]
// receives how many entries were chosen.
#define TK_THREADS 256
#define TK_ITEMS 16
#define TK_TILE (TK_THREADS * TK_ITEMS)
#define TK_BINS 2048

__device__ __forceinline__ u32 fkey(float f)
{
    u32 u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// From the top bin down, the bin holding the kRem-th largest key; res[0] = bin, res[1] = how many keys of that
// bin are still to take. Requires kRem <= the histogram's total (the caller guarantees it).
__device__ __forceinline__ void find_bin(const u32* __restrict__ h, int nb, u32 kRem, u32* sh, u32* res)
{
    const int t = threadIdx.x;
    u32 c[8], s = 0;
#pragma unroll
    for (int i = 0; i < 8; i++)
    {
        int bin = nb - 1 - (t * 8 + i);
        c[i] = bin >= 0 ? h[bin] : 0u;
        s += c[i];
    }
    u32 total;
    u32 excl = block_excl_scan(s, sh, &total);
    if (excl < kRem && kRem <= excl + s)
    {
        u32 a = excl;
#pragma unroll
        for (int i = 0; i < 8; i++)
        {
            if (a + c[i] >= kRem)
            {
                res[0] = (u32)(nb - 1 - (t * 8 + i));
                res[1] = kRem - a;
                break;
            }
            a += c[i];
        }
    }
    __syncthreads();
}

__device__ __forceinline__ void load_keys(const float* __restrict__ row, int n, int base, u32* k, bool* valid)
{
    if (base + TK_ITEMS <= n)
    {
#pragma unroll
        for (int i = 0; i < TK_ITEMS; i += 4)
        {
            float4 f = *(const float4*)(row + base + i);
            k[i] = fkey(f.x); k[i + 1] = fkey(f.y); k[i + 2] = fkey(f.z); k[i + 3] = fkey(f.w);
            valid[i] = valid[i + 1] = valid[i + 2] = valid[i + 3] = true;
        }
    }
    else
    {
#pragma unroll
        for (int i = 0; i < TK_ITEMS; i++)
        {
            valid[i] = base + i < n;
            k[i] = valid[i] ? fkey(row[base + i]) : 0u;
        }
    }
}

// Entries [filled, end) of an output row become -1 (padding); counts[0] (when given) gets how many were chosen.
__device__ __forceinline__ void pad_row(int* O, int filled, int end, int* count, int threads)
{
    for (int s = filled + (int)threadIdx.x; s < end; s += threads) O[s] = -1;
    if (count && threadIdx.x == 0) count[0] = filled;
}

extern "C" __global__ void __launch_bounds__(TK_THREADS) topk_hist(
    const float* __restrict__ scores, int rowStride, const int* __restrict__ rowLens, int rowLen, int kAll,
    const int* __restrict__ ks, u32* __restrict__ hist, int pass)
{
    step_prologue();
    __shared__ u32 sh_hist[TK_BINS];
    __shared__ u32 sh_scan[32];
    __shared__ u32 sh_res[2];
    const int row = blockIdx.y, t = threadIdx.x;
    const int n = rowLens ? rowLens[row] : rowLen, k = ks ? ks[row] : kAll;
    const int tileStart = blockIdx.x * TK_TILE;
    if (k <= 0 || n <= k || tileStart >= n) return;
    u32* H = hist + (long long)row * 3 * TK_BINS;
    u32 prefix = 0, kRem = (u32)k;
    if (pass >= 1)
    {
        find_bin(H, TK_BINS, kRem, sh_scan, sh_res);
        prefix = sh_res[0] << 21; kRem = sh_res[1];
        __syncthreads();
    }
    if (pass >= 2)
    {
        find_bin(H + TK_BINS, TK_BINS, kRem, sh_scan, sh_res);
        prefix |= sh_res[0] << 10;
    }
    for (int i = t; i < TK_BINS; i += TK_THREADS) sh_hist[i] = 0;
    __syncthreads();
    const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
    const u32 mask = pass == 2 ? 1023u : 2047u;
    const int matchShift = pass == 1 ? 21 : 10;
    u32 keys[TK_ITEMS];
    bool valid[TK_ITEMS];
    load_keys(scores + (long long)row * rowStride, n, tileStart + t * TK_ITEMS, keys, valid);
#pragma unroll
    for (int i = 0; i < TK_ITEMS; i++)
    {
        bool match = valid[i] && (pass == 0 || (keys[i] >> matchShift) == (prefix >> matchShift));
        if (match) atomicAdd(&sh_hist[(keys[i] >> shift) & mask], 1u);
    }
    __syncthreads();
    for (int i = t; i < TK_BINS; i += TK_THREADS)
    {
        u32 c = sh_hist[i];
        if (c) atomicAdd(&H[pass * TK_BINS + i], c);
    }
}

// Threshold key T and ties to take, from the three histograms (all of a row when it has at most k entries).
__device__ __forceinline__ void threshold(const u32* __restrict__ H, int n, int k, u32* sh_scan, u32* sh_res, u32* T, u32* kEq)
{
    if (n <= k) { *T = 0u; *kEq = 0u; return; }
    find_bin(H, TK_BINS, (u32)k, sh_scan, sh_res);
    u32 p = sh_res[0] << 21, r = sh_res[1];
    __syncthreads();
    find_bin(H + TK_BINS, TK_BINS, r, sh_scan, sh_res);
    p |= sh_res[0] << 10; r = sh_res[1];
    __syncthreads();
    find_bin(H + 2 * TK_BINS, 1024, r, sh_scan, sh_res);
    *T = p | sh_res[0]; *kEq = sh_res[1];
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(TK_THREADS) topk_count(
    const float* __restrict__ scores, int rowStride, const int* __restrict__ rowLens, int rowLen, int kAll,
    const int* __restrict__ ks, const u32* __restrict__ hist, u32* __restrict__ blockCnt, int maxBlocks)
{
    step_prologue();
    __shared__ u32 sh_scan[32];
    __shared__ u32 sh_res[2];
    const int row = blockIdx.y, t = threadIdx.x;
    const int n = rowLens ? rowLens[row] : rowLen, k = ks ? ks[row] : kAll;
    const int tileStart = blockIdx.x * TK_TILE;
    if (k <= 0 || tileStart >= n) return;
    u32 T, kEq;
    threshold(hist + (long long)row * 3 * TK_BINS, n, k, sh_scan, sh_res, &T, &kEq);
    u32 keys[TK_ITEMS];
    bool valid[TK_ITEMS];
    load_keys(scores + (long long)row * rowStride, n, tileStart + t * TK_ITEMS, keys, valid);
    u32 gt = 0, eq = 0;
#pragma unroll
    for (int i = 0; i < TK_ITEMS; i++)
    {
        gt += valid[i] && keys[i] > T;
        eq += valid[i] && keys[i] == T;
    }
    u32 totalGt, totalEq;
    block_excl_scan(gt, sh_scan, &totalGt);
    block_excl_scan(eq, sh_scan, &totalEq);
    if (t == 0)
    {
        blockCnt[((long long)row * maxBlocks + blockIdx.x) * 2] = totalGt;
        blockCnt[((long long)row * maxBlocks + blockIdx.x) * 2 + 1] = totalEq;
    }
}

extern "C" __global__ void __launch_bounds__(TK_THREADS) topk_write(
    const float* __restrict__ scores, int rowStride, const int* __restrict__ rowLens, int rowLen, int kAll,
    const int* __restrict__ ks, const u32* __restrict__ hist, const u32* __restrict__ blockCnt, int maxBlocks,
    const int* __restrict__ cand, int candStride, int* __restrict__ out, int outStride, int expand,
    const int* __restrict__ limits, int* __restrict__ counts, int padTo)
{
    step_prologue();
    __shared__ u32 sh_scan[32];
    __shared__ u32 sh_res[2];
    const int row = blockIdx.y, t = threadIdx.x;
    const int n = rowLens ? rowLens[row] : rowLen, k = ks ? ks[row] : kAll;
    if (k < 0) return;
    int* O = out + (long long)row * outStride;
    const int limit = limits ? limits[row] : 0x7fffffff;
    if (blockIdx.x == 0) pad_row(O, min(n, k) * expand, max(k * expand, padTo), counts ? counts + 2LL * row : 0, TK_THREADS);
    const int tileStart = blockIdx.x * TK_TILE;
    if (k == 0 || tileStart >= n) return;
    u32 T, kEq;
    threshold(hist + (long long)row * 3 * TK_BINS, n, k, sh_scan, sh_res, &T, &kEq);

    // counts of the blocks before this one
    u32 gtB = 0, eqB = 0;
    for (int i = t; i < (int)blockIdx.x; i += TK_THREADS)
    {
        gtB += blockCnt[((long long)row * maxBlocks + i) * 2];
        eqB += blockCnt[((long long)row * maxBlocks + i) * 2 + 1];
    }
    u32 gtBefore, eqBefore;
    block_excl_scan(gtB, sh_scan, &gtBefore);
    block_excl_scan(eqB, sh_scan, &eqBefore);

    u32 keys[TK_ITEMS];
    bool valid[TK_ITEMS];
    const float* R = scores + (long long)row * rowStride;
    const int base = tileStart + t * TK_ITEMS;
    load_keys(R, n, base, keys, valid);
    u32 gt = 0, eq = 0;
#pragma unroll
    for (int i = 0; i < TK_ITEMS; i++)
    {
        gt += valid[i] && keys[i] > T;
        eq += valid[i] && keys[i] == T;
    }
    u32 tot;
    u32 gtRun = gtBefore + block_excl_scan(gt, sh_scan, &tot);
    u32 eqRun = eqBefore + block_excl_scan(eq, sh_scan, &tot);
    const u32 negInfKey = fkey(NEG_INF);
#pragma unroll
    for (int i = 0; i < TK_ITEMS; i++)
    {
        if (!valid[i]) continue;
        bool isGt = keys[i] > T, isEq = keys[i] == T;
        bool take = isGt || (isEq && eqRun < kEq);
        if (take)
        {
            u32 slot = gtRun + min(eqRun, kEq);
            int j = base + i;
            int pos = keys[i] == negInfKey ? -1 : (cand ? cand[(long long)row * candStride + j] : j);
            for (int r = 0; r < expand; r++)
            {
                long long p = (long long)pos * expand + r;
                O[(long long)slot * expand + r] = pos < 0 || p >= limit ? -1 : (int)p;
            }
        }
        gtRun += isGt;
        eqRun += isEq;
    }
}

// Exact top-k with one block per row and one launch: the same three histogram passes and ordered write as above.
// For short rows (LFPS candidates, Quest pages) the five launches of the multi-block path cost more than the work,
// and within the block the cost is waiting, not arithmetic: a row of up to `stage` entries is read from global
// memory once, by every thread, into shared memory as keys, and the passes run there, all threads striding over the
// row (entry order does not matter to a histogram); a longer row is re-read (from L1/L2) each pass in tiles of
// TK_ITEMS entries per thread. The write pass gives each thread TK_ITEMS consecutive entries so the block scan keeps
// them in order.
#define TR_THREADS 512
#define TR_TILE (TR_THREADS * TK_ITEMS)
// A row is staged in the launch's dynamic shared memory when it holds at most `stage` entries (the host sizes it to
// the longest row, up to DecodeKernels.TopKStageEntries: ~96 KB, two blocks per multiprocessor; LFPS's candidate
// rows reach 9–14K entries at 32K–128K, which the 48 KB of static shared memory this kernel had could not hold).
// Entry j of a staged row sits at j + j/32: the write pass's threads read TK_ITEMS consecutive entries each, and
// without the padding word per 32 the lanes of a warp would hit 2 of the 32 banks.
extern __shared__ u32 dyn_keys[];
__device__ __forceinline__ int staged_at(int j) { return j + (j >> 5); }

__device__ __forceinline__ void load_staged(const u32* __restrict__ sh_keys, int n, int base, u32* k, bool* valid)
{
#pragma unroll
    for (int i = 0; i < TK_ITEMS; i++)
    {
        valid[i] = base + i < n;
        k[i] = valid[i] ? sh_keys[staged_at(base + i)] : 0u;
    }
}

// Thread-block clusters (sm_90): the blocks of a cluster share their shared memory, so a row's top-k can run on
// several multiprocessors in one launch. Rank of this block in its cluster; a barrier over the cluster (release /
// acquire: shared-memory writes before it are seen by every block after it); a 32-bit load from a peer's shared
// memory at the address a local pointer has in its own.
// (Before sm_90 they are never reached: the cluster kernels are compiled for sm_90 and later only.)
__device__ __forceinline__ int cluster_rank()
{
    u32 r = 0u;
#if __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return (int)r;
}
__device__ __forceinline__ void cluster_sync()
{
#if __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ u32 load_peer(const u32* p, int rank)
{
    u32 v = 0u;
#if __CUDA_ARCH__ >= 900
    const u32 local = (u32)__cvta_generic_to_shared(p);
    u32 remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
    asm volatile("ld.shared::cluster.u32 %0, [%1];" : "=r"(v) : "r"(remote) : "memory");
#endif
    return v;
}

// Shared memory of a row's selection: the histogram of this block's entries, the cluster's summed histogram (CL > 1),
// scan scratch, find_bin's result, this block's counts above / at the threshold (read by the later ranks), and the
// per-warp maxima of LFPS's trigger.
template <int CL> struct SelectShared
{
    u32 hist[TK_BINS];
    u32 total[CL > 1 ? TK_BINS : 1];
    u32 scan[32];
    u32 res[2];
    u32 counts[2];
    float maxes[32];
};

// The top-k of row R (n entries) into O, as topk_rows documents; every thread of the block calls it, with k >= 0.
// With CL > 1 the row is split over the CL blocks of a cluster: each takes a slice (boundaries on multiples of 4
// entries, so the 16-byte loads stay aligned), the histograms of every pass are summed over the cluster through
// distributed shared memory (so every block finds the same threshold), and each block writes its slice's chosen
// entries after the counts of the blocks before it, which keeps the output ascending. Every exit before the end is
// taken by every block of the row alike (n and k are the row's).
template <int CL>
__device__ void select_row(const float* __restrict__ R, int n, int k, const int* __restrict__ C, int* __restrict__ O,
    int expand, int limit, int* count, int padTo, int stage, u32* sh_keys, SelectShared<CL>& sh)
{
    const int t = threadIdx.x, rank = CL > 1 ? cluster_rank() : 0;
    const int lo = CL > 1 ? (int)(((long long)n * rank / CL) & ~3LL) : 0;
    const int hi = CL > 1 && rank < CL - 1 ? (int)(((long long)n * (rank + 1) / CL) & ~3LL) : n;
    const int m = hi - lo;
    const float* S = R + lo;
    if (rank == 0) pad_row(O, min(n, k) * expand, max(k * expand, padTo), count, TR_THREADS);
    if (k == 0) return;
    const bool staged = m <= stage;
    if (staged)
    {
        for (int j = t; j < m; j += TR_THREADS) sh_keys[staged_at(j)] = fkey(S[j]);
        __syncthreads();
    }
    u32 keys[TK_ITEMS];
    bool valid[TK_ITEMS];
    u32 T = 0u, kEq = 0u;
    if (n > k)
    {
        u32 prefix = 0u, kRem = (u32)k;
        const u32* hist = CL > 1 ? sh.total : sh.hist;
        for (int pass = 0; pass < 3; pass++)
        {
            for (int i = t; i < TK_BINS; i += TR_THREADS) sh.hist[i] = 0u;
            __syncthreads();
            const int shift = pass == 0 ? 21 : pass == 1 ? 10 : 0;
            const u32 mask = pass == 2 ? 1023u : 2047u;
            const int matchShift = pass == 1 ? 21 : 10;
            if (staged)
                for (int j = t; j < m; j += TR_THREADS)
                {
                    const u32 key = sh_keys[staged_at(j)];
                    if (pass == 0 || (key >> matchShift) == (prefix >> matchShift)) atomicAdd(&sh.hist[(key >> shift) & mask], 1u);
                }
            else
                for (int tile = 0; tile < m; tile += TR_TILE)
                {
                    load_keys(S, m, tile + t * TK_ITEMS, keys, valid);   // TK_ITEMS loads in flight per thread
#pragma unroll
                    for (int i = 0; i < TK_ITEMS; i++)
                        if (valid[i] && (pass == 0 || (keys[i] >> matchShift) == (prefix >> matchShift)))
                            atomicAdd(&sh.hist[(keys[i] >> shift) & mask], 1u);
                }
            if (CL > 1)
            {
                cluster_sync();   // every block's histogram is complete
                for (int i = t; i < TK_BINS; i += TR_THREADS)
                {
                    u32 sum = 0u;
#pragma unroll
                    for (int r = 0; r < CL; r++) sum += load_peer(&sh.hist[i], r);
                    sh.total[i] = sum;
                }
            }
            __syncthreads();
            find_bin(hist, pass == 2 ? 1024 : TK_BINS, kRem, sh.scan, sh.res);
            const u32 bin = sh.res[0];
            prefix |= bin << shift;
            kRem = sh.res[1];
            // Every entry of the threshold bin is taken: the k largest are exactly the entries at or above the bin's
            // first key, so the later passes are skipped (T just below it, no ties to count). Usual after the second
            // pass, where 22 leading bits tell most scores apart. (Uniform: every thread reads the same words.)
            const bool whole = pass < 2 && hist[bin] == kRem && prefix != 0u;
            if (CL > 1) cluster_sync();   // no block clears its histogram while a peer still sums it
            else __syncthreads();
            if (whole) { kRem = 0u; prefix -= 1u; break; }
        }
        T = prefix;
        kEq = kRem;
    }
    u32 gtBase = 0u, eqBase = 0u;
    if (CL > 1)
    {
        // this block's entries above and at the threshold, then the sums of the blocks before it
        u32 gt = 0, eq = 0;
        for (int tile = 0; tile < m; tile += TR_TILE)
        {
            const int base = tile + t * TK_ITEMS;
            if (staged) load_staged(sh_keys, m, base, keys, valid);
            else load_keys(S, m, base, keys, valid);
#pragma unroll
            for (int i = 0; i < TK_ITEMS; i++)
            {
                gt += base + i < m && keys[i] > T;
                eq += base + i < m && keys[i] == T;
            }
        }
        u32 totGt, totEq;
        block_excl_scan(gt, sh.scan, &totGt);
        block_excl_scan(eq, sh.scan, &totEq);
        if (t == 0) { sh.counts[0] = totGt; sh.counts[1] = totEq; }
        cluster_sync();
        if (t < 32)
        {
            u32 g = 0u, e = 0u;
            for (int r = 0; r < rank; r++) { g += load_peer(&sh.counts[0], r); e += load_peer(&sh.counts[1], r); }
            if (t == 0) { sh.res[0] = g; sh.res[1] = e; }
        }
        cluster_sync();   // also: no block leaves while a peer may still read its counts
        gtBase = sh.res[0];
        eqBase = sh.res[1];
    }
    const u32 negInfKey = fkey(NEG_INF);
    for (int tile = 0; tile < m; tile += TR_TILE)
    {
        const int base = tile + t * TK_ITEMS;
        if (staged) load_staged(sh_keys, m, base, keys, valid);
        else load_keys(S, m, base, keys, valid);
        u32 gt = 0, eq = 0;
#pragma unroll
        for (int i = 0; i < TK_ITEMS; i++)
        {
            const bool in = base + i < m;   // not kept in an array: registers are the limit here
            gt += in && keys[i] > T;
            eq += in && keys[i] == T;
        }
        u32 totGt, totEq;
        u32 gtRun = gtBase + block_excl_scan(gt, sh.scan, &totGt);
        u32 eqRun = eqBase + block_excl_scan(eq, sh.scan, &totEq);
#pragma unroll
        for (int i = 0; i < TK_ITEMS; i++)
        {
            if (base + i >= m) continue;
            bool isGt = keys[i] > T, isEq = keys[i] == T;
            if (isGt || (isEq && eqRun < kEq))
            {
                u32 slot = gtRun + min(eqRun, kEq);
                int j = lo + base + i;
                int pos = keys[i] == negInfKey ? -1 : (C ? C[j] : j);
                for (int r = 0; r < expand; r++)
                {
                    long long p = (long long)pos * expand + r;
                    O[(long long)slot * expand + r] = pos < 0 || p >= limit ? -1 : (int)p;
                }
            }
            gtRun += isGt;
            eqRun += isEq;
        }
        gtBase += totGt;
        eqBase += totEq;
    }
}

#define TOPK_ROWS_ARGS const float* __restrict__ scores, int rowStride, const int* __restrict__ rowLens, int rowLen, \
    int kAll, const int* __restrict__ ks, const int* __restrict__ cand, int candStride, int* __restrict__ out, int outStride, \
    int expand, const int* __restrict__ limits, int* __restrict__ counts, int padTo, int stage, \
    const int* __restrict__ szLengths, int szHeads, int szMode, int szTokens, double szFraction, \
    const int* __restrict__ szCandMeta, const int* szMask, int szMaskKind, int* trigFlags, \
    const float* __restrict__ trigRef, int trigRefStride, float trigDrop
#define TOPK_ROWS_PASS scores, rowStride, rowLens, rowLen, kAll, ks, cand, candStride, out, outStride, expand, limits, \
    counts, padTo, stage, szLengths, szHeads, szMode, szTokens, szFraction, szCandMeta, szMask, szMaskKind, trigFlags, \
    trigRef, trigRefStride, trigDrop

// Row blockIdx.x / CL of a per-row top-k, its sizes from rowLens/ks or, with szLengths, from a plan's sizes as
// selection.cu's sel_topk_sizes computes them (one launch fewer). With trigFlags (LFPS's trigger, ISelectionOps.
// LfpsSelect, in the same launch), a row with entries whose best score is below trigRef[row] − trigDrop gets
// trigFlags[row] = 2 (the plan masks out the rows whose flag is already set, so a selected row's flag is 0).
template <int CL>
__device__ __forceinline__ void topk_row(TOPK_ROWS_ARGS)
{
    __shared__ SelectShared<CL> sh;
    const int row = blockIdx.x / CL;
    int n = rowLens ? rowLens[row] : rowLen, k = ks ? ks[row] : kAll;
    if (szLengths)
    {
        if (szMask && szMaskKind != 0 && ((szMaskKind == 1) != (szMask[row] != 0))) return;
        const int len = szLengths[row / szHeads];
        n = szMode == 0 ? len : szCandMeta[2LL * row];
        k = resolve_budget(szTokens, szFraction, len);
    }
    if (k < 0) return;
    const float* R = scores + (long long)row * rowStride;
    select_row<CL>(R, n, k, cand ? cand + (long long)row * candStride : 0,
        out + (long long)row * outStride, expand, limits ? limits[row] : 0x7fffffff, counts ? counts + 2LL * row : 0, padTo,
        stage, dyn_keys, sh);
    if (trigFlags && trigDrop > 0.f && n > 0 && blockIdx.x % CL == 0)
    {
        float m = NEG_INF;
        for (int j = threadIdx.x; j < n; j += TR_THREADS) m = fmaxf(m, R[j]);
        m = block_max(m, sh.maxes);
        if (threadIdx.x == 0 && m < trigRef[(long long)row * trigRefStride] - trigDrop) trigFlags[row] = 2;
    }
}

// One row per block / per cluster of 4 blocks (few long rows: a batch-1 step's 32 heads fill 128 multiprocessors).
// A cluster pays its distributed-shared-memory histogram sums back only on long rows, so the host splits rows of
// every position from 16K entries and keeps LFPS's shorter candidate rows on one block (docs/performance.md).
extern "C" __global__ void __launch_bounds__(TR_THREADS, 2) topk_rows(TOPK_ROWS_ARGS) { step_prologue(); topk_row<1>(TOPK_ROWS_PASS); }
#if __CUDA_ARCH__ >= 900
extern "C" __global__ void __launch_bounds__(TR_THREADS, 2) __cluster_dims__(4, 1, 1) topk_rows_c4(TOPK_ROWS_ARGS)
{
    step_prologue();
    topk_row<4>(TOPK_ROWS_PASS);
}
#endif

// Quest's pages per (row, head), in one launch: its sizes, the last page and the top-k of the others. n = the
// sequence's length, k = the budget resolved at n, pages = ⌈n / pageSize⌉; the last page's positions fill
// out[row][0..pageSize) (-1 past n) and pages 0 .. pages − 2 compete by bound (bounds[row]) for max(1, k / pageSize)
// − 1 places (all of them when k ≥ n or that is every page), each chosen page written as its pageSize positions
// from out[row][pageSize] on, padded with -1 up to `room` entries, counts[2·row] = the chosen pages' positions.
// Grid (rows · heads), TR_THREADS threads. (Not split over a cluster as topk_rows_c4 is: rows of 2K–8K pages are too
// short for the cluster's histogram exchange to pay back.)
extern "C" __global__ void __launch_bounds__(TR_THREADS, 2) topk_pages(
    const float* __restrict__ bounds, int rowStride, const int* __restrict__ lengths, int heads, int tokens,
    double fraction, int pageSize, int* __restrict__ out, int outStride, int room, int* __restrict__ counts, int stage)
{
    step_prologue();
    __shared__ SelectShared<1> sh;
    const int row = blockIdx.x, n = lengths[row / heads], k = resolve_budget(tokens, fraction, n);
    const int pages = (n + pageSize - 1) / pageSize, chosen = max(1, k / pageSize);
    int* O = out + (long long)row * outStride;
    for (int i = threadIdx.x; i < pageSize; i += TR_THREADS)
    {
        const int pos = (pages - 1) * pageSize + i;
        O[i] = pos < n ? pos : -1;
    }
    if (room < pageSize) return;
    const int pick = min(k >= n || chosen >= pages ? pages - 1 : chosen - 1, room / pageSize);
    select_row<1>(bounds + (long long)row * rowStride, pages - 1, pick, 0, O + pageSize, pageSize, 0x7fffffff,
        counts + 2LL * row, room, stage, dyn_keys, sh);
}
