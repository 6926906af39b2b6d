using MassTransit;
using Srlm.Contracts;
using Srlm.Messaging.Bus;

namespace Srlm.Tests.Messaging;

// Test-only consumers of the unit and the broker tests (this file is linked into both projects). A test registers one
// for the message type it publishes, with TestConsumerDefinition, which names its queue after both ("echo-judge-candidate").

/// <summary>Counts the attempt and keeps the message.</summary>
public sealed class EchoConsumer<T>(Calls calls) : IConsumer<T> where T : class
{
    public Task Consume(ConsumeContext<T> context)
    {
        calls.Attempt();
        calls.Done(context.Message);
        return Task.CompletedTask;
    }
}

/// <summary>Fails every attempt with an error a retry might fix (so it is retried, then parked).</summary>
public sealed class AlwaysFailsConsumer<T>(Calls calls) : IConsumer<T> where T : class, IRunMessage
{
    public Task Consume(ConsumeContext<T> context)
    {
        calls.Attempt();
        throw new InvalidOperationException($"{typeof(T).Name} of run {context.Message.RunId} cannot be handled");
    }
}

/// <summary>Fails with an error no retry can fix (parked after one attempt).</summary>
public sealed class PermanentFailureConsumer<T>(Calls calls) : IConsumer<T> where T : class, IRunMessage
{
    public Task Consume(ConsumeContext<T> context)
    {
        calls.Attempt();
        throw new MalformedMessageException($"{typeof(T).Name} of run {context.Message.RunId} is malformed");
    }
}

/// <summary>Fails while <see cref="Calls.Failing"/> is set, then keeps the message.</summary>
public sealed class FlakyConsumer<T>(Calls calls) : IConsumer<T> where T : class, IRunMessage
{
    public Task Consume(ConsumeContext<T> context)
    {
        calls.Attempt();
        if (calls.Failing) throw new IOException($"{typeof(T).Name} of run {context.Message.RunId} not readable yet");
        calls.Done(context.Message);
        return Task.CompletedTask;
    }
}

/// <summary>The production retry and parking policy, on a queue named after the consumer and its message type.</summary>
public sealed class TestConsumerDefinition<TConsumer> : SrlmConsumerDefinition<TConsumer> where TConsumer : class, IConsumer
{
    /// <summary>"Echo" and "JudgeCandidate" give "echo-judge-candidate", by the bus's own kebab-case formatter.</summary>
    public TestConsumerDefinition() => EndpointName = SrlmBusExtensions.EndpointNameFormatter.SanitizeName(
        typeof(TConsumer).Name.Replace("Consumer`1", "", StringComparison.Ordinal) + typeof(TConsumer).GetGenericArguments()[0].Name);
}

public static class TestConsumerRegistration
{
    /// <summary>Registers a test consumer with <see cref="TestConsumerDefinition{TConsumer}"/>.</summary>
    public static IBusRegistrationConfigurator AddTestConsumer<TConsumer>(this IBusRegistrationConfigurator bus) where TConsumer : class, IConsumer
    {
        bus.AddConsumer<TConsumer, TestConsumerDefinition<TConsumer>>();
        return bus;
    }
}
