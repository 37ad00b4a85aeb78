-- P2/P4 anchor: the word count done inside Redis by Lua.
-- SCANs the whole keyspace (COUNT 1000 per page), GETs every key, counts each value into a
-- table. Returns {distinct words, keys seen}. Runs as one EVAL: it blocks the server throughout.
local cursor = '0'
local counts = {}
local distinct = 0
local seen = 0
repeat
  local page = redis.call('SCAN', cursor, 'COUNT', 1000)
  cursor = page[1]
  local keys = page[2]
  for i = 1, #keys do
    local v = redis.call('GET', keys[i])
    local c = counts[v]
    if c == nil then
      counts[v] = 1
      distinct = distinct + 1
    else
      counts[v] = c + 1
    end
    seen = seen + 1
  end
until cursor == '0'
return {distinct, seen}
