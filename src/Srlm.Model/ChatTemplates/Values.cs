// Over 300 lines on purpose: Python's value semantics (truthiness, equality, ordering, str and repr) that the interpreter and the built-ins share.
namespace Srlm.Model.ChatTemplates;

// Runtime values follow Python's types: null = None, bool, long = int, double = float, string = str,
// PyList (list or tuple), PyDict (dict, string keys, insertion order), Undefined, Namespace, callables.

internal sealed class Undefined
{
    public static readonly Undefined Instance = new();
    private Undefined() { }
}

internal sealed class PyList(IEnumerable<object?> items, bool isTuple = false) : List<object?>(items)
{
    public bool IsTuple { get; } = isTuple;
}

internal sealed class PyDict : OrderedDictionary<string, object?>
{
    public PyDict() : base(StringComparer.Ordinal) { }
}

internal sealed class Namespace
{
    public Dictionary<string, object?> Attrs { get; } = new(StringComparer.Ordinal);
}

internal delegate object? PyFunction(List<object?> args, List<(string Name, object? Value)> kwargs);

internal sealed record BuiltinCallable(string Name, PyFunction Fn);

/// <summary>The values one runtime error needs: a message; the interpreter adds the position.</summary>
internal sealed class PyError(string message) : Exception(message);

internal static class Py
{
    public static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "Undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        PyList l => l.IsTuple ? "tuple" : "list",
        PyDict => "dict",
        Namespace => "Namespace",
        _ => "function",
    };

    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long i => i != 0,
        double d => d != 0,
        string s => s.Length > 0,
        PyList l => l.Count > 0,
        PyDict d => d.Count > 0,
        _ => true,
    };

    public static bool IsNumber(object? v) => v is bool or long or double;

    public static double ToDouble(object? v) => v switch
    {
        bool b => b ? 1 : 0,
        long i => i,
        double d => d,
        _ => throw new PyError($"expected a number, got {TypeName(v)}"),
    };

    /// <summary>Python's <c>str()</c>, with jinja2's empty string for undefined.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        null => "None",
        bool b => b ? "True" : "False",
        long i => i.ToString(Inv),
        double d => FloatRepr(d),
        _ => Repr(v),
    };

    public static string Repr(object? v)
    {
        switch (v)
        {
            case string s: return StrRepr(s);
            case PyList l:
                if (l.IsTuple) return l.Count == 1 ? $"({Repr(l[0])},)" : "(" + string.Join(", ", l.Select(Repr)) + ")";
                return "[" + string.Join(", ", l.Select(Repr)) + "]";
            case PyDict d: return "{" + string.Join(", ", d.Select(kv => StrRepr(kv.Key) + ": " + Repr(kv.Value))) + "}";
            case Namespace n: return "<Namespace " + "{" + string.Join(", ", n.Attrs.Select(kv => StrRepr(kv.Key) + ": " + Repr(kv.Value))) + "}>";
            case Undefined: return "Undefined";
            case BuiltinCallable or Macro or BoundMethod: throw new PyError("a function cannot be printed");
            case LoopInfo: throw new PyError("the loop object cannot be printed");
            default: return Str(v);
        }
    }

    public static string StrRepr(string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var sb = new StringBuilder().Append(quote);
        foreach (var c in s)
        {
            if (c == quote || c == '\\') sb.Append('\\').Append(c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", Inv));
            else sb.Append(c);
        }
        return sb.Append(quote).ToString();
    }

    /// <summary>Python's <c>repr(float)</c>: the shortest round-trip digits, fixed notation for exponents -4..15.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsPositiveInfinity(d)) return "inf";
        if (double.IsNegativeInfinity(d)) return "-inf";
        var neg = double.IsNegative(d);
        var shortest = Math.Abs(d).ToString("R", Inv);
        // split the shortest form into digits and a decimal exponent: value = 0.DIGITS * 10^exp10 ... as d1.d2.. * 10^x
        string mant = shortest; var exp = 0;
        var ei = shortest.IndexOfAny(['E', 'e']);
        if (ei >= 0) { mant = shortest[..ei]; exp = int.Parse(shortest[(ei + 1)..], Inv); }
        var dot = mant.IndexOf('.');
        var intPart = dot >= 0 ? mant[..dot] : mant;
        var frac = dot >= 0 ? mant[(dot + 1)..] : "";
        var digits = (intPart + frac).TrimStart('0');
        int x; // scientific exponent of the first significant digit
        if (digits.Length == 0) { digits = "0"; x = 0; }
        else
        {
            var leadingZeros = (intPart + frac).Length - (intPart + frac).TrimStart('0').Length;
            x = intPart.Length - 1 - leadingZeros + exp;
        }
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        string body;
        if (x >= -4 && x < 16)
        {
            if (x >= 0)
            {
                var ip = digits.Length > x + 1 ? digits[..(x + 1)] : digits + new string('0', x + 1 - digits.Length);
                var fp = digits.Length > x + 1 ? digits[(x + 1)..] : "0";
                body = ip + "." + fp;
            }
            else body = "0." + new string('0', -x - 1) + digits;
        }
        else
        {
            var m = digits.Length == 1 ? digits : digits[..1] + "." + digits[1..];
            body = m + "e" + (x < 0 ? "-" : "+") + Math.Abs(x).ToString("00", Inv);
        }
        return neg ? "-" + body : body;
    }

    public static bool Eq(object? a, object? b)
    {
        if (a is Undefined || b is Undefined) return a is Undefined && b is Undefined;
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case string sa: return b is string sb && sa == sb;
            case PyList la:
                if (b is not PyList lb || la.IsTuple != lb.IsTuple || la.Count != lb.Count) return false;
                for (var i = 0; i < la.Count; i++) if (!Eq(la[i], lb[i])) return false;
                return true;
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                foreach (var kv in da) if (!db.TryGetValue(kv.Key, out var bv) || !Eq(kv.Value, bv)) return false;
                return true;
            default: return ReferenceEquals(a, b) || Equals(a, b);
        }
    }

    public static long ToLong(object? v) => v switch { bool b => b ? 1 : 0, long i => i, _ => throw new PyError($"expected an integer, got {TypeName(v)}") };

    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb) return CompareCodePoints(sa, sb);
        if (a is PyList la && b is PyList lb && la.IsTuple == lb.IsTuple)
        {
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (Eq(la[i], lb[i])) continue;
                return Compare(la[i], lb[i]);
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new PyError($"'<' is not supported between {TypeName(a)} and {TypeName(b)}");
    }

    public static int CompareCodePoints(string a, string b)
    {
        var ea = a.EnumerateRunes().GetEnumerator();
        var eb = b.EnumerateRunes().GetEnumerator();
        while (true)
        {
            var ha = ea.MoveNext();
            var hb = eb.MoveNext();
            if (!ha || !hb) return ha == hb ? 0 : ha ? 1 : -1;
            var c = ea.Current.Value.CompareTo(eb.Current.Value);
            if (c != 0) return c;
        }
    }

    /// <summary>Python's <c>len</c> of a string counts code points.</summary>
    public static int StrLen(string s)
    {
        var n = 0;
        foreach (var _ in s.EnumerateRunes()) n++;
        return n;
    }

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new PyError($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        PyList l => l.Any(x => Eq(x, item)),
        PyDict d => item is string k ? d.ContainsKey(k) : false,
        Undefined => false,
        Namespace n => throw new PyError("'in' is not supported on a namespace"),
        _ => throw new PyError($"argument of type '{TypeName(container)}' is not iterable"),
    };

    public static IEnumerable<object?> Iterate(object? v) => v switch
    {
        PyList l => l.ToList(),
        PyDict d => d.Keys.Cast<object?>().ToList(),
        string s => s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList(),
        Undefined => [],
        _ => throw new PyError($"'{TypeName(v)}' object is not iterable"),
    };

    /// <summary>Converts .NET and JSON values to the interpreter's values.</summary>
    public static object? FromNet(object? v) => v switch
    {
        null => null,
        string or bool or long or double or PyList or PyDict or Undefined => v,
        int i => (long)i,
        float f => (double)f,
        decimal m => (double)m,
        JsonNode n => FromJson(n),
        JsonElement e => FromJson(JsonNode.Parse(e.GetRawText())),
        IEnumerable<KeyValuePair<string, object?>> d => ToDict(d),
        IEnumerable<KeyValuePair<string, string>> d => ToDict(d.Select(kv => new KeyValuePair<string, object?>(kv.Key, kv.Value))),
        System.Collections.IEnumerable e => new PyList(e.Cast<object?>().Select(FromNet)),
        _ => throw new ArgumentException($"a chat template cannot take a value of type {v.GetType().Name}"),
    };

    private static PyDict ToDict(IEnumerable<KeyValuePair<string, object?>> d)
    {
        var r = new PyDict();
        foreach (var kv in d) r[kv.Key] = FromNet(kv.Value);
        return r;
    }

    public static object? FromJson(JsonNode? n)
    {
        switch (n)
        {
            case null: return null;
            case JsonObject o:
            {
                var d = new PyDict();
                foreach (var kv in o) d[kv.Key] = FromJson(kv.Value);
                return d;
            }
            case JsonArray a: return new PyList(a.Select(FromJson));
            case JsonValue v:
                switch (v.GetValueKind())
                {
                    case JsonValueKind.String: return v.GetValue<string>();
                    case JsonValueKind.True: return true;
                    case JsonValueKind.False: return false;
                    case JsonValueKind.Null: return null;
                    case JsonValueKind.Number:
                        var raw = v.ToJsonString();
                        if (long.TryParse(raw, NumberStyles.AllowLeadingSign, Inv, out var l)) return l;
                        return double.Parse(raw, Inv);
                }
                break;
        }
        throw new ArgumentException("unsupported JSON value");
    }

    /// <summary>Python's <c>json.dumps</c> as transformers' tojson calls it (ensure_ascii, indent, separators, sort_keys).</summary>
    public static string Json(object? v, bool ensureAscii, int? indent, string itemSep, string keySep, bool sortKeys)
    {
        var sb = new StringBuilder();
        WriteJson(sb, v, ensureAscii, indent, itemSep, keySep, sortKeys, 0);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v, bool ascii, int? indent, string itemSep, string keySep, bool sort, int level)
    {
        switch (v)
        {
            case null: sb.Append("null"); return;
            case bool b: sb.Append(b ? "true" : "false"); return;
            case long i: sb.Append(i.ToString(Inv)); return;
            case double d:
                sb.Append(double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : FloatRepr(d));
                return;
            case string s: JsonString(sb, s, ascii); return;
            case PyList l:
                if (l.Count == 0) { sb.Append("[]"); return; }
                sb.Append('[');
                for (var k = 0; k < l.Count; k++)
                {
                    if (k > 0) sb.Append(itemSep);
                    if (indent is { } n) sb.Append('\n').Append(' ', n * (level + 1));
                    WriteJson(sb, l[k], ascii, indent, itemSep, keySep, sort, level + 1);
                }
                if (indent is { } m) sb.Append('\n').Append(' ', m * level);
                sb.Append(']');
                return;
            case PyDict d:
                if (d.Count == 0) { sb.Append("{}"); return; }
                sb.Append('{');
                IEnumerable<KeyValuePair<string, object?>> items = sort ? d.OrderBy(kv => kv.Key, Comparer<string>.Create(CompareCodePoints)) : d;
                var first = true;
                foreach (var kv in items)
                {
                    if (!first) sb.Append(itemSep);
                    first = false;
                    if (indent is { } n) sb.Append('\n').Append(' ', n * (level + 1));
                    JsonString(sb, kv.Key, ascii);
                    sb.Append(keySep);
                    WriteJson(sb, kv.Value, ascii, indent, itemSep, keySep, sort, level + 1);
                }
                if (indent is { } m2) sb.Append('\n').Append(' ', m2 * level);
                sb.Append('}');
                return;
            default:
                throw new PyError($"Object of type {TypeName(v)} is not JSON serializable");
        }
    }

    private static void JsonString(StringBuilder sb, string s, bool ascii)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.Append("\\u").Append(((int)c).ToString("x4", Inv));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}
