namespace Srlm.Training;

/// <summary>Linear warm-up from 0 to the peak, then cosine decay from the peak to a floor at the last step.</summary>
public sealed record LearningRateSchedule(double Peak, double Floor, int WarmupSteps, int TotalSteps)
{
    /// <summary>The learning rate used by optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step));
        if (WarmupSteps > 0 && step < WarmupSteps) return Peak * (step + 1) / WarmupSteps;
        var decaySteps = TotalSteps - WarmupSteps - 1;
        if (decaySteps <= 0) return Peak;
        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / decaySteps);
        return Floor + (Peak - Floor) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
