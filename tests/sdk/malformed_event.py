"""The OpenAI SDK reads a stream through tier1 whose provider sent one event that is not JSON
(issue 19 item 6): the SDK parses every event's data as JSON, so that event alone would end the
stream with an exception; tier1 leaves it out and the SDK reads the whole answer.

Usage: malformed_event.py BASE_URL FRONT_KEY EXPECTED_TEXT. Exits non-zero on a mismatch.
"""

import sys

import openai

base, key, want = sys.argv[1], sys.argv[2], sys.argv[3]
oa = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
text, finish = "", None
stream = oa.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi"}], stream=True)
for chunk in stream:
    for c in chunk.choices:
        text += c.delta.content or ""
        finish = c.finish_reason or finish
if text != want or finish != "stop":
    raise SystemExit(f"FAILED: text {text!r}, finish {finish!r}")
print("sdk stream complete")
