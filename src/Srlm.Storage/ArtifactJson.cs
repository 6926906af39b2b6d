using System.Text.Json;
using System.Text.Json.Nodes;

namespace Srlm.Storage;

/// <summary>How records become stored JSON, and the content hash that decides Unchanged vs Conflict.</summary>
public static class ArtifactJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        WriteIndented = false,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private const string CreatedAtProperty = "createdAt";

    /// <summary>
    /// Properties the store manages and the content hash leaves out: the insert time, and the pair's
    /// reference log-probs that the trainer fills in later (so a redelivered pair is still Unchanged).
    /// </summary>
    private static readonly string[] NotContent = [CreatedAtProperty, "referenceChosenLogProb", "referenceRejectedLogProb"];

    /// <summary>Serialize with the store's createdAt; returns (json, content hash without store-managed fields).</summary>
    public static (string Json, string ContentHash) Prepare<T>(T artifact, DateTimeOffset createdAt) where T : class, IArtifact
    {
        var node = JsonSerializer.SerializeToNode(artifact, Options)!.AsObject();
        var content = node.DeepClone().AsObject();
        foreach (var name in NotContent) content.Remove(name);
        var hash = Sha256Hex(Encoding.UTF8.GetBytes(Canonical(content)!.ToJsonString(Options)));
        node[CreatedAtProperty] = JsonValue.Create(createdAt);
        return (node.ToJsonString(Options), hash);
    }

    /// <summary>Object keys sorted (ordinal) at every level, so dictionaries built in another order hash the same.</summary>
    private static JsonNode? Canonical(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => KeyValuePair.Create(kv.Key, Canonical(kv.Value?.DeepClone())))),
        JsonArray a => new JsonArray(a.Select(x => Canonical(x?.DeepClone())).ToArray()),
        _ => node,
    };

    public static T Read<T>(string json) where T : class =>
        JsonSerializer.Deserialize<T>(json, Options)
        ?? throw new InvalidDataException($"stored {typeof(T).Name} is the JSON null");

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    public static string Sha256Hex(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    internal static string Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", System.Globalization.CultureInfo.InvariantCulture);

    internal static DateTimeOffset ParseTime(string s) =>
        DateTimeOffset.Parse(s, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal | System.Globalization.DateTimeStyles.AdjustToUniversal);
}
