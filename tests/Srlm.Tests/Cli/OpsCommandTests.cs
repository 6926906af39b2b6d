namespace Srlm.Tests.Cli;

/// <summary>The operator verbs run through the real dispatcher against a real SQLite store (--store).</summary>
[Collection("console")]
public sealed class OpsCommandTests() : StoreFolderTest("srlm-ops-")
{
    private string StoreUri => "sqlite://" + Path.Combine(Folder, "srlm.db");

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await OpsFixtures.WriteFinishedIterationAsync(Stores, "run1", Folder);
    }

    private static Task<(int Code, string Out, string Err)> Srlm(params string[] args) => CliConsole.RunAsync(args);

    private static JournalEntry Journal(string run, int t, string messageId, string type, JournalDirection dir, DateTimeOffset time) =>
        global::Srlm.Tests.Storage.Make.Journal(run, t, messageId, type, dir, time);

    [Fact]
    public async Task Status_reports_every_per_iteration_count_from_the_store()
    {
        var (code, json, err) = await Srlm("status", "run1", "--json", "--store", StoreUri);
        Assert.True(code == 0, err);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("running", doc.RootElement.GetProperty("state").GetString());
        var it = doc.RootElement.GetProperty("iterations").EnumerateArray().Single(i => i.GetProperty("iteration").GetInt32() == 1);
        Assert.Equal(3, it.GetProperty("prompts").GetInt64());
        Assert.Equal(6, it.GetProperty("candidates").GetInt64());
        Assert.Equal(3, it.GetProperty("judge_samples").GetInt32());
        Assert.Equal(18, it.GetProperty("judgments").GetInt64());
        Assert.Equal(2, it.GetProperty("unparseable").GetInt64());
        Assert.Equal(2, it.GetProperty("pairs").GetInt64());
        Assert.Equal(1, it.GetProperty("dropped_ties").GetInt64());
        Assert.Equal(0, it.GetProperty("dropped_other").GetInt64());
        Assert.Equal(0, it.GetProperty("too_long").GetInt64());
        Assert.Equal(0, it.GetProperty("duplicates").GetInt64());
        Assert.Equal("run1/m2", it.GetProperty("checkpoint").GetString());
        Assert.Equal("SRLM_BUS is not a RabbitMQ broker", doc.RootElement.GetProperty("queues_note").GetString());

        var (_, text, _) = await Srlm("status", "run1", "--store", StoreUri);
        Assert.Contains("run run1: running", text);
        Assert.Contains("dropped_ties", text);
    }

    [Fact]
    public async Task Status_measures_each_stages_throughput_over_the_window_and_the_time_left()
    {
        var now = DateTimeOffset.UtcNow;
        var s = Stores.Artifacts;
        // run1's iteration 1 has its final 3 prompts and all 18 judgements; the journal says one prompt was answered.
        await s.AppendJournalAsync(Journal("run1", 1, "old", "Srlm.Contracts.CandidateJudged", JournalDirection.Consumed, now.AddMinutes(-10)));
        await s.AppendJournalAsync(Journal("run1", 1, "responses-0", "Srlm.Contracts.GenerateResponses", JournalDirection.Consumed, now.AddMinutes(-2)));
        for (int i = 0; i < 6; i++)
            await s.AppendJournalAsync(Journal("run1", 1, $"judge-{i}", "Srlm.Contracts.JudgeCandidate", JournalDirection.Consumed, now.AddMinutes(-2 + 0.2 * i)));

        var r = (await RunStatusBuilder.BuildAsync(s, "run1", TimeSpan.FromHours(1), TimeSpan.FromMinutes(5), now))!;
        // Over the 5-minute window (the journal reaches back further): the old message is outside it.
        Assert.Equal([("prompts", 0L), ("responses", 1L), ("judge", 6L), ("pairs", 0L)], r.Throughput.Select(t => (t.Stage, t.Handled)));
        Assert.Equal(0.2, r.Throughput.Single(t => t.Stage == "responses").PerMinute, 9);
        Assert.Equal(1.2, r.Throughput.Single(t => t.Stage == "judge").PerMinute, 9);
        // 2 of 3 prompts still to answer at 0.2 a minute, no judgement missing: 10 minutes left.
        Assert.Equal(600, r.EtaSeconds);

        var (code, text, err) = await Srlm("status", "run1", "--store", StoreUri);
        Assert.True(code == 0, err);
        Assert.Contains("throughput (per minute, recent): prompts 0.0, responses 0.", text, StringComparison.Ordinal);
        Assert.Contains("time left (generation + judging of this iteration): ~00:", text, StringComparison.Ordinal);

        // --wait with --json: one JSON document when the run ends, exit 0 for a completed run.
        await s.SetRunStateAsync("run1", RunState.Completed);
        var (waitCode, json, waitErr) = await Srlm("status", "run1", "--wait", "--json", "--interval", "0.1", "--store", StoreUri);
        Assert.True(waitCode == 0, waitErr);
        using var doc = JsonDocument.Parse(json);
        Assert.Equal("completed", doc.RootElement.GetProperty("state").GetString());
        Assert.Null(doc.RootElement.GetProperty("eta_seconds").GetString()); // a run that ended has no time left
    }

    [Fact]
    public async Task A_run_without_progress_for_the_stall_time_is_stalled()
    {
        var report = await RunStatusBuilder.BuildAsync(Stores.Artifacts, "run1", TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow.AddMinutes(6));
        Assert.Equal("stalled", report!.State);
        report = await RunStatusBuilder.BuildAsync(Stores.Artifacts, "run1", TimeSpan.FromMinutes(5), TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.Equal("running", report!.State);
    }

    [Fact]
    public async Task Status_wait_exits_zero_only_for_a_completed_run()
    {
        await Stores.Artifacts.SetRunStateAsync("run1", RunState.Completed);
        Assert.Equal(0, (await Srlm("status", "run1", "--wait", "--interval", "0.1", "--store", StoreUri)).Code);

        await Stores.Artifacts.CreateRunAsync("run2", OpsFixtures.Spec, 1);
        await Stores.Artifacts.SetRunStateAsync("run2", RunState.Failed, "judge-candidate_error holds a message");
        var (code, text, _) = await Srlm("status", "run2", "--wait", "--interval", "0.1", "--store", StoreUri);
        Assert.Equal(1, code);
        Assert.Contains("failed (judge-candidate_error holds a message)", text);

        await Stores.Artifacts.CreateRunAsync("run3", OpsFixtures.Spec, 1);
        var timedOut = await Srlm("status", "run3", "--wait", "--interval", "0.1", "--timeout", "0.3", "--store", StoreUri);
        Assert.Equal(1, timedOut.Code);
        Assert.Contains("still running", timedOut.Err);
    }

    [Fact]
    public async Task Runs_lists_and_cancel_marks_the_run_cancelled()
    {
        var (code, text, _) = await Srlm("runs", "--store", StoreUri);
        Assert.Equal(0, code);
        Assert.Contains("run1", text);
        Assert.Equal(0, (await Srlm("cancel", "run1", "--store", StoreUri)).Code);
        Assert.Equal(RunState.Cancelled, (await Stores.Artifacts.GetRunAsync("run1"))!.State);
        var (again, msg, _) = await Srlm("cancel", "run1", "--store", StoreUri);
        Assert.Equal(0, again);
        Assert.Contains("already cancelled", msg);
        var (missing, _, err) = await Srlm("cancel", "nope", "--store", StoreUri);
        Assert.Equal(2, missing);
        Assert.Contains("run 'nope' not found", err);
    }

    [Fact]
    public async Task Resume_needs_a_run_and_a_RabbitMQ_bus_and_leaves_a_finished_run_alone()
    {
        var (usage, _, usageErr) = await Srlm("resume", "--store", StoreUri);
        Assert.Equal(2, usage);
        Assert.Contains("usage: srlm resume RUN", usageErr);
        var (missing, _, missingErr) = await Srlm("resume", "nope", "--store", StoreUri);
        Assert.Equal(2, missing);
        Assert.Contains("run 'nope' not found", missingErr);
        // run1 is running, but this process's SRLM_BUS is not a broker the services listen on: one line, nothing re-issued.
        var (noBus, _, noBusErr) = await Srlm("resume", "run1", "--store", StoreUri);
        Assert.Equal(2, noBus);
        Assert.Contains("resume publishes to the services: set SRLM_BUS=amqp://", noBusErr, StringComparison.Ordinal);
        Assert.Single(noBusErr.Trim().Split('\n'));
        Assert.Equal(RunState.Running, (await Stores.Artifacts.GetRunAsync("run1"))!.State);
        Assert.Equal(0, (await Srlm("cancel", "run1", "--store", StoreUri)).Code);
        var (done, text, _) = await Srlm("resume", "run1", "--store", StoreUri);
        Assert.Equal(0, done);
        Assert.Contains("run run1 is cancelled: nothing to resume", text);
    }

    [Fact]
    public async Task Export_pairs_writes_prompt_chosen_rejected_and_scores_as_jsonl()
    {
        var file = Path.Combine(Folder, "pairs.jsonl");
        var (code, _, err) = await Srlm("export", "pairs", "run1", "--iteration", "1", "--out", file, "--store", StoreUri);
        Assert.True(code == 0, err);
        var lines = File.ReadAllLines(file);
        Assert.Equal(2, lines.Length);
        using var first = JsonDocument.Parse(lines[0]);
        Assert.Equal("What is 0 + 0?", first.RootElement.GetProperty("prompt").GetString());
        Assert.Equal("answer 0.0", first.RootElement.GetProperty("chosen").GetString());
        Assert.Equal("answer 0.1", first.RootElement.GetProperty("rejected").GetString());
        Assert.Equal(5, first.RootElement.GetProperty("score_chosen").GetDouble());
        Assert.Equal(1, first.RootElement.GetProperty("score_rejected").GetDouble());
        Assert.Contains("2 pairs exported", err);
    }

    [Fact]
    public async Task Lineage_walks_from_the_last_checkpoint_to_the_seed_data()
    {
        var nodes = await LineageWalker.WalkAsync(Stores.Artifacts, "run1/m2");
        Assert.Equal(["run1/m2", "run1/m1"], nodes.Select(n => n.CheckpointId));
        Assert.Equal((2, 2, 4L, 12L), (nodes[0].Pairs, nodes[0].Prompts, nodes[0].Candidates, nodes[0].Judgements));
        Assert.Single(nodes[1].SeedBlobs);
        Assert.NotEqual(nodes[0].WeightsSha256, nodes[1].WeightsSha256);
        var (code, text, _) = await Srlm("lineage", "run1/m2", "--store", StoreUri);
        Assert.Equal(0, code);
        Assert.Contains("2 pairs from 2 prompts, 4 candidates, 12 judgements", text);
        Assert.Contains("seed files", text);
        Assert.Equal(2, (await Srlm("lineage", "run1/m9", "--store", StoreUri)).Code);
    }

    [Fact]
    public async Task Errors_list_shows_the_reason_of_each_parked_message()
    {
        await Stores.Artifacts.PutErrorAsync(new ErrorRecord
        {
            Id = "m1/judge-candidate_error", MessageId = "m1", MessageType = "Srlm.Contracts.JudgeCandidate", Queue = "judge-candidate_error",
            Reason = "System.InvalidOperationException: model exploded", RunId = "run1", Iteration = 1, Time = DateTimeOffset.UtcNow,
        });
        var (code, text, _) = await Srlm("errors", "list", "--run", "run1", "--store", StoreUri);
        Assert.Equal(0, code);
        Assert.Contains("judge-candidate_error", text);
        Assert.Contains("model exploded", text);
        var (requeue, _, err) = await Srlm("errors", "requeue", "--store", StoreUri);
        Assert.Equal(2, requeue);
        Assert.Contains("set SRLM_BUS=amqp://", err);
    }

    [Fact]
    public async Task Replay_on_the_command_line_selects_by_iteration_and_type_and_refuses_bad_targets()
    {
        var time = DateTimeOffset.UtcNow.AddMinutes(-1);
        async Task Published(int iteration, string id, IRunMessage message) => await Stores.Artifacts.AppendJournalAsync(
            Journal("run1", iteration, id, message.GetType().FullName!, JournalDirection.Published, time) with
            {
                BodyJson = JsonSerializer.Serialize(message, message.GetType(), global::Srlm.Messaging.Journal.JournalEntries.BodyOptions),
            });
        await Published(1, "responses-0", new GenerateResponses { RunId = "run1", Iteration = 1, CheckpointId = "run1/m1", PromptId = "run1/i1/p0-0" });
        await Published(1, "judge-0", new JudgeCandidate { RunId = "run1", Iteration = 1, CheckpointId = "run1/m1", PromptId = "run1/i1/p0-0", CandidateId = "run1/i1/p0-0/c0" });
        await Published(1, "judge-1", new JudgeCandidate { RunId = "run1", Iteration = 1, CheckpointId = "run1/m1", PromptId = "run1/i1/p0-0", CandidateId = "run1/i1/p0-0/c1" });
        await Published(2, "iteration-2", new IterationStarted { RunId = "run1", Iteration = 2, CheckpointId = "run1/m2" });

        var (code, text, err) = await Srlm("replay", "run1", "--iteration", "1", "--dry-run", "--store", StoreUri);
        Assert.True(code == 0, err);
        Assert.Contains("GenerateResponses: 1", text, StringComparison.Ordinal);
        Assert.Contains("JudgeCandidate: 2", text, StringComparison.Ordinal);
        Assert.Contains("dry run: 3 messages would be published", text, StringComparison.Ordinal);
        (code, text, err) = await Srlm("replay", "run1", "--type", "JudgeCandidate", "--dry-run", "--store", StoreUri);
        Assert.True(code == 0, err);
        Assert.DoesNotContain("GenerateResponses", text, StringComparison.Ordinal);
        Assert.Contains("dry run: 2 messages would be published", text, StringComparison.Ordinal);
        (code, _, err) = await Srlm("replay", "run1", "--iteration", "5", "--store", StoreUri);
        Assert.Equal(1, code);
        Assert.Contains("no journaled messages of run run1 match iteration 5", err, StringComparison.Ordinal);
        (code, _, err) = await Srlm("replay", "run1", "--into", "run1", "--store", StoreUri);
        Assert.Equal(2, code);
        Assert.Contains("--into must be a new run id", err, StringComparison.Ordinal);

        // Publishing needs the services' broker (the fault tests replay over one); nothing is copied without it.
        (code, _, err) = await Srlm("replay", "run1", "--iteration", "1", "--type", "JudgeCandidate", "--into", "run9", "--store", StoreUri);
        Assert.Equal(2, code);
        Assert.Contains("replay publishes to the services: set SRLM_BUS=amqp://", err, StringComparison.Ordinal);
        Assert.Null(await Stores.Artifacts.GetRunAsync("run9"));
    }

    [Fact]
    public async Task Replay_into_a_new_run_rekeys_messages_and_copies_the_artifacts_they_need()
    {
        var message = new JudgeCandidate { RunId = "run1", Iteration = 1, CheckpointId = "run1/m1", PromptId = "run1/i1/p0-0", CandidateId = "run1/i1/p0-0/c1" };
        var moved = (JudgeCandidate)JournalReplay.Rekey(message, typeof(JudgeCandidate), "run1", "run9");
        Assert.Equal(new JudgeCandidate { RunId = "run9", Iteration = 1, CheckpointId = "run9/m1", PromptId = "run9/i1/p0-0", CandidateId = "run9/i1/p0-0/c1" }, moved);
        Assert.Equal("run10/x", JournalReplay.RekeyString("run10/x", "run1", "run9"));

        var copied = await JournalReplay.CopyRunAsync(Stores.Artifacts, Stores.Checkpoints, "run1", "run9", DateTimeOffset.UtcNow.AddMinutes(1));
        Assert.True(copied > 30, $"copied {copied}");
        Assert.Equal(0, await JournalReplay.CopyRunAsync(Stores.Artifacts, Stores.Checkpoints, "run1", "run9", DateTimeOffset.UtcNow.AddMinutes(1)));
        var candidate = await Stores.Artifacts.GetAsync<CandidateRecord>("run9/i1/p0-0/c1");
        Assert.Equal(("run9", "run9/i1/p0-0", "answer 0.1"), (candidate!.RunId, candidate.PromptId, candidate.Text));
        var m1 = await Stores.MaterializeCheckpointAsync("run9/m1");
        Assert.Equal("weights of m1", File.ReadAllText(Path.Combine(m1, "model.safetensors")));
        var status = await Stores.Artifacts.GetIterationStatusAsync("run9", 1);
        Assert.Equal((3L, 18L, 2L, 0L), (status.Prompts, status.Judgments, status.Pairs, status.Duplicates));
    }

    [Fact]
    public async Task Replay_into_a_new_run_copies_what_the_replayed_messages_read_even_when_stored_after_the_first_of_them()
    {
        // The first replayed JudgeCandidate was published before anything of run1 was stored (cutoff in the past), as a
        // candidate generated after the first JudgeCandidate went out would be: the copy must still hold every candidate
        // the replayed messages name, with its prompt and checkpoint, and nothing the replay is to make again.
        var items = new[] { "c1", "c0" }.Select(c => new ReplayItem(null!, typeof(JudgeCandidate),
            new JudgeCandidate { RunId = "run1", Iteration = 1, CheckpointId = "run1/m1", PromptId = "run1/i1/p0-0", CandidateId = "run1/i1/p0-0/" + c })).ToList();
        var inputs = JournalReplay.InputsOf(items, "run1");
        Assert.Equal(["run1/i1/p0-0", "run1/i1/p0-0/c0", "run1/i1/p0-0/c1", "run1/m1"], inputs.Order(StringComparer.Ordinal));

        var copied = await JournalReplay.CopyRunAsync(Stores.Artifacts, Stores.Checkpoints, "run1", "run9", DateTimeOffset.UtcNow.AddHours(-1), inputs);
        var a = Stores.Artifacts;
        Assert.Equal(["run9/i1/p0-0/c0", "run9/i1/p0-0/c1"], (await a.ListAsync<CandidateRecord>(ArtifactQuery.OfRun("run9"))).Select(c => c.Id).Order(StringComparer.Ordinal));
        Assert.Equal("run9/i1/p0-0", Assert.Single(await a.ListAsync<PromptRecord>(ArtifactQuery.OfRun("run9"))).Id);
        Assert.Equal("weights of m1", File.ReadAllText(Path.Combine(await Stores.MaterializeCheckpointAsync("run9/m1"), "model.safetensors")));
        Assert.Empty(await a.ListAsync<JudgementRecord>(ArtifactQuery.OfRun("run9")));
        Assert.Empty(await a.ListAsync<PairRecord>(ArtifactQuery.OfRun("run9")));
        Assert.Null(await a.GetAsync<CheckpointRecord>("run9/m2"));
        // M1 names the SFT dataset it was trained on, so lineage in the copy still reaches the seed data.
        Assert.Equal("sft", (await a.GetAsync<DatasetRecord>("run9/i0/sft"))!.Purpose);
        Assert.Equal(5, copied); // 2 candidates, their prompt, M1 and its dataset
        Assert.Equal(0, await JournalReplay.CopyRunAsync(Stores.Artifacts, Stores.Checkpoints, "run1", "run9", DateTimeOffset.UtcNow.AddHours(-1), inputs));
    }

    [Fact]
    public async Task Replay_of_an_iteration_into_a_new_run_copies_the_control_checkpoint_it_starts_from_but_not_later_models()
    {
        // C2 (the control arm of iteration 1) is stored after IterationStarted(2) went out, and no message names it;
        // iteration 2's control arm samples with it. M3 (iteration 2's output) is made again by the replay.
        var past = DateTimeOffset.UtcNow.AddHours(-1);
        await Stores.PutCheckpointAsync(new CheckpointRecord
        {
            Id = Ids.ControlCheckpoint("run1", 1), RunId = "run1", Iteration = 2, Location = "", Files = [], Origin = CheckpointRecord.ControlOrigin,
            ParentCheckpointId = "run1/m1",
        }, OpsFixtures.CheckpointFolder(Folder, "weights of c2"));
        await Stores.PutCheckpointAsync(new CheckpointRecord
        {
            Id = Ids.Checkpoint("run1", 2), RunId = "run1", Iteration = 3, Location = "", Files = [], Origin = "dpo", ParentCheckpointId = "run1/m2",
        }, OpsFixtures.CheckpointFolder(Folder, "weights of m3"));
        var items = new[] { new ReplayItem(null!, typeof(IterationStarted), new IterationStarted { RunId = "run1", Iteration = 2, CheckpointId = "run1/m2" }) };

        var inputs = await JournalReplay.InputsAsync(Stores.Artifacts, items, "run1");
        Assert.Equal(["run1/c2", "run1/m1", "run1/m2"], inputs.Order(StringComparer.Ordinal));
        await JournalReplay.CopyRunAsync(Stores.Artifacts, Stores.Checkpoints, "run1", "run9", past, inputs);
        var copied = await Stores.Artifacts.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun("run9"));
        Assert.Equal(["run9/c2", "run9/m1", "run9/m2"], copied.Select(c => c.Id).Order(StringComparer.Ordinal));
        Assert.Equal("weights of c2", File.ReadAllText(Path.Combine(await Stores.MaterializeCheckpointAsync("run9/c2"), "model.safetensors")));
        // M2's lineage came along: the dataset it was trained on, its pairs and their candidates.
        Assert.Equal(2, (await Stores.Artifacts.ListAsync<PairRecord>(ArtifactQuery.OfRun("run9"))).Count);
        Assert.NotNull(await Stores.Artifacts.GetAsync<DatasetRecord>(Ids.Dataset("run9", 1)));
    }
}
