namespace Srlm.Tests.Training;

[Collection(TrainingCollection.Name)]
public class StateStoreTests
{
    private static TrainingStateInfo State(int step) => new()
    {
        Kind = "sft", Step = step, TotalSteps = 10, Seed = 1, JobFingerprint = "f", Batches = [[0, 1]], Validation = [],
    };

    [Fact]
    public void A_crash_before_latest_flips_leaves_the_previous_state_loadable()
    {
        Tiny.UseTestThreads();
        using var dir = new Tiny.TempDir();
        var store = new TrainingStateStore(dir.Sub("s"));
        using var model = Tiny.Model();
        using var opt = optim.AdamW(model.parameters(), 1e-3);
        store.Save(State(1), model, opt);
        // What a kill during the next save leaves behind: a half-written temp folder and a temp pointer.
        Directory.CreateDirectory(Path.Combine(store.Directory, "step-0000002.tmp"));
        File.WriteAllText(Path.Combine(store.Directory, "step-0000002.tmp", "weights.bin"), "torn");
        File.WriteAllText(Path.Combine(store.Directory, "latest.tmp"), "step-0000002");
        Assert.Equal(1, new TrainingStateStore(dir.Sub("s")).TryLoadLatest()!.Step);

        using var other = Tiny.Model(seed: 99);
        using var opt2 = optim.AdamW(other.parameters(), 1e-3);
        store.LoadLatestInto(other, opt2);
        Tiny.AssertBitIdentical(Tiny.Weights(model), Tiny.Weights(other));

        store.Save(State(2), model, opt); // the next save replaces the debris and removes the old folder
        Assert.Equal(2, store.TryLoadLatest()!.Step);
        Assert.Equal(["step-0000002"], Directory.GetDirectories(store.Directory).Select(d => Path.GetFileName(d)!).ToArray());
    }

    [Fact]
    public void A_fresh_directory_has_no_state()
    {
        using var dir = new Tiny.TempDir();
        Assert.Null(new TrainingStateStore(dir.Sub("s")).TryLoadLatest());
    }
}
