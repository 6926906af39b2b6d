namespace Srlm.Training;

/// <summary>
/// Random numbers for training: <see cref="SplitMix64"/>, so a data order can be recomputed and checked after a resume.
/// </summary>
public sealed class DeterministicRandom(ulong seed)
{
    private SplitMix64 _generator = new(seed);

    public ulong NextUInt64() => _generator.Next();

    /// <summary>Uniform integer in [0, n).</summary>
    public int Next(int n) => (int)(NextUInt64() % (ulong)n);

    /// <summary>Fisher-Yates shuffle in place.</summary>
    public void Shuffle<T>(IList<T> items)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            var j = Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    /// <summary>A seed for stream <paramref name="index"/> derived from a run seed (e.g. the dropout seed of a step).</summary>
    public static long Derive(long seed, long index, long salt = 0)
    {
        var r = new DeterministicRandom(unchecked((ulong)seed * 0x9E3779B97F4A7C15UL ^ (ulong)index * 0xC2B2AE3D27D4EB4FUL ^ (ulong)salt));
        return (long)(r.NextUInt64() >> 1);
    }
}
