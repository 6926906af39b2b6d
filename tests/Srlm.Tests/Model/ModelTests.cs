namespace Srlm.Tests.Model;

public class ModelTests
{
    public static TheoryData<string> ListingConfigs => new() { "llama", "qwen2_bias_tied", "llama_tied" };

    private static LlamaConfig ConfigFor(string name) => name switch
    {
        "llama" => TestModels.Llama(),
        "qwen2_bias_tied" => TestModels.Qwen2Tied(),
        "llama_tied" => TestModels.LlamaTied(),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(ListingConfigs))]
    public void Parameter_names_and_shapes_match_the_approved_listing(string name)
    {
        using var model = new LlamaForCausalLM(ConfigFor(name));
        var listing = model.ShapeListing();
        var approved = Path.Combine(TestModels.SourceDir(), "Approved", $"{name}.txt");
        if (!File.Exists(approved) || File.ReadAllText(approved) != listing)
        {
            File.WriteAllText(Path.ChangeExtension(approved, ".received.txt"), listing);
            Assert.Fail($"parameter listing differs from {approved}; see the .received.txt beside it");
        }
    }

    [Fact]
    public void Config_json_round_trips_through_the_HF_format()
    {
        var c = TestModels.Qwen2Tied() with { RopeScaling = new RopeScaling { Kind = "llama3", Factor = 8, OriginalMaxPositionEmbeddings = 8192 } };
        var back = LlamaConfig.Parse(c.ToJson());
        Assert.Equal(c.ToJson(), back.ToJson());
        Assert.True(back.AttentionBias);
        Assert.True(back.TieWordEmbeddings);
        Assert.Equal("llama3", back.RopeScaling.Kind);
    }

    [Fact]
    public void Unsupported_rope_scaling_is_a_clear_error()
    {
        var json = TestModels.Llama().ToJson().Replace("\"use_cache\": true", "\"use_cache\": true, \"rope_scaling\": {\"type\": \"longrope\", \"factor\": 2}");
        var e = Assert.Throws<CheckpointException>(() => LlamaConfig.Parse(json, "x/config.json"));
        Assert.Contains("x/config.json", e.Message);
        Assert.Contains("longrope", e.Message);
    }

    [Fact]
    public void Same_seed_builds_the_same_weights_and_a_different_seed_does_not()
    {
        using var a = LlamaForCausalLM.Create(TestModels.Llama(), 7);
        using var b = LlamaForCausalLM.Create(TestModels.Llama(), 7);
        using var c = LlamaForCausalLM.Create(TestModels.Llama(), 8);
        var pa = a.parameters().First(); var pb = b.parameters().First(); var pc = c.parameters().First();
        Assert.True(pa.eq(pb).all().item<bool>());
        Assert.False(pa.eq(pc).all().item<bool>());
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("qwen2_bias_tied")]
    public void Save_then_load_gives_bit_identical_logits(string name)
    {
        var dir = TestModels.TempDir("saveload");
        using var model = LlamaForCausalLM.Create(ConfigFor(name), 11);
        if (name.StartsWith("qwen2"))
            using (no_grad()) foreach (var (n, p) in model.named_parameters()) if (n.EndsWith(".bias")) p.normal_(0, 0.1);
        model.eval();
        Checkpoint.SaveModel(dir, model);
        using var loaded = Checkpoint.LoadModel(dir);
        using var ids = tensor(new long[] { 1, 5, 9, 33, 2, 70, 4, 8 }).view(2, 4);
        using var _ = no_grad();
        using var a = model.forward(ids);
        using var b = loaded.forward(ids);
        Assert.Equal(new long[] { 2, 4, 96 }, a.shape);
        Assert.True(a.eq(b).all().item<bool>(), "logits differ after save/load");
    }

    [Fact]
    public void Bf16_checkpoint_loads_with_values_rounded_to_bf16()
    {
        var dir = TestModels.TempDir("bf16");
        using var model = LlamaForCausalLM.Create(TestModels.Llama(), 3);
        Checkpoint.SaveModel(dir, model, dtype: ScalarType.BFloat16);
        var header = SafeTensorsHeader.Open(Path.Combine(dir, Checkpoint.WeightsFile));
        Assert.All(header.Entries.Values, e => Assert.Equal("BF16", e.Dtype));
        using var loaded = Checkpoint.LoadModel(dir);
        var w = model.named_parameters().First(p => p.name == "model.layers.0.mlp.up_proj.weight").parameter;
        var l = loaded.named_parameters().First(p => p.name == "model.layers.0.mlp.up_proj.weight").parameter;
        using var rounded = w.to(ScalarType.BFloat16).to(ScalarType.Float32);
        Assert.True(rounded.eq(l).all().item<bool>());
    }

    [Fact]
    public void Cached_forward_equals_full_forward_for_left_padded_batches()
    {
        using var model = LlamaForCausalLM.Create(TestModels.Llama(), 5);
        model.eval();
        using var _ = no_grad();
        // Row 0 is padded on the left by two positions; row 1 is full.
        using var ids = tensor(new long[] { 0, 0, 5, 6, 7, 8, 3, 4, 5, 6, 7, 8 }).view(2, 6);
        using var mask = tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }).view(2, 6);
        using var full = model.Forward(ids, mask);                                         // (2, 6, V)
        using var cache = new KvCache(model.Config, 2, 16, ScalarType.Float32, model.Device);
        using var pre = model.Forward(ids.narrow(1, 0, 4), mask.narrow(1, 0, 4), cache: cache);
        using var s1 = model.Forward(ids.narrow(1, 4, 1), mask.narrow(1, 0, 5), cache: cache);
        using var s2 = model.Forward(ids.narrow(1, 5, 1), mask.narrow(1, 0, 6), cache: cache);
        using var stepped = cat([pre, s1, s2], 1);
        using var diff = (full - stepped).abs().narrow(1, 2, 4).max();
        Assert.True(diff.item<float>() < 1e-5f, $"max difference {diff.item<float>()}");
        // The padded row's real tokens equal the same tokens unpadded.
        using var alone = model.Forward(ids.narrow(0, 0, 1).narrow(1, 2, 4));
        using var d2 = (alone - full.narrow(0, 0, 1).narrow(1, 2, 4)).abs().max();
        Assert.True(d2.item<float>() < 1e-5f, $"padding changed logits by {d2.item<float>()}");
    }
}
