using Srlm.PairBuilder;

namespace Srlm.Cli.Pipeline;

/// <summary>All four services and evaluation in one process: MassTransit's in-memory transport, the SQLite
/// store and checkpoint folder under DIR, training state under DIR/jobs, logs in DIR/srlm.log. The same
/// service registrations as the distributed hosts; only transport and store differ.</summary>
public static class PipelineHost
{
    public const string StoreFile = "srlm.db";
    public const string LogFile = "srlm.log";

    public static IHost Build(string dir, Action<IServiceCollection>? configure = null)
    {
        dir = Path.GetFullPath(dir);
        Directory.CreateDirectory(dir);
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, ContentRootPath = dir });
        builder.Configuration.AddEnvironmentVariables();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["SRLM_BUS"] = "inmemory",
            ["SRLM_STORE"] = $"sqlite://{Path.Combine(dir, StoreFile)}",
            ["SRLM_CHECKPOINTS"] = Path.Combine(dir, "checkpoints"),
            ["SRLM_HEALTH_FILE"] = Path.Combine(dir, "health.json"),
        });
        var services = builder.Services;
        services.AddSrlmInfrastructure(builder.Configuration);
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new FileLoggerProvider(Path.Combine(dir, LogFile)));
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("MassTransit", LogLevel.Warning);

        services.AddGenerator().AddJudge().AddPairBuilder();
        services.AddTrainer(new TrainingWorkerOptions
        {
            JobsDirectory = Path.Combine(dir, "jobs"),
            // A stable owner: after a restart of `srlm run --resume DIR` its running job is reclaimed at once.
            Owner = "srlm-run",
        });
        foreach (var family in TaskFamilies.All) services.AddSingleton<IAnswerEvaluator>(new TaskFamilyEvaluator(family));
        configure?.Invoke(services);
        services.AddSrlmBus(builder.Configuration, b =>
        {
            b.AddGeneratorConsumers();
            b.AddJudgeConsumers();
            b.AddPairBuilderConsumers();
            b.AddTrainerConsumers();
        });
        return builder.Build();
    }
}

/// <summary>Appends log lines to one file (the terminal shows progress bars instead of logs).</summary>
public sealed class FileLoggerProvider(string path) : ILoggerProvider
{
    private readonly StreamWriter _writer = new(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
    private readonly Lock _lock = new();

    public ILogger CreateLogger(string categoryName) => new FileLogger(this, categoryName);

    public void Dispose() { lock (_lock) _writer.Dispose(); }

    private void Write(string line) { lock (_lock) _writer.WriteLine(line); }

    private sealed class FileLogger(FileLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var line = $"{DateTime.UtcNow:HH:mm:ss.fff} {logLevel.ToString()[..4].ToLowerInvariant()} {category}: {formatter(state, exception)}";
            if (exception is not null) line += $"\n  {exception.GetType().Name}: {exception.Message}";
            owner.Write(line);
        }
    }
}
