using System.Security;

namespace Srlm.IntegrationTests.Deployment;

/// <summary>The four service hosts and the srlm CLI published (the Publish target, as `dotnet publish` runs it in
/// docker/Dockerfile, with -p:UseAppHost=false like the image) into one folder per program under this test
/// assembly's output: deploy-publish/{generator,judge,pairbuilder,trainer,cli}.
/// <para>Cost: the five publishes run as one MSBuild invocation (-m:2) with NoBuild=true, so they copy the
/// solution's build output (the configuration this test assembly was built in; build the solution first, as CI
/// does) instead of compiling again, and hard-link the package files (libtorch is ~475 MB) where the file
/// system allows. The TorchSharp native fix (build/TorchSharpNativeFix.targets) runs after Publish and patches
/// each published libLibTorchSharp.so, which also breaks that file's link to the NuGet cache. The publish runs
/// once per test run (then it is cached in this process); MSBuild skips unchanged files, so the folder is never
/// stale and a rerun costs about as much as the first (~10 s on two cores).</para></summary>
public static class PublishedServices
{
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static string? _folder;

    /// <summary>How long the publish took in this process (zero before it ran).</summary>
    public static TimeSpan Elapsed { get; private set; }

    public static string Folder => Path.Combine(AppContext.BaseDirectory, "deploy-publish");

    public static string HostDll(string service) => Path.Combine(Folder, service, $"srlm-{service}.dll");

    public static string CliDll => Path.Combine(Folder, "cli", "srlm.dll");

    /// <summary>Publishes once per process; later calls return at once. Throws with MSBuild's output on failure.</summary>
    public static async Task<string> EnsureAsync(Action<string>? log = null)
    {
        await Gate.WaitAsync();
        try
        {
            if (_folder is not null) return _folder;
            var root = ServiceBinaries.RepositoryRoot;
            Directory.CreateDirectory(Folder);
            var projects = ServiceBinaries.Services
                .Select(s => (Name: s, Project: Directory.GetFiles(Path.Combine(root, "services", s), "*.Service.csproj", SearchOption.AllDirectories).Single()))
                .Append((Name: "cli", Project: Path.Combine(root, "src", "Srlm.Cli", "Srlm.Cli.csproj")))
                .ToList();
            var traversal = Path.Combine(Folder, "publish.proj");
            await File.WriteAllTextAsync(traversal, $"""
                <Project>
                  <!-- Written by PublishedServices (Srlm.IntegrationTests): publishes what docker/Dockerfile publishes. -->
                  <ItemGroup>
                {string.Concat(projects.Select(p => $"    <P Include=\"{SecurityElement.Escape(p.Project)}\" AdditionalProperties=\"PublishDir={SecurityElement.Escape(Path.Combine(Folder, p.Name))}/\" />\n"))}  </ItemGroup>
                  <Target Name="Publish">
                    <MSBuild Projects="@(P)" Targets="Publish" BuildInParallel="true"
                             Properties="Configuration={ServiceBinaries.Configuration};NoBuild=true;_IsPublishing=true;UseAppHost=false;CreateHardLinksForPublishFilesIfPossible=true" />
                  </Target>
                </Project>
                """);
            var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = root };
            foreach (var a in new[] { "msbuild", traversal, "-t:Publish", "-m:2", "-nologo", "-v:q", "-clp:ErrorsOnly", "-nodeReuse:false" }) psi.ArgumentList.Add(a);
            psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            psi.Environment["DOTNET_NOLOGO"] = "1";
            var sw = Stopwatch.StartNew();
            var r = await Srlm.LocalBroker.BoundedProcess.RunAsync(psi, TimeSpan.FromMinutes(5));
            if (r.TimedOut) throw new TimeoutException("publishing the services took over 5 minutes");
            if (r.ExitCode != 0)
                throw new InvalidOperationException($"publishing the services (NoBuild: build Pipeline.sln -c {ServiceBinaries.Configuration} first) failed with {r.ExitCode}:\n{r.Output}");
            foreach (var dll in ServiceBinaries.Services.Select(HostDll).Append(CliDll))
                if (!File.Exists(dll)) throw new FileNotFoundException($"publish left no {dll}");
            Elapsed = sw.Elapsed;
            log?.Invoke($"published {string.Join(", ", projects.Select(x => x.Name))} into {Folder} in {Elapsed.TotalSeconds:F1} s (one MSBuild, NoBuild, hard links)");
            return _folder = Folder;
        }
        finally
        {
            Gate.Release();
        }
    }
}
