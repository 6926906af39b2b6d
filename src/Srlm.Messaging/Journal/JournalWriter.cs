namespace Srlm.Messaging.Journal;

/// <summary>The journal filters' way into the store: a group commit. An entry is written at once when no write is in
/// flight; entries that arrive while one is (concurrent messages of this process) go together in the next
/// <see cref="IArtifactStore.AppendJournalManyAsync"/> call, one transaction on SQLite instead of one each. Every caller
/// still returns only after its own entry is stored, so a message is acknowledged only once journaled, exactly as with
/// one append per entry; a failed batch fails every message in it (each is retried by the bus, and entry ids make a
/// second append of the same entry a no-op). One per process.</summary>
public sealed class JournalWriter(IArtifactStore store)
{
    /// <summary>Entries per store call at most (a long queue is written in several calls).</summary>
    public const int MaxBatch = 256;

    private readonly object _gate = new();
    private readonly List<(JournalEntry Entry, TaskCompletionSource<WriteOutcome> Done)> _pending = [];
    private bool _writing;

    public Task<WriteOutcome> AppendAsync(JournalEntry entry, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(entry.Id);
        var done = new TaskCompletionSource<WriteOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        bool lead;
        lock (_gate)
        {
            _pending.Add((entry, done));
            lead = !_writing;
            _writing = true;
        }
        if (lead) _ = Task.Run(WriteAllAsync, CancellationToken.None);
        // The entry is written whatever happens to this caller: a cancelled caller only stops waiting.
        return done.Task.WaitAsync(ct);
    }

    private async Task WriteAllAsync()
    {
        while (true)
        {
            List<(JournalEntry Entry, TaskCompletionSource<WriteOutcome> Done)> batch;
            lock (_gate)
            {
                if (_pending.Count == 0)
                {
                    _writing = false;
                    return;
                }
                int n = Math.Min(_pending.Count, MaxBatch);
                batch = _pending.GetRange(0, n);
                _pending.RemoveRange(0, n);
            }
            try
            {
                var outcomes = await store.AppendJournalManyAsync(batch.Select(b => b.Entry).ToList(), CancellationToken.None);
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(outcomes[i]);
            }
            catch (Exception e)
            {
                foreach (var b in batch) b.Done.TrySetException(e);
            }
        }
    }
}
