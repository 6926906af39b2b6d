namespace Srlm.Model;

/// <summary>Process-wide libtorch settings: the thread count (SRLM_THREADS, so that several processes can share a
/// small machine) and the device models are loaded on (SRLM_DEVICE).</summary>
public static class TorchRuntime
{
    /// <summary>The environment variable naming the device: cpu, cuda or cuda:N; unset means cuda when libtorch
    /// sees a GPU, else cpu.</summary>
    public const string DeviceVariable = "SRLM_DEVICE";

    private static readonly object Gate = new();
    private static bool _initialised;
    private static Device? _device;

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

    /// <summary>The device every model of this process is loaded on (<see cref="Checkpoint.LoadModel"/> and through it
    /// every service, `srlm run` and the CLI verbs): SRLM_DEVICE resolved on first use (see <see cref="ResolveDevice"/>),
    /// so a bad value throws <see cref="ArgumentException"/> with one line naming the variable.</summary>
    public static Device Device
    {
        get
        {
            lock (Gate) return _device ??= ResolveDevice(Environment.GetEnvironmentVariable(DeviceVariable));
        }
    }

    /// <summary>Resolves an SRLM_DEVICE value (a host's configuration) and makes it this process's device, so a bad value
    /// stops the start instead of the first model load. A second call must name the same device.</summary>
    public static Device UseDevice(string? raw)
    {
        lock (Gate)
        {
            var device = ResolveDevice(raw);
            if (_device is null) _device = device;
            else if (_device.type != device.type || Math.Max(_device.index, 0) != Math.Max(device.index, 0))
                throw new ArgumentException($"{DeviceVariable}={raw} but this process already uses {Describe(_device)}");
            return _device;
        }
    }

    /// <summary>The device an SRLM_DEVICE value names, checked against what libtorch sees in this process.</summary>
    public static Device ResolveDevice(string? raw)
    {
        var want = ParseDevice(raw);
        if (want is null) return cuda.is_available() ? new Device(DeviceType.CUDA, 0) : CPU; // is_available() has initialised CUDA
        if (want.Value.Type == DeviceType.CPU) return CPU;
        return CheckCuda(raw!, want.Value.Index, cuda.is_available(), cuda.is_available() ? cuda.device_count() : 0);
    }

    /// <summary>The syntax of an SRLM_DEVICE value: null when unset or blank (choose automatically), else cpu, cuda
    /// (= cuda:0) or cuda:N. Anything else throws with one line naming the variable.</summary>
    public static (DeviceType Type, int Index)? ParseDevice(string? raw)
    {
        if (string.IsNullOrWhiteSpace(raw)) return null;
        var v = raw.Trim();
        if (v.Equals("cpu", StringComparison.OrdinalIgnoreCase)) return (DeviceType.CPU, -1);
        if (v.Equals("cuda", StringComparison.OrdinalIgnoreCase)) return (DeviceType.CUDA, 0);
        if (v.StartsWith("cuda:", StringComparison.OrdinalIgnoreCase)
            && int.TryParse(v.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n))
            return (DeviceType.CUDA, n);
        throw new ArgumentException($"{DeviceVariable} must be cpu, cuda or cuda:N (N a GPU index), got '{raw}'");
    }

    /// <summary>cuda:<paramref name="index"/> when libtorch sees that GPU; otherwise one line naming the variable
    /// (never a fall-back to the CPU). Separate from libtorch's answers so the error lines can be tested without a GPU.</summary>
    public static Device CheckCuda(string raw, int index, bool available, int count)
    {
        if (!available || count == 0)
            throw new ArgumentException($"{DeviceVariable}={raw.Trim()} but libtorch sees no CUDA GPU (a CPU build of srlm, no driver, or no GPU visible to this process); set {DeviceVariable}=cpu or leave it unset");
        if (index >= count)
            throw new ArgumentException($"{DeviceVariable}={raw.Trim()} but libtorch sees {count} CUDA GPU{(count == 1 ? "" : "s")} (cuda:0{(count > 1 ? $"..cuda:{count - 1}" : "")})");
        return new Device(DeviceType.CUDA, index); // the caller asked libtorch first, which initialised CUDA
    }

    /// <summary>How logs and health output name a device: "cpu", "cuda:0".</summary>
    public static string Describe(Device device) => device.type == DeviceType.CUDA ? $"cuda:{Math.Max(device.index, 0)}" : device.type.ToString().ToLowerInvariant();
}
