using Srlm.Messaging.Health;

namespace Srlm.Tests.Messaging;

public sealed class ConfigurationTests
{
    private static SrlmOptions Parse(params (string Key, string Value)[] values) =>
        SrlmOptions.FromConfiguration(new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build(), "judge");

    [Fact]
    public void Amqp_uri_gives_host_port_vhost_and_credentials()
    {
        var o = Parse(("SRLM_BUS", "amqp://srlm:p%40ss@rabbit.local:5673/pipeline"));
        Assert.Equal(BusTransport.RabbitMq, o.Bus.Transport);
        Assert.Equal(("rabbit.local", 5673, "pipeline", "srlm", "p@ss"), (o.Bus.Host, o.Bus.Port, o.Bus.VirtualHost, o.Bus.Username, o.Bus.Password));
        Assert.True(o.BusConfigured);
        Assert.Equal("amqp://srlm:***@rabbit.local:5673/pipeline", o.Bus.Display);
    }

    [Fact]
    public void Amqp_uri_without_port_or_vhost_uses_5672_and_the_root_vhost()
    {
        var o = Parse(("SRLM_BUS", "amqp://u:p@h"));
        Assert.Equal((5672, "/"), (o.Bus.Port, o.Bus.VirtualHost));
    }

    [Fact]
    public void Unset_bus_is_in_memory_but_marked_unconfigured()
    {
        var o = Parse();
        Assert.Equal(BusTransport.InMemory, o.Bus.Transport);
        Assert.False(o.BusConfigured);
    }

    [Theory]
    [InlineData("SRLM_BUS", "http://u:secret@h/", "SRLM_BUS must be")]
    [InlineData("SRLM_BUS", "rabbit", "SRLM_BUS must be")]
    [InlineData("SRLM_THREADS", "0", "SRLM_THREADS must be a positive integer")]
    [InlineData("SRLM_THREADS", "two", "SRLM_THREADS must be a positive integer")]
    [InlineData("SRLM_DEVICE", "gpu", "SRLM_DEVICE must be cpu, cuda or cuda:N (N a GPU index), got 'gpu'")]
    [InlineData("SRLM_DEVICE", "cuda:x", "SRLM_DEVICE must be cpu, cuda or cuda:N (N a GPU index), got 'cuda:x'")]
    [InlineData("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317", "OTEL_EXPORTER_OTLP_ENDPOINT must be")]
    [InlineData("SRLM_HEALTH_INTERVAL_S", "-1", "SRLM_HEALTH_INTERVAL_S must be")]
    public void A_bad_variable_is_one_line_naming_it_without_secrets(string key, string value, string expected)
    {
        var e = Assert.Throws<SrlmConfigurationException>(() => Parse((key, value)));
        Assert.StartsWith(expected, e.Message);
        Assert.DoesNotContain("\n", e.Message);
        Assert.DoesNotContain("secret", e.Message);
    }

    [Theory]
    [InlineData("grpc", "http://collector:4317", "traces", "http://collector:4317/")]
    [InlineData("http/protobuf", "http://collector:4318", "traces", "http://collector:4318/v1/traces")]
    [InlineData("http/protobuf", "http://collector:4318/otlp/", "metrics", "http://collector:4318/otlp/v1/metrics")]
    public void Otlp_endpoint_is_the_base_url_with_the_signal_path_over_http_protobuf(string protocol, string endpoint, string signal, string expected)
    {
        var o = new OpenTelemetry.Exporter.OtlpExporterOptions
        {
            Protocol = protocol == "grpc" ? OpenTelemetry.Exporter.OtlpExportProtocol.Grpc : OpenTelemetry.Exporter.OtlpExportProtocol.HttpProtobuf,
        };
        Srlm.Messaging.Hosting.SrlmInfrastructureExtensions.SetOtlpEndpoint(o, new Uri(endpoint), signal);
        Assert.Equal(expected, o.Endpoint.AbsoluteUri);
    }

    [Theory]
    [InlineData("amqp://user:hunter2@host:5672/v", "amqp://user:***@host:5672/v")]
    [InlineData("mongodb://admin:hunter2@mongo:27017/srlm?authSource=admin", "mongodb://admin:***@mongo:27017/srlm?authSource=admin")]
    [InlineData("Server=x;Password=hunter2;User=y", "Server=x;Password=***;User=y")]
    [InlineData("sqlite:///data/srlm.db", "sqlite:///data/srlm.db")]
    public void Redaction_hides_passwords(string raw, string expected) => Assert.Equal(expected, Redact.Uri(raw));

    [Fact]
    public void Describe_never_contains_a_password()
    {
        var o = Parse(("SRLM_BUS", "amqp://u:hunter2@h:1/"), ("SRLM_STORE", "mongodb://a:hunter2@m/db"), ("SRLM_THREADS", "2"));
        Assert.DoesNotContain("hunter2", o.Describe());
        Assert.Contains("threads=2", o.Describe());
    }
}

public sealed class HealthProbeTests
{
    private static HealthOptions Options(string file) => new() { File = file, Interval = TimeSpan.FromSeconds(1), MaxAge = TimeSpan.FromSeconds(10) };

    private static string Write(string status, DateTimeOffset time)
    {
        var file = Path.Combine(Path.GetTempPath(), $"srlm-probe-{Guid.NewGuid():N}.health");
        HeartbeatService.Write(file, new HeartbeatRecord
        {
            Service = "judge", Pid = 42, Time = time, Status = status,
            Checks = new() { ["masstransit-bus"] = status, ["store"] = "Healthy: sqlite:///x.db" },
        });
        return file;
    }

    [Fact]
    public void A_fresh_healthy_heartbeat_is_healthy()
    {
        var file = Write("Healthy", DateTimeOffset.UtcNow);
        var (healthy, reason) = HealthProbe.Check(Options(file));
        File.Delete(file);
        Assert.True(healthy, reason);
        Assert.Contains("judge (pid 42) is Healthy", reason);
    }

    [Fact]
    public void An_unhealthy_heartbeat_names_the_failing_check()
    {
        var file = Write("Unhealthy", DateTimeOffset.UtcNow);
        var (healthy, reason) = HealthProbe.Check(Options(file));
        File.Delete(file);
        Assert.False(healthy);
        Assert.Contains("masstransit-bus=Unhealthy", reason);
    }

    [Fact]
    public void A_stale_heartbeat_is_unhealthy_even_if_it_said_healthy()
    {
        var file = Write("Healthy", DateTimeOffset.UtcNow.AddSeconds(-11));
        var (healthy, reason) = HealthProbe.Check(Options(file));
        File.Delete(file);
        Assert.False(healthy);
        Assert.Contains("heartbeat is 11 s old", reason);
    }

    [Fact]
    public void A_missing_heartbeat_file_is_unhealthy()
    {
        var (healthy, reason) = HealthProbe.Check(Options("/nonexistent/srlm.health"));
        Assert.False(healthy);
        Assert.Contains("no heartbeat file", reason);
    }
}
