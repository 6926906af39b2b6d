namespace Srlm.Generator;

/// <summary>Checks answers with a task family's checker, for evaluation's accuracy. The one definition, compiled into
/// the generator host and, as a linked file, into the CLI (`srlm run`): the hosts may reference the task families, the
/// generator library may not.</summary>
internal sealed class TaskFamilyEvaluator(ITaskFamily family) : IAnswerEvaluator
{
    public string Name => family.Name;

    public bool? IsCorrect(string instruction, string answer) => family.Check(instruction, answer)?.Correct;
}
