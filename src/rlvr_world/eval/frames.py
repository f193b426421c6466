"""Frame strips (PNG) and animations (GIF) that put predicted video beside the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

LABEL_WIDTH = 120


def _labelled_row(label: str, frames: np.ndarray, gap: int) -> Image.Image:
    """One row: a text label, then the frames [T, H, W, 3] left to right."""
    T, H, W, _ = frames.shape
    row = Image.new("RGB", (LABEL_WIDTH + T * (W + gap), H + gap), "white")
    ImageDraw.Draw(row).text((4, H // 2 - 6), label, fill="black")
    for t, frame in enumerate(frames):
        row.paste(Image.fromarray(frame), (LABEL_WIDTH + t * (W + gap), 0))
    return row


def frame_strip(rows: dict[str, np.ndarray], out: Path, scale: int = 2, gap: int = 2) -> Path:
    """Save a grid: one labelled row per entry of `rows` (label -> uint8 frames [T, H, W, 3])."""
    images = [_labelled_row(label, np.asarray(frames), gap) for label, frames in rows.items()]
    width = max(im.width for im in images)
    grid = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        grid.paste(im, (0, y))
        y += im.height
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    grid.save(out)
    return Path(out)


def side_by_side_gif(columns: dict[str, np.ndarray], out: Path, scale: int = 3, ms_per_frame: int = 400) -> Path:
    """Animate labelled videos side by side (label -> uint8 frames [T, H, W, 3], same T)."""
    labels = list(columns)
    T, H, W, _ = np.asarray(columns[labels[0]]).shape
    frames = []
    for t in range(T):
        canvas = Image.new("RGB", (len(labels) * (W + 4), H + 14), "white")
        draw = ImageDraw.Draw(canvas)
        for i, label in enumerate(labels):
            canvas.paste(Image.fromarray(np.asarray(columns[label])[t]), (i * (W + 4), 14))
            draw.text((i * (W + 4) + 2, 1), label[:10], fill="black")
        frames.append(canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST))
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=ms_per_frame, loop=0)
    return Path(out)
