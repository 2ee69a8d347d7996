#!/usr/bin/python3
"""LoRA SFT speed of PyTorch on CPU for the same Llama-family checkpoint, batch and sequence length
that bench/train_vs_torch.sh gives `edgevl train sft`. Plain PyTorch (Debian's python3-torch; no
transformers/PEFT needed): HF LlamaForCausalLM's forward in float32, LoRA on q/k/v/o/gate/up/down,
AdamW over the adapter, loss on every token. Prints tokens/s over the timed steps."""
import argparse, json, math, struct, sys, time

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", f"{name}: only float32 checkpoints ({t['dtype']})"
        a, b = t["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data, dtype=np.float32, count=(b - a) // 4, offset=a).copy()).view(t["shape"])
    return out


class Lora(torch.nn.Module):
    def __init__(self, w, r, alpha):
        super().__init__()
        self.w = w
        self.a = torch.nn.Parameter(torch.empty(r, w.shape[1]).uniform_(-1 / math.sqrt(w.shape[1]), 1 / math.sqrt(w.shape[1])))
        self.b = torch.nn.Parameter(torch.zeros(w.shape[0], r))
        self.s = alpha / r

    def forward(self, x):
        return F.linear(x, self.w) + self.s * F.linear(F.linear(x, self.a), self.b)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), -1) * sin


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rank", type=int, default=8)
    o = ap.parse_args()
    torch.set_num_threads(o.threads)
    torch.manual_seed(0)
    c = json.load(open(o.model + "/config.json"))
    W = load_safetensors(o.model + "/model.safetensors")
    D, H, Hkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    Dh = c.get("head_dim") or D // H
    eps = c["rms_norm_eps"]
    theta = c.get("rope_theta") or c.get("rope_parameters", {}).get("rope_theta", 10000.0)
    L = c["num_hidden_layers"]
    proj = {}
    for l in range(L):
        for p in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            proj[(l, p)] = Lora(W[f"model.layers.{l}.{p}.weight"], o.rank, 2 * o.rank)
    params = [q for m in proj.values() for q in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    emb = W["model.embed_tokens.weight"]
    head = W.get("lm_head.weight", emb)
    T = o.seq
    inv = 1.0 / (theta ** (torch.arange(0, Dh, 2, dtype=torch.float32) / Dh))
    ang = torch.outer(torch.arange(T, dtype=torch.float32), inv)
    cos, sin = torch.cat((ang, ang), -1).cos(), torch.cat((ang, ang), -1).sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    ids = torch.randint(0, emb.shape[0], (o.batch, T))

    def step():
        x = emb[ids]
        for l in range(L):
            h = rms(x, W[f"model.layers.{l}.input_layernorm.weight"], eps)
            q = proj[(l, "self_attn.q_proj")](h).view(o.batch, T, H, Dh).transpose(1, 2)
            k = proj[(l, "self_attn.k_proj")](h).view(o.batch, T, Hkv, Dh).transpose(1, 2)
            v = proj[(l, "self_attn.v_proj")](h).view(o.batch, T, Hkv, Dh).transpose(1, 2)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            k = k.repeat_interleave(H // Hkv, 1)
            v = v.repeat_interleave(H // Hkv, 1)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(Dh) + mask, -1) @ v
            x = x + proj[(l, "self_attn.o_proj")](a.transpose(1, 2).reshape(o.batch, T, H * Dh))
            h = rms(x, W[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
            x = x + proj[(l, "mlp.down_proj")](F.silu(proj[(l, "mlp.gate_proj")](h)) * proj[(l, "mlp.up_proj")](h))
        logits = F.linear(rms(x, W["model.norm.weight"], eps), head)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(o.steps):
        step()
    dt = time.perf_counter() - t0
    print(json.dumps({"tool": "pytorch", "torch": torch.__version__, "threads": o.threads, "batch": o.batch, "seq": T,
                      "steps": o.steps, "seconds": round(dt, 3), "tokens_per_second": round(o.batch * T * o.steps / dt, 1)}))


if __name__ == "__main__":
    sys.exit(main())
