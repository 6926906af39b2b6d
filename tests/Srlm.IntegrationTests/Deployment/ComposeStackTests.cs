using System.Text.RegularExpressions;

namespace Srlm.IntegrationTests.Deployment;

/// <summary>The real compose stack, where a Docker engine answers (`docker info`): images built, the stack up with
/// two judges, `srlm start samples/smoke/run.json` and `srlm status RUN --wait` from the host against the ports
/// the stack publishes on 127.0.0.1. Skipped, with the reason, where no engine runs (as on our machines and CI).</summary>
public sealed class ComposeStackTests(ITestOutputHelper output)
{
    private static readonly string[] Files = ["docker-compose.yml"];

    /// <summary>Null when a Docker engine answers `docker info`, else why not.</summary>
    public static string? DockerSkipReason()
    {
        if (ComposeConfig.SkipReason is { } noCompose) return noCompose;
        try
        {
            var psi = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("info");
            using var p = Process.Start(psi)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(30_000)) { p.Kill(true); return "no Docker engine: `docker info` did not answer within 30 s"; }
            if (p.ExitCode == 0) return null;
            var why = stderr.Result.Trim().Split('\n').FirstOrDefault(l => l.Contains("ERROR", StringComparison.OrdinalIgnoreCase) || l.Contains("Cannot connect", StringComparison.OrdinalIgnoreCase))
                      ?? stderr.Result.Trim().Split('\n').LastOrDefault() ?? "";
            _ = stdout.Result;
            return $"no Docker engine: `docker info` exited {p.ExitCode} ({why.Trim()})";
        }
        catch (System.ComponentModel.Win32Exception) { return "no Docker engine: the docker command is not installed"; }
    }

    private (int Code, string Output) Compose(string envFile, string project, TimeSpan timeout, params string[] args)
    {
        var (code, stdout, stderr) = ComposeConfig.Exec(envFile, Files, timeout, ["-p", project, .. args]);
        return (code, (stdout + stderr).Trim());
    }

    [SkippableFact]
    public async Task Compose_stack_with_two_judges_completes_the_smoke_run_submitted_from_the_host()
    {
        var skip = DockerSkipReason();
        if (skip is not null) output.WriteLine($"skipped: {skip}");
        Skip.If(skip is not null, skip);

        var total = Stopwatch.StartNew();
        var folder = Directory.CreateTempSubdirectory("srlm-stack-").FullName;
        var project = "srlmtest" + Guid.NewGuid().ToString("N")[..8];
        // The operator's .env: .env.example with free host ports, so the test never collides with a deployment.
        var envFile = Path.Combine(folder, ".env");
        var text = await File.ReadAllTextAsync(Path.Combine(ComposeConfig.RepoRoot, DeploymentFixture.EnvFile));
        foreach (var port in new[] { "RABBITMQ_PORT", "RABBITMQ_MANAGEMENT_PORT", "MONGO_PORT" })
            text = Regex.Replace(text, $"^{port}=.*$", $"{port}={RabbitMqBroker.FreePort()}", RegexOptions.Multiline);
        // Its own image tag, so building never replaces an operator's srlm-*:latest images on that machine.
        text = Regex.Replace(text, "^SRLM_TAG=.*$", "SRLM_TAG=srlmtest", RegexOptions.Multiline);
        await File.WriteAllTextAsync(envFile, text);
        var compose = ComposeConfig.Load(envFile, Files);

        // What the README tells an operator to export on the host: the services' own values, pointed at the
        // ports published on 127.0.0.1.
        var env = new Dictionary<string, string>(compose.Environment("judge"), StringComparer.Ordinal);
        env["SRLM_BUS"] = env["SRLM_BUS"].Replace("@rabbitmq:5672/", $"@127.0.0.1:{compose.PublishedPort("rabbitmq", 5672)}/", StringComparison.Ordinal);
        env["SRLM_STORE"] = env["SRLM_STORE"].Replace("@mongo:27017/", $"@127.0.0.1:{compose.PublishedPort("mongo", 27017)}/", StringComparison.Ordinal);
        output.WriteLine($"host: SRLM_BUS={Redact.Uri(env["SRLM_BUS"])} SRLM_STORE={Redact.Uri(env["SRLM_STORE"])} SRLM_CHECKPOINTS={env["SRLM_CHECKPOINTS"]}");

        try
        {
            var sw = Stopwatch.StartNew();
            var up = Compose(envFile, project, TimeSpan.FromMinutes(30), "up", "--build", "-d", "--scale", "judge=2");
            output.WriteLine($"$ compose -p {project} up --build -d --scale judge=2   ({sw.Elapsed.TotalSeconds:F0} s, exit {up.Code})");
            Assert.True(up.Code == 0, up.Output);

            sw.Restart();
            string last = "";
            bool AllHealthy()
            {
                // stdout only: docker-compose 1.29 prints warnings on stderr.
                var ids = ComposeConfig.Exec(envFile, Files, TimeSpan.FromMinutes(1), "-p", project, "ps", "-q").Stdout
                    .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                var psi = new ProcessStartInfo("docker") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
                foreach (var a in new[] { "inspect", "-f", "{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}" }.Concat(ids)) psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                var err = p.StandardError.ReadToEndAsync();
                last = p.StandardOutput.ReadToEnd() + err.Result;
                if (!p.WaitForExit(60_000)) { p.Kill(true); return false; }
                var lines = last.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                // rabbitmq, mongo, generator, 2 judges, pairbuilder, trainer: all with health checks, all healthy.
                return lines.Length == 7 && lines.All(l => l.EndsWith(" healthy", StringComparison.Ordinal));
            }
            try { await ServiceHarness.WaitUntilAsync(() => Task.FromResult(AllHealthy()), TimeSpan.FromMinutes(5), "every container healthy (2 judges)"); }
            catch (TimeoutException e) { throw new TimeoutException($"{e.Message}; last: {last}"); }
            output.WriteLine($"all 7 containers healthy after {sw.Elapsed.TotalSeconds:F0} s");

            await using var cli = new ServiceHarness(env, Path.Combine(folder, "cli"));
            var start = await cli.CliAsync(TimeSpan.FromMinutes(3), "start", SmokeRunFixture.SmokeSpec);
            output.WriteLine($"$ srlm start samples/smoke/run.json   (exit {start.ExitCode})\n{start.Output}");
            Assert.True(start.ExitCode == 0, start.Output);
            var runId = ComposeWithoutContainersTests.RunIdOf(start.Output);

            sw.Restart();
            var status = await cli.CliAsync(TimeSpan.FromMinutes(20), "status", runId, "--wait", "--interval", "5");
            output.WriteLine($"$ srlm status {runId} --wait   ({sw.Elapsed.TotalSeconds:F0} s, exit {status.ExitCode})\n{status.Output}");
            Assert.True(status.ExitCode == 0, status.Output);

            await using var store = await StoreFactory.OpenArtifactStoreAsync(env["SRLM_STORE"]);
            var judges = (await store.QueryJournalAsync(new JournalQuery { RunId = runId, Direction = JournalDirection.Consumed }))
                .Select(e => e.Host).OfType<string>().Where(h => h.Contains("/judge/", StringComparison.Ordinal)).Distinct().ToList();
            output.WriteLine($"judge hosts that consumed: {string.Join(", ", judges)}");
            Assert.Equal(2, judges.Count);
        }
        catch
        {
            output.WriteLine(Compose(envFile, project, TimeSpan.FromMinutes(2), "logs", "--no-color", "--tail", "60").Output);
            throw;
        }
        finally
        {
            var down = Compose(envFile, project, TimeSpan.FromMinutes(5), "down", "-v", "--remove-orphans");
            output.WriteLine($"$ compose -p {project} down -v   (exit {down.Code}); whole test {total.Elapsed.TotalSeconds:F0} s");
            try { Directory.Delete(folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
