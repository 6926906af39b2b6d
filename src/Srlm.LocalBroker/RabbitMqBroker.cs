using System.Net;
using System.Net.Sockets;

namespace Srlm.LocalBroker;

/// <summary>A RabbitMQ broker for a test class or collection, or for a benchmark (`srlm bench pipeline`): the one launcher
/// both use. In order of preference: RABBITMQ_URI (an existing broker), a private node started from Debian's
/// rabbitmq-server on free ports with its own data, log and cookie folders (restartable mid-test), or a fallback the
/// caller supplies (the integration tests pass Testcontainers.RabbitMq, used where a Docker engine runs). When none
/// can start, the reason says why: tests skip with it locally and FAIL when CI=true.</summary>
public abstract class RabbitMqBroker : IAsyncDisposable
{
    /// <summary>amqp://user:pass@host:port/vhost, the form SRLM_BUS takes.</summary>
    public abstract string AmqpUri { get; }

    /// <summary>Whether this broker can be stopped and started again by the test (a private node can).</summary>
    public virtual bool CanRestart => false;

    public virtual Task StopAsync() => throw new NotSupportedException($"{GetType().Name} cannot be stopped by a test");

    public virtual Task StartAgainAsync() => throw new NotSupportedException($"{GetType().Name} cannot be restarted by a test");

    public abstract ValueTask DisposeAsync();

    /// <summary>Starts the best broker available, or returns (null, reason).</summary>
    /// <param name="needRestart">the caller stops and restarts the broker (only a private node can be).</param>
    /// <param name="fallback">tried last when the caller need not restart (e.g. a container where Docker runs).</param>
    public static async Task<(RabbitMqBroker? Broker, string? SkipReason)> StartAsync(bool needRestart = false,
        Func<Task<(RabbitMqBroker? Broker, string? Reason)>>? fallback = null)
    {
        var uri = Environment.GetEnvironmentVariable("RABBITMQ_URI");
        if (!string.IsNullOrWhiteSpace(uri) && !needRestart) return (new ExternalBroker(uri), null);

        var reasons = new List<string>();
        if (!string.IsNullOrWhiteSpace(uri)) reasons.Add("RABBITMQ_URI is set but this test must stop and restart the broker");
        if (File.Exists(PrivateRabbitMqNode.ServerPath))
        {
            try { return (await PrivateRabbitMqNode.StartAsync(), null); }
            catch (Exception e) { reasons.Add($"private node failed: {e.Message}"); }
        }
        else reasons.Add($"{PrivateRabbitMqNode.ServerPath} not installed (apt-get install rabbitmq-server)");

        if (!needRestart && fallback is not null)
        {
            var (other, why) = await fallback();
            if (other is not null) return (other, null);
            reasons.Add(why ?? "the fallback broker did not start");
        }
        return (null, "no RabbitMQ broker: " + string.Join("; ", reasons));
    }

    /// <summary>A TCP port free on the loopback interface now.</summary>
    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}

public sealed class ExternalBroker(string uri) : RabbitMqBroker
{
    public override string AmqpUri => uri;
    public override ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>A private RabbitMQ node: /usr/lib/rabbitmq/bin/rabbitmq-server run directly (Debian's /usr/sbin
/// wrappers switch to the rabbitmq user when run as root), free AMQP, distribution and epmd ports, no plugins
/// (so no management or prometheus listeners), its own mnesia/log folders and HOME with its own Erlang
/// cookie (which rabbitmqctl then finds too). Stop/StartAgain keep the data folder, so durable queues and
/// their messages survive a restart like on a real deployment.</summary>
public sealed class PrivateRabbitMqNode : RabbitMqBroker
{
    public const string ServerPath = "/usr/lib/rabbitmq/bin/rabbitmq-server";
    public const string CtlPath = "/usr/lib/rabbitmq/bin/rabbitmqctl";
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(300); // 120 s was not enough at a load average of 70

    private readonly string _dir;
    private readonly Dictionary<string, string> _env;
    private Process? _server;

    private PrivateRabbitMqNode(string dir, string nodeName, int amqpPort, int distPort, int epmdPort)
    {
        _dir = dir;
        NodeName = nodeName;
        AmqpPort = amqpPort;
        EpmdPort = epmdPort;
        var home = Path.Combine(dir, "home");
        Directory.CreateDirectory(home);
        Directory.CreateDirectory(Path.Combine(dir, "mnesia"));
        Directory.CreateDirectory(Path.Combine(dir, "log"));
        var cookie = Path.Combine(home, ".erlang.cookie");
        File.WriteAllText(cookie, Convert.ToHexString(Guid.NewGuid().ToByteArray()));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(cookie, UnixFileMode.UserRead);
        File.WriteAllText(Path.Combine(dir, "enabled_plugins"), "[].\n");
        File.WriteAllText(Path.Combine(dir, "rabbitmq.conf"), "loopback_users = none\ndisk_free_limit.absolute = 10MB\nlog.console = false\n");
        _env = new Dictionary<string, string>
        {
            ["HOME"] = home,
            ["RABBITMQ_NODENAME"] = nodeName,
            ["RABBITMQ_NODE_IP_ADDRESS"] = "127.0.0.1",
            ["RABBITMQ_NODE_PORT"] = amqpPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RABBITMQ_DIST_PORT"] = distPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["ERL_EPMD_PORT"] = epmdPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["RABBITMQ_MNESIA_BASE"] = Path.Combine(dir, "mnesia"),
            ["RABBITMQ_LOG_BASE"] = Path.Combine(dir, "log"),
            ["RABBITMQ_ENABLED_PLUGINS_FILE"] = Path.Combine(dir, "enabled_plugins"),
            ["RABBITMQ_CONFIG_FILE"] = Path.Combine(dir, "rabbitmq.conf"),
            ["RABBITMQ_CONF_ENV_FILE"] = Path.Combine(dir, "no-env-file"),
            ["RABBITMQ_ADVANCED_CONFIG_FILE"] = Path.Combine(dir, "no-advanced.config"),
        };
    }

    public string NodeName { get; }
    public int AmqpPort { get; }
    public int EpmdPort { get; }
    public string LogFolder => Path.Combine(_dir, "log");
    public override string AmqpUri => $"amqp://guest:guest@127.0.0.1:{AmqpPort}/";
    public override bool CanRestart => true;

    public static async Task<PrivateRabbitMqNode> StartAsync()
    {
        var dir = Directory.CreateTempSubdirectory("srlm-rabbit-").FullName;
        var node = new PrivateRabbitMqNode(dir, $"srlmtest-{Environment.ProcessId}-{Path.GetFileName(dir)[^6..]}@localhost",
            FreePort(), FreePort(), FreePort());
        try
        {
            await node.StartServerAsync();
            return node;
        }
        catch
        {
            await node.DisposeAsync();
            throw;
        }
    }

    private async Task StartServerAsync()
    {
        var psi = new ProcessStartInfo(ServerPath) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var (k, v) in _env) psi.Environment[k] = v;
        var output = Path.Combine(_dir, "server.out");
        _server = Process.Start(psi) ?? throw new InvalidOperationException("rabbitmq-server did not start");
        var log = new StreamWriter(output, append: true) { AutoFlush = true };
        _server.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _server.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (log) log.WriteLine(e.Data); };
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();

        // await_startup fails at once while the node is not registered yet: retry until it answers.
        var deadline = DateTime.UtcNow + StartTimeout;
        string last = "";
        while (DateTime.UtcNow < deadline)
        {
            if (_server.HasExited)
                throw new InvalidOperationException($"rabbitmq-server exited with {_server.ExitCode}: {Tail(output)}");
            var (rc, text) = await CtlAsync(TimeSpan.FromSeconds(60), "await_startup", "--timeout", "50");
            if (rc == 0 && await AmqpAnswersAsync()) return;
            last = text;
            await Task.Delay(500);
        }
        throw new TimeoutException($"rabbitmq node {NodeName} not up after {StartTimeout.TotalSeconds} s: {last.Trim().Split('\n').LastOrDefault()} {Tail(output)}");
    }

    private async Task<bool> AmqpAnswersAsync()
    {
        try
        {
            using var c = new TcpClient();
            await c.ConnectAsync(IPAddress.Loopback, AmqpPort);
            return true;
        }
        catch (SocketException) { return false; }
    }

    /// <summary>Runs rabbitmqctl against this node with its cookie and epmd port.</summary>
    public async Task<(int ExitCode, string Output)> CtlAsync(TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(CtlPath);
        psi.ArgumentList.Add("-n");
        psi.ArgumentList.Add(NodeName);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in _env) psi.Environment[k] = v;
        var r = await BoundedProcess.RunAsync(psi, timeout);
        return r.TimedOut ? (-1, "rabbitmqctl timed out") : (r.ExitCode, r.StandardOutput + r.StandardError);
    }

    /// <summary>Stops the node (rabbitmqctl stop, then kill if it lingers). Data stays for StartAgainAsync.</summary>
    public override async Task StopAsync()
    {
        if (_server is null) return;
        if (!_server.HasExited) await CtlAsync(TimeSpan.FromSeconds(30), "stop");
        using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15)))
        {
            try { await _server.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { }
        }
        if (!_server.HasExited) _server.Kill(entireProcessTree: true);
        // The beam process may outlive the wrapper shell briefly: wait until the AMQP port is closed.
        for (int i = 0; i < 100 && await AmqpAnswersAsync(); i++) await Task.Delay(100);
        _server.Dispose();
        _server = null;
    }

    /// <summary>Stops the node with SIGTERM to its Erlang VM, which shuts RabbitMQ down gracefully like `rabbitmqctl
    /// stop` but without booting a second VM for the CLI (seconds instead of tens of seconds on a busy machine). Data
    /// stays for StartAgainAsync.</summary>
    public async Task TerminateAsync()
    {
        if (_server is null) return;
        if (!_server.HasExited)
        {
            var children = $"/proc/{_server.Id}/task/{_server.Id}/children";
            var vms = File.Exists(children) ? File.ReadAllText(children).Split(' ', StringSplitOptions.RemoveEmptyEntries) : [];
            foreach (var pid in vms)
                using (var term = Process.Start("kill", ["-TERM", pid])) term.WaitForExit();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try { await _server.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { }
        }
        await StopAsync(); // what is left: rabbitmqctl stop / kill if the VM lingers, then the AMQP port closed
    }

    public override Task StartAgainAsync() => StartServerAsync();

    public override async ValueTask DisposeAsync()
    {
        try { await StopAsync(); }
        catch (Exception e) { Console.Error.WriteLine($"[rabbitmq] stopping {NodeName} failed: {e.Message}"); }
        // The node started its own epmd on a private port; end it too so nothing is left running.
        try
        {
            var psi = new ProcessStartInfo("epmd", ["-port", EpmdPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "-kill"])
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var p = Process.Start(psi);
            p?.WaitForExit(5000);
        }
        catch (System.ComponentModel.Win32Exception) { }
        if (Environment.GetEnvironmentVariable("SRLM_KEEP_TEST_DIRS") is null)
        {
            try { Directory.Delete(_dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static string Tail(string file)
    {
        try { return string.Join(" | ", File.ReadAllLines(file).TakeLast(5)); }
        catch (IOException) { return ""; }
    }
}
