namespace Srlm.Trainer;

/// <summary>Where and as whom this process runs training jobs.</summary>
public sealed record TrainingWorkerOptions
{
    /// <summary>Folder of the jobs' training state (resumable) and outputs. SRLM_JOBS_DIR.</summary>
    public string JobsDirectory { get; init; } = Path.Combine(Path.GetTempPath(), "srlm-jobs");

    /// <summary>This worker's name in job records; a stable name (e.g. for `srlm run DIR`) reclaims its own
    /// running jobs immediately after a restart instead of waiting for them to go stale.</summary>
    public string Owner { get; init; } = $"{Environment.MachineName}/{Environment.ProcessId}";

    /// <summary>A running job whose heartbeat is older than this belongs to a dead worker and is taken over.</summary>
    public TimeSpan StaleAfter { get; init; } = TimeSpan.FromMinutes(2);

    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How often to look for jobs queued by other processes.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The longest pause between two tries of a hand-off publish that failed (the broker down or restarting);
    /// the pause starts at a second and doubles up to this.</summary>
    public TimeSpan HandOffRetryMaxDelay { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The service host's options from its environment: SRLM_JOBS_DIR (state folder; every trainer
    /// replica of a deployment must see the same one to resume another's job), SRLM_JOB_STALE_S (seconds without a
    /// heartbeat after which another worker takes a running job over).</summary>
    public static TrainingWorkerOptions FromEnvironment(Func<string, string?> get)
    {
        ArgumentNullException.ThrowIfNull(get);
        var o = new TrainingWorkerOptions();
        if (get("SRLM_JOBS_DIR") is { Length: > 0 } dir) o = o with { JobsDirectory = Path.GetFullPath(dir) };
        if (get("SRLM_JOB_STALE_S") is { Length: > 0 } stale)
        {
            if (!double.TryParse(stale, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) || s < 1 || s > 86400)
                throw new Srlm.Messaging.Configuration.SrlmConfigurationException($"SRLM_JOB_STALE_S must be a number of seconds in [1, 86400], got '{stale}'");
            if (TimeSpan.FromSeconds(s) < o.HeartbeatInterval * 2)
                throw new Srlm.Messaging.Configuration.SrlmConfigurationException($"SRLM_JOB_STALE_S ({s}) must be at least twice the job heartbeat interval ({o.HeartbeatInterval.TotalSeconds} s)");
            o = o with { StaleAfter = TimeSpan.FromSeconds(s) };
        }
        return o;
    }
}
