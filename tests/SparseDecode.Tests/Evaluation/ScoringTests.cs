using SparseDecode.Evaluation;

namespace SparseDecode.Tests.Evaluation;

/// <summary>Exact match and RULER's partial credit on hand-made outputs.</summary>
public class ScoringTests
{
    [Fact]
    public void ExactMatchComparesTheStrippedAnswerLine()
    {
        var s = AnswerScorer.Score("passkey", " 12345", ["12345"], " 12345\n# next line of code");
        Assert.True(s.Exact);
        Assert.Equal(1.0, s.Score);
        Assert.Equal(0.0, AnswerScorer.Score("passkey", " 12345", ["12345"], " 12346\n").Score);
        // extra text on the answer line is not an exact match, even though the number is present
        var extra = AnswerScorer.Score("passkey", " 12345", ["12345"], " 12345. Remember it.");
        Assert.False(extra.Exact);
        Assert.Equal(0.0, extra.Score);
        Assert.Equal(1.0, extra.Partial);
        // only the first line counts
        Assert.Equal(0.0, AnswerScorer.Score("multikey", " 1234567", ["1234567"], " 7654321\n 1234567").Score);
    }

    [Fact]
    public void PartialCreditIsTheShareOfExpectedItemsPresent()
    {
        string[] items = ["1111111", "2222222", "3333333", "4444444"];
        string answer = " 1111111, 2222222, 3333333, 4444444";
        var all = AnswerScorer.Score("multivalue", answer, items, answer + "\n");
        Assert.True(all.Exact);
        Assert.Equal(1.0, all.Score);
        var half = AnswerScorer.Score("multivalue", answer, items, " 2222222, 1111111, 9999999\n");
        Assert.False(half.Exact);
        Assert.Equal(0.5, half.Score);
        var q = AnswerScorer.Score("multiquery", answer, items, " 4444444");
        Assert.Equal(0.25, q.Score);
        Assert.Equal(0.75, AnswerScorer.Score("vartrack", " ABCDE, FGHIJ, KLMNO, PQRST", ["ABCDE", "FGHIJ", "KLMNO", "PQRST"], " abcde, FGHIJ, KLMNO").Score);
        Assert.Equal(2 / 3.0, AnswerScorer.Score("cwe", " kalo, mine, ruto", ["kalo", "mine", "ruto"], " mine, kalo, sasa\nruto").Score, 12);
        Assert.Equal(0.0, AnswerScorer.Score("cwe", " kalo, mine, ruto", ["kalo", "mine", "ruto"], "").Score);
    }

    [Fact]
    public void GivesPartialCreditWhereRulerDoes()
    {
        Assert.Equal(["multivalue", "multiquery", "vartrack", "cwe"], RulerTasks.All.Where(RulerTasks.GivesPartialCredit));
    }
}
