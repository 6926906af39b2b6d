// Over 300 lines on purpose: the one contract every store backend runs (SQLite here, MongoDB where it exists), in one abstract class so both backends run exactly the same tests.
namespace Srlm.Tests.Storage;

/// <summary>
/// The behaviour every IArtifactStore backend must have. Concrete classes open a FRESH store per test
/// (SQLite: a new file; MongoDB: a new database) and may skip with the reason when their backend is absent.
/// </summary>
public abstract class ArtifactStoreConformance
{
    protected readonly ManualClock Clock = new(new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero));

    /// <summary>Open a fresh, empty store (skips the test when the backend is unavailable).</summary>
    protected abstract Task<IArtifactStore> OpenFreshAsync();

    /// <summary>Make the store record another schema version, then open it again (must throw).</summary>
    protected abstract Task<IArtifactStore> TamperSchemaVersionAndReopenAsync(IArtifactStore store, int version);

    private const string Run = "run-a";

    [SkippableFact]
    public async Task Writing_the_same_artifact_twice_changes_nothing()
    {
        await using var store = await OpenFreshAsync();
        await store.CreateRunAsync(Run, "{}", 1);
        var p = Make.Prompt(Run, 1, 0);
        Assert.Equal(WriteOutcome.Inserted, await store.PutAsync(p));
        Clock.Advance(TimeSpan.FromMinutes(1));
        // Same content, different caller-side CreatedAt: still unchanged (createdAt is store-assigned).
        Assert.Equal(WriteOutcome.Unchanged, await store.PutAsync(p with { CreatedAt = DateTimeOffset.UnixEpoch }));
        Assert.Equal(1, await store.CountAsync<PromptRecord>(ArtifactQuery.OfRun(Run, 1)));
        var stored = await store.GetAsync<PromptRecord>(p.Id);
        Assert.NotNull(stored);
        Assert.Equal(p.Text, stored.Text);
        Assert.Equal(Clock.GetUtcNow() - TimeSpan.FromMinutes(1), stored.CreatedAt);
        Assert.Equal(0, (await store.GetIterationStatusAsync(Run, 1)).Duplicates);
    }

    [SkippableFact]
    public async Task PutMany_reports_each_outcome_in_order()
    {
        await using var store = await OpenFreshAsync();
        var c = Make.Candidate(Run, 1, "p0", 0);
        await store.PutAsync(Make.Judgement(Run, 1, c, 1, 2));
        var batch = new[]
        {
            Make.Judgement(Run, 1, c, 0, 4),
            Make.Judgement(Run, 1, c, 1, 2),        // already stored
            Make.Judgement(Run, 1, c, 2, null),
            Make.Judgement(Run, 1, c, 0, 5),        // same id as the first, other score
        };
        Assert.Equal([WriteOutcome.Inserted, WriteOutcome.Unchanged, WriteOutcome.Inserted, WriteOutcome.Conflict], await store.PutManyAsync(batch));
        Assert.Equal([WriteOutcome.Unchanged, WriteOutcome.Unchanged, WriteOutcome.Unchanged], await store.PutManyAsync(batch[..3]));
        Assert.Equal(3, await store.CountAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id)));
        Assert.Equal(4, (await store.GetAsync<JudgementRecord>(batch[0].Id))!.Score);
        Assert.Equal([batch[2].Id, batch[0].Id], (await store.GetManyAsync<JudgementRecord>([batch[2].Id, "missing", batch[0].Id])).Select(j => j.Id));
        Assert.Empty(await store.PutManyAsync(Array.Empty<JudgementRecord>()));
    }

    [SkippableFact]
    public async Task Different_content_under_one_id_is_a_conflict_and_keeps_the_first()
    {
        await using var store = await OpenFreshAsync();
        var c = Make.Candidate(Run, 1, "p0", 0);
        Assert.Equal(WriteOutcome.Inserted, await store.PutAsync(c));
        Assert.Equal(WriteOutcome.Conflict, await store.PutAsync(c with { Text = "another answer" }));
        Assert.Equal("answer 0", (await store.GetAsync<CandidateRecord>(c.Id))!.Text);
        await Assert.ThrowsAsync<StoreConflictException>(() => store.PutAsync(c with { Text = "x" }).ThrowIfConflict("candidate"));
    }

    [SkippableFact]
    public async Task Content_comparison_ignores_dictionary_order_and_keeps_non_finite_metrics()
    {
        await using var store = await OpenFreshAsync();
        var a = new EvaluationRecord
        {
            Id = "e1", RunId = Run, Iteration = 2, CheckpointId = "m2", Evaluator = "task",
            Metrics = new Dictionary<string, double> { ["accuracy"] = 0.5, ["loss"] = double.NaN },
        };
        Assert.Equal(WriteOutcome.Inserted, await store.PutAsync(a));
        var reordered = a with { Metrics = new Dictionary<string, double> { ["loss"] = double.NaN, ["accuracy"] = 0.5 } };
        Assert.Equal(WriteOutcome.Unchanged, await store.PutAsync(reordered));
        Assert.True(double.IsNaN((await store.GetAsync<EvaluationRecord>("e1"))!.Metrics["loss"]));
        Assert.Equal(WriteOutcome.Conflict, await store.PutAsync(a with { Metrics = new Dictionary<string, double> { ["accuracy"] = 0.6 } }));
    }

    [SkippableFact]
    public async Task Duplicates_counter_sees_a_writer_that_uses_random_ids()
    {
        await using var store = await OpenFreshAsync();
        var c = Make.Candidate(Run, 1, "p0", 0);
        await store.PutAsync(c);
        await store.PutAsync(Make.Judgement(Run, 1, c, 0, 4));
        await store.PutAsync(Make.Judgement(Run, 1, c, 1, 3));
        Assert.Equal(0, (await store.GetIterationStatusAsync(Run, 1)).Duplicates);

        // A buggy, non-idempotent writer: the same (candidate, sample) judged again under fresh ids.
        await store.PutAsync(Make.Judgement(Run, 1, c, 0, 4, id: Guid.NewGuid().ToString()));
        await store.PutAsync(Make.Judgement(Run, 1, c, 0, 4, id: Guid.NewGuid().ToString()));
        // And a prompt settled twice: a pair and a drop for the same prompt.
        await store.PutAsync(Make.Pair(Run, 1, "p0"));
        await store.PutAsync(Make.Drop(Run, 1, "p0", DropReason.DroppedTies));

        var status = await store.GetIterationStatusAsync(Run, 1);
        Assert.Equal(3, status.Duplicates);
        Assert.Equal(4, status.Judgments);
        var groups = await store.ListDuplicatesAsync(Run, 1);
        Assert.Equal(2, groups.Count);
        var judged = Assert.Single(groups, g => g.LogicalKey == $"judgement/{c.Id}/0");
        Assert.Equal(3, judged.Ids.Count);
        var settle = Assert.Single(groups, g => g.LogicalKey == "settle/p0");
        Assert.Equal("pair+pair_drop", settle.Kind);
        Assert.Equal(0, (await store.GetIterationStatusAsync(Run, 2)).Duplicates);
    }

    [SkippableFact]
    public async Task Completion_and_status_are_counted_from_stored_facts()
    {
        await using var store = await OpenFreshAsync();
        await store.CreateRunAsync(Run, "{}", 1);
        await store.PutAsync(new IterationRecord { Id = $"{Run}/t1", RunId = Run, Iteration = 1, StartCheckpointId = $"{Run}/m1" });
        var prompts = Enumerable.Range(0, 5).Select(i => Make.Prompt(Run, 1, i)).ToList();
        foreach (var p in prompts) await store.PutAsync(p);
        await store.PutAsync(new PromptShardRecord { Id = $"{Run}/t1/s0", RunId = Run, Iteration = 1, Shard = 0, ShardCount = 1, PromptIds = prompts.Select(p => p.Id).ToList() });
        // The filter kept 4 of 5.
        var kept = prompts.Take(4).Select(p => p.Id).ToList();
        await store.PutAsync(new PromptSetFinalRecord { Id = $"{Run}/t1/final", RunId = Run, Iteration = 1, PromptIds = kept });

        foreach (var pid in kept)
            for (var i = 0; i < 2; i++)
            {
                var c = Make.Candidate(Run, 1, pid, i);
                await store.PutAsync(c);
                for (var k = 0; k < 3; k++) await store.PutAsync(Make.Judgement(Run, 1, c, k, k == 2 && i == 1 ? null : 3 + i));
            }

        Assert.Equal(2, (await store.ListAsync<CandidateRecord>(ArtifactQuery.OfParent(kept[0]))).Count);
        Assert.Equal(3, await store.CountAsync<JudgementRecord>(ArtifactQuery.OfParent($"{kept[0]}/c1")));
        Assert.Equal(1, await store.CountAsync<JudgementRecord>(new ArtifactQuery { ParentId = $"{kept[0]}/c1", Tag = JudgementRecord.Unparseable }));
        Assert.Equal(kept, await store.ListUnsettledPromptsAsync(Run, 1));
        Assert.True(await store.IsPromptFullyJudgedAsync(kept[0], candidatesPerPrompt: 2, samplesPerCandidate: 3));
        Assert.False(await store.IsPromptFullyJudgedAsync(kept[0], candidatesPerPrompt: 3, samplesPerCandidate: 3));
        Assert.False(await store.IsPromptFullyJudgedAsync(kept[0], candidatesPerPrompt: 2, samplesPerCandidate: 4));
        Assert.Equal((null, null), await store.SettlementOfPromptAsync(kept[0]));

        await store.PutAsync(Make.Pair(Run, 1, kept[0]));
        await store.PutAsync(Make.Drop(Run, 1, kept[1], DropReason.DroppedTies));
        await store.PutAsync(Make.Drop(Run, 1, kept[2], DropReason.TooLong));
        Assert.Equal([kept[3]], await store.ListUnsettledPromptsAsync(Run, 1));
        Assert.Equal(DropReason.TooLong, (await store.SettlementOfPromptAsync(kept[2])).Drop!.Reason);
        Assert.Equal(4, (await store.FinalPromptSetAsync(Run, 1))!.PromptIds.Count);
        Assert.Equal(3, await store.CountSettledPromptsAsync(Run, 1));
        await store.PutAsync(Make.Drop(Run, 1, kept[3], DropReason.DroppedOther));
        Assert.Empty(await store.ListUnsettledPromptsAsync(Run, 1));
        await store.PutAsync(Make.Checkpoint(Run, 2, $"{Run}/m1", null));

        var s = await store.GetIterationStatusAsync(Run, 1);
        Assert.Equal(4, s.Prompts);
        Assert.True(s.PromptSetFinal);
        Assert.Equal(5, s.PromptsGenerated);
        Assert.Equal(1, s.PromptShards);
        Assert.Equal(8, s.Candidates);
        Assert.Equal(24, s.Judgments);
        Assert.Equal(4, s.Unparseable);
        Assert.Equal(1, s.Pairs);
        Assert.Equal(1, s.DroppedTies);
        Assert.Equal(1, s.DroppedOther);
        Assert.Equal(1, s.TooLong);
        Assert.Equal(4, s.Settled);
        Assert.Equal(0, s.Duplicates);
        Assert.Equal($"{Run}/m1", s.StartCheckpointId);
        Assert.Equal($"{Run}/m2", s.CheckpointId);
        var all = await store.GetRunStatusAsync(Run);
        Assert.Equal([1], all.Select(x => x.Iteration));
    }

    [SkippableFact]
    public async Task Runs_are_created_once_and_terminal_states_stick()
    {
        await using var store = await OpenFreshAsync();
        Assert.Equal(WriteOutcome.Inserted, await store.CreateRunAsync(Run, """{"n":4}""", 1));
        Assert.Equal(WriteOutcome.Unchanged, await store.CreateRunAsync(Run, """{"n":4}""", 1));
        Assert.Equal(WriteOutcome.Conflict, await store.CreateRunAsync(Run, """{"n":5}""", 1));
        var run = (await store.GetRunAsync(Run))!;
        Assert.Equal(RunState.Running, run.State);
        Assert.Equal("""{"n":4}""", run.SpecJson);

        Clock.Advance(TimeSpan.FromSeconds(30));
        await store.PutAsync(Make.Prompt(Run, 1, 0));
        Assert.Equal(Clock.GetUtcNow(), (await store.GetRunAsync(Run))!.LastProgressAt);

        Assert.Equal(WriteOutcome.Updated, await store.SetRunStateAsync(Run, RunState.Failed, "JudgeCandidate parked: bad body"));
        Assert.Equal(WriteOutcome.Unchanged, await store.SetRunStateAsync(Run, RunState.Completed));
        run = (await store.GetRunAsync(Run))!;
        Assert.Equal(RunState.Failed, run.State);
        Assert.Equal("JudgeCandidate parked: bad body", run.FailureReason);
        await Assert.ThrowsAsync<KeyNotFoundException>(() => store.SetRunStateAsync("nope", RunState.Cancelled));

        // An operator requeued the parked messages: the failed run runs again; a completed one never does.
        Assert.Equal(WriteOutcome.Updated, await store.ReopenFailedRunAsync(Run));
        Assert.Equal(WriteOutcome.Unchanged, await store.ReopenFailedRunAsync(Run));
        run = (await store.GetRunAsync(Run))!;
        Assert.Equal(RunState.Running, run.State);
        Assert.Null(run.FailureReason);
        Assert.Equal(WriteOutcome.Updated, await store.SetRunStateAsync(Run, RunState.Completed));
        Assert.Equal(WriteOutcome.Unchanged, await store.ReopenFailedRunAsync(Run));
        Assert.Equal(RunState.Completed, (await store.GetRunAsync(Run))!.State);
        await Assert.ThrowsAsync<KeyNotFoundException>(() => store.ReopenFailedRunAsync("nope"));
        await store.CreateRunAsync("run-b", "{}", 1);
        Assert.Equal(2, (await store.ListRunsAsync()).Count);
    }

    [SkippableFact]
    public async Task Journal_appends_once_per_entry_id_and_filters_by_run_iteration_and_type()
    {
        await using var store = await OpenFreshAsync();
        var t0 = Clock.GetUtcNow();
        var e1 = Make.Journal(Run, 1, "m1", "JudgeCandidate", JournalDirection.Published, t0);
        Assert.Equal(WriteOutcome.Inserted, await store.AppendJournalAsync(e1));
        Assert.Equal(WriteOutcome.Unchanged, await store.AppendJournalAsync(e1 with { Time = t0.AddSeconds(5) }));
        await store.AppendJournalAsync(Make.Journal(Run, 1, "m1", "JudgeCandidate", JournalDirection.Consumed, t0.AddSeconds(1)));
        await store.AppendJournalAsync(Make.Journal(Run, 1, "m2", "CandidateJudged", JournalDirection.Published, t0.AddSeconds(2)));
        await store.AppendJournalAsync(Make.Journal(Run, 2, "m3", "JudgeCandidate", JournalDirection.Published, t0.AddSeconds(3)));
        await store.AppendJournalAsync(Make.Journal("run-b", 1, "m4", "JudgeCandidate", JournalDirection.Published, t0.AddSeconds(4)));

        var all = await store.QueryJournalAsync(new JournalQuery { RunId = Run });
        Assert.Equal(["m1", "m1", "m2", "m3"], all.Select(e => e.MessageId));
        Assert.True(all.Zip(all.Skip(1)).All(p => p.First.Sequence < p.Second.Sequence));
        var first = all[0];
        Assert.Equal(t0, first.Time);
        Assert.Equal("1", first.Headers["x-test"]);
        Assert.Equal("conv-1", first.ConversationId);
        Assert.Equal(e1.BodyJson, first.BodyJson);
        Assert.Equal(3, (await store.QueryJournalAsync(new JournalQuery { RunId = Run, Iteration = 1 })).Count);
        Assert.Equal(2, await store.CountJournalAsync(new JournalQuery { RunId = Run, MessageType = "JudgeCandidate", Direction = JournalDirection.Published }));
        var page = await store.QueryJournalAsync(new JournalQuery { RunId = Run, AfterSequence = all[1].Sequence, Limit = 1 });
        Assert.Equal("m2", Assert.Single(page).MessageId);
        Assert.Empty(await store.QueryJournalAsync(new JournalQuery { RunId = Run, Limit = 0 }));
    }

    [SkippableFact]
    public async Task Journal_appends_many_in_input_order_once_per_entry_id()
    {
        await using var store = await OpenFreshAsync();
        var t0 = Clock.GetUtcNow();
        var stored = Make.Journal(Run, 1, "m0", "JudgeCandidate", JournalDirection.Published, t0);
        Assert.Equal([WriteOutcome.Inserted], await store.AppendJournalManyAsync([stored]));
        var batch = new[]
        {
            Make.Journal(Run, 1, "m1", "JudgeCandidate", JournalDirection.Consumed, t0.AddSeconds(1)),
            stored with { Time = t0.AddSeconds(9) },
            Make.Journal(Run, 1, "m2", "CandidateJudged", JournalDirection.Published, t0.AddSeconds(2)),
            Make.Journal(Run, 1, "m1", "JudgeCandidate", JournalDirection.Consumed, t0.AddSeconds(3)),
        };
        Assert.Equal([WriteOutcome.Inserted, WriteOutcome.Unchanged, WriteOutcome.Inserted, WriteOutcome.Unchanged], await store.AppendJournalManyAsync(batch));
        Assert.Empty(await store.AppendJournalManyAsync([]));

        var all = await store.QueryJournalAsync(new JournalQuery { RunId = Run });
        Assert.Equal(["m0", "m1", "m2"], all.Select(e => e.MessageId));
        Assert.True(all.Zip(all.Skip(1)).All(p => p.First.Sequence < p.Second.Sequence));
        Assert.Equal(t0, all[0].Time); // the first append of an id is kept
        Assert.Equal(t0.AddSeconds(1), all[1].Time);
        Assert.Equal("1", all[1].Headers["x-test"]);
        await Assert.ThrowsAnyAsync<ArgumentException>(() => store.AppendJournalManyAsync([batch[0] with { Id = "" }]));
    }

    [SkippableFact]
    public async Task A_job_left_running_by_a_dead_owner_is_reclaimed_after_its_heartbeat_goes_stale()
    {
        await using var store = await OpenFreshAsync();
        await store.CreateRunAsync(Run, "{}", 1);
        var job = new JobRecord { Id = $"{Run}/dpo/1", Kind = JobKind.Dpo, RunId = Run, Iteration = 1, InputCheckpointId = $"{Run}/m1", OutputCheckpointId = $"{Run}/m2", StateDir = "/state/1" };
        Assert.Equal(WriteOutcome.Inserted, await store.EnqueueJobAsync(job));
        Assert.Equal(WriteOutcome.Unchanged, await store.EnqueueJobAsync(job));
        var stale = TimeSpan.FromMinutes(2);

        var a = await store.TryClaimJobAsync(job.Id, "host-a/1", stale);
        Assert.NotNull(a);
        Assert.Equal(JobState.Running, a.State);
        Assert.Equal(1, a.Attempts);
        Assert.Null(await store.TryClaimJobAsync(job.Id, "host-b/2", stale));
        Assert.Null(await store.ClaimNextJobAsync("host-b/2", stale));
        // The owner itself may claim again after a restart under the same owner name.
        Assert.Equal(1, (await store.TryClaimJobAsync(job.Id, "host-a/1", stale))!.Attempts);
        Assert.True(await store.HeartbeatJobAsync(job.Id, "host-a/1", 40));

        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Null(await store.TryClaimJobAsync(job.Id, "host-b/2", stale));
        Clock.Advance(TimeSpan.FromMinutes(2)); // host-a died: no heartbeat for 3 minutes
        var b = await store.ClaimNextJobAsync("host-b/2", stale, [JobKind.Dpo]);
        Assert.NotNull(b);
        Assert.Equal("host-b/2", b.Owner);
        Assert.Equal(40, b.Step); // resume point survives
        Assert.Equal("/state/1", b.StateDir);
        Assert.Equal(2, b.Attempts);

        Assert.False(await store.HeartbeatJobAsync(job.Id, "host-a/1", 41)); // the old owner must stop
        Assert.False(await store.CompleteJobAsync(job.Id, "host-a/1"));
        Assert.True(await store.HeartbeatJobAsync(job.Id, "host-b/2", 80, "/state/1b"));
        Assert.True(await store.CompleteJobAsync(job.Id, "host-b/2", $"{Run}/m2"));
        Assert.True(await store.CompleteJobAsync(job.Id, "host-b/2"));
        var done = (await store.GetJobAsync(job.Id))!;
        Assert.Equal(JobState.Completed, done.State);
        Assert.Equal(80, done.Step);
        Assert.Equal("/state/1b", done.StateDir);
        Clock.Advance(TimeSpan.FromHours(1));
        Assert.Null(await store.TryClaimJobAsync(job.Id, "host-c/3", stale));
        Assert.Single(await store.ListJobsAsync(Run, JobState.Completed));
        Assert.Empty(await store.ListJobsAsync(Run, JobState.Running));
    }

    [SkippableFact]
    public async Task ClaimNext_filters_by_kind_and_a_failed_job_is_not_claimed()
    {
        await using var store = await OpenFreshAsync();
        await store.EnqueueJobAsync(new JobRecord { Id = "sft", Kind = JobKind.Sft, RunId = Run, Iteration = 0 });
        Clock.Advance(TimeSpan.FromSeconds(1));
        await store.EnqueueJobAsync(new JobRecord { Id = "dpo", Kind = JobKind.Dpo, RunId = Run, Iteration = 1 });
        Assert.Equal("dpo", (await store.ClaimNextJobAsync("w", TimeSpan.FromMinutes(1), [JobKind.Dpo]))!.Id);
        Assert.True(await store.FailJobAsync("dpo", "w", "out of memory"));
        Assert.Equal("out of memory", (await store.GetJobAsync("dpo"))!.Error);
        Clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal("sft", (await store.ClaimNextJobAsync("w2", TimeSpan.FromMinutes(1)))!.Id);
        Assert.Null(await store.ClaimNextJobAsync("w3", TimeSpan.FromMinutes(1)));
    }

    [SkippableFact]
    public async Task Lineage_walks_parents_with_the_dataset_behind_each_checkpoint()
    {
        await using var store = await OpenFreshAsync();
        await store.PutAsync(new DatasetRecord { Id = "ds0", RunId = Run, Iteration = 0, Purpose = "sft", BlobSha256s = ["abc"] });
        await store.PutAsync(new DatasetRecord { Id = "ds1", RunId = Run, Iteration = 1, Purpose = "dpo", PairIds = ["p0/pair", "p1/pair"] });
        await store.PutAsync(Make.Checkpoint(Run, 0, null, null));
        await store.PutAsync(Make.Checkpoint(Run, 1, $"{Run}/m0", "ds0"));
        await store.PutAsync(Make.Checkpoint(Run, 2, $"{Run}/m1", "ds1"));
        var lineage = await store.GetLineageAsync($"{Run}/m2");
        Assert.Equal([$"{Run}/m2", $"{Run}/m1", $"{Run}/m0"], lineage.Select(s => s.Checkpoint.Id));
        Assert.Equal(["p0/pair", "p1/pair"], lineage[0].Dataset!.PairIds);
        Assert.Equal(["abc"], lineage[1].Dataset!.BlobSha256s);
        Assert.Null(lineage[2].Dataset);
        Assert.Equal("model.safetensors", lineage[0].Checkpoint.Files[0].Path);
        await Assert.ThrowsAsync<KeyNotFoundException>(() => store.GetLineageAsync("missing"));
    }

    [SkippableFact]
    public async Task Pair_reference_log_probs_are_filled_once()
    {
        await using var store = await OpenFreshAsync();
        var pair = Make.Pair(Run, 1, "p0");
        await store.PutAsync(pair);
        Assert.Equal(WriteOutcome.Updated, await store.SetPairReferenceLogProbsAsync(pair.Id, -12.5, -30.25));
        Assert.Equal(WriteOutcome.Unchanged, await store.SetPairReferenceLogProbsAsync(pair.Id, -12.5, -30.25));
        Assert.Equal(WriteOutcome.Conflict, await store.SetPairReferenceLogProbsAsync(pair.Id, -1, -2));
        var stored = (await store.GetAsync<PairRecord>(pair.Id))!;
        Assert.Equal(-12.5, stored.ReferenceChosenLogProb);
        Assert.Equal(-30.25, stored.ReferenceRejectedLogProb);
        // The original pair written again (a redelivered message) is not a conflict and keeps the log-probs.
        Assert.Equal(WriteOutcome.Unchanged, await store.PutAsync(pair));
        Assert.Equal(-12.5, (await store.GetAsync<PairRecord>(pair.Id))!.ReferenceChosenLogProb);
        Assert.Equal(WriteOutcome.Conflict, await store.PutAsync(pair with { ChosenScore = 3 }));
        await Assert.ThrowsAsync<KeyNotFoundException>(() => store.SetPairReferenceLogProbsAsync("nope", 1, 2));
    }

    [SkippableFact]
    public async Task Overwrite_replaces_a_stored_score_for_audit_tampering()
    {
        await using var store = await OpenFreshAsync();
        var c = Make.Candidate(Run, 1, "p0", 0);
        var j = Make.Judgement(Run, 1, c, 0, 4);
        await store.PutAsync(j);
        Assert.Equal(WriteOutcome.Updated, await store.OverwriteAsync(j with { Score = 1 }));
        Assert.Equal(WriteOutcome.Unchanged, await store.OverwriteAsync(j with { Score = 1 }));
        Assert.Equal(1, (await store.GetAsync<JudgementRecord>(j.Id))!.Score);
        Assert.Equal(0, (await store.GetIterationStatusAsync(Run, 1)).Duplicates);
    }

    [SkippableFact]
    public async Task Blobs_are_content_addressed_and_verified()
    {
        await using var store = await OpenFreshAsync();
        var bytes = "{\"instruction\":\"add 2 and 3\",\"answer\":\"5\"}\n"u8.ToArray();
        var info = await store.PutBlobAsync(bytes, "ift.jsonl", "application/jsonl");
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), info.Sha256);
        Assert.Equal(bytes.Length, info.Size);
        Assert.Equal(info.Sha256, (await store.PutBlobAsync(bytes, "again.jsonl")).Sha256);
        Assert.Equal("ift.jsonl", (await store.GetBlobInfoAsync(info.Sha256))!.Name);
        Assert.Equal(bytes, await store.GetBlobAsync(info.Sha256.ToUpperInvariant()));
        Assert.Null(await store.GetBlobAsync(new string('0', 64)));
    }

    [SkippableFact]
    public async Task Metrics_upsert_by_step_and_name()
    {
        await using var store = await OpenFreshAsync();
        await store.PutMetricsAsync([new(Run, 1, 10, "loss", 0.9), new(Run, 1, 10, "rewards/margins", 0.1), new(Run, 1, 20, "loss", 0.7)]);
        await store.PutMetricsAsync([new(Run, 1, 10, "loss", 0.8)]);
        await store.PutMetricsAsync([new(Run, 2, 5, "loss", 0.5)]);
        var m = await store.ListMetricsAsync(Run, 1);
        Assert.Equal([(10L, "loss", 0.8), (10L, "rewards/margins", 0.1), (20L, "loss", 0.7)], m.Select(x => (x.Step, x.Name, x.Value)));
        Assert.Single(await store.ListMetricsAsync(Run, namePrefix: "rewards/"));
        Assert.Equal(4, (await store.ListMetricsAsync(Run)).Count);
    }

    [SkippableFact]
    public async Task Parked_errors_are_listed_by_run_and_requeued_once()
    {
        await using var store = await OpenFreshAsync();
        var e = new ErrorRecord { Id = "err-1", MessageId = "m9", MessageType = "JudgeCandidate", Queue = "judge-candidate_error", Reason = "unknown run run-x", RunId = "run-x", Time = Clock.GetUtcNow() };
        Assert.Equal(WriteOutcome.Inserted, await store.PutErrorAsync(e));
        Assert.Equal(WriteOutcome.Unchanged, await store.PutErrorAsync(e));
        await store.PutErrorAsync(e with { Id = "err-2", RunId = Run });
        var listed = Assert.Single(await store.ListErrorsAsync("run-x"));
        Assert.Equal("unknown run run-x", listed.Reason);
        Assert.Equal(e.Time, listed.Time);
        Assert.True(await store.MarkErrorRequeuedAsync("err-1"));
        Assert.False(await store.MarkErrorRequeuedAsync("err-1"));
        Assert.Empty(await store.ListErrorsAsync("run-x"));
        Assert.NotNull(Assert.Single(await store.ListErrorsAsync("run-x", includeRequeued: true)).RequeuedAt);
        Assert.Single(await store.ListErrorsAsync());
    }

    [SkippableFact]
    public async Task A_store_of_another_schema_version_is_refused_with_both_versions_named()
    {
        var store = await OpenFreshAsync();
        var location = store.Location;
        var e = await Assert.ThrowsAsync<StoreSchemaException>(() => TamperSchemaVersionAndReopenAsync(store, 99));
        Assert.Contains(location, e.Message);
        Assert.Contains("schema version 99", e.Message);
        Assert.Contains("schema version 1", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [SkippableFact]
    public async Task Many_concurrent_writers_of_overlapping_ids_store_each_artifact_once()
    {
        await using var store = await OpenFreshAsync();
        var c = Make.Candidate(Run, 1, "p0", 0);
        var tasks = Enumerable.Range(0, 8).Select(w => Task.Run(async () =>
        {
            var outcomes = new List<WriteOutcome>();
            for (var k = 0; k < 25; k++) outcomes.Add(await store.PutAsync(Make.Judgement(Run, 1, c, k, k % 5)));
            return outcomes;
        }));
        var all = (await Task.WhenAll(tasks)).SelectMany(x => x).ToList();
        Assert.Equal(25, all.Count(o => o == WriteOutcome.Inserted));
        Assert.Equal(175, all.Count(o => o == WriteOutcome.Unchanged));
        Assert.Equal(25, await store.CountAsync<JudgementRecord>(ArtifactQuery.OfParent(c.Id)));
    }
}
