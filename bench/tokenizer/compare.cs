// Our tokenizer against Hugging Face's Rust one (Tokenizers.DotNet) on the bundled model's held-out text:
// encode throughput of each, and whether they agree. Run from the repository root:
//   dotnet run bench/tokenizer/compare.cs
#:package Tokenizers.DotNet@1.4.1
#:package Tokenizers.DotNet.runtime.linux-x64@1.4.1
#:project ../../src/SparseDecode/SparseDecode.csproj
#:property PublishAot=false
using System.Diagnostics;
using System.IO.Compression;

string dir = Path.Combine("models", "sparse-code-16m");
using var gz = new GZipStream(File.OpenRead(Path.Combine(dir, "heldout.txt.gz")), CompressionMode.Decompress);
string all = new StreamReader(gz).ReadToEnd();
string text = all[..Math.Min(all.Length, 2_000_000)];
var ours = SparseDecode.Tokenization.Tokenizer.FromDirectory(dir);
using var theirs = new Tokenizers.DotNet.Tokenizer(vocabPath: Path.Combine(dir, "tokenizer.json"));
// lines as separate inputs, as prompts are encoded; the first pass of each warms the JIT and caches
string[] lines = text.Split('\n');
double Best(Func<long> run)
{
    double best = double.MaxValue;
    for (int rep = 0; rep < 5; rep++)
    {
        var sw = Stopwatch.StartNew();
        run();
        best = Math.Min(best, sw.Elapsed.TotalSeconds);
    }
    return best;
}
long n = 0;
double tOurs = Best(() => { long c = 0; foreach (string l in lines) c += ours.Encode(l).Length; n = c; return c; });
double tTheirs = Best(() => { long c = 0; foreach (string l in lines) c += theirs.Encode(l).Length; return c; });
int differ = lines.Count(l => !ours.Encode(l).SequenceEqual(theirs.Encode(l).Select(id => (int)id)));
Console.WriteLine($"{lines.Length} lines, {text.Length / 1e6:F1} M chars, {n} tokens (with BOS per line)");
Console.WriteLine($"ours:         {n / tOurs / 1e6:F2} M tokens/s ({tOurs:F2} s, best of 5)");
Console.WriteLine($"Hugging Face: {n / tTheirs / 1e6:F2} M tokens/s ({tTheirs:F2} s, best of 5)");
Console.WriteLine($"lines encoded differently: {differ}");
