using System.CommandLine;
using SparseDecode.Selection;

namespace SparseDecode.Cli.Commands;

/// <summary>`methods`: every attention method with its parameters and their defaults, from the selector table
/// itself, so that the list cannot drift from what --param accepts.</summary>
internal static class MethodsCommand
{
    public static Command Create()
    {
        var cmd = new Command("methods", "List the attention methods (--method) with their parameters (--param name=value) and defaults.");
        cmd.SetAction(_ =>
        {
            Console.Write(SelectorSpec.Describe());
            return 0;
        });
        return cmd;
    }
}
