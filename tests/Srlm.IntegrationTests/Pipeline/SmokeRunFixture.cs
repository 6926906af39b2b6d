namespace Srlm.IntegrationTests.Pipeline;

/// <summary>One uninterrupted `srlm run samples/smoke/run.json`, shared by the pipeline tests (it takes a
/// minute or two on two cores).</summary>
public sealed class SmokeRunFixture : IAsyncLifetime
{
    public string Root { get; } = Path.Combine(Path.GetTempPath(), $"srlm-smoke-{Guid.NewGuid():N}");
    public RunPipelineResult Result { get; private set; } = null!;
    public string Output { get; private set; } = "";
    public TimeSpan Elapsed { get; private set; }

    public static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !File.Exists(Path.Combine(d.FullName, "Pipeline.sln"))) d = d.Parent;
        return d?.FullName ?? throw new InvalidOperationException("Pipeline.sln not found above " + AppContext.BaseDirectory);
    }

    public static string SmokeSpec => Path.Combine(RepoRoot(), "samples", "smoke", "run.json");

    public async Task InitializeAsync()
    {
        Environment.SetEnvironmentVariable("SRLM_THREADS", Environment.GetEnvironmentVariable("SRLM_THREADS") ?? "2");
        var output = new StringWriter();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        Result = await RunPipeline.ExecuteAsync(new RunPipelineOptions { SpecPath = SmokeSpec, Directory = Path.Combine(Root, "a"), Quiet = true }, output, timeout.Token);
        Elapsed = sw.Elapsed;
        Output = output.ToString();
    }

    public Task DisposeAsync()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        return Task.CompletedTask;
    }
}

[CollectionDefinition(Name)]
public sealed class SmokeRunCollection : ICollectionFixture<SmokeRunFixture>
{
    public const string Name = "smoke run";
}
