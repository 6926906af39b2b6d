namespace Srlm.Model.ChatTemplates;

/// <summary>A position in a template file, 1-based, for error messages (<c>file:line:col</c>).</summary>
public readonly record struct SourcePos(int Line, int Col);

internal enum Tok { Text, VarStart, VarEnd, BlockStart, BlockEnd, Name, String, Int, Float, Op, Eof }

internal sealed record Token(Tok Kind, string Value, SourcePos Pos, long IntValue = 0, double FloatValue = 0);

/// <summary>Splits a template into text and tag tokens the way jinja2's lexer does when configured as
/// transformers' apply_chat_template configures it: <c>trim_blocks</c> (the first newline after a block or
/// comment tag is dropped), <c>lstrip_blocks</c> (spaces and tabs before a block or comment tag at the start of
/// a line are dropped), <c>-</c>/<c>+</c> whitespace control, newlines normalised to \n and one trailing
/// newline of the template removed (<c>keep_trailing_newline=False</c>).</summary>
internal sealed class Lexer
{
    private readonly string _src;
    private readonly string _file;
    private readonly List<Token> _out = [];
    private readonly int[] _lineStarts;

    private Lexer(string src, string file)
    {
        _src = src;
        _file = file;
        var starts = new List<int> { 0 };
        for (var i = 0; i < src.Length; i++) if (src[i] == '\n') starts.Add(i + 1);
        _lineStarts = [.. starts];
    }

    /// <summary>jinja2 normalises every newline sequence to \n and drops one trailing newline.</summary>
    internal static string Normalize(string source)
    {
        var s = source.Replace("\r\n", "\n", StringComparison.Ordinal).Replace('\r', '\n');
        if (s.EndsWith('\n')) s = s[..^1];
        return s;
    }

    public static List<Token> Tokenize(string normalizedSource, string file)
    {
        var lx = new Lexer(normalizedSource, file);
        lx.Run();
        return lx._out;
    }

    internal SourcePos PosOf(int offset)
    {
        var idx = Array.BinarySearch(_lineStarts, offset);
        if (idx < 0) idx = ~idx - 1;
        return new SourcePos(idx + 1, offset - _lineStarts[idx] + 1);
    }

    private ChatTemplateException Error(int offset, string message) => new(_file, PosOf(offset), message);

    private static bool IsPyWhite(char c) => char.IsWhiteSpace(c) || (c >= '\x1c' && c <= '\x1f');

    private void Run()
    {
        var pos = 0;
        var lineStarting = true;
        var src = _src;
        while (pos <= src.Length)
        {
            var next = FindTagStart(pos);
            var text = src[pos..(next < 0 ? src.Length : next)];
            if (next < 0)
            {
                if (text.Length > 0) _out.Add(new Token(Tok.Text, text, PosOf(pos)));
                break;
            }
            var kind = src[next + 1]; // '{', '%' or '#'
            var modifier = next + 2 < src.Length ? src[next + 2] : '\0';
            if (modifier == '-')
                text = text.TrimEnd(PyWhitespace);
            else if (modifier != '+' && kind != '{')
            {
                // lstrip_blocks: drop spaces and tabs between the line start and a block or comment tag
                var lpos = text.LastIndexOf('\n') + 1;
                if (lpos > 0 || lineStarting)
                {
                    var onlyBlank = true;
                    for (var i = lpos; i < text.Length; i++) if (text[i] != ' ' && text[i] != '\t') { onlyBlank = false; break; }
                    if (onlyBlank) text = text[..lpos];
                }
            }
            if (text.Length > 0) _out.Add(new Token(Tok.Text, text, PosOf(pos)));
            var bodyStart = next + 2 + (modifier is '-' or '+' ? 1 : 0);
            switch (kind)
            {
                case '#':
                {
                    var end = src.IndexOf("#}", bodyStart, StringComparison.Ordinal);
                    if (end < 0) throw Error(next, "comment is never closed (missing '#}')");
                    pos = AfterTagEnd(end, 2, src[end - 1] == '-' && end - 1 >= bodyStart, src[end - 1] == '+' && end - 1 >= bodyStart, trimBlocks: true, out lineStarting);
                    break;
                }
                case '%':
                {
                    if (IsRawTag(bodyStart)) throw Error(next, "the 'raw' block is not supported");
                    _out.Add(new Token(Tok.BlockStart, "{%", PosOf(next)));
                    var (end, minus, plus) = LexExpression(bodyStart, "%}");
                    _out.Add(new Token(Tok.BlockEnd, "%}", PosOf(end)));
                    pos = AfterTagEnd(end, minus || plus ? 3 : 2, minus, plus, trimBlocks: true, out lineStarting);
                    break;
                }
                default:
                {
                    _out.Add(new Token(Tok.VarStart, "{{", PosOf(next)));
                    var (end, minus, plus) = LexExpression(bodyStart, "}}");
                    _out.Add(new Token(Tok.VarEnd, "}}", PosOf(end)));
                    pos = AfterTagEnd(end, minus || plus ? 3 : 2, minus, plus, trimBlocks: false, out lineStarting);
                    break;
                }
            }
            if (pos >= src.Length) break;
        }
        _out.Add(new Token(Tok.Eof, "", PosOf(src.Length)));
    }

    private static readonly char[] PyWhitespace = [' ', '\t', '\n', '\r', '\v', '\f', '\x1c', '\x1d', '\x1e', '\x1f', '\x85', '\xa0',
        '\u1680', '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007', '\u2008', '\u2009', '\u200a',
        '\u2028', '\u2029', '\u202f', '\u205f', '\u3000'];

    private bool IsRawTag(int bodyStart)
    {
        var i = bodyStart;
        while (i < _src.Length && IsPyWhite(_src[i])) i++;
        return string.CompareOrdinal(_src, i, "raw", 0, 3) == 0 && (i + 3 >= _src.Length || !IsNameChar(_src[i + 3]));
    }

    /// <summary>Where the text after a tag starts: <c>-</c> eats all following whitespace, trim_blocks eats one newline.</summary>
    private int AfterTagEnd(int end, int closerLength, bool minus, bool plus, bool trimBlocks, out bool lineStarting)
    {
        var p = end + closerLength;
        var start = p;
        if (minus)
            while (p < _src.Length && IsPyWhite(_src[p])) p++;
        else if (trimBlocks && !plus && p < _src.Length && _src[p] == '\n')
            p++;
        lineStarting = p > start && _src[p - 1] == '\n';
        return p;
    }

    private int FindTagStart(int from)
    {
        for (var i = from; i + 1 < _src.Length; i++)
            if (_src[i] == '{' && (_src[i + 1] == '{' || _src[i + 1] == '%' || _src[i + 1] == '#')) return i;
        return -1;
    }

    private static bool IsNameChar(char c) => char.IsLetterOrDigit(c) || c == '_';

    private static readonly string[] Ops = ["//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    /// <summary>Tokens of one tag's expression up to its closer; returns the closer's offset (its '-' or '+'
    /// modifier included) and whether it carried '-' or '+'.</summary>
    private (int End, bool Minus, bool Plus) LexExpression(int p, string closer)
    {
        var src = _src;
        var depth = 0;
        while (true)
        {
            while (p < src.Length && IsPyWhite(src[p])) p++;
            if (p >= src.Length) throw Error(p, $"tag is never closed (missing '{closer}')");
            if (depth == 0)
            {
                if (string.CompareOrdinal(src, p, closer, 0, 2) == 0) return (p, false, false);
                if ((src[p] == '-' || src[p] == '+') && string.CompareOrdinal(src, p + 1, closer, 0, 2) == 0)
                    return (p, src[p] == '-', src[p] == '+');
            }
            var c = src[p];
            var at = PosOf(p);
            if (c == '\'' || c == '"')
            {
                var (value, next) = ReadString(p);
                _out.Add(new Token(Tok.String, value, at));
                p = next;
                continue;
            }
            if (char.IsAsciiDigit(c))
            {
                var s = p;
                while (p < src.Length && (char.IsAsciiDigit(src[p]) || src[p] == '_')) p++;
                var isFloat = false;
                if (p + 1 < src.Length && src[p] == '.' && char.IsAsciiDigit(src[p + 1]))
                {
                    isFloat = true;
                    p++;
                    while (p < src.Length && (char.IsAsciiDigit(src[p]) || src[p] == '_')) p++;
                }
                if (p < src.Length && (src[p] == 'e' || src[p] == 'E'))
                {
                    var q = p + 1;
                    if (q < src.Length && (src[q] == '+' || src[q] == '-')) q++;
                    if (q < src.Length && char.IsAsciiDigit(src[q]))
                    {
                        isFloat = true;
                        p = q;
                        while (p < src.Length && char.IsAsciiDigit(src[p])) p++;
                    }
                }
                var lit = src[s..p].Replace("_", "", StringComparison.Ordinal);
                if (isFloat)
                    _out.Add(new Token(Tok.Float, lit, at, FloatValue: double.Parse(lit, System.Globalization.CultureInfo.InvariantCulture)));
                else
                {
                    if (!long.TryParse(lit, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v))
                        throw Error(s, $"integer literal {lit} is too large");
                    _out.Add(new Token(Tok.Int, lit, at, IntValue: v));
                }
                continue;
            }
            if (char.IsLetter(c) || c == '_')
            {
                var s = p;
                while (p < src.Length && IsNameChar(src[p])) p++;
                _out.Add(new Token(Tok.Name, src[s..p], at));
                continue;
            }
            var op = Ops.FirstOrDefault(o => string.CompareOrdinal(src, p, o, 0, o.Length) == 0)
                ?? throw Error(p, $"unexpected character '{c}'");
            if (op is "(" or "[" or "{") depth++;
            else if (op is ")" or "]" or "}" && depth > 0) depth--;
            _out.Add(new Token(Tok.Op, op, at));
            p += op.Length;
        }
    }

    /// <summary>A string literal with Python's escapes, as jinja2 reads it (unknown escapes stay as written).</summary>
    private (string Value, int Next) ReadString(int p)
    {
        var src = _src;
        var quote = src[p];
        var sb = new StringBuilder();
        var i = p + 1;
        while (true)
        {
            if (i >= src.Length) throw Error(p, "string literal is never closed");
            var c = src[i];
            if (c == quote) return (sb.ToString(), i + 1);
            if (c != '\\') { sb.Append(c); i++; continue; }
            if (i + 1 >= src.Length) throw Error(p, "string literal is never closed");
            var e = src[i + 1];
            i += 2;
            switch (e)
            {
                case '\n': break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'v': sb.Append('\v'); break;
                case 'x': sb.Append((char)HexAt(i, 2, p)); i += 2; break;
                case 'u': sb.Append((char)HexAt(i, 4, p)); i += 4; break;
                case 'U': sb.Append(char.ConvertFromUtf32(HexAt(i, 8, p))); i += 8; break;
                case >= '0' and <= '7':
                {
                    var v = e - '0';
                    for (var k = 0; k < 2 && i < src.Length && src[i] is >= '0' and <= '7'; k++, i++) v = v * 8 + (src[i] - '0');
                    sb.Append((char)v);
                    break;
                }
                case 'N': throw Error(i - 2, "the \\N{...} escape is not supported");
                default: sb.Append('\\').Append(e); break;
            }
        }
    }

    private int HexAt(int i, int n, int stringStart)
    {
        if (i + n > _src.Length || !int.TryParse(_src.AsSpan(i, n), System.Globalization.NumberStyles.HexNumber, null, out var v))
            throw Error(stringStart, "bad escape in string literal");
        return v;
    }
}
