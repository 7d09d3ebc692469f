using SparseDecode.Cuda;
using SparseDecode.Engine;
using SparseDecode.Model;
using SparseDecode.Tokenization;
using SparseDecode.Cuda.Interop;
using SparseDecode.Cuda.Kernels;
using SparseDecode.Cuda.Model;
using SparseDecode.Cuda.Selection;

namespace SparseDecode.Cli.Output;

/// <summary>Turns the engine's typed errors into one line on stderr and a non-zero exit code.</summary>
internal static class CliErrors
{
    public static int Run(Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is ModelFormatException or TokenizerFormatException or ContextOverflowException
                                      or NonFiniteLogitsException or TokenizerTimeoutException or ArgumentException or FormatException or InvalidOperationException or IOException
                                      or UnauthorizedAccessException or CudaException)
        {
            Console.Out.Flush();
            Console.Error.WriteLine($"error: {Sentence(e)}");
            return 1;
        }
    }

    /// <summary>The message without .NET's " (Parameter 'name')" suffix, which names a C# parameter the user never saw.</summary>
    public static string Sentence(Exception e) =>
        e is ArgumentException { ParamName: { } name } a ? a.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message;
}
