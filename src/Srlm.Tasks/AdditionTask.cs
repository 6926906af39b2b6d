namespace Srlm.Tasks;

/// <summary>
/// The smoke task: "What is 23 + 58?" -> "81". One right answer; the rubric grades by distance so EFT
/// has every score. Small and fast: it exercises the plumbing, not the self-rewarding effect.
/// </summary>
public sealed partial class AdditionTask : ITaskFamily
{
    public string Name => "addition";

    public string Summary => "two-digit addition (smoke fixture)";

    public SeedSizes DefaultSizes => new() { Ift = 300, Eft = 120, Prompts = 60, Dev = 40, Test = 100, JudgeEval = 20 };

    public string JudgeTemplate =>
        """
        Score the response with an additive rubric: add 1 point for each that holds. It
        1. is a whole number and nothing else;
        2. is within 20 of the true sum;
        3. is within 5 of the true sum;
        4. is within 1 of the true sum;
        5. is exactly the true sum.
        Instruction: {instruction}
        Response: {response}
        Work out the sum, compare, then end with "Score: <0-5>".
        """;

    public static (int A, int B)? Parse(string instruction)
    {
        var m = InstructionPattern().Match(instruction.Trim());
        if (!m.Success) return null;
        return (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    public string NewInstruction(TaskRng rng) => $"What is {rng.Between(10, 99)} + {rng.Between(10, 99)}?";

    public string Solve(string instruction, TaskRng rng)
    {
        var (a, b) = Parse(instruction) ?? throw new ArgumentException($"not an addition instruction: {instruction}", nameof(instruction));
        return (a + b).ToString(CultureInfo.InvariantCulture);
    }

    public Grade? Check(string instruction, string response)
    {
        if (Parse(instruction) is not var (a, b)) return null;
        var r = response.Trim();
        int sum = a + b;
        bool number = r.Length is > 0 and <= 9 && r.All(char.IsAsciiDigit);
        long d = number ? Math.Abs(long.Parse(r, CultureInfo.InvariantCulture) - sum) : long.MaxValue;
        string off = number ? $"{a}+{b}={sum}, off by {d}" : "nothing to compare";
        return Rubric.Grade(
        [
            new("number", number, number ? "a number" : "not a number"),
            new("within 20", d <= 20, off),
            new("within 5", d <= 5, d <= 5 ? "within 5" : "not within 5"),
            new("within 1", d <= 1, d <= 1 ? "within 1" : "not within 1"),
            new("exact", d == 0, d == 0 ? "exact" : "not exact"),
        ]);
    }

    public string AnswerWithScore(string instruction, int score, TaskRng rng)
    {
        var (a, b) = Parse(instruction) ?? throw new ArgumentException($"not an addition instruction: {instruction}", nameof(instruction));
        int sum = a + b;
        string Off(int lo, int hi)
        {
            int d = rng.Between(lo, hi);
            return (sum - d >= 0 && rng.Chance(0.5) ? sum - d : sum + d).ToString(CultureInfo.InvariantCulture);
        }
        return score switch
        {
            5 => sum.ToString(CultureInfo.InvariantCulture),
            4 => Off(1, 1),
            3 => Off(2, 5),
            2 => Off(6, 20),
            1 => Off(21, 60),
            0 => rng.Pick(new[] { $"{a}+{b}", $"about {sum}", "I do not know", $"{sum}?", "sum" }),
            _ => throw new ArgumentOutOfRangeException(nameof(score), score, "must be 0..5"),
        };
    }

    [GeneratedRegex(@"^What is (\d{1,3}) \+ (\d{1,3})\?$")]
    private static partial Regex InstructionPattern();
}
