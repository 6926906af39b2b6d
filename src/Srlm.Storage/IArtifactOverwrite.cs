namespace Srlm.Storage;

/// <summary>
/// Replaces a stored artifact's content, against the store's write-once rule: only tests use it (one that tampers
/// with a stored score for `srlm audit`, and the conformance suite), so it is internal, outside
/// <see cref="IArtifactStore"/>; Srlm.Tests reaches it through InternalsVisibleTo. Returns Updated, Unchanged, or
/// Inserted when the artifact did not exist.
/// </summary>
internal interface IArtifactOverwrite
{
    Task<WriteOutcome> OverwriteAsync<T>(T artifact, CancellationToken ct) where T : class, IArtifact;
}
