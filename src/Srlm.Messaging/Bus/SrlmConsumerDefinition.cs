namespace Srlm.Messaging.Bus;

/// <summary>The project's consumer policy, in one place (derive every consumer's definition from it):
/// the whole message is retried a few times immediately (no delayed redelivery: Debian's broker lacks the
/// plugin), errors a retry cannot fix are not retried, and then MassTransit moves the message to the
/// endpoint's <c>_error</c> queue with the reason in its MT-Fault-* headers and publishes Fault&lt;T&gt;.
/// The message is acknowledged only after Consume returns, i.e. after its effects are stored.</summary>
public abstract class SrlmConsumerDefinition<TConsumer> : ConsumerDefinition<TConsumer>
    where TConsumer : class, IConsumer
{
    /// <summary>Immediate retries after the first attempt (so a failing message is tried 1 + RetryLimit times).</summary>
    public const int DefaultRetryLimit = 3;

    /// <param name="concurrentMessageLimit">messages this consumer handles at once in one process.</param>
    /// <param name="prefetchCount">messages the broker hands this process ahead of time (RabbitMQ); defaults to the
    /// concurrency limit, so a killed replica holds little unacknowledged work.</param>
    /// <param name="retryLimit">immediate retries of the whole message.</param>
    protected SrlmConsumerDefinition(int concurrentMessageLimit = 1, int? prefetchCount = null, int retryLimit = DefaultRetryLimit)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(concurrentMessageLimit, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(retryLimit);
        ConcurrentMessageLimit = concurrentMessageLimit;
        PrefetchCount = prefetchCount ?? concurrentMessageLimit;
        RetryLimit = retryLimit;
    }

    public int PrefetchCount { get; }

    public int RetryLimit { get; }

    protected override void ConfigureConsumer(IReceiveEndpointConfigurator endpointConfigurator,
        IConsumerConfigurator<TConsumer> consumerConfigurator, IRegistrationContext context)
    {
        endpointConfigurator.UseMessageRetry(r =>
        {
            r.Immediate(RetryLimit);
            r.Ignore<PermanentMessageException>();
            r.Ignore<System.Text.Json.JsonException>();
        });
        if (endpointConfigurator is IRabbitMqReceiveEndpointConfigurator rabbit) rabbit.PrefetchCount = PrefetchCount;
    }
}
