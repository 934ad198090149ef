-- wrk script of the soak (scripts/soak/soak.py): a mix of token-endpoint
-- traffic, each request of a kind whose answer is known, about 20 % of them
-- bad in many ways. Counts answers per kind; `done` prints one JSON line.
--
-- Environment: SOAK_DATA, a file of `key<TAB>value` lines written by soak.py
-- (the demo password, pre-minted input JWTs and access tokens).

local data = { jwt = {}, token = {} }
for line in io.lines(os.getenv("SOAK_DATA")) do
    local key, value = line:match("^(%S+)\t(.*)$")
    if key == "jwt" or key == "token" then
        table.insert(data[key], value)
    elseif key then
        data[key] = value
    end
end

local form = "application/x-www-form-urlencoded"
local bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

-- kind, weight, expected statuses, request builder
local kinds = {
    { "static", 25, { [200] = true }, function()
        return wrk.format("POST", "/application/o/token/", { ["Content-Type"] = form },
            "grant_type=client_credentials&client_id=demo-client&username=demo-deployer&password="
            .. data.password .. "&scope=read")
    end },
    { "jwt", 20, { [200] = true }, function()
        return wrk.format("POST", "/application/o/token/", { ["Content-Type"] = form },
            "grant_type=client_credentials&client_id=ci-client&client_assertion_type=" .. bearer
            .. "&client_assertion=" .. data.jwt[math.random(#data.jwt)])
    end },
    { "introspect", 10, { [200] = true }, function()
        return wrk.format("POST", "/application/o/introspect/",
            { ["Content-Type"] = form, ["Authorization"] = data.basic },
            "token=" .. data.token[math.random(#data.token)])
    end },
    { "jwks", 10, { [200] = true }, function()
        return wrk.format("GET", "/application/o/demo/jwks/")
    end },
    { "discovery", 5, { [200] = true }, function()
        return wrk.format("GET", "/application/o/demo/.well-known/openid-configuration")
    end },
    { "api", 10, { [200] = true }, function()
        return wrk.format("GET", "/api/hello",
            { ["Authorization"] = "Bearer " .. data.token[math.random(#data.token)] })
    end },
    -- Bad requests. Wrong credentials go to an application of their own, whose
    -- client_id the attempt limiter locks out (400, then 429).
    { "wrong password", 4, { [400] = true, [429] = true }, function()
        return wrk.format("POST", "/application/o/token/", { ["Content-Type"] = form },
            "grant_type=client_credentials&client_id=bad-client&username=demo-deployer&password=wrong")
    end },
    { "forged assertion", 3, { [400] = true, [429] = true }, function()
        return wrk.format("POST", "/application/o/token/", { ["Content-Type"] = form },
            "grant_type=client_credentials&client_id=bad-client&client_assertion_type=" .. bearer
            .. "&client_assertion=eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.AAAA")
    end },
    { "no grant_type", 2, { [400] = true }, function()
        return wrk.format("POST", "/application/o/token/", { ["Content-Type"] = form },
            "client_id=demo-client")
    end },
    { "unsupported grant", 2, { [400] = true }, function()
        return wrk.format("POST", "/application/o/token/", { ["Content-Type"] = form },
            "grant_type=authorization_code&client_id=demo-client")
    end },
    { "json body", 2, { [400] = true }, function()
        return wrk.format("POST", "/application/o/token/",
            { ["Content-Type"] = "application/json" }, '{"grant_type":"client_credentials"}')
    end },
    { "GET token", 2, { [405] = true }, function()
        return wrk.format("GET", "/application/o/token/")
    end },
    { "api without token", 3, { [401] = true }, function()
        return wrk.format("GET", "/api/hello")
    end },
    { "api bad signature", 2, { [401] = true }, function()
        local token = data.token[math.random(#data.token)]
        return wrk.format("GET", "/api/hello",
            { ["Authorization"] = "Bearer " .. token:sub(1, -6) .. "AAAAA" })
    end },
}

local total = 0
for _, kind in ipairs(kinds) do total = total + kind[2] end

local threads = {}
setup = function(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

local last = nil
counts = {}
unexpected = {}
init = function()
    math.randomseed(os.time() + (id or 0))
    for _, kind in ipairs(kinds) do
        counts[kind[1]] = 0
        unexpected[kind[1]] = 0
    end
end

request = function()
    local pick = math.random(total)
    for _, kind in ipairs(kinds) do
        pick = pick - kind[2]
        if pick <= 0 then
            last = kind
            return kind[4]()
        end
    end
end

response = function(status)
    counts[last[1]] = counts[last[1]] + 1
    if not last[3][status] then
        unexpected[last[1]] = unexpected[last[1]] + 1
        unexpected["status " .. status] = (unexpected["status " .. status] or 0) + 1
    end
end

done = function(summary, latency)
    local merged_counts, merged_unexpected = {}, {}
    for _, thread in ipairs(threads) do
        for kind, n in pairs(thread:get("counts")) do
            merged_counts[kind] = (merged_counts[kind] or 0) + n
        end
        for kind, n in pairs(thread:get("unexpected")) do
            if n > 0 then merged_unexpected[kind] = (merged_unexpected[kind] or 0) + n end
        end
    end
    local function object(t)
        local parts = {}
        for k, v in pairs(t) do table.insert(parts, string.format("%q:%d", k, v)) end
        return "{" .. table.concat(parts, ",") .. "}"
    end
    io.write(string.format(
        'SOAK {"requests":%d,"errors":%d,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"counts":%s,"unexpected":%s}\n',
        summary.requests,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
        object(merged_counts), object(merged_unexpected)))
end
