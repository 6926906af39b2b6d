namespace Srlm.IntegrationTests.Infrastructure;

/// <summary>Testcontainers.RabbitMq, used only where a Docker engine answers.</summary>
internal sealed class ContainerBroker(Testcontainers.RabbitMq.RabbitMqContainer container) : RabbitMqBroker
{
    public override string AmqpUri => container.GetConnectionString();

    public static async Task<(RabbitMqBroker?, string?)> TryStartAsync()
    {
        var socket = Environment.GetEnvironmentVariable("DOCKER_HOST") is { Length: > 0 } ? null : "/var/run/docker.sock";
        if (socket is not null && !File.Exists(socket)) return (null, "no Docker engine (no /var/run/docker.sock, DOCKER_HOST unset) for Testcontainers");
        try
        {
            var c = new Testcontainers.RabbitMq.RabbitMqBuilder("rabbitmq:3.13-alpine").Build();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            await c.StartAsync(timeout.Token);
            return (new ContainerBroker(c), null);
        }
        catch (Exception e) { return (null, $"Testcontainers could not start RabbitMQ: {e.Message}"); }
    }

    public override async ValueTask DisposeAsync() => await container.DisposeAsync();
}
