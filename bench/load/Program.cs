using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using SparseDecode.Engine;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;
using SparseDecode.Server.Serving;

// Load benchmark of `sparsedecode serve` over loopback: for each client count, every client sends streamed
// completions back to back (greedy, ignore_eos, fixed max_tokens) and we report requests/s, generated tokens/s,
// time to first token and per-stream speed. Starts the server in-process on 127.0.0.1 (the bundled model unless
// --model) or targets --url. Bounded: clients × requests per level, each request with a timeout.
//
//   dotnet run -c Release --project bench/load -- [--clients 1,8,32] [--requests 4] [--max-tokens 64]
//       [--prompt-words 60] [--model DIR] [--method dense] [--budget 256] [--sequential] [--device cpu|cuda]
//       [--context N] [--url http://127.0.0.1:8080]

var ci = CultureInfo.InvariantCulture;
string Arg(string name, string fallback)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
}
int[] clientCounts = Arg("--clients", "1,8,32").Split(',').Select(s => int.Parse(s, ci)).ToArray();
int requestsPerClient = int.Parse(Arg("--requests", "4"), ci);
int maxTokens = int.Parse(Arg("--max-tokens", "64"), ci);
int promptWords = int.Parse(Arg("--prompt-words", "60"), ci);
string? url = Arg("--url", "") is { Length: > 0 } u ? u : null;

SparseServer? server = null;
ServedModel? model = null;
Uri baseAddress;
if (url is null)
{
    string dir = ModelLocator.Resolve(Arg("--model", "") is { Length: > 0 } m ? m : null);
    // on the GPU every batch place holds a cache slot of --context positions (default: the model's context)
    var engine = new EngineOptions
    {
        Device = Arg("--device", "cpu"),
        Capacity = Arg("--context", "") is { Length: > 0 } c ? int.Parse(c, ci) : null,
        Sequences = clientCounts.Max() + 1,
    };
    model = ServedModel.Load(dir, engine: engine);
    server = await SparseServer.StartAsync(model, new ServerOptions
    {
        Host = "127.0.0.1",
        Port = 0,
        Method = Arg("--method", "dense"),
        Budget = Arg("--budget", "256"),
        LogLevel = LogLevel.Warning,
        Scheduler = new SchedulerOptions
        {
            MaxBatch = clientCounts.Max(),
            MaxQueue = 4 * clientCounts.Max(),
            ParallelSequences = !args.Contains("--sequential"),
        },
    });
    baseAddress = server.BaseAddress;
    Console.Error.WriteLine($"in-process server at {baseAddress}: {model.Id} on {model.Engine.DeviceName}, {Environment.ProcessorCount} cores, max batch {clientCounts.Max()}, " +
                            $"{(args.Contains("--sequential") ? "sequential" : "parallel")} sequences");
}
else baseAddress = new Uri(url);

using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 })
{
    BaseAddress = baseAddress,
    Timeout = TimeSpan.FromSeconds(300),
};

string Prompt(int i)
{
    var sb = new StringBuilder($"# request {i}\ndef process(items):\n    result = []\n");
    for (int w = 0; w < promptWords; w++) sb.Append(ci, $"    value_{w} = items[{w}] * {w % 7}\n");
    return sb.ToString();
}

async Task<(double Ttft, double Total, int Tokens)> One(int i)
{
    string body = $"{{\"prompt\":{JsonSerializer.Serialize(Prompt(i), LoadJson.Default.String)},\"max_tokens\":{maxTokens}," +
                  "\"temperature\":0,\"stream\":true,\"ignore_eos\":true,\"stream_options\":{\"include_usage\":true}}";
    var sw = Stopwatch.StartNew();
    using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
    double ttft = -1;
    int tokens = 0;
    while (await reader.ReadLineAsync() is string line)
    {
        if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]") continue;
        using var doc = JsonDocument.Parse(line.AsMemory(6));
        if (doc.RootElement.TryGetProperty("usage", out var usage)) tokens = usage.GetProperty("completion_tokens").GetInt32();
        else if (ttft < 0) ttft = sw.Elapsed.TotalSeconds;
    }
    return (ttft, sw.Elapsed.TotalSeconds, tokens);
}

await One(-1); // warm-up: JIT, page-in of the weights
Console.WriteLine($"| clients | requests | wall s | requests/s | generated tokens/s | mean TTFT s | p50 latency s | p95 latency s | tokens/s per stream |");
Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
foreach (int clients in clientCounts)
{
    var results = new List<(double Ttft, double Total, int Tokens)>();
    var wall = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
    {
        for (int r = 0; r < requestsPerClient; r++)
        {
            var res = await One(c * 1000 + r);
            lock (results) results.Add(res);
        }
    }));
    double seconds = wall.Elapsed.TotalSeconds;
    var totals = results.Select(x => x.Total).Order().ToArray();
    int tokens = results.Sum(x => x.Tokens);
    double perStream = results.Average(x => x.Tokens / Math.Max(1e-9, x.Total - x.Ttft));
    Console.WriteLine(string.Create(ci,
        $"| {clients} | {results.Count} | {seconds:F1} | {results.Count / seconds:F2} | {tokens / seconds:F1} | {results.Average(x => x.Ttft):F3} | {totals[totals.Length / 2]:F2} | {totals[(int)Math.Ceiling(0.95 * totals.Length) - 1]:F2} | {perStream:F1} |"));
}

if (server is not null) await server.DisposeAsync();
model?.Dispose();

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class LoadJson : System.Text.Json.Serialization.JsonSerializerContext;
