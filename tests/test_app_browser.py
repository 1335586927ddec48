"""The chat page in a real browser (Debian's chromium driven by Playwright), backed by the
scripted fake model: streaming, Stop (server-side cancellation), escaping, keys, phone width."""

import os

import pytest

from app.serve import create_app
from fake_openai import FakeOpenAI, Reply, serve

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # reported as a failure by the `browser` fixture, never a skip
    sync_playwright = None

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def stack():
    fake = FakeOpenAI()
    with serve(fake.app) as model_url, serve(create_app(model_url + "/v1")) as app_url:
        yield fake, app_url


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail("playwright is not installed: run `make test` (it installs requirements-dev.txt), "
                    "or `.venv/bin/pip install playwright`", pytrace=False)
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} not found: install it with `apt-get install -y chromium` "
                    "(see `make test`)", pytrace=False)
    expect.set_options(timeout=10_000)  # generous for slow CI machines
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack, request):
    width = getattr(request, "param", 1000)
    context = browser.new_context(viewport={"width": width, "height": 740})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.dialogs = []  # any alert() would land here
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.goto(stack[1] + "/")
    yield page
    context.close()


def ask(page, text):
    page.locator("#input").fill(text)
    page.locator("#input").press("Enter")


def wait_idle(page):
    expect(page.locator("#input")).to_be_enabled()
    expect(page.locator("#stop")).to_be_hidden()


def test_streams_a_tool_turn_and_keeps_history(page, stack):
    fake, _ = stack
    answer = "1234 plus 5678 is 6912, " + " ".join(["which I computed with the calculator tool."] * 4)
    fake.reset([Reply(thought="I need to add 1234 and 5678.", tool="calc",
                      args={"expression": "1234 + 5678"}),
                Reply(answer=answer)], delay=0.04)
    ask(page, "What is 1234 plus 5678?")
    expect(page.locator(".msg.user .bubble")).to_have_text("What is 1234 plus 5678?")
    expect(page.locator("#input")).to_be_disabled()  # no typing while the model answers
    expect(page.locator(".thought")).to_contain_text("💭")
    expect(page.locator(".action")).to_have_text("🔧calc(1234 + 5678)")
    expect(page.locator(".observation")).to_have_text("↳6912")
    # the answer grows token by token: catch it part-way (checked on every animation frame)
    seen = page.wait_for_function("() => document.querySelector('.answer .text')?.textContent")
    assert 0 < len(seen.json_value()) < len(answer)
    expect(page.locator(".answer .text")).to_have_text(answer)
    wait_idle(page)
    assert page.locator(".thought .text").text_content() == "I need to add 1234 and 5678."

    fake.reset([Reply(answer="You are welcome.")])
    ask(page, "Thanks!")
    expect(page.locator(".answer .text").nth(1)).to_have_text("You are welcome.")
    wait_idle(page)
    assert fake.requests[0]["messages"] == [  # past assistant turns go back as their answer only
        {"role": "user", "content": "What is 1234 plus 5678?"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Thanks!"}]


def test_a_step_cut_off_by_the_window_is_replaced_on_the_page(page, stack):
    fake, _ = stack
    fake.reset([Reply(answer="Hello!")])
    ask(page, "Hi!")
    wait_idle(page)
    # the second turn: a tool step, then an answer the window cuts off, asked again without "Hi!"
    fake.reset([Reply(thought="I need to compute this.", tool="calc", args={"expression": "2 + 2"}),
                Reply(thought="Now I know.", answer="The ans", finish_reason="length", completion_tokens=3),
                Reply(answer="The answer is 4.")])
    ask(page, "What is 2 + 2?")
    expect(page.locator(".answer .text").nth(1)).to_have_text("The answer is 4.")
    wait_idle(page)
    turn = page.locator(".msg.assistant .bubble").nth(1)
    assert turn.locator(".step").evaluate_all("s => s.map(x => x.className)") == [
        "step thought", "step action", "step observation", "step answer"]
    assert "Now I know." not in turn.text_content() and "The ans" not in turn.text_content().replace("The answer", "")
    assert [m["content"] for m in fake.requests[-1]["messages"]][0] == "What is 2 + 2?"


def test_stop_cancels_generation_on_the_server(page, stack):
    fake, _ = stack
    fake.reset([Reply(answer="this is a very long and slow answer " * 30)], delay=0.1)
    ask(page, "Tell me a long story")
    expect(page.locator(".answer .text")).to_contain_text("very")
    page.locator("#stop").click()
    assert fake.disconnected.wait(5), "the model server never saw the request end after Stop"
    assert fake.completed == 0
    wait_idle(page)
    expect(page.locator(".note")).to_have_text("stopped")
    partial = page.locator(".answer .text").text_content()

    fake.reset([Reply(answer="Sure.")])  # the page is usable again; the partial answer is history
    ask(page, "Shorter please")
    expect(page.locator(".answer .text").nth(1)).to_have_text("Sure.")
    assert fake.requests[0]["messages"][1] == {"role": "assistant", "content": partial}


def test_html_in_messages_is_text(page, stack):
    fake, _ = stack
    fake.reset([Reply(thought="<b>bold?</b> " + XSS,
                      answer="Here it is: " + XSS + " <script>alert(2)</script>")])
    ask(page, XSS)
    expect(page.locator(".answer .text")).to_have_text("Here it is: " + XSS + " <script>alert(2)</script>")
    wait_idle(page)
    expect(page.locator(".msg.user .bubble")).to_have_text(XSS)
    expect(page.locator(".thought .text")).to_have_text("<b>bold?</b> " + XSS)
    assert page.locator("#log img, #log script, #log b").count() == 0
    page.wait_for_timeout(200)  # give a would-be onerror handler time to fire
    assert page.dialogs == []
    assert fake.requests[0]["messages"] == [{"role": "user", "content": XSS}]


def test_shift_enter_is_a_newline_and_enter_sends(page, stack):
    fake, _ = stack
    fake.reset([Reply(answer="Two lines received.")])
    box = page.locator("#input")
    box.type("line one")
    box.press("Shift+Enter")
    box.type("line two")
    assert box.input_value() == "line one\nline two"
    assert fake.requests == []
    box.press("Enter")
    expect(page.locator(".answer .text")).to_have_text("Two lines received.")
    assert fake.requests[0]["messages"][-1]["content"] == "line one\nline two"
    assert page.locator(".msg.user .bubble").text_content() == "line one\nline two"
    assert box.input_value() == ""


def test_errors_show_inline(page, stack):
    fake, _ = stack
    fake.reset([Reply(status=500)])
    ask(page, "Hi")
    expect(page.locator(".error")).to_contain_text("HTTP 500")
    wait_idle(page)


@pytest.mark.parametrize("page", [375], indirect=True)
def test_phone_width_has_no_horizontal_overflow(page, stack):
    fake, _ = stack
    fake.reset([Reply(thought="A long unbroken token: " + "y" * 150, tool="calc",
                      args={"expression": "1" + "0" * 40 + " * 3"}),
                Reply(answer="Done: " + "z" * 200)])
    ask(page, "x" * 200)
    expect(page.locator(".answer .text")).to_contain_text("Done:")
    wait_idle(page)
    sizes = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth,"
                          " document.querySelector('#log').scrollWidth,"
                          " document.querySelector('#log').clientWidth]")
    assert sizes[0] <= sizes[1] == 375 and sizes[2] <= sizes[3], sizes
    for sel in ("#input", "#send"):  # the composer is on screen
        box = page.locator(sel).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 375, (sel, box)
