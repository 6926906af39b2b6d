using TorchSharp;
using static TorchSharp.torch;

namespace Srlm.Model;

/// <summary>Keys and values of every layer for a batch, preallocated to a capacity and filled in place, so a
/// decode step allocates nothing for the cache. Owned by the caller and passed to the model explicitly.
/// All sequences of a batch share one length (left padding keeps them aligned).</summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] _keys;   // per layer (B, KvH, Capacity, D)
    private readonly Tensor[] _values; // per layer (B, KvH, Capacity, D)

    /// <summary>Positions filled so far (the same for every sequence).</summary>
    public long Length { get; private set; }
    public long Capacity { get; }
    public long BatchSize { get; }
    public int Layers => _keys.Length;

    public KvCache(LlamaConfig config, long batchSize, long capacity, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        Capacity = capacity;
        BatchSize = batchSize;
        _keys = new Tensor[config.NumHiddenLayers];
        _values = new Tensor[config.NumHiddenLayers];
        for (int i = 0; i < _keys.Length; i++)
        {
            _keys[i] = zeros([batchSize, config.NumKeyValueHeads, capacity, config.HeadDimension], dtype, device).DetachFromDisposeScope();
            _values[i] = zeros([batchSize, config.NumKeyValueHeads, capacity, config.HeadDimension], dtype, device).DetachFromDisposeScope();
        }
    }

    private KvCache(Tensor[] keys, Tensor[] values, long length, long capacity)
    {
        _keys = keys; _values = values; Length = length; Capacity = capacity; BatchSize = keys[0].shape[0];
    }

    /// <summary>Writes k, v (B, KvH, T, D) at positions [Length, Length+T) of one layer and returns views of
    /// everything cached so far including them: (B, KvH, Length+T, D). Call <see cref="Advance"/> once per forward.</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        long t = k.shape[2];
        if (Length + t > Capacity)
            throw new InvalidOperationException($"KV cache is full: capacity {Capacity}, have {Length}, adding {t}");
        using (var dst = _keys[layer].narrow(2, Length, t)) dst.copy_(k);
        using (var dst = _values[layer].narrow(2, Length, t)) dst.copy_(v);
        return (_keys[layer].narrow(2, 0, Length + t), _values[layer].narrow(2, 0, Length + t));
    }

    /// <summary>The whole (B, KvH, Capacity, D) key and value tensors of one layer, filled up to Length (the decode kernel writes into them).</summary>
    public (Tensor Keys, Tensor Values) Layer(int layer) => (_keys[layer], _values[layer]);

    /// <summary>Marks <paramref name="t"/> more positions as filled (called by the model after all layers appended).</summary>
    public void Advance(long t) => Length += t;

    /// <summary>A new cache where each sequence is repeated n times in a row (n samples share one prefill).</summary>
    public KvCache RepeatInterleave(long n, long? capacity = null)
    {
        using var index = arange(BatchSize, dtype: ScalarType.Int64).repeat_interleave(n);
        return Select(index, capacity);
    }

    /// <summary>A new cache holding the rows <paramref name="rows"/> (int64, any length, repeats allowed) of this one.</summary>
    public KvCache Select(Tensor rows, long? capacity = null)
    {
        long cap = capacity ?? Capacity;
        var keys = new Tensor[_keys.Length];
        var values = new Tensor[_keys.Length];
        using var index = rows.to(_keys[0].device);
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = Gather(_keys[i], index, cap);
            values[i] = Gather(_values[i], index, cap);
        }
        return new KvCache(keys, values, Length, cap);
    }

    private Tensor Gather(Tensor src, Tensor rows, long cap)
    {
        var shape = src.shape;
        var dst = zeros([rows.shape[0], shape[1], cap, shape[3]], src.dtype, src.device).DetachFromDisposeScope();
        using var scope = NewDisposeScope();
        var picked = src.narrow(2, 0, Length).index_select(0, rows);
        dst.narrow(2, 0, Length).copy_(picked);
        return dst;
    }

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
