using System.Reflection;

namespace Srlm.Cli;

/// <summary>One verb of srlm (or a verb group such as "bench" whose first argument picks the action).</summary>
public interface ICommand
{
    /// <summary>The verb as typed, e.g. "generate".</summary>
    string Name { get; }

    /// <summary>One line for `srlm --help`.</summary>
    string Summary { get; }

    /// <summary>Runs the verb with the arguments after it; returns the process exit code.</summary>
    Task<int> RunAsync(string[] args, CancellationToken cancel);
}

/// <summary>A mistake of the user's (bad flag, missing file, bad spec): printed as one line, no stack trace.</summary>
public sealed class UsageException(string message) : Exception(message);

public static class CommandLine
{
    public static IReadOnlyList<ICommand> Commands { get; } = typeof(CommandLine).Assembly.GetTypes()
        .Where(t => typeof(ICommand).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
        .Select(t => (ICommand)Activator.CreateInstance(t)!)
        .OrderBy(c => c.Name, StringComparer.Ordinal)
        .ToList();

    public static Task<int> RunAsync(string[] args) => RunAsync(args, Commands);

    /// <summary>Runs one verb from <paramref name="commands"/> (a test host passes srlm's own with one replaced).</summary>
    public static async Task<int> RunAsync(string[] args, IReadOnlyList<ICommand> commands)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine("usage: srlm <verb> [options]\n");
            foreach (var c in commands) Console.WriteLine($"  {c.Name,-10} {c.Summary}");
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] == "--version")
        {
            Console.WriteLine(typeof(CommandLine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0");
            return 0;
        }
        var command = commands.FirstOrDefault(c => c.Name == args[0]);
        if (command is null)
        {
            Console.Error.WriteLine($"srlm: unknown verb '{args[0]}' (srlm --help lists them)");
            return 2;
        }
        // Checked here with libtorch's own reading of it: libtorch reads it later on a model thread, where a bad value
        // would end the process with a stack trace.
        // SRLM_DEVICE likewise, with libtorch's answer whether it sees the GPU named: the first model load would fail later.
        try
        {
            Srlm.Model.TorchRuntime.Threads(Environment.GetEnvironmentVariable("SRLM_THREADS"));
            if (Environment.GetEnvironmentVariable(Srlm.Model.TorchRuntime.DeviceVariable) is { Length: > 0 } device) Srlm.Model.TorchRuntime.ResolveDevice(device);
            // How the run's services call external endpoints (SRLM_ENDPOINT_TIMEOUT_S, _RETRIES, _CONCURRENCY).
            Srlm.ServiceKit.EndpointOptions.FromEnvironment();
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"srlm {command.Name}: {e.Message}");
            return 2;
        }
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        try
        {
            return await command.RunAsync(args[1..], cts.Token);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"srlm {command.Name}: {e.Message}");
            return 2;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            Console.Error.WriteLine($"srlm {command.Name}: cancelled");
            return 130;
        }
        catch (Exception e) when (Problem(e) is { } line)
        {
            Console.Error.WriteLine($"srlm {command.Name}: {line}");
            return e is Srlm.Messaging.Configuration.SrlmConfigurationException ? 2 : 1;
        }
    }

    /// <summary>One line for a failure that is about the user's files, folders, checkpoints or environment rather than a
    /// defect of srlm (the message names the path or variable at fault); null for anything else, which keeps its trace.</summary>
    internal static string? Problem(Exception e) => e switch
    {
        AggregateException { InnerExceptions.Count: 1 } a => Problem(a.InnerExceptions[0]),
        Srlm.Messaging.Configuration.SrlmConfigurationException or Srlm.Model.CheckpointException => e.Message,
        Srlm.Model.ChatTemplates.ChatTemplateException => e.Message,
        RabbitMQ.Client.Exceptions.BrokerUnreachableException => $"cannot reach the broker (SRLM_BUS): {Srlm.Messaging.Configuration.Redact.Uri(e.InnerException?.Message ?? e.Message)}",
        IOException or UnauthorizedAccessException => e.Message,
        KeyNotFoundException when e.Message.Contains(" is not in ", StringComparison.Ordinal) => e.Message, // a store or checkpoint store lookup
        _ => null,
    };
}
