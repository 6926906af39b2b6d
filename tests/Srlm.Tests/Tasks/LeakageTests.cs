namespace Srlm.Tests.Tasks;

public class LeakageTests
{
    [Fact]
    public void Leakage_counter_finds_planted_held_out_instructions_once_each()
    {
        var set = SeedBuilder.Build(new LettersTask(), 1);
        var heldOut = set.HeldOutInstructions;
        var texts = set.Ift.Select(r => r.Instruction + "\n" + r.Answer)
            .Concat(set.Eft.Select(r => set.JudgeTemplate.Replace("{instruction}", r.Instruction).Replace("{response}", r.Answer)))
            .Concat(set.Prompts.Select(r => r.Instruction))
            .ToList();
        var leak = new Leakage(heldOut);
        Assert.Equal(0, leak.Count(texts));

        texts.Add(heldOut[3]);                                                                   // a stored prompt, verbatim
        texts.Add(set.JudgeTemplate.Replace("{instruction}", heldOut[10]).Replace("{response}", "x")); // inside a judge prompt
        texts.Add("<user>\n" + heldOut[20].ToUpperInvariant().Replace(" ", "   ") + "\n<assistant>"); // other case and spacing
        texts.Add(heldOut[3]);                                                                   // the same leak twice counts once
        Assert.Equal(3, leak.Count(texts));
        Assert.Equal(
            new[] { heldOut[3], heldOut[10], heldOut[20] }.Select(Leakage.Normalize).Order(),
            leak.Find(texts).Order());
    }

    [Fact]
    public void A_prefix_of_a_held_out_instruction_is_not_a_leak()
    {
        var ins = "Pick 5 letters from acfkmpt in alphabetical order, from c to t.";
        Assert.Equal(0, Leakage.Count([ins], [ins[..^1], "Pick 5 letters from acfkmpt", "from c to t."]));
        Assert.Equal(1, Leakage.Count([ins, "What is 12 + 30?"], ["x" + ins + "y"]));
    }

    [Fact]
    public void Overlapping_patterns_are_all_found()
    {
        // Aho-Corasick output links: "he" ends inside "she" and "hers" overlaps both.
        Assert.Equal(3, Leakage.Count(["he", "she", "hers"], ["ushers"]));
        Assert.Equal(1, Leakage.Count(["abab"], ["aabab"]));
    }
}
