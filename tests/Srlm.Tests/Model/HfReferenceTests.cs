using System.Diagnostics;
using System.Text.Json;
using Srlm.Model;
using static TorchSharp.torch;

namespace Srlm.Tests.Model;

/// <summary>Checkpoints we write, read by an independent PyTorch implementation of Hugging Face's Llama and
/// Qwen2 semantics (Reference/hf_llama_reference.py: HF tensor names, [out, in] weights, rotate_half rotary
/// layout, RMSNorm, grouped-query attention, q/k/v bias, tied head): the logits agree. transformers itself is
/// not installable here; Debian's python3-torch is, and CI installs it. Skips with the reason where
/// /usr/bin/python3 has no torch.</summary>
public class HfReferenceTests
{
    private const string Python = "/usr/bin/python3";

    private static string? PythonTorchMissing()
    {
        if (!File.Exists(Python)) return $"{Python} not found";
        var psi = new ProcessStartInfo(Python, ["-c", "import torch, numpy"]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        if (!p.WaitForExit(120_000)) { p.Kill(true); return $"{Python} -c 'import torch' did not finish within 2 minutes"; }
        return p.ExitCode == 0 ? null : $"{Python} has no torch/numpy (apt-get install python3-torch)";
    }

    public static TheoryData<string> Configs() => new() { "llama-gqa", "qwen2-bias-tied", "llama3-rope-scaling" };

    private static LlamaConfig ConfigOf(string name) => name switch
    {
        "llama-gqa" => TestModels.Llama(vocab: 320),
        "qwen2-bias-tied" => TestModels.Qwen2Tied(vocab: 320),
        "llama3-rope-scaling" => TestModels.Llama(vocab: 320) with
        {
            RopeTheta = 500_000,
            RopeScaling = new RopeScaling { Kind = "llama3", Factor = 8, LowFreqFactor = 1, HighFreqFactor = 4, OriginalMaxPositionEmbeddings = 16 },
        },
        _ => throw new ArgumentException(name),
    };

    [SkippableTheory]
    [MemberData(nameof(Configs))]
    public void Saved_checkpoint_gives_the_same_logits_in_the_independent_PyTorch_reference(string name)
    {
        var missing = PythonTorchMissing();
        Skip.If(missing is not null, missing);

        using var lm = TestModels.CharModel(seed: 5, config: ConfigOf(name));
        var dir = TestModels.TempDir("hfref-" + name);
        lm.Save(dir);
        long[,] ids = new long[2, 24];
        var r = new Random(3);
        for (int b = 0; b < 2; b++) for (int t = 0; t < 24; t++) ids[b, t] = r.Next(320);

        float[] ours;
        using (var scope = NewDisposeScope())
        using (no_grad())
            ours = lm.Model.Forward(tensor(ids)).contiguous().data<float>().ToArray();

        var input = Path.Combine(dir, "ids.json");
        var output = Path.Combine(dir, "reference_logits.json");
        File.WriteAllText(input, JsonSerializer.Serialize(new { ids = Enumerable.Range(0, 2).Select(b => Enumerable.Range(0, 24).Select(t => ids[b, t]).ToArray()).ToArray() }));
        var script = Path.Combine(TestModels.SourceDir(), "Reference", "hf_llama_reference.py");
        var psi = new ProcessStartInfo(Python, [script, dir, input, output]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using (var p = Process.Start(psi)!)
        {
            var err = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(300_000)) { p.Kill(true); Assert.Fail($"{script} did not finish within 5 minutes"); }
            Assert.True(p.ExitCode == 0, $"reference failed: {err.Result}");
        }
        using var doc = JsonDocument.Parse(File.ReadAllText(output));
        var reference = doc.RootElement.GetProperty("logits").EnumerateArray()
            .SelectMany(b => b.EnumerateArray()).SelectMany(t => t.EnumerateArray()).Select(v => v.GetSingle()).ToArray();
        Assert.Equal(ours.Length, reference.Length);
        double maxDiff = ours.Zip(reference, (a, b) => Math.Abs(a - b)).Max();
        double scale = reference.Max(Math.Abs);
        Assert.True(maxDiff < 1e-4 * Math.Max(1, scale), $"{name}: max |ours - reference| = {maxDiff:G3} (logit scale {scale:G3})");
        if (Environment.GetEnvironmentVariable("SRLM_HF_EXPORT") is { Length: > 0 } export)
        {
            // For tests/device/transformers_check.py: the checkpoint, its input ids and our logits, read by HF transformers
            // on a machine that has it.
            File.WriteAllText(Path.Combine(dir, "ours.json"), JsonSerializer.Serialize(new { shape = new[] { 2, 24, 320 }, logits = ours }));
            var target = Path.Combine(export, name);
            Directory.CreateDirectory(target);
            foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(target, Path.GetFileName(f)), overwrite: true);
        }
        Directory.Delete(dir, recursive: true);
    }
}
