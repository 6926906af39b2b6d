// Over 300 lines on purpose: the kept-prefix cache and the shared prefill that fills and reads it.
namespace Srlm.Model;

/// <summary>Keys and values of token prefixes already run through one loaded model, kept between generation calls
/// (every judge prompt of an iteration starts with the same rubric), least recently used first out, bounded by bytes.
/// Belongs to one model instance whose weights do not change (a served checkpoint); use it on the model's thread.
/// A <see cref="TextGenerator"/> given one also shares prefixes inside a batch (see <see cref="SharedPrefill"/>).</summary>
public sealed class PrefixCache(long maxBytes, int minSharedTokens = PrefixCache.DefaultMinSharedTokens) : IDisposable
{
    /// <summary>A prefix shorter than this is not worth a forward of its own: it is computed with what follows it.</summary>
    public const int DefaultMinSharedTokens = 16;

    private sealed class Entry(int[] tokens, KvCache cache)
    {
        public int[] Tokens { get; } = tokens;
        public KvCache Cache { get; } = cache; // batch 1, Length = Tokens.Length
        public long LastUsed { get; set; }
    }

    private readonly List<Entry> _entries = [];
    private long _clock;

    /// <summary>Bytes the kept prefixes may hold; 0 keeps none (prefixes are still shared inside a batch).</summary>
    public long MaxBytes { get; } = maxBytes >= 0 ? maxBytes : throw new ArgumentOutOfRangeException(nameof(maxBytes), "must be >= 0");
    public int MinSharedTokens { get; } = minSharedTokens >= 1 ? minSharedTokens : throw new ArgumentOutOfRangeException(nameof(minSharedTokens), "must be >= 1");

    /// <summary>Prefixes kept now.</summary>
    public int Count => _entries.Count;
    public long Bytes => _entries.Sum(e => e.Cache.Bytes);
    /// <summary>Prompt tokens whose keys and values came from a kept prefix instead of a forward, since creation.</summary>
    public long TokensReused { get; internal set; }

    /// <summary>The kept prefix sharing the most leading tokens with <paramref name="ids"/> (at most
    /// <paramref name="limit"/>), and how many; (null, 0) when none shares a token.</summary>
    internal (KvCache? Cache, int Length) Longest(IReadOnlyList<int> ids, int limit)
    {
        Entry? best = null;
        int bestLength = 0;
        foreach (var e in _entries)
        {
            int n = 0, max = Math.Min(limit, e.Tokens.Length);
            while (n < max && e.Tokens[n] == ids[n]) n++;
            if (n > bestLength) { best = e; bestLength = n; }
        }
        if (best is null) return (null, 0);
        best.LastUsed = ++_clock;
        return (best.Cache, bestLength);
    }

    /// <summary>Keeps <paramref name="cache"/> (batch 1, holding exactly <paramref name="tokens"/>) and takes ownership
    /// of it. Kept prefixes of it are dropped (it covers them); the least recently used go when over <see cref="MaxBytes"/>.</summary>
    internal void Add(int[] tokens, KvCache cache)
    {
        if (cache.BatchSize != 1 || cache.Length != tokens.Length) throw new ArgumentException("a kept prefix is one row holding exactly its tokens");
        if (cache.Bytes > MaxBytes || _entries.Any(e => e.Tokens.Length >= tokens.Length && e.Tokens.AsSpan(0, tokens.Length).SequenceEqual(tokens)))
        {
            cache.Dispose(); // too big, or already covered by a kept prefix
            return;
        }
        foreach (var covered in _entries.Where(e => e.Tokens.Length <= tokens.Length && tokens.AsSpan(0, e.Tokens.Length).SequenceEqual(e.Tokens)).ToList())
        {
            _entries.Remove(covered);
            covered.Cache.Dispose();
        }
        _entries.Add(new Entry(tokens, cache) { LastUsed = ++_clock });
        long total = Bytes;
        while (total > MaxBytes)
        {
            var victim = _entries.MinBy(e => e.LastUsed)!;
            _entries.Remove(victim);
            total -= victim.Cache.Bytes;
            victim.Cache.Dispose();
        }
    }

    /// <summary>Drops every kept prefix (e.g. after the weights changed).</summary>
    public void Clear()
    {
        foreach (var e in _entries) e.Cache.Dispose();
        _entries.Clear();
    }

    public void Dispose() => Clear();
}

/// <summary>
/// Prefill that computes a token prefix shared by several prompts once. The prompts of a batch form a tree of shared
/// prefixes (a radix tree over their token ids: all judge prompts start with the rubric, the candidates of one prompt
/// continue with the same instruction); each node of at least <see cref="PrefixCache.MinSharedTokens"/> tokens is run
/// through the model once, in one forward per tree depth, and its keys and values are copied to its children.
/// The root may come from a <see cref="PrefixCache"/> filled by earlier calls.
/// </summary>
/// <remarks>
/// The cache slots of a row are blocks, one per tree depth and one for the leaves: [root | depth 1 | ... | leaf].
/// A node fills its block from the right (left padding inside the block); slots a row does not use are masked out.
/// Positions come from the mask (a token's position is the number of real tokens before it), so every token gets the
/// position it has in its own prompt, and attention sees exactly the prompt's tokens: the same computation as a
/// whole-prompt prefill, to the bit (attention over the cache sums in slot order and skips padding,
/// <see cref="CacheAttention"/>; small products are padded, <see cref="TensorMath.Linear(TorchSharp.Modules.Linear, Tensor)"/>). Only tokens are shared, never text, so no
/// re-tokenisation at a boundary can change what the model reads. The last token of every prompt is always in its
/// leaf block (its logits start the generation).
/// </remarks>
internal sealed class SharedPrefill
{
    private sealed class Node(int start, int end, Node? parent, int[] ids)
    {
        public int Start { get; } = start;     // first position (token index in the prompt)
        public int End { get; } = end;         // one past the last
        public Node? Parent { get; } = parent;
        public int Depth { get; } = parent is null ? 0 : parent.Depth + 1;
        public int[] Ids { get; } = ids;       // the prompt whose tokens [Start, End) this node holds
        public int Row { get; set; }           // its row in its depth's batch
        public int Length => End - Start;
    }

    private readonly List<List<Node>> _levels = [];
    private readonly Node?[] _leafParent;
    private readonly int[] _leafStart;
    private readonly IReadOnlyList<GenerationRequest> _requests;
    private readonly int _minShared;

    /// <summary>Real tokens run through the model, and rows x columns of the forwards (padding included).</summary>
    public long TokensComputed { get; private set; }
    public long PositionsComputed { get; private set; }
    public long TokensReused { get; private set; }

    private SharedPrefill(IReadOnlyList<GenerationRequest> requests, int minShared)
    {
        _requests = requests;
        _minShared = minShared;
        _leafParent = new Node?[requests.Count];
        _leafStart = new int[requests.Count];
        var ids = requests.Select(r => r.PromptIds as int[] ?? r.PromptIds.ToArray()).ToArray();
        Build(ids, Enumerable.Range(0, requests.Count).ToList(), 0, null, root: true);
    }

    /// <summary>Plans the shared prefill of <paramref name="requests"/> (each with at least one token).</summary>
    public static SharedPrefill Plan(IReadOnlyList<GenerationRequest> requests, int minSharedTokens) => new(requests, minSharedTokens);

    /// <summary>The nodes of each tree depth (for tests and counters).</summary>
    public IReadOnlyList<IReadOnlyList<(int Start, int End)>> Levels => _levels.Select(l => (IReadOnlyList<(int, int)>)l.Select(n => (n.Start, n.End)).ToList()).ToList();

    // Radix split of the prompts `set`, which agree on tokens [0, offset). A request may share all but its last token.
    private void Build(int[][] ids, List<int> set, int offset, Node? parent, bool root)
    {
        if (!root && set.Count == 1) { Leaf(set[0], offset, parent); return; }
        int limit = set.Min(r => ids[r].Length - 1) - offset;
        int l = 0;
        var first = ids[set[0]];
        while (l < limit && set.All(r => ids[r][offset + l] == first[offset + l])) l++;
        Node? here = parent;
        int next = offset;
        if (l >= _minShared)
        {
            here = new Node(offset, offset + l, parent, first);
            while (_levels.Count <= here.Depth) _levels.Add([]);
            here.Row = _levels[here.Depth].Count;
            _levels[here.Depth].Add(here);
            next = offset + l;
        }
        var groups = new List<(int Token, List<int> Members)>();
        foreach (var r in set)
        {
            if (ids[r].Length - 1 == offset + l) { Leaf(r, next, here); continue; } // nothing left to share
            int token = ids[r][offset + l];
            int g = groups.FindIndex(x => x.Token == token);
            if (g < 0) groups.Add((token, [r]));
            else groups[g].Members.Add(r);
        }
        foreach (var (_, members) in groups)
        {
            if (members.Count == 1) Leaf(members[0], next, here);
            else Build(ids, members, next, here, root: false);
        }
    }

    private void Leaf(int request, int start, Node? parent)
    {
        _leafParent[request] = parent;
        _leafStart[request] = start;
    }

    /// <summary>
    /// Runs the plan: keys and values of every prompt in a cache of one row per request, <paramref name="capacity"/>
    /// = <paramref name="slots"/> + the room asked for by <paramref name="extra"/>; the logits of each prompt's last
    /// token (B0, V); the mask of the slots (B0 x slots, 1 = a real token), or null when no slot is padding.
    /// </summary>
    public (KvCache Cache, Tensor Last, long[]? Mask, int Slots) Run(LlamaForCausalLM model, int padId, ScalarType cacheType, int extra, PrefixCache? kept)
    {
        var config = model.Config;
        var device = model.HeadWeight.device;
        int depths = _levels.Count;
        var width = _levels.Select(l => l.Max(n => n.Length)).ToArray();
        var before = new int[depths + 1]; // slots before each depth's block; before[depths] = before the leaf block
        for (int d = 0; d < depths; d++) before[d + 1] = before[d] + width[d];
        int b0 = _requests.Count;
        int leafWidth = Enumerable.Range(0, b0).Max(r => _requests[r].PromptIds.Count - _leafStart[r]);
        int slots = before[depths] + leafWidth;

        // Mask row of a node or leaf: the blocks of its ancestors, then its own.
        long[] MaskRow(Node? parent, int blockStart, int blockWidth, int length)
        {
            var row = new long[blockStart + blockWidth];
            for (var a = parent; a is not null; a = a.Parent)
                Array.Fill(row, 1L, before[a.Depth] + width[a.Depth] - a.Length, a.Length);
            Array.Fill(row, 1L, blockStart + blockWidth - length, length);
            return row;
        }

        var caches = new KvCache?[depths];
        int[]? keep = null; // the root's tokens, when it should be kept for later calls
        try
        {
            for (int d = 0; d < depths; d++)
            {
                var nodes = _levels[d];
                int w = width[d], past = before[d];
                KvCache cache;
                if (d == 0 && nodes.Count == 1)
                {
                    // One root, one row, no padding: tokens [0, reused) from a kept prefix, the rest computed here, at
                    // positions that follow from the cache's length.
                    var root = nodes[0];
                    var (hit, reused) = kept?.Longest(root.Ids, root.Length) ?? (null, 0);
                    if (hit is not null)
                    {
                        using var zero = tensor(new long[] { 0 }, device: device);
                        cache = hit.Select(zero, capacity: w, length: reused);
                        TokensReused += reused;
                        kept!.TokensReused += reused;
                    }
                    else cache = new KvCache(config, 1, w, cacheType, device);
                    caches[d] = cache;
                    if (reused == root.Length) continue;
                    if (kept is not null && kept.MaxBytes > 0) keep = root.Ids[..root.Length];
                    using var rootScope = NewDisposeScope();
                    var rest = root.Ids[reused..root.Length].Select(x => (long)x).ToArray();
                    model.Forward(tensor(rest, [1, rest.Length], device: device), cache: cache, lastOnly: true);
                    TokensComputed += rest.Length;
                    PositionsComputed += rest.Length;
                    continue;
                }
                if (d == 0) cache = new KvCache(config, nodes.Count, w, cacheType, device); // several roots: no parents
                else
                {
                    using var parents = tensor(nodes.Select(n => (long)n.Parent!.Row).ToArray(), device: device);
                    cache = caches[d - 1]!.Select(parents, capacity: past + w);
                }
                caches[d] = cache;
                using var scope = NewDisposeScope();
                var ids = new long[nodes.Count * w];
                var mask = new long[nodes.Count * (past + w)];
                for (int i = 0; i < nodes.Count; i++)
                {
                    var n = nodes[i];
                    int pad = w - n.Length;
                    for (int j = 0; j < w; j++) ids[i * w + j] = j < pad ? padId : n.Ids[n.Start + j - pad];
                    MaskRow(n.Parent, past, w, n.Length).CopyTo(mask, i * (past + w));
                    TokensComputed += n.Length;
                }
                PositionsComputed += (long)nodes.Count * w;
                model.Forward(tensor(ids, [nodes.Count, w], device: device), tensor(mask, [nodes.Count, past + w], device: device), cache: cache, lastOnly: true);
            }

            // Leaves: every request's row gets its deepest shared node's keys and values, then its own tokens.
            int leafPast = before[depths];
            var leafCache = new KvCache(config, b0, slots + extra, cacheType, device);
            try
            {
                using var scope = NewDisposeScope();
                for (int d = 0; d < depths; d++)
                {
                    var members = Enumerable.Range(0, b0).Where(r => _leafParent[r]?.Depth == d).ToArray();
                    if (members.Length == 0) continue;
                    leafCache.CopyRows(caches[d]!,
                        tensor(members.Select(r => (long)_leafParent[r]!.Row).ToArray(), device: device),
                        tensor(members.Select(r => (long)r).ToArray(), device: device));
                }
                leafCache.SetLength(leafPast);
                var ids = new long[b0 * leafWidth];
                var mask = new long[b0 * slots];
                for (int r = 0; r < b0; r++)
                {
                    var p = _requests[r].PromptIds;
                    int length = p.Count - _leafStart[r], pad = leafWidth - length;
                    for (int j = 0; j < leafWidth; j++) ids[r * leafWidth + j] = j < pad ? padId : p[_leafStart[r] + j - pad];
                    MaskRow(_leafParent[r], leafPast, leafWidth, length).CopyTo(mask, r * slots);
                    TokensComputed += length;
                }
                PositionsComputed += (long)b0 * leafWidth;
                bool padded = mask.Contains(0L);
                var last = model.Forward(tensor(ids, [b0, leafWidth], device: device), padded ? tensor(mask, [b0, slots], device: device) : null,
                    cache: leafCache, lastOnly: true).squeeze(1); // (B0, V)
                if (keep is not null)
                {
                    kept!.Add(keep, caches[0]!);
                    caches[0] = null; // the kept prefix owns it now
                }
                return (leafCache, last.MoveToOuterDisposeScope(), padded ? mask : null, slots);
            }
            catch
            {
                leafCache.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var c in caches) c?.Dispose();
        }
    }
}
