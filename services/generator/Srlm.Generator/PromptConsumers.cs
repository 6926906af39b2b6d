namespace Srlm.Generator;

/// <summary>IterationStarted -> the iteration record and one GeneratePrompts per shard.</summary>
public sealed partial class IterationStartedConsumer(IArtifactStore store, RunSpecCache specs, ILogger<IterationStartedConsumer> log)
    : RunConsumer<IterationStarted>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<IterationStarted> context, IterationStarted m, RunSpec spec, CancellationToken ct)
    {
        if (m.Iteration < 1 || m.Iteration > spec.Iterations)
            throw new MalformedMessageException($"IterationStarted {context.MessageId}: iteration {m.Iteration} is outside 1..{spec.Iterations}");
        await Store.PutAsync(new IterationRecord { Id = Ids.Iteration(m.RunId, m.Iteration), RunId = m.RunId, Iteration = m.Iteration, StartCheckpointId = m.CheckpointId }, ct);
        int shards = spec.Prompts.Shards;
        await context.SendAllAsync<GeneratePrompts>(Enumerable.Range(0, shards).Select(s => new GeneratePrompts
        {
            RunId = m.RunId, Iteration = m.Iteration, CheckpointId = m.CheckpointId, Shard = s, ShardCount = shards,
        }), ct);
        LogStarted(log, m.RunId, m.Iteration, m.CheckpointId, shards);
    }

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "run {RunId} iteration {Iteration} started with {CheckpointId}: {Shards} prompt shards")]
    private static partial void LogStarted(ILogger logger, string runId, int iteration, string checkpointId, int shards);
}

/// <summary>GeneratePrompts -> this shard's prompts stored (deterministic ids and seeds), then the shard
/// record. The consumer that finds every shard stored (counted from the store) filters across shards,
/// stores the "prompt set final" record and sends one GenerateResponses per kept prompt.</summary>
public sealed partial class GeneratePromptsConsumer(IArtifactStore store, RunSpecCache specs, IModelProvider models, ExternalModels external, ILogger<GeneratePromptsConsumer> log)
    : RunConsumer<GeneratePrompts>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<GeneratePrompts> context, GeneratePrompts m, RunSpec spec, CancellationToken ct)
    {
        if (m.ShardCount != spec.Prompts.Shards || m.Shard < 0 || m.Shard >= m.ShardCount)
            throw new MalformedMessageException($"GeneratePrompts {context.MessageId}: shard {m.Shard}/{m.ShardCount} does not match spec.prompts.shards = {spec.Prompts.Shards}");

        var shardId = Ids.Shard(m.RunId, m.Iteration, m.Shard);
        if (await Store.GetAsync<PromptShardRecord>(shardId, ct) is null)
        {
            var texts = await GenerateShardAsync(spec, m, ct);
            var ids = new List<string>();
            for (int i = 0; i < texts.Count; i++)
            {
                var id = Ids.Prompt(m.RunId, m.Iteration, m.Shard, i);
                await Store.PutAsync(new PromptRecord
                {
                    Id = id, RunId = m.RunId, Iteration = m.Iteration, Shard = m.Shard, Index = i, Text = texts[i].Text,
                    Source = "generated", CheckpointId = texts[i].CheckpointId, Seed = texts[i].Seed, FinishReason = texts[i].FinishReason,
                }, ct);
                ids.Add(id);
            }
            await Store.PutAsync(new PromptShardRecord { Id = shardId, RunId = m.RunId, Iteration = m.Iteration, Shard = m.Shard, ShardCount = m.ShardCount, PromptIds = ids }, ct);
            LogShard(log, m.RunId, m.Iteration, m.Shard, ids.Count);
        }

        long stored = await Store.CountAsync<PromptShardRecord>(ArtifactQuery.OfRun(m.RunId, m.Iteration), ct);
        if (stored < m.ShardCount) return;
        bool redelivered = context.ReceiveContext.Redelivered || context.GetRetryAttempt() > 0;
        await PromptSetFinaliser.FinaliseAsync(Store, Specs, spec, m.RunId, m.Iteration, m.CheckpointId, context, resend: redelivered, log, ct);
    }

    private sealed record Generated(string Text, long Seed, string? CheckpointId, string? FinishReason = null);

    private async Task<IReadOnlyList<Generated>> GenerateShardAsync(RunSpec spec, GeneratePrompts m, CancellationToken ct)
    {
        int rawTotal = RawPromptCount(spec);
        var (start, count) = PromptPool.ShardRange(rawTotal, m.Shard, m.ShardCount);
        if (spec.Prompts.Source == PromptSources.Pool)
        {
            var pool = (await Specs.SeedFileAsync(spec.Prompts.PoolFile, "prompts.pool_file", SeedReader.ReadPrompts, ct)).Select(p => p.Instruction).ToList();
            return PromptPool.Slice(pool.Count, spec.Seed, m.Iteration, m.Shard, m.ShardCount, rawTotal)
                .Select(i => new Generated(pool[i], 0, null)).ToList();
        }

        var seedInstructions = await SeedInstructionsAsync(Specs, spec, ct);
        var earlier = await EarlierPromptsAsync(m.RunId, m.Iteration, ct);
        // models.prompt_model: a fixed checkpoint, or an endpoint whose every call is stored (CallId = the prompt's id); null = M_t.
        var model = await external.GetAsync(models, spec.Models.PromptModel ?? ModelRef.OfFolder(SpecRefs.Checkpoint(m.CheckpointId)), "models.prompt_model",
            spec.Models.Dtype, new ExternalCallContext(m.RunId, m.Iteration, Ids.Shard(m.RunId, m.Iteration, m.Shard), "prompt"), ct);
        var checkpointId = model.CheckpointId;
        var s = spec.Prompts.Sampling;
        var requests = Enumerable.Range(0, count).Select(i =>
        {
            long seed = Ids.Seed(spec.Seed, "prompt", Ids.SeedKey(m.RunId, Ids.Prompt(m.RunId, m.Iteration, m.Shard, i)));
            return new GenerationRequest(SelfInstruct.BuildFewShot(seedInstructions, earlier, spec.Prompts.FewShot, seed), seed, s.Temperature, s.TopP, s.MaxNewTokens, Raw: true)
            { Stop = ["\n"], CallId = Ids.Prompt(m.RunId, m.Iteration, m.Shard, i) };
        }).ToList();
        var results = await model.GenerateAsync(requests, ct);
        return results.Select((r, i) => new Generated(SelfInstruct.ExtractTask(r.Text), requests[i].Seed, checkpointId, r.FinishReason)).ToList();
    }

    /// <summary>Raw prompts generated per iteration across all shards: the quota times the oversampling factor.</summary>
    public static int RawPromptCount(RunSpec spec) => Math.Max(spec.Prompts.Shards, (int)Math.Ceiling(spec.Prompts.PerIteration * spec.Prompts.Oversample));

    /// <summary>Prompts of earlier iterations' final sets (the "2 generated" few-shot examples).</summary>
    private async Task<IReadOnlyList<string>> EarlierPromptsAsync(string runId, int iteration, CancellationToken ct)
    {
        if (iteration <= 1) return [];
        var set = await Store.GetAsync<PromptSetFinalRecord>(Ids.PromptSet(runId, iteration - 1), ct);
        if (set is null) return [];
        return (await Store.GetManyAsync<PromptRecord>(set.PromptIds, ct)).Select(p => p.Text).ToList();
    }

    internal static async Task<IReadOnlyList<string>> SeedInstructionsAsync(RunSpecCache specs, RunSpec spec, CancellationToken ct)
    {
        if (spec.SeedData.Ift is null) return [];
        return (await specs.SeedFileAsync(spec.SeedData.Ift, "seed_data.ift", SeedReader.ReadIft, ct)).Select(r => r.Instruction).ToList();
    }

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "run {RunId} iteration {Iteration} shard {Shard}: {Count} prompts stored")]
    private static partial void LogShard(ILogger logger, string runId, int iteration, int shard, int count);
}

/// <summary>Filters an iteration's prompts across shards into the final set, exactly once in effect: the
/// result depends only on stored prompts, so every consumer that gets here computes the same record and
/// the store keeps one. The one that inserted it sends the GenerateResponses commands; a redelivered
/// message (its first attempt may have died after the insert) sends them again, which is harmless.</summary>
public static partial class PromptSetFinaliser
{
    public static async Task FinaliseAsync(IArtifactStore store, RunSpecCache specs, RunSpec spec, string runId, int iteration, string checkpointId,
        ISendEndpointProvider send, bool resend, ILogger log, CancellationToken ct)
    {
        var setId = Ids.PromptSet(runId, iteration);
        var existing = await store.GetAsync<PromptSetFinalRecord>(setId, ct);
        WriteOutcome outcome = WriteOutcome.Unchanged;
        var final = existing;
        if (final is null)
        {
            var shards = await store.ListAsync<PromptShardRecord>(ArtifactQuery.OfRun(runId, iteration), ct);
            var prompts = await store.GetManyAsync<PromptRecord>(shards.SelectMany(s => s.PromptIds), ct);
            var seeds = spec.Prompts.Filter.CompareWithSeed ? await GeneratePromptsConsumer.SeedInstructionsAsync(specs, spec, ct) : [];
            var result = PromptFilter.Apply(prompts.Select(p => new RawPrompt(p.Id, p.Shard, p.Index, p.Text)), seeds, spec.Prompts.Filter, spec.Prompts.PerIteration);
            final = new PromptSetFinalRecord
            {
                Id = setId, RunId = runId, Iteration = iteration,
                PromptIds = result.Kept.Select(k => k.PromptId).ToList(),
                Filtered = result.Rejected.GroupBy(r => r.Reason).ToDictionary(g => Snake(g.Key.ToString()), g => g.Count()),
            };
            outcome = await store.PutAsync(final, ct);
            if (outcome == WriteOutcome.Conflict) final = await store.GetAsync<PromptSetFinalRecord>(setId, ct) ?? final;
            LogFinal(log, runId, iteration, final.PromptIds.Count, prompts.Count);
        }
        if (final.PromptIds.Count == 0)
            throw new PermanentMessageException($"run {runId} iteration {iteration}: the prompt filter kept no prompts (see spec.prompts.filter)");
        if (outcome != WriteOutcome.Inserted && !resend) return;
        await send.SendAllAsync<GenerateResponses>(final.PromptIds.Select(id => new GenerateResponses
        {
            RunId = runId, Iteration = iteration, CheckpointId = checkpointId, PromptId = id,
        }), ct);
    }

    private static string Snake(string pascal) => string.Concat(pascal.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "run {RunId} iteration {Iteration}: prompt set final, {Kept} of {Generated} prompts kept")]
    private static partial void LogFinal(ILogger logger, string runId, int iteration, int kept, int generated);
}

/// <summary>GenerateResponses -> N candidates of one prompt in one batched call (each with its own seed),
/// stored, then one JudgeCandidate per candidate. Stored candidates are not generated again.</summary>
public sealed partial class GenerateResponsesConsumer(IArtifactStore store, RunSpecCache specs, IModelProvider models, ILogger<GenerateResponsesConsumer> log)
    : RunConsumer<GenerateResponses>(store, specs)
{
    protected override async Task HandleAsync(ConsumeContext<GenerateResponses> context, GenerateResponses m, RunSpec spec, CancellationToken ct)
    {
        var prompt = await RequireAsync<PromptRecord>(context, "prompt", m.PromptId, ct);
        int n = spec.Responses.N;
        var stored = await Store.ListAsync<CandidateRecord>(ArtifactQuery.OfParent(m.PromptId), ct);
        var missing = Enumerable.Range(0, n).Where(i => stored.All(c => c.Index != i)).ToList();
        if (missing.Count > 0)
        {
            var model = await models.GetAsync(m.CheckpointId, spec.Models.Dtype, ct);
            var requests = missing.Select(i => CandidateRequests.Of(spec, m.RunId, m.PromptId, prompt.Text, i)).ToList();
            var results = await model.GenerateAsync(requests, ct);
            int promptTokens = model.CountPromptTokens(prompt.Text); // untruncated, as the pair rules count it
            for (int j = 0; j < missing.Count; j++)
            {
                int i = missing[j];
                await Store.PutAsync(new CandidateRecord
                {
                    Id = Ids.Candidate(m.PromptId, i), RunId = m.RunId, Iteration = m.Iteration, PromptId = m.PromptId, Index = i,
                    Text = results[j].Text, CheckpointId = m.CheckpointId, Seed = requests[j].Seed, TokenCount = results[j].CompletionTokens,
                    PromptTokens = promptTokens, ContextLength = model.ContextLength, FinishReason = results[j].FinishReason,
                }, ct);
            }
            LogCandidates(log, m.RunId, m.Iteration, m.PromptId, missing.Count);
        }
        await context.SendAllAsync<JudgeCandidate>(Enumerable.Range(0, n).Select(i => new JudgeCandidate
        {
            RunId = m.RunId, Iteration = m.Iteration, CheckpointId = m.CheckpointId, PromptId = m.PromptId, CandidateId = Ids.Candidate(m.PromptId, i),
        }), ct);
    }

    [LoggerMessage(EventId = 3004, Level = LogLevel.Debug, Message = "run {RunId} iteration {Iteration} prompt {PromptId}: {Count} candidates stored")]
    private static partial void LogCandidates(ILogger logger, string runId, int iteration, string promptId, int count);
}

public sealed class IterationStartedConsumerDefinition() : SrlmConsumerDefinition<IterationStartedConsumer>(concurrentMessageLimit: 1);

public sealed class GeneratePromptsConsumerDefinition() : SrlmConsumerDefinition<GeneratePromptsConsumer>(concurrentMessageLimit: 2);

/// <summary>Several prompts at once: the model executor batches their sequences.</summary>
public sealed class GenerateResponsesConsumerDefinition() : SrlmConsumerDefinition<GenerateResponsesConsumer>(concurrentMessageLimit: 8);
