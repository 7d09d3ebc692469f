using Spectre.Console;

namespace SparseDecode.Cli.Output;

/// <summary>Shows the console's cursor again if Ctrl+C ends the process while it is registered.</summary>
internal sealed class CursorOnCancel : IDisposable
{
    private readonly IAnsiConsole _console;

    public CursorOnCancel(IAnsiConsole console)
    {
        _console = console;
        Console.CancelKeyPress += Show;
    }

    private void Show(object? sender, ConsoleCancelEventArgs e) => _console.Cursor.Show();

    public void Dispose() => Console.CancelKeyPress -= Show;
}
