using Srlm.Messaging.Journal;

namespace Srlm.Tests.Messaging;

/// <summary>The journal's group commit over a real SQLite store: concurrent entries share store calls, every caller
/// returns only after its own entry is stored, and a failed store call fails every caller in it (and nothing after).</summary>
public sealed class JournalWriterTests
{
    [Fact]
    public async Task Concurrent_appends_share_store_calls_and_each_returns_its_own_stored_outcome()
    {
        using var dir = new TempDir();
        await using var sqlite = await SqliteArtifactStore.OpenAsync(dir.File("srlm.db"));
        var store = JournalCalls.Wrap(sqlite);
        var writer = new JournalWriter(store);
        var t0 = DateTimeOffset.UtcNow;
        var entries = Enumerable.Range(0, 60).Select(i => Make.Journal("r", 1, $"m{i}", "JudgeCandidate", JournalDirection.Consumed, t0.AddMilliseconds(i))).ToList();

        var appends = entries.Select(e => writer.AppendAsync(e, default)).ToList();
        appends.Add(writer.AppendAsync(entries[7], default)); // the same entry id again, after the first
        var outcomes = await Task.WhenAll(appends);

        Assert.Equal(Enumerable.Repeat(WriteOutcome.Inserted, 60), outcomes.Take(60));
        Assert.Equal(WriteOutcome.Unchanged, outcomes[60]); // kept once
        Assert.Equal(entries.Select(e => e.MessageId), (await sqlite.QueryJournalAsync(new JournalQuery { RunId = "r" })).Select(e => e.MessageId));
        var calls = JournalCalls.Of(store);
        Assert.InRange(calls.Batches, 1, 3); // 61 appends issued together: one call, or one for the first and the rest batched
        Assert.Equal(61, calls.Entries);
        Assert.Equal(0, calls.Singles);
    }

    [Fact]
    public async Task A_failed_store_call_fails_every_caller_in_it_and_the_next_append_is_written()
    {
        using var dir = new TempDir();
        await using var sqlite = await SqliteArtifactStore.OpenAsync(dir.File("srlm.db"));
        var store = JournalCalls.Wrap(sqlite);
        var calls = JournalCalls.Of(store);
        var writer = new JournalWriter(store);
        var t0 = DateTimeOffset.UtcNow;
        calls.Failing = true;
        var failing = Enumerable.Range(0, 5).Select(i => writer.AppendAsync(Make.Journal("r", 1, $"f{i}", "JudgeCandidate", JournalDirection.Consumed, t0), default)).ToList();
        foreach (var f in failing) await Assert.ThrowsAsync<IOException>(() => f);
        calls.Failing = false;
        Assert.Equal(0, await sqlite.CountJournalAsync(new JournalQuery { RunId = "r" }));

        Assert.Equal(WriteOutcome.Inserted, await writer.AppendAsync(Make.Journal("r", 1, "f0", "JudgeCandidate", JournalDirection.Consumed, t0), default));
        Assert.Equal(1, await sqlite.CountJournalAsync(new JournalQuery { RunId = "r" }));
    }

    [Fact]
    public async Task An_entry_without_an_id_is_refused_at_once()
    {
        using var dir = new TempDir();
        await using var sqlite = await SqliteArtifactStore.OpenAsync(dir.File("srlm.db"));
        var writer = new JournalWriter(sqlite);
        var bad = Make.Journal("r", 1, "m", "JudgeCandidate", JournalDirection.Consumed, DateTimeOffset.UtcNow) with { Id = " " };
        Assert.ThrowsAny<ArgumentException>(() => { _ = writer.AppendAsync(bad, default); });
    }
}

/// <summary>Counts the journal calls reaching the store; while Failing, AppendJournalManyAsync throws an IOException.</summary>
public class JournalCalls : DispatchProxy
{
    private IArtifactStore _inner = null!;
    public int Batches;
    public int Entries;
    public int Singles;
    public volatile bool Failing;

    public static IArtifactStore Wrap(IArtifactStore inner)
    {
        var proxy = Create<IArtifactStore, JournalCalls>();
        ((JournalCalls)(object)proxy)._inner = inner;
        return proxy;
    }

    public static JournalCalls Of(IArtifactStore proxy) => (JournalCalls)(object)proxy;

    protected override object? Invoke(MethodInfo? method, object?[]? args)
    {
        ArgumentNullException.ThrowIfNull(method);
        if (method.Name == nameof(IArtifactStore.AppendJournalManyAsync))
        {
            Interlocked.Increment(ref Batches);
            Interlocked.Add(ref Entries, ((IReadOnlyList<JournalEntry>)args![0]!).Count);
            if (Failing)
                return Task.FromException<IReadOnlyList<WriteOutcome>>(new IOException("disk gone"));
        }
        if (method.Name == nameof(IArtifactStore.AppendJournalAsync)) Interlocked.Increment(ref Singles);
        try { return method.Invoke(_inner, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e.InnerException);
            throw;
        }
    }
}
