#!/usr/bin/env python3
"""Draws the avatars devices show in XMPP clients (XEP-0153).

Run once at dev time, from anywhere: `python3 draw.py` (needs Pillow:
`pip install pillow`). It rewrites the PNGs next to it, which the gateway
embeds with `include_bytes!` (crates/fieldbridge-xmpp/src/gateway/card.rs
chooses one per device). Flat style: a white glyph on a coloured square,
drawn 4x and scaled down for smooth edges, stored as a small palette PNG.
Clients crop avatars to circles or rounded squares, so every glyph stays
well inside the central circle.
"""

import math
import os

from PIL import Image, ImageDraw

SIZE = 96
SCALE = 4
S = SIZE * SCALE
WHITE = (255, 255, 255, 255)
HERE = os.path.dirname(os.path.abspath(__file__))


def canvas(colour):
    img = Image.new("RGBA", (S, S), colour)
    return img, ImageDraw.Draw(img)


def u(x):
    """Units of a 96-pixel grid, in drawing pixels."""
    return round(x * SCALE)


def thermometer():
    img, d = canvas((229, 83, 60, 255))
    cx = 48
    # Tube and bulb, white, then the mercury in the background colour's
    # dark shade so it reads as filled.
    d.rounded_rectangle([u(cx - 8), u(16), u(cx + 8), u(62)], radius=u(8), fill=WHITE)
    d.ellipse([u(cx - 15), u(52), u(cx + 15), u(82)], fill=WHITE)
    mercury = (176, 42, 30, 255)
    d.rounded_rectangle([u(cx - 3.5), u(34), u(cx + 3.5), u(64)], radius=u(3.5), fill=mercury)
    d.ellipse([u(cx - 9), u(58), u(cx + 9), u(76)], fill=mercury)
    # Scale ticks beside the tube.
    for i, y in enumerate(range(22, 56, 8)):
        length = 9 if i % 2 == 0 else 6
        d.rounded_rectangle(
            [u(cx + 12), u(y - 1.5), u(cx + 12 + length), u(y + 1.5)], radius=u(1.5), fill=WHITE
        )
    return img


def meter():
    img, d = canvas((240, 160, 20, 255))
    cx, cy, r = 48, 58, 30
    width = 7
    # The dial: a thick arc over the upper half, ticks inside it.
    d.arc([u(cx - r), u(cy - r), u(cx + r), u(cy + r)], 180, 360, fill=WHITE, width=u(width))
    for deg in range(180, 361, 30):
        a = math.radians(deg)
        r1, r2 = r - width - 3, r - width - 9
        d.line(
            [
                (u(cx + r1 * math.cos(a)), u(cy + r1 * math.sin(a))),
                (u(cx + r2 * math.cos(a)), u(cy + r2 * math.sin(a))),
            ],
            fill=WHITE,
            width=u(3),
        )
    # The needle, pointing up and right, and its hub.
    a = math.radians(300)
    tip = (cx + (r - 12) * math.cos(a), cy + (r - 12) * math.sin(a))
    d.line([(u(cx), u(cy)), (u(tip[0]), u(tip[1]))], fill=WHITE, width=u(5))
    d.ellipse([u(tip[0] - 2.5), u(tip[1] - 2.5), u(tip[0] + 2.5), u(tip[1] + 2.5)], fill=WHITE)
    d.ellipse([u(cx - 7), u(cy - 7), u(cx + 7), u(cy + 7)], fill=WHITE)
    # A base bar under the dial, like a meter's display.
    d.rounded_rectangle([u(cx - 22), u(cy + 12), u(cx + 22), u(cy + 19)], radius=u(3.5), fill=WHITE)
    return img


def switch():
    img, d = canvas((46, 160, 90, 255))
    cx, cy, r = 48, 50, 24
    width = 8
    # The power symbol: a ring open at the top, and a bar through the gap.
    d.arc([u(cx - r), u(cy - r), u(cx + r), u(cy + r)], 300, 600, fill=WHITE, width=u(width))
    # Round the ring's ends.
    for deg in (300, 240):
        a = math.radians(deg)
        mid = r - width / 2
        x, y = cx + mid * math.cos(a), cy + mid * math.sin(a)
        d.ellipse([u(x - width / 2), u(y - width / 2), u(x + width / 2), u(y + width / 2)], fill=WHITE)
    d.rounded_rectangle([u(cx - 4), u(cy - 32), u(cx + 4), u(cy + 2)], radius=u(4), fill=WHITE)
    return img


def sensor():
    img, d = canvas((74, 105, 189, 255))
    cx, cy = 48, 48
    # A point that radiates: a dot and two arcs on each side.
    d.ellipse([u(cx - 8), u(cy - 8), u(cx + 8), u(cy + 8)], fill=WHITE)
    for r in (19, 31):
        box = [u(cx - r), u(cy - r), u(cx + r), u(cy + r)]
        d.arc(box, 140, 220, fill=WHITE, width=u(6))
        d.arc(box, -40, 40, fill=WHITE, width=u(6))
        # Round the arcs' ends.
        for deg in (140, 220, -40, 40):
            a = math.radians(deg)
            mid = r - 3
            x, y = cx + mid * math.cos(a), cy + mid * math.sin(a)
            d.ellipse([u(x - 3), u(y - 3), u(x + 3), u(y + 3)], fill=WHITE)
    return img


def gateway():
    img, d = canvas((55, 71, 79, 255))
    cx, cy = 48, 48
    # A hub and the devices around it.
    outer = [(48, 18), (74, 63), (22, 63)]
    for x, y in outer:
        d.line([(u(cx), u(cy)), (u(x), u(y))], fill=WHITE, width=u(5))
    for x, y in outer:
        d.ellipse([u(x - 9), u(y - 9), u(x + 9), u(y + 9)], fill=WHITE)
    d.ellipse([u(cx - 14), u(cy - 14), u(cx + 14), u(cy + 14)], fill=WHITE)
    hole = (55, 71, 79, 255)
    d.ellipse([u(cx - 7), u(cy - 7), u(cx + 7), u(cy + 7)], fill=hole)
    return img


def save(name, img):
    small = img.resize((SIZE, SIZE), Image.LANCZOS).convert("RGB")
    small = small.quantize(colors=32, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path = os.path.join(HERE, f"{name}.png")
    small.save(path, optimize=True)
    print(f"{path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    for name, draw in [
        ("thermometer", thermometer),
        ("meter", meter),
        ("switch", switch),
        ("sensor", sensor),
        ("gateway", gateway),
    ]:
        save(name, draw())
