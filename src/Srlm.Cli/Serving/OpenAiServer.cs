using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Srlm.Model;
using Srlm.Model.ChatTemplates;

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
public sealed class OpenAiServer : IAsyncDisposable
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

    /// <summary>Server-sent events while the batch generates: each choice's text goes out as its tokens are drawn
    /// (chat sends the role first), then each choice's finish_reason, the usage chunk when
    /// stream_options.include_usage asks for it, and [DONE]. Text the decoder has not settled (a partly drawn
    /// multi-byte character) and any tail that could still become a stop string are held back until they settle,
    /// so a stop string is never sent and the pieces concatenate to exactly the non-streamed text.</summary>
    private async Task Stream(HttpContext ctx, string id, bool chat, ParsedRequest request, Stopwatch sw)
    {
        var drawn = Channel.CreateUnbounded<(int Request, int Sample, int Token)>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var generation = _model.GenerateAsync(request.Generation, request.Options, ctx.RequestAborted,
            (r, s, t) => drawn.Writer.TryWrite((r, s, t)));
        // Every token is written before the generation's task completes, so completing the channel here loses none.
        _ = generation.ContinueWith(_ => drawn.Writer.TryComplete(), TaskScheduler.Default);
        var progress = LogWhileGenerating(generation, id, sw, ctx.RequestAborted);

        long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        ctx.Response.ContentType = "text/event-stream";
        ctx.Response.Headers.CacheControl = "no-cache";
        async Task Send(JsonNode data, bool flush = true)
        {
            await ctx.Response.WriteAsync("data: " + data.ToJsonString(Wire) + "\n\n", ctx.RequestAborted);
            if (flush) await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
        }
        JsonObject Chunk(int index, string? delta, string? finish, bool first) => chat
            ? new JsonObject
            {
                ["id"] = id, ["object"] = "chat.completion.chunk", ["created"] = created, ["model"] = ModelName,
                ["choices"] = new JsonArray(new JsonObject
                {
                    ["index"] = index,
                    ["delta"] = first ? new JsonObject { ["role"] = "assistant", ["content"] = "" } : delta is null ? new JsonObject() : new JsonObject { ["content"] = delta },
                    ["logprobs"] = null, ["finish_reason"] = finish,
                }),
            }
            : new JsonObject
            {
                ["id"] = id, ["object"] = "text_completion", ["created"] = created, ["model"] = ModelName,
                ["choices"] = new JsonArray(new JsonObject { ["index"] = index, ["text"] = delta ?? "", ["logprobs"] = null, ["finish_reason"] = finish }),
            };

        var choices = Enumerable.Range(0, request.Prompts.Count * request.N).Select(_ => new StreamedChoice()).ToArray();
        if (chat)
        {
            for (int c = 0; c < choices.Length; c++) await Send(Chunk(c, null, null, first: true), flush: c == choices.Length - 1);
        }
        else await ctx.Response.Body.FlushAsync(ctx.RequestAborted); // headers out now: the client knows it was accepted
        var changed = new SortedSet<int>();
        while (await drawn.Reader.WaitToReadAsync(ctx.RequestAborted))
        {
            while (drawn.Reader.TryRead(out var t))
            {
                int c = t.Request * request.N + t.Sample;
                choices[c].Tokens.Add(t.Token);
                changed.Add(c);
            }
            foreach (var c in changed)
            {
                var piece = choices[c].Settled(_model.Tokenizer, request.Options.StopStrings);
                if (piece.Length > 0) await Send(Chunk(c, piece, null, first: false), flush: false);
            }
            if (changed.Count > 0) await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
            changed.Clear();
        }

        IReadOnlyList<GeneratedSequence> results;
        try
        {
            await progress;
            results = await generation;
        }
        catch (Exception e) when (e is not OperationCanceledException || !ctx.RequestAborted.IsCancellationRequested)
        {
            // The response has started, so the failure goes out as an error event in place of [DONE].
            Log($"{id}: 500 {e.GetType().Name}: {e.Message.Split('\n')[0]}");
            await Send(new ApiError(500, $"generation failed: {e.Message.Split('\n')[0]}", type: "server_error").ToJson());
            return;
        }
        var usage = Usage(request, results, id, sw);
        foreach (var r in results.OrderBy(r => r.RequestIndex).ThenBy(r => r.SampleIndex))
        {
            int index = r.RequestIndex * request.N + r.SampleIndex;
            var sent = choices[index].Sent;
            if (r.Text.StartsWith(sent, StringComparison.Ordinal))
            {
                if (r.Text.Length > sent.Length) await Send(Chunk(index, r.Text[sent.Length..], null, first: false), flush: false);
            }
            else Log($"{id}: choice {index}: the streamed text is not a prefix of the final text (the tokenizer's decoding changed earlier text)");
            await Send(Chunk(index, null, FinishReasonText(r.FinishReason), first: false), flush: false);
        }
        if (request.IncludeUsage)
            await Send(new JsonObject { ["id"] = id, ["object"] = chat ? "chat.completion.chunk" : "text_completion", ["created"] = created, ["model"] = ModelName, ["choices"] = new JsonArray(), ["usage"] = usage }, flush: false);
        await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted);
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted);
    }

    /// <summary>One streamed choice: the tokens drawn so far and the text already sent.</summary>
    private sealed class StreamedChoice
    {
        public List<int> Tokens { get; } = [];
        public string Sent { get; private set; } = "";
        private bool _stopped;

        /// <summary>The text that can be sent now and was not yet: the decoded tokens up to a stop string, less a
        /// trailing unsettled character and less any tail that a later token could turn into a stop string.</summary>
        public string Settled(Srlm.Model.Tokenization.ITokenizer tokenizer, IReadOnlyList<string> stops)
        {
            if (_stopped) return "";
            var text = tokenizer.Decode(Tokens);
            int end = text.Length;
            int cut = TextGenerator.FirstStop(text, stops);
            if (cut >= 0) { end = cut; _stopped = true; }
            else
            {
                while (end > 0 && text[end - 1] == '\uFFFD') end--;
                int hold = 0; // the longest tail that is the start of a stop string
                foreach (var stop in stops)
                    for (int k = Math.Min(stop.Length - 1, end); k > hold; k--)
                        if (string.CompareOrdinal(text, end - k, stop, 0, k) == 0) { hold = k; break; }
                end -= hold;
            }
            if (end <= Sent.Length || !text.StartsWith(Sent, StringComparison.Ordinal)) return "";
            var piece = text[Sent.Length..end];
            Sent = text[..end];
            return piece;
        }
    }

    private sealed record ParsedRequest(List<IReadOnlyList<int>> Prompts, int N, ulong Seed, SamplingOptions Options, bool Stream, bool IncludeUsage)
    {
        public List<GenerationRequest> Generation { get; } = Prompts.Select((ids, p) => new GenerationRequest(ids,
            Enumerable.Range(0, N).Select(i => p == 0 && i == 0 ? Seed : SequenceRandom.Derive(Seed, (ulong)p, (ulong)i)).ToList())).ToList();
    }

    private ParsedRequest ParseRequest(JsonObject body, bool chat)
    {
        var model = _model;
        OptionalString(body, "model");
        foreach (var unsupported in new[] { "tools", "functions", "logit_bias" })
            if (body[unsupported] is JsonArray { Count: > 0 } or JsonObject { Count: > 0 }) throw new ApiError(400, $"'{unsupported}' is not supported by srlm serve", unsupported);
        if (body["logprobs"] is { } lp && lp.GetValueKind() is not (JsonValueKind.False or JsonValueKind.Null)) throw new ApiError(400, "'logprobs' is not supported by srlm serve", "logprobs");
        if (Integer(body, "best_of") is { } bo && bo != 1) throw new ApiError(400, "'best_of' other than 1 is not supported by srlm serve", "best_of");

        int n = (int)(Integer(body, "n") ?? 1);
        if (n < 1 || n > _options.MaxN) throw new ApiError(400, $"'n' must be between 1 and {_options.MaxN}, got {n}", "n");
        double temperature = Number(body, "temperature") ?? model.Generation.Temperature;
        if (temperature < 0 || temperature > 2) throw new ApiError(400, $"'temperature' must be between 0 and 2, got {temperature.ToString(CultureInfo.InvariantCulture)}", "temperature");
        double topP = Number(body, "top_p") ?? model.Generation.TopP;
        if (topP <= 0 || topP > 1) throw new ApiError(400, $"'top_p' must be in (0, 1], got {topP.ToString(CultureInfo.InvariantCulture)}", "top_p");
        var maxField = chat && body["max_completion_tokens"] is not null ? "max_completion_tokens" : "max_tokens";
        long? maxTokens = Integer(body, maxField);
        if (maxTokens is < 1) throw new ApiError(400, $"'{maxField}' must be at least 1, got {maxTokens}", maxField);
        ulong seed = Integer(body, "seed") is { } s ? unchecked((ulong)s) : (ulong)Random.Shared.NextInt64();
        bool stream = Bool(body, "stream") ?? false;
        bool ignoreEos = Bool(body, "ignore_eos") ?? false; // vLLM's extension: run to max_tokens (benchmarks)
        bool includeUsage = false;
        if (body["stream_options"] is { } so && so.GetValueKind() != JsonValueKind.Null)
        {
            if (so is not JsonObject soo) throw new ApiError(400, "'stream_options' must be an object", "stream_options");
            includeUsage = Bool(soo, "include_usage", "stream_options.include_usage") ?? false;
        }
        var stops = new List<string>();
        switch (body["stop"])
        {
            case null: break;
            case JsonArray a:
                if (a.Count > 4) throw new ApiError(400, $"'stop' takes at most 4 strings, got {a.Count}", "stop");
                foreach (var x in a)
                    stops.Add(x?.GetValueKind() == JsonValueKind.String && x.GetValue<string>().Length > 0 ? x.GetValue<string>() : throw new ApiError(400, "'stop' must be a non-empty string or a list of non-empty strings", "stop"));
                break;
            case var v when v.GetValueKind() == JsonValueKind.String && v.GetValue<string>().Length > 0: stops.Add(v.GetValue<string>()); break;
            case var v when v.GetValueKind() == JsonValueKind.Null: break;
            default: throw new ApiError(400, "'stop' must be a non-empty string or a list of non-empty strings", "stop");
        }

        var prompts = new List<IReadOnlyList<int>>();
        IReadOnlyList<int> stopIds = [];
        if (chat)
        {
            if (body["messages"] is not JsonArray { Count: > 0 } messages) throw new ApiError(400, "'messages' must be a non-empty list of messages", "messages");
            var list = new List<ChatMessage>();
            for (int i = 0; i < messages.Count; i++)
            {
                if (messages[i] is not JsonObject m) throw new ApiError(400, $"messages[{i}] must be an object", $"messages[{i}]");
                var role = OptionalString(m, "role", $"messages[{i}].role") ?? throw new ApiError(400, $"messages[{i}].role is missing", $"messages[{i}].role");
                if (role == "developer") role = "system";
                if (role is not ("system" or "user" or "assistant")) throw new ApiError(400, $"messages[{i}].role must be system, user or assistant, got '{role}'", $"messages[{i}].role");
                list.Add(new ChatMessage(role, Content(m["content"], $"messages[{i}].content")));
            }
            string text;
            if (model.Template.Chat is { } format)
            {
                try { text = format.Render(list, addGenerationPrompt: true); }
                catch (ChatTemplateException e) { throw new ApiError(400, $"the checkpoint's chat template refused the messages: {e.Message}", "messages"); }
            }
            else if (list.Count == 1 && list[0].Role == "user") text = model.Template.Format(list[0].Content);
            else throw new ApiError(400, $"this checkpoint has no chat template (its prompt layout is '{model.Template.Name}'): send exactly one user message", "messages");
            stops.InsertRange(0, model.Template.StopStrings);
            stopIds = model.Template.StopTokenIds(model.Tokenizer);
            prompts.Add(model.Tokenizer.Encode(text, addBos: model.Template.AddBos(model.Tokenizer)));
        }
        else
        {
            List<string> texts = body["prompt"] switch
            {
                JsonArray { Count: > 0 } a when a.All(x => x?.GetValueKind() == JsonValueKind.String) => a.Select(x => x!.GetValue<string>()).ToList(),
                JsonValue v when v.GetValueKind() == JsonValueKind.String => new List<string> { v.GetValue<string>() },
                _ => throw new ApiError(400, "'prompt' must be a string or a non-empty list of strings (token-id prompts are not supported)", "prompt"),
            };
            if (texts.Count * n > _options.MaxN) throw new ApiError(400, $"{texts.Count} prompts x n={n} is over the limit of {_options.MaxN} completions per request", "prompt");
            foreach (var t in texts) prompts.Add(model.Tokenizer.Encode(t, addBos: model.Tokenizer.AddBos));
        }
        int context = model.Config.MaxPositionEmbeddings;
        int longest = prompts.Max(p => p.Count);
        if (prompts.Any(p => p.Count == 0)) throw new ApiError(400, "the prompt is empty and the tokenizer adds no BOS", chat ? "messages" : "prompt");
        if (longest >= context) throw new ApiError(400, $"the prompt has {longest} tokens; this model's context is {context} tokens", chat ? "messages" : "prompt", code: "context_length_exceeded");
        int maxNew = (int)Math.Min(maxTokens ?? model.Generation.MaxNewTokens, context - longest);
        if (maxTokens is { } mt && longest + mt > context)
            throw new ApiError(400, $"the prompt ({longest} tokens) plus {maxField} ({mt}) is over this model's context of {context} tokens", maxField, code: "context_length_exceeded");
        var options = new SamplingOptions
        {
            MaxNewTokens = maxNew, Temperature = temperature, TopP = topP, TopK = model.Generation.TopK,
            StopStrings = stops, StopTokenIds = stopIds, StopAtEos = !ignoreEos,
        };
        return new ParsedRequest(prompts, n, seed, options, stream, includeUsage);
    }

    private static string Content(JsonNode? node, string field)
    {
        if (node?.GetValueKind() == JsonValueKind.String) return node.GetValue<string>();
        if (node is JsonArray parts)
        {
            var text = new System.Text.StringBuilder();
            foreach (var p in parts)
            {
                if (p is not JsonObject o || o["type"]?.GetValueKind() != JsonValueKind.String || o["type"]!.GetValue<string>() != "text" || o["text"]?.GetValueKind() != JsonValueKind.String)
                    throw new ApiError(400, $"{field}: only text parts ({{\"type\":\"text\",\"text\":...}}) are supported", field);
                text.Append(o["text"]!.GetValue<string>());
            }
            return text.ToString();
        }
        throw new ApiError(400, $"{field} must be a string or a list of text parts", field);
    }

    private static string? OptionalString(JsonObject o, string name, string? field = null)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        return n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : throw new ApiError(400, $"'{field ?? name}' must be a string", field ?? name);
    }

    private static double? Number(JsonObject o, string name)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        return n.GetValueKind() == JsonValueKind.Number ? n.GetValue<double>() : throw new ApiError(400, $"'{name}' must be a number", name);
    }

    private static long? Integer(JsonObject o, string name)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        if (n.GetValueKind() == JsonValueKind.Number && n.GetValue<JsonElement>().TryGetInt64(out var v)) return v;
        throw new ApiError(400, $"'{name}' must be an integer", name);
    }

    private static bool? Bool(JsonObject o, string name, string? field = null)
    {
        var n = o[name];
        if (n is null || n.GetValueKind() == JsonValueKind.Null) return null;
        return n.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ApiError(400, $"'{field ?? name}' must be true or false", field ?? name),
        };
    }
}
