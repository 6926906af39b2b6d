namespace Srlm.LocalBroker;

/// <summary>Runs a local process to its end with a deadline: both output streams read while it runs (so a full pipe
/// cannot stall it), and the process killed with its children when the deadline passes. The one copy of this for
/// the broker's rabbitmqctl calls and the test harness's CLI and publish calls.</summary>
public static class BoundedProcess
{
    public sealed record Result(int ExitCode, string StandardOutput, string StandardError, bool TimedOut)
    {
        /// <summary>Standard output then standard error, trimmed.</summary>
        public string Output => (StandardOutput + StandardError).Trim();
    }

    /// <summary>Starts <paramref name="start"/> (its output is redirected here) and waits at most
    /// <paramref name="timeout"/>; a process still running then is killed with its children and reported as
    /// <see cref="Result.TimedOut"/> with exit code -1.</summary>
    public static async Task<Result> RunAsync(ProcessStartInfo start, TimeSpan timeout)
    {
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{start.FileName} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(timeout);
        try { await process.WaitForExitAsync(deadline.Token); }
        catch (OperationCanceledException)
        {
            try { process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } // it ended meanwhile
            return new Result(-1, "", "", TimedOut: true);
        }
        return new Result(process.ExitCode, await stdout, await stderr, TimedOut: false);
    }
}
