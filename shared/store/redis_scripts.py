"""The Lua scripts of the Redis stores, each under a comment naming its KEYS, ARGV and return value.

A script runs atomically on the server; they are registered once per client (EVALSHA).
"""

from __future__ import annotations

__all__ = ["ALLOW", "FENCED_PUT", "FENCED_SET", "PUBLISH", "REMAINING", "SHARED_KEY", "TAKE"]

# Sliding-window rate limit, atomically.
# KEYS[1] = the window's sorted set
# ARGV[1] = limit, ARGV[2] = window in ms, ARGV[3] = a unique member for this attempt
# Returns 1 (allowed, attempt recorded) or 0 (over the limit, nothing recorded).
ALLOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Remaining attempts in a sliding window.
# KEYS[1] = the window's sorted set; ARGV[1] = limit, ARGV[2] = window in ms
# Returns how many attempts are left.
REMAINING = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - tonumber(ARGV[2]))
local left = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
if left < 0 then return 0 end
return left
"""

# Publish a registry event under the next version, so version order is publish order.
# KEYS[1] = the version counter, KEYS[2] = the leader lock (fenced writers only), KEYS[3] = the
# channel (a key here so a cluster checks it shares the others' slot, as sharded pub/sub needs)
# ARGV[1] = PUBLISH or SPUBLISH, ARGV[2] = event JSON object without version, ARGV[3] = our lock value or ""
# Returns the event JSON as published (with "version"), or the error FENCED.
PUBLISH = """
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return redis.error_reply('FENCED the leader lock is held by another worker')
end
local version = redis.call('INCR', KEYS[1])
local event = '{"version":' .. version .. ',' .. string.sub(ARGV[2], 2)
redis.call(ARGV[1], KEYS[3], event)
return event
"""

# Write a capability record only while holding the leader lock.
# KEYS[1] = the leader lock, KEYS[2] = the scope's hash; ARGV[1] = our lock value,
# ARGV[2] = server, ARGV[3] = record JSON ("" deletes). Returns 1, or the error FENCED.
FENCED_PUT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the leader lock is held by another worker')
end
if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[2]) else redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
return 1
"""

# Set a string, for a control plane only while it holds the leader lock.
# KEYS[1] = the leader lock (fenced writers) or the string itself, KEYS[2] = the string
# ARGV[1] = our lock value, or "" for a writer without a lock; ARGV[2] = the value
# Returns 1, or the error FENCED.
FENCED_SET = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the leader lock is held by another worker')
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""

# A secret shared by every replica: the first caller's random bytes win, then everyone reads them.
# KEYS[1] = the key's name; ARGV[1] = 32 random bytes (used if none exist yet), ARGV[2] = ttl in ms
# Returns the secret.
SHARED_KEY = """
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[1])
"""

# Get and delete in one step, so of concurrent takers exactly one gets the value (GETDEL needs Redis 6.2).
# KEYS[1] = the value's key; no ARGV
# Returns the value, or nil when there is none.
TAKE = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""
