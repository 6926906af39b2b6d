namespace Srlm.Tests.Messaging;

/// <summary>A test class with its own temporary folder and a SQLite store in it (<see cref="OpsFixtures.OpenAsync"/>),
/// both removed when the class is done. Override <see cref="InitializeAsync"/> to add files, calling the base first.</summary>
public abstract class StoreFolderTest(string prefix) : IAsyncLifetime
{
    protected string Folder { get; } = Directory.CreateTempSubdirectory(prefix).FullName;
    protected StoreSet Stores { get; private set; } = null!;

    public virtual async Task InitializeAsync() => Stores = await OpsFixtures.OpenAsync(Folder);

    public async Task DisposeAsync()
    {
        await Stores.DisposeAsync();
        try { Directory.Delete(Folder, true); } catch (IOException) { }
    }
}
