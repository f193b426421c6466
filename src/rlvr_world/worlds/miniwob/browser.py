"""One MiniWoB++ task in Debian's Chromium, through the package's gymnasium environment.

`WebEpisodes` wraps ``gymnasium.make("miniwob/<task>-v1")`` with what long collection runs
need: Chromium flags that forbid network traffic, the episode time limit raised from 10 s to
an hour, page snapshots as `page.page_items` listings (also after the episode ends, when the
gym observation is empty), and a restart of the browser when it dies.

Actions are text, the same text the world model reads: ``click [11]`` or
``type [7] 'keneth'`` (focus element 7 and type the characters).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from typing import Optional

from rlvr_world.worlds.miniwob.page import CLICKABLE_ROLES, ROLES, TYPEABLE_ROLES, page_items

CHROME_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run",
    "--disable-sync", "--disable-extensions", "--mute-audio",
    # No name resolves except the local server some tasks (flight.*) use: no network traffic.
    '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost, EXCLUDE 127.0.0.1',
)
EPISODE_MAX_MS = 3600 * 1000
# Tasks whose pages change some time after the action (jQuery-UI autocomplete opens its menu
# ~300 ms after typing): wait this long before reading the next page.
SETTLE_MS = {"use-autocomplete": 450}
ACTION = re.compile(r"^(click|type) \[(\d+)\](?: '(.*)')?$", re.S)


class BrowserCrash(RuntimeError):
    """Chromium or chromedriver died; the episode in progress is lost, the browser restarts."""


def chrome_paths() -> tuple[str, str]:
    """Chromium and chromedriver binaries (env vars first, then PATH); clear error when absent."""
    binary = os.environ.get("MINIWOB_CHROME_BINARY") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver:
        raise RuntimeError(
            "the MiniWoB++ world needs Chromium and chromedriver: `apt-get install chromium chromium-driver` "
            "(scripts/setup.sh does it), or set MINIWOB_CHROME_BINARY and MINIWOB_CHROMEDRIVER")
    return binary, driver


def _configure_miniwob() -> None:
    """Point the `miniwob` package at Debian's Chromium with our flags (once per process)."""
    import miniwob.selenium_instance as si
    from selenium import webdriver

    binary, driver = chrome_paths()
    # Both must be set, or Selenium Manager tries the network first.
    os.environ["MINIWOB_CHROME_BINARY"], os.environ["MINIWOB_CHROMEDRIVER"] = binary, driver
    if getattr(si.webdriver, "_rlvr_world", False):
        return

    class Options(webdriver.ChromeOptions):
        def __init__(self):
            super().__init__()
            for flag in CHROME_FLAGS:
                self.add_argument(flag)

    class Namespace:  # miniwob builds `webdriver.ChromeOptions()` and `webdriver.Chrome(...)`
        _rlvr_world = True
        ChromeOptions = Options
        Chrome = webdriver.Chrome

    si.webdriver = Namespace
    logging.getLogger("selenium").setLevel(logging.ERROR)


@dataclass
class Step:
    """What one action did: the page after it and, when the episode ended, its raw reward."""

    page: dict
    done: bool
    raw_reward: Optional[float]
    error: str = ""  # e.g. "element vanished": the action could not be applied


@dataclass
class WebEpisodes:
    """Episodes of one MiniWoB++ task in one browser, restarted on a crash.

    restarts: how many times the browser was discarded after dying (and relaunched on next use).
    elements: the current page's elements by ref (miniwob's serialised form, plus `inner_text`).
    """

    task: str
    restarts: int = 0
    max_type_values: int = 4  # task-field values offered for each text input
    env: object = field(default=None, repr=False)
    seed: Optional[int] = None  # task seed of the current episode
    utterance: str = ""
    fields: tuple = ()
    page: dict = field(default_factory=dict)
    elements: dict = field(default_factory=dict, repr=False)

    # -- lifecycle ------------------------------------------------------------------------

    def open(self) -> "WebEpisodes":
        """Launch the browser on the task page; BrowserCrash when it dies while starting."""
        import gymnasium
        import miniwob

        _configure_miniwob()
        gymnasium.register_envs(miniwob)
        try:
            self.env = gymnasium.make(f"miniwob/{self.task}-v1")
            self._driver.execute_script(f"core.EPISODE_MAX_TIME = {EPISODE_MAX_MS};")
        except Exception as err:
            self.kill()
            self.env = None
            raise BrowserCrash(f"{self.task}: the browser did not start: {err}") from err
        return self

    def close(self) -> None:
        if self.env is not None:
            try:
                self.env.close()
            except Exception:  # a dead browser cannot be closed politely
                self.kill()
        self.env = None

    def ensure_open(self) -> "WebEpisodes":
        """Launch the browser unless it is running (first use, or after `discard`)."""
        return self if self.env is not None else self.open()

    def discard(self) -> None:
        """After a BrowserCrash: kill what is left of the browser; `ensure_open` relaunches it."""
        self.kill()
        self.env = None
        self.restarts += 1

    def kill(self) -> None:
        """Kill this browser and its driver (also how tests cause a real crash)."""
        for pid in self.browser_pids():
            try:
                os.kill(pid, 9)
            except OSError:
                pass

    def browser_pids(self) -> list[int]:
        import psutil

        try:
            service = self.env.unwrapped.instance.driver.service.process
            driver = psutil.Process(service.pid)
            return [p.pid for p in driver.children(recursive=True)] + [driver.pid]
        except Exception:
            return []

    @property
    def _driver(self):
        return self.env.unwrapped.instance.driver

    def __enter__(self) -> "WebEpisodes":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- episodes -------------------------------------------------------------------------

    def reset(self, seed: int) -> dict:
        """Start the episode `seed` (the task's own seeded generator); returns the page."""
        self.seed = seed
        try:
            # Focus survives MiniWoB's reset when the task keeps an element (its Submit button):
            # clear it, so an episode's first page does not depend on the one before.
            self._driver.execute_script("if (document.activeElement) document.activeElement.blur();")
            obs, _ = self.env.reset(seed=seed, options={"record_screenshots": False})
        except Exception as err:
            raise BrowserCrash(f"{self.task}: reset failed: {err}") from err
        self.utterance, self.fields = str(obs["utterance"]), tuple(tuple(f) for f in obs["fields"])
        if not obs["dom_elements"]:
            raise BrowserCrash(f"{self.task}: the page did not load (no elements)")
        self._read(obs["dom_elements"])
        return self.page

    def _read(self, elements, last_reward: Optional[float] = None) -> None:
        self.elements = {int(e["ref"]): dict(e) for e in elements if int(e["ref"]) > 0}
        for e in elements:  # text nodes mixed with elements: give their parent its inner text
            parent = self.elements.get(int(e["parent"]))
            if int(e["ref"]) < 0 and parent is not None:
                parent["inner_text"] = (parent.get("inner_text", "") + " " + str(e.get("text") or "")).strip()
        self.page = page_items(elements, last_reward)

    def _snapshot(self):
        """The DOM elements now, serialised as miniwob's observation does."""
        from miniwob.dom import DOMElement
        from miniwob.observation import serialize_dom_element

        # Ending an episode bumps MiniWoB's episode id, which would give every element a new
        # ref in the next snapshot; read the final page under the ended episode's refs.
        root = DOMElement(self._driver.execute_script(
            "var done = WOB_DONE_GLOBAL; if (done) WOB_EPISODE_ID--;"
            "try { return core.getDOMInfo(); } finally { if (done) WOB_EPISODE_ID++; }"))
        return [serialize_dom_element(e) for e in root.subtree_elements]

    def step(self, action: str) -> Step:
        """Apply ``click [ref]`` / ``type [ref] 'text'``; the page after it."""
        from miniwob.action import ActionTypes

        match = ACTION.match(action)
        if match is None:
            raise ValueError(f"not a web action: {action!r} (expected `click [ref]` or `type [ref] 'text'`)")
        kind, ref, text = match.group(1), int(match.group(2)), match.group(3)
        try:
            alive = self._driver.execute_script(
                f"var e = core.previousDOMInfo[{ref}]; return !!e && document.body.contains(e);")
            if not alive:
                return Step(page=dict(self.page), done=False, raw_reward=None, error="element vanished")
            if kind == "click":
                act = self.env.unwrapped.create_action(ActionTypes.CLICK_ELEMENT, ref=ref)
            else:
                act = self.env.unwrapped.create_action(ActionTypes.FOCUS_ELEMENT_AND_TYPE_TEXT, ref=ref, text=text)
            obs, _, done, _, _ = self.env.step(act)
            settle = SETTLE_MS.get(self.task, 0)
            if settle and not done:
                time.sleep(settle / 1000)
                done = bool(self._driver.execute_script("return WOB_DONE_GLOBAL;"))
            if done:  # the gym observation is empty once the episode is over: read the page itself
                raw = float(self._driver.execute_script("return WOB_RAW_REWARD_GLOBAL;"))
                elements = self._snapshot()
            else:
                raw = None
                elements = self._snapshot() if settle else obs["dom_elements"]
        except Exception as err:
            raise BrowserCrash(f"{self.task}: {action} failed: {err}") from err
        self._read(elements, raw)
        return Step(page=dict(self.page), done=bool(done), raw_reward=raw)

    # -- what an agent may do -------------------------------------------------------------

    def candidate_actions(self) -> list[str]:
        """Clicks on clickable elements and the task's field values typed into text inputs."""
        return candidate_actions(self.elements, self.fields, self.max_type_values)


def candidate_actions(elements: dict, fields, max_type_values: int = 4) -> list[str]:
    """Actions on the current page: ``click [ref]`` for buttons, links, inputs and any leaf;
    ``type [ref] 'value'`` for each text input and each distinct task-field value (values
    holding a quote are skipped: the action text could not carry them)."""
    values = []
    for _, value in fields:
        value = str(value)
        if value and value not in values and "'" not in value:
            values.append(value)
    values = values[:max_type_values]
    actions = []
    for ref, e in elements.items():
        role = ROLES.get(str(e["tag"]), str(e["tag"]))
        is_leaf = bool(e["flags"][3])
        if role in TYPEABLE_ROLES:
            actions.append(f"click [{ref}]")
            actions.extend(f"type [{ref}] '{v}'" for v in values)
        elif role in CLICKABLE_ROLES or is_leaf:
            actions.append(f"click [{ref}]")
    return actions


def action_kind(action: str) -> str:
    """``click`` or ``type``."""
    return action.split(" ", 1)[0]
