namespace Srlm.Storage;

/// <summary>Journal filter. Entries come back in append order.</summary>
public sealed record JournalQuery
{
    public string? RunId { get; init; }
    public int? Iteration { get; init; }
    public string? MessageType { get; init; }
    public JournalDirection? Direction { get; init; }
    public string? MessageId { get; init; }
    /// <summary>Only entries with <see cref="JournalEntry.Sequence"/> greater than this.</summary>
    public long AfterSequence { get; init; }
    /// <summary>At most this many entries, in sequence order (0 or less: none).</summary>
    public int Limit { get; init; } = int.MaxValue;
}

/// <summary>The message journal: every message sent, published and consumed, in append order.</summary>
public interface IJournalStore
{
    /// <summary>Append an entry; same id again: Unchanged (the first is kept). Sequence is assigned by the store.</summary>
    Task<WriteOutcome> AppendJournalAsync(JournalEntry entry, CancellationToken ct = default);
    /// <summary>
    /// <see cref="AppendJournalAsync"/> for several entries in one round trip (SQLite: one transaction; all or nothing),
    /// sequences in input order; an id already stored, or repeated in the list, is Unchanged (the first is kept).
    /// Outcomes in input order. The bus's journal writer batches the entries of concurrent messages through it.
    /// </summary>
    Task<IReadOnlyList<WriteOutcome>> AppendJournalManyAsync(IReadOnlyList<JournalEntry> entries, CancellationToken ct = default);
    Task<IReadOnlyList<JournalEntry>> QueryJournalAsync(JournalQuery query, CancellationToken ct = default);
    Task<long> CountJournalAsync(JournalQuery query, CancellationToken ct = default);
}
