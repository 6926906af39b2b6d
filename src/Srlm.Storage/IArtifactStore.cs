namespace Srlm.Storage;

/// <summary>
/// The artifact store: runs, every artifact of the pipeline, jobs, metrics, blobs, the message journal
/// and parked errors. Every write is idempotent under a caller-supplied deterministic id.
/// Implementations retry one call briefly on transient errors (Polly); logic errors surface at once.
/// Thread-safe; one instance per process is enough. One interface per concern (runs, artifacts, status,
/// jobs, metrics, blobs, journal, errors); each backend implements each concern in a file of its own.
/// </summary>
public interface IArtifactStore : IRunStore, IArtifactRecordStore, IStatusQueries, IJobStore, IMetricStore, IBlobStore, IJournalStore, IErrorStore, IAsyncDisposable
{
    /// <summary>Where the store lives, for messages ("sqlite:///data/srlm.db", "mongodb://host/db").</summary>
    string Location { get; }
}
