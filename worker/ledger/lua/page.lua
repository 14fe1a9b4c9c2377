-- One page of the job list, newest first (see `worker.ledger.paging`).
-- KEYS: none. ARGV: index key, top score, bottom score, the cursor's ref ('' for none), limit,
-- scan budget, batch, status filter (statuses separated by spaces), model filter, lowercased
-- text filter ('' for none), job hash key prefix, objects hash key prefix. Entries scored like
-- the cursor are taken only below its ref, so ties are neither skipped nor repeated.
-- Returns {records, last score, last ref, has more, records passed over}, each record as
-- {flat job hash, objects}.
local index, top, bottom, after = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit, budget, batch = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local status, model, text = ARGV[8], ARGV[9], ARGV[10]
local function matches(job)
  local fields = {}
  for i = 1, #job, 2 do fields[job[i]] = job[i + 1] end
  if status ~= '' and not string.find(' ' .. status .. ' ', ' ' .. fields.status .. ' ', 1, true) then
    return false
  end
  if model ~= '' and fields.model ~= model then return false end
  if text == '' then return true end
  for _, name in ipairs({'prompt', 'ref', 'job_id', 'error'}) do
    if fields[name] and string.find(string.lower(fields[name]), text, 1, true) then return true end
  end
  return false
end
local found, scanned, offset, last_score, last_ref = {}, 0, 0, '', ''
while #found < limit and scanned < budget do
  local rows = redis.call(
    'ZREVRANGEBYSCORE', index, top, bottom, 'WITHSCORES', 'LIMIT', offset, batch)
  if #rows == 0 then return {found, last_score, last_ref, 0, scanned} end
  for i = 1, #rows, 2 do
    local ref, score = rows[i], rows[i + 1]
    offset = offset + 1
    if after == '' or score ~= top or ref < after then
      scanned = scanned + 1
      last_score, last_ref = score, ref
      local job = redis.call('HGETALL', ARGV[11] .. ref)
      if #job > 0 and matches(job) then
        table.insert(found, {job, redis.call('HVALS', ARGV[12] .. ref)})
      end
      if #found == limit or scanned == budget then break end
    end
  end
end
local more = redis.call('ZREVRANGEBYSCORE', index, top, bottom, 'LIMIT', offset, 1)
return {found, last_score, last_ref, #more, scanned}
