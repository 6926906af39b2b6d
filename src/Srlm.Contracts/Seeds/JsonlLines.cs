namespace Srlm.Contracts.Seeds;

/// <summary>One non-blank line of a JSON Lines file: its 1-based number and either the JSON object it holds or
/// why it holds none.</summary>
public readonly record struct JsonlLine(int Number, JsonElement Object, string? Error);

/// <summary>The one JSON Lines reader of srlm's input files (seed files, prompt pools, held-out files, preference
/// pairs): UTF-8 (a BOM is allowed), one JSON object a line, blank lines skipped, lines split at '\n' (a '\r' before
/// it is JSON whitespace). A line that is not valid UTF-8, not JSON or not an object is reported, never skipped.</summary>
public static class JsonlLines
{
    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static IEnumerable<JsonlLine> Read(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        int start = bytes.Length >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF ? 3 : 0;
        int number = 0;
        while (start <= bytes.Length)
        {
            number++;
            var end = Array.IndexOf(bytes, (byte)'\n', start);
            if (end < 0) end = bytes.Length;
            var span = bytes.AsSpan(start, end - start);
            start = end + 1;
            string? text = Decode(span);
            if (text is null) { yield return new JsonlLine(number, default, "not valid UTF-8"); continue; }
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonElement obj = default;
            string? error = null;
            try
            {
                using var doc = JsonDocument.Parse(text);
                if (doc.RootElement.ValueKind != JsonValueKind.Object) error = $"expected a JSON object, got {doc.RootElement.ValueKind}";
                else obj = doc.RootElement.Clone();
            }
            catch (JsonException e) { error = $"not valid JSON: {e.Message.Split('\n')[0]}"; }
            yield return new JsonlLine(number, obj, error);
        }
    }

    private static string? Decode(ReadOnlySpan<byte> span)
    {
        try { return Strict.GetString(span); }
        catch (DecoderFallbackException) { return null; }
    }

    /// <summary>The file's bytes, or a <see cref="SeedDataException"/> "PATH: cannot read: why".</summary>
    public static byte[] ReadFile(string path)
    {
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SeedDataException([$"{path}: cannot read: {e.Message}"]);
        }
    }
}

/// <summary>Bad input data: every problem as one line "file:line: problem", found before any of it is used.</summary>
public sealed class SeedDataException(IReadOnlyList<string> errors)
    : Exception(errors.Count == 1 ? errors[0] : $"{errors[0]} (and {errors.Count - 1} more problems)")
{
    public IReadOnlyList<string> Errors { get; } = errors;
}
