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
        root.Subcommands.Add(AttentionOpCommand.Create());
        root.Subcommands.Add(GpuPrefillCommand.Create());
        var threads = CommonOptions.Threads();
        root.Options.Add(threads);
        var parsed = root.Parse(args);
        if (args.Length == 0)
        {
            // No command at all: the overview of the commands, as `--help` gives it.
            root.Parse(["--help"]).Invoke();
            return 1;
        }
        if (parsed.Errors.Count > 0) return ParseError(parsed);
        WorkerPool.SetSharedThreads(parsed.GetValue(threads));
        return parsed.Invoke();
    }

    /// <summary>A command line that does not parse: its first problem in one sentence on stderr and exit 1, as
    /// for every other mistake, instead of the help page and one line per error.</summary>
    private static int ParseError(ParseResult parsed)
    {
        var command = parsed.CommandResult.Command;
        string path = command.Name == CommandName ? CommandName : $"{CommandName} {command.Name}";
        // A misspelt command also lacks the required command; the misspelling is the one to report.
        string first = parsed.Errors.Select(e => e.Message).FirstOrDefault(m => m.StartsWith("Unrecognized", StringComparison.Ordinal))
            ?? parsed.Errors[0].Message;
        var unknown = System.Text.RegularExpressions.Regex.Match(first, "^Unrecognized command or argument '(.*)'\\.$");
        var badValue = System.Text.RegularExpressions.Regex.Match(first, "^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'\\.$");
        string sentence;
        if (unknown.Success && command.Name == CommandName && !unknown.Groups[1].Value.StartsWith('-'))
        {
            string word = unknown.Groups[1].Value;
            string? near = command.Subcommands.Select(c => c.Name).OrderBy(n => Distance(n, word)).FirstOrDefault(n => Distance(n, word) <= 2);
            sentence = near is null
                ? $"'{word}' is not a {CommandName} command ({CommandName} --help lists them)."
                : $"'{word}' is not a {CommandName} command; did you mean '{near}'?";
        }
        else if (unknown.Success)
        {
            string word = unknown.Groups[1].Value;
            sentence = word.StartsWith('-')
                ? $"{path} has no option {word} ({path} --help lists its options)."
                : $"{path} takes no argument '{word}' ({path} --help lists its options).";
        }
        else if (badValue.Success)
        {
            string kind = badValue.Groups[3].Value switch
            {
                "System.Int32" or "System.Int64" or "System.Nullable`1[System.Int32]" => "an integer",
                "System.Double" or "System.Nullable`1[System.Double]" => "a number",
                "System.Boolean" => "true or false",
                _ => "a " + badValue.Groups[3].Value,
            };
            sentence = $"{badValue.Groups[2].Value} takes {kind}, got '{badValue.Groups[1].Value}'.";
        }
        else
        {
            sentence = first.EndsWith('.') ? first : first + ".";
        }
        Console.Error.WriteLine("error: " + sentence);
        return 1;
    }

    /// <summary>Edit distance, for suggesting the command a typo meant.</summary>
    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }
}
