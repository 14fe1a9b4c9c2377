"""Every shape of a finished job's `result`, as the typed files it names.

Apiframe's ten job routes share one job object; only `result` differs: `{images: [...]}` (with
Midjourney's `gridUrl`), `{videoUrl}` or the older `{videos: [...]}`, `{tracks: [{id, audioUrl,
imageUrl, ...}]}`, and stems. `assets_of` turns each into `Asset`s with the kind of file promised,
a number within the job and the name its object is stored under. An empty list means the
result names no file this knows: the landing asks Apiframe again, then fails the job with the
shape it saw, never dropping it.
"""

import json
from dataclasses import dataclass, fields, replace
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    IMAGE = "image"
    GRID = "grid"  # Midjourney's four images as one picture
    VIDEO = "video"
    AUDIO = "audio"  # a track
    COVER = "cover"  # a track's cover art
    STEM = "stem"  # one part of a track split in two (vocals, instrumental)

    @property
    def medium(self) -> str:
        """What the file is: `image`, `video` or `audio`."""
        if self in (Kind.IMAGE, Kind.GRID, Kind.COVER):
            return "image"
        return "video" if self is Kind.VIDEO else "audio"


@dataclass(frozen=True)
class Asset:
    """One file a result names."""

    kind: Kind
    number: int  # 1-based within its kind (a track's cover shares the track's number)
    url: str
    track_id: str | None = None  # the provider's id of the track, for audio and covers
    about: dict[str, Any] | None = None  # a track's title, tags and duration, as Apiframe said

    @property
    def name(self) -> str:
        """The object's name within the job, before its extension."""
        if self.kind is Kind.GRID:
            return "grid"
        if self.kind is Kind.AUDIO:
            return f"track-{self.number}"
        if self.kind is Kind.COVER:
            return f"track-{self.number}-cover"
        if self.kind is Kind.STEM:
            return f"stem-{self.number}"
        return str(self.number)

    def to_dict(self) -> dict[str, Any]:
        # Not `asdict`, which deep-copies every field: this runs for every webhook.
        found = ((field.name, getattr(self, field.name)) for field in FIELDS)
        return {name: value for name, value in found if value is not None}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Asset":
        kind, number, url = Kind(raw["kind"]), int(raw["number"]), str(raw["url"])
        return cls(kind, number, url, raw.get("track_id"), raw.get("about"))


FIELDS = fields(Asset)


def dumps(assets: list[Asset]) -> str:
    return json.dumps([asset.to_dict() for asset in assets])


def loads(raw: str | None) -> list[Asset]:
    return [Asset.from_dict(item) for item in json.loads(raw or "[]")]


def assets_of(result: Any) -> list[Asset]:
    """The files `result` names, in the order they land; [] for no shape this knows."""
    if isinstance(result, str):
        return numbered(Kind.IMAGE, [result])
    if not isinstance(result, dict):
        return []
    found = numbered(Kind.IMAGE, urls(result.get("images")))
    found += numbered(Kind.GRID, urls(result.get("gridUrl")))
    found += numbered(Kind.VIDEO, urls(result.get("videoUrl")) or urls(result.get("videos")))
    tracks = result.get("tracks")
    for number, track in enumerate(tracks if isinstance(tracks, list) else [], start=1):
        found += track_assets(number, track)
    found += numbered(Kind.STEM, urls(result.get("stems")))
    return found


MADE = {  # the kinds of file each route's `makes` may land
    "image": frozenset({Kind.IMAGE, Kind.GRID}),
    "video": frozenset({Kind.VIDEO}),
    "music": frozenset({Kind.AUDIO, Kind.COVER, Kind.STEM}),
}


def for_route(assets: list[Asset], makes: str) -> list[Asset]:
    """The files as a route that makes `makes` names them: a bare URL (or an `images` list) on
    a video or music route is that route's video or track."""
    if makes == "image":
        return assets
    kind = Kind.VIDEO if makes == "video" else Kind.AUDIO
    return [replace(asset, kind=kind) if asset.kind is Kind.IMAGE else asset for asset in assets]


def track_assets(number: int, track: Any) -> list[Asset]:
    if not isinstance(track, dict):
        return []
    track_id = track.get("id") if isinstance(track.get("id"), str) else None
    audio, cover = urls(track.get("audioUrl")), urls(track.get("imageUrl"))
    about = about_of(track)
    found = [Asset(Kind.AUDIO, number, url, track_id, about) for url in audio[:1]]
    return found + [Asset(Kind.COVER, number, url, track_id) for url in cover[:1]]


TRACK_FIELDS: dict[str, type | tuple[type, ...]] = {
    "title": str,
    "tags": str,
    "duration": (int, float),
}
ABOUT_MOST = 500  # characters of a track's title or tags kept


def about_of(track: dict[str, Any]) -> dict[str, Any] | None:
    """What a track says of itself past its files, as Apiframe's result shows it; bounded."""
    about = {}
    for name, kind in TRACK_FIELDS.items():
        value = track.get(name)
        if isinstance(value, kind) and not isinstance(value, bool):
            about[name] = value[:ABOUT_MOST] if isinstance(value, str) else value
    return about or None


def numbered(kind: Kind, found: list[str]) -> list[Asset]:
    return [Asset(kind, number, url) for number, url in enumerate(found, start=1)]


def urls(value: Any) -> list[str]:
    """A URL, or a list of URLs or of `{url}`/`{audioUrl}` objects, as non-empty strings."""
    items = value if isinstance(value, list) else [value]
    found = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("url") or item.get("audioUrl")
        if isinstance(item, str) and item.strip():
            found.append(item)
    return found


def shape_of(result: Any) -> str:
    """A short description of a result's shape, for the reason a job failed with."""
    if isinstance(result, dict):
        return "an object with " + (", ".join(sorted(result)[:8]) or "no fields")
    return "nothing" if result is None else type(result).__name__


def result_of(assets: list[Asset]) -> dict[str, Any]:
    """A `result` in Apiframe's own shape for the route that made `assets`: the inverse of
    `assets_of`, for the files as imagedock serves them (their URLs, the landed objects')."""
    result: dict[str, Any] = {}
    images = [asset.url for asset in assets if asset.kind is Kind.IMAGE]
    if images:
        result["images"] = images
    for asset in assets:
        if asset.kind is Kind.GRID:
            result["gridUrl"] = asset.url
        elif asset.kind is Kind.VIDEO:
            result.setdefault("videoUrl", asset.url)
    tracks: dict[int, dict[str, Any]] = {}
    for asset in assets:
        if asset.kind in (Kind.AUDIO, Kind.COVER):
            track = tracks.setdefault(asset.number, {"id": asset.track_id})
            track["audioUrl" if asset.kind is Kind.AUDIO else "imageUrl"] = asset.url
            track.update(asset.about or {})
    if tracks:
        result["tracks"] = [tracks[number] for number in sorted(tracks)]
    stems = [{"url": asset.url} for asset in assets if asset.kind is Kind.STEM]
    if stems:
        result["stems"] = stems
    return result
