using SharpFuzz;
using SparseDecode.Fuzz;

// sparsedecode fuzz driver: one target per parser (docs/hardening.md).
//   SparseDecode.Fuzz TARGET                    libFuzzer (run under libfuzzer-dotnet)
//   SparseDecode.Fuzz TARGET --afl              AFL++ (run under afl-fuzz)
//   SparseDecode.Fuzz TARGET --smoke N PATH...  every seed and N mutants of each, in process (CI)
if (args.Length == 0 || !FuzzTargets.All.TryGetValue(args[0], out var target))
{
    Console.Error.WriteLine($"usage: SparseDecode.Fuzz {{{string.Join('|', FuzzTargets.All.Keys)}}} [--afl | --smoke N PATH...]");
    return 2;
}
if (args.Length > 1 && args[1] == "--afl")
{
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        target(copy.ToArray());
    });
    return 0;
}
if (args.Length > 2 && args[1] == "--smoke")
{
    var seeds = args.Skip(3).SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p, "*", SearchOption.AllDirectories).Order() : (IEnumerable<string>)[p])
        .Select(File.ReadAllBytes).ToList();
    int runs = FuzzTargets.Smoke(target, seeds, int.Parse(args[2]));
    Console.WriteLine($"{args[0]}: {runs} inputs, no crash");
    return 0;
}
Fuzzer.LibFuzzer.Run(data => target(data));
return 0;
