"""The web console, driven as an admin would drive it, against the real daemon with auth on (docs/console.md).

The tests run in order on one browser and one daemon: sign in; the dashboard's charts fill from the
metrics history; a pull from the (throttled) local hub moves its progress bar, pauses and resumes;
the pulled model is deployed with settings and its log followed live; the chat streams an answer with
its tokens/s and time to first token, and stops another mid-way; an alert rule is created, fires, and
is deleted; the pages fit a phone and a keyboard reaches them; each page is usable within a second;
signing out and an expired session end at the sign-in page. Last, the browser's network log shows
that nothing left the daemon's origin, that no credential was ever in a URL, and that the
Content-Security-Policy refused nothing.
"""

from __future__ import annotations

import json
import re
import time

import pytest
from consolebox import ARTEFACTS, FILE, PASSWORD, REPO, USER, Box, Browser, publish

pytestmark = pytest.mark.e2e

NAV = ("dashboard", "models", "deployments", "chat", "alerts", "settings")


def points(b: Browser, title: str) -> int:
    """How many samples the chart ``title`` (its caption) shows."""
    for fig in b.all("figure.chart"):
        if fig.find_element("css selector", "figcaption").text == title:
            return int(fig.get_attribute("data-points"))
    raise LookupError(title)


def test_sign_in_with_a_users_password(browser: Browser, box: Box):
    browser.driver.get(box.url + "/")  # a browser at / is sent to the console
    browser.wait(lambda: browser.css("input[name=username]"), what="the sign-in form")
    assert browser.driver.current_url.startswith(box.url + "/console/")
    browser.shot("login")
    browser.type_into("input[name=username]", USER)
    browser.type_into("input[name=password]", "wrong password")
    browser.button("Sign in").click()
    browser.wait(lambda: "Wrong user name or password" in browser.css("p.error").text, what="the refusal")
    browser.type_into("input[name=password]", PASSWORD)
    browser.button("Sign in").click()
    browser.wait(lambda: browser.css("nav a[aria-current=page]").text == "Dashboard", what="the dashboard")
    assert USER in browser.css(".who").text
    # The token is in this tab's sessionStorage only: no cookie, nothing in localStorage or the URL.
    assert browser.driver.get_cookies() == []
    assert browser.driver.execute_script("return localStorage.length") == 0
    assert "eyJ" in browser.driver.execute_script("return sessionStorage.getItem('llmd.console.session')")
    assert "eyJ" not in browser.driver.current_url


def test_the_dashboards_charts_fill_live(browser: Browser):
    browser.wait(lambda: points(browser, "CPU use") >= 3, what="CPU samples")
    first = points(browser, "CPU use")
    assert points(browser, "Memory in use") >= 3 and points(browser, "Disk use (models directory)") >= 3
    browser.wait(lambda: points(browser, "CPU use") > first, timeout=15, what="a new sample on the chart")
    assert "healthy" in browser.css("#health").text and "Uptime" in browser.css("#health").text
    # The time range picker reads the history in other buckets.
    browser.button("24 h").click()
    browser.wait(lambda: browser.button("24 h").get_attribute("aria-pressed") == "true", what="24 h pressed")
    browser.wait(lambda: points(browser, "CPU use") >= 1, what="5-minute buckets")
    browser.button("7 d").click()
    browser.wait(lambda: browser.button("7 d").get_attribute("aria-pressed") == "true", what="7 d pressed")
    browser.button("1 h").click()
    browser.wait(lambda: points(browser, "CPU use") > first, what="raw samples again")
    browser.shot("dashboard")


def test_pull_from_the_hub_with_a_moving_progress_bar_pause_and_resume(browser: Browser, box: Box):
    browser.css("nav a[href='#/models']").click()
    browser.wait(lambda: browser.css("#registry tbody tr"), what="the registry")
    browser.type_into("input[name=query]", "tiny-llama")
    browser.button("Search").click()
    item = browser.wait(lambda: [li for li in browser.all(".hub-results > li") if REPO in li.text][0],
                        what="the search result")
    browser.button("Files", item).click()
    row = browser.wait(lambda: [tr for tr in item.find_elements("css selector", "table.files tbody tr")
                                if FILE in tr.text][0], what="the repository's files")
    assert "MB" in row.text and "Q8_0" in row.text  # size and quantization
    browser.button("Pull", row).click()

    task = browser.wait(lambda: browser.css(".tasks > li[data-task]"), what="the download task")
    seen: set[float] = set()
    shot_taken = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and task.get_attribute("data-status") != "completed":
        value = float(task.find_element("css selector", "[role=progressbar]").get_attribute("aria-valuenow"))
        if 0 < value < 100:
            seen.add(value)
            if not shot_taken and value > 20:
                publish(browser.shot("models"), "models")
                shot_taken = True
        if len(seen) >= 2 and shot_taken:
            break
        time.sleep(0.1)
    assert len(seen) >= 2, f"the progress bar did not move: {seen}"
    # Pause, then resume: the transfer goes on from its partial file.
    browser.button("Pause", task).click()
    browser.wait(lambda: task.get_attribute("data-status") == "paused", what="paused")
    paused_at = float(task.find_element("css selector", "[role=progressbar]").get_attribute("aria-valuenow"))
    assert paused_at < 100
    browser.button("Resume", task).click()
    browser.wait(lambda: task.get_attribute("data-status") == "completed", timeout=60, what="the download")
    assert "registered as" in task.text
    browser.wait(lambda: browser.css(f"#registry tr[data-model='{REPO}']"), what="the new model in the registry")


def test_deploy_with_settings_and_follow_its_log(browser: Browser, box: Box):
    row = browser.css(f"#registry tr[data-model='{REPO}']")
    browser.button("Deploy", row).click()
    form = browser.wait(lambda: browser.css("#deploy-form"), what="the deploy dialog")
    browser.type_into("#deploy-form input[name=max_model_len]", "8192")
    browser.type_into("#deploy-form input[name=parallel]", "2")
    browser.button("Deploy", form).click()
    browser.wait(lambda: "#/deployments/deploy_" in browser.driver.current_url, what="the deployment's page")
    card = browser.wait(lambda: browser.css("#deployment"), what="the deployment")
    browser.wait(lambda: "running" in card.find_element("css selector", ".badge").text, timeout=60, what="running")
    assert "8192" in card.text and "2 (" in card.text  # context and slots
    assert "estimate" in card.text and "Measured" in card.text
    log = browser.css("pre.log")
    browser.wait(lambda: "state running" in log.text, what="the load in the log")
    before = int(log.get_attribute("data-lines"))
    # A restart made elsewhere (the API, over the Unix socket) shows up in the open log at once.
    dep_id = browser.driver.current_url.rsplit("/", 1)[1]
    with box.admin() as c:
        r = c.put(f"/api/deployments/{dep_id}/restart")
        assert r.status_code == 200, r.text
    browser.wait(lambda: int(log.get_attribute("data-lines")) > before, what="new log lines")
    browser.wait(lambda: log.text.count("state running") >= 2 and "state stopping" in log.text, timeout=30,
                 what="the restart in the log")
    publish(browser.shot("deployments"), "deployments")


def test_chat_streams_an_answer_and_stops_one_midway(browser: Browser):
    browser.css("nav a[href='#/chat']").click()
    browser.wait(lambda: "connected" in browser.css(".page-head .badge").text, what="the chat socket")
    from selenium.webdriver.support.ui import Select

    def choose() -> bool:
        select = Select(browser.css("select[name=model]"))
        for option in select.options:
            if option.get_attribute("value") == REPO:
                option.click()
        return select.first_selected_option.get_attribute("value") == REPO

    browser.wait(choose, what="the pulled model chosen")
    browser.type_into("input[name=max_length]", "24")
    browser.type_into("textarea[name=message]", "Say hello")
    browser.button("Send").click()
    done = browser.wait(lambda: [m for m in browser.all(".msg.assistant") if m.get_attribute("data-finish")],
                        what="the answer")[-1]
    meta = done.find_element("css selector", ".msg-meta").text
    assert "tok/s" in meta and "TTFT" in meta, meta
    # Up to the 24 asked for: the random-weight model may write its end-of-text token sooner ("length" says
    # the limit was what ended it).
    count = int(re.search(r"(\d+) tokens", meta).group(1))
    assert 0 < count <= 24 and (count < 24 or "length" in meta), meta
    assert done.find_element("css selector", ".msg-text").text.strip()

    browser.type_into("input[name=max_length]", "4000")
    # The random-weight model may end an answer (its end-of-text token) before Stop is pressed: ask again then.
    asked = 0
    for _ in range(3):
        asked += 1
        browser.type_into("textarea[name=message]", "Now talk for a long time")
        browser.button("Send").click()
        browser.wait(lambda: len(browser.all(".msg.assistant")[-1].find_element("css selector", ".msg-text").text)
                     > 10, what="the first chunks")
        browser.css("#stop").click()
        last = browser.wait(lambda: [m for m in browser.all(".msg.assistant")[-1:] if m.get_attribute("data-finish")],
                            what="the end of the answer")[0]
        if last.get_attribute("data-finish") == "cancelled":
            break
    assert "cancelled" in last.find_element("css selector", ".msg-meta").text
    assert len(browser.all(".msg.user")) == 1 + asked  # the conversation is kept
    publish(browser.shot("chat"), "chat")


def test_an_alert_rule_fires_and_is_deleted(browser: Browser):
    browser.css("nav a[href='#/alerts']").click()
    browser.wait(lambda: browser.css("#rules tbody tr"), what="the rules")
    browser.type_into("#new-rule input[name=name]", "Console test")
    browser.type_into("#new-rule input[name=condition]", "cpu_percent >= 0")
    browser.button("Create rule").click()
    rule = browser.wait(lambda: [tr for tr in browser.all("#rules tbody tr") if "Console test" in tr.text][0],
                        what="the new rule")
    rule_id = rule.get_attribute("data-rule")
    browser.wait(lambda: browser.css(f"tr[data-rule='{rule_id}']").get_attribute("data-state") == "firing",
                 timeout=20, what="the rule firing")
    browser.wait(lambda: [li for li in browser.all("#history li[data-state=firing]") if "Console test" in li.text],
                 what="the firing in the history")
    publish(browser.shot("alerts"), "alerts")
    # The dashboard lists it among the firing alerts.
    browser.css("nav a[href='#/dashboard']").click()
    browser.wait(lambda: "Console test" in browser.css("#firing").text, what="the dashboard's firing alerts")
    browser.wait(lambda: points(browser, "Completion tokens/s") >= 3, what="the deployments' figures")
    publish(browser.shot("dashboard-firing"), "dashboard")
    # Disable, then delete through the confirmation dialog.
    browser.css("nav a[href='#/alerts']").click()
    row = browser.wait(lambda: browser.css(f"tr[data-rule='{rule_id}']"), what="the rule")
    browser.button("Disable", row).click()
    browser.wait(lambda: browser.button("Enable", browser.css(f"tr[data-rule='{rule_id}']")), what="disabled")
    browser.button("Delete", browser.css(f"tr[data-rule='{rule_id}']")).click()
    dialog = browser.wait(lambda: browser.css("dialog[open]"), what="the confirmation")
    browser.button("Delete", dialog).click()
    browser.wait(lambda: not browser.all(f"tr[data-rule='{rule_id}']"), what="the rule gone")


def test_settings_keys_and_users(browser: Browser):
    browser.css("nav a[href='#/settings']").click()
    browser.wait(lambda: browser.css("#config tr[data-setting='monitor.interval_s']"), what="the settings")
    browser.wait(lambda: USER in browser.css("#users").text, what="the users")
    publish(browser.shot("settings"), "settings")


def test_a_phone_sized_screen_and_the_keyboard(browser: Browser):
    from selenium.webdriver.common.keys import Keys

    browser.driver.set_window_size(390, 844)
    try:
        for page in ("dashboard", "models", "chat"):
            browser.open(f"#/{page}")
            browser.wait(lambda: browser.css("main h1"), what=page)
            time.sleep(0.5)
            width = browser.driver.execute_script(
                "return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1] + 1, f"{page} scrolls sideways on a phone: {width}"
            shot = browser.shot(f"phone-{page}")
            if page == "dashboard":
                publish(shot, "phone")
    finally:
        browser.driver.set_window_size(1280, 900)
    # The keyboard: the skip link moves to the page; Tab walks the navigation; Enter follows a link.
    browser.open("#/dashboard")
    browser.wait(lambda: browser.css("main h1"), what="the dashboard")
    from selenium.webdriver.common.action_chains import ActionChains

    keys = ActionChains(browser.driver)
    browser.driver.execute_script("document.querySelector('a.skip').focus()")
    assert browser.css("a.skip").is_displayed()  # shown when focused
    keys.send_keys(Keys.ENTER).perform()
    assert browser.driver.switch_to.active_element.get_attribute("id") == "main"
    browser.driver.execute_script("document.querySelector('a.brand').focus()")
    for _ in range(10):
        keys.send_keys(Keys.TAB).perform()
        if browser.driver.switch_to.active_element.text == "Alerts":
            break
    assert browser.driver.switch_to.active_element.text == "Alerts"
    keys.send_keys(Keys.ENTER).perform()
    browser.wait(lambda: browser.css("main h1").text == "Alerts", what="the alerts page by keyboard")


def test_each_page_is_usable_within_a_second(browser: Browser):
    slowest: dict[str, float] = {}
    browser.open("#/dashboard")
    browser.wait(lambda: browser.css("#health"), what="the dashboard")
    for page, ready in (("dashboard", "#charts figure.chart"), ("models", "#registry tbody tr"),
                        ("deployments", "#deployments tbody tr"), ("chat", "select[name=model] option"),
                        ("alerts", "#rules tbody tr"), ("settings", "#config tbody tr")):
        # A full load of the page (every module, then the page's first API answers), as a new tab would.
        browser.driver.get("about:blank")
        started = time.monotonic()
        browser.open(f"#/{page}")
        browser.wait(lambda ready=ready: browser.css(ready), what=page)
        slowest[page] = time.monotonic() - started
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS / "page-times.json").write_text(json.dumps(slowest, indent=2))
    assert max(slowest.values()) < 1.0, slowest


def test_sign_out_and_an_expired_session(browser: Browser, box: Box):
    browser.open("#/dashboard")
    browser.wait(lambda: browser.css("#logout"), what="the sign-out button")
    browser.css("#logout").click()
    browser.wait(lambda: "You signed out" in browser.css(".login").text, what="the sign-in page")
    assert browser.driver.execute_script("return sessionStorage.length") == 0
    publish(browser.shot("login"), "login")
    # Sign in again; a session whose token has expired ends at the sign-in page by itself.
    browser.type_into("input[name=username]", USER)
    browser.type_into("input[name=password]", PASSWORD)
    browser.button("Sign in").click()
    browser.wait(lambda: browser.css("#logout"), what="signed in again")
    browser.driver.execute_script(
        "const s = JSON.parse(sessionStorage.getItem('llmd.console.session'));"
        "s.expiresAt = Date.now() + 1500; sessionStorage.setItem('llmd.console.session', JSON.stringify(s));")
    browser.driver.refresh()
    browser.wait(lambda: browser.css("#logout"), what="the session restored after a reload")
    browser.wait(lambda: "session expired" in browser.css(".login").text, timeout=10, what="the expiry")
    # A credential the daemon refuses (revoked, or the key file changed) also ends at the sign-in page.
    browser.driver.execute_script(
        "sessionStorage.setItem('llmd.console.session', JSON.stringify({credential: 'llmd_' + 'x'.repeat(43),"
        " kind: 'key', username: 'stale', expiresAt: null}));")
    browser.driver.refresh()
    browser.wait(lambda: "refused the credential" in browser.css(".login").text, what="the refusal of a stale key")


def test_nothing_left_the_daemons_origin_and_no_credential_was_in_a_url(browser: Browser, box: Box):
    browser.drain_logs()
    origin = box.url.split("://", 1)[1]
    assert browser.requests, "the network log is empty"
    foreign = [u for u in browser.requests if not (u.startswith((f"http://{origin}/", f"ws://{origin}/"))
                                                   or u == "about:blank")]
    assert not foreign, f"requests that left the daemon's origin: {foreign}"
    leaky = [u for u in browser.requests if "token=" in u or "eyJ" in u or "llmd_" in u or PASSWORD in u]
    assert not leaky, f"a credential in a URL: {leaky}"
    assert any(u.startswith(f"ws://{origin}/ws/chat/") for u in browser.requests)
    assert any(u.startswith(f"ws://{origin}/ws/downloads") for u in browser.requests)
    problems = [e["message"] for e in browser.console
                if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]]
    assert not problems, problems
