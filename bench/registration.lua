-- registration.lua — wrk script of bench/registration_bench: every request registers a
-- different user for one event (POST /v1/events/{id}/registrations, no body).
--
--   wrk -s bench/registration.lua URL -- PATH TOKENS_FILE STRIDE OFFSET
--
-- Thread t of this wrk process takes the tokens OFFSET + t, OFFSET + t + STRIDE, ...
-- of TOKENS_FILE (one bearer token a line), so several wrk processes with distinct
-- offsets never register the same user twice. done() prints the outcome counts and the
-- latency percentiles in a line the driver parses.
local threads = {}
local count = 0

function setup(thread)
	thread:set("tid", count)
	count = count + 1
	table.insert(threads, thread)
end

function init(args)
	path = args[1]
	tokens = {}
	for line in io.lines(args[2]) do
		tokens[#tokens + 1] = line
	end
	stride = tonumber(args[3])
	next_index = tonumber(args[4]) + tid
	confirmed, waitlisted, other = 0, 0, 0
end

function request()
	local token = tokens[(next_index % #tokens) + 1]
	next_index = next_index + stride
	return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. token }, nil)
end

function response(status, headers, body)
	if status == 201 then
		if body:find('"status":%s*"confirmed"') then
			confirmed = confirmed + 1
		else
			waitlisted = waitlisted + 1
		end
	else
		other = other + 1
	end
end

function done(summary, latency, requests)
	local c, w, o = 0, 0, 0
	for _, t in ipairs(threads) do
		c = c + t:get("confirmed")
		w = w + t:get("waitlisted")
		o = o + t:get("other")
	end
	io.write(string.format("RESULT confirmed=%d waitlisted=%d other=%d seconds=%.3f " ..
		"p50_ms=%.3f p99_ms=%.3f\n", c, w, o, summary.duration / 1e6,
		latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
