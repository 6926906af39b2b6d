namespace Srlm.Tests.Model;

/// <summary>Small configs and temp folders shared by the model tests.</summary>
internal static class TestModels
{
    static TestModels()
    {
        // Tests of several classes run in parallel on a 2-core CI machine: one libtorch thread each avoids the
        // OpenMP oversubscription that made decode steps ~10x slower. SRLM_THREADS still wins when set.
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("SRLM_THREADS"))) TorchSharp.torch.set_num_threads(1);
        TorchRuntime.Initialise();
    }

    public static LlamaConfig Llama(int vocab = 96) => LlamaConfig.Tiny(vocab, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 160);

    public static LlamaConfig Qwen2Tied(int vocab = 96) => LlamaConfig.Tiny(vocab, hidden: 64, layers: 2, heads: 4, kvHeads: 2, intermediate: 160)
        with { ModelType = "qwen2", AttentionBias = true, TieWordEmbeddings = true, RopeTheta = 1_000_000 };

    public static LlamaConfig LlamaTied(int vocab = 96) => Llama(vocab) with { TieWordEmbeddings = true };

    /// <summary>The architectures the kernel and reference tests run on, by name, with a 320-token vocabulary:
    /// llama-gqa, qwen2-bias-tied, llama3-rope-scaling, yarn.</summary>
    public static LlamaConfig Named(string name) => name switch
    {
        "llama-gqa" => Llama(vocab: 320),
        "qwen2-bias-tied" => Qwen2Tied(vocab: 320),
        "llama3-rope-scaling" => Llama(vocab: 320) with
        {
            RopeTheta = 500_000,
            RopeScaling = new RopeScaling { Kind = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 16 },
        },
        "yarn" => Llama(vocab: 320) with { RopeScaling = new RopeScaling { Kind = "yarn", Factor = 4, OriginalMaxPositionEmbeddings = 32 } },
        _ => throw new ArgumentException(name),
    };

    public const string Alphabet = "abcdefghijklmnopqrstuvwxyz .,!?ABCDEFGHIJKLMNOPQRSTUVWXYZ";

    /// <summary>A random-weight model with a character-level tokenizer; initStd large enough that sampling is not uniform.</summary>
    public static LanguageModel CharModel(long seed = 1, double initStd = 0.25, LlamaConfig? config = null)
    {
        var tok = Srlm.Model.Tokenization.TokenizerBuilder.CharLevel(Alphabet);
        var cfg = config ?? Llama(vocab: 320);
        var model = LlamaForCausalLM.Create(cfg, seed, initStd);
        model.eval();
        return new LanguageModel(model, tok, Srlm.Model.Tokenization.PromptTemplate.Plain, new GenerationSettings());
    }

    /// <summary>A <see cref="CharModel"/> saved as a checkpoint folder in a new temporary folder named after <paramref name="name"/>.</summary>
    public static string SavedCharModel(string name, long seed)
    {
        var dir = TempDir(name);
        using var lm = CharModel(seed);
        lm.Save(dir);
        return dir;
    }

    public static string TempDir(string name)
    {
        var d = Path.Combine(Path.GetTempPath(), "srlm-tests", name + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(d);
        return d;
    }

    public static string SourceDir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
