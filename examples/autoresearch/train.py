"""A CPU autoresearch experiment in the standard library only.

Why: upstream autoresearch needs CUDA and downloads; this script lets the worker,
the coordinator, the tests and the demo run a real experiment anywhere in well under
a second. It trains an n-gram byte model (counts with additive smoothing) on a
deterministic synthetic text, evaluates bits per byte on a held-out split, writes a
checkpoint and prints upstream's end-of-run summary (`---`, `val_bpb:` ...).

Environment: TIME_BUDGET (seconds of training, default 300) and
AUTORESEARCH_EXPERIMENT_CONFIG (a JSON file) with optional keys:
  order   context length in bytes, 1..4 (default 2)
  alpha   additive smoothing, > 0 (default 0.05)
  text_kb size of the synthetic corpus in KiB (default 256)
  seed    corpus seed (default 1337)
"""

import array
import json
import math
import os
import random
import sys
import time

WORDS = (
    "the of and to in is was that for on as with by he at from his it an were are "
    "which this be or has had not but first one their its new after who they have "
    "her she two been other when there all during into school time may years more "
    "most only over city some world would where later up such used many can state "
    "about national out known university united then made model train loss data"
).split()


def load_config():
    path = os.environ.get("AUTORESEARCH_EXPERIMENT_CONFIG")
    config = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    order = int(config.get("order", 2))
    alpha = float(config.get("alpha", 0.05))
    if not 1 <= order <= 4 or not alpha > 0:
        sys.exit("config: order must be 1..4 and alpha > 0")
    return order, alpha, int(config.get("text_kb", 256)), int(config.get("seed", 1337))


def corpus(size, seed):
    rng = random.Random(seed)
    out, n, prev = [], 0, rng.choice(WORDS)
    while n < size:
        # A word tends to follow its predecessor's neighbours: structure to learn.
        i = (WORDS.index(prev) + rng.choice((1, 2, 3, rng.randrange(len(WORDS))))) % len(WORDS)
        word = WORDS[i]
        sep = ". " if rng.random() < 0.08 else " "
        out.append(word + sep)
        n += len(word) + len(sep)
        prev = word
    return "".join(out).encode()[:size]


def main():
    t0 = time.time()
    budget = float(os.environ.get("TIME_BUDGET", "300"))
    order, alpha, text_kb, seed = load_config()
    data = corpus(text_kb * 1024, seed)
    split = len(data) * 9 // 10
    train, val = data[:split], data[split:]

    counts, totals = {}, {}
    t_train = time.time()
    steps, chunk = 0, 4096
    for start in range(order, len(train), chunk):
        for i in range(start, min(start + chunk, len(train))):
            ctx = train[i - order:i]
            row = counts.get(ctx)
            if row is None:
                row = counts[ctx] = array.array("I", bytes(4 * 256))
            row[train[i]] += 1
            totals[ctx] = totals.get(ctx, 0) + 1
        steps += 1
        if steps % 16 == 0:
            print(f"step {steps:05d} | contexts {len(counts)}", end="\r", flush=True)
        if time.time() - t_train >= budget:
            break
    training_seconds = time.time() - t_train
    print()

    bits = 0.0
    for i in range(order, len(val)):
        ctx = val[i - order:i]
        row = counts.get(ctx)
        hits = row[val[i]] if row is not None else 0
        p = (hits + alpha) / (totals.get(ctx, 0) + alpha * 256)
        bits -= math.log2(p)
    val_bpb = bits / (len(val) - order)

    os.makedirs("checkpoints", exist_ok=True)
    with open(os.path.join("checkpoints", "model.bin"), "wb") as f:
        for ctx in sorted(counts):
            f.write(ctx)
            counts[ctx].tofile(f)

    params = len(counts) * 256
    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {time.time() - t0:.1f}")
    print("peak_vram_mb:     0.0")
    print("mfu_percent:      0.00")
    print(f"total_tokens_M:   {len(train) / 1e6:.1f}")
    print(f"num_steps:        {steps}")
    print(f"num_params_M:     {params / 1e6:.1f}")
    print(f"depth:            {order}")


if __name__ == "__main__":
    main()
