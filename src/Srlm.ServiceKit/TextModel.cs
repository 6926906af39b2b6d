namespace Srlm.ServiceKit;

// The services' view of a loaded checkpoint. The model library (Srlm.Model: decoder, tokenizer, batched
// KV-cache generation on a dedicated thread per model, cache keyed by checkpoint id) sits behind it; the
// services only say what to generate and with which seed, so their logic reads without tensors.

/// <summary>One sequence to generate. Prompt is the user turn (the model's chat template is applied) or,
/// with Raw, the exact text to continue (few-shot self-instruction). Seed seeds this sequence's own random
/// stream, so its text does not depend on the batch it runs in.</summary>
public sealed record GenerationRequest(string Prompt, long Seed, double Temperature, double TopP, int MaxNewTokens, bool Raw = false)
{
    /// <summary>Generation stops at the first of these (the text is cut before it), besides the model's own stops.</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>The id of the record this request serves and its sample (e.g. a judgement id). An external endpoint
    /// (<see cref="EndpointTextModel"/>) stores the call under it and reads it back when asked again; in-process models
    /// ignore it.</summary>
    public string? CallId { get; init; }
}

/// <summary>A generated completion with the token counts measured by the model's tokenizer, and why it ended
/// (Srlm.Storage.FinishReasons: "eos", "stop" or "length"; null from a model that does not say).</summary>
public sealed record GenerationResult(string Text, int PromptTokens, int CompletionTokens, string? FinishReason = null)
{
    /// <summary>Why there is no text: an external endpoint refused the call or ran out of retries (e.g. "HTTP 500 ...
    /// after 4 attempts"). The text is then empty and whatever parses it finds nothing (unparseable, unjudged).</summary>
    public string? Error { get; init; }
}

/// <summary>A loaded checkpoint that can generate; thread-safe (work is queued to the model's thread).</summary>
public interface ITextModel
{
    string CheckpointId { get; }

    /// <summary>Longest sequence (prompt + completion) the model takes.</summary>
    int ContextLength { get; }

    /// <summary>Generates every request (batched by the model; each with its own seeded stream).
    /// Results come back in request order.</summary>
    Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken ct);

    /// <summary>Tokens of the templated prompt (what precedes an answer in training and generation).</summary>
    int CountPromptTokens(string prompt);

    /// <summary>Tokens of an answer (without the end-of-sequence token).</summary>
    int CountCompletionTokens(string completion);
}

/// <summary>Gives the model of a checkpoint id (materialised from the checkpoint store, loaded once per
/// process and shared by every service in it).</summary>
public interface IModelProvider
{
    Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct);

    /// <summary>The model with its weights in <paramref name="dtype"/> (the run spec's models.dtype: "float32" or null,
    /// "bfloat16", "float16"). A provider that holds one dtype only answers with it.</summary>
    Task<ITextModel> GetAsync(string checkpointId, string? dtype, CancellationToken ct) => GetAsync(checkpointId, ct);
}
