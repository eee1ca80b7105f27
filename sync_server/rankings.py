"""Deadline rules, the holiday calendar, rankings, 通报 and the public page (issue 9).

A feature module (sync_server/features.py): `init_app` registers its pages.
The parts:

- sync_server/workdays.py: working days (holidays, adjusted weekends, the
  admin's calendar);
- sync_server/deadlines.py: deadline rules per jurisdiction, `due_at`,
  `state`, the loop settings;
- sync_server/rankings_data.py: rankings and 通报 of a period, snapshots,
  the month-end hook `tick(engine)`;
- sync_server/digest.py: the daily digest of cases due and overdue;
- sync_server/rankings_pages.py, rankings_settings.py, rankings_public.py:
  the pages; sync_server/rankings_api.py: ``GET /api/v1/rankings``;
  sync_server/rankings_cli.py: `hcp collector digest` and
  `hcp collector rankings`.

docs/deadlines-and-rankings.md is the operator's guide to all of it.
"""

from __future__ import annotations

from flask_babel import lazy_gettext as _l

from sync_server.rankings_data import compute, tick  # noqa: F401  (the hooks others call)


def init_app(app) -> None:
    """Register this feature's pages and their header entries."""
    from sync_server import rankings_api, rankings_pages, rankings_public, rankings_settings, web

    app.register_blueprint(rankings_pages.bp)
    app.register_blueprint(rankings_settings.bp)
    app.register_blueprint(rankings_public.bp)
    rankings_api.init_app(app)
    web.register_nav(app, "rankings.page", _l("Rankings"), "rankings", prefix="rankings.page")
    web.register_nav(app, "rankings.digest_page", _l("Daily digest"), "cases")
    web.register_nav(
        app, "deadline_settings.page", _l("Deadlines"), "loop_settings", prefix="deadline_settings."
    )
