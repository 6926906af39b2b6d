namespace Srlm.Tests.Services;

public class RunSpecTests
{
    private const string Minimal = """{ "models": { "m1": "m1" }, "seed_data": { "ift": "ift.jsonl" } }""";

    private static string Error(string json) => Assert.Throws<RunSpecException>(() => RunSpecJson.Parse(json)).Message;

    [Fact]
    public void A_minimal_spec_gets_the_paper_defaults()
    {
        var spec = RunSpecJson.Parse(Minimal);
        Assert.Equal(4, spec.Responses.N);
        Assert.Equal(3, spec.Judge.Samples);
        Assert.Equal(0.6, spec.Prompts.Sampling.Temperature);
        Assert.Equal(0.7, spec.Responses.Sampling.Temperature);
        Assert.Equal(0.9, spec.Responses.Sampling.TopP);
        Assert.Equal(6, spec.Prompts.FewShot.SeedExamples);
        Assert.Equal(2, spec.Prompts.FewShot.GeneratedExamples);
        Assert.Equal(0.1, spec.Training.Dpo.Beta);
        Assert.Equal(RunSpecJson.CurrentSchemaVersion, spec.SchemaVersion);
    }

    [Fact]
    public void Serialized_spec_reads_back_equal_in_every_field()
    {
        var spec = RunSpecJson.Parse(Minimal) with { Evaluation = new() { HeldOut = "h.jsonl", Evaluator = "addition" } };
        var json = RunSpecJson.Serialize(spec);
        Assert.Contains("\"judge\"", json);
        Assert.Contains("\"max_new_tokens\"", json);
        Assert.Equal(json, RunSpecJson.Serialize(RunSpecJson.Parse(json)));
    }

    [Theory]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "judge": { "samples": 0 } }""", "spec.judge.samples: must be >= 1")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "responses": { "n": 1 } }""", "spec.responses.n: must be >= 2")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "responses": { "sampling": { "top_p": 1.5 } } }""", "spec.responses.sampling.top_p: must be in (0, 1]")]
    [InlineData("""{ "models": { }, "seed_data": { "ift": "i" } }""", "spec.models: needs `base`")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "iterations": 0 }""", "spec.iterations: must be >= 1 when models.m1")]
    [InlineData("""{ "models": { "init": { "heads": 3 } }, "seed_data": { "ift": "i" } }""", "spec.models.init.heads: must be >= 1 and divide hidden_size")]
    [InlineData("""{ "models": { "m1": "m", "base": "b" }, "seed_data": { "ift": "i" } }""", "spec.models.m1: give exactly one of")]
    [InlineData("""{ "models": { "m1": "m", "dtype": "fp8" }, "seed_data": { "ift": "i" } }""", "spec.models.dtype: must be \"float32\", \"bfloat16\" or \"float16\", got \"fp8\"")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { } }""", "spec.seed_data.ift: required by prompts.source")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "prompts": { "source": "pool" } }""", "spec.prompts.pool_file: required")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "prompts": { "source": "web" } }""", "spec.prompts.source: must be one of")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "judge": { "template": "no placeholders {response}" } }""", "spec.judge.template: must contain {instruction}")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "training": { "dpo": { "beta": 0 } } }""", "spec.training.dpo.beta: must be > 0")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "training": { "dpo": { "replay_per_pair": -1 } } }""", "spec.training.dpo.replay_per_pair: must be >= 0")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "evaluation": { "evaluator": "x" } }""", "spec.evaluation.held_out: required")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "evaluation": { "held_out": "h", "evaluator": "addition", "judge_model": "j" } }""", "spec.evaluation.judge_model: is the judge of evaluator \"judge_win_rate\" only (evaluator is \"addition\")")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "evaluation": { "held_out": "h", "evaluator": "judge_win_rate", "judge_mode": "both" } }""", "spec.evaluation.judge_mode: must be \"pointwise\" or \"pairwise\"")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "evaluation": { "held_out": "h", "evaluator": "addition", "judge_mode": "pairwise" } }""", "spec.evaluation.judge_mode: applies to evaluator \"judge_win_rate\" only")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "evaluation": { "held_out": "h", "evaluator": "addition", "baseline": "m1" } }""", "spec.evaluation.baseline: applies to evaluator \"judge_win_rate\" only")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "evaluation": { "held_out": "h", "evaluator": "judge_win_rate", "baseline": " " } }""", "spec.evaluation.baseline: must be \"parent\", \"m1\" or a checkpoint folder")]
    [InlineData("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "schema_version": 99 }""", "spec.schema_version: must be between 1 and")]
    public void Each_invalid_field_is_named_in_the_error(string json, string expected)
    {
        Assert.StartsWith(expected, Error(json));
    }

    [Fact]
    public void Unknown_fields_and_wrong_types_name_their_json_path()
    {
        Assert.Equal("spec.judge.sample: unknown field", Error("""{ "models": { "m1": "m" }, "judge": { "sample": 3 } }"""));
        Assert.StartsWith("spec.judge.samples:", Error("""{ "models": { "m1": "m" }, "judge": { "samples": "three" } }"""));
        Assert.StartsWith("spec: must be a JSON object", Error("null"));
    }

    [Fact]
    public void Several_errors_are_all_reported()
    {
        var msg = Error("""{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "iterations": 0, "pairs": { "min_valid_scores": 1 } }""");
        Assert.Contains("spec.iterations: must be >= 1", msg);
        Assert.Contains("spec.pairs.min_valid_scores: must be >= 2", msg);
    }

    [Fact]
    public void Load_prefixes_errors_with_the_file()
    {
        var path = Path.Combine(Path.GetTempPath(), $"spec-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, """{ "models": { "m1": "m" }, "seed_data": { "ift": "i" }, "judge": { "samples": 0 } }""");
        try { Assert.Equal($"{path}: spec.judge.samples: must be >= 1", Assert.Throws<RunSpecException>(() => RunSpecJson.Load(path)).Message); }
        finally { File.Delete(path); }
    }
}
