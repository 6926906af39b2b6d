extern alias hftokenizers;

namespace Srlm.Tests.Model;

/// <summary>The Hugging Face tokenizers library (its Rust core, through Tokenizers.DotNet) is the reference:
/// files we write load there, and our reader gives its ids on files in the formats real checkpoints use.
/// It is referenced under an extern alias: its root namespace "Tokenizers" would hide Srlm.Model.Tokenization.Tokenizers.</summary>
public class HfTokenizersCompatibilityTests
{
    private static readonly string[] Texts =
    [
        "the dog sat on 42 logs 🙂", "Ünïcödé → 日本語, tabs\tand\nnewlines  ", "hello there", "<s>specials</s> inside", "Hello world", "ß",
    ];

    private static void SameIdsAsHuggingFace(string dir, ITokenizer ours)
    {
        using var hf = new hftokenizers::Tokenizers.DotNet.Tokenizer(Path.Combine(dir, Tokenizers.JsonFile));
        foreach (var text in Texts)
        {
            // HF's encode applies the post-processor (BOS for these files), as our addBos does.
            var expected = hf.Encode(text).Select(x => (int)x).ToArray();
            Assert.Equal(expected, ours.Encode(text, addBos: ours.AddBos));
        }
    }

    [Fact]
    public void Trained_bpe_tokenizer_json_loads_in_HF_tokenizers_with_the_same_ids()
    {
        var dir = TestModels.TempDir("hfbpe");
        var tok = TokenizerBuilder.TrainBpe("the cat sat on the mat. the dog sat on the log. 123 hello there", 300, ["<|im_start|>"]);
        tok.Save(dir);
        SameIdsAsHuggingFace(dir, Tokenizers.Load(dir));
    }

    [Fact]
    public void Char_level_tokenizer_json_loads_in_HF_tokenizers_with_the_same_ids()
    {
        var dir = TestModels.TempDir("hfchar");
        var tok = TokenizerBuilder.CharLevel("the cat sat on the mat. hello");
        tok.Save(dir);
        SameIdsAsHuggingFace(dir, Tokenizers.Load(dir));
    }

    [Fact]
    public void Llama_style_tokenizer_json_gives_the_same_ids_as_HF_tokenizers()
    {
        var dir = TestModels.TempDir("hfllama");
        File.WriteAllText(Path.Combine(dir, Tokenizers.JsonFile), TokenizerTests.LlamaStyleJson());
        SameIdsAsHuggingFace(dir, Tokenizers.Load(dir));
    }
}
