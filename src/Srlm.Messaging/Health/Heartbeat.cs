namespace Srlm.Messaging.Health;

/// <summary>What the running service writes to its heartbeat file every interval, and what `--health` reads.</summary>
public sealed record HeartbeatRecord
{
    public required string Service { get; init; }
    public required int Pid { get; init; }
    public required DateTimeOffset Time { get; init; }
    public required string Status { get; init; }

    /// <summary>Each health check's status and description (broker: "masstransit-bus", store: "store").</summary>
    public required Dictionary<string, string> Checks { get; init; }
    /// <summary>The device the service's models run on ("cpu", "cuda:0"); absent in files written before it was recorded.</summary>
    public string? Device { get; init; }

    internal static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false };
}

/// <summary>Runs the health checks (broker and store) every interval and rewrites the heartbeat file
/// atomically, so a probe in another process (a Dockerfile HEALTHCHECK running `srlm-judge --health`)
/// can tell whether this process is alive and connected.</summary>
public sealed partial class HeartbeatService(HealthCheckService checks, SrlmOptions options, ILogger<HeartbeatService> log) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var file = options.Health.File;
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(file))!);
        string? lastStatus = null;
        while (!stoppingToken.IsCancellationRequested)
        {
            HealthReport report;
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                timeout.CancelAfter(options.Health.Interval * 2);
                report = await checks.CheckHealthAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested) { break; }
            catch (OperationCanceledException)
            {
                report = new HealthReport(new Dictionary<string, HealthReportEntry>
                {
                    ["health-checks"] = new(HealthStatus.Unhealthy, "health checks timed out", TimeSpan.Zero, null, null),
                }, TimeSpan.Zero);
            }
            var record = new HeartbeatRecord
            {
                Service = options.ServiceName, Pid = Environment.ProcessId, Time = DateTimeOffset.UtcNow, Status = report.Status.ToString(),
                Checks = report.Entries.ToDictionary(e => e.Key, e => $"{e.Value.Status}: {e.Value.Description ?? e.Value.Exception?.Message ?? ""}".TrimEnd(' ', ':')),
                Device = Srlm.Model.TorchRuntime.Describe(Srlm.Model.TorchRuntime.Device),
            };
            Write(file, record);
            if (record.Status != lastStatus)
            {
                LogHealthChanged(log, options.ServiceName, record.Status, string.Join("; ", record.Checks.Select(c => $"{c.Key}={c.Value}")));
                lastStatus = record.Status;
            }
            try { await Task.Delay(options.Health.Interval, stoppingToken); }
            catch (OperationCanceledException) { break; }
        }
        // A stopped service is not healthy: say so at once rather than waiting for the heartbeat to age.
        try
        {
            Write(file, new HeartbeatRecord
            {
                Service = options.ServiceName, Pid = Environment.ProcessId, Time = DateTimeOffset.UtcNow, Status = "Stopped",
                Checks = new Dictionary<string, string>(),
            });
        }
        catch (IOException) { }
    }

    public static void Write(string file, HeartbeatRecord record)
    {
        var tmp = file + "." + Environment.ProcessId + ".tmp";
        File.WriteAllText(tmp, JsonSerializer.Serialize(record, HeartbeatRecord.Json));
        File.Move(tmp, file, overwrite: true);
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information, Message = "{Service} health is now {Status} ({Checks})")]
    private static partial void LogHealthChanged(ILogger logger, string service, string status, string checks);
}

/// <summary>The `--health` probe: reads the heartbeat file of a service running in another process.</summary>
public static class HealthProbe
{
    /// <returns>(healthy, one line saying why).</returns>
    public static (bool Healthy, string Reason) Check(HealthOptions options, DateTimeOffset? now = null)
    {
        var file = options.File;
        if (!File.Exists(file)) return (false, $"no heartbeat file {file} (service not started?)");
        HeartbeatRecord? record;
        try { record = JsonSerializer.Deserialize<HeartbeatRecord>(File.ReadAllText(file), HeartbeatRecord.Json); }
        catch (Exception e) when (e is JsonException or IOException) { return (false, $"unreadable heartbeat file {file}: {e.Message}"); }
        if (record is null) return (false, $"empty heartbeat file {file}");
        var age = (now ?? DateTimeOffset.UtcNow) - record.Time;
        var checks = string.Join("; ", record.Checks.Select(c => $"{c.Key}={c.Value}"));
        if (record.Device is { } device) checks = checks.Length == 0 ? $"device={device}" : $"{checks}; device={device}";
        if (age > options.MaxAge) return (false, $"{record.Service} (pid {record.Pid}) heartbeat is {age.TotalSeconds:F0} s old (max {options.MaxAge.TotalSeconds:F0} s)");
        if (record.Status != nameof(HealthStatus.Healthy)) return (false, $"{record.Service} (pid {record.Pid}) is {record.Status}: {checks}");
        return (true, $"{record.Service} (pid {record.Pid}) is Healthy: {checks}");
    }
}
