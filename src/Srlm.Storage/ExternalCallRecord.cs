namespace Srlm.Storage;

/// <summary>
/// One request to an external OpenAI-compatible endpoint (a fixed judge or prompt model named in the spec by
/// `endpoint`) and what came back, stored before the answer is used. <see cref="CallId"/> is the calling record's id
/// and sample, so a redelivered message finds the stored answer and never asks again. A call that was refused or ran
/// out of retries is stored with <see cref="Error"/> and no text (its item is unparseable/unjudged, never guessed).
/// Never holds the key. Parent: <see cref="SubjectId"/> (the evaluated checkpoint, or the prompt shard). Tag: "ok" or
/// "failed".
/// </summary>
public sealed record ExternalCallRecord : IArtifact
{
    public static string Kind => "external_call";
    public const string Ok = "ok";
    public const string Failed = "failed";

    public required string Id { get; init; }
    public required string RunId { get; init; }
    public required int Iteration { get; init; }

    /// <summary>The request's own id: the calling record's id and sample index (e.g. `RUN/m2/eval-win/3/self/j0`).</summary>
    public required string CallId { get; init; }

    /// <summary>What the call was for: "prompt" (models.prompt_model), "eval_judge" or "eval_pairwise" (evaluation.judge_model).</summary>
    public required string Purpose { get; init; }

    /// <summary>What the call served: the evaluated checkpoint, or the prompt shard.</summary>
    public required string SubjectId { get; init; }

    public required string Endpoint { get; init; }
    public required string Model { get; init; }

    /// <summary>The request as sent (messages, temperature, top_p, max_tokens, seed, stop), as JSON; no headers.</summary>
    public required string Request { get; init; }

    /// <summary>The answer's text; null when the call failed.</summary>
    public string? Text { get; init; }

    /// <summary>The endpoint's finish reason mapped onto <see cref="FinishReasons"/> ("stop" -> eos, "length" -> length);
    /// null when it gave none or the call failed.</summary>
    public string? FinishReason { get; init; }

    /// <summary>The endpoint's own finish reason as it wrote it.</summary>
    public string? RawFinishReason { get; init; }

    public int? PromptTokens { get; init; }
    public int? CompletionTokens { get; init; }

    /// <summary>Why the call gave no answer (e.g. "HTTP 500 ... after 4 attempts"); null when it answered.</summary>
    public string? Error { get; init; }

    /// <summary>How many times the request was sent.</summary>
    public int Attempts { get; init; }

    public double Seconds { get; init; }
    public DateTimeOffset? CreatedAt { get; init; }
    string IArtifact.LogicalKey => $"external_call/{CallId}";
    string? IArtifact.ParentId => SubjectId;
    string? IArtifact.Tag => Error is null ? Ok : Failed;
}
