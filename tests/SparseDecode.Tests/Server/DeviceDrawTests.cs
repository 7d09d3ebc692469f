using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Serving;
using Xunit;

namespace SparseDecode.Tests.Server;

/// <summary>The scheduler decodes through <see cref="IInferenceEngine.DecodeAndSample"/>: an engine that draws the
/// tokens itself and keeps the logits to itself (as the GPU does) serves every request — sampled with a seed,
/// greedy, with log-probabilities, speculating, sharing a kept prompt — exactly as the engine that hands back logits,
/// and a draw it leaves to the caller is made on the host with the same sampler.</summary>
[Collection("server")]
public class DeviceDrawTests(ServerFixture fx)
{
    private static readonly string Prompt = SpeculationTests.LongPrompt;

    private static readonly string[] Bodies =
    [
        Body(0, ",\"temperature\":0.9,\"top_p\":0.9,\"seed\":11"),
        Body(1, ",\"temperature\":1.1,\"top_k\":12,\"seed\":5"),
        Body(2, ",\"temperature\":0.7,\"top_k\":40,\"top_p\":0.8,\"seed\":3,\"logprobs\":2"),
        Body(3, ",\"temperature\":0"),
        Body(4, ",\"temperature\":0,\"logprobs\":1"),
        Body(5, ",\"temperature\":0.8,\"seed\":9,\"sparse\":{\"method\":\"quest\",\"budget\":\"16\"}"),
        Body(6, ",\"temperature\":0,\"sparse\":{\"method\":\"quest\",\"budget\":\"16\",\"speculate\":3}"),
        Body(0, ",\"temperature\":0.6,\"seed\":21"),
    ];

    private static string Body(int i, string extra) =>
        $"{{\"prompt\":{JsonSerializer.Serialize($"# request {i}\n" + Prompt)},\"max_tokens\":12{extra}}}";

    [Fact]
    public async Task AnEngineThatDrawsTheTokensServesEveryRequestAsTheHostDrawsIt()
    {
        var alone = new JsonElement[Bodies.Length];
        for (int i = 0; i < Bodies.Length; i++)
        {
            var (status, body) = await Http.Post(fx.Client, "/v1/completions", Bodies[i]);
            Assert.Equal(200, status);
            alone[i] = body;
        }

        var engine = new DrawingEngine(fx.Model.Engine);
        using var model = new ServedModel("drawing", fx.Model.Directory, engine, fx.Model.Codec);
        await using var server = await SparseServer.StartAsync(model, ServerFixture.Options());
        using var client = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(120) };
        var together = await Task.WhenAll(Bodies.Select(b => Http.Post(client, "/v1/completions", b)));
        for (int i = 0; i < Bodies.Length; i++)
        {
            Assert.Equal(200, together[i].Status);
            Assert.Equal(Http.Text(alone[i]), Http.Text(together[i].Body));
            Assert.Equal(Logprobs(alone[i]), Logprobs(together[i].Body));
        }
        Assert.True(engine.Drawn > 0 && engine.LeftToCaller > 0, $"{engine.Drawn} tokens drawn by the engine, {engine.LeftToCaller} left to the caller");
        Assert.True(engine.Hidden > 0, "no step kept its logits from the caller");
    }

    private static string Logprobs(JsonElement body) => body.GetProperty("choices")[0].GetProperty("logprobs").GetRawText();

    /// <summary>The fixture's engine with the draws made here: every other step of a sequence is drawn and its logits
    /// hidden unless kept; the other steps leave the draw to the caller.</summary>
    private sealed class DrawingEngine(IInferenceEngine inner) : WrappedEngine(inner), IInferenceEngine
    {
        public int Drawn, LeftToCaller, Hidden;

        public override IDecodeSequence CreateSequence(int capacity, SelectionPlan? plan = null) => new HidingSequence(Inner.CreateSequence(capacity, plan));

        public void DecodeAndSample(IReadOnlyList<IDecodeSequence> sequences, ReadOnlySpan<int> tokens, IReadOnlyList<Sampler?> samplers,
            ReadOnlySpan<bool> keepLogits, Span<int> next)
        {
            DecodeBatch(sequences, tokens);
            for (int i = 0; i < sequences.Count; i++)
            {
                var seq = (HidingSequence)sequences[i];
                seq.Hide = false;
                next[i] = -1;
                if (samplers[i] is not { } sampler || seq.Length % 2 == 0)
                {
                    if (samplers[i] is not null) LeftToCaller++;
                    continue;
                }
                next[i] = sampler.Next(seq.Inner.Logits);
                Drawn++;
                if (keepLogits[i]) continue;
                seq.Hide = true;
                Hidden++;
            }
        }
    }

    /// <summary>A sequence whose logits, once hidden, throw until its next token runs.</summary>
    private sealed class HidingSequence(IDecodeSequence inner) : WrappedSequence(inner), IDecodeSequence
    {
        public bool Hide;

        public new ReadOnlySpan<float> Logits => Hide ? throw new InvalidOperationException("These logits were kept on the device.") : Inner.Logits;

        public override void Prefill(ReadOnlySpan<int> tokens, Action<int, ReadOnlySpan<float>>? everyLogits = null, Action<int, int>? progress = null)
        {
            Hide = false;
            base.Prefill(tokens, everyLogits, progress);
        }

        public new void Decode(int token, IAttentionObserver? observer = null)
        {
            Hide = false;
            Inner.Decode(token, observer);
        }

        public new void Truncate(int length)
        {
            Inner.Truncate(length);
        }

        public override IDecodeSequence Fork(int capacity, SelectionPlan? plan = null) => new HidingSequence(Inner.Fork(capacity, plan)) { Hide = Hide };
    }
}
