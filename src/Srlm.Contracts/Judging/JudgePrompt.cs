using System.Text.RegularExpressions;

namespace Srlm.Contracts.Judging;

/// <summary>The LLM-as-a-Judge prompt. A template holds {instruction} and {response}; both are filled
/// in one pass, so text inside the instruction or response is never treated as a placeholder. The same
/// filling turns EFT seed lines into SFT examples (Seeds.SeedExamples), so the model is trained on exactly
/// the prompt it later judges with. Part of the run's contract: the judge service, the evaluation, the
/// trainer and `srlm train` all fill templates here.</summary>
public static partial class JudgePrompt
{
    /// <summary>Our wording of the paper's additive five-point rubric (Yuan et al. 2024, section 2.1).</summary>
    public const string DefaultTemplate =
        """
        Read the user's request and the candidate reply below, then rate the reply with this additive five-point scale.
        - Give 1 point if the reply is on topic and relevant to the request, even if it is incomplete or contains some unrelated material.
        - Give a 2nd point if it deals with a substantial part of the request, though it does not settle it completely.
        - Give a 3rd point if it usefully answers the heart of the request, even if it is not complete or polished.
        - Give a 4th point if it reads as a clear, well-organised answer from an AI assistant that addresses the request directly and helpfully, with at most small room for tightening or focus.
        - Give a 5th point if it is an expert answer tailored to the request, precise and complete, with nothing superfluous.

        Request: {instruction}
        <reply>{response}</reply>

        Justify the total in no more than 100 words, then end with a line of the form "Score: <points>".
        """;

    [GeneratedRegex(@"\{(instruction|response)\}", RegexOptions.CultureInvariant)]
    private static partial Regex Placeholder();

    /// <summary>The template to use for a spec's judge section (null = the default rubric).</summary>
    public static string TemplateOf(string? specTemplate) => string.IsNullOrEmpty(specTemplate) ? DefaultTemplate : specTemplate;

    /// <summary>Why a template cannot be a judge prompt (it lacks a placeholder), or null when it can.</summary>
    public static string? Problem(string template) =>
        template.Contains("{instruction}", StringComparison.Ordinal) && template.Contains("{response}", StringComparison.Ordinal)
            ? null : "must contain {instruction} and {response}";

    public static string Format(string? template, string instruction, string response) =>
        Placeholder().Replace(TemplateOf(template), m => m.Groups[1].Value == "instruction" ? instruction : response);
}
