using SparseDecode.Backends;
using SparseDecode.Cli.TensorParallel;
using System.CommandLine;
using System.Globalization;
using SparseDecode.Cuda;
using SparseDecode.Engine;
using SparseDecode.Tokenization;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`generate`: stream a completion of a prompt, then print prompt and decode speed.</summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var prompt = new Option<string?>("--prompt", "-p") { Description = "The prompt text." };
        var promptFile = new Option<string?>("--prompt-file") { Description = "Read the prompt from a file ('-': standard input)." };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Tokens to generate.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<float>("--temperature") { Description = "0 = greedy.", DefaultValueFactory = _ => 0f };
        var topK = new Option<int>("--top-k") { Description = "Keep the k most likely tokens (0 = off).", DefaultValueFactory = _ => 0 };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass (1 = off).", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong?>("--seed") { Description = "Seed for sampling." };
        var presence = new Option<float>("--presence-penalty") { Description = "Subtracted from the logit of every token already generated (-2 to 2; 0 = off)." };
        var frequency = new Option<float>("--frequency-penalty") { Description = "Subtracted from a token's logit once per time it was generated (-2 to 2; 0 = off)." };
        var kv = CommonOptions.CacheType();
        var device = CommonOptions.Device();
        var gpuPrefill = CommonOptions.PrefillPrecision();
        var gpuDecode = CommonOptions.DecodePrecision();
        var method = MethodOptions.Create();
        var tensorParallel = RankLauncher.TensorParallelOption();
        var json = new Option<bool>("--json") { Description = "Print one JSON object at the end (text, token counts, finish reason, speeds) instead of streaming the text." };
        var cmd = new Command("generate", "Generate text from a prompt, streaming it, with dense or sparse attention.")
            { model, prompt, promptFile, maxTokens, temperature, topK, topP, seed, presence, frequency, kv, device, gpuPrefill, gpuDecode, tensorParallel, json };
        method.AddTo(cmd, speculate: true);
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            var speculation = method.Speculation(r, dir);
            TensorParallelGate.Check(r.GetValue(tensorParallel), dir, CommonOptions.ParseDevice(r.GetValue(device)!), "generate");
            if (r.GetValue(prompt) is not null && r.GetValue(promptFile) is not null)
                throw new ArgumentException("Give --prompt or --prompt-file, not both.");
            string text = r.GetValue(prompt) ?? (r.GetValue(promptFile) is string f ? CliFiles.ReadText(f, "--prompt-file")
                : throw new ArgumentException("Give --prompt or --prompt-file."));
            var config = SparseDecode.Model.ModelConfig.Load(dir);
            var tokenizer = Tokenizer.FromDirectory(dir, config);
            int[] ids = tokenizer.Encode(text);
            var decoder = tokenizer.CreateStreamingDecoder();
            var observer = method.Observer(r);
            var options = new GenerationOptions
            {
                MaxTokens = r.GetValue(maxTokens),
                Sampling = new SamplingOptions(r.GetValue(temperature), r.GetValue(topK), r.GetValue(topP), r.GetValue(seed), r.GetValue(presence), r.GetValue(frequency)),
                Method = method.Spec(r, dir),
                StopTokenIds = config.EosTokenIds.ToArray(),
                Observer = observer,
                Speculation = speculation,
            };
            options.Sampling.Validate();
            bool asJson = r.GetValue(json);
            var generated = new System.Text.StringBuilder();
            void Stream(int id)
            {
                string piece = decoder.Push(id);
                if (asJson)
                {
                    generated.Append(piece);
                    return;
                }
                Console.Write(piece);
                Console.Out.Flush();
            }
            var engineOptions = CommonOptions.Engine(r, device, kv, capacity: Math.Min(ids.Length + Math.Max(1, options.MaxTokens), config.MaxPositions), prefill: gpuPrefill, decode: gpuDecode);
            if (observer is not null && engineOptions.Device != "cpu")
                throw new ArgumentException("--report needs --device cpu: it computes dense attention beside the method, which the GPU engine does not.");
            using var engine = BackendRegistry.Load(dir, engineOptions);
            if (ids.Length >= PhaseNote.LongPrompt && engineOptions.Device == "cpu")
                options = options with { PrefillProgress = new ProgressLine("prefill", PhaseNote.Prefill(ids.Length)).Report };
            var result = new Generator(engine).Generate(ids, options, Stream);
            var ci = CultureInfo.InvariantCulture;
            // the generator stops quietly when the cache is full; say so, or a short answer looks like the model's choice
            bool atContext = result.FinishReason == "length" && result.Tokens.Length < options.MaxTokens
                             && result.PromptTokens + result.Tokens.Length >= config.MaxPositions;
            if (asJson)
            {
                generated.Append(decoder.Flush());
                JsonOut.Write(w =>
                {
                    w.WriteString("text", generated.ToString());
                    w.WriteString("finish_reason", atContext ? "context" : result.FinishReason);
                    w.WriteNumber("prompt_tokens", result.PromptTokens);
                    w.WriteNumber("completion_tokens", result.Tokens.Length);
                    w.WriteNumber("context", config.MaxPositions);
                    w.Number("prompt_tokens_per_second", result.PromptTokensPerSecond);
                    w.Number("decode_tokens_per_second", result.DecodeTokensPerSecond);
                    if (result.Speculation is { } sp)
                    {
                        w.WriteStartObject("speculation");
                        w.WriteString("draft", options.Speculation!.ToString());
                        // the draft method may be the stored one (`--speculate` without --method): say which drafted
                        w.WriteString("method", options.Method!.Method);
                        w.WriteString("budget", options.Method.Budget.ToString());
                        w.WriteNumber("passes", sp.Passes);
                        w.WriteNumber("drafted", sp.Drafted);
                        w.WriteNumber("accepted", sp.Accepted);
                        w.Number("acceptance_rate", sp.AcceptanceRate);
                        w.Number("mean_accepted", sp.MeanAccepted);
                        w.WriteBoolean("exact", sp.Exact);
                        w.WriteEndObject();
                    }
                    w.WriteStartArray("token_ids");
                    foreach (int id in result.Tokens) w.WriteNumberValue(id);
                    w.WriteEndArray();
                });
            }
            else Console.WriteLine(decoder.Flush());
            Console.Error.WriteLine(string.Create(ci,
                $"prompt: {result.PromptTokens} tokens, {result.PromptTokensPerSecond:F1} tokens/s; decode: {result.Tokens.Length} tokens, {result.DecodeTokensPerSecond:F1} tokens/s ({result.FinishReason})"));
            if (result.Speculation is { } stats)
                Console.Error.WriteLine(string.Create(ci,
                    $"speculation ({options.Method!.Method} at {options.Method.Budget} drafting {options.Speculation}): {stats.Passes} dense passes, {stats.Accepted} of {stats.Drafted} draft tokens kept ({stats.AcceptanceRate:P0}), {stats.TokensPerPass:F2} tokens per pass{(stats.Exact ? "" : "; verified through the engine's prefill, whose rounding may differ from its decode step")}"));
            if (atContext)
                Console.Error.WriteLine($"note: stopped at the model's context limit of {config.MaxPositions} tokens (prompt {result.PromptTokens} + {result.Tokens.Length} generated), before --max-tokens {options.MaxTokens}.");
            if (observer is not null) Console.Error.WriteLine(observer.RenderTable());
            return 0;
        }));
        return cmd;
    }
}
