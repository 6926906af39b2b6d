using Srlm.Messaging.Bus;

namespace Srlm.IntegrationTests.Messaging;

// Test-only consumers on their own queues (named by the formatter after the class).

public sealed class BrokerEchoConsumer(Calls calls) : IConsumer<JudgeCandidate>
{
    public Task Consume(ConsumeContext<JudgeCandidate> context)
    {
        calls.Attempt();
        calls.Done(context.Message);
        return Task.CompletedTask;
    }
}

public sealed class BrokerEchoConsumerDefinition : SrlmConsumerDefinition<BrokerEchoConsumer>;

public sealed class BrokerAlwaysFailsConsumer(Calls calls) : IConsumer<PairsReady>
{
    public Task Consume(ConsumeContext<PairsReady> context)
    {
        calls.Attempt();
        throw new InvalidOperationException($"dataset {context.Message.DatasetId} cannot be read");
    }
}

public sealed class BrokerAlwaysFailsConsumerDefinition : SrlmConsumerDefinition<BrokerAlwaysFailsConsumer>;

public sealed class BrokerFlakyConsumer(Calls calls) : IConsumer<CheckpointReady>
{
    public Task Consume(ConsumeContext<CheckpointReady> context)
    {
        calls.Attempt();
        if (calls.Failing) throw new IOException($"checkpoint {context.Message.CheckpointId} not readable yet");
        calls.Done(context.Message);
        return Task.CompletedTask;
    }
}

public sealed class BrokerFlakyConsumerDefinition : SrlmConsumerDefinition<BrokerFlakyConsumer>;
