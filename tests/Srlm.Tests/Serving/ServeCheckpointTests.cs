namespace Srlm.Tests.Serving;

/// <summary>`srlm serve --checkpoint RUN/mN`: the mistakes around it are one line each (serving a stored checkpoint is
/// exercised end to end by the integration test of an endpoint judge, PipelinePathsTests).</summary>
public sealed class ServeCheckpointTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("srlm-serve-ckpt-").FullName;

    public void Dispose()
    {
        try { Directory.Delete(_folder, recursive: true); } catch (IOException) { }
    }

    private static async Task<(int Code, string Err)> Srlm(params string[] args)
    {
        var (code, _, err) = await CliConsole.RunAsync(args);
        Assert.DoesNotContain("   at ", err, StringComparison.Ordinal);
        Assert.Single(err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        return (code, err.Trim());
    }

    [Fact]
    public async Task Serve_needs_exactly_one_of_model_and_checkpoint_and_names_a_checkpoint_the_store_lacks()
    {
        Assert.Equal((2, "srlm serve: give --model DIR (a checkpoint folder) or --checkpoint RUN/mN (a checkpoint of the configured store)"), await Srlm("serve"));
        Assert.Equal((2, "srlm serve: give --model DIR (a checkpoint folder) or --checkpoint RUN/mN (a checkpoint of the configured store)"),
            await Srlm("serve", "--model", _folder, "--checkpoint", "r/m2"));
        Assert.Equal((2, "srlm serve: --store goes with --checkpoint"), await Srlm("serve", "--model", _folder, "--store", "sqlite://x.db"));

        var db = Path.Combine(_folder, "srlm.db");
        await (await global::Srlm.Storage.StoreFactory.OpenArtifactStoreAsync("sqlite://" + db)).DisposeAsync();
        var (code, err) = await Srlm("serve", "--checkpoint", "nope/m3", "--store", "sqlite://" + db);
        Assert.Equal(2, code);
        Assert.StartsWith($"srlm serve: --checkpoint nope/m3: no such checkpoint in sqlite://{db}", err);
    }
}
