namespace Srlm.Tests.Deployment;

/// <summary>
/// The service Dockerfile, checked without a Docker engine: its instructions are parsed, and the commands of
/// its first two stages are run here on a copy of the build context (filtered by .dockerignore) to prove
/// that the restore layer needs only the project files, so code edits keep it cached.
/// </summary>
public partial class DockerfileTests
{
    private static readonly string Root = ComposeConfig.RepoRoot;
    private static readonly string[] Services = ["generator", "judge", "pairbuilder", "trainer"];

    private sealed record Instruction(string Stage, string Keyword, string Args);

    private static List<Instruction> Parse()
    {
        var text = File.ReadAllText(Path.Combine(Root, "docker", "Dockerfile"));
        var logical = Regex.Replace(text, @"\\\r?\n", " ");
        var list = new List<Instruction>();
        string stage = "";
        foreach (var raw in logical.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var m = Regex.Match(line, @"^([A-Za-z]+)\s+(.*)$");
            Assert.True(m.Success, $"unparsed Dockerfile line: {line}");
            var kw = m.Groups[1].Value.ToUpperInvariant();
            if (kw == "FROM") stage = Regex.Match(m.Groups[2].Value, @"\bAS\s+(\S+)", RegexOptions.IgnoreCase).Groups[1].Value;
            list.Add(new Instruction(stage, kw, m.Groups[2].Value));
        }
        return list;
    }

    [Fact]
    public void Dockerfile_builds_on_the_dotnet_10_sdk_runs_on_the_runtime_as_non_root_with_the_health_probe()
    {
        var ins = Parse();
        Assert.Contains(ins, i => i is { Stage: "", Keyword: "ARG" } && i.Args == "DOTNET_VERSION=10.0");
        var froms = ins.Where(i => i.Keyword == "FROM").Select(i => i.Args).ToList();
        Assert.Equal("mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION} AS build", froms[1]);
        Assert.Equal("mcr.microsoft.com/dotnet/runtime:${DOTNET_VERSION} AS runtime", froms[^1]);

        var final = ins.Where(i => i.Stage == "runtime").ToList();
        var user = final.Last(i => i.Keyword == "USER").Args;
        Assert.Equal("$APP_UID", user); // the .NET images' non-root "app" user (uid 1654)
        var health = final.Single(i => i.Keyword == "HEALTHCHECK").Args;
        Assert.Matches(@"CMD \[""/app/srlm-service"", ""--health""\]$", health);
        Assert.Equal(@"[""/app/srlm-service""]", final.Single(i => i.Keyword == "ENTRYPOINT").Args);
        Assert.True(final.FindIndex(i => i.Keyword == "USER") > final.FindLastIndex(i => i.Keyword is "RUN" or "COPY"), "USER must follow every RUN/COPY of the final stage");

        // The launcher names the published assembly: srlm-<service>.dll, as the service hosts are named.
        foreach (var s in Services)
        {
            var csproj = Directory.GetFiles(Path.Combine(Root, "services", s), "*.Service.csproj", SearchOption.AllDirectories).Single();
            Assert.Contains($"<AssemblyName>srlm-{s}</AssemblyName>", File.ReadAllText(csproj));
        }
        Assert.Contains(ins, i => i.Stage == "build" && i.Keyword == "RUN" && i.Args.Contains("exec dotnet /app/srlm-%s.dll") && i.Args.Contains("\"$SERVICE\""));

        // Restore comes before the sources are copied into the build stage, and the CUDA switch reaches both.
        var build = ins.Where(i => i.Stage == "build").ToList();
        int restore = build.FindIndex(i => i.Keyword == "RUN" && i.Args.StartsWith("dotnet restore", StringComparison.Ordinal));
        int source = build.FindIndex(i => i.Keyword == "COPY" && i.Args == ". .");
        Assert.InRange(restore, 0, source - 1);
        Assert.Contains("-p:SrlmCuda=$SrlmCuda", build[restore].Args);
        Assert.Contains(build, i => i.Keyword == "RUN" && i.Args.StartsWith("dotnet publish", StringComparison.Ordinal) && i.Args.Contains("-p:SrlmCuda=$SrlmCuda") && i.Args.Contains("--no-restore"));
        Assert.Equal("--from=projects /projects/ ./", build.Single(i => i.Keyword == "COPY" && i.Args.Contains("--from=projects")).Args);
    }

    [Fact]
    public void Every_service_restores_from_the_project_files_alone()
    {
        var ins = Parse();
        var collect = ins.Single(i => i.Stage == "projects" && i.Keyword == "RUN").Args;
        var restore = ins.Single(i => i.Stage == "build" && i.Keyword == "RUN" && i.Args.StartsWith("dotnet restore", StringComparison.Ordinal)).Args;

        var tmp = Directory.CreateTempSubdirectory("srlm-docker-").FullName;
        try
        {
            var context = Path.Combine(tmp, "context");
            var projects = Path.Combine(tmp, "projects");
            CopyContext(Root, context);
            Bash(collect.Replace("/projects", projects, StringComparison.Ordinal), context);

            var files = Directory.GetFiles(projects, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(projects, f)).ToList();
            Assert.DoesNotContain(files, f => f.EndsWith(".cs", StringComparison.Ordinal));
            Assert.Contains("Directory.Packages.props", files);
            Assert.Contains(Path.Combine("build", "TorchSharpNativeFix.targets"), files);

            // Every project a service host reaches was copied (a missing one would fail its restore) ...
            foreach (var s in Services)
            {
                var host = Directory.GetFiles(Path.Combine(projects, "services", s), "*.Service.csproj", SearchOption.AllDirectories).Single();
                Assert.All(Srlm.Tests.Tasks.ServiceIndependenceTests.ProjectClosure(host), p => Assert.True(File.Exists(p), $"{s}: {p} is not in the restore stage"));
            }
            // ... and one real restore, of the trainer (whose closure contains every other service's), needs
            // nothing else: the other hosts differ only in their project path (one restore costs ~20 s here).
            Bash($"SERVICE=trainer SrlmCuda=false && {restore}", projects);
            Assert.Single(Directory.GetFiles(Path.Combine(projects, "services", "trainer"), "project.assets.json", SearchOption.AllDirectories),
                f => f.Contains(".Service", StringComparison.Ordinal));
        }
        finally { Directory.Delete(tmp, true); }
    }

    /// <summary>Copies what `docker build` would send: the repository minus .dockerignore's patterns.</summary>
    private static void CopyContext(string from, string to)
    {
        var patterns = File.ReadAllLines(Path.Combine(from, ".dockerignore"))
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).Select(Glob).ToList();
        var dirs = new Stack<string>([from]);
        while (dirs.Count > 0)
        {
            var dir = dirs.Pop();
            foreach (var entry in Directory.EnumerateFileSystemEntries(dir))
            {
                var rel = Path.GetRelativePath(from, entry).Replace('\\', '/');
                if (patterns.Any(p => p.IsMatch(rel))) continue; // prunes excluded folders (bin/, obj/, .git/) whole
                if (Directory.Exists(entry)) { dirs.Push(entry); continue; }
                var dest = Path.Combine(to, rel);
                Directory.CreateDirectory(Path.GetDirectoryName(dest)!);
                File.Copy(entry, dest);
            }
        }
    }

    /// <summary>A .dockerignore pattern as a regex on the relative path (** any dirs, * within one name,
    /// a trailing / or a directory match excludes everything below).</summary>
    private static Regex Glob(string pattern)
    {
        var p = pattern.TrimEnd('/');
        var rx = Regex.Escape(p).Replace(@"\*\*/", "(?:.*/)?").Replace(@"\*", "[^/]*").Replace(@"\?", "[^/]");
        return new Regex($"^{rx}(?:/.*)?$");
    }

    private static void Bash(string script, string cwd)
    {
        var psi = new ProcessStartInfo("bash") { WorkingDirectory = cwd, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-ec");
        psi.ArgumentList.Add(script);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(300_000)) { p.Kill(true); throw new TimeoutException($"took over 5 minutes: {script}"); }
        Assert.True(p.ExitCode == 0, $"exit {p.ExitCode}: {script}\n{stdout.Result}\n{stderr.Result}");
    }
}
