using GenerationRequest = Srlm.ServiceKit.GenerationRequest;
using Srlm.ServiceKit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

// Over 300 lines on purpose: the fake OpenAI-compatible endpoint and every test that runs against it (model references, retries, timeouts, keys, and the endpoint as prompt model and as judge).
namespace Srlm.Tests.Serving;

/// <summary>A fake OpenAI-compatible endpoint on a free 127.0.0.1 port (ASP.NET Core minimal API): every
/// /v1/chat/completions request is recorded and answered by <see cref="Answer"/> (attempt number from 1, request body).</summary>
public sealed class FakeEndpoint : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _count;

    public ConcurrentQueue<(JsonObject Body, string Authorization)> Requests { get; } = new();
    public int Count => Volatile.Read(ref _count);
    public string BaseUrl { get; private set; } = "";

    /// <summary>Answers a request: status, JSON body, extra headers.</summary>
    public Func<int, JsonObject, Task<(int Status, string Body, (string, string)[] Headers)>> Answer { get; set; } = (_, _) => Task.FromResult((200, Chat("ok"), Array.Empty<(string, string)>()));

    /// <summary>When set, a request without "Authorization: Bearer KEY" gets a 401.</summary>
    public string? Key { get; init; }

    private FakeEndpoint()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        _app = builder.Build();
        _app.MapPost("/v1/chat/completions", async ctx =>
        {
            var body = (JsonNode.Parse(await new StreamReader(ctx.Request.Body).ReadToEndAsync()) as JsonObject)!;
            var auth = ctx.Request.Headers.Authorization.ToString();
            Requests.Enqueue((body, auth));
            int n = Interlocked.Increment(ref _count);
            if (Key is not null && auth != "Bearer " + Key)
            {
                ctx.Response.StatusCode = 401;
                await ctx.Response.WriteAsync("""{"error":{"message":"wrong key","type":"authentication_error"}}""");
                return;
            }
            var (status, text, headers) = await Answer(n, body);
            ctx.Response.StatusCode = status;
            ctx.Response.ContentType = "application/json";
            foreach (var (k, v) in headers) ctx.Response.Headers[k] = v;
            await ctx.Response.WriteAsync(text);
        });
    }

    public static async Task<FakeEndpoint> StartAsync(string? key = null)
    {
        var e = new FakeEndpoint { Key = key };
        await e._app.StartAsync();
        e.BaseUrl = e._app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/v1";
        return e;
    }

    /// <summary>An OpenAI chat completion body with one choice.</summary>
    public static string Chat(string text, string finish = "stop") => new JsonObject
    {
        ["id"] = "chatcmpl-1", ["object"] = "chat.completion", ["created"] = 0, ["model"] = "judge",
        ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text }, ["finish_reason"] = finish }),
        ["usage"] = new JsonObject { ["prompt_tokens"] = 7, ["completion_tokens"] = 3, ["total_tokens"] = 10 },
    }.ToJsonString();

    public static string UserMessage(JsonObject body) => body["messages"]![0]!["content"]!.GetValue<string>();

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>Log lines of a test host, kept to check that no key reaches a log.</summary>
public sealed class ListLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<string> Lines { get; } = new();
    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
    public void Dispose() { }

    private sealed class Logger(ListLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Lines.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception}");
    }
}

/// <summary>models.prompt_model / evaluation.judge_model as an OpenAI-compatible endpoint (issue 23): the spec field, the
/// calls through Microsoft.Extensions.AI with Polly retries, every call stored under its caller's id, the key read from
/// the calling service's environment and kept out of every record, journal entry and log line.</summary>
public sealed class ExternalEndpointTests
{
    private static readonly EndpointOptions Fast = new() { Retries = 3, BaseDelay = TimeSpan.FromMilliseconds(10), Timeout = TimeSpan.FromSeconds(20) };

    private static string Error(string json) => Assert.Throws<RunSpecException>(() => RunSpecJson.Parse(json)).Message;

    private static string Spec(string models = "", string judge = "", string evaluation = "") =>
        $$"""{ "models": { "m1": "m"{{models}} }, "seed_data": { "ift": "i" }{{judge}}, "evaluation": { "held_out": "h", "evaluator": "judge_win_rate"{{evaluation}} } }""";

    [Fact]
    public void A_model_reference_is_a_folder_or_an_endpoint_object_and_reads_back_as_written()
    {
        var spec = RunSpecJson.Parse(Spec(
            models: """, "prompt_model": { "endpoint": "http://127.0.0.1:8000/v1", "model": "writer" }""",
            evaluation: """, "judge_model": { "endpoint": "https://api.example.com/v1", "model": "big-judge", "api_key_env": "JUDGE_KEY" }"""));
        Assert.Equal(new ModelRef { Endpoint = "http://127.0.0.1:8000/v1", Model = "writer" }, spec.Models.PromptModel);
        Assert.Equal(new ModelRef { Endpoint = "https://api.example.com/v1", Model = "big-judge", ApiKeyEnv = "JUDGE_KEY" }, spec.Evaluation!.JudgeModel);
        var json = RunSpecJson.Serialize(spec);
        Assert.Contains("\"api_key_env\": \"JUDGE_KEY\"", json);
        var back = RunSpecJson.Parse(json);
        Assert.Equal((spec.Models.PromptModel, spec.Evaluation.JudgeModel), (back.Models.PromptModel, back.Evaluation!.JudgeModel));
        Assert.Equal(json, RunSpecJson.Serialize(RunSpecJson.Parse(json)));

        var folders = RunSpecJson.Parse(Spec(models: """, "prompt_model": "writer-folder" """, evaluation: """, "judge_model": "checkpoint:r/eval-judge" """));
        Assert.Equal(("writer-folder", false), (folders.Models.PromptModel!.Folder, folders.Models.PromptModel.IsEndpoint));
        Assert.Contains("\"judge_model\": \"checkpoint:r/eval-judge\"", RunSpecJson.Serialize(folders));
    }

    [Theory]
    [InlineData(""", "prompt_model": { "endpoint": "http://h/v1", "model": "m", "key": "sk-1" }""", "",
        "spec.models.prompt_model: unknown field 'key' (expected endpoint, model, api_key_env)")]
    [InlineData("", """, "judge_model": { "endpoint": "ftp://h/v1", "model": "m" }""",
        "spec.evaluation.judge_model.endpoint: must be an absolute http:// or https:// URL, got 'ftp://h/v1'")]
    [InlineData("", """, "judge_model": { "endpoint": "/v1", "model": "m" }""",
        "spec.evaluation.judge_model.endpoint: must be an absolute http:// or https:// URL, got '/v1'")]
    [InlineData("", """, "judge_model": { "endpoint": "http://h/v1", "model": " " }""",
        "spec.evaluation.judge_model.model: must name the model the endpoint serves")]
    [InlineData("", """, "judge_model": { "endpoint": "http://h/v1" }""",
        "spec.evaluation.judge_model.model: must name the model the endpoint serves")]
    [InlineData("", """, "judge_model": { "endpoint": "http://h/v1", "model": "m", "api_key_env": "1-KEY" }""",
        "spec.evaluation.judge_model.api_key_env: must be an environment variable name")]
    [InlineData("", """, "judge_model": { "model": "m" }""",
        "spec.evaluation.judge_model: an endpoint object needs 'endpoint' (expected endpoint, model, api_key_env)")]
    [InlineData("", """, "judge_model": 3""",
        "spec.evaluation.judge_model: must be a checkpoint folder (a string) or an endpoint object")]
    public void A_bad_endpoint_reference_is_one_line_naming_the_field(string models, string evaluation, string expected)
    {
        var message = Error(Spec(models: models, evaluation: evaluation));
        Assert.StartsWith(expected, message);
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain("sk-1", message);
    }

    [Theory]
    [InlineData("model")]
    [InlineData("endpoint")]
    [InlineData("judge_model")]
    public void The_loops_own_judge_never_takes_an_endpoint_or_another_model(string field)
    {
        var message = Error(Spec(judge: $$""", "judge": { "samples": 2, "{{field}}": { "endpoint": "http://h/v1", "model": "m" } }"""));
        Assert.StartsWith($"spec.judge.{field}: the loop's judge is always the model being trained", message);
        Assert.Contains("self-rewarding", message);
        Assert.Contains("evaluation.judge_model", message);
    }

    private static ExternalModels Models(IArtifactStore store, EndpointOptions options, ILoggerProvider? logs = null) =>
        new(store, logs is null ? NullLoggerFactory.Instance : LoggerFactory.Create(b => b.AddProvider(logs)), options);

    private static async Task<IArtifactStore> StoreAsync(string folder) =>
        await StoreFactory.OpenArtifactStoreAsync("sqlite://" + Path.Combine(folder, "srlm.db"));

    private static readonly ExternalCallContext Context = new("r", 1, "r/m2", "eval_judge");

    private static GenerationRequest Ask(string prompt, string callId) => new(prompt, 42, 0.5, 0.9, 16) { CallId = callId };

    [Fact]
    public async Task A_429_is_retried_after_its_Retry_After_with_the_bearer_key_and_the_call_is_stored_without_the_key()
    {
        var key = "sk-test-" + Guid.NewGuid().ToString("N");
        var variable = "SRLM_TEST_KEY_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, key);
        await using var fake = await FakeEndpoint.StartAsync(key);
        fake.Answer = (n, _) => Task.FromResult(n == 1
            ? (429, """{"error":{"message":"slow down","type":"rate_limit"}}""", new[] { ("Retry-After", "1") })
            : (200, FakeEndpoint.Chat("Score: 4"), Array.Empty<(string, string)>()));
        var folder = Directory.CreateTempSubdirectory("srlm-endpoint-").FullName;
        var store = await StoreAsync(folder);
        var logs = new ListLoggerProvider();
        var model = Models(store, Fast, logs).Open(new ModelRef { Endpoint = fake.BaseUrl, Model = "judge", ApiKeyEnv = variable }, "evaluation.judge_model", Context);

        var watch = Stopwatch.StartNew();
        var result = (await model.GenerateAsync([Ask("Judge this", "r/m2/eval-win/0/self/j0") with { Stop = ["\n\n"] }], CancellationToken.None))[0];
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(0.9), $"Retry-After: 1 was not honoured ({watch.Elapsed.TotalSeconds:F2} s)");
        Assert.Equal(("Score: 4", FinishReasons.Eos, 7, 3, (string?)null), (result.Text, result.FinishReason, result.PromptTokens, result.CompletionTokens, result.Error));
        Assert.Equal(2, fake.Count);
        Assert.All(fake.Requests, r => Assert.Equal("Bearer " + key, r.Authorization));
        var sent = fake.Requests.Last().Body;
        Assert.Equal(("judge", "Judge this", 0.5, 16, 42L), (sent["model"]!.GetValue<string>(), FakeEndpoint.UserMessage(sent),
            Math.Round(sent["temperature"]!.GetValue<double>(), 6), sent["max_completion_tokens"]?.GetValue<int>() ?? sent["max_tokens"]!.GetValue<int>(), sent["seed"]!.GetValue<long>()));

        var call = await store.GetAsync<ExternalCallRecord>(Ids.ExternalCall("r/m2/eval-win/0/self/j0"));
        Assert.NotNull(call);
        Assert.Equal(("Score: 4", "eos", "stop", 2, (string?)null, "eval_judge", "r/m2", fake.BaseUrl, "judge"),
            (call.Text, call.FinishReason, call.RawFinishReason, call.Attempts, call.Error, call.Purpose, call.SubjectId, call.Endpoint, call.Model));
        Assert.Contains("Judge this", call.Request);
        Assert.Contains(logs.Lines, l => l.Contains("attempt 2 follows (HTTP 429", StringComparison.Ordinal));
        Assert.DoesNotContain(logs.Lines, l => l.Contains(key, StringComparison.Ordinal));
        Assert.DoesNotContain(key, JsonSerializer.Serialize(call));
        await store.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public async Task A_503_until_the_retries_run_out_is_stored_with_its_reason_and_no_text_and_a_400_is_not_retried()
    {
        await using var fake = await FakeEndpoint.StartAsync();
        fake.Answer = (_, body) => Task.FromResult(FakeEndpoint.UserMessage(body) == "bad request"
            ? (400, """{"error":{"message":"max_tokens is too large","type":"invalid_request_error"}}""", Array.Empty<(string, string)>())
            : (503, """{"error":{"message":"overloaded"}}""", Array.Empty<(string, string)>()));
        var folder = Directory.CreateTempSubdirectory("srlm-endpoint-").FullName;
        var store = await StoreAsync(folder);
        var model = Models(store, Fast with { Retries = 2 }).Open(new ModelRef { Endpoint = fake.BaseUrl, Model = "judge" }, "evaluation.judge_model", Context);

        var unavailable = (await model.GenerateAsync([Ask("x", "call/503")], CancellationToken.None))[0];
        Assert.Equal(3, fake.Count); // 1 + SRLM_ENDPOINT_RETRIES
        Assert.Equal("", unavailable.Text);
        Assert.StartsWith("HTTP 503", unavailable.Error);
        Assert.EndsWith("after 3 attempts", unavailable.Error);
        var stored = (await store.GetAsync<ExternalCallRecord>(Ids.ExternalCall("call/503")))!;
        Assert.Equal((null, 3, unavailable.Error), (stored.Text, stored.Attempts, stored.Error));

        var refused = (await model.GenerateAsync([Ask("bad request", "call/400")], CancellationToken.None))[0];
        Assert.Equal(4, fake.Count); // asked once
        Assert.StartsWith("HTTP 400", refused.Error);
        Assert.Contains("max_tokens is too large", refused.Error);
        Assert.DoesNotContain("attempts", refused.Error);

        // Asked again (a redelivered message): the stored outcome, no new request.
        var again = await model.GenerateAsync([Ask("x", "call/503"), Ask("bad request", "call/400")], CancellationToken.None);
        Assert.Equal(4, fake.Count);
        Assert.Equal([unavailable.Error, refused.Error], again.Select(r => r.Error));
        await store.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public async Task An_attempt_past_the_timeout_is_abandoned_and_retried()
    {
        await using var fake = await FakeEndpoint.StartAsync();
        int slowSeen = 0;
        fake.Answer = async (_, body) =>
        {
            // The first request for "slow" hangs past the timeout; everything else answers at once.
            if (FakeEndpoint.UserMessage(body) == "slow" && Interlocked.Increment(ref slowSeen) == 1) await Task.Delay(TimeSpan.FromSeconds(15));
            return (200, FakeEndpoint.Chat("late but fine", "length"), Array.Empty<(string, string)>());
        };
        var folder = Directory.CreateTempSubdirectory("srlm-endpoint-").FullName;
        var store = await StoreAsync(folder);
        var model = Models(store, Fast with { Timeout = TimeSpan.FromSeconds(3) }).Open(new ModelRef { Endpoint = fake.BaseUrl, Model = "judge" }, "models.prompt_model", Context);
        await model.GenerateAsync([Ask("x", "call/warm-up")], CancellationToken.None); // a cold client on a busy machine is slow once
        var watch = Stopwatch.StartNew();
        var result = (await model.GenerateAsync([Ask("slow", "call/slow")], CancellationToken.None))[0];
        Assert.Equal(("late but fine", FinishReasons.Length), (result.Text, result.FinishReason));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(14), $"the hanging attempt was waited out ({watch.Elapsed.TotalSeconds:F1} s)");
        var call = (await store.GetAsync<ExternalCallRecord>(Ids.ExternalCall("call/slow")))!;
        Assert.True(call.Attempts >= 2, $"{call.Attempts} attempts");
        Assert.Equal(call.Attempts, slowSeen);
        await store.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public async Task A_key_variable_that_is_not_set_is_one_line_naming_the_field_and_the_variable()
    {
        var folder = Directory.CreateTempSubdirectory("srlm-endpoint-").FullName;
        var store = await StoreAsync(folder);
        var e = Assert.Throws<PermanentMessageException>(() => Models(store, Fast)
            .Open(new ModelRef { Endpoint = "http://127.0.0.1:9/v1", Model = "m", ApiKeyEnv = "SRLM_TEST_UNSET_KEY_VARIABLE" }, "evaluation.judge_model", Context));
        Assert.Equal("spec.evaluation.judge_model.api_key_env: the environment variable SRLM_TEST_UNSET_KEY_VARIABLE is not set in this service " +
                     "(the key of an endpoint is read from the environment of the service that calls it)", e.Message);
        await store.DisposeAsync();
        Directory.Delete(folder, recursive: true);
    }

    [Theory]
    [InlineData("SRLM_ENDPOINT_RETRIES", "-1")]
    [InlineData("SRLM_ENDPOINT_TIMEOUT_S", "soon")]
    [InlineData("SRLM_ENDPOINT_CONCURRENCY", "0")]
    public void A_bad_endpoint_variable_is_one_line_naming_it(string variable, string value)
    {
        // Read through a lookup, not the process environment, which tests running beside this one read.
        var e = Assert.Throws<ArgumentException>(() => EndpointOptions.FromEnvironment(name => name == variable ? value : null));
        Assert.Equal($"{variable}: must be a whole number >= {(variable == "SRLM_ENDPOINT_RETRIES" ? 0 : 1)}, got '{value}'", e.Message);
        var good = EndpointOptions.FromEnvironment(name => name switch { "SRLM_ENDPOINT_RETRIES" => "0", "SRLM_ENDPOINT_TIMEOUT_S" => "7", _ => null });
        Assert.Equal((0, TimeSpan.FromSeconds(7), 4), (good.Retries, good.Timeout, good.Concurrency));
    }

    // ---- evaluation.judge_model as an endpoint, on the in-memory bus ----

    /// <summary>Held-out instruction -> (answer of ev/m2, answer of its parent ev/m1), as in WinRateEvaluatorTests.</summary>
    private static readonly (string Q, string Child, string Parent)[] Items =
    [
        ("q0", "good", "bad"), ("q1", "bad", "good"), ("q2", "same", "same"), ("q3", "good", "mute"), ("q4", "fine", "okay"), ("q5", "good", "okay"),
    ];

    /// <summary>The players: they answer held-out instructions from the script. ev/m2 fails the first time it is asked to
    /// judge the labelled answers (evaluation.judge_pairs), after every endpoint call is stored, so the message is
    /// delivered again.</summary>
    private sealed class Players(Dictionary<string, int> failures) : IModelProvider
    {
        public Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct) => Task.FromResult<ITextModel>(new Player(checkpointId, failures));
    }

    private sealed class Player(string id, Dictionary<string, int> failures) : ITextModel
    {
        public string CheckpointId => id;
        public int ContextLength => 256;
        public int CountPromptTokens(string prompt) => prompt.Length;
        public int CountCompletionTokens(string completion) => completion.Length;

        public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken ct)
        {
            if (requests.Any(r => r.Prompt.StartsWith("Judge ", StringComparison.Ordinal)))
            {
                lock (failures)
                    if (failures.TryGetValue(id, out var left) && left > 0)
                    {
                        failures[id] = left - 1;
                        throw new InvalidOperationException("the player fails once after the endpoint calls were stored");
                    }
                return Task.FromResult<IReadOnlyList<GenerationResult>>(requests.Select(_ => new GenerationResult("Score: 3", 4, 2)).ToList());
            }
            var script = Items.ToDictionary(i => i.Q, i => id == "ev/m2" ? i.Child : i.Parent);
            return Task.FromResult<IReadOnlyList<GenerationResult>>(requests.Select(r => new GenerationResult(script.GetValueOrDefault(r.Prompt, "an answer"), 4, 1)).ToList());
        }
    }

    /// <summary>The endpoint judge: "Score: 5" for good, 1 for bad, nothing for mute, 3 otherwise.</summary>
    private static (int, string, (string, string)[]) Judge(JsonObject body)
    {
        var prompt = FakeEndpoint.UserMessage(body);
        var text = prompt.Contains("Answer: good", StringComparison.Ordinal) ? "Fine work. Score: 5"
            : prompt.Contains("Answer: bad", StringComparison.Ordinal) ? "Wrong. Score: 1"
            : prompt.Contains("Answer: mute", StringComparison.Ordinal) ? "I cannot tell."
            : "Partly. Score: 3";
        return (200, FakeEndpoint.Chat(text), []);
    }

    private static async Task<(TestBusHost Host, ListLoggerProvider Logs)> EvaluationHostAsync(string endpoint, string variable, EndpointOptions options, Dictionary<string, int> failures,
        string judgeMode = "pointwise")
    {
        var logs = new ListLoggerProvider();
        var host = await TestBusHost.StartAsync("inmemory", x => x.AddGeneratorConsumers(),
            s => s.AddLogging(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Debug)).AddSingleton(options).AddSingleton<IModelProvider>(new Players(failures)).AddGenerator());
        var store = host.Store;
        var heldOut = await store.PutBlobAsync(Encoding.UTF8.GetBytes(string.Concat(Items.Select(i => $"{{\"instruction\":\"{i.Q}\"}}\n"))), "held_out.jsonl");
        var pairs = await store.PutBlobAsync("""
            {"instruction":"p0","answer":"a","score":1}
            {"instruction":"p0","answer":"b","score":4}

            """u8.ToArray(), "judge_pairs.jsonl");
        await store.CreateRunAsync("ev", $$$"""
            {"schema_version":1,"name":"ev","seed":3,"iterations":1,"models":{"m1":"checkpoint:ev/m1"},"seed_data":{"ift":"ift.jsonl"},
             "judge":{"samples":2,"template":"Judge {instruction} Answer: {response}"},
             "evaluation":{"held_out":"blob:{{{heldOut.Sha256}}}","judge_pairs":"blob:{{{pairs.Sha256}}}","evaluator":"judge_win_rate","judge_mode":"{{{judgeMode}}}",
                           "judge_model":{"endpoint":"{{{endpoint}}}","model":"judge","api_key_env":"{{{variable}}}"} } }
            """, 1);
        await store.PutAsync(new CheckpointRecord { Id = "ev/m1", RunId = "ev", Iteration = 1, Location = "", Files = [] });
        await store.PutAsync(new CheckpointRecord { Id = "ev/m2", RunId = "ev", Iteration = 2, Location = "", Files = [], Origin = "dpo", ParentCheckpointId = "ev/m1" });
        await host.Bus.Publish(new CheckpointReady { RunId = "ev", Iteration = 1, CheckpointId = "ev/m2", ParentCheckpointId = "ev/m1" });
        await TestBusHost.WaitUntilAsync(async () => await store.GetAsync<EvaluationRecord>(Ids.Evaluation("ev/m2", "judge_win_rate")) is not null,
            TimeSpan.FromSeconds(60), "the evaluation stored");
        return (host, logs);
    }

    private static string Key(out string variable)
    {
        var key = "sk-secret-" + Guid.NewGuid().ToString("N");
        variable = "SRLM_TEST_JUDGE_KEY_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        Environment.SetEnvironmentVariable(variable, key);
        return key;
    }

    [Fact]
    public async Task An_endpoint_judge_decides_the_win_rate_every_call_is_stored_a_redelivery_asks_nothing_again_and_the_key_is_nowhere()
    {
        var key = Key(out var variable);
        await using var fake = await FakeEndpoint.StartAsync(key);
        fake.Answer = (_, body) => Task.FromResult(Judge(body));
        var failures = new Dictionary<string, int> { ["ev/m2"] = 1 };
        var (host, logs) = await EvaluationHostAsync(fake.BaseUrl, variable, Fast, failures);
        await using (host)
        {
            var store = host.Store;
            Assert.Equal(0, failures["ev/m2"]); // the message was delivered twice
            var record = (await store.GetAsync<EvaluationRecord>(Ids.Evaluation("ev/m2", "judge_win_rate")))!;
            var m = record.Metrics;
            // WinRateEvaluatorTests' numbers: 2 wins, 1 loss, 2 ties (one identical), 1 unjudged.
            Assert.Equal((2.0, 1.0, 2.0, 1.0, 0.0), (m["wins"], m["losses"], m["ties"], m["win_rate_unjudged"], m["judge_failed_calls"]));
            Assert.Equal(0.6, m["win_rate"], 12);

            // 5 contested items x 2 answers x 2 samples, each asked once although the message ran twice.
            var calls = await store.ListAsync<ExternalCallRecord>(ArtifactQuery.OfRun("ev"));
            Assert.Equal(20, calls.Count);
            Assert.Equal(20, fake.Count);
            Assert.Equal(20, fake.Requests.Select(r => FakeEndpoint.UserMessage(r.Body) + "|" + r.Body["seed"]).Distinct().Count());
            Assert.All(calls, c => Assert.Equal(("eval_judge", "ev/m2", 1, "judge", 1, (string?)null), (c.Purpose, c.SubjectId, c.Iteration, c.Model, c.Attempts, c.Error)));
            Assert.Contains(calls, c => c.CallId == "ev/m2/eval-win/0/self/j1" && c.Text == "Fine work. Score: 5");
            Assert.All(fake.Requests, r => Assert.Equal("Bearer " + key, r.Authorization));
            Assert.Contains(logs.Lines, l => l.Contains("win rate 0.600", StringComparison.Ordinal));

            // srlm audit lists the calls and says why they are not re-run (no mismatch is reported for them).
            var audit = new StringWriter();
            Assert.Equal(20, await Srlm.Cli.Commands.ExternalCallsAudit.WriteAsync(store, "ev", null, 3, audit, CancellationToken.None));
            var lines = audit.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.StartsWith("external calls: 20 stored, 0 failed (not re-run: an external endpoint is not expected to reproduce its answers", lines[0]);
            Assert.Equal($"  eval_judge: 20 calls to judge at {fake.BaseUrl}, 0 failed, 20 attempts", lines[1]);
            Assert.Equal("  ev/m2/eval-win/0/parent/j0: eos: Wrong. Score: 1", lines[2]);
            Assert.Equal(5, lines.Length);
            Assert.DoesNotContain(key, audit.ToString());

            // The key is in no record, journal entry or log line: not one byte of it in the store's files.
            Assert.DoesNotContain(logs.Lines, l => l.Contains(key, StringComparison.Ordinal));
            foreach (var file in Directory.GetFiles(host.Folder, "*", SearchOption.AllDirectories))
            {
                byte[] bytes;
                using (var s = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete)) { bytes = new byte[s.Length]; s.ReadExactly(bytes); }
                Assert.True(bytes.AsSpan().IndexOf(Encoding.UTF8.GetBytes(key)) < 0, $"the key is in {file}");
            }
        }
    }

    [Fact]
    public async Task An_endpoint_that_always_fails_leaves_the_items_unjudged_with_the_reason_and_guesses_nothing()
    {
        var key = Key(out var variable);
        await using var fake = await FakeEndpoint.StartAsync(key);
        fake.Answer = (_, _) => Task.FromResult((500, """{"error":{"message":"the judge crashed"}}""", Array.Empty<(string, string)>()));
        var (host, _) = await EvaluationHostAsync(fake.BaseUrl, variable, Fast with { Retries = 1 }, []);
        await using (host)
        {
            var record = (await host.Store.GetAsync<EvaluationRecord>(Ids.Evaluation("ev/m2", "judge_win_rate")))!;
            var m = record.Metrics;
            // Only the identical answers (q2) are decided, without a judge; the five contested items are unjudged.
            Assert.Equal((0.0, 0.0, 1.0, 5.0, 20.0, 0.0), (m["wins"], m["losses"], m["ties"], m["win_rate_unjudged"], m["judge_failed_calls"], m["win_rate_judge_valid_fraction"]));
            Assert.Equal(40, fake.Count); // 20 calls, 2 attempts each
            using var details = JsonDocument.Parse(record.Details!);
            var examples = details.RootElement.EnumerateArray().ToList();
            Assert.Equal(5, examples.Count);
            Assert.All(examples, e =>
            {
                Assert.Equal("unjudged", e.GetProperty("outcome").GetString());
                Assert.StartsWith("HTTP 500", e.GetProperty("problem").GetString());
                Assert.Contains("the judge crashed", e.GetProperty("problem").GetString());
                Assert.EndsWith("after 2 attempts", e.GetProperty("problem").GetString());
            });
            var calls = await host.Store.ListAsync<ExternalCallRecord>(ArtifactQuery.OfRun("ev"));
            Assert.Equal(20, calls.Count);
            Assert.All(calls, c => Assert.Equal((null, 2), (c.Text, c.Attempts)));
            var audit = new StringWriter();
            await Srlm.Cli.Commands.ExternalCallsAudit.WriteAsync(host.Store, "ev", null, 1, audit, CancellationToken.None);
            Assert.StartsWith("external calls: 20 stored, 20 failed", audit.ToString());
            Assert.Contains(": no answer: HTTP 500", audit.ToString());
        }
    }

    private static readonly string[] Written =
    [
        "Explain how ocean tides work", "List three household uses of copper", "Describe a sunset over a desert",
        "Summarise the rules of chess briefly", "Suggest five names for a small bakery", "Compare trains and planes for short trips",
    ];

    [Fact]
    public async Task An_endpoint_prompt_model_writes_the_prompts_each_call_stored_under_its_prompt_id_and_a_refused_one_writes_none()
    {
        await using var fake = await FakeEndpoint.StartAsync();
        fake.Answer = (n, _) => Task.FromResult(n == 3
            ? (400, """{"error":{"message":"prompt too long"}}""", Array.Empty<(string, string)>())
            : (200, FakeEndpoint.Chat($"Task 9: {Written[n - 1]}\nTask 10: more"), Array.Empty<(string, string)>()));
        var failures = new Dictionary<string, int>();
        await using var host = await TestBusHost.StartAsync("inmemory", x => x.AddGeneratorConsumers(),
            s => s.AddSingleton(Fast).AddSingleton<IModelProvider>(new Players(failures)).AddGenerator());
        var store = host.Store;
        var ift = await store.PutBlobAsync(Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 8).Select(i => $"{{\"instruction\":\"Seed task number {i} about topic {i * 7}\",\"answer\":\"a\"}}\n"))), "ift.jsonl");
        await store.CreateRunAsync("pm", $$$"""
            {"schema_version":1,"name":"pm","seed":5,"iterations":1,"models":{"m1":"checkpoint:pm/m1","prompt_model":{"endpoint":"{{{fake.BaseUrl}}}","model":"writer"}},
             "seed_data":{"ift":"blob:{{{ift.Sha256}}}"},
             "prompts":{"source":"self_instruct","per_iteration":4,"shards":1,"oversample":1.25}}
            """, 1);
        await store.PutAsync(new CheckpointRecord { Id = "pm/m1", RunId = "pm", Iteration = 1, Location = "", Files = [] });
        await host.Bus.Publish(new GeneratePrompts { RunId = "pm", Iteration = 1, CheckpointId = "pm/m1", Shard = 0, ShardCount = 1 });
        await TestBusHost.WaitUntilAsync(async () => await store.GetAsync<PromptSetFinalRecord>(Ids.PromptSet("pm", 1)) is not null, TimeSpan.FromSeconds(60), "the prompt set final");

        var prompts = await store.ListAsync<PromptRecord>(ArtifactQuery.OfRun("pm", 1));
        Assert.Equal(5, prompts.Count);
        Assert.Equal(5, fake.Count);
        Assert.All(fake.Requests, r => Assert.Equal(("writer", "\n"), (r.Body["model"]!.GetValue<string>(), r.Body["stop"]![0]!.GetValue<string>())));
        Assert.All(fake.Requests, r => Assert.Contains("Seed task number", FakeEndpoint.UserMessage(r.Body)));
        var calls = (await store.ListAsync<ExternalCallRecord>(ArtifactQuery.OfRun("pm", 1))).ToDictionary(c => c.CallId);
        Assert.Equal(prompts.Select(p => p.Id).Order(), calls.Keys.Order());
        Assert.All(calls.Values, c => Assert.Equal(("prompt", Ids.Shard("pm", 1, 0)), (c.Purpose, c.SubjectId)));
        foreach (var p in prompts)
        {
            var call = calls[p.Id];
            Assert.Equal($"endpoint:writer@{fake.BaseUrl}", p.CheckpointId);
            if (call.Error is null) Assert.Contains(p.Text, Written); // the first line, without its "Task 9:" label
            else
            {
                Assert.StartsWith("HTTP 400", call.Error);
                Assert.Equal("", p.Text); // nothing guessed: an empty prompt the filter removes
            }
        }
        Assert.Single(calls.Values, c => c.Error is not null);
        var final = (await store.GetAsync<PromptSetFinalRecord>(Ids.PromptSet("pm", 1)))!;
        Assert.Equal(4, final.PromptIds.Count);
        Assert.DoesNotContain(final.PromptIds, id => calls[id].Error is not null);
    }

    [Fact]
    public async Task A_pairwise_endpoint_judge_sees_both_orders_once_each_and_an_endpoint_that_is_down_leaves_the_items_unjudged()
    {
        var key = Key(out var variable);
        await using var fake = await FakeEndpoint.StartAsync(key);
        static string Between(string text, string open, string close)
        {
            int a = text.IndexOf(open, StringComparison.Ordinal) + open.Length;
            return text[a..text.IndexOf(close, a, StringComparison.Ordinal)];
        }
        fake.Answer = (_, body) =>
        {
            var prompt = FakeEndpoint.UserMessage(body);
            string a = Between(prompt, "<reply_a>", "</reply_a>"), b = Between(prompt, "<reply_b>", "</reply_b>");
            static int Rank(string x) => x switch { "good" => 2, "bad" => 0, _ => 1 };
            var verdict = a == "mute" || b == "mute" ? "Both have merits." : Rank(a) > Rank(b) ? "Winner: A" : Rank(a) < Rank(b) ? "Winner: B" : "Winner: tie";
            return Task.FromResult((200, FakeEndpoint.Chat(verdict), Array.Empty<(string, string)>()));
        };
        var (host, _) = await EvaluationHostAsync(fake.BaseUrl, variable, Fast, [], judgeMode: "pairwise");
        await using (host)
        {
            var m = (await host.Store.GetAsync<EvaluationRecord>(Ids.Evaluation("ev/m2", "judge_win_rate")))!.Metrics;
            // q0 win, q1 loss, q2 identical (tie), q3 no verdict (unjudged), q4 tie, q5 win: (2 + 2/2) / 5.
            Assert.Equal((2.0, 1.0, 2.0, 1.0, 0.0), (m["wins"], m["losses"], m["ties"], m["win_rate_unjudged"], m["judge_failed_calls"]));
            Assert.Equal(0.6, m["win_rate"], 12);
            var calls = await host.Store.ListAsync<ExternalCallRecord>(ArtifactQuery.OfRun("ev"));
            Assert.Equal((10, 10), (calls.Count, fake.Count)); // 5 contested items, once in each order
            Assert.All(calls, c => Assert.Equal("eval_pairwise", c.Purpose));
            Assert.Contains(calls, c => c.CallId == "ev/m2/eval-pair/ev/m1/0/ab/j0" && c.Text == "Winner: A");
            Assert.Contains(calls, c => c.CallId == "ev/m2/eval-pair/ev/m1/0/ba/j0" && c.Text == "Winner: B");
        }

        // Nothing listens on the endpoint's port any more: every call fails to connect, is retried, and is stored as failed.
        var url = fake.BaseUrl;
        await fake.DisposeAsync();
        var (host2, _) = await EvaluationHostAsync(url, variable, Fast with { Retries = 1 }, [], judgeMode: "pairwise");
        await using (host2)
        {
            var m = (await host2.Store.GetAsync<EvaluationRecord>(Ids.Evaluation("ev/m2", "judge_win_rate")))!.Metrics;
            Assert.Equal((5.0, 10.0), (m["win_rate_unjudged"], m["judge_failed_calls"]));
            var calls = await host2.Store.ListAsync<ExternalCallRecord>(ArtifactQuery.OfRun("ev"));
            Assert.All(calls, c => Assert.StartsWith("connection failed", c.Error));
            Assert.All(calls, c => Assert.Equal(2, c.Attempts));
        }
    }
}
