namespace Srlm.IntegrationTests.Infrastructure;

/// <summary>xunit fixture: one broker for a test class (IAsyncLifetime starts and stops it). Tests call
/// <see cref="Require"/> first: it skips with the reason printed when no broker could start, and fails
/// instead when CI=true, so CI can never pass by skipping the broker tests.</summary>
public class RabbitMqFixture : IAsyncLifetime
{
    protected virtual bool NeedRestart => false;

    public RabbitMqBroker? Broker { get; private set; }

    public string? SkipReason { get; private set; }

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    public async Task InitializeAsync()
    {
        (Broker, SkipReason) = await RabbitMqBroker.StartAsync(NeedRestart, ContainerBroker.TryStartAsync);
        if (SkipReason is not null) Console.Error.WriteLine($"[rabbitmq] {SkipReason}");
    }

    public async Task DisposeAsync()
    {
        if (Broker is not null) await Broker.DisposeAsync();
    }

    /// <summary>The broker, or a skip (locally) / failure (CI=true) with the reason.</summary>
    public RabbitMqBroker Require()
    {
        if (Broker is not null) return Broker;
        if (InCi) throw new InvalidOperationException($"CI=true and {SkipReason}");
        Skip.If(true, SkipReason);
        throw new InvalidOperationException("unreachable");
    }
}

/// <summary>A broker the test may stop and start again (a private node).</summary>
public sealed class RestartableRabbitMqFixture : RabbitMqFixture
{
    protected override bool NeedRestart => true;

    public new PrivateRabbitMqNode Require() => (PrivateRabbitMqNode)base.Require();
}
