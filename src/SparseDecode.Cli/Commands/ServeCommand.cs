using System.CommandLine;
using Microsoft.Extensions.Logging;
using SparseDecode.Engine;
using SparseDecode.Server.Hosting;
using SparseDecode.Server.Scheduling;

namespace SparseDecode.Cli.Commands;

/// <summary>`serve`: an OpenAI-compatible HTTP server (completions, chat completions, streaming) with continuous
/// batching and per-request sparse attention.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var host = new Option<string>("--host") { Description = "Address to listen on (an IP address or localhost).", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0 = any free port).", DefaultValueFactory = _ => 8080 };
        var name = new Option<string?>("--served-model-name") { Description = "Model id reported by /v1/models (default: the model directory's name)." };
        var kv = CommonOptions.CacheType();
        var maxBatch = new Option<int>("--max-batch") { Description = "Sequences decoded together at most (continuous batching).", DefaultValueFactory = _ => 16 };
        var maxQueue = new Option<int>("--max-queue") { Description = "Requests waiting at most; beyond it requests get 429.", DefaultValueFactory = _ => 64 };
        var maxTokens = new Option<int>("--max-tokens-limit") { Description = "Largest max_tokens a request may ask for.", DefaultValueFactory = _ => 4096 };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "Largest request body; larger ones get 413.", DefaultValueFactory = _ => 1L << 20 };
        var prefillChunk = new Option<int>("--prefill-chunk") { Description = "Prompt tokens prefilled per scheduler step, so long prompts do not stall running streams.", DefaultValueFactory = _ => 256 };
        var sequential = new Option<bool>("--sequential") { Description = "Decode the sequences of a step one after another instead of in parallel." };
        var quiet = new Option<bool>("--quiet") { Description = "Log warnings and errors only." };
        var method = MethodOptions.Create();
        var cmd = new Command("serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics).")
            { model, host, port, name, kv, maxBatch, maxQueue, maxTokens, maxBody, prefillChunk, sequential, quiet, method.Method, method.Budget, method.Params };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            var options = new ServerOptions
            {
                Host = r.GetValue(host)!,
                Port = r.GetValue(port),
                ModelName = r.GetValue(name),
                Method = r.GetValue(method.Method)!,
                Budget = r.GetValue(method.Budget)!,
                Params = MethodOptions.ParseParams(r.GetValue(method.Params) ?? []),
                MaxTokensLimit = r.GetValue(maxTokens),
                MaxBodyBytes = r.GetValue(maxBody),
                LogLevel = r.GetValue(quiet) ? LogLevel.Warning : LogLevel.Information,
                Scheduler = new SchedulerOptions
                {
                    MaxBatch = r.GetValue(maxBatch),
                    MaxQueue = r.GetValue(maxQueue),
                    PrefillChunk = r.GetValue(prefillChunk),
                    ParallelSequences = !r.GetValue(sequential),
                    CacheType = CommonOptions.ParseCacheType(r.GetValue(kv)!),
                },
            };
            if (options.Port is < 0 or > 65535) throw new ArgumentException($"--port must be in 0..65535, got {options.Port}.");
            if (options.MaxTokensLimit < 1) throw new ArgumentException($"--max-tokens-limit must be ≥ 1, got {options.MaxTokensLimit}.");
            if (options.MaxBodyBytes < 1024) throw new ArgumentException($"--max-body-bytes must be ≥ 1024, got {options.MaxBodyBytes}.");
            EnsurePortFree(options.Host, options.Port);
            return Serve(dir, options).GetAwaiter().GetResult();
        }));
        return cmd;
    }

    /// <summary>A busy port as one sentence before the host starts: the host itself logs the bind failure with its
    /// whole stack trace before it throws.</summary>
    private static void EnsurePortFree(string host, int port)
    {
        if (port == 0) return;
        var address = host == "localhost" ? System.Net.IPAddress.Loopback
            : System.Net.IPAddress.TryParse(host, out var a) ? a : null;
        if (address is null) return; // a host name: the server reports it
        try
        {
            var probe = new System.Net.Sockets.TcpListener(address, port);
            probe.Start();
            probe.Stop();
        }
        catch (System.Net.Sockets.SocketException e) when (e.SocketErrorCode == System.Net.Sockets.SocketError.AddressAlreadyInUse)
        {
            throw new ArgumentException($"--port {port}: {host}:{port} is already in use; stop what listens there or choose another port (--port 0 picks a free one).");
        }
    }

    private static async Task<int> Serve(string dir, ServerOptions options)
    {
        await using var server = await SparseServer.StartAsync(dir, options);
        var m = server.Model;
        Console.Error.WriteLine($"serving {m.Id} ({m.Transformer.Config.NumLayers} layers, context {m.Context}, chat format {m.Template.Format}, method {options.Method}) at {server.BaseAddress}");
        Console.Error.WriteLine("endpoints: POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health, GET /metrics; Ctrl+C stops");
        await server.WaitForShutdownAsync();
        return 0;
    }
}
