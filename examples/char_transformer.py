"""A tiny character-level transformer (GPT-style, in the manner of the well-known minimal
implementations) trained on a few Shakespeare sonnets, with breaklab's Monitor added: the lines
marked "breaklab". Each evaluation is an "epoch" for the Monitor.

    python examples/char_transformer.py                   # 300 steps on CPU, under a minute
    breaklab doctor runs/examples/char_transformer       # then: healthy, or which fault
"""
import argparse
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from breaklab import Monitor  # breaklab

TEXT = Path(__file__).with_name("data") / "sonnets.txt"


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Linear(n_embd, n_embd)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size)).bool())

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (k.size(-1) ** 0.5)
        att = att.masked_fill(~self.mask[:T, :T], float("-inf"))
        att = self.drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.proj(y)


class Block(nn.Module):
    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, block_size, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(),
                                 nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size, block_size=32, n_embd=64, n_head=4, n_layer=2, dropout=0.1):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx):
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        return self.head(self.ln_f(self.blocks(x)))


def get_batch(data, block_size, batch_size, device):
    ix = torch.randint(len(data) - block_size, (batch_size,))
    x = torch.stack([data[i:i + block_size] for i in ix])
    y = torch.stack([data[i + 1:i + block_size + 1] for i in ix])
    return x.to(device), y.to(device)


@torch.no_grad()
def estimate(model, data, args, device, batches=10):
    model.eval()
    losses, correct, total = [], 0, 0
    for _ in range(batches):
        x, y = get_batch(data, args.block_size, args.batch_size, device)
        logits = model(x)
        losses.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)).item())
        correct += (logits.argmax(-1) == y).sum().item()
        total += y.numel()
    model.train()
    return sum(losses) / len(losses), correct / total


def main():
    p = argparse.ArgumentParser(description="tiny character-level transformer")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-interval", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/examples/char_transformer", help="folder for breaklab's metrics")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    text = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]

    model = TinyGPT(len(chars), block_size=args.block_size).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    mon = Monitor(model, optimizer, out=args.out)  # breaklab

    model.train()
    for step in range(args.steps):
        xb, yb = get_batch(train_data, args.block_size, args.batch_size, device)
        logits = model(xb)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), yb.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        mon.before_step()  # breaklab
        optimizer.step()
        mon.after_step(loss, outputs=logits, targets=yb)  # breaklab

        if (step + 1) % args.eval_interval == 0 or step + 1 == args.steps:
            val_loss, val_acc = estimate(model, val_data, args, device)
            mon.epoch(test_acc=val_acc, test_loss=val_loss)  # breaklab
            print(f"step {step + 1}: train loss {loss.item():.3f}, val loss {val_loss:.3f}, val acc {val_acc:.3f}")
    mon.close()  # breaklab


if __name__ == "__main__":
    main()
