using System.Text.RegularExpressions;
using Srlm.Contracts.Judging;
using Srlm.Contracts.Seeds;
using Srlm.Tasks;

namespace Srlm.Bench.Toy;

/// <summary>Settings of the library-level toy experiment (`srlm toy`).</summary>
public sealed record ToyOptions
{
    public required string SeedDir { get; init; }
    public required string OutDir { get; init; }
    public int Hidden { get; init; } = 128;
    public int Layers { get; init; } = 2;
    public int Heads { get; init; } = 4;
    public int SftSteps { get; init; } = 300;
    public int BatchSize { get; init; } = 16;
    public double LearningRate { get; init; } = 2e-3;
    public int DevPrompts { get; init; } = 200;
    public int SampledPrompts { get; init; } = 100;
    public int Samples { get; init; } = 4;
    public int JudgedPrompts { get; init; } = 40;
    public int JudgeEvalRecords { get; init; } = 60;
    public long Seed { get; init; } = 1;
    /// <summary>0: character-level tokenizer; otherwise a byte-level BPE of this vocabulary size (the fixed
    /// rubric text of every judge prompt then costs far fewer tokens).</summary>
    public int BpeVocab { get; init; }
}

/// <summary>
/// Measures what decides whether self-rewarding can work at toy scale (PAPER.md): SFT a tiny model from
/// scratch on IFT+EFT, then on the dev split: greedy accuracy (pass@1), pass@N at T 0.7 / top-p 0.9, and
/// the model's own judge on its own candidates against the checker (exact score, pairwise order, and
/// whether best-vs-worst by the judge is better by the checker). Dev only: the test split is never read.
/// </summary>
public static partial class ToyExperiment
{
    private static readonly PromptTemplate Template = PromptTemplate.Custom("{instruction}\n=> ");

    public static void Run(ToyOptions o, TextWriter log, CancellationToken cancel = default)
    {
        var family = new LettersTask();
        var ift = SeedReader.ReadIft(Path.Combine(o.SeedDir, "ift.jsonl")).OrThrow();
        var eft = SeedReader.ReadEft(Path.Combine(o.SeedDir, "eft.jsonl")).OrThrow();
        var dev = SeedReader.ReadPrompts(Path.Combine(o.SeedDir, "dev.jsonl")).OrThrow();
        var devJudge = SeedReader.ReadEft(Path.Combine(o.SeedDir, "dev_judge.jsonl")).OrThrow();
        var judgeTemplate = File.ReadAllText(Path.Combine(o.SeedDir, SeedSet.JudgeTemplateFile)).TrimEnd('\n');

        var sft = SeedExamples.Sft(ift, eft, judgeTemplate).Select(e => (e.Prompt, e.Completion)).ToList();
        var corpus = string.Concat(sft.Select(e => e.Prompt + e.Completion)) + Template.Template;
        ITokenizer tok = o.BpeVocab > 0 ? TokenizerBuilder.TrainBpe(corpus, o.BpeVocab) : TokenizerBuilder.CharLevel(corpus);
        TokenizedSequence Tokenize((string Prompt, string Completion) e) =>
            new([.. tok.Encode(Template.Format(e.Prompt), addBos: true)], [.. tok.Encode(e.Completion, addEos: true)]);
        var examples = sft.Select(Tokenize).ToList();

        var config = LlamaConfig.Tiny(tok.VocabSize, o.Hidden, o.Layers, o.Heads, o.Heads);
        using var model = LlamaForCausalLM.Create(config, o.Seed);
        log.WriteLine($"toy: vocab {tok.VocabSize}, {model.ParameterCount():N0} parameters, {examples.Count} SFT examples " +
                      $"({ift.Count} IFT + {eft.Count} EFT), mean length {examples.Average(e => e.Length):F0} tokens, threads {torch.get_num_threads()}");

        var sw = Stopwatch.StartNew();
        var options = new SftOptions
        {
            LearningRate = o.LearningRate, MinLearningRate = o.LearningRate / 10, WarmupSteps = 20, Epochs = 20, MaxSteps = o.SftSteps,
            BatchSize = o.BatchSize, MicroBatchSize = o.BatchSize, Dropout = 0, Seed = o.Seed, SaveStateEverySteps = 0,
            LogEverySteps = 25, WeightDecay = 0.01,
        };
        var state = new TrainingStateStore(Path.Combine(o.OutDir, "sft-state"));
        var progress = new Progress<TrainingProgress>(p => log.WriteLine(
            $"toy: sft {p.Kind} step {p.Step}/{p.TotalSteps} {string.Join(" ", p.Metrics.Select(m => $"{m.Key}={m.Value:G4}"))} ({sw.Elapsed.TotalSeconds:F0} s)"));
        SftTrainer.Train(model, examples, options, state, "toy-sft", $"toy-{o.Hidden}-{o.Layers}-{o.SftSteps}-{o.Seed}", progress, cancel);
        log.WriteLine($"toy: SFT {o.SftSteps} steps in {sw.Elapsed.TotalSeconds:F0} s");
        model.eval();

        // pass@1: greedy answers on dev.
        sw.Restart();
        var devItems = dev.Take(o.DevPrompts).ToList();
        var greedy = Generate(model, tok, devItems.Select(r => Prompt(tok, r.Instruction)).ToList(), 12, 0, 1, o.Seed);
        var greedyGrades = devItems.Zip(greedy, (r, a) => family.CheckKnown(r.Instruction, a)).ToList();
        double pass1 = greedyGrades.Average(g => g.Correct ? 1.0 : 0.0);
        log.WriteLine($"toy: greedy pass@1 on {devItems.Count} dev prompts = {pass1:P1}; mean rubric score {greedyGrades.Average(g => g.Score):F2}; " +
                      $"examples: {string.Join(" | ", devItems.Zip(greedy).Take(4).Select(x => $"{x.First.Instruction} -> {x.Second}"))}");

        // pass@N at T 0.7, top-p 0.9.
        var sampledItems = dev.Take(o.SampledPrompts).ToList();
        var prompts = sampledItems.SelectMany(r => Enumerable.Repeat(Prompt(tok, r.Instruction), o.Samples)).ToList();
        var samples = Generate(model, tok, prompts, 12, 0.7, 0.9, o.Seed + 1);
        var cands = sampledItems.Select((r, i) => (r.Instruction, Answers: samples.Skip(i * o.Samples).Take(o.Samples).ToList())).ToList();
        var candGrades = cands.Select(c => c.Answers.Select(a => family.CheckKnown(c.Instruction, a)).ToList()).ToList();
        double sampleAcc = candGrades.SelectMany(g => g).Average(g => g.Correct ? 1.0 : 0.0);
        double passN = candGrades.Average(g => g.Any(x => x.Correct) ? 1.0 : 0.0);
        double mixed = candGrades.Average(g => g.Select(x => x.Score).Distinct().Count() > 1 ? 1.0 : 0.0);
        log.WriteLine($"toy: T 0.7 samples: per-sample accuracy {sampleAcc:P1}, pass@{o.Samples} {passN:P1}, prompts whose candidates differ in true score {mixed:P1} ({sw.Elapsed.TotalSeconds:F0} s)");

        // The model judges its own candidates (greedy judgement, as one of the K judge samples).
        sw.Restart();
        var judged = cands.Take(o.JudgedPrompts).ToList();
        var judgePrompts = judged.SelectMany(c => c.Answers.Select(a => Prompt(tok, JudgePrompt.Format(judgeTemplate, c.Instruction, a)))).ToList();
        var judgements = Generate(model, tok, judgePrompts, 130, 0, 1, o.Seed + 2);
        var judgeScores = judgements.Select(ParseScore).ToList();
        var trueScores = candGrades.Take(o.JudgedPrompts).SelectMany(g => g.Select(x => x.Score)).ToList();
        ReportJudge(log, "own candidates", judged.Select(c => c.Instruction).SelectMany(i => Enumerable.Repeat(i, o.Samples)).ToList(), trueScores, judgeScores);
        log.WriteLine($"toy: judgement examples: {string.Join(" || ", judgements.Take(3).Select(j => j.Replace("\n", " ")))} ({sw.Elapsed.TotalSeconds:F0} s)");

        // Best vs worst by the judge, as the pairbuilder would pick: is the chosen one truly better?
        int pairs = 0, better = 0, worse = 0;
        for (int p = 0; p < judged.Count; p++)
        {
            var idx = Enumerable.Range(p * o.Samples, o.Samples).Where(i => judgeScores[i] is not null).ToList();
            if (idx.Count < 2) continue;
            int best = idx.MaxBy(i => judgeScores[i]!.Value), worst = idx.MinBy(i => judgeScores[i]!.Value);
            if (judgeScores[best] == judgeScores[worst]) continue;
            pairs++;
            if (trueScores[best] > trueScores[worst]) better++;
            else if (trueScores[best] < trueScores[worst]) worse++;
        }
        log.WriteLine($"toy: judge-built pairs {pairs} of {judged.Count} prompts; chosen truly better {better}, truly worse {worse}, equal {pairs - better - worse}");

        // The judge on fixed graded dev answers (the held-out reward-modelling metric, on dev).
        var fixedRecords = devJudge.Take(o.JudgeEvalRecords).ToList();
        var fixedJudgements = Generate(model, tok, fixedRecords.Select(r => Prompt(tok, JudgePrompt.Format(judgeTemplate, r.Instruction, r.Answer))).ToList(), 130, 0, 1, o.Seed + 3);
        ReportJudge(log, "dev_judge answers", fixedRecords.Select(r => r.Instruction).ToList(), fixedRecords.Select(r => r.Score).ToList(), fixedJudgements.Select(ParseScore).ToList());
    }

    private static void ReportJudge(TextWriter log, string what, List<string> instructions, List<int> truth, List<int?> judge)
    {
        int n = truth.Count, parsed = judge.Count(j => j is not null), exact = Enumerable.Range(0, n).Count(i => judge[i] == truth[i]);
        int pairs = 0, right = 0, ties = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++)
            {
                if (instructions[i] != instructions[j] || truth[i] == truth[j]) continue;
                pairs++;
                if (judge[i] is not int a || judge[j] is not int b || a == b) { ties++; continue; }
                if ((a > b) == (truth[i] > truth[j])) right++;
            }
        log.WriteLine($"toy: judge on {what}: {n} judged, parsed {parsed}, exact score {(double)exact / n:P1}; " +
                      $"pairs of different true score {pairs}: ordered right {right}, wrong {pairs - right - ties}, tied/unparsed {ties} " +
                      $"(pairwise accuracy {(pairs == 0 ? 0 : (double)right / pairs):P1}, among decided {(pairs - ties == 0 ? 0 : (double)right / (pairs - ties)):P1}; chance 50% among decided)");
    }

    private static int[] Prompt(ITokenizer tok, string instruction) => [.. tok.Encode(Template.Format(instruction), addBos: true)];

    private static int? ParseScore(string judgement)
    {
        var m = ScoreLine().Match(judgement);
        return m.Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }

    /// <summary>Batched generation with a KV cache; prompts are grouped by length so no padding is needed.
    /// temperature 0 = greedy. Each sequence draws from its own seeded stream.</summary>
    public static List<string> Generate(LlamaForCausalLM model, ITokenizer tok, List<int[]> prompts, int maxNew, double temperature, double topP, long seed)
    {
        var results = new string[prompts.Count];
        int eos = tok.EosId ?? 2;
        using var _ = no_grad();
        foreach (var group in Enumerable.Range(0, prompts.Count).GroupBy(i => prompts[i].Length))
            foreach (var chunk in group.Chunk(32))
            {
                using var scope = NewDisposeScope();
                int b = chunk.Length, len = group.Key;
                var rngs = chunk.Select(i => TaskRng.Derive(seed, i)).ToArray();
                var outs = chunk.Select(_ => new List<int>()).ToArray();
                var done = new bool[b];
                using var cache = new KvCache(model.Config, b, len + maxNew + 1, ScalarType.Float32, model.Device);
                var ids = tensor(chunk.SelectMany(i => prompts[i].Select(x => (long)x)).ToArray(), [b, len]);
                var logits = model.Forward(ids, cache: cache, lastOnly: true);
                for (int step = 0; step < maxNew; step++)
                {
                    var rows = logits.reshape(b, -1).to(ScalarType.Float32).data<float>().ToArray();
                    int v = rows.Length / b;
                    var next = new long[b];
                    for (int r = 0; r < b; r++)
                    {
                        var row = new ReadOnlySpan<float>(rows, r * v, v);
                        int t = temperature <= 0 ? ArgMax(row) : Sample(row, temperature, topP, rngs[r]);
                        next[r] = t;
                        if (done[r]) continue;
                        if (t == eos) done[r] = true; else outs[r].Add(t);
                    }
                    if (done.All(d => d)) break;
                    logits = model.Forward(tensor(next, [b, 1]), cache: cache, lastOnly: true);
                }
                for (int r = 0; r < b; r++) results[chunk[r]] = tok.Decode(outs[r]);
            }
        return [.. results];
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    private static int Sample(ReadOnlySpan<float> row, double temperature, double topP, TaskRng rng)
    {
        double max = double.NegativeInfinity;
        foreach (var x in row) max = Math.Max(max, x);
        var p = new double[row.Length];
        double sum = 0;
        for (int i = 0; i < row.Length; i++) sum += p[i] = Math.Exp((row[i] - max) / temperature);
        var order = Enumerable.Range(0, p.Length).OrderByDescending(i => p[i]).ToArray();
        double cum = 0, kept = 0;
        int k = 0;
        while (k < order.Length && cum < topP * sum) { cum += p[order[k]]; k++; }
        kept = cum;
        double u = (rng.NextUInt64() >> 11) * (1.0 / (1UL << 53)) * kept;
        for (int i = 0; i < k; i++) { u -= p[order[i]]; if (u <= 0) return order[i]; }
        return order[k - 1];
    }

    [GeneratedRegex(@"Score:\s*(\d+)\s*$")]
    private static partial Regex ScoreLine();
}
