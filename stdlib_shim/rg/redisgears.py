"""The `redisgears` module of RedisGears 1.x: the runtime functions under their native names."""

import gears as _gears

executeCommand = _gears.execute
log = _gears.log
config_get = _gears.configGet
getMyHashTag = _gears.hashtag
flatError = _gears.raise_flat_error
atomicCtx = _gears.atomic
isAsyncAllow = _gears._redisgears.is_async_allow
gearsFutureCtx = _gears.gearsFuture
isInAtomicBlock = _gears._redisgears.in_atomic
registerTimeEvent = _gears.registerTE
callNext = _gears.call_next
getCommand = _gears.get_command
overrideReply = _gears.override_reply
GearsError = _gears.error
GearsForceStopped = _gears.forcestopped
GearsFlatError = _gears.flat_error
