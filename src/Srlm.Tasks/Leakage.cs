namespace Srlm.Tasks;

/// <summary>
/// Counts held-out instructions that appear in other text (stored prompts, training records, formatted
/// judge prompts). Matching is by substring after normalising case and whitespace, so an instruction
/// wrapped in a chat or judge template is still found. Aho-Corasick: linear in the text scanned.
/// </summary>
public sealed class Leakage
{
    private readonly List<Dictionary<char, int>> _next = [new()];
    private readonly List<int> _fail = [0];
    private readonly List<List<int>> _out = [[]];
    private readonly string[] _patterns;

    public Leakage(IEnumerable<string> heldOutInstructions)
    {
        _patterns = heldOutInstructions.Select(Normalize).Where(p => p.Length > 0).Distinct(StringComparer.Ordinal).ToArray();
        for (int p = 0; p < _patterns.Length; p++)
        {
            int node = 0;
            foreach (var c in _patterns[p])
            {
                if (!_next[node].TryGetValue(c, out var child))
                {
                    child = _next.Count;
                    _next.Add(new());
                    _fail.Add(0);
                    _out.Add([]);
                    _next[node][c] = child;
                }
                node = child;
            }
            _out[node].Add(p);
        }
        var queue = new Queue<int>(_next[0].Values);
        while (queue.Count > 0)
        {
            int u = queue.Dequeue();
            foreach (var (c, v) in _next[u])
            {
                int f = _fail[u];
                while (f != 0 && !_next[f].ContainsKey(c)) f = _fail[f];
                _fail[v] = _next[f].TryGetValue(c, out var t) && t != v ? t : 0;
                _out[v].AddRange(_out[_fail[v]]);
                queue.Enqueue(v);
            }
        }
    }

    /// <summary>The number of distinct held-out instructions.</summary>
    public int HeldOutCount => _patterns.Length;

    /// <summary>The held-out instructions (normalised) found in any of <paramref name="texts"/>.</summary>
    public IReadOnlySet<string> Find(IEnumerable<string> texts)
    {
        var found = new HashSet<int>();
        foreach (var text in texts)
        {
            int node = 0;
            foreach (var c in Normalize(text))
            {
                while (node != 0 && !_next[node].ContainsKey(c)) node = _fail[node];
                node = _next[node].TryGetValue(c, out var n) ? n : 0;
                foreach (var p in _out[node]) found.Add(p);
            }
        }
        return found.Select(p => _patterns[p]).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>How many distinct held-out instructions occur in <paramref name="texts"/> (the report's `leakage`).</summary>
    public int Count(IEnumerable<string> texts) => Find(texts).Count;

    public static int Count(IEnumerable<string> heldOutInstructions, IEnumerable<string> texts) =>
        new Leakage(heldOutInstructions).Count(texts);

    /// <summary>Lower case, whitespace runs collapsed to one space, trimmed.</summary>
    public static string Normalize(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool space = false;
        foreach (var ch in s)
        {
            if (char.IsWhiteSpace(ch)) { space = sb.Length > 0; continue; }
            if (space) { sb.Append(' '); space = false; }
            sb.Append(char.ToLowerInvariant(ch));
        }
        return sb.ToString();
    }
}
