using MongoDB.Bson;
using MongoDB.Driver;

namespace Srlm.Tests.Storage;

/// <summary>What every checkpoint store must do, run on the directory backend and on GridFS.</summary>
public abstract class CheckpointStoreConformance : IDisposable
{
    protected readonly TempDir Temp = new();

    protected abstract Task<ICheckpointStore> OpenAsync();
    /// <summary>Flip bytes of one stored file behind the store's back.</summary>
    protected abstract Task CorruptStoredFileAsync(ICheckpointStore store, string checkpointId, string path);

    public virtual void Dispose() => Temp.Dispose();

    /// <summary>A small HF-style checkpoint folder with a nested file.</summary>
    protected string MakeCheckpointFolder(string name, int seed)
    {
        var dir = Path.Combine(Temp.Path, "src-" + name);
        Directory.CreateDirectory(Path.Combine(dir, "extra"));
        File.WriteAllText(Path.Combine(dir, "config.json"), $$"""{"model_type":"llama","hidden_size":64,"seed":{{seed}}}""");
        var weights = new byte[3 * 1024 * 1024 + 17];
        new Random(seed).NextBytes(weights);
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), weights);
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), """{"version":"1.0"}""");
        File.WriteAllText(Path.Combine(dir, "extra", "generation_config.json"), """{"temperature":0.7}""");
        return dir;
    }

    private static string Sha(string file) => Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(file)));

    [SkippableFact]
    public async Task Put_then_materialize_round_trips_every_file_with_its_sha256()
    {
        var store = await OpenAsync();
        var src = MakeCheckpointFolder("a", 1);
        var put = await store.PutAsync("run-a/m1", src);
        Assert.Equal(WriteOutcome.Inserted, put.Outcome);
        Assert.Equal(["config.json", "extra/generation_config.json", "model.safetensors", "tokenizer.json"], put.Manifest.Files.Select(f => f.Path));
        foreach (var f in put.Manifest.Files)
        {
            Assert.Equal(Sha(Path.Combine(src, f.Path)), f.Sha256);
            Assert.Equal(new FileInfo(Path.Combine(src, f.Path)).Length, f.Size);
        }
        var dir = await store.MaterializeAsync("run-a/m1", expected: put.Manifest.Files);
        foreach (var f in put.Manifest.Files)
            Assert.Equal(File.ReadAllBytes(Path.Combine(src, f.Path)), File.ReadAllBytes(Path.Combine(dir, f.Path)));
        Assert.Equal(put.Manifest.Files, (await store.GetManifestAsync("run-a/m1"))!.Files);
        Assert.Null(await store.GetManifestAsync("run-a/m9"));
    }

    [SkippableFact]
    public async Task Putting_a_checkpoint_twice_is_unchanged_and_other_files_under_its_id_conflict()
    {
        var store = await OpenAsync();
        var src = MakeCheckpointFolder("a", 1);
        await store.PutAsync("c1", src);
        Assert.Equal(WriteOutcome.Unchanged, (await store.PutAsync("c1", src)).Outcome);
        var other = MakeCheckpointFolder("b", 2);
        var conflict = await store.PutAsync("c1", other);
        Assert.Equal(WriteOutcome.Conflict, conflict.Outcome);
        // The first content is kept.
        var dir = await store.MaterializeAsync("c1");
        Assert.Equal(File.ReadAllBytes(Path.Combine(src, "model.safetensors")), File.ReadAllBytes(Path.Combine(dir, "model.safetensors")));
    }

    [SkippableFact]
    public async Task A_corrupted_stored_file_is_detected_when_materialised()
    {
        var store = await OpenAsync();
        await store.PutAsync("c1", MakeCheckpointFolder("a", 1));
        await CorruptStoredFileAsync(store, "c1", "model.safetensors");
        var e = await Assert.ThrowsAsync<StoreIntegrityException>(() => store.MaterializeAsync("c1"));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("c1", e.Message);
    }

    [SkippableFact]
    public async Task A_manifest_that_differs_from_the_recorded_files_is_refused()
    {
        var store = await OpenAsync();
        var put = await store.PutAsync("c1", MakeCheckpointFolder("a", 1));
        var recorded = put.Manifest.Files.Select(f => f.Path == "config.json" ? f with { Sha256 = new string('0', 64) } : f).ToList();
        var e = await Assert.ThrowsAsync<StoreIntegrityException>(() => store.MaterializeAsync("c1", recorded));
        Assert.Contains("config.json", e.Message);
    }

    [SkippableFact]
    public async Task An_unknown_checkpoint_or_an_empty_folder_is_an_error()
    {
        var store = await OpenAsync();
        await Assert.ThrowsAsync<KeyNotFoundException>(() => store.MaterializeAsync("nope"));
        var empty = Directory.CreateDirectory(Path.Combine(Temp.Path, "empty")).FullName;
        await Assert.ThrowsAsync<InvalidDataException>(() => store.PutAsync("c2", empty));
        await Assert.ThrowsAsync<DirectoryNotFoundException>(() => store.PutAsync("c2", Path.Combine(Temp.Path, "missing")));
    }
}

public sealed class DirectoryCheckpointStoreTests : CheckpointStoreConformance
{
    private string Root => Path.Combine(Temp.Path, "store");

    protected override Task<ICheckpointStore> OpenAsync() => Task.FromResult<ICheckpointStore>(new DirectoryCheckpointStore(Root));

    protected override Task CorruptStoredFileAsync(ICheckpointStore store, string checkpointId, string path)
    {
        var file = Path.Combine(((DirectoryCheckpointStore)store).FolderOf(checkpointId), path);
        using var s = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        s.Position = 1000;
        var b = s.ReadByte();
        s.Position = 1000;
        s.WriteByte((byte)(b ^ 0xFF));
        return Task.CompletedTask;
    }

    [Fact]
    public async Task A_put_leaves_no_temporary_folders_and_ids_with_slashes_stay_inside_the_root()
    {
        var store = new DirectoryCheckpointStore(Root);
        await store.PutAsync("run/../../escape", MakeCheckpointFolder("a", 1));
        Assert.Equal([CheckpointFiles.FolderName("run/../../escape")], Directory.GetDirectories(Root).Select(Path.GetFileName));
        Assert.StartsWith(Root, store.FolderOf("run/../../escape"));
        Assert.NotEqual(CheckpointFiles.FolderName("a/b"), CheckpointFiles.FolderName("a_b"));
    }

    [Fact]
    public async Task A_manifest_path_that_leaves_the_checkpoint_folder_is_refused()
    {
        var store = new DirectoryCheckpointStore(Root);
        await store.PutAsync("c1", MakeCheckpointFolder("a", 1));
        var manifestPath = Path.Combine(store.FolderOf("c1"), CheckpointFiles.ManifestName);
        var m = ArtifactJson.Read<CheckpointManifest>(File.ReadAllText(manifestPath));
        File.WriteAllText(manifestPath, ArtifactJson.Serialize(m with { Files = [.. m.Files, new CheckpointFile("../../outside.txt", 1, new string('0', 64))] }));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => store.MaterializeAsync("c1"));
        Assert.Contains("../../outside.txt", e.Message);
    }

    [Fact]
    public void Temporary_folders_of_killed_puts_are_removed_when_old()
    {
        Directory.CreateDirectory(Root);
        var old = Directory.CreateDirectory(Path.Combine(Root, ".tmp-c1-dead")).FullName;
        Directory.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddDays(-2));
        var fresh = Directory.CreateDirectory(Path.Combine(Root, ".tmp-c2-live")).FullName;
        _ = new DirectoryCheckpointStore(Root);
        Assert.False(Directory.Exists(old));
        Assert.True(Directory.Exists(fresh));
    }

    [Fact]
    public async Task Two_concurrent_puts_of_one_checkpoint_store_it_once()
    {
        var store = new DirectoryCheckpointStore(Root);
        var src = MakeCheckpointFolder("a", 1);
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => store.PutAsync("c1", src))));
        Assert.Single(results, r => r.Outcome == WriteOutcome.Inserted);
        Assert.All(results, r => Assert.NotEqual(WriteOutcome.Conflict, r.Outcome));
        Assert.Single(Directory.GetDirectories(Root));
        await store.MaterializeAsync("c1");
    }
}

[Collection(MongoCollection.Name)]
public sealed class GridFsCheckpointStoreTests(MongoFixture mongo) : CheckpointStoreConformance
{
    private MongoArtifactStore? _db;

    protected override async Task<ICheckpointStore> OpenAsync()
    {
        _db = await mongo.OpenFreshAsync();
        return new GridFsCheckpointStore(_db.Database, Path.Combine(Temp.Path, "cache"));
    }

    protected override async Task CorruptStoredFileAsync(ICheckpointStore store, string checkpointId, string path)
    {
        var files = _db!.Database.GetCollection<BsonDocument>("checkpoints.files");
        var file = await files.Find(new BsonDocument("filename", $"{checkpointId}/{path}")).FirstAsync();
        var chunks = _db.Database.GetCollection<BsonDocument>("checkpoints.chunks");
        var chunk = await chunks.Find(new BsonDocument { { "files_id", file["_id"] }, { "n", 0 } }).FirstAsync();
        var data = chunk["data"].AsBsonBinaryData.Bytes.ToArray();
        data[100] ^= 0xFF;
        await chunks.UpdateOneAsync(new BsonDocument("_id", chunk["_id"]), new BsonDocument("$set", new BsonDocument("data", new BsonBinaryData(data))));
        // A cache copy made earlier must not hide the corruption either.
        var cache = Path.Combine(Temp.Path, "cache");
        if (Directory.Exists(cache)) Directory.Delete(cache, recursive: true);
        Directory.CreateDirectory(cache);
    }

    [SkippableFact]
    public async Task A_damaged_cache_copy_is_replaced_from_the_store()
    {
        var store = await OpenAsync();
        await store.PutAsync("c1", MakeCheckpointFolder("a", 1));
        var dir = await store.MaterializeAsync("c1");
        File.WriteAllText(Path.Combine(dir, "config.json"), "tampered");
        var again = await store.MaterializeAsync("c1");
        Assert.Equal(dir, again);
        Assert.Contains("llama", File.ReadAllText(Path.Combine(again, "config.json")));
    }

    public override void Dispose()
    {
        _db?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        base.Dispose();
    }
}
