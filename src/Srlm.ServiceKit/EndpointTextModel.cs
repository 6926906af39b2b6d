using System.ClientModel;
using System.ClientModel.Primitives;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using OpenAI;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace Srlm.ServiceKit;

/// <summary>How calls to external endpoints behave, from the environment of the calling service:
/// SRLM_ENDPOINT_TIMEOUT_S (seconds one attempt may take, default 120), SRLM_ENDPOINT_RETRIES (further attempts after a
/// 429, a 5xx, a timeout or a failed connection, default 4) and SRLM_ENDPOINT_CONCURRENCY (requests in flight to one
/// endpoint from this process, default 4).</summary>
public sealed record EndpointOptions
{
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);
    public int Retries { get; init; } = 4;
    public int Concurrency { get; init; } = 4;

    /// <summary>First back-off delay when the endpoint sends no Retry-After (doubled each retry, with jitter).</summary>
    public TimeSpan BaseDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>No wait between attempts is longer than this, whatever Retry-After asks.</summary>
    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The options the variables give (read through <paramref name="variable"/>, the process environment by
    /// default); a bad value is one line naming the variable.</summary>
    public static EndpointOptions FromEnvironment(Func<string, string?>? variable = null)
    {
        variable ??= Environment.GetEnvironmentVariable;
        int? Read(string name, int min)
        {
            var text = variable(name);
            if (string.IsNullOrWhiteSpace(text)) return null;
            if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min)
                throw new ArgumentException($"{name}: must be a whole number >= {min}, got '{text}'");
            return v;
        }
        var o = new EndpointOptions();
        return o with
        {
            Timeout = Read("SRLM_ENDPOINT_TIMEOUT_S", 1) is { } t ? TimeSpan.FromSeconds(t) : o.Timeout,
            Retries = Read("SRLM_ENDPOINT_RETRIES", 0) ?? o.Retries,
            Concurrency = Read("SRLM_ENDPOINT_CONCURRENCY", 1) ?? o.Concurrency,
        };
    }
}

/// <summary>What a call to an endpoint serves: its run and iteration, the record it is for (the evaluated checkpoint or
/// the prompt shard) and its purpose ("prompt", "eval_judge", "eval_pairwise"); stored with every call.</summary>
public sealed record ExternalCallContext(string RunId, int Iteration, string SubjectId, string Purpose);

/// <summary>Opens the external endpoints a spec names (<see cref="ModelRef"/> with an endpoint) as <see cref="ITextModel"/>s
/// whose calls are stored (<see cref="ExternalCallRecord"/>). One per process (it holds each endpoint's concurrency limit).</summary>
public sealed class ExternalModels(IArtifactStore store, ILoggerFactory logs, EndpointOptions? options = null)
{
    private readonly EndpointOptions _options = options ?? EndpointOptions.FromEnvironment();
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _limits = new(StringComparer.Ordinal);

    public EndpointOptions Options => _options;

    /// <summary>The model of a spec field: an endpoint, or the checkpoint (`checkpoint:ID`) from <paramref name="models"/>.</summary>
    public async Task<ITextModel> GetAsync(IModelProvider models, ModelRef reference, string field, string? dtype, ExternalCallContext context, CancellationToken ct) =>
        reference.IsEndpoint ? Open(reference, field, context) : await models.GetAsync(SpecRefs.CheckpointId(reference.Folder, field), dtype, ct);

    /// <summary>The endpoint as a text model. Its key is read here, from this service's environment; a variable that is
    /// not set is a <see cref="PermanentMessageException"/> naming it.</summary>
    public ITextModel Open(ModelRef endpoint, string field, ExternalCallContext context)
    {
        if (!endpoint.IsEndpoint) throw new ArgumentException($"spec.{field}: is a checkpoint, not an endpoint");
        string? key = null;
        if (endpoint.ApiKeyEnv is { } variable)
        {
            key = Environment.GetEnvironmentVariable(variable);
            if (string.IsNullOrEmpty(key))
                throw new PermanentMessageException($"spec.{field}.api_key_env: the environment variable {variable} is not set in this service " +
                    "(the key of an endpoint is read from the environment of the service that calls it)");
        }
        var limit = _limits.GetOrAdd(endpoint.Endpoint!, _ => new SemaphoreSlim(_options.Concurrency, _options.Concurrency));
        return new EndpointTextModel(endpoint.Endpoint!, endpoint.Model!, key, context, store, _options, limit, logs.CreateLogger<EndpointTextModel>());
    }
}

/// <summary>An OpenAI-compatible chat endpoint as a text model, through Microsoft.Extensions.AI's <see cref="IChatClient"/>.
/// Each request is one user message (the chat template is the server's business) with the request's temperature, top_p,
/// token limit, seed and stop strings. Every call is stored under its request's <see cref="GenerationRequest.CallId"/>
/// before its answer is used, and a call already stored is read back instead of asked again (a redelivered message
/// counts nothing twice). The OpenAI client's own retries are off; Polly retries a 429 (after its Retry-After), a 5xx,
/// a timeout and a failed connection up to <see cref="EndpointOptions.Retries"/> times. A call refused (another 4xx) or
/// out of retries is stored with its reason and gives an empty text with <see cref="GenerationResult.Error"/>.</summary>
public sealed partial class EndpointTextModel : ITextModel
{
    private readonly string _endpoint;
    private readonly string _model;
    private readonly string? _key;
    private readonly ExternalCallContext _context;
    private readonly IArtifactStore _store;
    private readonly EndpointOptions _options;
    private readonly SemaphoreSlim _limit;
    private readonly ILogger _log;
    private readonly IChatClient _chat;

    public EndpointTextModel(string endpoint, string model, string? key, ExternalCallContext context, IArtifactStore store, EndpointOptions options,
        SemaphoreSlim limit, ILogger log)
    {
        (_endpoint, _model, _key, _context, _store, _options, _limit, _log) = (endpoint, model, key, context, store, options, limit, log);
        var client = new OpenAIClient(new ApiKeyCredential(key ?? "none"), new OpenAIClientOptions
        {
            Endpoint = new Uri(endpoint),
            RetryPolicy = new ClientRetryPolicy(0),
            // The attempt's own deadline is Polly's; the client's is only a backstop.
            NetworkTimeout = options.Timeout + TimeSpan.FromSeconds(5),
        });
        _chat = client.GetChatClient(model).AsIChatClient();
    }

    public string CheckpointId => $"endpoint:{_model}@{_endpoint}";

    /// <summary>Unknown for an endpoint; nothing that reads it (candidate sampling, pair rules) is ever given one.</summary>
    public int ContextLength => int.MaxValue;

    public int CountPromptTokens(string prompt) => throw new NotSupportedException($"{CheckpointId}: an endpoint does not count tokens");

    public int CountCompletionTokens(string completion) => throw new NotSupportedException($"{CheckpointId}: an endpoint does not count tokens");

    public async Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken ct)
    {
        var results = await Task.WhenAll(requests.Select(r => CallAsync(r, ct)));
        return results;
    }

    private async Task<GenerationResult> CallAsync(GenerationRequest request, CancellationToken ct)
    {
        var callId = request.CallId ?? throw new InvalidOperationException($"{CheckpointId}: a request to an endpoint needs a CallId (the record it is for)");
        var id = Ids.ExternalCall(callId);
        var stored = await _store.GetAsync<ExternalCallRecord>(id, ct);
        if (stored is null)
        {
            ExternalCallRecord call;
            await _limit.WaitAsync(ct);
            try { call = await AskAsync(id, callId, request, ct); }
            finally { _limit.Release(); }
            // Stored before it is used; when another replica stored this call first, its answer is the one used.
            if (await _store.PutAsync(call, ct) == WriteOutcome.Conflict)
                call = await _store.GetAsync<ExternalCallRecord>(id, ct) ?? call;
            stored = call;
        }
        return new GenerationResult(stored.Text ?? "", stored.PromptTokens ?? 0, stored.CompletionTokens ?? 0, stored.FinishReason) { Error = stored.Error };
    }

    private async Task<ExternalCallRecord> AskAsync(string id, string callId, GenerationRequest r, CancellationToken ct)
    {
        var options = new ChatOptions
        {
            ModelId = _model,
            Temperature = (float)r.Temperature,
            TopP = (float)r.TopP,
            MaxOutputTokens = r.MaxNewTokens,
            Seed = r.Seed,
            StopSequences = r.Stop.Count == 0 ? null : r.Stop.ToList(),
        };
        var requestJson = JsonSerializer.Serialize(new
        {
            model = _model,
            messages = new[] { new { role = "user", content = r.Prompt } },
            temperature = r.Temperature, top_p = r.TopP, max_tokens = r.MaxNewTokens, seed = r.Seed, stop = r.Stop,
        });
        int attempts = 0;
        var watch = Stopwatch.StartNew();
        ChatResponse? response = null;
        string? error = null;
        try
        {
            response = await Pipeline(callId, ct).ExecuteAsync(async token =>
            {
                attempts++;
                return await _chat.GetResponseAsync([new ChatMessage(ChatRole.User, r.Prompt)], options, token);
            }, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { throw; }
        catch (Exception e) when (Reason(e) is { } reason)
        {
            error = Scrub(Retryable(e) ? $"{reason} after {attempts} attempt{(attempts == 1 ? "" : "s")}" : reason);
            LogFailed(_log, _context.RunId, callId, _model, _endpoint, error);
        }
        var raw = response?.FinishReason?.Value;
        return new ExternalCallRecord
        {
            Id = id, RunId = _context.RunId, Iteration = _context.Iteration, CallId = callId, Purpose = _context.Purpose, SubjectId = _context.SubjectId,
            Endpoint = _endpoint, Model = _model, Request = Scrub(requestJson),
            Text = response is null ? null : Scrub(response.Text),
            RawFinishReason = raw,
            FinishReason = raw switch { "stop" => FinishReasons.Eos, "length" => FinishReasons.Length, _ => null },
            PromptTokens = response?.Usage?.InputTokenCount is { } pt ? (int)pt : null,
            CompletionTokens = response?.Usage?.OutputTokenCount is { } ctk ? (int)ctk : null,
            Error = error, Attempts = attempts, Seconds = watch.Elapsed.TotalSeconds,
        };
    }

    private ResiliencePipeline Pipeline(string callId, CancellationToken ct)
    {
        var builder = new ResiliencePipelineBuilder();
        if (_options.Retries > 0)
            builder.AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = _options.Retries,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = _options.BaseDelay,
                MaxDelay = _options.MaxDelay,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is { } e && !ct.IsCancellationRequested && Retryable(e)),
                // A 429's Retry-After is honoured (bounded by MaxDelay); otherwise the exponential back-off decides.
                DelayGenerator = args => ValueTask.FromResult(RetryAfter(args.Outcome.Exception) is { } wait ? (TimeSpan?)(wait > _options.MaxDelay ? _options.MaxDelay : wait) : null),
                OnRetry = args =>
                {
                    LogRetry(_log, _context.RunId, callId, _model, _endpoint, args.AttemptNumber + 2, Scrub(Reason(args.Outcome.Exception!) ?? "error"), args.RetryDelay.TotalSeconds);
                    return ValueTask.CompletedTask;
                },
            });
        builder.AddTimeout(_options.Timeout);
        return builder.Build();
    }

    private static bool Retryable(Exception e) => e switch
    {
        ClientResultException c => c.Status is 0 or 408 or 429 or >= 500,
        TimeoutRejectedException or HttpRequestException => true,
        OperationCanceledException => true, // the client's own network timeout; the caller's cancellation never gets here
        _ => false,
    };

    /// <summary>One line saying why a call failed; null for exceptions that are not the endpoint's doing (they propagate).</summary>
    private string? Reason(Exception e) => e switch
    {
        ClientResultException { Status: > 0 } c => $"HTTP {c.Status}{Phrase(c)}{Body(c)}",
        ClientResultException c => $"connection failed: {FirstLine(c.InnerException?.Message ?? c.Message)}",
        TimeoutRejectedException => $"timed out after {_options.Timeout.TotalSeconds:0.#} s",
        HttpRequestException h => $"connection failed: {FirstLine(h.Message)}",
        OperationCanceledException => $"timed out after {_options.Timeout.TotalSeconds:0.#} s",
        _ => null,
    };

    private static string Phrase(ClientResultException c) => c.GetRawResponse()?.ReasonPhrase is { Length: > 0 } p ? $" {p}" : "";

    private static string Body(ClientResultException c)
    {
        string text;
        try { text = c.GetRawResponse()?.Content?.ToString() ?? ""; }
        catch (InvalidOperationException) { return ""; }
        text = text.ReplaceLineEndings(" ").Trim();
        return text.Length == 0 ? "" : ": " + (text.Length > 200 ? text[..200] + "..." : text);
    }

    private static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    private static TimeSpan? RetryAfter(Exception? e)
    {
        if (e is not ClientResultException c || c.GetRawResponse() is not { } response) return null;
        if (!response.Headers.TryGetValue("Retry-After", out var value) || string.IsNullOrWhiteSpace(value)) return null;
        if (double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0) return TimeSpan.FromSeconds(seconds);
        if (DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
            return at > DateTimeOffset.UtcNow ? at - DateTimeOffset.UtcNow : TimeSpan.Zero;
        return null;
    }

    /// <summary>The key never reaches a record or a log line, even if an endpoint echoes it back.</summary>
    private string Scrub(string text) => _key is { Length: > 0 } key ? text.Replace(key, "***", StringComparison.Ordinal) : text;

    [LoggerMessage(EventId = 3020, Level = LogLevel.Warning, Message = "run {RunId} call {CallId} to {Model} at {Endpoint}: attempt {Attempt} follows ({Reason}), in {DelaySeconds:F1} s")]
    private static partial void LogRetry(ILogger logger, string runId, string callId, string model, string endpoint, int attempt, string reason, double delaySeconds);

    [LoggerMessage(EventId = 3021, Level = LogLevel.Warning, Message = "run {RunId} call {CallId} to {Model} at {Endpoint} failed: {Reason}; stored without an answer")]
    private static partial void LogFailed(ILogger logger, string runId, string callId, string model, string endpoint, string reason);
}
