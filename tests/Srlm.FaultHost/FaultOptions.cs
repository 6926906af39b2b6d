using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Srlm.Training;

namespace Srlm.FaultHost;

/// <summary>The faults a test asks this host for, from its environment:
/// SRLM_TEST_NON_IDEMPOTENT=judgement (judge samples stored carelessly, <see cref="NonIdempotentStore"/>),
/// SRLM_TEST_HANG_AFTER_STEP=N (the training thread stops for good after reporting optimizer step N, while the job's
/// heartbeat goes on, so a SIGKILL lands mid-job however fast the machine is),
/// SRLM_TEST_HOLD_HANDOFF=FILE (a job whose checkpoints are stored holds, heartbeating, before publishing its hand-off
/// until FILE exists, so a test can stop the broker exactly between the two) and
/// SRLM_TEST_HOLD_CONTROL=FILE (a control arm holds before its DPO until FILE exists).</summary>
public sealed record FaultOptions
{
    public const string NonIdempotentVariable = "SRLM_TEST_NON_IDEMPOTENT";
    public const string HangVariable = "SRLM_TEST_HANG_AFTER_STEP";
    public const string HoldHandOffVariable = "SRLM_TEST_HOLD_HANDOFF";
    public const string HoldControlVariable = "SRLM_TEST_HOLD_CONTROL";

    public bool NonIdempotentJudgements { get; init; }
    public int? HangAfterStep { get; init; }
    public string? HoldHandOffUntilFile { get; init; }
    public string? HoldControlUntilFile { get; init; }

    public static FaultOptions FromEnvironment(Func<string, string?> get)
    {
        ArgumentNullException.ThrowIfNull(get);
        var o = new FaultOptions();
        if (get(NonIdempotentVariable) is { Length: > 0 } careless)
            o = o with { NonIdempotentJudgements = careless == "judgement" ? true
                : throw new SrlmConfigurationException($"{NonIdempotentVariable} must be 'judgement', got '{careless}'") };
        if (get(HangVariable) is { Length: > 0 } hang)
            o = o with { HangAfterStep = int.TryParse(hang, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n
                : throw new SrlmConfigurationException($"{HangVariable} must be a positive integer, got '{hang}'") };
        if (get(HoldHandOffVariable) is { Length: > 0 } hold) o = o with { HoldHandOffUntilFile = Path.GetFullPath(hold) };
        if (get(HoldControlVariable) is { Length: > 0 } holdControl) o = o with { HoldControlUntilFile = Path.GetFullPath(holdControl) };
        return o;
    }

    /// <summary>srlm train's hook: the training thread stops for good after printing train step N (before that
    /// step's state is saved).</summary>
    public void HangTrainCommand(TrainingProgress p)
    {
        if (p.Kind == "train" && p.Step == HangAfterStep) Thread.Sleep(Timeout.Infinite);
    }
}

public static class FaultRegistration
{
    /// <summary>Puts the asked-for faults into a host already composed as its production twin: the careless store in
    /// place of the artifact store, the training hooks in place of none.</summary>
    public static IServiceCollection AddFaults(this IServiceCollection services, FaultOptions faults)
    {
        if (faults.NonIdempotentJudgements)
        {
            Console.Error.WriteLine($"{FaultOptions.NonIdempotentVariable}=judgement: judge samples are stored under random ids without looking at stored ones (fault host)");
            services.Replace(ServiceDescriptor.Singleton(sp => NonIdempotentStore.Wrap(sp.GetRequiredService<StoreSet>().Artifacts)));
        }
        if (faults.HangAfterStep is not null || faults.HoldHandOffUntilFile is not null || faults.HoldControlUntilFile is not null)
            services.Replace(ServiceDescriptor.Singleton<ITrainingJobHooks>(sp => new FaultyTrainingHooks(faults, sp.GetRequiredService<ILogger<FaultyTrainingHooks>>())));
        return services;
    }
}
