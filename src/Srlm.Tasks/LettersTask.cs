namespace Srlm.Tasks;

/// <summary>Knobs of the letters family (the difficulty dial).</summary>
public sealed record LettersOptions
{
    /// <summary>How many letters the instruction offers (drawn uniformly in this range).</summary>
    public int SetSizeMin { get; init; } = 8;
    public int SetSizeMax { get; init; } = 12;

    /// <summary>How many letters the answer must have (drawn uniformly in this range).</summary>
    public int LengthMin { get; init; } = 5;
    public int LengthMax { get; init; } = 8;
}

/// <summary>
/// "Pick 5 letters from acfkmpt in alphabetical order, from c to t." A right answer is a strictly
/// increasing run of offered letters of the asked length with the asked ends ("cfkmt", "ckmpt", ...).
/// Producing one means planning how many offered letters to skip so that the asked last letter lands
/// exactly at the asked length; checking one is five independent local tests (membership, first letter,
/// last letter, length, adjacent order) written down one at a time. See samples/tiny/TASK.md.
/// </summary>
public sealed partial class LettersTask(LettersOptions? options = null) : ITaskFamily
{
    private readonly LettersOptions _o = Validate(options ?? new LettersOptions());

    public string Name => "letters";

    public string Summary => "pick N offered letters in alphabetical order with given first and last letters (tiny demo)";

    public SeedSizes DefaultSizes => new() { Ift = 1000, Eft = 6000, Prompts = 2000, Dev = 200, Test = 1000, JudgeEval = 200 };

    // Short on purpose: a tiny model pays for every token of the template in every judge prompt, and the
    // EFT judgements (one clause per point, with the running total) are what teach the rubric.
    public string JudgeTemplate =>
        """
        Add 1 point each: offered letters only, asked first letter, asked last letter, asked length, alphabetical order.
        Instruction: {instruction}
        Response: {response}
        Check each point with a running total, then end with "Score: <0-5>".
        """;

    /// <summary>The parsed instruction: offered letters (as written), length, first and last letter.</summary>
    public readonly record struct Spec(string Letters, int Length, char First, char Last);

    /// <summary>Letters are written one by one, separated by spaces ("a c f k m p t"), in instructions and
    /// answers alike: a word-level tokenizer then keeps one letter per token, which is what the task is about.</summary>
    public static string Format(Spec s) => $"Pick {s.Length} letters from {Spaced(s.Letters)} in alphabetical order, from {s.First} to {s.Last}.";

    /// <summary>"cfkmt" -> "c f k m t".</summary>
    public static string Spaced(string letters) => string.Join(' ', letters.ToCharArray());

    public static Spec? Parse(string instruction)
    {
        var m = InstructionPattern().Match(instruction.Trim());
        if (!m.Success) return null;
        return new Spec(m.Groups[2].Value.Replace(" ", "", StringComparison.Ordinal), int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[3].Value[0], m.Groups[4].Value[0]);
    }

    public string NewInstruction(TaskRng rng)
    {
        while (true)
        {
            int k = rng.Between(_o.SetSizeMin, _o.SetSizeMax);
            var alphabet = "abcdefghijklmnopqrstuvwxyz".ToCharArray();
            rng.Shuffle(alphabet);
            var set = alphabet.Take(k).Order().ToArray();
            int n = rng.Between(_o.LengthMin, _o.LengthMax);
            // Ends i < j with at least n-1 offered letters strictly between them: n-2 are needed, and one
            // more guarantees a choice of which to skip (at least two right answers).
            var ends = new List<(int I, int J)>();
            for (int i = 0; i < k; i++)
                for (int j = i + 1; j < k; j++)
                    if (j - i - 1 >= n - 1) ends.Add((i, j));
            if (ends.Count == 0) continue;
            var (a, b) = rng.Pick(ends);
            return Format(new Spec(new string(set), n, set[a], set[b]));
        }
    }

    public string Solve(string instruction, TaskRng rng)
    {
        var s = Parse(instruction) ?? throw new ArgumentException($"not a letters instruction: {instruction}", nameof(instruction));
        return Spaced(SolveLetters(s, rng) ?? throw new ArgumentException($"letters instruction has no answer: {instruction}", nameof(instruction)));
    }

    /// <summary>A random right answer without spaces, or null when the instruction has none.</summary>
    private static string? SolveLetters(Spec s, TaskRng rng)
    {
        var between = Between(s);
        if (s.Length < 2 || !s.Letters.Contains(s.First) || !s.Letters.Contains(s.Last) || between.Count < s.Length - 2) return null;
        rng.Shuffle(between);
        return s.First + new string(between.Take(s.Length - 2).Order().ToArray()) + s.Last;
    }

    /// <summary>The offered letters strictly between the asked first and last, in order.</summary>
    private static List<char> Between(Spec s) => s.Letters.Distinct().Where(c => c > s.First && c < s.Last).Order().ToList();

    public Grade? Check(string instruction, string response) =>
        Parse(instruction) is { } s ? Grade(s, response) : null;

    /// <summary>Grades the letters of <paramref name="response"/>; whitespace between letters does not count
    /// ("c f k m t" and "cfkmt" are the same answer).</summary>
    public static Grade Grade(Spec s, string response)
    {
        var r = WhiteSpace().Replace(response, "");
        var allowed = s.Letters.ToHashSet();
        var criteria = new List<Criterion>(5);

        int bad = -1;
        for (int i = 0; i < r.Length && bad < 0; i++)
            if (!allowed.Contains(r[i])) bad = i;
        criteria.Add(bad < 0 && r.Length > 0
            ? new("letters", true, "letters ok")
            : new("letters", false, r.Length == 0 ? "no letters" : $"letter {Show(r[bad])} not allowed"));

        criteria.Add(r.Length > 0 && r[0] == s.First
            ? new("first", true, $"first {s.First} asked {s.First} ok")
            : new("first", false, $"first {(r.Length > 0 ? Show(r[0]) : "none")} asked {s.First} no"));

        criteria.Add(r.Length > 0 && r[^1] == s.Last
            ? new("last", true, $"last {s.Last} asked {s.Last} ok")
            : new("last", false, $"last {(r.Length > 0 ? Show(r[^1]) : "none")} asked {s.Last} no"));

        criteria.Add(r.Length == s.Length
            ? new("length", true, $"length {r.Length} asked {s.Length} ok")
            : new("length", false, $"length {r.Length} asked {s.Length} no"));

        int broken = -1;
        for (int i = 1; i < r.Length && broken < 0; i++)
            if (r[i] <= r[i - 1]) broken = i;
        criteria.Add(broken < 0 && r.Length > 0
            ? new("order", true, "order ok")
            : new("order", false, r.Length == 0 ? "order none" : $"order breaks at {Show(r[broken])}"));

        // The workings number the response's letters ("a1 d2 g3 ..."): the judge then reads the length off the
        // last number and compares neighbours side by side instead of counting in its head.
        var numbered = r.Length == 0 ? "none" : string.Join(' ', r.Select((c, i) => $"{c}{i + 1}"));
        return Rubric.Grade(criteria, numbered);
    }

    public string AnswerWithScore(string instruction, int score, TaskRng rng)
    {
        var s = Parse(instruction) ?? throw new ArgumentException($"not a letters instruction: {instruction}", nameof(instruction));
        if (score == 5) return Solve(instruction, rng);
        return Rubric.Sample(score, r => Grade(s, r).Score, rng, instruction, () =>
        {
            if (rng.Chance(0.15)) return RandomWord(rng, s);
            // Near misses, the commonest slip of a model that has learnt the format: a clean run with the right
            // ends but a letter or two too many or too few, sometimes with one more slip on top.
            if (rng.Chance(0.4) && NearMiss(s, rng) is { } near)
            {
                var n = new StringBuilder(near);
                if (rng.Chance(0.3)) Edit(n, s, rng);
                return Spaced(n.ToString());
            }
            var w = new StringBuilder(SolveLetters(s, rng) ?? throw new ArgumentException($"letters instruction has no answer: {instruction}", nameof(instruction)));
            int edits = rng.Between(1, 4);
            for (int e = 0; e < edits; e++) Edit(w, s, rng);
            return Spaced(w.ToString());
        });
    }

    // A model's typical slips: a wrong or foreign letter, one too many or too few, a swap, a capital,
    // stopping early or running on.
    private static void Edit(StringBuilder w, Spec s, TaskRng rng)
    {
        int op = rng.Next(8);
        if (w.Length == 0) op = 2;
        int p = w.Length > 0 ? rng.Next(w.Length) : 0;
        switch (op)
        {
            case 0: w[p] = rng.Pick(s.Letters.ToCharArray()); break;
            case 1: w[p] = Foreign(s, rng); break;
            case 2: w.Insert(rng.Next(w.Length + 1), rng.Pick(s.Letters.ToCharArray())); break;
            case 3: if (w.Length > 1) w.Remove(p, 1); break;
            case 4: if (w.Length > 1) { int i = rng.Next(w.Length - 1); (w[i], w[i + 1]) = (w[i + 1], w[i]); } break;
            case 5: w[p] = char.ToUpperInvariant(w[p]); break;
            case 6: if (w.Length > 1) w.Length--; break;
            default: w.Append(rng.Pick(s.Letters.ToCharArray())); break;
        }
    }

    /// <summary>Offered letters in order from the asked first to the asked last, but 1 or 2 more or fewer than
    /// asked; null when the instruction leaves no room for that.</summary>
    private static string? NearMiss(Spec s, TaskRng rng)
    {
        var between = Between(s);
        var options = new[] { -2, -1, 1, 2 }.Where(d => s.Length - 2 + d >= 0 && s.Length - 2 + d <= between.Count).ToList();
        if (options.Count == 0) return null;
        int middle = s.Length - 2 + rng.Pick(options);
        rng.Shuffle(between);
        return s.First + new string(between.Take(middle).Order().ToArray()) + s.Last;
    }

    private static char Foreign(Spec s, TaskRng rng)
    {
        var others = "abcdefghijklmnopqrstuvwxyz".Where(c => !s.Letters.Contains(c)).ToArray();
        return others.Length > 0 ? rng.Pick(others) : 'A';
    }

    private static string RandomWord(TaskRng rng, Spec s)
    {
        int n = rng.Between(1, s.Length + 3);
        var sb = new StringBuilder(n);
        for (int i = 0; i < n; i++) sb.Append(rng.Chance(0.5) ? rng.Pick(s.Letters.ToCharArray()) : (char)('a' + rng.Next(26)));
        return Spaced(sb.ToString());
    }

    private static string Show(char c) => char.IsWhiteSpace(c) ? "space" : c.ToString();

    private static LettersOptions Validate(LettersOptions o)
    {
        if (o.SetSizeMin < 3 || o.SetSizeMax > 26 || o.SetSizeMin > o.SetSizeMax)
            throw new ArgumentException($"letters: set size range {o.SetSizeMin}..{o.SetSizeMax} must lie in 3..26");
        if (o.LengthMin < 3 || o.LengthMin > o.LengthMax || o.LengthMax > o.SetSizeMax - 1)
            throw new ArgumentException($"letters: length range {o.LengthMin}..{o.LengthMax} must lie in 3..{o.SetSizeMax - 1}");
        return o;
    }

    [GeneratedRegex(@"^Pick (\d{1,2}) letters from ([a-z](?: [a-z]){0,25}) in alphabetical order, from ([a-z]) to ([a-z])\.$")]
    private static partial Regex InstructionPattern();

    [GeneratedRegex(@"\s+")]
    private static partial Regex WhiteSpace();
}
