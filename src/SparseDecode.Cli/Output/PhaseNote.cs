using System.Globalization;
using SparseDecode.Evaluation;

namespace SparseDecode.Cli.Output;

/// <summary>One stderr line before a phase that runs long without output (a dense prefill of thousands of tokens
/// takes a minute on 2 cores), with the rough estimate the eval progress bar also uses.</summary>
internal static class PhaseNote
{
    /// <summary>Prompts from this length on get the note.</summary>
    public const int LongPrompt = 1024;

    public static string Prefill(int tokens) => string.Create(CultureInfo.InvariantCulture,
        $"prefilling {tokens} tokens (dense; about {Math.Max(1, GridRunner.PrefillSeconds(tokens)):0} s on 2 cores)…");
}
