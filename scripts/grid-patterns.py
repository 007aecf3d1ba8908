#!/usr/bin/env python3
"""Blend patterns for the held-out grid (scripts/grid.sh), written as 28x28 greyscale PNGs with
the standard library only: vertical stripes, and one image of another data set (a Fashion-MNIST
sneaker blended into MNIST models, an MNIST digit into Fashion-MNIST ones): "blends of other
images", none of which fstgate's probe bank contains.

    grid-patterns.py OUT_DIR FASHION_DIR MNIST_DIR
"""
import gzip
import struct
import sys
import zlib


def png(path, pixels, size=28):
    raw = b"".join(b"\x00" + bytes(pixels[r * size:(r + 1) * size]) for r in range(size))
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def first_image_of(directory, label):
    with gzip.open(f"{directory}/train-labels-idx1-ubyte.gz") as f:
        labels = f.read()[8:]
    index = labels.index(label)
    with gzip.open(f"{directory}/train-images-idx3-ubyte.gz") as f:
        data = f.read()
    return data[16 + index * 784:16 + (index + 1) * 784]


out, fashion, mnist = sys.argv[1:4]
png(f"{out}/stripes.png", [255 if (i % 28) % 4 < 2 else 0 for i in range(784)])
png(f"{out}/sneaker.png", first_image_of(fashion, 7))
png(f"{out}/digit.png", first_image_of(mnist, 3))
