namespace Srlm.Messaging.Bus;

/// <summary>An error that retrying the same message cannot fix (a malformed message, a run the store does not
/// know, a spec that fails validation). The bus skips its immediate retries and parks the message in the
/// endpoint's <c>_error</c> queue at once; the fault consumer records the reason and fails the run.</summary>
public class PermanentMessageException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>The message names a run the store does not have.</summary>
public sealed class UnknownRunException(string runId)
    : PermanentMessageException($"unknown run '{runId}': no such run in the store")
{
    public string RunId { get; } = runId;
}

/// <summary>The message is well-formed JSON but breaks a rule of its contract (a missing id, an index out of range).</summary>
public sealed class MalformedMessageException(string message) : PermanentMessageException(message);
