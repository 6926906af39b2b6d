using Srlm.FaultHost;

namespace Srlm.Tests.Services;

/// <summary>The trainer host's environment: SRLM_JOBS_DIR and SRLM_JOB_STALE_S; the fault host's SRLM_TEST_* faults.</summary>
public class TrainingWorkerOptionsTests
{
    private static TrainingWorkerOptions From(params (string Key, string Value)[] env) =>
        TrainingWorkerOptions.FromEnvironment(k => env.Where(e => e.Key == k).Select(e => e.Value).FirstOrDefault());

    [Fact]
    public void Defaults_without_variables()
    {
        var o = From();
        Assert.Equal(new TrainingWorkerOptions().JobsDirectory, o.JobsDirectory);
        Assert.Equal(TimeSpan.FromMinutes(2), o.StaleAfter);
    }

    [Fact]
    public void Reads_the_jobs_folder_and_the_stale_time()
    {
        var o = From(("SRLM_JOBS_DIR", "/var/lib/srlm/jobs"), ("SRLM_JOB_STALE_S", "6"));
        Assert.Equal("/var/lib/srlm/jobs", o.JobsDirectory);
        Assert.Equal(TimeSpan.FromSeconds(6), o.StaleAfter);
    }

    [Theory]
    [InlineData("SRLM_JOB_STALE_S", "soon")]
    [InlineData("SRLM_JOB_STALE_S", "3")] // under two heartbeats: a live worker's job would be taken over
    public void A_bad_value_names_the_variable(string key, string value)
    {
        var e = Assert.Throws<SrlmConfigurationException>(() => From((key, value)));
        Assert.Contains(key, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_fault_host_reads_the_faults_and_the_production_trainer_has_no_fault_settings()
    {
        static FaultOptions Faults(params (string Key, string Value)[] env) =>
            FaultOptions.FromEnvironment(k => env.Where(e => e.Key == k).Select(e => e.Value).FirstOrDefault());
        Assert.Equal(new FaultOptions(), Faults());
        var o = Faults(("SRLM_TEST_HANG_AFTER_STEP", "2"), ("SRLM_TEST_HOLD_HANDOFF", "/tmp/handoff"), ("SRLM_TEST_HOLD_CONTROL", "/tmp/control"),
            ("SRLM_TEST_NON_IDEMPOTENT", "judgement"));
        Assert.Equal(2, o.HangAfterStep);
        Assert.Equal("/tmp/handoff", o.HoldHandOffUntilFile);
        Assert.Equal("/tmp/control", o.HoldControlUntilFile);
        Assert.True(o.NonIdempotentJudgements);
        foreach (var (key, value) in new[] { ("SRLM_TEST_HANG_AFTER_STEP", "0"), ("SRLM_TEST_NON_IDEMPOTENT", "pairs") })
            Assert.Contains(key, Assert.Throws<SrlmConfigurationException>(() => Faults((key, value))).Message, StringComparison.Ordinal);

        // The production trainer's options have nothing a fault could be set through.
        Assert.DoesNotContain(typeof(TrainingWorkerOptions).GetProperties(), p => p.Name.Contains("Hang", StringComparison.Ordinal) || p.Name.Contains("Hold", StringComparison.Ordinal));
    }

    /// <summary>No production source names a test variable: a deployed binary cannot be switched into a faulty mode.
    /// Faults go in through seams (ITrainingJobHooks, a replaced store, TrainCommand's report hook) that only
    /// tests/Srlm.FaultHost fills.</summary>
    [Fact]
    public void No_production_source_reads_a_test_variable()
    {
        var root = Srlm.Tests.Tasks.ServiceIndependenceTests.RepoRoot();
        var offenders = new[] { "src", "services" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                        && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Where(f => File.ReadAllText(f).Contains("SRLM_TEST_", StringComparison.Ordinal))
            .Select(f => Path.GetRelativePath(root, f)).ToList();
        Assert.Empty(offenders);
    }
}
