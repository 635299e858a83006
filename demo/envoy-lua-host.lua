-- envoy stand-in: the Lua host of demo/envoy-stand-in.ts. NOT Envoy: it runs a response script
-- (envoy/usage.lua) under LuaJIT with the parts of Envoy's Lua HTTP filter API that script uses, and
-- feeds it response bodies chunk by chunk AS THEY STREAM, the way Envoy's bodyChunks() does.
--
-- As in Envoy, the script is loaded once (one Lua state per worker; the stand-in is one worker) and
-- every response runs envoy_on_response(handle) in its own coroutine, which sleeps inside the
-- bodyChunks() iterator until the next chunk arrives.
--
-- Input (stdin), one frame per event:  "open <id>" | "chunk <id> <n>\n<n bytes>" | "end <id>" | "abort <id>"
-- Output (stdout), one line each:      "ready" | "set <id> <namespace> <key> <type> <value>" | "done <id>"
-- Fields in "set" are %XX-escaped (%, spaces, control bytes). "abort" is Envoy resetting the stream:
-- the coroutine is dropped mid-loop, so whatever the script would set after the loop is never set.
-- Handle API implemented: bodyChunks() (buffers with length() and getBytes(index, length)),
-- streamInfo():dynamicMetadata():set(ns, key, value) / :get(ns), and the log*() methods.
local script = arg[1]

local function escape(value)
  return (tostring(value):gsub("[%%%c ]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function emit(...)
  io.stdout:write(table.concat({ ... }, " "), "\n")
  io.stdout:flush()
end

-- Envoy's buffer object; getBytes checks its bounds as Envoy's does.
local function buffer(bytes)
  return {
    length = function() return #bytes end,
    getBytes = function(_, index, length)
      if index < 0 or length < 0 or index + length > #bytes then
        error("index/length must be >= 0 and (index + length) must be <= buffer size")
      end
      return bytes:sub(index + 1, index + length)
    end,
  }
end

local function handle_for(id, stream)
  local metadata = {}
  local handle = {}
  function handle:bodyChunks()
    return function()
      while true do
        if #stream.queue > 0 then return buffer(table.remove(stream.queue, 1)) end
        if stream.ended then return nil end
        coroutine.yield() -- sleeps until the next chunk (or the end) arrives
      end
    end
  end
  function handle:streamInfo()
    local dynamic = {
      set = function(_, namespace, key, value)
        local kind = type(value)
        if kind ~= "number" and kind ~= "string" and kind ~= "boolean" then
          error("the envoy stand-in supports number, string and boolean metadata values only")
        end
        metadata[namespace] = metadata[namespace] or {}
        metadata[namespace][key] = value
        local text = kind == "number" and string.format("%.17g", value) or tostring(value)
        emit("set", id, escape(namespace), escape(key), kind, escape(text))
      end,
      get = function(_, namespace) return metadata[namespace] end,
    }
    return { dynamicMetadata = function() return dynamic end }
  end
  for _, level in ipairs({ "logTrace", "logDebug", "logInfo", "logWarn", "logErr", "logCritical" }) do
    handle[level] = function(_, message) io.stderr:write("envoy stand-in: lua ", level, ": ", tostring(message), "\n") end
  end
  return handle
end

local function resume(stream)
  if stream.co == nil or coroutine.status(stream.co) ~= "suspended" then return end
  local ok, err = coroutine.resume(stream.co)
  if not ok then io.stderr:write("envoy stand-in: lua script error: ", tostring(err), "\n") end
end

dofile(script)
emit("ready")

local streams = {}
while true do
  local line = io.read("*l")
  if line == nil then break end
  local command, id, size = line:match("^(%a+) (%d+) ?(%d*)$")
  local stream = streams[id]
  if command == "open" then
    stream = { queue = {}, ended = false }
    streams[id] = stream
    if type(envoy_on_response) == "function" then
      local handle = handle_for(id, stream)
      stream.co = coroutine.create(function() envoy_on_response(handle) end)
      resume(stream) -- runs until it waits for the first chunk, as Envoy runs it on the headers
    end
  elseif command == "chunk" then
    local bytes = io.read(tonumber(size))
    if stream ~= nil then
      stream.queue[#stream.queue + 1] = bytes
      resume(stream)
    end
  elseif command == "end" or command == "abort" then
    if stream ~= nil and command == "end" then
      stream.ended = true
      resume(stream)
    end
    streams[id] = nil
    emit("done", id)
  else
    io.stderr:write("envoy stand-in: lua host got a bad frame: ", line, "\n")
    os.exit(1)
  end
end
