using System.Text.Json;
using CsCheck;
using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Properties;

/// <summary>Properties of the result store's reader: any cell survives a write and a read, and a file of cells
/// interleaved with arbitrary lines loads exactly the cells (the last one per key) and reports every other line.</summary>
public class ResultStoreProperties
{
    private static readonly Gen<double> Numbers = Gen.OneOf(Gen.Double, Gen.Const(double.NaN), Gen.Const(double.PositiveInfinity), Gen.Double[0, 1]);

    private static readonly Gen<CellResult> Cells = Gen.Select(Gen.String, Gen.String, Gen.Int, Numbers, Gen.String.Null(), Gen.Double.Nullable())
        .Select((key, method, context, score, generated, depth) => new CellResult
        {
            Key = key, Model = "m", Method = method, Budget = "5%", Context = context, Task = "passkey", Sample = 1, Seed = 2,
            Score = score, Generated = generated, Depth = depth,
        });

    [Fact]
    public void EveryCellSurvivesWritingAndReading() =>
        Cells.Sample(cell =>
        {
            string line = JsonSerializer.Serialize(cell, EvalJson.Default.CellResult);
            Assert.DoesNotContain('\n', line);
            Assert.Equal(cell, ResultStore.Read(line, out string? reason));
            Assert.Null(reason);
        }, iter: 500, threads: 1);

    private static readonly Gen<string> Garbage = Gen.OneOf(
        Gen.String.Where(s => !s.Contains('\n') && !s.Contains('\r') && !string.IsNullOrWhiteSpace(s)),
        Gen.Const("null"), Gen.Const("{\"key\":null}"), Gen.Const("[1]"), Gen.Const("{\"key\":\"x\",\"mod"), Gen.Const("{\"key\":\"a\",\"model\":null}"));

    [Fact]
    public void CellsAmongGarbageLoadAndTheGarbageIsReported() =>
        Gen.Select(Cells.Array[0, 6], Garbage.Array[0, 6], Gen.Int).Sample((cells, garbage, seed) =>
        {
            var random = new Random(seed);
            var lines = cells.Select(c => (Good: true, Text: JsonSerializer.Serialize(c, EvalJson.Default.CellResult)))
                .Concat(garbage.Select(g => (Good: false, Text: g))).OrderBy(_ => random.Next()).ToList();
            using var tmp = new Fixtures.TempDir();
            File.WriteAllLines(Path.Combine(tmp.Path, ResultStore.FileName), lines.Select(l => l.Text));
            var store = new ResultStore(tmp.Path);
            var expected = new Dictionary<string, CellResult>(StringComparer.Ordinal);
            foreach (var (good, text) in lines)
                if (good) { var c = ResultStore.Read(text, out _)!; expected[c.Key] = c; }
            Assert.Equal(expected.Count, store.Count);
            foreach (var (key, cell) in expected) Assert.Equal(cell, store.Get(key));
            Assert.Equal(lines.Count(l => !l.Good), store.Skipped.Count);
        }, iter: 200, threads: 1);
}
