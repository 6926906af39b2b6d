namespace Srlm.Cli.Serving;

public sealed partial class OpenAiServer
{
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
}
