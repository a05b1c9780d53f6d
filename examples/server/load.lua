-- wrk script for examples/server (tc-server): a Zipf mix of reads and a small fraction of
-- writes, and the latency distribution written out when the run is done.
--
--   TC_STUDENTS=N TC_USERS=N TC_PRODUCTS=N [TC_WRITE_PCT=5] [TC_ZIPF_S=0.99] \
--   [TC_WRK_OUT=FILE] wrk -t2 -c32 -d10s -s load.lua http://127.0.0.1:PORT
--
-- Students, users and products are drawn from Zipf distributions (rank r has weight r^-s),
-- so a few are hot and most are cold, as on a real site. Of 100 requests: TC_WRITE_PCT are
-- writes (two fifths new grades, which drop a GPA and a GraphQL tag; a fifth new
-- notifications and two fifths mark-as-read, which move the unread counter and bump the
-- user's list namespace) and the rest reads, in these proportions: GPA 30, notification
-- list 25, unread count 15, dashboard 10, product 10, GraphQL 5 (of 95).
-- With TC_WRK_OUT, done() writes the requests, duration, errors and latency percentiles
-- (microseconds) there, one "name value" per line, and "cdf <us> <fraction>" lines.

local function env_num(name, default)
  local v = tonumber(os.getenv(name) or "")
  if v == nil then return default end
  return v
end

local students = env_num("TC_STUDENTS", 1000)
local users = env_num("TC_USERS", 1000)
local products = env_num("TC_PRODUCTS", 1000)
local write_pct = env_num("TC_WRITE_PCT", 5)
local zipf_s = env_num("TC_ZIPF_S", 0.99)

-- The cumulative weights of ranks 1..n, normalised; sampled by binary search.
local function zipf_table(n)
  local cdf, sum = {}, 0
  for r = 1, n do
    sum = sum + r ^ -zipf_s
    cdf[r] = sum
  end
  for r = 1, n do cdf[r] = cdf[r] / sum end
  return cdf
end

local function zipf(cdf)
  local u, lo, hi = math.random(), 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

local cdf_students, cdf_users, cdf_products
local json = { ["Content-Type"] = "application/json" }
local q_student = '{"query":"query S($id: Int!) { student(id: $id) { name gpa grades { course grade } } }","variables":{"id":%d}}'
local q_user = '{"query":"query U($id: Int!) { user(id: $id) { name unread notifications { id body read } } }","variables":{"id":%d}}'

local thread_no = 0
function setup(thread)
  thread_no = thread_no + 1
  thread:set("no", thread_no)
end

function init(args)
  math.randomseed(os.time() * 1000 + (no or 0) * 7919)
  cdf_students = zipf_table(students)
  cdf_users = zipf_table(users)
  cdf_products = zipf_table(products)
end

function request()
  local r = math.random() * 100
  if r < write_pct then
    local w = r / write_pct
    if w < 0.4 then
      return wrk.format("POST", string.format("/students/%d/grades?course=%d&grade=%.1f",
        zipf(cdf_students), math.random(1, 10), math.random(0, 40) / 10))
    end
    local u = zipf(cdf_users)
    if w < 0.6 then
      return wrk.format("POST", string.format("/users/%d/notifications?body=load", u))
    end
    return wrk.format("POST", string.format("/users/%d/notifications/%d/read", u,
      (u - 1) * 10 + math.random(1, 10)))
  end
  r = (r - write_pct) * 95 / (100 - write_pct)
  if r < 30 then
    return wrk.format("GET", string.format("/students/%d/gpa", zipf(cdf_students)))
  elseif r < 55 then
    local filter, page = "all", 1
    if math.random() < 0.3 then filter = "unread" end
    if math.random() < 0.2 then page = 2 end
    return wrk.format("GET", string.format("/users/%d/notifications?page=%d&filter=%s",
      zipf(cdf_users), page, filter))
  elseif r < 70 then
    return wrk.format("GET", string.format("/users/%d/unread", zipf(cdf_users)))
  elseif r < 80 then
    return wrk.format("GET", string.format("/users/%d/dashboard", zipf(cdf_users)))
  elseif r < 90 then
    return wrk.format("GET", string.format("/products/%d", zipf(cdf_products)))
  elseif math.random() < 0.5 then
    return wrk.format("POST", "/graphql", json, string.format(q_student, zipf(cdf_students)))
  end
  return wrk.format("POST", "/graphql", json, string.format(q_user, zipf(cdf_users)))
end

function done(summary, latency, requests)
  local path = os.getenv("TC_WRK_OUT")
  if not path or path == "" then return end
  local f = assert(io.open(path, "w"))
  local e = summary.errors
  f:write(string.format("requests %d\nduration_us %d\n", summary.requests, summary.duration))
  f:write(string.format("errors %d\nerrors_status %d\n",
    e.connect + e.read + e.write + e.timeout + e.status, e.status))
  for _, p in ipairs({ 50, 90, 99, 99.9 }) do
    f:write(string.format("p%s %d\n", tostring(p), latency:percentile(p)))
  end
  f:write(string.format("max %d\n", latency.max))
  local points = { 0.1, 0.5, 1, 2, 5 }
  for p = 10, 90, 5 do points[#points + 1] = p end
  for _, p in ipairs({ 92, 94, 96, 97, 98, 99, 99.5, 99.8, 99.9, 99.95, 99.99 }) do
    points[#points + 1] = p
  end
  for _, p in ipairs(points) do
    f:write(string.format("cdf %d %.4f\n", latency:percentile(p), p / 100))
  end
  f:write(string.format("cdf %d 1.0\n", latency.max))
  f:close()
end
