"""A learned value function for web pages: P(the episode ends in success | instruction, page).

Logistic regression over hashed sparse features of the page listing, trained on the collected
trajectories: every page recorded in an episode (before and after each action) is labelled
with whether that episode finally succeeded. Nothing is written per task; the features are
the same for every task:

- each item's role and state (``checkbox:checked``, ``textbox:focused``, ``cover:last_reward=1.00``);
- whether an item's text or value equals, contains or is contained in one of the task's
  field values (the instruction's arguments: a username, a button label), and whether an
  input named like a field (``#username``) holds that field's value;
- the same facts for neighbouring items (a checkbox and the label text beside it);
- the instruction's words crossed with the items' state features, so that weights can depend
  on what the instruction asks ("submit", "focus", "select").

Weights are saved as safetensors with a JSON config, never pickled.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import torch

_LINE = re.compile(r"^\[(?P<id>[^\]]+)\] (?P<role>\S+)(?: #(?P<hid>\S+))?(?: '(?P<text>.*?)')?(?P<rest>(?: \S+)*)$")
_VALUE = re.compile(r"value='(.*)'")
_WORD = re.compile(r"[a-z]+")


def _match(text: str, values: Sequence[str]) -> str:
    text = text.casefold()
    if not text:
        return ""
    for v in values:
        if text == v:
            return "eq"
    for v in values:
        if v and (v in text or text in v):
            return "sub"
    return "no"


def line_features(line: str, values: Sequence[str], keys: Sequence[str] = ()) -> list[str]:
    """State features of one page item (see the module docstring). `keys[i]` names the field
    of `values[i]` (e.g. "username"), to tell whether an input holds its own field's value."""
    m = _LINE.match(line)
    if m is None:
        return ["unparsed"]
    role, text, rest = m.group("role"), m.group("text") or "", m.group("rest") or ""
    hid = (m.group("hid") or "").casefold()
    feats = [f"role={role}"]
    value = _VALUE.search(rest)
    for flag in ("checked", "unchecked", "focused"):
        if f" {flag}" in f" {rest}":
            feats.append(f"{role}:{flag}")
    if "last_reward=" in rest:
        feats.append(f"{role}:{rest.strip()}")
    if text:
        feats.append(f"{role}:text_{_match(text, values)}")
    if value is not None:
        v = value.group(1)
        feats.append(f"{role}:value_{'empty' if not v else _match(v, values)}")
        if v and hid:  # the input named like a field holds that field's value (#username <- username)
            own = [val for key, val in zip(keys, values) if key and (key in hid or hid in key)]
            if own:
                feats.append(f"{role}:value_{'own' if v.casefold() in own else 'other'}_field")
    return feats


def page_features(utterance: str, fields: Iterable, lines: Sequence[str]) -> dict[str, float]:
    """Hashed-feature counts of one (instruction, page) pair, before hashing."""
    pairs = [(str(k).casefold().replace(" ", "_"), str(v).casefold()) for k, v in fields if str(v)]
    keys, values = [k for k, _ in pairs], [v for _, v in pairs]
    per_line = [line_features(line, values, keys) for line in lines]
    counts: dict[str, float] = {"bias": 1.0}

    def add(name: str) -> None:
        counts[name] = counts.get(name, 0.0) + 1.0

    words = sorted(set(_WORD.findall(utterance.casefold())))[:24]
    for i, feats in enumerate(per_line):
        for f in feats:
            add(f)
            if ":" in f:
                for w in words:
                    add(f"{w}|{f}")
        if i + 1 < len(per_line):
            for a in feats[1:]:
                for b in per_line[i + 1][1:]:
                    add(f"{a}>{b}")
    return counts


class PageValue(torch.nn.Module):
    """sigmoid(w . log1p(hashed feature counts) + b)."""

    def __init__(self, dim: int = 1 << 18):
        super().__init__()
        self.dim = dim
        self.weights = torch.nn.EmbeddingBag(dim, 1, mode="sum")
        torch.nn.init.zeros_(self.weights.weight)

    def encode(self, pages: Sequence[dict[str, float]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx, wts, offsets = [], [], []
        for counts in pages:
            offsets.append(len(idx))
            for name, c in counts.items():
                idx.append(zlib.crc32(name.encode()) % self.dim)
                wts.append(math.log1p(c))
        return torch.tensor(idx, dtype=torch.long), torch.tensor(wts), torch.tensor(offsets, dtype=torch.long)

    def forward(self, pages: Sequence[dict[str, float]]) -> torch.Tensor:
        """Logits of success, one per page."""
        idx, wts, offsets = self.encode(pages)
        return self.weights(idx, offsets, per_sample_weights=wts).squeeze(-1)

    @torch.no_grad()
    def value(self, utterance: str, fields, pages_lines: Sequence[Sequence[str]]) -> list[float]:
        feats = [page_features(utterance, fields, lines) for lines in pages_lines]
        return torch.sigmoid(self(feats)).tolist()

    @torch.no_grad()
    def accuracy(self, pages: Sequence[dict[str, float]], labels: Sequence[float]) -> float:
        """Fraction of pages whose success (p > 0.5) is predicted right; NaN without pages."""
        if not pages:
            return math.nan
        return float(((torch.sigmoid(self(pages)) > 0.5).float() == torch.tensor(labels)).float().mean())

    def save(self, path: Path) -> None:
        """Write `path/` atomically: a temporary folder beside it, then one rename."""
        from safetensors.torch import save_file

        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file({"weights": self.weights.weight.detach().contiguous()}, str(tmp / "value.safetensors"))
        (tmp / "value.json").write_text(json.dumps({"dim": self.dim, "kind": "hashed-logistic"}))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "PageValue":
        from safetensors.torch import load_file

        cfg = json.loads((Path(path) / "value.json").read_text())
        model = cls(int(cfg["dim"]))
        model.weights.weight.data.copy_(load_file(str(Path(path) / "value.safetensors"))["weights"])
        return model


def value_dataset(transitions: Iterable[dict]) -> tuple[list[dict[str, float]], list[float]]:
    """Every distinct (episode, page) of the trajectories, labelled with the episode's success."""
    seen, feats, labels = set(), [], []
    for t in transitions:
        for page in (t["page"], t["next_page"]):
            lines = [line for _, line in page]
            key = (t["task"], t["split"], t["episode"], tuple(lines))
            if key in seen:
                continue
            seen.add(key)
            feats.append(page_features(t["utterance"], t["fields"], lines))
            labels.append(float(t["success"]))
    return feats, labels


def train_value(transitions: list[dict], steps: int = 300, lr: float = 0.05, l2: float = 1e-4,
                seed: int = 0, dim: int = 1 << 18) -> tuple[PageValue, dict]:
    """Fit a `PageValue` by full-batch Adam on the log-loss; returns it and its training stats."""
    torch.manual_seed(seed)
    feats, labels = value_dataset(transitions)
    if not feats:
        raise ValueError("no trajectories to train the value function on")
    model = PageValue(dim)
    y = torch.tensor(labels)
    idx, wts, offsets = model.encode(feats)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        logits = model.weights(idx, offsets, per_sample_weights=wts).squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y) + l2 * model.weights.weight.pow(2).sum()
        loss.backward()
        opt.step()
    return model, {"pages": len(feats), "positive_fraction": float(y.mean()), "train_loss": float(loss.detach()),
                   "train_accuracy": model.accuracy(feats, labels)}
