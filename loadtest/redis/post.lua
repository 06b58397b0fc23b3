-- wrk: a small chat completion with a per-user header, as a front sends it.
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-relay-token-id"] = "bench-user"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
