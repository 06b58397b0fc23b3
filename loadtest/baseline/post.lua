-- wrk: a small chat completion as a front sends it (bearer key, per-user header).
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer bench-front-key"
wrk.headers["x-relay-token-id"] = "bench-user"
wrk.body = '{"model":"bench","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'
