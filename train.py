"""Train the 784-256-128-10 MLP on MNIST and write weights/mnist_mlp.safetensors.

    python train.py                          # the shipped recipe (seed 0)
    python train.py --epochs 1 --subset 2000 --out /tmp/smoke.safetensors
    python train.py --eval-only [--weights weights/mnist_mlp.safetensors]

The data is fetched and verified first if it is missing (see dataset.py).
5,000 training images are held out for validation; they pick the checkpoint.
The test set is only ever used to report the final accuracy.

Augmentation runs on whole batches on the training device: a random affine
transform and an elastic distortion, composed into one sampling grid, so one
`grid_sample` call moves every pixel once.
"""

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

import dataset
from model import MLP
from predict import DEFAULT_WEIGHTS, load_model, normalize


def augment(x: torch.Tensor, g: torch.Generator, elastic: float) -> torch.Tensor:
    """Random rotation, scale, shear and shift, plus a smooth elastic field, for a batch (B×1×28×28 in [0,1])."""
    b, dev = x.shape[0], x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, device=dev, generator=g) * (hi - lo) + lo

    angle = uniform(-12, 12) * math.pi / 180
    shear = uniform(-0.25, 0.25)
    sx, sy = uniform(0.85, 1.15), uniform(0.85, 1.15)
    tx, ty = uniform(-0.15, 0.15), uniform(-0.15, 0.15)  # in grid units: 1.0 is half the image, so ±2 px
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([sx * cos, sx * (shear * cos - sin), tx], 1),
        torch.stack([sy * sin, sy * (shear * sin + cos), ty], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if elastic > 0:
        # A coarse random field, upsampled smoothly: the same effect as Simard's Gaussian-smoothed noise, cheaper.
        coarse = torch.randn(b, 2, 4, 4, device=dev, generator=g) * (elastic * 2 / 28)
        field = F.interpolate(coarse, size=(28, 28), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def train(model, ema, optimizer, scheduler, x, y, args, g, epoch: int) -> float:
    """One epoch over (x, y) in shuffled batches; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(x), device=x.device, generator=g)
    total, steps = 0.0, 0
    batches = order.split(args.batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch}/{args.epochs}", leave=False, disable=args.quiet)
    for idx in bar:
        inputs = normalize(augment(x[idx], g, args.elastic))
        loss = F.cross_entropy(model(inputs), y[idx], label_smoothing=args.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update_parameters(model)
        total += loss.item()
        steps += 1
        if steps % 50 == 0:
            bar.set_postfix(loss=f"{total / steps:.4f}")
    return total / steps


@torch.inference_mode()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    """Accuracy of model on (x, y), with x as B×1×28×28 in [0,1]."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(normalize(x[i:i + batch_size]))
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum().item()
    return correct / len(x)


def ema_avg(decay: float):
    """Moving-average update whose decay ramps up, so short runs average over what they trained, not the init."""
    def avg(averaged: torch.Tensor, current: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        d = min(decay, (1 + n.item()) / (10 + n.item()))
        return averaged * d + current * (1 - d)
    return avg


def to_float(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    return images.to(device).unsqueeze(1).float().div_(255)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=60, help="number of epochs (default: 60)")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch size (default: 128)")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule (default: 3e-3)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default: 1e-4)")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout after each hidden layer (default: 0.1)")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing (default: 0.0)")
    parser.add_argument("--elastic", type=float, default=1.5, help="elastic distortion strength in pixels, 0 to turn off (default: 1.5)")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="decay of the weights' moving average (default: 0.999)")
    parser.add_argument("--val-size", type=int, default=5000, help="training images held out for validation (default: 5000)")
    parser.add_argument("--subset", type=int, default=0, help="train on only this many images, for smoke tests (default: 0, all)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="training device (default: auto)")
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS, help="weights file to write (default: weights/mnist_mlp.safetensors)")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate --weights on the test set (default: off)")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="weights to evaluate with --eval-only (default: weights/mnist_mlp.safetensors)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (default: off)")
    args = parser.parse_args()

    device = pick_device(args.device)
    test_x, test_y = dataset.load(train=False)
    test_x, test_y = to_float(test_x, device), test_y.to(device)

    if args.eval_only:
        model = load_model(args.weights).to(device)
        print(f"{args.weights}: test accuracy {evaluate(model, test_x, test_y):.2%} on {len(test_x):,} images")
        return

    torch.manual_seed(args.seed)
    g = torch.Generator(device=device).manual_seed(args.seed)
    images, labels = dataset.load(train=True)
    split = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    val_idx, train_idx = split[:args.val_size], split[args.val_size:]
    if args.subset:
        train_idx = train_idx[:args.subset]
    train_x, train_y = to_float(images[train_idx], device), labels[train_idx].to(device)
    val_x, val_y = to_float(images[val_idx], device), labels[val_idx].to(device)

    model = MLP(dropout=args.dropout).to(device)
    ema = AveragedModel(model, avg_fn=ema_avg(args.ema_decay))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch)

    best_acc, best_epoch, best_state, history = -1.0, 0, None, []
    start = time.perf_counter()
    epochs = tqdm(range(1, args.epochs + 1), desc="training", disable=args.quiet)
    for epoch in epochs:
        loss = train(model, ema, optimizer, scheduler, train_x, train_y, args, g, epoch)
        val_acc = evaluate(ema.module, val_x, val_y)
        history.append({"epoch": epoch, "loss": round(loss, 5), "val_acc": val_acc})
        epochs.set_postfix(loss=f"{loss:.4f}", val_acc=f"{val_acc:.2%}")
        if args.quiet:
            print(f"epoch {epoch}: loss {loss:.4f}, validation accuracy {val_acc:.2%}", flush=True)
        if val_acc >= best_acc:
            best_acc, best_epoch = val_acc, epoch
            best_state = {k: v.detach().clone() for k, v in ema.module.state_dict().items()}
    seconds = time.perf_counter() - start

    model.load_state_dict(best_state)
    test_acc = evaluate(model, test_x, test_y)
    print(f"best validation accuracy {best_acc:.2%} at epoch {best_epoch}; "
          f"test accuracy {test_acc:.2%}; {seconds:.0f} s on {device}")

    recipe = {k: v for k, v in vars(args).items() if k not in {"out", "eval_only", "weights", "quiet", "device"}}
    metadata = {
        "architecture": "MLP 784-256-128-10 (ReLU)",
        "test_accuracy": f"{test_acc:.4f}",
        "val_accuracy": f"{best_acc:.4f}",
        "best_epoch": str(best_epoch),
        "epochs": str(args.epochs),
        "seed": str(args.seed),
        "train_images": str(len(train_x)),
        "train_seconds": f"{seconds:.1f}",
        "device": str(device),
        "torch_version": torch.__version__,
        "data_md5": json.dumps(dataset.IDX_MD5),
        "recipe": json.dumps(recipe),
        "history": json.dumps(history),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.cpu().contiguous() for k, v in best_state.items()}, str(args.out), metadata=metadata)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
