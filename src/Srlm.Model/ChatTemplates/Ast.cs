namespace Srlm.Model.ChatTemplates;

internal abstract record Node(SourcePos Pos);

// ---- statements
internal sealed record TextNode(SourcePos Pos, string Text) : Node(Pos);
internal sealed record OutputNode(SourcePos Pos, Expr Value) : Node(Pos);
internal sealed record IfNode(SourcePos Pos, List<(Expr Test, List<Node> Body)> Branches, List<Node>? Else) : Node(Pos);
internal sealed record ForNode(SourcePos Pos, List<string> Targets, Expr Iter, Expr? Filter, List<Node> Body, List<Node>? Else) : Node(Pos);
internal sealed record SetNode(SourcePos Pos, List<string> Targets, string? Attribute, Expr Value) : Node(Pos);
internal sealed record SetBlockNode(SourcePos Pos, string Target, List<Node> Body) : Node(Pos);
internal sealed record MacroNode(SourcePos Pos, string Name, List<(string Name, Expr? Default)> Params, List<Node> Body) : Node(Pos);
internal sealed record BreakNode(SourcePos Pos) : Node(Pos);
internal sealed record ContinueNode(SourcePos Pos) : Node(Pos);

// ---- expressions
internal abstract record Expr(SourcePos Pos) : Node(Pos);
internal sealed record Const(SourcePos Pos, object? Value) : Expr(Pos);
internal sealed record NameExpr(SourcePos Pos, string Name) : Expr(Pos);
internal sealed record ListExpr(SourcePos Pos, List<Expr> Items, bool IsTuple) : Expr(Pos);
internal sealed record DictExpr(SourcePos Pos, List<(Expr Key, Expr Value)> Items) : Expr(Pos);
internal sealed record GetAttr(SourcePos Pos, Expr Target, string Name) : Expr(Pos);
internal sealed record GetItem(SourcePos Pos, Expr Target, Expr Index) : Expr(Pos);
internal sealed record SliceExpr(SourcePos Pos, Expr Target, Expr? Start, Expr? Stop, Expr? Step) : Expr(Pos);
internal sealed record CallExpr(SourcePos Pos, Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr(Pos);
internal sealed record FilterExpr(SourcePos Pos, Expr Target, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs) : Expr(Pos);
internal sealed record TestExpr(SourcePos Pos, Expr Target, string Name, List<Expr> Args, bool Negated) : Expr(Pos);
internal sealed record UnaryExpr(SourcePos Pos, string Op, Expr Operand) : Expr(Pos);
internal sealed record BinaryExpr(SourcePos Pos, string Op, Expr Left, Expr Right) : Expr(Pos);
internal sealed record CompareExpr(SourcePos Pos, Expr First, List<(string Op, Expr Operand)> Rest) : Expr(Pos);
internal sealed record CondExpr(SourcePos Pos, Expr Test, Expr Then, Expr? Else) : Expr(Pos);
