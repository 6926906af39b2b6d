using System.Runtime.CompilerServices;
using Srlm.Model;

namespace Srlm.Tests.Model;

/// <summary>Small configs and temp folders shared by the model tests.</summary>
internal static class TestModels
{
    public static LlamaConfig Llama(int vocab = 96) => LlamaConfig.Tiny(vocab, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 160);

    public static LlamaConfig Qwen2Tied(int vocab = 96) => LlamaConfig.Tiny(vocab, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 160)
        with { ModelType = "qwen2", AttentionBias = true, TieWordEmbeddings = true, RopeTheta = 1_000_000 };

    public static LlamaConfig LlamaTied(int vocab = 96) => Llama(vocab) with { TieWordEmbeddings = true };

    public static string TempDir(string name)
    {
        var d = Path.Combine(Path.GetTempPath(), "srlm-tests", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }

    public static string SourceDir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
