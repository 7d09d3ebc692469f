using System.Text.Json;
using System.Text.Json.Nodes;

namespace SparseDecode.Tests.Cli;

/// <summary>Output for machines (--json: one JSON object on stdout, nothing else) and for people (a note when the
/// context ends a generation).</summary>
[Collection("console")]
public class OutputTests
{
    /// <summary>The bundled model with its context cut to a few tokens: files copied, config.json rewritten.</summary>
    private static Fixtures.TempDir ShortContextModel(int context)
    {
        var tmp = new Fixtures.TempDir();
        foreach (string f in Directory.GetFiles(Fixtures.BundledModel))
        {
            string name = Path.GetFileName(f);
            if (name == "config.json")
            {
                var cfg = JsonNode.Parse(File.ReadAllText(f))!;
                cfg["max_position_embeddings"] = context;
                File.WriteAllText(tmp.File(name), cfg.ToJsonString());
            }
            else File.Copy(f, tmp.File(name));
        }
        return tmp;
    }

    [Fact]
    public void GenerateJsonIsOneObjectWithTheText()
    {
        var (code, stdout, stderr) = CliTests.Run("generate", "--prompt", "def f(x):", "--max-tokens", "6", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(6, root.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(6, root.GetProperty("token_ids").GetArrayLength());
        Assert.Equal("length", root.GetProperty("finish_reason").GetString());
        Assert.True(root.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.NotEqual("", root.GetProperty("text").GetString());
    }

    [Fact]
    public void BenchJsonIsOneObjectWithTheSpeeds()
    {
        var (code, stdout, stderr) = CliTests.Run("bench", "--context", "64", "--steps", "2", "--kv-type", "q8", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(64, doc.RootElement.GetProperty("context").GetInt32());
        Assert.Equal("q8", doc.RootElement.GetProperty("kv_cache").GetString());
        Assert.True(doc.RootElement.GetProperty("decode_tokens_per_second").GetDouble() > 0);
        Assert.Contains("prefill", stderr); // the phases are shown on stderr, stdout stays JSON
    }

    [Fact]
    public void BatchedBenchTimesTheMethodAndDenseInOneRun()
    {
        var (code, stdout, stderr) = CliTests.Run("bench", "--context", "48", "--steps", "2", "--batch", "3", "--method", "quest", "--budget", "16", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(3, doc.RootElement.GetProperty("batch").GetInt32());
        var runs = doc.RootElement.GetProperty("runs").EnumerateArray().ToArray();
        Assert.Equal(["quest", "dense"], runs.Select(r => r.GetProperty("method").GetString()));
        Assert.All(runs, r => Assert.True(r.GetProperty("decode_tokens_per_second").GetDouble() > 0));
    }

    [Fact]
    public void EvalJsonHasOneRowPerMethodAndBudget()
    {
        using var tmp = new Fixtures.TempDir();
        var grid = new SparseDecode.Evaluation.EvalGrid { Methods = ["dense", "lfps"], Budgets = ["5%"], Contexts = [1024], Tasks = ["passkey"], Samples = 2 };
        var cells = grid.Pairs.SelectMany(p => Enumerable.Range(0, 2).Select(s => new SparseDecode.Evaluation.CellResult
        {
            Key = $"{p}|{s}", Model = "m", Method = p.Method, Budget = p.Budget, Context = 1024, Task = "passkey", Sample = s, Seed = 1,
            Score = 1, PromptTokens = 960, BudgetTokens = 48, StepMs = 2,
        })).ToList();
        new SparseDecode.Evaluation.ReportWriter(tmp.Path).WriteAll(new SparseDecode.Evaluation.EvalResultsFile
        {
            Command = "c", Model = "m", Machine = "x", Created = "now", WallSeconds = 1,
            Grid = SparseDecode.Evaluation.GridDescription.Of(grid), Summary = SparseDecode.Evaluation.EvalSummary.Summarize(cells, grid), Cells = cells,
        }, grid, null);
        var (code, stdout, stderr) = CliTests.Run("eval", "--report-only", "--no-heatmap", "--out", tmp.Path, "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(2, doc.RootElement.GetProperty("summary").GetArrayLength());
        Assert.Equal(1.0, doc.RootElement.GetProperty("summary")[1].GetProperty("mean_accuracy").GetDouble());
    }

    [Fact]
    public void GenerationStoppedByTheContextSaysSo()
    {
        using var model = ShortContextModel(16);
        var (code, stdout, stderr) = CliTests.Run("generate", "--model", model.Path, "--prompt", "def f(x):", "--max-tokens", "64", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        int prompt = doc.RootElement.GetProperty("prompt_tokens").GetInt32();
        // every position holds a token; the last token generated is sampled from the last position's logits
        int generated = 16 - prompt + 1;
        Assert.Equal(generated, doc.RootElement.GetProperty("completion_tokens").GetInt32());
        Assert.Equal("context", doc.RootElement.GetProperty("finish_reason").GetString());
        Assert.Contains($"note: stopped at the model's context limit of 16 tokens (prompt {prompt} + {generated} generated), before --max-tokens 64.", stderr);
        // a generation that ends at its own --max-tokens gets no note
        Assert.DoesNotContain("note:", CliTests.Run("generate", "--model", model.Path, "--prompt", "def f(x):", "--max-tokens", "2").stderr);
    }
}

/// <summary>The eval table in an 80-column terminal: compact, nothing wrapped or cut; wide terminals get one table.</summary>
public class EvalTableTests
{
    private static (IReadOnlyList<SparseDecode.Evaluation.MethodSummary>, SparseDecode.Evaluation.EvalGrid) Rows()
    {
        var grid = new SparseDecode.Evaluation.EvalGrid
        {
            Methods = SparseDecode.Selection.SelectorSpec.Methods, Budgets = ["2%", "5%"], Contexts = [8192],
            Tasks = SparseDecode.Evaluation.RulerTasks.All, Samples = 4,
        };
        var cells = new List<SparseDecode.Evaluation.CellResult>();
        foreach (var pair in grid.Pairs)
            foreach (string task in grid.Tasks)
                for (int s = 0; s < grid.Samples; s++)
                    cells.Add(new SparseDecode.Evaluation.CellResult
                    {
                        Key = $"{pair}|{task}|{s}", Model = "m", Method = pair.Method, Budget = pair.Budget, Context = 8192, Task = task, Sample = s,
                        Seed = 1, Score = (s + pair.Method.Length) % 3 == 0 ? 1 : 0.5, Nll = 1.4, PromptTokens = 8128, BudgetTokens = 162,
                        StepMs = 12.3456, MassRecall = 0.8, KeysAttendedPerStep = 1000,
                    });
        return (SparseDecode.Evaluation.EvalSummary.Summarize(cells, grid), grid);
    }

    private static string Render(int width)
    {
        var (rows, grid) = Rows();
        var sw = new StringWriter();
        var console = Spectre.Console.AnsiConsole.Create(new Spectre.Console.AnsiConsoleSettings
        {
            Out = new Spectre.Console.AnsiConsoleOutput(sw), Ansi = Spectre.Console.AnsiSupport.No,
            ColorSystem = Spectre.Console.ColorSystemSupport.NoColors, Interactive = Spectre.Console.InteractionSupport.No,
        });
        console.Profile.Width = width;
        console.Write(SparseDecode.Cli.Commands.EvalTable.For(rows, grid, width));
        return sw.ToString();
    }

    [Fact]
    public void At80ColumnsNoLineWrapsAndNoHeaderIsCut()
    {
        string text = Render(80);
        var lines = text.ReplaceLineEndings("\n").Split('\n');
        Assert.All(lines, l => Assert.True(l.TrimEnd().Length <= 80, l));
        Assert.DoesNotContain("…", text);
        // one row per method and budget in each of the two tables, every number whole on its line
        var prhs = lines.Where(l => l.StartsWith("prhs ", StringComparison.Ordinal)).ToList();
        Assert.Equal(4, prhs.Count);
        Assert.Contains(lines, l => l.StartsWith("method", StringComparison.Ordinal) && l.Contains("mval") && l.Contains("%dense"));
        Assert.Contains(lines, l => l.StartsWith("method", StringComparison.Ordinal) && l.Contains("95% CI") && l.Contains("speed-up"));
        Assert.Contains("mval = multivalue", text.ReplaceLineEndings(" "));
    }

    [Fact]
    public void WideTerminalsGetOneTable()
    {
        string text = Render(200);
        Assert.Contains("multivalue", text);
        Assert.Single(text.Split('\n'), l => l.Contains("method"));
    }

    [Fact]
    public void ProgressDescriptionLeavesRoomForTheEta()
    {
        string d = SparseDecode.Cli.Commands.EvalCommand.Fit(new string('x', 200), 80);
        Assert.True(d.Length <= 80 - 20 - 32, d);
        Assert.EndsWith("…", d);
        Assert.Equal("short", SparseDecode.Cli.Commands.EvalCommand.Fit("short", 80));
    }
}
