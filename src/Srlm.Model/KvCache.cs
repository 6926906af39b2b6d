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

    /// <param name="device">the model's device (<see cref="LlamaForCausalLM.Device"/>): the cache lives beside the weights.</param>
    public KvCache(LlamaConfig config, long batchSize, long capacity, ScalarType dtype, Device device)
    {
        Capacity = capacity;
        BatchSize = batchSize;
        _keys = new Tensor[config.NumHiddenLayers];
        _values = new Tensor[config.NumHiddenLayers];
        for (int i = 0; i < _keys.Length; i++)
        {
            _keys[i] = zeros([batchSize, config.NumKeyValueHeads, capacity, config.HeadDimension], dtype, device: device).DetachFromDisposeScope();
            _values[i] = zeros([batchSize, config.NumKeyValueHeads, capacity, config.HeadDimension], dtype, device: device).DetachFromDisposeScope();
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
        using var index = arange(BatchSize, dtype: ScalarType.Int64, device: _keys[0].device).repeat_interleave(n);
        return Select(index, capacity);
    }

    /// <summary>A new cache holding the rows <paramref name="rows"/> (int64, any length, repeats allowed) of this one,
    /// with its first <paramref name="length"/> positions (all filled ones by default: a causal model's keys and values
    /// of a token prefix do not depend on what follows it).</summary>
    public KvCache Select(Tensor rows, long? capacity = null, long? length = null)
    {
        long cap = capacity ?? Capacity;
        long len = length ?? Length;
        if (len < 0 || len > Length || len > cap)
            throw new ArgumentOutOfRangeException(nameof(length), $"can keep 0..{Math.Min(Length, cap)} positions, asked for {len}");
        var keys = new Tensor[_keys.Length];
        var values = new Tensor[_keys.Length];
        using var index = rows.to(_keys[0].device);
        for (int i = 0; i < keys.Length; i++)
        {
            keys[i] = Gather(_keys[i], index, cap, len);
            values[i] = Gather(_values[i], index, cap, len);
        }
        return new KvCache(keys, values, len, cap);
    }

    private static Tensor Gather(Tensor src, Tensor rows, long cap, long length)
    {
        var shape = src.shape;
        var dst = zeros([rows.shape[0], shape[1], cap, shape[3]], src.dtype, device: src.device).DetachFromDisposeScope();
        using var scope = NewDisposeScope();
        var picked = src.narrow(2, 0, length).index_select(0, rows);
        dst.narrow(2, 0, length).copy_(picked);
        return dst;
    }

    /// <summary>Copies positions [0, <paramref name="src"/>.Length) of rows <paramref name="srcRows"/> of
    /// <paramref name="src"/> into rows <paramref name="dstRows"/> of this cache (int64 indexes of equal length);
    /// this cache's other positions are left as they are. Length does not change (see <see cref="SetLength"/>).</summary>
    internal void CopyRows(KvCache src, Tensor srcRows, Tensor dstRows)
    {
        long len = src.Length;
        if (len > Capacity) throw new InvalidOperationException($"KV cache is full: capacity {Capacity}, copying {len} positions");
        using var scope = NewDisposeScope();
        var from = srcRows.to(_keys[0].device);
        var to = dstRows.to(_keys[0].device);
        for (int i = 0; i < _keys.Length; i++)
        {
            _keys[i].narrow(2, 0, len).index_copy_(0, to, src._keys[i].narrow(2, 0, len).index_select(0, from));
            _values[i].narrow(2, 0, len).index_copy_(0, to, src._values[i].narrow(2, 0, len).index_select(0, from));
        }
    }

    /// <summary>Marks the first <paramref name="length"/> positions as filled (after <see cref="CopyRows"/>; positions a
    /// row did not get stay zero and must be masked out by the caller).</summary>
    internal void SetLength(long length)
    {
        if (length < 0 || length > Capacity) throw new ArgumentOutOfRangeException(nameof(length), $"length must be in 0..{Capacity}, got {length}");
        Length = length;
    }

    /// <summary>Bytes the key and value tensors hold (the whole capacity).</summary>
    public long Bytes => _keys.Sum(k => k.numel() * k.ElementSize) * 2;

    public void Dispose()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
