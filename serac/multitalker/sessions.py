"""Long multi-talker recordings (meeting sessions such as LibriCSS's 10-minute ones) cut into windows a
two-channel STS model can decode and the multi-talker scorer can score: whole turns only, cut in silences.

A session's turns (its supervisions: speaker, words, start, end) are merged into **speech regions** (maximal
stretches with at least one talker). A window is a run of consecutive regions whose span (first start to last
end) stays within ``max_window_s``; it ends in the silence after its last region, halfway to the next region but at
most ``margin_s`` past the speech, and starts the same way before its first region, so windows never share audio
and never cut a turn. A single region longer than ``max_window_s`` (a chain of overlapping turns with no silence in
it) becomes one window of its own length rather than being cut through a turn; :func:`session_windows` reports how
many there were.

A window in which more than ``max_talkers`` talk at once has no correct two-channel target
(serac.multitalker.targets raises ``TooManyTalkersError`` on it): it is left out and named in the returned
reasons, never merged or truncated silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

from lhotse.cut import Cut

from serac.multitalker.simulate import conversation_turns, max_active_talkers


def speech_regions(intervals: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Maximal stretches covered by at least one (start, end) interval, sorted; touching intervals merge."""
    regions: List[Tuple[float, float]] = []
    for start, end in sorted(intervals):
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


def window_bounds(regions: Sequence[Tuple[float, float]], duration: float, max_window_s: float,
                  margin_s: float) -> List[Tuple[float, float, int]]:
    """(start, end, number of regions) of each window over ``regions`` of a recording of ``duration`` seconds
    (module docstring)."""
    if max_window_s <= 0 or margin_s < 0:
        raise ValueError(f"max_window_s must be > 0 and margin_s >= 0, got {max_window_s}, {margin_s}")
    groups: List[List[Tuple[float, float]]] = []
    for region in regions:
        if groups and region[1] - groups[-1][0][0] <= max_window_s:
            groups[-1].append(region)
        else:
            groups.append([region])
    bounds = []
    for k, group in enumerate(groups):
        before = groups[k - 1][-1][1] if k > 0 else 0.0
        after = groups[k + 1][0][0] if k + 1 < len(groups) else duration
        first, last = group[0][0], group[-1][1]
        start = first - min(margin_s, (first - before) / (2.0 if k > 0 else 1.0))
        end = last + min(margin_s, (after - last) / (2.0 if k + 1 < len(groups) else 1.0))
        bounds.append((max(0.0, start), min(duration, end), len(group)))
    return bounds


@dataclass
class SessionWindows:
    windows: List[Cut] = field(default_factory=list)
    dropped: List[str] = field(default_factory=list)   #: "<window id>: why" for each window left out
    long_windows: int = 0                              #: windows longer than max_window_s (one long region)


def session_windows(cut: Cut, max_window_s: float = 60.0, margin_s: float = 0.5,
                    max_talkers: int = 2) -> SessionWindows:
    """The windows of one session cut (ids ``<cut id>-<k>``, k from 000), each holding its turns as supervisions
    (times relative to the window)."""
    turns = conversation_turns(cut)
    if not turns:
        return SessionWindows()
    regions = speech_regions([(t.start, t.end) for t in turns])
    out = SessionWindows()
    for k, (start, end, _) in enumerate(window_bounds(regions, cut.duration, max_window_s, margin_s)):
        wid = f"{cut.id}-{k:03d}"
        window = cut.truncate(offset=start, duration=round(end - start, 6), keep_excessive_supervisions=False)
        window = window.with_id(wid)
        inside = [t for t in turns if t.start >= start - 1e-6 and t.end <= end + 1e-6]
        if len(window.supervisions) != len(inside):   # a turn cut by the window would be scored as half a turn
            raise AssertionError(f"{wid}: {len(inside)} turns inside [{start:.3f}, {end:.3f}] but the window "
                                 f"holds {len(window.supervisions)}")
        peak = max_active_talkers([(t.start, t.end) for t in inside])
        if peak > max_talkers:
            out.dropped.append(f"{wid}: {peak} talkers at once (the model has {max_talkers} channels)")
            continue
        if end - start > max_window_s + 2 * margin_s:
            out.long_windows += 1
        out.windows.append(window)
    return out
