#pragma warning disable OPENAI001 // ChatCompletionOptions.Seed is marked experimental
using System.ClientModel;
using System.ClientModel.Primitives;
using System.Net;
using OpenAI;
using OpenAI.Chat;
using Srlm.Cli.Serving;

// Over 300 lines on purpose: the tests of `srlm serve`'s API (chat, completions, streaming, n, errors, concurrency, the queue limit, keys, clients) beside the one fixture whose server most of them share.
namespace Srlm.Tests.Serving;

/// <summary>One tiny checkpoint folder served on a free 127.0.0.1 port for a test class.</summary>
public sealed class ServeFixture : IAsyncLifetime
{
    public const string Name = "m-test";
    public string Dir { get; } = TestModels.TempDir("serve");
    public ServedModel Model { get; private set; } = null!;
    public OpenAiServer Server { get; private set; } = null!;
    public StringWriter Log { get; } = new();
    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromMinutes(3) };

    public async Task InitializeAsync()
    {
        using (var lm = TestModels.CharModel(41)) lm.Save(Dir);
        Model = await ServedModel.LoadAsync(Name, Dir);
        Server = new OpenAiServer(Model, Name, new ServeOptions { Port = 0 }, TextWriter.Synchronized(Log));
        await Server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        Model.Dispose();
        Http.Dispose();
    }

    public OpenAIClient Client(string key = "unused") => new(new ApiKeyCredential(key), new OpenAIClientOptions
    {
        Endpoint = new Uri(Server.Address + "/v1"), NetworkTimeout = TimeSpan.FromMinutes(3), RetryPolicy = new ClientRetryPolicy(0),
    });

    public async Task<(HttpStatusCode Status, JsonObject Body, HttpResponseMessage Response)> Post(string path, string body)
    {
        var response = await Http.PostAsync(Server.Address + path, new StringContent(body, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, (JsonNode.Parse(text) as JsonObject)!, response);
    }
}

public class ServeTests(ServeFixture f) : IClassFixture<ServeFixture>
{
    private static string Greedy(LanguageModel lm, IReadOnlyList<int> ids, SamplingOptions o) =>
        new TextGenerator(lm.Model, lm.Tokenizer).Generate([new GenerationRequest(ids, 0UL)], o)[0].Text;

    [Fact]
    public async Task Chat_through_the_official_client_renders_the_template_and_reports_usage_and_finish_reason()
    {
        var chat = f.Client().GetChatClient(ServeFixture.Name);
        ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage("hello there")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 });
        using var lm = LanguageModel.Load(f.Dir);
        var ids = lm.Tokenizer.Encode(lm.Template.Format("hello there"), addBos: lm.Template.AddBos(lm.Tokenizer));
        var expected = Greedy(lm, ids, SamplingOptions.Greedy(12) with { StopStrings = lm.Template.StopStrings, StopTokenIds = lm.Template.StopTokenIds(lm.Tokenizer) });
        Assert.Equal(expected, c.Content[0].Text);
        Assert.Equal(ids.Count, c.Usage.InputTokenCount);
        Assert.InRange(c.Usage.OutputTokenCount, 1, 12);
        Assert.Equal(c.Usage.OutputTokenCount == 12 ? ChatFinishReason.Length : ChatFinishReason.Stop, c.FinishReason);
        Assert.Equal(ServeFixture.Name, c.Model);
    }

    [Fact]
    public async Task Streaming_chat_concatenates_to_the_same_text_with_a_finish_reason()
    {
        var chat = f.Client().GetChatClient(ServeFixture.Name);
        var options = new ChatCompletionOptions { Temperature = 1.0f, TopP = 0.9f, MaxOutputTokenCount = 20, Seed = 77 };
        ChatCompletion whole = await chat.CompleteChatAsync([new UserChatMessage("abc")], options);
        var text = new StringBuilder();
        ChatFinishReason? finish = null;
        int updates = 0;
        await foreach (var u in chat.CompleteChatStreamingAsync([new UserChatMessage("abc")], options))
        {
            updates++;
            foreach (var part in u.ContentUpdate) text.Append(part.Text);
            finish ??= u.FinishReason;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.Equal(whole.FinishReason, finish);
        Assert.True(updates > 2, $"expected one update per token piece, got {updates}");
    }

    [Fact]
    public async Task Chat_with_n_gives_n_choices_the_first_equal_to_n_1_and_the_same_seed_gives_the_same_texts()
    {
        var chat = f.Client().GetChatClient(ServeFixture.Name);
        async Task<JsonObject> Ask(int n, int seed)
        {
            var body = $$"""{"model":"m-test","messages":[{"role":"user","content":"hello"}],"n":{{n}},"temperature":1.0,"max_tokens":16,"seed":{{seed}}}""";
            ClientResult r = await chat.CompleteChatAsync(BinaryContent.Create(BinaryData.FromString(body)), new RequestOptions());
            return (JsonNode.Parse(r.GetRawResponse().Content.ToString()) as JsonObject)!;
        }
        var four = await Ask(4, 5);
        var again = await Ask(4, 5);
        var one = await Ask(1, 5);
        var texts = four["choices"]!.AsArray().Select(c => c!["message"]!["content"]!.GetValue<string>()).ToList();
        Assert.Equal(4, texts.Count);
        Assert.Equal(new[] { 0, 1, 2, 3 }, four["choices"]!.AsArray().Select(c => c!["index"]!.GetValue<int>()));
        Assert.Equal(texts, again["choices"]!.AsArray().Select(c => c!["message"]!["content"]!.GetValue<string>()));
        Assert.Equal(texts[0], one["choices"]![0]!["message"]!["content"]!.GetValue<string>());
        Assert.True(texts.Distinct().Count() > 1, "four samples at temperature 1 were all equal");
    }

    [Fact]
    public async Task Completions_with_several_prompts_n_stop_and_streaming()
    {
        var (status, body, _) = await f.Post("/v1/completions", """{"model":"m-test","prompt":["hello","abc"],"n":2,"temperature":0.8,"max_tokens":10,"seed":3}""");
        Assert.Equal(HttpStatusCode.OK, status);
        var choices = body["choices"]!.AsArray();
        Assert.Equal(new[] { 0, 1, 2, 3 }, choices.Select(c => c!["index"]!.GetValue<int>()));
        Assert.Equal("text_completion", body["object"]!.GetValue<string>());
        Assert.All(choices, c => Assert.Contains(c!["finish_reason"]!.GetValue<string>(), new[] { "stop", "length" }));
        Assert.Equal(body["usage"]!["prompt_tokens"]!.GetValue<int>() + body["usage"]!["completion_tokens"]!.GetValue<int>(), body["usage"]!["total_tokens"]!.GetValue<int>());

        // a stop string taken from the greedy text cuts it there, with finish_reason stop
        (status, body, _) = await f.Post("/v1/completions", """{"prompt":"hello there","temperature":0,"max_tokens":20}""");
        var full = body["choices"]![0]!["text"]!.GetValue<string>();
        Assert.True(full.Length >= 6, $"greedy text too short to test stop: '{full}'");
        var stop = full.Substring(3, 2);
        var cut = full[..full.IndexOf(stop, StringComparison.Ordinal)];
        (status, body, _) = await f.Post("/v1/completions", $$"""{"prompt":"hello there","temperature":0,"max_tokens":20,"stop":["{{stop}}"]}""");
        Assert.Equal(cut, body["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal("stop", body["choices"]![0]!["finish_reason"]!.GetValue<string>());

        var response = await f.Http.PostAsync(f.Server.Address + "/v1/completions", new StringContent("""{"prompt":"hello there","temperature":0,"max_tokens":20,"stream":true,"stream_options":{"include_usage":true}}""", Encoding.UTF8, "application/json"));
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        var events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Equal(full, string.Concat(chunks.SelectMany(c => c["choices"]!.AsArray()).Select(c => c!["text"]!.GetValue<string>())));
        Assert.NotNull(chunks[^1]["usage"]);

        // streamed with the stop string: the pieces hold back what could become the stop string, so it is never sent
        response = await f.Http.PostAsync(f.Server.Address + "/v1/completions", new StringContent($$"""{"prompt":"hello there","temperature":0,"max_tokens":20,"stop":["{{stop}}"],"stream":true}""", Encoding.UTF8, "application/json"));
        events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        chunks = events[..^1].Select(e => JsonNode.Parse(e["data: ".Length..])!).ToList();
        Assert.Equal(cut, string.Concat(chunks.SelectMany(c => c["choices"]!.AsArray()).Select(c => c!["text"]!.GetValue<string>())));
        Assert.Equal("stop", chunks[^1]["choices"]![0]!["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task Streaming_sends_text_while_the_batch_is_still_generating()
    {
        // ignore_eos keeps the batch drawing to max_tokens: long enough that text sent as it is drawn arrives well
        // before the end, where text sent once the batch is done would arrive only at the end.
        const string request = """{"prompt":"hello there","temperature":0.8,"seed":9,"max_tokens":800,"ignore_eos":true""";
        var (_, whole, _) = await f.Post("/v1/completions", request + "}");
        Assert.Equal(800, whole["usage"]!["completion_tokens"]!.GetValue<int>());

        var sw = Stopwatch.StartNew();
        using var message = new HttpRequestMessage(HttpMethod.Post, f.Server.Address + "/v1/completions")
        {
            Content = new StringContent(request + ",\"stream\":true}", Encoding.UTF8, "application/json"),
        };
        using var response = await f.Http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double? firstText = null, done = null;
        int pieces = 0;
        var text = new StringBuilder();
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (line == "data: [DONE]") { done = sw.Elapsed.TotalMilliseconds; break; }
            var piece = JsonNode.Parse(line["data: ".Length..])!["choices"]![0]!["text"]!.GetValue<string>();
            if (piece.Length == 0) continue;
            firstText ??= sw.Elapsed.TotalMilliseconds;
            pieces++;
            text.Append(piece);
        }
        Assert.NotNull(done);
        Assert.Equal(whole["choices"]![0]!["text"]!.GetValue<string>(), text.ToString());
        Assert.True(pieces > 10, $"expected the text in many pieces, got {pieces}");
        Assert.True(firstText < done / 2, $"the first text arrived after {firstText:F0} ms of {done:F0} ms: not sent while the batch was generating");
    }

    [Fact]
    public async Task Completions_through_the_official_clients_pipeline()
    {
        // OpenAI's .NET library (2.15) keeps its completions client internal (OpenAI.LegacyCompletions), so the request
        // goes through the library's own public pipeline: its key policy, user agent and error mapping, on its transport.
        var chat = f.Client("a-key").GetChatClient(ServeFixture.Name);
        async Task<ClientResult> Send(string body)
        {
            using var message = chat.Pipeline.CreateMessage();
            message.Request.Method = "POST";
            message.Request.Uri = new Uri(f.Server.Address + "/v1/completions");
            message.Request.Headers.Set("Content-Type", "application/json");
            message.Request.Content = BinaryContent.Create(BinaryData.FromString(body));
            message.Apply(new RequestOptions());
            await chat.Pipeline.SendAsync(message);
            if (message.Response!.IsError) throw new ClientResultException(message.Response);
            return ClientResult.FromResponse(message.ExtractResponse()!);
        }
        var result = await Send("""{"model":"m-test","prompt":["hello","abc"],"n":2,"temperature":0.8,"max_tokens":10,"seed":3}""");
        var body = (JsonNode.Parse(result.GetRawResponse().Content.ToString()) as JsonObject)!;
        Assert.Equal("text_completion", body["object"]!.GetValue<string>());
        Assert.Equal(new[] { 0, 1, 2, 3 }, body["choices"]!.AsArray().Select(c => c!["index"]!.GetValue<int>()));

        // the same request over plain HTTP gives the same texts (same seed)
        var (_, plain, _) = await f.Post("/v1/completions", """{"model":"m-test","prompt":["hello","abc"],"n":2,"temperature":0.8,"max_tokens":10,"seed":3}""");
        Assert.Equal(plain["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>()), body["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>()));

        // a bad request reaches the client as its ClientResultException with the server's status and error object
        var e = await Assert.ThrowsAsync<ClientResultException>(() => Send("""{"prompt":"hello","n":99}"""));
        Assert.Equal(400, e.Status);
        Assert.Contains("'n' must be between 1 and 16", e.GetRawResponse()!.Content.ToString()); // written as itself, not \u0027
    }

    [Fact]
    public async Task Models_and_health()
    {
        var models = f.Client().GetOpenAIModelClient();
        var list = await models.GetModelsAsync();
        Assert.Equal(new[] { ServeFixture.Name }, list.Value.Select(m => m.Id));
        var health = await f.Http.GetStringAsync(f.Server.Address + "/health");
        Assert.Contains("\"ok\"", health);
    }

    [Fact]
    public async Task Bad_requests_get_400_with_an_openai_error_and_the_server_keeps_serving()
    {
        (string Path, string Body, string Says)[] bad =
        [
            ("/v1/chat/completions", "{", "not valid JSON"),
            ("/v1/chat/completions", "[]", "JSON object"),
            ("/v1/chat/completions", """{"messages":[]}""", "messages"),
            ("/v1/chat/completions", """{"messages":[{"role":"robot","content":"x"}]}""", "messages[0].role"),
            ("/v1/chat/completions", """{"messages":[{"role":"user","content":5}]}""", "messages[0].content"),
            ("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"n":17}""", "'n'"),
            ("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"n":"2"}""", "'n' must be an integer"),
            ("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}""", "'temperature' must be a number"),
            ("/v1/chat/completions", """{"messages":[{"role":"user","content":"x"}],"max_tokens":1000000}""", "context"),
            ("/v1/chat/completions", """{"messages":[{"role":"system","content":"s"},{"role":"user","content":"x"}]}""", "no chat template"),
            ("/v1/completions", """{"prompt":5}""", "'prompt'"),
            ("/v1/completions", """{"prompt":"x","stop":7}""", "'stop'"),
            ("/v1/completions", """{"prompt":"x","top_p":0}""", "'top_p'"),
            ("/v1/completions", """{"prompt":"x","stream":"yes"}""", "'stream'"),
        ];
        foreach (var (path, body, says) in bad)
        {
            var (status, error, _) = await f.Post(path, body);
            Assert.True(status == HttpStatusCode.BadRequest, $"{body}: {status}");
            Assert.Equal("invalid_request_error", error["error"]!["type"]!.GetValue<string>());
            Assert.Contains(says, error["error"]!["message"]!.GetValue<string>());
        }
        var (ok, answer, _) = await f.Post("/v1/completions", """{"prompt":"hello","max_tokens":4}""");
        Assert.Equal(HttpStatusCode.OK, ok);
        Assert.NotNull(answer["choices"]![0]!["text"]);
    }

    [Fact]
    public async Task Fifty_concurrent_requests_get_the_texts_of_the_same_requests_sent_one_at_a_time()
    {
        string Body(int i) => $$"""{"prompt":"{{"hello there abc"[..(3 + i % 12)]}}","temperature":1.0,"top_p":0.95,"max_tokens":12,"seed":{{1000 + i}}}""";
        async Task<string> Ask(int i)
        {
            var (status, body, _) = await f.Post("/v1/completions", Body(i));
            Assert.Equal(HttpStatusCode.OK, status);
            return body["choices"]![0]!["text"]!.GetValue<string>();
        }
        var alone = new List<string>();
        for (int i = 0; i < 50; i++) alone.Add(await Ask(i));
        long before = f.Model.GenerationBatches;
        var together = await Task.WhenAll(Enumerable.Range(0, 50).Select(Ask)).WaitAsync(TimeSpan.FromMinutes(5));
        long batches = f.Model.GenerationBatches - before;
        Assert.Equal(alone, together);
        Assert.True(batches < 50, $"50 concurrent requests ran as {batches} generation calls: none were batched");
        Assert.True(alone.Distinct().Count() > 10, "the seeds did not vary the texts");
    }
}

/// <summary>Servers with their own limits: a full queue and a bearer key.</summary>
public class ServeLimitTests
{
    [Fact]
    public async Task A_full_queue_answers_429_with_retry_after_then_serves_again()
    {
        var dir = TestModels.TempDir("serve-queue");
        using (var lm = TestModels.CharModel(42)) lm.Save(dir);
        using var model = await ServedModel.LoadAsync("q", dir);
        await using var server = new OpenAiServer(model, "q", new ServeOptions { Port = 0, MaxQueue = 1 }, TextWriter.Null);
        await server.StartAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(3) };
        // Hold the model's thread so the first request stays admitted while the second arrives.
        using var gate = new ManualResetEventSlim();
        using var running = new ManualResetEventSlim();
        var blocker = model.RunAsync(_ => { running.Set(); return gate.Wait(TimeSpan.FromMinutes(2)); });
        // Pending counts queued work only once the blocker runs; before that the blocker itself is the one pending
        // (on a loaded machine the model's thread can start it late, and the second request would be admitted first).
        Assert.True(running.Wait(TimeSpan.FromMinutes(1)), "the model's thread never started the blocker");
        var first = http.PostAsync(server.Address + "/v1/completions", new StringContent("""{"prompt":"abc","max_tokens":4}"""));
        var deadline = Stopwatch.StartNew();
        while (model.Executor.Pending < 1)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromMinutes(1), "the first request never reached the model's queue");
            await Task.Delay(20);
        }
        var second = await http.PostAsync(server.Address + "/v1/completions", new StringContent("""{"prompt":"abc","max_tokens":4}"""));
        Assert.Equal((HttpStatusCode)429, second.StatusCode);
        Assert.Equal("1", second.Headers.GetValues("Retry-After").Single());
        Assert.Contains("rate_limit_error", await second.Content.ReadAsStringAsync());
        gate.Set();
        Assert.True(await blocker);
        Assert.Equal(HttpStatusCode.OK, (await first.WaitAsync(TimeSpan.FromMinutes(2))).StatusCode);
        var third = await http.PostAsync(server.Address + "/v1/completions", new StringContent("""{"prompt":"abc","max_tokens":4}"""));
        Assert.Equal(HttpStatusCode.OK, third.StatusCode);
    }

    [Fact]
    public async Task An_api_key_is_required_when_set_and_health_stays_open()
    {
        var dir = TestModels.TempDir("serve-key");
        using (var lm = TestModels.CharModel(43)) lm.Save(dir);
        using var model = await ServedModel.LoadAsync("k", dir);
        var log = new StringWriter();
        await using var server = new OpenAiServer(model, "k", new ServeOptions { Port = 0, ApiKey = "sekrit-123" }, TextWriter.Synchronized(log));
        await server.StartAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(3) };
        var refused = await http.PostAsync(server.Address + "/v1/completions", new StringContent("""{"prompt":"abc","max_tokens":4}"""));
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        Assert.Contains("invalid_api_key", await refused.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync(server.Address + "/health")).StatusCode);
        var client = new OpenAIClient(new ApiKeyCredential("sekrit-123"), new OpenAIClientOptions { Endpoint = new Uri(server.Address + "/v1"), RetryPolicy = new ClientRetryPolicy(0), NetworkTimeout = TimeSpan.FromMinutes(3) });
        ChatCompletion c = await client.GetChatClient("k").CompleteChatAsync([new UserChatMessage("hi")], new ChatCompletionOptions { MaxOutputTokenCount = 4 });
        Assert.NotNull(c.Content);
        Assert.DoesNotContain("sekrit-123", log.ToString());
    }
}

/// <summary>srlm serve as a user runs it, against srlm generate and the official openai npm client.</summary>
[Collection("console")]
public class ServeCommandTests
{
    /// <summary>Starts srlm serve in-process on a free port; returns its address once it printed "listening on".</summary>
    private static async Task<(string Address, Task<int> Run, CancellationTokenSource Stop)> Start(string dir)
    {
        var stop = new CancellationTokenSource();
        var run = Task.Run(() => new Srlm.Cli.Commands.ServeCommand().RunAsync(["--model", dir, "--port", "0"], stop.Token));
        var deadline = Stopwatch.StartNew();
        // ServeCommand writes to Console.Out: the console collection lets this test swap it.
        while (true)
        {
            var text = ConsoleOut.Text;
            var at = text.IndexOf("listening on ", StringComparison.Ordinal);
            if (at >= 0) return (text[(at + "listening on ".Length)..].Split(' ', '\n', '\r')[0], run, stop);
            if (run.IsCompleted) throw new Xunit.Sdk.XunitException($"srlm serve ended before listening: {await run} {text}");
            if (deadline.Elapsed > TimeSpan.FromMinutes(2)) throw new TimeoutException($"srlm serve did not print 'listening on' within 2 minutes: {text}");
            await Task.Delay(50);
        }
    }

    private static class ConsoleOut
    {
        public static StringWriter Writer = new();
        public static string Text { get { lock (Writer) return Writer.ToString(); } }
    }

    [Fact]
    public async Task Greedy_text_through_srlm_serve_equals_srlm_generate_and_the_npm_client_works()
    {
        var dir = TestModels.TempDir("serve-cli");
        using (var lm = TestModels.CharModel(44)) lm.Save(dir);
        var (code, generated, err) = await CliConsole.RunAsync("generate", "--model", dir, "--prompt", "hello there", "--max-new-tokens", "16", "--temperature", "0");
        Assert.True(code == 0, err);
        var (chatCode, generatedChat, chatErr) = await CliConsole.RunAsync("generate", "--model", dir, "--prompt", "hello there", "--max-new-tokens", "16", "--temperature", "0", "--chat");
        Assert.True(chatCode == 0, chatErr);

        var oldOut = Console.Out;
        ConsoleOut.Writer = new StringWriter();
        Console.SetOut(TextWriter.Synchronized(ConsoleOut.Writer));
        try
        {
            var (address, run, stop) = await Start(dir);
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(3) };
            var response = await http.PostAsync(address + "/v1/completions", new StringContent("""{"prompt":"hello there","max_tokens":16,"temperature":0}"""));
            var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            Assert.Equal(generated.TrimEnd('\n', '\r'), body["choices"]![0]!["text"]!.GetValue<string>());
            var chat = new OpenAIClient(new ApiKeyCredential("x"), new OpenAIClientOptions { Endpoint = new Uri(address + "/v1"), RetryPolicy = new ClientRetryPolicy(0), NetworkTimeout = TimeSpan.FromMinutes(3) })
                .GetChatClient("m");
            ChatCompletion c = await chat.CompleteChatAsync([new UserChatMessage("hello there")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 16 });
            Assert.Equal(generatedChat.TrimEnd('\n', '\r'), c.Content[0].Text);

            var node = NodeClient.Run(address, TimeSpan.FromMinutes(3));
            Assert.True(node.Code == 0, $"node client failed: {node.Err}");
            var result = JsonNode.Parse(node.Out)!;
            Assert.Equal(generatedChat.TrimEnd('\n', '\r'), result["chat"]!.GetValue<string>());
            Assert.Equal(generated.TrimEnd('\n', '\r'), result["completion"]!.GetValue<string>());
            Assert.Equal(result["chat"]!.GetValue<string>(), result["stream"]!.GetValue<string>());
            Assert.Equal(3, result["n"]!.GetValue<int>());
            Assert.Contains(Path.GetFileName(dir), result["models"]!.ToJsonString());

            stop.Cancel();
            Assert.Equal(0, await run.WaitAsync(TimeSpan.FromMinutes(1)));
            Assert.Contains("done in", ConsoleOut.Text);
        }
        finally { Console.SetOut(oldOut); }
    }
}

/// <summary>Runs a Node script with the official openai npm package (installed by .ci/run into
/// tests/Srlm.Tests/Serving/node: cd there and run npm install).</summary>
internal static class NodeClient
{
    private const string Script = """
        const { OpenAI } = require('openai');
        const client = new OpenAI({ baseURL: process.env.SRLM_BASE + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 120000 });
        (async () => {
          const messages = [{ role: 'user', content: 'hello there' }];
          const chat = await client.chat.completions.create({ model: 'm', messages, temperature: 0, max_tokens: 16 });
          const completion = await client.completions.create({ model: 'm', prompt: 'hello there', temperature: 0, max_tokens: 16 });
          const stream = await client.chat.completions.create({ model: 'm', messages, temperature: 0, max_tokens: 16, stream: true });
          let text = '';
          for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
          const many = await client.chat.completions.create({ model: 'm', messages, temperature: 1, max_tokens: 8, n: 3, seed: 9 });
          const models = await client.models.list();
          console.log(JSON.stringify({ chat: chat.choices[0].message.content, completion: completion.choices[0].text, stream: text,
            n: many.choices.length, models: models.data.map(m => m.id) }));
        })().catch(e => { console.error(String(e)); process.exit(1); });
        """;

    public static (int Code, string Out, string Err) Run(string address, TimeSpan deadline)
    {
        var root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "Pipeline.sln"))) root = Path.GetDirectoryName(root);
        Assert.True(root is not null, "repository root (Pipeline.sln) not found above the test output");
        var folder = Path.Combine(root!, "tests", "Srlm.Tests", "Serving", "node");
        Assert.True(Directory.Exists(Path.Combine(folder, "node_modules", "openai")),
            $"the openai npm package is not installed: run 'npm install' in {folder} (.ci/run does)");
        var script = Path.Combine(TestModels.TempDir("node"), "client.js");
        File.WriteAllText(script, Script);
        var psi = new ProcessStartInfo("node", [script]) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.Environment["NODE_PATH"] = Path.Combine(folder, "node_modules");
        psi.Environment["SRLM_BASE"] = address;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(deadline))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"node client did not finish within {deadline}");
        }
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
