using System.Security.Cryptography;

// Over 300 lines on purpose: every fault test of the pipeline run as OS processes shares this class's harness (its services started, killed and restarted, its waits, its store checks) and the fixture's one completed run.
namespace Srlm.IntegrationTests.Faults;

/// <summary>The pipeline as separate OS processes (srlm-generator, srlm-judge, srlm-pairbuilder, srlm-trainer and the
/// srlm CLI) on a private RabbitMQ node, each test on its own virtual host with its own SQLite store, under the faults
/// of issue 4: a judge replica SIGKILLed with unacknowledged work, every message delivered twice, the trainer SIGKILLed
/// mid-DPO, malformed and unknown-run messages, a broker restart; and the read-only checks (audit, journal, lineage)
/// on one shared completed run.</summary>
[Collection(FaultsCollection.Name)]
public sealed class PipelineFaultTests(FaultsFixture fixture, ITestOutputHelper output)
{
    private const string JudgeCandidate = "Srlm.Contracts.JudgeCandidate";
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(8);

    [SkippableFact]
    public async Task A_judge_replica_killed_while_holding_unacknowledged_work_loses_and_duplicates_nothing()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "judge-kill", output);
        await run.StartServicesAsync(judges: 2);
        // The first two replicas only declare the judge queue (it is durable) and stop before the run starts, so
        // iteration 1's JudgeCandidate messages pile up in it: 40 prompts x 4 candidates, far more than two prefetch
        // windows (16 each) hold. Started beside the generator instead, judges as fast as the smoke model's kept pace
        // with it: in one CI run the whole smoke run finished in 17 s without the poll seeing a message wait, and the
        // test timed out after 8 minutes.
        foreach (var idle in new[] { run.Service("judge-0"), run.Service("judge-1") }) await idle.StopAsync();
        await run.StartRunAsync(run.SmokeSpecWith(s => s["prompts"]!["per_iteration"] = 40));
        await run.WaitUntilAsync(async () => (await run.QueueAsync("judge-candidate")) is { Messages: >= 64 },
            RunTimeout, "at least 64 JudgeCandidate messages wait in judge-candidate");
        var victim = run.Harness.Start("judge");
        var survivor = run.Harness.Start("judge");
        await run.WaitHealthyAsync([victim, survivor]);
        var pid = victim.Pid ?? throw new InvalidOperationException($"{victim.Name} is not running");

        // The victim has acknowledged some JudgeCandidate messages (journaled as consumed by its pid, which happens just
        // before the ack) and holds unacknowledged ones: with both replicas consuming and messages still READY in the
        // queue, the broker has filled every consumer's prefetch window (16), so the victim holds its window unacknowledged.
        // (rabbitmqctl's per-channel counts would say it directly, but take tens of seconds on a busy machine.)
        int acknowledged = 0;
        Srlm.Messaging.Broker.QueueDepth? queue = null;
        await run.WaitUntilAsync(async () =>
                (acknowledged = await run.ConsumedByAsync("judge", pid, JudgeCandidate)) > 0
                && (queue = await run.QueueAsync("judge-candidate")) is { Messages: > 0, Consumers: 2 },
            RunTimeout, $"{victim.Name} has acknowledged JudgeCandidate messages while more are waiting in its queue");
        victim.Kill();
        run.Log($"SIGKILLed {victim.Name} (pid {pid}) after {acknowledged} acknowledged, {queue!.Messages} more ready in judge-candidate (prefetch windows full)");

        await run.AssertCompletesAsync(RunTimeout);
        await run.AssertEveryCandidateHasKJudgementsAsync();
        Assert.True(await run.ConsumedByAsync("judge", survivor.Pid!.Value, JudgeCandidate) > 0, $"{survivor.Name} judged nothing");
    }

    [SkippableFact]
    public async Task Every_message_type_delivered_twice_to_the_service_processes_changes_no_stored_result()
    {
        var node = fixture.Require();
        var shared = await fixture.CompletedRunAsync(output);
        await using var run = await MultiProcessRun.CreateAsync(node, "redeliver", output);
        // A copy of the shared completed run (store and checkpoint files), so the other checks keep theirs.
        shared.CopyStore(run.StorePath);
        CopyDirectory(Path.Combine(shared.Run.Folder, "checkpoints"), Path.Combine(run.Folder, "checkpoints"));
        run.UseRun(shared.RunId);
        var store = await run.StoreAsync();
        var before = await ResumeAndRedeliveryTests.SnapshotAsync(store, shared.RunId);
        var consumedBefore = await ConsumedPerTypeAsync(store, shared.RunId);

        await run.StartServicesAsync(judges: 2);
        // Every journaled message of the run published again (the CLI's replay into the same run): each type reaches
        // its consumers a second time, and what they publish in turn is delivered again too.
        var (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(3), "replay", shared.RunId);
        Assert.True(rc == 0, $"srlm replay exited {rc}: {text}");
        output.WriteLine(text);
        await run.WaitForQuiescenceAsync();

        var consumedAfter = await ConsumedPerTypeAsync(store, shared.RunId);
        foreach (var (type, count) in consumedBefore)
        {
            output.WriteLine($"{type}: consumed {count} times in the run, {consumedAfter[type]} after the replay");
            Assert.True(consumedAfter[type] >= 2 * count, $"{type}: consumed {count} times in the run but only {consumedAfter[type]} after the replay");
        }
        Assert.Equal(before, await ResumeAndRedeliveryTests.SnapshotAsync(store, shared.RunId));
        Assert.Empty(await store.ListErrorsAsync(shared.RunId));
        var (statusRc, status) = await run.StatusJsonAsync();
        Assert.Equal(0, statusRc);
        Assert.Equal("completed", status.GetProperty("state").GetString());
        Assert.All(status.GetProperty("iterations").EnumerateArray(), i => Assert.Equal(0, i.GetProperty("duplicates").GetInt64()));

        // The counter is not blind: the judges replaced by one that writes carelessly (the fault host with
        // SRLM_TEST_NON_IDEMPOTENT: samples under random ids, stored ones never looked at), iteration 1's JudgeCandidates
        // delivered once more store every sample again, and `srlm status` counts each of them as a duplicate; no other iteration changes.
        foreach (var judge in run.Harness.Processes.Where(p => p.Name.StartsWith("judge-", StringComparison.Ordinal)).ToList()) await judge.StopAsync();
        var careless = run.Harness.StartWithFaults("judge", new Dictionary<string, string> { ["SRLM_TEST_NON_IDEMPOTENT"] = "judgement" });
        await run.WaitHealthyAsync([careless]);
        var iteration1 = (await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(shared.RunId, 1))).Count;
        (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(3), "replay", shared.RunId, "--iteration", "1", "--type", "JudgeCandidate");
        Assert.True(rc == 0, $"srlm replay exited {rc}: {text}");
        output.WriteLine(text);
        await run.WaitForQuiescenceAsync();
        // The journal holds each candidate's JudgeCandidate once per time it was sent (the run, the replay above, the
        // generator answering a redelivered GenerateResponses again), and every one of them now adds K samples.
        var sent = int.Parse(System.Text.RegularExpressions.Regex.Match(text, @"(\d+) messages published").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        var k = iteration1 / (await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(shared.RunId, 1))).Count;
        (_, status) = await run.StatusJsonAsync();
        var iterations = status.GetProperty("iterations").EnumerateArray().ToList();
        Assert.Equal(sent * k, iterations.Single(i => i.GetProperty("iteration").GetInt32() == 1).GetProperty("duplicates").GetInt64());
        Assert.All(iterations.Where(i => i.GetProperty("iteration").GetInt32() != 1), i => Assert.Equal(0, i.GetProperty("duplicates").GetInt64()));
        var groups = await store.ListDuplicatesAsync(shared.RunId, 1);
        Assert.Equal(iteration1, groups.Count); // every (candidate, sample) of iteration 1
        Assert.Equal(iteration1 + sent * k, groups.Sum(g => g.Ids.Count));
    }

    [SkippableFact]
    public async Task The_trainer_killed_mid_DPO_resumes_from_its_saved_step_after_a_restart()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "trainer-kill", output);
        // State saved after every optimizer step; the first trainer holds after reporting step 2 (state of step 1 saved,
        // the heartbeat going on), so the SIGKILL lands mid-job however fast the machine is.
        var spec = run.SmokeSpecWith(s => s["training"]!["dpo"]!["save_state_every_steps"] = 1);
        await run.StartServicesAsync(judges: 1, trainerFaults: new Dictionary<string, string> { ["SRLM_TEST_HANG_AFTER_STEP"] = "2" });
        var runId = await run.StartRunAsync(spec);
        var store = await run.StoreAsync();
        var first = run.Service("trainer-0");

        JobRecord? job = null;
        await run.WaitUntilAsync(async () =>
        {
            job = (await store.ListJobsAsync(runId)).FirstOrDefault(j => j is { Kind: JobKind.Dpo, Iteration: 1 });
            return job is { State: JobState.Running, Step: >= 2 } && first.ReadLog().Contains("hangs after step 2", StringComparison.Ordinal);
        }, RunTimeout, "the iteration-1 DPO job is running and has reported step 2");
        var saved = SavedStep(run.JobsDirectory);
        Assert.True(saved > 0, $"no training state saved under {run.JobsDirectory} before the kill");
        first.Kill();
        run.Log($"SIGKILLed trainer-0 in job {job!.Id} at step {job.Step} of {job.TotalSteps}, state saved at step {saved}");
        Assert.Equal(JobState.Running, (await store.ListJobsAsync(runId)).Single(j => j.Id == job.Id).State);

        var second = run.Harness.Start("trainer"); // no hang this time
        await run.AssertCompletesAsync(RunTimeout);
        var done = (await store.ListJobsAsync(runId)).Single(j => j.Id == job.Id);
        Assert.Equal(JobState.Completed, done.State);
        Assert.Equal(2, done.Attempts);
        var log = second.ReadLog();
        Assert.Contains($"claimed job {job.Id} (attempt 2, step {job.Step})", log, StringComparison.Ordinal);
        var trained = log.Split('\n').Single(l => l.Contains($"job {job.Id} trained", StringComparison.Ordinal));
        Assert.Contains("resumed from saved state: True", trained, StringComparison.Ordinal);
        var stored = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId));
        Assert.Equal(3, stored.Count(c => c.IsMain));   // M1, M2, M3
        Assert.Equal(2, stored.Count(c => !c.IsMain));  // the smoke spec's control arm: C2, C3
        await run.AssertEveryCandidateHasKJudgementsAsync();
    }

    [SkippableFact]
    public async Task Malformed_and_unknown_run_messages_are_parked_with_a_reason_the_run_fails_and_the_judge_keeps_working()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "poison", output);
        await run.StartServicesAsync(judges: 1);
        var runId = await run.StartRunAsync();
        var store = await run.StoreAsync();
        var judge = run.Service("judge-0");
        await run.WaitUntilAsync(async () => (await store.GetIterationStatusAsync(runId, 1)).Judgments > 0, RunTimeout, "judging of iteration 1 under way");
        var judgedBefore = await run.ConsumedByAsync("judge", judge.Pid!.Value, JudgeCandidate);

        var malformed = Guid.NewGuid();
        var unknown = Guid.NewGuid();
        var unreadable = Guid.NewGuid();
        await using (var connection = await RabbitQueues.ConnectAsync(BusOptions.Parse(run.AmqpUri), "srlm-fault-test"))
        await using (var channel = await connection.CreateChannelAsync())
        {
            async Task Send(Guid id, string body)
            {
                var props = new BasicProperties { ContentType = "application/vnd.masstransit+json", MessageId = id.ToString(), Persistent = true };
                await channel.BasicPublishAsync("", "judge-candidate", false, props, Encoding.UTF8.GetBytes(body));
            }
            static string Envelope(Guid id, string message) =>
                $$"""{"messageId":"{{id}}","messageType":["urn:message:Srlm.Contracts:JudgeCandidate","urn:message:Srlm.Contracts:IRunMessage"],"message":{{message}}}""";
            // Malformed: a JudgeCandidate of this run without its candidate id.
            await Send(malformed, Envelope(malformed, $$"""{"runId":"{{runId}}","iteration":1,"checkpointId":"{{runId}}/m1","promptId":"p"}"""));
            // Well-formed, for a run this deployment does not know.
            await Send(unknown, Envelope(unknown, """{"runId":"no-such-run","iteration":1,"checkpointId":"no-such-run/m1","promptId":"p","candidateId":"c"}"""));
            // Not JSON at all.
            await Send(unreadable, "this is not a message {");
        }

        ErrorRecord? Find(IReadOnlyList<ErrorRecord> errors, Guid id) => errors.FirstOrDefault(e => e.MessageId == id.ToString());
        await run.WaitUntilAsync(async () =>
        {
            var errors = await store.ListErrorsAsync();
            return Find(errors, malformed) is not null && Find(errors, unknown) is not null && Find(errors, unreadable) is not null;
        }, TimeSpan.FromMinutes(2), "the three messages are recorded as parked");

        var all = await store.ListErrorsAsync();
        foreach (var e in all) output.WriteLine($"error record {e.MessageId} {e.MessageType} run={e.RunId} queue={e.Queue}: {e.Reason}");
        // The serializer rejects a missing required id (JsonException naming candidateId) before any consumer runs.
        Assert.Contains("candidateId", Find(all, malformed)!.Reason, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(runId, Find(all, malformed)!.RunId);
        Assert.Contains("unknown run 'no-such-run'", Find(all, unknown)!.Reason, StringComparison.Ordinal);
        Assert.All(new[] { malformed, unknown, unreadable }, id => Assert.Equal("judge-candidate_error", Find(all, id)!.Queue));

        // On the broker: all three in judge-candidate_error, each with MassTransit's fault reason in its headers (the
        // error record may be written a moment before the message is moved there).
        var parked = new Dictionary<string, string>();
        await run.WaitUntilAsync(async () =>
        {
            parked = await ParkedReasonsAsync(run.AmqpUri, "judge-candidate_error");
            return new[] { malformed, unknown, unreadable }.All(id => parked.ContainsKey(id.ToString()));
        }, TimeSpan.FromMinutes(1), "the three messages are in judge-candidate_error");
        foreach (var id in new[] { malformed, unknown, unreadable })
        {
            Assert.True(parked.TryGetValue(id.ToString(), out var reason), $"{id} is not in judge-candidate_error ({string.Join(", ", parked.Keys)})");
            Assert.False(string.IsNullOrWhiteSpace(reason), $"{id} parked without a reason");
            output.WriteLine($"parked {id}: {reason}");
        }
        Assert.Contains("candidateId", parked[malformed.ToString()], StringComparison.OrdinalIgnoreCase);
        Assert.Contains("unknown run", parked[unknown.ToString()], StringComparison.Ordinal);

        // The run reports the failure: status (exit 1, failed, the reason) and `srlm errors list`.
        var (rc, status) = await run.StatusJsonAsync();
        Assert.Equal(1, rc);
        Assert.Equal("failed", status.GetProperty("state").GetString());
        Assert.Contains(malformed.ToString(), status.GetProperty("failure_reason").GetString(), StringComparison.Ordinal);
        Assert.True(status.GetProperty("errors").GetInt32() >= 1);
        var (listRc, list) = await run.Harness.CliAsync(TimeSpan.FromMinutes(1), "errors", "list", "--run", runId);
        Assert.Equal(0, listRc);
        Assert.Contains(malformed.ToString(), list, StringComparison.Ordinal);
        Assert.Contains("candidateId", list, StringComparison.OrdinalIgnoreCase);

        // The judge process lives on and keeps judging the run's candidates until every one has its K samples.
        await run.WaitUntilAsync(async () =>
        {
            var s = await store.GetIterationStatusAsync(runId, 1);
            return s.PromptSetFinal && s.Candidates == s.Prompts * 4 && s.Judgments == s.Candidates * 3;
        }, RunTimeout, "every candidate of iteration 1 judged after the poison messages");
        Assert.True(judge.IsRunning, "the judge process died");
        Assert.True(await run.ConsumedByAsync("judge", judge.Pid!.Value, JudgeCandidate) > judgedBefore, "the judge consumed nothing after the poison messages");
        Assert.Equal(RunState.Failed, (await run.RunAsync()).State);
    }

    [SkippableTheory]
    [InlineData("generation")] // early in iteration 1: prompts being written, then candidates and judgements
    [InlineData("training")]   // the iteration-1 DPO job queued: its hand-off (CheckpointReady, IterationStarted) meets the outage
    public async Task The_broker_restarted_mid_run_the_services_reconnect_and_the_run_completes(string phase)
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "broker-restart-" + phase, output);
        await run.StartServicesAsync(judges: 1);
        var runId = await run.StartRunAsync();
        var store = await run.StoreAsync();
        if (phase == "generation")
            await run.WaitUntilAsync(async () => (await store.GetIterationStatusAsync(runId, 1)).PromptsGenerated > 0, RunTimeout, "prompts of iteration 1 being generated");
        else
            await run.WaitUntilAsync(async () => (await store.ListJobsAsync(runId)).Any(j => j is { Kind: JobKind.Dpo, Iteration: 1 }), RunTimeout, "the iteration-1 DPO job is queued");

        DateTimeOffset up;
        RunState whenDown;
        var downAt = DateTimeOffset.UtcNow;
        await node.TerminateAsync();
        try
        {
            var down = await store.GetIterationStatusAsync(runId, 1);
            whenDown = (await run.RunAsync()).State;
            run.Log($"broker stopped: iteration 1 at {down.Candidates} candidates, {down.Judgments} judgements, run {whenDown}");
            await Task.Delay(TimeSpan.FromSeconds(5));
        }
        finally
        {
            await node.StartAgainAsync(); // whatever happens, the other tests get their broker back
            up = DateTimeOffset.UtcNow;
            run.Log("broker started again");
        }
        Assert.True(whenDown == RunState.Running, "the run ended before the broker went down: nothing was tested");

        await run.AssertCompletesAsync(RunTimeout);
        foreach (var c in (await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId))).Where(c => c.CreatedAt > downAt && c.CreatedAt < up))
            run.Log($"checkpoint {c.Id} was stored while the broker was down (its hand-off was published into the outage)");
        // Work went on over the reconnected services: messages consumed after the restart by each of them.
        var after = (await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Consumed })).Where(e => e.Time > up).ToList();
        foreach (var service in new[] { "generator", "judge", "pairbuilder", "trainer" })
            Assert.True(after.Any(e => e.Host!.Contains($"/{service}/", StringComparison.Ordinal)), $"{service} consumed nothing after the broker restart");
        await run.AssertEveryCandidateHasKJudgementsAsync();
        Assert.All(run.Harness.Processes, p => Assert.True(p.IsRunning, $"{p.Name} exited"));
    }

    [SkippableFact]
    public async Task Judge_messages_lost_from_the_queue_are_reissued_by_srlm_resume_and_the_run_completes_without_duplicates()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "resume-lost", output);
        await run.StartServicesAsync(judges: 1);
        var runId = await run.StartRunAsync(run.SmokeSpecWith(s => s["prompts"]!["per_iteration"] = 16));
        var store = await run.StoreAsync();
        await run.WaitUntilAsync(async () => (await store.GetIterationStatusAsync(runId, 1)).Judgments > 0, RunTimeout, "iteration 1 being judged");

        // The judge dies; the JudgeCandidate messages it held go back to the queue with the ones still waiting, and the
        // queue is purged: those messages are gone, as with a broker rebuilt without its volume.
        run.Service("judge-0").Kill();
        QueueDepth? depth = null;
        await run.WaitUntilAsync(async () => (depth = await run.QueueAsync("judge-candidate")) is { Messages: > 0, Consumers: 0 },
            RunTimeout, "JudgeCandidate messages waiting in judge-candidate with no judge consuming");
        await using (var connection = await RabbitQueues.ConnectAsync(BusOptions.Parse(run.AmqpUri), "srlm-fault-test"))
        await using (var channel = await connection.CreateChannelAsync())
        {
            var purged = await channel.QueuePurgeAsync("judge-candidate");
            run.Log($"purged {purged} JudgeCandidate messages from judge-candidate");
            Assert.True(purged > 0, "nothing was purged: no message was lost");
        }
        await run.WaitHealthyAsync([run.Harness.Start("judge")]);

        // Lost for good: the services go quiet with iteration 1 short of K judgements per candidate and the run still running.
        await run.WaitForQuiescenceAsync();
        Assert.Equal(RunState.Running, (await run.RunAsync()).State);
        var (_, status) = await run.StatusJsonAsync();
        var first = status.GetProperty("iterations").EnumerateArray().First(i => i.GetProperty("iteration").GetInt32() == 1);
        long candidates = first.GetProperty("candidates").GetInt64(), judgments = first.GetProperty("judgments").GetInt64();
        int k = first.GetProperty("judge_samples").GetInt32();
        Assert.True(judgments < candidates * k, $"iteration 1 has {judgments} judgements of {candidates} candidates x K {k}: nothing was lost");
        run.Log($"stalled: iteration 1 at {candidates} candidates, {judgments} judgements (K {k})");

        var (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(2), "resume", runId);
        run.Log("srlm resume: " + text);
        Assert.Equal(0, rc);
        Assert.Matches($"run {runId}: [1-9][0-9]* messages re-issued from stored facts", text);

        await run.AssertCompletesAsync(RunTimeout);
        await run.AssertEveryCandidateHasKJudgementsAsync();
        // A second resume of the finished run changes nothing.
        (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(2), "resume", runId);
        Assert.Equal(0, rc);
        Assert.Contains("nothing to resume", text, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task The_broker_down_when_a_DPO_job_finishes_its_hand_off_is_published_once_the_broker_is_back()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "handoff-outage", output);
        // The trainer holds every job after storing its checkpoints and before publishing the hand-off, until this file
        // exists: the broker goes down exactly in between, whatever the machine's speed.
        var release = Path.Combine(run.Folder, "release-handoff");
        await run.StartServicesAsync(judges: 1, trainerFaults: new Dictionary<string, string> { ["SRLM_TEST_HOLD_HANDOFF"] = release });
        var runId = await run.StartRunAsync();
        var store = await run.StoreAsync();
        var trainer = run.Service("trainer-0");

        var job = await HeldDpoJobAsync(run, store, runId, trainer, "its hand-off", "the iteration-1 DPO job stored M2 and holds before its hand-off");
        Assert.NotNull(await store.GetAsync<CheckpointRecord>(job.OutputCheckpointId!));
        Assert.Null(await store.GetAsync<IterationRecord>(Ids.Iteration(runId, 2)));

        await node.TerminateAsync();
        var down = DateTimeOffset.UtcNow;
        DateTimeOffset stillDown, up;
        RunState whenDown;
        JobState jobWhenDown;
        try
        {
            File.WriteAllText(release, "");
            run.Log("broker stopped; the trainer released into the outage");
            await run.WaitUntilAsync(() => Task.FromResult(trainer.ReadLog().Contains($"job {job.Id} released for its hand-off", StringComparison.Ordinal)),
                TimeSpan.FromMinutes(1), "the trainer publishes the hand-off while the broker is down");
            // Long enough for a publish into the outage to fail (or the run to be failed for it) before the broker returns.
            await Task.Delay(TimeSpan.FromSeconds(15));
            whenDown = (await run.RunAsync()).State;
            jobWhenDown = (await store.ListJobsAsync(runId)).Single(j => j.Id == job.Id).State;
            run.Log($"after {(DateTimeOffset.UtcNow - down).TotalSeconds:F0} s without a broker: run {whenDown}, job {jobWhenDown}");
            stillDown = DateTimeOffset.UtcNow;
        }
        finally
        {
            await node.StartAgainAsync(); // whatever happens, the other tests get their broker back
            up = DateTimeOffset.UtcNow;
            run.Log("broker started again");
        }
        Assert.True(whenDown == RunState.Running, $"the run ended {whenDown} while the broker was down: {(await run.RunAsync()).FailureReason}\n{trainer.ReadLog()}");
        Assert.Equal(JobState.Running, jobWhenDown); // not completed before its hand-off was published, not failed for it

        await run.AssertCompletesAsync(RunTimeout);
        await run.WaitForQuiescenceAsync();
        var done = (await store.ListJobsAsync(runId)).Single(j => j.Id == job.Id);
        Assert.Equal(JobState.Completed, done.State);
        Assert.Equal(1, done.Attempts); // the same worker published it: no restart, no takeover

        // Each checkpoint and each iteration exactly once, and each hand-off message published once (the journal
        // records a publish once the broker confirmed it); the iteration-1 hand-off only after the broker was back.
        var checkpoints = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId));
        Assert.Equal(3, checkpoints.Count(c => c.IsMain));   // M1, M2, M3
        Assert.Equal(2, checkpoints.Count(c => !c.IsMain));  // C2, C3
        var iterations = await store.ListAsync<IterationRecord>(ArtifactQuery.OfRun(runId));
        Assert.Equal([1, 2], iterations.Select(i => i.Iteration).Order());
        var published = await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Published });
        var iterationStarted = published.Where(e => e.MessageType == "Srlm.Contracts.IterationStarted").ToList();
        Assert.Equal([1, 2], iterationStarted.Select(e => e.Iteration ?? 0).Order());
        Assert.True(iterationStarted.Single(e => e.Iteration == 2).Time > stillDown, "IterationStarted(2) was journaled as published while the broker was down");
        AssertCheckpointReadyOnceEach(published, checkpoints);
        Assert.Single(published, e => e.MessageType == "Srlm.Contracts.RunCompleted");
        var evaluations = await store.ListAsync<EvaluationRecord>(ArtifactQuery.OfRun(runId));
        Assert.Equal(evaluations.Count, evaluations.Select(e => e.CheckpointId).Distinct().Count());
        Assert.All(checkpoints, c => Assert.Contains(evaluations, e => e.CheckpointId == c.Id));
        await run.AssertEveryCandidateHasKJudgementsAsync();
        Assert.Empty(await store.ListErrorsAsync(runId));
        Assert.True(trainer.IsRunning, "the trainer exited");
        // The hand-off met the outage: tried, cut short and tried again while the broker was away.
        Assert.Contains($"job {job.Id}: publishing its hand-off failed (try 1)", trainer.ReadLog(), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task The_control_arm_trains_on_while_the_next_iteration_runs_and_the_run_ends_only_after_it()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "control-beside", output);
        // Every control arm holds before its DPO until this file exists: iteration 2 must get all the way to its pairs
        // (and its DPO job) without C2, and the run must not complete without C3.
        var release = Path.Combine(run.Folder, "release-control");
        await run.StartServicesAsync(judges: 1, trainerFaults: new Dictionary<string, string> { ["SRLM_TEST_HOLD_CONTROL"] = release });
        var runId = await run.StartRunAsync();
        var store = await run.StoreAsync();
        var trainer = run.Service("trainer-0");

        await run.WaitUntilAsync(async () =>
            (await store.ListJobsAsync(runId)).Any(j => j is { Kind: JobKind.Dpo, Iteration: 2 }),
            RunTimeout, "iteration 2 built its pairs and queued its DPO job while the control arm of iteration 1 holds");
        var jobs = await store.ListJobsAsync(runId);
        var first = jobs.Single(j => j is { Kind: JobKind.Dpo, Iteration: 1 });
        Assert.Contains($"job {first.Id} holds before its control arm's DPO", trainer.ReadLog(), StringComparison.Ordinal);
        Assert.Equal(JobState.Running, first.State); // not complete without its control arm
        Assert.NotNull(await store.GetAsync<CheckpointRecord>(first.OutputCheckpointId!)); // M2
        Assert.Null(await store.GetAsync<CheckpointRecord>(Ids.ControlCheckpoint(runId, 1))); // C2 not trained yet
        Assert.Equal(RunState.Running, (await run.RunAsync()).State);
        run.Log("iteration 2 reached its DPO job with C2 untrained; releasing the control arms");

        File.WriteAllText(release, "");
        await run.AssertCompletesAsync(RunTimeout);
        await run.WaitForQuiescenceAsync();
        Assert.All(await store.ListJobsAsync(runId), j => Assert.Equal((JobState.Completed, 1), (j.State, j.Attempts)));
        var checkpoints = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(runId));
        Assert.Equal([1, 2, 3], checkpoints.Where(c => c.IsMain).Select(c => c.Iteration).Order());
        Assert.Equal([2, 3], checkpoints.Where(c => !c.IsMain).Select(c => c.Iteration).Order());
        var published = await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Published });
        var checkpointReady = AssertCheckpointReadyOnceEach(published, checkpoints);
        var completed = Assert.Single(published, e => e.MessageType == "Srlm.Contracts.RunCompleted");
        Assert.True(completed.Time >= checkpointReady.Single(r => r.Id == Ids.ControlCheckpoint(runId, 2)).Time, "RunCompleted was published before C3 was ready");
        var evaluations = await store.ListAsync<EvaluationRecord>(ArtifactQuery.OfRun(runId));
        Assert.Equal(checkpoints.Select(c => c.Id).Order(), evaluations.Select(e => e.CheckpointId).Order());
        await run.AssertEveryCandidateHasKJudgementsAsync();
        Assert.Empty(await store.ListErrorsAsync(runId));
    }

    [SkippableFact]
    public async Task Cancel_stops_a_training_job_that_is_already_running()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "cancel-job", output);
        // The iteration-1 job's control arm holds (heartbeating) before its DPO until a file that never comes: the
        // job is running when the operator cancels, and only the cancel can end it.
        var never = Path.Combine(run.Folder, "never");
        await run.StartServicesAsync(judges: 1, trainerFaults: new Dictionary<string, string> { ["SRLM_TEST_HOLD_CONTROL"] = never });
        var runId = await run.StartRunAsync();
        var store = await run.StoreAsync();
        var trainer = run.Service("trainer-0");

        var job = await HeldDpoJobAsync(run, store, runId, trainer, "its control arm's DPO", "the iteration-1 DPO job is running and its control arm holds");

        var (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(2), "cancel", runId);
        output.WriteLine(text);
        Assert.True(rc == 0, $"srlm cancel exited {rc}: {text}");
        await run.WaitUntilAsync(async () => (await store.ListJobsAsync(runId)).Single(j => j.Id == job.Id).State == JobState.Failed,
            TimeSpan.FromMinutes(1), "the running job stops and is failed after the cancel");
        var failed = (await store.ListJobsAsync(runId)).Single(j => j.Id == job!.Id);
        Assert.Equal($"run {runId} is cancelled", failed.Error);
        Assert.Contains($"run {runId} is cancelled: job {job.Id} stopped and failed", trainer.ReadLog(), StringComparison.Ordinal);
        Assert.Null(await store.GetAsync<CheckpointRecord>(Ids.ControlCheckpoint(runId, 1))); // C2 never trained
        Assert.Equal(RunState.Cancelled, (await run.RunAsync()).State);
        Assert.True(trainer.IsRunning, "the trainer exited");
    }

    [SkippableFact]
    public async Task Two_runs_in_flight_on_one_deployment_both_complete_each_with_only_its_own_artifacts()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "two-runs", output);
        // Two generator replicas share the prompt shards and the candidates (4 shards an iteration here), two judges the judging.
        await run.StartServicesAsync(judges: 2, generators: 2);
        var first = await run.StartRunAsync(run.SmokeSpecWith(s => s["prompts"]!["shards"] = 4));
        var second = await run.StartRunAsync(run.SmokeSpecWith(s => { s["seed"] = 8; s["prompts"]!["shards"] = 4; })); // another seed: other candidates
        var store = await run.StoreAsync();

        foreach (var id in new[] { first, second })
        {
            run.UseRun(id);
            await run.AssertCompletesAsync(RunTimeout);
        }
        await run.WaitForQuiescenceAsync();
        foreach (var id in new[] { first, second })
        {
            run.UseRun(id);
            await run.AssertEveryCandidateHasKJudgementsAsync();
            var checkpoints = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(id));
            Assert.Equal([1, 2, 3], checkpoints.Where(c => c.IsMain).Select(c => c.Iteration).Order());
            Assert.Equal([2, 3], checkpoints.Where(c => !c.IsMain).Select(c => c.Iteration).Order());
            // Nothing of one run was made from the other's: every candidate and judgement names a checkpoint of its own run.
            var candidates = await store.ListAsync<CandidateRecord>(ArtifactQuery.OfRun(id));
            var judgements = await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(id));
            Assert.All(candidates, c => Assert.StartsWith(id + "/", c.CheckpointId, StringComparison.Ordinal));
            Assert.All(judgements, j => Assert.StartsWith(id + "/", j.CheckpointId, StringComparison.Ordinal));
            var evaluations = await store.ListAsync<EvaluationRecord>(ArtifactQuery.OfRun(id));
            Assert.Equal(checkpoints.Select(c => c.Id).Order(), evaluations.Select(e => e.CheckpointId).Order());
            Assert.Empty(await store.ListErrorsAsync(id));
            // `srlm start` uploaded every file and folder the spec named: the stored spec names no path of the submitter.
            var stored = (await store.GetRunAsync(id))!.SpecJson;
            Assert.DoesNotContain(Path.Combine(run.Folder, "spec"), stored, StringComparison.Ordinal);
            Assert.Contains("\"checkpoint:", stored, StringComparison.Ordinal);
            // Every shard of both iterations stored once, whichever replica wrote it; the prompt set is final once each.
            Assert.Equal(8, await store.CountAsync<PromptShardRecord>(ArtifactQuery.OfRun(id)));
            Assert.Equal(2, await store.CountAsync<PromptSetFinalRecord>(ArtifactQuery.OfRun(id)));
        }
        // Both generator replicas did work of their own (the broker hands competing consumers messages in turn).
        var generatorPids = run.Harness.Processes.Where(p => p.Name.StartsWith("generator-", StringComparison.Ordinal)).Select(p => p.Pid!.Value).ToList();
        Assert.Equal(2, generatorPids.Count);
        foreach (var pid in generatorPids)
        {
            int shards = 0, answered = 0;
            foreach (var id in new[] { first, second })
            {
                run.UseRun(id);
                shards += await run.ConsumedByAsync("generator", pid, "Srlm.Contracts.GeneratePrompts");
                answered += await run.ConsumedByAsync("generator", pid, "Srlm.Contracts.GenerateResponses");
            }
            output.WriteLine($"generator {pid}: {shards} shards, {answered} prompts answered");
            Assert.True(shards > 0 && answered > 0, $"generator {pid} wrote {shards} shards and answered {answered} prompts");
        }
        var jobs = (await store.ListJobsAsync(first)).Concat(await store.ListJobsAsync(second)).ToList();
        Assert.All(jobs, j => Assert.Equal(JobState.Completed, j.State));
        Assert.Equal(4, jobs.Count); // two DPO jobs per run
    }

    [SkippableFact]
    public async Task Replay_into_a_new_run_over_the_broker_judges_again_exactly_as_the_original_run()
    {
        var node = fixture.Require();
        var shared = await fixture.CompletedRunAsync(output);
        await using var run = await MultiProcessRun.CreateAsync(node, "replay-into", output);
        shared.CopyStore(run.StorePath);
        CopyDirectory(Path.Combine(shared.Run.Folder, "checkpoints"), Path.Combine(run.Folder, "checkpoints"));
        var store = await run.StoreAsync();
        var original = (await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(shared.RunId))).Where(j => j.Iteration == 1).ToList();
        Assert.NotEmpty(original);

        await run.StartServicesAsync(judges: 1);
        var copy = "replayed-" + Guid.NewGuid().ToString("N")[..6];
        var (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(3), "replay", shared.RunId, "--iteration", "1", "--type", "JudgeCandidate", "--into", copy);
        output.WriteLine(text);
        Assert.True(rc == 0, $"srlm replay exited {rc}: {text}");
        Assert.Contains($"run {copy} created from {shared.RunId}", text, StringComparison.Ordinal);
        var originalPairs = (await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(shared.RunId))).Where(p => p.Iteration == 1).ToList();

        // The judge takes the re-keyed JudgeCandidate messages of the new run: every sample again, on the copied M1,
        // with the seeds of the original (seeds do not depend on the run id), so the same text and score.
        await run.WaitUntilAsync(async () =>
            (await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(copy))).Count(j => j.Iteration == 1) >= original.Count,
            RunTimeout, "the replayed iteration-1 judgements are stored under the new run");
        var replayed = (await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(copy))).Where(j => j.Iteration == 1)
            .ToDictionary(j => Ids.SeedKey(copy, j.Id));
        Assert.Equal(original.Count, replayed.Count);
        foreach (var o in original)
        {
            var r = replayed[Ids.SeedKey(shared.RunId, o.Id)];
            Assert.Equal((o.Seed, o.Score, o.RawText), (r.Seed, r.Score, r.RawText));
            Assert.Equal(copy + o.CheckpointId[shared.RunId.Length..], r.CheckpointId);
        }
        // Every candidate of the copy found its inputs (none was parked), and the pairbuilder pairs the re-judged
        // candidates exactly as in the original run.
        await run.WaitUntilAsync(async () =>
            (await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(copy))).Count(p => p.Iteration == 1) >= originalPairs.Count,
            RunTimeout, "the replayed iteration-1 pairs are stored under the new run");
        Assert.Equal(
            originalPairs.Select(p => (p.PromptId[shared.RunId.Length..], p.ChosenCandidateId[shared.RunId.Length..], p.RejectedCandidateId[shared.RunId.Length..], p.ChosenScore, p.RejectedScore)).Order(),
            (await store.ListAsync<PairRecord>(ArtifactQuery.OfRun(copy))).Where(p => p.Iteration == 1)
                .Select(p => (p.PromptId[copy.Length..], p.ChosenCandidateId[copy.Length..], p.RejectedCandidateId[copy.Length..], p.ChosenScore, p.RejectedScore)).Order());
        Assert.Empty(await store.ListErrorsAsync(copy));
        // The original run is untouched.
        Assert.Equal(original.Count, (await store.ListAsync<JudgementRecord>(ArtifactQuery.OfRun(shared.RunId))).Count(j => j.Iteration == 1));
    }

    [SkippableFact]
    public async Task Replay_of_an_iteration_from_its_start_into_a_new_run_makes_it_again_exactly()
    {
        var node = fixture.Require();
        var shared = await fixture.CompletedRunAsync(output);
        await using var run = await MultiProcessRun.CreateAsync(node, "replay-iteration", output);
        shared.CopyStore(run.StorePath);
        CopyDirectory(Path.Combine(shared.Run.Folder, "checkpoints"), Path.Combine(run.Folder, "checkpoints"));
        var store = await run.StoreAsync();

        await run.StartServicesAsync(judges: 1);
        var copy = "again-" + Guid.NewGuid().ToString("N")[..6];
        var (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(3), "replay", shared.RunId, "--iteration", "2", "--type", "IterationStarted", "--into", copy);
        output.WriteLine(text);
        Assert.True(rc == 0, $"srlm replay exited {rc}: {text}");
        // The copy starts from M2 and C2 (C2 is named by no message and may be stored after IterationStarted(2)) and
        // runs iteration 2 to the end: prompts, candidates, judgements, pairs, M3 and C3 made again under the new id.
        run.UseRun(copy);
        await run.AssertCompletesAsync(RunTimeout);
        await run.WaitForQuiescenceAsync();
        Assert.Empty(await store.ListErrorsAsync(copy));

        string Key(string runId, string id) => id[runId.Length..];
        async Task<List<string>> Of<T>(string runId, Func<T, string> show) where T : class, IArtifact =>
            (await store.ListAsync<T>(ArtifactQuery.OfRun(runId, 2))).Select(show).Order(StringComparer.Ordinal).ToList();
        foreach (var (what, original, again) in new[]
        {
            ("prompts", await Of<PromptRecord>(shared.RunId, p => $"{Key(shared.RunId, p.Id)} {p.Text}"), await Of<PromptRecord>(copy, p => $"{Key(copy, p.Id)} {p.Text}")),
            ("candidates", await Of<CandidateRecord>(shared.RunId, c => $"{Key(shared.RunId, c.Id)} {c.Text}"), await Of<CandidateRecord>(copy, c => $"{Key(copy, c.Id)} {c.Text}")),
            ("judgements", await Of<JudgementRecord>(shared.RunId, j => $"{Key(shared.RunId, j.Id)} {j.Score} {j.RawText}"), await Of<JudgementRecord>(copy, j => $"{Key(copy, j.Id)} {j.Score} {j.RawText}")),
            ("pairs", await Of<PairRecord>(shared.RunId, p => $"{Key(shared.RunId, p.ChosenCandidateId)} > {Key(shared.RunId, p.RejectedCandidateId)}"),
                      await Of<PairRecord>(copy, p => $"{Key(copy, p.ChosenCandidateId)} > {Key(copy, p.RejectedCandidateId)}")),
        })
        {
            output.WriteLine($"iteration 2 {what}: {original.Count} in the run, {again.Count} in the replay");
            Assert.NotEmpty(original);
            Assert.Equal(original, again);
        }
        // M3 and C3 have the same weights, config and tokenizer: DPO is seeded from the spec and ids without the run id.
        // (training_meta.json differs: it names the job, the dataset and the parent's folder of its own run.)
        var checkpoints = (await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(shared.RunId))).ToDictionary(c => Key(shared.RunId, c.Id));
        static IEnumerable<(string, string)> Content(CheckpointRecord c) => c.Files.Where(f => f.Path != "training_meta.json").Select(f => (f.Path, f.Sha256)).Order();
        foreach (var c in (await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(copy))).Where(c => c.Iteration == 3))
        {
            Assert.Contains(c.Files, f => f.Path.EndsWith(".safetensors", StringComparison.Ordinal));
            Assert.Equal(Content(checkpoints[Key(copy, c.Id)]), Content(c));
        }
        Assert.Equal(2, (await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(copy))).Count(c => c.Iteration == 3));
        // Iteration 1 was not run again in the copy: no message of it was handled there.
        Assert.Equal(0, await store.CountJournalAsync(new JournalQuery { RunId = copy, Iteration = 1, Direction = JournalDirection.Consumed }));
    }

    [SkippableFact]
    public async Task Start_refuses_a_broker_where_no_trainer_ever_connected_instead_of_losing_RunStarted()
    {
        var node = fixture.Require();
        await using var run = await MultiProcessRun.CreateAsync(node, "no-services", output);
        var (rc, text) = await run.Harness.CliAsync(TimeSpan.FromMinutes(2), "start", MultiProcessRun.SmokeSpec);
        output.WriteLine(text);
        Assert.NotEqual(0, rc);
        Assert.Contains("no trainer has ever connected", text, StringComparison.Ordinal);
        Assert.False(File.Exists(run.StorePath) && (await (await run.StoreAsync()).ListRunsAsync()).Count > 0, "a run was stored although it could not start");
    }

    [SkippableFact]
    public async Task Audit_of_the_finished_run_finds_no_mismatch_and_a_tampered_score_fails_it()
    {
        fixture.Require();
        var shared = await fixture.CompletedRunAsync(output);
        var (rc, text) = await shared.Run.Harness.CliAsync(TimeSpan.FromMinutes(5), "audit", shared.RunId, "--sample", "6");
        output.WriteLine(text);
        Assert.True(rc == 0, $"srlm audit exited {rc}: {text}");
        Assert.Contains("6 checked, 0 mismatches", text, StringComparison.Ordinal);

        // Tamper with every stored score of a copy of the store (straight SQL, as an operator or a bug might).
        var copy = shared.CopyStore(Path.Combine(shared.Run.Folder, $"tampered-{Guid.NewGuid():N}.db"));
        using (var c = new SqliteConnection($"Data Source={copy};Pooling=False"))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = """
                UPDATE artifacts SET json = json_set(json, '$.score',
                    CASE WHEN json_extract(json, '$.score') IS NULL THEN 3.0 WHEN json_extract(json, '$.score') >= 3 THEN 0.0 ELSE 5.0 END)
                WHERE kind = 'judgement' AND run_id = $run
                """;
            cmd.Parameters.AddWithValue("$run", shared.RunId);
            Assert.True(cmd.ExecuteNonQuery() > 0);
        }
        (rc, text) = await shared.Run.Harness.CliAsync(TimeSpan.FromMinutes(5), "audit", shared.RunId, "--sample", "6", "--store", "sqlite://" + copy);
        output.WriteLine(text);
        Assert.True(rc != 0, $"srlm audit of a tampered store exited 0: {text}");
        Assert.Contains("6 checked, 6 mismatches", text, StringComparison.Ordinal);
        Assert.Contains("score stored", text, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Journal_consumed_matches_published_lineage_reaches_the_seed_data_and_every_checkpoint_changed_the_weights()
    {
        fixture.Require();
        var shared = await fixture.CompletedRunAsync(output);
        var store = await shared.Run.StoreAsync();
        var published = await store.QueryJournalAsync(new JournalQuery { RunId = shared.RunId, Direction = JournalDirection.Published });
        var consumed = await store.QueryJournalAsync(new JournalQuery { RunId = shared.RunId, Direction = JournalDirection.Consumed });

        // Nothing consumed that was not published; every published message reached every endpoint that consumes its type.
        var publishedIds = published.Select(e => e.MessageId).ToHashSet(StringComparer.Ordinal);
        Assert.All(consumed, e => Assert.True(publishedIds.Contains(e.MessageId), $"consumed {e.MessageType} {e.MessageId} on {e.Endpoint} was never published"));
        var consumedKeys = consumed.Select(e => (e.MessageId, e.Endpoint)).ToHashSet();
        var endpoints = consumed.GroupBy(e => e.MessageType).ToDictionary(g => g.Key, g => g.Select(e => e.Endpoint).Distinct().ToList());
        foreach (var p in published.GroupBy(e => e.MessageId).Select(g => g.First()))
        {
            if (!endpoints.TryGetValue(p.MessageType, out var eps)) continue;
            foreach (var ep in eps)
                Assert.True(consumedKeys.Contains((p.MessageId, ep)), $"published {p.MessageType} {p.MessageId} was never consumed on {ep}");
        }
        string[] pipeline = ["RunStarted", "IterationStarted", "GeneratePrompts", "GenerateResponses", "JudgeCandidate", "CandidateJudged", "PairsReady", "CheckpointReady", "EvaluateCheckpoint"];
        Assert.All(pipeline, t => Assert.Contains("Srlm.Contracts." + t, endpoints.Keys));
        var unconsumed = published.Select(e => e.MessageType).Distinct().Except(endpoints.Keys).Order().ToList();
        output.WriteLine($"{published.Count} published, {consumed.Count} consumed; published types no service consumes: {string.Join(", ", unconsumed)}");
        Assert.All(unconsumed, t => Assert.Contains(t, new[] { "Srlm.Contracts.RunCompleted", "Srlm.Contracts.CheckpointEvaluated" }));

        // Lineage of the last checkpoint, through the CLI: M3 <- M2 <- M1, DPO steps with their pairs and judgements, down to the seed files.
        var checkpoints = await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(shared.RunId));
        var last = checkpoints.Where(c => c.IsMain).MaxBy(c => c.Iteration)!; // M3, not the control arm's C3
        var (rc, text) = await shared.Run.Harness.CliAsync(TimeSpan.FromMinutes(1), "lineage", last.Id, "--json");
        Assert.True(rc == 0, $"srlm lineage exited {rc}: {text}");
        using var doc = JsonDocument.Parse(text[text.IndexOf('[', StringComparison.Ordinal)..]);
        var nodes = doc.RootElement.EnumerateArray().ToList();
        Assert.Equal(3, nodes.Count);
        foreach (var n in nodes.Take(2))
        {
            Assert.Equal("dpo", n.GetProperty("origin").GetString());
            Assert.True(n.GetProperty("pairs").GetInt32() > 0 && n.GetProperty("judgements").GetInt64() > 0, $"{n}");
        }
        var root = nodes[^1];
        Assert.Null(root.GetProperty("parent_checkpoint_id").GetString());
        var seeds = root.GetProperty("seed_blobs").EnumerateArray().Select(b => b.GetString()!).ToList();
        Assert.Equal(2, seeds.Count); // IFT and EFT
        foreach (var sha in seeds) Assert.NotNull(await store.GetBlobAsync(sha));
        for (int i = 0; i + 1 < nodes.Count; i++)
        {
            Assert.Equal(nodes[i + 1].GetProperty("checkpoint_id").GetString(), nodes[i].GetProperty("parent_checkpoint_id").GetString());
            Assert.NotEqual(nodes[i + 1].GetProperty("weights_sha256").GetString(), nodes[i].GetProperty("weights_sha256").GetString());
        }

        // The recorded sha256 is the file's: recomputed from the checkpoint store, and different from the parent's.
        foreach (var c in checkpoints)
        {
            var weights = c.Files.Single(f => f.Path == "model.safetensors");
            await using (var f = File.OpenRead(Path.Combine(c.Location, weights.Path)))
                Assert.Equal(weights.Sha256, Convert.ToHexStringLower(await SHA256.HashDataAsync(f)));
            if (c.ParentCheckpointId is null) continue;
            var parent = checkpoints.Single(p => p.Id == c.ParentCheckpointId);
            Assert.NotEqual(parent.Files.Single(f => f.Path == "model.safetensors").Sha256, weights.Sha256);
        }
    }

    /// <summary>Waits until the run's iteration-1 DPO job exists and the trainer's log says it holds before
    /// <paramref name="what"/> (a SRLM_TEST_HOLD_* hook); returns the job.</summary>
    private static async Task<JobRecord> HeldDpoJobAsync(MultiProcessRun run, IArtifactStore store, string runId, ServiceProcess trainer, string what, string description)
    {
        JobRecord? job = null;
        await run.WaitUntilAsync(async () =>
        {
            job = (await store.ListJobsAsync(runId)).FirstOrDefault(j => j is { Kind: JobKind.Dpo, Iteration: 1 });
            return job is not null && trainer.ReadLog().Contains($"job {job.Id} holds before {what}", StringComparison.Ordinal);
        }, RunTimeout, description);
        return job!;
    }

    /// <summary>Each checkpoint's CheckpointReady is journaled as published exactly once; returns every one (id, time).</summary>
    private static List<(string Id, DateTimeOffset Time)> AssertCheckpointReadyOnceEach(IEnumerable<JournalEntry> published, IEnumerable<CheckpointRecord> checkpoints)
    {
        var ready = published.Where(e => e.MessageType == "Srlm.Contracts.CheckpointReady")
            .Select(e => (Id: JsonDocument.Parse(e.BodyJson).RootElement.GetProperty("checkpointId").GetString()!, e.Time)).ToList();
        foreach (var c in checkpoints)
            Assert.True(ready.Count(r => r.Id == c.Id) == 1, $"CheckpointReady({c.Id}) published {ready.Count(r => r.Id == c.Id)} times");
        return ready;
    }

    private static async Task<Dictionary<string, int>> ConsumedPerTypeAsync(IArtifactStore store, string runId) =>
        (await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Consumed }))
        .GroupBy(e => e.MessageType).ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);

    /// <summary>Message id -> MassTransit's fault reason header of every message in an _error queue (looked at, then put back).</summary>
    private static async Task<Dictionary<string, string>> ParkedReasonsAsync(string amqpUri, string errorQueue)
    {
        var reasons = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var connection = await RabbitQueues.ConnectAsync(BusOptions.Parse(amqpUri), "srlm-fault-test");
        await using var channel = await connection.CreateChannelAsync();
        var tags = new List<ulong>();
        while (await channel.BasicGetAsync(errorQueue, autoAck: false) is { } got)
        {
            tags.Add(got.DeliveryTag);
            var headers = got.BasicProperties.Headers ?? new Dictionary<string, object?>();
            string Header(string key) => headers.TryGetValue(key, out var v) ? v switch { byte[] b => Encoding.UTF8.GetString(b), null => "", _ => v.ToString() ?? "" } : "";
            reasons[got.BasicProperties.MessageId ?? $"tag {got.DeliveryTag}"] = $"{Header("MT-Reason")} {Header("MT-Fault-ExceptionType")}: {Header("MT-Fault-Message")}".Trim(' ', ':');
        }
        foreach (var tag in tags) await channel.BasicNackAsync(tag, multiple: false, requeue: true);
        return reasons;
    }

    /// <summary>The step of the newest complete training state under the jobs folder (0 when none).</summary>
    private static int SavedStep(string jobsDirectory)
    {
        if (!Directory.Exists(jobsDirectory)) return 0;
        return Directory.GetFiles(jobsDirectory, "latest", SearchOption.AllDirectories)
            .Select(f => File.ReadAllText(f).Trim())
            .Select(name => name.StartsWith("step-", StringComparison.Ordinal) && int.TryParse(name[5..], out var s) ? s : 0)
            .DefaultIfEmpty(0).Max();
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, d)));
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, Path.Combine(to, Path.GetRelativePath(from, f)));
    }
}
