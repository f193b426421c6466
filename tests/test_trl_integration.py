"""`rlvr_world.integrations.trl`: exact reward values on hand-made TextWorld completions,
the dataset's columns, and a real two-step `trl.GRPOTrainer` run on CPU whose rewards are
checked against `WeightedReward` on the same completions."""

from __future__ import annotations

import math
import pickle

import pytest

from rlvr_world.integrations.trl import (
    completion_text,
    grpo_dataset,
    load_grpo_dataset,
    reward_functions,
    reward_weights,
    text_world,
)
from rlvr_world.models.tokenizer import train_word_bpe
from rlvr_world.rewards import WeightedReward
from rlvr_world.worlds.textworld.world import TextWorldWorld

pytest.importorskip("trl")

OPEN = "- closed(wooden door: d)\n+ open(wooden door: d)"  # a two-fact ground truth
SPEC = "binary,f1:0.5,task_specific:0.1"


def transition(view, command, added, removed, game="tw-hand"):
    return {"view": view, "command": command, "added": added, "removed": removed,
            "changed": bool(added or removed), "game": game}


HAND = [
    transition(["at(P, attic: r)", "closed(wooden door: d)"], "open wooden door",
               ["open(wooden door: d)"], ["closed(wooden door: d)"]),
    transition(["at(P, attic: r)", "in(coin: o, I)"], "look", [], []),
]


def score(fns, completions, ground_truth, **kwargs):
    """{function name: rewards} for the same batch."""
    return {fn.__name__: fn(["prompt"] * len(completions), completions, ground_truth, **kwargs) for fn in fns}


def test_one_named_function_per_term_and_the_weights_beside():
    fns = reward_functions("textworld", SPEC)
    assert [fn.__name__ for fn in fns] == ["textworld_binary", "textworld_f1", "textworld_task_specific"]
    assert reward_weights("textworld", SPEC) == [1.0, 0.5, 0.1]
    world = TextWorldWorld()
    assert [fn.__name__ for fn in reward_functions(world)] == ["textworld_binary"]  # default_reward
    assert reward_weights(world) == [1.0]
    again = pickle.loads(pickle.dumps(fns[1]))  # TRL may pickle reward functions
    assert again.__name__ == "textworld_f1" and again([""], [OPEN], [OPEN]) == [1.0]
    with pytest.raises(KeyError, match="unknown reward"):
        reward_functions("textworld", "binary,nope")
    with pytest.raises(ValueError, match="not a text world"):
        text_world(object())


def test_exact_scores_on_hand_made_completions():
    fns = reward_functions("textworld", SPEC)
    completions = [
        OPEN,  # the ground truth itself
        "+ open(wooden door: d)\n- closed(wooden door: d)",  # same facts, other order
        "-closed( wooden door :d ) +open(wooden door: d)",  # other spacing, one line
        "+ open(wooden door: d)",  # 1 of 2 facts: P = 1, R = 1/2
        OPEN + "\n+ in(key: k, I)",  # one fact too many: P = 2/3, R = 1
        "- closed(wooden door: d)\n+ open(iron door: d)",  # one right, one wrong: P = R = 1/2
        "no change",
    ]
    got = score(fns, completions, [OPEN] * len(completions))
    assert got["textworld_binary"] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    f1 = [1.0, 1.0, 1.0, 2 / 3, 0.8, 0.5, 0.0]  # 2PR / (P + R)
    assert got["textworld_f1"] == pytest.approx(f1)
    assert got["textworld_task_specific"] == pytest.approx([f + 0.2 * b for f, b in zip(f1, got["textworld_binary"])])
    # "no change" is exact when nothing changed, and predicting a change then is wrong
    got = score(fns, ["no change", OPEN], ["no change", "no change"])
    assert got == {"textworld_binary": [1.0, 0.0], "textworld_f1": [1.0, 0.0], "textworld_task_specific": [1.2, 0.0]}


def test_junk_empty_and_conversational_completions():
    fns = reward_functions("textworld", SPEC)
    junk = ["", "   ", "open the door", "+ open(wooden door: d", "no change\n+ open(wooden door: d)",
            None, 42, [], [{"role": "user", "content": OPEN}], [{"role": "assistant", "content": None}]]
    for rewards in score(fns, junk, [OPEN] * len(junk)).values():
        assert rewards == [0.0] * len(junk)
    conversations = [
        [{"role": "assistant", "content": OPEN}],  # TRL's conversational completion
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": "junk"},
         {"role": "assistant", "content": OPEN}],  # the last assistant turn counts
        [{"role": "assistant", "content": [{"type": "text", "text": "+ open(wooden door: d)"}]}],
    ]
    got = score(fns, conversations, [OPEN] * 3)
    assert got["textworld_binary"] == [1.0, 1.0, 0.0]
    assert got["textworld_f1"] == pytest.approx([1.0, 1.0, 2 / 3])
    assert completion_text(conversations[2]) == "+ open(wooden door: d)"
    # a ground truth that does not parse makes the reward raise inside: 0, never an exception
    assert score(fns, [OPEN, "no change"], ["garbage(", None])["textworld_f1"] == [0.0, 0.0]


def test_accepts_the_keywords_trl_passes():
    fns = reward_functions(TextWorldWorld(), SPEC)
    logged = []
    completions = [OPEN, "junk", "+ open(wooden door: d)", "no change"]
    kwargs = dict(completion_ids=[[5, 6, 2]] * 4, trainer_state=object(), log_extra=lambda *a, **k: None,
                  log_metric=lambda name, value: logged.append((name, value)),
                  changed=[True] * 4, game=["tw-hand"] * 4, verb=["open"] * 4, row=[0, 1, 2, 3])
    got = score(fns, completions, [OPEN] * 4, **kwargs)
    assert got["textworld_binary"] == [1.0, 0.0, 0.0, 0.0]
    assert logged == [("textworld_parse_failure_rate", 0.25)]  # once per batch, by the first function only
    with pytest.raises(ValueError, match="no `ground_truth` column"):
        fns[0](prompts=["p"], completions=[OPEN], completion_ids=[[1]])


def test_dataset_columns_plain_chat_and_bos():
    world = TextWorldWorld()
    ds = grpo_dataset("textworld", HAND)
    assert ds.column_names == ["prompt", "ground_truth", "changed", "game", "verb"]
    assert ds["prompt"] == [world.prompt_text(t) for t in HAND]
    assert ds["ground_truth"] == [OPEN, "no change"]
    assert [world.target_from_ground_truth(g) for g in ds["ground_truth"]] == [world.target(t) for t in HAND]
    assert ds["changed"] == [True, False] and ds["verb"] == ["open", "look"]
    assert grpo_dataset(world, HAND, chat=True)["prompt"][1] == [{"role": "user", "content": world.prompt_text(HAND[1])}]

    tokenizer = train_word_bpe([world.prompt_text(t) + " " + world.target_text(t) for t in HAND] * 3)
    plain = grpo_dataset(world, HAND, tokenizer=tokenizer)
    assert plain["prompt"][0] == "<s>" + world.prompt_text(HAND[0])
    # TRL tokenises a plain prompt with tokenizer(text=...): the ids our own trainer feeds
    assert tokenizer(text=list(plain["prompt"]))["input_ids"] == [world.encode_prompt(world.prompt_text(t), tokenizer)
                                                            for t in HAND]
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert grpo_dataset(world, HAND, tokenizer=tokenizer)["prompt"][0][0]["role"] == "user"  # chat=None: follows
    world.max_prompt_tokens = len(world.encode_prompt(world.prompt_text(HAND[1]), tokenizer))  # HAND[0] is longer
    assert grpo_dataset(world, HAND, tokenizer=tokenizer, chat=False)["ground_truth"] == ["no change"]


# ----------------------------------------------------------------------------- a real TRL run

TINY = dict(n_train_games=1, n_val_games=0, n_test_games=0, world_size=[2, 4], nb_objects=[3, 6],
            quest_length=[1, 3], episodes_per_game=2, steps_per_episode=12, walkthrough_prob=0.3, workers=1)
WARM_START_STEPS = 80  # enough MLE that sampled diffs are a mix of right, partly right and junk


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    from rlvr_world.worlds.textworld.collect import TextWorldCollectConfig, collect

    data_dir = tmp_path_factory.mktemp("tw_trl")
    collect(TextWorldCollectConfig(**TINY), data_dir, seed=7, progress=False)
    return data_dir


def warm_started_model(world, transitions, tokenizer):
    """The tiny Llama after a few teacher-forced steps, so its samples are not all junk."""
    import torch

    from rlvr_world.mle import collate
    from rlvr_world.models.lm import build_model

    model = build_model("tiny", tokenizer)
    examples = world.make_examples(transitions, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    order = torch.Generator().manual_seed(0)
    for _ in range(WARM_START_STEPS):
        batch = [examples[i] for i in torch.randperm(len(examples), generator=order)[:8].tolist()]
        model(**collate(batch, tokenizer.pad_token_id)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def recording(fn, calls: list):
    """`fn` under the same name, keeping each call's keywords and returned rewards."""

    def wrapper(prompts, completions, **kwargs):
        rewards = fn(prompts, completions, **kwargs)
        calls.append({"name": fn.__name__, "completions": list(completions), "rewards": list(rewards), **kwargs})
        return rewards

    wrapper.__name__ = fn.__name__
    return wrapper


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
def test_two_grpo_steps_of_trl_with_our_rewards(cache, tmp_path):
    import torch
    from trl import GRPOConfig, GRPOTrainer

    world = TextWorldWorld()
    transitions = world.load_transitions(cache, "train")
    tokenizer = world.train_tokenizer(transitions, tmp_path)
    model = warm_started_model(world, transitions, tokenizer)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}

    spec = "binary,f1:0.5"
    dataset = load_grpo_dataset(world, cache, "train", tokenizer=tokenizer)
    dataset = dataset.add_column("row", list(range(len(dataset))))  # an extra column TRL passes through
    calls: list[dict] = []
    fns = [recording(fn, calls) for fn in reward_functions(world, spec)]
    args = GRPOConfig(
        output_dir=str(tmp_path / "trl"), use_cpu=True, report_to=[], bf16=False, fp16=False, seed=0,
        # 2 prompts x 4 completions per step, one optimizer step per generation batch
        per_device_train_batch_size=8, num_generations=4, gradient_accumulation_steps=1,
        steps_per_generation=1, num_iterations=1, max_steps=2, max_completion_length=24,
        beta=0.0,  # no reference model on CPU
        learning_rate=1e-3, activation_checkpointing=False, reward_weights=reward_weights(world, spec),
        logging_steps=1, save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=fns, train_dataset=dataset, args=args)
    trainer.train()

    assert trainer.state.global_step == 2
    steps = [h for h in trainer.state.log_history if "reward" in h]
    assert len(steps) == 2
    for log in steps:
        assert {"rewards/textworld_binary/mean", "rewards/textworld_f1/mean", "textworld_parse_failure_rate"} <= set(log)
    assert [c["name"] for c in calls] == ["textworld_binary", "textworld_f1"] * 2

    totals = []
    for step, (binary, f1) in enumerate(zip(calls[0::2], calls[1::2])):
        assert binary["completions"] == f1["completions"] and len(binary["completions"]) == 8
        rows = [transitions[i] for i in binary["row"]]
        assert binary["ground_truth"] == [world.ground_truth(t) for t in rows]
        assert set(binary) >= {"completion_ids", "trainer_state", "changed", "game", "verb"}
        predictions = [world.parse(c) for c in binary["completions"]]
        targets = [world.target(t) for t in rows]
        for call, term in ((binary, "binary"), (f1, "f1")):
            assert call["rewards"] == WeightedReward.parse(term).score(predictions, targets)[0]
        # TRL's text of a completion parses as our trainer decodes its token ids
        assert predictions == [world.decode(ids, tokenizer) for ids in binary["completion_ids"]]
        total = WeightedReward.parse(spec).score(predictions, targets)[0]
        assert [b + 0.5 * f for b, f in zip(binary["rewards"], f1["rewards"])] == pytest.approx(total)
        assert steps[step]["reward"] == pytest.approx(sum(total) / len(total), abs=1e-6)  # TRL applied the weights
        assert steps[step]["rewards/textworld_f1/mean"] == pytest.approx(sum(f1["rewards"]) / 8, abs=1e-6)
        totals += total
    assert len(set(totals)) > 1, "every completion scored the same; the check above proves little"
    assert any(not torch.equal(v, start[k]) for k, v in trainer.model.state_dict().items())
    assert all(math.isfinite(h["loss"]) for h in steps)
