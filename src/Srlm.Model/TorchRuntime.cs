using TorchSharp;

namespace Srlm.Model;

/// <summary>Process-wide libtorch settings. The thread count comes from SRLM_THREADS so that several
/// processes can share a small machine.</summary>
public static class TorchRuntime
{
    private static readonly object Gate = new();
    private static bool _initialised;

    /// <summary>Applies SRLM_THREADS (when set) to libtorch's intra-op thread pool. Safe to call often.</summary>
    public static void Initialise()
    {
        lock (Gate)
        {
            if (_initialised) return;
            var raw = Environment.GetEnvironmentVariable("SRLM_THREADS");
            if (!string.IsNullOrWhiteSpace(raw))
            {
                if (!int.TryParse(raw, out var n) || n < 1)
                    throw new ArgumentException($"SRLM_THREADS must be a positive integer, got '{raw}'");
                torch.set_num_threads(n);
            }
            _initialised = true;
        }
    }
}
