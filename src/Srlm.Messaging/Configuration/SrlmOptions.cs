namespace Srlm.Messaging.Configuration;

/// <summary>A configuration mistake found at start-up: one line naming the variable and what it must look like.</summary>
public sealed class SrlmConfigurationException(string message) : Exception(message);

/// <summary>Which transport the bus runs on.</summary>
public enum BusTransport { InMemory, RabbitMq }

/// <summary>SRLM_BUS parsed: `inmemory` or `amqp://user:pass@host:port/vhost` (`amqps://` for TLS).</summary>
public sealed record BusOptions
{
    public required BusTransport Transport { get; init; }
    public string Host { get; init; } = "localhost";
    public int Port { get; init; } = 5672;
    public string VirtualHost { get; init; } = "/";
    public string Username { get; init; } = "guest";
    public string Password { get; init; } = "guest";
    public bool UseTls { get; init; }

    /// <summary>The original text, credentials redacted: safe for logs.</summary>
    public required string Display { get; init; }

    public static BusOptions InMemory { get; } = new() { Transport = BusTransport.InMemory, Display = "inmemory" };

    public static BusOptions Parse(string? raw)
    {
        if (string.IsNullOrWhiteSpace(raw) || raw.Trim().Equals("inmemory", StringComparison.OrdinalIgnoreCase)) return InMemory;
        raw = raw.Trim();
        var display = Redact.Uri(raw);
        if (!Uri.TryCreate(raw, UriKind.Absolute, out var uri) || uri.Scheme is not ("amqp" or "amqps") || string.IsNullOrEmpty(uri.Host))
            throw new SrlmConfigurationException($"SRLM_BUS must be 'inmemory' or amqp://user:pass@host:port/vhost, got '{display}'");
        string user = "guest", pass = "guest";
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            var parts = uri.UserInfo.Split(':', 2);
            user = Uri.UnescapeDataString(parts[0]);
            pass = parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "";
            if (user.Length == 0) throw new SrlmConfigurationException($"SRLM_BUS has an empty user name: '{display}'");
        }
        var path = uri.AbsolutePath.TrimStart('/');
        var vhost = path.Length == 0 ? "/" : Uri.UnescapeDataString(path);
        var tls = uri.Scheme == "amqps";
        return new BusOptions
        {
            Transport = BusTransport.RabbitMq, Host = uri.Host, Port = uri.IsDefaultPort || uri.Port <= 0 ? (tls ? 5671 : 5672) : uri.Port,
            VirtualHost = vhost, Username = user, Password = pass, UseTls = tls, Display = display,
        };
    }
}

/// <summary>How a service reports its health to a probe in another process (`--health`, a Dockerfile HEALTHCHECK).</summary>
public sealed record HealthOptions
{
    /// <summary>SRLM_HEALTH_FILE: the heartbeat file the running service rewrites every Interval.</summary>
    public required string File { get; init; }

    /// <summary>SRLM_HEALTH_INTERVAL_S: seconds between heartbeats (default 5).</summary>
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A heartbeat older than this (SRLM_HEALTH_MAX_AGE_S, default 30 s, at least 2 intervals) means the service is hung or gone.</summary>
    public TimeSpan MaxAge { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Infrastructure of one process, all from the environment (the same for every process, container or
/// not): SRLM_BUS, SRLM_STORE, SRLM_CHECKPOINTS, SRLM_THREADS, SRLM_DEVICE, plus health and telemetry settings.
/// Behaviour is not here: it comes from the run spec stored with the run.</summary>
public sealed record SrlmOptions
{
    public required BusOptions Bus { get; init; }

    /// <summary>Whether SRLM_BUS was given at all (a standalone service host requires it).</summary>
    public required bool BusConfigured { get; init; }

    /// <summary>SRLM_STORE, as given (null: the store's default). Parsed by Srlm.Storage's factory.</summary>
    public string? Store { get; init; }

    /// <summary>SRLM_CHECKPOINTS, as given (null: the store's default).</summary>
    public string? Checkpoints { get; init; }

    /// <summary>SRLM_THREADS: libtorch intra-op threads (null: libtorch's default).</summary>
    public int? Threads { get; init; }

    /// <summary>SRLM_DEVICE as given (null: cuda when libtorch sees a GPU, else cpu); its syntax is checked here, whether
    /// libtorch sees that GPU when the host starts (<see cref="Srlm.Model.TorchRuntime.UseDevice"/>).</summary>
    public string? Device { get; init; }

    /// <summary>OTEL_EXPORTER_OTLP_ENDPOINT: when set, traces and metrics are exported over OTLP.</summary>
    public Uri? OtlpEndpoint { get; init; }

    public required HealthOptions Health { get; init; }

    /// <summary>The service name used in logs, the health file name and the bus's host info.</summary>
    public string ServiceName { get; init; } = "srlm";

    /// <summary>Reads and validates every variable; throws <see cref="SrlmConfigurationException"/> naming the one at fault.</summary>
    public static SrlmOptions FromConfiguration(IConfiguration configuration, string serviceName = "srlm")
    {
        string? Get(string key) => configuration[key] is { Length: > 0 } v ? v : null;

        var busRaw = Get("SRLM_BUS");
        var bus = BusOptions.Parse(busRaw);

        int? threads = null;
        if (Get("SRLM_THREADS") is { } t)
        {
            if (!int.TryParse(t, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n) || n < 1)
                throw new SrlmConfigurationException($"SRLM_THREADS must be a positive integer, got '{t}'");
            threads = n;
        }

        var device = Get(Srlm.Model.TorchRuntime.DeviceVariable);
        try { Srlm.Model.TorchRuntime.ParseDevice(device); }
        catch (ArgumentException e) { throw new SrlmConfigurationException(e.Message); }

        Uri? otlp = null;
        if (Get("OTEL_EXPORTER_OTLP_ENDPOINT") is { } o)
        {
            if (!Uri.TryCreate(o, UriKind.Absolute, out otlp) || otlp.Scheme is not ("http" or "https"))
                throw new SrlmConfigurationException($"OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL, got '{Redact.Uri(o)}'");
        }

        var interval = Seconds(Get("SRLM_HEALTH_INTERVAL_S"), "SRLM_HEALTH_INTERVAL_S", 5);
        var maxAge = Seconds(Get("SRLM_HEALTH_MAX_AGE_S"), "SRLM_HEALTH_MAX_AGE_S", Math.Max(30, interval.TotalSeconds * 3));
        if (maxAge < interval * 2)
            throw new SrlmConfigurationException($"SRLM_HEALTH_MAX_AGE_S ({maxAge.TotalSeconds}) must be at least twice SRLM_HEALTH_INTERVAL_S ({interval.TotalSeconds})");
        var file = Get("SRLM_HEALTH_FILE") ?? Path.Combine(Path.GetTempPath(), $"srlm-{serviceName}.health");

        return new SrlmOptions
        {
            Bus = bus, BusConfigured = busRaw is not null, Store = Get("SRLM_STORE"), Checkpoints = Get("SRLM_CHECKPOINTS"),
            Threads = threads, Device = device, OtlpEndpoint = otlp, ServiceName = serviceName,
            Health = new HealthOptions { File = file, Interval = interval, MaxAge = maxAge },
        };
    }

    private static TimeSpan Seconds(string? raw, string name, double fallback)
    {
        if (raw is null) return TimeSpan.FromSeconds(fallback);
        if (!double.TryParse(raw, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) || s <= 0 || s > 3600)
            throw new SrlmConfigurationException($"{name} must be a number of seconds in (0, 3600], got '{raw}'");
        return TimeSpan.FromSeconds(s);
    }

    /// <summary>One line for the start-up log, with every credential redacted.</summary>
    public string Describe() =>
        $"service={ServiceName} bus={Bus.Display} store={Redact.Uri(Store ?? "(default)")} checkpoints={Redact.Uri(Checkpoints ?? "(default)")} threads={(Threads?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "(default)")}";
}
