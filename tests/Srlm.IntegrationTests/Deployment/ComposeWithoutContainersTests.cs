namespace Srlm.IntegrationTests.Deployment;

/// <summary>docker-compose.yml without containers: the published services (what the images run) started as
/// separate processes with the environment `docker-compose config` resolves from .env.example, against a private
/// RabbitMQ node with the compose file's user, password and vhost, and a SQLite store (no MongoDB here).</summary>
public sealed class ComposeWithoutContainersTests(DeploymentFixture fixture, ITestOutputHelper output) : IClassFixture<DeploymentFixture>
{
    private static readonly TimeSpan HealthyTimeout = TimeSpan.FromMinutes(3);

    private async Task<(PrivateRabbitMqNode Node, Dictionary<string, string> Env, string Folder)> PrepareAsync(string service, string prefix)
    {
        var node = fixture.RequireBroker();
        var compose = fixture.RequireCompose();
        await PublishedServices.EnsureAsync(output.WriteLine);
        var folder = Directory.CreateTempSubdirectory(prefix).FullName;
        var notes = new List<string>();
        var env = DeploymentFixture.ProcessEnvironment(compose, service, node.AmqpPort, folder, notes);
        output.WriteLine($"environment of {service} from `{string.Join(' ', ComposeConfig.Command!)} --env-file {DeploymentFixture.EnvFile} -f {DeploymentFixture.ComposeFile} config`:");
        foreach (var n in notes) output.WriteLine("  " + n);
        await fixture.PrepareBrokerUserAsync(node, env["SRLM_BUS"]);
        return (node, env, folder);
    }

    private static async Task<TimeSpan> WaitForProbeAsync(ServiceProcess service, ServiceHarness harness, int exitCode, TimeSpan timeout, string what)
    {
        var sw = Stopwatch.StartNew();
        (int ExitCode, string Output) last = default;
        try
        {
            await ServiceHarness.WaitUntilAsync(async () => (last = await service.ProbeHealthAsync()).ExitCode == exitCode, timeout, what);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"{e.Message}; last probe of {service.Name}: exit {last.ExitCode}: {last.Output}\n{harness.Logs()}");
        }
        return sw.Elapsed;
    }

    /// <summary>The run id `srlm start` prints as its last stdout line (stderr may follow in the merged output).</summary>
    public static string RunIdOf(string output) =>
        System.Text.RegularExpressions.Regex.Matches(output, @"^[a-z0-9-]+-\d{8}-\d{6}-[0-9a-f]{4}$", System.Text.RegularExpressions.RegexOptions.Multiline)
            .LastOrDefault()?.Value ?? throw new InvalidOperationException($"no run id in the output of srlm start:\n{output}");

    private static void AssertNoSecret(string secret, string text, string where) =>
        Assert.False(text.Contains(secret, StringComparison.Ordinal), $"{where} shows the broker password");

    [SkippableFact]
    public async Task Published_services_with_the_compose_environment_complete_the_smoke_run_with_two_judges()
    {
        var total = Stopwatch.StartNew();
        var (_, env, folder) = await PrepareAsync("judge", "srlm-compose-");
        var compose = fixture.RequireCompose();
        // One environment for all four, as the compose anchor gives them; the generator alone adds the key of an
        // external endpoint a spec may name (empty in .env.example).
        foreach (var s in ServiceBinaries.Services)
        {
            var own = DeploymentFixture.ProcessEnvironment(compose, s, fixture.RequireBroker().AmqpPort, folder, []);
            if (s == "generator")
                Assert.True(own.Remove("SRLM_ENDPOINT_API_KEY", out var key) && key == "",
                    "the generator's compose environment lacks SRLM_ENDPOINT_API_KEY (empty in .env.example)");
            Assert.Equal(env, own);
        }
        // The image sets SRLM_JOBS_DIR=/var/lib/srlm/jobs (the trainer-jobs volume); here a folder of the test stands in.
        var trainerJobs = new Dictionary<string, string> { ["SRLM_JOBS_DIR"] = Path.Combine(folder, "trainer-jobs") };
        var password = BusOptions.Parse(env["SRLM_BUS"]).Password;
        var services = new[] { "generator", "judge", "judge", "pairbuilder", "trainer" };
        // The containers would run on a host with cores to spare; here all five processes share this machine. libtorch
        // threads spin while they wait, so more threads than cores slows everything (two cores, 5 x 2 threads: the
        // run took 327 s instead of 49 s with 1 thread each). Only then are the threads lowered, and the test says so.
        var threads = int.Parse(env["SRLM_THREADS"], System.Globalization.CultureInfo.InvariantCulture);
        if (services.Length * threads > Environment.ProcessorCount)
        {
            var fit = Math.Max(1, Environment.ProcessorCount / services.Length);
            output.WriteLine($"  SRLM_THREADS: {threads} -> {fit} ({services.Length} processes x {threads} threads would oversubscribe this machine's {Environment.ProcessorCount} cores)");
            env["SRLM_THREADS"] = fit.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        await using var harness = new ServiceHarness(env, folder) { CliDll = PublishedServices.CliDll };
        var processes = new List<ServiceProcess>();
        foreach (var s in services)
            processes.Add(harness.Start(s, s == "trainer" ? trainerJobs : null, dll: PublishedServices.HostDll(s)));
        var judgePids = processes.Where(p => p.Name.StartsWith("judge-", StringComparison.Ordinal)).Select(p => p.Pid!.Value).ToList();
        var sw = Stopwatch.StartNew();
        foreach (var p in processes)
            await WaitForProbeAsync(p, harness, 0, HealthyTimeout, $"{p.Name} healthy (`srlm-{p.Name[..p.Name.IndexOf('-', StringComparison.Ordinal)]} --health`)");
        output.WriteLine($"5 published service processes (2 judges) healthy after {sw.Elapsed.TotalSeconds:F1} s");

        sw.Restart();
        var start = await harness.CliAsync(TimeSpan.FromMinutes(3), "start", SmokeRunFixture.SmokeSpec);
        output.WriteLine($"$ srlm start samples/smoke/run.json   ({sw.Elapsed.TotalSeconds:F1} s, exit {start.ExitCode})\n{start.Output}");
        Assert.True(start.ExitCode == 0, $"srlm start failed: {start.Output}\n{harness.Logs()}");
        var runId = RunIdOf(start.Output);

        sw.Restart();
        var status = await harness.CliAsync(TimeSpan.FromMinutes(20), "status", runId, "--wait", "--interval", "2");
        output.WriteLine($"$ srlm status {runId} --wait   ({sw.Elapsed.TotalSeconds:F1} s, exit {status.ExitCode})\n{status.Output}");
        Assert.True(status.ExitCode == 0, $"srlm status --wait exited {status.ExitCode}:\n{status.Output}\n{harness.Logs()}");

        await using (var store = await StoreFactory.OpenArtifactStoreAsync(env["SRLM_STORE"]))
        {
            Assert.Equal(RunState.Completed, (await store.GetRunAsync(runId))!.State);
            Assert.True(Directory.Exists(trainerJobs["SRLM_JOBS_DIR"]) && Directory.EnumerateDirectories(trainerJobs["SRLM_JOBS_DIR"]).Any(),
                $"the trainer kept no job state in SRLM_JOBS_DIR {trainerJobs["SRLM_JOBS_DIR"]}");
            var consumed = await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Consumed });
            foreach (var pid in judgePids)
            {
                var n = consumed.Count(e => e.Host?.Contains($"/judge/{pid}", StringComparison.Ordinal) == true);
                output.WriteLine($"judge pid {pid} consumed {n} messages");
                Assert.True(n > 0, $"judge process {pid} consumed nothing: the two judges did not share the work");
            }
        }

        foreach (var p in processes) AssertNoSecret(password, p.ReadLog(), $"{p.Name}'s log");
        AssertNoSecret(password, start.Output + status.Output, "the CLI output");
        output.WriteLine($"whole test {total.Elapsed.TotalSeconds:F0} s; the publish (once per test run, by the first deployment test to need it) took {PublishedServices.Elapsed.TotalSeconds:F1} s");
    }

    [SkippableFact]
    public async Task Health_probe_of_a_published_service_is_unhealthy_while_the_broker_is_stopped_and_healthy_when_it_returns()
    {
        var (node, env, folder) = await PrepareAsync("judge", "srlm-compose-health-");
        // No SRLM_HEALTH_* variables: the service's defaults, as in the image (HEALTHCHECK runs `srlm-service --health`).
        await using var harness = new ServiceHarness(env, folder);
        var judge = harness.Start("judge", dll: PublishedServices.HostDll("judge"));
        var t = await WaitForProbeAsync(judge, harness, 0, HealthyTimeout, "healthy after start");
        output.WriteLine($"healthy {t.TotalSeconds:F1} s after start: {(await judge.ProbeHealthAsync()).Output}");

        (int ExitCode, string Output) down;
        await node.StopAsync();
        try
        {
            t = await WaitForProbeAsync(judge, harness, 1, TimeSpan.FromSeconds(90), "unhealthy while the broker is stopped");
            down = await judge.ProbeHealthAsync();
            output.WriteLine($"unhealthy {t.TotalSeconds:F1} s after the broker stopped: {down.Output}");
        }
        finally
        {
            await node.StartAgainAsync();
        }
        Assert.StartsWith("srlm-judge: unhealthy: ", down.Output, StringComparison.Ordinal);
        Assert.Contains("masstransit-bus=", down.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("masstransit-bus=Healthy", down.Output, StringComparison.Ordinal);

        t = await WaitForProbeAsync(judge, harness, 0, TimeSpan.FromMinutes(2), "healthy again after the broker returned");
        output.WriteLine($"healthy {t.TotalSeconds:F1} s after the broker returned: {(await judge.ProbeHealthAsync()).Output}");
        Assert.True(judge.IsRunning, "the service process exited instead of reconnecting");
        AssertNoSecret(BusOptions.Parse(env["SRLM_BUS"]).Password, judge.ReadLog() + down.Output, "the judge's log or probe");
    }

    [SkippableFact]
    public async Task With_an_OTLP_endpoint_the_service_and_the_cli_export_spans_and_logs_show_no_credentials()
    {
        var (_, env, folder) = await PrepareAsync("trainer", "srlm-compose-otlp-");
        using var collector = new OtlpListener();
        var otel = new Dictionary<string, string>(env)
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.Endpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "500",
        };
        output.WriteLine($"added OTEL_EXPORTER_OTLP_ENDPOINT={collector.Endpoint} OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf");
        await using var harness = new ServiceHarness(otel, folder) { CliDll = PublishedServices.CliDll };
        var trainer = harness.Start("trainer", dll: PublishedServices.HostDll("trainer"));
        await WaitForProbeAsync(trainer, harness, 0, HealthyTimeout, "trainer healthy");

        // The CLI publishes RunStarted (a span in srlm-cli); the trainer consumes it (a span in srlm-trainer).
        var start = await harness.CliAsync(TimeSpan.FromMinutes(3), "start", SmokeRunFixture.SmokeSpec);
        Assert.True(start.ExitCode == 0, $"srlm start failed: {start.Output}\n{harness.Logs()}");
        bool Exported(string service) => collector.Requests.Any(r => r.Path == "/v1/traces" && r.Text.Contains(service, StringComparison.Ordinal) && r.Text.Contains("RunStarted", StringComparison.Ordinal));
        try
        {
            await ServiceHarness.WaitUntilAsync(() => Task.FromResult(Exported("srlm-cli") && Exported("srlm-trainer")), TimeSpan.FromSeconds(60),
                "OTLP trace exports naming RunStarted from srlm-cli and srlm-trainer");
        }
        finally
        {
            output.WriteLine($"collector received {collector.Requests.Count} POSTs: " +
                string.Join(", ", collector.Requests.GroupBy(r => (r.Path, r.ContentType)).Select(g => $"{g.Key.Path} ({g.Key.ContentType}) x{g.Count()}")));
        }
        Assert.All(collector.Requests.Where(r => r.Path == "/v1/traces"), r => Assert.Equal("application/x-protobuf", r.ContentType));

        var password = BusOptions.Parse(env["SRLM_BUS"]).Password;
        await trainer.StopAsync();
        AssertNoSecret(password, trainer.ReadLog(), "the trainer's log");
        AssertNoSecret(password, start.Output, "the CLI output");
        foreach (var r in collector.Requests) AssertNoSecret(password, r.Text, $"an OTLP export to {r.Path}");
    }
}
