namespace Srlm.Training;

/// <summary>One supervised example: the user prompt (before the model's prompt template is applied) and the completion
/// the model learns to write. <see cref="Source"/> names the record ("file:line") for errors. Seed files become these
/// through Srlm.Contracts.Seeds (SeedExamples.Sft), the same on every path. <see cref="Context"/> is the seed
/// conversation when there is one: a chat template renders it turn by turn (<see cref="PromptText"/>).</summary>
public sealed record SftExample(string Prompt, string Completion, string Source, IReadOnlyList<ChatTurn>? Context = null)
{
    public static SftExample Of(SeedExample e) => new(e.Prompt, e.Completion, e.Source, e.Context);
}

/// <summary>Preference pairs for `srlm train dpo`, one JSON object a line (SEED_FORMATS.md): {"id","prompt","chosen",
/// "rejected"} and optionally "ref_chosen_logp"/"ref_rejected_logp". Lines are read by the one JSONL reader
/// (<see cref="JsonlLines"/>); every bad record is one line "file:line: problem".</summary>
public static class PairFile
{
    /// <summary>Throws <see cref="SeedDataException"/> listing every bad record.</summary>
    public static IReadOnlyList<PreferencePair> Read(string path)
    {
        var records = new List<PreferencePair>();
        var errors = new List<string>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in JsonlLines.Read(JsonlLines.ReadFile(path)))
        {
            var where = $"{path}:{line.Number}";
            if (line.Error is not null) { errors.Add($"{where}: {line.Error}"); continue; }
            var obj = line.Object;
            string? Text(string field)
            {
                if (!obj.TryGetProperty(field, out var v)) { errors.Add($"{where}: missing field \"{field}\""); return null; }
                if (v.ValueKind != JsonValueKind.String) { errors.Add($"{where}: field \"{field}\" must be a string, got {v.ValueKind}"); return null; }
                var s = v.GetString()!;
                if (string.IsNullOrWhiteSpace(s)) { errors.Add($"{where}: field \"{field}\" is empty"); return null; }
                return s;
            }
            double? Num(string field)
            {
                if (!obj.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
                if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
                errors.Add($"{where}: field \"{field}\" must be a number, got {v.GetRawText()}");
                return null;
            }
            var id = Text("id");
            var prompt = Text("prompt");
            var chosen = Text("chosen");
            var rejected = Text("rejected");
            var rc = Num("ref_chosen_logp");
            var rr = Num("ref_rejected_logp");
            if (id is not null && !ids.Add(id)) { errors.Add($"{where}: duplicate id \"{id}\""); continue; }
            if (id is not null && prompt is not null && chosen is not null && rejected is not null)
                records.Add(new PreferencePair(id, prompt, chosen, rejected) { ReferenceChosenLogp = rc, ReferenceRejectedLogp = rr });
        }
        if (errors.Count > 0) throw new SeedDataException(errors);
        if (records.Count == 0) throw new SeedDataException([$"{path}: no records"]);
        return records;
    }
}
