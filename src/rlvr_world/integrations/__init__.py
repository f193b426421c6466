"""Adapters that hand a text world's rewards and data to other RL engines.

* `rlvr_world.integrations.trl`: reward functions with the signature TRL's `GRPOTrainer`
  calls, and a `datasets.Dataset` of prompts with a `ground_truth` column.
* `rlvr_world.integrations.verl`: a reward function for verl's reward manager, and the
  dataset rows verl trains on (the ground truth as `reward_model.ground_truth`).

Both only use the text interface every text world has (`LanguageWorld`: `prompt_text`,
`ground_truth`, `target_from_ground_truth`, `parse`) and the registered rewards, so a new
text world works in either engine without code here. Each adapter imports its engine's
packages only when used (`pip install 'rlvr-world[trl]'` for TRL).
"""
