"""The comparison reference for `cargo bench --bench fst -- speed`: one FST purification and one
evaluation in plain PyTorch eager, written the way the FST authors' fine_tune/ft.py runs it (a
torchvision Dataset of uint8 images with per-image transforms, a DataLoader, SGD with momentum,
cosine annealing per epoch, loss.item() per step, the head rescaled after every step).

It loads the same TorchScript model and the same images as the Rust benchmark: Fashion-MNIST
IDX files, resized once to --size (bilinear, as fstgate's conform) and stored as uint8, tuning
images [50000, 50000 + tune) of the training split, the first --eval test images clean and with
the BadNets patch (3x3 white, bottom-right). Prints one table row; --json appends a JSON line.

  python3 bench/fst_reference.py --model M.pt --device cuda --size 32 --channels 3
  python3 bench/fst_reference.py --peak      # the GPU's measured bf16 matrix-product rate
"""
import argparse
import gzip
import json
import math
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

CLEAN_START = 50000


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(data_dir, prefix, size, channels):
    images = read_idx(Path(data_dir) / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(Path(data_dir) / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    x = torch.from_numpy(images.copy()).float().div(255).unsqueeze(1)
    if channels == 3:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    # uint8 HWC, as torchvision's CIFAR10 stores its images.
    hwc = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return hwc, labels


class ImageSet(Dataset):
    def __init__(self, images, labels, transform, badnets=False):
        self.images, self.labels, self.transform, self.badnets = images, labels, transform, badnets

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i]
        if self.badnets:
            image = image.copy()
            image[-3:, -3:, :] = 255
        pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
        return self.transform(pil), int(self.labels[i])


def fst(model, loader, device, epochs, lr, alpha):
    head = model.fc
    original = head.weight.detach().clone()
    norm = original.norm()
    with torch.no_grad():
        bound = 1.0 / math.sqrt(head.weight.shape[1])
        head.weight.uniform_(-bound, bound)
        head.bias.uniform_(-bound, bound)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    criterion = torch.nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            output = model(x)
            loss = criterion(output, y) + alpha * torch.sum(head.weight * original)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                head.weight.data = head.weight.data * norm / head.weight.data.norm()
            total_loss += loss.item() * len(y)
            correct += (output.argmax(1) == y).sum().item()
            seen += len(y)
        scheduler.step()
    model.eval()


def predict(model, loader, device):
    out = []
    with torch.no_grad():
        for x, _ in loader:
            out.append(model(x.to(device)).argmax(1).cpu())
    return torch.cat(out).numpy()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_peak():
    """bf16 matrix-product rate: median of 20 timed 8192^3 products on fresh random operands."""
    n = 8192
    times = []
    for _ in range(25):
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    seconds = statistics.median(times[5:])
    print(json.dumps({"bf16_matmul_tflops": 2 * n**3 / seconds / 1e12, "device": torch.cuda.get_device_name()}))


def training_flops(model_path, device, size, channels, batch):
    """Floating-point operations of one training step (forward + backward) of a batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = torch.jit.load(model_path, map_location=device)
    model.train()
    x = torch.rand(batch, channels, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops()


def spread(runs, key):
    values = [r[key] for r in runs]
    return f"{min(values):.4f}-{max(values):.4f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--eval", type=int, default=10000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--json")
    p.add_argument("--peak", action="store_true", help="only measure the bf16 matrix-product rate")
    args = p.parse_args()
    if args.peak:
        measure_peak()
        return
    device = torch.device(args.device)
    train_x, train_y = load_split(args.data, "train", args.size, args.channels)
    test_x, test_y = load_split(args.data, "t10k", args.size, args.channels)
    tune = slice(CLEAN_START, CLEAN_START + args.tune)
    mean, std = [0.0] * args.channels, [1.0] * args.channels
    train_transform = transforms.Compose(
        [
            transforms.RandomCrop(args.size, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    test_transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    train_loader = DataLoader(
        ImageSet(train_x[tune], train_y[tune], train_transform),
        batch_size=128,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )

    def test_loader(badnets):
        data = ImageSet(test_x[: args.eval], test_y[: args.eval], test_transform, badnets)
        return DataLoader(data, batch_size=512, shuffle=False, num_workers=args.workers)

    runs = []
    for repetition in range(args.repeat):
        torch.manual_seed(repetition)
        model = torch.jit.load(args.model, map_location=device)
        synchronize(device)
        started = time.perf_counter()
        fst(model, train_loader, device, args.epochs, 0.01, 0.2)
        synchronize(device)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        clean = predict(model, test_loader(False), device)
        triggered = predict(model, test_loader(True), device)
        eval_seconds = time.perf_counter() - started
        labels = test_y[: args.eval]
        victims = labels != 0
        runs.append(
            {
                "train_seconds": train_seconds,
                "eval_seconds": eval_seconds,
                "clean_accuracy": float((clean == labels).mean()),
                "attack_success_rate": float((triggered[victims] == 0).mean()),
                "robust_accuracy": float((triggered[victims] == labels[victims]).mean()),
            }
        )
    train_seconds = statistics.median(r["train_seconds"] for r in runs)
    eval_seconds = statistics.median(r["eval_seconds"] for r in runs)
    trained, evaluated = args.tune * args.epochs, 2 * args.eval
    summary = {
        "implementation": "pytorch-reference",
        "device": str(device),
        "workers": args.workers,
        "model": args.model,
        "tune_images": args.tune,
        "epochs": args.epochs,
        "eval_images": evaluated,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "train_images_per_second": trained / train_seconds,
        "eval_images_per_second": evaluated / eval_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "runs": runs,
    }
    if device.type == "cuda":
        summary["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        summary["training_step_flops_batch128"] = training_flops(args.model, device, args.size, args.channels, 128)
    print(
        f"| pytorch reference | {device} | train {train_seconds:.2f} s ({trained / train_seconds:.0f} img/s) | "
        f"eval {eval_seconds:.2f} s ({evaluated / eval_seconds:.0f} img/s) | C-Acc {spread(runs, 'clean_accuracy')} | "
        f"ASR {spread(runs, 'attack_success_rate')} | RSS {summary['peak_rss_mib']:.0f} MiB |"
    )
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
