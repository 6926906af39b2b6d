using System.Diagnostics;
using System.Text.RegularExpressions;
using YamlDotNet.RepresentationModel;

namespace Srlm.Tests.Deployment;

/// <summary>
/// Runs `docker-compose config` (Debian's 1.29, or `docker compose` v2) on the repository's compose files
/// and exposes the resolved model. `config` needs no Docker engine. This is also how a multi-process
/// harness should take a service's environment: <see cref="Environment"/> of the resolved output, never
/// retyped values.
/// </summary>
public sealed partial class ComposeConfig
{
    public YamlMappingNode Root { get; }

    private ComposeConfig(YamlMappingNode root) => Root = root;

    /// <summary>The compose command found on PATH (["docker-compose"] or ["docker", "compose"]), or null.</summary>
    public static string[]? Command { get; } = FindCommand();

    /// <summary>Why compose tests cannot run here, or null when they can.</summary>
    public static string? SkipReason => Command is null
        ? "neither docker-compose nor the docker compose plugin is installed (CI installs Debian's docker-compose)"
        : null;

    /// <summary>The folder holding Pipeline.sln above the test binaries (self-contained so that other test
    /// projects can link this file).</summary>
    public static string RepoRoot
    {
        get
        {
            var d = new DirectoryInfo(AppContext.BaseDirectory);
            while (d is not null && !File.Exists(Path.Combine(d.FullName, "Pipeline.sln"))) d = d.Parent;
            return d?.FullName ?? throw new InvalidOperationException("Pipeline.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>Resolves <paramref name="files"/> (relative to the repository root) with <paramref name="envFile"/>;
    /// the variables the compose files use are removed from the child's environment so only the env file counts.</summary>
    public static ComposeConfig Load(string envFile, params string[] files)
    {
        var (code, stdout, stderr) = Run(envFile, files);
        if (code != 0) throw new InvalidOperationException($"compose config failed ({code}): {stderr.Trim()}");
        var yaml = new YamlStream();
        yaml.Load(new StringReader(stdout));
        return new ComposeConfig((YamlMappingNode)yaml.Documents[0].RootNode);
    }

    public static (int Code, string Stdout, string Stderr) Run(string envFile, params string[] files) =>
        Exec(envFile, files, TimeSpan.FromSeconds(60), "config");

    /// <summary>Runs `compose --env-file ENV -f FILE... ARGS` in the repository root (e.g. ARGS = -p NAME up -d), with
    /// the variables the compose files use removed from the child's environment so only the env file counts.</summary>
    public static (int Code, string Stdout, string Stderr) Exec(string envFile, string[] files, TimeSpan timeout, params string[] args)
    {
        var cmd = Command ?? throw new InvalidOperationException(SkipReason);
        var psi = new ProcessStartInfo(cmd[0]) { WorkingDirectory = RepoRoot, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in cmd.Skip(1)) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add("--env-file");
        psi.ArgumentList.Add(envFile);
        foreach (var f in files) { psi.ArgumentList.Add("-f"); psi.ArgumentList.Add(f); }
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var v in VariablesUsed(files)) psi.Environment.Remove(v);
        psi.Environment.Remove("COMPOSE_FILE");
        psi.Environment.Remove("COMPOSE_PROJECT_NAME");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(true);
            throw new TimeoutException($"compose {string.Join(' ', args)} took over {timeout.TotalSeconds:F0} s");
        }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The host port that <paramref name="service"/> publishes for container port <paramref name="target"/>
    /// (short syntax "127.0.0.1:5672:5672" as docker-compose 1.29 prints it, or v2's long syntax), or null.</summary>
    public int? PublishedPort(string service, int target)
    {
        if (Get(Service(service), "ports") is not YamlSequenceNode ports) return null;
        foreach (var p in ports)
        {
            string? published = null, t;
            if (p is YamlScalarNode sc)
            {
                var parts = sc.Value!.Split('/')[0].Split(':');
                t = parts[^1];
                if (parts.Length >= 2) published = parts[^2];
            }
            else
            {
                t = Scalar(p, "target");
                published = Scalar(p, "published");
            }
            if (t == target.ToString(System.Globalization.CultureInfo.InvariantCulture) &&
                int.TryParse(published, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var port))
                return port;
        }
        return null;
    }

    /// <summary>Every ${NAME...} the given compose files interpolate.</summary>
    public static SortedSet<string> VariablesUsed(params string[] files) =>
        new(files.SelectMany(f => Interpolation().Matches(File.ReadAllText(Path.Combine(RepoRoot, f))).Select(m => m.Groups[1].Value)), StringComparer.Ordinal);

    public YamlMappingNode Services => Map(Root, "services");

    public YamlMappingNode Service(string name) => Map(Services, name);

    public IEnumerable<string> ServiceNames => Services.Children.Keys.Select(k => ((YamlScalarNode)k).Value!);

    /// <summary>The resolved environment of a service (what its process must be started with).</summary>
    public IReadOnlyDictionary<string, string> Environment(string service)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!Service(service).Children.TryGetValue(new YamlScalarNode("environment"), out var node)) return env;
        switch (node)
        {
            case YamlMappingNode m:
                foreach (var (k, v) in m.Children) env[((YamlScalarNode)k).Value!] = ((YamlScalarNode)v).Value ?? "";
                break;
            case YamlSequenceNode s: // "NAME=value" list form
                foreach (var item in s.Children.Cast<YamlScalarNode>())
                {
                    var kv = item.Value!.Split('=', 2);
                    env[kv[0]] = kv.Length > 1 ? kv[1] : "";
                }
                break;
        }
        return env;
    }

    public static YamlMappingNode Map(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var v) && v is YamlMappingNode m
            ? m : throw new KeyNotFoundException($"no mapping '{key}'");

    public static YamlNode? Get(YamlNode node, params string[] path)
    {
        foreach (var key in path)
        {
            if (node is not YamlMappingNode m || !m.Children.TryGetValue(new YamlScalarNode(key), out var next)) return null;
            node = next;
        }
        return node;
    }

    public static string? Scalar(YamlNode node, params string[] path) => (Get(node, path) as YamlScalarNode)?.Value;

    private static string[]? FindCommand()
    {
        foreach (var candidate in new[] { new[] { "docker-compose", "version" }, new[] { "docker", "compose", "version" } })
        {
            try
            {
                var psi = new ProcessStartInfo(candidate[0]) { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in candidate.Skip(1)) psi.ArgumentList.Add(a);
                using var p = Process.Start(psi)!;
                p.StandardOutput.ReadToEnd();
                p.StandardError.ReadToEnd();
                if (p.WaitForExit(30_000) && p.ExitCode == 0) return candidate[..^1];
            }
            catch (System.ComponentModel.Win32Exception) { }
        }
        return null;
    }

    [GeneratedRegex(@"\$\{([A-Za-z_][A-Za-z0-9_]*)")]
    private static partial Regex Interpolation();
}
