namespace Srlm.Tests.Model;

/// <summary>Checkpoints we write, read by an independent PyTorch implementation of Hugging Face's Llama and
/// Qwen2 semantics (Reference/hf_llama_reference.py: HF tensor names, [out, in] weights, rotate_half rotary
/// layout, RMSNorm, grouped-query attention, q/k/v bias, tied head): the logits agree. transformers itself is
/// not installable here; Debian's python3-torch is, and CI installs it. Skips with the reason where
/// /usr/bin/python3 has no torch.</summary>
public class HfReferenceTests(ITestOutputHelper output)
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

    [SkippableTheory]
    [MemberData(nameof(Configs))]
    public void Saved_checkpoint_gives_the_same_logits_in_the_independent_PyTorch_reference(string name)
    {
        var missing = PythonTorchMissing();
        Skip.If(missing is not null, missing);

        using var lm = TestModels.CharModel(seed: 5, config: TestModels.Named(name));
        var dir = TestModels.TempDir("hfref-" + name);
        lm.Save(dir);
        long[,] ids = new long[2, 24];
        var r = new Random(3);
        for (int b = 0; b < 2; b++) for (int t = 0; t < 24; t++) ids[b, t] = r.Next(320);

        float[] ours;
        using (var scope = NewDisposeScope())
        using (no_grad())
            ours = lm.Model.Forward(tensor(ids)).contiguous().data<float>().ToArray();

        var reference = ReferenceLogits(dir, ids);
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

    /// <summary>The independent PyTorch reference's float32 logits (B, T, V), flattened, for a checkpoint directory.</summary>
    private static float[] ReferenceLogits(string dir, long[,] ids)
    {
        int rows = ids.GetLength(0), length = ids.GetLength(1);
        var input = Path.Combine(dir, "ids.json");
        var output = Path.Combine(dir, "reference_logits.json");
        File.WriteAllText(input, JsonSerializer.Serialize(new { ids = Enumerable.Range(0, rows).Select(b => Enumerable.Range(0, length).Select(t => ids[b, t]).ToArray()).ToArray() }));
        var script = Path.Combine(TestModels.SourceDir(), "Reference", "hf_llama_reference.py");
        var psi = new ProcessStartInfo(Python, [script, dir, input, output]) { RedirectStandardError = true, RedirectStandardOutput = true };
        using (var p = Process.Start(psi)!)
        {
            var err = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(300_000)) { p.Kill(true); Assert.Fail($"{script} did not finish within 5 minutes"); }
            Assert.True(p.ExitCode == 0, $"reference failed: {err.Result}");
        }
        using var doc = JsonDocument.Parse(File.ReadAllText(output));
        return doc.RootElement.GetProperty("logits").EnumerateArray()
            .SelectMany(b => b.EnumerateArray()).SelectMany(t => t.EnumerateArray()).Select(v => v.GetSingle()).ToArray();
    }

    public static TheoryData<string, string> ReducedPrecisionCases() => new()
    {
        { "llama-gqa", "bfloat16" }, { "qwen2-bias-tied", "bfloat16" }, { "llama3-rope-scaling", "bfloat16" }, { "llama-gqa", "float16" },
    };

    /// <summary>
    /// The same checkpoint loaded in bfloat16 or float16 against the float32 reference, within the tolerance
    /// <see cref="DecodeKernelTests"/> states (0.02 x the largest |logit| for bfloat16, 0.005 for float16): the first 8
    /// positions from a prefill, the other 16 from one-token decode steps over the KV cache (for bfloat16 these run in the
    /// C# decode kernel, as `srlm generate --dtype bfloat16` does; float16 steps run in libtorch).
    /// </summary>
    [SkippableTheory]
    [MemberData(nameof(ReducedPrecisionCases))]
    public void Reduced_precision_prefill_and_decode_steps_stay_within_tolerance_of_the_float32_reference(string name, string dtypeName)
    {
        var missing = PythonTorchMissing();
        Skip.If(missing is not null, missing);

        // initStd 0.1, as in DecodeKernelTests' tolerance test: the tests' usual 0.25 makes a random network chaotic
        // enough that rounding any weight moves the logits by several percent.
        var dir = TestModels.TempDir("hfref-low-" + name + "-" + dtypeName);
        using (var source = TestModels.CharModel(seed: 5, initStd: 0.1, config: TestModels.Named(name))) source.Save(dir);

        const int rows = 2, length = 24, prefill = 8;
        long[,] ids = new long[rows, length];
        var r = new Random(3);
        for (int b = 0; b < rows; b++) for (int t = 0; t < length; t++) ids[b, t] = r.Next(320);
        var reference = ReferenceLogits(dir, ids);

        var dtype = ModelDtype.Parse(dtypeName);
        using var low = LanguageModel.Load(dir, dtype);
        var m = low.Model;
        int vocab = m.Config.VocabSize;
        var ours = new float[rows * length * vocab];
        using (no_grad())
        using (var cache = new KvCache(m.Config, rows, length, dtype, m.Device))
        {
            using var all = tensor(ids);
            using (var first = m.Forward(all.narrow(1, 0, prefill), cache: cache).to(ScalarType.Float32).contiguous())
            {
                var v = first.data<float>().ToArray(); // (rows, prefill, V)
                for (int b = 0; b < rows; b++) Array.Copy(v, b * prefill * vocab, ours, b * length * vocab, prefill * vocab);
            }
            for (int t = prefill; t < length; t++)
            {
                using var step = m.Forward(all.narrow(1, t, 1), cache: cache, lastOnly: true).to(ScalarType.Float32).contiguous();
                var v = step.data<float>().ToArray(); // (rows, 1, V)
                for (int b = 0; b < rows; b++) Array.Copy(v, b * vocab, ours, (b * length + t) * vocab, vocab);
            }
        }
        double tol = dtype == ScalarType.BFloat16 ? 0.02 : 0.005;
        double scale = Math.Max(1, reference.Max(Math.Abs));
        double prefillDiff = 0, decodeDiff = 0;
        for (int b = 0; b < rows; b++)
            for (int t = 0; t < length; t++)
                for (int v = 0; v < vocab; v++)
                {
                    int i = (b * length + t) * vocab + v;
                    double d = Math.Abs(ours[i] - reference[i]);
                    if (t < prefill) prefillDiff = Math.Max(prefillDiff, d); else decodeDiff = Math.Max(decodeDiff, d);
                }
        output.WriteLine($"{name} {dtypeName}: max |ours - float32 reference| prefill {prefillDiff:G3}, decode steps {decodeDiff:G3}; logit scale {scale:G3}, tolerance {tol * scale:G3}");
        Assert.True(prefillDiff <= tol * scale, $"{name} {dtypeName}: prefill logits differ from the reference by {prefillDiff:G3} > {tol} x {scale:G3}");
        Assert.True(decodeDiff <= tol * scale, $"{name} {dtypeName}: decode-step logits differ from the reference by {decodeDiff:G3} > {tol} x {scale:G3}");
        // Not vacuous: the reduced-precision model does differ from float32, by more than float32's own rounding.
        Assert.True(Math.Max(prefillDiff, decodeDiff) > 1e-4 * scale, $"{name} {dtypeName}: logits equal float32's to {Math.Max(prefillDiff, decodeDiff):G3}; was the model loaded in {dtypeName}?");
        Directory.Delete(dir, recursive: true);
    }
}
