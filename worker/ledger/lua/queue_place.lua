-- A piece, not a script: a job's place in its caller's queue of jobs waiting to be submitted.
-- A caller is in the round-robin list exactly while its queue holds a job, so taking from the
-- list never meets an empty queue for long, and adding never lists a caller twice.

-- Puts `ref` in its caller's queue at its recorded place (kept across a give-back, so a job
-- given back goes first again), unless a taker holds it. Returns 1 if it was not there.
local function place(c, ref)
  -- A job being sent is its taker's until it is sent or given back.
  if redis.call('ZSCORE', c.sending, ref) then return 0 end
  local job = c.job .. ref
  local caller, score = unpack(redis.call('HMGET', job, 'queue_caller', 'queue_score'))
  if not caller or not score then return 0 end
  redis.call('ZREM', c.in_flight_of .. caller, ref)  -- not sent after all: its place is free
  local queue = c.waiting .. caller
  local added = redis.call('ZADD', queue, 'NX', score, ref)
  if added == 1 and redis.call('ZCARD', queue) == 1 then
    redis.call('RPUSH', c.waiting_callers, caller)
  end
  return added
end

-- Takes `ref` out of `caller`'s queue; 1 if it was there.
local function unplace(c, caller, ref)
  local queue = c.waiting .. caller
  local removed = redis.call('ZREM', queue, ref)
  if removed == 1 and redis.call('ZCARD', queue) == 0 then
    redis.call('LREM', c.waiting_callers, 0, caller)
  end
  return removed
end
