namespace Srlm.Storage;

/// <summary>A store opened by a binary of another schema version (message names the store and both versions).</summary>
public sealed class StoreSchemaException(string message) : Exception(message);

/// <summary>SRLM_STORE / SRLM_CHECKPOINTS (or a store URI) is not valid. The message is one line.</summary>
public sealed class StoreConfigurationException(string message) : Exception(message);

/// <summary>Stored bytes do not match their recorded sha256 (blob or checkpoint file).</summary>
public sealed class StoreIntegrityException(string message) : Exception(message);

/// <summary>An immutable record already exists under this id with different content.</summary>
public sealed class StoreConflictException(string message) : Exception(message);

public static class WriteOutcomeExtensions
{
    /// <summary>Throw <see cref="StoreConflictException"/> on Conflict; pass any other outcome through.</summary>
    public static WriteOutcome ThrowIfConflict(this WriteOutcome outcome, string what) =>
        outcome == WriteOutcome.Conflict
            ? throw new StoreConflictException($"{what} is already stored with different content")
            : outcome;

    public static async Task<WriteOutcome> ThrowIfConflict(this Task<WriteOutcome> outcome, string what) =>
        (await outcome.ConfigureAwait(false)).ThrowIfConflict(what);
}
