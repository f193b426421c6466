"""A MiniWoB++ page as a compact text listing, and the difference between two pages.

The page state is one line per element, in the WebArena accessibility-tree style::

    [7] textbox #username value='keneth' focused
    [11] button #subbtn 'Login'
    [14.0] text 'Last name:'

It is built from MiniWoB's own DOM snapshot (`core.getDOMInfo`, the `dom_elements` of its
gymnasium observation), which already leaves out the ticking timer / reward panel and covers
the whole <body>, so jQuery-UI pop-up menus outside the task area are kept.

Ids are stable within an episode: an element keeps MiniWoB's `ref`. Text nodes get a fresh
negative ref on every snapshot, so they are keyed by their parent's ref and their position
among that parent's text nodes (``14.0``). Containers with children but no text of their own
are left out (even with an id): their content is listed as their children's lines, and they
would only lengthen the prompt. Leaves are always kept: an empty cell or a colour box is
something an agent may click.

When an episode ends, MiniWoB covers the page with its START screen and shows the last
reward; the listing then gains one item for it, ``[cover] button 'START' last_reward=1.00``,
with the raw (not time-scaled) reward. So the world model also predicts whether an action
finishes the task, which is what a planning agent needs from it.

The difference has the paper's form: ``New items:``, ``Deleted items:``, ``Updated items:``
sections, one item per line, ``None`` when a section is empty. An updated item is printed as
it is after the action.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional, Sequence

SECTIONS = ("new", "deleted", "updated")
HEADERS = {"new": "New items:", "deleted": "Deleted items:", "updated": "Updated items:"}
EMPTY = "None"
COVER_ID = "cover"
MAX_TEXT = 60  # characters of an element's text kept in its line

ROLES = {
    "a": "link", "button": "button", "input_button": "button", "input_submit": "button",
    "input_reset": "button", "input_text": "textbox", "input_password": "textbox",
    "input_email": "textbox", "input_number": "textbox", "input_search": "textbox",
    "input_tel": "textbox", "input_url": "textbox", "input_date": "textbox",
    "input_time": "textbox", "textarea": "textbox", "input_checkbox": "checkbox",
    "input_radio": "radio", "input_range": "slider", "select": "combobox", "option": "option",
    "label": "label", "li": "listitem", "h1": "heading", "h2": "heading", "h3": "heading",
    "h4": "heading", "t": "text", "td": "cell", "th": "columnheader", "img": "img",
}
CLICKABLE_ROLES = frozenset({"button", "link", "checkbox", "radio", "option", "listitem", "cell", "label", "img"})
TYPEABLE_ROLES = frozenset({"textbox"})
_CONTAINERS = frozenset({"body", "div", "span", "p", "form", "ul", "ol", "table", "tbody", "tr", "section"})

ITEM_ID = re.compile(r"\[(\d+(?:\.\d+)?|cover)\]")
_SPACES = re.compile(r"\s+")
_BRACKETS = str.maketrans("[]", "()")


def _clean(text: str) -> str:
    """One line, single spaces, at most MAX_TEXT characters; square brackets become round ones,
    so page text can never look like an item id (``[3]``) to `parse_diff`."""
    return _SPACES.sub(" ", str(text)).strip()[:MAX_TEXT].strip().translate(_BRACKETS)


def element_line(item_id: str, element: Mapping) -> Optional[str]:
    """The listing line of one `dom_elements` entry, or None when it is left out."""
    tag = str(element["tag"])
    role = ROLES.get(tag, tag)
    text = _clean(element.get("text") or "")
    html_id = _clean(element.get("id") or "").replace(" ", "_")
    value = element.get("value")
    flags = element.get("flags")
    focused = bool(flags[0]) if flags is not None and len(flags) else False
    is_leaf = bool(flags[3]) if flags is not None and len(flags) > 3 else not element.get("children")
    interactive = role in CLICKABLE_ROLES or role in TYPEABLE_ROLES or role in ("slider", "combobox")
    if tag in _CONTAINERS and not text and not is_leaf:
        return None
    if not (interactive or text or is_leaf):
        return None
    parts = [f"[{item_id}]", role]
    if html_id:
        parts.append(f"#{html_id}")
    if text and role not in TYPEABLE_ROLES:  # a textarea's text is its value, printed below
        parts.append(f"'{text}'")
    if role in ("checkbox", "radio"):
        parts.append("checked" if str(value) in ("True", "true", "1") else "unchecked")
    elif role in TYPEABLE_ROLES or role == "slider":
        parts.append(f"value='{_clean(value or '')}'")
    if focused:
        parts.append("focused")
    return " ".join(parts)


def page_items(dom_elements: Sequence[Mapping], last_reward: Optional[float] = None) -> dict[str, str]:
    """``{item id: line}`` in page order; `last_reward` set when the episode has ended."""
    items: dict[str, str] = {}
    text_count: dict[int, int] = {}
    for element in dom_elements:
        ref = int(element["ref"])
        if ref < 0:  # a text node: new ref every snapshot, so key it by its parent and position
            parent = int(element["parent"])
            k = text_count.get(parent, 0)
            text_count[parent] = k + 1
            item_id = f"{parent}.{k}"
        else:
            item_id = str(ref)
        line = element_line(item_id, element)
        if line is not None:
            items[item_id] = line
    if last_reward is not None:
        items[COVER_ID] = f"[{COVER_ID}] button 'START' last_reward={float(last_reward):.2f}"
    return items


def render_page(items: Mapping[str, str]) -> str:
    return "\n".join(items.values())


def page_diff(before: Mapping[str, str], after: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """New, deleted and updated items (in page order) between two `page_items` listings."""
    return {
        "new": tuple(line for i, line in after.items() if i not in before),
        "deleted": tuple(line for i, line in before.items() if i not in after),
        "updated": tuple(line for i, line in after.items() if i in before and before[i] != line),
    }


def render_diff(diff: Mapping[str, Iterable[str]]) -> str:
    """The paper's three sections, one item per line, ``None`` for an empty section."""
    lines = []
    for section in SECTIONS:
        lines.append(HEADERS[section])
        items = list(diff.get(section, ()))
        lines.extend(items if items else [EMPTY])
    return "\n".join(lines)


_HEADER_RE = re.compile(r"(New items:|Deleted items:|Updated items:)")

# Where each part of a response stands in its text: (start, end, section, item), with item the
# normalised item line, or EMPTY for a section's "None" (what dense credit scores token by token).
Span = tuple[int, int, str, str]


def diff_spans(text: str) -> Optional[list[Span]]:
    """The items of a difference's text with their character spans; junk gives None.

    Spacing and line breaks are free (a word tokenizer decodes without them): items are
    split at their ``[id]`` markers and whitespace is normalised, exactly as `element_line`
    writes it. Junk -- a missing, repeated or reordered header, text before the first
    header, a section that is neither ``None`` nor items -- gives None. Never raises.
    """
    try:
        headers = list(_HEADER_RE.finditer(text))
        if [h.group(0) for h in headers] != [HEADERS[s] for s in SECTIONS] or text[: headers[0].start()].strip():
            return None
        spans = []
        ends = [h.start() for h in headers[1:]] + [len(text)]
        for section, header, end in zip(SECTIONS, headers, ends):
            body = text[header.end() : end]
            if _SPACES.sub(" ", body).strip() == EMPTY:
                at = header.end() + body.index(EMPTY)
                spans.append((at, at + len(EMPTY), section, EMPTY))
                continue
            starts = [m.start() for m in ITEM_ID.finditer(body)]
            if not starts or body[: starts[0]].strip():
                return None
            for a, b in zip(starts, starts[1:] + [len(body)]):
                item = _SPACES.sub(" ", body[a:b]).strip()
                if ITEM_ID.fullmatch(item):  # an id with nothing after it
                    return None
                spans.append((header.end() + a, header.end() + a + len(body[a:b].rstrip()), section, item))
        return spans
    except Exception:  # a malformed response must never crash training
        return None


def parse_diff(text: str) -> Optional[dict[str, frozenset]]:
    """Read a difference back as ``{section: frozenset of item lines}``; junk gives None
    (`diff_spans` says what junk is). Never raises."""
    spans = diff_spans(text)
    if spans is None:
        return None
    return {s: frozenset(item for _, _, section, item in spans if section == s and item != EMPTY) for s in SECTIONS}


def target_sets(diff: Mapping[str, Iterable[str]]) -> dict[str, frozenset]:
    """A recorded difference as the sets `parse_diff` returns (the reward's target)."""
    return {s: frozenset(_SPACES.sub(" ", line).strip() for line in diff.get(s, ())) for s in SECTIONS}
