"""The ByteSized32 world: text games whose state is a list of JSON objects and a score
(ByteSized32-State-Prediction, Wang et al., ACL 2024; users bring the files).

format.py   the published JSONL and rules files, every field documented and validated
codec.py    state differences: compute, apply, render as a prompt, read back from a response
collect.py  validate the user's files, split them, cache them (JSONL per split + manifest)
world.py    `ByteSized32World`: prompts, targets, parsing and metrics for the trainers
sample/     a small file in the published format, written for this project (4 invented games)
"""
