namespace Srlm.Tests.Model;

/// <summary>A SentencePiece BPE tokenizer.model written by the test (protobuf by hand), read through the adapter.</summary>
public class SentencePieceTests
{
    private static void Varint(Stream s, ulong v)
    {
        while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
        s.WriteByte((byte)v);
    }

    private static void Tag(Stream s, int field, int wire) => Varint(s, (ulong)((field << 3) | wire));
    private static void Int(Stream s, int field, long v) { Tag(s, field, 0); Varint(s, (ulong)v); }
    private static void Bytes(Stream s, int field, byte[] b) { Tag(s, field, 2); Varint(s, (ulong)b.Length); s.Write(b); }
    private static void Str(Stream s, int field, string v) => Bytes(s, field, Encoding.UTF8.GetBytes(v));
    private static void Float(Stream s, int field, float v) { Tag(s, field, 5); s.Write(BitConverter.GetBytes(v)); }

    /// <summary>Pieces: &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, 256 byte pieces, then words whose scores order the merges.</summary>
    public static byte[] Model(out Dictionary<string, int> ids)
    {
        var pieces = new List<(string Piece, float Score, int Type)> { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };
        for (int b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 0, 6));
        string[] normal = ["▁", "h", "e", "l", "o", "w", "r", "d", "ll", "he", "llo", "hello", "▁hello", "▁w", "or", "▁wor", "ld", "▁world"];
        for (int i = 0; i < normal.Length; i++) pieces.Add((normal[i], -i, 1));
        ids = pieces.Select((p, i) => (p.Piece, i)).ToDictionary(x => x.Piece, x => x.i);

        using var ms = new MemoryStream();
        foreach (var (piece, score, type) in pieces)
        {
            using var p = new MemoryStream();
            Str(p, 1, piece); Float(p, 2, score); Int(p, 3, type);
            Bytes(ms, 1, p.ToArray());
        }
        using (var t = new MemoryStream())
        {
            Int(t, 3, 2);              // model_type BPE
            Int(t, 4, pieces.Count);   // vocab_size
            Int(t, 35, 1);             // byte_fallback
            Int(t, 40, 0); Int(t, 41, 1); Int(t, 42, 2); Int(t, 43, -1); // unk, bos, eos, pad ids
            Str(t, 45, "<unk>"); Str(t, 46, "<s>"); Str(t, 47, "</s>"); Str(t, 48, "<pad>");
            Bytes(ms, 2, t.ToArray());
        }
        using (var n = new MemoryStream())
        {
            Str(n, 1, "identity");
            Int(n, 3, 1); // add_dummy_prefix
            Int(n, 4, 0); // remove_extra_whitespaces
            Int(n, 5, 1); // escape_whitespaces
            Bytes(ms, 3, n.ToArray());
        }
        return ms.ToArray();
    }

    [Fact]
    public void SentencePiece_model_encodes_with_bos_round_trips_and_falls_back_to_bytes()
    {
        var dir = TestModels.TempDir("spm");
        File.WriteAllBytes(Path.Combine(dir, Tokenizers.SentencePieceFile), Model(out var ids));
        var tok = Tokenizers.Load(dir);
        Assert.IsType<SentencePieceTokenizerAdapter>(tok);
        Assert.Equal(1, tok.BosId);
        Assert.Equal(2, tok.EosId);
        Assert.True(tok.AddBos);

        var enc = tok.Encode("hello world", addBos: true);
        Assert.Equal(new[] { 1, ids["▁hello"], ids["▁world"] }, enc);
        Assert.Equal("hello world", tok.Decode(enc));

        var withBytes = tok.Encode("hellö");
        Assert.Contains(ids["<0xC3>"], withBytes);
        Assert.Contains(ids["<0xB6>"], withBytes);
        Assert.Equal("hellö", tok.Decode(withBytes));

        tok.Save(Path.Combine(dir, "copy"));
        var back = Tokenizers.Load(Path.Combine(dir, "copy"));
        Assert.Equal(enc, back.Encode("hello world", addBos: true));
    }
}
