namespace Srlm.Model;

/// <summary>A checkpoint (or one of its files) is unusable. The message is one line that names the file
/// and the problem, so the command line can print it as is.</summary>
public sealed class CheckpointException(string file, string problem, Exception? inner = null)
    : Exception($"{file}: {problem}", inner)
{
    public string File { get; } = file;
    public string Problem { get; } = problem;
}
