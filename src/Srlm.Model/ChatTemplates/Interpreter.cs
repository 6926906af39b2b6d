// Over 300 lines on purpose: the evaluator of every statement and expression the parser accepts.
namespace Srlm.Model.ChatTemplates;

internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = new(StringComparer.Ordinal);
    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s is not null; s = s.Parent)
            if (s._vars.TryGetValue(name, out value)) return true;
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}

internal sealed record Macro(MacroNode Node, Scope Closure, Interpreter Owner);

internal sealed record BoundMethod(object? Target, string Name);

internal sealed class LoopInfo(IReadOnlyList<object?> items)
{
    public int Index0 { get; set; }
    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "revindex" => (long)(items.Count - Index0),
        "revindex0" => (long)(items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == items.Count - 1,
        "length" => (long)items.Count,
        "depth" => 1L,
        "depth0" => 0L,
        "previtem" => Index0 > 0 ? items[Index0 - 1] : Undefined.Instance,
        "nextitem" => Index0 + 1 < items.Count ? items[Index0 + 1] : Undefined.Instance,
        "cycle" => new BoundMethod(this, "cycle"),
        _ => Undefined.Instance,
    };
}

/// <summary>Walks the syntax tree. Statement semantics follow jinja2: a for loop body gets a fresh scope on every
/// iteration (so <c>set</c> inside a loop is not seen after it: templates use <c>namespace</c> for that), if-blocks
/// have no scope of their own, macros see the scope they were defined in.</summary>
internal sealed class Interpreter(string file)
{
    private enum Flow { Normal, Break, Continue }

    private readonly string _file = file;

    public string Render(List<Node> body, Scope scope)
    {
        var sb = new StringBuilder();
        Exec(body, scope, sb);
        return sb.ToString();
    }

    private ChatTemplateException At(Node n, string message) => new(_file, n.Pos, message);

    private Flow Exec(List<Node> body, Scope scope, StringBuilder sb)
    {
        foreach (var n in body)
        {
            var f = ExecOne(n, scope, sb);
            if (f != Flow.Normal) return f;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Node n, Scope scope, StringBuilder sb)
    {
        try
        {
            switch (n)
            {
                case TextNode t: sb.Append(t.Text); return Flow.Normal;
                case OutputNode o: sb.Append(Py.Str(Eval(o.Value, scope))); return Flow.Normal;
                case IfNode i:
                    foreach (var (test, body) in i.Branches)
                        if (Py.Truthy(Eval(test, scope))) return Exec(body, scope, sb);
                    return i.Else is null ? Flow.Normal : Exec(i.Else, scope, sb);
                case ForNode f: return ExecFor(f, scope, sb);
                case SetNode s: ExecSet(s, scope); return Flow.Normal;
                case SetBlockNode sb2:
                {
                    var inner = new StringBuilder();
                    Exec(sb2.Body, scope, inner);
                    scope.Set(sb2.Target, inner.ToString());
                    return Flow.Normal;
                }
                case MacroNode m: scope.Set(m.Name, new Macro(m, scope, this)); return Flow.Normal;
                case BreakNode: return Flow.Break;
                case ContinueNode: return Flow.Continue;
                default: throw At(n, $"cannot execute {n.GetType().Name}");
            }
        }
        catch (PyError e) { throw At(n, e.Message); }
    }

    private Flow ExecFor(ForNode f, Scope scope, StringBuilder sb)
    {
        var source = Eval(f.Iter, scope);
        var all = Iterate(source, f.Iter);
        List<object?> items;
        if (f.Filter is null) items = all;
        else
        {
            items = [];
            foreach (var it in all)
            {
                var s = new Scope(scope);
                Bind(f.Targets, it, s, f);
                if (Py.Truthy(Eval(f.Filter, s))) items.Add(it);
            }
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Exec(f.Else, scope, sb);
            return Flow.Normal;
        }
        var loop = new LoopInfo(items);
        for (var k = 0; k < items.Count; k++)
        {
            loop.Index0 = k;
            var s = new Scope(scope);
            s.Set("loop", loop);
            Bind(f.Targets, items[k], s, f);
            if (Exec(f.Body, s, sb) == Flow.Break) break;
        }
        return Flow.Normal;
    }

    private List<object?> Iterate(object? v, Node at)
    {
        if (v is PyDict) return Py.Iterate(v).ToList();
        try { return Py.Iterate(v).ToList(); }
        catch (PyError e) { throw At(at, e.Message); }
    }

    private void Bind(List<string> targets, object? value, Scope s, Node at)
    {
        if (targets.Count == 1) { s.Set(targets[0], value); return; }
        var parts = Iterate(value, at);
        if (parts.Count != targets.Count) throw At(at, $"cannot unpack {parts.Count} values into {targets.Count} names");
        for (var i = 0; i < targets.Count; i++) s.Set(targets[i], parts[i]);
    }

    private void ExecSet(SetNode s, Scope scope)
    {
        var value = Eval(s.Value, scope);
        if (s.Attribute is not null)
        {
            if (!scope.TryGet(s.Targets[0], out var target) || target is not Namespace ns)
                throw At(s, $"cannot assign attribute '{s.Attribute}' on '{s.Targets[0]}': it is not a namespace");
            ns.Attrs[s.Attribute] = value;
            return;
        }
        Bind(s.Targets, value, scope, s);
    }

    // ---- expressions

    public object? Eval(Expr e, Scope scope)
    {
        try { return EvalInner(e, scope); }
        catch (PyError err) { throw At(e, err.Message); }
    }

    private object? EvalInner(Expr e, Scope scope)
    {
        switch (e)
        {
            case Const c: return c.Value;
            case NameExpr n:
                if (scope.TryGet(n.Name, out var v)) return v;
                return Builtins.Global(n.Name) ?? Undefined.Instance;
            case ListExpr l: return new PyList(l.Items.Select(x => Eval(x, scope)), l.IsTuple);
            case DictExpr d:
            {
                var r = new PyDict();
                foreach (var (k, val) in d.Items)
                {
                    var key = Eval(k, scope) as string ?? throw At(k, "only string keys are supported in dict literals");
                    r[key] = Eval(val, scope);
                }
                return r;
            }
            case GetAttr g: return Builtins.GetAttr(Eval(g.Target, scope), g.Name);
            case GetItem gi: return Builtins.GetItem(Eval(gi.Target, scope), Eval(gi.Index, scope));
            case SliceExpr sl:
                return Builtins.Slice(Eval(sl.Target, scope),
                    sl.Start is null ? null : Eval(sl.Start, scope),
                    sl.Stop is null ? null : Eval(sl.Stop, scope),
                    sl.Step is null ? null : Eval(sl.Step, scope));
            case CallExpr call:
            {
                var callee = Eval(call.Callee, scope);
                var args = call.Args.Select(a => Eval(a, scope)).ToList();
                var kwargs = call.Kwargs.Select(k => (k.Name, Eval(k.Value, scope))).ToList();
                return Call(callee, args, kwargs, call);
            }
            case FilterExpr f:
            {
                var target = Eval(f.Target, scope);
                var args = f.Args.Select(a => Eval(a, scope)).ToList();
                var kwargs = f.Kwargs.Select(k => (k.Name, Eval(k.Value, scope))).ToList();
                return Builtins.Filter(f.Name, target, args, kwargs, this);
            }
            case TestExpr t:
            {
                var target = Eval(t.Target, scope);
                var args = t.Args.Select(a => Eval(a, scope)).ToList();
                var r = Builtins.Test(t.Name, target, args);
                return t.Negated ? !r : r;
            }
            case UnaryExpr u:
            {
                var x = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !Py.Truthy(x),
                    "-" => x switch
                    {
                        bool b => (object)(b ? -1L : 0L),
                        long i => (object)(-i),
                        double d => (object)(-d),
                        _ => throw new PyError($"bad operand type for unary -: '{Py.TypeName(x)}'"),
                    },
                    _ => Py.IsNumber(x) ? (x is bool b2 ? (b2 ? 1L : 0L) : x) : throw new PyError($"bad operand type for unary +: '{Py.TypeName(x)}'"),
                };
            }
            case BinaryExpr b:
            {
                if (b.Op == "and") { var l = Eval(b.Left, scope); return Py.Truthy(l) ? Eval(b.Right, scope) : l; }
                if (b.Op == "or") { var l = Eval(b.Left, scope); return Py.Truthy(l) ? l : Eval(b.Right, scope); }
                return Builtins.Binary(b.Op, Eval(b.Left, scope), Eval(b.Right, scope));
            }
            case CompareExpr c:
            {
                var left = Eval(c.First, scope);
                foreach (var (op, operand) in c.Rest)
                {
                    var right = Eval(operand, scope);
                    var ok = op switch
                    {
                        "==" => Py.Eq(left, right),
                        "!=" => !Py.Eq(left, right),
                        "in" => Py.Contains(right, left),
                        "notin" => !Py.Contains(right, left),
                        "<" => Py.Compare(left, right) < 0,
                        "<=" => Py.Compare(left, right) <= 0,
                        ">" => Py.Compare(left, right) > 0,
                        _ => Py.Compare(left, right) >= 0,
                    };
                    if (!ok) return false;
                    left = right;
                }
                return true;
            }
            case CondExpr c:
                if (Py.Truthy(Eval(c.Test, scope))) return Eval(c.Then, scope);
                return c.Else is null ? Undefined.Instance : Eval(c.Else, scope);
            default:
                throw At(e, $"cannot evaluate {e.GetType().Name}");
        }
    }

    public object? Call(object? callee, List<object?> args, List<(string Name, object? Value)> kwargs, Node at)
    {
        switch (callee)
        {
            case BuiltinCallable f: return f.Fn(args, kwargs);
            case BoundMethod m: return Builtins.CallMethod(m, args, kwargs);
            case Macro m: return CallMacro(m, args, kwargs, at);
            case Undefined: throw new PyError(at is CallExpr { Callee: NameExpr n } ? $"'{n.Name}' is undefined" : "an undefined value cannot be called");
            default: throw new PyError($"'{Py.TypeName(callee)}' object is not callable");
        }
    }

    private object? CallMacro(Macro m, List<object?> args, List<(string Name, object? Value)> kwargs, Node at)
    {
        var ps = m.Node.Params;
        if (args.Count > ps.Count) throw new PyError($"macro '{m.Node.Name}' takes {ps.Count} arguments, {args.Count} given");
        var s = new Scope(m.Closure);
        for (var i = 0; i < ps.Count; i++)
        {
            object? v;
            if (i < args.Count) v = args[i];
            else
            {
                var kw = kwargs.FindIndex(k => k.Name == ps[i].Name);
                if (kw >= 0) v = kwargs[kw].Value;
                else v = ps[i].Default is null ? Undefined.Instance : m.Owner.Eval(ps[i].Default!, s);
            }
            s.Set(ps[i].Name, v);
        }
        foreach (var (name, _) in kwargs)
            if (!ps.Any(p => p.Name == name)) throw new PyError($"macro '{m.Node.Name}' takes no keyword argument '{name}'");
        var sb = new StringBuilder();
        m.Owner.Exec(m.Node.Body, s, sb);
        return sb.ToString();
    }
}
