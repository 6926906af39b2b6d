using System.Text;
using Srlm.Training;

namespace Srlm.Tests.Training;

public sealed class SeedDataTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("srlm-seed-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Write(string name, string text) => WriteBytes(name, Encoding.UTF8.GetBytes(text));

    private string WriteBytes(string name, byte[] bytes)
    {
        var p = Path.Combine(_dir, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    [Fact]
    public void Good_ift_and_eft_files_read_with_their_sources()
    {
        var ift = Write("ift.jsonl", "{\"instruction\":\"Say hi\",\"answer\":\"Hi!\"}\n\n{\"instruction\":\"2+2?\",\"answer\":\"4\",\"extra\":1}\n");
        var eft = Write("eft.jsonl", "{\"instruction\":\"2+2?\",\"answer\":\"4\",\"judgement\":\"Correct and brief.\",\"score\":5}\n");
        var a = SeedData.ReadIft(ift);
        Assert.Equal(2, a.Count);
        Assert.Equal($"{ift}:3", a[1].Source);
        var e = SeedData.ReadEft(eft);
        var ex = e[0].ToExample("Q: {instruction}\nA: {response}\nJudge it.");
        Assert.Equal("Q: 2+2?\nA: 4\nJudge it.", ex.Prompt);
        Assert.Equal("Correct and brief.\nScore: 5", ex.Completion);
    }

    [Theory]
    [InlineData("{\"instruction\":\"x\"}", "missing field \"answer\"")]
    [InlineData("{\"instruction\":\"x\",\"answer\":\"  \"}", "field \"answer\" is empty")]
    [InlineData("{\"instruction\":3,\"answer\":\"y\"}", "field \"instruction\" must be a string, got Number")]
    [InlineData("[1,2]", "expected a JSON object, got Array")]
    [InlineData("{\"instruction\":\"x\",", "not valid JSON")]
    public void Bad_ift_records_give_one_line_errors_with_file_and_line(string badLine, string reason)
    {
        var path = Write("ift.jsonl", "{\"instruction\":\"ok\",\"answer\":\"ok\"}\n" + badLine + "\n");
        var e = Assert.Throws<SeedDataException>(() => SeedData.ReadIft(path));
        var error = Assert.Single(e.Errors);
        Assert.StartsWith($"{path}:2: {reason}", error);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Non_utf8_line_is_rejected_with_its_line()
    {
        var good = Encoding.UTF8.GetBytes("{\"instruction\":\"ok\",\"answer\":\"ok\"}\n");
        var bad = new byte[] { (byte)'{', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)'}', (byte)'\n' };
        var path = WriteBytes("ift.jsonl", [.. good, .. good, .. bad]);
        var e = Assert.Throws<SeedDataException>(() => SeedData.ReadIft(path));
        Assert.Equal($"{path}:3: not valid UTF-8", Assert.Single(e.Errors));
    }

    [Theory]
    [InlineData("6", "field \"score\" = 6 is out of range 0..5")]
    [InlineData("-1", "field \"score\" = -1 is out of range 0..5")]
    [InlineData("4.5", "field \"score\" must be an integer 0..5, got 4.5")]
    [InlineData("\"4\"", "field \"score\" must be an integer 0..5, got \"4\"")]
    public void Eft_score_out_of_range_is_rejected(string score, string reason)
    {
        var path = Write("eft.jsonl", $"{{\"instruction\":\"i\",\"answer\":\"a\",\"judgement\":\"j\",\"score\":{score}}}\n");
        var e = Assert.Throws<SeedDataException>(() => SeedData.ReadEft(path));
        Assert.Equal($"{path}:1: {reason}", Assert.Single(e.Errors));
    }

    [Fact]
    public void Eft_judgement_whose_score_line_disagrees_with_the_score_is_rejected()
    {
        var path = Write("eft.jsonl", "{\"instruction\":\"i\",\"answer\":\"a\",\"judgement\":\"Good.\\nScore: 3\",\"score\":4}\n");
        var e = Assert.Throws<SeedDataException>(() => SeedData.ReadEft(path));
        Assert.Equal($"{path}:1: judgement ends in \"Score: 3\" but field \"score\" = 4", Assert.Single(e.Errors));
    }

    [Fact]
    public void Every_bad_record_is_listed_and_the_message_counts_the_rest()
    {
        var path = Write("eft.jsonl", "{}\n{\"instruction\":\"i\",\"answer\":\"a\",\"judgement\":\"j\",\"score\":5}\n{\"instruction\":\"i\"}\n");
        var e = Assert.Throws<SeedDataException>(() => SeedData.ReadEft(path));
        // Line 1 misses 4 fields, line 3 misses 3; the good line 2 is not reported.
        Assert.Equal(7, e.Errors.Count);
        Assert.All(e.Errors, x => Assert.DoesNotContain($"{path}:2:", x));
        Assert.Equal($"{path}:1: missing field \"instruction\" (and 6 more bad records)", e.Message);
    }

    [Fact]
    public void Template_placeholders_are_filled_once_and_required()
    {
        Assert.Equal("I={response} R=x", SeedData.FillJudgeTemplate("I={instruction} R={response}", "{response}", "x"));
        Assert.Throws<ArgumentException>(() => SeedData.FillJudgeTemplate("no placeholders", "a", "b"));
    }
}
