// Over 300 lines on purpose: one recursive-descent parser for jinja2's grammar, its precedence levels read top to bottom.
namespace Srlm.Model.ChatTemplates;

/// <summary>Builds the syntax tree with jinja2's grammar and operator precedence, and refuses every construct the
/// interpreter does not implement (statements, filters, tests, methods and functions it lacks) with the
/// construct's name and position, so no template is ever rendered approximately.</summary>
internal sealed class Parser
{
    private readonly List<Token> _t;
    private readonly string _file;
    private int _i;
    private readonly HashSet<string> _macros = [];
    private readonly List<(string Name, SourcePos Pos)> _calledNames = [];

    private Parser(List<Token> tokens, string file) { _t = tokens; _file = file; }

    public static List<Node> Parse(string normalizedSource, string file)
    {
        var p = new Parser(Lexer.Tokenize(normalizedSource, file), file);
        var body = p.ParseBody([]);
        if (p.Cur.Kind != Tok.Eof) throw p.Error(p.Cur.Pos, $"unexpected '{p.Cur.Value}'");
        foreach (var (name, pos) in p._calledNames)
            if (!Builtins.Functions.Contains(name) && !p._macros.Contains(name))
                throw p.Error(pos, $"function '{name}' is not supported");
        return body;
    }

    private Token Cur => _t[_i];
    private Token Peek(int k = 1) => _t[Math.Min(_i + k, _t.Count - 1)];
    private Token Next() => _t[_i++];
    private ChatTemplateException Error(SourcePos pos, string message) => new(_file, pos, message);

    private bool IsOp(string op) => Cur.Kind == Tok.Op && Cur.Value == op;
    private bool IsName(string name) => Cur.Kind == Tok.Name && Cur.Value == name;
    private bool SkipOp(string op) { if (!IsOp(op)) return false; _i++; return true; }
    private bool SkipName(string name) { if (!IsName(name)) return false; _i++; return true; }

    private void ExpectOp(string op)
    {
        if (!SkipOp(op)) throw Error(Cur.Pos, $"expected '{op}' but found {Describe(Cur)}");
    }

    private string ExpectName()
    {
        if (Cur.Kind != Tok.Name) throw Error(Cur.Pos, $"expected a name but found {Describe(Cur)}");
        return Next().Value;
    }

    private void ExpectBlockEnd()
    {
        if (Cur.Kind != Tok.BlockEnd) throw Error(Cur.Pos, $"expected the end of the tag but found {Describe(Cur)}");
        _i++;
    }

    private static string Describe(Token t) => t.Kind switch
    {
        Tok.Eof => "the end of the template",
        Tok.BlockEnd => "'%}'",
        Tok.VarEnd => "'}}'",
        Tok.String => "a string",
        _ => $"'{t.Value}'",
    };

    private static readonly HashSet<string> Unsupported = ["raw", "filter", "with", "include", "import", "from", "extends", "block",
        "call", "do", "autoescape", "trans"];

    /// <summary>Statements until one of the end tags (left unconsumed, current token is its name).</summary>
    private List<Node> ParseBody(string[] endTags)
    {
        var nodes = new List<Node>();
        while (true)
        {
            var t = Cur;
            switch (t.Kind)
            {
                case Tok.Eof:
                    if (endTags.Length > 0) throw Error(t.Pos, $"missing '{{% {endTags[^1]} %}}' before the end of the template");
                    return nodes;
                case Tok.Text:
                    nodes.Add(new TextNode(t.Pos, t.Value));
                    _i++;
                    break;
                case Tok.VarStart:
                {
                    _i++;
                    var e = ParseTuple(withCond: true);
                    if (Cur.Kind != Tok.VarEnd) throw Error(Cur.Pos, $"expected '}}}}' but found {Describe(Cur)}");
                    _i++;
                    nodes.Add(new OutputNode(t.Pos, e));
                    break;
                }
                case Tok.BlockStart:
                {
                    var nameTok = Peek();
                    if (nameTok.Kind != Tok.Name) throw Error(nameTok.Pos, $"expected a statement name but found {Describe(nameTok)}");
                    if (endTags.Contains(nameTok.Value)) { _i++; return nodes; }
                    _i += 2;
                    nodes.Add(ParseStatement(nameTok));
                    break;
                }
                default:
                    throw Error(t.Pos, $"unexpected {Describe(t)}");
            }
        }
    }

    private Node ParseStatement(Token name)
    {
        var pos = name.Pos;
        switch (name.Value)
        {
            case "if": return ParseIf(pos);
            case "for": return ParseFor(pos);
            case "set": return ParseSet(pos);
            case "macro": return ParseMacro(pos);
            case "generation":
            {
                // transformers' AssistantTracker tag: marks the assistant's text for masks and renders its body.
                ExpectBlockEnd();
                var body = ParseBody(["endgeneration"]);
                _i++;
                ExpectBlockEnd();
                return new IfNode(pos, [(new Const(pos, true), body)], null);
            }
            case "break": ExpectBlockEnd(); return new BreakNode(pos);
            case "continue": ExpectBlockEnd(); return new ContinueNode(pos);
            default:
                if (Unsupported.Contains(name.Value)) throw Error(pos, $"the '{name.Value}' statement is not supported");
                throw Error(pos, $"unknown statement '{name.Value}'");
        }
    }

    private Node ParseIf(SourcePos pos)
    {
        var branches = new List<(Expr, List<Node>)>();
        List<Node>? els = null;
        var test = ParseTuple(withCond: false);
        ExpectBlockEnd();
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"]);
            branches.Add((test, body));
            var tag = Next().Value;
            if (tag == "elif") { test = ParseTuple(withCond: false); ExpectBlockEnd(); continue; }
            if (tag == "else")
            {
                ExpectBlockEnd();
                els = ParseBody(["endif"]);
                _i++;
            }
            ExpectBlockEnd();
            break;
        }
        return new IfNode(pos, branches, els);
    }

    private Node ParseFor(SourcePos pos)
    {
        var targets = ParseAssignTargets(out var attr);
        if (attr is not null) throw Error(pos, "a for loop cannot assign to an attribute");
        if (!SkipName("in")) throw Error(Cur.Pos, $"expected 'in' but found {Describe(Cur)}");
        var iter = ParseTuple(withCond: false);
        if (IsName("recursive")) throw Error(Cur.Pos, "recursive for loops are not supported");
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression(withCond: true);
        ExpectBlockEnd();
        var body = ParseBody(["else", "endfor"]);
        List<Node>? els = null;
        if (Next().Value == "else")
        {
            ExpectBlockEnd();
            els = ParseBody(["endfor"]);
            _i++;
        }
        ExpectBlockEnd();
        return new ForNode(pos, targets, iter, filter, body, els);
    }

    private List<string> ParseAssignTargets(out string? attribute)
    {
        attribute = null;
        var paren = SkipOp("(");
        var names = new List<string> { ExpectName() };
        if (!paren && names.Count == 1 && IsOp("."))
        {
            _i++;
            attribute = ExpectName();
            return names;
        }
        while (SkipOp(","))
        {
            if (paren && IsOp(")")) break;
            if (Cur.Kind != Tok.Name) break;
            names.Add(ExpectName());
        }
        if (paren) ExpectOp(")");
        return names;
    }

    private Node ParseSet(SourcePos pos)
    {
        var targets = ParseAssignTargets(out var attr);
        if (SkipOp("="))
        {
            var value = ParseTuple(withCond: true);
            ExpectBlockEnd();
            return new SetNode(pos, targets, attr, value);
        }
        if (targets.Count != 1 || attr is not null) throw Error(Cur.Pos, $"expected '=' but found {Describe(Cur)}");
        if (IsOp("|")) throw Error(Cur.Pos, "a filtered block set is not supported");
        ExpectBlockEnd();
        var body = ParseBody(["endset"]);
        _i++;
        ExpectBlockEnd();
        return new SetBlockNode(pos, targets[0], body);
    }

    private Node ParseMacro(SourcePos pos)
    {
        var name = ExpectName();
        _macros.Add(name);
        ExpectOp("(");
        var ps = new List<(string, Expr?)>();
        while (!IsOp(")"))
        {
            if (ps.Count > 0) ExpectOp(",");
            if (IsOp(")")) break;
            if (IsOp("*") || IsOp("**")) throw Error(Cur.Pos, "variable macro arguments are not supported");
            var p = ExpectName();
            Expr? def = SkipOp("=") ? ParseExpression(withCond: true) : null;
            ps.Add((p, def));
        }
        _i++;
        ExpectBlockEnd();
        var body = ParseBody(["endmacro"]);
        _i++;
        if (Cur.Kind == Tok.Name && Cur.Value == name) _i++;
        ExpectBlockEnd();
        return new MacroNode(pos, name, ps, body);
    }

    // ---- expressions (jinja2 precedence: condexpr < or < and < not < compare < +,- < ~ < *,/,//,% < ** < unary < postfix/filter)

    private Expr ParseTuple(bool withCond)
    {
        var pos = Cur.Pos;
        var items = new List<Expr>();
        var comma = false;
        while (true)
        {
            if (items.Count > 0)
            {
                if (!SkipOp(",")) break;
                comma = true;
            }
            if (AtTupleEnd()) break;
            items.Add(ParseExpression(withCond));
        }
        if (!comma)
        {
            if (items.Count == 0) throw Error(pos, $"expected an expression but found {Describe(Cur)}");
            return items[0];
        }
        return new ListExpr(pos, items, IsTuple: true);
    }

    private bool AtTupleEnd() =>
        Cur.Kind is Tok.VarEnd or Tok.BlockEnd or Tok.Eof || IsOp(")") || IsName("in") || IsName("recursive");

    private Expr ParseExpression(bool withCond) => withCond ? ParseCondExpr() : ParseOr();

    private Expr ParseCondExpr()
    {
        var expr = ParseOr();
        while (IsName("if"))
        {
            var pos = Next().Pos;
            var test = ParseOr();
            Expr? els = SkipName("else") ? ParseCondExpr() : null;
            expr = new CondExpr(pos, test, expr, els);
        }
        return expr;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (IsName("or")) { var pos = Next().Pos; left = new BinaryExpr(pos, "or", left, ParseAnd()); }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (IsName("and")) { var pos = Next().Pos; left = new BinaryExpr(pos, "and", left, ParseNot()); }
        return left;
    }

    private Expr ParseNot()
    {
        if (IsName("not")) { var pos = Next().Pos; return new UnaryExpr(pos, "not", ParseNot()); }
        return ParseCompare();
    }

    private static readonly HashSet<string> CompareOps = ["==", "!=", "<", "<=", ">", ">="];

    private Expr ParseCompare()
    {
        var pos = Cur.Pos;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Cur.Kind == Tok.Op && CompareOps.Contains(Cur.Value)) { var op = Next().Value; rest.Add((op, ParseMath1())); }
            else if (IsName("in")) { _i++; rest.Add(("in", ParseMath1())); }
            else if (IsName("not") && Peek().Kind == Tok.Name && Peek().Value == "in") { _i += 2; rest.Add(("notin", ParseMath1())); }
            else break;
        }
        return rest.Count == 0 ? first : new CompareExpr(pos, first, rest);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (IsOp("+") || IsOp("-")) { var t = Next(); left = new BinaryExpr(t.Pos, t.Value, left, ParseConcat()); }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (IsOp("~")) { var t = Next(); left = new BinaryExpr(t.Pos, "~", left, ParseMath2()); }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) { var t = Next(); left = new BinaryExpr(t.Pos, t.Value, left, ParsePow()); }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary(true);
        while (IsOp("**")) { var t = Next(); left = new BinaryExpr(t.Pos, "**", left, ParseUnary(true)); }
        return left;
    }

    private Expr ParseUnary(bool withFilter)
    {
        Expr node;
        if (IsOp("-")) { var t = Next(); node = new UnaryExpr(t.Pos, "-", ParseUnary(false)); }
        else if (IsOp("+")) { var t = Next(); node = new UnaryExpr(t.Pos, "+", ParseUnary(false)); }
        else node = ParsePrimary();
        node = ParsePostfix(node);
        if (withFilter) node = ParseFilterExpr(node);
        return node;
    }

    private Expr ParsePrimary()
    {
        var t = Cur;
        switch (t.Kind)
        {
            case Tok.Name:
                _i++;
                return t.Value switch
                {
                    "true" or "True" => new Const(t.Pos, true),
                    "false" or "False" => new Const(t.Pos, false),
                    "none" or "None" => new Const(t.Pos, null),
                    _ => new NameExpr(t.Pos, t.Value),
                };
            case Tok.String:
            {
                _i++;
                var s = t.Value;
                while (Cur.Kind == Tok.String) s += Next().Value;
                return new Const(t.Pos, s);
            }
            case Tok.Int: _i++; return new Const(t.Pos, t.IntValue);
            case Tok.Float: _i++; return new Const(t.Pos, t.FloatValue);
            case Tok.Op when t.Value == "(":
            {
                _i++;
                if (SkipOp(")")) return new ListExpr(t.Pos, [], IsTuple: true);
                var e = ParseTuple(withCond: true);
                ExpectOp(")");
                return e;
            }
            case Tok.Op when t.Value == "[":
            {
                _i++;
                var items = new List<Expr>();
                while (!IsOp("]"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (IsOp("]")) break;
                    items.Add(ParseExpression(withCond: true));
                }
                _i++;
                return new ListExpr(t.Pos, items, IsTuple: false);
            }
            case Tok.Op when t.Value == "{":
            {
                _i++;
                var items = new List<(Expr, Expr)>();
                while (!IsOp("}"))
                {
                    if (items.Count > 0) ExpectOp(",");
                    if (IsOp("}")) break;
                    var k = ParseExpression(withCond: true);
                    ExpectOp(":");
                    items.Add((k, ParseExpression(withCond: true)));
                }
                _i++;
                return new DictExpr(t.Pos, items);
            }
            default:
                throw Error(t.Pos, $"expected an expression but found {Describe(t)}");
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            if (IsOp("."))
            {
                var dot = Next();
                if (Cur.Kind == Tok.Name) node = new GetAttr(dot.Pos, node, Next().Value);
                else if (Cur.Kind == Tok.Int) node = new GetItem(dot.Pos, node, new Const(Cur.Pos, Next().IntValue));
                else throw Error(Cur.Pos, $"expected an attribute name after '.' but found {Describe(Cur)}");
            }
            else if (IsOp("[")) node = ParseSubscript(node);
            else if (IsOp("(")) node = ParseCall(node);
            else return node;
        }
    }

    private Expr ParseSubscript(Expr node)
    {
        var pos = Next().Pos;
        Expr? start = null, stop = null, step = null;
        var isSlice = false;
        if (!IsOp(":")) start = ParseExpression(withCond: true);
        if (SkipOp(":"))
        {
            isSlice = true;
            if (!IsOp("]") && !IsOp(":")) stop = ParseExpression(withCond: true);
            if (SkipOp(":") && !IsOp("]")) step = ParseExpression(withCond: true);
        }
        if (IsOp(",")) throw Error(Cur.Pos, "tuple subscripts are not supported");
        ExpectOp("]");
        return isSlice ? new SliceExpr(pos, node, start, stop, step) : new GetItem(pos, node, start!);
    }

    private (List<Expr>, List<(string, Expr)>) ParseArgs()
    {
        ExpectOp("(");
        var args = new List<Expr>();
        var kwargs = new List<(string, Expr)>();
        while (!IsOp(")"))
        {
            if (args.Count + kwargs.Count > 0) ExpectOp(",");
            if (IsOp(")")) break;
            if (IsOp("*") || IsOp("**")) throw Error(Cur.Pos, "'*' and '**' arguments are not supported");
            if (Cur.Kind == Tok.Name && Peek().Kind == Tok.Op && Peek().Value == "=")
            {
                var k = Next().Value;
                _i++;
                kwargs.Add((k, ParseExpression(withCond: true)));
            }
            else
            {
                if (kwargs.Count > 0) throw Error(Cur.Pos, "a positional argument follows a keyword argument");
                args.Add(ParseExpression(withCond: true));
            }
        }
        _i++;
        return (args, kwargs);
    }

    private Expr ParseCall(Expr callee)
    {
        var pos = Cur.Pos;
        switch (callee)
        {
            case NameExpr n:
                if (n.Name == "caller") throw Error(n.Pos, "'caller' (call blocks) is not supported");
                _calledNames.Add((n.Name, n.Pos));
                break;
            case GetAttr g:
                if (!Builtins.Methods.Contains(g.Name)) throw Error(g.Pos, $"method '{g.Name}' is not supported");
                break;
            default:
                throw Error(pos, "only functions, macros and methods can be called");
        }
        var (args, kwargs) = ParseArgs();
        return new CallExpr(callee.Pos, callee, args, kwargs);
    }

    private Expr ParseFilterExpr(Expr node)
    {
        while (true)
        {
            if (IsOp("|"))
            {
                _i++;
                var t = Cur;
                var name = ExpectName();
                if (IsOp(".")) throw Error(t.Pos, "dotted filter names are not supported");
                if (!Builtins.Filters.Contains(name)) throw Error(t.Pos, $"filter '{name}' is not supported");
                List<Expr> args = [];
                List<(string, Expr)> kwargs = [];
                if (IsOp("(")) (args, kwargs) = ParseArgs();
                node = new FilterExpr(t.Pos, node, name, args, kwargs);
            }
            else if (IsName("is"))
            {
                _i++;
                var negated = SkipName("not");
                var t = Cur;
                var name = t.Kind == Tok.Op && t.Value is "==" or "!=" or "<" or ">" or "<=" or ">=" ? Next().Value : ExpectName();
                if (!Builtins.Tests.Contains(name)) throw Error(t.Pos, $"test '{name}' is not supported");
                var args = new List<Expr>();
                if (IsOp("(")) { var (a, kw) = ParseArgs(); if (kw.Count > 0) throw Error(t.Pos, "keyword arguments to tests are not supported"); args = a; }
                else if ((Cur.Kind is Tok.Name or Tok.String or Tok.Int or Tok.Float || IsOp("(") || IsOp("[") || IsOp("{"))
                         && !IsName("else") && !IsName("or") && !IsName("and"))
                {
                    if (IsName("is")) throw Error(Cur.Pos, "'is' cannot follow a test name");
                    args.Add(ParsePostfix(ParsePrimary()));
                }
                node = new TestExpr(t.Pos, node, name, args, negated);
            }
            else if (IsOp("(")) node = ParseCall(node);
            else return node;
        }
    }
}
