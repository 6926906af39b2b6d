namespace Srlm.Tests.Cli;

/// <summary>`srlm start` / `srlm run` upload: a file the store refuses is a one-line error naming the spec field.</summary>
public sealed class RunUploadTests() : StoreFolderTest("srlm-upload-")
{
    /// <summary>The real store, except that it refuses every blob as the MongoDB store refuses one over its size.</summary>
    public class BlobRefusingStore : DispatchProxy
    {
        public IArtifactStore Inner = null!;

        protected override object? Invoke(MethodInfo? method, object?[]? args)
        {
            if (method!.Name == nameof(IArtifactStore.PutBlobAsync))
                throw new InvalidDataException($"blob {args![1]} is 20000000 bytes; the MongoDB store keeps blobs up to 16000000 bytes");
            try { return method.Invoke(Inner, args); }
            catch (TargetInvocationException e) { throw e.InnerException!; }
        }
    }

    [Fact]
    public async Task A_seed_file_the_store_refuses_is_a_one_line_error_naming_the_field_and_no_run_is_stored()
    {
        File.WriteAllText(Path.Combine(Folder, "ift.jsonl"), "{\"instruction\":\"1+1\",\"answer\":\"2\"}\n");
        var spec = RunSpecJson.Parse("""{ "schema_version": 1, "name": "up", "models": { "m1": "m1" }, "seed_data": { "ift": "ift.jsonl" } }""");
        var store = DispatchProxy.Create<IArtifactStore, BlobRefusingStore>();
        ((BlobRefusingStore)(object)store).Inner = Stores.Artifacts;

        var e = await Assert.ThrowsAsync<UsageException>(() => RunUpload.UploadAsync(store, Stores.Checkpoints, spec, Folder, "up-1", default));
        Assert.Equal($"spec.seed_data.ift: {Path.Combine(Folder, "ift.jsonl")}: blob ift.jsonl is 20000000 bytes; the MongoDB store keeps blobs up to 16000000 bytes", e.Message);
        Assert.Null(await Stores.Artifacts.GetRunAsync("up-1"));
    }
}
