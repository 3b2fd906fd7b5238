-- wrk script of bench.nodes: bench.ingest's POST (post.lua: body, Basic auth, the JSON
-- summary), with wrk's threads spread over several nodes in turn: thread i connects to the
-- (i mod n)-th port of BENCH_PORTS ("3001,3002,..."), whatever port the URL names.

dofile(os.getenv("BENCH_POST_LUA"))

local addrs = nil
local next_thread = 0

function setup(thread)
  if addrs == nil then
    addrs = {}
    for port in string.gmatch(os.getenv("BENCH_PORTS"), "%d+") do
      addrs[#addrs + 1] = wrk.lookup("127.0.0.1", port)[1]
    end
  end
  thread.addr = addrs[(next_thread % #addrs) + 1]
  next_thread = next_thread + 1
end
