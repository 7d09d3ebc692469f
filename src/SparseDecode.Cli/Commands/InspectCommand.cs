using System.CommandLine;
using SparseDecode.Engine;
using SparseDecode.Model;
using Spectre.Console;
using SparseDecode.Cpu;
using SparseDecode.Cli.Output;

namespace SparseDecode.Cli.Commands;

/// <summary>`inspect`: what a checkpoint is — architecture, size, types, context.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var model = CommonOptions.Model();
        var checkWeights = new Option<bool>("--check-weights") { Description = "Also scan every tensor for NaN or infinite values (reads the whole checkpoint) and report the first one." };
        var cmd = new Command("inspect", "Print a checkpoint's architecture, parameter count, dtype and context length.") { model, checkWeights };
        cmd.SetAction(r => CliErrors.Run(() =>
        {
            string dir = ModelLocator.Resolve(r.GetValue(model));
            using var t = Transformer.Load(dir);
            var c = t.Config;
            var table = new Table().Border(TableBorder.Rounded).AddColumn("property").AddColumn("value");
            void Row(string k, string v) => table.AddRow(Markup.Escape(k), Markup.Escape(v));
            Row("directory", dir);
            Row("architecture", c.ArchitectureName);
            Row("parameters", $"{t.ParameterCount:N0}");
            Row("dtype", t.WeightType.Name() + (c.TorchDType is null ? "" : $" (config: {c.TorchDType})"));
            Row("context length", $"{c.MaxPositions:N0}");
            Row("layers", c.NumLayers.ToString());
            Row("hidden / intermediate", $"{c.HiddenSize} / {c.IntermediateSize}");
            Row("heads (query / kv) × head_dim", $"{c.NumHeads} / {c.NumKvHeads} × {c.HeadDim}");
            Row("vocabulary", $"{c.VocabSize:N0}");
            Row("rope", $"{c.Rope.Type} θ={c.Rope.Theta}" + (c.Rope.Type == Model.RopeType.Default ? "" : $" factor={c.Rope.Factor}"));
            Row("tied embeddings", c.TieEmbeddings.ToString());
            Row("qkv bias", c.QkvBias.ToString());
            Row("weights read per token", $"{t.WeightBytesPerToken / 1e6:F1} MB");
            AnsiConsole.Write(table);
            if (!r.GetValue(checkWeights)) return 0;
            using var store = WeightStore.Open(dir);
            if (WeightCheck.FirstNonFinite(store) is { } bad)
            {
                Console.Error.WriteLine($"error: {dir}: tensor '{bad.Tensor}' holds {bad.Kind} at element {bad.Element}; the checkpoint is corrupt.");
                return 1;
            }
            Console.WriteLine("weights: every tensor is finite");
            return 0;
        }));
        return cmd;
    }
}
