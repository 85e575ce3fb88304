"""A self-contained GPU autoresearch experiment: a small byte-level GPT in torch.

Why: upstream autoresearch downloads data, a tokenizer and kernels at run time, so it
cannot run on an offline worker. This script needs only torch: it trains a GPT on a
deterministic synthetic corpus for TIME_BUDGET seconds of training (startup, warmup
and evaluation excluded, as upstream counts), evaluates bits per byte on a held-out
split, saves checkpoints/model.pt and prints upstream's end-of-run summary plus
tokens_per_second and gpu.

Environment: TIME_BUDGET (default 300) and AUTORESEARCH_EXPERIMENT_CONFIG (a JSON
file) with optional keys depth, n_embd, n_head, seq_len, batch_size, lr, text_mb, seed.
"""

import json
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

WARMUP_STEPS = 10


def load_config():
    path = os.environ.get("AUTORESEARCH_EXPERIMENT_CONFIG")
    config = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    defaults = dict(depth=6, n_embd=384, n_head=6, seq_len=256, batch_size=64,
                    lr=6e-4, text_mb=8, seed=1337)
    defaults.update({k: v for k, v in config.items() if k in defaults})
    return defaults


def corpus(size, seed):
    """Synthetic text with learnable structure: a random Markov chain over words."""
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
             for _ in range(2000)]
    follow = {w: [rng.choice(vocab) for _ in range(4)] for w in vocab}
    out, n, word = [], 0, vocab[0]
    while n < size:
        word = rng.choice(follow[word]) if rng.random() < 0.85 else rng.choice(vocab)
        piece = word + (". " if rng.random() < 0.07 else " ")
        out.append(piece)
        n += len(piece)
    return torch.tensor(list("".join(out).encode()[:size]), dtype=torch.long)


class Block(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        self.proj = nn.Linear(n_embd, n_embd, bias=False)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd, bias=False))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, depth, n_embd, n_head, seq_len):
        super().__init__()
        self.tok = nn.Embedding(256, n_embd)
        self.pos = nn.Embedding(seq_len, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(depth))
        self.ln = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, 256, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def batch(data, seq_len, batch_size, gen, device):
    ix = torch.randint(len(data) - seq_len - 1, (batch_size,), generator=gen)
    x = torch.stack([data[i:i + seq_len] for i in ix])
    y = torch.stack([data[i + 1:i + seq_len + 1] for i in ix])
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def main():
    t0 = time.time()
    budget = float(os.environ.get("TIME_BUDGET", "300"))
    cfg = load_config()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "none"
    torch.manual_seed(cfg["seed"])
    data = corpus(int(cfg["text_mb"] * 1024 * 1024), cfg["seed"])
    split = len(data) * 9 // 10
    train, val = data[:split], data[split:]
    model = GPT(cfg["depth"], cfg["n_embd"], cfg["n_head"], cfg["seq_len"]).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.1)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")
    gen = torch.Generator().manual_seed(cfg["seed"])
    tokens_per_step = cfg["seq_len"] * cfg["batch_size"]

    step, trained, t_start = 0, 0.0, None
    model.train()
    while trained < budget:
        if step == WARMUP_STEPS:
            if device == "cuda":
                torch.cuda.synchronize()
            t_start = time.time()
        x, y = batch(train, cfg["seq_len"], cfg["batch_size"], gen, device)
        with autocast:
            loss = F.cross_entropy(model(x).float().view(-1, 256), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if t_start is not None:
            if device == "cuda" and step % 10 == 0:
                torch.cuda.synchronize()
            trained = time.time() - t_start
        if step % 50 == 0:
            print(f"step {step:05d} | loss {loss.item():.4f} | {trained:.1f}s", end="\r", flush=True)
    if device == "cuda":
        torch.cuda.synchronize()
    trained = time.time() - t_start if t_start is not None else 0.0
    timed_steps = max(step - WARMUP_STEPS, 0)
    print()

    model.eval()
    nats, count = 0.0, 0
    seq = cfg["seq_len"]
    with torch.no_grad(), autocast:
        for start in range(0, len(val) - seq - 1, seq * cfg["batch_size"]):
            rows = [val[i:i + seq + 1] for i in range(start, min(start + seq * cfg["batch_size"], len(val) - seq - 1), seq)]
            chunk = torch.stack(rows).to(device)
            logits = model(chunk[:, :-1]).float()
            nats += F.cross_entropy(logits.reshape(-1, 256), chunk[:, 1:].reshape(-1), reduction="sum").item()
            count += chunk[:, 1:].numel()
    val_bpb = nats / (math.log(2) * count)

    os.makedirs("checkpoints", exist_ok=True)
    torch.save(model.state_dict(), os.path.join("checkpoints", "model.pt"))
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {trained:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print(f"peak_vram_mb:     {peak:.1f}")
    print("mfu_percent:      0.00")
    print(f"total_tokens_M:   {step * tokens_per_step / 1e6:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {params / 1e6:.1f}")
    print(f"depth:            {cfg['depth']}")
    print(f"tokens_per_second: {timed_steps * tokens_per_step / trained if trained > 0 else 0.0:.0f}")
    print(f"gpu:              {gpu}")


if __name__ == "__main__":
    main()
