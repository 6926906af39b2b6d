namespace Srlm.Trainer;

/// <summary>The seam through which a test host puts a fault into a training job (a hang mid-job, a hold before the
/// hand-off or before a control arm's DPO). Production hosts register none and get <see cref="TrainingJobHooks.None"/>,
/// which does nothing; no setting of a deployed trainer reaches another implementation (the fault-injecting one lives
/// in tests/Srlm.FaultHost, a host only the fault tests run).</summary>
public interface ITrainingJobHooks
{
    /// <summary>Called on the training thread with each progress row of a job's main arm, before the state of that
    /// step is saved.</summary>
    void MainArmReported(JobRecord job, TrainingRow row);

    /// <summary>Called once a job's checkpoints are stored, before its hand-off is published. <paramref name="heartbeat"/>
    /// renews the job and says whether it is still this worker's. False: stop (another worker has the job, or its run
    /// ended).</summary>
    Task<bool> BeforeHandOffAsync(JobRecord job, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct);

    /// <summary>Called before a control arm's DPO; as <see cref="BeforeHandOffAsync"/>.</summary>
    Task<bool> BeforeControlDpoAsync(JobRecord job, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct);
}

/// <summary>No hooks: what every production host runs.</summary>
public sealed class TrainingJobHooks : ITrainingJobHooks
{
    public static ITrainingJobHooks None { get; } = new TrainingJobHooks();

    private TrainingJobHooks() { }

    public void MainArmReported(JobRecord job, TrainingRow row) { }

    public Task<bool> BeforeHandOffAsync(JobRecord job, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct) => Task.FromResult(true);

    public Task<bool> BeforeControlDpoAsync(JobRecord job, Func<CancellationToken, Task<bool>> heartbeat, CancellationToken ct) => Task.FromResult(true);
}
