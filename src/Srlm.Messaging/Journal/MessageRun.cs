namespace Srlm.Messaging.Journal;

/// <summary>Finds the run (and iteration, checkpoint) a message belongs to, looking inside Fault&lt;T&gt;.</summary>
public static class MessageRun
{
    public readonly record struct Info(string? RunId, int? Iteration, string? CheckpointId);

    public static Info Of(object? message) => message switch
    {
        IRunMessage m => new Info(m.RunId, m.Iteration, m.CheckpointId),
        CancelRun c => new Info(c.RunId, null, null),
        Fault f => Of(FaultedMessage(f)),
        _ => default,
    };

    /// <summary>The original message inside a Fault&lt;T&gt;.</summary>
    public static object? FaultedMessage(Fault fault) =>
        fault.GetType().GetInterfaces()
            .FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(Fault<>))
            ?.GetProperty(nameof(Fault<object>.Message))?.GetValue(fault);

    /// <summary>A readable type name: "Srlm.Contracts.JudgeCandidate", "MassTransit.Fault&lt;Srlm.Contracts.JudgeCandidate&gt;".</summary>
    public static string TypeName(Type type)
    {
        if (!type.IsGenericType) return type.FullName ?? type.Name;
        var def = type.GetGenericTypeDefinition().FullName ?? type.Name;
        def = def[..def.IndexOf('`')];
        return $"{def}<{string.Join(",", type.GetGenericArguments().Select(TypeName))}>";
    }

    /// <summary>Whether a journaled type name is the given short or full name ("JudgeCandidate" or "Srlm.Contracts.JudgeCandidate").</summary>
    public static bool TypeMatches(string journaledType, string wanted) =>
        journaledType.Equals(wanted, StringComparison.Ordinal) ||
        journaledType.EndsWith("." + wanted, StringComparison.Ordinal);
}
