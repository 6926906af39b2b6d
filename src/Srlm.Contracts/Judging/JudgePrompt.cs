namespace Srlm.Contracts.Judging;

/// <summary>The LLM-as-a-Judge prompt. A template holds {instruction} and {response}; both are filled
/// in one pass, so text inside the instruction or response is never treated as a placeholder. The same
/// filling turns EFT seed lines into SFT examples (Seeds.SeedExamples), so the model is trained on exactly
/// the prompt it later judges with. Part of the run's contract: the judge service, the evaluation, the
/// trainer and `srlm train` all fill templates here.</summary>
public static partial class JudgePrompt
{
    /// <summary>The name of the built-in <see cref="PaperTemplate"/> (the default).</summary>
    public const string Paper = "paper";

    /// <summary>The LLM-as-a-Judge prompt of Yuan et al. 2024, "Self-Rewarding Language Models" (arXiv 2401.10020),
    /// Figure 2, point by point in our own words: review the request and the reply with an additive five-point scale;
    /// one point each, in the paper's order, for (1) relevance, (2) covering a substantial part of the request,
    /// (3) usefully answering its core, (4) a clear, well-organised, helpful answer written from an AI assistant's
    /// view, (5) an expert answer tailored to the request without filler; then a short justification (at most 100
    /// words) and a closing line `Score: &lt;total points&gt;`. Users who want the paper's exact text pass it with
    /// judge.template_file. It is one user message: the checkpoint's chat template renders it.</summary>
    public const string PaperTemplate =
        """
        Review the user's request and the reply below using the additive five-point scale that follows. Points add up: award each one whose condition the reply meets.
        - Award 1 point if the reply is relevant and gives some information related to the request, even if it is incomplete or contains some unrelated material.
        - Award a 2nd point if the reply addresses a substantial part of the request, but does not fully resolve it or answer it directly.
        - Award a 3rd point if the reply answers the basic elements of the request in a useful way, even if it reads like a search result or is not complete or polished.
        - Award a 4th point if the reply is written clearly from an AI assistant's point of view, addresses the request directly and comprehensively, and is well organised and helpful, with at most slight room for more clarity, brevity or focus.
        - Award a 5th point if the reply is tailored to the request by an AI assistant without extraneous material, shows expert knowledge, and is an engaging, insightful, high-quality answer.

        Request: {instruction}
        <response>{response}</response>

        After examining the request and the reply:
        - justify your total score briefly, in no more than 100 words;
        - end with a line of the form "Score: <total points>".
        Judge as an AI assistant would, drawing on what you know about the subject.
        """;

    /// <summary>Built-in templates by name (judge.template may give a name instead of a template).</summary>
    public static IReadOnlyDictionary<string, string> BuiltIn { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        [Paper] = PaperTemplate,
    };

    /// <summary>The default template: <see cref="PaperTemplate"/>.</summary>
    public const string DefaultTemplate = PaperTemplate;

    [GeneratedRegex(@"\{(instruction|response)\}", RegexOptions.CultureInvariant)]
    private static partial Regex Placeholder();

    /// <summary>The template to use for a spec's judge section: a built-in name ("paper"), a template, or null (the default, "paper").</summary>
    public static string TemplateOf(string? specTemplate) =>
        string.IsNullOrEmpty(specTemplate) ? DefaultTemplate : BuiltIn.TryGetValue(specTemplate, out var builtIn) ? builtIn : specTemplate;

    /// <summary>Why a template cannot be a judge prompt (it lacks a placeholder), or null when it can.</summary>
    public static string? Problem(string template) =>
        template.Contains("{instruction}", StringComparison.Ordinal) && template.Contains("{response}", StringComparison.Ordinal)
            ? null : "must contain {instruction} and {response}";

    public static string Format(string? template, string instruction, string response) =>
        Placeholder().Replace(TemplateOf(template), m => m.Groups[1].Value == "instruction" ? instruction : response);
}
