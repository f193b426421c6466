"""Record Meta-World robot-manipulation episodes, rendered by MuJoCo on CPU, as cached frames.

Each episode runs one Meta-World v3 task (Sawyer arm, MuJoCo physics) from a fresh random
layout, driven by the task's scripted expert policy (`metaworld.policies`) plus Gaussian
action noise, and is stored as ``episodes/<task>/<index:05d>.npz``::

    frames   uint8   [T+1, S, S, 3]  frame t shows the state before action t; frame 0 after reset
    actions  float32 [T, 4]          the applied action [dx, dy, dz, grip]: expert + noise, clipped to [-1, 1]
    success  bool    [T+1]           Meta-World's success flag for the state in frame t
    (and scalars: noise, episode_seed, retries, retry_errors; not needed to train)

Action repeat: each recorded action is applied for `frame_skip` Meta-World env steps (each of
those is itself 5 MuJoCo steps of 2.5 ms), and one frame is recorded after them. An episode
ends `steps_after_success` recorded steps after its first success, or after `max_steps`.

The train tasks' episodes are split by episode into train / val / test (balanced over noise
levels); every episode of a held-out task goes to the split "heldout_task" and no episode of
it is ever in train, val or test.

The env is built with ``render_mode=None`` and rendered by `FrameRenderer`: a fixed camera
through MuJoCo's own offscreen context (EGL on CPU by default), with shadows, reflections,
skybox and multisampling off. It makes its GL context current before every frame and is
closed with its env, so no closed env's viewer is ever held (the all-black-frame trap); every
frame is also checked not to be black. One env + renderer (`Sim`) records up to
`EPISODES_PER_SIM` episodes of a task in a row (building one costs ~0.6 s); every episode
reseeds and resets it, and comes out bit-identical to one recorded by a fresh `Sim`.

Reading a cache (`load_episodes`) needs only numpy; Meta-World and MuJoCo are imported inside
the functions that run them, after `MUJOCO_GL` (default egl) and `LP_NUM_THREADS=1` are set.

Measured (metaworld 3.1.1, mujoco 3.3.0, Mesa llvmpipe; defaults below unless said; on the
shared 2-core machine, where other jobs held 1-2 cores throughout, so wall times are noisy):
  - The default collection: 432 episodes (4 x 100 train-task, 32 held-out), 18,058 frames,
    27 MB, in 5.5 min with 2 workers (55 frames/s) beside two other CPU-bound jobs.
  - CPU cost, which does not depend on the neighbours: ~72 frames per CPU-second per worker
    (13.8 ms a frame: 4 env steps ~4 ms, render ~10 ms, compression; building a Sim ~0.6 s).
    Wall clock on the same 2,958 frames: 1 worker 64 frames/s, 2 workers 69 frames/s; the
    second core was never free (OFFLINE.md measured 170 -> 350 frames/s on free cores).
  - Success rate per action-noise std (108 episodes each): 0.0: 100%, 0.5: 94%, 1.0: 58%,
    1.5: 40%. At 1.0 and 1.5, button-press and drawer-open mostly fail, reach and door-open
    mostly succeed; the held-out drawer-close succeeds at every level.
  - Episode length (recorded steps): mean 41 (15-64); by noise 26 / 36 / 47 / 55. The
    noise-free expert first succeeds after 20 steps (median; at most 31).
  - Consecutive frames nearly identical (mean abs diff < 1/255): 9.6% at frame_skip 4 (mean
    abs diff 3.0/255), 28% at 2 (1.8/255), 58% at 1 (1.0/255), same horizon in env steps.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rlvr_world.worlds.cache import package_versions, read_manifest, write_atomic

SPLITS = ("train", "val", "test", "heldout_task")
ARRAY_KEYS = ("frames", "actions", "success")
# Config fields that decide an episode file's content: a cache written with other values
# cannot be resumed (the episode files would silently mix two settings).
CONTENT_FIELDS = ("action_noise", "frame_skip", "max_steps", "steps_after_success", "camera", "image_size")
COLLECT_HINT = "run `rlvr-world collect --config metaworld` (or your config) to collect it"
EPISODES_PER_SIM = 8  # episodes of one task recorded with one env + renderer before a new one is built
NEAR_IDENTICAL = 1.0  # mean absolute difference (0-255 scale) under which two frames count as the same


@dataclass
class MetaWorldCollectConfig:
    """Which Meta-World tasks to record and how (YAML `collect:` section; lists become tuples)."""

    # Train tasks: their episodes are split by episode into train / val / test. All four show
    # large motion at 64 px (arm, drawer, door, button); reach's goal is only a 1-2 px dot.
    tasks: tuple[str, ...] = ("reach-v3", "drawer-open-v3", "door-open-v3", "button-press-v3")
    # Whole tasks never seen in train / val / test (split "heldout_task"): closing the drawer
    # the model saw opened.
    held_out_tasks: tuple[str, ...] = ("drawer-close-v3",)
    episodes_per_task: int = 100  # episodes recorded per train task
    heldout_episodes_per_task: int = 32  # episodes recorded per held-out task (evaluation only)
    val_fraction: float = 0.1  # of each train task's episodes, for model selection
    test_fraction: float = 0.1  # of each train task's episodes, for the final report
    # Std of the Gaussian noise added to the expert's action, cycled over episode indices
    # (episode i uses action_noise[i % len]). At 0 and 0.5 the experts nearly always succeed,
    # at 1.0 and 1.5 often not (see the measured rates above), so the data holds both.
    action_noise: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5)
    # Action repeat: each recorded action runs for this many Meta-World env steps, then one
    # frame is recorded. Consecutive 64 px frames barely differ at 1 (58% nearly identical),
    # so a world model would learn to copy its input; at 4 only ~10% are.
    frame_skip: int = 4
    max_steps: int = 64  # recorded steps per episode at most (64 x 4 = 256 of Meta-World's 500 env steps)
    # Cut the episode this many recorded steps after its first success: frames are nearly
    # static once the task is done.
    steps_after_success: int = 8
    # Meta-World camera. corner4 shows the arm and the objects largest at 64 px (corner3: the
    # whole table). corner* cameras render rotated by 180 degrees and are flipped back.
    camera: str = "corner4"
    image_size: int = 64  # frames are image_size x image_size RGB
    workers: int = 2  # processes recording episodes (one per core; 1: in this process)
    max_retries: int = 2  # re-runs of an episode with a fresh env after it raises (simulator crash)

    def __post_init__(self):
        for name in ("tasks", "held_out_tasks", "action_noise"):
            value = getattr(self, name)
            if isinstance(value, (str, int, float)):
                value = (value,)
            setattr(self, name, tuple(value))
        self.tasks = tuple(str(t) for t in self.tasks)
        self.held_out_tasks = tuple(str(t) for t in self.held_out_tasks)
        self.action_noise = tuple(float(n) for n in self.action_noise)
        if not self.tasks:
            raise ValueError("collect.tasks must name at least one Meta-World task")
        for name in ("tasks", "held_out_tasks"):
            value = getattr(self, name)
            if len(set(value)) != len(value):
                raise ValueError(f"collect.{name} lists a task twice: {list(value)}")
        both = sorted(set(self.tasks) & set(self.held_out_tasks))
        if both:
            raise ValueError(f"collect: task(s) {both} are in both tasks and held_out_tasks")
        if not self.action_noise or any(not np.isfinite(n) or n < 0 for n in self.action_noise):
            raise ValueError(f"collect.action_noise must be a non-empty list of stds >= 0, got {list(self.action_noise)}")
        for name in ("episodes_per_task", "frame_skip", "max_steps", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"collect.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("heldout_episodes_per_task", "steps_after_success", "max_retries"):
            if getattr(self, name) < 0:
                raise ValueError(f"collect.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size < 8:
            raise ValueError(f"collect.image_size must be >= 8, got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"collect.{name} must be in [0, 1), got {getattr(self, name)}")
        n_val, n_test = split_sizes(self)
        if n_val + n_test >= self.episodes_per_task:
            raise ValueError(
                f"collect: val_fraction and test_fraction leave no train episode out of "
                f"episodes_per_task={self.episodes_per_task} (val {n_val}, test {n_test})")


# ---------------------------------------------------------------------------------------------
# Seeds and splits


def _derive(*parts) -> int:
    """A stable 31-bit integer from the parts (same value in every process and Python run)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31 - 1)


def episode_seed(seed: int, task: str, index: int, attempt: int = 0) -> int:
    """Seed of one episode's layout and action noise; a retry (attempt >= 1) gets a new one,
    so a crash that the same seed would repeat is not run again identically."""
    return _derive("metaworld-episode", seed, task, index, attempt)


def noise_of(cfg: MetaWorldCollectConfig, index: int) -> float:
    return cfg.action_noise[index % len(cfg.action_noise)]


def split_sizes(cfg: MetaWorldCollectConfig) -> tuple[int, int]:
    """(val, test) episodes per train task; a non-zero fraction gets at least one episode."""
    def size(fraction: float) -> int:
        return max(1, round(fraction * cfg.episodes_per_task)) if fraction > 0 else 0
    return size(cfg.val_fraction), size(cfg.test_fraction)


def split_of_episodes(cfg: MetaWorldCollectConfig, seed: int, task: str) -> dict[int, str]:
    """Episode index -> split for one task (the split is by episode, balanced over noise levels).

    The episodes of each noise level are shuffled, the levels are dealt round-robin, and the
    first ones dealt go to test, then val, the rest to train.
    """
    if task in cfg.held_out_tasks:
        return {i: "heldout_task" for i in range(cfg.heldout_episodes_per_task)}
    rng = np.random.default_rng(_derive("metaworld-split", seed, task))
    n_levels = len(cfg.action_noise)
    groups = [rng.permutation(np.arange(level, cfg.episodes_per_task, n_levels)).tolist() for level in range(n_levels)]
    dealt = [g[k] for k in range(max(map(len, groups))) for g in groups if k < len(g)]
    n_val, n_test = split_sizes(cfg)
    out = {i: "train" for i in range(cfg.episodes_per_task)}
    for i in dealt[:n_test]:
        out[i] = "test"
    for i in dealt[n_test:n_test + n_val]:
        out[i] = "val"
    return out


def episode_file(task: str, index: int) -> str:
    """Path of an episode's file, relative to the data dir."""
    return f"episodes/{task}/{index:05d}.npz"


# ---------------------------------------------------------------------------------------------
# Running Meta-World


class SimulationError(RuntimeError):
    """MuJoCo went unstable or the renderer returned an all-black frame."""


def _setup_process_env() -> None:
    """Rendering settings that must be in place before mujoco is imported / renders first."""
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless; set MUJOCO_GL=osmesa to use OSMesa instead
    os.environ["LP_NUM_THREADS"] = "1"  # Mesa llvmpipe: one render thread per worker process


def check_tasks(cfg: MetaWorldCollectConfig) -> None:
    """ValueError when a task has no Meta-World v3 env or no scripted expert, or the camera is unknown."""
    _setup_process_env()
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.policies import ENV_POLICY_MAP

    for task in cfg.tasks + cfg.held_out_tasks:
        if task not in ALL_V3_ENVIRONMENTS or task not in ENV_POLICY_MAP:
            known = sorted(set(ALL_V3_ENVIRONMENTS) & set(ENV_POLICY_MAP))
            raise ValueError(f"unknown Meta-World task {task!r}; tasks with an expert: {', '.join(known)}")
    env = ALL_V3_ENVIRONMENTS[cfg.tasks[0]](render_mode=None)
    try:
        cameras = [env.model.camera(i).name for i in range(env.model.ncam)]
    finally:
        env.close()
    if cfg.camera not in cameras:
        raise ValueError(f"unknown camera {cfg.camera!r}; Meta-World's cameras: {', '.join(cameras)}")


def _make_env(task: str, ep_seed: int, max_env_steps: int):
    """A fresh env of `task` whose every reset draws a new layout from its own seeded RNG."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    env = ALL_V3_ENVIRONMENTS[task](render_mode=None)
    env._partially_observable = False  # the goal is in the observation: the experts need it
    del env.sawyer_observation_space  # cached for the partially observable case; recomputed
    env._freeze_rand_vec = False  # a new random layout at reset (not one of MT1's 50 fixed ones)
    env.seeded_rand_vec = True  # ... drawn from env.np_random, not the global numpy RNG
    env._set_task_called = True  # no `set_task`: the layout comes from the RNG above
    env.seed(ep_seed)
    env.max_path_length = max_env_steps  # Meta-World raises after 500 env steps by default
    return env


def _gl_context(size: int):
    """An offscreen OpenGL context of the backend MUJOCO_GL names now (egl unless osmesa/glfw).

    Chosen here rather than through `mujoco.Renderer`, whose backend is fixed when mujoco is
    first imported: imported before MUJOCO_GL was set, it picks GLFW, which aborts the
    process on a machine without a display.
    """
    backend = os.environ.get("MUJOCO_GL", "egl").strip().lower()
    if backend == "osmesa":
        from mujoco.osmesa import GLContext
    elif backend == "glfw":
        from mujoco.glfw import GLContext
    else:
        from mujoco.egl import GLContext
    return GLContext(size, size)


class FrameRenderer:
    """Renders one fixed camera of a model into size x size RGB frames, on CPU (Mesa llvmpipe).

    Its GL context is made current before every frame, so another renderer created or freed
    in the same process cannot turn its frames black.
    """

    def __init__(self, model, data, camera: str, size: int):
        import mujoco

        self.model, self.data = model, data
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"unknown camera {camera!r}")
        # Multisampling and shadow maps cost most of the render time at 64 px (~12 -> ~170
        # frames/s in OFFLINE.md); both are read when the MjrContext is created.
        model.vis.quality.offsamples = 0
        model.vis.quality.shadowsize = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, size)
        self.gl = self.context = None
        try:
            self.gl = _gl_context(size)
            self.gl.make_current()
            self.context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self.context)
        except BaseException:
            self.close()
            raise
        self.scene = mujoco.MjvScene(model, maxgeom=1000)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION,
                     mujoco.mjtRndFlag.mjRND_SKYBOX):
            self.scene.flags[flag] = 0
        self.option, self.perturb = mujoco.MjvOption(), mujoco.MjvPerturb()
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.camera.fixedcamid = camera_id
        self.rect = mujoco.MjrRect(0, 0, size, size)
        self.pixels = np.empty((size, size, 3), dtype=np.uint8)
        # OpenGL's rows run bottom-up; the corner cameras are also rotated by 180 degrees.
        self.flip = (slice(None), slice(None, None, -1)) if camera.startswith("corner") else (slice(None, None, -1),)

    def render(self) -> np.ndarray:
        import mujoco

        if self.context is None:
            raise RuntimeError("render after close")
        self.gl.make_current()
        mujoco.mjv_updateScene(self.model, self.data, self.option, self.perturb, self.camera,
                               mujoco.mjtCatBit.mjCAT_ALL, self.scene)
        mujoco.mjr_render(self.rect, self.scene, self.context)
        mujoco.mjr_readPixels(self.pixels, None, self.rect, self.context)
        return self.pixels[self.flip].copy()

    def close(self) -> None:
        if self.context is not None:
            self.gl.make_current()
            self.context.free()
        if self.gl is not None:
            self.gl.free()
        self.gl = self.context = None
        self.model = self.data = None


def _unstable(data) -> bool:
    import mujoco

    bad = (mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL)
    return any(data.warning[w].number > 0 for w in bad) or not np.isfinite(data.qpos).all()


class Sim:
    """One env of a task and its renderer, reused across that task's episodes in a worker.

    Every episode reseeds the env and resets it (MuJoCo's data is reset too), so an episode
    comes out the same from a fresh Sim or a reused one. Close it after a crash.
    """

    def __init__(self, task: str, cfg: MetaWorldCollectConfig):
        _setup_process_env()
        self.task, self.cfg = task, cfg
        self.env = self.renderer = None
        try:
            self.env = _make_env(task, 0, cfg.max_steps * cfg.frame_skip)
            self.renderer = FrameRenderer(self.env.model, self.env.data, cfg.camera, cfg.image_size)
        except BaseException:
            self.close()
            raise

    def frame(self) -> np.ndarray:
        return self.renderer.render()

    def close(self) -> None:
        """Free the GL context and the env; keep no reference to either (black-frame trap)."""
        if self.renderer is not None:
            self.renderer.close()
        if self.env is not None:
            self.env.close()
        self.env = self.renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def record_episode(task: str, cfg: MetaWorldCollectConfig, ep_seed: int, noise: float,
                   sim: Sim | None = None) -> dict[str, np.ndarray]:
    """Run one episode of `task` from the layout of `ep_seed`: {"frames", "actions", "success"}.

    Uses `sim` when given (it must be of `task`), else a fresh one that is closed afterwards.
    Raises SimulationError when MuJoCo goes unstable or a frame is all black.
    """
    if sim is None:
        with Sim(task, cfg) as fresh:
            return record_episode(task, cfg, ep_seed, noise, fresh)
    if sim.task != task:
        raise ValueError(f"record_episode: a Sim of {sim.task} cannot run {task}")
    from metaworld.policies import ENV_POLICY_MAP

    env = sim.env
    env.seed(ep_seed)  # the layout RNG
    noise_rng = np.random.default_rng([ep_seed, 1])
    policy = ENV_POLICY_MAP[task]()
    obs, _ = env.reset()
    _, info = env.evaluate_state(obs, np.zeros(4, dtype=np.float32))
    frames, actions, success = [sim.frame()], [], [bool(info["success"])]
    first_success = 0 if success[0] else None
    for step in range(cfg.max_steps):
        if first_success is not None and step >= first_success + cfg.steps_after_success:
            break
        with warnings.catch_warnings():  # the experts' gains saturate; the action is clipped anyway
            warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")
            expert = np.asarray(policy.get_action(obs), dtype=np.float64)
        action = np.clip(expert + noise * noise_rng.standard_normal(4), -1.0, 1.0).astype(np.float32)
        for _ in range(cfg.frame_skip):
            obs, _, _, _, info = env.step(action)
            if _unstable(env.data):
                raise SimulationError(f"MuJoCo went unstable in {task} (episode seed {ep_seed}) at step {step}")
        frames.append(sim.frame())
        actions.append(action)
        success.append(bool(info["success"]))
        if first_success is None and success[-1]:
            first_success = len(success) - 1
    frames = np.stack(frames)
    black = np.flatnonzero(frames.reshape(len(frames), -1).max(axis=1) == 0)
    if len(black):
        raise SimulationError(f"the renderer returned {len(black)} all-black frame(s) (first: frame {black[0]})")
    return {
        "frames": frames.astype(np.uint8),
        "actions": np.stack(actions).astype(np.float32),
        "success": np.array(success, dtype=bool),
    }


def _first_success(success: np.ndarray) -> int | None:
    hits = np.flatnonzero(success)
    return int(hits[0]) if len(hits) else None


def _near_identical(frames: np.ndarray) -> tuple[int, float]:
    """(consecutive pairs whose mean abs difference is below NEAR_IDENTICAL, summed mean abs diff)."""
    diffs = np.abs(frames[1:].astype(np.int16) - frames[:-1].astype(np.int16)).mean(axis=(1, 2, 3))
    return int((diffs < NEAR_IDENTICAL).sum()), float(diffs.sum())


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed to a temporary name, then rename: no half-written file under `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        with open(tmp, "wb") as f:  # a file object: savez would append ".npz" to a name
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _run_batch(batch: dict) -> list[dict]:
    """Worker: record a batch of episodes of one task with one reused Sim, writing each file as
    soon as it is recorded. An episode that raises is retried with a fresh Sim and a new seed."""
    cfg = MetaWorldCollectConfig(**batch["cfg"])
    task = batch["task"]
    out = []
    sim = None
    try:
        for job in batch["jobs"]:
            errors: list[str] = []
            t0, cpu0 = time.perf_counter(), time.process_time()
            for attempt in range(cfg.max_retries + 1):
                ep_seed = episode_seed(job["seed"], task, job["index"], attempt)
                try:
                    if sim is None:
                        sim = Sim(task, cfg)
                    arrays = record_episode(task, cfg, ep_seed, job["noise"], sim)
                    break
                except Exception as e:  # a simulator or renderer crash
                    errors.append(f"attempt {attempt} (episode seed {ep_seed}): {type(e).__name__}: {e}")
                    if sim is not None:
                        sim.close()
                    sim = None
            else:
                out.append({**job, "ok": False, "errors": errors})
                continue
            _save_atomic(Path(job["path"]), {
                **arrays,
                "noise": np.float32(job["noise"]),
                "episode_seed": np.int64(ep_seed),
                "retries": np.int64(len(errors)),
                "retry_errors": np.array(errors, dtype=np.str_),
            })
            same, diff_sum = _near_identical(arrays["frames"])
            out.append({**job, "ok": True, "errors": errors, "retries": len(errors),
                        "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - cpu0,
                        "length": len(arrays["actions"]),
                        "first_success": _first_success(arrays["success"]),
                        "near_identical": same, "diff_sum": diff_sum})
    finally:
        if sim is not None:
            sim.close()
    return out


def _init_worker() -> None:
    _setup_process_env()


# ---------------------------------------------------------------------------------------------
# The cache


def _check_settings(cfg: MetaWorldCollectConfig, data_dir: Path, seed: int) -> None:
    """Refuse to resume a cache whose episode files were recorded with other settings."""
    path = data_dir / "episodes" / "settings.json"
    settings = json.loads(json.dumps({"seed": seed, **{k: getattr(cfg, k) for k in CONTENT_FIELDS}}))
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old != settings:
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(
                f"{data_dir} holds episodes recorded with other settings ({', '.join(changed)}: "
                f"{ {k: old.get(k) for k in changed} } there, { {k: settings.get(k) for k in changed} } now); "
                f"use another data_dir or delete {data_dir / 'episodes'}")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, [json.dumps(settings, indent=2) + "\n"])


def _stored_record(path: Path, size: int) -> dict:
    """The manifest fields of an episode file written by an earlier run."""
    data = _read_npz(path, size)
    with np.load(path, allow_pickle=False) as z:
        retries = int(z["retries"]) if "retries" in z.files else 0
        errors = [str(e) for e in z["retry_errors"]] if "retry_errors" in z.files else []
    same, diff_sum = _near_identical(data["frames"])
    return {"retries": retries, "errors": errors, "length": len(data["actions"]),
            "first_success": _first_success(data["success"]), "near_identical": same, "diff_sum": diff_sum}


def _rate(records: list[dict]) -> dict:
    n = len(records)
    ok = sum(r["first_success"] is not None for r in records)
    return {"episodes": n, "successes": ok, "success_rate": ok / n if n else None}


def _run_in_processes(batches: list[dict], cfg: MetaWorldCollectConfig, take) -> int:
    """Run the batches on `cfg.workers` spawned processes; returns how often a worker died.

    A process pool from the spawn context: each worker sets MUJOCO_GL / LP_NUM_THREADS before it
    first imports mujoco, and never inherits a parent's GL context. It is a
    `ProcessPoolExecutor`, not a `multiprocessing.Pool`: when a worker process dies (a segfault
    in MuJoCo or the GL driver, the OOM killer) the Pool waits forever for its task, while the
    executor raises BrokenProcessPool. The pool is then rebuilt and the episodes without a
    file are run again, up to `max_retries` times.
    """
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pending = list(batches)
    for deaths in range(cfg.max_retries + 1):
        executor = ProcessPoolExecutor(min(cfg.workers, len(pending)),
                                       mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)
        futures, finished = {}, 0
        try:
            futures = {executor.submit(_run_batch, b): b for b in pending}
            while futures:
                ready, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in ready:
                    batch = futures.pop(future)
                    take(future.result())  # BrokenProcessPool when a worker died
                    pending.remove(batch)
                    finished += 1
            executor.shutdown()
            return deaths
        except BrokenProcessPool as e:
            executor.shutdown(wait=False, cancel_futures=True)
            # Episodes whose file was written before the crash count as done and are not run again.
            written = [j for b in pending for j in b["jobs"] if Path(j["path"]).is_file()]
            if written:
                take([{**j, "ok": True, **_stored_record(Path(j["path"]), cfg.image_size)} for j in written])
            pending = [{**b, "jobs": [j for j in b["jobs"] if not Path(j["path"]).is_file()]} for b in pending]
            hint = ("" if finished or written else " No episode was recorded: if the script calling collect() "
                    "has no `if __name__ == \"__main__\":` guard, spawned workers cannot start.")
            if deaths == cfg.max_retries:
                raise RuntimeError(f"a Meta-World worker process died {deaths + 1} time(s) ({e}); the episodes "
                                   f"recorded so far are kept, run again to resume.{hint}") from e
            warnings.warn(f"a Meta-World worker process died ({e}); rerunning its unfinished episodes.{hint}")
            pending = [b for b in pending if b["jobs"]]
            if not pending:
                return deaths + 1
        except BaseException:
            executor.shutdown(wait=False, cancel_futures=True)
            raise
    return cfg.max_retries + 1


def collect(cfg: MetaWorldCollectConfig | dict, data_dir: Path, seed: int = 0, progress: bool = True) -> dict:
    """Record every episode not cached yet under `data_dir/episodes/`, then write `manifest.json`.

    Resumable: an episode whose file exists is not run again. An episode that raises is
    retried with a fresh env (and a new seed) up to `max_retries` times; when it still fails,
    the other episodes are finished and kept, and a RuntimeError names the failures (no
    manifest is written: run again to resume). Returns the manifest.
    """
    if isinstance(cfg, dict):
        cfg = MetaWorldCollectConfig(**cfg)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    check_tasks(cfg)
    _check_settings(cfg, data_dir, seed)
    manifest_path = data_dir / "manifest.json"
    if manifest_path.exists():  # the cache counts as incomplete until the new manifest is written
        manifest_path.unlink()
    for stale in (data_dir / "episodes").glob("*/.*.tmp.npz"):  # left by a killed run
        stale.unlink(missing_ok=True)
    t0 = time.perf_counter()

    jobs = []
    for task in cfg.tasks + cfg.held_out_tasks:
        for index, split in split_of_episodes(cfg, seed, task).items():
            jobs.append({"task": task, "index": index, "split": split, "noise": noise_of(cfg, index),
                         "file": episode_file(task, index), "path": str(data_dir / episode_file(task, index)),
                         "seed": seed})
    done = {}
    for j in jobs:
        if Path(j["path"]).is_file():
            try:
                done[j["file"]] = _stored_record(Path(j["path"]), cfg.image_size)
            except ValueError as e:  # files are renamed into place whole, so this is disk damage
                warnings.warn(f"{e.args[0].split('; ')[0]}; recording it again")
                Path(j["path"]).unlink()
    todo = [j for j in jobs if j["file"] not in done]
    # Batches of one task's episodes share a Sim (building one costs ~0.6 s, as much as a
    # 40-frame episode). Index-major order: an interrupted run leaves every task with about
    # as many episodes.
    batches = []
    for task in cfg.tasks + cfg.held_out_tasks:
        mine = [j for j in todo if j["task"] == task]
        for k in range(0, len(mine), EPISODES_PER_SIM):
            batches.append({"task": task, "cfg": asdict(cfg), "jobs": mine[k:k + EPISODES_PER_SIM]})
    batches.sort(key=lambda b: (b["jobs"][0]["index"], (cfg.tasks + cfg.held_out_tasks).index(b["task"])))

    results, failed, worker_deaths = {}, [], 0
    bar = tqdm(total=len(jobs), initial=len(done), desc="metaworld episodes", unit="ep", disable=not progress)

    def take(batch_results: list[dict]) -> None:
        for result in batch_results:
            if result["ok"]:
                results[result["file"]] = result
            else:
                failed.append(result)
        bar.update(len(batch_results))

    try:
        if cfg.workers == 1 or len(batches) <= 1:
            _init_worker()
            for batch in batches:
                take(_run_batch(batch))
        else:
            worker_deaths = _run_in_processes(batches, cfg, take)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    if failed:
        lines = [f"{r['file']}: " + " | ".join(r["errors"]) for r in failed]
        raise RuntimeError(
            f"{len(failed)} episode(s) failed after {cfg.max_retries} retries (the {len(results) + len(done)} "
            f"recorded ones are kept; run again to resume):\n" + "\n".join(lines))

    records = []
    for job in sorted(jobs, key=lambda j: (j["task"], j["index"])):
        r = results.get(job["file"]) or done[job["file"]]
        records.append({"file": job["file"], "task": job["task"], "split": job["split"], "episode": job["index"],
                        "noise": job["noise"], "length": r["length"], "first_success": r["first_success"],
                        "retries": r["retries"], "retry_errors": r["errors"],
                        "near_identical": r["near_identical"], "diff_sum": r["diff_sum"]})
    frames_now = sum(r["length"] + 1 for r in results.values())
    cpu_now = sum(r.get("cpu_seconds") or 0.0 for r in results.values())
    pairs = sum(r["length"] for r in records)
    manifest = {
        "world": "metaworld",
        "seed": seed,
        "config": asdict(cfg),
        "versions": package_versions("metaworld", "mujoco", "numpy", "gymnasium", "rlvr-world"),
        "episodes": [{k: v for k, v in r.items() if k not in ("near_identical", "diff_sum", "retry_errors")}
                     for r in records],
        "counts": {
            "per_split": {s: {"episodes": sum(r["split"] == s for r in records),
                              "frames": sum(r["length"] + 1 for r in records if r["split"] == s)} for s in SPLITS},
            "per_task": {t: {s: n for s in SPLITS if (n := sum(r["task"] == t and r["split"] == s for r in records))}
                         for t in cfg.tasks + cfg.held_out_tasks},
        },
        "success_rate_per_noise": {str(n): _rate([r for r in records if r["noise"] == n]) for n in cfg.action_noise},
        "success_rate_per_task_noise": {
            t: {str(n): _rate([r for r in records if r["task"] == t and r["noise"] == n]) for n in cfg.action_noise}
            for t in cfg.tasks + cfg.held_out_tasks},
        "length": {"mean": float(np.mean([r["length"] for r in records])),
                   "min": min(r["length"] for r in records), "max": max(r["length"] for r in records)},
        # Consecutive frames whose mean absolute difference is below 1/255: what copying the
        # previous frame gets right for free.
        "near_identical_fraction": sum(r["near_identical"] for r in records) / pairs if pairs else None,
        "mean_abs_frame_diff": sum(r["diff_sum"] for r in records) / pairs if pairs else None,
        "retries": {"total": sum(r["retries"] for r in records),
                    "episodes": {r["file"]: {"retries": r["retries"], "errors": r["retry_errors"]}
                                 for r in records if r["retries"]}},
        "collection": {
            "episodes_recorded_now": len(results),
            "episodes_reused": len(done),
            "frames_recorded_now": frames_now,
            "seconds": wall,
            "frames_per_s": frames_now / wall if results else None,
            # CPU seconds of the workers (env, physics, rendering, compression): unlike
            # frames_per_s, it does not depend on what else runs on the machine. One worker
            # on a free core records about frames_per_cpu_s frames per second.
            "cpu_seconds": cpu_now,
            "frames_per_cpu_s": frames_now / cpu_now if cpu_now else None,
            "workers": 1 if cfg.workers == 1 or len(batches) <= 1 else min(cfg.workers, len(batches)),
            "worker_deaths": worker_deaths,  # worker processes that died (their episodes were rerun)
        },
    }
    manifest = json.loads(json.dumps(manifest))  # exactly what a reader gets back
    write_atomic(manifest_path, [json.dumps(manifest, indent=2) + "\n"])
    return manifest


def load_manifest(data_dir: Path) -> dict:
    return read_manifest(data_dir, "Meta-World", COLLECT_HINT)


def _read_npz(path: Path, size: int) -> dict[str, np.ndarray]:
    """The three arrays of an episode file, checked; ValueError naming the file otherwise."""
    expected = (f"frames uint8 [T+1,{size},{size},3] with actions float32 [T,4] "
                f"and success bool [T+1], T >= 1")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {COLLECT_HINT}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAY_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{path}: missing array(s) {', '.join(missing)} (has {', '.join(z.files) or 'none'}); "
                                 f"expected {expected}")
            arrays = {k: z[k] for k in ARRAY_KEYS}
    except ValueError as e:
        if str(path) in str(e):
            raise
        raise ValueError(f"{path}: not a readable npz ({e}); expected {expected}") from None
    except Exception as e:  # BadZipFile, EOFError, OSError, CRC errors...
        raise ValueError(f"{path}: not a readable npz ({type(e).__name__}: {e}); expected {expected}") from None
    frames, actions, success = arrays["frames"], arrays["actions"], arrays["success"]
    got = (f"got frames {frames.dtype} {list(frames.shape)}, actions {actions.dtype} {list(actions.shape)}, "
           f"success {success.dtype} {list(success.shape)}")
    t = actions.shape[0] if actions.ndim == 2 else -1
    ok = (frames.dtype == np.uint8 and actions.dtype == np.float32 and success.dtype == np.bool_
          and t >= 1 and frames.shape == (t + 1, size, size, 3) and actions.shape == (t, 4)
          and success.shape == (t + 1,))
    if not ok:
        raise ValueError(f"{path}: expected {expected}; {got}")
    if not np.isfinite(actions).all() or np.abs(actions).max() > 1.0:
        raise ValueError(f"{path}: actions must be finite and within [-1, 1]")
    return arrays


def load_episodes(data_dir: Path, split: str) -> list[dict]:
    """The episodes of one split: dicts {task, episode, noise, frames, actions, success, file}.

    FileNotFoundError when the cache is missing; ValueError naming the file when an episode
    file is corrupt or has the wrong keys, dtypes or shapes.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    data_dir = Path(data_dir)
    manifest = load_manifest(data_dir)
    size = manifest["config"]["image_size"]
    out = []
    for rec in manifest["episodes"]:
        if rec["split"] != split:
            continue
        path = data_dir / rec["file"]
        arrays = _read_npz(path, size)
        out.append({"task": rec["task"], "episode": rec["episode"], "noise": rec["noise"], **arrays, "file": str(path)})
    return out
