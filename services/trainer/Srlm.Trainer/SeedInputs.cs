using Srlm.Contracts.Seeds;

namespace Srlm.Trainer;

/// <summary>The SFT examples of a run (and a DPO job's replay set), from the seed files stored with its spec: read by
/// the one seed reader and turned into text by <see cref="SeedExamples.Sft"/>, exactly as `srlm train sft` turns the
/// same files into text (a test compares the two byte for byte).</summary>
public static class SeedInputs
{
    public static async Task<IReadOnlyList<TextExample>> SftAsync(RunSpecCache specs, RunSpec spec, CancellationToken ct)
    {
        var ift = await specs.SeedFileAsync(spec.SeedData.Ift, "seed_data.ift", SeedReader.ReadIft, ct);
        var eft = spec.SeedData.Eft is null ? null
            : await specs.SeedFileAsync(spec.SeedData.Eft, "seed_data.eft", (bytes, name) => SeedReader.ReadEft(bytes, name, spec.Judge.MaxScore), ct);
        return SeedExamples.Sft(ift, eft, spec.Judge.Template).Select(e => new TextExample(e.Prompt, e.Completion, e.Context)).ToList();
    }
}
