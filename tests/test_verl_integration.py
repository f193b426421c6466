"""`rlvr_world.integrations.verl` and `rlvr-world export verl`.

In our environment: the CLI collects a tiny real TextWorld cache and exports it; the parquet
files carry verl's RL dataset columns with the world's own prompts and ground truths, and
`compute_score` gives 1.0 to every row's ground truth, less to a corrupted one and 0.0 to junk.

In verl's own environment (.venv-verl, scripts/setup_verl.sh; slow): the overrides of
examples/verl_grpo.sh compose into verl 0.9.1's Hydra config and pass its `validate_config`;
verl's `RLHFDataset` reads the exported files, and verl's `RewardLoopWorker` (what a training
run scores each response with) loads our module from that config's
`reward.custom_reward_function` and scores tokenized responses through its naive reward
manager (decode -> compute_score).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlvr_world.integrations.verl import compute_score, export_rows, world_name_of
from rlvr_world.worlds.textworld.world import TextWorldWorld

pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[1]
VERL_PY = ROOT / ".venv-verl" / "bin" / "python"
SPLITS = ("train", "val", "test")
FAKE = "+ open(made-up door: d)"  # a fact no ground truth holds


def corrupt(ground_truth: str) -> str:
    """One fact too many (or a fact where nothing changed)."""
    return FAKE if ground_truth == "no change" else ground_truth + "\n" + FAKE


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """`rlvr-world export verl` on a run whose cache does not exist yet (so it collects first)."""
    tmp = tmp_path_factory.mktemp("verl_export")
    out = tmp / "verl"
    cmd = [sys.executable, "-m", "rlvr_world.cli", "export", "verl", "--world", "textworld",
           "--config", "textworld_tiny", "--out", str(out), f"run_dir={tmp / 'run'}", "threads=1",
           "collect.n_train_games=1", "collect.n_val_games=1", "collect.n_test_games=1",
           "collect.episodes_per_game=2", "collect.steps_per_episode=12", "collect.world_size=[2,4]",
           "collect.nb_objects=[3,6]", "collect.quest_length=[1,3]", "collect.workers=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"out": out, "data": tmp / "run" / "data", "stdout": proc.stdout}


def test_export_writes_verl_columns_from_the_cache(export):
    world = TextWorldWorld()
    for split in SPLITS:
        path = export["out"] / f"{split}.parquet"
        assert f"wrote {path}" in export["stdout"]
        table = pq.read_table(path)
        assert set(table.column_names) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        schema = table.schema
        assert str(schema.field("prompt").type) == "list<element: struct<content: string, role: string>>" \
            or str(schema.field("prompt").type) == "list<element: struct<role: string, content: string>>"
        assert {f.name for f in schema.field("reward_model").type} == {"style", "ground_truth"}
        rows = table.to_pylist()
        transitions = world.load_transitions(export["data"], split)
        assert len(rows) == len(transitions) > 0
        for i, (row, t) in enumerate(zip(rows, transitions)):
            assert row["data_source"] == "rlvr_world/textworld" and world_name_of(row["data_source"]) == "textworld"
            assert row["prompt"] == [{"role": "user", "content": world.prompt_text(t)}]
            assert row["reward_model"] == {"style": "rule", "ground_truth": world.ground_truth(t)}
            info = row["extra_info"]
            assert (info["split"], info["index"], info["reward"]) == (split, i, "binary")
            assert json.loads(info["world_options"]) == {"max_new_tokens": 64}  # the preset's
            assert info["meta"]["changed"] == t["changed"]
    assert "reward.custom_reward_function.path=" in export["stdout"]


def test_compute_score_on_exported_rows(export):
    rows = [r for s in SPLITS for r in pq.read_table(export["out"] / f"{s}.parquet").to_pylist()]
    changed = [r for r in rows if r["reward_model"]["ground_truth"] != "no change"]
    assert changed and len(changed) < len(rows)  # both kinds of ground truth are exercised
    for row in rows:
        source, gt, info = row["data_source"], row["reward_model"]["ground_truth"], row["extra_info"]
        assert compute_score(source, gt, gt, info) == 1.0
        assert compute_score(source, " ".join(gt.split()) + "\n", gt, info) == 1.0  # line breaks lost
        assert compute_score(source, corrupt(gt), gt, info) == 0.0  # binary: all or nothing
        # verl adds keys to extra_info; a reward_kwargs spec overrides the row's
        verl_info = {**info, "num_turns": None, "rollout_reward_scores": {}}
        f1 = compute_score(source, corrupt(gt), gt, verl_info, reward="f1")
        assert 0.0 < f1 < 1.0 if gt != "no change" else f1 == 0.0  # partial credit for the true facts
        for junk in ("", "I think the door opens.", "+ open(", "- - -", None, 42):
            assert compute_score(source, junk, gt, info) == 0.0
    gt = changed[0]["reward_model"]["ground_truth"]
    assert compute_score("rlvr_world/textworld", gt, gt) == 1.0  # no extra_info: the world's defaults
    with pytest.raises(ValueError, match="not an rlvr_world one"):
        compute_score("openai/gsm8k", gt, gt)
    with pytest.raises(ValueError, match="names no registered world"):
        compute_score("rlvr_world/nethack", gt, gt)
    with pytest.raises(ValueError, match="ground truth does not parse"):
        compute_score("rlvr_world/textworld", gt, "not a diff")


def test_export_rows_validates_world_and_reward():
    t = {"view": ["at(P, attic: r)"], "command": "look", "added": [], "removed": [], "changed": False, "game": "g"}
    (row,) = export_rows(TextWorldWorld(), [t], "train", reward="f1:1,exact:0.2")
    assert row["extra_info"]["reward"] == "f1:1,exact:0.2" and row["extra_info"]["world_options"] == "{}"
    with pytest.raises(KeyError, match="unknown reward"):
        export_rows(TextWorldWorld(), [t], "train", reward="nope")
    with pytest.raises(ValueError, match="names no registered world"):
        export_rows(TextWorldWorld(), [t], "train", world_name="nethack")


# Runs in .venv-verl: argv = overrides file, JSON output file.
VERL_SCRIPT = r'''
import json, os, sys
import numpy as np
import torch
import verl
from hydra import compose, initialize_config_dir
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from verl import DataProto
from verl.experimental.reward_loop import RewardLoopWorker
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.dataset.rl_dataset import RLHFDataset

overrides = [line for line in open(sys.argv[1]).read().splitlines() if line]
config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
with initialize_config_dir(config_dir=config_dir, version_base=None):
    config = compose(config_name="ppo_trainer", overrides=overrides)  # unknown keys raise here
validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))

# A byte-level BPE with a chat template stands in for the model's tokenizer (no hub offline).
texts = []
for split_files in (config.data.train_files, config.data.val_files):
    import pyarrow.parquet as pq
    for row in pq.read_table(split_files).to_pylist():
        texts += [row["prompt"][0]["content"], row["reward_model"]["ground_truth"]]
bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<pad>", "<eos>"],
                                                   initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>",
    chat_template="{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                  "{% if add_generation_prompt %}assistant: {% endif %}")

# What a training run does per response: a RewardLoopWorker (a Ray actor there, a plain object
# here) loads the model's tokenizer and, through load_reward_manager, our compute_score.
tokenizer.save_pretrained("tokenizer")
config.actor_rollout_ref.model.path = os.path.abspath("tokenizer")
worker = RewardLoopWorker(config)
raw_fn = get_custom_reward_fn(config).args[0]  # verl's partial(_call_with_kwargs, raw_fn, reward_kwargs)

def score(row, response):
    prompt = tokenizer.encode(tokenizer.apply_chat_template(row["raw_prompt"], tokenize=False,
                                                            add_generation_prompt=True))
    answer = tokenizer.encode(response) + [tokenizer.eos_token_id]
    pad = [tokenizer.pad_token_id] * 3  # right padding, as verl's rollout leaves it
    data = DataProto.from_dict(
        tensors={"prompts": torch.tensor([prompt]), "responses": torch.tensor([answer + pad]),
                 "attention_mask": torch.tensor([[1] * (len(prompt) + len(answer)) + [0] * len(pad)])},
        non_tensors={key: np.array([row[key]], dtype=object) for key in ("data_source", "reward_model", "extra_info")})
    return worker.loop.run_until_complete(worker.compute_score(data))["reward_score"]

result = {"reward_fn_file": raw_fn.__code__.co_filename, "manager": type(worker.reward_manager).__name__,
          "rows": 0, "truth": [], "corrupt": [], "junk": []}
for files in (config.data.train_files, config.data.val_files):
    dataset = RLHFDataset(files, tokenizer, config.data)
    for i in range(len(dataset)):
        row = dataset[i]
        gt = row["reward_model"]["ground_truth"]
        fake = "+ open(made-up door: d)"
        result["truth"].append(score(row, gt))
        result["corrupt"].append(score(row, fake if gt == "no change" else gt + "\n" + fake))
        result["junk"].append(score(row, "the door opens"))
        result["rows"] += 1
json.dump(result, open(sys.argv[2], "w"))
'''


@pytest.mark.slow
def test_verl_loads_and_scores_with_its_own_reward_code(export, tmp_path):
    if not VERL_PY.exists():
        pytest.skip(".venv-verl is missing: run scripts/setup_verl.sh (scripts/test.sh does)")
    env = {**os.environ, "DRY_RUN": "1", "VERL_PY": str(VERL_PY), "DATA": str(export["out"])}
    dry = subprocess.run(["bash", str(ROOT / "examples" / "verl_grpo.sh")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    overrides = tmp_path / "overrides.txt"
    overrides.write_text(dry.stdout)
    assert f"data.train_files={export['out'] / 'train.parquet'}" in dry.stdout.splitlines()
    script = tmp_path / "verl_check.py"
    script.write_text(VERL_SCRIPT)
    out = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled",
               TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([str(VERL_PY), str(script), str(overrides), str(out)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert Path(result["reward_fn_file"]).resolve() == (ROOT / "src" / "rlvr_world" / "integrations" / "verl.py")
    assert result["manager"] == "NaiveRewardManager"
    n_rows = sum(pq.read_metadata(export["out"] / f"{s}.parquet").num_rows for s in ("train", "val"))
    assert result["rows"] == n_rows > 0
    assert result["truth"] == [1.0] * n_rows
    assert result["corrupt"] == [0.0] * n_rows
    assert result["junk"] == [0.0] * n_rows
