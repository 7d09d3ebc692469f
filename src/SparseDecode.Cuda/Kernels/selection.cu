// The operations of the selection plans (Selection/ISelectionOps.cs) on the device, batched over every selection
// head of every row of a decode step, for any head size (even, ≤ 256) and group. A plan buffer is
// [rows][heads][capacity]: index lists padded with -1, with a (count, stamp) pair per list in a separate meta array;
// score rows; one int flag per (row, head). Every kernel reads the rows' lengths (position + 1) from device memory,
// so one captured graph serves every step. A selection head is a query head (qPer = 1) or a KV head whose score is
// the max over its group's query heads (qPer = group).

#include "common.cuh"

#define SEL_THREADS 256
#define LFPS_THREADS 1024  // the candidate kernel has one block per (row, head): all the threads it can get
#define SEL_MAXQ 16        // query heads per selection head held in shared memory
#define SEL_MAXPAIRS 128   // channel pairs per head: head size ≤ 256
#define SEL_KEYS 4         // keys a warp of the scores kernel loads at once

// The nearest f32 at or above v (a bound stays a bound when it is stored as f32).
__device__ __forceinline__ float round_up_f32(double v)
{
    const float f = (float)v;
    return (double)f < v ? nextafterf(f, 1.0f / 0.0f) : f;
}

__device__ __forceinline__ bool admits(const int* mask, int kind, int row)
{
    return !mask || kind == 0 || ((kind == 1) == (mask[row] != 0));
}

// Decode steps begun per row (LFPS's refresh interval counts them).
extern "C" __global__ void plan_begin_step(int* __restrict__ steps, int rows)
{
    step_prologue();
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < rows) steps[r]++;
}

// The state a plan carries from step to step, moved between a step's rows and each sequence's own place in a pool:
// buffer b's row r is rowWords[b] words at rowBase[b] + r·rowWords[b]; its sequence's copy is at
// pool + slots[r]·slotWords + poolOffset[b]. toPool 0: pool → rows (before the step's first layer); 1: rows → pool
// (after its last). Grid (splits, buffers, rows): the blocks of one (buffer, row) stride over its words.
extern "C" __global__ void plan_state_copy(const u64* __restrict__ rowBase, const long long* __restrict__ rowWords,
    const long long* __restrict__ poolOffset, const int* __restrict__ slots, u32* __restrict__ pool, long long slotWords, int toPool)
{
    step_prologue();
    const int b = blockIdx.y, r = blockIdx.z;
    const long long n = rowWords[b];
    u32* rowp = (u32*)rowBase[b] + (long long)r * n;
    u32* poolp = pool + (long long)slots[r] * slotWords + poolOffset[b];
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    {
        if (toPool) poolp[i] = rowp[i];
        else rowp[i] = poolp[i];
    }
}

// Scores q·k·scale of key j (idx and rangeStart null: every j < length), of key idx[row][j] (j < the list's count;
// -1 entries give -inf) or of key rangeStart[row] + j (j < rangeLength[row]). Grid (chunks, heads, rows); a warp per key, its lanes over channel pairs; the block's head stands for
// qPer query heads from h·qPer. spread 0: out row (r·heads + h) gets the max over them (a KV head's score);
// spread 1: each query head's own row (r·heads·qPer + h·qPer + g) — per-query-head scores of every key read once
// per group. Rows the mask excludes are not written (a block whose rows are all excluded returns at once).
extern "C" __global__ void __launch_bounds__(SEL_THREADS, 4) sel_scores(const u64* __restrict__ kBases,
    const int* __restrict__ lengths, long long headStride, int hd, const float* __restrict__ q, int qHeads,
    int heads, int qPer, int group, int spread, float scale, const int* __restrict__ idx, const int* __restrict__ idxMeta,
    int idxStride, const int* __restrict__ rangeStart, const int* __restrict__ rangeLength, const int* __restrict__ mask,
    int maskKind, int chunk, float* __restrict__ out, int outStride)
{
    step_prologue();
    __shared__ float2 sq[SEL_MAXQ * SEL_MAXPAIRS];
    __shared__ int sh_on[SEL_MAXQ];
    const int h = blockIdx.y, r = blockIdx.z, row = r * heads + h;
    const int outs = spread ? qPer : 1;
    const long long row0 = spread ? ((long long)r * heads + h) * qPer : row;
    if (threadIdx.x < outs) sh_on[threadIdx.x] = admits(mask, maskKind, (int)(row0 + threadIdx.x));
    __syncthreads();
    bool any = false;
    for (int g = 0; g < outs; g++) any |= sh_on[g] != 0;
    if (!any) return;
    const int len = lengths[r], count = idx ? idxMeta[2LL * row] : rangeStart ? rangeLength[row] : len;
    const int first = rangeStart ? rangeStart[row] : 0;
    const int c0 = blockIdx.x * chunk, c1 = min(c0 + chunk, count);
    if (c0 >= c1) return;
    const int pairs = hd >> 1, qFirst = h * qPer, kvh = qFirst / group;
    for (int i = threadIdx.x; i < qPer * pairs; i += SEL_THREADS)
    {
        const float* qp = q + ((long long)r * qHeads + qFirst + i / pairs) * hd + 2 * (i % pairs);
        sq[i] = make_float2(qp[0], qp[1]);
    }
    __syncthreads();
    const u32* K = (const u32*)((const bf16*)kBases[r] + kvh * headStride);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int* I = idx ? idx + (long long)row * idxStride : 0;
    // SEL_KEYS keys per warp and turn: their loads are all in flight before the first dot product needs one
    for (int j0 = c0 + warp * SEL_KEYS; j0 < c1; j0 += (SEL_THREADS / 32) * SEL_KEYS)
    {
        float2 kk[SEL_KEYS][SEL_MAXPAIRS / 32];
        bool ok[SEL_KEYS];
#pragma unroll
        for (int x = 0; x < SEL_KEYS; x++)
        {
            const int j = j0 + x, pos = j < c1 ? (I ? I[j] : first + j) : -1;
            ok[x] = pos >= 0 && pos < len;
#pragma unroll
            for (int u = 0; u < SEL_MAXPAIRS / 32; u++)
            {
                const int e = lane + 32 * u;
                u32 w = ok[x] && e < pairs ? __ldg(K + (long long)pos * pairs + e) : 0u;
                kk[x][u] = make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
            }
        }
#pragma unroll
        for (int x = 0; x < SEL_KEYS; x++)
        {
            const int j = j0 + x;
            if (j >= c1) break;
            float best = NEG_INF;
            for (int g = 0; g < qPer; g++)
            {
                float d = 0.f;
#pragma unroll
                for (int u = 0; u < SEL_MAXPAIRS / 32; u++)
                {
                    const int e = lane + 32 * u;
                    if (e < pairs)
                    {
                        const float2 qv = sq[g * pairs + e];
                        d = fmaf(qv.x, kk[x][u].x, fmaf(qv.y, kk[x][u].y, d));
                    }
                }
                const float sc = ok[x] ? warp_sum(d) * scale : NEG_INF;
                if (spread)
                {
                    if (lane == 0 && sh_on[g]) out[(row0 + g) * outStride + j] = sc;
                }
                else best = fmaxf(best, sc);
            }
            if (!spread && lane == 0) out[row0 * outStride + j] = best;
        }
    }
}

// Quest's page bounds: per selection head, the bound Σ_e max(q_e·min_e, q_e·max_e)·scale of every page, widened for
// f32 rounding as the CPU backend widens it ((sum + 4γ·magnitude)·scale, then + |v|·γ, rounded up to f32; γ =
// (d + 2)·2⁻²³, which bounds the rounding of a d-term sum in any order). Grid (chunks, kvHeads or selection heads,
// rows). A page is read by a segment of PB_SEG(hd) lanes — the smallest power of two covering hd/8 — each lane 8
// channels (one 16-byte load of min and of max where hd is a multiple of 8), so a warp holds 32/PB_SEG pages and each
// issues PB_TURN of them before the first sum needs one. Per channel, max(q·min, q·max) is q·(q ≥ 0 ? max : min) and
// max(|q·min|, |q·max|) is |q|·max(|min|, |max|), both exactly (rounding is monotonic and symmetric), so a term costs a
// select and a multiply. Each lane adds its channels in order and the segment adds lanes by halves: the order depends
// on hd only, not on the launch shape. Lane g of a segment then widens query head g's sum (the double-precision
// epilogue runs once per page and query head, not on every lane): a warp per page with 2-byte loads and every lane
// widening every sum is issue-bound far below the memory bandwidth.
// A block stands for qPer query heads from h·qPer (their queries in shared memory) and reads each page's min/max
// rows once for all of them — spread 1: each query head's bound to its own row (r·heads·qPer + h·qPer + g), the
// per-query-head bounds of a whole group from one read of its KV head; spread 0: the max over them to row r·heads + h
// (a KV head's bound).
// With kBases given, the block whose chunk holds a row's newest page first brings that page's summary up to date
// (model_step.cu's page_update, which is then not launched on this layer): the page is the last, which only this
// block reads, so the step saves a launch per layer and no other block waits for it. Summaries are read with
// __ldcg (L2, not the non-coherent path) because this kernel writes them.
#define PB_TURN 2
__device__ __forceinline__ int pb_seg(int hd)
{
    const int lanes = (hd + 7) >> 3;
    int seg = 1;
    while (seg < lanes) seg <<= 1;
    return seg;
}

// Eight channels [e0, e0 + 8) of a bf16 row (zeros past hd), as one 16-byte load where the row allows it.
__device__ __forceinline__ uint4 pb_load8(const bf16* row, int e0, int hd, bool vec, bool ok)
{
    if (!ok) return make_uint4(0u, 0u, 0u, 0u);
    if (vec) return __ldcg((const uint4*)(row + e0));
    u32 w[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
    {
        const u32 lo = e0 + 2 * i < hd ? __ldcg(row + e0 + 2 * i) : 0u;
        const u32 hi = e0 + 2 * i + 1 < hd ? __ldcg(row + e0 + 2 * i + 1) : 0u;
        w[i] = lo | (hi << 16);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
}

extern "C" __global__ void __launch_bounds__(SEL_THREADS, 3) sel_page_bounds(const u64* __restrict__ minBases,
    const u64* __restrict__ maxBases, const int* __restrict__ lengths, long long pageHeadStride, int pageSize, int hd,
    const float* __restrict__ q, int qHeads, int heads, int qPer, int group, int spread, float scale, int chunk,
    float* __restrict__ out, int outStride, const u64* __restrict__ kBases, const int* __restrict__ positions,
    long long headStride, int kvRows)
{
    step_prologue();
    __shared__ __align__(16) float sq[SEL_MAXQ * 2 * SEL_MAXPAIRS];
    const int h = blockIdx.y, r = blockIdx.z;
    const int pages = (lengths[r] + pageSize - 1) / pageSize;
    const int c0 = blockIdx.x * chunk, c1 = min(c0 + chunk, pages);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, qFirst = h * qPer, kvh = qFirst / group;
    bf16* MN = (bf16*)minBases[r] + kvh * pageHeadStride;
    bf16* MX = (bf16*)maxBases[r] + kvh * pageHeadStride;
    if (kBases && r < kvRows)
    {
        // the block whose chunk holds the newest page (the last block, should the page lie past every chunk)
        const int pos = positions[r], page = pos / pageSize;
        const bool mine = page / chunk == blockIdx.x || (blockIdx.x == gridDim.x - 1 && page / chunk >= gridDim.x);
        if (mine && summarises_page(kBases, positions, kvRows, r, pageSize))
        {
            for (int t = threadIdx.x; t < hd; t += SEL_THREADS)
                summarise_page((const bf16*)kBases[r] + kvh * headStride, MN, MX, page, pageSize, pos, hd, t);
            __syncthreads();
        }
    }
    if (c0 >= c1) return;
    const long long row0 = spread ? ((long long)r * heads + h) * qPer : (long long)r * heads + h;
    for (int i = threadIdx.x; i < qPer * hd; i += SEL_THREADS) sq[i] = q[((long long)r * qHeads + qFirst) * hd + i];
    __syncthreads();
    const double gamma = (hd + 2) * 1.1920928955078125e-07;
    const int seg = pb_seg(hd), perWarp = 32 / seg, s = lane / seg, sl = lane % seg, e0 = 8 * sl;
    const bool vec = (hd & 7) == 0, mineLane = e0 < hd;
    const int turn = (SEL_THREADS / 32) * perWarp * PB_TURN;
    // every lane of a warp runs the same turns (the segment sums shuffle across the warp); p < c1 guards the rest
    for (int p0 = c0 + warp * perWarp * PB_TURN; p0 < c1; p0 += turn)
    {
        uint4 mnr[PB_TURN], mxr[PB_TURN];
#pragma unroll
        for (int x = 0; x < PB_TURN; x++)
        {
            const int p = p0 + x * perWarp + s;
            const bool ok = p < c1 && mineLane;
            mnr[x] = pb_load8(MN + (long long)p * hd, e0, hd, vec, ok);
            mxr[x] = pb_load8(MX + (long long)p * hd, e0, hd, vec, ok);
        }
#pragma unroll
        for (int x = 0; x < PB_TURN; x++)
        {
            const int p = p0 + x * perWarp + s;
            float mn[8], mx[8], m[8];
            unpack8(mnr[x], mn);
            unpack8(mxr[x], mx);
#pragma unroll
            for (int i = 0; i < 8; i++) m[i] = fmaxf(fabsf(mn[i]), fabsf(mx[i]));
            double best = -1.0 / 0.0;
            for (int gb = 0; gb < qPer; gb += seg)
            {
                const int gn = min(seg, qPer - gb);
                float keepSum = 0.f, keepMag = 0.f;
                for (int g = gb; g < gb + gn; g++)
                {
                    const float* qh = sq + g * hd + e0;
                    float qv[8];
                    if (vec && mineLane)
                    {
                        const float4 a = *(const float4*)qh, b = *(const float4*)(qh + 4);
                        qv[0] = a.x; qv[1] = a.y; qv[2] = a.z; qv[3] = a.w; qv[4] = b.x; qv[5] = b.y; qv[6] = b.z; qv[7] = b.w;
                    }
                    else
                    {
#pragma unroll
                        for (int i = 0; i < 8; i++) qv[i] = e0 + i < hd ? qh[i] : 0.f;
                    }
                    float sum = 0.f, mag = 0.f;
#pragma unroll
                    for (int i = 0; i < 8; i++)
                    {
                        sum += qv[i] * (qv[i] >= 0.f ? mx[i] : mn[i]);
                        mag += fabsf(qv[i]) * m[i];
                    }
                    for (int off = seg >> 1; off > 0; off >>= 1)
                    {
                        sum += __shfl_xor_sync(0xffffffffu, sum, off);
                        mag += __shfl_xor_sync(0xffffffffu, mag, off);
                    }
                    if (sl == g - gb) { keepSum = sum; keepMag = mag; }
                }
                if (sl < gn)
                {
                    const double v = ((double)keepSum + 4 * gamma * (double)keepMag) * (double)scale;
                    const double bound = v + fabs(v) * gamma;
                    if (spread) { if (p < c1) out[(row0 + gb + sl) * outStride + p] = round_up_f32(bound); }
                    else best = fmax(best, bound);
                }
            }
            if (!spread)
            {
                for (int off = seg >> 1; off > 0; off >>= 1) best = fmax(best, __shfl_xor_sync(0xffffffffu, best, off));
                if (sl == 0 && p < c1) out[row0 * outStride + p] = round_up_f32(best);
            }
        }
    }
}

// The sizes of a top-k over plan rows: rowLens[row] and ks[row] (-1 where the mask excludes the head). Mode 0:
// every position (length n); 1: the entries of a candidate list (its count). (Quest's pages size themselves inside
// decode_attention.cu's topk_pages.) Thread per (row, head).
extern "C" __global__ void sel_topk_sizes(const int* __restrict__ lengths, int heads, int rows, int mode,
    int tokens, double fraction, const int* __restrict__ candMeta, const int* __restrict__ mask, int maskKind,
    int* __restrict__ rowLens, int* __restrict__ ks)
{
    step_prologue();
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rows * heads) return;
    const int n = lengths[row / heads], k = resolve_budget(tokens, fraction, n);
    if (!admits(mask, maskKind, row)) { ks[row] = -1; rowLens[row] = 0; return; }
    rowLens[row] = mode == 0 ? n : candMeta[2LL * row];
    ks[row] = k;
}

// StreamingLLM's window per (row, head): the first min(sinks, k) positions and the newest k − min(sinks, k)
// (every position when k ≥ n); padded with -1 to the capacity. Grid (rows · heads), 128 threads.
extern "C" __global__ void sel_window(const int* __restrict__ lengths, int heads, int sinks, int tokens, double fraction,
    int* __restrict__ out, int* __restrict__ meta, int capacity)
{
    step_prologue();
    const int row = blockIdx.x, n = lengths[row / heads], k = resolve_budget(tokens, fraction, n);
    const int s = min(sinks, k), recent = k - s, count = min(k, n);
    int* O = out + (long long)row * capacity;
    for (int j = threadIdx.x; j < capacity; j += blockDim.x)
        O[j] = j >= count ? -1 : k >= n || j < s ? j : n - recent + (j - s);
    if (threadIdx.x == 0) { meta[2LL * row] = count; meta[2LL * row + 1] = n - 1; }
}

// The candidate bitmaps' dynamic shared memory (when the launch sizes it; see lfps_candidates).
extern __shared__ u32 dyn_bits[];

// Marks [lo, hi] ∩ [0, n) in a bitmap of positions.
__device__ __forceinline__ void mark_range(u32* bits, int lo, int hi, int n)
{
    lo = max(lo, 0);
    hi = min(hi, n - 1);
    for (int p = lo; p <= hi; p++) atomicOr(bits + (p >> 5), 1u << (p & 31));
}

// The set positions of bits[0..used) written ascending to out (at most capacity; the rest of out is left as it is);
// returns how many were written. Each thread compacts a contiguous run of words, in order. Every thread of the
// block (LFPS_THREADS) must call it; the bits are final before the call.
__device__ int compact_bits(const u32* bits, int used, int* out, int capacity, u32* sh_scan)
{
    const int t = threadIdx.x;
    const int per = (used + LFPS_THREADS - 1) / LFPS_THREADS, w0 = min(used, t * per), w1 = min(used, w0 + per);
    u32 mine = 0;
    for (int w = w0; w < w1; w++) mine += __popc(bits[w]);
    u32 total;
    const u32 before = block_excl_scan(mine, sh_scan, &total);
    int at = (int)before;
    for (int w = w0; w < w1; w++)
        for (u32 b = bits[w]; b; b &= b - 1)
            if (at < capacity) out[at++] = (w << 5) + __ffs(b) - 1;
    return min((int)total, capacity);
}

// LFPS's candidates per (row, head): refresh[row] = 1 where a refresh is due (no history yet, or `interval` steps
// since the last), else 0 and out[row] = the ascending union of the sinks, the recent window, and each history list
// vertically and slashed by the steps since it was written, each widened by ±radius — built in a bitmap of the
// context and compacted in order. The bitmap is the block's dynamic shared memory when the launch gives it (`words`
// words: shared atomics and no clearing traffic to memory, which a bitmap in global memory pays every layer), else
// bitmap[row]. Grid (rows · heads), LFPS_THREADS threads.
extern "C" __global__ void __launch_bounds__(LFPS_THREADS) lfps_candidates(const int* __restrict__ lengths,
    const int* __restrict__ steps, int heads, const int* __restrict__ hist, const int* __restrict__ histMeta,
    int depth, int histCap, const int* __restrict__ lastRefresh, int* __restrict__ refresh, int sinks, int recent,
    int radius, int interval, u32* __restrict__ bitmap, int words, int* __restrict__ out, int* __restrict__ meta,
    int capacity, int sharedBits)
{
    step_prologue();
    __shared__ u32 sh_scan[LFPS_THREADS / 32];
    const int row = blockIdx.x, r = row / heads, n = lengths[r], pos = n - 1, t = threadIdx.x;
    const int* HM = histMeta + (long long)row * depth * 2;
    const bool due = HM[0] == 0 || (interval > 0 && steps[r] - lastRefresh[row] >= interval);
    if (t == 0) { refresh[row] = due ? 1 : 0; meta[2LL * row + 1] = pos; }
    if (due)
    {
        if (t == 0) meta[2LL * row] = 0;
        return;
    }
    u32* bits = sharedBits ? dyn_bits : bitmap + (long long)row * words;
    const int used = (n + 31) >> 5;
    for (int w = t; w < used; w += LFPS_THREADS) bits[w] = 0u;
    __syncthreads();
    if (t == 0) { mark_range(bits, 0, min(sinks, n) - 1, n); mark_range(bits, n - recent, n - 1, n); }
    for (int a = 0; a < depth; a++)
    {
        const int count = HM[2 * a], shift = pos - HM[2 * a + 1];
        if (count == 0) break;
        const int* L = hist + ((long long)row * depth + a) * histCap;
        for (int j = t; j < count; j += LFPS_THREADS)
        {
            const int p = L[j];
            if (p < 0) continue;
            mark_range(bits, p - radius, p + radius, n);
            if (shift != 0) mark_range(bits, p + shift - radius, p + shift + radius, n);
        }
    }
    __syncthreads();
    const int total = compact_bits(bits, used, out + (long long)row * capacity, capacity, sh_scan);
    if (t == 0) meta[2LL * row] = total;
}

// LFPS's bookkeeping per (row, head): where a refresh ran, the best of every key's score, the step and the counters;
// then the history moves back one list and `selected` becomes its newest, stamped with this step's position.
// Grid (rows · heads), SEL_THREADS threads.
extern "C" __global__ void __launch_bounds__(SEL_THREADS) lfps_remember(const int* __restrict__ lengths,
    const int* __restrict__ steps, int heads, const int* __restrict__ selected, const int* __restrict__ selMeta,
    int selCap, const float* __restrict__ all, int allStride, const int* __restrict__ refresh,
    float* __restrict__ refMax, int refStride, int* __restrict__ lastRefresh, int* __restrict__ refreshes,
    int* __restrict__ triggered, int* __restrict__ hist, int* __restrict__ histMeta, int depth, int histCap)
{
    step_prologue();
    __shared__ float sh[SEL_THREADS / 32];
    const int row = blockIdx.x, r = row / heads, n = lengths[r], t = threadIdx.x;
    const int f = refresh[row];
    if (f != 0)
    {
        float m = NEG_INF;
        for (int j = t; j < n; j += SEL_THREADS) m = fmaxf(m, all[(long long)row * allStride + j]);
        m = block_max(m, sh);
        if (t == 0)
        {
            refMax[(long long)row * refStride] = m;
            lastRefresh[row] = steps[r];
            refreshes[row]++;
            if (f == 2) triggered[row]++;
        }
    }
    int* H = hist + (long long)row * depth * histCap;
    int* HM = histMeta + (long long)row * depth * 2;
    for (int a = depth - 1; a > 0; a--)
    {
        const int count = HM[2 * (a - 1)];
        for (int j = t; j < histCap; j += SEL_THREADS) H[(long long)a * histCap + j] = j < count ? H[(long long)(a - 1) * histCap + j] : -1;
        __syncthreads();
        if (t == 0) { HM[2 * a] = count; HM[2 * a + 1] = HM[2 * (a - 1) + 1]; }
        __syncthreads();
    }
    const int count = min(selMeta[2LL * row], histCap);
    for (int j = t; j < histCap; j += SEL_THREADS) H[j] = j < count ? selected[(long long)row * selCap + j] : -1;
    if (t == 0) { HM[0] = count; HM[1] = n - 1; }
}

// PrHS's split of a budget of k keys (PrhsRule.Split): sinks ≤ k/8, local window ≤ k/4, the rest salient.
__device__ __forceinline__ void prhs_split(int k, int sinks, int local, int* s, int* w, int* salient)
{
    *s = min(sinks, k / 8);
    *w = min(local, k / 4);
    *salient = k - *s - *w;
}

// Lowest i with L[i] >= v in an ascending list of `count` entries.
__device__ __forceinline__ int lower_bound(const int* L, int count, int v)
{
    int lo = 0, hi = count;
    while (lo < hi)
    {
        const int mid = (lo + hi) >> 1;
        if (L[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo;
}

// PrHS's CIS decision and retrieval domain per (row, head) (ISelectionOps.PrhsShare): decision 2 where k ≥ n; 1
// where the stored set was retrieved fewer than `block` steps ago and the query's cosine with the retrieval's is
// ≥ tau; else 0, the query and step stamped, and the domain [start, n − local) with PSAW's and ETF's prefixes (the
// frozen entries from the previous layer's ascending set prev). Also the sizes of PrhsPick's first top-k (the `top`
// best of the domain): rowLens, ks (-1 where nothing is picked with a dilation). Grid (rows · heads), SEL_THREADS.
extern "C" __global__ void __launch_bounds__(SEL_THREADS) prhs_share(const int* __restrict__ lengths,
    const int* __restrict__ steps, int heads, int tokens, double fraction, int sinks, int local, float tau, int block,
    int radius, int top, double prune, double freeze, const float* __restrict__ q, int qHeads, int qPer, int hd,
    float* __restrict__ reference, int refStride, int* __restrict__ retrievedAt, const int* __restrict__ prevAt,
    const int* __restrict__ prev, const int* __restrict__ prevMeta, int prevCap, int* __restrict__ decision,
    int* __restrict__ domStart, int* __restrict__ domLen, int* __restrict__ frozenFrom, int* __restrict__ frozenCount,
    int* __restrict__ rowLens, int* __restrict__ ks)
{
    step_prologue();
    __shared__ float sh[3][SEL_THREADS / 32];
    const int row = blockIdx.x, r = row / heads, n = lengths[r], t = threadIdx.x;
    const int k = resolve_budget(tokens, fraction, n);
    if (k >= n)
    {
        if (t == 0) { decision[row] = 2; domLen[row] = 0; frozenCount[row] = 0; ks[row] = -1; rowLens[row] = 0; }
        return;
    }
    int s, w, salient;
    prhs_split(k, sinks, local, &s, &w, &salient);
    const int step = steps[r], at = retrievedAt[row], qLen = qPer * hd;
    const float* Q = q + ((long long)r * qHeads + (row % heads) * qPer) * hd;
    float* R = reference + (long long)row * refStride;
    bool shared = false;
    if (at > 0 && step - at < block)
    {
        float dot = 0.f, qq = 0.f, rr = 0.f;
        for (int i = t; i < qLen; i += SEL_THREADS)
        {
            dot = fmaf(Q[i], R[i], dot);
            qq = fmaf(Q[i], Q[i], qq);
            rr = fmaf(R[i], R[i], rr);
        }
        dot = warp_sum(dot);
        qq = warp_sum(qq);
        rr = warp_sum(rr);
        if ((t & 31) == 0) { sh[0][t >> 5] = dot; sh[1][t >> 5] = qq; sh[2][t >> 5] = rr; }
        __syncthreads();
        float d = 0.f, a = 0.f, b = 0.f;
        for (int x = 0; x < SEL_THREADS / 32; x++) { d += sh[0][x]; a += sh[1][x]; b += sh[2][x]; }
        shared = d / (sqrtf(a) * sqrtf(b)) >= tau;   // NaN (a zero query) retrieves
        __syncthreads();   // every thread has read the sums before the reference is overwritten
    }
    if (shared)
    {
        if (t == 0) { decision[row] = 1; domLen[row] = 0; frozenCount[row] = 0; ks[row] = -1; rowLens[row] = 0; }
        return;
    }
    for (int i = t; i < qLen; i += SEL_THREADS) R[i] = Q[i];
    if (t != 0) return;
    decision[row] = 0;
    retrievedAt[row] = step;
    const int middleEnd = n - w;
    const int low = max(s, (int)floor(prune * (double)n));
    const int freezeEnd = min((int)floor(freeze * (double)n), middleEnd);
    int start = low, from = 0, frozen = 0;
    if (freezeEnd > low && prev && prevAt[row] > 0)
    {
        const int* P = prev + (long long)row * prevCap;
        const int count = prevMeta[2LL * row];
        from = lower_bound(P, count, low);
        frozen = min(lower_bound(P, count, freezeEnd) - from, salient);
        start = freezeEnd;
    }
    const int length = max(0, middleEnd - start), room = salient - frozen;
    domStart[row] = start;
    domLen[row] = length;
    frozenFrom[row] = from;
    frozenCount[row] = frozen;
    const int best = min(min(top, room), length);
    const bool dilates = room > 0 && length > 0 && best > 0 && radius > 0;
    rowLens[row] = dilates ? length : 0;
    ks[row] = dilates ? best : -1;
}

// PrHS's dilation per (row, head), after the first top-k wrote the `top` best domain offsets (ascending, -1 padded)
// to best[row]: the distinct offsets within ±radius of them inside the domain [0, length), ascending, into
// dil[row] (dilCount[row]; 0 where the dilation is empty or fills the room, which then takes the plain top-k), and
// the sizes of the second top-k: the room, or the room less the dilation. Thread per (row, head).
extern "C" __global__ void prhs_dilate(int rowsTimesHeads, const int* __restrict__ decision, const int* __restrict__ domLen,
    const int* __restrict__ frozenCount, const int* __restrict__ lengths, int heads, int tokens, double fraction,
    int sinks, int local, int radius, int top, const int* __restrict__ best, int bestCap, int* __restrict__ dil,
    int dilCap, int* __restrict__ dilCount, int* __restrict__ rowLens, int* __restrict__ ks)
{
    step_prologue();
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= rowsTimesHeads) return;
    dilCount[row] = 0;
    if (decision[row] != 0) { ks[row] = -1; rowLens[row] = 0; return; }
    const int n = lengths[row / heads], k = resolve_budget(tokens, fraction, n);
    int s, w, salient;
    prhs_split(k, sinks, local, &s, &w, &salient);
    const int length = domLen[row], room = salient - frozenCount[row];
    if (room <= 0 || length <= 0) { ks[row] = -1; rowLens[row] = 0; return; }
    int count = 0;
    if (min(min(top, room), length) > 0 && radius > 0)
    {
        const int* B = best + (long long)row * bestCap;
        int* D = dil + (long long)row * dilCap;
        // the best offsets are ascending, so their windows come in order: each adds what lies past the last written
        int last = -1;
        for (int i = 0; i < bestCap && B[i] >= 0; i++)
            for (int p = max(max(B[i] - radius, 0), last + 1); p <= min(B[i] + radius, length - 1); p++) D[count++] = last = p;
    }
    if (count >= room) count = 0;
    dilCount[row] = count;
    rowLens[row] = length;
    ks[row] = count > 0 ? room - count : room;
}

// Marks each entry (+ offset) of a list of `count` positions (-1 entries skipped) in a bitmap.
__device__ __forceinline__ void mark_list(u32* bits, const int* L, int count, int offset)
{
    for (int j = threadIdx.x; j < count; j += blockDim.x)
        if (L[j] >= 0) { const int p = L[j] + offset; atomicOr(bits + (p >> 5), 1u << (p & 31)); }
}

// PrHS's sets per (row, head) (ISelectionOps.PrhsPick): where decision is 0 the salient set := the frozen entries of
// the previous layer's set ∪ the dilation ∪ the second top-k (offsets + domain start; where its k was ≥ 0),
// ascending (stamped); then on
// every head out := [0, sinks) ∪ salient ∪ [n − local, n) — every position where decision is 2 — built in a bitmap
// of the context (dynamic shared memory or bits[row], as lfps_candidates) and compacted in order. Grid (rows · heads),
// LFPS_THREADS threads.
extern "C" __global__ void __launch_bounds__(LFPS_THREADS) prhs_compose(const int* __restrict__ lengths, int heads,
    int tokens, double fraction, int sinks, int local, const int* __restrict__ decision, const int* __restrict__ domStart,
    const int* __restrict__ frozenFrom, const int* __restrict__ frozenCount, const int* __restrict__ prev, int prevCap,
    const int* __restrict__ dil, int dilCap, const int* __restrict__ dilCount, const int* __restrict__ rest,
    const int* __restrict__ restMeta, int restCap, const int* __restrict__ restKs, int* __restrict__ salientSet, int* __restrict__ salientMeta,
    int salientCap, u32* __restrict__ bitmap, int words, int* __restrict__ out, int* __restrict__ outMeta, int outCap,
    int sharedBits)
{
    step_prologue();
    __shared__ u32 sh_scan[LFPS_THREADS / 32];
    const int row = blockIdx.x, r = row / heads, n = lengths[r], t = threadIdx.x, f = decision[row];
    int* O = out + (long long)row * outCap;
    if (f == 2)
    {
        for (int j = t; j < outCap; j += LFPS_THREADS) O[j] = j < n ? j : -1;
        if (t == 0) { outMeta[2LL * row] = min(n, outCap); outMeta[2LL * row + 1] = n - 1; }
        return;
    }
    int s, w, salient;
    prhs_split(resolve_budget(tokens, fraction, n), sinks, local, &s, &w, &salient);
    u32* bits = sharedBits ? dyn_bits : bitmap + (long long)row * words;
    const int used = (n + 31) >> 5;
    for (int x = t; x < used; x += LFPS_THREADS) bits[x] = 0u;
    __syncthreads();
    int* S = salientSet + (long long)row * salientCap;
    if (f == 0)
    {
        const int start = domStart[row];
        mark_list(bits, prev ? prev + (long long)row * prevCap + frozenFrom[row] : S, prev ? frozenCount[row] : 0, 0);
        mark_list(bits, dil + (long long)row * dilCap, dilCount[row], start);
        // restKs < 0: the second top-k left this row as it was (nothing to pick)
        if (restKs[row] >= 0) mark_list(bits, rest + (long long)row * restCap, restMeta[2LL * row], start);
        __syncthreads();
        const int count = compact_bits(bits, used, S, salientCap, sh_scan);
        for (int j = count + t; j < salientCap; j += LFPS_THREADS) S[j] = -1;
        if (t == 0) { salientMeta[2LL * row] = count; salientMeta[2LL * row + 1] = n - 1; }
    }
    else mark_list(bits, S, salientMeta[2LL * row], 0);
    __syncthreads();
    if (t == 0)
    {
        for (int p = 0; p < s; p++) atomicOr(bits + (p >> 5), 1u << (p & 31));
        for (int p = max(0, n - w); p < n; p++) atomicOr(bits + (p >> 5), 1u << (p & 31));
    }
    __syncthreads();
    const int count = compact_bits(bits, used, O, outCap, sh_scan);
    for (int j = count + t; j < outCap; j += LFPS_THREADS) O[j] = -1;
    if (t == 0) { outMeta[2LL * row] = count; outMeta[2LL * row + 1] = n - 1; }
}
