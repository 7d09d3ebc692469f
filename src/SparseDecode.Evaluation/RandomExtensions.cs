namespace SparseDecode.Evaluation;

/// <summary>The few draws of Python's `random` module that the task generators use, on a seeded System.Random,
/// with the same ranges and algorithms (inclusive randint, Fisher–Yates shuffle from the end), so the
/// generated tasks follow the distribution the reference model was trained on.</summary>
public static class RandomExtensions
{
    /// <summary>Python's randint(a, b): a ≤ x ≤ b.</summary>
    public static int RandInt(this Random rng, int a, int b) => rng.Next(a, b + 1);

    /// <summary>Python's randrange(n): 0 ≤ x &lt; n.</summary>
    public static int RandRange(this Random rng, int n) => rng.Next(n);

    public static T Choice<T>(this Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    public static char Choice(this Random rng, string items) => items[rng.Next(items.Length)];

    public static void Shuffle<T>(this Random rng, IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A seed derived from a base seed and names, stable across runs and platforms (string.GetHashCode is
    /// randomised per process, so it cannot key a reproducible sample).</summary>
    public static int StableSeed(int seed, params object[] parts)
    {
        ulong h = 14695981039346656037UL ^ (ulong)(uint)seed;
        foreach (object p in parts)
        {
            foreach (char ch in Convert.ToString(p, System.Globalization.CultureInfo.InvariantCulture) ?? "")
            {
                h ^= ch;
                h *= 1099511628211UL;
            }
            h ^= 0xff;
            h *= 1099511628211UL;
        }
        return (int)(h ^ (h >> 32)) & int.MaxValue;
    }
}
