"""How tests/recordings/pay/ was made: the Stripe response bodies of pay-rails/pay's VCR cassettes, as recorded.

pay (MIT) records its tests against a real Stripe test-mode account with VCR. Its VCR filters replaced every
occurrence of its test defaults in the cassettes (`1` by `<VENDOR_ID>`, `x` by `<VENDOR_AUTH_CODE>`, `secret` by
`<PADDLE_API_KEY>`; test/support/vcr.rb and test/test_helper.rb of that repository): they are put back, and every
restored body's length is checked against the `Content-Length` Stripe answered with, so the bytes are the
recorded ones. Only billing objects are kept (customers, subscriptions and their items, invoices, invoice items,
credit notes, prices, coupons); payment intents, charges and payment methods (client secrets, card details)
are left out, and the `client_secret` of a payment intent expanded inside a kept object is replaced by
`<redacted>`. Nothing else is changed.

    python tests/recordings/extract_pay.py <path of a clone of pay-rails/pay>

writes one file per (commit, cassette) listed in CASSETTES, and prints each file's provenance line for
tests/recordings/PROVENANCE.md.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

REPOSITORY = "pay-rails/pay"
C = "test/vcr_cassettes/"
SWAP = C + "test_stripe_can_swap_and_invoice_a_subscription.yml"
HEAD = "5b018bc1a4e82df56227f51b49b642cb360e3b64"  # 2026-07-30
# (commit, cassette path) -> name of the file written (its API versions come from the recorded requests)
CASSETTES = {
    ("8410bde8e9151ec63a9c07ca572cfaffbc6dc351", C + "test_handles_coupons.yml"): "coupon_2020",
    (
        "8410bde8e9151ec63a9c07ca572cfaffbc6dc351",
        C + "test_fails_when_subscribing_with_SCA_card.yml",
    ): "incomplete_2020",
    ("3a8b979347a92a6bfa42c9018f6a2edb7595ed01", SWAP): "swap_2022",
    ("21a07499096863c5efd3b5dd182344ac4b41556a", SWAP): "swap_2023",
    ("5acb305d7dbf34d069b4f01a6ca03e80eaa41bc5", SWAP): "swap_2024",
    ("f168855aa5dcd7d13aadbf9668d70f7bba91e063", SWAP): "swap_acacia",
    ("6e287fa78202aabb14f17e7a9e7c04075a3275cc", SWAP): "swap_basil",
    (HEAD, SWAP): "swap_clover",
    (HEAD, C + "test_stripe_handles_coupons.yml"): "coupon_clover",
    (HEAD, C + "test_stripe_change_subscription_quantity.yml"): "quantity_clover",
    (HEAD, C + "test_stripe_fails_when_subscribing_with_SCA_card.yml"): "incomplete_dahlia",
    (HEAD, C + "test_stripe_can_create_an_invoice.yml"): "invoice_item_dahlia",
}
KEPT = {
    "customer",
    "subscription",
    "subscription_item",
    "invoice",
    "invoiceitem",
    "credit_note",
    "price",
    "plan",
    "coupon",
    "product",
    "discount",
}
RESTORE = [
    ("<PADDLE_API_KEY>", "secret"),
    ("<PADDLE_PRIVATE_KEY>", "x"),
    ("<VENDOR_AUTH_CODE>", "x"),
    ("<VENDOR_ID>", "1"),
]


SECRET = re.compile(r'("client_secret": )"[^"]*"')


class _Loader(yaml.SafeLoader):
    pass


_Loader.add_constructor("!binary", lambda loader, node: base64.b64decode(loader.construct_scalar(node)))


def _restore(text: str) -> str:
    for placeholder, value in RESTORE:
        text = text.replace(placeholder, value)
    return text


def interactions(clone: Path, commit: str, path: str) -> list[dict]:
    """The cassette's Stripe answers with a kept object, each body as recorded (restored and length-checked)."""
    show = ["git", "-C", str(clone), "show", f"{commit}:{path}"]
    text = subprocess.run(show, capture_output=True, text=True, check=True)
    kept = []
    for interaction in yaml.load(text.stdout, Loader=_Loader)["http_interactions"]:
        request, response = interaction["request"], interaction["response"]
        raw = response["body"].get("string", "")
        if isinstance(raw, bytes):
            try:
                raw = gzip.decompress(raw)
            except OSError:
                pass
            raw = raw.decode()
        body = _restore(raw)
        headers = {key.lower(): value for key, value in (response.get("headers") or {}).items()}
        length = headers.get("content-length")
        if length and int(_restore(str(length[0]))) != len(body.encode()):
            raise SystemExit(f"{path}@{commit}: a restored body differs from the length recorded")
        body = SECRET.sub(r'\1"<redacted>"', body)
        try:
            obj = json.loads(body)
        except ValueError:
            continue
        if not isinstance(obj, dict) or obj.get("object") not in KEPT or "api.stripe.com" not in request["uri"]:
            continue
        uri = urlparse(_restore(request["uri"]))
        version = (request.get("headers") or {}).get("Stripe-Version") or [None]
        kept.append(
            {
                "method": request["method"].upper(),
                "path": uri.path,
                "stripe_version": _restore(str(version[0])),
                "status": response["status"]["code"],
                "recorded_at": (headers.get("date") or [None])[0],
                "body": body,
            }
        )
    return kept


def main(clone: Path) -> None:
    out = Path(__file__).parent / "pay"
    out.mkdir(exist_ok=True)
    for (commit, path), name in CASSETTES.items():
        kept = interactions(clone, commit, path)
        versions = sorted({x["stripe_version"] for x in kept})
        source = {"repository": REPOSITORY, "commit": commit, "path": path, "api_versions": versions, "licence": "MIT"}
        (out / f"{name}.json").write_text(json.dumps({"source": source, "interactions": kept}, indent=1) + "\n")
        print(f"| `pay/{name}.json` | {REPOSITORY} | `{commit}` | `{path}` | {', '.join(versions)} | MIT |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
