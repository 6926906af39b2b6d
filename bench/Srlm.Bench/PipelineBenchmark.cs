using System.Text.Json;
using MassTransit;
using Srlm.Contracts;
using Srlm.Judge;
using Srlm.LocalBroker;
using Srlm.Messaging.Bus;
using Srlm.Messaging.Configuration;
using Srlm.Messaging.Health;
using Srlm.Storage;
using Srlm.Storage.Sqlite;

// Over 300 lines on purpose: one benchmark: its broker, replicas, workload, measurement and JSON.
namespace Srlm.Bench;

/// <summary>What the pipeline itself costs per judgement: JudgeCandidate messages through a private RabbitMQ node (the
/// launcher the integration tests use) to judge replicas in their own processes (srlm-bench-judge: the judge service's
/// own registration with a scorer that answers "Score: 3" at once), each writing to one SQLite store. A judgement is
/// one JudgeCandidate handled: K samples stored, CandidateJudged published, the message journaled.</summary>
public sealed class PipelineBenchmark : IBenchmark
{
    public string Name => "pipeline";
    public string Summary => "judging through RabbitMQ + SQLite with a zero-cost scorer: ms per judgement, judgements/s by replicas, store calls per judgement";
    public IReadOnlyList<string> Options => ["--quick", "--judgements", "--repeats", "--replicas", "--judge-host", "--baseline-host"];

    private const int CandidatesPerPrompt = 4;
    private const int JudgeSamples = 3;

    private const string Spec = """
        {"schema_version":1,"name":"bench-pipeline","seed":7,"iterations":1,
         "models":{"init":{"hidden_size":32,"layers":1,"heads":2,"kv_heads":2,"max_position_embeddings":256}},
         "seed_data":{"ift":"ift.jsonl"},
         "judge":{"samples":3}}
        """;

    public async Task<JsonObject> RunAsync(BenchmarkContext ctx, CancellationToken cancel)
    {
        bool quick = ctx.Get("--quick") is not null;
        int judgements = ctx.Int("--judgements", quick ? 200 : 800);
        int repeats = ctx.Int("--repeats", quick ? 1 : 3);
        var replicaCounts = ParseReplicas(ctx.Get("--replicas") ?? "1,2,4");
        var host = FindJudgeHost(ctx.Get("--judge-host"));
        // Another build of srlm-bench-judge (e.g. from an older commit) measured side by side with this one.
        var baseline = ctx.Get("--baseline-host") is { } b ? File.Exists(b) ? Path.GetFullPath(b) : throw new ArgumentException($"--baseline-host {b}: no such file") : null;
        var hosts = baseline is null ? new[] { host } : [host, baseline];
        var log = ctx.Log;

        var (broker, why) = await RabbitMqBroker.StartAsync();
        if (broker is null) throw new ArgumentException(why);
        await using var _ = broker;
        log.WriteLine($"broker {Redact.Uri(broker.AmqpUri)}; judge host {host}");
        var folder = Directory.CreateTempSubdirectory("srlm-bench-pipeline-").FullName;
        try
        {
            // Interleaved: every repeat runs each replica count (and each host) once, in an order that rotates, so load
            // on a shared machine spreads over all of them.
            var trials = new List<Trial>();
            for (int r = 0; r < repeats; r++)
            {
                var order = replicaCounts.Skip(r % replicaCounts.Count).Concat(replicaCounts.Take(r % replicaCounts.Count)).ToList();
                foreach (var n in order)
                    for (int h = 0; h < hosts.Length; h++)
                    {
                        var dll = hosts[(h + r) % hosts.Length];
                        var trial = await RunTrialAsync(broker.AmqpUri, dll, Path.Combine(folder, $"r{r}-x{n}-h{(h + r) % hosts.Length}"), n, judgements, log, cancel);
                        log.WriteLine($"repeat {r + 1}/{repeats}, {n} replica(s), {(dll == host ? "this build" : "baseline")}: {trial.JudgementsPerSecond:F1} judgements/s, " +
                                      $"{trial.Writes:F2} writes + {trial.Reads:F2} reads per judgement");
                        trials.Add(trial);
                    }
            }
            var result = Report(trials.Where(t => t.Host == host).ToList(), replicaCounts, judgements, repeats, quick);
            result["judge_host"] = host;
            if (baseline is not null)
            {
                var before = Report(trials.Where(t => t.Host == baseline).ToList(), replicaCounts, judgements, repeats, quick);
                var side = new JsonObject { ["judge_host"] = baseline };
                foreach (var key in new[] { "overhead_ms_per_judgement", "judgements_per_s_by_replicas", "store_writes_per_judgement", "store_reads_per_judgement", "store_calls_per_judgement_by_method", "trials" })
                    side[key] = before[key]!.DeepClone();
                result["baseline"] = side;
                var speedup = new JsonObject();
                foreach (var n in replicaCounts)
                {
                    var key = n.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    speedup[key] = Round((double)result["judgements_per_s_by_replicas"]![key]! / (double)before["judgements_per_s_by_replicas"]![key]!, 2);
                }
                result["speedup_vs_baseline_by_replicas"] = speedup;
            }
            return result;
        }
        finally
        {
            if (Environment.GetEnvironmentVariable("SRLM_KEEP_TEST_DIRS") is null)
                try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static List<int> ParseReplicas(string text)
    {
        var list = new List<int>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            list.Add(int.TryParse(part, out var n) && n is > 0 and <= 16 ? n : throw new ArgumentException($"option --replicas must list replica counts 1..16 (e.g. 1,2,4), got '{text}'"));
        return list.Count > 0 ? list.Distinct().ToList() : throw new ArgumentException("option --replicas is empty");
    }

    /// <summary>srlm-bench-judge.dll: --judge-host, else the repository's build output (Release, then Debug).</summary>
    private static string FindJudgeHost(string? given)
    {
        if (given is not null)
            return File.Exists(given) ? Path.GetFullPath(given) : throw new ArgumentException($"--judge-host {given}: no such file");
        var candidates = new List<string>();
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
                if (File.Exists(Path.Combine(d.FullName, "Pipeline.sln")))
                {
                    foreach (var config in new[] { "Release", "Debug" })
                        candidates.Add(Path.Combine(d.FullName, "bench", "Srlm.Bench.JudgeHost", "bin", config, "net10.0", "srlm-bench-judge.dll"));
                    break;
                }
        return candidates.FirstOrDefault(File.Exists)
               ?? throw new ArgumentException("srlm-bench-judge.dll is not built (build bench/Srlm.Bench.JudgeHost, or pass --judge-host PATH)");
    }

    private sealed record Trial(string Host, int Replicas, int Judgements, double JudgementsPerSecond, double Writes, double Reads,
        SortedDictionary<string, double> PerMethod, double WallSeconds);

    private static async Task<Trial> RunTrialAsync(string amqp, string hostDll, string folder, int replicas, int judgements, TextWriter log, CancellationToken cancel)
    {
        Directory.CreateDirectory(folder);
        var storePath = Path.Combine(folder, "srlm.db");
        const string runId = "bench";
        int warmup = 16 * replicas;
        int total = warmup + judgements;
        var messages = new List<JudgeCandidate>();
        await using (var store = await SqliteArtifactStore.OpenAsync(storePath, ct: cancel))
        {
            await store.CreateRunAsync(runId, Spec, 1, cancel);
            var prompts = new List<PromptRecord>();
            var candidates = new List<CandidateRecord>();
            for (int p = 0; p * CandidatesPerPrompt < total; p++)
            {
                var promptId = Ids.Prompt(runId, 1, 0, p);
                prompts.Add(new PromptRecord { Id = promptId, RunId = runId, Iteration = 1, Shard = 0, Index = p, Text = $"Write a short poem about the number {p}." });
                for (int c = 0; c < CandidatesPerPrompt && messages.Count < total; c++)
                {
                    var candidateId = Ids.Candidate(promptId, c);
                    candidates.Add(new CandidateRecord { Id = candidateId, RunId = runId, Iteration = 1, PromptId = promptId, Index = c, CheckpointId = "bench/m1",
                        Text = $"Candidate {c}: the number {p} stands alone, and counting on it the verse goes on." });
                    messages.Add(new JudgeCandidate { RunId = runId, Iteration = 1, CheckpointId = "bench/m1", PromptId = promptId, CandidateId = candidateId });
                }
            }
            await store.PutManyAsync(prompts, cancel);
            await store.PutManyAsync(candidates, cancel);
        }

        var processes = new List<(Process Process, string Counts, string Health)>();
        var arrivals = new System.Collections.Concurrent.ConcurrentDictionary<string, long>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        var bus = Bus.Factory.CreateUsingRabbitMq(cfg =>
        {
            cfg.Host(new Uri(amqp.Replace("amqp://", "rabbitmq://", StringComparison.Ordinal)));
            cfg.ReceiveEndpoint($"bench-candidate-judged-{Path.GetFileName(folder)}", e =>
            {
                e.AutoDelete = true;
                e.Durable = false;
                e.PrefetchCount = 64;
                e.Handler<CandidateJudged>(c =>
                {
                    arrivals.TryAdd(c.Message.CandidateId, clock.ElapsedTicks);
                    return Task.CompletedTask;
                });
            });
        });
        try
        {
            for (int i = 0; i < replicas; i++)
            {
                var counts = Path.Combine(folder, $"counts-{i}.json");
                var health = Path.Combine(folder, $"judge-{i}.health");
                var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
                psi.ArgumentList.Add(hostDll);
                psi.Environment["SRLM_BUS"] = amqp;
                psi.Environment["SRLM_STORE"] = "sqlite://" + storePath;
                psi.Environment["SRLM_CHECKPOINTS"] = Path.Combine(folder, "checkpoints");
                psi.Environment["SRLM_THREADS"] = "1";
                psi.Environment["SRLM_HEALTH_FILE"] = health;
                psi.Environment["SRLM_HEALTH_INTERVAL_S"] = "1";
                psi.Environment[StoreCountsVariable] = counts;
                var p = Process.Start(psi) ?? throw new InvalidOperationException("dotnet did not start");
                var output = new StreamWriter(Path.Combine(folder, $"judge-{i}.log")) { AutoFlush = true };
                p.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.WriteLine(e.Data); };
                p.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.WriteLine(e.Data); };
                p.BeginOutputReadLine();
                p.BeginErrorReadLine();
                processes.Add((p, counts, health));
            }
            await bus.StartAsync(cancel);
            await WaitAsync(() => processes.All(x => x.Process.HasExited || HealthProbe.Check(new HealthOptions { File = x.Health }).Healthy)
                                  || processes.Any(x => x.Process.HasExited),
                TimeSpan.FromMinutes(3), $"{replicas} srlm-bench-judge process(es) healthy", cancel);
            if (processes.FirstOrDefault(x => x.Process.HasExited) is { Process: { } dead })
                throw new InvalidOperationException($"srlm-bench-judge exited with {dead.ExitCode} (log in {folder})");

            var endpoint = await bus.GetSendEndpoint(new Uri($"queue:{SrlmBusExtensions.EndpointNameFormatter.Consumer<JudgeCandidateConsumer>()}"));
            // Warm-up: every replica handles some messages (JIT, connections, the spec cache) before the clock counts.
            await Task.WhenAll(messages.Take(warmup).Select(m => endpoint.Send(m, cancel)));
            await WaitAsync(() => arrivals.Count >= warmup, TimeSpan.FromMinutes(3), $"{warmup} warm-up CandidateJudged events", cancel);

            var measured = messages.Skip(warmup).ToList();
            long sent = clock.ElapsedTicks;
            await Task.WhenAll(measured.Select(m => endpoint.Send(m, cancel)));
            await WaitAsync(() => arrivals.Count >= total, TimeSpan.FromMinutes(10), $"{judgements} CandidateJudged events ({arrivals.Count - warmup} so far)", cancel);

            // Steady state: the rate between the 10th and 90th percentile arrivals (sending and the last stragglers left out).
            var times = measured.Select(m => arrivals[m.CandidateId]).Order().ToList();
            int a = judgements / 10, b = judgements - 1 - judgements / 10;
            double rate = (b - a) / ((times[b] - times[a]) / (double)Stopwatch.Frequency);
            double wall = (times[^1] - sent) / (double)Stopwatch.Frequency;

            await using (var store = await SqliteArtifactStore.OpenAsync(storePath, ct: cancel))
            {
                var status = await store.GetIterationStatusAsync(runId, 1, cancel);
                if (status.Judgments != (long)total * JudgeSamples || status.Duplicates != 0)
                    throw new InvalidOperationException($"store holds {status.Judgments} judge samples ({status.Duplicates} duplicates), expected {total * JudgeSamples} and none");
            }

            foreach (var (p, _, _) in processes) Terminate(p);
            foreach (var (p, _, _) in processes)
                await WaitAsync(() => p.HasExited, TimeSpan.FromSeconds(60), $"srlm-bench-judge {p.Id} stopped", cancel);
            var perMethod = new SortedDictionary<string, double>(StringComparer.Ordinal);
            foreach (var (_, counts, _) in processes)
            {
                if (!File.Exists(counts)) throw new InvalidOperationException($"srlm-bench-judge wrote no store counts ({counts})");
                foreach (var (method, n) in JsonSerializer.Deserialize<Dictionary<string, long>>(File.ReadAllText(counts))!)
                    if (!method.StartsWith("health:", StringComparison.Ordinal))
                        perMethod[method] = perMethod.GetValueOrDefault(method) + n / (double)total;
            }
            double writes = perMethod.Where(kv => IsWrite(kv.Key)).Sum(kv => kv.Value);
            double reads = perMethod.Where(kv => !IsWrite(kv.Key)).Sum(kv => kv.Value);
            return new Trial(hostDll, replicas, judgements, rate, writes, reads, perMethod, wall);
        }
        finally
        {
            await bus.StopAsync(CancellationToken.None);
            foreach (var (p, _, _) in processes)
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true);
                p.Dispose();
            }
        }
    }

    private const string StoreCountsVariable = "SRLM_BENCH_COUNTS";

    /// <summary>IArtifactStore methods that write (everything else reads).</summary>
    private static bool IsWrite(string method) => method is "CreateRunAsync" or "SetRunStateAsync" or "ReopenFailedRunAsync" or "TouchRunAsync"
        or "PutAsync" or "PutManyAsync" or "SetPairReferenceLogProbsAsync" or "OverwriteAsync" or "EnqueueJobAsync" or "TryClaimJobAsync"
        or "ClaimNextJobAsync" or "HeartbeatJobAsync" or "CompleteJobAsync" or "FailJobAsync" or "PutMetricsAsync" or "PutBlobAsync"
        or "AppendJournalAsync" or "AppendJournalManyAsync" or "PutErrorAsync" or "MarkErrorRequeuedAsync";

    /// <summary>SIGTERM, so the host stops gracefully and writes its counts.</summary>
    private static void Terminate(Process p)
    {
        if (p.HasExited) return;
        using var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    private static async Task WaitAsync(Func<bool> done, TimeSpan timeout, string what, CancellationToken cancel)
    {
        var deadline = Stopwatch.StartNew();
        while (!done())
        {
            if (deadline.Elapsed > timeout) throw new TimeoutException($"waited {timeout.TotalSeconds:F0} s for {what}");
            await Task.Delay(50, cancel);
        }
    }

    private static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToList();
        return v.Count % 2 == 1 ? v[v.Count / 2] : (v[v.Count / 2 - 1] + v[v.Count / 2]) / 2;
    }

    private static double Round(double x, int digits = 3) => Math.Round(x, digits);

    private static JsonObject Report(List<Trial> trials, List<int> replicaCounts, int judgements, int repeats, bool quick)
    {
        var byReplicas = new JsonObject();
        foreach (var n in replicaCounts)
            byReplicas[n.ToString(System.Globalization.CultureInfo.InvariantCulture)] = Round(Median(trials.Where(t => t.Replicas == n).Select(t => t.JudgementsPerSecond)), 1);
        var one = trials.Where(t => t.Replicas == (replicaCounts.Contains(1) ? 1 : replicaCounts.Min())).ToList();
        var perMethod = new JsonObject();
        foreach (var method in one.SelectMany(t => t.PerMethod.Keys).Distinct().Order(StringComparer.Ordinal))
            perMethod[method] = Round(Median(one.Select(t => t.PerMethod.GetValueOrDefault(method))));
        return new JsonObject
        {
            ["benchmark"] = "pipeline",
            ["scorer"] = "zero-cost (srlm-bench-judge: every judge sample 'Score: 3' at once, no model)",
            ["judgement"] = $"one JudgeCandidate handled by the judge service's consumer: {JudgeSamples} samples stored, CandidateJudged published, the message journaled",
            ["broker"] = "RabbitMQ, a private node (Srlm.LocalBroker, the integration tests' launcher) or RABBITMQ_URI",
            ["store"] = "SQLite (one file, WAL) shared by every replica",
            ["processors"] = Environment.ProcessorCount,
            ["quick"] = quick,
            ["judgements_per_trial"] = judgements,
            ["repeats"] = repeats,
            ["overhead_ms_per_judgement_replicas"] = one[0].Replicas,
            ["overhead_ms_per_judgement"] = Round(Median(one.Select(t => 1000.0 / t.JudgementsPerSecond)), 2),
            ["judgements_per_s_by_replicas"] = byReplicas,
            ["store_writes_per_judgement"] = Round(Median(one.Select(t => t.Writes))),
            ["store_reads_per_judgement"] = Round(Median(one.Select(t => t.Reads))),
            ["store_calls_per_judgement_by_method"] = perMethod,
            ["trials"] = new JsonArray(trials.Select(t => (JsonNode)new JsonObject
            {
                ["replicas"] = t.Replicas,
                ["judgements_per_s"] = Round(t.JudgementsPerSecond, 1),
                ["wall_s"] = Round(t.WallSeconds, 2),
                ["store_writes_per_judgement"] = Round(t.Writes),
                ["store_reads_per_judgement"] = Round(t.Reads),
            }).ToArray()),
            ["method"] = "replicas are separate processes; each trial: a fresh store, 16 warm-up judgements per replica, then the measured ones " +
                         "sent at once; judgements/s is the steady-state rate between the 10th and 90th percentile CandidateJudged arrivals; " +
                         "overhead_ms_per_judgement = 1000 / that rate with one replica; store calls are counted in the judge processes " +
                         "(health probes left out) and divided by every judgement they handled; medians over the repeats, replica counts interleaved",
            ["note"] = "on a shared machine absolute numbers vary with load; compare runs made side by side",
        };
    }
}
