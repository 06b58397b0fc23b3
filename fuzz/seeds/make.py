#!/usr/bin/env python3
"""Writes the seed corpora (fuzz/corpus/<target>/seed-*): a handful of meaningful inputs per
target, shaped like the unit tests' and the mock provider's bodies and streams. Rerun after
changing it; libFuzzer's own finds are not kept (see fuzz/.gitignore)."""
import json, os, shutil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")
j = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)

# --- bodies -------------------------------------------------------------------------------
openai_request = {
    "model": "anthropic/claude-sonnet-4-5",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "user", "content": "And tomorrow?"}],
    "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather by city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
    "tool_choice": {"type": "function", "function": {"name": "weather"}},
    "max_completion_tokens": 256, "temperature": 0.2, "stop": "END", "user": "u-1",
    "presence_penalty": 0.5, "seed": 7, "stream": True, "stream_options": {"include_usage": True},
}
openai_small = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "required",
                "tools": [{"type": "function", "function": {"name": "f"}}], "response_format": {"type": "json_object"}}
openai_embed = {"model": "text-embedding-004", "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64"}
anthropic_request = {
    "model": "claude-opus-4", "max_tokens": 1024, "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"}]}],
    "tools": [{"name": "weather", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"},
    "stop_sequences": ["END"], "temperature": 0.5, "stream": True, "metadata": {"user_id": "u"},
}
openai_completion = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        "finish_reason": "tool_calls"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 4}}}
anthropic_message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": "Hi"}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"q": 1}}],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 9, "output_tokens": 5, "cache_read_input_tokens": 3, "cache_creation_input_tokens": 1}}
gemini_response = {"candidates": [{"content": {"role": "model", "parts": [
        {"text": "thinking", "thought": True}, {"text": "Hello"},
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"}]},
        "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "thoughtsTokenCount": 2,
        "cachedContentTokenCount": 1, "totalTokenCount": 16},
    "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
gemini_embed = {"embeddings": [{"values": [0.1, -0.2, 3e-5]}, {"values": []}]}
openai_error = {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
anthropic_error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
gemini_error = [{"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}]

# --- streams ------------------------------------------------------------------------------
def sse(events, eol="\n"):
    out = ""
    for name, v in events:
        if name:
            out += f"event: {name}{eol}"
        out += f"data: {v if isinstance(v, str) else j(v)}{eol}{eol}"
    return out

def openai_chunk(delta, finish=None, **extra):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}

openai_stream = sse([(None, openai_chunk({"role": "assistant", "content": ""})),
    (None, openai_chunk({"content": "Hello"})), (None, openai_chunk({"content": " world"})),
    (None, openai_chunk({}, "stop")),
    (None, {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
    (None, "[DONE]")])
openai_tool_stream = sse([(None, openai_chunk({"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})),
    (None, openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{\"q\":"}}]})),
    (None, openai_chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "g", "arguments": "{}"}}]})),
    (None, openai_chunk({}, "tool_calls")), (None, "[DONE]")], eol="\r\n")
openai_error_stream = ": keep-alive\n\n" + sse([(None, openai_chunk({"role": "assistant"})),
    (None, {"error": {"message": "slow down", "type": "rate_limit_error"}})])
anthropic_stream = sse([
    ("message_start", {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5", "content": [], "usage": {"input_tokens": 9, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"q\":1}"}}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
    ("message_stop", {"type": "message_stop"}),
    ("ping", {"type": "ping"})])
anthropic_error_stream = sse([("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])
def gchunk(parts, finish=None, output=1):
    c = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        c["finishReason"] = finish
    return {"candidates": [c], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": output},
            "modelVersion": "gemini-2.5-flash", "responseId": "r1"}
gemini_stream = sse([(None, gchunk([{"text": ""}])), (None, gchunk([{"text": "Hello"}])),
    (None, gchunk([{"text": "think", "thought": True}, {"text": " world"}], output=2)),
    (None, gchunk([{"functionCall": {"name": "f", "args": {"q": "x"}}}], "STOP", 3))], eol="\r\n")
gemini_blocked_stream = sse([(None, {"promptFeedback": {"blockReason": "SAFETY"}})], eol="\r\n")
gemini_error_stream = sse([(None, {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})], eol="\r\n")
odd_framing = "data: {\"choices\":[{\"delta\":\r\ndata: {\"tool_calls\":[{\"index\":0}]}}]}\r\n\r\n" \
    ": comment\rid: 7\rretry: 10\rdata:end\r\rdata: after end\r\r"

# --- configs ------------------------------------------------------------------------------
import re, tomllib
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "config")
def config(name):
    return open(os.path.join(CONFIG, name), encoding="utf-8").read()
def uncommented(text):
    # Whole-line comments and blank lines dropped: the keys stay, the seed stays small.
    return "".join(l for l in text.splitlines(True) if l.strip() and not l.lstrip().startswith("#"))
# `file:` secrets are skipped by the target (they read files): use `env:` ones.
example = re.sub(r'"file:[^"]*"', '"env:OPENAI_API_KEY"', uncommented(config("tier1.example.toml")))
config_json = j(tomllib.loads(config("demo.toml")))

# Counts at the limit: the sums of usage fields must saturate, not overflow.
MAX = 2**64 - 1
anthropic_usage_max = {"usage": {"input_tokens": MAX, "cache_creation_input_tokens": MAX,
                                 "cache_read_input_tokens": MAX, "output_tokens": MAX}}
gemini_usage_max = {"candidates": [], "usageMetadata": {"promptTokenCount": MAX, "candidatesTokenCount": MAX,
                                                        "thoughtsTokenCount": MAX}}
openai_usage_max = {"choices": [], "usage": {"prompt_tokens": MAX, "completion_tokens": MAX,
                                             "prompt_tokens_details": {"cached_tokens": MAX}}}

SEEDS = {
    "scan_splice": {
        "chat": j({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}),
        "whitespace": "{ \"messages\" : [{\"role\":\"user\",\"content\":\"a \\\"model\\\": x\"}],\n \"model\" : \"openrouter/meta-llama/llama-3.3-70b\", \"temperature\":0.5 }",
        "fallbacks-last": "{\"model\":\"a\",\"messages\":[], \"fallbacks\" : [\"b\",\"c/d\"] }",
        "fallbacks-first-no-stream": "{\"fallbacks\":[\"b\"], \"model\":\"a\",\"messages\":[]}",
        "fallbacks-first": "{\"fallbacks\":[\"b\",\"c/d\"], \"model\":\"a\",\"messages\":[],\"stream\":null}",
        "escaped-key": "{\"mod\\u0065l\":\"a\\u00e9\\n\",\"messages\":[{\"role\":\"user\"}],\"max_tokens\":5}",
        "embeddings": j({"model": "e", "input": ["a", "b"], "user": "\u00fc\u2603"}),
        "messages": j(anthropic_request),
        "model-name": j({"model": "a", "messages": [], "n": 1}) + "\0we\"ird/\u6a21\u578b\\",
        "nested": "{\"model\":\"m\",\"messages\":[],\"x\":{\"y\":[1,-2.5e3,true,false,null,\"}]\\\\\"]},\"z\":\"\\ud83d\\ude00\"}",
    },
    "anthropic": {"request": j(openai_request), "request-small": j(openai_small), "response": j(anthropic_message),
                  "error": j(anthropic_error), "usage-max": j(anthropic_usage_max), "stream": anthropic_stream, "stream-error": anthropic_error_stream},
    "gemini": {"request": j(openai_request), "request-small": j(openai_small), "embed-request": j(openai_embed),
               "response": j(gemini_response), "embed-response": j(gemini_embed), "usage-max": j(gemini_usage_max), "error": j(gemini_error),
               "stream": gemini_stream, "stream-blocked": gemini_blocked_stream, "stream-error": gemini_error_stream},
    "messages": {"request": j(anthropic_request), "response": j(openai_completion), "error": j(openai_error),
                 "usage-max": j(openai_usage_max),
                 "stream": openai_stream, "stream-tools": openai_tool_stream, "stream-error": openai_error_stream},
    "dialect": {"openai-request": j(openai_small), "anthropic-request": j(anthropic_request),
                "embed-request": j(openai_embed), "gemini-response": j(gemini_response),
                "anthropic-stream": anthropic_stream, "gemini-stream": gemini_stream, "openai-stream": openai_stream},
    "sse": {"openai": openai_stream, "openai-tools-crlf": openai_tool_stream, "error": openai_error_stream,
            "anthropic": anthropic_stream, "gemini": gemini_stream, "gemini-blocked": gemini_blocked_stream,
            "framing": odd_framing},
    "upstream_answer": {
        "length": "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n" + '{"ok":true}',
        "chunked-sse": "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                       + "".join(f"{len(e):x};x=1\r\n{e}\r\n" for e in [
                           'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', "data: [DONE]\n\n"])
                       + "0\r\nx-trailer: 1\r\n\r\n",
        "interim": "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-length: 2\r\n\r\n{}",
        "until-close": "HTTP/1.0 200 OK\r\n\r\nbody until the connection closes",
        "no-content": "HTTP/1.1 204 No Content\r\n\r\n",
    },
    # Header lines of a provider's answer (see fuzz_targets/provider_headers.rs).
    "provider_headers": {
        "retry-after-seconds": "retry-after: 7",
        "retry-after-huge": "retry-after: 1e20\r\nretry-after: 99999999999999999999999",
        "retry-after-dates": "retry-after: Sun, 06 Nov 1994 08:49:37 GMT\r\nretry-after: Sunday, 06-Nov-94 08:49:37 GMT"
                             "\r\nretry-after: Sun Nov  6 08:49:37 1994\r\nretry-after: Fri, 31 Dec 9999 23:59:59 GMT",
        "two-te": "transfer-encoding: gzip\r\ntransfer-encoding: chunked",
        "te-and-length": "content-length: 3\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip",
        "ratelimit": "x-ratelimit-remaining-requests: 1e400\r\nx-ratelimit-reset-requests: 6m0s"
                     "\r\nanthropic-ratelimit-requests-reset: 2024-01-01T00:00:00Z",
    },
    "config": {"demo.toml": config("demo.toml"), "compose.toml": uncommented(config("compose.toml")),
               "example.toml": example, "demo.json": config_json},
}

for target, seeds in SEEDS.items():
    d = os.path.join(ROOT, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, text in seeds.items():
        with open(os.path.join(d, f"seed-{name}"), "w", encoding="utf-8", newline="") as f:
            f.write(text)

# --- the AWS event-stream framing (binary seeds) -------------------------------------------
import struct, zlib

def es_message(headers, payload):
    """One event-stream message: headers as (name, type, value) with type 7 (string) or 0/1 (bool)."""
    h = b""
    for name, kind, value in headers:
        n = name.encode()
        h += bytes([len(n)]) + n + bytes([kind])
        if kind == 7:
            v = value.encode()
            h += struct.pack(">H", len(v)) + v
    total = 12 + len(h) + len(payload) + 4
    prelude = struct.pack(">II", total, len(h))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    body = prelude + h + payload
    return body + struct.pack(">I", zlib.crc32(body))

def es_event(kind, payload):
    return es_message([(":event-type", 7, kind), (":content-type", 7, "application/json"),
                       (":message-type", 7, "event")], j(payload).encode())

bedrock_text = b"".join([
    es_event("messageStart", {"role": "assistant"}),
    es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hm"}}}),
    es_event("contentBlockStop", {"contentBlockIndex": 0}),
    es_event("messageStop", {"stopReason": "end_turn"}),
    es_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "cacheReadInputTokens": MAX}, "metrics": {"latencyMs": 1}}),
])
bedrock_tool = b"".join([
    es_event("messageStart", {"role": "assistant"}),
    es_event("contentBlockStart", {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}}),
    es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"q\":"}}}),
    es_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "1}"}}}),
    es_event("messageStop", {"stopReason": "tool_use"}),
    es_event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1}}),
])
bedrock_exception = es_event("messageStart", {"role": "assistant"}) + es_message(
    [(":message-type", 7, "exception"), (":exception-type", 7, "throttlingException"), (":content-type", 7, "application/json")],
    j({"message": "Too many requests"}).encode())
bedrock_flags = es_message([("t", 0, None), ("f", 1, None)], b"") + es_message([], b"")

d = os.path.join(ROOT, "eventstream")
shutil.rmtree(d, ignore_errors=True)
os.makedirs(d)
for name, data in {"text": bedrock_text, "tool": bedrock_tool, "exception": bedrock_exception,
                   "flags": bedrock_flags, "cut": bedrock_text[:-7]}.items():
    with open(os.path.join(d, f"seed-{name}"), "wb") as f:
        f.write(data)
