namespace Srlm.Tasks;

/// <summary>
/// Random numbers for seed data: <see cref="SplitMix64"/>, so seed data is byte-identical for a seed on every runtime.
/// </summary>
public sealed class TaskRng(ulong seed)
{
    private SplitMix64 _generator = new(seed);

    public ulong NextUInt64() => _generator.Next();

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n)
    {
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "must be positive");
        return (int)(NextUInt64() % (ulong)n);
    }

    /// <summary>Uniform integer in [min, max] (both inclusive).</summary>
    public int Between(int min, int max) => min + Next(max - min + 1);

    public T Pick<T>(IReadOnlyList<T> items) => items[Next(items.Count)];

    public bool Chance(double p) => (NextUInt64() >> 11) * (1.0 / (1UL << 53)) < p;

    /// <summary>Fisher-Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            var j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>An independent stream for (seed, stream): each split and each record draws from its own.</summary>
    public static TaskRng Derive(long seed, long stream, long index = 0)
    {
        var mix = new TaskRng(unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)stream * 0xC2B2AE3D27D4EB4FUL ^ (ulong)index * 0x165667B19E3779F9UL));
        mix.NextUInt64();
        return new TaskRng(mix.NextUInt64());
    }
}
