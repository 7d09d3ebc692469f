using SparseDecode.Engine;
using SparseDecode.Server.Protocol;
using SparseDecode.Server.Scheduling;
using SparseDecode.Server.Serving;

namespace SparseDecode.Server.Hosting;

/// <summary>echo with max_tokens 0: the prompt's per-token log-probabilities under dense attention, from one
/// prefill that keeps every position's logits (the Scorer's path), outside the batch scheduler — nothing is
/// decoded, and the model's weights are only read.</summary>
internal static class PromptScoring
{
    public static EchoCompletionResponse Score(ServedModel model, int[] prompt, int? top, string id, long created)
    {
        if (prompt.Length > model.Context)
            throw ApiException.BadRequest($"This model's maximum context length is {model.Context} tokens. However, your prompt has {prompt.Length} tokens. Please shorten the prompt.",
                "prompt", "context_length_exceeded");
        int v = model.Engine.Config.VocabSize;
        var lp = new EchoLogprobs();
        var stream = model.Codec.CreateStream();
        var text = new System.Text.StringBuilder();
        var scratch = new float[v];
        var row = new float[v];
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
        model.Exclusive(() =>
        {
            using var sequence = model.Engine.CreateSequence(prompt.Length);
            sequence.Prefill(prompt, (i, logits) =>
            {
                if (i + 1 >= prompt.Length) return;
                logits.CopyTo(row);
                Add(i + 1, Logprobs.Of(row, prompt[i + 1], top ?? 0, scratch, model.Codec));
            });
        });
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
