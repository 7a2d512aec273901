"""Evidence files: a figure that really is one, or a metrics excerpt that shows the claimed value.

Each file handed in with `--evidence` is judged on its own and the best one counts:

    a PNG that decodes (valid chunks and CRCs, the image data inflates to exactly the size its
    header announces), at least MIN_SIDE x MIN_SIDE and at most MAX_SIDE pixels a side, and not
    blank (more than a handful of distinct byte values)                                     -> full
    a JSON / JSON-lines excerpt with a record holding the claimed metric at the claimed step,
    whose value is the broken re-run's there (same tolerance as the claim)                  -> full
    the same excerpt, but its value is not the re-run's                                      -> 1/3
    anything else: plain text, a file named .png that does not decode, a tiny or blank image,
    JSON without the claimed metric                                                          -> 0

The grader cannot tell what a figure shows; the claim itself is checked against the re-run
(claim_matches), so a figure is evidence of work, not of the number.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_SIDE, MAX_SIDE = 64, 10000
MIN_DISTINCT_BYTES = 8
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


@dataclass
class Verdict:
    share: float
    reason: str


class NotAPicture(ValueError):
    pass


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG that decodes; NotAPicture says why it does not."""
    if not data.startswith(PNG_MAGIC):
        raise NotAPicture("not a PNG (no PNG signature)")
    pos, header, idat, seen_end = len(PNG_MAGIC), None, [], False
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc = data[pos + 8 + length:pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise NotAPicture("truncated PNG chunk")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise NotAPicture(f"PNG chunk {kind.decode('latin-1')!r} fails its CRC")
        if kind == b"IHDR":
            if length != 13:
                raise NotAPicture("bad PNG header")
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            seen_end = True
            break
        pos += 12 + length
    if header is None or not idat or not seen_end:
        raise NotAPicture("incomplete PNG (no header, image data or end)")
    width, height, depth, colour, _, _, interlace = header
    if colour not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise NotAPicture("unsupported PNG colour type or bit depth")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise NotAPicture(f"a {width}x{height} image is not a readable figure "
                          f"(each side {MIN_SIDE}..{MAX_SIDE} pixels)")
    bits = depth * _CHANNELS[colour]
    expected = sum(h * (1 + (w * bits + 7) // 8) for w, h in _passes(width, height, interlace) if w and h)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error as e:
        raise NotAPicture(f"PNG image data does not inflate ({e})") from None
    if len(raw) != expected:
        raise NotAPicture(f"PNG image data is {len(raw)} bytes, the header announces {expected}")
    if len(set(raw[:1 << 20])) < MIN_DISTINCT_BYTES:
        raise NotAPicture("the image is blank")
    return width, height


def _passes(width: int, height: int, interlace: int) -> list[tuple[int, int]]:
    if interlace == 0:
        return [(width, height)]
    # Adam7: (x start, y start, x step, y step) of the seven passes.
    adam7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    return [((width - x + dx - 1) // dx, (height - y + dy - 1) // dy) for x, y, dx, dy in adam7]


def _records(text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except ValueError:
        items = []
        for line in text.splitlines():
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError:
                    return []
    return [r for r in items if isinstance(r, dict)]


def judge(name: str, data: bytes, claim: dict[str, Any] | None, broken: list[dict] | None) -> Verdict:
    from breaklab.grader.claims import CLAIM_ATOL, CLAIM_RTOL, _close, claimed_record, lookup

    if data.startswith(PNG_MAGIC) or name.lower().endswith(".png"):
        try:
            w, h = png_size(data)
        except NotAPicture as e:
            return Verdict(0, f"{name}: {e}")
        return Verdict(1, f"{name}: a {w}x{h} PNG figure")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Verdict(0, f"{name}: neither a PNG figure nor a text metrics excerpt")
    records = _records(text)
    if not records:
        return Verdict(0, f"{name}: not a figure (PNG) or a metrics excerpt (JSON lines of metrics.jsonl); "
                          "a text that mentions a metric is not evidence")
    metric = (claim or {}).get("metric")
    if not metric:
        return Verdict(0, f"{name}: a JSON excerpt, but the report claims no metric for it to show")
    shown = []
    for r in records:
        if r.get("metric") == metric and "value" in r:      # {"metric", "step", "value"}
            r = {**r, metric: r["value"]}
        found, value = lookup(r, metric)
        if found and isinstance(value, (int, float)) and not isinstance(value, bool):
            shown.append((r, value))
    if not shown:
        return Verdict(0, f"{name}: a JSON excerpt without the claimed metric {metric}")
    where_key = "epoch" if "epoch" in claim and metric.split(".")[0] in ("train_loss", "train_acc", "test_loss",
                                                                         "test_acc") else "step"
    at = [(r, v) for r, v in shown if r.get(where_key) == claim.get(where_key)]
    if not at:
        return Verdict(1 / 3, f"{name}: shows {metric}, but not at the claimed {where_key} {claim.get(where_key)}")
    rerun = claimed_record(broken, claim) if broken else None
    found, actual = lookup(rerun, metric) if rerun else (False, None)
    if not found:
        return Verdict(1 / 3, f"{name}: shows {metric} at {where_key} {claim.get(where_key)}, but there is no "
                              "re-run value to check it against")
    value = at[0][1]
    if _close(float(value), actual, CLAIM_RTOL, CLAIM_ATOL):
        return Verdict(1, f"{name}: shows {metric} = {value:g} at {where_key} {claim.get(where_key)}, as re-run")
    return Verdict(1 / 3, f"{name}: shows {metric} = {value:g} at {where_key} {claim.get(where_key)}, but the "
                          f"broken re-run has {actual:.4g} there")
