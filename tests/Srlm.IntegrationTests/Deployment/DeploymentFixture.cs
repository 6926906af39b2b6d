namespace Srlm.IntegrationTests.Deployment;

/// <summary>What the "compose without containers" tests share: a private RabbitMQ node the tests may stop and
/// start, and docker-compose.yml resolved by `docker-compose config` with .env.example (the services' environment
/// is taken from that output, never retyped). The published binaries come from <see cref="PublishedServices"/>.</summary>
public sealed class DeploymentFixture : IAsyncLifetime
{
    public const string EnvFile = ".env.example";
    public const string ComposeFile = "docker-compose.yml";

    private readonly RestartableRabbitMqFixture _broker = new();
    private ComposeConfig? _compose;
    private string? _composeError;

    public Task InitializeAsync() => _broker.InitializeAsync();

    public Task DisposeAsync() => _broker.DisposeAsync();

    /// <summary>The private node, or a skip (locally) / failure (CI=true) saying why none started.</summary>
    public PrivateRabbitMqNode RequireBroker() => _broker.Require();

    /// <summary>The resolved compose model, or a skip (locally) / failure (CI=true, where .ci/run installs docker-compose).</summary>
    public ComposeConfig RequireCompose()
    {
        if (ComposeConfig.SkipReason is { } why)
        {
            if (RabbitMqFixture.InCi) throw new InvalidOperationException($"CI=true and {why}");
            Skip.If(true, why);
        }
        if (_compose is null && _composeError is null)
        {
            try { _compose = ComposeConfig.Load(EnvFile, ComposeFile); }
            catch (InvalidOperationException e) { _composeError = e.Message; }
        }
        return _compose ?? throw new InvalidOperationException(_composeError);
    }

    /// <summary>A fresh virtual host for the compose file's broker user on the private node: the vhost named in
    /// SRLM_BUS is deleted (with every queue and message an earlier test left) and created again, and the user
    /// and password of SRLM_BUS are created (once) and given full rights on it. This is what the rabbitmq image
    /// does with RABBITMQ_DEFAULT_USER/PASS/VHOST on its first start.</summary>
    public async Task PrepareBrokerUserAsync(PrivateRabbitMqNode node, string srlmBus)
    {
        var bus = BusOptions.Parse(srlmBus);
        var timeout = TimeSpan.FromSeconds(180); // rabbitmqctl starts an Erlang VM: over a minute on a heavily loaded machine
        if (!await AnswersAsync(node.AmqpPort)) await node.StartAgainAsync(); // an earlier test failed with the node stopped
        await node.CtlAsync(timeout, "delete_vhost", bus.VirtualHost); // fails harmlessly when absent
        await Ctl(node, timeout, "add_vhost", bus.VirtualHost);
        var (rc, output) = await node.CtlAsync(timeout, "add_user", bus.Username, bus.Password);
        if (rc != 0 && !output.Contains("already exists", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"rabbitmqctl add_user {bus.Username} failed ({rc}): {output.Replace(bus.Password, "***", StringComparison.Ordinal)}");
        await Ctl(node, timeout, "set_permissions", "-p", bus.VirtualHost, bus.Username, ".*", ".*", ".*");
    }

    private static async Task<bool> AnswersAsync(int port)
    {
        try
        {
            using var c = new System.Net.Sockets.TcpClient();
            await c.ConnectAsync(System.Net.IPAddress.Loopback, port);
            return true;
        }
        catch (System.Net.Sockets.SocketException) { return false; }
    }

    private static async Task Ctl(PrivateRabbitMqNode node, TimeSpan timeout, params string[] args)
    {
        var (rc, output) = await node.CtlAsync(timeout, args);
        if (rc != 0) throw new InvalidOperationException($"rabbitmqctl {string.Join(' ', args)} failed ({rc}): {output}");
    }

    /// <summary>A service's environment from `docker-compose config`, with only what must differ outside
    /// containers rewritten: the broker's address (rabbitmq:5672 is a compose network name) becomes the private
    /// node's 127.0.0.1:port with the same user, password and vhost; SRLM_STORE becomes SQLite (the compose value
    /// is MongoDB, and no MongoDB server runs here); SRLM_CHECKPOINTS "gridfs" lives inside MongoDB, so it becomes
    /// a directory (the compose alternative, a shared volume path). Every other variable is kept as resolved.
    /// <paramref name="notes"/> gets one line per rewrite, credentials redacted.</summary>
    public static Dictionary<string, string> ProcessEnvironment(ComposeConfig compose, string service, int amqpPort, string folder, List<string> notes)
    {
        var env = new Dictionary<string, string>(compose.Environment(service), StringComparer.Ordinal);
        const string ComposeBroker = "@rabbitmq:5672/";
        var bus = env["SRLM_BUS"];
        if (!bus.Contains(ComposeBroker, StringComparison.Ordinal))
            throw new InvalidOperationException($"compose SRLM_BUS {Redact.Uri(bus)} does not name {ComposeBroker}: update this test with the compose file");
        env["SRLM_BUS"] = bus.Replace(ComposeBroker, $"@127.0.0.1:{amqpPort}/", StringComparison.Ordinal);
        notes.Add($"SRLM_BUS: {Redact.Uri(bus)} -> {Redact.Uri(env["SRLM_BUS"])} (the private broker node; same user, password, vhost)");

        var store = "sqlite://" + Path.Combine(folder, "srlm.db");
        notes.Add($"SRLM_STORE: {Redact.Uri(env["SRLM_STORE"])} -> {store} (the compose default is MongoDB; no MongoDB server runs here, so the SQLite backend stands in)");
        env["SRLM_STORE"] = store;

        var checkpoints = Path.Combine(folder, "checkpoints");
        notes.Add($"SRLM_CHECKPOINTS: {env["SRLM_CHECKPOINTS"]} -> {checkpoints} (GridFS is inside MongoDB; a shared directory like the compose volume instead)");
        env["SRLM_CHECKPOINTS"] = checkpoints;
        foreach (var (k, v) in env.Where(kv => kv.Key is not ("SRLM_BUS" or "SRLM_STORE" or "SRLM_CHECKPOINTS")))
            notes.Add($"{k}={v} (as compose resolves it)");
        return env;
    }
}
