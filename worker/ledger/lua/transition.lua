-- Moves a record forward (see `move`).
-- KEYS: none (the config names them). ARGV: the script config, ref, new status, progress or '',
-- actor, now, the fields the move sets (JSON).
-- Returns {1 moved | 2 progress raised | 0 nothing | -1 no record, status before, job id}.
-- uses: move
return move(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], cjson.decode(ARGV[1]))
