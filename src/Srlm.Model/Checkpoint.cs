namespace Srlm.Model;

/// <summary>Sampling defaults stored as generation_config.json.</summary>
public sealed record GenerationSettings
{
    public double Temperature { get; init; } = 0.7;
    public double TopP { get; init; } = 0.9;
    public int TopK { get; init; }
    public int MaxNewTokens { get; init; } = 256;
}

/// <summary>Reads and writes Hugging Face checkpoint folders: config.json, model.safetensors (or a sharded
/// model.safetensors.index.json), tokenizer files, generation_config.json, and srlm.json (our prompt template).</summary>
public static class Checkpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";
    public const string GenerationFile = "generation_config.json";

    /// <summary>Loads the weights of the checkpoint in <paramref name="dir"/> into a new model. Every safetensors
    /// header is validated before any tensor is read; a missing, unexpected or misshapen tensor is an error.</summary>
    /// <param name="configure">adjusts the config before the model is built (e.g. training dropout); architecture fields must not change.</param>
    /// <param name="device">where the model is built and stays; null: the process's device (<see cref="TorchRuntime.Device"/>,
    /// SRLM_DEVICE), so every service and CLI verb that loads a checkpoint honours it.</param>
    public static LlamaForCausalLM LoadModel(string dir, ScalarType dtype = ScalarType.Float32, Func<LlamaConfig, LlamaConfig>? configure = null, Device? device = null)
    {
        if (!Directory.Exists(dir)) throw new CheckpointException(dir, "checkpoint directory is missing");
        var config = LlamaConfig.Load(Path.Combine(dir, ConfigFile));
        if (configure is not null) config = configure(config);
        var headers = OpenWeights(dir);
        var where = new Dictionary<string, SafeTensorsHeader>(StringComparer.Ordinal);
        foreach (var h in headers)
            foreach (var name in h.Entries.Keys) where[name] = h;

        var model = new LlamaForCausalLM(config, device ?? TorchRuntime.Device);
        try
        {
            // The model takes its compute dtype before any weight is read (to() replaces the parameter tensors), and
            // each tensor is read in its stored dtype and converted while copied in: a bfloat16 model never holds a
            // float32 copy of its weights.
            if (dtype != ScalarType.Float32) model.to(dtype);
            var parameters = model.named_parameters().ToList();
            var expected = parameters.Select(p => p.name).ToHashSet(StringComparer.Ordinal);
            var shardForMessages = headers.Count == 1 ? headers[0].Path : Path.Combine(dir, IndexFile);

            // A tied head may be stored under either key (HF writes embed_tokens; some exporters write lm_head only).
            string SourceOf(string name)
            {
                if (where.ContainsKey(name)) return name;
                if (config.TieWordEmbeddings && name == "model.embed_tokens.weight" && where.ContainsKey("lm_head.weight")) return "lm_head.weight";
                throw new CheckpointException(shardForMessages, $"missing tensor '{name}'");
            }
            var sources = parameters.ToDictionary(p => p.name, p => SourceOf(p.name), StringComparer.Ordinal);
            foreach (var name in where.Keys)
            {
                if (expected.Contains(name) || name.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal)) continue;
                if (config.TieWordEmbeddings && name == "lm_head.weight") continue;
                throw new CheckpointException(where[name].Path, $"unexpected tensor '{name}' (not part of a {config.ModelType} model with this config)");
            }
            foreach (var (name, p) in parameters)
            {
                var entry = where[sources[name]].Entries[sources[name]];
                if (!entry.Shape.SequenceEqual(p.shape))
                    throw new CheckpointException(where[sources[name]].Path,
                        $"tensor '{sources[name]}' has shape [{string.Join(", ", entry.Shape)}], expected [{string.Join(", ", p.shape)}]");
            }

            using var _ = no_grad();
            foreach (var group in parameters.GroupBy(p => where[sources[p.name]]))
                foreach (var (name, p) in group)
                {
                    using var loaded = group.Key.Read(sources[name]); // host memory
                    p.copy_(loaded);                                  // to the model's device and dtype
                }
            model.eval();
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Opens and validates every weight file of the checkpoint (single file or shards).</summary>
    public static List<SafeTensorsHeader> OpenWeights(string dir)
    {
        var single = Path.Combine(dir, WeightsFile);
        var index = Path.Combine(dir, IndexFile);
        if (File.Exists(single)) return [SafeTensorsHeader.Open(single)];
        if (!File.Exists(index)) throw new CheckpointException(single, $"missing weights (neither {WeightsFile} nor {IndexFile})");
        JsonObject map;
        try
        {
            map = (JsonNode.Parse(File.ReadAllText(index)) as JsonObject)?["weight_map"] as JsonObject
                  ?? throw new CheckpointException(index, "has no 'weight_map' object");
        }
        catch (JsonException e) { throw new CheckpointException(index, $"is not valid JSON ({LlamaConfig.OneLine(e.Message)})", e); }
        var files = map.Select(kv => kv.Value?.GetValue<string>() ?? throw new CheckpointException(index, $"weight_map entry '{kv.Key}' has no file"))
            .Distinct(StringComparer.Ordinal).ToList();
        var headers = files.Select(f => SafeTensorsHeader.Open(Path.Combine(dir, f))).ToList();
        foreach (var (name, file) in map)
        {
            var h = headers.First(x => Path.GetFileName(x.Path) == file!.GetValue<string>());
            if (!h.Entries.ContainsKey(name)) throw new CheckpointException(h.Path, $"missing tensor '{name}' (listed in {IndexFile})");
        }
        return headers;
    }

    /// <summary>Writes config.json, model.safetensors and generation_config.json. The weights are stored in
    /// <paramref name="dtype"/>, by default in the dtype of the checkpoint the model came from (its config's
    /// <c>torch_dtype</c>; float32 when that names no model dtype), whatever dtype the model computed in: a model
    /// trained from a bfloat16 checkpoint is saved as bfloat16. A tied head is written once, as
    /// model.embed_tokens.weight, as transformers does.</summary>
    public static void SaveModel(string dir, LlamaForCausalLM model, GenerationSettings? generation = null, ScalarType? dtype = null)
    {
        Directory.CreateDirectory(dir);
        var stored = dtype ?? ModelDtype.TryParse(model.Config.TorchDtype) ?? ScalarType.Float32;
        var config = model.Config with { TorchDtype = ModelDtype.Name(stored) };
        using var scope = NewDisposeScope();
        var tensors = model.named_parameters()
            .Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter.detach().to(stored)))
            .ToList();
        SafeTensorsWriter.Write(Path.Combine(dir, WeightsFile), tensors);
        var index = Path.Combine(dir, IndexFile);
        if (File.Exists(index)) File.Delete(index);
        File.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJson());
        var g = generation ?? new GenerationSettings();
        var gen = new JsonObject
        {
            ["do_sample"] = g.Temperature > 0,
            ["temperature"] = g.Temperature,
            ["top_p"] = g.TopP,
            ["max_new_tokens"] = g.MaxNewTokens,
        };
        if (g.TopK > 0) gen["top_k"] = g.TopK;
        if (config.BosTokenId is { } b) gen["bos_token_id"] = b;
        if (config.EosTokenIds.Count == 1) gen["eos_token_id"] = config.EosTokenIds[0];
        else if (config.EosTokenIds.Count > 1) gen["eos_token_id"] = new JsonArray(config.EosTokenIds.Select(x => (JsonNode)x).ToArray());
        if (config.PadTokenId is { } p) gen["pad_token_id"] = p;
        File.WriteAllText(Path.Combine(dir, GenerationFile), gen.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Reads generation_config.json when present (defaults otherwise).</summary>
    public static GenerationSettings LoadGenerationSettings(string dir)
    {
        var path = Path.Combine(dir, GenerationFile);
        var d = new GenerationSettings();
        if (!File.Exists(path)) return d;
        try
        {
            var o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
            if (o is null) return d;
            bool sample = o["do_sample"]?.GetValue<bool>() ?? true;
            return new GenerationSettings
            {
                Temperature = sample ? o["temperature"]?.GetValue<double>() ?? d.Temperature : 0,
                TopP = o["top_p"]?.GetValue<double>() ?? d.TopP,
                TopK = o["top_k"]?.GetValue<int>() ?? 0,
                MaxNewTokens = o["max_new_tokens"]?.GetValue<int>() ?? d.MaxNewTokens,
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new CheckpointException(path, $"is not a valid generation config ({LlamaConfig.OneLine(e.Message)})", e);
        }
    }
}
