namespace Srlm.Trainer;

/// <summary>Progress of the job this process is training now (for `srlm run`'s progress bars).</summary>
public sealed class TrainingStatus
{
    private readonly ConcurrentDictionary<string, (int Step, int Total)> _jobs = new(StringComparer.Ordinal);

    public void Report(string jobId, int step, int total) => _jobs[jobId] = (step, total);

    public IReadOnlyDictionary<string, (int Step, int Total)> Jobs => _jobs;
}
