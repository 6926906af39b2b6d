namespace Srlm.Tests.Seeds;

/// <summary>The one seed reader: each format, the EFT score rule, refused lines with their exact one-line problems.</summary>
public sealed class SeedReaderTests
{
    private static byte[] Bytes(params string[] lines) => Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n");

    private static IReadOnlyList<IftRecord> Ift(params string[] lines) => SeedReader.ReadIft(Bytes(lines), "f.jsonl").OrThrow();

    private static string OneProblem<T>(SeedFile<T> file) => Assert.Single(file.Problems);

    [Fact]
    public void Each_ift_format_reads_to_its_conversation_and_answer()
    {
        var r = Ift(
            """{"instruction":"Say hi","answer":"Hi!"}""",
            "",
            """{"instruction":"Translate.","input":"Bonjour","output":"Hello"}""",
            """{"instruction":"Name a colour.","input":"","output":"Red"}""",
            """{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}""",
            """{"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}""");
        Assert.Equal(["instruction/answer", "alpaca", "alpaca", "messages", "messages"], r.Select(x => x.Format));
        Assert.Equal(["f.jsonl:1", "f.jsonl:3", "f.jsonl:4", "f.jsonl:5", "f.jsonl:6"], r.Select(x => x.Source));
        Assert.Equal(["Say hi", "Translate.\n\nBonjour", "Name a colour.", "2+2?", "System: Be terse.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: 2+2?"], r.Select(x => x.Prompt));
        Assert.Equal(["Hi!", "Hello", "Red", "4", "4"], r.Select(x => x.Answer));
        // The last user message is the request (self-instruct examples, leakage); the earlier turns stay a list of messages.
        Assert.Equal("2+2?", r[4].Instruction);
        Assert.Equal([ChatTurn.System, ChatTurn.User, ChatTurn.Assistant, ChatTurn.User], r[4].Context.Select(t => t.Role));
        Assert.Equal(new Dictionary<string, int> { ["alpaca"] = 2, ["instruction/answer"] = 1, ["messages"] = 2 }, SeedReader.ReadIft(Bytes(
            """{"instruction":"Say hi","answer":"Hi!"}""", """{"instruction":"T","input":"B","output":"H"}""", """{"instruction":"T","output":"H"}""",
            """{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}""",
            """{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}"""), "f").Formats);
    }

    [Fact]
    public void Fields_without_training_content_are_ignored()
    {
        var r = Ift(
            """{"id":7,"category":"open_qa","source":"dolly","instruction":"Say hi","answer":"Hi!","prompt_id":"abc","input":"","context":null,"tags":["x"]}""",
            """{"instruction":"T","input":"B","output":"H","text":"Below is an instruction... T B H"}""",
            """{"messages":[{"role":"user","content":"a","id":"m1"},{"role":"assistant","content":"b"}],"conversation_id":"c9","system":""}""");
        Assert.Equal(3, r.Count);
    }

    [Theory]
    [InlineData("""{"instruction":"Sum.","input":"2 3","answer":"5"}""",
        "field \"input\" would be dropped: the instruction/answer format has no place for it (an Alpaca line names its answer \"output\")")]
    [InlineData("""{"instruction":"Summarise.","context":"A long text.","answer":"Short."}""",
        "field \"context\" would be dropped: the instruction/answer format has no place for it")]
    [InlineData("""{"system":"Be terse.","instruction":"Hi","answer":"Hello"}""",
        "field \"system\" would be dropped: the instruction/answer format has no place for it")]
    [InlineData("""{"instruction":"Hi","answer":"Hello","output":"Hey"}""",
        "field \"answer\" would be dropped: the alpaca format has no place for it")]
    [InlineData("""{"instruction":"Hi","answer":"Hello","judgement":"Good."}""",
        "field \"judgement\" would be dropped: the instruction/answer format has no place for it")]
    [InlineData("""{"instruction":"Hi","messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"}]}""",
        "field \"instruction\" would be dropped: the messages format has no place for it")]
    [InlineData("""{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}]}""",
        "the last message is a user message; in an IFT line it must be the assistant's answer")]
    [InlineData("""{"messages":[{"role":"system","content":"s"},{"role":"assistant","content":"b"}]}""",
        "the answer (the last message) must follow a user message")]
    [InlineData("""{"messages":[{"role":"user","content":"a"},{"role":"system","content":"s"},{"role":"assistant","content":"b"}]}""",
        "messages[1] is a system message after the first message")]
    [InlineData("""{"messages":[{"role":"user","content":"a"},{"role":"tool","content":"t"},{"role":"assistant","content":"b"}]}""",
        "messages[1].role \"tool\" is not one of system, user, assistant")]
    [InlineData("""{"messages":[{"role":"user","content":[{"type":"text","text":"a"}]},{"role":"assistant","content":"b"}]}""",
        "messages[0].content must be a string, got Array")]
    [InlineData("""{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b","tool_calls":[{"id":"1"}]}]}""",
        "messages[1].tool_calls would be dropped: a message is read as its role and content only")]
    [InlineData("""{"messages":[]}""", "field \"messages\" is empty")]
    [InlineData("""{"instruction":"x"}""", "missing field \"answer\"")]
    [InlineData("""{"instruction":"x","answer":"  "}""", "field \"answer\" is empty")]
    [InlineData("""{"instruction":3,"answer":"y"}""", "field \"instruction\" must be a string, got Number")]
    [InlineData("""{"instruction":"x","answer":"y","extra":1}""", "field \"extra\" would be dropped: the instruction/answer format has no place for it")]
    [InlineData("[1,2]", "expected a JSON object, got Array")]
    public void A_line_whose_content_would_be_dropped_or_is_malformed_is_refused_in_one_line(string line, string problem)
    {
        var file = SeedReader.ReadIft(Bytes("""{"instruction":"ok","answer":"ok"}""", line), "data/ift.jsonl");
        Assert.Equal($"data/ift.jsonl:2: {problem}", OneProblem(file));
        var e = Assert.Throws<SeedDataException>(() => file.OrThrow());
        Assert.Equal($"data/ift.jsonl:2: {problem}", e.Message);
        Assert.Single(file.Records);
    }

    [Fact]
    public void Invalid_json_and_utf8_are_refused_with_their_line()
    {
        var file = SeedReader.ReadIft(Bytes("""{"instruction":"ok","answer":"ok"}""", """{"instruction":"x","""), "f");
        Assert.StartsWith("f:2: not valid JSON: ", OneProblem(file));
        var good = Encoding.UTF8.GetBytes("{\"instruction\":\"ok\",\"answer\":\"ok\"}\n");
        var bad = new byte[] { (byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)'}', (byte)'\n' };
        Assert.Equal("f:3: not valid UTF-8", OneProblem(SeedReader.ReadIft([0xEF, 0xBB, 0xBF, .. good, .. good, .. bad], "f")));
        Assert.Equal("f: no records", Assert.Throws<SeedDataException>(() => SeedReader.ReadIft(Bytes(""), "f").OrThrow()).Message);
    }

    [Theory]
    // No `Score:` label: "Score: k" from the field is appended on its own line.
    [InlineData("Correct and brief.", "5", "Correct and brief.\nScore: 5", 5)]
    [InlineData("Correct and brief.  \n", "5", "Correct and brief.\nScore: 5", 5)]
    // A label the judge's parser reads: trained as it is (trailing whitespace removed), whatever follows the number.
    [InlineData("Good.\nScore: 4", "4", "Good.\nScore: 4", 4)]
    [InlineData("Score: 4. Good", "4", "Score: 4. Good", 4)]
    [InlineData("Fine. **Score:** 3/5\n", "3", "Fine. **Score:** 3/5", 3)]
    // The field left out: the score is the judgement's last `Score:`.
    [InlineData("Wrong at first (Score: 1), then fixed.\nScore: 3", null, "Wrong at first (Score: 1), then fixed.\nScore: 3", 3)]
    public void The_eft_score_rule(string judgement, string? score, string completion, int expected)
    {
        var line = $$"""{"instruction":"2+2?","answer":"4","judgement":{{System.Text.Json.JsonSerializer.Serialize(judgement)}}{{(score is null ? "" : $",\"score\":{score}")}}}""";
        var r = Assert.Single(SeedReader.ReadEft(Bytes(line), "eft.jsonl").OrThrow());
        Assert.Equal(completion, r.Completion);
        Assert.Equal(expected, r.Score);
        Assert.Equal(judgement, r.Judgement);
    }

    [Theory]
    [InlineData("\"judgement\":\"Good.\\nScore: 3\",\"score\":4", "the judgement's last `Score:` gives 3 but field \"score\" = 4")]
    [InlineData("\"judgement\":\"Good.\"", "missing field \"score\", and the judgement has no `Score:` line to take it from")]
    [InlineData("\"judgement\":\"Good.\\nScore: 7\",\"score\":5", "the judgement's last `Score:` cannot be read: score 7 is outside 0..5")]
    [InlineData("\"judgement\":\"Good.\\nScore: high\"", "the judgement's last `Score:` cannot be read: the last `Score:` is not followed by a number")]
    [InlineData("\"judgement\":\"j\",\"score\":6", "field \"score\" = 6 is out of range 0..5")]
    [InlineData("\"judgement\":\"j\",\"score\":-1", "field \"score\" = -1 is out of range 0..5")]
    [InlineData("\"judgement\":\"j\",\"score\":4.5", "field \"score\" must be an integer 0..5, got 4.5")]
    [InlineData("\"judgement\":\"j\",\"score\":\"4\"", "field \"score\" must be an integer 0..5, got \"4\"")]
    [InlineData("\"judgement\":\"j\",\"score\":4,\"input\":\"more\"", "field \"input\" would be dropped: the eft format has no place for it")]
    public void Refused_eft_lines(string fields, string problem)
    {
        var file = SeedReader.ReadEft(Bytes($"{{\"instruction\":\"i\",\"answer\":\"a\",{fields}}}"), "eft.jsonl");
        Assert.Equal($"eft.jsonl:1: {problem}", OneProblem(file));
    }

    [Fact]
    public void Every_problem_is_listed_and_the_message_counts_the_rest()
    {
        var file = SeedReader.ReadEft(Bytes("{}", """{"instruction":"i","answer":"a","judgement":"j","score":5}""", """{"instruction":"i"}"""), "eft.jsonl");
        // Line 1 misses 3 text fields (and its score can come from nowhere only once they exist), line 3 misses 2.
        Assert.Equal(["eft.jsonl:1: missing field \"instruction\"", "eft.jsonl:1: missing field \"answer\"", "eft.jsonl:1: missing field \"judgement\"",
            "eft.jsonl:3: missing field \"answer\"", "eft.jsonl:3: missing field \"judgement\""], file.Problems);
        Assert.Equal("eft.jsonl:1: missing field \"instruction\" (and 4 more problems)", Assert.Throws<SeedDataException>(() => file.OrThrow()).Message);
    }

    [Fact]
    public void Prompt_and_held_out_lines_ignore_reference_answers_and_refuse_lost_context()
    {
        var r = SeedReader.ReadPrompts(Bytes(
            """{"instruction":"2+2?","answer":"4"}""",
            """{"instruction":"Translate.","input":"Bonjour"}""",
            """{"messages":[{"role":"user","content":"3+3?"},{"role":"assistant","content":"6"}]}""",
            """{"instruction":"1+1?","judgement":"j","score":2}"""), "p").OrThrow();
        Assert.Equal(["2+2?", "Translate.\n\nBonjour", "3+3?", "1+1?"], r.Select(p => p.Instruction));
        Assert.Equal("p:1: field \"context\" would be dropped: the instruction format has no place for it",
            OneProblem(SeedReader.ReadPrompts(Bytes("""{"instruction":"Summarise.","context":"text"}"""), "p")));
        Assert.Equal("p:1: a prompt line's \"messages\" hold one user message (optionally followed by its reference answer); a system message or earlier turns would be dropped",
            OneProblem(SeedReader.ReadPrompts(Bytes("""{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}"""), "p")));
    }

    [Fact]
    public void Judge_pairs_need_a_score_in_range()
    {
        var r = Assert.Single(SeedReader.ReadJudgePairs(Bytes("""{"instruction":"i","answer":"a","judgement":"ignored","score":2.5}"""), "j").OrThrow());
        Assert.Equal(2.5, r.Score);
        Assert.Equal("j:1: field \"score\" must be a number 0..5, got 9", OneProblem(SeedReader.ReadJudgePairs(Bytes("""{"instruction":"i","answer":"a","score":9}"""), "j")));
        Assert.Equal("j:1: missing field \"score\"", OneProblem(SeedReader.ReadJudgePairs(Bytes("""{"instruction":"i","answer":"a"}"""), "j")));
    }

    [Fact]
    public void Sft_examples_are_ift_then_eft_with_the_judge_template_filled_once()
    {
        var ift = Ift("""{"instruction":"Say hi","answer":"Hi!"}""");
        var eft = SeedReader.ReadEft(Bytes("""{"instruction":"{response}","answer":"4","judgement":"Fine.","score":5}"""), "e").OrThrow();
        var ex = SeedExamples.Sft(ift, eft, "Q: {instruction}\nA: {response}\nJudge it.");
        Assert.Equal([("Say hi", "Hi!", "f.jsonl:1"), ("Q: {response}\nA: 4\nJudge it.", "Fine.\nScore: 5", "e:1")], ex.Select(e => (e.Prompt, e.Completion, e.Source)));
        // The IFT example carries its conversation (for a chat template); the EFT judge prompt has none.
        Assert.Equal([new ChatTurn(ChatTurn.User, "Say hi")], ex[0].Context!);
        Assert.Null(ex[1].Context);
        Assert.Null(JudgePrompt.Problem("I={instruction} R={response}"));
        Assert.Equal("must contain {instruction} and {response}", JudgePrompt.Problem("no placeholders"));
    }
}
