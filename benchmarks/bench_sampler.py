"""Our sampler (`rlvr_world.rl.rollout.sample`) against Hugging Face `model.generate`.

Same model, same prompts, same number of tokens: ours runs one `Generate(n, stop_at_eos=False)`
segment with group_size=1; `generate` runs with min_new_tokens = max_new_tokens = n, no EOS
and the KV cache. Both therefore do one prefill and n-1 single-token decode steps per call.
Calls alternate (ours, generate, ours, generate, ...) so a change in machine load hits both
alike; the table reports the median over `--repeats` calls.

Greedy outputs must be token-identical, and that is asserted: it checks that the two really
do the same work. Sampled outputs (temperature 1, no top-k / top-p) are not compared: ours
inverts each row's CDF at one uniform number, `generate` calls torch.multinomial, so the same
seed gives different (equally distributed) tokens.

    python benchmarks/bench_sampler.py                              # synthetic tokenizer, random prompts
    python benchmarks/bench_sampler.py --run-dir runs/textworld     # the run's tokenizer, real prompts
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import rlvr_world  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch starts its threads)
import torch

from common import command_line, describe, machine, markdown_table, median, peak_rss_mb, set_threads, timed, today, write_json
from rlvr_world.rl.rollout import left_pad, sample
from rlvr_world.sequence import Generate

COLUMNS = [
    ("decoding", "decoding", ""),
    ("batch", "batch", "d"),
    ("ours_tokens_per_s", "ours tok/s", ".0f"),
    ("generate_tokens_per_s", "generate tok/s", ".0f"),
    ("ratio", "ours / generate", ".2f"),
    ("ours_ms", "ours ms/call", ".1f"),
    ("generate_ms", "generate ms/call", ".1f"),
    ("identical", "outputs identical", ""),
]


def synthetic_tokenizer(n_texts: int = 3000, seed: int = 0):
    """A word BPE fitted on made-up TextWorld-like facts, so no run directory is needed."""
    from rlvr_world.models.tokenizer import train_word_bpe

    rng = random.Random(seed)
    rooms = ["kitchen", "pantry", "vault", "garage", "restroom", "workshop", "attic", "cellar", "study"]
    adjectives = ["wooden", "iron", "red", "rusty", "small", "fancy", "old", "shiny"]

    def thing():  # made-up names give the BPE something to merge, as unseen games do
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
        return f"{rng.choice(adjectives)} {name}" if rng.random() < 0.5 else name

    def fact():
        a, b = rng.sample(rooms, 2)
        return rng.choice([
            f"at({thing()}: {rng.choice('cksf')}, {a}: r)", f"in({thing()}: f, I)", f"open({thing()}: d)",
            f"closed({thing()}: c)", f"north_of({a}: r, {b}: r)", f"link({a}: r, {thing()}: d, {b}: r)",
            f"at(P, {a}: r)", f"take {thing()} from {thing()}",
        ])

    texts = ["\n".join(fact() for _ in range(rng.randint(3, 12))) for _ in range(n_texts)]
    return train_word_bpe(texts, vocab_size=2000)


def real_prompts(run_dir: Path, tokenizer, n: int, seed: int) -> list[list[int]]:
    """`n` prompts drawn at random from the run's training split (BOS included)."""
    import numpy as np

    from rlvr_world import pipeline
    from rlvr_world.config import load_config

    cfg_file = run_dir / "config.yaml"
    cfg = load_config(str(cfg_file) if cfg_file.exists() else "textworld", [f"run_dir={run_dir}"])
    world = pipeline.world_of(cfg)
    exs = pipeline.examples(cfg, world, tokenizer, "train")
    picks = np.random.default_rng(seed).choice(len(exs), size=n, replace=len(exs) < n)
    return [exs[i].prompt_ids for i in picks]


def random_prompts(tokenizer, n: int, length: int, seed: int) -> list[list[int]]:
    """`n` prompts of BOS + `length - 1` uniformly random non-special tokens."""
    g = torch.Generator().manual_seed(seed)
    low = max(tokenizer.all_special_ids) + 1
    body = torch.randint(low, len(tokenizer), (n, length - 1), generator=g)
    return [[tokenizer.bos_token_id] + row for row in body.tolist()]


def run_ours(model, prompts, n: int, temperature: float, seed: int, tokenizer) -> torch.Tensor:
    """[B, n] response ids from our sampler."""
    rollout = sample(model, prompts, (Generate(n, stop_at_eos=False),), eos_id=tokenizer.eos_token_id,
                     pad_id=tokenizer.pad_token_id, group_size=1, temperature=temperature,
                     generator=torch.Generator().manual_seed(seed))
    return rollout.response_ids


def run_generate(model, ids, mask, n: int, temperature: float, seed: int, tokenizer) -> torch.Tensor:
    """[B, n] response ids from `model.generate` on the same left-padded prompts."""
    if temperature > 0:
        torch.manual_seed(seed)  # generate samples from the global generator
        # top_k=0 / top_p=1 switch off generate's default top-k of 50: plain temperature-1 sampling, like ours
        options = dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        options = dict(do_sample=False)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                         eos_token_id=None,  # never stop early, never mask EOS out: exactly n free tokens
                         pad_token_id=tokenizer.pad_token_id, use_cache=True, **options)
    return out[:, ids.size(1):]


def explain_mismatch(model, prompts, ours: torch.Tensor, theirs: torch.Tensor) -> str:
    """Where greedy outputs first differ, and how close the two choices were in a fresh forward pass."""
    row = int((ours != theirs).any(1).nonzero()[0])
    pos = int((ours[row] != theirs[row]).nonzero()[0])
    context = torch.tensor([list(prompts[row]) + ours[row, :pos].tolist()])
    with torch.no_grad():
        logits = model(input_ids=context).logits[0, -1].float()
    a, b = int(ours[row, pos]), int(theirs[row, pos])
    return (f"row {row}, position {pos}: ours chose {a}, generate chose {b}; logit({a}) - logit({b}) = "
            f"{float(logits[a] - logits[b]):.3g} in an unbatched forward pass (a gap near 1e-6 is a float "
            f"near-tie; a large one means the two samplers compute different things)")


def bench_one(model, tokenizer, prompts, n: int, temperature: float, repeats: int, warmup: int, seed: int) -> dict:
    ids, mask = left_pad(prompts, tokenizer.pad_token_id)
    greedy = temperature <= 0
    ours_s, gen_s = [], []
    for r in range(warmup + repeats):
        t_ours, a = timed(lambda: run_ours(model, prompts, n, temperature, seed + r, tokenizer))
        t_gen, b = timed(lambda: run_generate(model, ids, mask, n, temperature, seed + r, tokenizer))
        assert a.shape == b.shape == (len(prompts), n), (a.shape, b.shape)
        if greedy:
            assert torch.equal(a, b), (f"greedy outputs differ (batch {len(prompts)}): "
                                     + explain_mismatch(model, prompts, a, b))
        if r >= warmup:
            ours_s.append(t_ours)
            gen_s.append(t_gen)
    tokens = len(prompts) * n
    t_ours, t_gen = median(ours_s), median(gen_s)
    return {
        "decoding": "greedy" if greedy else f"sampled T={temperature:g}",
        "batch": len(prompts), "new_tokens": n,
        "prompt_tokens_mean": round(float(mask.sum()) / len(prompts), 1), "prompt_width": ids.size(1),
        "ours_tokens_per_s": tokens / t_ours, "generate_tokens_per_s": tokens / t_gen,
        "ratio": t_gen / t_ours,  # ours tok/s over generate tok/s
        "ours_ms": 1e3 * t_ours, "generate_ms": 1e3 * t_gen,
        "ours_s_all": ours_s, "generate_s_all": gen_s,
        "identical": True if greedy else None,  # asserted above; sampled: different random streams
    }


def profile_call(model, tokenizer, prompts, n: int, calls: int) -> tuple[dict, str]:
    """Where one greedy call of our sampler spends its time: (figures, a one-paragraph note).

    The prefill is timed on its own around `rollout._prefill`; torch.profiler gives the
    matmul (aten::mm/addmm/bmm) and attention (SDPA) shares of the whole call.
    """
    from torch.profiler import ProfilerActivity, profile

    import rlvr_world.rl.rollout as rollout

    spent = []
    prefill = rollout._prefill

    def timed_prefill(*a, **k):
        t, out = timed(lambda: prefill(*a, **k))
        spent.append(t)
        return out

    rollout._prefill = timed_prefill
    try:
        run_ours(model, prompts, n, 0.0, 0, tokenizer)  # warm-up
        spent.clear()
        walls = [timed(lambda: run_ours(model, prompts, n, 0.0, 0, tokenizer))[0] for _ in range(calls)]
        prefill_s = median(spent)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                run_ours(model, prompts, n, 0.0, 0, tokenizer)
    finally:
        rollout._prefill = prefill
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    share = lambda keys: sum(e.self_cpu_time_total for e in events if e.key in keys) / total  # noqa: E731
    wall = median(walls)
    out = {
        "profile_batch": len(prompts), "profile_call_ms": 1e3 * wall, "profile_prefill_ms": 1e3 * prefill_s,
        "profile_prefill_share_of_call": prefill_s / wall,
        "profile_decode_step_ms": 1e3 * (wall - prefill_s) / max(n - 1, 1),
        "profile_matmul_share_of_call": share(("aten::mm", "aten::addmm", "aten::bmm")),
        "profile_attention_share_of_call": share(tuple(e.key for e in events if "scaled_dot_product" in e.key
                                                       and "flash" in e.key)),
    }
    note = (f"Profile of one greedy call at batch {len(prompts)} (median of {calls}; `--profile`): the packed prefill "
            f"takes {out['profile_prefill_ms']:.0f} ms of {out['profile_call_ms']:.0f} ms "
            f"({out['profile_prefill_share_of_call']:.0%}), each of the {n - 1} decoding steps (token choice included) "
            f"{out['profile_decode_step_ms']:.1f} ms. Over the whole call, matmuls are "
            f"{out['profile_matmul_share_of_call']:.0%} of the profiled CPU time and attention "
            f"{out['profile_attention_share_of_call']:.0%}. A decoding step reads every weight and the whole KV "
            "cache (left-padded to the longest prompt) for a handful of rows, which is where a next gain would "
            "have to come from: fewer bytes per step, not fewer Python operations.")
    return out, note


DESCRIPTION = (
    "Our sampler (`rl.rollout.sample`, group_size 1, one `Generate(n, stop_at_eos=False)` segment) against "
    "Hugging Face `model.generate` (min_new_tokens = max_new_tokens = n, no EOS, KV cache) on the same model "
    "and the same prompts, calls alternated. tok/s = batch x new tokens / median wall time of one call, "
    "prefill included; ours / generate > 1 means ours is faster. Greedy outputs are asserted token-identical; "
    "sampled outputs come from different random streams (ours inverts the CDF, generate uses multinomial) and "
    "are not compared."
)


def figures(rows: list[dict]) -> dict:
    """Flat figures for the results protocol: ratio and raw tok/s per decoding and batch; headline = greedy at 32.

    ratio = ours tok/s / generate tok/s, as in the table."""
    out = {}
    for r in rows:
        tag = f"batch{r['batch']}_{'greedy' if r['decoding'] == 'greedy' else 'sampled'}"
        out[f"ratio_tokens_per_s_{tag}"] = r["ratio"]
        out[f"ours_tokens_per_s_{tag}"] = r["ours_tokens_per_s"]
        out[f"generate_tokens_per_s_{tag}"] = r["generate_tokens_per_s"]
    if "ratio_tokens_per_s_batch32_greedy" in out:  # the headline: greedy at batch 32 (absent if not run)
        out = {"ratio_tokens_per_s_batch32": out["ratio_tokens_per_s_batch32_greedy"], **out}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=None,
                   help="a run with tokenizer/ and data/: use its tokenizer and real training prompts "
                        "(default: a synthetic tokenizer and random prompts)")
    p.add_argument("--model", type=Path, default=None,
                   help="a saved model folder (e.g. RUN/mle/final) instead of a fresh --preset model; "
                        "its own tokenizer is used")
    p.add_argument("--preset", default="small", help="model size preset from models/lm.py (default: small)")
    p.add_argument("--batch-sizes", default="1,8,32,128", help="comma-separated prompts per call (default: 1,8,32,128)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt (default: 32)")
    p.add_argument("--prompt-len", type=int, default=72,
                   help="length of random prompts, BOS included (default: 72, the median TextWorld prompt); "
                        "ignored with --run-dir")
    p.add_argument("--decoding", default="greedy,sampled", help="which of greedy,sampled to run (default: both)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each sampler per setting (default: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of each first (default: 1; outputs still checked)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: 0 = torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", type=int, default=0, metavar="BATCH",
                   help="also profile greedy calls at this batch size: prefill vs decoding-step time, matmul and "
                        "attention shares (default: 0 = no profile; run_all.sh passes 32)")
    p.add_argument("--prefill-every-position", action="store_true",
                   help="ablation: the packed prefill's last layer computes every position, as the model's forward "
                        "does, instead of only each prompt's last one (same outputs)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.prefill_every_position:
        from rlvr_world.models.llama_decode import LlamaDecoder

        LlamaDecoder.last_layer_at_last_positions = False

    set_threads(args.threads)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    decodings = [d.strip() for d in args.decoding.split(",") if d.strip()]
    if not set(decodings) <= {"greedy", "sampled"}:
        p.error(f"--decoding takes greedy and/or sampled, got {args.decoding!r}")

    from rlvr_world.models.lm import build_model, count_parameters, load_model

    if args.model:
        model, tokenizer = load_model(args.model)
        model_desc = f"{args.model} (trained)"
    else:
        if args.run_dir:
            from transformers import AutoTokenizer

            tok_dir = args.run_dir / "tokenizer"
            if not (tok_dir / "tokenizer.json").exists():
                p.error(f"{tok_dir}: no tokenizer; run `rlvr-world pretrain` for that run first")
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        else:
            tokenizer = synthetic_tokenizer(seed=args.seed)
        need = (args.prompt_len if not args.run_dir else 0) + args.new_tokens
        model = build_model(args.preset, tokenizer, max_positions=max(512, need), seed=args.seed)
        model_desc = f"fresh `{args.preset}` Llama"
    model.eval()
    if args.run_dir:
        all_prompts = real_prompts(args.run_dir, tokenizer, max(batch_sizes), args.seed)
        prompt_desc = f"real TextWorld prompts from {args.run_dir}/data train split"
    else:
        all_prompts = random_prompts(tokenizer, max(batch_sizes), args.prompt_len, args.seed)
        prompt_desc = f"random tokens, length {args.prompt_len}"

    info = machine()
    settings = {
        "model": model_desc, "parameters": count_parameters(model), "vocab": len(tokenizer),
        "prompts": prompt_desc, "new_tokens": args.new_tokens, "repeats": args.repeats, "warmup": args.warmup,
        "batch_sizes": batch_sizes, "prefill_every_position": args.prefill_every_position,
    }
    print(f"# Sampler vs model.generate\n\n{today()}\n`{command_line()}`\n\nmachine: {describe(info)}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()), flush=True)

    rows = []
    for decoding in decodings:
        temperature = 0.0 if decoding == "greedy" else 1.0
        for batch in batch_sizes:
            row = bench_one(model, tokenizer, all_prompts[:batch], args.new_tokens, temperature,
                            args.repeats, args.warmup, args.seed)
            rows.append(row)
            print(f"  {row['decoding']:>14} batch {batch:4d}: ours {row['ours_tokens_per_s']:8.0f} tok/s, "
                  f"generate {row['generate_tokens_per_s']:8.0f} tok/s, ratio {row['ratio']:.2f}, "
                  f"identical {row['identical']}", flush=True)

    profiled, profile_notes = {}, []
    if args.profile:
        profiled, note = profile_call(model, tokenizer, all_prompts[:args.profile], args.new_tokens, args.repeats)
        profile_notes.append(note)
        print("\n" + note, flush=True)

    table = markdown_table(rows, COLUMNS)
    print("\n" + table)
    print("\ntok/s = batch x new_tokens / median wall time of one call (prefill included). "
          "Greedy outputs are asserted identical; sampled ones use different random streams and are not compared.")
    if args.json:
        write_json(args.json, {
            "benchmark": "sampler_vs_generate", "title": "Sampler vs model.generate", "description": DESCRIPTION,
            "command": command_line(), "date": today(), "machine": info, "settings": settings,
            "columns": COLUMNS, "rows": rows, "figures": {**figures(rows), **profiled, "peak_rss_mb": peak_rss_mb()},
            "notes": ["peak_rss_mb is the whole benchmark process's peak resident memory (ru_maxrss: imports, data and every configuration measured), an upper bound for any one of them.", "ratio_tokens_per_s_batch32 (the headline) is the greedy ratio at batch 32; "
                      "ratio_tokens_per_s_batch32_greedy and ratio_tokens_per_s_batch32_sampled name both, "
                      "with the raw ours / generate tok/s beside them (figures for every batch size are kept too).",
                      "Where the difference comes from: ours prefills a plain Llama's prompts packed end to end "
                      "(no padding; `models/llama_decode.py`), and its last layer computes the query, attention and "
                      "MLP only at each prompt's last position, the one that feeds the first token (every other "
                      "position's output there feeds nothing; keys and values are computed everywhere); generate "
                      "pads every prompt to the longest and runs every layer at every position. Decoding steps run "
                      "fused q/k/v and gate/up matmuls on the model's own weights. Same model, tokens and fp32 "
                      "precision: greedy outputs are asserted identical.",
                      *profile_notes,
                      "CPU wall-clock on a possibly shared machine: the load average at the start is in the machine line."],
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
