namespace Srlm.Tests.Model;

/// <summary>Every way a checkpoint can be broken gives one line naming the file and the problem.</summary>
public class BadCheckpointTests
{
    private static string GoodCheckpoint()
    {
        var dir = TestModels.TempDir("bad");
        using var lm = TestModels.CharModel(seed: 1, config: TestModels.Llama(vocab: 320));
        lm.Save(dir);
        return dir;
    }

    private static string Weights(string dir) => Path.Combine(dir, Checkpoint.WeightsFile);

    private static CheckpointException Fails(string dir, string fileName, params string[] words)
    {
        var e = Assert.Throws<CheckpointException>(() => { using var _ = LanguageModel.Load(dir); });
        Assert.DoesNotContain("\n", e.Message);
        Assert.Contains(fileName, e.Message);
        foreach (var w in words) Assert.Contains(w, e.Message);
        return e;
    }

    private static (long HeaderLength, byte[] Bytes) Read(string dir)
    {
        var bytes = File.ReadAllBytes(Weights(dir));
        return ((long)BitConverter.ToUInt64(bytes, 0), bytes);
    }

    [Fact]
    public void A_good_checkpoint_loads()
    {
        var dir = GoodCheckpoint();
        using var lm = LanguageModel.Load(dir);
        Assert.Equal(320, lm.Config.VocabSize);
        Assert.Equal("plain", lm.Template.Name);
    }

    [Fact]
    public void Truncated_file()
    {
        var dir = GoodCheckpoint();
        var (_, bytes) = Read(dir);
        File.WriteAllBytes(Weights(dir), bytes[..(bytes.Length - 100)]);
        Fails(dir, "model.safetensors", "out of range");
        File.WriteAllBytes(Weights(dir), bytes[..5]);
        Fails(dir, "model.safetensors", "truncated");
    }

    [Fact]
    public void Header_length_beyond_the_file()
    {
        var dir = GoodCheckpoint();
        var (_, bytes) = Read(dir);
        BitConverter.GetBytes((ulong)bytes.Length * 2).CopyTo(bytes, 0);
        File.WriteAllBytes(Weights(dir), bytes);
        Fails(dir, "model.safetensors", "header length", "beyond");
    }

    [Fact]
    public void Unparsable_header()
    {
        var dir = GoodCheckpoint();
        var (n, bytes) = Read(dir);
        bytes[8] = (byte)'#';
        File.WriteAllBytes(Weights(dir), bytes);
        Fails(dir, "model.safetensors", "unparsable header");
    }

    private static void EditHeader(string dir, Func<string, string> edit)
    {
        var (n, bytes) = Read(dir);
        var header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        var edited = Encoding.UTF8.GetBytes(edit(header));
        Assert.NotEqual(header, Encoding.UTF8.GetString(edited));
        using var fs = File.Create(Weights(dir));
        fs.Write(BitConverter.GetBytes((ulong)edited.Length));
        fs.Write(edited);
        fs.Write(bytes, 8 + (int)n, bytes.Length - 8 - (int)n);
    }

    [Fact]
    public void Offsets_out_of_range()
    {
        var dir = GoodCheckpoint();
        var header = SafeTensorsHeader.Open(Weights(dir));
        var e = header.Entries["model.norm.weight"];
        EditHeader(dir, h => h.Replace($"\"data_offsets\":[{e.Begin},{e.End}]", $"\"data_offsets\":[{e.Begin},{e.End + 10_000_000}]"));
        Fails(dir, "model.safetensors", "model.norm.weight", "out of range");
    }

    [Fact]
    public void Missing_tensor()
    {
        var dir = GoodCheckpoint();
        EditHeader(dir, h => h.Replace("\"model.norm.weight\"", "\"model.norm.wieght\""));
        Fails(dir, "model.safetensors", "missing tensor 'model.norm.weight'");
    }

    [Fact]
    public void Wrong_shape()
    {
        var dir = GoodCheckpoint();
        var header = SafeTensorsHeader.Open(Weights(dir));
        var e = header.Entries["model.layers.0.mlp.up_proj.weight"];
        // Same byte count, other shape: only the shape check can catch it.
        EditHeader(dir, h => h.Replace("\"shape\":[160,64],\"data_offsets\":[" + e.Begin, "\"shape\":[64,160],\"data_offsets\":[" + e.Begin));
        Fails(dir, "model.safetensors", "model.layers.0.mlp.up_proj.weight", "shape [64, 160]", "expected [160, 64]");
    }

    [Fact]
    public void Unknown_dtype()
    {
        var dir = GoodCheckpoint();
        EditHeader(dir, h => { int i = h.IndexOf("\"F32\"", StringComparison.Ordinal); return h[..i] + "\"F7\" " + h[(i + 5)..]; });
        Fails(dir, "model.safetensors", "unknown dtype 'F7'");
    }

    [Fact]
    public void Missing_tokenizer()
    {
        var dir = GoodCheckpoint();
        File.Delete(Path.Combine(dir, Tokenizers.JsonFile));
        Fails(dir, "tokenizer.json", "missing tokenizer");
    }

    [Fact]
    public void Missing_weights_and_bad_config()
    {
        var dir = GoodCheckpoint();
        File.Move(Weights(dir), Weights(dir) + ".bak");
        Fails(dir, "model.safetensors", "missing weights");
        File.Move(Weights(dir) + ".bak", Weights(dir));
        File.WriteAllText(Path.Combine(dir, Checkpoint.ConfigFile), "{\"hidden_size\": 64, ");
        Fails(dir, "config.json", "not valid JSON");
        File.WriteAllText(Path.Combine(dir, Checkpoint.ConfigFile), "{\"hidden_size\": 64}");
        Fails(dir, "config.json", "field", "is missing");
    }

    [Fact]
    public void Sharded_checkpoints_load_and_a_missing_shard_is_named()
    {
        var dir = GoodCheckpoint();
        using var original = LanguageModel.Load(dir);
        // Split the single file into two shards with an index, as transformers does for big models.
        var header = SafeTensorsHeader.Open(Weights(dir));
        var names = header.Entries.Keys.OrderBy(x => x, StringComparer.Ordinal).ToList();
        var tensors = header.ReadAll(names);
        var first = names.Take(names.Count / 2).ToList();
        SafeTensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), first.Select(n => new KeyValuePair<string, TorchSharp.torch.Tensor>(n, tensors[n])));
        SafeTensorsWriter.Write(Path.Combine(dir, "model-00002-of-00002.safetensors"), names.Skip(first.Count).Select(n => new KeyValuePair<string, TorchSharp.torch.Tensor>(n, tensors[n])));
        var map = string.Join(",", names.Select((n, i) => $"\"{n}\": \"model-0000{(i < first.Count ? 1 : 2)}-of-00002.safetensors\""));
        File.WriteAllText(Path.Combine(dir, Checkpoint.IndexFile), $"{{\"metadata\": {{}}, \"weight_map\": {{{map}}}}}");
        File.Delete(Weights(dir));
        using (var sharded = LanguageModel.Load(dir))
        {
            var a = original.Model.parameters().Zip(sharded.Model.parameters()).All(p => p.First.eq(p.Second).all().item<bool>());
            Assert.True(a, "sharded weights differ");
        }
        File.Delete(Path.Combine(dir, "model-00002-of-00002.safetensors"));
        Fails(dir, "model-00002-of-00002.safetensors", "missing");
    }

    [Fact]
    public void A_tied_head_stored_only_as_lm_head_loads()
    {
        var dir = TestModels.TempDir("tiedhead");
        using var lm = TestModels.CharModel(seed: 9, config: TestModels.LlamaTied(vocab: 320));
        lm.Save(dir);
        var header = SafeTensorsHeader.Open(Weights(dir));
        Assert.DoesNotContain("lm_head.weight", header.Entries.Keys);
        var tensors = header.ReadAll(header.Entries.Keys);
        var renamed = tensors.Select(kv => new KeyValuePair<string, TorchSharp.torch.Tensor>(kv.Key == "model.embed_tokens.weight" ? "lm_head.weight" : kv.Key, kv.Value)).ToList();
        SafeTensorsWriter.Write(Weights(dir), renamed);
        using var back = LanguageModel.Load(dir);
        var w = back.Model.named_parameters().First(p => p.name == "model.embed_tokens.weight").parameter;
        var o = lm.Model.named_parameters().First(p => p.name == "model.embed_tokens.weight").parameter;
        Assert.True(w.eq(o).all().item<bool>());
    }
}
