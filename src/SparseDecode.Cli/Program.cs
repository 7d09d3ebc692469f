using System.CommandLine;
using System.CommandLine.Help;
using SparseDecode.Cli.Commands;
using SparseDecode.Cpu;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;
using SparseDecode.Cuda;

namespace SparseDecode.Cli;

public static class Program
{
    public const string CommandName = "sparsedecode";

    public static int Main(string[] args)
    {
        Backends.BackendRegistry.Register(Cuda.CudaBackend.Instance);
        TensorParallel.RankLauncher.CommandLine = args;   // workers of --tensor-parallel are started with the same
        // A plain command named as installed, not RootCommand, whose name is the executable's (SparseDecode.Cli under
        // dotnet run): help then says "sparsedecode" however the program was started.
        var root = new Command(CommandName, "SparseDecode: long-context LLM decoding with sparse attention over the KV cache.")
        {
            new HelpOption(), new VersionOption(),
        };
        root.Subcommands.Add(MethodsCommand.Create());
        root.Subcommands.Add(ScoreCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(CalibrateCommand.Create());
        root.Subcommands.Add(ExportGgufCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(GpuBenchCommand.Create());
        root.Subcommands.Add(GpuCheckCommand.Create());
        root.Subcommands.Add(GpuNcclCheckCommand.Create());
        root.Subcommands.Add(GpuStepCommand.Create());
        root.Subcommands.Add(GpuPrefillCommand.Create());
        var threads = CommonOptions.Threads();
        root.Options.Add(threads);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count == 0) WorkerPool.SetSharedThreads(parsed.GetValue(threads));
        return parsed.Invoke();
    }
}
