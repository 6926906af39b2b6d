using System.Text;

namespace Srlm.Training;

/// <summary>The resumable position of a training job (state.json inside a state folder).</summary>
public sealed record TrainingStateInfo
{
    public int Version { get; init; } = 1;
    /// <summary>"sft" or "dpo".</summary>
    public required string Kind { get; init; }
    /// <summary>Optimizer steps completed; the next step to run has this index.</summary>
    public required int Step { get; init; }
    public required int TotalSteps { get; init; }
    public required long Seed { get; init; }
    /// <summary>sha256 of the training data, the options and the parent checkpoint: a state folder resumes only the same job.</summary>
    public required string JobFingerprint { get; init; }
    /// <summary>The data order: the example indexes of every optimizer step, all epochs.</summary>
    public required int[][] Batches { get; init; }
    /// <summary>Optimizer steps per epoch (for the "epoch" metric).</summary>
    public int StepsPerEpoch { get; init; }
    /// <summary>Indexes held out for validation.</summary>
    public required int[] Validation { get; init; }
    /// <summary>Every logged metric row so far (train and validation).</summary>
    public List<Dictionary<string, double>> Log { get; init; } = new();
    public int? BestStep { get; init; }
    public double? BestScore { get; init; }
    /// <summary>Training-loop seconds so far (all attempts).</summary>
    public double Seconds { get; init; }
}

/// <summary>
/// The state folder of a training job: weights, optimizer moments, schedule position, data order and RNG
/// state, written atomically every N steps. Layout: <c>latest</c> names the current <c>step-NNNNNNN/</c>
/// folder (state.json, weights.bin, optimizer.bin); <c>best/weights.bin</c> when keeping the best;
/// any other file a trainer stores once per job (e.g. reference log-probs). A crash at any point leaves
/// <c>latest</c> pointing at a complete folder. The RNG state is the seed plus the step: every step
/// reseeds libtorch's generator from (seed, step), so nothing else needs saving.
/// </summary>
public sealed class TrainingStateStore
{
    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    public string Directory { get; }

    public TrainingStateStore(string directory)
    {
        Directory = Path.GetFullPath(directory);
        System.IO.Directory.CreateDirectory(Directory);
    }

    /// <summary>The last completely written state, or null for a fresh job.</summary>
    public TrainingStateInfo? TryLoadLatest()
    {
        var folder = LatestFolder();
        if (folder is null) return null;
        var path = Path.Combine(folder, "state.json");
        try
        {
            return JsonSerializer.Deserialize<TrainingStateInfo>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"{path}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: unreadable training state: {e.Message}");
        }
    }

    /// <summary>Loads the latest weights and optimizer moments into the given objects.</summary>
    public void LoadLatestInto(nn.Module model, OptimizerHelper optimizer)
    {
        var folder = LatestFolder() ?? throw new InvalidOperationException($"{Directory}: no training state to resume");
        model.load(Path.Combine(folder, "weights.bin"));
        optimizer.load_state_dict(Path.Combine(folder, "optimizer.bin"));
    }

    /// <summary>Writes a complete state folder, then flips <c>latest</c> to it, then deletes older ones.</summary>
    public void Save(TrainingStateInfo state, nn.Module model, OptimizerHelper optimizer)
    {
        var name = $"step-{state.Step:D7}";
        var final = Path.Combine(Directory, name);
        var tmp = Path.Combine(Directory, $"{name}.tmp");
        if (System.IO.Directory.Exists(tmp)) System.IO.Directory.Delete(tmp, recursive: true);
        System.IO.Directory.CreateDirectory(tmp);
        WriteWeights(Path.Combine(tmp, "weights.bin"), model);
        using (var fs = new FileStream(Path.Combine(tmp, "optimizer.bin"), FileMode.CreateNew))
        using (var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true))
        {
            optimizer.save_state_dict(w);
            w.Flush();
            fs.Flush(flushToDisk: true);
        }
        WriteAllBytesDurable(Path.Combine(tmp, "state.json"), JsonSerializer.SerializeToUtf8Bytes(state, Json));
        if (System.IO.Directory.Exists(final)) System.IO.Directory.Delete(final, recursive: true);
        System.IO.Directory.Move(tmp, final);
        WriteFileAtomic("latest", Encoding.UTF8.GetBytes(name));
        foreach (var old in System.IO.Directory.GetDirectories(Directory, "step-*"))
            if (Path.GetFileName(old) != name) System.IO.Directory.Delete(old, recursive: true);
    }

    /// <summary>Saves the weights as the best so far (best/weights.bin), atomically.</summary>
    public void SaveBest(nn.Module model)
    {
        var dir = Path.Combine(Directory, "best");
        System.IO.Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, "weights.bin.tmp");
        WriteWeights(tmp, model);
        File.Move(tmp, Path.Combine(dir, "weights.bin"), overwrite: true);
    }

    public string BestWeightsPath => Path.Combine(Directory, "best", "weights.bin");

    /// <summary>Writes a file of the state folder atomically (temp file, fsync, rename).</summary>
    public void WriteFileAtomic(string name, byte[] bytes)
    {
        var path = Path.Combine(Directory, name);
        var tmp = path + ".tmp";
        WriteAllBytesDurable(tmp, bytes);
        File.Move(tmp, path, overwrite: true);
    }

    public byte[]? TryReadFile(string name)
    {
        var path = Path.Combine(Directory, name);
        return File.Exists(path) ? File.ReadAllBytes(path) : null;
    }

    private string? LatestFolder()
    {
        var pointer = Path.Combine(Directory, "latest");
        if (!File.Exists(pointer)) return null;
        var folder = Path.Combine(Directory, File.ReadAllText(pointer).Trim());
        if (!System.IO.Directory.Exists(folder)) throw new InvalidDataException($"{pointer}: names a missing folder {folder}");
        return folder;
    }

    private static void WriteWeights(string path, nn.Module model)
    {
        using var fs = new FileStream(path, FileMode.Create);
        using (var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true))
        {
            model.save(w);
            w.Flush();
        }
        fs.Flush(flushToDisk: true);
    }

    private static void WriteAllBytesDurable(string path, byte[] bytes)
    {
        using var fs = new FileStream(path, FileMode.Create);
        fs.Write(bytes);
        fs.Flush(flushToDisk: true);
    }

    /// <summary>Hex sha256 of a string (job fingerprints).</summary>
    public static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
