"""`MetaWorldWorld`: predict the next 64x64 frames of a robot arm from frames and actions.

Frames become codes of a frozen FSQ frame tokenizer (`models/frame_tokenizer.py`), trained
on the training episodes when the run's tokenizer is fitted; actions become binned tokens
(`actions.py`); `codec.VideoLayout` lays them out in one sequence. A prediction is the
decoded frames, uint8 [T, H, W, 3], which keep the codes they were decoded from (for the
repetition rate); None when the response holds a token that is not a frame code. The default
reward is the paper's -(MAE + ST-LPIPS) of the decoded frames, averaged over the horizon.

With `frame_tokenizer.reference`, the tokenizer draws each predicted frame against the last
frame the prompt observed (real pixels, `meta["last_frame"]`), so decoding needs the example
a response answers (`decode_batch(..., examples)`). The codes, and so the world model's
sequences, are the same either way: only the decoder sees the reference.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from rlvr_world.config import from_dict
from rlvr_world.models.frame_tokenizer import (FrameTokenizer, FrameTokenizerConfig, FrameTokenizerTrainConfig,
                                               frames_to_tensor, reference_pairs, tensor_to_frames,
                                               train_frame_tokenizer)
from rlvr_world.models.lm import resolve_device
from rlvr_world.rewards import frames as frame_metrics
from rlvr_world.sequence import Example
from rlvr_world.worlds.base import World
from rlvr_world.worlds.metaworld import collect as mw_collect
from rlvr_world.worlds.metaworld.actions import ActionBinner
from rlvr_world.worlds.metaworld.codec import VideoLayout, build_tokenizer

FRAME_TOKENIZER_DIR = "frame_tokenizer"  # inside the run's tokenizer folder
ACTIONS_FILE = "action_bins.json"
METRICS = ("mae", "mse", "psnr", "ssim", "lpips")


class PredictedFrames(np.ndarray):
    """Decoded frames uint8 [T, H, W, 3] that remember their frame-tokenizer codes [T, h*w]."""

    codes: Optional[np.ndarray] = None

    def __array_finalize__(self, obj):
        self.codes = getattr(obj, "codes", None)


def predicted_frames(pixels: np.ndarray, codes: np.ndarray) -> PredictedFrames:
    out = np.asarray(pixels).view(PredictedFrames)
    out.codes = np.asarray(codes)
    return out


class MetaWorldWorld(World):
    """Meta-World video prediction.

    context_frames: frames (with their actions) in the prompt.
    horizon: frames the model predicts; the actions between them are forced (interactive rollout).
    action_bins: uniform bins per action dimension.
    train_stride: step between the starts of training windows (1 = every window).
    eval_stride: step between the starts of val/test windows (default: the horizon, no overlap).
    change_threshold: a pixel "really changes" when a channel moves by more than this (0-1
        scale) between the last context frame and the target frame; the *_changed metrics
        are computed on those pixels only.
    frame_tokenizer: FrameTokenizerConfig fields. frame_tokenizer_train: FrameTokenizerTrainConfig fields.
    lpips_weights: a state dict with the ST-LPIPS AlexNet layout to use instead of the shipped one.
    """

    name = "metaworld"
    default_reward = "mae:-1,lpips:-1"  # the paper's video reward, -(MAE + LPIPS)
    collect_config = mw_collect.MetaWorldCollectConfig
    eval_rewards = ()
    headline_metrics = ("lpips", "mae", "mse", "psnr", "ssim", "mae_changed", "psnr_changed", "repetition_rate",
                        "decode_failure_rate")

    def __init__(self, context_frames: int = 2, horizon: int = 4, action_bins: int = 256, train_stride: int = 1,
                 eval_stride: int = 0, change_threshold: float = 0.05, frame_tokenizer: dict | None = None,
                 frame_tokenizer_train: dict | None = None, lpips_weights: str = "", decode_batch_size: int = 256):
        self.context_frames, self.horizon, self.action_bins = context_frames, horizon, action_bins
        self.train_stride, self.eval_stride = train_stride, eval_stride or horizon
        self.change_threshold = change_threshold
        self.frame_tokenizer_cfg = from_dict(FrameTokenizerConfig, frame_tokenizer or {}, "world_options.frame_tokenizer.")
        self.frame_tokenizer_train_cfg = from_dict(FrameTokenizerTrainConfig, frame_tokenizer_train or {},
                                                   "world_options.frame_tokenizer_train.")
        self.decode_batch_size = decode_batch_size
        if lpips_weights:
            from rlvr_world.models.lpips import set_lpips_weights

            set_lpips_weights(lpips_weights)
        self._frame_tok: FrameTokenizer | None = None
        self._binner: ActionBinner | None = None
        self._codes: dict[str, np.ndarray] = {}  # episode file -> codes [T+1, h, w]

    # ----- artefacts of the run's tokenizer folder -------------------------------------------
    @property
    def tokenizer_dir(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("the metaworld world needs a run directory (World.attach) to find its frame tokenizer")
        return self.run_dir / "tokenizer"

    @property
    def device(self) -> torch.device:
        """Where the frame tokenizer trains, encodes and decodes (`frame_tokenizer_train.device`)."""
        return resolve_device(self.frame_tokenizer_train_cfg.device)

    @property
    def frame_tokenizer(self) -> FrameTokenizer:
        if self._frame_tok is None:
            path = self.tokenizer_dir / FRAME_TOKENIZER_DIR
            if not (path / "frame_tokenizer.json").exists():
                raise FileNotFoundError(f"{path}: no frame tokenizer; run `rlvr-world pretrain --world metaworld` "
                                        "(it trains one on the training episodes first)")
            self._frame_tok = FrameTokenizer.load(path, map_location=str(self.device)).eval()
        return self._frame_tok

    @property
    def binner(self) -> ActionBinner:
        if self._binner is None:
            path = self.tokenizer_dir / ACTIONS_FILE
            if not path.exists():
                raise FileNotFoundError(f"{path}: no action bins; run `rlvr-world pretrain --world metaworld`")
            self._binner = ActionBinner.from_dict(json.loads(path.read_text()))
        return self._binner

    @property
    def layout(self) -> VideoLayout:
        ft = self.frame_tokenizer
        h, w = ft.grid
        return VideoLayout(codebook_size=ft.codebook_size, tokens_per_frame=h * w, action_dims=self.binner.dim,
                           action_bins=self.binner.bins, context_frames=self.context_frames, horizon=self.horizon)

    # ----- data ---------------------------------------------------------------------------------
    def collect(self, cfg: Any, data_dir: Path, seed: int) -> dict:
        return mw_collect.collect(cfg, Path(data_dir), seed)

    def load_transitions(self, data_dir: Path, split: str) -> list[dict]:
        """Windows of context + horizon frames; views into the episode arrays, not copies."""
        stride = self.train_stride if split == "train" else self.eval_stride
        window = self.context_frames + self.horizon
        out = []
        for ep in mw_collect.load_episodes(Path(data_dir), split):
            for start in range(0, len(ep["frames"]) - window + 1, stride):
                out.append({"episode": ep, "start": start, "task": ep["task"]})
        return out

    def train_tokenizer(self, transitions: list[dict], out_dir: Path) -> PreTrainedTokenizerBase:
        """Train the frame tokenizer (resumable) and fit the action bins on the training episodes."""
        episodes = list({id(t["episode"]): t["episode"] for t in transitions}.values())
        if not episodes:
            raise ValueError("no training episodes to fit the frame tokenizer on")
        out_dir = Path(out_dir)
        ft_dir = out_dir / FRAME_TOKENIZER_DIR
        if not (ft_dir / "frame_tokenizer.json").exists():
            # A few episodes are held back to monitor reconstruction while training.
            n_val = max(1, len(episodes) // 20)
            fit = episodes[n_val:] or episodes[:1]
            train = np.concatenate([ep["frames"] for ep in fit])
            val = np.concatenate([ep["frames"] for ep in episodes[:n_val]])
            # (frame, reference) pairs as decoding meets them: the k-th predicted frame drawn
            # against the last observed one, k = 1 .. horizon (used by reference tokenizers only)
            pairs = {name: reference_pairs([len(ep["frames"]) for ep in eps], self.horizon)
                     for name, eps in (("train", fit), ("val", episodes[:n_val]))}
            from rlvr_world.models.lpips import get_lpips

            perceptual = get_lpips(self.device) if self.frame_tokenizer_train_cfg.perceptual_weight > 0 else None
            train_frame_tokenizer(train, val, self.frame_tokenizer_train_cfg, ft_dir, model_config=self.frame_tokenizer_cfg,
                                  perceptual=perceptual, train_pairs=pairs["train"], val_pairs=pairs["val"])
        binner = ActionBinner(bins=self.action_bins).fit(np.concatenate([ep["actions"] for ep in episodes]))
        (out_dir / ACTIONS_FILE).write_text(json.dumps(binner.to_dict(), indent=1))
        self._frame_tok, self._binner = None, None
        return build_tokenizer(self.layout)

    def _episode_codes(self, ep: dict) -> np.ndarray:
        key = ep["file"]
        if key not in self._codes:
            self._codes[key] = self.frame_tokenizer.encode(ep["frames"], self.decode_batch_size).numpy()
        return self._codes[key]

    def make_examples(self, transitions: list[dict], tokenizer: PreTrainedTokenizerBase) -> list[Example]:
        layout, C, W = self.layout, self.context_frames, self.context_frames + self.horizon
        examples = []
        for t in transitions:
            ep, s = t["episode"], t["start"]
            codes = self._episode_codes(ep)[s : s + W]
            bins = self.binner.encode(ep["actions"][s : s + W - 1])
            response, plan = layout.response(codes, bins)
            frames = ep["frames"][s : s + W]
            examples.append(Example(
                prompt_ids=layout.prompt_ids(codes, bins, tokenizer.bos_token_id),
                target_ids=response,
                plan=plan,
                target=frames[C:],
                meta={"task": t["task"], "episode": ep["file"], "start": s, "context_frames": frames[:C],
                      "last_frame": frames[C - 1],
                      "last_codes": codes[C - 1].reshape(-1),
                      "changed": bool(np.abs(frames[C].astype(np.int16) - frames[C - 1]).max() > 255 * self.change_threshold)},
            ))
        return examples

    # ----- predictions ---------------------------------------------------------------------------
    def decode(self, response_ids: list[int], tokenizer: PreTrainedTokenizerBase,
               example: Optional[Example] = None) -> Optional[PredictedFrames]:
        return self.decode_batch([response_ids], tokenizer, None if example is None else [example])[0]

    def decode_codes(self, codes: np.ndarray, references: Optional[np.ndarray] = None) -> np.ndarray:
        """Frame codes [N, h*w] (+ uint8 reference frames [N, H, W, 3] for a reference
        tokenizer; ignored otherwise) -> uint8 frames [N, H, W, 3]."""
        grid = torch.as_tensor(codes, dtype=torch.long).view(-1, *self.frame_tokenizer.grid)
        return tensor_to_frames(self.frame_tokenizer.decode(grid, self.decode_batch_size, references))

    def _references(self, examples: Optional[list[Example]]) -> Optional[np.ndarray]:
        """The last observed frame of each example, once per predicted frame: uint8 [N*T, H, W, 3];
        None when the frame tokenizer draws without a reference."""
        if not self.frame_tokenizer.config.reference:
            return None
        if examples is None:
            raise ValueError("this run's frame tokenizer draws predicted frames against the last observed frame: "
                             "pass the examples the responses answer (decode_batch(responses, tokenizer, examples))")
        return np.repeat(np.stack([ex.meta["last_frame"] for ex in examples]), self.horizon, axis=0)

    def decode_batch(self, responses: list[list[int]], tokenizer: PreTrainedTokenizerBase,
                     examples: Optional[list[Example]] = None) -> list[Optional[PredictedFrames]]:
        if examples is not None and len(examples) != len(responses):
            raise ValueError(f"{len(responses)} responses but {len(examples)} examples")
        layout = self.layout
        codes = [layout.frame_codes(r) for r in responses]
        keep = [i for i, c in enumerate(codes) if c is not None]
        if not keep:
            return [None] * len(responses)
        refs = self._references(None if examples is None else [examples[i] for i in keep])
        pixels = iter(self.decode_codes(np.concatenate([codes[i] for i in keep]), refs)
                      .reshape(len(keep), self.horizon, *self.frame_shape))
        return [None if c is None else predicted_frames(next(pixels), c) for c in codes]

    def token_scores(self, metric: str, responses: list[list[int]], predictions: list[Any], targets: list[Any],
                     length: int, tokenizer: PreTrainedTokenizerBase) -> np.ndarray:
        """Per-code `metric` (mae or mse): each frame code scores the error of the image patch it
        draws (the tokenizer's grid cell), so a frame's codes average to the frame's metric;
        forced action tokens score 0 (they are never trained on)."""
        positions = self.layout.code_positions()
        out = np.zeros((len(predictions), length))
        for i, (p, t) in enumerate(zip(predictions, targets)):
            out[i, positions] = frame_metrics.patch_scores(metric, p, t, self.frame_tokenizer.grid).reshape(-1)
        return out

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        size = self.frame_tokenizer.config.image_size
        return (size, size, 3)

    def stats(self) -> dict:
        return {"decoder_nonfinite": float(self.frame_tokenizer.nonfinite_count)} if self._frame_tok else {}

    def baselines(self, examples: list[Example]) -> dict[str, list]:
        """Predictions that need no world model: the last context frame repeated, and the
        ground-truth codes decoded (the frame tokenizer's ceiling for any model)."""
        T = self.horizon
        copy_last = [predicted_frames(np.repeat(ex.meta["last_frame"][None], T, 0), np.repeat(ex.meta["last_codes"][None], T, 0))
                     for ex in examples]
        layout = self.layout
        true_codes = [layout.frame_codes(ex.target_ids) for ex in examples]
        pixels = self.decode_codes(np.concatenate(true_codes), self._references(examples)).reshape(len(examples), T, *self.frame_shape)
        oracle = [predicted_frames(p, c) for p, c in zip(pixels, true_codes)]
        return {"copy_last_frame": copy_last, "tokenizer_reconstruction": oracle}

    def save_samples(self, path: Path, examples: list[Example], predictions: list[Any], k: int = 6) -> Path:
        """Context, ground truth and predicted frames of the first `k` examples, for the report."""
        T = self.horizon
        black = np.zeros((T, *self.frame_shape), np.uint8)
        pairs = list(zip(examples, predictions))[:k]
        np.savez_compressed(path, context=np.stack([ex.meta["context_frames"] for ex, _ in pairs]),
                            target=np.stack([np.asarray(ex.target) for ex, _ in pairs]),
                            predicted=np.stack([black if p is None else np.asarray(p) for _, p in pairs]))
        return Path(path)

    # ----- metrics -------------------------------------------------------------------------------
    def metrics(self, predictions: list[Any], examples: list[Example]) -> dict[str, float]:
        """MAE, MSE, PSNR, SSIM, ST-LPIPS per horizon step (`<name>_h<t>`) and averaged; the
        same pixel errors on the pixels that really change (`*_changed`); the repetition rate
        (a predicted frame whose codes equal the previous frame's, the first compared with
        the last context frame). An undecodable prediction counts as an all-black video."""
        if len(predictions) != len(examples):
            raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
        if not examples:
            return {}
        T = self.horizon
        black = np.zeros((T, *self.frame_shape), np.uint8)
        pred = frames_to_tensor(np.stack([black if p is None else np.asarray(p) for p in predictions]))
        true = frames_to_tensor(np.stack([np.asarray(ex.target) for ex in examples]))
        out: dict[str, float] = {}
        for name in METRICS:
            values = frame_metrics.per_frame(name, pred, true)  # [N, T]
            out[name] = float(values.mean())
            for t in range(T):
                out[f"{name}_h{t + 1}"] = float(values[:, t].mean())
        last = frames_to_tensor(np.stack([ex.meta["last_frame"] for ex in examples]))[:, None]
        changed = ((true - last).abs().amax(dim=2, keepdim=True) > self.change_threshold).float()  # [N,T,1,H,W]
        out["changed_pixel_fraction"] = float(changed.mean())
        sums = lambda x: x.sum(dim=(0, 2, 3, 4))  # noqa: E731  per horizon step
        n_changed, abs_err, sq_err = sums(changed) * 3, sums((pred - true).abs() * changed), sums((pred - true) ** 2 * changed)
        for suffix, sel in [("", slice(None))] + [(f"_h{t + 1}", slice(t, t + 1)) for t in range(T)]:
            n = float(n_changed[sel].sum())
            mse = float(sq_err[sel].sum()) / n if n else math.nan
            out[f"mae_changed{suffix}"] = float(abs_err[sel].sum()) / n if n else math.nan
            out[f"mse_changed{suffix}"] = mse
            out[f"psnr_changed{suffix}"] = 10 * math.log10(1 / mse) if mse > 0 else math.nan
        repeats = []
        for p, ex in zip(predictions, examples):
            if p is None or getattr(p, "codes", None) is None:
                repeats.append([0.0] * T)
                continue
            prev = np.concatenate([ex.meta["last_codes"].reshape(1, -1), p.codes.reshape(T, -1)[:-1]])
            repeats.append((p.codes.reshape(T, -1) == prev).all(axis=1).astype(float).tolist())
        rep = np.asarray(repeats)
        out["repetition_rate"] = float(rep.mean())
        for t in range(T):
            out[f"repetition_rate_h{t + 1}"] = float(rep[:, t].mean())
        out["decode_failure_rate"] = float(np.mean([p is None for p in predictions]))
        out["n"] = float(len(examples))
        return out

    def summarize(self, evals: dict[str, dict], baselines: dict[str, dict]) -> dict:
        """results/metaworld.json blocks: single-step (the first predicted frame) and multi-step
        (means over the horizon, plus per-step lists) for every model and baseline, on the
        test episodes and on the held-out task."""
        def blocks(split_of) -> dict:
            out = {"single_step": {}, "multi_step": {}}
            for stage, ev in evals.items():
                part = split_of(ev)
                if part is None:
                    continue
                for mode in ("greedy", "sampled"):
                    single, multi = horizon_blocks(part[mode], self.horizon)
                    out["single_step"].setdefault(stage, {})[mode] = single
                    out["multi_step"].setdefault(stage, {})[mode] = multi
                out.setdefault("n", part["n"])
            return out

        def with_baselines(block: dict, split: str) -> dict:
            for name, metrics in baselines.get(split, {}).items():
                single, multi = horizon_blocks(metrics, self.horizon)
                block[name] = {"single_step": single, "multi_step": multi}
            return block

        first = next(iter(evals.values()))
        test = blocks(lambda ev: ev)
        out = {"metric": "lpips and mae (lower is better), single- and multi-step",
               "context_frames": self.context_frames, "horizon": self.horizon, "lpips": "ST-LPIPS (AlexNet)",
               first["split"]: {"episodes_unseen": True, "n": test.pop("n")},
               **with_baselines(test, first["split"])}
        for split in first.get("other_splits", {}):
            out[split] = with_baselines(blocks(lambda ev: ev["other_splits"].get(split)), split)
        out["relative_improvement"] = relative_improvements(out)
        return out

    def render(self, prediction: Any) -> str:
        if prediction is None:
            return "<undecodable>"
        return f"{len(prediction)} frames {'x'.join(map(str, np.asarray(prediction).shape[1:]))}"


def horizon_blocks(metrics: dict, horizon: int) -> tuple[dict, dict]:
    """Split flat metrics into (single-step: the `_h1` values, multi-step: the horizon means
    plus `per_horizon` lists)."""
    single = {k[: -len("_h1")]: v for k, v in metrics.items() if k.endswith("_h1")}
    multi = {k: v for k, v in metrics.items() if not re.search(r"_h\d+$", k)}
    for k in ("decode_failure_rate", "n", "truncated_rate", "decoder_nonfinite"):
        if k in metrics:
            single[k] = metrics[k]
    multi["per_horizon"] = {name: [metrics[f"{name}_h{t}"] for t in range(1, horizon + 1)] for name in single
                            if f"{name}_h1" in metrics}
    return single, multi


def relative_improvements(results: dict, names=("lpips", "mae", "mse", "repetition_rate")) -> dict:
    """(baseline - rlvr) / baseline for lower-is-better metrics, greedy decoding: > 0 means RLVR is better."""
    out = {}
    for horizon in ("single_step", "multi_step"):
        models = results.get(horizon, {})
        if "rlvr" not in models:
            continue
        for ref in ("mle", "mle_longer"):
            if ref not in models:
                continue
            r, b = models["rlvr"]["greedy"], models[ref]["greedy"]
            out[f"{horizon}_vs_{ref}"] = {n: (b[n] - r[n]) / b[n] if b.get(n) else None for n in names if n in r}
    return out
