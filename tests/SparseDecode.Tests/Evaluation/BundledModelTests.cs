using System.Text.Json;
using SparseDecode.Engine;
using SparseDecode.Evaluation;
using SparseDecode.Selection;
using SparseDecode.Tokenization;
using SparseDecode.Cpu;

namespace SparseDecode.Tests.Evaluation;

/// <summary>The evaluation on the bundled model: prompts tokenized the way training built them (checked against
/// the prompt train.py exported in reference.json), and a tiny grid that resumes from its store.</summary>
public class BundledModelTests
{
    private static readonly Lazy<(Transformer Model, ModelTaskTokenizer Tok, PromptBuilder Builder)> Bundled = new(() =>
    {
        string dir = Fixtures.BundledModel;
        var model = Transformer.Load(dir);
        var tok = new ModelTaskTokenizer(Tokenizer.FromDirectory(dir), model.Config);
        var corpus = HeldoutCorpus.Load(HeldoutCorpus.Find(dir)!, tok);
        return (model, tok, new PromptBuilder(corpus, tok));
    });

    [Fact]
    public void NeedlesAndQuestionAreTokenizedAsInTheTrainingPrompt()
    {
        var (_, tok, builder) = Bundled.Value;
        using var doc = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Fixtures.BundledModel, "reference.json")));
        var r = doc.RootElement.GetProperty("retrieval");
        int[] prompt = r.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] answer = r.GetProperty("answer_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string value = r.GetProperty("answer").GetString()!.Trim();
        // train.py: task_sequence(Random(3), heldout, "passkey", 1024, depth 0.3)
        Assert.Equal(tok.BeginOfText, prompt[0]);
        Assert.InRange(prompt.Length, 900, 1024);
        Assert.Equal(answer, tok.Encode(" " + value));
        int[] needle = tok.Encode($"# The pass key is {value}. Remember it. {value} is the pass key.\n");
        int at = IndexOf(prompt, needle);
        Assert.True(at > 0, "the separately tokenized needle appears verbatim in the training prompt");
        Assert.True(builder.EndsLine(prompt[at - 1]), "the needle follows a token that ends a line");
        Assert.InRange((at - 1) / (double)(prompt.Length - 1 - needle.Length), 0.29, 0.41);
        int[] question = tok.Encode("# What is the pass key? The pass key is");
        Assert.Equal(question, prompt[^question.Length..]);
    }

    [Fact]
    public void BuiltPromptsDecodeToTheirTaskText()
    {
        var (_, tok, builder) = Bundled.Value;
        foreach (string task in RulerTasks.NeedleTasks)
        {
            var s = builder.Build(task, 2048, 0.4, seed: 3);
            Assert.InRange(s.Prompt.Length, 1900, 2048);
            var inst = RulerTasks.Generate(task, new Random(s.Seed));
            for (int i = 0; i < s.NeedleStarts.Length; i++)
            {
                string text = tok.Decode(s.Prompt.AsSpan(s.NeedleStarts[i], s.NeedleLengths[i]));
                Assert.Contains(text, inst.Needles);
                Assert.True(builder.EndsLine(s.Prompt[s.NeedleStarts[i] - 1]));
            }
            Assert.Equal(inst.Answer, tok.Decode(s.Answer));
            Assert.Equal(inst.Question, tok.Decode(s.Prompt.AsSpan(s.Prompt.Length - s.QuestionLength)));
        }
    }

    [Fact]
    public void GridResumesWithoutRerunningStoredCells()
    {
        var (model, _, builder) = Bundled.Value;
        using var tmp = new Fixtures.TempDir();
        var grid = new EvalGrid
        {
            Methods = ["dense", "streaming", "oracle"], Budgets = ["64"], Contexts = [512], Tasks = ["passkey"], Samples = 1,
            TimingSteps = 4, FidelitySteps = 2,
        };
        grid.Validate(model.Config);
        Assert.Equal(3, grid.CellCount);
        var ran = new List<CellResult>();
        var first = new GridRunner(new CpuEngine(model), builder, grid, new ResultStore(tmp.Path), "bundled",
            p => grid.CreatePlan(p, model.Config, model.Config.MaxPositions), s => new SparsityMeter(s)) { CellDone = ran.Add, WarmUpFirst = false };
        var cells = first.Run();
        Assert.Equal(3, ran.Count);
        Assert.Equal(3, cells.Count);
        var dense = cells.Single(c => c.Method == "dense");
        Assert.Equal(1.0, dense.MassRecall);
        Assert.Equal(dense.Expected, dense.Generated); // the bundled model retrieves a passkey at 512 tokens
        Assert.Equal(1.0, dense.Score);
        var streaming = cells.Single(c => c.Method == "streaming");
        Assert.Equal(64, streaming.BudgetTokens);
        Assert.InRange(streaming.MassRecall, 0.01, 0.9999);
        Assert.Equal(1.0, cells.Single(c => c.Method == "oracle").TopKRecall, 6);
        // per layer, and the needle figures of a needle task: all 1 for dense, below 1 for a 64-key window that
        // cannot reach a passkey placed halfway into the prompt (depth 0.5 with one sample), and the layers' mean is the total
        Assert.Equal(model.Config.NumLayers, dense.Layers!.Length);
        Assert.All(dense.Layers!, l => Assert.Equal((1.0, 1.0), (l.MassRecall, l.NeedleMassRecall)));
        Assert.Equal(1.0, dense.NeedleRecall);
        Assert.Equal(streaming.MassRecall, streaming.Layers!.Average(l => l.MassRecall), 9);
        Assert.Equal(0.0, streaming.NeedleMassRecall!.Value, 9);
        Assert.Equal(0.0, streaming.NeedleRecall!.Value, 9);

        // a new run over the same store (as after an interruption) finds every cell and runs none
        var again = new List<CellResult>();
        var second = new GridRunner(new CpuEngine(model), builder, grid, new ResultStore(tmp.Path), "bundled",
            p => grid.CreatePlan(p, model.Config, model.Config.MaxPositions), s => new SparsityMeter(s)) { CellDone = again.Add, WarmUpFirst = false };
        var resumed = second.Run();
        Assert.Empty(again);
        Assert.Equal(cells.Select(c => (c.Key, c.Score, c.Generated)), resumed.Select(c => (c.Key, c.Score, c.Generated)));

        // one more method: only its cell runs
        var wider = grid with { Methods = ["dense", "streaming", "oracle", "tidal"] };
        var third = new List<CellResult>();
        new GridRunner(new CpuEngine(model), builder, wider, new ResultStore(tmp.Path), "bundled",
            p => wider.CreatePlan(p, model.Config, model.Config.MaxPositions), s => new SparsityMeter(s)) { CellDone = third.Add, WarmUpFirst = false }.Run();
        Assert.Equal(["tidal"], third.Select(c => c.Method));
    }

    /// <summary>Code completion on the bundled model's held-out text: the prompt decodes to the code right before the
    /// answer line in a held-out document, and a grid with dense and a sparse method scores each cell by the edit
    /// similarity of its first generated line, pairs the two, and resumes from its store.</summary>
    [Fact]
    public void CodeCompletionGridScoresTheGeneratedLineAndResumes()
    {
        var (model, tok, builder) = Bundled.Value;
        var corpus = HeldoutCorpus.Load(HeldoutCorpus.Find(Fixtures.BundledModel)!, tok);
        var sample = builder.Build(RulerTasks.CodeCompletion, 448, null, seed: 4);
        Assert.InRange(sample.Prompt.Length, 300, 448);
        string tail = tok.Decode(sample.Prompt.AsSpan(sample.Prompt.Length - 40));
        Assert.Contains(corpus.Documents, d => d.Contains(tail + sample.AnswerText + "\n", StringComparison.Ordinal));

        using var tmp = new Fixtures.TempDir();
        var grid = new EvalGrid
        {
            Methods = ["dense", "streaming"], Budgets = ["32"], Contexts = [512], Tasks = [RulerTasks.CodeCompletion, RulerTasks.Passkey], Samples = 3,
            TimingSteps = 4, FidelitySteps = 2,
        };
        grid.Validate(model.Config);
        var cells = new GridRunner(new CpuEngine(model), builder, grid, new ResultStore(tmp.Path), "bundled",
            p => grid.CreatePlan(p, model.Config, model.Config.MaxPositions), s => new SparsityMeter(s)) { WarmUpFirst = false }.Run();
        var code = cells.Where(c => c.Task == RulerTasks.CodeCompletion).ToList();
        Assert.Equal(6, code.Count);
        foreach (var c in code)
        {
            Assert.Null(c.Depth);
            Assert.DoesNotContain('\n', c.Generated!);
            Assert.True(CodeCompletion.IsNonTrivial(c.Expected!), c.Expected);
            Assert.Equal(AnswerScorer.EditSimilarity(c.Generated!, c.Expected!) / 100, c.Score, 12);
            Assert.Equal(c.Generated == c.Expected, c.Exact);
            Assert.InRange(c.TimedSteps, grid.TimingSteps, EvalGrid.Reserve - 1);
        }
        // the bundled model continues held-out code with something close to the true line
        Assert.True(code.Where(c => c.Method == "dense").Average(c => c.Score) > 0.3, string.Join(" | ", code.Select(c => $"{c.Expected} → {c.Generated}")));
        var rows = EvalSummary.Summarize(cells, grid);
        var streaming = rows.Single(r => r.Method == "streaming");
        Assert.Equal(code.Where(c => c.Method == "streaming").Average(c => c.Score), streaming.Accuracy[RulerTasks.CodeCompletion], 12);
        Assert.Equal(3, streaming.VsDense!.ByTask[RulerTasks.CodeCompletion].Pairs);
        Assert.Equal(3, streaming.CodeExactMatchVsDense!.Pairs);
        Assert.Equal(PairedStatistics.McNemarTest, streaming.CodeExactMatchVsDense.Test);
        Assert.NotNull(rows.Single(r => r.Method == "dense").CodeExactMatch);

        var again = new List<CellResult>();
        new GridRunner(new CpuEngine(model), builder, grid, new ResultStore(tmp.Path), "bundled",
            p => grid.CreatePlan(p, model.Config, model.Config.MaxPositions), s => new SparsityMeter(s)) { CellDone = again.Add, WarmUpFirst = false }.Run();
        Assert.Empty(again);
    }

    /// <summary>eval --speculate on a grid sample: every sparse method's needle cells carry the lossless column, whose
    /// answer is dense decoding's token for token (the dense cell's answer and score), for K fixed and auto; the
    /// rows sum it up; ppl cells and dense carry none; and the column's key makes a stored grid without it run its
    /// sparse needle cells again, and only those.</summary>
    [Fact]
    public void SpeculativeColumnIsDenseDecodingOnAGridSample()
    {
        var (model, _, builder) = Bundled.Value;
        using var tmp = new Fixtures.TempDir();
        string[] sparse = ["oracle", "streaming", "quest", "tidal", "lfps", "prhs", "hshare"];
        var plain = new EvalGrid
        {
            Methods = ["dense", .. sparse], Budgets = ["48"], Contexts = [512], Tasks = ["passkey", "vartrack", "ppl"], Samples = 1,
            TimingSteps = 4, FidelitySteps = 1, PerplexityTokens = 4,
        };
        IReadOnlyList<CellResult> Run(EvalGrid grid, List<CellResult> ran) =>
            new GridRunner(new CpuEngine(model), builder, grid, new ResultStore(tmp.Path), "bundled",
                p => grid.CreatePlan(p, model.Config, model.Config.MaxPositions), s => new SparsityMeter(s)) { CellDone = ran.Add, WarmUpFirst = false }.Run();
        Run(plain with { Methods = ["dense", "tidal"] }, []);
        foreach (var speculation in new[] { new SpeculationOptions(4), new SpeculationOptions(4, Adaptive: true) })
        {
            var grid = plain with { Speculation = speculation };
            grid.Validate(model.Config);
            var ran = new List<CellResult>();
            var cells = Run(grid, ran);
            // the dense cells and the ppl cells stored by the first grid are this one's too
            Assert.DoesNotContain(ran, c => c.Method == "dense" || (c.Method == "tidal" && c.Task == "ppl"));
            foreach (var c in cells)
            {
                if (c.Method == "dense" || c.Task == "ppl")
                {
                    Assert.Null(c.Speculative);
                    continue;
                }
                var dense = cells.Single(d => d.Method == "dense" && d.Task == c.Task);
                var x = c.Speculative ?? throw new Xunit.Sdk.XunitException($"{c.Method} {c.Task}: no lossless column");
                Assert.True(x.IdenticalToDense, $"{c.Method} {c.Task} K={speculation}: differs from dense at token {x.FirstDifference}");
                Assert.Null(x.FirstDifference);
                Assert.Equal(speculation.ToString(), x.Draft);
                Assert.Equal(dense.Generated, x.Generated);
                Assert.Equal(dense.Score, x.Score);
                Assert.True(x.Passes > 0 && x.Accepted <= x.Drafted);
            }
            var rows = EvalSummary.Summarize(cells, grid);
            Assert.Null(rows.Single(r => r.Method == "dense").Lossless);
            foreach (var row in rows.Where(r => r.Method != "dense"))
            {
                var l = row.Lossless!;
                Assert.True(l.IsLossless);
                Assert.Equal(2, l.Samples);
                Assert.Equal(l.DenseAccuracy, l.Accuracy);
                Assert.Equal(["passkey", "vartrack"], row.LosslessByTask!.Keys.Order());
            }
            // the drafts are the methods' own: some kept and, over the grid, some rejected
            long drafted = rows.Sum(r => r.Lossless?.Drafted ?? 0), accepted = rows.Sum(r => r.Lossless?.Accepted ?? 0);
            Assert.InRange(accepted, 1, drafted - 1);
            var results = new EvalResultsFile
            {
                Command = "sparsedecode eval --speculate", Model = "bundled", Machine = "test", Created = "now", WallSeconds = 1,
                Grid = GridDescription.Of(grid), Summary = rows, Cells = cells,
            };
            Assert.Contains($"**lossless: {2 * sparse.Length}/{2 * sparse.Length} samples identical to dense**", ReportWriter.Markdown(results, grid, null));
            Assert.Equal(speculation, GridDescription.Of(grid).ToGrid().Speculation);
        }
    }

    private static int IndexOf(int[] haystack, int[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }
}
