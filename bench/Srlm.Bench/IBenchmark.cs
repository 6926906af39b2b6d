namespace Srlm.Bench;

/// <summary>One benchmark of `srlm bench NAME`. Implementations are found by reflection in this assembly, so a new
/// benchmark is one class. It returns a JSON object of measurements (ratios measured side by side in one run).</summary>
public interface IBenchmark
{
    /// <summary>The sub-verb, e.g. "generate".</summary>
    string Name { get; }
    string Summary { get; }
    /// <summary>Options it accepts (e.g. "--quick"), besides --json which the command handles.</summary>
    IReadOnlyList<string> Options { get; }
    Task<JsonObject> RunAsync(BenchmarkContext context, CancellationToken cancel);
}

/// <summary>Options given on the command line (name -> value; flags map to "true") and a writer for progress.</summary>
public sealed record BenchmarkContext(IReadOnlyDictionary<string, string?> Options, TextWriter Log)
{
    public string? Get(string name) => Options.TryGetValue(name, out var v) ? v : null;

    public int Int(string name, int fallback) =>
        Get(name) is { } v ? int.TryParse(v, out var n) && n > 0 ? n : throw new ArgumentException($"option {name} must be a positive integer, got '{v}'") : fallback;
}

public static class Benchmarks
{
    public static IReadOnlyList<IBenchmark> All { get; } = typeof(Benchmarks).Assembly.GetTypes()
        .Where(t => typeof(IBenchmark).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
        .Select(t => (IBenchmark)Activator.CreateInstance(t)!)
        .OrderBy(b => b.Name, StringComparer.Ordinal)
        .ToList();

    public static IBenchmark? Find(string name) => All.FirstOrDefault(b => b.Name == name);
}
