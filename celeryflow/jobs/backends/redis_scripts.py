"""The Redis jobboard's Lua scripts: every ownership change is one script, atomic on the server.

Claims expire by the server's clock (``SET ... PX``), so conductor hosts' clocks do not
matter. Each script answers ``{status, owner}`` (``post`` answers the job's sequence number).
"""

from __future__ import annotations

# KEYS: jobs zset, job hash, seq counter, events channel. ARGV: uuid, name, details, priority rank,
# flow_uuid, book_uuid, book_name, created_on. -> seq
POST = """
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[2], 'uuid', ARGV[1], 'name', ARGV[2], 'details', ARGV[3], 'priority', ARGV[4],
           'flow_uuid', ARGV[5], 'book_uuid', ARGV[6], 'book_name', ARGV[7], 'created_on', ARGV[8], 'seq', seq)
redis.call('ZADD', KEYS[1], tonumber(ARGV[4]) * 1099511627776 + seq, ARGV[1])
redis.call('PUBLISH', KEYS[4], 'posted')
return seq
"""

# KEYS: job hash, owner key. ARGV: who, expiry ms (0: never). -> {status, owner}
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local owner = redis.call('GET', KEYS[2])
if owner then return {'owned', owner} end
local ms = tonumber(ARGV[2])
if ms > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ms) else redis.call('SET', KEYS[2], ARGV[1]) end
return {'ok', ARGV[1]}
"""

# KEYS: job hash, owner key. ARGV: who, expiry ms. A lapsed claim nobody took back is renewed.
EXTEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return {'owned', owner} end
local ms = tonumber(ARGV[2])
if ms > 0 then redis.call('SET', KEYS[2], ARGV[1], 'PX', ms) else redis.call('SET', KEYS[2], ARGV[1]) end
return {'ok', ARGV[1]}
"""

# KEYS: job hash, owner key, jobs zset, events channel. ARGV: who, job id
ABANDON = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local owner = redis.call('GET', KEYS[2])
if not owner then return {'unclaimed', ''} end
if owner ~= ARGV[1] then return {'owned', owner} end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', KEYS[4], 'abandoned')
return {'ok', owner}
"""

# KEYS: job hash, owner key, jobs zset. ARGV: who, job id
CONSUME = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
local owner = redis.call('GET', KEYS[2])
if not owner then return {'unclaimed', ''} end
if owner ~= ARGV[1] then return {'owned', owner} end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return {'ok', owner}
"""

# KEYS: job hash, owner key, jobs zset, trash list. ARGV: who ('' = no owner check), job id, reason,
# trashed_on, trash limit
TRASH = """
local owner = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return {'gone', ''} end
  if not owner then return {'unclaimed', ''} end
  if owner ~= ARGV[1] then return {'owned', owner} end
elseif not redis.call('ZSCORE', KEYS[3], ARGV[2]) then
  return {'gone', ''}
end
local fields = redis.call('HGETALL', KEYS[1])
local record = {}
for i = 1, #fields, 2 do record[fields[i]] = fields[i + 1] end
record['uuid'] = ARGV[2]
record['reason'] = ARGV[3]
record['trashed_on'] = ARGV[4]
if ARGV[1] ~= '' then record['trashed_by'] = ARGV[1] end
redis.call('RPUSH', KEYS[4], cjson.encode(record))
local limit = tonumber(ARGV[5])
if limit > 0 then redis.call('LTRIM', KEYS[4], -limit, -1) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[2])
return {'ok', owner or ''}
"""


#: the scripts by the name ``RedisJobBoard`` runs them under
SCRIPTS = {
    "post": POST,
    "claim": CLAIM,
    "extend": EXTEND,
    "abandon": ABANDON,
    "consume": CONSUME,
    "trash": TRASH,
}

__all__ = ["ABANDON", "CLAIM", "CONSUME", "EXTEND", "POST", "SCRIPTS", "TRASH"]
