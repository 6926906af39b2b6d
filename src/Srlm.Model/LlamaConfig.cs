namespace Srlm.Model;

/// <summary>RoPE scaling from config.json's "rope_scaling". Kind "default" means none.</summary>
public sealed record RopeScaling
{
    public string Kind { get; init; } = "default";
    public double Factor { get; init; } = 1.0;
    /// <summary>llama3: low_freq_factor / high_freq_factor / original_max_position_embeddings.</summary>
    public double LowFreqFactor { get; init; } = 1.0;
    public double HighFreqFactor { get; init; } = 4.0;
    public int? OriginalMaxPositionEmbeddings { get; init; }
    /// <summary>yarn: beta_fast / beta_slow / attention_factor (mscale).</summary>
    public double BetaFast { get; init; } = 32.0;
    public double BetaSlow { get; init; } = 1.0;
    public double? AttentionFactor { get; init; }

    public static readonly string[] SupportedKinds = ["default", "linear", "dynamic", "llama3", "yarn"];
}

/// <summary>The architecture of a Llama-family decoder, read from (and written as) a Hugging Face config.json.
/// Covers llama, mistral, qwen2 (q/k/v bias), SmolLM and TinyLlama, which are all model_type llama/mistral/qwen2.</summary>
public sealed record LlamaConfig
{
    public string ModelType { get; init; } = "llama";
    public int VocabSize { get; init; } = 32000;
    public int HiddenSize { get; init; } = 4096;
    public int IntermediateSize { get; init; } = 11008;
    public int NumHiddenLayers { get; init; } = 32;
    public int NumAttentionHeads { get; init; } = 32;
    public int NumKeyValueHeads { get; init; } = 32;
    /// <summary>Per-head size; HF's head_dim when present, else hidden_size / num_attention_heads.</summary>
    public int HeadDim { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000.0;
    public RopeScaling RopeScaling { get; init; } = new();
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>q/k/v projections carry a bias (Qwen2). HF llama spells it attention_bias; qwen2 implies it.</summary>
    public bool AttentionBias { get; init; }
    public int? BosTokenId { get; init; } = 1;
    public int? EosTokenId { get; init; } = 2;
    /// <summary>Every id that ends a sequence (HF allows a list for eos_token_id).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [2];
    public int? PadTokenId { get; init; }
    public string TorchDtype { get; init; } = "float32";
    public string HiddenAct { get; init; } = "silu";
    /// <summary>Dropout on attention probabilities while training (HF attention_dropout). 0 at inference always.</summary>
    public double AttentionDropout { get; init; }
    /// <summary>Dropout on each residual branch while training (not an HF field; stored as srlm_residual_dropout).</summary>
    public double ResidualDropout { get; init; }

    public int HeadDimension => HeadDim > 0 ? HeadDim : HiddenSize / NumAttentionHeads;

    /// <summary>Checks the numbers fit together; throws CheckpointException naming <paramref name="file"/>.</summary>
    public LlamaConfig Validate(string file = "config.json")
    {
        void Need(bool ok, string what) { if (!ok) throw new CheckpointException(file, what); }
        Need(VocabSize > 0, $"vocab_size must be positive, got {VocabSize}");
        Need(HiddenSize > 0, $"hidden_size must be positive, got {HiddenSize}");
        Need(IntermediateSize > 0, $"intermediate_size must be positive, got {IntermediateSize}");
        Need(NumHiddenLayers > 0, $"num_hidden_layers must be positive, got {NumHiddenLayers}");
        Need(NumAttentionHeads > 0, $"num_attention_heads must be positive, got {NumAttentionHeads}");
        Need(NumKeyValueHeads > 0 && NumAttentionHeads % NumKeyValueHeads == 0,
            $"num_attention_heads ({NumAttentionHeads}) must be a multiple of num_key_value_heads ({NumKeyValueHeads})");
        Need(HeadDim > 0 || HiddenSize % NumAttentionHeads == 0,
            $"hidden_size ({HiddenSize}) must be a multiple of num_attention_heads ({NumAttentionHeads})");
        Need(HeadDimension % 2 == 0, $"head dimension must be even for rotary embeddings, got {HeadDimension}");
        Need(HiddenAct is "silu" or "swish", $"hidden_act '{HiddenAct}' is not supported (only silu)");
        Need(RopeScaling.SupportedKinds.Contains(RopeScaling.Kind),
            $"rope_scaling type '{RopeScaling.Kind}' is not supported (supported: {string.Join(", ", RopeScaling.SupportedKinds)})");
        Need(RopeScaling.Factor > 0, $"rope_scaling factor must be positive, got {RopeScaling.Factor}");
        Need(ModelType is "llama" or "mistral" or "qwen2", $"model_type '{ModelType}' is not a supported Llama-family type (llama, mistral, qwen2)");
        return this;
    }

    public static LlamaConfig Load(string path)
    {
        if (!System.IO.File.Exists(path)) throw new CheckpointException(path, "file is missing");
        string text;
        try { text = System.IO.File.ReadAllText(path); }
        catch (IOException e) { throw new CheckpointException(path, $"cannot be read ({e.Message})", e); }
        return Parse(text, path);
    }

    public static LlamaConfig Parse(string json, string file = "config.json")
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new CheckpointException(file, "is not a JSON object"); }
        catch (JsonException e) { throw new CheckpointException(file, $"is not valid JSON ({OneLine(e.Message)})", e); }

        int Int(string key, int? fallback)
        {
            var n = o[key];
            if (n is null) return fallback ?? throw new CheckpointException(file, $"field '{key}' is missing");
            try { return n.GetValue<int>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new CheckpointException(file, $"field '{key}' must be an integer, got {n.ToJsonString()}", e); }
        }
        double Dbl(JsonObject obj, string key, double fallback)
        {
            var n = obj[key];
            if (n is null) return fallback;
            try { return n.GetValue<double>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new CheckpointException(file, $"field '{key}' must be a number, got {n.ToJsonString()}", e); }
        }
        bool Bool(string key, bool fallback)
        {
            var n = o[key];
            if (n is null) return fallback;
            try { return n.GetValue<bool>(); }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            { throw new CheckpointException(file, $"field '{key}' must be true or false, got {n.ToJsonString()}", e); }
        }
        int? OptId(string key)
        {
            var n = o[key];
            if (n is null) return null;
            if (n is JsonArray a) return a.Count == 0 ? null : a[0]!.GetValue<int>();
            return n.GetValue<int>();
        }

        var modelType = o["model_type"]?.GetValue<string>() ?? "llama";
        int hidden = Int("hidden_size", null);
        int heads = Int("num_attention_heads", null);
        var eosNode = o["eos_token_id"];
        IReadOnlyList<int> eosIds = eosNode switch
        {
            null => [],
            JsonArray a => a.Select(x => x!.GetValue<int>()).ToArray(),
            _ => [eosNode.GetValue<int>()],
        };

        var scaling = new RopeScaling();
        if (o["rope_scaling"] is JsonObject rs)
        {
            var kind = (rs["rope_type"] ?? rs["type"])?.GetValue<string>() ?? "default";
            scaling = new RopeScaling
            {
                Kind = kind,
                Factor = Dbl(rs, "factor", 1.0),
                LowFreqFactor = Dbl(rs, "low_freq_factor", 1.0),
                HighFreqFactor = Dbl(rs, "high_freq_factor", 4.0),
                OriginalMaxPositionEmbeddings = rs["original_max_position_embeddings"]?.GetValue<int>(),
                BetaFast = Dbl(rs, "beta_fast", 32.0),
                BetaSlow = Dbl(rs, "beta_slow", 1.0),
                AttentionFactor = rs["attention_factor"]?.GetValue<double>(),
            };
        }
        else if (o["rope_scaling"] is { } bad && bad.GetValueKind() != JsonValueKind.Null)
            throw new CheckpointException(file, $"field 'rope_scaling' must be an object or null, got {bad.ToJsonString()}");

        var cfg = new LlamaConfig
        {
            ModelType = modelType,
            VocabSize = Int("vocab_size", null),
            HiddenSize = hidden,
            IntermediateSize = Int("intermediate_size", null),
            NumHiddenLayers = Int("num_hidden_layers", null),
            NumAttentionHeads = heads,
            NumKeyValueHeads = Int("num_key_value_heads", heads),
            HeadDim = o["head_dim"] is null ? 0 : Int("head_dim", 0),
            RmsNormEps = Dbl(o, "rms_norm_eps", 1e-6),
            RopeTheta = Dbl(o, "rope_theta", 10000.0),
            RopeScaling = scaling,
            MaxPositionEmbeddings = Int("max_position_embeddings", 2048),
            TieWordEmbeddings = Bool("tie_word_embeddings", false),
            AttentionBias = Bool("attention_bias", modelType == "qwen2"),
            BosTokenId = OptId("bos_token_id"),
            EosTokenId = eosIds.Count > 0 ? eosIds[0] : null,
            EosTokenIds = eosIds,
            PadTokenId = OptId("pad_token_id"),
            TorchDtype = o["torch_dtype"]?.GetValue<string>() ?? o["dtype"]?.GetValue<string>() ?? "float32",
            HiddenAct = o["hidden_act"]?.GetValue<string>() ?? "silu",
            AttentionDropout = Dbl(o, "attention_dropout", 0.0),
            ResidualDropout = Dbl(o, "srlm_residual_dropout", 0.0),
        };
        return cfg.Validate(file);
    }

    /// <summary>config.json as Hugging Face transformers reads it.</summary>
    public string ToJson()
    {
        var arch = ModelType switch { "qwen2" => "Qwen2ForCausalLM", "mistral" => "MistralForCausalLM", _ => "LlamaForCausalLM" };
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(arch),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDimension,
            ["hidden_act"] = HiddenAct,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["attention_bias"] = AttentionBias,
            ["attention_dropout"] = AttentionDropout,
            ["mlp_bias"] = false,
            ["torch_dtype"] = TorchDtype,
            ["use_cache"] = true,
        };
        if (ResidualDropout > 0) o["srlm_residual_dropout"] = ResidualDropout;
        if (BosTokenId is { } b) o["bos_token_id"] = b;
        if (EosTokenIds.Count == 1) o["eos_token_id"] = EosTokenIds[0];
        else if (EosTokenIds.Count > 1) o["eos_token_id"] = new JsonArray(EosTokenIds.Select(x => (JsonNode)x).ToArray());
        if (PadTokenId is { } p) o["pad_token_id"] = p;
        if (RopeScaling.Kind != "default")
        {
            var rs = new JsonObject { ["rope_type"] = RopeScaling.Kind, ["type"] = RopeScaling.Kind, ["factor"] = RopeScaling.Factor };
            if (RopeScaling.Kind == "llama3")
            {
                rs["low_freq_factor"] = RopeScaling.LowFreqFactor;
                rs["high_freq_factor"] = RopeScaling.HighFreqFactor;
            }
            if (RopeScaling.Kind == "yarn")
            {
                rs["beta_fast"] = RopeScaling.BetaFast;
                rs["beta_slow"] = RopeScaling.BetaSlow;
                if (RopeScaling.AttentionFactor is { } af) rs["attention_factor"] = af;
            }
            if (RopeScaling.OriginalMaxPositionEmbeddings is { } om) rs["original_max_position_embeddings"] = om;
            o["rope_scaling"] = rs;
        }
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>A small config for tests and from-scratch models.</summary>
    public static LlamaConfig Tiny(int vocabSize, int hidden = 64, int layers = 2, int heads = 4, int kvHeads = 4, int intermediate = 0) => new()
    {
        VocabSize = vocabSize,
        HiddenSize = hidden,
        IntermediateSize = intermediate > 0 ? intermediate : hidden * 8 / 3 / 8 * 8 + 8,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        MaxPositionEmbeddings = 2048,
        RmsNormEps = 1e-5,
        BosTokenId = 1,
        EosTokenId = 2,
        EosTokenIds = [2],
        PadTokenId = 0,
    };

    internal static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');

    internal static string Num(double d) => d.ToString("R", CultureInfo.InvariantCulture);
}
