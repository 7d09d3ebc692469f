// Drawing each row's next token from its logits on the device, so that a decode step copies token ids to the host
// instead of every row's logits. The draw is the host Sampler's (Engine/Sampler.cs), made without sorting:
//   greedy: the first index of the largest logit;
//   else p = softmax((l − max) / T); the kept tokens are the `keep` most likely (ties broken by lower id), where keep
//   is top-k's count or, if smaller, the count at which the probabilities summed from the most likely reach top-p;
//   the token is the first kept one, in id order, at which the kept probabilities summed so far reach u · their
//   total, u being the host sampler's uniform number.
// The cut-off probability is found by radix selection over the bits of the probabilities (non-negative floats order
// as their bit patterns): four passes of 8 bits, each a histogram of count and mass over the tokens still in range.

#include "common.cuh"

#define SAMPLE_THREADS 1024

// One row's draw: mode 0 = not drawn, 1 = greedy, 2 = sampled; temperature, top-p (≥ 1: off), top-k (0: off), and
// the uniform number in [0, 1). Laid out as the host's SamplingKernels.RowDraw.
struct RowDraw
{
    int mode;
    float temperature;
    float top_p;
    int top_k;
    double uniform;
};

// As the host: shift by the maximum, divide by the temperature, exponentiate, scale by the sum's reciprocal.
__device__ __forceinline__ float prob_of(float logit, float top, float temperature, float inv_sum)
{
    return expf((logit - top) / temperature) * inv_sum;
}

// Block-wide reductions through shared scratch of SAMPLE_THREADS / 32 entries; every thread gets the result.
__device__ float block_sum_f(float v, float* scratch)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < (SAMPLE_THREADS >> 5) ? scratch[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Inclusive scan of one double and one int per thread across the block (Hillis–Steele over shared arrays).
__device__ void block_scan(double& mass, int& count, double* smass, int* scount)
{
    int t = threadIdx.x;
    smass[t] = mass;
    scount[t] = count;
    __syncthreads();
    for (int d = 1; d < SAMPLE_THREADS; d <<= 1)
    {
        double m = t >= d ? smass[t - d] : 0.0;
        int c = t >= d ? scount[t - d] : 0;
        __syncthreads();
        smass[t] += m;
        scount[t] += c;
        __syncthreads();
    }
    mass = smass[t];
    count = scount[t];
}

// One block per row of logits [rows][vocab]: out[row] the token drawn, or −1 where the row is not drawn or its logits
// are not finite (NaN, +∞, or all −∞: the host's sampler raises the error).
extern "C" __global__ void __launch_bounds__(SAMPLE_THREADS) sample_rows(const float* __restrict__ logits, int vocab,
    const RowDraw* __restrict__ draws, int* __restrict__ out)
{
    step_prologue();
    __shared__ float s_max[SAMPLE_THREADS / 32];
    __shared__ int s_arg[SAMPLE_THREADS / 32];
    __shared__ int s_bad;
    __shared__ float s_red[SAMPLE_THREADS / 32];
    __shared__ u32 s_count[256];
    __shared__ double s_mass[256];
    __shared__ double s_scan_mass[SAMPLE_THREADS];
    __shared__ int s_scan_count[SAMPLE_THREADS];
    __shared__ u32 s_prefix, s_mask;
    __shared__ int s_count_above, s_all, s_tie_count, s_ties;
    __shared__ double s_mass_above;
    __shared__ int s_pick, s_last;

    const int row = blockIdx.x, t = threadIdx.x;
    const RowDraw d = draws[row];
    if (d.mode == 0)
    {
        if (t == 0) out[row] = -1;
        return;
    }
    const float* l = logits + (long long)row * vocab;

    // the largest logit and its first index; any NaN or +∞ makes the row bad
    float best = NEG_INF;
    int arg = 0x7fffffff;
    bool bad = false;
    for (int i = t; i < vocab; i += SAMPLE_THREADS)
    {
        float x = l[i];
        if (x != x || x == __int_as_float(0x7f800000)) bad = true;
        else if (x > best) { best = x; arg = i; }
    }
    if (t == 0) s_bad = 0;
    __syncthreads();
    if (bad) s_bad = 1;
    for (int o = 16; o > 0; o >>= 1)
    {
        float ob = __shfl_xor_sync(0xffffffffu, best, o);
        int oa = __shfl_xor_sync(0xffffffffu, arg, o);
        if (ob > best || (ob == best && oa < arg)) { best = ob; arg = oa; }
    }
    if ((t & 31) == 0) { s_max[t >> 5] = best; s_arg[t >> 5] = arg; }
    __syncthreads();
    if (t < 32)
    {
        best = t < (SAMPLE_THREADS >> 5) ? s_max[t] : NEG_INF;
        arg = t < (SAMPLE_THREADS >> 5) ? s_arg[t] : 0x7fffffff;
        for (int o = 16; o > 0; o >>= 1)
        {
            float ob = __shfl_xor_sync(0xffffffffu, best, o);
            int oa = __shfl_xor_sync(0xffffffffu, arg, o);
            if (ob > best || (ob == best && oa < arg)) { best = ob; arg = oa; }
        }
        if (t == 0) { s_max[0] = best; s_arg[0] = arg; }
    }
    __syncthreads();
    const float top = s_max[0];
    if (s_bad || top == NEG_INF || d.mode == 1)
    {
        if (t == 0) out[row] = s_bad || top == NEG_INF ? -1 : s_arg[0];
        return;
    }

    // tempered probabilities: p = exp((l − max) / T) / Σ
    const float temp = d.temperature;
    float part = 0.0f;
    for (int i = t; i < vocab; i += SAMPLE_THREADS) part += expf((l[i] - top) / temp);
    const float inv_sum = 1.0f / block_sum_f(part, s_red);

    // the cut-off: the smallest probability kept (tau), how many tokens lie above it and their mass
    const int k = d.top_k > 0 && d.top_k < vocab ? d.top_k : vocab;
    const double target = d.top_p < 1.0f ? (double)d.top_p : 1e300;
    if (t == 0) { s_prefix = 0; s_mask = 0; s_count_above = 0; s_mass_above = 0.0; s_all = k == vocab && d.top_p >= 1.0f; }
    __syncthreads();
    for (int shift = 24; shift >= 0 && !s_all; shift -= 8)
    {
        for (int b = t; b < 256; b += SAMPLE_THREADS) { s_count[b] = 0; s_mass[b] = 0.0; }
        __syncthreads();
        const u32 prefix = s_prefix, mask = s_mask;
        for (int i = t; i < vocab; i += SAMPLE_THREADS)
        {
            float p = prob_of(l[i], top, temp, inv_sum);
            u32 bits = __float_as_uint(p);
            if ((bits & mask) != prefix) continue;
            int b = (bits >> shift) & 255;
            atomicAdd(&s_count[b], 1u);
            atomicAdd(&s_mass[b], (double)p);
        }
        __syncthreads();
        if (t == 0)
        {
            int above = s_count_above;
            double mass = s_mass_above;
            int found = -1;
            for (int b = 255; b >= 0; b--)
            {
                if (s_count[b] == 0) continue;
                if (above + (int)s_count[b] >= k || mass + s_mass[b] >= target) { found = b; break; }
                above += s_count[b];
                mass += s_mass[b];
            }
            if (found < 0) s_all = 1; // rounding left the whole mass short of top-p: every token is kept
            else
            {
                s_prefix = prefix | ((u32)found << shift);
                s_mask = mask | (255u << shift);
                s_count_above = above;
                s_mass_above = mass;
                s_tie_count = s_count[found];
            }
        }
        __syncthreads();
    }
    const bool all = s_all;
    const float tau = __uint_as_float(s_prefix);
    if (t == 0 && !all)
    {
        // of the tokens equal to tau, the lowest ids are kept until top-k's count or top-p's mass is reached
        int ties = min(s_tie_count, k - s_count_above);
        if (d.top_p < 1.0f && tau > 0.0f)
        {
            double m = s_mass_above;
            int j = 0;
            while (j < ties) { m += tau; j++; if (m >= target) break; }
            ties = j;
        }
        s_ties = max(ties, 1);
    }
    __syncthreads();
    const int ties = all ? 0 : s_ties;

    // each thread's contiguous run of ids: the kept mass and the ties in it, scanned across the block
    const int run = (vocab + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int begin = min(t * run, vocab), end = min(begin + run, vocab);
    double mass = 0.0;
    int tie_count = 0;
    for (int i = begin; i < end; i++)
    {
        float p = prob_of(l[i], top, temp, inv_sum);
        if (all || p > tau) mass += p;
        else if (p == tau) { tie_count++; }
    }
    double mass_incl = mass;
    int ties_incl = tie_count;
    block_scan(mass_incl, ties_incl, s_scan_mass, s_scan_count);
    // the ties this run keeps add to its mass
    const int ties_before = ties_incl - tie_count;
    const int kept_ties = all ? 0 : max(0, min(tie_count, ties - ties_before));
    __syncthreads();
    double kept = mass + (double)kept_ties * tau;
    int unused = 0;
    double kept_incl = kept;
    block_scan(kept_incl, unused, s_scan_mass, s_scan_count);
    const double total = s_scan_mass[SAMPLE_THREADS - 1];
    const double u = d.uniform * total;
    if (t == 0) { s_pick = 0x7fffffff; s_last = -1; }
    __syncthreads();
    double cum = kept_incl - kept;
    int seen = ties_before, pick = -1, last = -1;
    for (int i = begin; i < end; i++)
    {
        float p = prob_of(l[i], top, temp, inv_sum);
        bool keep = all || p > tau || (p == tau && seen++ < ties);
        if (!keep) continue;
        last = i;
        cum += p;
        if (cum >= u) { pick = i; break; }
    }
    if (pick >= 0) atomicMin(&s_pick, pick);
    if (last >= 0) atomicMax(&s_last, last);
    __syncthreads();
    if (t == 0) out[row] = s_pick != 0x7fffffff ? s_pick : s_last;
}
