using SparseDecode.Engine;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Scheduling;

namespace SparseDecode.Server.Hosting;

/// <summary>echo with max_tokens 0: the prompt's per-token log-probabilities under dense attention, from one
/// chunked prefill that keeps every position's logits (the Scorer's path), outside the batch scheduler — nothing is
/// decoded, and the model's weights are only read.</summary>
internal static class PromptScoring
{
    public static EchoCompletionResponse Score(ServedModel model, int[] prompt, int? top, string id, long created)
    {
        var t = model.Transformer;
        int v = t.Config.VocabSize, chunk = t.PrefillChunk;
        var lp = new EchoLogprobs();
        var stream = model.Codec.CreateStream();
        var text = new System.Text.StringBuilder();
        var scratch = new float[v];
        var row = new float[v];
        using var cache = t.CreateCache(prompt.Length, Model.DType.F32);
        var logits = new float[Math.Min(chunk, prompt.Length) * v];
        void Add(int i, TokenLogprob? scored)
        {
            lp.Tokens.Add(model.Codec.TokenText(prompt[i]));
            lp.TextOffset.Add(text.Length);
            text.Append(stream.Push(prompt[i]));
            lp.TokenLogprobs.Add(scored?.Logprob);
            lp.TopLogprobs.Add(scored is null || top is null ? null
                : scored.Top.GroupBy(a => a.Token).ToDictionary(g => g.Key, g => g.First().Logprob));
        }
        Add(0, null);
        for (int c0 = 0; c0 < prompt.Length; c0 += chunk)
        {
            int n = Math.Min(chunk, prompt.Length - c0);
            t.Prefill(prompt.AsSpan(c0, n), cache, default, logits.AsSpan(0, n * v));
            for (int k = 0; k < n && c0 + k + 1 < prompt.Length; k++)
            {
                logits.AsSpan(k * v, v).CopyTo(row);
                Add(c0 + k + 1, Logprobs.Of(row, prompt[c0 + k + 1], top ?? 0, scratch, model.Codec));
            }
        }
        text.Append(stream.Flush());
        return new EchoCompletionResponse
        {
            Id = id,
            Created = created,
            Model = model.Id,
            Choices = [new EchoChoice { Text = text.ToString(), Logprobs = lp }],
            Usage = new Usage { PromptTokens = prompt.Length, CompletionTokens = 0, TotalTokens = prompt.Length },
        };
    }
}
