using Srlm.Messaging.Configuration;
using Srlm.Trainer;

namespace Srlm.Tests.Services;

/// <summary>The trainer host's environment: SRLM_JOBS_DIR, SRLM_JOB_STALE_S and the test hooks.</summary>
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
        Assert.Null(o.HangAfterStep);
        Assert.Null(o.HoldHandOffUntilFile);
        Assert.Null(o.HoldControlUntilFile);
    }

    [Fact]
    public void Reads_the_jobs_folder_the_stale_time_and_the_test_hooks()
    {
        var o = From(("SRLM_JOBS_DIR", "/var/lib/srlm/jobs"), ("SRLM_JOB_STALE_S", "6"), ("SRLM_TEST_HANG_AFTER_STEP", "2"),
            ("SRLM_TEST_HOLD_HANDOFF", "/tmp/handoff"), ("SRLM_TEST_HOLD_CONTROL", "/tmp/control"));
        Assert.Equal("/var/lib/srlm/jobs", o.JobsDirectory);
        Assert.Equal(TimeSpan.FromSeconds(6), o.StaleAfter);
        Assert.Equal(2, o.HangAfterStep);
        Assert.Equal("/tmp/handoff", o.HoldHandOffUntilFile);
        Assert.Equal("/tmp/control", o.HoldControlUntilFile);
    }

    [Theory]
    [InlineData("SRLM_JOB_STALE_S", "soon")]
    [InlineData("SRLM_JOB_STALE_S", "3")] // under two heartbeats: a live worker's job would be taken over
    [InlineData("SRLM_TEST_HANG_AFTER_STEP", "0")]
    public void A_bad_value_names_the_variable(string key, string value)
    {
        var e = Assert.Throws<SrlmConfigurationException>(() => From((key, value)));
        Assert.Contains(key, e.Message, StringComparison.Ordinal);
    }
}
