// Over 300 lines on purpose: every filter, test, method and global the interpreter implements, in one table, so what a template may use is read in one place.
namespace Srlm.Model.ChatTemplates;

/// <summary>The filters, tests, methods and global functions the interpreter implements: the subset real chat
/// templates use, each with Python/jinja2 semantics. Anything else is refused when the template is parsed.</summary>
internal static class Builtins
{
    public static readonly HashSet<string> Functions = ["raise_exception", "strftime_now", "range", "namespace", "dict"];

    public static readonly HashSet<string> Filters = ["trim", "length", "count", "tojson", "upper", "lower", "title", "capitalize",
        "default", "d", "join", "list", "first", "last", "selectattr", "rejectattr", "select", "reject", "map", "items", "string",
        "int", "float", "replace", "safe", "indent", "unique", "sort", "dictsort", "reverse", "abs", "wordcount", "center", "batch"];

    public static readonly HashSet<string> Tests = ["defined", "undefined", "none", "string", "number", "integer", "float",
        "boolean", "true", "false", "mapping", "iterable", "sequence", "callable", "eq", "equalto", "==", "ne", "!=",
        "lt", "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "odd", "even", "divisibleby",
        "lower", "upper", "sameas"];

    public static readonly HashSet<string> Methods = [
        // str
        "strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "upper", "lower", "title", "capitalize",
        "replace", "join", "find", "rfind", "count", "splitlines", "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper",
        // dict
        "get", "items", "keys", "values",
        // loop
        "cycle"];

    private static readonly HashSet<string> DictMethods = ["get", "items", "keys", "values", "pop", "update", "copy", "clear", "setdefault", "fromkeys", "popitem"];
    private static readonly HashSet<string> StrMethods = ["strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith", "upper", "lower",
        "title", "capitalize", "replace", "join", "find", "rfind", "count", "splitlines", "isdigit", "isalpha", "isalnum", "isspace", "islower",
        "isupper", "format", "encode", "index", "rindex", "center", "ljust", "rjust", "zfill", "partition", "rpartition", "swapcase", "casefold",
        "expandtabs", "translate", "maketrans", "isnumeric", "isdecimal", "istitle", "isidentifier", "isprintable", "isascii", "removeprefix", "removesuffix", "format_map"];
    private static readonly HashSet<string> ListMethods = ["append", "extend", "insert", "remove", "pop", "clear", "index", "count", "sort", "reverse", "copy"];

    public static object? Global(string name) => name switch
    {
        "raise_exception" => new BuiltinCallable(name, (a, _) => throw new ChatTemplateRaisedException(a.Count > 0 ? Py.Str(a[0]) : "")),
        "strftime_now" => new BuiltinCallable(name, (a, _) => Strftime(DateTime.Now, a.Count > 0 ? Py.Str(a[0]) : throw new PyError("strftime_now() needs a format"))),
        "range" => new BuiltinCallable(name, Range),
        "namespace" => new BuiltinCallable(name, (a, kw) =>
        {
            var ns = new Namespace();
            foreach (var x in a)
            {
                if (x is not PyDict d) throw new PyError("namespace() takes keyword arguments or a dict");
                foreach (var kv in d) ns.Attrs[kv.Key] = kv.Value;
            }
            foreach (var (k, v) in kw) ns.Attrs[k] = v;
            return ns;
        }),
        "dict" => new BuiltinCallable(name, (a, kw) =>
        {
            var d = new PyDict();
            foreach (var x in a)
            {
                if (x is not PyDict src) throw new PyError("dict() takes keyword arguments or a dict");
                foreach (var kv in src) d[kv.Key] = kv.Value;
            }
            foreach (var (k, v) in kw) d[k] = v;
            return d;
        }),
        _ => null,
    };

    private static object? Range(List<object?> a, List<(string, object?)> kw)
    {
        if (kw.Count > 0 || a.Count is < 1 or > 3) throw new PyError("range() takes 1 to 3 positional arguments");
        long start = 0, stop, step = 1;
        if (a.Count == 1) stop = Py.ToLong(a[0]);
        else { start = Py.ToLong(a[0]); stop = Py.ToLong(a[1]); if (a.Count == 3) step = Py.ToLong(a[2]); }
        if (step == 0) throw new PyError("range() arg 3 must not be zero");
        var r = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            r.Add(i);
            if (r.Count > 100_000) throw new PyError("range() is too long");
        }
        return new PyList(r);
    }

    /// <summary>Python's <c>datetime.now().strftime</c> for the directives templates use (glibc's names, C locale).</summary>
    public static string Strftime(DateTime t, string fmt)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < fmt.Length; i++)
        {
            if (fmt[i] != '%' || i + 1 >= fmt.Length) { sb.Append(fmt[i]); continue; }
            var c = fmt[++i];
            sb.Append(c switch
            {
                'd' => t.Day.ToString("00", Py.Inv),
                'e' => t.Day.ToString(Py.Inv).PadLeft(2),
                'm' => t.Month.ToString("00", Py.Inv),
                'Y' => t.Year.ToString(Py.Inv),
                'y' => (t.Year % 100).ToString("00", Py.Inv),
                'H' => t.Hour.ToString("00", Py.Inv),
                'I' => ((t.Hour + 11) % 12 + 1).ToString("00", Py.Inv),
                'M' => t.Minute.ToString("00", Py.Inv),
                'S' => t.Second.ToString("00", Py.Inv),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' or 'h' => CultureInfo.InvariantCulture.DateTimeFormat.GetAbbreviatedMonthName(t.Month),
                'B' => CultureInfo.InvariantCulture.DateTimeFormat.GetMonthName(t.Month),
                'a' => CultureInfo.InvariantCulture.DateTimeFormat.GetAbbreviatedDayName(t.DayOfWeek),
                'A' => CultureInfo.InvariantCulture.DateTimeFormat.GetDayName(t.DayOfWeek),
                'j' => t.DayOfYear.ToString("000", Py.Inv),
                'F' => t.ToString("yyyy-MM-dd", Py.Inv),
                'T' => t.ToString("HH:mm:ss", Py.Inv),
                '%' => "%",
                _ => throw new PyError($"strftime directive %{c} is not supported"),
            });
        }
        return sb.ToString();
    }

    // ---- attribute and item access (jinja2's environment.getattr / getitem)

    public static object? GetAttr(object? obj, string name)
    {
        if (name.StartsWith('_')) throw new PyError($"access to attribute '{name}' is unsafe");
        switch (obj)
        {
            case Undefined: throw new PyError($"'{name}' of an undefined value");
            case PyDict d:
                if (DictMethods.Contains(name)) return new BoundMethod(d, name);
                return d.TryGetValue(name, out var v) ? v : Undefined.Instance;
            case string s: return StrMethods.Contains(name) ? new BoundMethod(s, name) : Undefined.Instance;
            case PyList l: return ListMethods.Contains(name) ? new BoundMethod(l, name) : Undefined.Instance;
            case Namespace ns: return ns.Attrs.TryGetValue(name, out var nv) ? nv : Undefined.Instance;
            case LoopInfo loop: return loop.Get(name);
            default: return Undefined.Instance;
        }
    }

    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined: throw new PyError($"[{Py.Repr(key)}] of an undefined value");
            case PyDict d:
                if (key is string k)
                {
                    if (d.TryGetValue(k, out var v)) return v;
                    return DictMethods.Contains(k) ? new BoundMethod(d, k) : Undefined.Instance;
                }
                return Undefined.Instance;
            case PyList l:
                if (key is long or bool)
                {
                    var i = Py.ToLong(key);
                    if (i < 0) i += l.Count;
                    return i >= 0 && i < l.Count ? l[(int)i] : Undefined.Instance;
                }
                return key is string ks ? GetAttr(l, ks) : Undefined.Instance;
            case string s:
                if (key is long or bool)
                {
                    var runes = s.EnumerateRunes().ToList();
                    var i = Py.ToLong(key);
                    if (i < 0) i += runes.Count;
                    return i >= 0 && i < runes.Count ? runes[(int)i].ToString() : Undefined.Instance;
                }
                return key is string sk ? GetAttr(s, sk) : Undefined.Instance;
            case Namespace ns: return key is string nk && ns.Attrs.TryGetValue(nk, out var nv) ? nv : Undefined.Instance;
            case LoopInfo loop: return key is string lk ? loop.Get(lk) : Undefined.Instance;
            default: return Undefined.Instance;
        }
    }

    public static object? Slice(object? obj, object? start, object? stop, object? step)
    {
        long? Opt(object? v) => v is null ? null : Py.ToLong(v);
        List<object?> seq;
        switch (obj)
        {
            case PyList l: seq = l; break;
            case string s: seq = s.EnumerateRunes().Select(r => (object?)r.ToString()).ToList(); break;
            case Undefined: throw new PyError("slice of an undefined value");
            default: return Undefined.Instance;
        }
        var n = (long)seq.Count;
        var st = Opt(step) ?? 1;
        if (st == 0) throw new PyError("slice step cannot be zero");
        long Clamp(long? v, long dflt, bool isStart)
        {
            if (v is null) return dflt;
            var x = v.Value;
            if (x < 0) x += n;
            if (st > 0) return Math.Clamp(x, 0, n);
            return Math.Clamp(x, -1, n - 1);
        }
        var a = Clamp(Opt(start), st > 0 ? 0 : n - 1, true);
        var b = Clamp(Opt(stop), st > 0 ? n : -1, false);
        var r = new List<object?>();
        for (var i = a; st > 0 ? i < b : i > b; i += st) r.Add(seq[(int)i]);
        return obj is string ? string.Concat(r.Cast<string>()) : new PyList(r, ((PyList)obj).IsTuple);
    }

    // ---- operators

    public static object? Binary(string op, object? a, object? b)
    {
        if (op == "~") return Py.Str(a) + Py.Str(b);
        if (a is Undefined || b is Undefined) throw new PyError($"unsupported operand: an undefined value with '{op}'");
        switch (op)
        {
            case "+":
                if (a is string sa && b is string sb) return sa + sb;
                if (a is PyList la && b is PyList lb && la.IsTuple == lb.IsTuple) return new PyList(la.Concat(lb), la.IsTuple);
                return Arith(op, a, b);
            case "*":
                if (a is string s1 && b is long or bool) return Repeat(s1, Py.ToLong(b));
                if (b is string s2 && a is long or bool) return Repeat(s2, Py.ToLong(a));
                if (a is PyList l1 && b is long or bool) return new PyList(Enumerable.Repeat(l1, (int)Math.Max(0, Py.ToLong(b))).SelectMany(x => x), l1.IsTuple);
                return Arith(op, a, b);
            case "%":
                if (a is string) throw new PyError("string formatting with '%' is not supported");
                return Arith(op, a, b);
            default:
                return Arith(op, a, b);
        }
    }

    private static string Repeat(string s, long n) => n <= 0 ? "" : new StringBuilder().Insert(0, s, (int)n).ToString();

    private static object Arith(string op, object? a, object? b)
    {
        if (!Py.IsNumber(a) || !Py.IsNumber(b))
            throw new PyError($"unsupported operand type(s) for {op}: '{Py.TypeName(a)}' and '{Py.TypeName(b)}'");
        if (op == "/")
        {
            var den = Py.ToDouble(b);
            if (den == 0) throw new PyError("division by zero");
            return Py.ToDouble(a) / den;
        }
        if (a is double || b is double)
        {
            double x = Py.ToDouble(a), y = Py.ToDouble(b);
            switch (op)
            {
                case "+": return x + y;
                case "-": return x - y;
                case "*": return x * y;
                case "**": return Math.Pow(x, y);
                case "//": if (y == 0) throw new PyError("float floor division by zero"); return Math.Floor(x / y);
                case "%":
                {
                    if (y == 0) throw new PyError("float modulo");
                    var m = x % y;
                    if (m != 0 && (m < 0) != (y < 0)) m += y;
                    return m;
                }
            }
        }
        else
        {
            long x = Py.ToLong(a), y = Py.ToLong(b);
            switch (op)
            {
                case "+": return checked(x + y);
                case "-": return checked(x - y);
                case "*": return checked(x * y);
                case "**":
                    if (y < 0) return Math.Pow(x, y);
                    long r = 1;
                    for (var i = 0; i < y; i++) r = checked(r * x);
                    return r;
                case "//":
                {
                    if (y == 0) throw new PyError("integer division by zero");
                    var q = x / y;
                    if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
                    return q;
                }
                case "%":
                {
                    if (y == 0) throw new PyError("integer modulo by zero");
                    var m = x % y;
                    if (m != 0 && (m < 0) != (y < 0)) m += y;
                    return m;
                }
            }
        }
        throw new PyError($"unknown operator {op}");
    }

    // ---- arguments

    private static object? Arg(List<object?> args, List<(string Name, object? Value)> kw, int index, string name, object? dflt)
    {
        if (index < args.Count) return args[index];
        foreach (var (k, v) in kw) if (k == name) return v;
        return dflt;
    }

    private static void CheckArgs(string what, List<object?> args, List<(string Name, object? Value)> kw, params string[] names)
    {
        if (args.Count > names.Length) throw new PyError($"{what} takes at most {names.Length} arguments");
        foreach (var (k, _) in kw)
            if (!names.Contains(k)) throw new PyError($"{what} got an unexpected keyword argument '{k}'");
    }

    // ---- filters

    public static object? Filter(string name, object? v, List<object?> a, List<(string Name, object? Value)> kw, Interpreter interp)
    {
        switch (name)
        {
            case "trim":
                CheckArgs(name, a, kw, "chars");
                return PyStrip(Py.Str(v), Arg(a, kw, 0, "chars", null) as string, true, true);
            case "length" or "count":
                CheckArgs(name, a, kw);
                return v switch
                {
                    string s => (long)Py.StrLen(s),
                    PyList l => (long)l.Count,
                    PyDict d => (long)d.Count,
                    Undefined => 0L,
                    Namespace => throw new PyError("object of type 'Namespace' has no len()"),
                    _ => throw new PyError($"object of type '{Py.TypeName(v)}' has no len()"),
                };
            case "tojson":
            {
                CheckArgs(name, a, kw, "ensure_ascii", "indent", "separators", "sort_keys");
                var ascii = Py.Truthy(Arg(a, kw, 0, "ensure_ascii", false));
                var indentV = Arg(a, kw, 1, "indent", null);
                int? indent = indentV is null ? null : (int)Py.ToLong(indentV);
                var seps = Arg(a, kw, 2, "separators", null);
                string itemSep = indent is null ? ", " : ",", keySep = ": ";
                if (seps is PyList { Count: 2 } sl) { itemSep = Py.Str(sl[0]); keySep = Py.Str(sl[1]); }
                else if (seps is not null) throw new PyError("tojson separators must be a pair of strings");
                return Py.Json(v, ascii, indent, itemSep, keySep, Py.Truthy(Arg(a, kw, 3, "sort_keys", false)));
            }
            case "upper": return Py.Str(v).ToUpperInvariant();
            case "lower": return Py.Str(v).ToLowerInvariant();
            case "title": return Title(Py.Str(v));
            case "capitalize": return Capitalize(Py.Str(v));
            case "default" or "d":
            {
                CheckArgs(name, a, kw, "default_value", "boolean");
                var dflt = Arg(a, kw, 0, "default_value", "");
                var boolean = Py.Truthy(Arg(a, kw, 1, "boolean", false));
                return v is Undefined || (boolean && !Py.Truthy(v)) ? dflt : v;
            }
            case "join":
            {
                CheckArgs(name, a, kw, "d", "attribute");
                var sep = Py.Str(Arg(a, kw, 0, "d", ""));
                var attr = Arg(a, kw, 1, "attribute", null);
                var items = Py.Iterate(v);
                if (attr is not null) items = items.Select(x => AttrPath(x, attr));
                return string.Join(sep, items.Select(Py.Str));
            }
            case "list": return new PyList(Py.Iterate(v));
            case "first": { var l = Py.Iterate(v).ToList(); return l.Count > 0 ? l[0] : Undefined.Instance; }
            case "last": { var l = Py.Iterate(v).ToList(); return l.Count > 0 ? l[^1] : Undefined.Instance; }
            case "selectattr" or "rejectattr" or "select" or "reject":
            {
                var byAttr = name.EndsWith("attr", StringComparison.Ordinal);
                var keep = name.StartsWith("select", StringComparison.Ordinal);
                if (kw.Count > 0) throw new PyError($"{name} takes no keyword arguments");
                var rest = a.ToList();
                object? attr = null;
                if (byAttr)
                {
                    if (rest.Count == 0) throw new PyError($"{name} needs an attribute name");
                    attr = rest[0];
                    rest.RemoveAt(0);
                }
                string? test = null;
                if (rest.Count > 0) { test = rest[0] as string ?? throw new PyError($"{name}: the test name must be a string"); rest.RemoveAt(0); }
                if (test is not null && !Tests.Contains(test)) throw new PyError($"test '{test}' is not supported");
                var result = new List<object?>();
                foreach (var x in Py.Iterate(v))
                {
                    var subject = byAttr ? AttrPath(x, attr) : x;
                    var ok = test is null ? Py.Truthy(subject) : Test(test, subject, rest);
                    if (ok == keep) result.Add(x);
                }
                return new PyList(result);
            }
            case "map":
            {
                var attrIdx = kw.FindIndex(k => k.Name == "attribute");
                if (attrIdx >= 0)
                {
                    var attr = kw[attrIdx].Value;
                    var dIdx = kw.FindIndex(k => k.Name == "default");
                    return new PyList(Py.Iterate(v).Select(x =>
                    {
                        var r = AttrPath(x, attr);
                        return r is Undefined && dIdx >= 0 ? kw[dIdx].Value : r;
                    }));
                }
                if (a.Count == 0 || a[0] is not string fname) throw new PyError("map needs a filter name or attribute=");
                if (!Filters.Contains(fname) || fname == "map") throw new PyError($"filter '{fname}' is not supported");
                var fargs = a.Skip(1).ToList();
                return new PyList(Py.Iterate(v).Select(x => Filter(fname, x, fargs, kw, interp)));
            }
            case "items":
                if (v is Undefined) return new PyList([]);
                if (v is not PyDict id) throw new PyError("items filter needs a mapping");
                return new PyList(id.Select(kv => (object?)new PyList([kv.Key, kv.Value], isTuple: true)));
            case "string": return Py.Str(v);
            case "int":
            {
                CheckArgs(name, a, kw, "default", "base");
                var dflt = Arg(a, kw, 0, "default", 0L);
                return v switch
                {
                    bool b => b ? 1L : 0L,
                    long i => i,
                    double d => double.IsFinite(d) ? (long)Math.Truncate(d) : dflt,
                    string s => long.TryParse(s.Trim().Replace("_", ""), NumberStyles.AllowLeadingSign, Py.Inv, out var r) ? r
                        : double.TryParse(s.Trim(), NumberStyles.Float, Py.Inv, out var f) && double.IsFinite(f) ? (long)Math.Truncate(f) : dflt,
                    _ => dflt,
                };
            }
            case "float":
            {
                CheckArgs(name, a, kw, "default");
                var dflt = Arg(a, kw, 0, "default", 0.0);
                return v switch
                {
                    bool b => b ? 1.0 : 0.0,
                    long i => (double)i,
                    double d => d,
                    string s => double.TryParse(s.Trim(), NumberStyles.Float, Py.Inv, out var f) ? f : dflt,
                    _ => dflt,
                };
            }
            case "replace":
            {
                CheckArgs(name, a, kw, "old", "new", "count");
                var s = Py.Str(v);
                var old = Py.Str(Arg(a, kw, 0, "old", ""));
                var nw = Py.Str(Arg(a, kw, 1, "new", ""));
                var cnt = Arg(a, kw, 2, "count", null);
                return PyReplace(s, old, nw, cnt is null ? -1 : Py.ToLong(cnt));
            }
            case "safe": return v;
            case "indent":
            {
                CheckArgs(name, a, kw, "width", "first", "blank");
                var w = Arg(a, kw, 0, "width", 4L);
                var ind = w is string ws ? ws : new string(' ', (int)Py.ToLong(w));
                var first = Py.Truthy(Arg(a, kw, 1, "first", false));
                var blank = Py.Truthy(Arg(a, kw, 2, "blank", false));
                var s = Py.Str(v) + "\n";
                var lines = SplitLines(s, false);
                string rv;
                if (blank) rv = string.Join("\n" + ind, lines);
                else
                {
                    rv = lines[0];
                    if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? ind + l : l));
                }
                return first ? ind + rv : rv;
            }
            case "unique":
            {
                CheckArgs(name, a, kw, "case_sensitive", "attribute");
                var cs = Py.Truthy(Arg(a, kw, 0, "case_sensitive", false));
                var attr = Arg(a, kw, 1, "attribute", null);
                var seen = new List<object?>();
                var r = new List<object?>();
                foreach (var x in Py.Iterate(v))
                {
                    var key = attr is null ? x : AttrPath(x, attr);
                    if (!cs && key is string ks) key = ks.ToLowerInvariant();
                    if (seen.Any(s => Py.Eq(s, key))) continue;
                    seen.Add(key);
                    r.Add(x);
                }
                return new PyList(r);
            }
            case "sort":
            {
                CheckArgs(name, a, kw, "reverse", "case_sensitive", "attribute");
                var rev = Py.Truthy(Arg(a, kw, 0, "reverse", false));
                var cs = Py.Truthy(Arg(a, kw, 1, "case_sensitive", false));
                var attr = Arg(a, kw, 2, "attribute", null);
                object? Key(object? x)
                {
                    var k = attr is null ? x : AttrPath(x, attr);
                    return !cs && k is string s ? s.ToLowerInvariant() : k;
                }
                var items = Py.Iterate(v).Select((x, i) => (x, k: Key(x), i)).ToList();
                items.Sort((p, q) => { var c = Py.Compare(p.k, q.k); if (rev) c = -c; return c != 0 ? c : p.i.CompareTo(q.i); });
                return new PyList(items.Select(t => t.x));
            }
            case "dictsort":
            {
                CheckArgs(name, a, kw, "case_sensitive", "by", "reverse");
                if (v is not PyDict dd) throw new PyError("dictsort needs a mapping");
                var cs = Py.Truthy(Arg(a, kw, 0, "case_sensitive", false));
                var by = Py.Str(Arg(a, kw, 1, "by", "key"));
                var rev = Py.Truthy(Arg(a, kw, 2, "reverse", false));
                object? Key(KeyValuePair<string, object?> kv)
                {
                    var k = by == "value" ? kv.Value : kv.Key;
                    return !cs && k is string s ? s.ToLowerInvariant() : k;
                }
                var items = dd.Select((kv, i) => (kv, k: Key(kv), i)).ToList();
                items.Sort((p, q) => { var c = Py.Compare(p.k, q.k); if (rev) c = -c; return c != 0 ? c : p.i.CompareTo(q.i); });
                return new PyList(items.Select(t => (object?)new PyList([t.kv.Key, t.kv.Value], isTuple: true)));
            }
            case "reverse":
                if (v is string rs) return string.Concat(rs.EnumerateRunes().Reverse().Select(r => r.ToString()));
                return new PyList(Py.Iterate(v).Reverse());
            case "abs":
                return v switch { bool b => (object)(b ? 1L : 0L), long i => (object)Math.Abs(i), double d => (object)Math.Abs(d), _ => throw new PyError($"bad operand type for abs(): '{Py.TypeName(v)}'") };
            case "wordcount":
                return (long)PySplit(Py.Str(v), null, -1).Count;
            case "center":
            {
                var s = Py.Str(v);
                var width = (int)Py.ToLong(Arg(a, kw, 0, "width", 80L));
                var len = Py.StrLen(s);
                if (width <= len) return s;
                var marg = width - len;
                var left = marg / 2 + (marg & width & 1);
                return new string(' ', left) + s + new string(' ', marg - left);
            }
            case "batch":
            {
                var size = (int)Py.ToLong(Arg(a, kw, 0, "linecount", 1L));
                if (size <= 0) throw new PyError("batch size must be positive");
                var fill = Arg(a, kw, 1, "fill_with", null);
                var hasFill = a.Count > 1 || kw.Any(k => k.Name == "fill_with");
                var r = new List<object?>();
                var cur = new List<object?>();
                foreach (var x in Py.Iterate(v))
                {
                    cur.Add(x);
                    if (cur.Count == size) { r.Add(new PyList(cur)); cur = []; }
                }
                if (cur.Count > 0)
                {
                    if (hasFill) while (cur.Count < size) cur.Add(fill);
                    r.Add(new PyList(cur));
                }
                return new PyList(r);
            }
        }
        throw new PyError($"filter '{name}' is not supported");
    }

    /// <summary>jinja2's attribute getter for filters: dotted paths, each part looked up as an item first.</summary>
    private static object? AttrPath(object? x, object? attr)
    {
        if (attr is long or bool) return GetItem(x, attr);
        foreach (var part in Py.Str(attr).Split('.'))
        {
            object? key = long.TryParse(part, NumberStyles.None, Py.Inv, out var n) ? n : part;
            x = x is Undefined ? Undefined.Instance : GetItem(x, key);
        }
        return x;
    }

    // ---- tests

    public static bool Test(string name, object? v, List<object?> a)
    {
        object? A0() => a.Count > 0 ? a[0] : throw new PyError($"test '{name}' needs an argument");
        switch (name)
        {
            case "defined": return v is not Undefined;
            case "undefined": return v is Undefined;
            case "none": return v is null;
            case "string": return v is string;
            case "number": return v is bool or long or double;
            case "integer": return v is long;
            case "float": return v is double;
            case "boolean": return v is bool;
            case "true": return v is true;
            case "false": return v is false;
            case "mapping": return v is PyDict;
            case "iterable": return v is PyList or PyDict or string or Undefined;
            case "sequence": return v is PyList or PyDict or string or Undefined;
            case "callable": return v is BuiltinCallable or Macro or BoundMethod;
            case "eq" or "equalto" or "==": return Py.Eq(v, A0());
            case "ne" or "!=": return !Py.Eq(v, A0());
            case "lt" or "lessthan" or "<": return Py.Compare(v, A0()) < 0;
            case "le" or "<=": return Py.Compare(v, A0()) <= 0;
            case "gt" or "greaterthan" or ">": return Py.Compare(v, A0()) > 0;
            case "ge" or ">=": return Py.Compare(v, A0()) >= 0;
            case "in": return Py.Contains(A0(), v);
            case "odd": return Py.ToLong(v) % 2 != 0;
            case "even": return Py.ToLong(v) % 2 == 0;
            case "divisibleby": return Py.ToLong(v) % Py.ToLong(A0()) == 0;
            case "lower": return Py.Str(v) == Py.Str(v).ToLowerInvariant();
            case "upper": return Py.Str(v) == Py.Str(v).ToUpperInvariant();
            case "sameas":
            {
                var o = A0();
                if (v is null || o is null || v is bool || o is bool) return Equals(v, o);
                return ReferenceEquals(v, o) || (v is long l1 && o is long l2 && l1 == l2 && l1 is >= -5 and <= 256);
            }
        }
        throw new PyError($"test '{name}' is not supported");
    }

    // ---- methods

    public static object? CallMethod(BoundMethod m, List<object?> a, List<(string Name, object? Value)> kw)
    {
        switch (m.Target)
        {
            case string s: return StrMethod(s, m.Name, a, kw);
            case PyDict d:
                switch (m.Name)
                {
                    case "get":
                        if (a.Count == 0) throw new PyError("get() needs a key");
                        return a[0] is string k && d.TryGetValue(k, out var v) ? v : a.Count > 1 ? a[1] : null;
                    case "items": return new PyList(d.Select(kv => (object?)new PyList([kv.Key, kv.Value], isTuple: true)));
                    case "keys": return new PyList(d.Keys.Cast<object?>());
                    case "values": return new PyList(d.Values);
                    default: throw new PyError($"dict.{m.Name}() is not allowed in a chat template (the environment is immutable)");
                }
            case PyList l:
                switch (m.Name)
                {
                    case "count": return (long)l.Count(x => Py.Eq(x, a.Count > 0 ? a[0] : null));
                    case "index":
                    {
                        var i = l.FindIndex(x => Py.Eq(x, a.Count > 0 ? a[0] : null));
                        if (i < 0) throw new PyError("list.index(x): x not in list");
                        return (long)i;
                    }
                    case "copy": return new PyList(l, l.IsTuple);
                    default: throw new PyError($"list.{m.Name}() is not allowed in a chat template (the environment is immutable)");
                }
            case LoopInfo loop when m.Name == "cycle":
                if (a.Count == 0) throw new PyError("no items for cycling given");
                return a[loop.Index0 % a.Count];
        }
        throw new PyError($"'{Py.TypeName(m.Target)}' has no method '{m.Name}'");
    }

    private static object? StrMethod(string s, string name, List<object?> a, List<(string Name, object? Value)> kw)
    {
        switch (name)
        {
            case "strip": return PyStrip(s, a.Count > 0 ? a[0] as string : null, true, true);
            case "lstrip": return PyStrip(s, a.Count > 0 ? a[0] as string : null, true, false);
            case "rstrip": return PyStrip(s, a.Count > 0 ? a[0] as string : null, false, true);
            case "split" or "rsplit":
            {
                var sep = Arg(a, kw, 0, "sep", null);
                var max = Arg(a, kw, 1, "maxsplit", -1L);
                if (sep is not null and not string) throw new PyError("split() separator must be a string or None");
                if (name == "rsplit" && Py.ToLong(max) >= 0) throw new PyError("rsplit() with maxsplit is not supported");
                return new PyList(PySplit(s, (string?)sep, Py.ToLong(max)).Cast<object?>());
            }
            case "startswith" or "endswith":
            {
                if (a.Count != 1) throw new PyError($"{name}() takes exactly one argument here");
                var cands = a[0] switch
                {
                    string p => [p],
                    PyList { IsTuple: true } t => t.Select(x => x as string ?? throw new PyError($"{name}() tuple items must be strings")).ToList(),
                    _ => throw new PyError($"{name}() argument must be a string or a tuple of strings"),
                };
                return name == "startswith"
                    ? cands.Any(p => s.StartsWith(p, StringComparison.Ordinal))
                    : cands.Any(p => s.EndsWith(p, StringComparison.Ordinal));
            }
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "title": return Title(s);
            case "capitalize": return Capitalize(s);
            case "replace":
                if (a.Count < 2) throw new PyError("replace() takes at least 2 arguments");
                return PyReplace(s, Py.Str(a[0]), Py.Str(a[1]), a.Count > 2 ? Py.ToLong(a[2]) : -1);
            case "join": return string.Join(s, Py.Iterate(a.Count > 0 ? a[0] : throw new PyError("join() takes one argument")).Select(x => x as string ?? throw new PyError($"sequence item: expected str instance, {Py.TypeName(x)} found")));
            case "find" or "rfind":
            {
                var sub = a.Count > 0 ? a[0] as string ?? throw new PyError($"{name}() needs a string") : throw new PyError($"{name}() needs a string");
                var i = name == "find" ? s.IndexOf(sub, StringComparison.Ordinal) : s.LastIndexOf(sub, StringComparison.Ordinal);
                return i < 0 ? -1L : (long)Py.StrLen(s[..i]);
            }
            case "count":
            {
                var sub = a.Count > 0 ? a[0] as string ?? throw new PyError("count() needs a string") : throw new PyError("count() needs a string");
                if (sub.Length == 0) return (long)Py.StrLen(s) + 1;
                long n = 0;
                for (var i = s.IndexOf(sub, StringComparison.Ordinal); i >= 0; i = s.IndexOf(sub, i + sub.Length, StringComparison.Ordinal)) n++;
                return n;
            }
            case "splitlines": return new PyList(SplitLines(s, a.Count > 0 && Py.Truthy(a[0])).Cast<object?>());
            case "isdigit": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isalnum": return s.Length > 0 && s.All(char.IsLetterOrDigit);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
            case "islower": return s.Any(char.IsLetter) && s == s.ToLowerInvariant() && s.Any(char.IsLower);
            case "isupper": return s.Any(char.IsLetter) && s == s.ToUpperInvariant() && s.Any(char.IsUpper);
        }
        throw new PyError($"str.{name}() is not supported");
    }

    // ---- Python string helpers

    private static bool IsPySpace(char c) => char.IsWhiteSpace(c) || (c >= '\x1c' && c <= '\x1f');

    public static string PyStrip(string s, string? chars, bool left, bool right)
    {
        Func<char, bool> strip = chars is null ? IsPySpace : chars.Contains;
        int a = 0, b = s.Length;
        if (left) while (a < b && strip(s[a])) a++;
        if (right) while (b > a && strip(s[b - 1])) b--;
        return s[a..b];
    }

    public static List<string> PySplit(string s, string? sep, long max)
    {
        var r = new List<string>();
        if (sep is null)
        {
            var i = 0;
            while (true)
            {
                while (i < s.Length && IsPySpace(s[i])) i++;
                if (i >= s.Length) break;
                if (max >= 0 && r.Count == max) { r.Add(PyStrip(s[i..], null, false, true)); break; }
                var j = i;
                while (j < s.Length && !IsPySpace(s[j])) j++;
                r.Add(s[i..j]);
                i = j;
            }
            return r;
        }
        if (sep.Length == 0) throw new PyError("empty separator");
        var start = 0;
        while (max < 0 || r.Count < max)
        {
            var k = s.IndexOf(sep, start, StringComparison.Ordinal);
            if (k < 0) break;
            r.Add(s[start..k]);
            start = k + sep.Length;
        }
        r.Add(s[start..]);
        return r;
    }

    private static string PyReplace(string s, string old, string nw, long count)
    {
        if (count < 0) return old.Length == 0 ? InsertBetween(s, nw, long.MaxValue) : s.Replace(old, nw, StringComparison.Ordinal);
        if (old.Length == 0) return InsertBetween(s, nw, count);
        var sb = new StringBuilder();
        var start = 0;
        for (long n = 0; n < count; n++)
        {
            var k = s.IndexOf(old, start, StringComparison.Ordinal);
            if (k < 0) break;
            sb.Append(s, start, k - start).Append(nw);
            start = k + old.Length;
        }
        return sb.Append(s, start, s.Length - start).ToString();
    }

    private static string InsertBetween(string s, string nw, long count)
    {
        var sb = new StringBuilder();
        long n = 0;
        foreach (var r in s.EnumerateRunes())
        {
            if (n < count) { sb.Append(nw); n++; }
            sb.Append(r.ToString());
        }
        if (n < count) sb.Append(nw);
        return sb.ToString();
    }

    private static readonly char[] LineBreaks = ['\n', '\r', '\v', '\f', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029'];

    public static List<string> SplitLines(string s, bool keepEnds)
    {
        var r = new List<string>();
        var i = 0;
        while (i < s.Length)
        {
            var k = s.IndexOfAny(LineBreaks, i);
            if (k < 0) { r.Add(s[i..]); break; }
            var end = k + (s[k] == '\r' && k + 1 < s.Length && s[k + 1] == '\n' ? 2 : 1);
            r.Add(keepEnds ? s[i..end] : s[i..k]);
            i = end;
        }
        return r;
    }

    public static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        var prevCased = false;
        foreach (var c in s)
        {
            var cased = char.IsUpper(c) || char.IsLower(c) || char.GetUnicodeCategory(c) == UnicodeCategory.TitlecaseLetter;
            if (cased) { sb.Append(prevCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)); prevCased = true; }
            else { sb.Append(c); prevCased = false; }
        }
        return sb.ToString();
    }

    public static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
}
