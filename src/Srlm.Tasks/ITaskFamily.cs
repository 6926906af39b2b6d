namespace Srlm.Tasks;

/// <summary>One rubric criterion as the checker saw it: met or not, and the evidence it wrote down.</summary>
public sealed record Criterion(string Name, bool Met, string Evidence);

/// <summary>
/// The checker's verdict on one response: <see cref="Correct"/> (every criterion met), the rubric's additive
/// <see cref="Score"/> 0..5, the criteria in rubric order, and the judgement a perfect judge would write
/// (ending in "Score: k"), which is what the EFT seed data teaches the model to write.
/// </summary>
public sealed record Grade(bool Correct, int Score, IReadOnlyList<Criterion> Criteria, string Judgement);

/// <summary>
/// A family of verifiable instruction tasks: a seeded instruction generator, a generator of correct
/// answers, a checker that grades any response against any instruction of the family, and the judge
/// template (rubric) for it. Used to build seed data and to evaluate; never by the services.
/// </summary>
public interface ITaskFamily
{
    /// <summary>The name `srlm seed --task` takes.</summary>
    string Name { get; }

    /// <summary>One line for listings.</summary>
    string Summary { get; }

    /// <summary>The LLM-as-a-Judge prompt with {instruction} and {response} placeholders, ending with the
    /// request to finish with "Score: &lt;0-5&gt;".</summary>
    string JudgeTemplate { get; }

    /// <summary>Split sizes `srlm seed` uses unless told otherwise.</summary>
    SeedSizes DefaultSizes { get; }

    /// <summary>A random, solvable instruction of this family.</summary>
    string NewInstruction(TaskRng rng);

    /// <summary>A random correct answer (many exist for most instructions); throws for an instruction that
    /// is not of this family or has no answer.</summary>
    string Solve(string instruction, TaskRng rng);

    /// <summary>Grades <paramref name="response"/>; null when <paramref name="instruction"/> is not an
    /// instruction of this family (e.g. a malformed self-generated prompt).</summary>
    Grade? Check(string instruction, string response);

    /// <summary>A response whose grade is exactly <paramref name="score"/> (0..5), made the way a model errs.</summary>
    string AnswerWithScore(string instruction, int score, TaskRng rng);
}

public static class TaskFamilies
{
    public static IReadOnlyList<ITaskFamily> All { get; } = [new LettersTask(), new AdditionTask()];

    /// <summary>The family named <paramref name="name"/>, or null.</summary>
    public static ITaskFamily? Find(string name) => All.FirstOrDefault(f => string.Equals(f.Name, name, StringComparison.Ordinal));

    /// <summary>Grades with <paramref name="family"/> and throws when the instruction is not of the family.</summary>
    public static Grade CheckKnown(this ITaskFamily family, string instruction, string response) =>
        family.Check(instruction, response)
        ?? throw new ArgumentException($"not an instruction of task family '{family.Name}': {instruction}", nameof(instruction));
}
