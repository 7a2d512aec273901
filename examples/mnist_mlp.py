"""An MLP on MNIST with Adam, a DataLoader and optional mixed precision, the way many course
projects write it, with breaklab's Monitor added: the lines marked "breaklab".

    python examples/mnist_mlp.py                  # bundled 4,000/1,000-digit sample, 2 epochs
    python examples/mnist_mlp.py --amp            # float16 autocast with a GradScaler
    breaklab doctor runs/examples/mnist_mlp      # then: healthy, or which fault
"""
import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from breaklab import Monitor  # breaklab


def get_args():
    p = argparse.ArgumentParser(description="MLP on MNIST with Adam")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--amp", action="store_true", help="float16 autocast with a GradScaler")
    p.add_argument("--max-steps", type=int, default=0, help="stop each epoch after this many steps (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="torchvision root with MNIST/raw (default: the bundled sample)")
    p.add_argument("--out", default="runs/examples/mnist_mlp", help="folder for breaklab's metrics")
    return p.parse_args()


def mnist_root(data_dir):
    """torchvision's root folder: yours, or breaklab's bundled sample (unpacked once into a cache)."""
    if data_dir:
        return data_dir
    from breaklab.canonical_setup import unpacked_sample_root, verify_sample
    return str(unpacked_sample_root(verify_sample()))


def evaluate(model, loader, loss_fn, device):
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += loss_fn(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return total_loss / n, correct / n


def main():
    args = get_args()
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    root = mnist_root(args.data_dir)
    train_set = datasets.MNIST(root, train=True, transform=tf)
    test_set = datasets.MNIST(root, train=False, transform=tf)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)

    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, args.hidden),
        nn.BatchNorm1d(args.hidden),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(args.hidden, 10),
    ).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp)
    mon = Monitor(model, optimizer, out=args.out, scaler=scaler)  # breaklab

    for epoch in range(args.epochs):
        model.train()
        for step, (x, y) in enumerate(train_loader):
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            with torch.autocast(device.type, dtype=torch.float16, enabled=args.amp):
                logits = model(x)
                loss = loss_fn(logits, y)
            scaler.scale(loss).backward()
            mon.before_step()  # breaklab
            scaler.step(optimizer)
            scaler.update()
            mon.after_step(loss, outputs=logits, targets=y)  # breaklab
            if args.max_steps and step + 1 >= args.max_steps:
                break

        test_loss, test_acc = evaluate(model, test_loader, loss_fn, device)
        mon.epoch(test_acc=test_acc, test_loss=test_loss)  # breaklab
        print(f"epoch {epoch + 1}: train loss {loss.item():.4f}, test loss {test_loss:.4f}, test acc {test_acc:.3f}")
    mon.close()  # breaklab


if __name__ == "__main__":
    main()
