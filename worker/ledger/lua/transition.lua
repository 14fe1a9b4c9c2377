-- Moves a record forward (see `move`).
-- KEYS: none (the config names them). ARGV: the script config, ref, new status, progress or '',
-- actor, now, the fields the move sets (JSON), and '1' to read the record back once moved.
-- Returns {1 moved | 2 progress raised | 0 nothing | -1 no record, status before, job id}, and
-- if asked and moved, the record's fields and its objects after the move.
-- uses: move
local c = cjson.decode(ARGV[1])
local moved = move(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], c)
if ARGV[8] == '1' and moved[1] == 1 then
  table.insert(moved, redis.call('HGETALL', c.job .. ARGV[2]))
  table.insert(moved, redis.call('HGETALL', c.objects .. ARGV[2]))
end
return moved
