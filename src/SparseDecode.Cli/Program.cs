using System.CommandLine;
using SparseDecode.Cli.Commands;

namespace SparseDecode.Cli;

public static class Program
{
    public static int Main(string[] args)
    {
        var root = new RootCommand("SparseDecode: long-context LLM decoding with sparse attention over the KV cache.");
        root.Subcommands.Add(ScoreCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(CalibrateCommand.Create());
        foreach (var extra in ExtraCommands.All()) root.Subcommands.Add(extra);
        return root.Parse(args).Invoke();
    }
}
