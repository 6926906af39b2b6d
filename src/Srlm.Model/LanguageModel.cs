namespace Srlm.Model;

/// <summary>A loaded checkpoint: the network, its tokenizer, its prompt template and sampling defaults.
/// Not thread-safe: use it from one thread (see <see cref="ModelExecutor"/>).</summary>
public sealed class LanguageModel(LlamaForCausalLM model, ITokenizer tokenizer, PromptTemplate template, GenerationSettings generation, string? directory = null) : IDisposable
{
    public LlamaForCausalLM Model { get; } = model;
    public ITokenizer Tokenizer { get; } = tokenizer;
    public PromptTemplate Template { get; set; } = template;
    public GenerationSettings Generation { get; } = generation;
    public LlamaConfig Config => Model.Config;
    /// <summary>The folder it was loaded from, when it was.</summary>
    public string? Directory { get; } = directory;

    /// <summary>Bytes held by the weights.</summary>
    public long WeightBytes => Model.parameters().Sum(p => p.numel() * p.ElementSize);

    /// <summary>Loads a checkpoint folder; fails fast with a one-line CheckpointException on any bad file.</summary>
    /// <param name="configure">adjusts the config before the model is built (e.g. training dropout).</param>
    /// <param name="device">null: the process's device (SRLM_DEVICE, see <see cref="TorchRuntime.Device"/>).</param>
    public static LanguageModel Load(string dir, ScalarType dtype = ScalarType.Float32, Func<LlamaConfig, LlamaConfig>? configure = null, Device? device = null)
    {
        if (!System.IO.Directory.Exists(dir)) throw new CheckpointException(dir, "checkpoint directory is missing");
        var config = LlamaConfig.Load(Path.Combine(dir, Checkpoint.ConfigFile));
        var tokenizer = Tokenizers.Load(dir);
        if (tokenizer.VocabSize > config.VocabSize)
            throw new CheckpointException(Path.Combine(dir, Tokenizers.JsonFile), $"tokenizer has {tokenizer.VocabSize} tokens but config.json's vocab_size is {config.VocabSize}");
        var template = PromptTemplate.ForFolder(dir, config, tokenizer);
        var generation = Checkpoint.LoadGenerationSettings(dir);
        var model = Checkpoint.LoadModel(dir, dtype, configure, device);
        return new LanguageModel(model, tokenizer, template, generation, dir);
    }

    /// <summary>Writes a complete Hugging Face checkpoint folder: config.json, model.safetensors, tokenizer files,
    /// generation_config.json and srlm.json (prompt template); weights in the source checkpoint's dtype unless
    /// <paramref name="dtype"/> is given (see <see cref="Checkpoint.SaveModel"/>).</summary>
    public void Save(string dir, ScalarType? dtype = null)
    {
        Checkpoint.SaveModel(dir, Model, Generation, dtype);
        Tokenizer.Save(dir);
        Template.Save(dir);
    }

    public void Dispose() => Model.Dispose();
}
