"""Touches from real landing URLs and referrers: the rules of docs/attribution.md, one by one."""

from __future__ import annotations

import pytest
from firsttag.touches import CHANNELS, device, parse
from hypothesis import given, settings
from hypothesis import strategies as st

SHOP = ("https://shop.example",)

# (landing URL, referrer, Dub click of the session) → (channel, source, medium, campaign,
# click ID type, click ID, landing page)
CASES = [
    (
        "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=bf",
        None,
        None,
        ("email", "newsletter", "email", "bf", None, None, "/"),
    ),
    (  # a Google Ads auto-tagged click
        "https://shop.example/p/mug?gclid=EAIaIQobChMI8_2&gad_source=1",
        "https://www.google.com/",
        None,
        ("paid search", "google", "cpc", None, "gclid", "EAIaIQobChMI8_2", "/p/mug"),
    ),
    (  # iOS app-to-web Google Ads click
        "https://shop.example/?gbraid=0AAAAAo",
        None,
        None,
        ("paid search", "google", "cpc", None, "gbraid", "0AAAAAo", "/"),
    ),
    (
        "https://shop.example/?msclkid=8f3b&utm_source=bing&utm_medium=cpc&utm_campaign=spring",
        "https://www.bing.com/",
        None,
        ("paid search", "bing", "cpc", "spring", "msclkid", "8f3b", "/"),
    ),
    (
        "https://shop.example/?fbclid=IwAR2xyz",
        "https://l.facebook.com/",
        None,
        ("paid social", "facebook", "cpc", None, "fbclid", "IwAR2xyz", "/"),
    ),
    (  # fbclid on an organic post the owner tagged as such: the tag wins
        "https://shop.example/?fbclid=IwAR3&utm_source=facebook&utm_medium=social",
        "https://m.facebook.com/",
        None,
        ("organic social", "facebook", "social", None, "fbclid", "IwAR3", "/"),
    ),
    (
        "https://shop.example/?ttclid=E.C.P.abc",
        "https://www.tiktok.com/",
        None,
        ("paid social", "tiktok", "cpc", None, "ttclid", "E.C.P.abc", "/"),
    ),
    (
        "https://shop.example/?li_fat_id=7c1e",
        None,
        None,
        ("paid social", "linkedin", "cpc", None, "li_fat_id", "7c1e", "/"),
    ),
    (
        "https://shop.example/?twclid=2abc",
        "https://t.co/XyZ",
        None,
        ("paid social", "twitter", "cpc", None, "twclid", "2abc", "/"),
    ),
    (
        "https://shop.example/?utm_source=facebook&utm_medium=paid_social&utm_campaign=retarget",
        None,
        None,
        ("paid social", "facebook", "paid_social", "retarget", None, None, "/"),
    ),
    (  # an organic Google result: the referrer alone
        "https://shop.example/blog/mugs",
        "https://www.google.co.uk/",
        None,
        ("organic search", "google", "organic", None, None, None, "/blog/mugs"),
    ),
    (
        "https://shop.example/",
        "https://duckduckgo.com/",
        None,
        ("organic search", "duckduckgo", "organic", None, None, None, "/"),
    ),
    (  # added to referer-parser's 2016 list
        "https://shop.example/",
        "https://search.brave.com/search?q=mugs",
        None,
        ("organic search", "brave", "organic", None, None, None, "/"),
    ),
    (
        "https://shop.example/",
        "https://www.reddit.com/r/coffee/comments/1",
        None,
        ("organic social", "reddit", "social", None, None, None, "/"),
    ),
    (
        "https://shop.example/",
        "https://x.com/",
        None,
        ("organic social", "twitter", "social", None, None, None, "/"),
    ),
    (
        "https://shop.example/",
        "https://mail.google.com/",
        None,
        ("email", "gmail", "email", None, None, None, "/"),
    ),
    (
        "https://shop.example/?utm_source=newsletter",
        None,
        None,
        ("email", "newsletter", None, None, None, None, "/"),
    ),
    (
        "https://shop.example/?utm_source=awin&utm_medium=affiliate&utm_campaign=q4",
        "https://www.awin1.com/",
        None,
        ("affiliate", "awin", "affiliate", "q4", None, None, "/"),
    ),
    (  # a Dub short link
        "https://shop.example/?dub_id=clk_123",
        "https://dub.sh/",
        "clk_123",
        ("affiliate", "dub.sh", "affiliate", None, "dub_id", "clk_123", "/"),
    ),
    (  # a later visit carrying the Dub click remembered in the cookie
        "https://shop.example/cart",
        None,
        "clk_123",
        ("affiliate", "dub", "affiliate", None, "dub_id", "clk_123", "/cart"),
    ),
    (
        "https://shop.example/",
        "https://blog.example.org/best-mugs-2026",
        None,
        ("referral", "blog.example.org", "referral", None, None, None, "/"),
    ),
    (
        "https://shop.example/?utm_source=flyer&utm_medium=qr",
        None,
        None,
        ("other", "flyer", "qr", None, None, None, "/"),
    ),
    ("https://shop.example/", None, None, ("direct", None, None, None, None, None, "/")),
    (  # self-referral: a new tab opened from the shop itself
        "https://shop.example/p/mug",
        "https://shop.example/cart",
        None,
        ("direct", None, None, None, None, None, "/p/mug"),
    ),
    (  # back from Stripe Checkout
        "https://shop.example/thank-you?session_id=cs_test_a1",
        "https://checkout.stripe.com/c/pay/cs_test_a1",
        None,
        ("direct", None, None, None, None, None, "/thank-you"),
    ),
    (  # back from PayPal
        "https://shop.example/thank-you",
        "https://www.paypal.com/checkoutnow?token=EC-1",
        None,
        ("direct", None, None, None, None, None, "/thank-you"),
    ),
]


@pytest.mark.parametrize(("url", "referrer", "click", "expected"), CASES)
def test_landing_url_and_referrer_give_the_touch(url, referrer, click, expected):
    t = parse(url, referrer, SHOP, click)
    got = (
        t.channel,
        t.source,
        t.medium,
        t.campaign,
        t.click_id_type,
        t.click_id_value,
        t.landing_page,
    )
    assert got == expected


def test_utm_keys_any_case_first_value_wins_and_values_are_bounded():
    t = parse(
        "https://shop.example/?UTM_Source=Google&utm_medium=CPC&utm_campaign=a&utm_campaign=b"
        "&utm_term=red+mugs&utm_content=" + "x" * 400,
        None,
        SHOP,
    )
    assert (t.channel, t.source, t.medium, t.campaign, t.term) == (
        "paid search",
        "google",
        "cpc",
        "a",
        "red mugs",
    )
    assert t.content == "x" * 255
    long_host = parse("https://shop.example/", "https://" + "a" * 300 + ".example/", SHOP)
    assert long_host.channel == "referral" and len(long_host.source) == 255


@pytest.mark.parametrize(
    ("url", "referrer"),
    [(None, None), ("not a url", "also not"), ("https://[::1/", "http://[bad"), ("", "")],
)
def test_missing_or_broken_urls_are_direct_never_an_error(url, referrer):
    assert parse(url, referrer, SHOP).channel == "direct"


UA = {
    "iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "ipad": "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "pixel": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "galaxy_tab": "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "googlebot": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
}


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        ("iphone", "mobile"),
        ("pixel", "mobile"),
        ("ipad", "tablet"),
        ("galaxy_tab", "tablet"),
        ("windows", "desktop"),
        ("mac", "desktop"),
        ("googlebot", "bot"),
    ],
)
def test_device_from_the_user_agent(ua, expected):
    assert device(UA[ua]) == expected


def test_a_session_flagged_as_a_bot_is_a_bot_device():
    assert device(UA["windows"], bot=True) == "bot"
    assert device(None) is None


@settings(max_examples=300, deadline=None)
@given(
    url=st.one_of(st.none(), st.text(max_size=200), st.from_regex(r"https?://[^\s]{0,2000}")),
    referrer=st.one_of(
        st.none(),
        st.text(max_size=200),
        st.from_regex(r"https?://[^\s]{0,600}"),
        # Hosts of many labels: referer-parser's lookup recurses once per label.
        st.builds(
            lambda n, label: f"http://{label * n}x/",
            st.integers(0, 1100),
            st.sampled_from([".", "a.", "ab.c."]),
        ),
    ),
    click=st.one_of(st.none(), st.text(min_size=1, max_size=40)),
    ua=st.one_of(st.none(), st.text(max_size=300)),
)
def test_any_input_gives_a_known_channel_and_never_raises(url, referrer, click, ua):
    # The worker parses every session: an exception here would dead-letter a real visit.
    t = parse(url, referrer, SHOP, click)
    assert t.channel in CHANNELS
    values = t.columns()
    assert len(values.pop("landing_page") or "") <= 1000
    assert all(v is None or len(v) <= 255 for v in values.values())  # the column widths
    # Storable everywhere: PostgreSQL refuses NUL in text (decoding %00 makes one).
    assert not any(v and "\x00" in v for v in values.values())
    assert device(ua) in (None, "desktop", "mobile", "tablet", "bot", "other")


def test_a_referrer_host_of_a_thousand_labels_is_an_unknown_referral_not_a_crash():
    # Found by an outside review: sent with only the site key, such a referrer made the
    # worker's referrer lookup exceed Python's recursion limit, so a session the door had
    # answered 200 was dead-lettered, and each one cost the drain a bisection.
    for referrer in ("http://" + "." * 1000 + "x/", "http://" + "a." * 1000 + "x/"):
        touch = parse("https://shop.example/landing", referrer, SHOP)
        assert (touch.channel, touch.medium) == ("referral", "referral")
        assert len(touch.source or "") <= 255


def test_percent_decoded_control_characters_never_reach_the_touch():
    touch = parse(
        "https://shop.example/?utm_source=news&utm_campaign=%00evil%0A&gclid=a%01bc", None, SHOP
    )
    assert (touch.campaign, touch.click_id_value) == ("evil", "abc")


def test_values_stay_within_their_byte_bounds_after_lower_casing():
    # Found by an outside review: utm_medium is lower-cased after it is cut to 255 bytes,
    # and "İ" (2 bytes) lower-cases to "i̇" (3 bytes), so a medium of 381 bytes was kept
    # where MAX_VALUE promises 255 (the bound the rollups' index keys are sized by).
    tall = "İ" * 200
    t = parse(f"https://shop.example/?utm_source={tall}&utm_medium={tall}", None, SHOP)
    for name, value in t.columns().items():
        limit = 1000 if name == "landing_page" else 255
        assert value is None or len(value.encode()) <= limit, name
    assert t.medium == "i̇" * 85  # whole characters, lower-cased
