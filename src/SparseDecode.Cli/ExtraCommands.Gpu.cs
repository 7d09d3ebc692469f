using System.CommandLine;
using SparseDecode.Cli.Commands;

namespace SparseDecode.Cli;

internal static partial class ExtraCommands
{
    static partial void RegisterGpu(List<Command> list)
    {
        list.Add(GpuBenchCommand.Create());
        list.Add(GpuCheckCommand.Create());
        list.Add(GpuNcclCheckCommand.Create());
        list.Add(GpuStepCommand.Create());
        list.Add(GpuPrefillCommand.Create());
    }
}
