using System.Text.Json.Nodes;

namespace Srlm.Messaging.Operations;

/// <summary>A journaled message chosen for replay, ready to publish.</summary>
public sealed record ReplayItem(JournalEntry Entry, Type MessageType, object Message);

/// <summary>`srlm replay`: re-publishes journaled messages of a run, optionally into a new run whose ids are
/// re-keyed ("RUN/..." becomes "NEW/..."), after copying the artifacts the replayed messages expect under the new run:
/// everything the source run had stored before the first replayed message was published, and whatever the replayed
/// messages name (see <see cref="CopyRunAsync"/>).</summary>
public static class JournalReplay
{
    /// <summary>Published run messages of the run in journal order, filtered; faults and messages of other types skipped.</summary>
    public static async Task<IReadOnlyList<ReplayItem>> SelectAsync(IArtifactStore store, string runId, int? iteration, string? type, CancellationToken ct = default)
    {
        var entries = await store.QueryJournalAsync(new JournalQuery { RunId = runId, Iteration = iteration, Direction = JournalDirection.Published }, ct);
        var items = new List<ReplayItem>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var e in entries)
        {
            if (type is not null && !MessageRun.TypeMatches(e.MessageType, type)) continue;
            var t = typeof(IRunMessage).Assembly.GetType(e.MessageType);
            if (t is null || !(typeof(IRunMessage).IsAssignableFrom(t) || t == typeof(CancelRun))) continue;
            if (!seen.Add(e.MessageId)) continue;
            var message = JsonSerializer.Deserialize(e.BodyJson, t, JournalEntries.BodyOptions)
                          ?? throw new InvalidDataException($"journal entry {e.Id}: empty body");
            items.Add(new ReplayItem(e, t, message));
        }
        return items;
    }

    /// <summary>The same message with every id of <paramref name="from"/> moved under <paramref name="to"/>.</summary>
    public static object Rekey(object message, Type type, string from, string to)
    {
        var node = JsonSerializer.SerializeToNode(message, type, JournalEntries.BodyOptions)!;
        return JsonSerializer.Deserialize(RekeyNode(node, from, to), type, JournalEntries.BodyOptions)!;
    }

    public static string RekeyString(string value, string from, string to) =>
        value == from ? to : value.StartsWith(from + "/", StringComparison.Ordinal) ? to + value[from.Length..] : value;

    private static JsonNode? RekeyNode(JsonNode? node, string from, string to)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var key in o.Select(p => p.Key).ToList()) o[key] = RekeyNode(o[key]?.DeepClone(), from, to);
                return o;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++) a[i] = RekeyNode(a[i]?.DeepClone(), from, to);
                return a;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                return JsonValue.Create(RekeyString(v.GetValue<string>(), from, to));
            default:
                return node;
        }
    }

    /// <summary>Every id of run <paramref name="from"/> the items name (checkpoint, prompt, candidate, dataset ...):
    /// the artifacts their consumers will read.</summary>
    public static IReadOnlySet<string> InputsOf(IEnumerable<ReplayItem> items, string from)
    {
        var ids = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in items)
            CollectRefs(JsonSerializer.SerializeToNode(item.Message, item.MessageType, JournalEntries.BodyOptions), from, ids);
        return ids;
    }

    /// <summary>What the replayed messages read: <see cref="InputsOf"/>, and the checkpoints the first replayed iteration t
    /// starts from, M_0 or M_1 .. M_t and the control arm's C_2..C_t. A message names M_t, but C_t is found by its index (the
    /// iteration's control arm samples with it), and it may well have been stored after IterationStarted(t): the control
    /// arm trains beside the next iteration.</summary>
    public static async Task<IReadOnlySet<string>> InputsAsync(IArtifactStore store, IReadOnlyList<ReplayItem> items, string from, CancellationToken ct = default)
    {
        var ids = new HashSet<string>(InputsOf(items, from), StringComparer.Ordinal);
        var first = items.Select(i => i.Message).OfType<IRunMessage>().Select(m => (int?)m.Iteration).Min();
        if (first is { } t)
            foreach (var c in await store.ListAsync<CheckpointRecord>(ArtifactQuery.OfRun(from), ct))
                if (c.Iteration <= t) ids.Add(c.Id);
        return ids;
    }

    private static void CollectRefs(JsonNode? node, string from, HashSet<string> into)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var p in o) CollectRefs(p.Value, from, into);
                break;
            case JsonArray a:
                foreach (var e in a) CollectRefs(e, from, into);
                break;
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                var s = v.GetValue<string>();
                if (s.StartsWith(from + "/", StringComparison.Ordinal)) into.Add(s);
                break;
        }
    }

    /// <summary>Creates run <paramref name="to"/> with the spec of <paramref name="from"/> and copies, re-keyed (checkpoint
    /// files included): every artifact of <paramref name="from"/> stored up to <paramref name="cutoff"/>, and every artifact
    /// named in <paramref name="inputs"/> together with the artifacts those name in turn, whenever they were stored. So a
    /// replayed message finds what it reads even when that was stored after the first replayed message (a candidate
    /// generated after the first JudgeCandidate was published), while what the replay makes again is not copied.
    /// Returns the number of artifacts copied. Idempotent: a second call changes nothing.</summary>
    public static async Task<int> CopyRunAsync(IArtifactStore store, ICheckpointStore checkpoints, string from, string to, DateTimeOffset cutoff,
                                               IEnumerable<string>? inputs = null, CancellationToken ct = default)
    {
        var source = await store.GetRunAsync(from, ct) ?? throw new KeyNotFoundException($"run {from} not found");
        (await store.CreateRunAsync(to, source.SpecJson, source.SpecSchemaVersion, ct)).ThrowIfConflict($"run {to}");

        var all = new List<Listed>();
        var list = typeof(JournalReplay).GetMethod(nameof(ListKindAsync), BindingFlags.NonPublic | BindingFlags.Static)!;
        foreach (var kind in typeof(IArtifact).Assembly.GetTypes().Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IArtifact).IsAssignableFrom(t)))
            all.AddRange(await (Task<List<Listed>>)list.MakeGenericMethod(kind).Invoke(null, [store, from, ct])!);

        // The inputs and, transitively, what they name (a candidate's prompt, a dataset's pairs, a checkpoint's parent).
        var byId = all.ToLookup(x => x.Id, StringComparer.Ordinal);
        var needed = new HashSet<string>(StringComparer.Ordinal);
        var queue = new Queue<string>(inputs ?? []);
        while (queue.TryDequeue(out var id))
        {
            if (!needed.Add(id)) continue;
            var refs = new HashSet<string>(StringComparer.Ordinal);
            foreach (var x in byId[id]) CollectRefs(x.Node, from, refs);
            foreach (var r in refs) queue.Enqueue(r);
        }

        var copied = 0;
        var write = typeof(JournalReplay).GetMethod(nameof(PutKindAsync), BindingFlags.NonPublic | BindingFlags.Static)!;
        foreach (var (kind, id, createdAt, node) in all)
        {
            if (createdAt > cutoff && !needed.Contains(id)) continue;
            node.Remove("created_at");
            node.Remove("createdAt");
            node.Remove("CreatedAt");
            var rekeyed = JsonSerializer.Deserialize(RekeyNode(node, from, to), kind, ArtifactJson.Options)!;
            if (rekeyed is CheckpointRecord cp)
            {
                var folder = await checkpoints.MaterializeAsync(id, null, ct);
                var put = await checkpoints.PutAsync(cp.Id, folder, ct);
                rekeyed = cp with { Location = put.Manifest.Location, Files = put.Manifest.Files };
            }
            if (await (Task<WriteOutcome>)write.MakeGenericMethod(kind).Invoke(null, [store, rekeyed, ct])! == WriteOutcome.Inserted) copied++;
        }
        return copied;
    }

    /// <summary>One stored artifact of the source run, as JSON.</summary>
    private sealed record Listed(Type Kind, string Id, DateTimeOffset? CreatedAt, JsonObject Node);

    private static async Task<List<Listed>> ListKindAsync<T>(IArtifactStore store, string runId, CancellationToken ct) where T : class, IArtifact =>
        (await store.ListAsync<T>(ArtifactQuery.OfRun(runId), ct))
        .Select(a => new Listed(typeof(T), a.Id, a.CreatedAt, JsonSerializer.SerializeToNode(a, ArtifactJson.Options)!.AsObject())).ToList();

    private static Task<WriteOutcome> PutKindAsync<T>(IArtifactStore store, object artifact, CancellationToken ct) where T : class, IArtifact =>
        store.PutAsync((T)artifact, ct);

    /// <summary>Publishes the items (re-keyed into <paramref name="into"/> when given) on the bus, in journal order.</summary>
    public static async Task<int> PublishAsync(IPublishEndpoint bus, IReadOnlyList<ReplayItem> items, string runId, string? into, CancellationToken ct = default)
    {
        foreach (var item in items)
        {
            var message = into is null ? item.Message : Rekey(item.Message, item.MessageType, runId, into);
            await bus.Publish(message, item.MessageType, ct);
        }
        return items.Count;
    }
}
