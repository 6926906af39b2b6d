namespace Srlm.Tests;

/// <summary>Tests that swap Console.Out/Error or set a process-wide variable (CliMistakeTests sets SRLM_THREADS, which
/// every model thread reads): one collection that never runs beside any other, so no model test sees the change.</summary>
[CollectionDefinition("console", DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>Runs an srlm verb in-process with stdout and stderr captured (tests using it belong to the
/// "console" collection, which is never run in parallel).</summary>
internal static class CliConsole
{
    public static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        var oldOut = Console.Out; var oldErr = Console.Error;
        var o = new StringWriter(); var e = new StringWriter();
        Console.SetOut(o); Console.SetError(e);
        try { return (await CommandLine.RunAsync(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }
}
