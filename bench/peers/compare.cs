// SparseDecode's CPU engine beside llama.cpp (through LLamaSharp and its CPU backend) on the bundled model, in one
// process: the checkpoint is exported to GGUF by our own exporter, then each context length is prefilled with the
// same random tokens and decoded for the same steps by each tool in turn (the order alternates between rounds),
// and greedy continuations of the same prompts are compared token by token. Run from the repository root:
//   dotnet run -c Release bench/peers/compare.cs -- --contexts 512,4096,7936 --rounds 3 --steps 64
// Both use the same threads (--threads, default: the physical cores), a 16-bit KV cache (ours bf16, llama.cpp its
// default f16) and llama.cpp's defaults otherwise (batch 512, flash attention as it chooses).
#:package LLamaSharp@0.30.0
#:package LLamaSharp.Backend.Cpu@0.30.0
#:project ../../src/SparseDecode/SparseDecode.csproj
#:property PublishAot=false
#:property TieredPGO=true
#:property TieredCompilationQuickJit=false
#:property TieredCompilationQuickJitForLoops=false
using System.Diagnostics;
using System.Globalization;
using System.IO.Compression;
using LLama;
using LLama.Common;
using LLama.Native;
using SparseDecode.Engine;
using SparseDecode.Export;
using SparseDecode.Model;
using SparseDecode.Cpu;
using SparseDecode.Tokenization;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
string Arg(string name, string fallback) { int i = Array.IndexOf(args, name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
int[] contexts = Arg("--contexts", "512,4096,7936").Split(',').Select(int.Parse).ToArray();
int rounds = int.Parse(Arg("--rounds", "3")), steps = int.Parse(Arg("--steps", "64"));
int threads = int.Parse(Arg("--threads", CpuTopology.PhysicalCores.ToString()));
int greedyTokens = int.Parse(Arg("--greedy-tokens", "64"));

string dir = Path.Combine("models", "sparse-code-16m");
Directory.CreateDirectory(Path.Combine("out", "peers"));
string gguf = Path.Combine("out", "peers", "sparse-code-16m.gguf");
GgufExport.Write(dir, gguf);
WorkerPool.SetSharedThreads(threads);
using var ours = Transformer.Load(dir);
var tokenizer = Tokenizer.FromDirectory(dir);
NativeLibraryConfig.All.WithLogCallback((level, message) => { if (level >= LLamaLogLevel.Error) Console.Error.Write(message); });
var parameters = new ModelParams(gguf) { ContextSize = 8192, Threads = threads, BatchThreads = threads, GpuLayerCount = 0, BatchSize = 512, UBatchSize = 512 };
using var weights = LLamaWeights.LoadFromFile(parameters);
using var llama = weights.CreateContext(parameters);
var batch = new LLamaBatch();
Console.Error.WriteLine($"{Environment.ProcessorCount} logical CPUs, {threads} threads each; llama.cpp via LLamaSharp 0.30.0; {ours.Config.NumLayers} layers, {ours.ParameterCount / 1e6:F1}M parameters, bf16");

// ---- ours: prefill returns the last logits' argmax; decode feeds the given tokens
(double prefill, double decode) OursRun(int[] prompt, int[] feed)
{
    using var cache = ours.CreateCache(prompt.Length + feed.Length + 1, DType.BF16);
    var ws = new DecodeWorkspace(ours, cache);
    long t0 = Stopwatch.GetTimestamp();
    ours.Prefill(prompt, cache, ws.Logits);
    double p = Stopwatch.GetElapsedTime(t0).TotalSeconds;
    long t1 = Stopwatch.GetTimestamp();
    foreach (int t in feed) ours.Decode(t, cache, ws);
    return (p, Stopwatch.GetElapsedTime(t1).TotalSeconds);
}

// ---- llama.cpp: the prompt in batches of 512 (logits for the last token only), then one token per decode
void LlamaPrefill(int[] prompt)
{
    llama.NativeHandle.MemoryClear(true);
    for (int c0 = 0; c0 < prompt.Length; c0 += 512)
    {
        batch.Clear();
        int end = Math.Min(prompt.Length, c0 + 512);
        for (int i = c0; i < end; i++) batch.Add((LLamaToken)prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
        Check(llama.NativeHandle.Decode(batch));
    }
}
void LlamaStep(int token, int pos)
{
    batch.Clear();
    batch.Add((LLamaToken)token, pos, LLamaSeqId.Zero, true);
    Check(llama.NativeHandle.Decode(batch));
}
static void Check(DecodeResult r) { if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {r}"); }
(double prefill, double decode) LlamaRun(int[] prompt, int[] feed)
{
    long t0 = Stopwatch.GetTimestamp();
    LlamaPrefill(prompt);
    double p = Stopwatch.GetElapsedTime(t0).TotalSeconds;
    long t1 = Stopwatch.GetTimestamp();
    for (int i = 0; i < feed.Length; i++) LlamaStep(feed[i], prompt.Length + i);
    return (p, Stopwatch.GetElapsedTime(t1).TotalSeconds);
}

// ---- speed: both warmed once, then each context `rounds` times, alternating which tool goes first
var rng = new Random(1);
int[] Random(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(ours.Config.VocabSize)).ToArray();
var warm = Random(512 + steps);
OursRun(warm[..512], warm[512..]);
LlamaRun(warm[..512], warm[512..]);
Console.WriteLine($"| context | tool | prefill tokens/s (min–max of {rounds}) | decode tokens/s (min–max of {rounds}) |");
Console.WriteLine("|---:|---|---:|---:|");
foreach (int n in contexts)
{
    var tokens = Random(n + steps);
    var (prompt, feed) = (tokens[..n], tokens[n..]);
    var results = new Dictionary<string, List<(double p, double d)>> { ["SparseDecode"] = [], ["llama.cpp"] = [] };
    for (int round = 0; round < rounds; round++)
    {
        foreach (string tool in round % 2 == 0 ? new[] { "SparseDecode", "llama.cpp" } : new[] { "llama.cpp", "SparseDecode" })
            results[tool].Add(tool == "SparseDecode" ? OursRun(prompt, feed) : LlamaRun(prompt, feed));
        Console.Error.WriteLine($"context {n}, round {round + 1}: " + string.Join("; ", results.Select(r =>
            $"{r.Key} prefill {n / r.Value[^1].p:F0}/s decode {steps / r.Value[^1].d:F1}/s")));
    }
    foreach (var (tool, list) in results)
        Console.WriteLine($"| {n} | {tool} | {n / list.Max(r => r.p):F0}–{n / list.Min(r => r.p):F0} | {steps / list.Max(r => r.d):F1}–{steps / list.Min(r => r.d):F1} |");
}

// ---- greedy text: the same prompt ids through both, `greedyTokens` tokens each
using var gz = new GZipStream(File.OpenRead(Path.Combine(dir, "heldout.txt.gz")), CompressionMode.Decompress);
string heldout = new StreamReader(gz).ReadToEnd();
var prompts = new List<(string Name, int[] Ids)> { ("def fibonacci(n):", tokenizer.Encode("def fibonacci(n):")) };
foreach (int length in new[] { 1000, 7800 })
    prompts.Add(($"held-out code, {length} tokens", tokenizer.Encode(heldout[..(length * 8)])[..length]));
Console.WriteLine();
Console.WriteLine($"Greedy continuations, {greedyTokens} tokens from the same prompt ids:");
Console.WriteLine();
Console.WriteLine("| prompt | llama.cpp tokenizes the text alike | identical tokens | first difference |");
Console.WriteLine("|---|---|---:|---|");
foreach (var (name, ids) in prompts)
{
    var a = OursGreedy(ids, greedyTokens, out var logits);
    var b = LlamaGreedy(ids, greedyTokens);
    int same = 0;
    while (same < a.Length && a[same] == b[same]) same++;
    string text = name.StartsWith("def") ? name : tokenizer.Decode(ids, skipSpecialTokens: true);
    var theirIds = weights.Tokenize(text, true, false, System.Text.Encoding.UTF8).Select(t => (int)t).ToArray();
    string difference = same == a.Length ? "none" :
        $"token {same}: ours {a[same]} ({Escape(tokenizer.Decode([a[same]]))}), llama.cpp {b[same]} ({Escape(tokenizer.Decode([b[same]]))}); our logit gap between them {logits[same][a[same]] - logits[same][b[same]]:G3} nats";
    Console.WriteLine($"| {name} | {(theirIds.SequenceEqual(tokenizer.Encode(text)) ? "yes" : "no")} | {same}/{a.Length} | {difference} |");
}

static string Escape(string s) => s.Replace("\n", "\\n").Replace("|", "\\|");

int[] OursGreedy(int[] prompt, int count, out List<float[]> logits)
{
    using var cache = ours.CreateCache(prompt.Length + count + 1, DType.BF16);
    var ws = new DecodeWorkspace(ours, cache);
    ours.Prefill(prompt, cache, ws.Logits);
    var result = new int[count];
    logits = [];
    for (int i = 0; i < count; i++)
    {
        int best = ArgMax(ws.Logits);
        logits.Add(ws.Logits.ToArray());
        result[i] = best;
        if (i + 1 < count) ours.Decode(best, cache, ws);
    }
    return result;
}

int[] LlamaGreedy(int[] prompt, int count)
{
    LlamaPrefill(prompt);
    var result = new int[count];
    for (int i = 0; i < count; i++)
    {
        int best = ArgMax(llama.NativeHandle.GetLogitsIth(batch.TokenCount - 1));
        result[i] = best;
        if (i + 1 < count) LlamaStep(best, prompt.Length + i);
    }
    return result;
}

static int ArgMax(ReadOnlySpan<float> x)
{
    int best = 0;
    for (int i = 1; i < x.Length; i++) if (x[i] > x[best]) best = i;
    return best;
}
