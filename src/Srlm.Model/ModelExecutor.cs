using System.Collections.Concurrent;

namespace Srlm.Model;

/// <summary>A dedicated thread that runs model work in order. TorchSharp's dispose scopes and grad mode belong to a
/// thread, so callers never touch a model across an await: they hand the work here and await the result.
/// Work must return managed data (arrays, records), not tensors, unless the caller knows the tensor's scope.</summary>
public sealed class ModelExecutor : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread _thread;

    public string Name { get; }
    /// <summary>Items queued but not yet started (a natural signal for batching).</summary>
    public int Pending => _queue.Count;

    public ModelExecutor(string name)
    {
        Name = name;
        _thread = new Thread(Loop) { IsBackground = true, Name = $"model:{name}" };
        _thread.Start();
    }

    private void Loop()
    {
        TorchRuntime.Initialise();
        foreach (var work in _queue.GetConsumingEnumerable()) work();
    }

    /// <summary>True when called from this executor's thread.</summary>
    public bool IsCurrentThread => Thread.CurrentThread == _thread;

    public Task<T> RunAsync<T>(Func<T> work, CancellationToken cancel = default)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (cancel.IsCancellationRequested) { tcs.SetCanceled(cancel); return tcs.Task; }
        void Run()
        {
            if (cancel.IsCancellationRequested) { tcs.TrySetCanceled(cancel); return; }
            try { tcs.TrySetResult(work()); }
            catch (OperationCanceledException e) when (cancel.IsCancellationRequested) { tcs.TrySetCanceled(e.CancellationToken); }
            catch (Exception e) { tcs.TrySetException(e); }
        }
        if (IsCurrentThread) { Run(); return tcs.Task; } // re-entrant call: run inline rather than deadlock
        try { _queue.Add(Run, CancellationToken.None); }
        catch (InvalidOperationException) { throw new ObjectDisposedException(nameof(ModelExecutor), $"executor {Name} is shut down"); }
        return tcs.Task;
    }

    public Task RunAsync(Action work, CancellationToken cancel = default) => RunAsync(() => { work(); return true; }, cancel);

    /// <summary>Finishes queued work, then stops the thread.</summary>
    public void Dispose()
    {
        if (_queue.IsAddingCompleted) return;
        _queue.CompleteAdding();
        if (!IsCurrentThread) _thread.Join();
        _queue.Dispose();
    }
}
