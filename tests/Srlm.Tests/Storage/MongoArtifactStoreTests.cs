namespace Srlm.Tests.Storage;

/// <summary>The conformance suite on MongoDB (a fresh database per test); skipped with the reason when none is reachable.</summary>
[Collection(MongoCollection.Name)]
public sealed class MongoArtifactStoreConformanceTests(MongoFixture mongo) : ArtifactStoreConformance
{
    protected override async Task<IArtifactStore> OpenFreshAsync() => await mongo.OpenFreshAsync(Clock);

    protected override async Task<IArtifactStore> TamperSchemaVersionAndReopenAsync(IArtifactStore store, int version)
    {
        var m = (MongoArtifactStore)store;
        var db = m.Database.DatabaseNamespace.DatabaseName;
        await m.SetStoredSchemaVersionForTestingAsync(version);
        await m.DisposeAsync();
        return await mongo.OpenFreshAsync(database: db);
    }
}
