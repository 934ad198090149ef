-- wrk script of scripts/load/stores.py and served.py: token requests whose
-- form bodies are the lines of the file LOAD_BODIES, each sent once in turn
-- (a new input JWT per request; the file wraps around when wrk outruns it,
-- which the driver sees as refused replays). With LOAD_BEARER set, each line
-- is an access token instead, sent as `GET` with `Authorization: Bearer`.
-- `done` prints one JSON line of figures.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

local bodies = {}
for line in io.lines(os.getenv("LOAD_BODIES")) do
    table.insert(bodies, line)
end

local threads = {}
setup = function(thread)
    thread:set("offset", #threads)
    table.insert(threads, thread)
end

-- (Each thread runs its own copy of this script: the stride comes from the
-- driver, which passes wrk's -t as LOAD_THREADS.)
local stride = tonumber(os.getenv("LOAD_THREADS") or "1")
local next_body = nil
refused = 0
init = function()
    -- Threads take interleaved lines so that none sends another's body.
    next_body = (offset or 0) + 1
end

local bearer = os.getenv("LOAD_BEARER") ~= nil

request = function()
    local line = bodies[next_body]
    next_body = next_body + stride
    if next_body > #bodies then next_body = next_body - #bodies end
    if bearer then
        return wrk.format("GET", nil, {["Authorization"] = "Bearer " .. line}, nil)
    end
    return wrk.format(nil, nil, nil, line)
end

-- The first refusal's status and body, for the driver to show.
first_refusal = ""
response = function(status, headers, body)
    if status ~= 200 then
        refused = refused + 1
        if first_refusal == "" then first_refusal = status .. " " .. string.sub(body, 1, 200) end
    end
end

done = function(summary, latency)
    local refused_total = 0
    for _, thread in ipairs(threads) do
        refused_total = refused_total + thread:get("refused")
        local first = thread:get("first_refusal")
        if first ~= "" then io.write("REFUSED " .. first .. "\n") end
    end
    io.write(string.format(
        'LOAD {"requests":%d,"seconds":%.3f,"errors":%d,"refused":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
        summary.requests, summary.duration / 1e6,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        refused_total, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        latency.max / 1000))
end
