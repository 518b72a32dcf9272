-- wrk script for Tests/Reliability/load.sh: picks a random request from a plan file per request.
-- Plan lines: EXPECTED_STATUS<TAB>PATH[<TAB>IF-NONE-MATCH]. Counts statuses per thread; done() prints
-- "statuses: 200=N 304=N ...", "unexpected: N" (a status other than 200/304/404) and wrk's error counts.
local plan = {}
local threads = {}
counts = {}
unexpected = 0

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    for line in io.lines(args[1]) do
        local status, path, etag = line:match("^(%d+)\t([^\t]+)\t?(.*)$")
        if status then
            local headers = nil
            if etag ~= "" then headers = { ["If-None-Match"] = etag } end
            table.insert(plan, { status = tonumber(status), req = wrk.format("GET", path, headers) })
        end
    end
    math.randomseed(os.time() + tonumber(tostring(plan):match("0x(%x+)") or "0", 16) % 1000003)
end

function request()
    local p = plan[math.random(#plan)]
    return p.req
end

function response(status, headers, body)
    -- wrk multiplexes a thread's connections, so a response cannot be tied to its request here: check
    -- that the status is one the plan can produce (load.sh compares the totals with the plan's mix).
    local key = tostring(status)
    counts[key] = (counts[key] or 0) + 1
    if status ~= 200 and status ~= 304 and status ~= 404 then unexpected = unexpected + 1 end
end

function done(summary, latency, requests)
    local total = {}
    local bad = 0
    for _, t in ipairs(threads) do
        for k, v in pairs(t:get("counts")) do total[k] = (total[k] or 0) + v end
        bad = bad + t:get("unexpected")
    end
    local parts = {}
    for k, v in pairs(total) do table.insert(parts, k .. "=" .. v) end
    table.sort(parts)
    io.write("statuses: " .. table.concat(parts, " ") .. "\n")
    io.write("unexpected: " .. bad .. "\n")
    io.write(string.format("latency_p99_ms: %.2f\n", latency:percentile(99) / 1000))
    io.write(string.format("requests: %d errors: connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
        summary.errors.status, summary.errors.timeout))
end
