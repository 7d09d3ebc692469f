using BenchmarkDotNet.Running;

namespace SparseDecode.Benchmarks;

public static class Program
{
    // dotnet run -c Release --project bench/SparseDecode.Benchmarks -- --filter '*Attention*'
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
