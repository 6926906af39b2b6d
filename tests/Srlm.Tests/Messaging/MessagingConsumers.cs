namespace Srlm.Tests.Messaging;

// Test-only consumers, each on its own queue (the formatter names it after the class).

public sealed class UnitEchoConsumer(Calls calls) : IConsumer<IterationStarted>
{
    public Task Consume(ConsumeContext<IterationStarted> context)
    {
        calls.Attempt();
        calls.Done(context.Message);
        return Task.CompletedTask;
    }
}

public sealed class UnitEchoConsumerDefinition : SrlmConsumerDefinition<UnitEchoConsumer>;

public sealed class UnitAlwaysFailsConsumer(Calls calls) : IConsumer<GeneratePrompts>
{
    public Task Consume(ConsumeContext<GeneratePrompts> context)
    {
        calls.Attempt();
        throw new InvalidOperationException($"boom on shard {context.Message.Shard}");
    }
}

public sealed class UnitAlwaysFailsConsumerDefinition : SrlmConsumerDefinition<UnitAlwaysFailsConsumer>;

public sealed class UnitPermanentFailureConsumer(Calls calls) : IConsumer<GenerateResponses>
{
    public Task Consume(ConsumeContext<GenerateResponses> context)
    {
        calls.Attempt();
        throw new MalformedMessageException($"prompt id '{context.Message.PromptId}' is not of run {context.Message.RunId}");
    }
}

public sealed class UnitPermanentFailureConsumerDefinition : SrlmConsumerDefinition<UnitPermanentFailureConsumer>;
