namespace Srlm.Generator;

/// <summary>Agreement of predicted scores with true ones: pairwise accuracy over answers of one instruction
/// with different true scores (a tie or a missing prediction counts as wrong), Spearman's rho (average
/// ranks for ties) and Kendall's tau-b over the answers with a prediction.</summary>
public static class Agreement
{
    public static double PairwiseAccuracy(IReadOnlyList<(string Group, double True, double? Predicted)> items)
    {
        int pairs = 0, right = 0;
        foreach (var g in items.GroupBy(i => i.Group))
        {
            var list = g.ToList();
            for (int a = 0; a < list.Count; a++)
                for (int b = a + 1; b < list.Count; b++)
                {
                    if (list[a].True == list[b].True) continue;
                    pairs++;
                    if (list[a].Predicted is { } pa && list[b].Predicted is { } pb && Math.Sign(pa - pb) == Math.Sign(list[a].True - list[b].True)) right++;
                }
        }
        return pairs == 0 ? double.NaN : (double)right / pairs;
    }

    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        if (x.Count < 2) return double.NaN;
        return Pearson(Ranks(x), Ranks(y));
    }

    public static double KendallTauB(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        long concordant = 0, discordant = 0, tiesX = 0, tiesY = 0;
        for (int i = 0; i < x.Count; i++)
            for (int j = i + 1; j < x.Count; j++)
            {
                int sx = Math.Sign(x[i] - x[j]), sy = Math.Sign(y[i] - y[j]);
                if (sx == 0 && sy == 0) continue;
                if (sx == 0) tiesX++;
                else if (sy == 0) tiesY++;
                else if (sx == sy) concordant++;
                else discordant++;
            }
        double denom = Math.Sqrt((double)(concordant + discordant + tiesX) * (concordant + discordant + tiesY));
        return denom == 0 ? double.NaN : (concordant - discordant) / denom;
    }

    private static double[] Ranks(IReadOnlyList<double> v)
    {
        var order = Enumerable.Range(0, v.Count).OrderBy(i => v[i]).ToArray();
        var ranks = new double[v.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
            double avg = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) ranks[order[k]] = avg;
            i = j + 1;
        }
        return ranks;
    }

    private static double Pearson(double[] a, double[] b)
    {
        double ma = a.Average(), mb = b.Average(), num = 0, da = 0, db = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - ma) * (b[i] - mb); da += (a[i] - ma) * (a[i] - ma); db += (b[i] - mb) * (b[i] - mb); }
        return da == 0 || db == 0 ? double.NaN : num / Math.Sqrt(da * db);
    }
}
