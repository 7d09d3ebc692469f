using System.CommandLine;
using System.Text.RegularExpressions;
using SparseDecode.Engine;
using SparseDecode.Selection;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`methods`: every attention method with its parameters and their defaults, from the selector table
/// itself, so that the list cannot drift from what --param accepts; a setting the model's sparse_methods.json
/// overrides is shown with the value in effect and the file it comes from.</summary>
internal static partial class MethodsCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        model.Description = "Model whose stored settings (sparse_methods.json) are shown in effect. Default: the bundled model.";
        var cmd = new Command("methods", "List the attention methods (--method) with their parameters (--param name=value), their defaults and the values in effect for a model.")
            { model };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            Console.Write(WithStoredSettings(SelectorSpec.Describe(), MethodDefaults.Load(dir), Path.Combine(dir, MethodDefaults.FileName)));
            return 0;
        }));
        return cmd;
    }

    [GeneratedRegex(@"^(\w+): ")]
    private static partial Regex MethodLine();

    [GeneratedRegex(@"^  (\w+)\s")]
    private static partial Regex ParameterLine();

    /// <summary>The description with "; this model: VALUE (FILE)" after each parameter the file sets.</summary>
    internal static string WithStoredSettings(string description, MethodDefaults stored, string file)
    {
        var lines = description.Split('\n');
        string method = "";
        for (int i = 0; i < lines.Length; i++)
        {
            if (MethodLine().Match(lines[i]) is { Success: true } m) method = m.Groups[1].Value;
            else if (ParameterLine().Match(lines[i]) is { Success: true } p
                     && stored.Apply(method, new Dictionary<string, string>()).TryGetValue(p.Groups[1].Value, out var value))
                lines[i] += $"; this model: {value} ({file})";
        }
        return string.Join('\n', lines);
    }
}
