using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using MassTransit;
using Srlm.Contracts;
using Srlm.Messaging.Journal;
using Srlm.Storage;
using Srlm.Storage.Checkpoints;

namespace Srlm.Messaging.Operations;

/// <summary>A journaled message chosen for replay, ready to publish.</summary>
public sealed record ReplayItem(JournalEntry Entry, Type MessageType, object Message);

/// <summary>`srlm replay`: re-publishes journaled messages of a run, optionally into a new run whose ids are
/// re-keyed ("RUN/..." becomes "NEW/..."), after copying the artifacts the replayed messages expect (everything the
/// source run had stored before the first replayed message was published) under the new run.</summary>
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

    /// <summary>Creates run <paramref name="to"/> with the spec of <paramref name="from"/> and copies, re-keyed, every
    /// artifact of <paramref name="from"/> stored up to <paramref name="cutoff"/> (checkpoint files included).
    /// Returns the number of artifacts copied. Idempotent: a second call changes nothing.</summary>
    public static async Task<int> CopyRunAsync(IArtifactStore store, ICheckpointStore checkpoints, string from, string to, DateTimeOffset cutoff, CancellationToken ct = default)
    {
        var source = await store.GetRunAsync(from, ct) ?? throw new KeyNotFoundException($"run {from} not found");
        (await store.CreateRunAsync(to, source.SpecJson, source.SpecSchemaVersion, ct)).ThrowIfConflict($"run {to}");
        var copied = 0;
        var method = typeof(JournalReplay).GetMethod(nameof(CopyKindAsync), BindingFlags.NonPublic | BindingFlags.Static)!;
        foreach (var kind in typeof(IArtifact).Assembly.GetTypes().Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IArtifact).IsAssignableFrom(t)))
            copied += await (Task<int>)method.MakeGenericMethod(kind).Invoke(null, [store, checkpoints, from, to, cutoff, ct])!;
        return copied;
    }

    private static async Task<int> CopyKindAsync<T>(IArtifactStore store, ICheckpointStore checkpoints, string from, string to, DateTimeOffset cutoff, CancellationToken ct)
        where T : class, IArtifact
    {
        var copied = 0;
        foreach (var a in await store.ListAsync<T>(ArtifactQuery.OfRun(from), ct))
        {
            if (a.CreatedAt > cutoff) continue;
            var node = JsonSerializer.SerializeToNode(a, ArtifactJson.Options)!.AsObject();
            node.Remove("created_at");
            node.Remove("createdAt");
            node.Remove("CreatedAt");
            var rekeyed = JsonSerializer.Deserialize<T>(RekeyNode(node, from, to), ArtifactJson.Options)!;
            if (rekeyed is CheckpointRecord cp)
            {
                var folder = await checkpoints.MaterializeAsync(((CheckpointRecord)(object)a).Id, null, ct);
                var put = await checkpoints.PutAsync(cp.Id, folder, ct);
                rekeyed = (T)(object)(cp with { Location = put.Manifest.Location, Files = put.Manifest.Files });
            }
            if ((await store.PutAsync(rekeyed, ct)) == WriteOutcome.Inserted) copied++;
        }
        return copied;
    }

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
