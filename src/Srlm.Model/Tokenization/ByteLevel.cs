namespace Srlm.Model.Tokenization;

/// <summary>GPT-2's reversible map from bytes to printable characters (used by ByteLevel pre-tokenizers).</summary>
public static class ByteLevel
{
    public static readonly char[] ByteToChar;
    public static readonly Dictionary<char, byte> CharToByte;

    static ByteLevel()
    {
        ByteToChar = new char[256];
        var printable = new List<int>();
        for (int b = '!'; b <= '~'; b++) printable.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) printable.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) printable.Add(b);
        var set = printable.ToHashSet();
        int n = 0;
        for (int b = 0; b < 256; b++)
            ByteToChar[b] = set.Contains(b) ? (char)b : (char)(256 + n++);
        CharToByte = new Dictionary<char, byte>();
        for (int b = 0; b < 256; b++) CharToByte[ByteToChar[b]] = (byte)b;
    }

    public static string Encode(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    /// <summary>GPT-2's pre-tokenization pattern.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
}
