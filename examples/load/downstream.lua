-- wrk script: GET /api/hello on examples/downstream.rs, with bearer tokens
-- read from a file (one per line) and sent one after another, so that with
-- 10,000 tokens each is repeated only every 10,000 requests.
--
--   cargo build --release --example server --example downstream --features axum
--   target/release/examples/server &
--   target/release/examples/downstream &
--   python3 examples/load/tokens.py 10000 > /tmp/tokens.txt     # rotating tokens
--   python3 examples/load/tokens.py 1 > /tmp/one-token.txt      # one repeated token
--   TOKENS=/tmp/tokens.txt wrk -t2 -c32 -d15s --latency -s examples/load/downstream.lua \
--       http://127.0.0.1:9001/api/hello

local path = os.getenv("TOKENS") or "tokens.txt"
local tokens = {}
for line in io.lines(path) do
    if #line > 0 then
        tokens[#tokens + 1] = "Bearer " .. line
    end
end
local count = #tokens
assert(count > 0, "no tokens in " .. path)

-- Each thread starts at another place in the list.
local threads = 0
setup = function(thread)
    thread:set("offset", threads)
    threads = threads + 1
end

local next_token = 0
local headers = {}
init = function(args)
    next_token = ((offset or 0) * 7919) % count
end

request = function()
    next_token = next_token % count + 1
    headers["Authorization"] = tokens[next_token]
    return wrk.format(nil, nil, headers)
end

-- Fail loudly when requests were refused (an expired token, a wrong
-- audience), so that a misconfiguration cannot pass for a fast run.
done = function(summary, latency, requests)
    local rejected = summary.errors.status
    if rejected > 0 then
        io.stderr:write(string.format(
            "\n*** %d of %d responses were not 2xx: check the tokens ***\n",
            rejected, summary.requests))
        os.exit(1)
    end
end
