// Over 300 lines on purpose: the one proof of device placement, read top to bottom: SRLM_DEVICE values, the source check, then the forward, log-probs and DPO steps on meta and the meta stand-ins.
namespace Srlm.Tests.Model;

/// <summary>
/// Models compute on the device they are given (SRLM_DEVICE). No GPU exists where these tests run, so the proof is
/// twofold: a source check that every tensor factory call in Srlm.Model and Srlm.Training names a device, and the
/// forward, log-prob and DPO-step paths run with the model on libtorch's meta device (shapes only, no values), where
/// a tensor left on the CPU is a device-mismatch error just as it would be on a GPU (through <see cref="MetaFallback"/>
/// for the four ops the C++ libtorch has no meta kernel for).
/// </summary>
public sealed class DeviceTests
{
    static DeviceTests() => TestModels.Llama(); // one libtorch thread (TestModels' static constructor)

    // ---- SRLM_DEVICE values ----

    [Theory]
    [InlineData(null, null)]
    [InlineData("", null)]
    [InlineData("  ", null)]
    [InlineData("cpu", "CPU:-1")]
    [InlineData("CPU", "CPU:-1")]
    [InlineData("cuda", "CUDA:0")]
    [InlineData("cuda:0", "CUDA:0")]
    [InlineData("cuda:3", "CUDA:3")]
    public void Srlm_device_values_parse(string? raw, string? expected)
    {
        var parsed = TorchRuntime.ParseDevice(raw);
        Assert.Equal(expected, parsed is { } p ? $"{p.Type}:{p.Index}" : null);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("meta")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:one")]
    [InlineData("cpu:0")]
    public void An_unknown_srlm_device_is_one_line_naming_the_variable(string raw)
    {
        var e = Assert.Throws<ArgumentException>(() => TorchRuntime.ResolveDevice(raw));
        Assert.Equal($"SRLM_DEVICE must be cpu, cuda or cuda:N (N a GPU index), got '{raw}'", e.Message);
    }

    [Fact]
    public void Cuda_without_a_gpu_or_past_the_last_gpu_is_one_line_never_the_cpu()
    {
        var none = Assert.Throws<ArgumentException>(() => TorchRuntime.CheckCuda("cuda", 0, available: false, count: 0));
        Assert.Equal("SRLM_DEVICE=cuda but libtorch sees no CUDA GPU (a CPU build of srlm, no driver, or no GPU visible to this process); set SRLM_DEVICE=cpu or leave it unset", none.Message);
        var past = Assert.Throws<ArgumentException>(() => TorchRuntime.CheckCuda("cuda:1", 1, available: true, count: 1));
        Assert.Equal("SRLM_DEVICE=cuda:1 but libtorch sees 1 CUDA GPU (cuda:0)", past.Message);
        var past2 = Assert.Throws<ArgumentException>(() => TorchRuntime.CheckCuda("cuda:5", 5, available: true, count: 2));
        Assert.Equal("SRLM_DEVICE=cuda:5 but libtorch sees 2 CUDA GPUs (cuda:0..cuda:1)", past2.Message);
        var ok = TorchRuntime.CheckCuda("cuda:1", 1, available: true, count: 2);
        Assert.Equal((DeviceType.CUDA, 1), (ok.type, ok.index));
    }

    [Fact]
    public void This_machine_resolves_as_libtorch_sees_it()
    {
        Assert.Equal(DeviceType.CPU, TorchRuntime.ResolveDevice("cpu").type);
        if (cuda.is_available())
        {
            Assert.Equal("cuda:0", TorchRuntime.Describe(TorchRuntime.ResolveDevice(null)));
            Assert.Equal("cuda:0", TorchRuntime.Describe(TorchRuntime.ResolveDevice("cuda")));
        }
        else
        {
            // The CPU libtorch of this build: unset means the CPU, asking for a GPU is an error.
            Assert.Equal("cpu", TorchRuntime.Describe(TorchRuntime.ResolveDevice(null)));
            var e = Assert.Throws<ArgumentException>(() => TorchRuntime.ResolveDevice("cuda"));
            Assert.StartsWith("SRLM_DEVICE=cuda but libtorch sees no CUDA GPU", e.Message);
        }
    }

    // ---- the source check ----

    private static readonly Regex Factory = new(
        @"(?<![\w.])(?:torch\.)?(?<name>tensor|zeros|ones|empty|full|arange|linspace|logspace|randn|rand|randint|randperm|eye|as_tensor|from_array|nn\.Linear|nn\.Embedding)\s*\(",
        RegexOptions.Compiled);

    /// <summary>Tensor factory calls (and module constructors that allocate weights) whose arguments name no
    /// <c>device:</c>, as "line: call". Comments are skipped; string literals are not parsed (none holds such a call).</summary>
    public static List<string> CallsWithoutDevice(string source)
    {
        var code = string.Join('\n', source.Split('\n').Select(StripComment));
        var found = new List<string>();
        foreach (Match m in Factory.Matches(code))
        {
            int open = m.Index + m.Length - 1, depth = 0, i = open;
            for (; i < code.Length; i++)
            {
                if (code[i] is '(' or '[' or '{') depth++;
                else if (code[i] is ')' or ']' or '}' && --depth == 0) break;
            }
            var args = code[(open + 1)..Math.Min(i, code.Length)];
            if (!Regex.IsMatch(args, @"\bdevice\s*:"))
            {
                int line = code[..m.Index].Count(c => c == '\n') + 1;
                found.Add($"{line}: {m.Value}{Regex.Replace(args, @"\s+", " ")})");
            }
        }
        return found;
    }

    /// <summary>The line with its comment removed and the contents of its string literals blanked.</summary>
    private static string StripComment(string line)
    {
        var chars = line.ToCharArray();
        bool inString = false;
        for (int i = 0; i < chars.Length; i++)
        {
            if (inString)
            {
                if (chars[i] == '\\' && i + 1 < chars.Length) { chars[i] = chars[i + 1] = ' '; i++; continue; }
                if (chars[i] == '"') inString = false;
                else chars[i] = ' ';
            }
            else if (chars[i] == '"') inString = true;
            else if (chars[i] == '/' && i + 1 < chars.Length && chars[i + 1] == '/') return new string(chars, 0, i);
        }
        return new string(chars);
    }

    [Fact]
    public void The_source_check_flags_factory_calls_without_a_device_and_accepts_those_with_one()
    {
        const string code = """
            var a = tensor(ids, [b, t]);                               // flagged
            var b = torch.zeros([2, 3], ScalarType.Float32);           // flagged
            var c = arange(0, n, dtype: ScalarType.Int64).unsqueeze(0); // flagged
            var d = nn.Linear(4, 8, hasBias: false);                   // flagged
            var e = ones(size(x), device: x.device);
            var f = full(b, 1, v, ScalarType.Int64, device: labels.device);
            var g = torch.empty([rows, 1, V], ScalarType.Float32, device: CPU);
            var h = x.zeros_like(); var k = zeros_like(x); var l = MyTensor(3); Fail("the prompt is empty (it needs BOS)");
            // var m = tensor(ids); a comment
            """;
        var found = CallsWithoutDevice(code);
        Assert.Equal(4, found.Count);
        Assert.Equal(new[] { "1: tensor(", "2: torch.zeros(", "3: arange(", "4: nn.Linear(" }, found.Select(f => f[..f.IndexOf('(')] + "(").ToArray());
    }

    [Fact]
    public void Every_tensor_factory_call_in_Srlm_Model_and_Srlm_Training_names_a_device()
    {
        var root = Path.GetFullPath(Path.Combine(TestModels.SourceDir(), "..", "..", ".."));
        var files = new[] { "src/Srlm.Model", "src/Srlm.Training" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*.cs", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .ToList();
        Assert.True(files.Count > 20, $"found only {files.Count} source files under {root}");
        var bad = files.SelectMany(f => CallsWithoutDevice(File.ReadAllText(f)).Select(c => $"{Path.GetRelativePath(root, f)}:{c}")).ToList();
        Assert.True(bad.Count == 0, "tensor factory calls without a device (pass the model's, or CPU where the data is the host's):\n" + string.Join("\n", bad));
    }

    // ---- the meta device ----
    // libtorch's meta device computes shapes only; a CPU tensor mixed into a meta computation is a device mismatch,
    // as it would be on a GPU. The C++ libtorch lacks meta kernels for four ops of these paths (the last test pins
    // that); MetaFallback computes them from other ops on meta only, so the whole forward, log-prob and DPO step run
    // there, while CPU and GPU keep the ops themselves.

    [Fact]
    public void A_model_built_on_a_device_keeps_its_parameters_cache_and_log_prob_batches_there()
    {
        var config = TestModels.Qwen2Tied();
        using var model = new LlamaForCausalLM(config, META);
        Assert.Equal(DeviceType.META, model.Device.type);
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));
        Assert.Equal(TestModels.Llama().NumHiddenLayers, config.NumHiddenLayers);

        using var cache = new KvCache(config, 2, 16, ScalarType.Float32, model.Device);
        for (int layer = 0; layer < cache.Layers; layer++)
            Assert.Equal((DeviceType.META, DeviceType.META), (cache.Layer(layer).Keys.device_type, cache.Layer(layer).Values.device_type));

        var pairs = new List<(IReadOnlyList<int>, IReadOnlyList<int>)> { ([1, 5, 6], [7, 8, 2]), ([1, 9], [2]) };
        using var batch = LogProbBatch.Collate(pairs, model.Device);
        Assert.Equal(new[] { DeviceType.META, DeviceType.META, DeviceType.META }, new[] { batch.InputIds.device_type, batch.Labels.device_type, batch.CompletionMask.device_type });
        Assert.Equal(new long[] { 2, 5 }, batch.Labels.shape);
    }

    [Fact]
    public void Log_probs_and_the_stored_dpo_reference_are_computed_on_the_logits_device()
    {
        using var scope = NewDisposeScope();
        var pairs = new List<(IReadOnlyList<int>, IReadOnlyList<int>)> { ([1, 5, 6], [7, 8, 2]), ([1, 9], [2]) };
        using var batch = LogProbBatch.Collate(pairs, META);
        var logits = empty([2, 6, 32], device: META).requires_grad_();
        var perToken = LogProbs.TokenLogps(logits, batch.Labels) * batch.CompletionMask;
        Assert.Equal(new long[] { 2, 5 }, perToken.shape);
        Assert.Equal(DeviceType.META, perToken.device_type);
        perToken.sum().backward();
        Assert.Equal(DeviceType.META, logits.grad!.device_type);

        var (chosen, rejected) = DpoTrainer.StoredReferenceLogps([-3f, -4f, -5f], [-6f, -7f, -8f], [2, 0], META);
        Assert.Equal((DeviceType.META, DeviceType.META), (chosen.device_type, rejected.device_type));
        Assert.Equal(new long[] { 2 }, chosen.shape);
    }

    [Fact]
    public void An_optimizer_step_keeps_its_state_on_the_models_device()
    {
        // AdamW creates its moments beside each parameter (zeros_like): a moment on the CPU would make the step's
        // in-place updates a device mismatch.
        using var model = new LlamaForCausalLM(TestModels.Llama(), META);
        using var optimizer = optim.AdamW(model.parameters(), 1e-3);
        using (var scope = NewDisposeScope())
        {
            var loss = model.parameters().Select(p => p.sum()).Aggregate((a, b) => a + b);
            loss.backward();
        }
        optimizer.step();
        optimizer.step();
        Assert.All(model.parameters(), p => Assert.Equal((DeviceType.META, DeviceType.META), (p.device_type, p.grad!.device_type)));
    }

    public static TheoryData<string> Architectures => new() { "llama-gqa", "qwen2-bias-tied", "llama3-rope-scaling", "yarn", "dynamic" };

    private static LlamaConfig Architecture(string name) => name == "dynamic"
        ? TestModels.Llama(vocab: 320) with { MaxPositionEmbeddings = 4, RopeScaling = new RopeScaling { Kind = "dynamic", Factor = 2 } }
        : TestModels.Named(name);

    private static void AssertOnMeta(Tensor t, params long[] shape)
    {
        Assert.Equal(DeviceType.META, t.device_type);
        Assert.Equal(shape, t.shape);
    }

    [Theory]
    [MemberData(nameof(Architectures))]
    public void The_forward_runs_on_meta_causal_padded_and_over_a_kv_cache(string architecture)
    {
        var config = Architecture(architecture);
        long v = config.VocabSize;
        using var model = new LlamaForCausalLM(config, META);
        using var scope = NewDisposeScope();
        var ids = ones(2, 5, ScalarType.Int64, device: META);

        // Training: plain causal attention, with grad, and the backward pass.
        model.train();
        var logits = model.Forward(ids);
        AssertOnMeta(logits, 2, 5, v);
        logits.sum().backward();
        Assert.All(model.parameters(), p => Assert.Equal(DeviceType.META, p.grad!.device_type));

        model.eval();
        using var _ = no_grad();
        // Left padding (positions from the mask), logits of some rows only (what log-probs ask for).
        var mask5 = ones(2, 5, ScalarType.Int64, device: META);
        var rows = model.Forward(ids, attentionMask: mask5, rows: arange(3, dtype: ScalarType.Int64, device: META));
        AssertOnMeta(rows, 3, v);
        // Generation's path off the CPU: a padded prefill into a KV cache, a chunk after it, a decode step.
        using var cache = new KvCache(config, 2, 16, ScalarType.Float32, model.Device);
        AssertOnMeta(model.Forward(ids, attentionMask: mask5, cache: cache, lastOnly: true), 2, 1, v);
        AssertOnMeta(model.Forward(ones(2, 3, ScalarType.Int64, device: META), attentionMask: ones(2, 8, ScalarType.Int64, device: META), cache: cache), 2, 3, v);
        var step = model.Forward(ones(2, 1, ScalarType.Int64, device: META), attentionMask: ones(2, 9, ScalarType.Int64, device: META), cache: cache);
        AssertOnMeta(step, 2, 1, v);
        Assert.Equal(9, cache.Length);
        // Unpadded over a cache: the causal mask offset by the cached length.
        using var plain = new KvCache(config, 2, 16, ScalarType.Float32, model.Device);
        model.Forward(ids, cache: plain);
        AssertOnMeta(model.Forward(ones(2, 3, ScalarType.Int64, device: META), cache: plain), 2, 3, v);
    }

    [Fact]
    public void Log_probs_and_a_whole_dpo_step_run_on_meta()
    {
        // DPO with the NLL term and replay, backward, and two AdamW steps: the trainer's step, with the policy on meta.
        using var policy = new LlamaForCausalLM(TestModels.Qwen2Tied(), META);
        policy.train();
        using var optimizer = optim.AdamW(policy.parameters(), 1e-3);
        TokenizedPair[] pairs = [new("a", [1, 5, 6], [7, 8, 2], [9, 2]), new("b", [1, 9], [2], [3, 4, 5, 2])];
        TokenizedSequence[] replayed = [new([1, 4], [5, 6, 2])];
        var options = new DpoOptions { NllWeight = 0.2, ReplayWeight = 0.5 };
        for (int stepIndex = 0; stepIndex < 2; stepIndex++)
        {
            using var scope = NewDisposeScope();
            var (refChosen, refRejected) = DpoTrainer.StoredReferenceLogps([-3f, -4f], [-5f, -6f], [0, 1], policy.Device);
            var (loss, logps) = DpoTrainer.MicroLoss(policy, pairs, refChosen, refRejected, options, normalizer: 2, replayed);
            AssertOnMeta(loss);
            AssertOnMeta(logps, 4);
            loss.backward();
            optimizer.step();
            optimizer.zero_grad();
        }
        Assert.All(policy.parameters(), p => Assert.Equal(DeviceType.META, p.device_type));

        using var batch = TokenLogProbs.Collate(replayed.Concat(pairs.Select(p => p.ChosenSequence)), policy.Device);
        using var __ = no_grad();
        var (sum, perToken) = LogProbs.Compute(policy, batch);
        AssertOnMeta(sum, 3);
        AssertOnMeta(perToken, 3, 5);
        sum.Dispose(); perToken.Dispose();
    }

    [Fact]
    public void A_tensor_left_on_the_cpu_in_a_meta_forward_or_dpo_loss_is_a_device_mismatch()
    {
        // What the meta tests rely on: with the model on meta, an input, mask, position or row index made on the CPU
        // stops the forward (libtorch's elementwise ops refuse to mix devices; MetaFallback's stand-ins check indexes
        // and masks themselves, as index_select and attention do on a GPU).
        using var model = new LlamaForCausalLM(TestModels.Llama(), META);
        model.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = ones(2, 5, ScalarType.Int64, device: META);
        var mistakes = new (string What, Action Run)[]
        {
            ("input ids", () => model.Forward(ones(2, 5, ScalarType.Int64, device: CPU))),
            ("attention mask", () => model.Forward(ids, attentionMask: ones(2, 5, ScalarType.Int64, device: CPU))),
            ("position ids", () => model.Forward(ids, positionIds: arange(5, dtype: ScalarType.Int64, device: CPU).unsqueeze(0).expand(2, 5))),
            ("rows", () => model.Forward(ids, rows: arange(3, dtype: ScalarType.Int64, device: CPU))),
            ("attention mask over a cache", () =>
            {
                using var cache = new KvCache(model.Config, 2, 16, ScalarType.Float32, model.Device);
                model.Forward(ids, cache: cache);
                model.Forward(ones(2, 1, ScalarType.Int64, device: META), attentionMask: ones(2, 6, ScalarType.Int64, device: CPU), cache: cache);
            }),
        };
        foreach (var (what, run) in mistakes)
        {
            var e = Assert.ThrowsAny<Exception>(run);
            Assert.True(e.Message.StartsWith("Expected all tensors to be on the same device", StringComparison.Ordinal), $"{what}: {e.Message.Split('\n')[0]}");
        }

        var policy = empty([2], device: META);
        var (onMeta, _) = DpoTrainer.StoredReferenceLogps([-3f, -4f], [-5f, -6f], [0, 1], META);
        var (onCpu, _) = DpoTrainer.StoredReferenceLogps([-3f, -4f], [-5f, -6f], [0, 1], CPU);
        var mismatch = Assert.ThrowsAny<Exception>(() => DpoLoss.Losses(policy, policy, onCpu, onCpu, 0.1));
        Assert.StartsWith("Expected all tensors to be on the same device", mismatch.Message);
        Assert.Equal(DeviceType.META, DpoLoss.Losses(policy, policy, onMeta, onMeta, 0.1).device_type);
    }

    [Fact]
    public void The_meta_stand_ins_compute_what_the_ops_they_replace_compute()
    {
        // On the CPU, where both have values: MetaFallback's stand-ins against the libtorch ops they replace on meta.
        using var scope = NewDisposeScope();
        using var g = new torch.Generator(7);
        var x = randn([2, 4, 6, 8], generator: g);
        Assert.True(MetaFallback.RollByParts(x, 4).allclose(x.roll(4, -1), rtol: 0, atol: 0));
        Assert.True(MetaFallback.RollByParts(x, -3).allclose(x.roll(-3, -1), rtol: 0, atol: 0));

        var w = randn([10, 8], generator: g);
        var index = tensor(new long[] { 3, 0, 3, 9 });
        Assert.True(MetaFallback.GatherRows(w, index).allclose(w.index_select(0, index), rtol: 0, atol: 0));
        var ids = tensor(new long[] { 1, 2, 3, 4, 5, 9 }, [2, 3]);
        Assert.True(MetaFallback.GatherRows(w, ids).allclose(w.index_select(0, ids.reshape(-1)).view(2, 3, 8), rtol: 0, atol: 0));

        var rows = tensor(new long[] { 1, 4, 5 });
        var source = randn([3], generator: g);
        Assert.True(MetaFallback.PutRows(zeros(8), rows, source).allclose(zeros(8).index_copy(0, rows, source), rtol: 0, atol: 0));

        var z = randn([64], generator: g) * 30;
        Assert.True(MetaFallback.LogSigmoidByParts(z).allclose(nn.functional.logsigmoid(z), rtol: 1e-5, atol: 1e-6));

        var q = randn([2, 4, 6, 8], generator: g);
        var k = randn([2, 4, 6, 8], generator: g);
        var v = randn([2, 4, 6, 8], generator: g);
        void Same(Tensor? mask, bool causal, string what) => Assert.True(
            MetaFallback.AttentionByParts(q, k, v, mask, causal).allclose(nn.functional.scaled_dot_product_attention(q, k, v, mask, 0, causal), rtol: 1e-4, atol: 1e-5), what);
        Same(null, false, "no mask");
        Same(null, true, "causal");
        // Row 1 left-padded by two: its padded queries see only themselves, as LlamaForCausalLM's masks have it.
        var valid = tensor(new[] { true, true, true, true, true, true, false, false, true, true, true, true }, [2, 1, 1, 6]);
        var causalMask = ones([6, 6], ScalarType.Bool).tril().view(1, 1, 6, 6);
        var padded = valid.bitwise_and(causalMask).bitwise_or(eye(6, dtype: ScalarType.Bool).view(1, 1, 6, 6));
        Same(padded, false, "padded");
    }

    [Fact]
    public void The_ops_MetaFallback_stands_in_for_still_lack_meta_kernels_in_this_libtorch()
    {
        // The embedding lookup and row gathers (index_select, also in index_copy's backward), the RoPE rotation (roll),
        // attention (where, inside scaled_dot_product_attention) and the DPO loss (log_sigmoid). When this test fails,
        // libtorch has gained the kernel: let MetaFallback call that op on meta too.
        using var scope = NewDisposeScope();
        var x = empty([2, 3, 5, 8], device: META);
        var ids = tensor(new long[] { 1, 2 }, device: META);
        var missing = new (string Op, Func<Tensor> Run)[]
        {
            ("index_select", () => empty([10, 4], device: META).index_select(0, ids)),
            ("index_copy's backward", () =>
            {
                var source = empty([2], device: META).requires_grad_();
                zeros(10, device: META).index_copy(0, ids, source).sum().backward();
                return source.grad!;
            }),
            ("roll", () => x.roll(4, -1)),
            ("scaled_dot_product_attention", () => nn.functional.scaled_dot_product_attention(x, x, x, null, 0, true)),
            ("log_sigmoid", () => nn.functional.logsigmoid(empty([3], device: META))),
        };
        foreach (var (op, run) in missing)
        {
            var e = Assert.ThrowsAny<Exception>(() => run().Dispose());
            Assert.True(e.Message.Contains("Meta", StringComparison.Ordinal), $"{op}: {e.Message.Split('\n')[0]}");
        }
    }
}
