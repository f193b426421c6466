#!/usr/bin/env bash
# GRPO on a text world's verifiable reward with verl 0.9.1, on a GPU node (8 GPUs by default).
#
# Two environments, because verl pins its own transformers and torch:
#   * ours (scripts/setup.sh -> .venv) collects the world's transitions and exports verl's
#     parquet rows (`rlvr-world export verl`);
#   * verl's (on the cluster: `pip install "verl[vllm]==0.9.1"`, then this repo with
#     `pip install --no-deps -e .` so verl can import our reward; scripts/setup_verl.sh builds
#     the same on a CPU machine, without vLLM) runs the training.
#
#   bash examples/verl_grpo.sh
#   WORLD=miniwob MODEL=/models/Qwen2.5-1.5B-Instruct N_GPUS=4 bash examples/verl_grpo.sh trainer.total_epochs=3
#
# Extra arguments go to verl as Hydra overrides (they win over the ones below), e.g. another
# reward without exporting again: +reward.custom_reward_function.reward_kwargs.reward=f1
# DRY_RUN=1 prints verl's overrides, one a line, and exits: nothing is exported or launched
# (tests/test_verl_integration.py composes and validates verl's config with them).
set -euo pipefail
cd "$(dirname "$0")/.."

# ---- what to change ------------------------------------------------------------------------
WORLD=${WORLD:-textworld}                   # a text world: textworld or miniwob (configs/<world>.yaml)
MODEL=${MODEL:-Qwen/Qwen2.5-0.5B-Instruct}  # any HF causal LM with a chat template (a local folder offline)
N_GPUS=${N_GPUS:-8}                         # GPUs per node
NNODES=${NNODES:-1}
RUN_DIR=${RUN_DIR:-runs/$WORLD}             # our run: transitions are collected into $RUN_DIR/data if missing
DATA=${DATA:-$RUN_DIR/verl}                 # where train/val/test.parquet are written
REWARD=${REWARD:-}                          # reward spec carried by the rows ("binary", "f1:1,exact:0.2");
                                            #   empty = the world's default (TextWorld: binary, MiniWoB++: f1)
RLVR_PY=${RLVR_PY:-.venv/bin/python}        # our environment (export)
VERL_PY=${VERL_PY:-python3}                 # verl's environment (training)

if [ -z "${DRY_RUN:-}" ]; then
  "$RLVR_PY" -m rlvr_world.cli export verl --world "$WORLD" --out "$DATA" "run_dir=$RUN_DIR" \
    ${REWARD:+"rlvr.reward=$REWARD"}
fi
# verl loads the reward function from a file: the installed module's own path.
REWARD_FN_FILE=$("$VERL_PY" -c 'import rlvr_world.integrations.verl as m; print(m.__file__)')

ARGS=(
  algorithm.adv_estimator=grpo                      # group-relative advantages, no critic
  algorithm.use_kl_in_reward=False                  # KL goes into the loss instead (use_kl_loss)
  "data.train_files=$DATA/train.parquet"
  "data.val_files=$DATA/val.parquet"                # test.parquet (unseen games) stays held out
  data.train_batch_size=256                         # prompts per step
  data.max_prompt_length=1024                       # TextWorld views are ~60-80 words, MiniWoB++ pages longer
  data.max_response_length=256                      # a state difference is a few lines
  data.filter_overlong_prompts=True
  data.truncation=error
  "actor_rollout_ref.model.path=$MODEL"
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.optim.lr=1e-6
  actor_rollout_ref.actor.ppo_mini_batch_size=64    # prompts per policy update (x rollout.n responses)
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16   # lower on OOM
  actor_rollout_ref.actor.use_kl_loss=True
  actor_rollout_ref.actor.kl_loss_coef=0.001
  actor_rollout_ref.actor.kl_loss_type=low_var_kl
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.fsdp_config.param_offload=False
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=False
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n=8                     # group size: responses per prompt
  actor_rollout_ref.rollout.tensor_model_parallel_size=1    # raise for models over ~7B
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32
  actor_rollout_ref.ref.fsdp_config.param_offload=True
  "reward.custom_reward_function.path=$REWARD_FN_FILE"      # rlvr_world/integrations/verl.py
  reward.custom_reward_function.name=compute_score
  trainer.critic_warmup=0
  'trainer.logger=["console","tensorboard"]'        # add "wandb" if you use it
  trainer.project_name=rlvr_world
  "trainer.experiment_name=${WORLD}_grpo"
  "trainer.n_gpus_per_node=$N_GPUS"
  "trainer.nnodes=$NNODES"
  trainer.save_freq=50
  trainer.test_freq=10
  trainer.total_epochs=10
)

if [ -n "${DRY_RUN:-}" ]; then
  printf '%s\n' "${ARGS[@]}" "$@"
  exit 0
fi
exec "$VERL_PY" -m verl.trainer.main_ppo "${ARGS[@]}" "$@"
