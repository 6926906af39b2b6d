namespace Srlm.Cli.Commands;

/// <summary>srlm generate --model DIR --prompt TEXT: prints the continuation only (special tokens skipped).</summary>
public sealed class GenerateCommand : ICommand
{
    public string Name => "generate";
    public string Summary => "sample a continuation of --prompt from the checkpoint folder --model (--dtype float32|bfloat16|float16)";

    public async Task<int> RunAsync(string[] args, CancellationToken cancel)
    {
        var a = new Args(args, "--chat");
        var dir = a.Required("--model");
        var prompt = a.Required("--prompt");
        bool chat = a.Flag("--chat");
        int? maxNew = a.Get("--max-new-tokens") is null ? null : a.Int("--max-new-tokens", 0);
        double? temperature = a.Get("--temperature") is null ? null : a.Double("--temperature", 0);
        double? topP = a.Get("--top-p") is null ? null : a.Double("--top-p", 1);
        int? topK = a.Get("--top-k") is null ? null : a.Int("--top-k", 0);
        var dtypeText = a.Get("--dtype");
        var dtype = dtypeText is null ? TorchSharp.torch.ScalarType.Float32
            : ModelDtype.TryParse(dtypeText) ?? throw new UsageException($"option --dtype must be one of {string.Join(", ", ModelDtype.Names)}, got '{dtypeText}'");
        var seedText = a.Get("--seed");
        ulong seed = 0;
        if (seedText is not null && !ulong.TryParse(seedText, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out seed))
            throw new UsageException($"option --seed must be a non-negative integer, got '{seedText}'");
        a.EnsureAllRead();
        if (a.Positional.Count > 0) throw new UsageException($"unexpected argument '{a.Positional[0]}'");
        if (!Directory.Exists(dir)) throw new UsageException($"--model {dir}: no such directory");

        ServedModel model;
        try
        {
            model = await ServedModel.LoadAsync(Path.GetFileName(Path.GetFullPath(dir)), dir, cancel, dtype);
        }
        catch (CheckpointException e)
        {
            Console.Error.WriteLine($"srlm generate: {e.Message}");
            return 1;
        }
        using (model)
        {
            var defaults = model.Generation;
            var options = new SamplingOptions
            {
                MaxNewTokens = maxNew ?? defaults.MaxNewTokens,
                Temperature = temperature ?? defaults.Temperature,
                TopP = topP ?? defaults.TopP,
                TopK = topK ?? defaults.TopK,
                StopStrings = chat ? model.Template.StopStrings : [],
                StopTokenIds = chat ? model.Template.StopTokenIds(model.Tokenizer) : [],
            };
            try { options.Validate(); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }

            var text = chat ? model.Template.Format(prompt) : prompt;
            var ids = model.Tokenizer.Encode(text, addBos: chat ? model.Template.AddBos(model.Tokenizer) : model.Tokenizer.AddBos);
            if (ids.Count == 0) throw new UsageException("--prompt is empty and the tokenizer adds no BOS");
            if (ids.Count + options.MaxNewTokens > model.Config.MaxPositionEmbeddings && model.Config.RopeScaling.Kind == "default")
                Console.Error.WriteLine($"srlm generate: warning: {ids.Count + options.MaxNewTokens} positions exceed max_position_embeddings {model.Config.MaxPositionEmbeddings}");
            var result = await model.GenerateAsync([new Srlm.Model.GenerationRequest(ids, seed)], options, cancel);
            Console.Out.WriteLine(result[0].Text);
            return 0;
        }
    }
}
