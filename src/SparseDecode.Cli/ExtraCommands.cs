using System.CommandLine;

namespace SparseDecode.Cli;

/// <summary>Commands registered beside the core ones, each from its own file through its own partial method:
/// ExtraCommands.Eval.cs implements RegisterEval, ExtraCommands.Serve.cs RegisterServe, ExtraCommands.Gpu.cs
/// RegisterGpu. (C# allows one implementation per partial method, so each file has its own.) A partial method
/// with no implementation compiles to nothing.</summary>
internal static partial class ExtraCommands
{
    public static IEnumerable<Command> All()
    {
        var list = new List<Command>();
        RegisterEval(list);
        RegisterServe(list);
        RegisterGpu(list);
        return list;
    }

    static partial void RegisterEval(List<Command> list);

    static partial void RegisterServe(List<Command> list);

    static partial void RegisterGpu(List<Command> list);
}
