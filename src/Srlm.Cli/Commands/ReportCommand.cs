using Microsoft.Extensions.Configuration;
using Srlm.Cli.Pipeline;
using Srlm.Messaging.Hosting;
using Srlm.Tasks;

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
        if (Directory.Exists(target) && File.Exists(Path.Combine(target, RunPipeline.RunIdFile)))
        {
            runId = (await File.ReadAllTextAsync(Path.Combine(target, RunPipeline.RunIdFile), cancel)).Trim();
            config = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
            {
                ["SRLM_STORE"] = $"sqlite://{Path.GetFullPath(Path.Combine(target, PipelineHost.StoreFile))}",
                ["SRLM_CHECKPOINTS"] = Path.GetFullPath(Path.Combine(target, "checkpoints")),
            }).Build();
            outDir ??= target;
        }
        else
        {
            runId = target;
            config = new ConfigurationBuilder().AddEnvironmentVariables().Build();
            outDir ??= Path.Combine("reports", runId.Replace('/', '_'));
        }
        await using var stores = SrlmInfrastructureExtensions.OpenStores(config);
        var report = await RunReportBuilder.BuildAsync(stores.Artifacts, runId, Leakage.Count, cancel);
        var files = ReportWriter.Write(report, outDir);
        RunCommand.PrintSummary(report, outDir);
        foreach (var f in files) Console.WriteLine(f);
        return 0;
    }
}
