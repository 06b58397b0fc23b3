"""Wire compatibility with the official SDKs: OpenAI's and Anthropic's Python clients against a
running tier1 (OpenAI, Anthropic, Gemini and Bedrock providers behind it, all mocks).

Usage: check.py BASE_URL FRONT_KEY EXPECTED_REPLY. Exits non-zero on the first mismatch.
"""

import json
import sys

import anthropic
import openai

base, key, reply = sys.argv[1], sys.argv[2], sys.argv[3]
oa = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    checks += 1


messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]

# OpenAI SDK: every provider kind, full answers and streams (translated where needed).
for model in ["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]:
    r = oa.chat.completions.create(model=model, messages=messages, max_tokens=50)
    check(r.choices[0].message.content == reply, f"{model}: content {r.choices[0].message.content!r}")
    check(r.choices[0].finish_reason == "stop", f"{model}: finish {r.choices[0].finish_reason}")
    check(r.usage is not None and r.usage.completion_tokens == 11, f"{model}: usage {r.usage}")

    text, finish, usage = "", None, None
    with oa.chat.completions.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    ) as stream:
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
    check(text == reply, f"{model} stream: text {text!r}")
    check(finish == "stop", f"{model} stream: finish {finish}")
    check(usage is not None and usage.completion_tokens == 11, f"{model} stream: usage {usage}")

    # The SDK's raw response shows tier1's headers.
    raw = oa.chat.completions.with_raw_response.create(model=model, messages=messages)
    check(raw.headers.get("x-tier1-provider") == model.split("/")[0], f"{model}: provider header")

# Tool calls: the mock calls the first tool offered with {"q": "mock"}, in each wire format.
tools = [{"type": "function", "function": {"name": "lookup", "description": "Look a thing up",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
for model in ["openai/gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]:
    r = oa.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="auto")
    call = r.choices[0].message.tool_calls[0]
    check(call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "mock"},
          f"{model}: tool call {call}")
    check(r.choices[0].finish_reason == "tool_calls", f"{model}: tool finish {r.choices[0].finish_reason}")

    calls, finish = {}, None
    for chunk in oa.chat.completions.create(model=model, messages=messages, tools=tools, stream=True):
        for c in chunk.choices:
            finish = c.finish_reason or finish
            for d in c.delta.tool_calls or []:
                entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                entry["id"] = d.id or entry["id"]
                entry["name"] += (d.function.name or "") if d.function else ""
                entry["arguments"] += (d.function.arguments or "") if d.function else ""
    check(list(calls) == [0] and calls[0]["name"] == "lookup" and calls[0]["id"], f"{model}: streamed calls {calls}")
    check(json.loads(calls[0]["arguments"]) == {"q": "mock"}, f"{model}: streamed arguments {calls}")
    check(finish == "tool_calls", f"{model}: streamed tool finish {finish}")

    # The tool's result goes back; the model answers in text.
    followup = messages + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": {"name": "lookup", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "{\"answer\": 42}"},
    ]
    r = oa.chat.completions.create(model=model, messages=followup, tools=tools)
    check(r.choices[0].message.content == reply, f"{model}: answer after the tool result {r}")

for model in ["openai/text-embedding-3-small", "gemini/text-embedding-004"]:
    e = oa.embeddings.create(model=model, input=["a", "b"])
    check(len(e.data) == 2 and len(e.data[1].embedding) == 8, f"{model}: embeddings {e}")

# The Responses API through every kind: relayed natively to openai and azure (its v1 API, the
# deployment in the body), translated through chat for anthropic and gemini. A full answer, a raw
# event stream, and the SDK's stream helper, which rebuilds the response from the events (their
# indices and item ids must agree).
responses_models = ["openai/gpt-4o", "azure/gpt4o-prod", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]
for model in responses_models:
    r = oa.responses.create(model=model, input="hi", instructions="Be brief.")
    check(r.output_text == reply, f"{model} responses: output_text {r.output_text!r}")
    check(r.status == "completed" and r.usage.output_tokens == 11, f"{model} responses: status/usage {r}")
    text, kinds, final, seqs = "", [], None, []
    for event in oa.responses.create(model=model, input=[{"role": "user", "content": "hi"}], stream=True):
        kinds.append(event.type)
        seqs.append(event.sequence_number)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            final = event.response
    check(text == reply, f"{model} responses stream: text {text!r}")
    check(kinds[0] == "response.created" and kinds[-1] == "response.completed", f"{model} responses stream: {kinds}")
    check(seqs == list(range(len(seqs))), f"{model} responses stream: sequence numbers {seqs}")
    check(final is not None and final.usage.output_tokens == 11, f"{model} responses stream: final {final}")
    with oa.responses.stream(model=model, input="hi") as s:
        deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    check(deltas == reply and final.output_text == reply, f"{model} responses stream helper: {deltas!r} {final}")

# Translated function tools: the call, its output sent back, and the call streamed.
tools = [{"type": "function", "name": "lookup", "description": "Look up a thing",
          "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}]
for model in ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]:
    r = oa.responses.create(model=model, input="find it", tools=tools, tool_choice="auto")
    calls = [o for o in r.output if o.type == "function_call"]
    check(len(calls) == 1 and calls[0].name == "lookup", f"{model} responses tool: {r.output}")
    check(json.loads(calls[0].arguments) == {"q": "mock"}, f"{model} responses tool arguments: {calls[0]}")
    back = [{"role": "user", "content": "find it"},
            {"type": "function_call", "call_id": calls[0].call_id, "name": "lookup", "arguments": calls[0].arguments},
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "found"}]
    r = oa.responses.create(model=model, input=back, tools=tools)
    check(r.output_text == reply, f"{model} responses tool result: {r.output_text!r}")
    with oa.responses.stream(model=model, input="find it", tools=tools) as s:
        args = "".join(e.delta for e in s if e.type == "response.function_call_arguments.delta")
        final = s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    check(args == '{"q":"mock"}' and len(calls) == 1 and calls[0].arguments == args, f"{model} streamed tool: {final}")

# What needs OpenAI's stored state is refused for the other kinds, naming the parameter.
for model in ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]:
    try:
        oa.responses.create(model=model, input="hi", store=True)
        check(False, f"{model}: store=True must fail")
    except openai.BadRequestError as err:
        check(err.body.get("param") == "store" and "store: false" in err.body.get("message", ""),
              f"{model} responses 400 body {err.body}")

# Errors arrive as the SDK's typed exceptions.
try:
    oa.chat.completions.create(model="nobody/x", messages=messages)
    check(False, "unknown model must fail")
except openai.NotFoundError as err:
    check(err.body.get("code") == "model_not_found", f"not found body {err.body}")
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).chat.completions.create(
        model="openai/gpt-4o", messages=messages
    )
    check(False, "a wrong key must fail")
except openai.AuthenticationError:
    checks += 1

models = oa.models.list()
check(any(m.id == "smart" for m in models.data), f"models list {models}")

# Anthropic SDK: the Anthropic-format ingress, native (anthropic/...) and translated (openai/...,
# gemini/...),
# with the key as x-api-key (the SDK's default) or as a bearer token.
for client in [
    anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0),
    anthropic.Anthropic(base_url=f"{base}/anthropic", auth_token=key, max_retries=0),
]:
    for model in ["anthropic/claude-sonnet-4-5", "openai/gpt-4o", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]:
        m = client.messages.create(
            model=model, max_tokens=64, system="Be brief.", messages=[{"role": "user", "content": "hi"}]
        )
        check(m.content[0].text == reply, f"{model}: message {m}")
        check(m.stop_reason == "end_turn" and m.usage.output_tokens == 11, f"{model}: stop/usage {m}")
        with client.messages.stream(
            model=model, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        check(text == reply, f"{model} stream: {text!r}")
        check(final.stop_reason == "end_turn" and final.usage.output_tokens == 11, f"{model} final {final}")

client = anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0)
a_tools = [{"name": "lookup", "description": "Look a thing up",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]
for model in ["anthropic/claude-sonnet-4-5", "openai/gpt-4o", "gemini/gemini-2.5-flash", "bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0", "vertex/gemini-2.5-flash", "vertex/claude-sonnet-4@20250514"]:
    m = client.messages.create(model=model, max_tokens=64, tools=a_tools, messages=[{"role": "user", "content": "hi"}])
    use = [b for b in m.content if b.type == "tool_use"]
    check(len(use) == 1 and use[0].name == "lookup" and use[0].input == {"q": "mock"}, f"{model}: tool_use {m}")
    check(m.stop_reason == "tool_use", f"{model}: tool stop {m.stop_reason}")
    with client.messages.stream(model=model, max_tokens=64, tools=a_tools,
                                messages=[{"role": "user", "content": "hi"}]) as s:
        final = s.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"]
    check(len(use) == 1 and use[0].input == {"q": "mock"} and use[0].id, f"{model}: streamed tool_use {final}")
    check(final.stop_reason == "tool_use", f"{model}: streamed tool stop {final.stop_reason}")

try:
    anthropic.Anthropic(base_url=f"{base}/anthropic", api_key=key, max_retries=0).messages.create(
        model="nobody/x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    check(False, "unknown model must fail")
except anthropic.NotFoundError as err:
    check(err.body["error"]["type"] == "not_found_error", f"anthropic not found body {err.body}")

print(f"sdk checks passed: {checks}")
