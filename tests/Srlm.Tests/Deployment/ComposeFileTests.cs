using static Srlm.Tests.Deployment.ComposeConfig;

namespace Srlm.Tests.Deployment;

/// <summary>The compose files, resolved by docker-compose itself (`config` runs without an engine).</summary>
public class ComposeFileTests
{
    private const string Base = "docker-compose.yml", Gpu = "docker-compose.gpu.yml", EnvExample = ".env.example";
    private static readonly string[] SrlmServices = ["generator", "judge", "pairbuilder", "trainer"];
    private static readonly string[] SrlmVariables = ["SRLM_BUS", "SRLM_CHECKPOINTS", "SRLM_STORE", "SRLM_THREADS"];
    private const string EndpointKey = "SRLM_ENDPOINT_API_KEY";

    // docker-compose 1.29 is a Python program that takes seconds to start: resolve each file set once.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<ComposeConfig>> Cache = new();

    private static ComposeConfig Resolved(params string[] files)
    {
        Skip.If(SkipReason is not null, SkipReason);
        files = files.Length == 0 ? [Base] : files;
        return Cache.GetOrAdd(string.Join("|", files), _ => new Lazy<ComposeConfig>(() => Load(EnvExample, files))).Value;
    }

    [SkippableFact]
    public void Compose_holds_the_broker_the_store_and_the_four_services()
    {
        var c = Resolved();
        Assert.Equal(["generator", "judge", "mongo", "pairbuilder", "rabbitmq", "trainer"], c.ServiceNames.Order(StringComparer.Ordinal));
        Assert.StartsWith("rabbitmq:", Scalar(c.Service("rabbitmq"), "image"));
        Assert.EndsWith("-management", Scalar(c.Service("rabbitmq"), "image"));
        Assert.StartsWith("mongo:", Scalar(c.Service("mongo"), "image"));
        foreach (var s in SrlmServices)
        {
            Assert.Equal("docker/Dockerfile", Scalar(c.Service(s), "build", "dockerfile"));
            Assert.Equal(s, Scalar(c.Service(s), "build", "args", "SERVICE"));
        }
    }

    [SkippableFact]
    public void Broker_and_store_have_health_checks_and_every_service_waits_for_them_healthy_and_restarts_on_failure()
    {
        var c = Resolved();
        foreach (var infra in new[] { "rabbitmq", "mongo" })
        {
            var test = Assert.IsType<YamlSequenceNode>(Get(c.Service(infra), "healthcheck", "test"));
            Assert.Equal("CMD", ((YamlScalarNode)test[0]).Value);
            Assert.NotNull(Scalar(c.Service(infra), "healthcheck", "interval"));
        }
        foreach (var s in SrlmServices)
        {
            Assert.Equal("on-failure", Scalar(c.Service(s), "restart"));
            var deps = Assert.IsType<YamlMappingNode>(Get(c.Service(s), "depends_on"));
            Assert.Equal(["mongo", "rabbitmq"], deps.Children.Keys.Select(k => ((YamlScalarNode)k).Value).Order(StringComparer.Ordinal));
            foreach (var (_, dep) in deps.Children)
                Assert.Equal("service_healthy", Scalar(dep, "condition"));
        }
    }

    [SkippableFact]
    public void Judge_and_generator_scale_no_service_has_a_container_name_or_a_host_port()
    {
        var c = Resolved();
        foreach (var s in SrlmServices)
        {
            Assert.Null(Get(c.Service(s), "container_name"));
            Assert.Null(Get(c.Service(s), "ports"));
        }
    }

    [SkippableFact]
    public void Broker_and_database_ports_are_published_on_127_0_0_1_only()
    {
        var c = Resolved();
        var published = new List<(string Service, string HostIp, string Target)>();
        foreach (var name in c.ServiceNames)
        {
            if (Get(c.Service(name), "ports") is not YamlSequenceNode ports) continue;
            foreach (var p in ports)
            {
                if (p is YamlScalarNode sc) // short syntax "127.0.0.1:5672:5672/tcp"
                {
                    var parts = sc.Value!.Split('/')[0].Split(':');
                    Assert.True(parts.Length == 3, $"{name}: port '{sc.Value}' does not name a host address");
                    published.Add((name, parts[0], parts[2]));
                }
                else // long syntax (compose v2 prints this)
                    published.Add((name, Scalar(p, "host_ip") ?? "", Scalar(p, "target") ?? ""));
            }
        }
        Assert.Contains(published, p => p is { Service: "rabbitmq", Target: "5672" });
        Assert.Contains(published, p => p is { Service: "rabbitmq", Target: "15672" });
        Assert.Contains(published, p => p is { Service: "mongo", Target: "27017" });
        Assert.All(published, p => Assert.Equal("127.0.0.1", p.HostIp));
        Assert.All(published, p => Assert.Contains(p.Service, new[] { "rabbitmq", "mongo" }));
    }

    [SkippableFact]
    public void Services_are_configured_only_by_the_four_SRLM_variables()
    {
        var c = Resolved();
        foreach (var s in SrlmServices)
        {
            // The generator also gets the key of an external endpoint (spec models.prompt_model / evaluation.judge_model).
            Assert.Equal(s == "generator" ? SrlmVariables.Append(EndpointKey).Order(StringComparer.Ordinal) : SrlmVariables, c.Environment(s).Keys.Order(StringComparer.Ordinal));
            Assert.Null(Get(c.Service(s), "env_file"));
            Assert.Null(Get(c.Service(s), "command"));
            Assert.Null(Get(c.Service(s), "entrypoint"));
            var env = c.Environment(s);
            Assert.StartsWith("amqp://", env["SRLM_BUS"]);
            Assert.Contains("@rabbitmq:5672/", env["SRLM_BUS"]);
            Assert.StartsWith("mongodb://", env["SRLM_STORE"]);
            Assert.Contains("@mongo:27017/", env["SRLM_STORE"]);
            Assert.True(int.Parse(env["SRLM_THREADS"], System.Globalization.CultureInfo.InvariantCulture) > 0);
        }
        // Every service sees the same infrastructure.
        Assert.Single(SrlmServices.Select(s => string.Join(";", c.Environment(s).Where(kv => kv.Key != EndpointKey).OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}={kv.Value}"))).Distinct());
        Assert.Equal("", c.Environment("generator")[EndpointKey]); // .env.example leaves it empty
    }

    [SkippableFact]
    public void Credentials_come_from_the_env_file_and_never_default_to_guest()
    {
        var c = Resolved();
        var rabbit = c.Environment("rabbitmq");
        var mongo = c.Environment("mongo");
        Assert.NotEqual("guest", rabbit["RABBITMQ_DEFAULT_USER"]);
        Assert.NotEqual("guest", rabbit["RABBITMQ_DEFAULT_PASS"]);
        Assert.False(string.IsNullOrEmpty(mongo["MONGO_INITDB_ROOT_USERNAME"]));
        Assert.False(string.IsNullOrEmpty(mongo["MONGO_INITDB_ROOT_PASSWORD"]));
        Assert.Contains("--auth", ((YamlSequenceNode)Get(c.Service("mongo"), "command")!).Children.Select(n => ((YamlScalarNode)n).Value));
        var bus = c.Environment("judge")["SRLM_BUS"];
        Assert.StartsWith($"amqp://{rabbit["RABBITMQ_DEFAULT_USER"]}:{rabbit["RABBITMQ_DEFAULT_PASS"]}@", bus);
        Assert.StartsWith($"mongodb://{mongo["MONGO_INITDB_ROOT_USERNAME"]}:{mongo["MONGO_INITDB_ROOT_PASSWORD"]}@", c.Environment("judge")["SRLM_STORE"]);

        // Without credentials in the env file compose refuses to resolve, naming what is missing.
        var empty = Path.GetTempFileName();
        try
        {
            var (code, _, stderr) = Run(empty, Base);
            Assert.NotEqual(0, code);
            Assert.Contains("RABBITMQ_USER", stderr);
        }
        finally { File.Delete(empty); }
    }

    [SkippableFact]
    public void Model_services_share_checkpoints_through_gridfs_or_a_named_volume()
    {
        var c = Resolved();
        var volumes = ComposeConfig.Map(c.Root, "volumes").Children.Keys.Select(k => ((YamlScalarNode)k).Value).ToList();
        Assert.Contains("checkpoints", volumes);
        Assert.Contains("mongo-data", volumes);
        Assert.Equal("gridfs", c.Environment("trainer")["SRLM_CHECKPOINTS"]);
        foreach (var s in new[] { "generator", "judge", "trainer" })
        {
            var mounts = ((YamlSequenceNode)Get(c.Service(s), "volumes")!).Children.Select(v => v is YamlScalarNode sc ? sc.Value! : $"{Scalar(v, "source")}:{Scalar(v, "target")}");
            Assert.Contains(mounts, m => m.StartsWith("checkpoints:/var/lib/srlm/checkpoints", StringComparison.Ordinal));
        }
        // The trainer's resumable job state (SRLM_JOBS_DIR, set by the image) lives on a named volume.
        Assert.Contains("trainer-jobs", volumes);
        var trainerMounts = ((YamlSequenceNode)Get(c.Service("trainer"), "volumes")!).Children.Select(v => v is YamlScalarNode sc ? sc.Value! : $"{Scalar(v, "source")}:{Scalar(v, "target")}");
        Assert.Contains(trainerMounts, m => m.StartsWith("trainer-jobs:/var/lib/srlm/jobs", StringComparison.Ordinal));
        var dockerfile = File.ReadAllText(Path.Combine(ComposeConfig.RepoRoot, "docker", "Dockerfile"));
        Assert.Contains("ENV SRLM_JOBS_DIR=/var/lib/srlm/jobs", dockerfile);
    }

    [SkippableFact]
    public void Gpu_override_builds_with_cuda_and_reserves_gpus_for_generator_judge_and_trainer()
    {
        var c = Resolved(Base, Gpu);
        foreach (var s in new[] { "generator", "judge", "trainer" })
        {
            Assert.Equal("true", Scalar(c.Service(s), "build", "args", "SrlmCuda"));
            Assert.Equal(s, Scalar(c.Service(s), "build", "args", "SERVICE"));
            var devices = Assert.IsType<YamlSequenceNode>(Get(c.Service(s), "deploy", "resources", "reservations", "devices"));
            var device = devices.Children.Single();
            Assert.Equal("nvidia", Scalar(device, "driver"));
            Assert.Contains("gpu", ((YamlSequenceNode)Get(device, "capabilities")!).Children.Select(n => ((YamlScalarNode)n).Value));
            Assert.EndsWith("-cuda", Scalar(c.Service(s), "image"));
            Assert.Equal("service_healthy", Scalar(c.Service(s), "depends_on", "rabbitmq", "condition"));
            Assert.Equal(SrlmVariables.Append("SRLM_DEVICE").Concat(s == "generator" ? [EndpointKey] : []).Order(StringComparer.Ordinal), c.Environment(s).Keys.Order(StringComparer.Ordinal));
            Assert.Equal("cuda", c.Environment(s)["SRLM_DEVICE"]);
        }
        Assert.Null(Get(c.Service("pairbuilder"), "deploy"));
        Assert.False(c.Environment("pairbuilder").ContainsKey("SRLM_DEVICE"));
        Assert.Null(Scalar(c.Service("pairbuilder"), "build", "args", "SrlmCuda"));
    }

    [Fact]
    public void Env_example_documents_every_variable_the_compose_files_use()
    {
        var lines = File.ReadAllLines(Path.Combine(RepoRoot, EnvExample));
        foreach (var v in VariablesUsed(Base, Gpu))
        {
            int i = Array.FindIndex(lines, l => l.StartsWith(v + "=", StringComparison.Ordinal));
            Assert.True(i >= 0, $".env.example does not set {v}");
            Assert.True(i > 0 && lines[i - 1].StartsWith('#'), $".env.example has no comment above {v}");
        }
        foreach (var l in lines.Where(l => l.Length > 0 && !l.StartsWith('#')))
            Assert.Contains(l.Split('=')[0], VariablesUsed(Base, Gpu));
        Assert.DoesNotContain(lines, l => l.EndsWith("=guest", StringComparison.Ordinal));
    }
}
