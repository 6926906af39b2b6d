using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Srlm.Training;

/// <summary>One supervised example: the user prompt (before the model's prompt template is applied) and
/// the completion the model learns to write. <see cref="Source"/> names the record ("file:line") for errors.</summary>
public sealed record SftExample(string Prompt, string Completion, string Source);

/// <summary>An IFT seed record: an instruction and a good answer.</summary>
public sealed record IftRecord(string Instruction, string Answer, string Source)
{
    public SftExample ToExample() => new(Instruction, Answer, Source);
}

/// <summary>An EFT seed record: an instruction, an answer, the judge's justification and its 0-5 score.</summary>
public sealed record EftRecord(string Instruction, string Answer, string Judgement, int Score, string Source)
{
    /// <summary>The training example: prompt = the judge template with {instruction} and {response} filled
    /// in; completion = the judgement, ending in "Score: k".</summary>
    public SftExample ToExample(string judgeTemplate) =>
        new(SeedData.FillJudgeTemplate(judgeTemplate, Instruction, Answer), SeedData.JudgementWithScore(Judgement, Score), Source);
}

/// <summary>Bad seed data: every bad record as one line "file:line: reason", found before any training step.</summary>
public sealed class SeedDataException(IReadOnlyList<string> errors)
    : Exception(errors.Count == 1 ? errors[0] : $"{errors[0]} (and {errors.Count - 1} more bad records)")
{
    public IReadOnlyList<string> Errors { get; } = errors;
}

/// <summary>Readers for the IFT and EFT JSONL seed formats (see SEED_FORMATS.md).</summary>
public static partial class SeedData
{
    public const int MinScore = 0, MaxScore = 5;

    /// <summary>Reads an IFT file; throws <see cref="SeedDataException"/> listing every bad record.</summary>
    public static IReadOnlyList<IftRecord> ReadIft(string path)
    {
        var records = new List<IftRecord>();
        var errors = new List<string>();
        foreach (var (line, obj, error) in ReadObjects(path))
        {
            var where = $"{path}:{line}";
            if (error is not null) { errors.Add($"{where}: {error}"); continue; }
            var instruction = RequiredText(obj, "instruction", errors, where);
            var answer = RequiredText(obj, "answer", errors, where);
            if (instruction is not null && answer is not null) records.Add(new IftRecord(instruction, answer, where));
        }
        return Finish(path, records, errors);
    }

    /// <summary>Reads an EFT file; throws <see cref="SeedDataException"/> listing every bad record.</summary>
    public static IReadOnlyList<EftRecord> ReadEft(string path)
    {
        var records = new List<EftRecord>();
        var errors = new List<string>();
        foreach (var (line, obj, error) in ReadObjects(path))
        {
            var where = $"{path}:{line}";
            if (error is not null) { errors.Add($"{where}: {error}"); continue; }
            var instruction = RequiredText(obj, "instruction", errors, where);
            var answer = RequiredText(obj, "answer", errors, where);
            var judgement = RequiredText(obj, "judgement", errors, where);
            int? score = null;
            if (!obj.TryGetProperty("score", out var s)) errors.Add($"{where}: missing field \"score\"");
            else if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out var k))
                errors.Add($"{where}: field \"score\" must be an integer {MinScore}..{MaxScore}, got {s.GetRawText()}");
            else if (k is < MinScore or > MaxScore)
                errors.Add($"{where}: field \"score\" = {k} is out of range {MinScore}..{MaxScore}");
            else score = k;
            if (judgement is not null && score is int sc)
            {
                var m = ScoreLine().Match(judgement);
                if (m.Success && int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) != sc)
                {
                    errors.Add($"{where}: judgement ends in \"Score: {m.Groups[1].Value}\" but field \"score\" = {sc}");
                    continue;
                }
            }
            if (instruction is not null && answer is not null && judgement is not null && score is int ok)
                records.Add(new EftRecord(instruction, answer, judgement, ok, where));
        }
        return Finish(path, records, errors);
    }

    /// <summary>Reads preference pairs, one JSON object a line: {"id","prompt","chosen","rejected"} and optionally
    /// "ref_chosen_logp"/"ref_rejected_logp"; throws <see cref="SeedDataException"/> listing every bad record.</summary>
    public static IReadOnlyList<PreferencePair> ReadPairs(string path)
    {
        var records = new List<PreferencePair>();
        var errors = new List<string>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (line, obj, error) in ReadObjects(path))
        {
            var where = $"{path}:{line}";
            if (error is not null) { errors.Add($"{where}: {error}"); continue; }
            var id = RequiredText(obj, "id", errors, where);
            var prompt = RequiredText(obj, "prompt", errors, where);
            var chosen = RequiredText(obj, "chosen", errors, where);
            var rejected = RequiredText(obj, "rejected", errors, where);
            double? Num(string field)
            {
                if (!obj.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
                if (v.ValueKind == JsonValueKind.Number) return v.GetDouble();
                errors.Add($"{where}: field \"{field}\" must be a number, got {v.GetRawText()}");
                return null;
            }
            var rc = Num("ref_chosen_logp");
            var rr = Num("ref_rejected_logp");
            if (id is not null && !ids.Add(id)) { errors.Add($"{where}: duplicate id \"{id}\""); continue; }
            if (id is not null && prompt is not null && chosen is not null && rejected is not null)
                records.Add(new PreferencePair(id, prompt, chosen, rejected) { ReferenceChosenLogp = rc, ReferenceRejectedLogp = rr });
        }
        return Finish(path, records, errors);
    }

    /// <summary>Fills {instruction} and {response} in one pass (text inside the values is never re-substituted).</summary>
    public static string FillJudgeTemplate(string template, string instruction, string response)
    {
        if (!template.Contains("{instruction}", StringComparison.Ordinal) || !template.Contains("{response}", StringComparison.Ordinal))
            throw new ArgumentException("judge template must contain the placeholders {instruction} and {response}");
        return Placeholder().Replace(template, m => m.Value == "{instruction}" ? instruction : response);
    }

    /// <summary>The judgement as the model must write it: ending in "Score: k" (appended when absent).</summary>
    public static string JudgementWithScore(string judgement, int score)
    {
        var trimmed = judgement.TrimEnd();
        return ScoreLine().IsMatch(trimmed) ? trimmed : $"{trimmed}\nScore: {score}";
    }

    internal static IReadOnlyList<T> Finish<T>(string path, List<T> records, List<string> errors)
    {
        if (errors.Count > 0) throw new SeedDataException(errors);
        if (records.Count == 0) throw new SeedDataException([$"{path}: no records"]);
        return records;
    }

    internal static string? RequiredText(JsonElement obj, string field, List<string> errors, string where)
    {
        if (!obj.TryGetProperty(field, out var v)) { errors.Add($"{where}: missing field \"{field}\""); return null; }
        if (v.ValueKind != JsonValueKind.String) { errors.Add($"{where}: field \"{field}\" must be a string, got {v.ValueKind}"); return null; }
        var s = v.GetString()!;
        if (string.IsNullOrWhiteSpace(s)) { errors.Add($"{where}: field \"{field}\" is empty"); return null; }
        return s;
    }

    /// <summary>Each non-blank line as a JSON object, or the reason it is not one (1-based line numbers).</summary>
    internal static IEnumerable<(int Line, JsonElement Obj, string? Error)> ReadObjects(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SeedDataException([$"{path}: cannot read: {e.Message}"]);
        }
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
        int lineNo = 0;
        while (start <= bytes.Length)
        {
            lineNo++;
            var end = Array.IndexOf(bytes, (byte)'\n', start);
            if (end < 0) end = bytes.Length;
            var span = bytes.AsSpan(start, end - start);
            start = end + 1;
            string text;
            string? error = null;
            try { text = strict.GetString(span); }
            catch (DecoderFallbackException) { text = ""; error = "not valid UTF-8"; }
            if (error is null && string.IsNullOrWhiteSpace(text)) continue;
            JsonElement obj = default;
            if (error is null)
            {
                try
                {
                    using var doc = JsonDocument.Parse(text);
                    if (doc.RootElement.ValueKind != JsonValueKind.Object) error = $"expected a JSON object, got {doc.RootElement.ValueKind}";
                    else obj = doc.RootElement.Clone();
                }
                catch (JsonException e) { error = $"not valid JSON: {e.Message.Split('\n')[0]}"; }
            }
            yield return (lineNo, obj, error);
        }
    }

    [GeneratedRegex(@"Score:\s*(\d+)\s*$")]
    private static partial Regex ScoreLine();

    [GeneratedRegex(@"\{instruction\}|\{response\}")]
    private static partial Regex Placeholder();
}
