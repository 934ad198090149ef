-- wrk script: token requests against examples/server.rs.
--
-- Every request is the client-credentials request of the demo account in
-- examples/server.toml (service account "demo-deployer", application
-- "demo-client"), sent as a form body.
--
--   cargo build --release --example server
--   target/release/examples/server &
--   wrk -t2 -c32 -d15s --latency -s examples/load/token.lua \
--       http://127.0.0.1:9000/application/o/token/
--
-- Another account: TOKEN_BODY='grant_type=client_credentials&client_id=...' wrk ...

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = os.getenv("TOKEN_BODY")
    or "grant_type=client_credentials&client_id=demo-client"
    .. "&username=demo-deployer&password=demo-app-password-not-a-secret&scope=read"

-- Fail loudly when requests were rejected (a wrong password, a wrong
-- client_id), so that a misconfiguration cannot pass for a fast run. (A
-- per-response check would slow wrk itself down.)
done = function(summary, latency, requests)
    local rejected = summary.errors.status
    if rejected > 0 then
        io.stderr:write(string.format(
            "\n*** %d of %d responses were not 2xx: check the body ***\n",
            rejected, summary.requests))
        os.exit(1)
    end
end
