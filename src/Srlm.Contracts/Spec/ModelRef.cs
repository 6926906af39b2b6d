namespace Srlm.Contracts.Spec;

/// <summary>A model a run uses but does not train: either a checkpoint folder (a path relative to the spec, stored as
/// `checkpoint:ID` once `srlm start` uploaded it) or an OpenAI-compatible HTTP endpoint
/// (`{"endpoint": "http://host:port/v1", "model": "name", "api_key_env": "VAR"}`). An endpoint's key is never in the
/// spec: the service that calls it reads the variable named by <see cref="ApiKeyEnv"/> from its own environment.</summary>
[JsonConverter(typeof(ModelRefJsonConverter))]
public sealed record ModelRef
{
    /// <summary>The folder (or `checkpoint:ID`); null for an endpoint.</summary>
    public string? Folder { get; init; }

    /// <summary>Base URL of an OpenAI-compatible API, as OpenAI clients take it (e.g. http://127.0.0.1:8000/v1).</summary>
    public string? Endpoint { get; init; }

    /// <summary>The model name sent with every request to <see cref="Endpoint"/>.</summary>
    public string? Model { get; init; }

    /// <summary>The environment variable holding the endpoint's bearer key; null = the endpoint needs none.</summary>
    public string? ApiKeyEnv { get; init; }

    public bool IsEndpoint => Endpoint is not null;

    public static ModelRef OfFolder(string folder) => new() { Folder = folder };

    public static implicit operator ModelRef?(string? folder) => folder is null ? null : OfFolder(folder);

    /// <summary>The folder, or "MODEL at ENDPOINT" (what logs and messages show; never a key).</summary>
    public override string ToString() => IsEndpoint ? $"{Model} at {Endpoint}" : Folder ?? "";

    /// <summary>Problems of an endpoint reference, each "spec.FIELD.sub: what is wrong".</summary>
    public IEnumerable<string> Problems(string field)
    {
        if (!IsEndpoint)
        {
            if (string.IsNullOrWhiteSpace(Folder)) yield return $"spec.{field}: must be a checkpoint folder or an endpoint object";
            yield break;
        }
        if (!Uri.TryCreate(Endpoint, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || string.IsNullOrEmpty(uri.Host))
            yield return $"spec.{field}.endpoint: must be an absolute http:// or https:// URL, got '{Endpoint}'";
        if (string.IsNullOrWhiteSpace(Model)) yield return $"spec.{field}.model: must name the model the endpoint serves";
        if (ApiKeyEnv is not null && !IsVariableName(ApiKeyEnv))
            yield return $"spec.{field}.api_key_env: must be an environment variable name (letters, digits, '_', not starting with a digit), got '{ApiKeyEnv}'";
    }

    private static bool IsVariableName(string name) =>
        name.Length > 0 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
}

/// <summary>A string is a folder; an object has exactly the fields endpoint, model and api_key_env (an unknown one is an
/// error naming it). Written back the same way.</summary>
public sealed class ModelRefJsonConverter : JsonConverter<ModelRef>
{
    public const string Expected = "expected endpoint, model, api_key_env";

    public override ModelRef? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType == JsonTokenType.String) return ModelRef.OfFolder(reader.GetString()!);
        if (reader.TokenType != JsonTokenType.StartObject)
            throw new JsonException("must be a checkpoint folder (a string) or an endpoint object {\"endpoint\", \"model\", \"api_key_env\"}");
        string? endpoint = null, model = null, keyEnv = null;
        while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
        {
            var name = reader.GetString()!;
            reader.Read();
            if (name is not ("endpoint" or "model" or "api_key_env")) throw new JsonException($"unknown field '{name}' ({Expected})");
            var text = reader.TokenType switch
            {
                JsonTokenType.String => reader.GetString(),
                JsonTokenType.Null => null,
                _ => throw new JsonException($"field '{name}' must be a string"),
            };
            switch (name)
            {
                case "endpoint": endpoint = text; break;
                case "model": model = text; break;
                default: keyEnv = text; break;
            }
        }
        if (endpoint is null) throw new JsonException($"an endpoint object needs 'endpoint' ({Expected})");
        return new ModelRef { Endpoint = endpoint, Model = model, ApiKeyEnv = keyEnv };
    }

    public override void Write(Utf8JsonWriter writer, ModelRef value, JsonSerializerOptions options)
    {
        if (!value.IsEndpoint)
        {
            writer.WriteStringValue(value.Folder);
            return;
        }
        writer.WriteStartObject();
        writer.WriteString("endpoint", value.Endpoint);
        writer.WriteString("model", value.Model);
        if (value.ApiKeyEnv is not null) writer.WriteString("api_key_env", value.ApiKeyEnv);
        writer.WriteEndObject();
    }
}
