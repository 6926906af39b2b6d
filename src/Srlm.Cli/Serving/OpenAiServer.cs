using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Srlm.Cli.Serving;

/// <summary>What <see cref="OpenAiServer"/> serves and how.</summary>
public sealed record ServeOptions
{
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (see <see cref="OpenAiServer.Address"/>).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>When set, every /v1 request needs "Authorization: Bearer KEY".</summary>
    public string? ApiKey { get; init; }
    /// <summary>Requests admitted at once (generating or waiting for the model); one more is answered 429.</summary>
    public int MaxQueue { get; init; } = 256;
    public int MaxN { get; init; } = 16;
    /// <summary>How often a request still waiting for the model writes a progress line.</summary>
    public TimeSpan ProgressEvery { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>A request the server refuses: an OpenAI-style error object with this status.</summary>
public sealed class ApiError(int status, string message, string? param = null, string type = "invalid_request_error", string? code = null) : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Type { get; } = type;
    public string? Code { get; } = code;

    public JsonObject ToJson() => new() { ["error"] = new JsonObject { ["message"] = Message, ["type"] = Type, ["param"] = Param, ["code"] = Code } };
}

/// <summary>The OpenAI-compatible HTTP API over one checkpoint (ASP.NET Core minimal APIs): POST /v1/chat/completions
/// (messages rendered by the checkpoint's chat template), POST /v1/completions, GET /v1/models, GET /health.
/// Every generation goes through <see cref="ServedModel.GenerateAsync"/>, which merges concurrent calls with equal
/// sampling settings into one batch; each sample has its own seeded stream, so a request's text does not depend on
/// what it was batched with.</summary>
public sealed partial class OpenAiServer : IAsyncDisposable
{
    private readonly ServedModel _model;
    private readonly ServeOptions _options;
    private readonly TextWriter _log;
    private readonly WebApplication _app;
    private readonly object _logGate = new();
    private int _admitted;
    private long _requestCounter;

    /// <summary>JSON as clients read it: text (non-ASCII, quotes, angle brackets) written as itself, not \u-escaped.</summary>
    private static readonly JsonSerializerOptions Wire = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public string ModelName { get; }
    /// <summary>http://host:port once started.</summary>
    public string Address { get; private set; } = "";

    public OpenAiServer(ServedModel model, string modelName, ServeOptions options, TextWriter log)
    {
        _model = model; ModelName = modelName; _options = options; _log = log;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders(); // our own lines only (ServeLog): request bodies and keys never reach a log
        builder.WebHost.UseKestrel(k =>
        {
            if (options.Host is "localhost") k.ListenLocalhost(options.Port);
            else k.Listen(System.Net.IPAddress.Parse(options.Host), options.Port);
        });
        _app = builder.Build();
        _app.Use(async (ctx, next) =>
        {
            if (_options.ApiKey is { } key && ctx.Request.Path.StartsWithSegments("/v1")
                && ctx.Request.Headers.Authorization.ToString() != "Bearer " + key)
            {
                await WriteError(ctx, new ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)", type: "authentication_error", code: "invalid_api_key"));
                return;
            }
            await next(ctx);
        });
        _app.MapGet("/health", () => Results.Text(new JsonObject { ["status"] = "ok", ["model"] = ModelName }.ToJsonString(Wire), "application/json"));
        _app.MapGet("/v1/models", () => Results.Text(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new JsonObject { ["id"] = ModelName, ["object"] = "model", ["created"] = 0, ["owned_by"] = "srlm" }),
        }.ToJsonString(Wire), "application/json"));
        _app.MapPost("/v1/chat/completions", ctx => Handle(ctx, chat: true));
        _app.MapPost("/v1/completions", ctx => Handle(ctx, chat: false));
    }

    public async Task StartAsync(CancellationToken cancel = default)
    {
        await _app.StartAsync(cancel);
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        Address = addresses.First().Replace("[::1]", "localhost", StringComparison.Ordinal);
    }

    public async ValueTask DisposeAsync()
    {
        try { await _app.StopAsync(CancellationToken.None); } catch (OperationCanceledException) { }
        await _app.DisposeAsync();
    }

    private void Log(string line)
    {
        lock (_logGate) { _log.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"); _log.Flush(); }
    }

    /// <summary>The one mapping from what generation reports to OpenAI's finish_reason: a stop token or stop string
    /// is "stop", running out of max_tokens is "length".</summary>
    public static string FinishReasonText(FinishReason reason) => reason == FinishReason.Length ? "length" : "stop";

    private async Task Handle(HttpContext ctx, bool chat)
    {
        var id = (chat ? "chatcmpl-" : "cmpl-") + Interlocked.Increment(ref _requestCounter).ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N")[..8];
        bool admitted = false;
        try
        {
            JsonObject body;
            try
            {
                using var reader = new StreamReader(ctx.Request.Body);
                var text = await reader.ReadToEndAsync(ctx.RequestAborted);
                body = JsonNode.Parse(text) as JsonObject ?? throw new ApiError(400, "the request body must be a JSON object");
            }
            catch (JsonException e) { throw new ApiError(400, $"the request body is not valid JSON: {e.Message.Split('\n')[0]}"); }
            var request = ParseRequest(body, chat);

            if (Interlocked.Increment(ref _admitted) > _options.MaxQueue)
            {
                Interlocked.Decrement(ref _admitted);
                ctx.Response.Headers.RetryAfter = "1";
                throw new ApiError(429, $"the server's request queue is full ({_options.MaxQueue} requests); retry later", type: "rate_limit_error", code: "queue_full");
            }
            admitted = true;
            var sw = Stopwatch.StartNew();
            Log($"{id}: {(chat ? "chat" : "completion")} {request.Prompts.Count} prompt(s) x n={request.N}, {request.Prompts.Sum(p => p.Count)} prompt tokens, max_tokens {request.Options.MaxNewTokens}, temperature {request.Options.Temperature.ToString(CultureInfo.InvariantCulture)}, seed {request.Seed}{(request.Stream ? ", stream" : "")}");
            if (request.Stream)
            {
                await Stream(ctx, id, chat, request, sw);
                return;
            }
            var generation = _model.GenerateAsync(request.Generation, request.Options, ctx.RequestAborted);
            await LogWhileGenerating(generation, id, sw, ctx.RequestAborted);
            var results = await generation;
            var usage = Usage(request, results, id, sw);
            var ordered = results.OrderBy(r => r.RequestIndex).ThenBy(r => r.SampleIndex).ToList();
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            var choices = new JsonArray();
            foreach (var r in ordered)
            {
                int index = r.RequestIndex * request.N + r.SampleIndex;
                choices.Add(chat
                    ? new JsonObject { ["index"] = index, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = r.Text }, ["logprobs"] = null, ["finish_reason"] = FinishReasonText(r.FinishReason) }
                    : new JsonObject { ["index"] = index, ["text"] = r.Text, ["logprobs"] = null, ["finish_reason"] = FinishReasonText(r.FinishReason) });
            }
            var response = new JsonObject
            {
                ["id"] = id, ["object"] = chat ? "chat.completion" : "text_completion", ["created"] = created, ["model"] = ModelName,
                ["choices"] = choices, ["usage"] = usage,
            };
            ctx.Response.ContentType = "application/json";
            await ctx.Response.WriteAsync(response.ToJsonString(Wire), ctx.RequestAborted);
        }
        catch (ApiError e)
        {
            if (e.Status != 401) Log($"{id}: {e.Status} {e.Message}");
            await WriteError(ctx, e);
        }
        catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested)
        {
            Log($"{id}: client went away");
        }
        catch (Exception e)
        {
            Log($"{id}: 500 {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            if (!ctx.Response.HasStarted) await WriteError(ctx, new ApiError(500, $"generation failed: {e.Message.Split('\n')[0]}", type: "server_error"));
        }
        finally
        {
            if (admitted) Interlocked.Decrement(ref _admitted);
        }
    }

    private static async Task WriteError(HttpContext ctx, ApiError e)
    {
        if (ctx.Response.HasStarted) return;
        ctx.Response.StatusCode = e.Status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(e.ToJson().ToJsonString(Wire));
    }

    /// <summary>Logs every <see cref="ServeOptions.ProgressEvery"/> while a generation runs; returns when it ends.</summary>
    private async Task LogWhileGenerating(Task generation, string id, Stopwatch sw, CancellationToken abort)
    {
        while (await Task.WhenAny(generation, Task.Delay(_options.ProgressEvery, abort)) != generation)
        {
            abort.ThrowIfCancellationRequested();
            Log($"{id}: still generating after {sw.Elapsed.TotalSeconds:F0} s ({_model.Executor.Pending} model calls queued)");
        }
    }

    /// <summary>The usage object of a finished request, and its log line.</summary>
    private JsonObject Usage(ParsedRequest request, IReadOnlyList<GeneratedSequence> results, string id, Stopwatch sw)
    {
        int promptTokens = request.Prompts.Sum(p => p.Count);
        int completionTokens = results.Sum(r => r.TokenIds.Length);
        Log($"{id}: done in {sw.ElapsedMilliseconds} ms, {completionTokens} tokens, finish {string.Join(',', results.Select(r => FinishReasonText(r.FinishReason)).Distinct())}");
        return new JsonObject
        {
            ["prompt_tokens"] = promptTokens,
            ["completion_tokens"] = completionTokens,
            ["total_tokens"] = promptTokens + completionTokens,
        };
    }
}
