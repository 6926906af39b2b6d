namespace Srlm.IntegrationTests.Infrastructure;

/// <summary>Finds the built service hosts (srlm-generator, srlm-judge, srlm-pairbuilder, srlm-trainer) and the
/// srlm CLI. Order: SRLM_SERVICE_BIN (a folder holding srlm-NAME.dll, or NAME/srlm-NAME.dll, as `dotnet publish`
/// leaves them), then the repository's own build output for the configuration this test assembly was built in.</summary>
public static class ServiceBinaries
{
    public static readonly string[] Services = ["generator", "judge", "pairbuilder", "trainer"];

    public static string RepositoryRoot { get; } = FindRoot();

    /// <summary>"Debug" or "Release", read from this test assembly's output path (bin/CONFIG/net10.0).</summary>
    public static string Configuration { get; } =
        new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent?.Name is "Release" ? "Release" : "Debug";

    public static string HostDll(string service)
    {
        var bin = Environment.GetEnvironmentVariable("SRLM_SERVICE_BIN");
        var name = $"srlm-{service}.dll";
        var candidates = new List<string>();
        if (!string.IsNullOrEmpty(bin)) candidates.AddRange([Path.Combine(bin, name), Path.Combine(bin, service, name)]);
        var project = Directory.GetDirectories(Path.Combine(RepositoryRoot, "services", service), "Srlm.*.Service").FirstOrDefault();
        if (project is not null) candidates.Add(Path.Combine(project, "bin", Configuration, "net10.0", name));
        return candidates.FirstOrDefault(File.Exists)
               ?? throw new FileNotFoundException($"{name} is not built (looked in {string.Join(", ", candidates)}); run `dotnet build Pipeline.sln -c {Configuration}` or set SRLM_SERVICE_BIN");
    }

    /// <summary>srlm-faulthost.dll, the fault tests' host (tests/Srlm.FaultHost, beside these tests): the judge and trainer
    /// built from their libraries plus injected faults. Never published; the production hosts above have no faults.</summary>
    public static string FaultHostDll()
    {
        var candidates = new[]
        {
            Path.Combine(AppContext.BaseDirectory, "srlm-faulthost.dll"),
            Path.Combine(RepositoryRoot, "tests", "Srlm.FaultHost", "bin", Configuration, "net10.0", "srlm-faulthost.dll"),
        };
        return candidates.FirstOrDefault(File.Exists) ?? throw new FileNotFoundException($"srlm-faulthost.dll not found in {string.Join(", ", candidates)}");
    }

    public static string CliDll()
    {
        var bin = Environment.GetEnvironmentVariable("SRLM_SERVICE_BIN");
        var candidates = new List<string>();
        if (!string.IsNullOrEmpty(bin)) candidates.AddRange([Path.Combine(bin, "srlm.dll"), Path.Combine(bin, "cli", "srlm.dll")]);
        candidates.Add(Path.Combine(AppContext.BaseDirectory, "srlm.dll")); // the test project references the CLI
        candidates.Add(Path.Combine(RepositoryRoot, "src", "Srlm.Cli", "bin", Configuration, "net10.0", "srlm.dll"));
        return candidates.FirstOrDefault(File.Exists) ?? throw new FileNotFoundException($"srlm.dll not found in {string.Join(", ", candidates)}");
    }

    private static string FindRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "Pipeline.sln"))) return d.FullName;
        throw new DirectoryNotFoundException($"Pipeline.sln not found above {AppContext.BaseDirectory}");
    }
}

/// <summary>One service host running as its own OS process (`dotnet srlm-NAME.dll`) with a given environment,
/// its stdout/stderr captured to a log file. Kill() is SIGKILL (no graceful stop, unacknowledged work goes back
/// to the broker); Restart() starts it again with the same environment and log file.</summary>
public sealed class ServiceProcess : IAsyncDisposable
{
    private readonly string _dll;
    private readonly IReadOnlyList<string> _arguments;
    private readonly IReadOnlyDictionary<string, string> _env;
    private Process? _process;
    private StreamWriter? _log;

    /// <param name="arguments">after the dll, e.g. the service a fault host runs.</param>
    public ServiceProcess(string name, string dll, IReadOnlyDictionary<string, string> environment, string logFile, IReadOnlyList<string>? arguments = null)
    {
        Name = name;
        _dll = dll;
        _arguments = arguments ?? [];
        _env = environment;
        LogFile = logFile;
    }

    public string Name { get; }
    public string LogFile { get; }
    public IReadOnlyDictionary<string, string> Environment => _env;
    public int? Pid => _process is { HasExited: false } p ? p.Id : null;
    public bool IsRunning => _process is { HasExited: false };
    public int? ExitCode => _process is { HasExited: true } p ? p.ExitCode : null;

    public void Start()
    {
        if (IsRunning) throw new InvalidOperationException($"{Name} is already running (pid {Pid})");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(_dll);
        foreach (var a in _arguments) psi.ArgumentList.Add(a);
        foreach (var (k, v) in _env) psi.Environment[k] = v;
        _log ??= new StreamWriter(LogFile, append: true) { AutoFlush = true };
        var log = _log;
        lock (log) log.WriteLine($"---- {DateTimeOffset.UtcNow:O} start {Name}: dotnet {string.Join(' ', [_dll, .. _arguments])}");
        _process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {Name}");
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>SIGKILL: the process gets no chance to finish, acknowledge or clean up.</summary>
    public void Kill()
    {
        if (_process is null || _process.HasExited) return;
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit(10_000);
        lock (_log!) _log.WriteLine($"---- {DateTimeOffset.UtcNow:O} killed {Name} (SIGKILL)");
    }

    /// <summary>SIGTERM and wait: the host stops gracefully.</summary>
    public async Task StopAsync(TimeSpan? timeout = null)
    {
        if (_process is null || _process.HasExited) return;
        using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) term.WaitForExit();
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        try { await _process.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { Kill(); }
    }

    public void Restart()
    {
        Kill();
        Start();
    }

    /// <summary>Runs this host's `--health` probe as a separate process with the same environment.</summary>
    public async Task<(int ExitCode, string Output)> ProbeHealthAsync()
    {
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(_dll);
        foreach (var a in _arguments) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--health");
        foreach (var (k, v) in _env) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException) { p.Kill(entireProcessTree: true); return (-1, $"{Name} --health did not answer within 60 s"); }
        return (p.ExitCode, (await stdout + await stderr).Trim());
    }

    public string ReadLog()
    {
        lock (_log ?? new object())
        {
            using var fs = new FileStream(LogFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            return new StreamReader(fs).ReadToEnd();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(15));
        _process?.Dispose();
        _log?.Dispose();
    }
}

/// <summary>A set of service processes sharing one environment (bus, store, checkpoints), each with its own
/// health file and log under <see cref="Folder"/>. The deployment tests reuse it for "compose without containers".</summary>
public sealed class ServiceHarness : IAsyncDisposable
{
    private readonly List<ServiceProcess> _processes = new();

    public ServiceHarness(IReadOnlyDictionary<string, string> environment, string? folder = null)
    {
        Folder = folder ?? Directory.CreateTempSubdirectory("srlm-services-").FullName;
        Environment = new Dictionary<string, string>(environment)
        {
            ["SRLM_THREADS"] = environment.TryGetValue("SRLM_THREADS", out var t) ? t : "1",
            ["DOTNET_NOLOGO"] = "1",
            ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
        };
    }

    public string Folder { get; }
    public Dictionary<string, string> Environment { get; }
    public IReadOnlyList<ServiceProcess> Processes => _processes;

    /// <summary>The srlm.dll that <see cref="CliAsync"/> runs (null: <see cref="ServiceBinaries.CliDll"/>), e.g. a published copy.</summary>
    public string? CliDll { get; set; }

    /// <summary>Starts one more process of a service (`judge` twice gives two competing replicas).</summary>
    public ServiceProcess Start(string service, IReadOnlyDictionary<string, string>? extraEnvironment = null, string? dll = null)
    {
        var index = _processes.Count(p => p.Name.StartsWith(service + "-", StringComparison.Ordinal));
        var name = $"{service}-{index}";
        var env = new Dictionary<string, string>(Environment) { ["SRLM_HEALTH_FILE"] = Path.Combine(Folder, name + ".health") };
        if (extraEnvironment is not null) foreach (var (k, v) in extraEnvironment) env[k] = v;
        var p = new ServiceProcess(name, dll ?? ServiceBinaries.HostDll(service), env, Path.Combine(Folder, name + ".log"));
        _processes.Add(p);
        p.Start();
        return p;
    }

    /// <summary>Starts one more process of a service through the fault host (srlm-faulthost SERVICE) with the faults
    /// that <paramref name="faults"/> asks for (SRLM_TEST_* variables): the same service library, one fault module more.</summary>
    public ServiceProcess StartWithFaults(string service, IReadOnlyDictionary<string, string> faults)
    {
        var index = _processes.Count(p => p.Name.StartsWith(service + "-", StringComparison.Ordinal));
        var name = $"{service}-{index}";
        var env = new Dictionary<string, string>(Environment) { ["SRLM_HEALTH_FILE"] = Path.Combine(Folder, name + ".health") };
        foreach (var (k, v) in faults) env[k] = v;
        var p = new ServiceProcess(name, ServiceBinaries.FaultHostDll(), env, Path.Combine(Folder, name + ".log"), [service]);
        _processes.Add(p);
        p.Start();
        return p;
    }

    /// <summary>Runs the srlm CLI once with the harness environment; returns exit code and output.</summary>
    public async Task<(int ExitCode, string Output)> CliAsync(TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet");
        psi.ArgumentList.Add(CliDll ?? ServiceBinaries.CliDll());
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in Environment) psi.Environment[k] = v;
        var r = await Srlm.LocalBroker.BoundedProcess.RunAsync(psi, timeout);
        return r.TimedOut ? (-1, $"srlm {string.Join(' ', args)} timed out after {timeout}") : (r.ExitCode, r.Output);
    }

    /// <summary>Polls until the condition holds or the timeout passes; the message says what was awaited.</summary>
    public static async Task WaitUntilAsync(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition()) return;
            await Task.Delay(250);
        }
        throw new TimeoutException($"not reached within {timeout.TotalSeconds:F0} s: {what}");
    }

    /// <summary>All logs, for a failed assertion's message.</summary>
    public string Logs(int tailLines = 40) => string.Join("\n", _processes.Select(p =>
        $"== {p.Name} (pid {p.Pid?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "exited"})\n" +
        string.Join("\n", p.ReadLog().Split('\n').TakeLast(tailLines))));

    public async ValueTask DisposeAsync()
    {
        foreach (var p in _processes) await p.DisposeAsync();
        if (System.Environment.GetEnvironmentVariable("SRLM_KEEP_TEST_DIRS") is null)
        {
            try { Directory.Delete(Folder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
