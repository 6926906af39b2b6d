namespace Srlm.Tests.ChatTemplates;

/// <summary>Python's jinja2 (Debian's python3-jinja2, which .ci/run installs) configured as transformers'
/// apply_chat_template configures it (reference_render.py). One process renders a whole batch of cases.</summary>
internal static class JinjaReference
{
    private const string Python = "/usr/bin/python3";

    public static string Dir([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;

    public sealed record Result(string? Text, string? Raised, string? Error);

    public static IReadOnlyList<Result> Render(IReadOnlyList<(string Template, JsonObject Context)> cases)
    {
        Assert.True(File.Exists(Python), $"{Python} is missing: the chat template tests compare with Python's jinja2 (apt-get install python3-jinja2)");
        var request = new JsonObject
        {
            ["cases"] = new JsonArray(cases.Select(c => (JsonNode)new JsonObject { ["template"] = c.Template, ["context"] = c.Context.DeepClone() }).ToArray()),
        };
        var psi = new ProcessStartInfo(Python, [Path.Combine(Dir(), "reference_render.py")])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = new UTF8Encoding(false),
            StandardErrorEncoding = new UTF8Encoding(false),
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using (var w = new StreamWriter(p.StandardInput.BaseStream, new UTF8Encoding(false)))
            w.Write(request.ToJsonString());
        if (!p.WaitForExit(TimeSpan.FromSeconds(120)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("reference_render.py did not finish within 120 s");
        }
        Assert.True(p.ExitCode == 0, $"reference_render.py failed (is python3-jinja2 installed? apt-get install python3-jinja2): {stderr.Result}");
        var results = JsonNode.Parse(stdout.Result)!.AsArray();
        Assert.Equal(cases.Count, results.Count);
        return results.Select(r => new Result(
            r!["text"]?.GetValue<string>(), r["raised"]?.GetValue<string>(), r["error"]?.GetValue<string>())).ToList();
    }
}
