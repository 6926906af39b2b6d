namespace Srlm.Model;

/// <summary>The dtypes a model may be held and run in, by their Hugging Face <c>torch_dtype</c> names. float32 is the
/// default whatever a checkpoint stores; bfloat16 and float16 keep the weights in that dtype in memory and multiply in
/// it, while norm statistics, softmax, log-probs and sampling stay float32.</summary>
public static class ModelDtype
{
    public static readonly IReadOnlyList<string> Names = ["float32", "bfloat16", "float16"];

    /// <summary>"float32" | "bfloat16" | "float16"; null for anything else.</summary>
    public static ScalarType? TryParse(string? name) => name switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        _ => null,
    };

    /// <summary>Parses a dtype name; the message of the ArgumentException names the accepted values.</summary>
    public static ScalarType Parse(string? name) =>
        TryParse(name) ?? throw new ArgumentException($"must be one of {string.Join(", ", Names)}, got '{name}'");

    public static string Name(ScalarType t) => t switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => throw new ArgumentException($"{t} is not a model dtype ({string.Join(", ", Names)})"),
    };
}
