namespace Srlm.Contracts.Seeds;

/// <summary>The one reader of srlm's seed files (src/Srlm.Training/SEED_FORMATS.md describes every rule), used by
/// `srlm train`, `srlm run`/`start` (validation before upload, the scratch tokenizer), every service and `srlm seed
/// check`, so one file gives the same records, and the same training text, on every path. Each reader returns every
/// valid record and every problem as one line "NAME:LINE: problem"; <see cref="SeedFile{T}.OrThrow"/> refuses a file
/// with any problem. A line is refused when it carries content the reader would drop (a field its format has no place
/// for, unless the field is empty); the fields in <see cref="IgnoredFields"/> carry no training content and are ignored.</summary>
public static class SeedReader
{
    public const int DefaultMaxScore = 5;

    /// <summary>Fields ignored in every format: identifiers and labels that carry nothing to train on (and any field whose
    /// name ends in "_id", see <see cref="IsIgnored"/>).</summary>
    public static IReadOnlyList<string> IgnoredFields { get; } =
    [
        "id", "uuid", "idx", "index", "category", "categories", "source", "dataset", "task", "task_id", "tags",
        "lang", "language", "split", "license", "url", "meta", "metadata", "difficulty", "level", "created_at", "model",
    ];

    /// <summary>Whether a field is ignored in every format: one of <see cref="IgnoredFields"/>, or a name ending in "_id".</summary>
    public static bool IsIgnored(string field) => IgnoredFields.Contains(field) || field.EndsWith("_id", StringComparison.Ordinal);

    /// <summary>Alpaca lines: "text" is the Alpaca release's pre-rendered copy of instruction, input and output.</summary>
    public static IReadOnlyList<string> IgnoredInAlpaca { get; } = ["text"];

    /// <summary>Prompt and held-out lines: reference answers and labels, which no srlm stage reads (a checker grades).</summary>
    public static IReadOnlyList<string> IgnoredInPrompts { get; } = ["answer", "output", "judgement", "score"];

    public const string InstructionAnswer = "instruction/answer", Alpaca = "alpaca", Messages = "messages", Eft = "eft",
        Instruction = "instruction", Labelled = "instruction/answer/score";

    public static SeedFile<IftRecord> ReadIft(string path) => ReadIft(JsonlLines.ReadFile(path), path);

    public static SeedFile<EftRecord> ReadEft(string path, int maxScore = DefaultMaxScore) => ReadEft(JsonlLines.ReadFile(path), path, maxScore);

    public static SeedFile<PromptLine> ReadPrompts(string path) => ReadPrompts(JsonlLines.ReadFile(path), path);

    public static SeedFile<LabelledAnswer> ReadJudgePairs(string path, int maxScore = DefaultMaxScore) => ReadJudgePairs(JsonlLines.ReadFile(path), path, maxScore);

    /// <summary>IFT: {"instruction","answer"}, Alpaca {"instruction","input","output"} (the user message is
    /// instruction + "\n\n" + input when input is not empty), or {"messages":[...]} (the last message is the assistant's
    /// answer, the earlier ones its context, which ends in a user message).</summary>
    public static SeedFile<IftRecord> ReadIft(byte[] bytes, string name) => Read<IftRecord>(bytes, name, line =>
    {
        if (line.Present("messages"))
        {
            var messages = line.Conversation();
            line.RefuseDropped(Messages);
            if (messages is null || !line.Ok) return null;
            if (messages[^1].Role != ChatTurn.Assistant)
                return line.Refuse<IftRecord>($"the last message is a {messages[^1].Role} message; in an IFT line it must be the assistant's answer");
            var context = messages.Take(messages.Count - 1).ToList();
            if (context.Count == 0 || context[^1].Role != ChatTurn.User)
                return line.Refuse<IftRecord>("the answer (the last message) must follow a user message");
            return (new IftRecord(context, messages[^1].Content, Messages, line.Where), Messages);
        }
        if (line.Present("output"))
        {
            var (user, _) = line.InstructionWithInput();
            var output = line.Text("output");
            line.RefuseDropped(Alpaca, IgnoredInAlpaca);
            return user is null || output is null || !line.Ok ? null
                : (new IftRecord([new ChatTurn(ChatTurn.User, user)], output, Alpaca, line.Where), Alpaca);
        }
        var instruction = line.Text("instruction");
        var answer = line.Text("answer");
        line.RefuseDropped(InstructionAnswer);
        return instruction is null || answer is null || !line.Ok ? null
            : (new IftRecord([new ChatTurn(ChatTurn.User, instruction)], answer, InstructionAnswer, line.Where), InstructionAnswer);
    });

    /// <summary>EFT: {"instruction","answer","judgement","score"}; "score" may be left out when the judgement's last
    /// `Score:` gives it. The score rule (one for every path): the judgement's score is what the judge's own parser
    /// (<see cref="ScoreParser"/>) reads from its last `Score:` label. A judgement without any `Score:` label is trained
    /// as the judgement + "\nScore: k" (k = the field); one with a label is trained as it is (trailing whitespace
    /// removed), and refused when the parser cannot read the label or reads a score other than the field's.</summary>
    public static SeedFile<EftRecord> ReadEft(byte[] bytes, string name, int maxScore = DefaultMaxScore) => Read<EftRecord>(bytes, name, line =>
    {
        var instruction = line.Text("instruction");
        var answer = line.Text("answer");
        var judgement = line.Text("judgement");
        int? score = line.Score(maxScore, required: false, out bool scoreBad);
        line.RefuseDropped(Eft);
        if (instruction is null || answer is null || judgement is null || scoreBad || !line.Ok) return null;
        string completion;
        if (!ScoreParser.HasLabel(judgement))
        {
            if (score is null) return line.Refuse<EftRecord>("missing field \"score\", and the judgement has no `Score:` line to take it from");
            completion = $"{judgement.TrimEnd()}\nScore: {score.Value.ToString(CultureInfo.InvariantCulture)}";
        }
        else
        {
            var parsed = ScoreParser.Parse(judgement, maxScore);
            if (!parsed.IsValid) return line.Refuse<EftRecord>($"the judgement's last `Score:` cannot be read: {parsed.Error}");
            if (score is not null && parsed.Score != score)
                return line.Refuse<EftRecord>($"the judgement's last `Score:` gives {parsed.Score} but field \"score\" = {score}");
            score = parsed.Score;
            completion = judgement.TrimEnd();
        }
        return (new EftRecord(instruction, answer, judgement, score!.Value, completion, line.Where), Eft);
    });

    /// <summary>Prompt pools and held-out files: {"instruction"} (Alpaca's "input", when not empty, is joined to it as
    /// in IFT), or {"messages":[one user message]} optionally followed by its reference answer. Reference answers and
    /// labels ("answer", "output", "judgement", "score") are ignored.</summary>
    public static SeedFile<PromptLine> ReadPrompts(byte[] bytes, string name) => Read<PromptLine>(bytes, name, line =>
    {
        if (line.Present("messages"))
        {
            var messages = line.Conversation();
            line.RefuseDropped(Messages, IgnoredInPrompts);
            if (messages is null || !line.Ok) return null;
            var asked = messages.Count == 2 && messages[1].Role == ChatTurn.Assistant ? messages.Take(1).ToList() : messages;
            if (asked.Count != 1 || asked[0].Role != ChatTurn.User)
                return line.Refuse<PromptLine>("a prompt line's \"messages\" hold one user message (optionally followed by its reference answer); a system message or earlier turns would be dropped");
            return (new PromptLine(asked[0].Content, Messages, line.Where), Messages);
        }
        var (user, withInput) = line.InstructionWithInput();
        line.RefuseDropped(Instruction, IgnoredInPrompts);
        return user is null || !line.Ok ? null : (new PromptLine(user, withInput ? Alpaca : Instruction, line.Where), withInput ? Alpaca : Instruction);
    });

    /// <summary>Judge-agreement files: {"instruction","answer","score"} with a number 0..max; "judgement" is ignored.</summary>
    public static SeedFile<LabelledAnswer> ReadJudgePairs(byte[] bytes, string name, int maxScore = DefaultMaxScore) => Read<LabelledAnswer>(bytes, name, line =>
    {
        var instruction = line.Text("instruction");
        var answer = line.Text("answer");
        double? score = null;
        if (!line.Present("score")) line.Refuse("missing field \"score\"");
        else if (line.Get("score") is { ValueKind: JsonValueKind.Number } s && s.GetDouble() is var v && v >= 0 && v <= maxScore) score = v;
        else line.Refuse($"field \"score\" must be a number 0..{maxScore}, got {line.Get("score").GetRawText()}");
        line.RefuseDropped(Labelled, ["judgement"]);
        return instruction is null || answer is null || score is null || !line.Ok ? null
            : (new LabelledAnswer(instruction, answer, score.Value, line.Where), Labelled);
    });

    /// <summary>What `srlm seed check` reports: valid lines, the formats found, every problem.</summary>
    public static (int Valid, IReadOnlyDictionary<string, int> Formats, IReadOnlyList<string> Problems) Check(SeedKind kind, byte[] bytes, string name, int maxScore = DefaultMaxScore) =>
        kind switch
        {
            SeedKind.Ift => Summary(ReadIft(bytes, name)),
            SeedKind.Eft => Summary(ReadEft(bytes, name, maxScore)),
            SeedKind.Prompts or SeedKind.HeldOut => Summary(ReadPrompts(bytes, name)),
            SeedKind.JudgePairs => Summary(ReadJudgePairs(bytes, name, maxScore)),
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

    private static (int, IReadOnlyDictionary<string, int>, IReadOnlyList<string>) Summary<T>(SeedFile<T> f) => (f.Records.Count, f.Formats, f.Problems);

    private static SeedFile<T> Read<T>(byte[] bytes, string name, Func<LineFields, (T Record, string Format)?> parse)
    {
        var records = new List<T>();
        var problems = new List<string>();
        var formats = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var line in JsonlLines.Read(bytes))
        {
            var where = $"{name}:{line.Number.ToString(CultureInfo.InvariantCulture)}";
            if (line.Error is not null) { problems.Add($"{where}: {line.Error}"); continue; }
            if (parse(new LineFields(line.Object, where, problems)) is not { } ok) continue;
            records.Add(ok.Record);
            formats[ok.Format] = formats.GetValueOrDefault(ok.Format) + 1;
        }
        return new SeedFile<T>(name, records, problems, formats);
    }

    /// <summary>One line's fields: typed reads that report problems, and the check that nothing with content is left unread.</summary>
    private sealed class LineFields(JsonElement obj, string where, List<string> problems)
    {
        private readonly HashSet<string> _read = new(StringComparer.Ordinal);

        public string Where => where;
        public bool Ok { get; private set; } = true;

        public (T, string)? Refuse<T>(string problem) { Refuse(problem); return null; }

        public void Refuse(string problem) { problems.Add($"{where}: {problem}"); Ok = false; }

        public bool Present(string field) => obj.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null;

        public JsonElement Get(string field) { _read.Add(field); return obj.GetProperty(field); }

        /// <summary>A required string that is not empty or whitespace.</summary>
        public string? Text(string field)
        {
            _read.Add(field);
            if (!obj.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) { Refuse($"missing field \"{field}\""); return null; }
            if (v.ValueKind != JsonValueKind.String) { Refuse($"field \"{field}\" must be a string, got {v.ValueKind}"); return null; }
            var s = v.GetString()!;
            if (string.IsNullOrWhiteSpace(s)) { Refuse($"field \"{field}\" is empty"); return null; }
            return s;
        }

        /// <summary>"instruction", joined with a not-empty Alpaca "input" by a blank line.</summary>
        public (string? User, bool WithInput) InstructionWithInput()
        {
            var instruction = Text("instruction");
            _read.Add("input");
            if (!obj.TryGetProperty("input", out var v) || v.ValueKind == JsonValueKind.Null) return (instruction, false);
            if (v.ValueKind != JsonValueKind.String) { Refuse($"field \"input\" must be a string, got {v.ValueKind}"); return (null, false); }
            var input = v.GetString()!;
            if (string.IsNullOrWhiteSpace(input)) return (instruction, false);
            return (instruction is null ? null : $"{instruction}\n\n{input}", true);
        }

        /// <summary>An integer score 0..max; null when absent (refused when <paramref name="required"/>) or bad.</summary>
        public int? Score(int maxScore, bool required, out bool bad)
        {
            bad = false;
            _read.Add("score");
            if (!obj.TryGetProperty("score", out var s) || s.ValueKind == JsonValueKind.Null)
            {
                if (required) { Refuse("missing field \"score\""); bad = true; }
                return null;
            }
            if (s.ValueKind != JsonValueKind.Number || !s.TryGetInt32(out var k))
                Refuse($"field \"score\" must be an integer 0..{maxScore}, got {s.GetRawText()}");
            else if (k < 0 || k > maxScore)
                Refuse($"field \"score\" = {k} is out of range 0..{maxScore}");
            else return k;
            bad = true;
            return null;
        }

        /// <summary>"messages": an array of {"role","content"} objects, roles system (first only), user, assistant.</summary>
        public List<ChatTurn>? Conversation()
        {
            var m = Get("messages");
            if (m.ValueKind != JsonValueKind.Array) { Refuse($"field \"messages\" must be an array, got {m.ValueKind}"); return null; }
            if (m.GetArrayLength() == 0) { Refuse("field \"messages\" is empty"); return null; }
            var turns = new List<ChatTurn>();
            int i = 0;
            foreach (var e in m.EnumerateArray())
            {
                var at = $"messages[{i.ToString(CultureInfo.InvariantCulture)}]";
                if (e.ValueKind != JsonValueKind.Object) { Refuse($"{at} must be an object, got {e.ValueKind}"); return null; }
                string? role = e.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                if (role is not (ChatTurn.System or ChatTurn.User or ChatTurn.Assistant))
                {
                    Refuse(role is null ? $"{at} has no string \"role\"" : $"{at}.role \"{role}\" is not one of system, user, assistant");
                    return null;
                }
                if (!e.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String)
                {
                    Refuse($"{at}.content must be a string, got {(c.ValueKind == JsonValueKind.Undefined ? "nothing" : c.ValueKind.ToString())}");
                    return null;
                }
                if (string.IsNullOrWhiteSpace(c.GetString())) { Refuse($"{at}.content is empty"); return null; }
                if (role == ChatTurn.System && i > 0) { Refuse($"{at} is a system message after the first message"); return null; }
                foreach (var p in e.EnumerateObject())
                    if (p.Name is not ("role" or "content") && !IsIgnored(p.Name) && HasContent(p.Value))
                        Refuse($"{at}.{p.Name} would be dropped: a message is read as its role and content only");
                turns.Add(new ChatTurn(role, c.GetString()!));
                i++;
            }
            return Ok ? turns : null;
        }

        /// <summary>Refuses every field not read and not ignored that holds content (anything but null, "", [] or {}).</summary>
        public void RefuseDropped(string format, IReadOnlyList<string>? alsoIgnored = null)
        {
            foreach (var p in obj.EnumerateObject())
            {
                if (_read.Contains(p.Name) || IsIgnored(p.Name) || (alsoIgnored?.Contains(p.Name) ?? false) || !HasContent(p.Value)) continue;
                var hint = p.Name == "input" && format == InstructionAnswer ? " (an Alpaca line names its answer \"output\")" : "";
                Refuse($"field \"{p.Name}\" would be dropped: the {format} format has no place for it{hint}");
            }
        }

        private static bool HasContent(JsonElement v) => v.ValueKind switch
        {
            JsonValueKind.Null => false,
            JsonValueKind.String => !string.IsNullOrWhiteSpace(v.GetString()),
            JsonValueKind.Array => v.GetArrayLength() > 0,
            JsonValueKind.Object => v.EnumerateObject().Any(),
            _ => true,
        };
    }
}
