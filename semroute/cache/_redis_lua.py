"""The Lua scripts behind ``RedisStore``: each write and its change-feed record in one atomic step.

Key layout under a prefix ``P`` that carries a Redis Cluster hash tag (``{semroute}:``), so
every key of one cache lives in one slot and a script may touch them all:

``P e:<id>``  hash: ``m`` entry JSON, ``v`` raw vector bytes, ``k`` exact key, ``n`` namespace,
              ``t`` tag keys (``name=value`` joined by newlines)
``P keys``    hash: exact key -> id            ``P lru``  zset: id -> last use (wall seconds)
``P exp``     zset: id -> expires_at           ``P ns:<namespace>``, ``P t:<name>=<value>`` sets of ids
``P seq``     the feed's last sequence number  ``P feed`` stream; entry ids are ``0-<seq>``;
              a put record has ``m``/``v``, a delete record the deleted entry's key ``k``
``P epoch``   the feed's identity: set (from the server's clock) by the first poll (CHANGES) that
              finds it missing, so a Redis that lost its data (restarted without persistence,
              flushed) has a new one even once ``seq`` has grown past a follower's saved position

The feed is a Stream trimmed with ``MAXLEN ~``; its ids are ``0-<seq>`` so a sequence number
and a stream id are the same thing. Expiry: Redis key TTLs would vanish without a feed record,
so entries carry no Redis TTL; instead ``P exp`` holds deadlines and every sync (and every
write) sweeps a bounded number of due entries, emitting deletes. This module holds text only.
"""

from __future__ import annotations

__all__ = ["COMMON", "PUT", "GET", "GET_MANY", "GET_BY_KEY", "DELETE", "CHANGES"]

# ARGV[1] = prefix, ARGV[2] = feed MAXLEN for every script.
COMMON = r"""
local P = ARGV[1]
local MAXLEN = ARGV[2]
local function epoch()
  local e = redis.call('GET', P .. 'epoch')
  if not e then
    local t = redis.call('TIME')
    e = t[1] .. '.' .. t[2]
    redis.call('SET', P .. 'epoch', e)
  end
  return e
end
local function feed(op, id, m, v)
  local seq = redis.call('INCR', P .. 'seq')
  if op == 'put' then
    redis.call('XADD', P .. 'feed', 'MAXLEN', '~', MAXLEN, '0-' .. seq, 'op', 'put', 'id', id, 'm', m, 'v', v)
  else
    -- m is the deleted entry's exact key: followers keeping a key map drop it
    redis.call('XADD', P .. 'feed', 'MAXLEN', '~', MAXLEN, '0-' .. seq, 'op', 'delete', 'id', id, 'k', m)
  end
end
local function unindex(id)
  local ek = P .. 'e:' .. id
  local old = redis.call('HMGET', ek, 'k', 'n', 't')
  if not old[1] then return false end
  if redis.call('HGET', P .. 'keys', old[1]) == id then redis.call('HDEL', P .. 'keys', old[1]) end
  redis.call('SREM', P .. 'ns:' .. old[2], id)
  if old[3] then
    for tk in string.gmatch(old[3], '[^\n]+') do redis.call('SREM', P .. 't:' .. tk, id) end
  end
  redis.call('ZREM', P .. 'lru', id)
  redis.call('ZREM', P .. 'exp', id)
  redis.call('DEL', ek)
  return old[1]
end
local function drop(id)
  local key = unindex(id)
  if key then feed('delete', id, key) return 1 end
  return 0
end
local function sweep(now, limit)
  local due = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do drop(id) end
  return #due
end
local function read(id, now)
  local row = redis.call('HMGET', P .. 'e:' .. id, 'm', 'v')
  if not row[1] then return false end
  local deadline = redis.call('ZSCORE', P .. 'exp', id)
  if deadline and tonumber(deadline) <= now then drop(id) return false end
  redis.call('ZADD', P .. 'lru', 'XX', now, id)
  return row
end
"""

# ARGV: P, MAXLEN, max_entries, now, sweep_limit, n, then n x (id, key, ns, tags, expires|'', m, v)
PUT = COMMON + r"""
local maxe, now, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
sweep(now, tonumber(ARGV[5]))
local i = 7
for _ = 1, n do
  local id, key, ns, tags, exp, m, v = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6]
  i = i + 7
  unindex(id)
  local owner = redis.call('HGET', P .. 'keys', key)
  if owner and owner ~= id then drop(owner) end
  redis.call('HSET', P .. 'e:' .. id, 'm', m, 'v', v, 'k', key, 'n', ns, 't', tags)
  redis.call('HSET', P .. 'keys', key, id)
  redis.call('SADD', P .. 'ns:' .. ns, id)
  for tk in string.gmatch(tags, '[^\n]+') do redis.call('SADD', P .. 't:' .. tk, id) end
  redis.call('ZADD', P .. 'lru', now, id)
  if exp ~= '' then redis.call('ZADD', P .. 'exp', exp, id) end
  feed('put', id, m, v)
end
local evicted = 0
local over = redis.call('ZCARD', P .. 'lru') - maxe
if over > 0 then
  for _, id in ipairs(redis.call('ZRANGE', P .. 'lru', 0, over - 1)) do evicted = evicted + drop(id) end
end
return evicted
"""

# ARGV: P, MAXLEN, now, id -> {m, v} or nil; touches the LRU, drops (and feeds) an expired entry
GET = COMMON + r"""
return read(ARGV[4], tonumber(ARGV[3]))
"""

# ARGV: P, MAXLEN, now, sweep_limit, n, n ids, then (last use, id) pairs of reads answered locally
# -> {newest, {one {m, v} or false per id}}
# The feed's newest sequence number rides along (taken after the sweep and the reads, which may
# feed deletes): a follower that finds it equal to the last one it applied knows it is caught up
# without a CHANGES round trip of its own (``RedisStore._saw_head``). It sweeps and takes the local
# reads' LRU touches like CHANGES, so a follower busy with lookups (and so polling less) still
# feeds due expiries and sends its touches a few at a time.
GET_MANY = COMMON + r"""
local now, n, out = tonumber(ARGV[3]), tonumber(ARGV[5]), {}
for i = 6 + n, #ARGV, 2 do redis.call('ZADD', P .. 'lru', 'XX', ARGV[i], ARGV[i + 1]) end
sweep(now, tonumber(ARGV[4]))
for i = 6, 5 + n do out[#out + 1] = read(ARGV[i], now) end
return {tonumber(redis.call('GET', P .. 'seq') or '0'), out}
"""

# ARGV: P, MAXLEN, now, key
GET_BY_KEY = COMMON + r"""
local id = redis.call('HGET', P .. 'keys', ARGV[4])
if not id then return false end
return read(id, tonumber(ARGV[3]))
"""

# ARGV: P, MAXLEN, ids... -> how many existed
DELETE = COMMON + r"""
local removed = 0
for i = 3, #ARGV do removed = removed + drop(ARGV[i]) end
return removed
"""

# ARGV: P, MAXLEN, now, since, count, sweep_limit, then (last use, id) pairs of reads a follower
# answered locally (they refresh the LRU order only of entries still there)
# -> {newest, trimmed(0/1), xrange reply, epoch}
CHANGES = COMMON + r"""
for i = 7, #ARGV, 2 do redis.call('ZADD', P .. 'lru', 'XX', ARGV[i], ARGV[i + 1]) end
sweep(tonumber(ARGV[3]), tonumber(ARGV[6]))
local e = epoch()
local newest = tonumber(redis.call('GET', P .. 'seq') or '0')
local since = tonumber(ARGV[4])
if since >= newest then return {newest, 0, {}, e} end
local first = redis.call('XRANGE', P .. 'feed', '-', '+', 'COUNT', 1)[1]
if not first then return {newest, 1, {}, e} end
local first_seq = tonumber(string.match(first[1], '^0%-(%d+)$'))
if first_seq == nil or first_seq > since + 1 then return {newest, 1, {}, e} end
return {newest, 0, redis.call('XRANGE', P .. 'feed', '(0-' .. ARGV[4], '+', 'COUNT', ARGV[5]), e}
"""
