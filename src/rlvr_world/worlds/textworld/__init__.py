"""The TextWorld world: generated text games whose state is TextWorld's own set of facts.

collect.py  generate games with TextWorld, play them, cache transitions (JSONL per split)
codec.py    facts and differences as text, and back (pure functions)
world.py    `TextWorldWorld`: tokenizer, examples, decoding and metrics for the trainers
"""
