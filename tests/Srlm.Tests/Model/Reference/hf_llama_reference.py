"""Independent reference for checkpoints srlm writes: reads config.json and model.safetensors the way
Hugging Face transformers' LlamaForCausalLM / Qwen2ForCausalLM interpret them (tensor names, [out, in]
linear weights, rotate_half rotary layout, RMSNorm in float32, grouped-query attention, q/k/v bias,
tied head) and computes the logits of the given token ids with PyTorch.

usage: hf_llama_reference.py CHECKPOINT_DIR INPUT_JSON OUTPUT_JSON
INPUT_JSON: {"ids": [[...], ...]}; OUTPUT_JSON gets {"logits": [B][T][V]}.
Needs PyTorch and NumPy (Debian: python3-torch); nothing else.
"""
import json
import math
import struct
import sys

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin:base + end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[info["dtype"]]).astype(np.float32)
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"])
    return out


def inv_freq(cfg, dim):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        factor, low, high = rs["factor"], rs.get("low_freq_factor", 1.0), rs.get("high_freq_factor", 4.0)
        orig = rs.get("original_max_position_embeddings", 8192)
        wave = 2 * math.pi / inv
        smooth = (orig / wave - low) / (high - low)
        scaled = torch.where(wave > orig / low, inv / factor, inv)
        mid = (wave <= orig / low) & (wave >= orig / high)
        inv = torch.where(mid, (1 - smooth) * inv / factor + smooth * inv, scaled)
    elif kind != "default":
        raise SystemExit(f"reference: rope kind {kind} not covered")
    return inv.float()


def rms_norm(x, w, eps):
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def forward(cfg, w, ids):
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads", heads)
    dim = cfg.get("head_dim") or hidden // heads
    eps = cfg.get("rms_norm_eps", 1e-6)
    bias = cfg.get("attention_bias", cfg.get("model_type") == "qwen2")
    b, t = ids.shape
    x = w["model.embed_tokens.weight"][ids]
    pos = torch.arange(t, dtype=torch.float32)
    freqs = torch.outer(pos, inv_freq(cfg, dim))
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((t, t), float("-inf")).triu(1)

    def lin(v, name, with_bias=False):
        out = v @ w[name + ".weight"].T
        return out + w[name + ".bias"] if with_bias else out

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj", bias).view(b, t, heads, dim).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj", bias).view(b, t, kv_heads, dim).transpose(1, 2)
        v = lin(h, p + "self_attn.v_proj", bias).view(b, t, kv_heads, dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dim) + causal, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, t, heads * dim)
        x = x + lin(o, p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        gate = lin(h, p + "mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(gate) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w.get("lm_head.weight")
    if head is None:
        if not cfg.get("tie_word_embeddings", False):
            raise SystemExit("reference: no lm_head.weight and tie_word_embeddings is false")
        head = w["model.embed_tokens.weight"]
    return x @ head.T


def main():
    folder, inp, outp = sys.argv[1:4]
    with open(f"{folder}/config.json") as f:
        cfg = json.load(f)
    weights = read_safetensors(f"{folder}/model.safetensors")
    with open(inp) as f:
        ids = torch.tensor(json.load(f)["ids"], dtype=torch.long)
    with torch.no_grad():
        logits = forward(cfg, weights, ids)
    with open(outp, "w") as f:
        json.dump({"logits": logits.tolist()}, f)


if __name__ == "__main__":
    main()
