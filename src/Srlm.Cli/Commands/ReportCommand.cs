namespace Srlm.Cli.Commands;

/// <summary>`srlm report DIR|RUN [--out DIR]`: rebuilds report.json, report.md and the plots from the store
/// (a `srlm run` folder, or a run id in the store named by SRLM_STORE).</summary>
public sealed class ReportCommand : ICommand
{
    public string Name => "report";

    public string Summary => "rebuild report.json/report.md/PNGs of a run from the store (a srlm run folder, or RUN with SRLM_STORE)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args);
        var outDir = a.Get("--out");
        a.EnsureAllRead();
        if (a.Positional.Count != 1) throw new UsageException("usage: srlm report DIR|RUN [--out DIR]");
        var target = a.Positional[0];
        string runId;
        IConfiguration config;
        var runFolder = Directory.Exists(target) && File.Exists(Path.Combine(target, RunPipeline.RunIdFile));
        if (runFolder)
        {
            if (!File.Exists(Path.Combine(target, PipelineHost.StoreFile)))
                throw new UsageException($"{target} has {RunPipeline.RunIdFile} but no {PipelineHost.StoreFile}: not a complete srlm run folder");
            runId = (await File.ReadAllTextAsync(Path.Combine(target, RunPipeline.RunIdFile), cancel)).Trim();
            config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["SRLM_STORE"] = $"sqlite://{Path.GetFullPath(Path.Combine(target, PipelineHost.StoreFile))}",
                ["SRLM_CHECKPOINTS"] = Path.GetFullPath(Path.Combine(target, "checkpoints")),
            }).Build();
            outDir ??= target;
        }
        else if (Directory.Exists(target))
            throw new UsageException($"{target} is not a srlm run folder (it has no {RunPipeline.RunIdFile}); give a run folder, or a run id with SRLM_STORE");
        else
        {
            runId = target;
            config = new ConfigurationBuilder().AddEnvironmentVariables().Build();
            outDir ??= Path.Combine("reports", runId.Replace('/', '_'));
        }
        StoreSet opened;
        try { opened = SrlmInfrastructureExtensions.OpenStores(config); }
        catch (Srlm.Messaging.Configuration.SrlmConfigurationException e)
        {
            throw new UsageException(runFolder ? e.Message : $"{e.Message} ('{target}' is no srlm run folder here, so it is a run id in SRLM_STORE)");
        }
        await using var stores = opened;
        var report = await RunReportBuilder.BuildAsync(stores.Artifacts, runId, Leakage.Count, cancel);
        var files = ReportWriter.Write(report, outDir);
        RunCommand.PrintSummary(report, outDir);
        foreach (var f in files) Console.WriteLine(f);
        return 0;
    }
}
