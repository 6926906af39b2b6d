namespace Srlm.Cli.Serving;

/// <summary>Reading a request body: every field checked with OpenAI's error shape (a 400 naming the field), the
/// messages rendered by the checkpoint's chat template, the prompts tokenized and fitted to the context.</summary>
public sealed partial class OpenAiServer
{
    private sealed record ParsedRequest(List<IReadOnlyList<int>> Prompts, int N, ulong Seed, SamplingOptions Options, bool Stream, bool IncludeUsage)
    {
        public List<Srlm.Model.GenerationRequest> Generation { get; } = Prompts.Select((ids, p) => new Srlm.Model.GenerationRequest(ids,
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
