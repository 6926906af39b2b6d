using TorchSharp.Modules;
using F = TorchSharp.torch.nn.functional;

// Field names equal Hugging Face checkpoint keys, so the parameter names are the safetensors keys:
// model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ..., model.norm.weight, lm_head.weight.
#pragma warning disable IDE1006 // naming: fields are checkpoint keys

// Over 300 lines on purpose: the whole transformer (attention, MLP, norms, layers, head) laid out as Hugging Face's modeling code is, so its checkpoint keys map one to one.
namespace Srlm.Model;

/// <summary>y = x / sqrt(mean(x^2) + eps) * weight, statistics in float32, y in the weight's dtype.</summary>
public sealed class LlamaRMSNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // (C)
    private readonly Scalar _eps;      // held for the module's life: an implicit Scalar can be finalized mid-call

    public LlamaRMSNorm(long size, double eps, Device device) : base(nameof(LlamaRMSNorm))
    {
        weight = new Parameter(ones(size, device: device));
        _eps = eps.ToScalar();
        Eps = eps;
        RegisterComponents();
    }

    internal Parameter Weight => weight;
    internal double Eps { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x.dtype == ScalarType.Float32 ? x : x.to(ScalarType.Float32);
        // h * h rather than square(): the same values (pow 2 is computed as a product) without an implicit Scalar.
        var inv = h.mul(h).mean([-1L], keepdim: true).add_(_eps).rsqrt_(); // (..., 1)
        var normed = h.mul(inv);
        // The output takes the weight's dtype: the input of the next matmul in a bfloat16/float16 model, whose
        // residual stream stays float32.
        if (normed.dtype != weight.dtype) normed = normed.to(weight.dtype);
        // Out of place: an in-place mul_ would make autograd keep a copy of normed for the weight's gradient.
        var y = normed.mul(weight);
        GC.KeepAlive(_eps);
        return y.MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _eps.Dispose();
        base.Dispose(disposing);
    }
}

/// <summary>SwiGLU: down_proj(silu(gate_proj(x)) * up_proj(x)).</summary>
public sealed class LlamaMLP : nn.Module<Tensor, Tensor>
{
    private readonly Linear gate_proj; // (I, C)
    private readonly Linear up_proj;   // (I, C)
    private readonly Linear down_proj; // (C, I)

    public LlamaMLP(LlamaConfig c, Device device) : base(nameof(LlamaMLP))
    {
        gate_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device);
        up_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device);
        down_proj = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: false, device: device);
        RegisterComponents();
    }

    internal (Linear Gate, Linear Up, Linear Down) Projections => (gate_proj, up_proj, down_proj);

    public override Tensor forward(Tensor x)
    {
        using var g = TensorMath.Linear(gate_proj, x);
        using var u = TensorMath.Linear(up_proj, x);
        if (!is_grad_enabled())
        {
            using var a = F.silu(g, inplace: true);
            using var h = a.mul_(u);
            return TensorMath.Linear(down_proj, h);
        }
        // With autograd, in-place silu_ and mul_ make it keep copies of the overwritten values for the backward.
        using var act = F.silu(g);
        using var prod = act.mul(u);
        return down_proj.forward(prod);
    }
}

/// <summary>Grouped-query attention with rotary embeddings and an optional KV cache.</summary>
public sealed class LlamaAttention : nn.Module
{
    private readonly Linear q_proj; // (H*D, C), bias when attention_bias
    private readonly Linear k_proj; // (KvH*D, C)
    private readonly Linear v_proj; // (KvH*D, C)
    private readonly Linear o_proj; // (C, H*D)
    private readonly int _heads, _kvHeads, _headDim, _layer;
    private readonly double _dropout;

    public LlamaAttention(LlamaConfig c, int layer, Device device) : base(nameof(LlamaAttention))
    {
        _heads = c.NumAttentionHeads; _kvHeads = c.NumKeyValueHeads; _headDim = c.HeadDimension; _layer = layer;
        _dropout = c.AttentionDropout;
        q_proj = nn.Linear(c.HiddenSize, _heads * _headDim, hasBias: c.AttentionBias, device: device);
        k_proj = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: c.AttentionBias, device: device);
        v_proj = nn.Linear(c.HiddenSize, _kvHeads * _headDim, hasBias: c.AttentionBias, device: device);
        o_proj = nn.Linear(_heads * _headDim, c.HiddenSize, hasBias: false, device: device);
        RegisterComponents();
    }

    internal (Linear Q, Linear K, Linear V, Linear O) Projections => (q_proj, k_proj, v_proj, o_proj);

    /// <summary>Whether an inference forward with a KV cache attends through <see cref="CacheAttention"/> (on by
    /// default; see <see cref="LlamaForCausalLM.UseAttentionKernel"/>).</summary>
    internal bool UseKernel { get; set; } = true;

    /// <param name="x">(B, T, C)</param>
    /// <param name="mask">bool (B|1, 1, T, S), true = may attend; null with <paramref name="causal"/> = plain causal</param>
    /// <param name="signedSin">sin with its first half negated (<see cref="Rope.SignedSin"/>), like cos (B, 1, T, D)</param>
    public Tensor forward(Tensor x, Tensor cos, Tensor signedSin, Tensor? mask, bool causal, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var q = TensorMath.Linear(q_proj, x).view(b, t, _heads, _headDim).transpose(1, 2);   // (B, H, T, D)
        var k = TensorMath.Linear(k_proj, x).view(b, t, _kvHeads, _headDim).transpose(1, 2); // (B, KvH, T, D)
        var v = TensorMath.Linear(v_proj, x).view(b, t, _kvHeads, _headDim).transpose(1, 2); // (B, KvH, T, D)
        q = Rope.Apply(q, cos, signedSin);
        k = Rope.Apply(k, cos, signedSin);
        if (cache is not null)
        {
            long past = cache.Length; // advanced by the model after every layer appended
            (k, v) = cache.Append(_layer, k, v);                                  // (B, KvH, S, D)
            if (UseKernel && !training && CacheAttention.Applies(q, cache))
                return TensorMath.Linear(o_proj, CacheAttention.Run(q, cache, _layer, mask, past)).MoveToOuterDisposeScope();
        }
        if (_kvHeads != _heads)
        {
            int rep = _heads / _kvHeads;
            long s = k.shape[2];
            k = k.unsqueeze(2).expand(b, _kvHeads, rep, s, _headDim).reshape(b, _heads, s, _headDim);
            v = v.unsqueeze(2).expand(b, _kvHeads, rep, s, _headDim).reshape(b, _heads, s, _headDim);
        }
        var y = MetaFallback.Attention(q, k, v, mask, training ? _dropout : 0.0, causal && mask is null); // (B, H, T, D)
        y = y.transpose(1, 2).reshape(b, t, _heads * _headDim);                                                    // (B, T, H*D)
        return TensorMath.Linear(o_proj, y).MoveToOuterDisposeScope();
    }
}

public sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMLP mlp;
    private readonly LlamaRMSNorm input_layernorm;
    private readonly LlamaRMSNorm post_attention_layernorm;
    private readonly double _residualDropout;

    public LlamaDecoderLayer(LlamaConfig c, int layer, Device device) : base(nameof(LlamaDecoderLayer))
    {
        self_attn = new LlamaAttention(c, layer, device);
        mlp = new LlamaMLP(c, device);
        input_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device);
        post_attention_layernorm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device);
        _residualDropout = c.ResidualDropout;
        RegisterComponents();
    }

    internal LlamaAttention Attention => self_attn;
    internal LlamaMLP Mlp => mlp;
    internal LlamaRMSNorm InputNorm => input_layernorm;
    internal LlamaRMSNorm PostAttentionNorm => post_attention_layernorm;

    public Tensor forward(Tensor x, Tensor cos, Tensor signedSin, Tensor? mask, bool causal, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        var a = self_attn.forward(input_layernorm.forward(x), cos, signedSin, mask, causal, cache);
        if (training && _residualDropout > 0) a = F.dropout(a, _residualDropout, true);
        var h = TensorMath.Add(x, a);
        var m = mlp.forward(post_attention_layernorm.forward(h));
        if (training && _residualDropout > 0) m = F.dropout(m, _residualDropout, true);
        return TensorMath.Add(h, m).MoveToOuterDisposeScope();
    }
}

/// <summary>The decoder stack without the head: HF's LlamaModel (keys under "model.").</summary>
public sealed class LlamaModel : nn.Module
{
    private readonly Embedding embed_tokens; // (V, C)
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly LlamaRMSNorm norm;

    public LlamaModel(LlamaConfig c, Device device) : base(nameof(LlamaModel))
    {
        embed_tokens = nn.Embedding(c.VocabSize, c.HiddenSize, device: device);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, c.NumHiddenLayers).Select(i => new LlamaDecoderLayer(c, i, device)).ToArray());
        norm = new LlamaRMSNorm(c.HiddenSize, c.RmsNormEps, device);
        RegisterComponents();
    }

    internal Parameter EmbedWeight => embed_tokens.weight!;
    internal ModuleList<LlamaDecoderLayer> Layers => layers;
    internal LlamaRMSNorm Norm => norm;

    public Tensor Embed(Tensor inputIds) => MetaFallback.Embedding(embed_tokens, inputIds);

    /// <param name="h">(B, T, C) embeddings; in a bfloat16/float16 model the residual stream runs in float32 (each
    /// sublayer's output is added to it in float32), as in the decode kernel.</param>
    public Tensor forward(Tensor h, Tensor cos, Tensor signedSin, Tensor? mask, bool causal, KvCache? cache)
    {
        using var scope = NewDisposeScope();
        if (h.dtype is ScalarType.BFloat16 or ScalarType.Float16) h = h.to(ScalarType.Float32);
        foreach (var layer in layers) h = layer.forward(h, cos, signedSin, mask, causal, cache);
        return norm.forward(h).MoveToOuterDisposeScope();
    }
}

/// <summary>A Llama-family causal language model (llama, mistral, qwen2; tied or untied head).
/// Parameter names equal Hugging Face safetensors keys.</summary>
public sealed class LlamaForCausalLM : nn.Module<Tensor, Tensor>
{
    private readonly LlamaModel model;
    private readonly Linear? lm_head; // (V, C); absent when tie_word_embeddings

    public LlamaConfig Config { get; }

    internal LlamaModel Decoder => model;
    /// <summary>(V, C): lm_head, or the embedding when tied.</summary>
    internal Parameter HeadWeight => lm_head?.weight ?? model.EmbedWeight;

    // (P, 2D) float32: [cos | signed sin] (Rope.SignedSin) for positions 0..P-1, grown on demand; not a parameter
    // or buffer (HF stores none).
    private Tensor? _ropeTable;

    /// <param name="device">where every parameter is created and stays (the CPU when null); see <see cref="Device"/>.</param>
    public LlamaForCausalLM(LlamaConfig config, Device? device = null) : base(nameof(LlamaForCausalLM))
    {
        Config = config.Validate();
        device ??= CPU;
        model = new LlamaModel(config, device);
        if (!config.TieWordEmbeddings) lm_head = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: device);
        RegisterComponents();
    }

    /// <summary>The device the weights live on. Every tensor the model code creates for a forward (positions, masks,
    /// the RoPE table, KV caches, sampling inputs, log-prob batches) is created there.</summary>
    public Device Device => HeadWeight.device;

    /// <summary>Builds a model with Hugging Face's initialisation (normal(0, 0.02) weights, zero biases, unit norms),
    /// drawn from a generator seeded with <paramref name="seed"/>, so the same seed gives the same weights.
    /// The draws come from a CPU generator and are copied to <paramref name="device"/>, so the weights do not depend on it.</summary>
    public static LlamaForCausalLM Create(LlamaConfig config, long seed, double initStd = 0.02, Device? device = null)
    {
        var m = new LlamaForCausalLM(config, device);
        using var g = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var (name, p) in m.named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(1.0);
            else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
            else
            {
                using var r = randn(p.shape, ScalarType.Float32, device: CPU, generator: g);
                r.mul_(initStd);
                p.copy_(r);
            }
        }
        return m;
    }

    /// <summary>Logits for every position: (B, T) ids -> (B, T, V).</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds);

    /// <summary>
    /// The full forward pass.
    /// </summary>
    /// <param name="inputIds">(B, T) int64 token ids.</param>
    /// <param name="attentionMask">(B, P+T) with 1 for real tokens and 0 for (left) padding, covering the cached
    /// positions too; null when no sequence is padded.</param>
    /// <param name="positionIds">(B, T); default: from the mask (cumsum - 1), or P..P+T-1 without a mask.</param>
    /// <param name="cache">keys/values of earlier positions; the new ones are appended and the cache advanced.</param>
    /// <param name="lastOnly">return logits of the last position only: (B, 1, V).</param>
    /// <param name="rows">(N) int64 indexes into the B*T positions (row-major): return logits of those positions only,
    /// (N, V). The head is the largest matmul of a small model with a large vocabulary; log-probs need it only where
    /// a completion token is predicted.</param>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KvCache? cache = null, bool lastOnly = false, Tensor? rows = null)
    {
        using var scope = NewDisposeScope();
        long b = inputIds.shape[0], t = inputIds.shape[1];
        long past = cache?.Length ?? 0;
        long total = past + t;
        if (attentionMask is not null && (attentionMask.shape[0] != b || attentionMask.shape[1] != total))
            throw new ArgumentException($"attention mask must be ({b}, {total}), got ({string.Join(", ", attentionMask.shape)})");
        if (cache is not null && t == 1 && DecodeStep.Applies(this, inputIds, cache))
            return DecodeStep.Run(this, inputIds, attentionMask, positionIds, cache).MoveToOuterDisposeScope(); // (B, 1, V) float32

        if (positionIds is null)
        {
            if (attentionMask is not null)
            {
                using var one = 1.ToScalar();
                using var zero = 0.ToScalar();
                var pos = attentionMask.to(ScalarType.Int64).cumsum(1).sub_(one).clamp_min_(zero); // (B, P+T)
                positionIds = pos.narrow(1, past, t);
            }
            else positionIds = arange(past, total, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0).expand(b, t);
        }

        var h = model.Embed(inputIds); // (B, T, C)
        var (cos, signedSin) = CosSin(positionIds, h.dtype, total);

        Tensor? mask = null;
        bool causal = false;
        if (attentionMask is null)
        {
            if (t > 1 && past == 0) causal = true;
            else if (t > 1) mask = CausalMask(past, t, inputIds.device);
        }
        else
        {
            var valid = attentionMask.to(ScalarType.Bool).view(b, 1, 1, total); // (B, 1, 1, S)
            if (t == 1) mask = valid;
            else
            {
                var causalMask = CausalMask(past, t, inputIds.device);     // (1, 1, T, S)
                var diag = DiagonalMask(past, t, inputIds.device);         // (1, 1, T, S): a padded query sees itself, never NaN
                mask = valid.bitwise_and(causalMask).bitwise_or_(diag); // bool: the same as logical_and / logical_or
            }
        }

        var hidden = model.forward(h, cos, signedSin, mask, causal, cache); // (B, T, C)
        cache?.Advance(t);
        if (lastOnly) hidden = hidden.narrow(1, t - 1, 1);
        else if (rows is not null) hidden = MetaFallback.IndexSelect(hidden.reshape(b * t, hidden.shape[2]), rows); // (N, C)
        var logits = TensorMath.Linear(hidden, lm_head?.weight ?? model.EmbedWeight); // (B, T|1, V) or (N, V)
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>cos and signed sin (B, 1, T, D) for the positions; from a cached table unless the scaling depends on length.</summary>
    private (Tensor Cos, Tensor SignedSin) CosSin(Tensor positionIds, ScalarType dtype, long total)
    {
        if (Config.RopeScaling.Kind == "dynamic")
        {
            var (cos, sin) = Rope.CosSin(Config, positionIds, dtype, total);
            return (cos, Rope.SignedSin(sin));
        }
        var ropeTable = RopeTable(total, positionIds.device);
        long b = positionIds.shape[0], t = positionIds.shape[1], d = Config.HeadDimension;
        var rows = MetaFallback.IndexSelect(ropeTable, positionIds.reshape(-1)).view(b, 1, t, 2 * d); // (B, 1, T, 2D)
        if (dtype != ScalarType.Float32) rows = rows.to(dtype);
        return (rows.narrow(-1, 0, d), rows.narrow(-1, d, d));
    }

    /// <summary>The (P, 2D) float32 table of [cos | signed sin] rows for positions 0..P-1 (P >= <paramref name="total"/>),
    /// built on first use and grown on demand; not for "dynamic" scaling, whose frequencies depend on the length.</summary>
    internal Tensor RopeTable(long total, Device device)
    {
        if (_ropeTable is null || _ropeTable.shape[0] < total || _ropeTable.device_type != device.type || _ropeTable.device_index != device.index)
        {
            long size = Math.Max(Math.Max(total, Config.MaxPositionEmbeddings), (_ropeTable?.shape[0] ?? 0) * 2);
            using var scope = NewDisposeScope();
            var pos = arange(0, size, dtype: ScalarType.Int64, device: device).unsqueeze(0); // (1, P)
            var (c, s) = Rope.CosSin(Config, pos, ScalarType.Float32, size);                  // (1, 1, P, D)
            var table = cat([c, Rope.SignedSin(s)], -1).view(size, -1).contiguous();
            _ropeTable?.Dispose();
            _ropeTable = table.DetachFromDisposeScope();
        }
        return _ropeTable;
    }

    /// <summary>Whether a decode step of a few rows (one new token each, no grad, eval mode, CPU) may run in
    /// <see cref="DecodeKernel"/> instead of libtorch; on by default. The two compute the same values in float32 up to
    /// summation order; tests and the benchmark switch it off to compare.</summary>
    public bool UseDecodeKernel { get; set; } = true;

    /// <summary>Whether inference forwards with a KV cache attend through <see cref="CacheAttention"/>, which gives a
    /// token the same keys and values however its prompt is laid out in the cache (on by default); off, they use
    /// libtorch's scaled_dot_product_attention. Tests switch it off to compare.</summary>
    public bool UseAttentionKernel
    {
        get => model.Layers.All(l => l.Attention.UseKernel);
        set { foreach (var l in model.Layers) l.Attention.UseKernel = value; }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) { _ropeTable?.Dispose(); _ropeTable = null; }
        base.Dispose(disposing);
    }

    private static Tensor CausalMask(long past, long t, Device device)
    {
        var q = arange(past, past + t, dtype: ScalarType.Int64, device: device).unsqueeze(1); // (T, 1)
        var k = arange(0, past + t, dtype: ScalarType.Int64, device: device).unsqueeze(0);    // (1, S)
        return k.le(q).view(1, 1, t, past + t);
    }

    private static Tensor DiagonalMask(long past, long t, Device device)
    {
        var q = arange(past, past + t, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var k = arange(0, past + t, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        return k.eq(q).view(1, 1, t, past + t);
    }

    /// <summary>Parameter names and shapes, one "name [d0, d1]" per line, in registration order.</summary>
    public string ShapeListing() => string.Join("\n", named_parameters().Select(p => $"{p.name} [{string.Join(", ", p.parameter.shape)}]")) + "\n";

    public long ParameterCount() => parameters().Sum(p => p.numel());
}
