namespace Srlm.Tests.Training;

/// <summary>Tiny models and synthetic data so training tests take seconds.</summary>
internal static class Tiny
{
    /// <summary>Runs the static constructor (one libtorch thread unless SRLM_THREADS says otherwise).</summary>
    public static void UseTestThreads() { }

    static Tiny()
    {
        // Tiny models run fastest on one thread, and the test machine is shared; SRLM_THREADS overrides.
        if (Environment.GetEnvironmentVariable("SRLM_THREADS") is null) TorchSharp.torch.set_num_threads(1);
        else TorchRuntime.Initialise();
    }

    public static LlamaConfig Config(double dropout = 0) => new()
    {
        VocabSize = 32, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2,
        NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 64,
        BosTokenId = 1, EosTokenId = 2, EosTokenIds = [2], ResidualDropout = dropout, AttentionDropout = dropout,
    };

    public static LlamaForCausalLM Model(long seed = 7, double dropout = 0) => LlamaForCausalLM.Create(Config(dropout), seed);

    /// <summary>Successor task: prompt [BOS, a, b]; completion: four steps of x -> g(x) from b, then EOS.
    /// Each completion token follows from the one before, so a tiny model generalises to unseen prompts.</summary>
    public static List<TokenizedSequence> SuccessorTask(int n, int seed)
    {
        static int G(int x) => (x * 7 + 5) % 29 + 3;
        var r = new Random(seed);
        var list = new List<TokenizedSequence>();
        for (int i = 0; i < n; i++)
        {
            int a = 3 + r.Next(29), b = 3 + r.Next(29);
            var c = new int[5];
            int x = b;
            for (int k = 0; k < 4; k++) c[k] = x = G(x);
            c[4] = 2;
            list.Add(new TokenizedSequence([1, a, b], c));
        }
        return list;
    }

    /// <summary>Preference task: the chosen answer uses tokens 10-15, the rejected one 20-25.</summary>
    public static List<TokenizedPair> PreferenceTask(int n, int seed)
    {
        var r = new Random(seed);
        var list = new List<TokenizedPair>();
        for (int i = 0; i < n; i++)
        {
            var prompt = new[] { 1, 3 + r.Next(29), 3 + r.Next(29) };
            int lc = 2 + r.Next(3), lr = 2 + r.Next(3);
            var chosen = Enumerable.Range(0, lc).Select(_ => 10 + r.Next(6)).Append(2).ToArray();
            var rejected = Enumerable.Range(0, lr).Select(_ => 20 + r.Next(6)).Append(2).ToArray();
            list.Add(new TokenizedPair($"p{i}", prompt, chosen, rejected));
        }
        return list;
    }

    public static Dictionary<string, float[]> Weights(LlamaForCausalLM m) =>
        m.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().cpu().data<float>().ToArray());

    public static void AssertBitIdentical(Dictionary<string, float[]> a, Dictionary<string, float[]> b)
    {
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var k in a.Keys)
        {
            var x = a[k]; var y = b[k];
            for (int i = 0; i < x.Length; i++)
                if (BitConverter.SingleToInt32Bits(x[i]) != BitConverter.SingleToInt32Bits(y[i]))
                    Assert.Fail($"{k}[{i}]: {x[i]:R} != {y[i]:R}");
        }
    }

    public sealed class TempDir : IDisposable
    {
        public string Path { get; } = Directory.CreateTempSubdirectory("srlm-train-").FullName;
        public string Sub(string name) => System.IO.Path.Combine(Path, name);
        public void Dispose() { try { Directory.Delete(Path, recursive: true); } catch (IOException) { } }
    }
}

/// <summary>
/// Training tests run one at a time: dropout draws from libtorch's process-wide default generator, which
/// each step reseeds from (seed, step); two trainings with dropout in parallel in one process would
/// interleave their draws and break the bit-identical checks (see the training notes).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TrainingCollection
{
    public const string Name = "Training";
}
