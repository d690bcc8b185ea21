-- wrk script for the KMM benchmark.
--   wrk ... -s bench/wrk.lua URL -- PATH_TEMPLATE IDS_FILE AUTHORIZATION
-- PATH_TEMPLATE may contain {id}: each request takes a random line of IDS_FILE for it.
-- IDS_FILE and AUTHORIZATION may be "-" (none). done() prints one line "WRK_JSON {...}".

local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_no", counter)
end

function init(args)
   template = args[1] or "/"
   ids = {}
   if args[2] and args[2] ~= "-" then
      for line in io.lines(args[2]) do
         if #line > 0 then ids[#ids + 1] = line end
      end
   end
   headers = {}
   if args[3] and args[3] ~= "-" then headers["Authorization"] = args[3] end
   math.randomseed(os.time() * 1000 + (thread_no or 0))
end

function request()
   local path = template
   if #ids > 0 then
      path = string.gsub(template, "{id}", ids[math.random(#ids)])
   end
   return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
      '"errors_status": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
      e.status, e.connect, e.read, e.write, e.timeout))
end
