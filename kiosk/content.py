"""What the kiosk offers, from the signed config the collector publishes
(docs/protocol.md §3.4): units, windows, staff, service items, content tags
by level and their version, the hall's texts and the follow-up URL."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Target:
    """Who or what is rated, and the record fields that say so."""

    label: str
    fields: dict = field(default_factory=dict)  # window_id, staff_id, org_id, item_code, case_*


class Content:
    def __init__(self, config: dict | None = None):
        config = config or {}
        self.version = config.get("version")
        self.content_version = config.get("content_version")
        self.units = [tuple(row) for row in config.get("units") or ()]
        self.unit_names = dict(self.units)
        self.windows = [tuple(row) for row in config.get("windows") or ()]
        self.staff = [tuple(row) for row in config.get("staff") or ()]
        self.items = [tuple(row) for row in config.get("items") or ()]
        self.texts = dict(config.get("texts") or {})
        self.followup_url = config.get("followup_url")
        self.org_id = config.get("org_id")
        self.tags: dict[int, list[tuple[str, str]]] = {}
        for stars, code, text in config.get("tags") or ():
            self.tags.setdefault(stars, []).append((code, text))

    def tags_for(self, stars: int) -> list[tuple[str, str]]:
        """The content tags offered after a level; empty when the config has none."""
        return list(self.tags.get(stars, ()))

    def targets_of(self, unit_id: str) -> list[Target]:
        """The windows and staff of a unit, then the unit itself."""
        unit = self.unit_names.get(unit_id, unit_id)
        out = []
        for window_id, unit_of, name in self.windows:
            if unit_of == unit_id:
                out.append(Target(f"{unit} {name}", {"window_id": window_id, "org_id": unit_id}))
        for staff_id, unit_of, name, number in self.staff:
            if unit_of == unit_id:
                out.append(
                    Target(f"{unit} {name}（{number}）", {"staff_id": staff_id, "org_id": unit_id})
                )
        return out

    def unit_target(self, unit_id: str) -> Target:
        return Target(self.unit_names.get(unit_id, unit_id), {"org_id": unit_id})

    def search_items(self, query: str, limit: int = 50) -> list[Target]:
        """Items whose pinyin initials start with (or contain) the query, or
        whose name contains it; initials that start with it come first."""
        query = query.strip().lower()
        first, then = [], []
        for code, unit_id, name, initials in self.items:
            if not query or initials.startswith(query):
                first.append((code, unit_id, name))
            elif query in initials or query in name.lower():
                then.append((code, unit_id, name))
        out = []
        for code, unit_id, name in (first + then)[:limit]:
            unit = self.unit_names.get(unit_id, unit_id)
            out.append(Target(f"{name}（{unit}）", {"item_code": code, "org_id": unit_id}))
        return out
