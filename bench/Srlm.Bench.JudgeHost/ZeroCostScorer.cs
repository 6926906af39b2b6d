namespace Srlm.Bench.JudgeHost;

/// <summary>The pipeline benchmark's judge model: every judge sample is "Score: 3", answered at once, so what a judgement
/// costs in the benchmark is the pipeline's own work (broker, store, journal). It lives only in srlm-bench-judge.</summary>
public sealed class ZeroCostScorer : IModelProvider
{
    /// <summary>The name `srlm bench pipeline` reports in its JSON.</summary>
    public const string Name = "zero-cost (srlm-bench-judge: every sample 'Score: 3' at once, no model)";

    private static readonly Model Instance = new();

    public Task<ITextModel> GetAsync(string checkpointId, CancellationToken ct) => Task.FromResult<ITextModel>(Instance);

    private sealed class Model : ITextModel
    {
        public string CheckpointId => "bench-zero-cost";
        public int ContextLength => 4096;
        public int CountPromptTokens(string prompt) => 0;
        public int CountCompletionTokens(string completion) => 0;

        public Task<IReadOnlyList<GenerationResult>> GenerateAsync(IReadOnlyList<GenerationRequest> requests, CancellationToken ct) =>
            Task.FromResult<IReadOnlyList<GenerationResult>>(requests.Select(_ => new GenerationResult("Score: 3", 0, 3)).ToList());
    }
}
