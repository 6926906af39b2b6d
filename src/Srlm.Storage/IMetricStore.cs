namespace Srlm.Storage;

/// <summary>Training and evaluation metrics keyed by (run, iteration, step, name).</summary>
public interface IMetricStore
{
    /// <summary>Upsert metrics keyed by (run, iteration, step, name): last write wins.</summary>
    Task PutMetricsAsync(IEnumerable<MetricRecord> metrics, CancellationToken ct = default);
    /// <summary>Metrics of a run ordered by iteration, step, name; optionally one iteration and a name prefix.</summary>
    Task<IReadOnlyList<MetricRecord>> ListMetricsAsync(string runId, int? iteration = null, string? namePrefix = null, CancellationToken ct = default);
}
