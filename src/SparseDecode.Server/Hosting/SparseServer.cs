using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SparseDecode.Server.Scheduling;
using SparseDecode.Server.Serving;

namespace SparseDecode.Server.Hosting;

/// <summary>The OpenAI-compatible HTTP server: Kestrel with minimal-API routes over one model and one batch
/// scheduler. Start it, read BaseAddress, dispose it to stop (queued and running requests get 503).</summary>
public sealed class SparseServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly bool _ownsModel;

    private SparseServer(WebApplication app, ServedModel model, BatchScheduler scheduler, ServerMetrics metrics, bool ownsModel)
    {
        _app = app;
        Model = model;
        Scheduler = scheduler;
        Metrics = metrics;
        _ownsModel = ownsModel;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        BaseAddress = new Uri(addresses.First());
    }

    public ServedModel Model { get; }
    public BatchScheduler Scheduler { get; }
    public ServerMetrics Metrics { get; }
    /// <summary>Where the server listens, with the port Kestrel chose when asked for port 0.</summary>
    public Uri BaseAddress { get; }

    /// <summary>Loads the model from a directory and starts serving it.</summary>
    public static async Task<SparseServer> StartAsync(string modelDirectory, ServerOptions options, CancellationToken cancel = default)
    {
        var model = ServedModel.Load(modelDirectory, options.ModelName, options.Engine with { Sequences = options.Scheduler.MaxBatch + 1 + options.Scheduler.PrefixCacheEntries });
        try
        {
            return await StartAsync(model, options, ownsModel: true, cancel);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Serves an already loaded model (several servers may share one, e.g. in tests); the caller keeps it.</summary>
    public static Task<SparseServer> StartAsync(ServedModel model, ServerOptions options, CancellationToken cancel = default) =>
        StartAsync(model, options, ownsModel: false, cancel);

    // Kestrel's configuration loader enumerates an X509Certificate2Collection even without HTTPS. In the trimmed
    // single-file CLI the trimmer kept the collection's IEnumerable<X509Certificate2> but dropped the method that
    // implements it (TypeLoadException at start); keeping its public methods keeps the build whole.
    [DynamicDependency(DynamicallyAccessedMemberTypes.PublicMethods, typeof(X509Certificate2Collection))]
    private static async Task<SparseServer> StartAsync(ServedModel model, ServerOptions options, bool ownsModel, CancellationToken cancel)
    {
        var plans = new PlanFactory(options, model.Engine.Config, model.Engine.MaxContext, Selection.MethodDefaults.Load(model.Directory));
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "sparsedecode" });
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", options.LogLevel > LogLevel.Warning ? options.LogLevel : LogLevel.Warning);
        // The host logs a failed start with its stack trace before rethrowing; StartListening reports it in one sentence.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        // Kestrel waits this long for handlers once the drain has ended them all; the drain itself is bounded.
        builder.Services.Configure<HostOptions>(h => h.ShutdownTimeout = options.DrainTimeout + TimeSpan.FromSeconds(5));
        // Each accepted connection inherits the listening socket's send buffer: a fixed size instead of the kernel's
        // autotuning (up to megabytes) bounds what a client that stops reading leaves queued in the kernel.
        builder.WebHost.UseSockets(s => s.CreateBoundListenSocket = endpoint =>
        {
            var socket = Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets.SocketTransportOptions.CreateDefaultBoundListenSocket(endpoint);
            socket.SendBufferSize = SendBufferBytes;
            return socket;
        });
        builder.WebHost.ConfigureKestrel(k =>
        {
            // The handlers check Content-Length first and answer with an OpenAI error object; Kestrel's own limit
            // catches bodies without a length (chunked) while they are read.
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
            k.AddServerHeader = false;
            if (IPAddress.TryParse(options.Host, out var ip)) k.Listen(ip, options.Port);
            else if (options.Host == "localhost") k.ListenLocalhost(options.Port);
            else throw new ArgumentException($"--host '{options.Host}' is not an IP address or localhost.");
        });
        var app = builder.Build();
        // the buffers and step graphs of dense batches and of the default method's, before the first request
        model.Exclusive(() =>
        {
            model.Engine.WarmUp(null, options.Scheduler.MaxBatch);
            if (plans.Create(null) is { } plan) model.Engine.WarmUp(plan, options.Scheduler.MaxBatch);
        });
        var metrics = new ServerMetrics();
        var scheduler = new BatchScheduler(model, options.Scheduler, metrics);
        try
        {
            var endpoints = new OpenAiEndpoints(model, scheduler, metrics, options, plans,
                app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("SparseDecode.Server"));
            endpoints.Map(app);
            // Stopping (SIGTERM, Ctrl+C): Kestrel stops accepting while the scheduler drains what it holds.
            app.Lifetime.ApplicationStopping.Register(() => _ = scheduler.DrainAsync(options.DrainTimeout));
            await StartListening(app, options, cancel);
            return new SparseServer(app, model, scheduler, metrics, ownsModel);
        }
        catch
        {
            scheduler.Dispose();
            await app.DisposeAsync();
            throw;
        }
    }

    /// <summary>The kernel's send buffer per connection (Linux reserves twice this).</summary>
    public const int SendBufferBytes = 64 * 1024;

    /// <summary>Starts Kestrel; an address or port that cannot be bound is one sentence (IOException), not a logged
    /// stack trace.</summary>
    private static async Task StartListening(WebApplication app, ServerOptions options, CancellationToken cancel)
    {
        try
        {
            await app.StartAsync(cancel);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
        {
            throw new IOException($"Cannot listen on {options.Host}:{options.Port}: {WhyNotBound(e)}.");
        }
    }

    private static string WhyNotBound(Exception e)
    {
        for (var inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is Microsoft.AspNetCore.Connections.AddressInUseException) return "it is already in use";
            if (inner is System.Net.Sockets.SocketException s)
                return s.SocketErrorCode switch
                {
                    System.Net.Sockets.SocketError.AddressAlreadyInUse => "it is already in use",
                    System.Net.Sockets.SocketError.AddressNotAvailable => "the address is not one of this machine's (use 0.0.0.0 for all of them)",
                    System.Net.Sockets.SocketError.AccessDenied => "permission denied (ports below 1024 need privileges)",
                    _ => s.Message.TrimEnd('.'),
                };
        }
        return e.Message.TrimEnd('.');
    }

    /// <summary>Asks the host to stop as SIGTERM does: stop accepting, drain for --drain-timeout, then end the rest.</summary>
    public void RequestShutdown() => _app.Lifetime.StopApplication();

    /// <summary>Waits until the host is asked to stop (Ctrl+C, SIGTERM) or `cancel` fires.</summary>
    public Task WaitForShutdownAsync(CancellationToken cancel = default) => _app.WaitForShutdownAsync(cancel);

    public async ValueTask DisposeAsync()
    {
        // Scheduler first: its sequences end with 503, which lets the handlers still streaming finish quickly.
        Scheduler.Dispose();
        using (var grace = new CancellationTokenSource(TimeSpan.FromSeconds(5))) await _app.StopAsync(grace.Token);
        await _app.DisposeAsync();
        if (_ownsModel) Model.Dispose();
    }
}
