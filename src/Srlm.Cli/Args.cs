namespace Srlm.Cli;

/// <summary>A small `--name value` / `--flag` parser that reports unknown or malformed options as UsageException.</summary>
public sealed class Args
{
    private readonly Dictionary<string, string?> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public List<string> Positional { get; } = new();

    public Args(string[] args, params string[] flags)
    {
        var flagSet = new HashSet<string>(flags, StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            var a = args[i];
            if (a.StartsWith("--", StringComparison.Ordinal))
            {
                var eq = a.IndexOf('=');
                if (eq > 0) { _options[a[..eq]] = a[(eq + 1)..]; continue; }
                if (flagSet.Contains(a)) { _options[a] = null; continue; }
                // The last word is an option without a value: a flag this verb does not have, or a value left out.
                if (i + 1 >= args.Length) throw new UsageException($"option {a} needs a value (or is not an option of this verb)");
                _options[a] = args[++i];
            }
            else Positional.Add(a);
        }
    }

    public bool Flag(string name) { _read.Add(name); return _options.ContainsKey(name); }

    public string? Get(string name) { _read.Add(name); return _options.TryGetValue(name, out var v) ? v : null; }

    public string Required(string name) => Get(name) ?? throw new UsageException($"missing required option {name}");

    public int Int(string name, int fallback)
    {
        var v = Get(name);
        if (v is null) return fallback;
        return int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n)
            ? n : throw new UsageException($"option {name} must be an integer, got '{v}'");
    }

    public long Long(string name, long fallback)
    {
        var v = Get(name);
        if (v is null) return fallback;
        return long.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n)
            ? n : throw new UsageException($"option {name} must be an integer, got '{v}'");
    }

    public double Double(string name, double fallback)
    {
        var v = Get(name);
        if (v is null) return fallback;
        return double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var d)
            ? d : throw new UsageException($"option {name} must be a number, got '{v}'");
    }

    /// <summary>Call after reading every option: an option nobody read is a typo.</summary>
    public void EnsureAllRead()
    {
        var unknown = _options.Keys.Where(k => !_read.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"unknown option {string.Join(", ", unknown)}");
    }
}
