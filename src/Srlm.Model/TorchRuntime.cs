using TorchSharp;

namespace Srlm.Model;

/// <summary>Process-wide libtorch settings. The thread count comes from SRLM_THREADS so that several
/// processes can share a small machine.</summary>
public static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool _initialised;

    /// <summary>Sets libtorch's intra-op thread count (which the decode kernel uses too) to SRLM_THREADS, or to every
    /// core this process may use (<see cref="Environment.ProcessorCount"/>, which honours CPU limits) when it is unset.
    /// Safe to call often.</summary>
    public static void Initialise()
    {
        lock (Gate)
        {
            if (_initialised) return;
            torch.set_num_threads(Threads(Environment.GetEnvironmentVariable("SRLM_THREADS")) ?? Environment.ProcessorCount);
            _initialised = true;
        }
    }

    /// <summary>The thread count an SRLM_THREADS value asks for: null when unset or blank; a value that is not a
    /// positive integer throws (a command line checks it with this before any model thread reads it).</summary>
    public static int? Threads(string? raw)
    {
        if (string.IsNullOrWhiteSpace(raw)) return null;
        return int.TryParse(raw, out var n) && n >= 1 ? n : throw new ArgumentException($"SRLM_THREADS must be a positive integer, got '{raw}'");
    }
}
