namespace Srlm;

/// <summary>
/// SplitMix64, the one definition of the generator behind TaskRng (seed data) and DeterministicRandom (training data
/// order, dropout seeds): a tiny, well-mixed PRNG whose sequence is fixed by this file (System.Random's algorithm is
/// not a documented contract), so a seed gives the same numbers on every runtime. Compiled into Srlm.Tasks and, as a
/// linked file, into Srlm.Training (Srlm.Tasks references no project, and no service may reference Srlm.Tasks).
/// </summary>
internal struct SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong Next()
    {
        var z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
