"""The whole loop in a real browser (Debian's chromium through Playwright):
a unit manager takes a 差评 from the call-back to closing and appeals
another with a file; a supervisor reopens the first and voids the second.
Skipped where chromium or Playwright is missing, unless CI is set."""

from __future__ import annotations

from sync_server import db, org
from tests.harness.collector import _password_hash
from tests.harness.records import CONTACT, add_evaluation
from tests.test_web_browser import ARTIFACTS, browser_page, live_app  # noqa: F401

PASSWORD = "case-pass-123"


def build(app):
    engine = app.extensions["hcp_engine"]
    with engine.begin() as conn:
        conn.execute(
            db.users.insert().values(
                username="um",
                password_hash=_password_hash(PASSWORD),
                role="unit_manager",
                unit_id="370305001",
                created_at=db.utc_now(),
            )
        )
        org.add(conn, "units", "hall-ws", "闻韶街道便民服务中心", "370305001", kind="hall")
        org.add(conn, "windows", "A01", "闻韶一号窗", "hall-ws")
    add_evaluation(engine, "kp-01:1", 2, window_id="A01", reason_owed=True, contact=CONTACT)
    add_evaluation(engine, "kp-01:2", 1, window_id="A01", comment="乱按的")
    add_evaluation(engine, "kp-01:3", 5, window_id="A01")


def log_in(page, base, username, password):
    page.goto(base + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")


def step(page, note, **choices):
    for name, value in choices.items():
        if name in ("kind", "verdict"):
            page.check(f"#step-form input[name={name}][value={value}]")
        else:
            page.fill(f"#step-form [name={name}]", value)
    page.fill("#step-form textarea[name=note]", note)
    page.click("#step-submit")


def test_a_unit_manager_and_a_supervisor_take_cases_through_the_loop(
    live_app,  # noqa: F811
    browser_page,  # noqa: F811
    tmp_path,
):
    from playwright.sync_api import expect

    app, base = live_app
    build(app)
    page = browser_page
    log_in(page, base, "um", PASSWORD)
    page.click("header nav >> text=差评整改")
    expect(page.locator("#cases tbody tr")).to_have_count(2)
    expect(page.locator("#cases")).to_contain_text("待补理由")
    page.click("#cases >> text=#1")
    expect(page.locator("#case-state")).to_have_text("待核实")
    assert CONTACT not in page.content()

    # the call-back: the contact through the audited reveal, then back
    page.click("#reveal")
    expect(page.locator("#contact")).to_have_text(CONTACT)
    page.goto(base + "/cases/1")
    step(page, "已回电", reason="")  # the owed reason left out: refused, nothing changed
    expect(page.locator("#case-error")).to_have_text("原因：不能为空")
    expect(page.locator("#case-state")).to_have_text("待核实")
    step(page, "已回电核实", reason="排队太久", problem="叫号机故障")
    expect(page.locator("#case-state")).to_have_text("已核实")
    expect(page.locator("#case-reason")).to_have_text("排队太久")
    step(page, "需更换叫号机", kind="ledger")
    expect(page.locator("#case-state")).to_have_text("已定性")
    expect(page.locator("#case-deadline")).to_contain_text("23:59:59")
    step(page, "已更换叫号机")
    step(page, "已电话告知评价人")
    step(page, "评价人表示满意", verdict="satisfied")
    expect(page.locator("#case-verdict")).to_have_text("满意")
    step(page, "办结")
    expect(page.locator("#case-state")).to_have_text("已办结")
    expect(page.locator("#case-deadline")).to_contain_text("按期整改")
    expect(page.locator("#steps tbody tr")).to_have_count(7)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "case-closed.png"), full_page=True)

    # the ledger lists it
    page.click("#cases-nav >> text=整改台账")
    expect(page.locator("#ledger tbody tr")).to_have_count(1)
    expect(page.locator("#ledger")).to_contain_text("叫号机故障")

    # the second 差评 is appealed with a file
    page.goto(base + "/cases/2")
    evidence = tmp_path / "监控记录.txt"
    evidence.write_text("09:31 儿童按键", encoding="utf-8")
    page.fill("#appeal-form textarea[name=evidence]", "监控显示为儿童误按")
    page.set_input_files("#appeal-form input[name=file]", str(evidence))
    page.click("#appeal-form button[type=submit]")
    expect(page.locator("#case-appeal")).to_have_text("待裁定")
    expect(page.locator("#appeal-1")).to_contain_text("监控记录.txt")

    # the supervisor: the appeal queue, the decision, and the reopening
    page.click("header button[type=submit]")
    log_in(page, base, "viewer", "viewer-pass-1")
    page.goto(base + "/cases/appeals")
    expect(page.locator("#appeals tbody tr")).to_have_count(1)
    page.click("#appeals >> text=#2")
    page.check("#decide-form input[value=mistaken]")
    page.fill("#decide-form textarea[name=reason]", "监控核实为误按")
    page.click("#decide-form button[type=submit]")
    expect(page.locator("#case-state")).to_have_text("复核作废")
    expect(page.locator("#voided")).to_contain_text("误评")
    expect(page.locator("#rating-voided")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "case-voided.png"), full_page=True)

    page.goto(base + "/cases/1")
    page.fill("#reopen-form textarea[name=reason]", "群众再次反映")
    page.click("#reopen-form button[type=submit]")
    expect(page.locator("#case-state")).to_have_text("已定性")
    expect(page.locator("#steps tbody tr").last).to_contain_text("群众再次反映")
    # the figures: the voided rating is out, the reopened one still counts
    summary = page.request.get(base + "/api/v1/evaluations/summary").json()
    assert (summary["bad"], summary["excluded"], summary["good_rate"]) == (1, 1, 0.5)
